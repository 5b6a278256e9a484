"""ManifestData: batches per field type and role, JSONL = CSV = TSV, resampling, length bucketing, exact
mid-epoch resume, DDP shards, unpadded evaluation, prediction, the data spec and the embedded-builder hook."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torchaudio.functional as AF

from mmformer.data import ManifestData
from mmformer.data.readers.audio import load_audio
from mmformer.tokenizers.audio import AudioBatch
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, UNK_ID
from tests.data.manifests import ALL_FIELDS, COLORS, sample_rows, tone, write_manifest

ROLES = {"input": "image", "label": "label", "source": "audio", "target": "text", "a": "emb", "b": "score"}


def make(tmp_path: Path, n_train: int = 24, n_val: int = 7, suffix: str = ".jsonl", **kwargs: Any) -> ManifestData:
    train = write_manifest(tmp_path / f"train{suffix}", sample_rows(tmp_path, n_train))
    val = write_manifest(tmp_path / f"val{suffix}", sample_rows(tmp_path, n_val, seed=1))
    args: dict[str, Any] = dict(fields=ALL_FIELDS, inputs=ROLES, train=train, val=val,
                                data_dir=str(tmp_path / "data"), vocab_size=40, batch_size=4)
    dm = ManifestData(**{**args, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.mark.filterwarnings("ignore:.*cut")
def test_every_type_batches_to_what_its_role_tokenizer_takes(tmp_path: Path) -> None:
    dm = make(tmp_path)
    rows = sample_rows(tmp_path, 24)
    batch = next(iter(dm.train_dataloader()))
    idx = batch["index"].tolist()
    assert batch["index"].dtype == torch.long and len(idx) == 4
    image = batch["input"]  # solid colours, normalized by 0.5/0.5: each channel is -1 or +1
    assert image.shape == (4, 3, 8, 8) and image.dtype == torch.float32
    for k, i in enumerate(idx):
        want = torch.tensor(COLORS[rows[i]["label"]], dtype=torch.float32) / 255 * 2 - 1
        assert torch.allclose(image[k].mean(dim=(1, 2)), want, atol=1e-6)
    classes = dm.data_spec().class_names
    assert batch["label"].dtype == torch.long and [classes[j] for j in batch["label"]] == [rows[i]["label"] for i in idx]
    audio = batch["source"]
    assert isinstance(audio, AudioBatch) and audio.waveforms.dtype == torch.float32
    want_lengths = [len(load_audio(tmp_path / rows[i]["audio"], 16000)) for i in idx]
    assert audio.lengths.tolist() == want_lengths and audio.waveforms.shape == (4, max(want_lengths))
    assert float(audio.waveforms[audio.lengths.argmin(), audio.lengths.min():].abs().sum()) == 0  # zero-padded
    target = batch["target"]
    assert target.dtype == torch.long and (target[:, 0] == BOS_ID).all()
    assert batch["target_text"] == [rows[i]["text"] for i in idx]
    for k in range(4):  # bos + pieces + eos (max_len 16 cuts long ones, eos kept last), then pad 0
        row = target[k][target[k] != 0].tolist()
        assert row[-1] == EOS_ID
        if len(row) < 16:
            assert dm.vocab.decode([row])[0] == rows[idx[k]]["text"]
    assert UNK_ID in dm.vocab.encode(["a red square"])[0], "the caption field no role reads is not learnt"
    assert batch["a"].dtype == torch.float32 and batch["a"].tolist() == [rows[i]["emb"] for i in idx]
    assert batch["b"].dtype == torch.float32 and batch["b"].tolist() == [rows[i]["score"] for i in idx]


@pytest.mark.filterwarnings("ignore:.*cut")
def test_csv_and_tsv_manifests_give_the_batches_jsonl_gives(tmp_path: Path) -> None:
    batches = []
    for suffix in (".jsonl", ".csv", ".tsv"):
        dm = make(tmp_path, 10, 5, suffix)
        batches.append(dm.datasets["val"][list(range(5))])
    for other in batches[1:]:
        for key, value in batches[0].items():
            if isinstance(value, AudioBatch):
                assert torch.equal(value.waveforms, other[key].waveforms)
            elif isinstance(value, torch.Tensor):
                assert torch.equal(value, other[key]), key
            else:
                assert value == other[key]


def test_audio_at_another_rate_is_resampled_not_refused(tmp_path: Path) -> None:
    rows = [{"clip": tone(tmp_path / f"{r}.wav", 300, 0.25, r), "word": w} for r, w in ((8000, "x"), (22050, "y"))]
    train = write_manifest(tmp_path / "train.jsonl", rows)
    dm = ManifestData(fields={"clip": {"type": "audio", "sample_rate": 16000}, "word": {"type": "label"}},
                      inputs={"input": "clip", "label": "word"}, train=train, data_dir=str(tmp_path / "d"))
    dm.setup("fit")
    audio = dm.datasets["train"][[0, 1]]["input"]
    assert audio.lengths.tolist() == [4000, 4000]  # 0.25 s at 16 kHz, whatever the file's rate
    ref = AF.resample(load_audio(rows[0]["clip"], 8000), 8000, 16000)
    assert torch.allclose(audio.waveforms[0], ref, atol=1e-6)


@pytest.mark.filterwarnings("ignore:.*cut")
def test_bucketing_keeps_every_sample_once_an_epoch_and_groups_similar_lengths(tmp_path: Path) -> None:
    dm = make(tmp_path, n_train=60, batch_size=5, bucket_batches=12)
    lengths = dm.datasets["train"].lengths()  # audio frames: the bucketing key
    for epoch in (0, 1):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        batches = list(loader.sampler)
        assert sorted(i for b in batches for i in b) == list(range(60)) and len(batches) == len(loader)
        padded = sum(len(b) * int(lengths[b].max()) for b in batches)
        shuffled = torch.randperm(60, generator=torch.Generator().manual_seed(epoch)).split(5)
        padded_random = sum(len(b) * int(lengths[b].max()) for b in shuffled)
        assert padded < padded_random, "sorting windows by length pads less than random batches"
    budget = make(tmp_path, n_train=60, max_tokens=120)  # B × longest (10 ms frames) ≤ 120
    batches = list(budget.train_dataloader().sampler)
    assert sorted(i for b in batches for i in b) == list(range(60))
    assert all(len(b) * int(lengths[b].max()) <= 120 or len(b) == 1 for b in batches)


def test_drop_last_keeps_only_full_training_batches(tmp_path: Path) -> None:
    dm = make(tmp_path, n_train=22, inputs={"a": "image", "b": "caption"}, drop_last=True)
    batches = list(dm.train_dataloader())
    assert len(batches) == 5 and all(len(b["index"]) == 4 for b in batches)


class Recorder(pl.LightningModule):
    """Records the rows each training step sees."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[list[int]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch["index"].tolist())
        return self.w * batch["b"].sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:.*dataloader is not resumable", "ignore:.*no `validation_step`",
                            "ignore:.*LeafSpec", "ignore:Checkpoint directory", "ignore:.*cut")
