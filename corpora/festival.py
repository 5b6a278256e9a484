"""A second training synthesizer for the embedded speech corpus: Debian's Festival with the ``ked`` voice.

espeak-ng is a formant synthesizer: every clip of the embedded corpus is built from the same rule-driven
resonators, and a model trained on them alone transcribes another synthesizer's speech badly (CMU
Flite's voices: docs/tasks/speech_recognition.md). Festival's ``ked`` is
a diphone voice, concatenated from recordings of one American English speaker; mixed into training at
random rates and pitches it gives the model speech that is recorded, not modelled. Flite's voices (the
held-out synthesizer, :mod:`corpora.flite`) share no speaker with it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from corpora.synthesis import read_wav_int16, to_sample_rate

FESTIVAL = "festival"
VOICE = "ked_diphone"  # Debian's festvox-kdlpc16k: American English male, 16 kHz diphones
PACKAGES = "festival festvox-kdlpc16k"
STRETCH = (0.8, 1.3)  # Duration_Stretch range drawn per clip
PITCH = (70, 190)  # target mean F0 range drawn per clip, Hz (ked's own is ~105)


@dataclass(frozen=True)
class FestivalVoice:
    """Festival settings of one utterance."""

    stretch: float  # Duration_Stretch: > 1 speaks slower
    pitch: int  # the intonation model's target mean F0, Hz (its spread is 15 % of it)

    def scheme(self) -> str:
        """The Scheme lines that set this voice up before an utterance."""
        return (f"(Parameter.set 'Duration_Stretch {self.stretch})\n"
                f"(set! int_lr_params (list (list 'target_f0_mean {self.pitch}) (list 'target_f0_std "
                f"{0.15 * self.pitch:.1f}) (list 'model_f0_mean 170) (list 'model_f0_std 34)))\n")


def require_festival() -> str:
    """The festival executable with the ked voice, or an error naming the packages to install."""
    exe = shutil.which(FESTIVAL)
    if exe is None or not list(Path("/usr/share/festival/voices").glob(f"*/{VOICE}")):
        raise RuntimeError(f"the embedded speech corpus's festival voices need Debian's {PACKAGES} "
                           f"(`apt-get install {PACKAGES}`), or set data.init_args.festival_fraction=0")
    return exe


def synthesize_batch(jobs: Sequence[tuple[str, FestivalVoice]]) -> list[np.ndarray]:
    """One festival process speaks every ``(text, voice)`` job → mono 16 kHz int16 clips, in order.

    One process for the batch: starting festival (loading its voice) costs far more than speaking an utterance.
    """
    with tempfile.TemporaryDirectory() as tmp:
        script = [f"(voice_{VOICE})"]
        for i, (text, voice) in enumerate(jobs):
            quoted = text.replace("\\", " ").replace('"', " ")
            script.append(voice.scheme() + f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) '
                                           f'"{tmp}/{i}.wav" \'riff)')
        Path(tmp, "run.scm").write_text("\n".join(script) + "\n")
        res = subprocess.run([FESTIVAL, "--batch", f"{tmp}/run.scm"], capture_output=True, text=True, check=False)
        clips = []
        for i, (text, voice) in enumerate(jobs):
            path = Path(tmp, f"{i}.wav")
            if res.returncode != 0 or not path.is_file():
                raise RuntimeError(f"festival failed on {text!r} ({voice}): {res.stderr[:300]}")
            clips.append(to_sample_rate(*read_wav_int16(path)))
    return clips
