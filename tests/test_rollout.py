"""Rollouts: an episode's randomness is its own (alone, batched or split over ranks it acts the same),
inverse-CDF sampling, and the validation/test seed ranges."""

from __future__ import annotations

import pytest
import torch

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.models.decision_transformer import DecisionTransformer, sample_categorical
from mmformer.rollout import MAX_TEST_EPISODES, TEST_SEED_START, VAL_SEED_START, action_uniforms, rollout
from mmformer.tokenizers.trajectory import TrajectoryTokenizer


def _model() -> DecisionTransformer:
    torch.manual_seed(0)
    tok = TrajectoryTokenizer(32, state_dim=4, act_dim=2, discrete_actions=True)
    return DecisionTransformer(tok, Encoder(BackboneConfig(dim=32, depth=2, num_heads=2, causal=True)), 4).eval()


def _episodes(result, seeds: list[int]) -> dict[int, tuple[float, list[int]]]:  # noqa: ANN001
    """seed → (return, actions taken)."""
    return {s: (result.returns[i].item(), result.actions[i, : result.lengths[i]].tolist())
            for i, s in enumerate(seeds)}


def test_a_sampled_episode_acts_the_same_alone_in_a_batch_and_in_any_split_of_seeds() -> None:
    m, seeds = _model(), [5, 6, 7, 8, 9]

    def run(part: list[int]) -> dict[int, tuple[float, list[int]]]:
        return _episodes(rollout(m, "CartPole-v1", 200.0, part, sample=True, temperature=1.0), part)

    together = run(seeds)
    alone = {s: run([s])[s] for s in seeds}
    two_ranks = {**run(seeds[0::2]), **run(seeds[1::2])}  # how DDP splits the seeds over 2 processes
    other_batch = run([9, 3, 7])  # a different batch (and order) around seeds 9 and 7
    assert {s: r for s, (r, _) in alone.items()} == {s: r for s, (r, _) in together.items()}
    assert alone == together == two_ranks
    assert other_batch[9] == alone[9] and other_batch[7] == alone[7]
    # and the sampling is really random: an untrained model's actions are not all its argmax
    greedy = _episodes(rollout(m, "CartPole-v1", 200.0, seeds, sample=False), seeds)
    assert greedy != together


def test_action_uniforms_depend_on_the_episode_seed_alone() -> None:
    u = action_uniforms([3, 4, 3], 50)
    assert u.shape == (3, 50) and bool(((u >= 0) & (u < 1)).all())
    assert torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])
    assert torch.equal(action_uniforms([4], 20)[0], u[1, :20])  # a longer horizon extends the same stream


def test_inverse_cdf_sampling_follows_the_tempered_softmax() -> None:
    logits = torch.log(torch.tensor([[0.25, 0.75]])).expand(4, -1)
    ids = sample_categorical(logits, 1.0, torch.tensor([0.0, 0.2499, 0.2501, 0.999999]))
    assert ids.tolist() == [0, 0, 1, 1]
    draws = torch.rand(20_000, generator=torch.Generator().manual_seed(0))
    freq = sample_categorical(logits[:1].expand(20_000, -1), 0.5, draws).float().mean()
    expected = 0.75**2 / (0.75**2 + 0.25**2)  # temperature 0.5 squares the probabilities: 0.9
    assert abs(freq.item() - expected) < 0.01
    with pytest.raises(ValueError, match="temperature must be positive"):
        sample_categorical(logits, 0.0)


def test_validation_and_test_seed_ranges_are_disjoint() -> None:
    from mmformer.data import TrajectoryData

    assert TEST_SEED_START + MAX_TEST_EPISODES <= VAL_SEED_START
    with pytest.raises(ValueError, match="would reach the validation seeds"):
        TrajectoryData(eval_episodes=MAX_TEST_EPISODES + 1)
    dm = TrajectoryData(eval_episodes=7)
    dm.trainer = None
    assert next(iter(dm.test_dataloader())).tolist() == list(range(TEST_SEED_START, TEST_SEED_START + 7))
