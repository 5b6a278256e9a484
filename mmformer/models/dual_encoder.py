"""A CLIP-style dual encoder (open_clip's naming): two towers of tokenizer → encoder → pooling →
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
    image_embeds: Tensor  # (B, E) L2-normalized
    text_embeds: Tensor  # (B, E) L2-normalized
    logit_scale: Tensor  # () exp(log-scale); the parameter is kept in [0, log 100] (clamp_logit_scale_)


class ContrastiveModel(nn.Module):
    """Two towers and a learnable temperature; a plain ``nn.Module`` usable without Lightning.

    "image" and "text" follow open_clip's names for tower a and tower b (``encode_image`` /
    ``encode_text``); any tokenizer can stand in either tower (an audio tokenizer as tower a makes an
    audio–text model). The attribute names are kept so checkpoints and exports keep their keys.

    Args:
        image_tokenizer, text_tokenizer: the towers' tokenizers (width D = the backbone's).
        image_backbone: the first tower's encoder.
        text_backbone: the second tower's encoder; None shares ``image_backbone``.
        image_pool, text_pool: pooling of each tower's hidden states.
        embed_dim: width E of the joint embedding space.
        num_heads: heads of attention pooling.
        init_temperature: initial softmax temperature (CLIP: 0.07, i.e. logit scale 1/0.07).
    """

    def __init__(self, image_tokenizer: ModalityTokenizer, text_tokenizer: ModalityTokenizer, image_backbone: Encoder,
                 text_backbone: Encoder | None = None, image_pool: Pool = "mean", text_pool: Pool = "mean",
                 embed_dim: int = 128, num_heads: int = 4, init_temperature: float = 0.07) -> None:
        super().__init__()
        self.image_tokenizer, self.text_tokenizer = image_tokenizer, text_tokenizer
        self.image_backbone = image_backbone
        self.text_backbone = text_backbone  # None: registered as nothing, so no duplicated state_dict keys
        towers = (("image", image_tokenizer, image_backbone), ("text", text_tokenizer, self._text_encoder))
        for name, tok, enc in towers:
            if tok.dim != enc.config.dim:
                raise ValueError(f"the {name} tokenizer has width {tok.dim} but its backbone's dim is {enc.config.dim}")
        self.image_pool = Pooler(image_backbone.config.dim, image_pool, num_heads)
        self.text_pool = Pooler(self._text_encoder.config.dim, text_pool, num_heads)
        self.image_proj = ProjectionHead(image_backbone.config.dim, embed_dim)
        self.text_proj = ProjectionHead(self._text_encoder.config.dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))

    @property
    def _text_encoder(self) -> Encoder:
        return self.text_backbone if self.text_backbone is not None else self.image_backbone

    @property
    def shared_backbone(self) -> bool:
        return self.text_backbone is None

    @staticmethod
    def _encode(inputs: Any, tokenizer: nn.Module, backbone: Encoder, pool: Pooler, proj: ProjectionHead,
                normalize: bool) -> Tensor:
        batch = tokenizer(inputs)
        out = backbone(batch)
        return proj(pool(out.hidden, out.mask, batch.num_prefix_tokens), normalize)  # (B, E)

    def encode_image(self, images: Any, normalize: bool = False) -> Tensor:
        """First-tower inputs (e.g. images ``(B, C, H, W)``) → embeddings ``(B, E)``."""
        return self._encode(images, self.image_tokenizer, self.image_backbone, self.image_pool, self.image_proj,
                            normalize)

    def encode_text(self, ids: Any, normalize: bool = False) -> Tensor:
        """Second-tower inputs (e.g. caption ids ``(B, T)``) → embeddings ``(B, E)``."""
        return self._encode(ids, self.text_tokenizer, self._text_encoder, self.text_pool, self.text_proj, normalize)

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

    def forward(self, images: Any, ids: Any) -> ContrastiveOutput:
        return ContrastiveOutput(self.encode_image(images, True), self.encode_text(ids, True), self.scale())
