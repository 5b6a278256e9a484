"""LoRA: the same function as peft's LoRA layer, zero change at start, merge equality, LoRA-only gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmformer.finetune.lora import LoRAConfig, LoRALinear, inject_lora, lora_spec, merge_lora, restore_lora
from mmformer.finetune.setup import FineTuneConfig, apply_finetune
from tests.finetune.helpers import Holder, images


def _randomize_lora(root: nn.Module, seed: int = 1) -> None:
    """B starts at zero; give the updates real values, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in root.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.05)


def test_lora_linear_matches_peft_lora_layer() -> None:
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(12, 20))
    peft_model = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=["0"]), nn.Sequential(
        nn.Linear(12, 20)))
    peft_model[0].base_layer.load_state_dict(base[0].state_dict())
    ours = LoRALinear.from_linear(base[0], rank=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        peft_model[0].lora_A["default"].weight.copy_(ours.lora_A)
        ours.lora_B.normal_()
        peft_model[0].lora_B["default"].weight.copy_(ours.lora_B)
    x = torch.randn(3, 7, 12)
    torch.testing.assert_close(ours(x), peft_model(x), rtol=0, atol=1e-6)


def test_fresh_lora_computes_the_plain_model_and_keeps_its_weight_names() -> None:
    torch.manual_seed(0)
    m = Holder()
    plain_keys, x = set(m.state_dict()), images()
    before = m(x)
    names = inject_lora(m, LoRAConfig(rank=4, alpha=8, targets=["qkv", "proj"]))
    assert len(names) == 2 * 3  # qkv and proj in each of the 3 blocks
    assert all(n.endswith(("attn.qkv", "attn.proj")) for n in names)
    torch.testing.assert_close(m(x), before, rtol=0, atol=0)  # B = 0
    keys = set(m.state_dict())
    assert plain_keys <= keys and {k.rsplit(".", 1)[-1] for k in keys - plain_keys} == {"lora_A", "lora_B"}


def test_merged_model_equals_unmerged_and_exports_plain_weights() -> None:
    torch.manual_seed(0)
    m = Holder().eval()
    plain_keys = set(m.state_dict())
    inject_lora(m, LoRAConfig(rank=8, alpha=16, targets=["qkv", "proj", "fc1", "fc2"]))
    _randomize_lora(m)
    x = images(8)
    unmerged = m(x)
    assert merge_lora(m) == 4 * 3
    merged = m(x)
    assert (merged - unmerged).abs().max() <= 1e-5
    assert set(m.state_dict()) == plain_keys  # no LoRA names: exports as plain mmformer weights
    assert not any(isinstance(mod, LoRALinear) for mod in m.modules())
    fresh = Holder().eval()
    fresh.load_state_dict(m.state_dict(), strict=True)
    torch.testing.assert_close(fresh(x), merged, rtol=0, atol=0)


def test_only_lora_and_the_named_head_get_gradients_and_the_fraction_is_counted() -> None:
    torch.manual_seed(0)
    m = Holder(dim=128, depth=4)
    summary = apply_finetune(m, FineTuneConfig(lora=LoRAConfig(rank=2, alpha=4, targets=["qkv"]),
                                               train=["model.head.*"]))
    lora_params = 4 * 2 * (128 + 3 * 128)
    head_params = sum(p.numel() for p in m.model.head.parameters())
    assert summary.trainable == lora_params + head_params
    assert summary.total == sum(p.numel() for p in m.parameters())
    assert summary.trainable / summary.total < 0.01
    m(images()).sum().backward()
    for name, p in m.named_parameters():
        trains = name.endswith(("lora_A", "lora_B")) or name.startswith("model.head.")
        assert p.requires_grad == trains, name
        assert (p.grad is not None) == trains, name


def test_spec_rebuilds_lora_layers_for_a_checkpoint() -> None:
    torch.manual_seed(0)
    m = Holder()
    inject_lora(m, LoRAConfig(rank=3, alpha=6, dropout=0.1, targets=["model.backbone.blocks.[01].attn.qkv"]))
    _randomize_lora(m)
    spec = lora_spec(m)
    assert spec == {f"model.backbone.blocks.{i}.attn.qkv": {"rank": 3, "alpha": 6, "dropout": 0.1} for i in (0, 1)}
    other = Holder()
    restore_lora(other, spec)
    other.load_state_dict(m.state_dict(), strict=True)
    m.eval(), other.eval()
    torch.testing.assert_close(other(images()), m(images()), rtol=0, atol=0)
    with pytest.raises(ValueError, match="model.backbone.blocks.9.attn.qkv"):
        restore_lora(Holder(), {"model.backbone.blocks.9.attn.qkv": {"rank": 2, "alpha": 2, "dropout": 0.0}})


def test_a_target_naming_no_linear_layer_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"LoRA target 'q_proj' names no linear layer.*qkv"):
        inject_lora(Holder(), LoRAConfig(targets=["qkv", "q_proj"]))
    with pytest.raises(ValueError, match="rank must be positive"):
        inject_lora(Holder(), LoRAConfig(rank=0, targets=["qkv"]))


