"""Seq2SeqTask from an image source (captioning) over role-keyed batches ``{source, target, target_text,
index}``: fit, test (samples name the image, per-word attention over the patch grid) and predict."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from mmformer.backbone import BackboneConfig
from mmformer.data.spec import DataSpec
from mmformer.decoding import GenerationConfig
from mmformer.tasks.optim import OptimConfig
from mmformer.tasks.seq2seq import Seq2SeqTask, describe_source
from mmformer.tokenizers import ImagePatchTokenizer
from mmformer.tokenizers.audio import AudioBatch
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab
from tests.tasks.roles import RoleData
from mmformer.models.config import Seq2SeqConfig

COLORS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


def _captions(n: int, seed: int, vocab: SentencePieceVocab) -> dict:
    """Solid colour squares (one quadrant) with noise; the caption names the colour and the corner."""
    g = torch.Generator().manual_seed(seed)
    color, corner = torch.randint(0, 3, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)
    images = 0.1 * torch.randn(n, 3, 16, 16, generator=g)
    rgb = torch.tensor(list(COLORS.values()))[color]  # (n, 3)
    for i in range(n):
        rows = slice(0, 8) if corner[i] == 0 else slice(8, 16)
        images[i, :, rows, rows] += rgb[i][:, None, None]
    texts = [f"a {list(COLORS)[c]} square {'top' if k == 0 else 'bottom'}" for c, k in zip(color.tolist(), corner.tolist())]
    return {"source": images, "target": vocab.batch(texts, bos=True, eos=True), "target_text": texts}


def test_captioning_from_an_image_source_fits_tests_and_predicts(tmp_path: Path, capsys) -> None:
    words = ["a", "square", "top", "bottom", *COLORS]
    vocab = SentencePieceVocab.train(words * 5, tmp_path / "words", vocab_size=len(words) + 4, model_type="word",
                                     byte_fallback=False)
    test = _captions(8, 1, vocab)
    data = RoleData({"train": _captions(64, 0, vocab), "test": test, "predict": {"source": test["source"][:3]}},
                    DataSpec(vocab=vocab), batch_size=8)
    torch.manual_seed(0)
    task = Seq2SeqTask(Seq2SeqConfig(lambda d: ImagePatchTokenizer(d, image_size=16, patch_size=4, in_chans=3), vocab.vocab_size, backbone=BackboneConfig(dim=32, depth=1, num_heads=2, mlp_ratio=2.0), max_target_len=8), metrics=["bleu"], generation=GenerationConfig("greedy", max_new_tokens=6), num_samples=2, optim=OptimConfig(lr=3e-3))
    trainer = pl.Trainer(max_steps=30, default_root_dir=tmp_path, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(task, datamodule=data)
    (metrics,) = trainer.test(task, datamodule=data, verbose=False)
    assert 0.0 <= metrics["test/bleu"] <= 100.0
    samples = (tmp_path / "samples.txt").read_text()
    assert "source: image 3x16x16 (row 0)\nreference: " + test["target_text"][0] in samples
    for png in ("word_attention.png", "cross_attention.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
    capsys.readouterr()
    trainer.predict(task, datamodule=data)
    rows = [line.split("\t") for line in (tmp_path / "predictions.tsv").read_text().splitlines()]
    assert [r[0] for r in rows] == ["item0", "item1", "item2"]  # index → the data's predict_names
    assert capsys.readouterr().out.splitlines()[-3:] == [r[1] for r in rows]


def test_a_source_without_source_text_is_described_by_kind_size_and_row() -> None:
    index = torch.tensor([7, 9])
    assert describe_source(torch.zeros(2, 1, 28, 28), 1, index) == "image 1x28x28 (row 9)"
    audio = AudioBatch(torch.zeros(2, 800), torch.tensor([800, 400]))
    assert describe_source(audio, 1) == "audio of 400 samples"
    assert describe_source(torch.tensor([[5, 6, 3], [4, 3, 0]]), 1, index) == "4 3 0 (row 9)"  # no vocabulary
