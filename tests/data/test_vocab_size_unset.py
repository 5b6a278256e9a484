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
