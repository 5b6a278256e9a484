"""A held-out synthesizer for the embedded speech corpus: the same grammar spoken by Debian's ``flite``.

The embedded corpus (:mod:`corpora.espeak`) holds out espeak-ng voice *variants*, but every
test clip still comes out of espeak-ng's formant synthesizer, which a model can learn rather than speech.
CMU Flite is another synthesizer: concatenated diphones of a recorded speaker (``kal``, ``kal16``) and
statistical parametric voices of three other speakers (``awb``, ``rms``, ``slt``, clustergen). Its
validation and test splits — transcripts from the same grammar, spoken by every flite voice at a random
rate and pitch — measure a model on a synthesizer never heard in training. The corpus has the espeak
corpus's format (``<split>.npy`` int16 clips back to back + ``<split>.jsonl``) in a settings-hashed folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from corpora.espeak import make_transcript
from corpora.synthesis import map_in_pool, read_wav_int16, to_sample_rate, write_split

FLITE = "flite"
BUILD_VERSION = 1  # bump when the synthesis changes
# flite 2.2's built-in voices (`flite -lv`) but awb_time, a limited-domain voice that only tells the time.
VOICES = ("kal", "kal16", "awb", "rms", "slt")


@dataclass(frozen=True)
class FliteVoice:
    """flite settings of one utterance."""

    voice: str  # one of VOICES
    stretch: float  # duration_stretch: > 1 speaks slower
    pitch: int  # int_f0_target_mean: the mean fundamental frequency in Hz (rms keeps its own)

    def args(self) -> list[str]:
        return ["-voice", self.voice, "--setf", f"duration_stretch={self.stretch}",
                "--setf", f"int_f0_target_mean={self.pitch}"]


def require_flite() -> str:
    """The flite executable, or an error naming the package to install."""
    exe = shutil.which(FLITE)
    if exe is None:
        raise RuntimeError("the held-out synthesizer split needs flite: install the Debian package "
                           "(`apt-get install flite`), or set data.init_args.heldout_synthesizer=espeak")
    return exe


def synthesize(text: str, voice: FliteVoice) -> np.ndarray:
    """flite → mono 16 kHz int16 samples of ``text``."""
    fd, path = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        res = subprocess.run([FLITE, *voice.args(), "-t", text, "-o", path], capture_output=True, check=False)
        if res.returncode != 0 or os.path.getsize(path) == 0:
            raise RuntimeError(f"flite failed for {voice} on {text!r}: {res.stderr.decode(errors='replace')[:200]}")
        pcm, rate = read_wav_int16(path)
    finally:
        os.unlink(path)
    return to_sample_rate(pcm, rate)  # kal speaks at 8 kHz


def _work(job: tuple[str, FliteVoice]) -> np.ndarray:
    return synthesize(*job)


@dataclass(frozen=True)
class FliteCorpusConfig:
    """What the held-out synthesizer splits hold; every field enters the cache hash."""

    num_val: int = 300  # validation utterances
    num_test: int = 1000  # test utterances
    stretch: tuple[float, float] = (0.8, 1.3)  # duration_stretch range (rate ~0.75x..1.25x)
    pitch: tuple[int, int] = (80, 190)  # int_f0_target_mean range, Hz
    seed: int = 0  # transcripts and voices (streams apart from the espeak corpus's)


def _jobs(cfg: FliteCorpusConfig, split: str, n: int) -> list[tuple[str, FliteVoice]]:
    r = random.Random(f"{cfg.seed}-flite-{split}")
    return [(make_transcript(r), FliteVoice(r.choice(VOICES), round(r.uniform(*cfg.stretch), 3),
                                            r.randint(*cfg.pitch)))
            for _ in range(n)]


def corpus_dir(root: str | Path, cfg: FliteCorpusConfig) -> Path:
    """``<root>/flite_asr_<hash of the settings>``."""
    key = json.dumps({"v": BUILD_VERSION, **asdict(cfg), "voices": VOICES}, sort_keys=True)
    return Path(root) / f"flite_asr_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def build_corpus(root: str | Path, cfg: FliteCorpusConfig = FliteCorpusConfig(), workers: int = 2) -> Path:
    """Synthesizes (or reuses) the held-out synthesizer's ``{val,test}.{npy,jsonl}``; returns their folder.

    Args:
        root: the data folder (``data``); the corpus lands in a settings-hashed subfolder.
        cfg: split sizes, rate/pitch ranges and seed.
        workers: synthesis processes (flite is single-threaded: one utterance per process at a time).
    """
    folder = corpus_dir(root, cfg)
    if (folder / "done").exists():
        return folder
    require_flite()
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("val", cfg.num_val), ("test", cfg.num_test)):
        jobs = _jobs(cfg, split, n)
        waves = map_in_pool(_work, jobs, workers, desc=f"flite {split}")
        write_split(folder, split, [{"text": text, **asdict(voice)} for text, voice in jobs], waves)
    (folder / "settings.json").write_text(json.dumps({**asdict(cfg), "voices": VOICES}, indent=1))
    (folder / "done").touch()
    return folder
