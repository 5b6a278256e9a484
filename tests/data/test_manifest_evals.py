"""ManifestData's extra test manifests (``extra_test``): contrastive test splits beside the main test pool —
the batches' ``split``/``labels`` columns, the data spec, DDP shards, the embedded builder's splits, the
start-up errors, and one ``test`` run measuring what two runs measured before, through ContrastiveTask."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from mmformer.backbone import BackboneConfig
from mmformer.data import ManifestData
from mmformer.data.readers.manifest import ManifestError
from mmformer.tasks.contrastive import ContrastiveTask
from mmformer.tasks.optim import OptimConfig
from mmformer.tokenizers import TextTokenizer
from tests.data.manifests import sample_rows, write_manifest
from tests.tasks.roles import SAMPLE_RATE, audio_tokenizer
from mmformer.models.config import ContrastiveConfig

FIELDS = {"audio": {"type": "audio", "sample_rate": SAMPLE_RATE}, "text": {"type": "text", "max_len": 32}}
KEYWORDS = ["one", "two", "three", "four"]


def word_rows(folder: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """Isolated-word clips: ``text`` and ``keyword`` are the same word (several clips share it)."""
    rows = sample_rows(folder, n, seed=seed, rate=SAMPLE_RATE)
    return [{"audio": r["audio"], "text": KEYWORDS[i % 3], "keyword": KEYWORDS[i % 3]} for i, r in enumerate(rows)]


def manifests(tmp_path: Path, n_test: int = 9, n_words: int = 7) -> dict[str, str]:
    return {"train": write_manifest(tmp_path / "train.jsonl", sample_rows(tmp_path, 24, rate=SAMPLE_RATE)),
            "test": write_manifest(tmp_path / "test.jsonl", sample_rows(tmp_path, n_test, seed=1, rate=SAMPLE_RATE)),
            "words": write_manifest(tmp_path / "words.jsonl", word_rows(tmp_path, n_words, seed=2))}


def words_split(path: str | None, **kw: Any) -> dict[str, Any]:
    return {"words": {"path": path, "retrieval": False, "zeroshot": {"keyword": ["{}", "the word {}"]},
                      "fields": {"keyword": {"type": "label"}}, **kw}}


def make(tmp_path: Path, stage: str = "test", **kw: Any) -> ManifestData:
    paths = manifests(tmp_path)
    args: dict[str, Any] = dict(fields=FIELDS, inputs={"a": "audio", "b": "text"}, train=paths["train"],
                                test=paths["test"], extra_test=words_split(paths["words"]),
                                data_dir=str(tmp_path / "data"), vocab_size=40, batch_size=4)
    dm = ManifestData(**{**args, **kw})
    dm.setup(stage)  # checks the stage's manifests, as prepare_data does under a trainer
    return dm


def test_test_batches_hold_the_main_split_then_the_extra_one_with_split_and_label_columns(tmp_path: Path) -> None:
    dm = make(tmp_path)
    seen: dict[int, list[int]] = {0: [], 1: []}
    for batch in dm.test_dataloader():
        (k,) = set(batch["split"].tolist())  # a batch never mixes splits
        seen[k] += batch["index"].tolist()
        assert batch["labels"].shape == (len(batch["index"]), 1)
        if k == 0:  # the main pool has no keyword: its column is -1
            assert (batch["labels"] == -1).all()
        else:  # the split's own classes, sorted: one=0, three=1, two=2
            assert batch["labels"][:, 0].tolist() == [["one", "three", "two"].index(KEYWORDS[i % 3])
                                                      for i in batch["index"].tolist()]
    assert sorted(seen[0]) == list(range(9)) and sorted(seen[1]) == list(range(7))
    main, words = dm.data_spec().eval_splits
    assert (main.name, main.retrieval, main.zeroshot) == ("", True, {})
    assert words.name == "" and not words.retrieval
    spec = words.zeroshot["keyword"]
    assert (spec.column, list(spec.classes), list(spec.templates)) == (0, ["one", "three", "two"], ["{}", "the word {}"])


def test_the_main_zero_shot_and_each_extra_split_get_their_own_label_columns(tmp_path: Path) -> None:
    fields = {**FIELDS, "label": {"type": "label"}}  # the colour of the main rows
    dm = make(tmp_path, fields=fields, zeroshot={"label": ["a {} square"]},
              extra_test=words_split(str(tmp_path / "words.jsonl"),
                                     fields={"keyword": {"type": "label", "classes": KEYWORDS}}))
    batches = list(dm.test_dataloader())
    main = torch.cat([b["labels"] for b in batches if b["split"][0] == 0])
    words = torch.cat([b["labels"] for b in batches if b["split"][0] == 1])
    assert (main[:, 0] >= 0).all() and (main[:, 1] == -1).all()
    assert (words[:, 0] == -1).all() and set(words[:, 1].tolist()) == {0, 1, 2}  # listed classes: four unused
    zs = [s.zeroshot for s in dm.data_spec().eval_splits]
    assert zs[0]["label"].column == 0 and zs[1]["keyword"].column == 1 and list(zs[1]["keyword"].classes) == KEYWORDS


def test_ddp_ranks_get_disjoint_unpadded_shards_of_every_test_split(tmp_path: Path) -> None:
    dm = make(tmp_path)
    seen = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)  # what world_of reads
        seen.append({(int(s), int(i)) for b in dm.test_dataloader() for s, i in zip(b["split"], b["index"])})
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == {(0, i) for i in range(9)} | {(1, i) for i in range(7)}


def build_words(data_dir: str | Path = "data") -> dict[str, Path]:
    """A builder whose splits include the extra ``words`` manifest."""
    folder = Path(data_dir) / "words"
    paths = manifests(folder)
    return {split: Path(p) for split, p in paths.items()}


def test_an_extra_split_without_a_path_is_the_embedded_builders_split_of_that_name(tmp_path: Path) -> None:
    dm = ManifestData(fields=FIELDS, inputs={"a": "audio", "b": "text"}, embedded=f"{__name__}.build_words",
                      extra_test=words_split(None), data_dir=str(tmp_path), vocab_size=40)
    dm.setup("test")
    assert len(dm.datasets["words"]) == 7
    bad = ManifestData(fields=FIELDS, inputs={"a": "audio", "b": "text"}, embedded=f"{__name__}.build_words",
                       extra_test={"clips": words_split(None)["words"]}, data_dir=str(tmp_path), vocab_size=40)
    with pytest.raises(ManifestError, match=r"extra_test.clips: builder .* returned no 'clips' split"):
        bad.setup("test")


def test_the_embedded_corpus_extra_split_is_left_out_with_a_warning_when_train_replaces_the_corpus(
        tmp_path: Path) -> None:
    """A recipe's builder-filled split (no path) does not apply to one's own manifests: it is not measured, and
    the warning says how to measure it; the recipe's other settings (a main zero-shot field) still hold."""
    with pytest.warns(UserWarning, match=r"extra_test.words is the embedded corpus's 'words' split, but "
                                         r"data.init_args.train replaces that corpus.*set extra_test.words.path"):
        dm = make(tmp_path, embedded=f"{__name__}.build_words", extra_test=words_split(None),
                  fields={**FIELDS, "label": {"type": "label"}}, zeroshot={"label": ["{}"]})
    assert dm.extra == [] and "words" not in dm.datasets
    (main,) = dm.data_spec().eval_splits
    assert set(main.zeroshot) == {"label"} and not (tmp_path / "words").exists(), "the builder did not run"
    assert "split" not in next(iter(dm.test_dataloader()))  # the main test split alone, as without extra_test


