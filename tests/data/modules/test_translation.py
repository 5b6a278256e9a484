"""TranslationData: batch contract, parity with on-the-fly encoding, token budgets, exact resume, DDP shards."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from mmformer.data.common.batching import EvalBatchSampler, TokenBudgetBatchSampler, token_budget_batches
from mmformer.data.common.ids import Ragged
from mmformer.data.modules.translation import TranslationData
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, pad_rows

WORDS = "the a cat dog sees runs big small house red blue green eats and with".split()


def toy_tsv(path: Path, n: int = 400, seed: int = 0, max_words: int = 14) -> str:
    """A toy language pair: the target is the source upper-cased and reversed word by word."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            src = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, max_words)))
            f.write(f"{src}\t{' '.join(w.upper() for w in reversed(src.split()))}\n")
    return str(path)


@pytest.fixture
def dm(tmp_path: Path) -> TranslationData:
    data = TranslationData(train=toy_tsv(tmp_path / "train.tsv"), test=toy_tsv(tmp_path / "test.tsv", 50, 1),
                           data_dir=str(tmp_path / "data"), vocab_size=300, max_tokens=200, batch_size=16)
    data.setup()
    return data


def test_ragged_pad_matches_the_reference_padding() -> None:
    rows = [[5, 6, 7], [], [8], [9, 10, 11, 12]]
    r = Ragged(rows)
    idx = torch.tensor([3, 0, 2])
    assert torch.equal(r.pad(idx), pad_rows([rows[3], rows[0], rows[2]]))


def test_batches_follow_the_contract_and_equal_on_the_fly_encoding(dm: TranslationData) -> None:
    assert dm.vocab is dm.source_vocab and dm.vocab_size == 300
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"source", "target", "source_text", "target_text", "id"}
    src, tgt = batch["source"], batch["target"]
    assert src.dtype == tgt.dtype == torch.long and len(batch["id"]) == src.shape[0] == tgt.shape[0]
    assert torch.equal(src, dm.source_vocab.batch(batch["source_text"], bos=False, eos=True, max_len=128))
    assert torch.equal(tgt, dm.vocab.batch(batch["target_text"], bos=True, eos=True, max_len=128))
    assert (tgt[:, 0] == BOS_ID).all() and ((src == EOS_ID).sum(1) == 1).all()
    assert dm.vocab.decode(tgt) == batch["target_text"]
    lines = Path(dm.train_path).read_text().splitlines()  # ids are the rows of the file
    rows = zip(batch["id"], batch["source_text"], batch["target_text"])
    assert all(lines[int(i) - 1] == f"{s}\t{t}" for i, s, t in rows)


def test_held_out_validation_shares_no_source_with_training(dm: TranslationData) -> None:
    train, val = dm.datasets["train"].pairs, dm.datasets["val"].pairs
    assert len(val) == 40 and not set(train.sources) & set(val.sources)
    assert len(train) + len(val) <= 400


def test_token_budget_holds_and_epoch_zero_covers_every_pair_once() -> None:
    lengths = torch.randint(3, 40, (500,))
    batches = token_budget_batches(lengths, 256, torch.Generator().manual_seed(0), chunk=100)
    assert all(len(b) * int(lengths[b].max()) <= 256 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(500))
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    assert lengths.sum() / padded > 0.8, "length bucketing keeps padding low"


def test_train_order_depends_only_on_seed_and_epoch_and_resumes_mid_epoch() -> None:
    lengths = torch.randint(3, 40, (300,))
    s = TokenBudgetBatchSampler(lengths, 256, seed=5)
    s.set_epoch(1)
    torch.manual_seed(123)  # the global RNG plays no part
    full = list(s)
    again = TokenBudgetBatchSampler(lengths, 256, seed=5)
    again.set_epoch(1)
    assert list(again) == full and len(full) == len(s)
    again.set_epoch(2)
    assert list(again) != full
    resumed = TokenBudgetBatchSampler(lengths, 256, seed=5)
    resumed.resume_at(1, 4)
    resumed.set_epoch(1)
    assert list(resumed) == full[4:]
    assert list(resumed) == full, "the resume point applies once"


