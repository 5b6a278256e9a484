"""Waveform augmentation for speech training, seeded per utterance and epoch.

Four perturbations that make a recogniser hear past one synthesizer or microphone:

- **speed perturbation** (Ko et al. 2015, "Audio augmentation for speech recognition"): the clip is
  resampled so that it plays ``s`` times faster, tempo and pitch together (Kaldi's 0.9/1.0/1.1);
- **reverberation**: convolution with a synthetic room impulse response — a direct path, then Gaussian
  noise decaying by 60 dB over a random RT60 (the standard exponential model of a diffuse tail) — and the
  result scaled back to the clip's RMS, so loudness does not change;
- **additive noise** at a random signal-to-noise ratio, white or pink (1/f power);
- **band limiting**: the clip resampled down to a narrowband rate (8 or 11.025 kHz: telephone, old
  synthesizers) and back, so everything above that rate's Nyquist frequency is gone.

torchaudio does the signal processing (``resample``, ``add_noise``); the convolution is an FFT product. Every random number
of an utterance comes from a generator seeded by ``seed`` (the DataModule passes its seed plus the
utterance's virtual index, which counts epochs), and all are drawn before any is used, so a run resumed
mid-epoch hears exactly what the uninterrupted run heard, and changing one probability leaves the other
draws where they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torchaudio.functional as AF
from torch import Tensor


@dataclass
class WaveAugment:
    """Speed, reverberation, noise and band limiting for ``(L,)`` float waveforms (see the module doc).

    Args:
        speeds: speed factors drawn uniformly per utterance (1.0 = unchanged); ``L' = round(L / s)``.
        reverb_prob: probability of reverberation per utterance.
        rt60: range of the reverberation time in seconds (time for the tail to fall by 60 dB).
        noise_prob: probability of additive noise per utterance.
        snr_db: range of the signal-to-noise ratio in dB (uniform).
        lowpass_prob: probability of band limiting per utterance (applied last, as a recording channel would).
        lowpass_rates: the narrowband rates drawn from (uniformly); each must be below ``sample_rate``.
        sample_rate: rate of the waveforms.
    """

    speeds: Sequence[float] = (0.9, 1.0, 1.1)
    reverb_prob: float = 0.0
    rt60: tuple[float, float] = (0.2, 0.7)
    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (5.0, 30.0)
    lowpass_prob: float = 0.0
    lowpass_rates: Sequence[int] = (8000, 11025)
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        self.speeds = tuple(float(s) for s in self.speeds)
        if not self.speeds or any(not 0.5 <= s <= 2.0 for s in self.speeds):
            raise ValueError(f"speeds must be a non-empty list of factors in [0.5, 2], got {list(self.speeds)}")
        self.lowpass_rates = tuple(int(r) for r in self.lowpass_rates)
        in_use = self.lowpass_prob > 0  # (the default rates need not fit an 8 kHz model that never uses them)
        if in_use and (not self.lowpass_rates or any(not 0 < r < self.sample_rate for r in self.lowpass_rates)):
            raise ValueError(f"lowpass_rates must be a non-empty list of rates in (0, sample_rate={self.sample_rate}), "
                             f"got {list(self.lowpass_rates)}")
        for name in ("reverb_prob", "noise_prob", "lowpass_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name, (lo, hi) in (("rt60", self.rt60), ("snr_db", self.snr_db)):
            if lo > hi or (name == "rt60" and lo <= 0):
                raise ValueError(f"{name} must be a range (low, high) with low <= high{' and low > 0' if name == 'rt60' else ''}, "
                                 f"got {(lo, hi)}")

    def __call__(self, wave: Tensor, seed: int) -> Tensor:
        """``(L,)`` float → ``(L',)`` float, the perturbations of utterance seed ``seed``."""
        g = torch.Generator().manual_seed(seed)
        u = torch.rand(6, generator=g).tolist()  # every draw first, in a fixed order
        rir_seed, noise_seed = torch.randint(2 ** 62, (2,), generator=g).tolist()  # their own streams
        lp = torch.rand(2, generator=g).tolist()  # after the others: adding band limiting moved no old draw
        speed = self.speeds[min(int(u[0] * len(self.speeds)), len(self.speeds) - 1)]
        if speed != 1.0:
            wave = self._speed(wave, speed)
        if u[1] < self.reverb_prob:
            wave = self._reverb(wave, self.rt60[0] + u[2] * (self.rt60[1] - self.rt60[0]), rir_seed)
        if u[3] < self.noise_prob:
            wave = self._noise(wave, self.snr_db[0] + u[4] * (self.snr_db[1] - self.snr_db[0]), u[5] < 0.5, noise_seed)
        if lp[0] < self.lowpass_prob:
            wave = self._bandlimit(wave, self.lowpass_rates[min(int(lp[1] * len(self.lowpass_rates)),
                                                                 len(self.lowpass_rates) - 1)])
        return wave

    def _bandlimit(self, wave: Tensor, rate: int) -> Tensor:
        # down to `rate` (torchaudio's windowed-sinc filter removes what lies above rate / 2) and back up
        if len(wave) < 2:
            return wave
        back = AF.resample(AF.resample(wave, self.sample_rate, rate), rate, self.sample_rate)
        return torch.nn.functional.pad(back, (0, max(0, len(wave) - len(back))))[: len(wave)]

    def _speed(self, wave: Tensor, speed: float) -> Tensor:
        # played `speed` times faster: read as if recorded at sr * speed, resampled to sr
        sr = self.sample_rate
        orig = round(sr * speed)
        return AF.resample(wave, orig_freq=orig, new_freq=sr) if len(wave) > 1 else wave

    def _reverb(self, wave: Tensor, rt60: float, seed: int) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        n = max(2, int(rt60 * self.sample_rate))
        t = torch.arange(n) / self.sample_rate
        rir = torch.randn(n, generator=g) * torch.exp(-math.log(1000.0) * t / rt60)  # -60 dB at t = rt60
        rir[0] = rir.abs().max() * 4  # the direct path, 4x the strongest reflection
        # an FFT of a power-of-two length: torchaudio's fftconvolve takes len(wave) + n - 1, often a size
        # with large prime factors, for which the FFT is many times slower
        size = 1 << (len(wave) + n - 2).bit_length()
        wet = torch.fft.irfft(torch.fft.rfft(wave, size) * torch.fft.rfft(rir / rir.norm(), size), size)[: len(wave)]
        rms_in, rms_out = wave.pow(2).mean().sqrt(), wet.pow(2).mean().sqrt()
        return wet * (rms_in / rms_out) if rms_out > 0 else wave

    def _noise(self, wave: Tensor, snr_db: float, pink: bool, seed: int) -> Tensor:
        noise = torch.randn(len(wave), generator=torch.Generator().manual_seed(seed))
        if pink and len(wave) > 2:  # 1/f power: amplitude spectrum scaled by 1/sqrt(f)
            spec = torch.fft.rfft(noise)
            spec[1:] /= torch.arange(1, len(spec)).sqrt()
            spec[0] = 0
            noise = torch.fft.irfft(spec, n=len(wave))
        if wave.pow(2).sum() == 0:  # silence has no level to set a ratio against
            return wave
        return AF.add_noise(wave[None], noise[None], torch.tensor([snr_db]))[0]