@pytest.mark.parametrize("change, message", [
    ({"inputs": {"source": "audio", "target": "text"}, "extra_test": words_split("w.jsonl")}, "contrastive test splits: map inputs to the roles a and b"),
    ({"extra_test": {"words": {"path": "w.jsonl", "weight": 1}}}, r"unknown option\(s\) \['weight'\]"),
    ({"extra_test": {"val": {"path": "w.jsonl"}}}, "'val' is a standard split"),
    ({"extra_test": words_split(None)}, "set path"),
    ({"extra_test": words_split("w.jsonl", fields={"text": {"type": "text"}})}, r"\['text'\] already declared"),
    ({"extra_test": words_split("w.jsonl", zeroshot={"text": ["{}"]})}, "'text' is not a label field"),
    ({"extra_test": words_split("w.jsonl", zeroshot={"keyword": ["word"]})}, "give prompts with {}"),
    ({"extra_test": words_split("w.jsonl", zeroshot={})}, "measures nothing"),
    ({"extra_test": words_split("w.jsonl", retrieval=True)}, r"would log .*a2b_r@1.* give it a metric prefix"),
])
def test_a_wrong_extra_test_fails_at_construction_naming_what_to_fix(change: dict, message: str) -> None:
    args: dict[str, Any] = dict(fields=FIELDS, inputs={"a": "audio", "b": "text"}, train="t.jsonl")
    with pytest.raises(ManifestError, match=message):
        ManifestData(**{**args, **change})


