"""Tasks take their model's config (``model: <Family>Config``): the config alone describes the model (what the
tasks' flat arguments used to derive is done by the config), older exports' ``encoder`` key still loads, and the
CTC head follows the task's ``ctc_weight``."""

from __future__ import annotations

import functools
from functools import partial

import pytest
import torch

from mmformer.backbone import BackboneConfig
from mmformer.models import (ClassifierConfig, ContrastiveConfig, DecisionTransformerConfig, PrefixLMConfig,
                             Seq2SeqConfig, TokenizerSpec, build, config_from_dict, config_to_dict)
from mmformer.tasks import ClassificationTask, PrefixLMTask, Seq2SeqTask
from mmformer.tasks.multitask import MultiTaskTask, SharedBackbone
from mmformer.tokenizers import ImagePatchTokenizer, TextTokenizer

TINY = BackboneConfig(dim=16, depth=2, num_heads=2, mlp_ratio=2.0)
TEXT = TokenizerSpec("mmformer.tokenizers.text.TextTokenizer", {"vocab_size": 20, "max_len": 16})
IMAGE = TokenizerSpec("mmformer.tokenizers.image.ImagePatchTokenizer",
                      {"image_size": 8, "patch_size": 4, "in_chans": 1, "cls_token": False})


def test_seq2seq_decoder_is_the_backbone_copied_unless_given() -> None:
    cfg = Seq2SeqConfig(TEXT, 20, TINY, decoder_depth=1)
    assert cfg.decoder is None
    assert cfg.decoder_config() == BackboneConfig(dim=16, depth=1, num_heads=2, mlp_ratio=2.0, causal=True, memory_dim=16)
    assert Seq2SeqConfig(TEXT, 20, TINY).decoder_config().depth == 2
    own = Seq2SeqConfig(TEXT, 20, TINY, BackboneConfig(dim=8, depth=1, num_heads=2, causal=True))
    assert own.decoder is not None and own.decoder.memory_dim == 16  # normalized to the encoder's width
    with pytest.raises(ValueError, match="decoder.memory_dim=8 but the encoder's"):
        Seq2SeqConfig(TEXT, 20, TINY, BackboneConfig(dim=8, num_heads=2, memory_dim=8))


def test_an_export_that_names_the_encoder_encoder_still_loads() -> None:
    """Exports of format version 3 wrote Seq2SeqConfig's encoder as ``encoder`` (and the decoder in full)."""
    cfg = Seq2SeqConfig(TEXT, 20, TINY, decoder_depth=1)
    doc = config_to_dict(cfg)
    assert "backbone" in doc and "encoder" not in doc
    old = {("encoder" if k == "backbone" else k): v for k, v in doc.items() if k != "decoder_depth"}
    old["decoder"] = {f: v for f, v in config_to_dict(cfg)["backbone"].items()} | {"depth": 1, "causal": True,
                                                                                 "memory_dim": 16}
    read = config_from_dict(old)
    assert read.backbone == cfg.backbone and read.decoder_config() == cfg.decoder_config()
    torch.manual_seed(0)
    a = build(read).state_dict()
    torch.manual_seed(0)
    b = build(cfg).state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="sets both 'encoder'"):
        config_from_dict({**old, "backbone": old["encoder"]})


def test_the_configs_make_their_backbones_causal_and_normalize_tokenizers() -> None:
    lm = PrefixLMConfig(20, None, BackboneConfig(dim=16, num_heads=2), text_positions="rope")
    assert lm.backbone.causal and lm.backbone.rope
    dt = DecisionTransformerConfig(TEXT, BackboneConfig(dim=16, num_heads=2, causal=False))
    assert dt.backbone.causal and dt.context is None  # the data's, as the task's default was
    given = functools.partial(ImagePatchTokenizer, image_size=8, patch_size=4)  # what a YAML class_path becomes
    assert ClassifierConfig(given, 3).tokenizer == TokenizerSpec("mmformer.tokenizers.image.ImagePatchTokenizer",
                                                                 {"image_size": 8, "patch_size": 4})
    assert ContrastiveConfig(IMAGE, TEXT).backbone_b is None  # None = one shared tower


def test_ctc_weight_gives_the_head_and_a_head_without_it_is_refused() -> None:
    task = Seq2SeqTask(Seq2SeqConfig(TEXT, 20, TINY), ctc_weight=0.3)
    assert task.model_config.ctc_vocab_size == 20 and task.model.ctc_head is not None
    lazy = Seq2SeqTask(Seq2SeqConfig(TokenizerSpec(TEXT.class_path, {"max_len": 16}), None, TINY), ctc_weight=0.3)
    assert lazy.model_config.ctc_vocab_size is None and lazy.model is None  # the data's vocabulary, filled later
    with pytest.raises(ValueError, match="ctc_vocab_size=20 asks for a CTC head but ctc_weight=0"):
        Seq2SeqTask(Seq2SeqConfig(TEXT, 20, TINY, ctc_vocab_size=20))
    with pytest.raises(ValueError, match="ctc_vocab_size=None asks for a CTC head"):
        PrefixLMTask(PrefixLMConfig(20, None, TINY, ctc_vocab_size=None))
    assert PrefixLMTask(PrefixLMConfig(20, IMAGE, TINY), ctc_weight=0.5).model_config.ctc_vocab_size == 20


def test_multitask_gives_each_task_the_shared_backbone_and_refuses_its_own() -> None:
    image = partial(ClassificationTask, model=ClassifierConfig(IMAGE, 3))
    text = partial(PrefixLMTask, model=PrefixLMConfig(20, TEXT))
    shared = BackboneConfig(dim=16, depth=1, num_heads=2)
    task = MultiTaskTask({"images": image, "text": text}, SharedBackbone(shared))
    assert task.tasks["images"].model_config.backbone == shared
    assert task.tasks["text"].model_config.backbone == BackboneConfig(dim=16, depth=1, num_heads=2, causal=True)
    same = partial(ClassificationTask, model=ClassifierConfig(IMAGE, 3, shared))  # the shared one: accepted
    MultiTaskTask({"images": same}, SharedBackbone(shared))
    own = partial(ClassificationTask, model=ClassifierConfig(IMAGE, 3, BackboneConfig(dim=32, depth=1, num_heads=2)))
    with pytest.raises(ValueError, match="task 'images' sets a backbone of its own .* drop "
                                         "model.init_args.tasks.images.init_args.model.backbone"):
        MultiTaskTask({"images": own}, SharedBackbone(shared))


def test_a_python_tokenizer_factory_still_builds() -> None:
    task = ClassificationTask(ClassifierConfig(lambda d: TextTokenizer(d, 20), 3, TINY))
    assert isinstance(task.model.tokenizer, TextTokenizer)