def _seq2seq(tie: bool) -> nn.Module:
    from mmformer.backbone import BackboneConfig, Decoder, Encoder
    from mmformer.models.seq2seq import Seq2Seq
    from mmformer.tokenizers.text import TextTokenizer

    torch.manual_seed(0)
    cfg = BackboneConfig(dim=32, depth=1, num_heads=4, mlp_ratio=2.0)
    return Seq2Seq(TextTokenizer(32, 40), Encoder(cfg), TextTokenizer(32, 40, max_len=32), Decoder(cfg),
                   tie_embeddings=tie).eval()


def test_lora_on_a_tied_lm_head_keeps_the_head_the_tying_and_the_embedding_trainable() -> None:
    from mmformer.decoding import GenerationConfig, generate
    from mmformer.heads import LMHead

    model = _seq2seq(tie=True)
    embed = model.target_tokenizer.embed.weight
    inject_lora(model, LoRAConfig(rank=2, alpha=4, targets=["lm_head"]))
    head = model.lm_head
    assert isinstance(head, LMHead) and isinstance(head, LoRALinear)
    assert head.weight is embed and embed.requires_grad  # still tied; the embedding's owner decides its training
    _randomize_lora(model)
    h = torch.randn(2, 3, 32)
    update = head.scaling * (h @ head.lora_A.T @ head.lora_B.T)
    torch.testing.assert_close(head(h), h @ embed.T + update)
    src = torch.randint(4, 40, (2, 6))
    out = generate(model, src, GenerationConfig(strategy="greedy", max_new_tokens=5))  # no AttributeError
    assert out.shape[0] == 2
    with pytest.raises(ValueError, match="share their weight with another module"):
        merge_lora(model)


def test_lora_on_an_untied_lm_head_merges_back_into_an_lm_head() -> None:
    from mmformer.decoding import GenerationConfig, generate
    from mmformer.heads import LMHead

    model = _seq2seq(tie=False)
    inject_lora(model, LoRAConfig(rank=2, alpha=4, targets=["lm_head"]))
    assert not model.lm_head.weight.requires_grad
    _randomize_lora(model)
    src, cfg = torch.randint(4, 40, (2, 6)), GenerationConfig(strategy="greedy", max_new_tokens=5)
    ids = torch.randint(4, 40, (2, 4))
    before, tokens = model(src, ids), generate(model, src, cfg)
    merge_lora(model)
    assert type(model.lm_head) is LMHead and model.lm_head.weight.requires_grad
    torch.testing.assert_close(model(src, ids), before, rtol=1e-5, atol=1e-5)
    assert torch.equal(generate(model, src, cfg), tokens)


def test_lora_on_a_projection_head_keeps_its_normalize_argument() -> None:
    from mmformer.heads import ProjectionHead

    torch.manual_seed(0)
    root = nn.ModuleDict({"proj": ProjectionHead(16, 8)})
    inject_lora(root, LoRAConfig(rank=2, alpha=4, targets=["proj"]))
    _randomize_lora(root)
    x = torch.randn(5, 16)
    out = root["proj"](x, normalize=True)
    p = root["proj"]
    expected = nn.functional.normalize(x @ p.weight.T + p.scaling * (x @ p.lora_A.T @ p.lora_B.T), dim=-1)
    torch.testing.assert_close(out, expected)
    assert lora_spec(root) == {"proj": {"rank": 2, "alpha": 4, "dropout": 0.0}}
    merge_lora(root)
    assert type(root["proj"]) is ProjectionHead
    torch.testing.assert_close(root["proj"](x, normalize=True), out, rtol=1e-5, atol=1e-5)