def test_a_run_resumed_from_a_mid_epoch_checkpoint_sees_the_same_batches(tmp_path: Path) -> None:
    fields = {"text": ALL_FIELDS["text"], "score": ALL_FIELDS["score"]}
    args = dict(fields=fields, inputs={"source": "text", "b": "score"}, vocab_size=40, batch_size=4,
                train=write_manifest(tmp_path / "train.jsonl", sample_rows(tmp_path, 24)), data_dir=str(tmp_path / "d"))
    per_epoch, cut_at = 6, 2

    def fit(ckpt: str | None = None) -> Recorder:
        model = Recorder()
        save = pl.callbacks.ModelCheckpoint(tmp_path / "ckpt", "{step}", every_n_train_steps=cut_at, save_top_k=-1)
        trainer = pl.Trainer(max_steps=per_epoch + 3, logger=False, callbacks=[save], enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu")
        trainer.fit(model, datamodule=ManifestData(**args), ckpt_path=ckpt)  # crosses an epoch boundary
        return model

    full = fit()
    assert len(full.seen) == per_epoch + 3 and sorted(sum(full.seen[:per_epoch], [])) == list(range(24))
    rest = fit(str(tmp_path / "ckpt" / f"step={cut_at}.ckpt"))
    assert rest.seen == full.seen[cut_at:]


@pytest.mark.filterwarnings("ignore:.*cut")
def test_ddp_ranks_get_disjoint_training_shards_and_unpadded_evaluation_shards(tmp_path: Path) -> None:
    dm = make(tmp_path, n_train=48, n_val=37)
    seen: dict[str, list[set[int]]] = {"train": [], "val": []}
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)  # what world_of reads
        train = list(dm.train_dataloader().sampler)
        val = [i for b in dm.val_dataloader() for i in b["index"].tolist()]
        assert len(val) == len(set(val)), "no evaluation row is repeated"
        seen["train"].append({i for b in train for i in b})
        seen["val"].append(set(val))
    for split, n in (("train", 48), ("val", 37)):
        assert not seen[split][0] & seen[split][1], split
        assert seen[split][0] | seen[split][1] == set(range(n)), split


@pytest.mark.filterwarnings("ignore:.*cut")
def test_evaluation_reads_every_row_once_with_its_own_values(tmp_path: Path) -> None:
    dm = make(tmp_path, n_val=13)
    rows = sample_rows(tmp_path, 13, seed=1)
    got: dict[int, float] = {}
    for batch in dm.val_dataloader():
        got.update(zip(batch["index"].tolist(), batch["b"].tolist()))
    assert got == {i: r["score"] for i, r in enumerate(rows)}


