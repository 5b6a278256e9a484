"""The embedded speech-recognition corpus: utterances synthesized offline with Debian's ``espeak-ng``.

Transcripts are digit strings and short sentences from a small grammar (a few hundred words);
each utterance is spoken by a random English voice, voice variant, speed, pitch, amplitude and
word gap. Validation and test use voice *variants* that never occur in training, so the test
split measures generalization to unseen speakers (:mod:`corpora.flite` speaks validation and
test with a synthesizer never heard in training instead; ``festival_fraction`` has Festival speak a share of
the training clips, :mod:`corpora.festival`). Audio is stored compactly: one 16 kHz int16
``<split>.npy`` per split (all utterances concatenated) plus a ``<split>.jsonl`` manifest with
each utterance's ``offset``/``num_samples``, its ``text`` and the voice settings. The folder name
carries a hash of the settings, so a changed setting builds a new corpus and an unchanged one
is reused at once.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from corpora.synthesis import SAMPLE_RATE, map_in_pool, to_sample_rate, write_split

if TYPE_CHECKING:
    from corpora.festival import FestivalVoice

ESPEAK = "espeak-ng"
BUILD_VERSION = 1  # bump when the synthesis or the grammar changes

# English voices of espeak-ng (accents); the variants in voices/!v change the speaker.
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# Whispered variants are a different phonation, not another speaker: they stay in training.
TRAIN_ONLY_VARIANTS = ("whisper", "whisperf")

DIGITS = "zero one two three four five six seven eight nine".split()
NAMES = ("anna ben carla david emma frank grace henry iris jack kate leo mia nick olga peter rosa sam tina "
         "victor wendy alex maria john lucy").split()
NOUNS = ("cat dog bird horse fish cow goat sheep mouse rabbit book table chair door window house car boat "
         "train plane bike ball box cup plate bottle key phone lamp clock letter card bag hat coat shoe shirt "
         "apple bread cake egg milk tea coffee cheese orange lemon tree flower garden river lake hill road bridge "
         "city village market school office shop park beach forest farm kitchen room floor wall roof "
         "teacher doctor farmer driver singer child friend brother sister mother father baby king queen "
         "song story picture game map pen pencil paper ticket coin ring watch radio camera computer").split()
ADJECTIVES = ("red blue green yellow black white brown small big old new young happy sad quiet loud warm cold "
              "hot soft hard bright dark clean dirty fast slow long short tall little heavy light empty full "
              "sweet fresh strange pretty busy lazy").split()
VERBS = ("sees finds takes brings wants needs likes holds opens closes moves pushes pulls buys sells paints "
         "carries watches cleans fixes washes drops").split()
PAST = ("saw found took brought wanted needed liked held opened closed moved pushed pulled bought sold painted "
        "carried watched cleaned fixed washed dropped").split()
IMPERATIVE = ("open close bring take move push pull buy sell paint carry watch clean fix wash drop find hold").split()
PREPOSITIONS = "in on under near behind beside into from to over".split()
DETERMINERS = "the a my your his her our their this that".split()
ADVERBS = "today tomorrow now again quickly slowly yesterday tonight".split()
COUNTS = "two three four five six seven eight nine ten twenty".split()


IRREGULAR = {"child": "children", "mouse": "mice", "sheep": "sheep", "fish": "fish", "baby": "babies"}


def plural(noun: str) -> str:
    """English plural of the grammar's nouns."""
    if noun in IRREGULAR:
        return IRREGULAR[noun]
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _noun_phrase(r: random.Random) -> list[str]:
    words = [r.choice(DETERMINERS)]
    if r.random() < 0.6:
        words.append(r.choice(ADJECTIVES))
    return words + [r.choice(NOUNS)]


def make_transcript(r: random.Random) -> str:
    """One transcript: a digit string (30 %) or a sentence from a small template grammar."""
    kind = r.random()
    if kind < 0.3:
        return " ".join(r.choice(DIGITS) for _ in range(r.randint(3, 8)))
    template = r.randrange(6)
    if template == 0:
        words = _noun_phrase(r) + [r.choice(VERBS)] + _noun_phrase(r)
    elif template == 1:
        words = [r.choice(NAMES), r.choice(PAST)] + _noun_phrase(r) + [r.choice(PREPOSITIONS)] + _noun_phrase(r)
    elif template == 2:
        words = ["please", r.choice(IMPERATIVE)] + _noun_phrase(r) + [r.choice(ADVERBS)]
    elif template == 3:
        words = ["where", "is"] + _noun_phrase(r)
    elif template == 4:
        words = [r.choice(NAMES), "has", r.choice(COUNTS), r.choice(ADJECTIVES), plural(r.choice(NOUNS))]
    else:
        words = ["call", r.choice(NAMES), "at"] + [r.choice(DIGITS) for _ in range(r.randint(3, 6))]
    return " ".join(words)


