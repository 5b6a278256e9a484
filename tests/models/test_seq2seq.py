"""Seq2Seq as a plain model: its memory is the encoder's BackboneOutput, its CTC head is part of it
(so `mmformer export` keeps the head), and its construction draws the RNG as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmformer.backbone import BackboneConfig, BackboneOutput
from mmformer.cli.export import export_model, load_exported
from mmformer.models import Seq2Seq
from mmformer.tasks.legacy import FORMAT_KEY, FORMAT_VERSION
from mmformer.tasks.seq2seq import Seq2SeqTask, ctc_greedy
from mmformer.tokenizers.text import TextTokenizer
from mmformer.models.config import Seq2SeqConfig

ROOT = Path(__file__).resolve().parents[2]
V = 16


def _task(**kw) -> Seq2SeqTask:
    torch.manual_seed(0)
    return Seq2SeqTask(Seq2SeqConfig(lambda d: TextTokenizer(d, V, max_len=8), V, BackboneConfig(dim=16, depth=1, num_heads=2), max_target_len=8), metrics=["wer"], **kw)


def test_memory_is_the_encoder_output_and_beam_search_repeats_it() -> None:
    model = _task().model.eval()
    src = torch.tensor([[5, 6, 3, 0], [7, 8, 9, 3]])
    memory = model.encode(src)
    assert isinstance(memory, BackboneOutput) and memory.hidden.shape == (2, 4, 16)
    assert memory.mask.tolist() == [[True, True, True, False], [True] * 4]
    rep = memory.repeat(3)
    assert rep.hidden.shape == (6, 4, 16) and torch.equal(rep.hidden[3], memory.hidden[1])
    logits, out = model.decode(torch.tensor([[1, 5], [1, 7]]), memory)
    assert logits.shape == (2, 2, V) and out.hidden.shape == (2, 2, 16)


def test_ctc_head_is_in_the_model_only_when_weighted() -> None:
    assert _task().model.ctc_head is None
    task = _task(ctc_weight=0.3)
    assert task.model.ctc_head is not None and not hasattr(task, "ctc_head")
    assert "model.ctc_head.weight" in task.state_dict()
    with pytest.raises(ValueError, match="no CTC head"):
        _task().model.ctc_logits(_task().model.encode(torch.tensor([[5, 3]])))


def test_decoder_defaults_to_the_backbone_with_decoder_depth() -> None:
    task = Seq2SeqTask(Seq2SeqConfig(lambda d: TextTokenizer(d, V), V, BackboneConfig(dim=16, depth=3, num_heads=2, mlp_ratio=3.0), decoder_depth=1))
    enc, dec = task.model.encoder.config, task.model.decoder.config
    assert (len(task.model.encoder.blocks), len(task.model.decoder.blocks)) == (3, 1)
    assert (dec.dim, dec.num_heads, dec.mlp_ratio, dec.memory_dim) == (16, 2, 3.0, 16) and enc.memory_dim is None
    with pytest.raises(ValueError, match="both decoder and decoder_depth"):
        Seq2SeqTask(Seq2SeqConfig(lambda d: TextTokenizer(d, V), V, BackboneConfig(dim=16, num_heads=2), decoder=BackboneConfig(dim=16, num_heads=2), decoder_depth=1))


def test_one_backbone_config_builds_what_equal_encoder_and_decoder_configs_built() -> None:
    """The old Seq2SeqTask(encoder=c, decoder=c) and today's (backbone=c): same keys, shapes and values."""
    cfg = dict(dim=16, depth=2, num_heads=2, mlp_ratio=2.0)
    torch.manual_seed(0)
    one = Seq2SeqTask(Seq2SeqConfig(lambda d: TextTokenizer(d, V), V, BackboneConfig(**cfg)), ctc_weight=0.5).state_dict()
    torch.manual_seed(0)
    two = Seq2SeqTask(Seq2SeqConfig(lambda d: TextTokenizer(d, V), V, BackboneConfig(**cfg), decoder=BackboneConfig(**cfg)), ctc_weight=0.5).state_dict()
    assert list(one) == list(two) and all(torch.equal(one[k], two[k]) for k in one)


def test_standalone_model_ties_its_output_projection() -> None:
    from mmformer.backbone import Decoder, Encoder

    c = BackboneConfig(dim=16, depth=1, num_heads=2)
    tgt = TextTokenizer(16, V)
    model = Seq2Seq(TextTokenizer(16, V), Encoder(c), tgt, Decoder(c))
    assert model.lm_head.weight is tgt.embed.weight


def test_export_keeps_the_ctc_head_and_decodes_like_the_task(tmp_path: Path) -> None:
    from mmformer.cli import main

    recipe = str(ROOT / "tasks" / "translation.yaml")
    small = ["--model.init_args.model.target_vocab_size=32", "--model.init_args.model.source_tokenizer.init_args.vocab_size=32",
             "--model.init_args.model.backbone.dim=16", "--model.init_args.model.backbone.depth=1",
             "--model.init_args.model.backbone.num_heads=2", "--model.init_args.ctc_weight=0.5",
             "--data.init_args.vocab_size=32"]
    cli = main(["--config", recipe, "--trainer.logger=false", "--trainer.callbacks=[]", *small], run=False)
    task = cli.model.eval()
    with torch.no_grad():
        for p in task.model.ctc_head.parameters():  # a head far from its init: decoding depends on it
            p.normal_(0, 1.0)
    ckpt = tmp_path / "task.ckpt"
    torch.save({"state_dict": task.state_dict(), FORMAT_KEY: FORMAT_VERSION}, ckpt)
    exported = load_exported(export_model(recipe, ckpt, tmp_path / "export", *small))
    assert exported.ctc_head is not None
    src = torch.randint(4, 32, (3, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ctc_greedy(task.model, task.model.encode(src))
        got = ctc_greedy(exported, exported.encode(src))
    assert got == want and any(want)