def test_ddp_ranks_get_disjoint_equally_long_shards() -> None:
    lengths = torch.randint(3, 40, (301,))
    ranks = [TokenBudgetBatchSampler(lengths, 256, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    b0, b1 = list(ranks[0]), list(ranks[1])
    assert len(b0) == len(b1) == len(ranks[0])
    assert not {i for b in b0 for i in b} & {i for b in b1 for i in b}
    evals = [EvalBatchSampler(101, 8, lengths[:101], num_replicas=2, rank=r) for r in (0, 1)]
    seen = [i for s in evals for b in s for i in b]
    assert sorted(seen) == list(range(101)), "eval shards are disjoint and unpadded"
    assert all(lengths[b[0]] >= lengths[b[-1]] for s in evals for b in s), "longest first"


@pytest.mark.filterwarnings("ignore:.*truncated")  # the other side and split warn too
def test_truncation_right_cuts_and_warns_error_names_the_row(tmp_path: Path) -> None:
    path = toy_tsv(tmp_path / "long.tsv", 200, max_words=30)
    kw = dict(train=path, data_dir=str(tmp_path / "data"), vocab_size=300, max_source_len=10, max_target_len=12)
    cut = TranslationData(**kw)
    with pytest.warns(UserWarning, match=r"truncated \d+ source\(s\) to max_source_len=10"):
        cut.setup("fit")
    ds = cut.datasets["train"]
    assert ds.source.lengths.max() == 10 and ds.target.lengths.max() == 12
    batch = ds[list(range(len(ds)))]
    assert ((batch["source"] == EOS_ID).sum(1) == 1).all() and ((batch["target"] == EOS_ID).sum(1) == 1).all()
    with pytest.raises(ValueError, match=r"long.tsv, row \d+: the source has \d+ pieces, more than max_source_len=10"):
        TranslationData(**kw, truncation="error").setup("fit")


def test_bad_settings_are_explained() -> None:
    with pytest.raises(ValueError, match="truncation must be 'right' or 'error'"):
        TranslationData(truncation="left")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tokens=64 cannot hold one pair"):
        TranslationData(max_tokens=64, max_source_len=128)


def test_separate_vocabularies_encode_each_side_with_its_own_model(tmp_path: Path) -> None:
    data = TranslationData(train=toy_tsv(tmp_path / "t.tsv"), data_dir=str(tmp_path / "data"), vocab_size=300,
                           shared_vocab=False)
    data.setup("fit")
    assert data.vocab is not data.source_vocab and data.vocab.path != data.source_vocab.path
    batch = next(iter(data.val_dataloader()))
    assert data.source_vocab.decode(batch["source"]) == batch["source_text"]
    assert data.vocab.decode(batch["target"]) == batch["target_text"]


def test_predict_batches_keep_input_order_and_have_no_target(dm: TranslationData, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("the cat runs\n\nbig red house ÿ\n")
    dm.predict_path = str(tmp_path / "in.txt")
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert set(batch) == {"source", "source_text", "id"} and batch["id"] == ["1", "2", "3"]
    assert dm.source_vocab.decode(batch["source"]) == ["the cat runs", "", "big red house ÿ"]  # byte fallback


def test_embedded_corpus_fills_every_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, n in (("train", 300), ("val", 20), ("test", 30)):
        toy_tsv(corpus / f"{split}.tsv", n, seed=len(split))
    calls = []

    def build(data_dir: Path) -> dict[str, Path]:  # a builder as a recipe names one: data_dir -> split paths
        calls.append(data_dir)
        return {split: corpus / f"{split}.tsv" for split in ("train", "val", "test")}

    data = TranslationData(embedded=build, data_dir=str(tmp_path / "data"), vocab_size=300, limit_train=100)
    data.prepare_data()
    data.setup()
    assert {k: len(v) for k, v in data.datasets.items()} == {"train": 100, "val": 20, "test": 30}
    assert calls == [tmp_path / "data"], "the builder runs once, into data_dir"


class Recorder(pl.LightningModule):
    """Records the ids of every training batch; one parameter so there is something to step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[list[str]] = []

    def training_step(self, batch: dict, i: int) -> torch.Tensor:
        self.seen.append(batch["id"])
        return self.w * batch["source"].float().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:.*dataloader is not resumable", "ignore:.*no `validation_step`",
                            "ignore:.*LeafSpec", "ignore:Checkpoint directory")  # the DataModule resumes it
def test_a_run_resumed_from_a_mid_epoch_checkpoint_sees_the_same_batches(dm: TranslationData, tmp_path: Path) -> None:
    per_epoch = len(dm.train_dataloader())
    assert per_epoch % 2 == 0, "the toy data has an even number of batches per epoch"
    cut_at = per_epoch // 2

    def fit(data: TranslationData, ckpt: str | None = None) -> Recorder:
        model = Recorder()
        save = pl.callbacks.ModelCheckpoint(tmp_path / "ckpt", "{step}", every_n_train_steps=cut_at, save_top_k=-1)
        trainer = pl.Trainer(max_steps=per_epoch + 5, logger=False, callbacks=[save], enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
        trainer.fit(model, datamodule=data, ckpt_path=ckpt)  # crosses an epoch boundary
        return model

    full = fit(dm)
    for step in (cut_at, 2 * cut_at):  # a checkpoint written mid-epoch 0, and one at its last batch
        fresh = TranslationData(train=dm.train_path, data_dir=dm.data_dir, vocab_size=300, max_tokens=200)
        rest = fit(fresh, str(tmp_path / "ckpt" / f"step={step}.ckpt"))
        assert rest.seen == full.seen[step:], step


def test_jsonl_and_parallel_files_feed_the_splits_and_a_missing_test_split_is_explained(tmp_path: Path) -> None:
    import json

    rows = [line.split("\t") for line in Path(toy_tsv(tmp_path / "t.tsv", 300)).read_text().splitlines()]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"en": s, "es": t}) + "\n" for s, t in rows))
    (tmp_path / "val.en").write_text("the cat runs\nbig red house\n")
    (tmp_path / "val.es").write_text("RUNS CAT THE\nHOUSE RED BIG\n")
    data = TranslationData(train=str(tmp_path / "train.jsonl"), src_key="en", tgt_key="es",
                           val=[str(tmp_path / "val.en"), str(tmp_path / "val.es")],
                           data_dir=str(tmp_path / "data"), vocab_size=300)
    data.setup("fit")
    assert len(data.datasets["train"]) == 300
    assert data.datasets["val"].pairs.targets == ["RUNS CAT THE", "HOUSE RED BIG"]
    with pytest.raises(ValueError, match="no test data: set data.init_args.test"):
        data.setup("test")


@pytest.mark.parametrize("split", ["train", "val", "test"])
@pytest.mark.filterwarnings("ignore:.*skipped")
def test_an_empty_split_fails_in_setup_naming_the_file(tmp_path: Path, split: str) -> None:
    paths = {s: toy_tsv(tmp_path / f"{s}.tsv", 100, i) for i, s in enumerate(("train", "val", "test"))}
    Path(paths[split]).write_text("\n\n" if split == "val" else "")  # blank lines count as empty too
    data = TranslationData(train=paths["train"], val=paths["val"], test=paths["test"],
                           data_dir=str(tmp_path / "data"), vocab_size=100)
    stage = "test" if split == "test" else "fit"
    with pytest.raises(ValueError, match=rf"{split}.tsv: the {split} split has no pairs .*data.init_args.{split}\b"):
        data.setup(stage)


def test_a_training_file_too_small_to_hold_out_validation_is_explained(tmp_path: Path) -> None:
    data = TranslationData(train=toy_tsv(tmp_path / "tiny.tsv", 8), data_dir=str(tmp_path / "data"),
                           vocab_size=60)
    with pytest.raises(ValueError, match=r"tiny.tsv \(held-out validation\): .*too small to hold out .*data.init_args.val"):
        data.setup("fit")