@pytest.mark.filterwarnings("ignore:.*cut")
def test_predict_reads_only_the_inputs_in_manifest_order_and_names_the_files(tmp_path: Path) -> None:
    rows = [{"image": r["image"], "score": r["score"]} for r in sample_rows(tmp_path, 6, seed=2)]
    predict = write_manifest(tmp_path / "predict.jsonl", rows)  # no label: prediction does not need it
    dm = make(tmp_path, predict=predict, inputs={"input": "image", "label": "label"})
    dm.setup("predict")
    batches = list(dm.predict_dataloader())
    assert [i for b in batches for i in b["index"].tolist()] == list(range(6))
    assert set(batches[0]) == {"input", "index"}
    assert dm.data_spec().predict_names == [str(tmp_path / r["image"]) for r in rows]


def test_data_spec_declares_classes_vocab_prompts_and_zero_shot(tmp_path: Path) -> None:
    fields = {"audio": ALL_FIELDS["audio"], "caption": ALL_FIELDS["caption"],
              "label": {"type": "label", "classes": ["red", "green", "blue", "black"]}}
    dm = make(tmp_path, fields=fields, inputs={"a": "audio", "b": "caption"}, zeroshot={"label": ["a {} square"]},
              test=write_manifest(tmp_path / "test.jsonl", sample_rows(tmp_path, 5, seed=3)))
    spec = dm.data_spec()
    assert spec.class_names is None and len(spec.vocab) == 40  # no `label` role
    batch = dm.datasets["test"][[0, 1, 2]]
    assert torch.equal(spec.tokenize(["a red square", "a green square", "a blue square"]), batch["b"])
    (split,) = spec.eval_splits
    assert split.retrieval and split.zeroshot["label"].classes == ["red", "green", "blue", "black"]
    assert batch["labels"].shape == (3, 1) and batch["labels"][:, 0].tolist() == [0, 1, 2]  # given class order


def test_integer_labels_sort_numerically(tmp_path: Path) -> None:
    rows = [{"x": [float(k)], "y": k} for k in (10, 2, 1, 2)]
    dm = ManifestData(fields={"x": {"type": "vector", "dim": 1}, "y": {"type": "label"}},
                      inputs={"input": "x", "label": "y"}, train=write_manifest(tmp_path / "t.jsonl", rows))
    dm.setup("fit")
    assert dm.data_spec().class_names == ["1", "2", "10"]
    assert dm.datasets["train"][[0, 1, 2, 3]]["label"].tolist() == [2, 1, 0, 1]


def build_toy(data_dir: str | Path = "data") -> dict[str, Path]:
    """A builder the embedded hook calls: writes (once) a train and a test manifest under ``data_dir``."""
    folder = Path(data_dir) / "toy"
    if not (folder / "test.csv").exists():
        write_manifest(folder / "train.csv", sample_rows(folder, 9))
        write_manifest(folder / "test.csv", sample_rows(folder, 3, seed=1))
    return {"train": folder / "train.csv", "test": folder / "test.csv"}


def test_the_embedded_builder_fills_the_splits_left_unset(tmp_path: Path) -> None:
    dm = ManifestData(fields={"image": ALL_FIELDS["image"], "label": ALL_FIELDS["label"]},
                      inputs={"input": "image", "label": "label"}, embedded=f"{__name__}.build_toy",
                      data_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup("test")
    assert len(dm.datasets["test"]) == 3 and dm.data_spec().class_names == ["blue", "green", "red"]
    assert math.isclose(float(next(iter(dm.test_dataloader()))["input"].abs().mean()), 1.0)  # solid colours: every channel is -1 or +1
    assert dm.val_dataloader() == []  # no val manifest: no validation


@pytest.mark.filterwarnings("ignore:.*cut")
def test_the_text_vocabulary_is_trained_once_and_a_given_model_is_used_as_is(tmp_path: Path) -> None:
    dm = make(tmp_path, inputs={"source": "text", "target": "caption"})
    batch = dm.datasets["val"][[0, 1]]
    assert batch["source_text"] == [r["text"] for r in sample_rows(tmp_path, 2, seed=1)]
    assert batch["target_text"] == [r["caption"] for r in sample_rows(tmp_path, 2, seed=1)]
    dm = make(tmp_path, inputs={"input": "text", "label": "label"})
    model = dm.vocab.path
    stamp = model.stat().st_mtime_ns
    again = make(tmp_path, inputs={"input": "text", "label": "label"})
    assert again.vocab.path == model and model.stat().st_mtime_ns == stamp, "the cached model is reused"
    other = make(tmp_path, inputs={"input": "text", "label": "label"}, vocab_model=str(model), vocab_size=12345,
                 data_dir=str(tmp_path / "elsewhere"))
    assert other.vocab.path == model and not (tmp_path / "elsewhere").exists()
    assert torch.equal(other.datasets["val"][[0, 1]]["input"], dm.datasets["val"][[0, 1]]["input"])
