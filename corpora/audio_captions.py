"""The audio–text contrastive recipe's embedded default: spoken sentences paired with their text,
plus isolated spoken words for zero-shot keyword classification.

Pairs come from the espeak-ng speech corpus (:func:`corpora.espeak.build_corpus`, the
speech-recognition recipe's data; its WAV files are shared): each split keeps the first utterance
of every distinct sentence, so every text occurs once per split and a retrieval query has exactly
one right answer (a repeated text would be a false negative in a contrastive batch too). The
validation and test voices are never heard in training; the default test pool holds ~980 clips.

Zero-shot: ``zeroshot.jsonl`` holds single words of the corpus grammar (:data:`ZEROSHOT_WORDS`: the
ten digits and twenty nouns, all of them in training sentences) spoken in isolation by the test
voices, with a ``keyword`` label; prompting the text tower with each word and matching it to the
clip gives a zero-shot keyword accuracy. These are words the model has only heard inside
sentences — the Speech Commands words of the keyword recipe are mostly absent from this grammar.

Output, in ``data/audio_captions_<hash of the settings>/``::

    train.jsonl val.jsonl test.jsonl   {"audio_filepath": "../espeak_asr_<hash>/wav/test/test-000042.wav",
                                        "text": "where is the cat", "duration": 1.2, "voice": "en+m1"}
    zeroshot.jsonl                     {"audio_filepath": "zeroshot/00042.wav", "text": "cat", "keyword": "cat", ...}
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

from corpora.espeak import (
    BUILD_VERSION, DIGITS, NOUNS, EspeakCorpusConfig, build_corpus, corpus_dir, export_wavs, list_variants,
    split_variants,
)
from corpora.keywords import KeywordsConfig, random_voices, write_clips
from corpora.manifests import build_once, cache_folder, relative_to, write_jsonl

SPLITS = ("train", "val", "test", "zeroshot")
ZEROSHOT_WORDS = tuple(DIGITS) + tuple(NOUNS[:20])  # zero..nine, cat dog bird ... train plane
MIN_TEST_POOL = 500


def distinct_texts(utterances: list[tuple[dict, Path]]) -> list[tuple[dict, Path]]:
    """The first utterance of every distinct transcript, in corpus order."""
    seen: set[str] = set()
    kept = []
    for row, wav in utterances:
        if row["text"] not in seen:
            seen.add(row["text"])
            kept.append((row, wav))
    return kept


def build(
    data_dir: str | Path = "data", corpus: EspeakCorpusConfig = EspeakCorpusConfig(), zeroshot_per_word: int = 20,
    workers: int = 2, min_test_pool: int = MIN_TEST_POOL,
) -> dict[str, Path]:
    """Builds (once) the pairs and the zero-shot clips; returns ``{train, val, test, zeroshot}`` → manifest path.

    Args:
        data_dir: where the speech corpus and the settings-hashed manifest folder go.
        corpus: the speech corpus's settings (the default is the speech-recognition recipe's corpus).
        zeroshot_per_word: isolated clips per zero-shot word, spoken by the test split's voices.
        workers: espeak-ng processes.
        min_test_pool: fewer distinct test texts than this is an error (the recipe's retrieval promise).
    """
    speech = corpus_dir(data_dir, corpus)
    voices_cfg = KeywordsConfig(seed=corpus.seed)
    settings = {"v": 1, "espeak_v": BUILD_VERSION, "corpus": asdict(corpus), "corpus_dir": speech.name,
                "zeroshot_words": ZEROSHOT_WORDS, "zeroshot_per_word": zeroshot_per_word,
                "voices": asdict(voices_cfg), "min_test_pool": min_test_pool}

    def make(tmp: Path, final: Path) -> dict:
        build_corpus(data_dir, corpus, workers=workers)
        stats = {}
        for split in SPLITS[:3]:
            kept = distinct_texts(export_wavs(speech, split))
            rows = ({"audio_filepath": relative_to(wav, final), "text": row["text"], "duration": row["duration"],
                     "voice": f"{row['accent']}+{row['variant']}"} for row, wav in kept)
            stats[split] = {"pairs": write_jsonl(tmp / f"{split}.jsonl", rows)}
        if stats["test"]["pairs"] < min_test_pool:
            raise ValueError(f"the test split has {stats['test']['pairs']} distinct texts, fewer than "
                             f"min_test_pool={min_test_pool}; raise the corpus's num_test")
        test_variants = split_variants(list_variants(), corpus.val_variants, corpus.test_variants, corpus.seed)["test"]
        words = [w for w in ZEROSHOT_WORDS for _ in range(zeroshot_per_word)]
        random.Random(f"{corpus.seed}-zeroshot").shuffle(words)
        voices = random_voices(len(words), test_variants, voices_cfg, f"{corpus.seed}-zeroshot")
        clips = write_clips(tmp, "zeroshot", words, voices, workers)
        rows = [{"audio_filepath": r["audio_filepath"], "text": r["keyword"], "keyword": r["keyword"],
                 "duration": r["duration"], "voice": r["voice"]} for r in clips]
        stats["zeroshot"] = {"clips": write_jsonl(tmp / "zeroshot.jsonl", rows), "words": len(ZEROSHOT_WORDS)}
        return stats

    return build_once(cache_folder(data_dir, "audio_captions", settings), SPLITS, make, settings)
