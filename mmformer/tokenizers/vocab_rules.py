"""How large a sentencepiece vocabulary a training text supports (used by :meth:`SentencePieceVocab.train`).

**The rule.** Every learned piece should occur about ``MIN_WORDS_PER_PIECE`` = 150 times in the training
text on average, i.e. ``learned pieces <= running words / 150`` (learned = vocab_size minus the fixed ids:
the 4 special ids, the user symbols and, with byte fallback, the 256 byte pieces). A larger vocabulary
splits the same text into rarer pieces whose embeddings see few examples — what a small corpus cannot
afford. It is a rule of thumb, set so that every shipped recipe passes (words per learned piece: translation
8k on WordNet/Apertium ~184, speech 256 ~470, language model 2k ~400, shape captions 128 ~2,000) while e.g.
an 8k vocabulary on ~30k sentence pairs (~75) is flagged. Vocabulary size above the number of *distinct*
words is not flagged by itself: a closed-vocabulary corpus (22 distinct words in the shape captions) trains
whole-word pieces thousands of times each.

**The size chosen when none is given** (``vocab_size=None``, :func:`resolve_vocab_size`): the rule's
suggestion, ``fixed ids + running words / 150`` rounded down to two significant digits (at least 8 learned
pieces), then clamped: never below what sentencepiece requires (the text's characters + the fixed ids),
never above what BPE surely forms from the text (its distinct two-character pieces and whole words, see
:class:`TextStats`) nor above ``MAX_RULE_VOCAB`` = 32,000. ``char`` models take the characters + fixed ids;
``word`` models at most one piece per distinct word. :meth:`SentencePieceVocab.train` trains a chosen size as
a ceiling (sentencepiece's ``hard_vocab_limit`` off): a ``unigram`` model, whose pruning keeps fewer pieces
than BPE forms on a small text, then has what the text gave (printed), not an error.

**Sizes no text can train** are refused before sentencepiece runs (:func:`check_vocab_size`), from bounds
computed on the normalized text (sentencepiece's ``nmt_nfkc``, words split at whitespace):

- smallest: characters + fixed ids (below it sentencepiece fails: every character must be a piece);
- largest: characters + fixed ids + every distinct substring of 2..16 characters inside one word (no BPE
  merge or unigram piece can be anything else; ``word`` models: one piece per distinct word). It is an upper
  bound: sentencepiece may reach fewer, and :func:`training_error` turns that later failure into an error
  naming the largest size that works.

A size between the two that the rule finds too large trains with a warning (:func:`vocab_size_warning`);
its suggestion is never below the smallest size, so the advice never contradicts the error.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

MIN_WORDS_PER_PIECE = 150
SPECIAL_IDS = 4  # pad, unk, bos, eos
BYTE_PIECES = 256
MIN_RULE_PIECES = 8  # the rule's suggestion never goes below this many learned pieces
MAX_RULE_VOCAB = 32_000  # nor above this vocabulary size
MAX_PIECE_CHARS = 16  # sentencepiece's max_sentencepiece_length (its default, which train() keeps)
_WS = "\u2581"  # sentencepiece's whitespace mark: each word of the normalized text starts with it


def learned_pieces(vocab_size: int, byte_fallback: bool) -> int:
    """Pieces the training text has to supply: ``vocab_size`` minus specials and byte pieces."""
    return vocab_size - SPECIAL_IDS - (BYTE_PIECES if byte_fallback else 0)


def fixed_ids(byte_fallback: bool, user_symbols: Sequence[str] = ()) -> int:
    """Ids every vocabulary holds whatever the text: specials, user symbols, byte pieces."""
    return SPECIAL_IDS + len(set(user_symbols)) + (BYTE_PIECES if byte_fallback else 0)


def _round_down(n: int) -> int:
    """``n`` rounded down to two significant digits (4,873 → 4,800), for a suggestion."""
    if n < 100:
        return n
    step = 10 ** (len(str(n)) - 2)
    return n // step * step


def suggested_vocab_size(running_words: int, byte_fallback: bool, fixed: int | None = None) -> int:
    """The largest (rounded) vocab_size the rule allows for ``running_words`` words of training text
    (``fixed``: the fixed ids, default specials + bytes); not yet clamped to what the text needs."""
    fixed = fixed_ids(byte_fallback) if fixed is None else fixed
    return fixed + _round_down(max(MIN_RULE_PIECES, running_words // MIN_WORDS_PER_PIECE))


def _script(c: str) -> str | None:
    """A character's writing system as far as a piece may not mix them (approximated from its Unicode name;
    kana and ideographs count as one, as in sentencepiece); None for what is neither a letter nor a digit."""
    if c.isdigit():
        return "digit"
    if not c.isalpha():
        return None
    name = unicodedata.name(c, "?").split()[0]
    return "han" if name in ("CJK", "HIRAGANA", "KATAKANA") else name


@dataclass(frozen=True)
class TextStats:
    """What the rule and the bounds read from a training text (normalized as sentencepiece does)."""

    sentences: int
    running_words: int  # whitespace-separated words with repeats (the rule's measure)
    words: frozenset[str]  # distinct normalized words, each with its leading ▁
    alphabet: frozenset[str]  # characters sentencepiece makes pieces of (▁ included): all at character_coverage 1
    fixed: int  # special ids + user symbols + byte pieces
    user_symbols: int  # distinct user symbols (among the fixed ids)
    sampled: bool  # more sentences than sentencepiece reads (max_sentences): the character count may be high

    @cached_property
    def _scripts(self) -> dict[str, str | None]:
        return {c: _script(c) for c in self.alphabet}

    def _can_form(self, piece: str) -> bool:
        """Whether ``piece`` (after a leading ▁) is alphabet letters of one script or digits: a piece BPE forms."""
        body = piece[1:] if piece.startswith(_WS) else piece
        scripts = {self._scripts.get(c) for c in body}
        return len(scripts) == 1 and None not in scripts

    def formed(self, limit: int) -> int:
        """Learned pieces BPE surely forms when asked for them: every distinct two-character piece of a word
        (all are merge candidates from the start) and every whole word (merged to one piece), where a piece
        may hold them (one script, at most 16 characters); counting stops past ``limit``."""
        pieces: set[str] = set()
        for w in self.words:
            if 2 < len(w) <= MAX_PIECE_CHARS and self._can_form(w):
                pieces.add(w)
            pieces.update(w[i:i + 2] for i in range(len(w) - 1) if self._can_form(w[i:i + 2]))
            if len(pieces) > limit:
                break
        return len(pieces)

    @property
    def chars(self) -> int:
        return len(self.alphabet)

    @property
    def whole_words(self) -> int:
        """Distinct words a ``word`` model keeps (those without a character left out of the alphabet)."""
        return sum(1 for w in self.words if self.alphabet.issuperset(w))

    def formable(self, limit: int) -> int:
        """Distinct substrings of 2..16 characters inside one word (▁ only in front): an upper bound on the
        pieces any sentencepiece algorithm learns; counting stops past ``limit``."""
        seen: set[str] = set()
        for w in self.words:
            for i in range(len(w) - 1):
                seen.update(w[i:j] for j in range(i + 2, min(len(w), i + MAX_PIECE_CHARS) + 1))
            if len(seen) > limit:
                break
        return len(seen)


def _normalize(sentences: Sequence[str]) -> list[str]:
    import sentencepiece as spm  # here, not at import: the rules module stays light

    return spm.SentencePieceNormalizer(rule_name="nmt_nfkc").normalize(list(sentences))


def text_stats(sentences: Sequence[str], byte_fallback: bool = True, user_symbols: Sequence[str] = (),
               character_coverage: float = 1.0, max_sentences: int = 2_000_000) -> TextStats:
    """The counts of ``sentences`` (stripped, non-empty) the rule and the bounds use; no training.

    Each distinct whitespace-separated word is normalized on its own (sentencepiece's ``nmt_nfkc`` maps
    characters one by one and whitespace to ▁, so this is the text's normalization, done once per word)."""
    running = " ".join(sentences).split()
    counts = Counter(running) if character_coverage < 1.0 else dict.fromkeys(running, 1)
    raw = list(counts)
    normalized = _normalize(raw)  # "▁word" each (a compatibility character may normalize to more words)
    words = {_WS + w for n in normalized for w in n.split(_WS) if w}  # (a word model keeps user symbols in words)
    if user_symbols:  # sentencepiece cuts user symbols out of the text before it counts characters
        cut = re.compile("|".join(re.escape(s) for s in sorted(set(user_symbols), key=len, reverse=True)))
        normalized = [cut.sub(" ", n) for n in normalized]
    if character_coverage >= 1.0:  # every character
        alphabet = set("".join(normalized))
    else:  # sentencepiece's coverage walk: the most frequent characters until they cover that share
        chars: Counter[str] = Counter()
        for word, n in zip(raw, normalized):
            for c in n:
                chars[c] += counts[word]
        chars.pop(" ", None)
        alphabet, covered, total = set(), 0, sum(chars.values())
        for c, count in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0])):
            if total and covered / total >= character_coverage:
                break
            alphabet.add(c)
            covered += count
    alphabet.discard(" ")
    return TextStats(len(sentences), len(running), frozenset(words), frozenset(alphabet),
                     fixed_ids(byte_fallback, user_symbols), len(set(user_symbols)), len(sentences) > max_sentences)


