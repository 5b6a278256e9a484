"""Packed vs padded training steps on the translation and speech recipes' real batches.

For each recipe (``tasks/translation.yaml``, ``tasks/speech_recognition.yaml``) the model is built from
the recipe's ``model.init_args`` (tokenizer, backbone, decoder depth, CTC weight, label smoothing) and the
batches come from the recipe's DataModule over its embedded corpus (under ``data/``), the first few
training batches of epoch 0. One step = the task's loss (``Seq2SeqTask._losses``, under the recipe's
precision) + backward, padded vs packed (``pack_len`` tokens a row; the packed step includes planning
the rows on the host). Both steps compute the same loss (printed: the max difference). Speed is
real (source + target) tokens per second; warm-up, interleaved rounds with rotated order, medians.

Run:
    OMP_NUM_THREADS=1 .venv/bin/python bench/packing.py            # a few minutes on a 2-core CPU
    OMP_NUM_THREADS=1 .venv/bin/python bench/packing.py --smoke    # tiny models, synthetic batches, seconds

Lines ``<recipe>: ratio vs padded: X`` with X = packed tokens/s / padded tokens/s (> 1: packing is faster).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from common import interleaved_times
from mmformer.backbone import BackboneConfig
from mmformer.tasks.seq2seq import Seq2SeqTask
from mmformer.tokenizers.audio import AudioBatch, AudioTokenizer
from mmformer.tokenizers.text import TextTokenizer
from mmformer.models.config import Seq2SeqConfig

ROOT = Path(__file__).resolve().parents[1]
MODEL_ARGS = ("target_vocab_size", "decoder_depth", "max_target_len", "share_source_embedding", "target_positions")
TASK_ARGS = ("label_smoothing", "ctc_weight")


def _load(path: Path) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)


def recipe_task(recipe: dict[str, Any]) -> Seq2SeqTask:
    """The recipe's Seq2SeqTask (model only: no metrics beyond one, default generation and optimizer)."""
    args = recipe["model"]["init_args"]
    model = args["model"]
    tok = model["source_tokenizer"]
    module, name = tok["class_path"].rsplit(".", 1)
    cls, tok_args = getattr(importlib.import_module(module), name), tok.get("init_args", {})
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(lambda d: cls(d, **tok_args), backbone=BackboneConfig(**model["backbone"]),
                        **{k: model[k] for k in MODEL_ARGS if k in model})
    return Seq2SeqTask(cfg, metrics=["wer"], **{k: args[k] for k in TASK_ARGS if k in args})


