"""VTLP: the warp's shape, parity with torchaudio's filterbank at alpha = 1, formants moved by alpha,
training only."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from mmformer.tokenizers.audio import AudioBatch, AudioTokenizer
from mmformer.tokenizers.vtlp import warp_frequencies, warped_mel_fbanks


def test_warp_keeps_ends_is_monotone_and_scales_below_the_boundary() -> None:
    freqs = torch.linspace(0, 8000, 401, dtype=torch.float64)
    alpha = torch.tensor([0.8, 1.0, 1.2], dtype=torch.float64)
    w = warp_frequencies(freqs, alpha, 8000.0, 4800.0)  # (3, 401)
    assert torch.allclose(w[:, 0], torch.zeros(3, dtype=torch.float64)) and torch.allclose(w[:, -1], torch.full((3,), 8000.0, dtype=torch.float64))
    assert (w.diff(dim=1) > 0).all()  # no two frequencies collapse, none swap
    assert torch.allclose(w[1], freqs)
    low = freqs <= 3000  # below boundary * min(a, 1) / a for all three
    assert torch.allclose(w[:, low], alpha[:, None] * freqs[low])


def test_alpha_one_is_torchaudios_mel_filterbank() -> None:
    for n_freqs, n_mels, sr in ((201, 80, 16000), (257, 40, 8000)):
        ours = warped_mel_fbanks(torch.ones(1), n_freqs, n_mels, sr)[0]
        ref = torchaudio.functional.melscale_fbanks(n_freqs, 0.0, sr / 2, n_mels, sr)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("alpha", [0.85, 1.2])
def test_a_tone_lands_in_the_mel_bin_of_alpha_times_its_frequency(alpha: float) -> None:
    sr, f0 = 16000, 1000.0
    t = torch.arange(sr) / sr
    tone = torch.sin(2 * math.pi * f0 * t)[None]  # (1, L)
    spec = torchaudio.transforms.Spectrogram(n_fft=400, center=False, power=2.0)(tone)  # (1, 201, T)
    mel_of = lambda a: torch.einsum("bkt,bkm->bm", spec, warped_mel_fbanks(torch.tensor([a]), 201, 80, sr))
    ref = torchaudio.functional.melscale_fbanks(201, 0.0, 8000.0, 80, sr)  # where a tone at alpha * f0 goes
    shifted = torchaudio.transforms.Spectrogram(n_fft=400, center=False, power=2.0)(
        torch.sin(2 * math.pi * alpha * f0 * t)[None])
    expected = torch.einsum("bkt,km->bm", shifted, ref).argmax(1)
    assert mel_of(alpha).argmax(1) == expected
    assert mel_of(1.0).argmax(1) != expected  # the warp moved it


def test_tokenizer_warps_in_training_only_and_checks_its_range() -> None:
    g = torch.Generator().manual_seed(0)
    batch = AudioBatch(0.2 * torch.randn(3, 8000, generator=g), torch.tensor([8000, 6000, 4000]))
    plain = AudioTokenizer(32, freq_masks=0, time_masks=0)
    warped = AudioTokenizer(32, freq_masks=0, time_masks=0, vtlp=(0.9, 1.1))
    warped.load_state_dict(plain.state_dict())  # no new parameters or buffers: old checkpoints load
    plain.eval(), warped.eval()
    torch.testing.assert_close(warped.features(batch)[0], plain.features(batch)[0])
    warped.train(), plain.train()
    torch.manual_seed(1)
    x, mask = warped.features(batch)
    assert not torch.allclose(x, plain.features(batch)[0], atol=1e-3)
    assert torch.isfinite(x).all() and torch.equal(mask, plain.features(batch)[1])
    same = AudioTokenizer(32, freq_masks=0, time_masks=0, vtlp=(1.0, 1.0)).train()
    same.load_state_dict(plain.state_dict())
    torch.testing.assert_close(same.features(batch)[0], plain.features(batch)[0], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="vtlp must be a range"):
        AudioTokenizer(32, vtlp=(1.2, 0.9))