@dataclass(frozen=True)
class SizeRange:
    """The vocabulary sizes a text allows, for one sentencepiece algorithm."""

    smallest: int  # below: sentencepiece refuses
    largest: int | None  # above: no model can fill it (an upper bound); None: no limit (char models shrink)
    rule: int  # the size chosen when none is given (module docstring)


def size_range(stats: TextStats, model_type: str = "bpe") -> SizeRange:
    """:class:`SizeRange` of ``stats`` for ``model_type``."""
    suggested = suggested_vocab_size(stats.running_words, False, stats.fixed)
    if model_type == "char":
        return SizeRange(stats.fixed + 1, None, stats.fixed + stats.chars)
    if model_type == "word":
        largest = stats.fixed + len(stats.words) + stats.user_symbols  # (sentencepiece adds ▁<symbol> words)
        rule = max(stats.fixed + 1, min(suggested, stats.fixed + stats.whole_words, MAX_RULE_VOCAB))
        return SizeRange(stats.fixed + 1, largest, rule)
    smallest = stats.fixed + stats.chars
    ceiling = min(suggested, MAX_RULE_VOCAB)
    rule = max(smallest, min(ceiling, smallest + stats.formed(ceiling - smallest)))
    return SizeRange(smallest, None, rule)


def _largest(stats: TextStats, model_type: str, vocab_size: int) -> int | None:
    """The upper bound on the vocabulary size, counted only as far as ``vocab_size`` needs."""
    if model_type == "char":
        return None
    if model_type == "word":
        return size_range(stats, model_type).largest
    base = stats.fixed + stats.chars
    return base + stats.formable(vocab_size - base)


