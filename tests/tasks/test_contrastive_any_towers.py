"""ContrastiveTask between an audio tower and a text tower, from role-keyed batches ``{a, b, index}``:
metrics named by the towers (a2t/t2a), zero-shot through tower b, fit + test + predict on CPU in seconds."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from mmformer.backbone import BackboneConfig
from mmformer.data.spec import DataSpec, EvalSplit, ZeroShotSpec
from mmformer.retrieval import retrieval_metrics
from mmformer.tasks.contrastive import ContrastiveTask
from mmformer.tasks.optim import OptimConfig
from mmformer.tokenizers import TextTokenizer
from tests.tasks.roles import RoleData, audio_tokenizer, tones
from mmformer.models.config import ContrastiveConfig

WORDS = ["one", "two", "three", "four"]
BB = BackboneConfig(dim=32, depth=1, num_heads=2, mlp_ratio=2.0)


class _Vocab:
    vocab_size = 12

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [" ".join(WORDS[i - 4] for i in row.tolist() if i >= 4) for row in ids]


def _tokenize(texts: list[str]) -> torch.Tensor:
    """Prompts → ids like the captions: the word's id (4 + its index), then eos (3)."""
    return torch.tensor([[4 + WORDS.index(t), 3] for t in texts])


def _pairs(labels: torch.Tensor, seed: int) -> dict:
    """Clip i is a tone of pitch ``labels[i]``; its text is that pitch's word (+ eos); zero-shot label column 0."""
    return {"a": tones(labels, seed), "b": torch.stack([labels + 4, torch.full_like(labels, 3)], 1),
            "labels": labels[:, None]}


def _data(splits: list[EvalSplit] | None = None, split_of_rows: int | None = None) -> RoleData:
    test = _pairs(torch.arange(4), 1)
    if split_of_rows is not None:
        test["split"] = torch.full((4,), split_of_rows)
    zeroshot = {"word": ZeroShotSpec(0, WORDS, ("{}",))}
    spec = DataSpec(vocab=_Vocab(), tokenize=_tokenize,  # type: ignore[arg-type]
                    eval_splits=splits if splits is not None else [EvalSplit("", zeroshot=zeroshot)])
    return RoleData({"train": _pairs(torch.arange(32) % 4, 0), "test": test, "predict": {"a": tones(torch.arange(3), 2)}},
                    spec, batch_size=8)


def _task(**kw) -> ContrastiveTask:
    torch.manual_seed(0)
    kw = {"names": ["audio", "text"], **kw}
    return ContrastiveTask(ContrastiveConfig(audio_tokenizer, lambda d: TextTokenizer(d, vocab_size=12, max_len=4), BB, embed_dim=16), optim=OptimConfig(lr=3e-3), **kw)


def _trainer(tmp_path: Path, steps: int = 4) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, default_root_dir=tmp_path, accelerator="cpu", logger=False,
                      enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0)


def test_audio_text_towers_fit_test_with_a2t_names_and_predict_zero_shot(tmp_path: Path) -> None:
    task, data = _task(predict_labels=WORDS, predict_embeddings_dir=str(tmp_path / "emb")), _data()
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule=data)
    (metrics,) = trainer.test(task, datamodule=data, verbose=False)
    assert set(metrics) == {f"test/{d}_r@{k}" for d in ("a2t", "t2a") for k in (1, 5, 10)} | {
        "test/zeroshot_word_acc"}
    assert (tmp_path / "similarity_matrix.png").stat().st_size > 1000
    trainer.predict(task, datamodule=data)
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert [r["id"] for r in rows] == ["item0", "item1", "item2"] and {r["label"] for r in rows} <= set(WORDS)
    assert np.load(tmp_path / "emb" / "audio_embeddings.npy").shape == (3, 16)
    assert np.load(tmp_path / "emb" / "text_embeddings.npy").shape == (4, 16)


def test_the_towers_are_named_by_the_names_argument() -> None:
    a, b = torch.eye(3), torch.eye(3)
    assert set(retrieval_metrics(a, b, (1,))) == {"t2i_r@1", "i2t_r@1"}  # the default keeps open_clip's names
    assert set(retrieval_metrics(a, b, (1,), initials=("a", "t"))) == {"t2a_r@1", "a2t_r@1"}
    assert _task().initials == ("a", "t")
    with pytest.raises(ValueError, match="different first letters.*names: \\[audio, text\\]"):
        _task(names=["text", "tokens"])


def test_a_test_run_that_computes_nothing_fails_for_any_towers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="measure nothing"):
        _trainer(tmp_path).test(_task(), datamodule=_data([EvalSplit("", retrieval=False)]))
    with pytest.raises(RuntimeError, match=r"computed no test metric.*split indices \[2\]"):
        _trainer(tmp_path).test(_task(), datamodule=_data([EvalSplit("")], split_of_rows=2))


def test_batches_with_the_older_image_text_keys_are_still_read(tmp_path: Path) -> None:
    data = _data([EvalSplit("")])
    data.splits["train"] = {"image": data.splits["train"]["a"], "text": data.splits["train"]["b"]}
    trainer = _trainer(tmp_path, 1)
    trainer.fit(_task(), datamodule=data)
    assert trainer.global_step == 1
    data.splits["train"] = {"sound": data.splits["train"]["image"], "b": data.splits["train"]["text"]}
    with pytest.raises(KeyError, match=r"roles 'a' and 'b'.*\['b', 'index', 'sound'\]"):
        _trainer(tmp_path, 1).fit(_task(), datamodule=data)
