"""Images → patch tokens (ViT), optionally behind a small convolutional stem."""

from __future__ import annotations

from typing import Literal

import torch
from timm.layers import PatchDropout
from torch import Tensor, nn

from mmformer.layers.positions import resize_2d, sincos_2d
from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch, register_tokenizer


def _pair(x: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def conv_stem(in_chans: int, channels: list[int], convs_per_stage: int = 1) -> nn.Sequential:
    """One stage per entry of ``channels`` (Xiao et al. 2021, "Early convolutions help transformers
    see better"): a 3x3 stride-2 conv that halves the resolution, then ``convs_per_stage - 1``
    3x3 stride-1 convs; each conv is followed by BatchNorm and ReLU."""
    layers: list[nn.Module] = []
    for c in channels:
        for k in range(convs_per_stage):
            layers += [nn.Conv2d(in_chans, c, 3, stride=2 if k == 0 else 1, padding=1, bias=False),
                       nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            in_chans = c
    return nn.Sequential(*layers)


@register_tokenizer("image")
class ImagePatchTokenizer(ModalityTokenizer):
    """``images (B, C, H, W)`` float → patch tokens ``(B, [cls] + gh*gw, D)``, row-major.

    Args:
        dim: token width D.
        image_size: training resolution ``(H, W)``; the position table is built for its grid and
            resized (bicubic) when an input has another grid.
        patch_size: patch side in input pixels (a multiple of ``2 ** len(stem_channels)``).
        in_chans: image channels C (1 grayscale, 3 RGB).
        stem_channels: widths of the conv stem's stages, each halving the resolution; [] = plain
            linear patchify.
        stem_convs_per_stage: 3x3 convs per stem stage (the first strided, the rest stride 1).
        cls_token: prepend a learned CLS token (for ``pool: cls`` heads).
        pos_embed: ``learned`` (timm ViT) or ``sincos`` (fixed 2D table).
        patch_dropout: fraction of patch tokens dropped at random in training (timm PatchDropout).
        patch_bias: a bias on the patch projection (CLIP's has none).
        pre_norm: LayerNorm over the tokens after the positions are added (CLIP's ``ln_pre``).
        norm_eps: that LayerNorm's epsilon.
    """

    def __init__(
        self,
        dim: int,
        image_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        stem_channels: list[int] | None = None,
        stem_convs_per_stage: int = 1,
        cls_token: bool = True,
        pos_embed: Literal["learned", "sincos"] = "learned",
        patch_dropout: float = 0.0,
        patch_bias: bool = True,
        pre_norm: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__(dim)
        stem_channels = list(stem_channels or [])
        self.image_size, self.patch_size, self.in_chans = _pair(image_size), patch_size, in_chans
        reduce = 2 ** len(stem_channels)
        if patch_size % reduce:
            raise ValueError(f"patch_size {patch_size} must be a multiple of the stem's stride {reduce}")
        for side in self.image_size:
            if side % patch_size:
                raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {patch_size}")
        self.grid = (self.image_size[0] // patch_size, self.image_size[1] // patch_size)
        self.stem = conv_stem(in_chans, stem_channels, stem_convs_per_stage)
        k = patch_size // reduce
        self.proj = nn.Conv2d(stem_channels[-1] if stem_channels else in_chans, dim, k, stride=k, bias=patch_bias)
        self.num_prefix_tokens = int(cls_token)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        if pos_embed not in ("learned", "sincos"):
            raise ValueError(f"pos_embed must be 'learned' or 'sincos', got {pos_embed!r}")
        self.pos_kind = pos_embed
        n = self.num_prefix_tokens + self.grid[0] * self.grid[1]
        if pos_embed == "learned":  # timm layout: (1, prefix + gh*gw, D), the CLS entry first
            self.pos_embed = nn.Parameter(torch.randn(1, n, dim) * 0.02)
        else:
            self.register_buffer("pos_embed", self._sincos(self.grid), persistent=False)
        self.patch_drop = PatchDropout(patch_dropout, self.num_prefix_tokens) if patch_dropout > 0 else nn.Identity()
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        if pre_norm:  # registered only when asked: existing models keep their keys and init draws
            self.norm = nn.LayerNorm(dim, eps=norm_eps)

    def _sincos(self, grid: tuple[int, int]) -> Tensor:
        table = sincos_2d(grid[0], grid[1], self.dim)
        return torch.cat([table.new_zeros(self.num_prefix_tokens, self.dim), table])[None]

    def _positions(self, grid: tuple[int, int], dtype: torch.dtype, device: torch.device) -> Tensor:
        """``(1, prefix + gh*gw, D)`` for this grid, resized from the trained grid when needed."""
        if grid == self.grid:
            return self.pos_embed.to(dtype)
        if self.pos_kind == "sincos":
            return self._sincos(grid).to(device, dtype)
        return resize_2d(self.pos_embed, self.grid, grid, self.num_prefix_tokens).to(dtype)

    def forward(self, images: Tensor) -> TokenBatch:
        if images.dim() != 4 or images.shape[1] != self.in_chans:
            raise ValueError(
                f"expected images of shape (B, {self.in_chans}, H, W), got {tuple(images.shape)}; "
                f"convert grayscale/RGB to {self.in_chans} channel(s) in the data pipeline"
            )
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {(h, w)} is not divisible by patch_size {self.patch_size}")
        x = self.proj(self.stem(images.to(self.proj.weight.dtype)))  # (B, D, gh, gw)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # (B, gh*gw, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = x + self._positions(grid, x.dtype, x.device)
        if hasattr(self, "norm"):
            x = self.norm(x)
        if self.training and not isinstance(self.patch_drop, nn.Identity):
            return TokenBatch(self.patch_drop(x), num_prefix_tokens=self.num_prefix_tokens)
        return TokenBatch(x, grid=grid, num_prefix_tokens=self.num_prefix_tokens)

    def dummy_inputs(self, batch_size: int = 2, pad: int = 0, seed: int = 0) -> Tensor:
        """Images at the training size; images carry no padding, so ``pad`` changes nothing."""
        g = torch.Generator().manual_seed(seed)
        return torch.randn(batch_size, self.in_chans, *self.image_size, generator=g)
