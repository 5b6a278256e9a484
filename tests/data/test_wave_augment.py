"""Waveform augmentation: each perturbation does what its definition says (speed scales frequency and
length, reverberation keeps loudness, noise lands at the drawn SNR, band limiting removes what lies above
the narrowband Nyquist frequency and keeps what lies below), draws are reproducible per seed and
independent of one another, and bad settings are refused."""

from __future__ import annotations

import math

import pytest
import torch

from mmformer.data.common.wave_augment import WaveAugment

SR = 16000


def tone(freq: float = 500.0, seconds: float = 0.5) -> torch.Tensor:
    return 0.5 * torch.sin(2 * math.pi * freq * torch.arange(int(SR * seconds)) / SR)


def peak_hz(wave: torch.Tensor) -> float:
    spec = torch.fft.rfft(wave).abs()
    return float(spec.argmax()) * SR / len(wave)


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_speed_scales_pitch_and_length(speed: float) -> None:
    out = WaveAugment(speeds=[speed])(tone(), seed=0)
    assert abs(len(out) - 8000 / speed) <= 1
    assert peak_hz(out) == pytest.approx(500 * speed, abs=SR / len(out) + 1)


def test_no_perturbation_is_the_identity() -> None:
    x = tone()
    assert torch.equal(WaveAugment(speeds=[1.0])(x, seed=3), x)


def test_reverb_keeps_the_level_and_smears_the_end() -> None:
    x = tone()
    x[4000:] = 0  # the tone stops half-way: reverberation rings on after it
    out = WaveAugment(speeds=[1.0], reverb_prob=1.0, rt60=(0.4, 0.4))(x, seed=1)
    assert len(out) == len(x)
    assert out.pow(2).mean().sqrt() == pytest.approx(float(x.pow(2).mean().sqrt()), rel=1e-4)
    assert out[4400:4800].abs().max() > 1e-3, "a tail after the tone stopped"
    assert (out - x).abs().max() > 1e-2


@pytest.mark.parametrize("seed", range(4))  # white and pink noise
def test_noise_lands_at_the_drawn_snr(seed: int) -> None:
    x = tone()
    out = WaveAugment(speeds=[1.0], noise_prob=1.0, snr_db=(12.0, 12.0))(x, seed=seed)
    snr = 10 * math.log10(float(x.pow(2).sum() / (out - x).pow(2).sum()))
    assert snr == pytest.approx(12.0, abs=0.01)


@pytest.mark.parametrize("rate", [8000, 11025])
def test_band_limiting_cuts_above_the_narrowband_nyquist(rate: int) -> None:
    low, high = tone(1000.0), tone(rate / 2 + 1500)  # 1.5 kHz above the Nyquist frequency: past the filter's roll-off
    aug = WaveAugment(speeds=[1.0], lowpass_prob=1.0, lowpass_rates=[rate])
    out_low, out_high = aug(low, seed=0), aug(high, seed=0)
    assert len(out_low) == len(low) and len(out_high) == len(high)
    inner = slice(400, -400)  # away from the resampling filter's edge effects
    assert (out_low - low)[inner].abs().max() < 0.01
    assert out_high[inner].pow(2).mean() < 1e-3 * high[inner].pow(2).mean()  # below -30 dB


def test_band_limiting_draws_after_the_others() -> None:
    x = tone(7000.0)
    assert all(WaveAugment(speeds=[1.0], lowpass_prob=1.0)(x, s).pow(2).mean() < 1e-3 for s in range(20)), \
        "both narrowband rates remove 7 kHz"
    for seed in range(6):  # turning band limiting on moves none of the other draws
        base = WaveAugment(reverb_prob=0.5, noise_prob=0.5)(x, seed)
        with_lp = WaveAugment(reverb_prob=0.5, noise_prob=0.5, lowpass_prob=1e-9)(x, seed)
        assert torch.equal(base, with_lp)
    hits = sum(not torch.equal(WaveAugment(speeds=[1.0], lowpass_prob=0.5)(x, s), x) for s in range(40))
    assert 10 <= hits <= 30


def test_silence_stays_silent_and_short_clips_pass() -> None:
    aug = WaveAugment(reverb_prob=1.0, noise_prob=1.0, lowpass_prob=1.0)
    assert torch.equal(aug(torch.zeros(800), seed=0)[:10], torch.zeros(10))
    assert aug(torch.zeros(1), seed=0).shape == (1,)


def test_draws_are_per_seed_and_independent() -> None:
    x = tone()
    full = WaveAugment(reverb_prob=1.0, noise_prob=1.0)
    assert torch.equal(full(x, seed=5), full(x, seed=5))
    assert not torch.equal(full(x, seed=5), full(x, seed=6))
    # the noise of a seed is its own stream: a longer impulse response (more random draws) leaves it as it
    # was, up to the scale the SNR sets
    for seed in range(4):
        residual = []
        for rt60 in (0.2, 0.6):
            on = WaveAugment(speeds=[1.0], reverb_prob=1.0, rt60=(rt60, rt60), noise_prob=1.0)(x, seed)
            off = WaveAugment(speeds=[1.0], reverb_prob=1.0, rt60=(rt60, rt60), noise_prob=0.0)(x, seed)
            residual.append(on - off)
        assert torch.corrcoef(torch.stack(residual))[0, 1] > 0.9999
    speeds = {len(WaveAugment()(x, s)) for s in range(30)}
    assert speeds == {round(8000 / 0.9), 8000, round(8000 / 1.1)}, "all three speeds drawn"


@pytest.mark.parametrize("kw, match", [
    (dict(speeds=[]), "speeds must be"), (dict(speeds=[3.0]), "speeds must be"),
    (dict(noise_prob=1.5), "noise_prob must be in"), (dict(reverb_prob=-0.1), "reverb_prob must be in"),
    (dict(rt60=(0.5, 0.2)), "rt60 must be a range"), (dict(rt60=(0.0, 0.2)), "low > 0"),
    (dict(snr_db=(30.0, 5.0)), "snr_db must be a range"),
    (dict(lowpass_prob=2.0), "lowpass_prob must be in"),
    (dict(lowpass_prob=0.5, lowpass_rates=[]), "lowpass_rates must be"),
    (dict(lowpass_prob=0.5, lowpass_rates=[16000]), r"lowpass_rates must be .* \(0, sample_rate=16000\)"),
])
def test_bad_settings_are_refused(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WaveAugment(**kw)
