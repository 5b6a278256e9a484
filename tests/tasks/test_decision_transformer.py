"""Decision transformer: loss masking, causality, rollouts (vectorized, sliding window, true RTG), CLI end to end."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import torch
from safetensors.torch import load_file

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.cli import main
from mmformer.cli.export import export_model
from mmformer.rollout import rollout
from mmformer.models import DecisionTransformer
from mmformer.tokenizers.trajectory import TrajectoryTokenizer

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "tasks" / "decision_transformer.yaml")


def _model(discrete: bool = True, context: int = 4) -> DecisionTransformer:
    torch.manual_seed(0)
    tok = TrajectoryTokenizer(32, state_dim=4 if discrete else 3, act_dim=2 if discrete else 1,
                              discrete_actions=discrete)
    return DecisionTransformer(tok, Encoder(BackboneConfig(dim=32, depth=2, num_heads=2, causal=True)), context).eval()


class Recorder:
    """A stand-in model: fixed action, records what each step's window held."""

    context, discrete, act_dim, state_dim = 3, True, 2, 4

    def __init__(self) -> None:
        self.windows: list[dict[str, torch.Tensor]] = []

    def act(self, traj, sample, temperature, generator):  # noqa: ANN001, ANN201
        self.windows.append({k: v.clone() for k, v in traj.items()})
        return torch.zeros(traj["states"].shape[0], dtype=torch.long)


def test_rollout_slides_a_k_window_feeds_the_true_return_to_go_and_matches_gymnasium() -> None:
    rec = Recorder()
    result = rollout(rec, "CartPole-v1", 100.0, [3, 4])
    expected = []
    for seed in (3, 4):  # the same episodes run directly in gymnasium
        env, total, done = gym.make("CartPole-v1"), 0.0, False
        env.reset(seed=seed)
        while not done:
            _, r, term, trunc, _ = env.step(0)
            total, done = total + r, term or trunc
        expected.append(total)
    assert result.returns.tolist() == expected
    assert max(w["states"].shape[1] for w in rec.windows) == 3  # never more than K timesteps
    last = rec.windows[4]  # step 4: window of timesteps 2, 3, 4; one reward collected per step
    assert last["timesteps"][0].tolist() == [2, 3, 4]
    assert last["returns_to_go"][0].tolist() == [98.0, 97.0, 96.0]


def test_rollouts_in_a_batch_equal_rollouts_alone() -> None:
    m = _model()
    together = rollout(m, "CartPole-v1", 200.0, [0, 1, 2], sample=False)
    alone = [rollout(m, "CartPole-v1", 200.0, [s], sample=False).returns.item() for s in (0, 1, 2)]
    assert together.returns.tolist() == alone


def test_model_and_environment_mismatches_are_named() -> None:
    with pytest.raises(ValueError, match="continuous actions of size 1, but the environment has 2 discrete"):
        rollout(_model(discrete=False), "CartPole-v1", 10.0, [0])
    with pytest.raises(ValueError, match="2 discrete actions, but the environment's actions are continuous"):
        rollout(_model(), "Pendulum-v1", 10.0, [0])
    with pytest.raises(ValueError, match="'NotAnEnv-v3' is not available"):
        rollout(_model(), "NotAnEnv-v3", 10.0, [0])


SMALL = ["--data.init_args.embedded.init_args.episodes_per_level=6", "--data.init_args.eval_episodes=4",
         "--model.init_args.model.backbone.dim=32", "--model.init_args.model.backbone.depth=1",
         "--model.init_args.target_returns=[500,150]", "--model.init_args.val_episodes=2",
         "--trainer.enable_progress_bar=false"]


