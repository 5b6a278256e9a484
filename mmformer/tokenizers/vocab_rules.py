"""How large a sentencepiece vocabulary a training text supports (used by :meth:`SentencePieceVocab.train`).

The rule: every learned piece should occur about ``MIN_WORDS_PER_PIECE`` = 150 times in the training
text on average, i.e. ``learned pieces <= running words / 150`` (learned = vocab_size minus the 4 special
ids and, with byte fallback, the 256 byte pieces). A larger vocabulary splits the same text into rarer
pieces whose embeddings see few examples — what a small corpus cannot afford. It is a rule of thumb,
set so that every shipped recipe passes (words per learned piece: translation 8k on WordNet/Apertium
~184, speech 256 ~470, language model 2k ~400, shape captions 128 ~2,000) while e.g. an 8k vocabulary
on ~30k sentence pairs (~75) is flagged. Vocabulary size above the number of *distinct* words is not
flagged by itself: a closed-vocabulary corpus (22 distinct words in the shape captions) trains whole-word
pieces thousands of times each.

When sentencepiece cannot reach the size at all (fewer distinct pieces in the text than asked for),
:func:`training_error` turns its message into one that names the largest size that works.
"""

from __future__ import annotations

import re
from typing import Sequence

MIN_WORDS_PER_PIECE = 150
SPECIAL_IDS = 4  # pad, unk, bos, eos
BYTE_PIECES = 256


def learned_pieces(vocab_size: int, byte_fallback: bool) -> int:
    """Pieces the training text has to supply: ``vocab_size`` minus specials and byte pieces."""
    return vocab_size - SPECIAL_IDS - (BYTE_PIECES if byte_fallback else 0)


def _round_down(n: int) -> int:
    """``n`` rounded down to two significant digits (4,873 → 4,800), for a suggestion."""
    if n < 100:
        return n
    step = 10 ** (len(str(n)) - 2)
    return n // step * step


def suggested_vocab_size(running_words: int, byte_fallback: bool) -> int:
    """The largest (rounded) vocab_size the rule allows for ``running_words`` words of training text."""
    fixed = SPECIAL_IDS + (BYTE_PIECES if byte_fallback else 0)
    return fixed + _round_down(max(8, running_words // MIN_WORDS_PER_PIECE))


def vocab_size_warning(sentences: Sequence[str], vocab_size: int, byte_fallback: bool,
                       model_type: str = "bpe") -> str | None:
    """The warning text when ``vocab_size`` is too large for ``sentences`` by the rule above, else None
    (also when the rule's suggestion would not be smaller: a text too small for any vocabulary)."""
    if model_type == "char":  # its size is the alphabet's, not a choice
        return None
    learned = learned_pieces(vocab_size, byte_fallback)
    running = sum(len(s.split()) for s in sentences)
    suggested = suggested_vocab_size(running, byte_fallback)
    if learned <= 0 or running >= MIN_WORDS_PER_PIECE * learned or suggested >= vocab_size:
        return None  # (the last: a text too small for any vocabulary, nothing smaller to suggest)
    distinct = len({w for s in sentences for w in s.split()})
    return (f"vocab_size={vocab_size} is large for this training text: {running:,} running words "
            f"({distinct:,} distinct) give each of the {learned:,} learned pieces {running / learned:.0f} "
            f"occurrences on average, below the {MIN_WORDS_PER_PIECE} the rule asks for; rare pieces train poor "
            f"embeddings. Consider vocab_size <= {suggested:,} "
            f"(the data's and the model's vocab_size settings together)")


_TOO_HIGH = re.compile(r"Vocabulary size (?:is )?too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_SMALL = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


def training_error(message: str, vocab_size: int, n_sentences: int) -> str:
    """A ValueError message for sentencepiece's training failure ``message``, naming a size that works."""
    detail = message.strip().splitlines()[-1] if message.strip() else message
    if found := _TOO_HIGH.search(message):
        return (f"sentencepiece could not train a {vocab_size}-piece model: the training text "
                f"({n_sentences:,} sentences) supports at most {int(found[2])} pieces; set vocab_size <= "
                f"{int(found[2])} (the data's and the model's vocab_size settings together), or train on more text "
                f"[sentencepiece: {detail[-200:]}]")
    if found := _TOO_SMALL.search(message):
        return (f"sentencepiece could not train a {vocab_size}-piece model: the text's characters and the special "
                f"(and byte) pieces need {int(found[2])} ids; set vocab_size >= {int(found[2])} "
                f"[sentencepiece: {detail[-200:]}]")
    return (f"sentencepiece could not train a {vocab_size}-piece model: {detail[-300:]}. A vocabulary larger than "
            f"the corpus supports, or smaller than its characters (+256 with byte_fallback), fails; change vocab_size")
