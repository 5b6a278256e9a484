"""Whisper's front end as an mmformer audio tokenizer: 30 s log-mel spectrogram → two convolutions →
sinusoidal time positions (Radford et al. 2022), the layout of ``WhisperFeatureExtractor`` + ``WhisperEncoder``'s
stem, so converted Whisper checkpoints read raw waveforms.

Every utterance is zero-padded (or cut) to ``chunk_seconds``, as Whisper's; its tokens therefore do not
depend on the batch's padding and the encoder attends to all of them (``mask=None``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from mmformer.tokenizers.audio import AudioBatch
from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch


def whisper_sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's fixed position table ``(length, channels)``: [sin | cos], timescales spaced over channels/2 - 1."""
    if channels % 2:
        raise ValueError(f"Whisper's positions need an even width, got {channels}")
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([t.sin(), t.cos()], dim=1)


class WhisperAudioTokenizer(ModalityTokenizer):
    """``AudioBatch`` (or log-mel features ``(B, n_mels, frames)``) → ``TokenBatch(tokens (B, frames/2, D))``.

    Args:
        dim: token width D.
        n_mels: mel bins (80; 128 for large-v3).
        sample_rate: rate of the waveforms (Whisper: 16 kHz).
        n_fft: FFT size and Hann window (400 = 25 ms).
        hop_length: frame shift (160 = 10 ms).
        chunk_seconds: every utterance is padded or cut to this long (Whisper: 30).
        max_positions: rows of the position table (Whisper's ``max_source_positions``; 1500 for 30 s).
    """

    def __init__(self, dim: int, n_mels: int = 80, sample_rate: int = 16000, n_fft: int = 400, hop_length: int = 160,
                 chunk_seconds: float = 30.0, max_positions: int = 1500) -> None:
        super().__init__(dim)
        self.n_mels, self.sample_rate, self.n_fft, self.hop = n_mels, sample_rate, n_fft, hop_length
        self.n_samples = int(round(chunk_seconds * sample_rate))
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate,
                                                   norm="slaney", mel_scale="slaney")  # (n_freqs, n_mels)
        self.register_buffer("mel_filters", fb, persistent=False)
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        # Fixed, but saved (Whisper checkpoints carry it as embed_positions.weight).
        self.register_buffer("pos", whisper_sinusoids(max_positions, dim))

    def log_mel(self, inputs: AudioBatch) -> Tensor:
        """Waveforms → Whisper's normalized log-mel ``(B, n_mels, n_samples / hop)``."""
        if not isinstance(inputs, AudioBatch):
            raise TypeError(f"WhisperAudioTokenizer takes an AudioBatch or (B, n_mels, T) features, "
                            f"got {type(inputs).__name__}")
        wave = inputs.waveforms.to(self.window.device, torch.float32)
        keep = torch.arange(wave.shape[1], device=wave.device)[None] < inputs.lengths.to(wave.device)[:, None]
        wave = (wave * keep)[:, : self.n_samples]
        wave = F.pad(wave, (0, self.n_samples - wave.shape[1]))  # (B, n_samples)
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, return_complex=True)  # center, reflect
        power = spec[..., :-1].abs() ** 2  # (B, n_freqs, frames): Whisper drops the last frame
        mel = (self.mel_filters.T @ power).clamp_min(1e-10).log10()  # (B, n_mels, frames)
        mel = torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (mel + 4.0) / 4.0

    def forward(self, inputs: AudioBatch | Tensor) -> TokenBatch:
        feats = inputs if isinstance(inputs, Tensor) else self.log_mel(inputs)
        if feats.dim() != 3 or feats.shape[1] != self.n_mels:
            raise ValueError(f"expected log-mel features (B, {self.n_mels}, T), got {tuple(feats.shape)}")
        x = F.gelu(self.conv1(feats.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, T/2, D)
        if x.shape[1] > self.pos.shape[0]:
            raise ValueError(f"{x.shape[1]} audio positions exceed the table of {self.pos.shape[0]}; "
                             f"cut the audio to {self.pos.shape[0] * 2 * self.hop / self.sample_rate:.1f} s")
        return TokenBatch(x + self.pos[: x.shape[1]].to(x.dtype))

    def dummy_inputs(self, batch_size: int = 2, pad: int = 0, seed: int = 0) -> AudioBatch:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.tensor([self.sample_rate // 2 + 800 * i for i in range(batch_size)])
        wave = torch.randn(batch_size, int(lengths.max()) + pad, generator=g) * 0.1
        return AudioBatch(wave * (torch.arange(wave.shape[1])[None] < lengths[:, None]), lengths)
