"""A DataModule whose ``vocab_size`` is left unset trains the vocabulary rule's size, and the recipe's model,
which takes its vocabulary size from the data, follows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmformer.cli import main
from mmformer.tokenizers.vocab_rules import resolve_vocab_size

ROOT = Path(__file__).resolve().parents[2]
WORDS = "the a red green blue small large cat dog bird sees finds likes near under over".split()


def _sentences(n: int) -> list[str]:
    return [" ".join(WORDS[(i * k + k) % len(WORDS)] for k in range(1, 7)) for i in range(n)]


@pytest.mark.filterwarnings("ignore")
def test_an_unset_vocab_size_trains_the_rules_size_and_the_model_follows(tmp_path: Path) -> None:
    texts = _sentences(300)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    cli = main(["--config", str(ROOT / "tasks" / "language_model.yaml"), "--data.init_args.embedded=null",
                f"--data.init_args.train={train}", "--data.init_args.val=null", "--data.init_args.test=null",
                "--data.init_args.vocab_size=null", f"--data.init_args.data_dir={tmp_path / 'data'}",
                "--trainer.logger=false"], run=False)
    dm = cli.datamodule
    assert dm.vocab_size is None
    dm.prepare_data()
    dm.setup("fit")
    rule = resolve_vocab_size(None, texts, model_type="bpe", byte_fallback=False)
    assert dm.vocab is not None and dm.vocab.vocab_size == rule
    config = cli.model.complete_model_config(dm.data_spec())
    assert config.vocab_size == rule


@pytest.mark.filterwarnings("ignore")
def test_translation_with_an_unset_vocab_size_trains_the_rules_size_per_side(tmp_path: Path) -> None:
    from mmformer.data import TranslationData
    from mmformer.data.readers.text_pairs import read_pairs
    from tests.data.modules.test_translation import toy_tsv

    train, test = toy_tsv(tmp_path / "train.tsv", 600), toy_tsv(tmp_path / "test.tsv", 20, 1)
    dm = TranslationData(train=train, test=test, data_dir=str(tmp_path / "data"), shared_vocab=False, val_size=20)
    dm.prepare_data()
    dm.setup("fit")
    pairs = dm._split("train")  # the training pairs after the held-out validation
    assert dm.source_vocab is not None and dm.vocab is not None
    assert dm.source_vocab.vocab_size == resolve_vocab_size(None, pairs.sources)
    assert dm.vocab.vocab_size == resolve_vocab_size(None, pairs.targets)
    assert dm.data_spec().vocab is dm.vocab and len(read_pairs(train)) == 600


def test_translation_refuses_an_impossible_size_before_reading_the_other_splits(tmp_path: Path) -> None:
    from mmformer.data import TranslationData
    from tests.data.modules.test_translation import toy_tsv

    dm = TranslationData(train=toy_tsv(tmp_path / "train.tsv", 50), val=str(tmp_path / "missing.tsv"),
                         test=str(tmp_path / "missing.tsv"), data_dir=str(tmp_path / "data"), vocab_size=100_000)
    with pytest.raises(ValueError, match="vocab_size=100000 is more than this training text can fill"):
        dm.prepare_data()
