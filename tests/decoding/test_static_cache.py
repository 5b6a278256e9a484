"""Static KV cache (fixed-shape decoding steps for torch.compile): token-identical to the growing cache and to
full recomputation, equal hidden states step by step, one compiled graph whatever the number of steps."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter

import mmformer.decoding.stepper as stepper
from mmformer.backbone import BackboneConfig, Decoder
from mmformer.decoding import GenerationConfig, beam_search, generate
from mmformer.tokenizers.base import TokenBatch
from tests.decoding.test_search import _model, _source


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
@pytest.mark.parametrize("positions,rope", [("learned", False), ("none", True), ("sinusoidal", False)])
def test_static_cache_decodes_the_same_tokens_as_the_growing_cache_and_recompute(strategy: str, positions: str,
                                                                                rope: bool) -> None:
    model, src = _model(positions=positions, rope=rope), _source()
    cfg = GenerationConfig(strategy=strategy, max_new_tokens=20, beam_size=3, top_k=10, top_p=0.9, seed=3)
    static = generate(model, src, GenerationConfig(**{**cfg.__dict__, "static_cache": True}))
    assert static.shape[1] > 1
    assert torch.equal(static, generate(model, src, cfg))
    assert torch.equal(static, generate(model, src, GenerationConfig(**{**cfg.__dict__, "use_cache": False})))


def test_static_cache_beam_scores_and_anti_repetition_options_match() -> None:
    model, src = _model(seed=4), _source()
    cfg = GenerationConfig(max_new_tokens=30, beam_size=3, no_repeat_ngram_size=2, repetition_penalty=1.3,
                           max_len_a=2.0, max_len_b=3)
    grow, static = beam_search(model, src, cfg), beam_search(model, src, GenerationConfig(**{**cfg.__dict__,
                                                                                          "static_cache": True}))
    assert torch.equal(grow.sequences, static.sequences) and torch.equal(grow.lengths, static.lengths)
    torch.testing.assert_close(static.scores, grow.scores, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kw", [dict(), dict(rope=True, num_kv_heads=2), dict(norm_position="post")])
def test_static_cache_steps_equal_the_full_pass_with_fixed_shapes(kw: dict) -> None:
    torch.manual_seed(0)
    dec = Decoder(BackboneConfig(dim=32, depth=2, num_heads=4, memory_dim=24, **kw)).eval()
    x, memory = torch.randn(3, 9, 32), torch.randn(3, 6, 24)
    memory_mask = torch.arange(6)[None] < torch.tensor([6, 3, 1])[:, None]
    with torch.no_grad():
        full = dec(TokenBatch(x), memory, memory_mask).hidden
        cache = dec.new_cache(capacity=12, static=True)
        for t in range(9):
            step = dec(TokenBatch(x[:, t : t + 1]), memory, memory_mask, cache=cache).hidden
            cache.advance()
            torch.testing.assert_close(step[:, 0], full[:, t], atol=1e-5, rtol=0, msg=f"position {t}")
            assert cache.length == t + 1 and int(cache.offset) == t + 1
            assert cache.layers[0].self_kv._k.shape[2] == 12  # never grows: the same shapes every step


def test_static_attention_reads_a_power_of_two_window_and_still_equals_the_full_pass() -> None:
    """Across window changes (16 → 32 → 40 slots), each step still equals the full pass: the window always
    covers every written slot, and the slots it reads beyond them stay masked."""
    from mmformer.layers.kv_cache import attention_window

    assert [attention_window(n, 40) for n in (1, 16, 17, 32, 33, 40)] == [16, 16, 32, 32, 40, 40]
    assert attention_window(5, 12) == 12  # never more than the capacity
    torch.manual_seed(0)
    dec = Decoder(BackboneConfig(dim=16, depth=1, num_heads=2, memory_dim=16)).eval()
    x, memory = torch.randn(2, 36, 16), torch.randn(2, 5, 16)
    with torch.no_grad():
        full = dec(TokenBatch(x), memory).hidden
        cache = dec.new_cache(capacity=40, static=True)
        windows = []
        for t in range(36):
            windows.append(cache.layers[0].self_kv.window)
            step = dec(TokenBatch(x[:, t : t + 1]), memory, cache=cache).hidden
            cache.advance()
            torch.testing.assert_close(step[:, 0], full[:, t], atol=1e-5, rtol=0, msg=f"position {t}")
    assert windows == [16] * 16 + [32] * 16 + [40] * 4


def test_static_cache_refuses_several_positions_at_once() -> None:
    dec = Decoder(BackboneConfig(dim=32, depth=1, num_heads=4)).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="one new position per step"):
        dec(TokenBatch(torch.randn(2, 3, 32)), torch.randn(2, 4, 32), cache=dec.new_cache(8, static=True))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_compiled_decoding_is_token_identical_and_never_recompiles_per_step(strategy: str, monkeypatch) -> None:
    counter = CompileCounter()  # dynamo traces for real; the graph runs eagerly (no inductor build in a test)
    monkeypatch.setattr(stepper, "COMPILE_BACKEND", counter)
    torch._dynamo.reset()
    model, src = _model(seed=2), _source()
    cfg = GenerationConfig(strategy=strategy, max_new_tokens=40, min_new_tokens=40, beam_size=3)
    compiled = GenerationConfig(**{**cfg.__dict__, "compile": True})
    assert torch.equal(generate(model, src, compiled), generate(model, src, cfg))
    # The steady step and one graph with the attention window symbolic once it grows (16 → 32 → 41 slots; the
    # first step, which projects the cross-attention K/V once, runs eagerly): a few graphs for 40 steps, not one
    # per step or per window (the position is a tensor).
    graphs = counter.frame_count
    assert 1 <= graphs <= 4
    generate(model, src, compiled)  # a second batch of the same shape reuses them
    assert counter.frame_count == graphs


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_cuda_graph_steps_write_only_into_buffers_that_exist_before_them(strategy: str, monkeypatch) -> None:
    """``cuda_graphs=True`` compiles with mode ``reduce-overhead``, and the compiled step only ever runs on a cache
    whose buffers were allocated by the eager first step and marked static (a CUDA graph would otherwise own
    them in its pool and overwrite them at the next replay). CPUs have no CUDA graphs: the contract and the tokens
    are what this checks."""
    counter, modes = CompileCounter(), []

    def backend(gm, inputs, **kw):  # records the mode torch.compile hands a non-inductor backend
        modes.append(kw.get("mode"))
        return counter(gm, inputs)

    monkeypatch.setattr(stepper, "COMPILE_BACKEND", backend)
    torch._dynamo.reset()
    model, src = _model(seed=5), _source()
    seen: list[int] = []
    real = stepper.compiled_decode

    def checked(m, mode=None):
        fn = real(m, mode)

        def step(ids, memory, cache, **kw):
            fixed = cache.tensors()
            first = cache.layers[0]
            assert cache.length >= 1 and first.self_kv._k is not None and first.cross_kv.k is not None
            assert all(getattr(t, "_dynamo_static_input_type", None) == "unguarded" for t in fixed)
            seen.append(len(fixed))
            return fn(ids, memory, cache, **kw)
        return step

    monkeypatch.setattr(stepper, "compiled_decode", checked)
    cfg = GenerationConfig(strategy=strategy, max_new_tokens=20, min_new_tokens=20, beam_size=3)
    graphs = GenerationConfig(**{**cfg.__dict__, "cuda_graphs": True})
    assert torch.equal(generate(model, src, graphs), generate(model, src, cfg))
    assert len(seen) == 19  # every step after the eager first one
    assert modes and set(modes) == {"reduce-overhead"}
    # position + (self K, V, cross K, V) per layer (+ the projection, where the model lays one out)
    assert seen[0] >= 1 + 4 * len(model.decoder.blocks)
