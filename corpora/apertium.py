"""The embedded translation corpus: WordNet sentences translated English→Spanish by Apertium, cached.

:func:`translate` runs the ``apertium`` command over many sentences in chunks (in parallel
processes), one sentence per paragraph (a blank line between sentences, so Apertium's multi-word
rules never move words from one sentence into the next), and checks that every sentence gets
exactly one translation. :func:`build_wordnet_corpus` turns WordNet's
glosses and examples into train/val/test TSV files under ``data/``, keyed by a hash of the settings,
so a second call returns at once. Policies (documented in :func:`build_wordnet_corpus`):

- outputs carrying Apertium's marks for unknown words (``*``), generation errors (``#``) or
  transfer errors (``@``) are dropped, so every kept target is a full translation;
- a target's first letter takes the case of the source's first letter (Apertium capitalizes a line
  that follows a line ending in ``.``, which would make casing depend on the neighbouring line);
- whitespace is normalized; sources keep WordNet's casing (definitions lowercase, examples as written).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from corpora.wordnet import WORDNET_DIR, normalize_space, read_wordnet

UNKNOWN_MARKS = ("*", "#", "@")  # Apertium: unknown word, generation error, transfer error
BUILD_VERSION = 2  # bump when the corpus recipe changes, so old caches are not reused


def check_apertium(pair: str = "eng-spa") -> None:
    """Raises naming the Debian packages when ``apertium`` or the language pair is missing."""
    if shutil.which("apertium") is None:
        raise FileNotFoundError(
            f"the `apertium` command is not installed; install Debian's apertium and apertium-{pair} "
            f"(`apt-get install apertium apertium-{pair}`), or pass your own data with data.init_args.train_path"
        )
    pairs = subprocess.run(["apertium", "-l"], capture_output=True, text=True).stdout.split()
    if pair not in pairs:
        raise FileNotFoundError(
            f"apertium has no {pair} translator (it has: {', '.join(pairs) or 'none'}); install Debian's "
            f"apertium-{pair} (`apt-get install apertium-{pair}`)"
        )


def _run_apertium(lines: Sequence[str], pair: str) -> list[str]:
    """One ``apertium`` process over ``lines``; bisects when its output has a different line count."""
    if not lines:
        return []
    # One sentence per paragraph: a blank line between sentences stops Apertium's multi-word rules
    # from reordering words across a plain line break ("...in the food guide\ntwist" would become
    # "...en el giro de\nguía alimentario").
    done = subprocess.run(["apertium", pair], input="\n\n".join(lines) + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"apertium {pair} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    out = [p.replace("\n", " ") for p in re.split(r"\n\s*\n", done.stdout.strip("\n"))] if done.stdout.strip() else []
    if len(out) == len(lines):
        return out
    if len(lines) == 1:  # a single sentence split over several lines: join them
        return [" ".join(out)]
    half = len(lines) // 2  # a merge/split somewhere: translate the halves apart to keep alignment
    return _run_apertium(lines[:half], pair) + _run_apertium(lines[half:], pair)


def match_first_letter_case(source: str, target: str) -> str:
    """Gives ``target``'s first letter the case of ``source``'s first letter (if both start with letters)."""
    if not source or not target or not source[0].isalpha() or not target[0].isalpha():
        return target
    first = target[0].upper() if source[0].isupper() else target[0].lower()
    return first + target[1:]


def translate(
    sentences: Sequence[str], pair: str = "eng-spa", chunk_size: int = 2000, jobs: int = 2, progress: bool = True,
) -> list[str]:
    """Translates each sentence with Apertium; the output list aligns with the input.

    Args:
        sentences: one sentence each; inner newlines and tabs become spaces.
        pair: Apertium translation direction.
        chunk_size: sentences per ``apertium`` process.
        jobs: processes run at once (each is itself a pipeline of a few processes).
        progress: report progress on stderr.

    Returns:
        Whitespace-normalized translations, Apertium's unknown-word marks kept (see :func:`has_marks`).
    """
    check_apertium(pair)
    lines = [normalize_space(s) for s in sentences]
    size = max(1, min(chunk_size, -(-len(lines) // max(1, jobs))))  # small inputs: one chunk per job
    chunks = [lines[i: i + size] for i in range(0, len(lines), size)]
    results: list[list[str]] = [[] for _ in chunks]
    start, done, last = time.perf_counter(), 0, -1.0
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {pool.submit(_run_apertium, chunk, pair): i for i, chunk in enumerate(chunks)}
        for fut in futures:  # in submission order: progress is monotone and failures surface early
            results[futures[fut]] = fut.result()
            done += len(chunks[futures[fut]])
            elapsed = time.perf_counter() - start
            if progress and (elapsed - last >= 5 or done == len(lines)):
                last = elapsed
                print(f"apertium {pair}: {done:,}/{len(lines):,} sentences ({100 * done / max(1, len(lines)):.0f}%, "
                      f"{elapsed:.0f} s)", file=sys.stderr, flush=True)
    return [match_first_letter_case(s, normalize_space(t)) for s, t in zip(lines, (t for r in results for t in r))]


def has_marks(text: str) -> bool:
    """True when Apertium marked an unknown word or an error in ``text``."""
    return any(m in text for m in UNKNOWN_MARKS)


def corpus_settings(
    max_sentences: int | None = None, val_size: int = 1000, test_size: int = 1000, min_words: int = 4,
    max_words: int = 25, seed: int = 0, pair: str = "eng-spa", wordnet_dir: str = WORDNET_DIR,
) -> dict:
    """The settings that determine the corpus (their hash names the cache folder)."""
    sizes = {p.name: p.stat().st_size for p in sorted(Path(wordnet_dir).glob("data.*"))}
    return dict(version=BUILD_VERSION, max_sentences=max_sentences, val_size=val_size, test_size=test_size,
                min_words=min_words, max_words=max_words, seed=seed, pair=pair, wordnet_files=sizes)


def corpus_dir(data_dir: str | Path, settings: dict) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return Path(data_dir) / f"wordnet_{settings['pair'].replace('-', '_')}-{digest}"


def build_wordnet_corpus(
    data_dir: str | Path = "data",
    max_sentences: int | None = None,
    val_size: int = 1000,
    test_size: int = 1000,
    min_words: int = 4,
    max_words: int = 25,
    seed: int = 0,
    pair: str = "eng-spa",
    wordnet_dir: str = WORDNET_DIR,
    jobs: int = 2,
) -> Path:
    """Builds (once) and returns the folder holding ``train.tsv``, ``val.tsv``, ``test.tsv`` and ``meta.json``.

    Each TSV row is ``source<TAB>target``. Sources are unique across the whole corpus (up to case,
    spacing and final punctuation), so no source is shared between splits. Test and validation
    are drawn (seeded) from the translated example sentences — real sentences, not definitions;
    training gets everything else, in a seeded shuffled order (so its first N rows are a random sample).

    Args:
        data_dir: where the cache folder goes; its name carries a hash of the settings below.
        max_sentences: translate only a seeded sample of this many WordNet sentences (small, quick
            builds for smoke tests); None = all (~150k, a few minutes once).
        val_size, test_size: pairs in the validation and test splits (fewer if the examples run out).
        min_words, max_words: English sentence length range, in words.
        seed: sampling and splitting seed.
        pair: Apertium direction.
        wordnet_dir: folder of WordNet's ``data.*`` files.
        jobs: apertium processes run in parallel.
    """
    settings = corpus_settings(max_sentences, val_size, test_size, min_words, max_words, seed, pair, wordnet_dir)
    out = corpus_dir(data_dir, settings)
    if (out / "meta.json").is_file():
        return out
    t0 = time.perf_counter()
    sentences = read_wordnet(wordnet_dir, min_words, max_words)
    rng = random.Random(seed)
    if max_sentences is not None and max_sentences < len(sentences):
        keep = sorted(rng.sample(range(len(sentences)), max_sentences))
        sentences = [sentences[i] for i in keep]
    print(f"building the {pair} corpus from {len(sentences):,} WordNet sentences → {out}", file=sys.stderr, flush=True)
    targets = translate([s.text for s in sentences], pair, jobs=jobs)
    pairs = [(s.text, t, s.example) for s, t in zip(sentences, targets) if t and not has_marks(t)]
    examples = [i for i, p in enumerate(pairs) if p[2]]
    rng.shuffle(examples)
    test_idx = examples[:test_size]
    val_idx = examples[test_size: test_size + val_size]
    held = set(test_idx) | set(val_idx)
    train_idx = [i for i in range(len(pairs)) if i not in held]
    rng.shuffle(train_idx)
    splits = {"train": train_idx, "val": val_idx, "test": test_idx}
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, idx in splits.items():
        (tmp / f"{name}.tsv").write_text("".join(f"{pairs[i][0]}\t{pairs[i][1]}\n" for i in idx), encoding="utf-8")
    stats = {name: {"pairs": len(idx),
                    "source_words": sum(len(pairs[i][0].split()) for i in idx) / max(1, len(idx)),
                    "target_words": sum(len(pairs[i][1].split()) for i in idx) / max(1, len(idx))}
             for name, idx in splits.items()}
    meta = {"settings": settings, "sentences": len(sentences), "kept": len(pairs),
            "dropped_marked": len(sentences) - len(pairs), "build_seconds": round(time.perf_counter() - t0, 1),
            "splits": stats}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        tmp.rename(out)  # atomic: an interrupted build leaves only a .tmp folder, never a half cache
    except OSError:  # another process finished the same build first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "meta.json").is_file():
            raise
    print(f"corpus ready in {meta['build_seconds']} s: " + ", ".join(f"{k} {v['pairs']:,}" for k, v in stats.items())
          + f" pairs ({meta['dropped_marked']:,} dropped for apertium's unknown-word marks)", file=sys.stderr)
    return out


class WordNetCorpus:
    """``WordNetCorpus(...)(data_dir) -> {"train"|"val"|"test": <split>.tsv}``: the translation recipe's builder
    (:func:`build_wordnet_corpus`, built once; each row ``source<TAB>target``).

    Args:
        max_sentences: translate only a seeded sample of this many WordNet sentences (a quick build; None = all
            ~150k, a few minutes once).
        val_size, test_size: pairs in the validation and test splits.
        jobs: apertium processes run in parallel.
    """

    def __init__(self, max_sentences: int | None = None, val_size: int = 1000, test_size: int = 1000,
                 jobs: int = 2) -> None:
        if max_sentences is not None and max_sentences < 1:
            raise ValueError(f"max_sentences must be at least 1, got {max_sentences}")
        self.max_sentences, self.val_size, self.test_size, self.jobs = max_sentences, val_size, test_size, jobs

    def __call__(self, data_dir: Path) -> dict[str, Path]:
        folder = build_wordnet_corpus(data_dir, self.max_sentences, self.val_size, self.test_size, jobs=self.jobs)
        return {split: folder / f"{split}.tsv" for split in ("train", "val", "test")}
