"""Contrastive task: towers (shared or separate), temperature, retrieval/zero-shot helpers, and the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from torchmetrics.retrieval import RetrievalRecall

from mmformer.backbone import BackboneConfig
from mmformer.cli import main
from mmformer.data.spec import DataSpec, EvalSplit, ProvidesDataSpec
from mmformer.losses import clip_loss
from mmformer.retrieval import recall_at_k, zeroshot_classifier
from mmformer.tasks.contrastive import ContrastiveTask
from mmformer.tasks.optim import OptimConfig
from mmformer.tokenizers import ImagePatchTokenizer, TextTokenizer
from tests.data_free import build_without_data
from mmformer.models.config import ContrastiveConfig

ROOT = Path(__file__).resolve().parents[2]
RECIPE = str(ROOT / "tasks" / "clip.yaml")
SHARED_RECIPE = str(ROOT / "tasks" / "clip_shared.yaml")
BB = BackboneConfig(dim=32, depth=1, num_heads=2, mlp_ratio=2.0)


def _task(shared: bool = True, temperature: float = 0.07, **kw) -> ContrastiveTask:
    torch.manual_seed(0)
    return ContrastiveTask(ContrastiveConfig(lambda d: ImagePatchTokenizer(d, image_size=8, patch_size=4, cls_token=False),
                                             lambda d: TextTokenizer(d, vocab_size=20, max_len=16), BB, embed_dim=16,
                                             init_temperature=temperature, backbone_b=None if shared else BB), **kw)


def test_a_negative_hard_negative_beta_is_an_error() -> None:
    with pytest.raises(ValueError, match="hard_negative_beta must be >= 0"):
        _task(False, hard_negative_beta=-1.0)


def test_recall_at_k_matches_torchmetrics() -> None:
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(20, 20, generator=g) + 2 * torch.eye(20)
    ours = recall_at_k(sim, (1, 5))
    for k in (1, 5):
        ref = RetrievalRecall(top_k=k)(sim.flatten(), torch.eye(20, dtype=torch.bool).flatten(),
                                       indexes=torch.arange(20).repeat_interleave(20))
        assert ours[k].item() == pytest.approx(ref.item())


def test_zeroshot_classifier_averages_normalized_templates_and_checks_them() -> None:
    table = {"a x": torch.tensor([1.0, 0.0]), "the x": torch.tensor([0.0, 2.0]), "a y": torch.tensor([0.0, -1.0]),
             "the y": torch.tensor([0.0, -3.0])}
    weights = zeroshot_classifier(lambda ps: torch.stack([table[p] for p in ps]), ["x", "y"], ["a {}", "the {}"])
    assert torch.allclose(weights, torch.tensor([[2 ** -0.5, 2 ** -0.5], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="exactly one"):
        zeroshot_classifier(lambda ps: torch.zeros(len(ps), 2), ["x"], ["no slot"])


def test_tiny_model_learns_to_match_its_pairs() -> None:
    """Images whose brightness encodes a word id; after training, retrieval beats chance by far."""
    task = _task()
    model = task.model
    words = torch.arange(8)
    images = (words.float() / 7).view(8, 1, 1, 1).expand(8, 3, 8, 8).contiguous()
    ids = torch.stack([words + 4, torch.full((8,), 3)], dim=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        out = model(images, ids)
        loss = clip_loss(out.embeds_a, out.embeds_b, out.logit_scale).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = model.eval()(images, ids)
    assert recall_at_k(out.embeds_b @ out.embeds_a.t(), (1,))[1] >= 0.75  # chance: 0.125


class _Vocab:
    vocab_size = 20

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [" ".join(map(str, row.tolist())) for row in ids]


class Pairs(pl.LightningDataModule, ProvidesDataSpec):
    """A plug-in DataModule: random image–caption pairs, declaring the given eval_splits."""

    def __init__(self, eval_splits: list[EvalSplit] | None, split: int | None = None, n: int = 16) -> None:
        super().__init__()
        self.eval_splits, self.split, self.n = eval_splits, split, n

    def data_spec(self) -> DataSpec:
        return DataSpec(vocab=_Vocab(), tokenize=lambda texts: torch.full((len(texts), 2), 3),  # type: ignore[arg-type]
                        eval_splits=self.eval_splits)

    def _loader(self) -> DataLoader:
        g = torch.Generator().manual_seed(1)
        batches = []
        for _ in range(2):
            batch = {"a": torch.randn(self.n, 3, 8, 8, generator=g),
                     "b": torch.randint(4, 20, (self.n, 5), generator=g)}
            if self.split is not None:
                batch["split"] = torch.full((self.n,), self.split)
            batches.append(batch)
        return DataLoader(batches, batch_size=None)

    train_dataloader = test_dataloader = _loader


def _trainer(tmp_path: Path, steps: int = 1) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")


def test_a_test_run_over_data_without_eval_splits_names_the_datamodule(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs eval_splits from its data, but Pairs does not declare it"):
        _trainer(tmp_path).test(_task(), datamodule=Pairs(None))
    _task().bind_data(Pairs(None).data_spec(), "fit")  # training needs no test splits


def test_a_test_run_whose_splits_measure_nothing_fails(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="measure nothing"):
        _trainer(tmp_path).test(_task(), datamodule=Pairs([EvalSplit("", retrieval=False)]))
    with pytest.raises(ValueError, match="measure nothing"):
        _trainer(tmp_path).test(_task(), datamodule=Pairs([]))


def test_a_test_run_whose_rows_fall_in_no_declared_split_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"computed no test metric.*split indices \[3\]"):
        _trainer(tmp_path).test(_task(), datamodule=Pairs([EvalSplit("")], split=3))


def test_a_test_run_logs_what_the_eval_splits_declare(tmp_path: Path) -> None:
    (metrics,) = _trainer(tmp_path).test(_task(), datamodule=Pairs([EvalSplit("")]))
    assert set(metrics) == {f"test/{d}_r@{k}" for d in ("t2i", "i2t") for k in (1, 5, 10)}


def test_training_brings_the_temperature_down_from_the_cap(tmp_path: Path) -> None:
    """Random pairs: the loss asks for a lower scale; at the cap it used to get no gradient at all."""
    task = _task(temperature=0.01, optim=OptimConfig(lr=0.02, schedule="constant"))  # scale 100: the cap
    trainer = _trainer(tmp_path, steps=4)
    trainer.fit(task, datamodule=Pairs([EvalSplit("")]))
    assert float(trainer.callback_metrics["train/logit_scale"]) < 99.0
    assert task.model.logit_scale.item() <= torch.tensor(100.0).log().item()


def _tower_gradients_on_the_shared_encoder(recipe: str, *overrides: str) -> tuple[float, float]:
    """Gradient norms on the one encoder from the image path and from the text path, at initialization."""
    cli = main(["--config", recipe, *overrides, "--trainer.logger=false", "--trainer.callbacks=[]",
                "--trainer.enable_checkpointing=false"], run=False)
    model = build_without_data(cli.model).model
    assert model.shared_backbone
    g = torch.Generator().manual_seed(0)
    images, ids = torch.randn(32, 3, 48, 48, generator=g), torch.randint(3, 128, (32, 20), generator=g)
    norms = []
    for side in ("image", "text"):
        model.zero_grad()
        out = model(images, ids)
        image, text = out.embeds_a, out.embeds_b
        image, text = (image, text.detach()) if side == "image" else (image.detach(), text)
        clip_loss(image, text, out.logit_scale).loss.backward()
        norms.append(torch.stack([p.grad.norm() for p in model.backbone_a.parameters()]).norm().item())
    return norms[0], norms[1]


def test_the_shared_tower_recipe_trains_both_sides_of_its_encoder(tmp_path: Path) -> None:
    """Token scales 15x apart left the image side of a shared encoder with ~5x smaller gradients, and the
    shared tower stalled on the log(B) plateau; the shared recipe scales the text embeddings by sqrt(D)."""
    image, text = _tower_gradients_on_the_shared_encoder(SHARED_RECIPE)
    assert text / image < 2.5, (image, text)
    shared = tmp_path / "shared.yaml"  # clip.yaml's towers sharing one encoder (backbone_b left out)
    shared.write_text("model:\n  init_args:\n    model:\n      backbone_b: null\n")
    image, text = _tower_gradients_on_the_shared_encoder(RECIPE, "--config", str(shared))
    assert text / image > 4.0, (image, text)  # the imbalance this guards against


@pytest.mark.slow
def test_recipe_fits_tests_and_predicts_through_the_cli(tmp_path: Path) -> None:
    small = ["--data.init_args.data_dir", str(tmp_path / "data"), "--data.init_args.embedded.init_args.num_train=512",
             "--data.init_args.embedded.init_args.num_eval=64", "--data.init_args.batch_size=32", "--trainer.enable_progress_bar=false",
             "--trainer.default_root_dir", str(tmp_path), "--model.init_args.model.backbone.depth=1"]
    fit = main(["fit", "--config", RECIPE, *small, "--trainer.max_steps=3"])
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    test = main(["test", "--config", RECIPE, *small, "--ckpt_path", ckpt])
    metrics = test.trainer.callback_metrics
    for name in ("t2i_r@1", "t2i_r@5", "t2i_r@10", "i2t_r@1", "i2t_r@5", "i2t_r@10", "zeroshot_shape_acc",
                 "zeroshot_color_acc", "unseen_zeroshot_shape_acc", "unseen_zeroshot_color_acc"):
        assert 0.0 <= float(metrics[f"test/{name}"]) <= 1.0, name
    assert (Path(test.trainer.log_dir) / "similarity_matrix.png").stat().st_size > 1000

    emb_dir = tmp_path / "emb"
    pred = main(["predict", "--config", RECIPE, *small, "--ckpt_path", ckpt,
                 "--model.init_args.predict_labels=[circle,square]",
                 f"--model.init_args.predict_embeddings_dir={emb_dir}"])
    rows = list(csv.DictReader(open(Path(pred.trainer.log_dir) / "predictions.csv")))
    assert len(rows) == 64 and {r["label"] for r in rows} <= {"circle", "square"}
    image, text = np.load(emb_dir / "image_embeddings.npy"), np.load(emb_dir / "text_embeddings.npy")
    assert image.shape == (64, 128) and text.shape == (2, 128)

    with pytest.raises(ValueError, match="vocab_size is 99 .* leave model.init_args.model.tokenizer_b.init_args.vocab_size out .* set it to 128"):
        main(["fit", "--config", RECIPE, *small, "--trainer.max_steps=1",
              "--model.init_args.model.tokenizer_b.init_args.vocab_size=99"])