def recipe_batches(recipe: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The first ``n`` training batches of the recipe's DataModule (embedded corpus under data/)."""
    data = recipe["data"]
    module, name = data["class_path"].rsplit(".", 1)
    dm = getattr(importlib.import_module(module), name)(**data.get("init_args", {}))
    dm.prepare_data()
    dm.setup("fit")
    batches = []
    for batch in dm.train_dataloader():
        batches.append(batch)
        if len(batches) == n:
            return batches
    return batches


def smoke_cases() -> dict[str, tuple[Seq2SeqTask, list[dict[str, Any]], int, bool]]:
    """Tiny models on synthetic batches shaped like each recipe's (lengths vary inside a batch)."""
    g = torch.Generator().manual_seed(0)
    v = 64
    cfg = BackboneConfig(dim=32, depth=1, num_heads=2)

    def ids(lens: torch.Tensor, bos: bool) -> torch.Tensor:
        out = torch.zeros(len(lens), int(lens.max()), dtype=torch.long)
        for i, n in enumerate(lens.tolist()):
            out[i, :n] = torch.randint(3, v, (n,), generator=g)
            out[i, 0], out[i, n - 1] = (1 if bos else out[i, 0]), 2
        return out

    text = [{"source": ids(torch.randint(4, 20, (24,), generator=g), False),
             "target": ids(torch.randint(4, 20, (24,), generator=g), True)} for _ in range(2)]
    lengths = torch.randint(2000, 8000, (8,), generator=g)
    wave = torch.randn(8, 8000, generator=g) * 0.1 * (torch.arange(8000) < lengths[:, None])
    audio = [{"source": AudioBatch(wave, lengths), "target": ids(torch.randint(4, 12, (8,), generator=g), True)}]
    torch.manual_seed(0)
    translation = Seq2SeqTask(Seq2SeqConfig(lambda d: TextTokenizer(d, v, max_len=32), v, cfg, max_target_len=32))
    speech = Seq2SeqTask(Seq2SeqConfig(lambda d: AudioTokenizer(d, n_mels=16, conv_channels=(4, 4)), v, cfg, max_target_len=32), ctc_weight=0.3)
    return {"translation": (translation, text, 40, False), "speech": (speech, audio, 64, False)}


def real_tokens(task: Seq2SeqTask, batch: dict[str, Any]) -> int:
    """Source tokens (after the tokenizer) + target tokens the decoder reads."""
    src = task.model.source_tokenizer.token_counts(batch["source"])
    return int(src.sum()) + int((batch["target"][:, :-1] != 0).sum())


def compare(name: str, task: Seq2SeqTask, batches: list[dict[str, Any]], pack_len: int, bf16: bool,
            repeats: int, warmup: int) -> float:
    """Prints tokens/s of both paths and ``ratio vs padded``; returns the ratio."""
    task.train()
    tokens = sum(real_tokens(task, b) for b in batches)

    def loss(batch: dict[str, Any]) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return task._losses(batch)[0]

    def step(pack: bool) -> Callable[[], None]:
        def run() -> None:
            for b in batches:
                batch = task.on_before_batch_transfer({**b, "pack_len": pack_len}, 0) if pack else b
                loss(batch).backward()
                task.zero_grad(set_to_none=True)
        return run

    with torch.no_grad():  # same function: same loss (SpecAugment off for the check)
        task.eval()
        b0 = batches[0]
        diff = (loss(b0) - loss(task.on_before_batch_transfer({**b0, "pack_len": pack_len}, 0))).abs().item()
        task.train()
    plans = [task.on_before_batch_transfer({**b, "pack_len": pack_len}, 0)["packing"] for b in batches]
    cells = sum(len(p[0].length) * (int(p[0].length.max()) + b["target"].shape[1] - 1) for p, b in zip(plans, batches))
    packed_cells = sum(p[0].rows * (p[0].width + p[1].width) for p in plans)
    rows = sum(p[0].rows for p in plans)
    n = sum(b["target"].shape[0] for b in batches)
    times = interleaved_times({"padded": step(False), "packed": step(True)}, repeats, warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["padded"] / med["packed"]
    print(f"{name}: {len(batches)} batches, {n} samples in {rows} packed rows (pack_len {pack_len}), "
          f"{tokens} real tokens in {cells} padded / {packed_cells} packed cells; loss diff {diff:.1e}")
    print(f"{name}: tokens/s padded {tokens / med['padded']:.0f}, packed {tokens / med['packed']:.0f}")
    print(f"{name}: ratio vs padded: {ratio:.2f}")
    return ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny models on synthetic batches (seconds)")
    p.add_argument("--batches", type=int, default=6, help="training batches per recipe")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--translation-pack-len", type=int, default=128)
    p.add_argument("--speech-pack-len", type=int, default=256)
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if a.smoke:
        for name, (task, batches, pack_len, bf16) in smoke_cases().items():
            compare(name, task, batches, pack_len, bf16, repeats=2, warmup=1)
        return
    for name, path, pack_len in (("translation", "tasks/translation.yaml", a.translation_pack_len),
                                 ("speech", "tasks/speech_recognition.yaml", a.speech_pack_len)):
        recipe = _load(ROOT / path)
        bf16 = recipe.get("trainer", {}).get("precision") == "bf16-mixed"
        compare(name, recipe_task(recipe), recipe_batches(recipe, a.batches), pack_len, bf16, a.repeats, 1)


if __name__ == "__main__":
    main()