def _clean(texts: Iterable[str]) -> list[str]:
    return [t.strip() for t in texts if t and t.strip()]


def check_vocab_size(vocab_size: int, texts: Iterable[str] | TextStats, model_type: str = "bpe",
                     byte_fallback: bool = True, user_symbols: Sequence[str] = (), character_coverage: float = 1.0,
                     max_sentences: int = 2_000_000) -> None:
    """Raises ValueError (one line, naming a size that works) when no ``model_type`` vocabulary of
    ``vocab_size`` pieces can be trained on ``texts``; cheap (no training). Call it before slow work."""
    stats = texts if isinstance(texts, TextStats) else text_stats(
        _clean(texts), byte_fallback, user_symbols, character_coverage, max_sentences)
    sizes = size_range(stats, model_type)
    largest = _largest(stats, model_type, vocab_size)
    kinds = ["special"] + ["user-symbol"] * bool(user_symbols) + ["byte"] * byte_fallback
    fixed = f"the {stats.fixed} {', '.join(kinds[:-1]) + ' and ' if len(kinds) > 1 else ''}{kinds[-1]} ids"
    if vocab_size < sizes.smallest and not stats.sampled:
        what = (f"its {stats.chars} distinct characters and {fixed}" if model_type in ("bpe", "unigram")
                else f"{fixed} and one piece")
        raise ValueError(f"vocab_size={vocab_size} is too small for this training text: {what} need "
                         f"{sizes.smallest}; set vocab_size >= {sizes.smallest} (or leave it unset: this text's rule "
                         f"gives {sizes.rule})")
    if largest is not None and vocab_size > largest:
        what = ("one piece per distinct word" if model_type == "word"
                else "its characters, every piece of 2..16 characters inside a word")
        raise ValueError(f"vocab_size={vocab_size} is more than this training text can fill: its "
                         f"{stats.sentences:,} sentences ({len(stats.words):,} distinct words) form at most "
                         f"{largest} pieces ({what} and {fixed}); set vocab_size={sizes.rule} (the rule's size for "
                         f"{stats.running_words:,} running words; or leave it unset), never above {largest}, or "
                         f"train on more text")


