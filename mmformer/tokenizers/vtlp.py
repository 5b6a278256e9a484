"""Vocal tract length perturbation (VTLP; Jaitly & Hinton 2013): a random warp of the frequency axis per
utterance, so that one recorded voice trains like speakers with longer and shorter vocal tracts.

A speaker's formants scale with ``1 / vocal tract length``: a woman's sit ~15-20 % above a man's. VTLP maps
each spectrogram frequency ``f`` to ``w(f)``, piecewise linear (the paper's form)::

    w(f) = alpha * f                                          for f <= f_b = boundary * min(alpha, 1) / alpha
    w(f) = nyq - (nyq - boundary * min(alpha, 1)) / (nyq - f_b) * (nyq - f)     above it

so formants (below ``boundary``) move by ``alpha`` while ``0`` and the Nyquist frequency stay where they are
(no mel bin is left empty, none is pushed out). The warp is applied inside the mel filterbank: STFT bin
``k`` (true frequency ``f_k``) is read by the mel triangles as if it were at ``w(f_k)``, which costs one
``(B, n_freqs, n_mels)`` matrix per batch instead of resampling audio.
"""

from __future__ import annotations

import torch
from torch import Tensor


def warp_frequencies(freqs: Tensor, alpha: Tensor, nyquist: float, boundary: float) -> Tensor:
    """``freqs (K,)`` Hz, ``alpha (B,)`` → warped frequencies ``(B, K)`` (see the module doc)."""
    a = alpha[:, None].to(freqs.dtype)  # (B, 1)
    f_b = boundary * a.clamp(max=1.0) / a  # (B, 1) where the linear part ends
    lower = a * freqs
    upper = nyquist - (nyquist - boundary * a.clamp(max=1.0)) / (nyquist - f_b) * (nyquist - freqs)
    return torch.where(freqs <= f_b, lower, upper)


def _hz_to_mel(f: Tensor) -> Tensor:  # HTK mel scale, torchaudio's default
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def warped_mel_fbanks(alpha: Tensor, n_freqs: int, n_mels: int, sample_rate: int,
                      f_min: float = 0.0, f_max: float | None = None, boundary: float = 4800.0) -> Tensor:
    """Per-utterance triangular mel filterbanks over warped bin frequencies: ``(B, n_freqs, n_mels)``.

    At ``alpha = 1`` this equals ``torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels,
    sample_rate)`` (HTK scale, no normalization; tested), so a spectrogram ``(B, n_freqs, T)`` times it is
    the torchaudio mel spectrogram, warped.
    """
    nyquist = sample_rate / 2
    f_max = nyquist if f_max is None else f_max
    bins = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)  # true bin frequencies (K,)
    freqs = warp_frequencies(bins, alpha.to(torch.float64), nyquist, min(boundary, 0.9 * nyquist))  # (B, K)
    pts = _mel_to_hz(torch.linspace(float(_hz_to_mel(torch.tensor(f_min))), float(_hz_to_mel(torch.tensor(f_max))),
                                    n_mels + 2, dtype=torch.float64))  # (M + 2,) triangle corners
    width = pts[1:] - pts[:-1]  # (M + 1,)
    rel = pts[None, None, :] - freqs[..., None]  # (B, K, M + 2)
    rising = -rel[..., :-2] / width[:-1]  # (B, K, M): up the left edge of triangle m
    falling = rel[..., 2:] / width[1:]  # down its right edge
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)
