"""Classifier as a plain model: runs without Lightning, pools past prefix tokens, names its outputs."""

from __future__ import annotations

import torch

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.heads import ClassificationHead
from mmformer.models import Classifier
from mmformer.tokenizers import ImagePatchTokenizer
from mmformer.models.config import ClassifierConfig


def _model(pool: str = "mean", cls_token: bool = True) -> Classifier:
    torch.manual_seed(0)
    tok = ImagePatchTokenizer(16, image_size=8, patch_size=2, in_chans=1, cls_token=cls_token)
    return Classifier(tok, Encoder(BackboneConfig(dim=16, depth=1, num_heads=2)),
                      ClassificationHead(16, 4, pool, num_heads=2)).eval()


def test_model_runs_without_lightning() -> None:
    from mmformer.tasks import ClassificationTask

    task = ClassificationTask(ClassifierConfig(lambda d: ImagePatchTokenizer(d, image_size=8, patch_size=2, in_chans=1), num_classes=4))
    assert task.model(torch.randn(3, 1, 8, 8)).shape == (3, 4)


def test_features_are_named_and_the_head_skips_the_cls_token() -> None:
    for pool in ("cls", "mean", "attention"):
        model = _model(pool)
        x = torch.randn(2, 1, 8, 8)
        feats = model.forward_features(x, need_weights=True)
        assert feats.output.hidden.shape == (2, 17, 16) and feats.batch.num_prefix_tokens == 1
        assert feats.output.attentions is not None and feats.batch.grid == (4, 4)
        assert torch.allclose(model.forward_head(feats.output, feats.batch), model(x), atol=1e-5)
        # the backbone output carries the prefix count too
        assert torch.equal(model.forward_head(feats.output), model.forward_head(feats.output, feats.batch))
    model = _model("mean")
    hidden = model.forward_features(torch.randn(2, 1, 8, 8)).output.hidden
    assert torch.allclose(model.head(hidden, None, 1), model.head.fc(hidden[:, 1:].mean(1)))
