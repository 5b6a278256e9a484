"""Tiny runs of every DataModule the recipes use, for the resume matrix: each writes its data under a folder
(once; a second call reuses it) and returns the CLI arguments of its recipe shrunk to a 1-layer, width-16
model over a training epoch of 5 batches."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

import numpy as np

from tests.tasks.resume_harness import Case

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "tasks"
TINY = ["--model.init_args.model.backbone.dim=16", "--model.init_args.model.backbone.depth=1",
        "--model.init_args.model.backbone.num_heads=2"]
WORDS = ["red", "green", "blue", "big", "small", "cat", "dog", "bird", "runs", "sits", "sees", "the", "a"]


def _sentences(n: int, seed: int, most: int = 5) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, most))) for _ in range(n)]


def _yaml(path: Path, config: dict) -> str:
    path.write_text(json.dumps(config))  # JSON is YAML
    return str(path)


def images(folder: Path) -> Case:
    """DigitsData (1,294 training images, seeded per-sample augmentation; ResumableSampler): 5 batches of 259."""
    return Case(["--config", str(TASKS / "image_classification_digits.yaml"), *TINY,
                 "--model.init_args.model.tokenizer.init_args.image_size=8",
                 "--model.init_args.model.tokenizer.init_args.stem_channels=[]",
                 "--data.init_args.image_size=8", "--data.init_args.batch_size=259"], epoch_batches=5)


def translation(folder: Path) -> Case:
    """TranslationData from TSV (token-budget batches): 40 toy pairs in 5 batches of at most 104 tokens (a
    300-piece vocabulary: byte fallback needs it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 40, 0), ("test", 4, 1)):
        pairs = [f"{s}\t{' '.join(w.upper() for w in reversed(s.split()))}" for s in _sentences(n, seed)]
        (folder / f"{split}.tsv").write_text("\n".join(pairs) + "\n")
    return Case(["--config", str(TASKS / "translation.yaml"), *TINY,
                 f"--data.init_args.train={folder / 'train.tsv'}",
                 f"--data.init_args.test={folder / 'test.tsv'}",
                 f"--data.init_args.data_dir={folder / 'data'}", "--data.init_args.vocab_size=300",
                 "--data.init_args.max_source_len=16", "--data.init_args.max_target_len=16",
                 "--data.init_args.max_tokens=104", "--data.init_args.val_size=4",
                 "--model.init_args.model.target_vocab_size=300",
                 "--model.init_args.model.source_tokenizer.init_args.vocab_size=300"],
                epoch_batches=5)


def speech(folder: Path) -> Case:
    """SpeechRecognitionData from NeMo manifests of tones (BucketBatchSampler): 20 clips, 5 batches of 4."""
    from tests.data.manifests import tone

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("val", 2), ("test", 2)):
        rows = [{"audio_filepath": tone(folder / f"{split}{i}.wav", 200 + 40 * i, s := float(rng.uniform(0.1, 0.3))),
                 "duration": s, "text": text} for i, text in enumerate(_sentences(n, len(split), 2))]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Case(["--config", str(TASKS / "speech_recognition.yaml"), *TINY,
                 *[f"--data.init_args.{s}={folder / s}.jsonl" for s in ("train", "val", "test")],
                 f"--data.init_args.data_dir={folder / 'data'}", "--data.init_args.units=char",
                 "--data.init_args.batch_size=4", "--model.init_args.model.target_vocab_size=21",
                 "--model.init_args.model.decoder_depth=1", "--model.init_args.model.source_tokenizer.init_args.n_mels=16",
                 "--model.init_args.model.source_tokenizer.init_args.conv_channels=[4,4,4]"], epoch_batches=5)


def captions(folder: Path) -> Case:
    """CsvCaptionData (ManifestData, drop_last: full buckets) from a TSV of PNGs: 20 pairs, 5 batches of 4."""
    from tests.data.manifests import COLORS, png

    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 20), ("val", 4)):
        rows = [(png(folder / f"{split}{i}.png", list(COLORS.values())[i % 3], 8), f"a {list(COLORS)[i % 3]} {w}")
                for i, w in enumerate(_sentences(n, n, 2))]
        (folder / f"{split}.tsv").write_text("filepath\ttitle\n" + "".join(f"{p}\t{c}\n" for p, c in rows))
    data = {"class_path": "mmformer.data.CsvCaptionData", "init_args": {
        "train": str(folder / "train.tsv"), "val": str(folder / "val.tsv"), "data_dir": str(folder / "data"),
        "image_size": 8, "batch_size": 4, "vocab_size": 30, "max_caption_len": 16}}
    return Case(["--config", str(TASKS / "clip.yaml"), *TINY, "--data", _yaml(folder / "data.yaml", data),
                 "--model.init_args.model.tokenizer_a.init_args.image_size=8",
                 "--model.init_args.model.tokenizer_a.init_args.stem_channels=[]",
                 "--model.init_args.model.tokenizer_a.init_args.patch_size=4",
                 "--model.init_args.model.tokenizer_b.init_args.vocab_size=30",
                 "--model.init_args.model.tokenizer_b.init_args.max_len=16", "--model.init_args.model.embed_dim=16"],
                epoch_batches=5)


