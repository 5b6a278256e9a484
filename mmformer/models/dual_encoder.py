"""A CLIP-style dual encoder: two towers ``a`` and ``b`` of tokenizer → encoder → pooling →
projection, and a learnable temperature. The towers may share one backbone instance."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from mmformer.backbone import Encoder
from mmformer.heads import Pool, Pooler, ProjectionHead
from mmformer.tokenizers.base import ModalityTokenizer

MAX_LOGIT_SCALE = 100.0


class ContrastiveOutput(NamedTuple):
    embeds_a: Tensor  # (B, E) L2-normalized, tower a
    embeds_b: Tensor  # (B, E) L2-normalized, tower b
    logit_scale: Tensor  # () exp(log-scale); the parameter is kept in [0, log 100] (clamp_logit_scale_)

    @property
    def image_embeds(self) -> Tensor:
        """open_clip's name for :attr:`embeds_a` (tower a is the image tower of an image–text model)."""
        return self.embeds_a

    @property
    def text_embeds(self) -> Tensor:
        """open_clip's name for :attr:`embeds_b` (tower b is the text tower of an image–text model)."""
        return self.embeds_b


class ContrastiveModel(nn.Module):
    """Two towers ``a`` and ``b`` and a learnable temperature; a plain ``nn.Module`` usable without Lightning.

    Any tokenizer can stand in either tower (an ``AudioTokenizer`` as tower a and a ``TextTokenizer``
    as tower b make an audio–text model). For an image–text model, open_clip's ``encode_image`` /
    ``encode_text`` are :meth:`encode_a` / :meth:`encode_b`.

    Args:
        tokenizer_a, tokenizer_b: the towers' tokenizers (width D = their backbone's).
        backbone_a: tower a's encoder.
        backbone_b: tower b's encoder; None shares ``backbone_a``.
        pool_a, pool_b: pooling of each tower's hidden states.
        embed_dim: width E of the joint embedding space.
        num_heads: heads of attention pooling.
        init_temperature: initial softmax temperature (CLIP: 0.07, i.e. logit scale 1/0.07).
    """

    def __init__(self, tokenizer_a: ModalityTokenizer, tokenizer_b: ModalityTokenizer, backbone_a: Encoder,
                 backbone_b: Encoder | None = None, pool_a: Pool = "mean", pool_b: Pool = "mean",
                 embed_dim: int = 128, num_heads: int = 4, init_temperature: float = 0.07) -> None:
        super().__init__()
        # Registration order (tokenizers, backbones, pools, projections, scale) fixes the parameter
        # order, hence the optimizer's and the checkpoints': keep it.
        self.tokenizer_a, self.tokenizer_b = tokenizer_a, tokenizer_b
        self.backbone_a = backbone_a
        self.backbone_b = backbone_b  # None: registered as nothing, so no duplicated state_dict keys
        for name, tok, enc in (("a", tokenizer_a, backbone_a), ("b", tokenizer_b, self._encoder_b)):
            if tok.dim != enc.config.dim:
                raise ValueError(f"tower {name}'s tokenizer has width {tok.dim} but its backbone's dim is "
                                 f"{enc.config.dim}")
        self.pool_a = Pooler(backbone_a.config.dim, pool_a, num_heads)
        self.pool_b = Pooler(self._encoder_b.config.dim, pool_b, num_heads)
        self.proj_a = ProjectionHead(backbone_a.config.dim, embed_dim)
        self.proj_b = ProjectionHead(self._encoder_b.config.dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))

    @property
    def _encoder_b(self) -> Encoder:
        return self.backbone_b if self.backbone_b is not None else self.backbone_a

    @property
    def shared_backbone(self) -> bool:
        return self.backbone_b is None

    @staticmethod
    def _encode(inputs: Any, tokenizer: nn.Module, backbone: Encoder, pool: Pooler, proj: ProjectionHead,
                normalize: bool) -> Tensor:
        batch = tokenizer(inputs)
        out = backbone(batch)
        return proj(pool(out.hidden, out.mask, batch.num_prefix_tokens), normalize)  # (B, E)

    def encode_a(self, inputs: Any, normalize: bool = False) -> Tensor:
        """Tower-a inputs (images ``(B, C, H, W)``, an ``AudioBatch``...) → embeddings ``(B, E)``."""
        return self._encode(inputs, self.tokenizer_a, self.backbone_a, self.pool_a, self.proj_a, normalize)

    def encode_b(self, inputs: Any, normalize: bool = False) -> Tensor:
        """Tower-b inputs (e.g. caption ids ``(B, T)``) → embeddings ``(B, E)``."""
        return self._encode(inputs, self.tokenizer_b, self._encoder_b, self.pool_b, self.proj_b, normalize)

    def encode_image(self, images: Any, normalize: bool = False) -> Tensor:
        """open_clip's name for :meth:`encode_a` (images ``(B, C, H, W)`` → ``(B, E)``)."""
        return self.encode_a(images, normalize)

    def encode_text(self, ids: Any, normalize: bool = False) -> Tensor:
        """open_clip's name for :meth:`encode_b` (caption ids ``(B, T)`` → ``(B, E)``)."""
        return self.encode_b(ids, normalize)

    def scale(self) -> Tensor:
        """The logit scale ``exp(t)``, unclamped so that its gradient never vanishes.

        The cap of 100 (CLIP) is enforced on the parameter, in place, after each optimizer step
        (:meth:`clamp_logit_scale_`, as open_clip does). Clamping here instead would zero the
        gradient at the cap (``exp(float32(log 100))`` is ``100.0000076``, above the clamp), and an
        optimizer with momentum would keep pushing against the parameter clamp: the temperature
        could never come down again.
        """
        return self.logit_scale.exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Keeps the log-scale parameter in ``[0, log 100]`` (call after every optimizer step)."""
        self.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))

    def forward(self, a: Any, b: Any) -> ContrastiveOutput:
        """Both towers' L2-normalized embeddings ``(B, E)`` of the pairs ``(a[i], b[i])`` and the logit scale."""
        return ContrastiveOutput(self.encode_a(a, True), self.encode_b(b, True), self.scale())