@dataclass(frozen=True)
class Voice:
    """espeak-ng settings of one utterance."""

    accent: str  # an English voice, e.g. en-gb-x-rp
    variant: str  # a file of voices/!v, e.g. m3
    speed: int  # words per minute (-s)
    pitch: int  # 0..99 (-p)
    amplitude: int  # 0..200 (-a)
    gap: int  # extra pause between words in 10 ms units (-g)

    def args(self) -> list[str]:
        return ["-v", f"{self.accent}+{self.variant}", "-s", str(self.speed), "-p", str(self.pitch),
                "-a", str(self.amplitude), "-g", str(self.gap)]


def require_espeak() -> str:
    """The espeak-ng executable, or an error naming the package to install."""
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise RuntimeError("the embedded speech corpus needs espeak-ng: install the Debian package "
                           "(`apt-get install espeak-ng`) or point data.init_args.manifest_dir at your own "
                           "NeMo-style manifests")
    return exe


def list_variants() -> list[str]:
    """The voice variants this espeak-ng installation has (file names under ``voices/!v``)."""
    out = subprocess.run([require_espeak(), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Data at:\s*(\S+)", out)
    folder = Path(match.group(1)) / "voices" / "!v" if match else None
    if folder is None or not folder.is_dir():
        raise RuntimeError(f"cannot find espeak-ng's voice variants (looked in {folder}); reinstall espeak-ng-data")
    return sorted(p.name for p in folder.iterdir() if p.is_file() and re.fullmatch(r"[A-Za-z0-9_]+", p.name))


def split_variants(variants: list[str], num_val: int, num_test: int, seed: int) -> dict[str, list[str]]:
    """Disjoint variant sets per split: validation and test speakers are never heard in training."""
    pool = [v for v in variants if v not in TRAIN_ONLY_VARIANTS]
    random.Random(seed).shuffle(pool)
    if len(pool) < num_val + num_test + 1:
        raise ValueError(f"only {len(pool)} voice variants; cannot hold out {num_val} + {num_test}")
    test, val = sorted(pool[:num_test]), sorted(pool[num_test:num_test + num_val])
    train = sorted(v for v in variants if v not in test and v not in val)
    return {"train": train, "val": val, "test": test}


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """espeak-ng → mono 16 kHz int16 samples of ``text``."""
    res = subprocess.run([ESPEAK, *voice.args(), "--stdout", text], capture_output=True, check=False)
    data = res.stdout
    at = data.find(b"data")
    if res.returncode != 0 or at < 0:
        raise RuntimeError(f"espeak-ng failed for {voice} on {text!r}: {res.stderr.decode(errors='replace')[:200]}")
    rate = int.from_bytes(data[24:28], "little")  # WAV header: sample rate (22050 for espeak-ng voices)
    pcm = np.frombuffer(data[at + 8:], dtype="<i2")  # --stdout streams, so the size field is not reliable
    return to_sample_rate(pcm, rate)


def _work(job: tuple[str, Voice]) -> np.ndarray:
    return synthesize(*job)


@dataclass(frozen=True)
class EspeakCorpusConfig:
    """What the embedded corpus holds; every field enters the cache hash (``festival_fraction`` only when it
    is not 0, so espeak-only corpora keep their folders)."""

    num_train: int = 20000  # training utterances
    num_val: int = 300  # validation utterances (held-out variants)
    num_test: int = 1000  # test utterances (other held-out variants)
    val_variants: int = 6  # voice variants reserved for validation
    test_variants: int = 12  # voice variants reserved for test
    speed: tuple[int, int] = (130, 230)  # words per minute range
    pitch: tuple[int, int] = (15, 85)  # espeak pitch range
    seed: int = 0  # transcripts, voices and the variant split
    # share of training clips spoken by Festival's recorded-diphone voice instead (the same transcripts;
    # :mod:`corpora.festival`): voice variety beyond espeak-ng's formant synthesis
    festival_fraction: float = 0.0


def _jobs(cfg: EspeakCorpusConfig, split: str, variants: list[str], n: int) -> list[tuple[str, Voice]]:
    r = random.Random(f"{cfg.seed}-{split}")
    return [(make_transcript(r), Voice(r.choice(ACCENTS), r.choice(variants), r.randint(*cfg.speed),
                                       r.randint(*cfg.pitch), r.randint(70, 180), r.choice((0, 0, 1, 2, 4))))
            for _ in range(n)]


def festival_voices(cfg: EspeakCorpusConfig, n: int) -> dict[int, "FestivalVoice"]:
    """Which training clips Festival speaks (a ``festival_fraction`` share), and at what rate and pitch; drawn
    from a stream of their own, so the transcripts and the other clips' voices stay those of espeak-only."""
    from corpora.festival import PITCH, STRETCH, FestivalVoice

    r = random.Random(f"{cfg.seed}-festival")
    picks = {i: r.random() < cfg.festival_fraction for i in range(n)}
    return {i: FestivalVoice(round(r.uniform(*STRETCH), 3), r.randint(*PITCH)) for i in range(n) if picks[i]}


def corpus_dir(root: str | Path, cfg: EspeakCorpusConfig) -> Path:
    """``<root>/espeak_asr_<hash of the settings>``."""
    fields: dict = {k: v for k, v in asdict(cfg).items() if k != "festival_fraction" or v}  # 0: the espeak-only hash
    if cfg.festival_fraction:
        from corpora import festival

        fields["festival"] = [festival.VOICE, festival.STRETCH, festival.PITCH]
    key = json.dumps({"v": BUILD_VERSION, **fields, "variants": list_variants()}, sort_keys=True)
    return Path(root) / f"espeak_asr_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def synthesize_many(jobs: Sequence[tuple[str, Voice]], workers: int = 2, desc: str = "espeak-ng") -> list[np.ndarray]:
    """Synthesizes ``(text, voice)`` jobs in ``workers`` processes, in order, with a progress bar.

    Args:
        jobs: what to say and how.
        workers: synthesis processes (espeak-ng is single-threaded: one utterance per process at a time).
        desc: the progress bar's label.

    Returns:
        One 16 kHz int16 waveform ``(L,)`` per job.
    """
    require_espeak()
    return map_in_pool(_work, jobs, workers, desc)


def build_corpus(root: str | Path, cfg: EspeakCorpusConfig = EspeakCorpusConfig(), workers: int = 2) -> Path:
    """Synthesizes (or reuses) the corpus; returns its folder with ``{train,val,test}.{npy,jsonl}``.

    Args:
        root: the data folder (``data``); the corpus lands in a settings-hashed subfolder.
        cfg: corpus size, voice ranges and seed.
        workers: synthesis processes (espeak-ng is single-threaded: one utterance per process at a time).
    """
    folder = corpus_dir(root, cfg)
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    groups = split_variants(list_variants(), cfg.val_variants, cfg.test_variants, cfg.seed)
    sizes = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    for split, n in sizes.items():
        jobs = _jobs(cfg, split, groups[split], n)
        rows: list[dict] = [{"text": text, **asdict(voice)} for text, voice in jobs]
        fest = festival_voices(cfg, n) if split == "train" else {}
        mine = [i for i in range(n) if i not in fest]
        waves: list[np.ndarray] = [np.zeros(0, np.int16)] * n
        for i, w in zip(mine, synthesize_many([jobs[i] for i in mine], workers, desc=f"espeak-ng {split}")):
            waves[i] = w
        if fest:
            from corpora import festival

            festival.require_festival()
            order = sorted(fest)
            chunks = [[(jobs[i][0], fest[i]) for i in order[k:k + 64]] for k in range(0, len(order), 64)]
            spoken = [w for chunk in map_in_pool(festival.synthesize_batch, chunks, workers, desc=f"festival {split}")
                      for w in chunk]
            for i, w in zip(order, spoken):
                waves[i] = w
                rows[i] = {"text": jobs[i][0], "synthesizer": "festival", "voice": festival.VOICE, **asdict(fest[i])}
        write_split(folder, split, rows, waves)
    (folder / "settings.json").write_text(json.dumps({**asdict(cfg), "variants": groups}, indent=1))
    (folder / "done").touch()
    return folder


def export_wavs(corpus: Path, split: str) -> list[tuple[dict, Path]]:
    """One WAV file per utterance of a built corpus split (written once, under ``<corpus>/wav/<split>/``).

    Args:
        corpus: a folder :func:`build_corpus` returned.
        split: ``train``, ``val`` or ``test``.

    Returns:
        ``(manifest row, wav path)`` per utterance, in the split's order.
    """
    from tqdm import tqdm

    from mmformer.data.readers.audio import write_wav

    with open(corpus / f"{split}.jsonl") as f:
        rows = [json.loads(line) for line in f]
    out = corpus / "wav" / split
    paths = [out / f"{row['id']}.wav" for row in rows]
    if (out / "done").exists():
        return list(zip(rows, paths))
    tmp = corpus / "wav" / f"{split}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pcm = np.load(corpus / f"{split}.npy", mmap_mode="r")  # (total samples,) int16, utterances back to back
    for row in tqdm(rows, desc=f"wav files {split}", file=sys.stderr, mininterval=2.0):
        clip = pcm[row["offset"]: row["offset"] + row["num_samples"]]
        write_wav(tmp / f"{row['id']}.wav", clip.astype(np.float32) / 32767, SAMPLE_RATE)  # int16 exactly
    (tmp / "done").touch()
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return list(zip(rows, paths))


def vocabulary() -> list[str]:
    """Every word the grammar can produce (plural nouns included)."""
    words = {*DIGITS, *NAMES, *NOUNS, *ADJECTIVES, *VERBS, *PAST, *IMPERATIVE, *PREPOSITIONS, *DETERMINERS,
             *ADVERBS, *COUNTS, "please", "where", "is", "has", "call", "at", *(plural(n) for n in NOUNS)}
    return sorted(words)