def manifest(folder: Path) -> Case:
    """ManifestData of a text JSONL (BucketBatchSampler) under the language-model recipe: 40 rows, 5 batches."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 40), ("val", 4)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in _sentences(n, n)))
    return Case(["--config", str(TASKS / "language_model.yaml"), *TINY, "--data.init_args.embedded=null",
                 f"--data.init_args.train={folder / 'train.jsonl'}", f"--data.init_args.val={folder / 'val.jsonl'}",
                 f"--data.init_args.data_dir={folder / 'data'}", "--data.init_args.vocab_size=30",
                 "--data.init_args.batch_size=8", '--data.init_args.fields={"text": {"type": "text", "max_len": 16}}',
                 "--model.init_args.model.vocab_size=30", "--model.init_args.model.max_len=16"], epoch_batches=5)


def trajectories(folder: Path) -> Case:
    """TrajectoryData from a D4RL ``.npz`` (ResumableSampler, drop_last): 75 context-5 segments, 5 batches of 15."""
    from tests.data.shards.test_trajectory_shards import cartpole_npz

    folder.mkdir(parents=True, exist_ok=True)
    npz = cartpole_npz(folder / "d.npz")
    return Case(["--config", str(TASKS / "decision_transformer.yaml"), *TINY, f"--data.init_args.train={npz}",
                 f"--data.init_args.data_dir={folder}", "--data.init_args.context=5", "--data.init_args.batch_size=15",
                 "--data.init_args.val_fraction=0.2", "--data.init_args.eval_episodes=2",
                 "--model.init_args.model.context=5", "--model.init_args.val_episodes=2"], epoch_batches=5)


def multitask(folder: Path) -> Case:
    """MultiTaskData of two DigitsData (each ResumableSampler) under one shared backbone: 2 + 3 = 5 batches."""
    folder.mkdir(parents=True, exist_ok=True)
    child = {"class_path": "mmformer.tasks.ClassificationTask", "init_args": {"model": {
        "tokenizer": {"class_path": "mmformer.tokenizers.ImagePatchTokenizer",
                      "init_args": {"image_size": 8, "patch_size": 4, "in_chans": 1, "cls_token": False}},
        "num_classes": 10}}}
    digits = lambda batch, seed: {"class_path": "mmformer.data.DigitsData",  # noqa: E731
                                  "init_args": {"batch_size": batch, "seed": seed}}
    config = {"seed_everything": 0, "trainer": {"precision": "32-true"},
              "model": {"class_path": "mmformer.tasks.multitask.MultiTaskTask", "init_args": {
                  "tasks": {"even": child, "odd": child},
                  "model": {"backbone": {"dim": 16, "depth": 1, "num_heads": 2, "causal": True}}}},
              "data": {"class_path": "mmformer.data.MultiTaskData", "init_args": {
                  "datamodules": {"even": digits(650, 0), "odd": digits(432, 1)}, "sampling": "proportional",
                  "seed": 5}}}
    return Case(["--config", _yaml(folder / "multitask.yaml", config)], epoch_batches=5,
                workers=[f"--data.init_args.datamodules.{t}.init_args.num_workers={{n}}" for t in ("even", "odd")])


def shards(folder: Path) -> Case:
    """ImageFolderData read from ``mmformer prepare`` shards (ResumableSampler over shard chunks): 18 images, 5
    batches of 4."""
    from mmformer.data.shards.prepare import prepare
    from tests.data.shards.test_image_shards import image_folder

    if not (folder / "shards").exists():
        prepare("imagefolder", image_folder(folder / "src"), folder / "shards", chunk_bytes="2KB", progress=False)
    data = {"class_path": "mmformer.data.ImageFolderData", "init_args": {
        "shards": str(folder / "shards"), "image_size": 8, "channels": 3, "batch_size": 4, "val_fraction": 0.25,
        "seed": 3, "chunk_window": 2}}
    return Case(["--config", str(TASKS / "image_classification.yaml"), *TINY,
                 "--data", _yaml(folder / "data.yaml", data), "--model.init_args.model.tokenizer.init_args.image_size=8",
                 "--model.init_args.model.tokenizer.init_args.in_chans=3",
                 "--model.init_args.model.tokenizer.init_args.stem_channels=[]", "--model.init_args.model.num_classes=2"],
                epoch_batches=5)


CASES: dict[str, Callable[[Path], Case]] = {
    "images": images, "translation": translation, "speech": speech, "captions": captions, "manifest": manifest,
    "trajectories": trajectories, "multitask": multitask, "shards": shards,
}