def test_a_bad_row_of_an_extra_manifest_fails_before_training(tmp_path: Path) -> None:
    rows = word_rows(tmp_path, 3, seed=2)
    del rows[1]["keyword"]
    write_manifest(tmp_path / "words.jsonl", rows)
    dm = ManifestData(fields=FIELDS, inputs={"a": "audio", "b": "text"}, test=str(tmp_path / "words.jsonl"),
                      train=write_manifest(tmp_path / "train.jsonl", sample_rows(tmp_path, 8, rate=SAMPLE_RATE)),
                      extra_test=words_split(str(tmp_path / "words.jsonl")), data_dir=str(tmp_path / "d"),
                      vocab_size=40)
    with pytest.raises(ManifestError, match=r"words.jsonl:2.*'keyword'"):
        dm.setup("fit")


def _trainer(tmp_path: Path) -> pl.Trainer:
    return pl.Trainer(max_steps=3, default_root_dir=tmp_path, accelerator="cpu", logger=False,
                      enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0)


def test_one_test_run_measures_the_pool_retrieval_and_the_extra_zero_shot_of_two_runs(tmp_path: Path) -> None:
    """The same weights, tested once with ``extra_test`` and twice the old way (the main pool alone; the words
    manifest as the test split with its own zero-shot labels): the numbers agree, under their names."""
    torch.manual_seed(0)
    task = ContrastiveTask(ContrastiveConfig(audio_tokenizer, lambda d: TextTokenizer(d, vocab_size=40, max_len=32), BackboneConfig(dim=32, depth=1, num_heads=2, mlp_ratio=2.0), embed_dim=16), optim=OptimConfig(lr=3e-3), names=["audio", "text"])
    keyword = {"keyword": {"type": "label", "classes": ["one", "three", "two"]}}
    dm = make(tmp_path, stage="fit", extra_test=words_split(str(tmp_path / "words.jsonl"), fields=keyword))
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule=dm)
    (one_run,) = trainer.test(task, datamodule=dm, verbose=False)
    assert set(one_run) == {f"test/{d}_r@{k}" for d in ("a2t", "t2a") for k in (1, 5, 10)} | {
        "test/zeroshot_keyword_acc"}

    (pool,) = trainer.test(task, datamodule=make(tmp_path, extra_test=None), verbose=False)
    old = make(tmp_path, test=str(tmp_path / "words.jsonl"), extra_test=None, fields={**FIELDS, **keyword},
               zeroshot={"keyword": ["{}", "the word {}"]})
    (words,) = trainer.test(task, datamodule=old, verbose=False)
    for name, value in one_run.items():
        expected = words[name] if "zeroshot" in name else pool[name]
        assert math.isclose(value, expected, abs_tol=1e-6), name
