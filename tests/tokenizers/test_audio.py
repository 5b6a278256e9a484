"""The audio tokenizer: exact masks, padding invariance through the encoder, SpecAugment in training only."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.testing import check_tokenizer
from mmformer.tokenizers.audio import AudioBatch, AudioTokenizer

MODES = [
    dict(patching="conv", conv_channels=[8, 8]),
    dict(patching="conv", conv_channels=[8, 8, 8], frames_per_token=2),
    dict(patching="frames", frames_per_token=4),
    dict(patching="patches", patch_size=(4, 16)),
    dict(patching="frames", frames_per_token=2, normalize="global"),
    dict(patching="conv", conv_channels=[8], normalize="none", positions="learned"),
]


def _batch(lengths: list[int], pad: int = 0, seed: int = 0) -> AudioBatch:
    g = torch.Generator().manual_seed(seed)
    wave = torch.zeros(len(lengths), max(lengths) + pad)
    for i, n in enumerate(lengths):
        wave[i, :n] = 0.2 * torch.randn(n, generator=g)
    return AudioBatch(wave, torch.tensor(lengths))


@pytest.mark.parametrize("kw", MODES, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_contract_holds_for_every_patching_and_normalization(kw: dict) -> None:
    check_tokenizer(AudioTokenizer(32, **kw))


@pytest.mark.parametrize("kw", MODES[:4], ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_mask_matches_true_lengths(kw: dict) -> None:
    tok = AudioTokenizer(32, **kw).eval()
    lengths = [0, 120, 399, 400, 401, 559, 560, 3000, 8123, 16000]  # 0-399: shorter than one window
    out = tok(_batch(lengths, pad=1234))
    expected = tok.num_tokens(torch.tensor(lengths))
    bands = out.grid[1] if out.grid else 1
    assert out.mask.sum(1).tolist() == (expected * bands).tolist()
    assert torch.all(out.tokens[~out.mask] == 0)
    # The frame count is torchaudio's own for the unpadded clip (no centering: whole windows only).
    for n in lengths[3:]:
        frames = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, hop_length=160, n_mels=80,
                                                      center=False)(torch.zeros(n)).shape[-1]
        assert int(tok.num_frames(torch.tensor([n]))) == frames


@pytest.mark.parametrize("kw", MODES[:3], ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_padding_does_not_change_encoder_output_on_real_frames(kw: dict) -> None:
    torch.manual_seed(0)
    tok, enc = AudioTokenizer(32, **kw).eval(), Encoder(BackboneConfig(dim=32, depth=2, num_heads=4)).eval()
    short = _batch([5000], seed=1)
    batch = AudioBatch(torch.zeros(3, 20000), torch.tensor([5000, 20000, 777]))
    batch.waveforms[0, :5000] = short.waveforms[0]
    batch.waveforms[1] = 0.3 * torch.randn(20000)
    batch.waveforms[2, :777] = 0.1
    batch.waveforms[0, 5000:] = 9.0  # garbage in the padding must not leak either
    with torch.no_grad():
        alone = enc(tok(short))
        padded = enc(tok(batch))
    n = int(alone.mask.sum())
    assert int(padded.mask[0].sum()) == n
    torch.testing.assert_close(padded.hidden[0, :n], alone.hidden[0, :n], atol=1e-5, rtol=1e-4)


def test_specaugment_only_in_training() -> None:
    tok = AudioTokenizer(32, patching="frames", freq_masks=2, freq_mask_width=20, time_masks=2, time_mask_width=20)
    x = _batch([16000, 12000])
    tok.eval()
    a, b = tok(x).tokens, tok(x).tokens
    torch.testing.assert_close(a, b)
    tok.train()
    torch.manual_seed(0)
    feats, mask = tok.features(x)
    clean = AudioTokenizer(32, patching="frames", freq_masks=0, time_masks=0).eval().features(x)[0]
    assert not torch.allclose(feats, clean)
    zeroed = (feats == 0) & (clean != 0) & mask[:, None, :]
    assert zeroed.any()  # masked bands/frames are set to the (normalized) mean, 0


def test_time_masks_lie_in_real_frames_and_do_not_depend_on_padding() -> None:
    """A 1 s clip gets the same SpecAugment whether its batch is padded to 1.1 s or to 10 s."""
    tok = AudioTokenizer(32, patching="frames", freq_masks=0, time_masks=2, time_mask_width=20,
                         normalize="none").train()
    clip = _batch([16000], seed=3).waveforms[0]
    feats = {}
    for longest in (17600, 160000):
        wave = torch.zeros(2, longest)
        wave[0, :16000], wave[1] = clip, 0.1 * torch.randn(longest)
        torch.manual_seed(0)
        feats[longest], mask = tok.features(AudioBatch(wave, torch.tensor([16000, longest])))
        n = int(mask[0].sum())
    torch.testing.assert_close(feats[17600][0, :, :n], feats[160000][0, :, :n])
    # Statistically: over many draws, the masked fraction of a 98-frame row is E[width] * 2 / 98
    # (about 20 %), whatever the padding; drawn over the padded length it would be about 2 %.
    frames = torch.tensor([98, 98])
    torch.manual_seed(1)
    masked = torch.stack([tok._time_masks(frames, 998) for _ in range(400)])  # (400, 2, 998)
    assert not masked[..., 98:].any(), "a time mask reached the padding"
    frac = masked[..., :98].float().mean()
    assert 0.15 < float(frac) < 0.22, float(frac)


def test_empty_and_silent_clips_give_one_finite_token() -> None:
    tok = AudioTokenizer(32, conv_channels=[8, 8]).eval()
    out = tok(AudioBatch(torch.zeros(3, 8000), torch.tensor([0, 8000, 100])))
    assert out.mask.sum(1).tolist()[0] == 1 and out.mask.sum(1).tolist()[2] == 1
    assert torch.isfinite(out.tokens).all()


def test_bad_inputs_raise_clear_errors() -> None:
    tok = AudioTokenizer(32, max_seconds=1.0)
    with pytest.raises(ValueError, match="max_seconds"):
        tok(_batch([16000 * 2]))
    with pytest.raises(ValueError, match="mono"):
        tok(AudioBatch(torch.zeros(2, 2, 16000), torch.tensor([16000, 16000])))
    with pytest.raises(TypeError, match="AudioBatch"):
        tok(torch.zeros(2, 16000))
    with pytest.raises(ValueError, match="divisible"):
        AudioTokenizer(32, patching="patches", patch_size=(4, 15))
