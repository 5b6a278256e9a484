"""The language-model recipe's embedded default: the English side of the WordNet/Apertium corpus as
one-field manifests, ``{"text": "an absurdly rich young woman"}`` per line.

The sentences and their train/val/test split are exactly the translation corpus's
(:func:`~corpora.apertium.build_wordnet_corpus`: ~85k training sentences, WordNet glosses
and examples; validation and test are 1,000 example sentences each, none shared with training), so the
language model and the translation recipe read the same English. Output, in
``data/english_text_<hash>/``: ``train.jsonl  val.jsonl  test.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

from corpora.apertium import build_wordnet_corpus
from corpora.manifests import build_once, cache_folder, write_jsonl
from mmformer.data.readers.text_pairs import read_pairs

SPLITS = ("train", "val", "test")


def build(data_dir: str | Path = "data") -> dict[str, Path]:
    """Builds (once) the English manifests from the translation corpus (built first if missing, which takes
    a few minutes once); returns ``{"train"|"val"|"test": manifest path}``.

    Args:
        data_dir: where both the corpus and the manifests are cached.
    """
    corpus = build_wordnet_corpus(data_dir)
    settings = {"v": 1, "corpus": corpus.name}

    def make(tmp: Path, _final: Path) -> dict:
        stats = {}
        for split in SPLITS:
            sentences = read_pairs(str(corpus / f"{split}.tsv")).sources
            stats[split] = {"sentences": write_jsonl(tmp / f"{split}.jsonl", ({"text": s} for s in sentences))}
        return stats

    return build_once(cache_folder(data_dir, "english_text", settings), SPLITS, make, settings)


__all__ = ["build"]
