"""``tasks/generalist.yaml`` runs from YAML as shipped with tiny overrides: one shared backbone fits 3 steps
over all four tasks (Fashion-MNIST, translation on a toy pair file, speech on tone manifests, CartPole with a
few generated episodes), then ``test`` from the checkpoint logs every task's metrics as ``test/<task>/<metric>``; ``predict`` runs one
task; ``mmformer export`` writes the one model, whose reload gives the same outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import torch

from mmformer.cli import main
from mmformer.data.readers.audio import write_wav
from mmformer.cli.export import export_model, load_exported
from tests.data.modules.test_translation import toy_tsv

ROOT = Path(__file__).resolve().parents[2]
FMNIST = Path("/usr/share/datasets/fashion-mnist")
M, D = "--model.init_args", "--data.init_args"
TINY = [f"{M}.model.backbone.dim=32", f"{M}.model.backbone.depth=1", f"{M}.model.backbone.num_heads=2",
        f"{M}.model.backbone.mlp_ratio=2.0"]


def _speech_manifest(folder: Path, name: str, texts: list[str]) -> str:
    lines = []
    for i, text in enumerate(texts):
        t = np.arange(int(0.3 * 16000)) / 16000
        write_wav(folder / f"{name}{i}.wav", 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t), 16000)
        lines.append(json.dumps({"audio_filepath": f"{name}{i}.wav", "duration": 0.3, "text": text}))
    (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder / f"{name}.jsonl")


def _overrides(tmp: Path) -> list[str]:
    words = ["hello world", "old hero", "low tide", "tiny world", "hello there", "red hat"]
    speech = {s: _speech_manifest(tmp, s, words) for s in ("train", "val", "test")}
    pairs = {s: toy_tsv(tmp / f"{s}.tsv", n, i) for i, (s, n) in enumerate((("train", 200), ("val", 16), ("test", 8)))}
    tr, sp, ctl = f"{D}.datamodules.translation.init_args", f"{D}.datamodules.speech.init_args", \
        f"{D}.datamodules.control.init_args"
    return [
        *TINY,
        f"{M}.tasks.fmnist.init_args.model.tokenizer.init_args.stem_channels=[8]",
        f"{M}.tasks.fmnist.init_args.model.tokenizer.init_args.stem_convs_per_stage=1",
        f"{M}.tasks.fmnist.init_args.model.tokenizer.init_args.patch_size=16",  # the recipe reads 32x32 images
        f"{M}.tasks.translation.init_args.model.vocab_size=300",
        f"{M}.tasks.translation.init_args.model.prefix_tokenizer.init_args.vocab_size=300",
        f"{M}.tasks.translation.init_args.generation.strategy=greedy",
        f"{M}.tasks.translation.init_args.generation.max_new_tokens=5",
        f"{M}.tasks.speech.init_args.model.vocab_size=17",
        f"{M}.tasks.speech.init_args.model.prefix_tokenizer.init_args.conv_channels=[8,8,8]",
        f"{M}.tasks.speech.init_args.model.prefix_tokenizer.init_args.n_mels=16",
        f"{M}.tasks.speech.init_args.generation.beam_size=2",  # the recipe's hybrid CTC/attention beam
        f"{M}.tasks.speech.init_args.generation.max_new_tokens=5",
        f"{M}.tasks.control.init_args.val_episodes=1",
        f"{M}.tasks.control.init_args.target_returns=[50]",
        f"{M}.tasks.control.init_args.val_targets=[50]",
        f"{D}.datamodules.fmnist.init_args.batch_size=16",
        f"{tr}.train={pairs['train']}", f"{tr}.val={pairs['val']}", f"{tr}.test={pairs['test']}",
        f"{tr}.data_dir={tmp / 'data'}", f"{tr}.vocab_size=300", f"{tr}.max_tokens=256", f"{tr}.batch_size=8",
        f"{sp}.train={speech['train']}", f"{sp}.val={speech['val']}",
        f"{sp}.test={speech['test']}", f"{sp}.data_dir={tmp / 'data'}", f"{sp}.units=char",
        f"{sp}.vocab_size=32", f"{sp}.batch_size=3",
        f"{ctl}.data_dir={tmp / 'data'}", f"{ctl}.embedded.init_args.episodes_per_level=2", f"{ctl}.eval_episodes=2",
        f"{ctl}.batch_size=8",
        "--trainer.max_steps=3", "--trainer.val_check_interval=3", "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1", "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
        "--trainer.max_time=null", f"--trainer.default_root_dir={tmp / 'runs'}",
    ]


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Fashion-MNIST (Debian's dataset-fashion-mnist) is not installed")
def test_generalist_fits_three_steps_and_tests_every_task(tmp_path: Path) -> None:
    args = ["--config", str(ROOT / "tasks" / "generalist.yaml"), *_overrides(tmp_path)]
    fitted = main(["fit", *args])
    task = fitted.model
    assert fitted.trainer.global_step == 3
    assert all(child.model.backbone is task.model.backbone for child in task.tasks.values())
    logged = fitted.trainer.callback_metrics
    assert {"val/fmnist/acc", "val/translation/ppl", "val/speech/ppl", "val/control/loss"} <= set(logged)
    ckpt = fitted.trainer.checkpoint_callback.last_model_path

    tested = main(["test", *args, "--ckpt_path", ckpt])
    metrics = tested.trainer.callback_metrics
    for name in ("test/fmnist/acc", "test/translation/bleu", "test/translation/ppl", "test/speech/wer",
                 "test/control/return@50"):
        assert math.isfinite(float(metrics[name])), name
    assert not [k for k in metrics if "dataloader_idx" in k]

    predicted = main(["predict", *args, "--ckpt_path", ckpt, f"{D}.predict_tasks=[control]"])
    assert predicted.trainer.predict_loop.predictions  # the control task's returns

    exported = load_exported(export_model(ROOT / "tasks" / "generalist.yaml", ckpt, tmp_path / "export",
                                          *_overrides(tmp_path)))
    images = torch.randn(2, 1, 32, 32)  # the recipe resizes Fashion-MNIST to 32x32
    assert all(m.backbone is exported.backbone for m in exported.models.values())
    torch.testing.assert_close(exported("fmnist", images), tested.model.model.eval()("fmnist", images))
