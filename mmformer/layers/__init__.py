"""Building blocks: attention, positions, norms, MLPs, KV caches."""

from mmformer.layers.attention import AttentionOutput, CrossAttention, SelfAttention, attend
from mmformer.layers.kv_cache import DecoderCache, KVCache, LayerCache, StaticKV
from mmformer.layers.mlp import Mlp, SwiGLU, make_mlp
from mmformer.layers.norms import make_norm
from mmformer.layers.positions import (
    LearnedPositions,
    RotaryEmbedding,
    SinusoidalPositions,
    apply_rotary,
    resize_2d,
    sincos_2d,
    sinusoidal_1d,
)

__all__ = [
    "AttentionOutput", "CrossAttention", "SelfAttention", "attend",
    "DecoderCache", "KVCache", "LayerCache", "StaticKV",
    "Mlp", "SwiGLU", "make_mlp", "make_norm",
    "LearnedPositions", "RotaryEmbedding", "SinusoidalPositions", "apply_rotary", "resize_2d", "sincos_2d",
    "sinusoidal_1d",
]
