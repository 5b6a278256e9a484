"""The decoder-only recipes run from YAML as shipped (``tasks/language_model.yaml``,
``tasks/image_prefix_captioning.yaml``) with one override file: tiny sizes, 3 steps and this test's
manifests. fit → test (``test/ppl`` and the captioner's text metrics logged) → predict (the language
model continues prompts; the captioner writes one caption per image)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from mmformer.backbone import BackboneConfig
from mmformer.cli import main
from mmformer.decoding import GenerationConfig, generate
from mmformer.tasks.prefix_lm import PrefixLMTask
from mmformer.tokenizers.text import TextTokenizer
from tests.data.manifests import sample_rows, write_manifest
from mmformer.models.config import PrefixLMConfig

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--trainer.max_steps=3", "--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false", "--trainer.val_check_interval=3"]
TINY = {"dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0}
SPLITS = {"train": (36, 0), "val": (12, 1), "test": (12, 2)}  # rows, seed


def _write(folder: Path) -> None:
    for split, (n, seed) in SPLITS.items():
        write_manifest(folder / f"{split}.jsonl", sample_rows(folder, n, seed=seed))
    write_manifest(folder / "prompts.jsonl", [{"text": "one two"}, {"text": "three"}])


def _override(folder: Path, vocab: int, model: dict[str, Any], generation: dict[str, Any]) -> dict[str, Any]:
    paths = {split: str(folder / f"{split}.jsonl") for split in SPLITS}
    return {"model": {"init_args": {"model": {"backbone": TINY, "vocab_size": vocab, **model},
                                    "generation": generation}},
            "data": {"init_args": {**paths, "data_dir": str(folder / "data"), "batch_size": 12,
                                   "vocab_size": vocab}}}


def _run(args: list[str]) -> Any:
    return main([*args, *FAST])


@pytest.mark.parametrize("recipe", ["language_model", "image_prefix_captioning"])
def test_recipe_fits_tests_and_predicts(recipe: str, tmp_path: Path) -> None:
    _write(tmp_path)
    if recipe == "language_model":  # the manifests' number words as the text
        model: dict[str, Any] = {}
        data = {"fields": {"text": {"type": "text", "max_len": 16}}}
        generation = {"strategy": "sample", "top_k": 5, "top_p": 0.9, "max_new_tokens": 6}
        metrics = ["test/ppl"]
    else:
        model = {"prefix_tokenizer": {"init_args": {"image_size": 16, "stem_channels": [8], "patch_size": 8}}}
        data = {"fields": {"image": {"type": "image", "size": 16}, "caption": {"type": "text", "max_len": 16}}}
        generation = {"strategy": "greedy", "max_new_tokens": 6}
        metrics = ["test/ppl", "test/bleu", "test/exact"]
    override = _override(tmp_path, 24, model, generation)
    override["data"]["init_args"].update(data)
    override["model"]["init_args"]["model"]["max_len"] = 16
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    common = ["--config", str(ROOT / "tasks" / f"{recipe}.yaml"), "--config", str(tmp_path / "override.yaml"),
              "--trainer.default_root_dir", str(tmp_path / "runs")]

    fitted = _run(["fit", *common])
    logged = fitted.trainer.callback_metrics
    assert fitted.trainer.global_step == 3 and math.isfinite(float(logged["val/ppl"]))
    if recipe == "language_model":  # the bigram baseline beside the model's perplexity
        assert 1.0 < float(logged["val/ppl_bigram"]) < 24
    ckpt = fitted.trainer.checkpoint_callback.last_model_path

    tested = _run(["test", *common, "--ckpt_path", ckpt])
    for name in metrics:
        assert math.isfinite(float(tested.trainer.callback_metrics[name])), name

    if recipe == "language_model":  # prompts from a manifest of their own, mapped to the prompt role
        extra = ["--data.init_args.predict", str(tmp_path / "prompts.jsonl"),
                 "--data.init_args.inputs", "{target: text, prompt: text}"]
        predicted = _run(["predict", *common, "--ckpt_path", ckpt, *extra])
        lines = (Path(predicted.trainer.log_dir) / "predictions.tsv").read_text().splitlines()
        texts = [line.split("\t")[1] for line in lines]
        assert len(texts) == 2 and texts[0].startswith("one two") and texts[1].startswith("three")
    else:
        predicted = _run(["predict", *common, "--ckpt_path", ckpt])
        lines = (Path(predicted.trainer.log_dir) / "predictions.tsv").read_text().splitlines()
        assert len(lines) == SPLITS["test"][0]


def test_samples_show_a_text_source_as_its_sentence() -> None:
    """Translation batches carry ``source_text``: samples print the sentence, not the source's piece ids."""
    task = PrefixLMTask(PrefixLMConfig(16, prefix_tokenizer=lambda d: TextTokenizer(d, 16), backbone=BackboneConfig(**TINY)))
    ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    assert task._sample_line({"source": ids, "source_text": ["the cat", "a dog"]}, 1, "un perro") == "a dog → un perro"
    assert task._sample_line({"source": ids}, 1, "un perro") == "1 7 2 0 → un perro"  # no sentences: the ids