def resolve_vocab_size(vocab_size: int | None, texts: Iterable[str] | TextStats, model_type: str = "bpe",
                       byte_fallback: bool = True, user_symbols: Sequence[str] = (), character_coverage: float = 1.0,
                       max_sentences: int = 2_000_000) -> int:
    """``vocab_size`` checked (:func:`check_vocab_size`), or when None the rule's size for ``texts``
    (module docstring), reported once on stderr."""
    stats = texts if isinstance(texts, TextStats) else text_stats(
        _clean(texts), byte_fallback, user_symbols, character_coverage, max_sentences)
    if vocab_size is not None:
        check_vocab_size(vocab_size, stats, model_type, byte_fallback, user_symbols, character_coverage, max_sentences)
        return vocab_size
    size = size_range(stats, model_type).rule
    rule = ("the characters + fixed ids" if model_type == "char" else
            f"learned pieces <= running words / {MIN_WORDS_PER_PIECE}, at least the characters + {stats.fixed} fixed "
            f"ids, at most what the text forms and {MAX_RULE_VOCAB:,}")
    print(f"vocab_size not set: chose {size} for {stats.running_words:,} running words (rule: {rule})",
          file=sys.stderr)
    return size


def rule_exceeded(sentences: Sequence[str] | TextStats, vocab_size: int, byte_fallback: bool,
                  model_type: str = "bpe") -> bool:
    """Whether ``vocab_size`` asks for more learned pieces than the rule gives ``sentences`` (cheap: word counts)."""
    if model_type == "char":  # its size is the alphabet's, not a choice
        return False
    running = (sentences.running_words if isinstance(sentences, TextStats)
               else sum(len(s.split()) for s in sentences))
    learned = learned_pieces(vocab_size, byte_fallback)
    return learned > 0 and running < MIN_WORDS_PER_PIECE * learned


def vocab_size_warning(sentences: Sequence[str] | TextStats, vocab_size: int, byte_fallback: bool,
                       model_type: str = "bpe") -> str | None:
    """The warning text when ``vocab_size`` is too large for ``sentences`` by the rule above, else None
    (also when nothing smaller would be allowed: the characters alone need ``vocab_size`` ids)."""
    if not rule_exceeded(sentences, vocab_size, byte_fallback, model_type):
        return None
    running = (sentences.running_words if isinstance(sentences, TextStats)
               else sum(len(s.split()) for s in sentences))
    learned = learned_pieces(vocab_size, byte_fallback)
    stats = sentences if isinstance(sentences, TextStats) else text_stats(sentences, byte_fallback)
    suggested = size_range(stats, model_type).rule
    if suggested >= vocab_size:
        return None  # the smallest size the text allows: nothing smaller to suggest
    floor = stats.fixed + (stats.chars if model_type in ("bpe", "unigram") else 1)
    if suggested == floor and running < MIN_WORDS_PER_PIECE * (floor - stats.fixed):
        advice = (f"no size meets the rule on this text (its characters alone need vocab_size >= {floor}); "
                  f"use vocab_size={floor}, train on more text, or use model_type='char'")
    else:
        advice = f"consider vocab_size <= {suggested:,} (the data's and the model's vocab_size settings together)"
    return (f"vocab_size={vocab_size} is large for this training text: {running:,} running words "
            f"({len(stats.words):,} distinct) give each of the {learned:,} learned pieces {running / learned:.0f} "
            f"occurrences on average, below the {MIN_WORDS_PER_PIECE} the rule asks for; rare pieces train poor "
            f"embeddings. {advice[0].upper()}{advice[1:]}")


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
