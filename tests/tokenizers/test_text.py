"""The text tokenizer's positional schemes meet the backbone they are used with."""

from __future__ import annotations

import pytest
import torch

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.tokenizers.text import TextTokenizer


def test_rope_positions_need_a_rope_backbone() -> None:
    ids = torch.randint(4, 30, (2, 7))
    tok = TextTokenizer(16, 30, positions="rope")
    with pytest.raises(ValueError, match="rope: false"):
        Encoder(BackboneConfig(dim=16, depth=1, num_heads=2))(tok(ids))
    out = Encoder(BackboneConfig(dim=16, depth=1, num_heads=2, rope=True))(tok(ids))
    assert out.hidden.shape == (2, 7, 16)
    # absolute schemes carry their own order and run on either backbone
    Encoder(BackboneConfig(dim=16, depth=1, num_heads=2))(TextTokenizer(16, 30, positions="learned")(ids))
