"""The speech-translation recipe's embedded default: the espeak-ng speech corpus
(:func:`corpora.espeak.build_corpus`, the speech-recognition recipe's data) with each
English transcript translated to Spanish by Apertium (:func:`corpora.apertium.translate`).

Splits, utterances and voices are exactly the speech corpus's (validation and test voice variants
never occur in training), so the speech recipe's transcripts of the test split fed to the
translation recipe (the cascade) are scored on the same test set. Translation policy:

- names of the grammar are capitalized before Apertium sees them: it then keeps them as proper
  nouns (lowercase, it marks them unknown and starts a new sentence after them);
- the output is lowercased, like the English transcripts, and Apertium's marks are removed
  (``*`` unknown word, ``#`` a lemma it could not inflect — e.g. ``#muro`` for "wall" —, ``@``
  transfer error) so no row is dropped; how many rows carried marks is recorded in ``meta.json``.

Output, in ``data/speech_translation_<hash of the settings>/``: ``{train,val,test}.jsonl`` with rows
``{"audio_filepath": "../espeak_asr_<hash>/wav/train/train-000042.wav", "duration", "text" (English),
"translation" (Spanish), "voice"}``; the WAV files live once in the speech corpus's folder and are
shared with the audio–text builder.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

from corpora.apertium import UNKNOWN_MARKS, check_apertium, translate
from corpora.espeak import (
    BUILD_VERSION, NAMES, EspeakCorpusConfig, build_corpus, corpus_dir, export_wavs,
)
from corpora.manifests import build_once, cache_folder, relative_to, write_jsonl

SPLITS = ("train", "val", "test")
PAIR = "eng-spa"
_MARK = re.compile("[" + re.escape("".join(UNKNOWN_MARKS)) + r"](?=\w)")


def capitalize_names(text: str) -> str:
    """The grammar's first names capitalized (``call anna at ...`` → ``call Anna at ...``)."""
    return " ".join(w.capitalize() if w in NAMES else w for w in text.split())


def clean_translation(text: str) -> tuple[str, bool]:
    """Apertium output → (lowercased text without marks, whether it carried a mark)."""
    cleaned = _MARK.sub("", text)
    return cleaned.lower(), cleaned != text


def translate_transcripts(texts: list[str], jobs: int = 2) -> tuple[list[str], int]:
    """English transcripts → (Spanish translations, how many carried Apertium's marks)."""
    out = translate([capitalize_names(t) for t in texts], PAIR, jobs=jobs)
    cleaned = [clean_translation(t) for t in out]
    return [t for t, _ in cleaned], sum(marked for _, marked in cleaned)


def build(
    data_dir: str | Path = "data", corpus: EspeakCorpusConfig = EspeakCorpusConfig(), workers: int = 2,
) -> dict[str, Path]:
    """Builds (once) the speech corpus, its WAV files and the translations; returns split → manifest path.

    Args:
        data_dir: where the speech corpus and the settings-hashed manifest folder go.
        corpus: the speech corpus's settings (the default is the speech-recognition recipe's corpus).
        workers: espeak-ng and apertium processes.
    """
    check_apertium(PAIR)  # before minutes of speech synthesis
    speech = corpus_dir(data_dir, corpus)
    settings = {"v": 1, "espeak_v": BUILD_VERSION, "corpus": asdict(corpus), "corpus_dir": speech.name, "pair": PAIR}

    def make(tmp: Path, final: Path) -> dict:
        build_corpus(data_dir, corpus, workers=workers)
        stats = {}
        for split in SPLITS:
            utterances = export_wavs(speech, split)
            translations, marked = translate_transcripts([row["text"] for row, _ in utterances], jobs=workers)
            rows = ({"audio_filepath": relative_to(wav, final), "duration": row["duration"], "text": row["text"],
                     "translation": es, "voice": f"{row['accent']}+{row['variant']}"}
                    for (row, wav), es in zip(utterances, translations))
            stats[split] = {"rows": write_jsonl(tmp / f"{split}.jsonl", rows), "marked": marked}
        return stats

    return build_once(cache_folder(data_dir, "speech_translation", settings), SPLITS, make, settings)
