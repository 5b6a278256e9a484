"""The decoding protocol: mmformer's generative models satisfy it structurally (none imports mmformer.decoding),
a causal LM decodes with a static cache as with a dynamic one, and the old module paths of decoding still import
(saved configs and scripts that name ``mmformer.generation.GenerationConfig``)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import torch

from mmformer.backbone import BackboneConfig, Decoder, Encoder
from mmformer.decoding import CTCDecodingModel, DecodingModel, GenerationConfig, generate
from mmformer.models import CausalLM
from mmformer.models.prefix_lm import PrefixLM
from mmformer.models.seq2seq import Seq2Seq
from mmformer.tokenizers.text import TextTokenizer

ROOT = Path(__file__).resolve().parents[2]
CFG = BackboneConfig(dim=16, depth=1, num_heads=2, mlp_ratio=2.0)


def test_generative_models_satisfy_the_protocol_without_importing_decoding() -> None:
    s2s = Seq2Seq(TextTokenizer(16, 20), Encoder(CFG), TextTokenizer(16, 20, max_len=16), Decoder(CFG),
                  ctc_vocab_size=20)
    causal = CausalLM(TextTokenizer(16, 20, max_len=16), Encoder(BackboneConfig(dim=16, depth=1, num_heads=2,
                                                                                causal=True)))
    prefix = PrefixLM(TextTokenizer(16, 20, max_len=16), Encoder(BackboneConfig(dim=16, depth=1, num_heads=2,
                                                                                causal=True)), TextTokenizer(16, 20))
    for model in (s2s, causal, prefix):
        assert isinstance(model, DecodingModel), type(model).__name__
    assert isinstance(s2s, CTCDecodingModel)
    for path in (ROOT / "mmformer" / "models").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("mmformer.decoding"), path


def test_a_causal_lm_decodes_with_a_static_cache_as_with_a_dynamic_one() -> None:
    torch.manual_seed(0)
    lm = CausalLM(TextTokenizer(16, 30, max_len=32), Encoder(BackboneConfig(dim=16, depth=2, num_heads=2,
                                                                            causal=True))).eval()
    with torch.no_grad():
        for p in lm.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.5)
    cfg = GenerationConfig(strategy="greedy", max_new_tokens=10, min_new_tokens=10)
    dynamic = generate(lm, 3, cfg)
    cfg.static_cache = True
    assert torch.equal(generate(lm, 3, cfg), dynamic)


@pytest.mark.parametrize("old,new", [("mmformer.generation.GenerationConfig", "mmformer.decoding.GenerationConfig"),
                                     ("mmformer.generation.beam_search", "mmformer.decoding.search.beam_search"),
                                     ("mmformer.logit_processors.top_p_filter",
                                      "mmformer.decoding.processors.top_p_filter"),
                                     ("mmformer.ctc.ctc_greedy_decode", "mmformer.decoding.ctc.ctc_greedy_decode"),
                                     ("mmformer.ctc_prefix.CTCPrefixScorer",
                                      "mmformer.decoding.ctc_prefix.CTCPrefixScorer"),
                                     ("mmformer.layers.packed_linear.packed_linears",
                                      "mmformer.decoding.packed.packed_linears")])
def test_old_class_paths_of_decoding_still_load(old: str, new: str) -> None:
    from mmformer.tasks.legacy import upgrade_class_path

    def resolve(path: str) -> object:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)

    assert resolve(old) is resolve(new)
    assert resolve(upgrade_class_path(old)) is resolve(new)
    assert upgrade_class_path("mmformer.models.Seq2Seq") == "mmformer.models.Seq2Seq"
    import mmformer.decoding

    assert mmformer.decoding.__spec__.name == "mmformer.decoding"  # the alias left the module's own spec alone
