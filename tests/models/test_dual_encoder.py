"""ContrastiveModel (dual encoder): shared or separate towers, open_clip names, temperature."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.losses import clip_loss
from mmformer.models import ContrastiveModel
from mmformer.tokenizers import ImagePatchTokenizer, TextTokenizer

BB = BackboneConfig(dim=32, depth=1, num_heads=2, mlp_ratio=2.0)


def _model(shared: bool = True) -> ContrastiveModel:
    torch.manual_seed(0)
    return ContrastiveModel(ImagePatchTokenizer(32, image_size=8, patch_size=4, cls_token=False),
                            TextTokenizer(32, vocab_size=20, max_len=16), Encoder(BB),
                            None if shared else Encoder(BB), embed_dim=16)


def test_shared_backbone_is_one_instance_and_separate_ones_are_two() -> None:
    shared, separate = _model(True), _model(False)
    assert shared.shared_backbone and not separate.shared_backbone
    n_shared = sum(p.numel() for p in shared.parameters())
    n_sep = sum(p.numel() for p in separate.parameters())
    assert n_sep - n_shared == sum(p.numel() for p in separate.backbone_b.parameters())
    assert not any(k.startswith("backbone_b") for k in shared.state_dict())  # no duplicated keys


def test_encoders_follow_open_clip_names_and_padding_does_not_change_text() -> None:
    model = _model().eval()
    images, ids = torch.randn(3, 3, 8, 8), torch.tensor([[4, 5, 3, 0], [6, 7, 8, 3], [9, 3, 0, 0]])
    assert model.encode_image(images).shape == (3, 16)
    emb = model.encode_text(ids, normalize=True)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3))
    assert torch.allclose(model.encode_text(F.pad(ids, (0, 5)), normalize=True), emb, atol=1e-6)
    out = model(images, ids)
    assert out.embeds_a.shape == out.embeds_b.shape == (3, 16)
    # open_clip's names are the towers a and b of an image–text model
    assert torch.equal(model.encode_a(images, normalize=True), out.embeds_a)
    assert torch.equal(model.encode_image(images, normalize=True), out.embeds_a)
    assert torch.equal(model.encode_b(ids, normalize=True), out.embeds_b)
    assert out.image_embeds is out.embeds_a and out.text_embeds is out.embeds_b


def test_logit_scale_starts_at_one_over_temperature_and_the_parameter_is_clamped_at_100() -> None:
    model = _model()
    assert model.scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    model.clamp_logit_scale_()
    assert model.scale().item() == pytest.approx(100.0)
    with torch.no_grad():
        model.logit_scale.fill_(-1.0)
    model.clamp_logit_scale_()
    assert model.logit_scale.item() == 0.0


def _at_cap_with_mismatched_pairs() -> tuple[ContrastiveModel, torch.Tensor, torch.Tensor]:
    """A model whose scale sits at the cap, and pairs the loss can only fit better with a lower scale."""
    model = _model()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # float32(log 100): exp of it is 100.0000076
    g = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    text = image.roll(1, dims=0)  # every caption is its neighbour's: confidence is punished
    return model, image, text


def test_the_logit_scale_has_a_gradient_at_the_cap() -> None:
    model, image, text = _at_cap_with_mismatched_pairs()
    clip_loss(image, text, model.scale()).loss.backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad.item() > 0  # the loss wants it lower


def test_the_temperature_comes_down_from_the_cap_when_the_loss_asks() -> None:
    """Adam on the log-scale with the parameter clamp after each step (as the task and open_clip do)."""
    model, image, text = _at_cap_with_mismatched_pairs()
    opt = torch.optim.Adam([model.logit_scale], lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        clip_loss(image, text, model.scale()).loss.backward()
        opt.step()
        model.clamp_logit_scale_()
    assert model.scale().item() < 90.0


def test_tower_width_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match="tower b's tokenizer has width 16"):
        ContrastiveModel(ImagePatchTokenizer(32, image_size=8, patch_size=4), TextTokenizer(16, vocab_size=20),
                         Encoder(BB))
