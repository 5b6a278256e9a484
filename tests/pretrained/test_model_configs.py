"""Every converter describes its model as a typed config (``model_config``) and builds it with
:func:`mmformer.models.build`: the config round-trips through YAML, builds the same module as ``build_model``, and a
converted model exported with it loads through :func:`~mmformer.models.exported.load_exported` (and
:func:`~mmformer.pretrained.from_pretrained`) as the same model (weights, pad ids, embedding scales, norm epsilons,
tied tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml

from mmformer.models import (CausalLMConfig, ClassifierConfig, ContrastiveConfig, MaskedLMConfig, Seq2SeqConfig,
                             build, config_from_dict, config_to_dict)
from mmformer.models.exported import load_exported, save_exported
from mmformer.pretrained import family_module, from_pretrained


def _hf(name: str, **kw: Any) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        import transformers

        return getattr(transformers, name)(**kw).to_dict()
    return make


def _clip() -> dict[str, Any]:
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=20, bos_token_id=97, eos_token_id=98)
    vision = CLIPVisionConfig(hidden_size=48, num_hidden_layers=1, num_attention_heads=4, intermediate_size=96,
                              image_size=32, patch_size=8, hidden_act="quick_gelu")
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16).to_dict()


def _timm(**kw: Any) -> Callable[[], dict[str, Any]]:
    args = dict(img_size=32, patch_size=8, embed_dim=48, depth=1, num_heads=4, **kw)
    return lambda: {"architecture": "vit_base_patch16_224", "num_classes": 5, "model_args": args}


# name → (family module, the peer's config, the typed config it becomes)
PEERS: dict[str, tuple[str, Callable[[], dict[str, Any]], type]] = {
    "bert": ("bert", _hf("BertConfig", vocab_size=101, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=40, pad_token_id=3), MaskedLMConfig),
    "gpt2": ("gpt2", _hf("GPT2Config", vocab_size=97, n_positions=40, n_embd=32, n_layer=1, n_head=4,
                         bos_token_id=96, eos_token_id=96), CausalLMConfig),
    "vit": ("vit", _hf("ViTConfig", hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                       image_size=32, patch_size=8, num_labels=5), ClassifierConfig),
    "timm_token": ("vit", _timm(), ClassifierConfig),
    "timm_avg_fc_norm": ("vit", _timm(global_pool="avg"), ClassifierConfig),
    "marian": ("marian", _hf("MarianConfig", vocab_size=89, d_model=32, encoder_layers=1, decoder_layers=1,
                             encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                             decoder_ffn_dim=64, max_position_embeddings=40, pad_token_id=88, eos_token_id=0,
                             decoder_start_token_id=88, scale_embedding=True), Seq2SeqConfig),
    "whisper": ("whisper", _hf("WhisperConfig", vocab_size=91, num_mel_bins=16, d_model=32, encoder_layers=1,
                               decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
                               encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=50,
                               max_target_positions=40, pad_token_id=90, eos_token_id=89, bos_token_id=89,
                               decoder_start_token_id=88), Seq2SeqConfig),
    "clip": ("clip", _clip, ContrastiveConfig),
    "open_clip": ("clip", lambda: {"model_cfg": {"embed_dim": 16, "quick_gelu": True, "vision_cfg": {
        "layers": 1, "width": 48, "head_width": 12, "patch_size": 8, "image_size": 32}, "text_cfg": {
        "context_length": 20, "vocab_size": 99, "width": 32, "heads": 4, "layers": 1, "pad_id": 0}}},
        ContrastiveConfig),
}


def _shape(model: torch.nn.Module) -> dict[str, Any]:
    """What must agree beyond the weights: the module tree (repr: widths, pad indices, epsilons), the tokenizers'
    pad ids and embedding scales, and which tables are one tensor."""
    params = dict(model.named_parameters(remove_duplicate=False))
    ties = sorted((a, b) for a in params for b in params if a < b and params[a] is params[b])
    extra = {n: (m.pad_id, getattr(m, "scale", None)) for n, m in model.named_modules() if hasattr(m, "pad_id")}
    return {"repr": repr(model), "extra": extra, "ties": ties}


@pytest.mark.parametrize("name", sorted(PEERS))
def test_converters_build_their_model_from_a_typed_config(name: str, tmp_path: Path) -> None:
    family, peer_config, config_type = PEERS[name]
    mod, config = family_module(family), peer_config()
    cfg = mod.model_config(config)
    assert type(cfg) is config_type
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(cfg)))) == cfg  # a config file holds it

    torch.manual_seed(0)
    model = mod.build_model(config).eval()
    built = build(cfg)
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert _shape(built) == _shape(model)

    loaded = load_exported(save_exported(model, cfg, tmp_path / name))  # a converted model leaves as an export
    assert _shape(loaded) == _shape(model)
    mine, theirs = loaded.state_dict(), model.state_dict()
    assert list(mine) == list(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    again = from_pretrained(tmp_path / name)  # the pretrained entry point reads the export too
    assert _shape(again) == _shape(model) and all(torch.equal(v, theirs[k]) for k, v in again.state_dict().items())


def test_a_timm_vit_without_qkv_bias_builds_but_has_no_typed_config() -> None:
    import timm

    peer = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=48,
                             depth=1, num_heads=4, num_classes=5, qkv_bias=False)
    from mmformer.models.timm_weights import classifier_from_timm, timm_classifier_config

    assert classifier_from_timm(peer).backbone.blocks[0].attn.qkv.bias is None
    with pytest.raises(ValueError, match="qkv_bias=False"):
        timm_classifier_config(peer)