@pytest.mark.slow
def test_recipe_fits_tests_and_exports_with_the_state_statistics(tmp_path: Path, capsys) -> None:
    common = ["--config", RECIPE, "--trainer.default_root_dir", str(tmp_path),
              f"--data.init_args.data_dir={tmp_path / 'data'}", *SMALL]
    fit = main(["fit", *common, "--trainer.max_steps=300", "--trainer.val_check_interval=150",
                "--trainer.limit_val_batches=2"])
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    assert "val/return@500" in fit.trainer.callback_metrics
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    dm = fit.datamodule
    assert torch.allclose(state["model.tokenizer.state_mean"], dm.state_mean)
    test = main(["test", *common, "--ckpt_path", ckpt])
    metrics = test.trainer.callback_metrics
    for key in ("test/return@500", "test/return@150", "test/normalized@500", "test/normalized@150"):
        assert key in metrics, key
    assert float(metrics["test/return@500"]) > 30, "300 steps already beat random actions (~22)"
    assert (Path(test.trainer.log_dir) / "return_vs_target.png").stat().st_size > 1000
    out = export_model(RECIPE, ckpt, tmp_path / "export", *SMALL[:-1])
    weights = load_file(str(out / "model.safetensors"))
    assert torch.allclose(weights["tokenizer.state_std"], dm.state_std)
    capsys.readouterr()
    main(["predict", *common, "--ckpt_path", ckpt])
    printed = capsys.readouterr().out
    assert "target 500: mean return" in printed and "over 4 episodes" in printed


def test_validate_rolls_out_on_the_validation_seeds_at_each_val_target(tmp_path: Path, monkeypatch) -> None:
    """A standalone ``validate`` (where decodings are chosen) always rolls out, whatever val_rollout_every."""
    import mmformer.tasks.decision_transformer as dt

    seen: list[tuple[float, list[int], float]] = []
    real = dt.rollout

    def spy(model, env_id, target, seeds, **kw):  # noqa: ANN001, ANN003, ANN202
        seen.append((target, list(seeds), kw["temperature"]))
        return real(model, env_id, target, seeds, **kw)

    monkeypatch.setattr(dt, "rollout", spy)
    out = main(["validate", "--config", RECIPE, "--trainer.default_root_dir", str(tmp_path),
                f"--data.init_args.data_dir={tmp_path / 'data'}", *SMALL,
                "--data.init_args.embedded.init_args.episodes_per_level=2",
                "--trainer.limit_val_batches=1", "--model.init_args.val_rollout_every=3",
                "--model.init_args.val_targets=[500,150]", "--model.init_args.temperature=0.7"])
    metrics = out.trainer.callback_metrics
    assert "val/return@500" in metrics and "val/return@150" in metrics
    assert seen == [(500.0, [10_000, 10_001], 0.7), (150.0, [10_000, 10_001], 0.7)]  # VAL_SEED_START + 0, 1

def test_the_tokenizer_follows_the_data_and_a_size_set_against_it_is_one_error(tmp_path: Path) -> None:
    from corpora.control import ControlDatasetSpec, build_control_dataset

    pend = build_control_dataset(ControlDatasetSpec("Pendulum-v1", [0.5], episodes_per_level=2), tmp_path)
    swap = [f"--data.init_args.train={pend}", "--data.init_args.env_id=Pendulum-v1", "--data.init_args.target_returns=null",
            "--data.init_args.val_targets=null", "--trainer.max_steps=1"]
    fit = main(["fit", "--config", RECIPE, "--trainer.default_root_dir", str(tmp_path / "a"), *SMALL, *swap])
    tok = fit.model.model.tokenizer  # the CartPole recipe's model, sized by Pendulum's data: 3 states, 1 continuous action
    assert (tok.state_dim, tok.act_dim, tok.discrete_actions) == (3, 1, False) and fit.trainer.global_step == 1
    with pytest.raises(ValueError, match="tokenizer is set to state_dim=4.*leave these out"):
        main(["fit", "--config", RECIPE, "--trainer.default_root_dir", str(tmp_path / "b"), *SMALL, *swap,
              "--model.init_args.model.tokenizer.init_args.state_dim=4", "--model.init_args.model.tokenizer.init_args.act_dim=2",
              "--model.init_args.model.tokenizer.init_args.discrete_actions=true"])