def test_vaswani_embedding_scales_the_shared_prefix_table() -> None:
    """``text_scale`` with a shared prefix table: source and target tokens enter at unit size (std D^-0.5 x sqrt(D))."""
    torch.manual_seed(0)
    task = PrefixLMTask(PrefixLMConfig(500, prefix_tokenizer=lambda d: TextTokenizer(d, 500, scale=True), backbone=BackboneConfig(dim=64, depth=1, num_heads=4), text_positions="none", text_scale=True, share_prefix_embedding=True))
    text, prefix = task.model.tokenizer, task.model.prefix_tokenizer
    assert prefix.embed.weight is text.embed.weight
    assert abs(float(text.embed.weight[1:].std()) - 0.125) < 0.005  # 64^-0.5; trunc_normal cuts at +-2
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(text(ids).tokens, text.embed.weight[ids] * 8.0)
    plain = PrefixLMTask(PrefixLMConfig(500, backbone=BackboneConfig(dim=64, depth=1, num_heads=4)))
    assert abs(float(plain.model.tokenizer.embed.weight[1:].std()) - 0.02) < 0.002  # GPT's default kept


@pytest.mark.parametrize("prefix_scale", [True, False])
def test_a_shared_prefix_table_with_two_scales_is_refused(prefix_scale: bool) -> None:
    with pytest.raises(ValueError, match="one shared table needs one scale.*text_scale"):
        PrefixLMTask(PrefixLMConfig(20, prefix_tokenizer=lambda d: TextTokenizer(d, 20, scale=prefix_scale), backbone=BackboneConfig(dim=32, depth=1, num_heads=2), share_prefix_embedding=True, text_scale=not prefix_scale))


def test_validation_decoding_stops_at_the_generation_length_limit() -> None:
    """Validation decodes greedily but within ``generation``'s length limit (max_len_a * source + max_len_b),
    as the test's decoding does; it used to run every row to max_new_tokens."""
    torch.manual_seed(0)
    gen = GenerationConfig(strategy="beam", max_new_tokens=12, max_len_a=0.0, max_len_b=3)
    task = PrefixLMTask(PrefixLMConfig(16, prefix_tokenizer=lambda d: TextTokenizer(d, 16), backbone=BackboneConfig(**TINY)), generation=gen).eval()
    with torch.no_grad():
        prefix = task.model.encode(torch.tensor([[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]]))
        unlimited = generate(task.model, None, GenerationConfig(strategy="greedy", max_new_tokens=12), memory=prefix)
        limited = generate(task.model, None, task.val_generation, memory=prefix)
    assert (unlimited != 0).sum(1).max() > 3  # without the limit a row runs past 3 tokens
    assert (limited != 0).sum(1).max() <= 3
