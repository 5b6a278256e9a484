"""MultiTaskModel: one backbone instance behind every task (counted once), classification read
bidirectionally through the causal stack, state_dict and safetensors round trips, and a tiny model that
overfits one batch of each task at once."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.cli.export import _plain_tensors
from mmformer.heads import ClassificationHead
from mmformer.losses import action_loss, sequence_cross_entropy
from mmformer.models import Classifier, DecisionTransformer, PrefixLM
from mmformer.models.multitask import MultiTaskModel
from mmformer.tokenizers import ImagePatchTokenizer, TextTokenizer
from mmformer.tokenizers.trajectory import TrajectoryTokenizer

D = 32
CFG = BackboneConfig(dim=D, depth=2, num_heads=2, mlp_ratio=2.0, causal=True)


def _single_models() -> dict[str, torch.nn.Module]:
    """Each task as its own single-task model, with its own backbone."""
    torch.manual_seed(0)
    image = ImagePatchTokenizer(D, image_size=8, patch_size=4, in_chans=1, cls_token=False)
    text = TextTokenizer(D, 20, max_len=16)
    return {
        "images": Classifier(image, Encoder(CFG), ClassificationHead(D, 3)),
        "translation": PrefixLM(text, Encoder(CFG), TextTokenizer(D, 20, max_len=16)),
        "control": DecisionTransformer(TrajectoryTokenizer(D, state_dim=4, act_dim=2), Encoder(CFG), context=4),
    }


def _model() -> MultiTaskModel:
    return MultiTaskModel(Encoder(CFG), _single_models())


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_one_backbone_instance_serves_every_task_and_is_counted_once() -> None:
    model = _model()
    assert all(m.backbone is model.backbone for m in model.models.values())
    unique = {id(p): p.numel() for p in model.parameters()}
    assert _count(model) == sum(unique.values())
    assert _count(model) < sum(_count(m) for m in _single_models().values())
    # sharing saves exactly the backbones the tasks no longer own
    assert sum(_count(m) for m in _single_models().values()) - _count(model) == 2 * _count(model.backbone)


def test_classification_reads_the_causal_backbone_bidirectionally() -> None:
    model = _model()
    clf = model["images"]
    assert clf.bidirectional
    bidir = Encoder(BackboneConfig(**{**CFG.__dict__, "causal": False}))
    bidir.load_state_dict(model.backbone.state_dict())
    images = clf.tokenizer.dummy_inputs(3)
    expected = clf.head(bidir(clf.tokenizer(images)).hidden, None, 0)
    torch.testing.assert_close(clf(images), expected, atol=1e-5, rtol=1e-5)
    clf.bidirectional = False  # the causal reading differs: the flag is what makes it bidirectional
    assert not torch.allclose(clf(images), expected, atol=1e-4)


def test_state_dict_round_trip_keeps_one_shared_backbone() -> None:
    model = _model().eval()
    fresh = _model().eval()
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(0.1)
    fresh.load_state_dict(model.state_dict())
    assert all(m.backbone is fresh.backbone for m in fresh.models.values())
    images = model["images"].tokenizer.dummy_inputs(2)
    torch.testing.assert_close(fresh("images", images), model("images", images))
    traj = model["control"].tokenizer.dummy_inputs(2)
    torch.testing.assert_close(fresh("control", traj), model("control", traj))


def test_safetensors_export_of_shared_weights_loads_back(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    model = _model().eval()
    save_file(_plain_tensors(model.state_dict()), str(tmp_path / "m.safetensors"))
    fresh = _model().eval()
    fresh.load_state_dict(load_file(str(tmp_path / "m.safetensors")), strict=True)
    assert all(m.backbone is fresh.backbone for m in fresh.models.values())
    ids = torch.tensor([[2, 5, 6, 3]])
    prefix = fresh["translation"].encode(torch.tensor([[7, 8, 3]]))
    torch.testing.assert_close(fresh["translation"].decode(ids, prefix).logits,
                               model["translation"].decode(ids, model["translation"].encode(torch.tensor([[7, 8, 3]]))).logits)


def test_errors_name_the_task() -> None:
    models = _single_models()
    with pytest.raises(ValueError, match="causal Encoder"):
        MultiTaskModel(Encoder(BackboneConfig(dim=D, depth=1, num_heads=2)), models)
    wide = copy.copy(models)
    wide["wide"] = Classifier(ImagePatchTokenizer(64, image_size=8, patch_size=4, in_chans=1),
                              Encoder(BackboneConfig(dim=64, depth=1, num_heads=2)), ClassificationHead(64, 3))
    with pytest.raises(ValueError, match="'wide' was built at width 64"):
        MultiTaskModel(Encoder(CFG), wide)
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        MultiTaskModel(Encoder(CFG), _single_models())("nope", None)


def test_a_tiny_multitask_model_overfits_one_batch_of_each_task() -> None:
    """Round-robin steps over three tasks with one optimizer: every task's loss falls far below its start."""
    model = _model().train()
    g = torch.Generator().manual_seed(1)
    images, labels = torch.randn(6, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])
    source = torch.randint(4, 20, (6, 5), generator=g)
    target = torch.cat([torch.full((6, 1), 2), torch.randint(4, 20, (6, 6), generator=g), torch.full((6, 1), 3)], 1)
    traj = model["control"].tokenizer.dummy_inputs(6)
    dt = model["control"]

    def losses() -> dict[str, torch.Tensor]:
        lm = model["translation"]
        return {
            "images": F.cross_entropy(model("images", images), labels),
            "translation": sequence_cross_entropy(lm.decode(target[:, :-1], lm.encode(source)).logits, target[:, 1:]),
            "control": action_loss(dt(traj), dt.action_targets(traj), traj["mask"], dt.discrete),
        }

    start = {k: float(v.detach()) for k, v in losses().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    names = list(start)
    for step in range(150):  # one task per step, as MultiTaskData draws them
        loss = losses()[names[step % len(names)]]
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = {k: float(v.detach()) for k, v in losses().items()}
    for name in names:
        assert end[name] < 0.3 * start[name], (name, start[name], end[name])


def test_an_encoder_decoder_shares_its_encoder_and_reads_the_source_bidirectionally() -> None:
    """A Seq2Seq task (a cross-attention head): the shared backbone becomes its encoder, read over the whole
    source, padded rows included, as a bidirectional encoder with the same weights reads it; its decoder
    stays its own."""
    from mmformer.backbone import Decoder
    from mmformer.data.common.packing import plan_packing
    from mmformer.models import Seq2Seq

    torch.manual_seed(0)
    text = TextTokenizer(D, 20, max_len=16)
    dec_cfg = BackboneConfig(dim=D, depth=1, num_heads=2, mlp_ratio=2.0, causal=True, memory_dim=D)
    s2s = Seq2Seq(text, Encoder(CFG), TextTokenizer(D, 20, max_len=16), Decoder(dec_cfg))
    model = MultiTaskModel(Encoder(CFG), {**_single_models(), "s2s": s2s})
    assert s2s.encoder is model.backbone and s2s.bidirectional and "backbone" not in s2s._modules
    assert all(p is not q for p in s2s.decoder.parameters() for q in model.backbone.parameters())
    assert _count(model) == sum({id(p): p.numel() for p in model.parameters()}.values())

    source = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])  # the second row is padded (pad id 0)
    bidir = Encoder(BackboneConfig(**{**CFG.__dict__, "causal": False}))
    bidir.load_state_dict(model.backbone.state_dict())
    memory = s2s.encode(source)
    expected = bidir(text(source))
    real = source != 0
    torch.testing.assert_close(memory.hidden[real], expected.hidden[real], atol=1e-5, rtol=1e-5)
    ids = torch.tensor([[2, 5, 6], [2, 7, 8]])
    torch.testing.assert_close(s2s.decode(ids, memory).logits, s2s.decode(ids, expected).logits, atol=1e-5, rtol=1e-5)
    s2s.bidirectional = False  # read causally, the first token no longer sees the rest: the flag matters
    assert not torch.allclose(s2s.encode(source).hidden[0, 0], expected.hidden[0, 0], atol=1e-4)
    s2s.bidirectional = True
    with pytest.raises(ValueError, match="turn packing off"):
        s2s.encode(source, packing=plan_packing(real.sum(1), 8)[0])
