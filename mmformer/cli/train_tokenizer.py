"""``mmformer train-tokenizer``: trains a sentencepiece model (mmformer's special ids) on text files.

    mmformer train-tokenizer --input corpus.en corpus.es --output data/spm/enes --vocab-size 8000

Plain text files give one sentence per line (blank lines skipped); ``.tsv`` and ``.jsonl`` files
give both sides of their pairs (see :mod:`mmformer.data.readers.text_pairs`). Writes ``<output>.model``
(and ``<output>.json``, the fingerprint that lets a rerun on the same inputs return at once).
Byte fallback is on, so characters never seen in training still encode.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator, Sequence

from mmformer.data.readers.text_pairs import JSONL_SUFFIXES, TSV_SUFFIXES, read_pairs
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab


def read_texts(paths: Sequence[str], src_key: str = "src", tgt_key: str = "tgt") -> Iterator[str]:
    """Sentences of ``paths``: lines of text files, both sides of TSV/JSONL pairs."""
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"--input {path} does not exist")
        if path.suffix.lower() in TSV_SUFFIXES + JSONL_SUFFIXES:
            pairs = read_pairs(str(path), src_key, tgt_key)
            yield from pairs.sources
            yield from pairs.targets
        else:
            with open(path, encoding="utf-8") as f:
                yield from (line.strip() for line in f if line.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmformer train-tokenizer",
        description="Train a sentencepiece model (pad=0, unk=1, bos=2, eos=3, byte fallback) on text files.")
    parser.add_argument("--input", nargs="+", required=True, metavar="FILE",
                        help="text files (one sentence a line) and/or .tsv/.jsonl parallel files (both sides used)")
    parser.add_argument("--output", required=True, metavar="PREFIX", help="writes PREFIX.model and PREFIX.json")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="pieces in the vocabulary (default: the size the vocabulary rule gives the text)")
    parser.add_argument("--model-type", choices=["bpe", "unigram", "char", "word"], default="bpe",
                        help="sentencepiece algorithm (default bpe)")
    parser.add_argument("--src-key", default="src", help="JSONL source key (default src)")
    parser.add_argument("--tgt-key", default="tgt", help="JSONL target key (default tgt)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (errors in the inputs print a message and return 2)."""
    args = build_parser().parse_args(argv)
    if args.vocab_size is not None and args.vocab_size < 8:
        print(f"mmformer train-tokenizer: error: --vocab-size must be at least 8, got {args.vocab_size}",
              file=sys.stderr)
        return 2
    try:
        vocab = SentencePieceVocab.train(read_texts(args.input, args.src_key, args.tgt_key), args.output,
                                         args.vocab_size, args.model_type)
    except (FileNotFoundError, ValueError) as err:
        print(f"mmformer train-tokenizer: error: {err}", file=sys.stderr)
        return 2
    print(f"{vocab.path} ({vocab.vocab_size} pieces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
