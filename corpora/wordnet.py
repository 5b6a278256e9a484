"""Natural English sentences from WordNet's database files: glosses and example sentences.

Every synset line of ``data.{noun,verb,adj,adv}`` ends with ``| gloss``: definitions separated by
``;`` and quoted example sentences, e.g.
``| obstruct or hinder any discussion; "Nixon stonewalled the Watergate investigation"``.
Definitions keep WordNet's casing (they are lowercase phrases); examples are the quoted text, as
written (usually capitalized sentences). Attributions after a quote (``"..."--Thomas Paine``) are
dropped. Whitespace is normalized to single spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from mmformer.data.readers.text_pairs import normalize_space

WORDNET_DIR = "/usr/share/wordnet"
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")

_QUOTED_OR_PLAIN = re.compile(r'"([^"]*)"|([^;"]+)')  # a quoted example, or a run of plain gloss text


@dataclass(frozen=True)
class WordNetSentence:
    """One sentence of a gloss.

    Args:
        text: the sentence, whitespace-normalized.
        example: True for a quoted example sentence, False for a definition.
        synset: ``<pos>:<offset>`` of the synset it came from (for tracing).
    """

    text: str
    example: bool
    synset: str


def dedup_key(text: str) -> str:
    """What makes two sentences "the same" for de-duplication: case, spacing and final ``.!?`` ignored."""
    return normalize_space(text).lower().rstrip(".!? ")


def split_gloss(gloss: str) -> list[tuple[str, bool]]:
    """A gloss → ``[(text, is_example), ...]`` in order.

    Quoted parts are examples (a ``;`` inside quotes stays in the example); plain text is split on
    ``;`` into definitions; plain fragments that start with ``-`` (attributions such as
    ``--Thomas Paine``) are dropped.
    """
    out: list[tuple[str, bool]] = []
    for quoted, plain in _QUOTED_OR_PLAIN.findall(gloss):
        if quoted:
            text = normalize_space(quoted)
            if text:
                out.append((text, True))
            continue
        for piece in plain.split(";"):
            text = normalize_space(piece)
            if text and not text.startswith("-"):
                out.append((text, False))
    return out


def parse_data_lines(lines: Iterable[str], pos: str) -> Iterator[WordNetSentence]:
    """Synset lines of one ``data.<pos>`` file → its sentences. License lines (leading spaces) are skipped."""
    for line in lines:
        if line.startswith(" ") or "|" not in line:
            continue
        offset, _, rest = line.partition(" ")
        gloss = rest.split("|", 1)[1]
        for text, example in split_gloss(gloss):
            yield WordNetSentence(text, example, f"{pos}:{offset}")


def read_wordnet(
    wordnet_dir: str | Path = WORDNET_DIR,
    min_words: int = 4,
    max_words: int = 25,
    parts_of_speech: Sequence[str] = PARTS_OF_SPEECH,
) -> list[WordNetSentence]:
    """All glosses and examples of ``min_words``–``max_words`` words, de-duplicated by text (first kept).

    Args:
        wordnet_dir: folder holding ``data.noun`` etc. (Debian's ``wordnet-base``).
        min_words, max_words: sentence length range in whitespace-separated words, both inclusive.
        parts_of_speech: which ``data.<pos>`` files to read.

    Returns:
        Sentences in file order (noun, verb, adj, adv), each text once — texts that differ only in
        case, whitespace or final ``.!?`` count as one, so no sentence can land in two splits; when
        a text is both a definition and an example somewhere, its first occurrence decides.
    """
    root = Path(wordnet_dir)
    seen: set[str] = set()
    out: list[WordNetSentence] = []
    for pos in parts_of_speech:
        path = root / f"data.{pos}"
        if not path.is_file():
            raise FileNotFoundError(
                f"WordNet file {path} is missing; install Debian's wordnet-base (`apt-get install wordnet-base`) "
                f"or pass the folder holding data.{{noun,verb,adj,adv}}"
            )
        with open(path, encoding="utf-8", errors="replace") as f:
            for s in parse_data_lines(f, pos):
                key = dedup_key(s.text)
                if min_words <= len(s.text.split()) <= max_words and key not in seen:
                    seen.add(key)
                    out.append(s)
    return out
