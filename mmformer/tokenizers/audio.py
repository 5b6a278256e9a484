"""Waveforms → log-mel spectrogram → patches: the audio tokenizer.

Every step is length-aware, so an utterance's tokens do not depend on how much padding its batch
carries: frames are computed without centering (a frame exists only where its whole window
lies inside the real samples), per-utterance statistics use real frames only, and padded frames
are zeroed before every convolution so the next layer reads the same zeros a lone utterance
would see at its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from mmformer.layers.positions import LearnedPositions, SinusoidalPositions
from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch, register_tokenizer
from mmformer.tokenizers.vtlp import warped_mel_fbanks

Patching = Literal["conv", "frames", "patches"]
Normalization = Literal["utterance", "global", "none"]


@dataclass
class AudioBatch:
    """A padded batch of mono waveforms.

    Attributes:
        waveforms: ``(B, L)`` float samples in [-1, 1] at the tokenizer's sample rate, zero-padded.
        lengths: ``(B,)`` long, real samples per row.
    """

    waveforms: Tensor
    lengths: Tensor

    def to(self, *args, **kwargs) -> AudioBatch:
        w = self.waveforms.to(*args, **kwargs)
        return AudioBatch(w, self.lengths.to(w.device))


def lengths_to_mask(lengths: Tensor, n: int) -> Tensor:
    """``(B,)`` lengths → ``(B, n)`` bool mask, True where ``position < length``."""
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]


class MaskedNorm(nn.Module):
    """Per-mel-bin normalization of ``(B, F, T)`` features over real frames only.

    ``utterance``: each utterance's own mean/std (cepstral mean-variance normalization).
    ``global``: running mean/std over training frames (momentum average, frozen in eval).
    """

    def __init__(self, n_mels: int, mode: Normalization, momentum: float = 0.01) -> None:
        super().__init__()
        if mode not in ("utterance", "global", "none"):
            raise ValueError(f"normalize must be utterance, global or none, got {mode!r}")
        self.mode, self.momentum = mode, momentum
        self.register_buffer("running_mean", torch.zeros(n_mels))
        self.register_buffer("running_var", torch.ones(n_mels))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.mode == "none":
            return x
        m = mask[:, None, :].to(x.dtype)  # (B, 1, T)
        count = m.sum(-1, keepdim=True).clamp_min(1)
        if self.mode == "utterance":
            mean = (x * m).sum(-1, keepdim=True) / count  # (B, F, 1)
            var = ((x - mean).square() * m).sum(-1, keepdim=True) / count
            return (x - mean) * torch.rsqrt(var + 1e-5)
        if self.training:
            with torch.no_grad():
                total = count.sum()
                mean = (x * m).sum((0, 2)) / total  # (F,)
                var = ((x - mean[:, None]).square() * m).sum((0, 2)) / total
                w = torch.where(self.initialized, self.momentum, 1.0)  # the first batch sets the stats
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), w)
                self.running_var.lerp_(var.to(self.running_var.dtype), w)
                self.initialized.fill_(True)
        mean, var = self.running_mean.to(x.dtype), self.running_var.to(x.dtype)
        return (x - mean[:, None]) * torch.rsqrt(var[:, None] + 1e-5)


@register_tokenizer("audio")
class AudioTokenizer(ModalityTokenizer):
    """``AudioBatch(waveforms (B, L), lengths (B,))`` → ``TokenBatch(tokens (B, N, D), mask (B, N))``.

    Args:
        dim: token width D.
        sample_rate: rate the waveforms are at (the DataModule resamples to it).
        n_mels: mel bins F.
        n_fft: FFT size; a frame spans ``n_fft`` samples (25 ms at 16 kHz by default).
        win_length: analysis window in samples (<= n_fft, centred in the frame).
        hop_length: frame shift in samples (10 ms).
        patching: ``conv`` — a stack of 3x3 stride-2 convolutions over (time, mel), each halving
            both (conv subsampling, as in speech transformers); ``frames`` — non-overlapping
            stacks of ``frames_per_token`` frames, linearly projected; ``patches`` — AST-style
            non-overlapping ``patch_size`` = (frames, mels) tiles, time-major, each a token.
        conv_channels: channels of each conv-subsampling layer (``conv``).
        frames_per_token: frames stacked per token (``frames``), or after the convolutions
            (``conv``: 1 keeps every conv output frame).
        patch_size: (frames, mel bins) of one tile (``patches``; n_mels must divide by the second).
        normalize: ``utterance`` (per-utterance mean/var per mel bin), ``global`` (running
            training statistics) or ``none``.
        freq_masks, freq_mask_width: SpecAugment frequency masks per utterance and their max width (training only).
        time_masks, time_mask_width: SpecAugment time masks per utterance and their max width in frames;
            each mask lies within the utterance's real frames (width ~ U{0..min(W, frames)}, start
            uniform over the real frames), so its strength does not depend on the batch's padding.
        vtlp: vocal tract length perturbation (training only): a frequency-warp factor per utterance drawn
            uniformly from this ``(low, high)`` range, applied in the mel filterbank
            (:mod:`mmformer.tokenizers.vtlp`; 1.15 moves a male voice's formants toward a female's); None = off.
        vtlp_boundary: frequency (Hz) up to which the warp is a pure scaling (above it, it returns to Nyquist).
        positions: ``sinusoidal`` or ``learned`` time positions added here (``patches`` adds a
            learned mel-band embedding too), or ``none`` (e.g. with a RoPE backbone).
        max_seconds: longest utterance accepted; longer input raises (filter it in the data).
        dropout: dropout on the output tokens.
    """

    def __init__(
        self,
        dim: int,
        sample_rate: int = 16000,
        n_mels: int = 80,
        n_fft: int = 400,
        win_length: int = 400,
        hop_length: int = 160,
        patching: Patching = "conv",
        conv_channels: list[int] | tuple[int, ...] = (64, 64),
        frames_per_token: int = 1,
        patch_size: tuple[int, int] | list[int] = (4, 16),
        normalize: Normalization = "utterance",
        freq_masks: int = 2,
        freq_mask_width: int = 15,
        time_masks: int = 2,
        time_mask_width: int = 20,
        vtlp: tuple[float, float] | list[float] | None = None,
        vtlp_boundary: float = 4800.0,
        positions: Literal["sinusoidal", "learned", "none"] = "sinusoidal",
        max_seconds: float = 30.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(dim)
        if patching not in ("conv", "frames", "patches"):
            raise ValueError(f"patching must be conv, frames or patches, got {patching!r}")
        if positions not in ("sinusoidal", "learned", "none"):
            raise ValueError(f"positions must be sinusoidal, learned or none, got {positions!r}")
        if frames_per_token < 1:
            raise ValueError(f"frames_per_token must be >= 1, got {frames_per_token}")
        self.sample_rate, self.n_mels, self.hop, self.win = sample_rate, n_mels, hop_length, max(n_fft, win_length)
        self.patching, self.stack, self.max_seconds = patching, frames_per_token, max_seconds
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length, n_mels=n_mels, center=False,
            power=2.0)
        self.norm = MaskedNorm(n_mels, normalize)
        self.freq_mask = torchaudio.transforms.FrequencyMasking(freq_mask_width, iid_masks=True)
        self.time_mask_width = time_mask_width
        self.vtlp = None if vtlp is None else (float(vtlp[0]), float(vtlp[1]))
        if self.vtlp is not None and not 0.5 <= self.vtlp[0] <= self.vtlp[1] <= 2.0:
            raise ValueError(f"vtlp must be a range (low, high) of warp factors with 0.5 <= low <= high <= 2, got {vtlp}")
        self.vtlp_boundary = vtlp_boundary
        self.n_freq_masks, self.n_time_masks = freq_masks if freq_mask_width else 0, time_masks if time_mask_width else 0
        self.convs = nn.ModuleList()
        if patching == "conv":
            chans, freq = [1, *conv_channels], n_mels
            for c_in, c_out in zip(chans[:-1], chans[1:]):
                self.convs.append(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1))
                freq = (freq - 1) // 2 + 1
            in_features = chans[-1] * freq * self.stack
        elif patching == "frames":
            in_features = n_mels * self.stack
        else:
            pt, pf = self.patch_size
            if n_mels % pf:
                raise ValueError(f"n_mels={n_mels} must be divisible by the patch's mel size {pf}")
            in_features = pt * pf
            self.band = nn.Parameter(torch.zeros(n_mels // pf, dim))  # which mel band a tile covers
            nn.init.trunc_normal_(self.band, std=0.02)
        self.proj = nn.Linear(in_features, dim)
        self.pos: nn.Module | None = {"sinusoidal": lambda: SinusoidalPositions(dim),
                                      "learned": lambda: LearnedPositions(4096, dim)}.get(positions, lambda: None)()
        self.drop = nn.Dropout(dropout)

    # --- lengths -----------------------------------------------------------------------------
    def num_frames(self, lengths: Tensor) -> Tensor:
        """Real samples ``(B,)`` → real spectrogram frames (windows fully inside the audio)."""
        return torch.where(lengths >= self.win, (lengths - self.win) // self.hop + 1, torch.zeros_like(lengths))

    def num_tokens(self, lengths: Tensor) -> Tensor:
        """Real samples ``(B,)`` → real output tokens (what the mask marks True).

        A clip shorter than one window keeps one (silent) frame, as :meth:`features` does.
        """
        n = self.num_frames(lengths).clamp_min(1)
        for _ in self.convs:
            n = (n - 1).div(2, rounding_mode="floor") + 1  # 3x3 stride-2 pad-1 conv: ceil(n / 2)
        per = self.patch_size[0] if self.patching == "patches" else self.stack
        return (n + per - 1).div(per, rounding_mode="floor")

    def token_counts(self, inputs: AudioBatch) -> Tensor:
        """Real tokens per utterance of ``inputs``: ``(B,)`` long, mel bands included for ``patches``
        (what packing plans with; computed from the lengths alone, so on the host before transfer)."""
        n = self.num_tokens(inputs.lengths)
        return n * (self.n_mels // self.patch_size[1]) if self.patching == "patches" else n

    # --- the pipeline --------------------------------------------------------------------------
    def features(self, inputs: AudioBatch) -> tuple[Tensor, Tensor]:
        """Normalized (and, in training, SpecAugmented) log-mel ``(B, F, T)`` and its frame mask ``(B, T)``."""
        if not isinstance(inputs, AudioBatch):
            raise TypeError(f"AudioTokenizer takes an AudioBatch(waveforms, lengths), got {type(inputs).__name__}")
        p = self.proj.weight
        wave, lengths = inputs.waveforms.to(p.device, p.dtype), inputs.lengths.to(p.device)
        if wave.dim() != 2:
            raise ValueError(f"waveforms must be (B, L) mono, got shape {tuple(wave.shape)}; mix channels down first")
        longest = float(wave.shape[1]) / self.sample_rate
        if longest > self.max_seconds and not torch.compiler.is_compiling():
            over = float(lengths.max()) / self.sample_rate
            if over > self.max_seconds:
                raise ValueError(f"an utterance lasts {over:.1f} s, more than max_seconds={self.max_seconds}; "
                                 f"drop or split long audio (the DataModule's max_duration) or raise max_seconds")
        if wave.shape[1] < self.win:  # shorter than one window: pad so there is a frame (masked out)
            wave = F.pad(wave, (0, self.win - wave.shape[1]))
        wave = wave * lengths_to_mask(lengths, wave.shape[1])  # padding is zero, whatever the caller sent
        frames = self.num_frames(lengths).clamp_min(1)  # an empty clip keeps one (silent) frame
        spec = self._warped_mel(wave) if self.training and self.vtlp is not None else self.mel(wave)  # (B, F, T)
        mask = lengths_to_mask(frames, spec.shape[-1])
        x = torch.log(spec + 1e-6) * mask[:, None, :]
        x = self.norm(x, mask)
        if self.training:
            for _ in range(self.n_freq_masks):
                x = self.freq_mask(x)
            if self.n_time_masks:
                x = x.masked_fill(self._time_masks(frames, x.shape[-1])[:, None, :], 0.0)
        return x * mask[:, None, :], mask

    def _warped_mel(self, wave: Tensor) -> Tensor:
        """``(B, L)`` → mel power ``(B, F, T)`` through a filterbank warped by a random factor per utterance."""
        assert self.vtlp is not None
        power = self.mel.spectrogram(wave)  # (B, K, T), K = n_fft // 2 + 1
        lo, hi = self.vtlp
        alpha = lo + (hi - lo) * torch.rand(wave.shape[0])  # (B,)
        scale = self.mel.mel_scale
        fb = warped_mel_fbanks(alpha, power.shape[1], self.n_mels, self.sample_rate, scale.f_min, scale.f_max,
                               self.vtlp_boundary)  # (B, K, F)
        return torch.einsum("bkt,bkf->bft", power, fb.to(power.device, power.dtype))

    def _time_masks(self, frames: Tensor, n: int) -> Tensor:
        """SpecAugment time masks drawn within each row's real frames: ``(B, n)`` bool, True = masked.

        Per row and mask: width ~ U{0..min(W, frames)}, start ~ U{0..frames - width} (vectorized).
        """
        real = frames.to(torch.float32)[:, None]  # (B, 1)
        u = torch.rand(frames.shape[0], self.n_time_masks, 2, device=frames.device)  # (B, M, 2)
        cap = real.clamp(max=float(self.time_mask_width))
        width = torch.minimum((u[..., 0] * (cap + 1)).floor(), cap)  # (B, M)
        start = torch.minimum((u[..., 1] * (real - width + 1)).floor(), real - width)
        pos = torch.arange(n, device=frames.device, dtype=torch.float32)  # (n,)
        inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (B, M, n)
        return inside.any(1)

    def forward(self, inputs: AudioBatch) -> TokenBatch:
        x, mask = self.features(inputs)  # (B, F, T), (B, T)
        if self.patching == "conv":
            h = x[:, None]  # (B, 1, F, T)
            for conv in self.convs:
                h = F.gelu(conv(h))
                mask = mask[:, ::2]  # ceil(T / 2) frames, real iff the centre frame was real
                h = h * mask[:, None, None, :]  # padded frames are zero for the next conv, as at a lone end
            b, c, f, t = h.shape
            h = h.permute(0, 3, 1, 2).reshape(b, t, c * f)  # (B, T', C*F')
        else:
            h = x.transpose(1, 2)  # (B, T, F)
        per = self.patch_size[0] if self.patching == "patches" else self.stack
        pad = (-h.shape[1]) % per
        h, mask = F.pad(h, (0, 0, 0, pad)), F.pad(mask, (0, pad))
        b, t, f = h.shape
        if self.patching == "patches":
            pt, pf = self.patch_size
            h = h.reshape(b, t // pt, pt, f // pf, pf).permute(0, 1, 3, 2, 4)  # (B, T/pt, F/pf, pt, pf)
            tokens = self.proj(h.reshape(b, t // pt, f // pf, pt * pf)) + self.band.to(h.dtype)
            bands = f // pf
            mask = mask[:, ::pt]  # a tile is real iff its first frame is
            tokens = self._add_positions(tokens.transpose(1, 2).reshape(b * bands, t // pt, -1))
            tokens = tokens.reshape(b, bands, t // pt, -1).transpose(1, 2).reshape(b, t // pt * bands, -1)
            mask = mask[:, :, None].expand(-1, -1, bands).reshape(b, -1)
            grid = (t // pt, bands)
        else:
            tokens = self._add_positions(self.proj(h.reshape(b, t // per, per * f)))
            mask, grid = mask[:, ::per], None
        tokens = self.drop(tokens) * mask[..., None]
        return TokenBatch(tokens, mask, grid=grid)

    def _add_positions(self, x: Tensor) -> Tensor:
        return x if self.pos is None else self.pos(x)

    def dummy_inputs(self, batch_size: int = 2, pad: int = 0, seed: int = 0) -> AudioBatch:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.tensor([self.sample_rate // 4 + 997 * i for i in range(batch_size)])
        wave = torch.zeros(batch_size, int(lengths.max()) + pad * self.hop)
        for i, n in enumerate(lengths.tolist()):
            t = torch.arange(n) / self.sample_rate
            wave[i, :n] = 0.3 * torch.sin(2 * torch.pi * (200 + 150 * i) * t) + 0.05 * torch.randn(n, generator=g)
        return AudioBatch(wave.to(self.proj.weight.device), lengths.to(self.proj.weight.device))
