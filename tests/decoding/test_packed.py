"""MKL-packed linears for CPU decoding: the same function as F.linear, packed only for a repeated row count,
swapped in and out cleanly, and decoding with them gives the tokens and scores it gives without them."""

from __future__ import annotations

import sys
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmformer.decoding import stepper
from mmformer.backbone import BackboneConfig, Decoder, Encoder
from mmformer.decoding import GenerationConfig, beam_search, generate
from mmformer.heads import LMHead, ProjectionHead
from mmformer.decoding.packed import PACK_AFTER, is_packed, mkl_packing_available, packed_linears
from mmformer.models.seq2seq import Seq2Seq
from mmformer.tokenizers.text import TextTokenizer

pytestmark = pytest.mark.skipif(not mkl_packing_available(), reason="this torch has no MKL packed GEMM")


def _linear(n_in: int = 48, n_out: int = 80, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(n_in, n_out, bias=bias)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(8, 48), (2, 4, 48), (3, 1, 48)])
def test_packed_product_equals_f_linear_and_packs_once_a_row_count_repeats_pack_after_times(
        shape: tuple[int, ...], bias: bool) -> None:
    lin, x = _linear(bias=bias), torch.randn(*shape)
    rows = x.numel() // x.shape[-1]
    with torch.no_grad(), packed_linears(lin) as (fwd,):
        ref = F.linear(x, lin.weight, lin.bias)
        outs = [lin(x) for _ in range(PACK_AFTER - 1)]
        assert fwd.rows is None  # a short loop, an encoder pass, a prefill: nothing packed
        outs += [lin(x), lin(x)]
        assert fwd.rows == rows
        for _ in range(PACK_AFTER + 1):  # alternating with another row count: the plain product there, no repacking
            other = lin(torch.randn(rows + 1, 48))
            assert other.shape == (rows + 1, 80) and fwd.rows == rows
            outs.append(lin(x))
        outs += [lin(torch.randn(rows + 1, 48)) for _ in range(PACK_AFTER)]
        assert fwd.rows == rows + 1  # a new loop of another row count repacks
    for out in outs[:PACK_AFTER + 1]:
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_the_modules_own_forward_comes_back_after_the_block_even_after_an_error() -> None:
    lin = _linear()
    with pytest.raises(RuntimeError, match="boom"), packed_linears(lin):
        assert is_packed(lin)
        raise RuntimeError("boom")
    assert not is_packed(lin) and "forward" not in lin.__dict__
    with packed_linears(lin) as outer:
        with packed_linears(lin) as inner:  # nested (generate -> beam_search): the inner block shares the swap
            assert inner == outer and lin.forward is outer[0]
        assert is_packed(lin)
    assert not is_packed(lin)
    assert set(lin.state_dict()) == {"weight", "bias"}


def test_only_plain_linears_are_swapped_and_nothing_when_disabled() -> None:
    emb = nn.Embedding(30, 16)
    model = nn.ModuleDict({"plain": nn.Linear(16, 8), "lm": LMHead(16, 30, tied_embedding=emb),
                           "own_forward": ProjectionHead(16, 8), "emb": emb})
    with packed_linears(model):
        assert is_packed(model["plain"]) and is_packed(model["lm"])
        assert not is_packed(model["own_forward"])  # a subclass with its own forward keeps it
    with packed_linears(model, enabled=False):
        assert not is_packed(model["plain"])
    with packed_linears(object()) as swapped:  # decoding takes any object with the model's methods
        assert swapped == []


@pytest.mark.parametrize("context", ["grad", "bf16", "autocast"])
def test_autograd_other_dtypes_and_autocast_take_the_plain_product(context: str) -> None:
    lin, x = _linear(), torch.randn(8, 48)
    with packed_linears(lin) as (fwd,):
        if context == "grad":
            for _ in range(PACK_AFTER + 1):
                out = lin(x)
            out.sum().backward()  # the packed op has no autograd: F.linear ran
            assert lin.weight.grad is not None
        elif context == "bf16":
            lin.to(torch.bfloat16)
            for _ in range(PACK_AFTER + 1):
                out = lin(x.bfloat16())
            assert out.dtype == torch.bfloat16
        else:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                for _ in range(PACK_AFTER + 1):
                    out = lin(x)
            assert out.dtype == torch.bfloat16
        assert fwd.rows is None


def _seq2seq() -> Seq2Seq:
    torch.manual_seed(0)
    cfg = BackboneConfig(dim=32, depth=2, num_heads=4, mlp_ratio=2.0)
    model = Seq2Seq(TextTokenizer(32, 50), Encoder(cfg), TextTokenizer(32, 50, max_len=64), Decoder(cfg),
                    tie_embeddings=True).eval()
    with torch.no_grad():  # sharp distributions: decoding choices depend on the logits, not on ties
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_decoding_on_packed_weights_gives_the_tokens_and_scores_of_plain_weights(
        strategy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, src = _seq2seq(), torch.randint(4, 50, (3, 9))
    cfg = GenerationConfig(strategy=strategy, beam_size=3, max_new_tokens=16, min_new_tokens=16)
    seen: list[bool] = []
    decode = model.decode

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(is_packed(model.decoder.blocks[0].mlp.fc1) and is_packed(model.lm_head))
        return decode(*args, **kwargs)

    monkeypatch.setattr(model, "decode", spy)
    run = (lambda: beam_search(model, src, cfg)) if strategy == "beam" else (lambda: generate(model, src, cfg))
    packed = run()
    assert seen and all(seen)  # every step ran on the swapped-in linears
    assert not is_packed(model.lm_head)
    with packed_linears(model) as forwards:  # generate's own block nests in this one, whose packings outlive it
        assert torch.equal(run().sequences if strategy == "beam" else run(),
                           packed.sequences if strategy == "beam" else packed)
        rows = {f.linear: f.rows for f in forwards}
    k = cfg.beam_size if strategy == "beam" else 1
    assert rows[model.lm_head] == rows[model.decoder.blocks[0].mlp.fc1] == 3 * k  # a step's rows: packed
    assert rows[model.encoder.blocks[0].mlp.fc1] is None  # the encoder runs once per call: never packed
    seen.clear()
    cfg.packed_weights = False
    plain = run()
    assert seen and not any(seen)
    if strategy == "beam":
        assert torch.equal(packed.sequences, plain.sequences)
        torch.testing.assert_close(packed.scores, plain.scores, rtol=1e-5, atol=1e-4)
    else:
        assert torch.equal(packed, plain)


def test_compiled_steps_the_uncached_path_and_packed_weights_false_stay_on_plain_linears(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model, src = _seq2seq(), torch.randint(4, 50, (2, 5))
    seen: list[bool] = []
    decode = model.decode
    monkeypatch.setattr(model, "decode", lambda *a, **k: (seen.append(is_packed(model.lm_head)), decode(*a, **k))[1])
    monkeypatch.setattr(stepper, "COMPILE_BACKEND", "eager")
    for cfg in (GenerationConfig(strategy="greedy", max_new_tokens=4, use_cache=False),
                GenerationConfig(strategy="greedy", max_new_tokens=4, compile=True),
                GenerationConfig(strategy="greedy", max_new_tokens=4, packed_weights=False)):
        generate(model, src, cfg)
    assert len(seen) >= 2 and not any(seen)


def test_blocks_of_two_threads_share_the_swap_and_only_the_last_leaver_restores() -> None:
    """Blocks that overlap without nesting (two threads decoding one model): the first leaver must not unpack
    the linears under the other thread, and the last one restores them."""
    lin = _linear()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}
    errors: list[BaseException] = []

    def thread_a() -> None:
        try:
            with packed_linears(lin):
                a_in.set()
                b_in.wait(5)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)
        a_out.set()

    def thread_b() -> None:
        try:
            a_in.wait(5)
            with packed_linears(lin):
                b_in.set()
                a_out.wait(5)
                seen["packed after the other left"] = is_packed(lin)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (thread_a, thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert seen == {"packed after the other left": True}
    assert not is_packed(lin) and "forward" not in lin.__dict__


def test_a_packed_linear_rejects_an_input_of_the_wrong_width_as_f_linear_does() -> None:
    lin, x = _linear(), torch.randn(8, 48)
    with torch.no_grad(), packed_linears(lin) as (fwd,):
        for _ in range(PACK_AFTER + 1):
            lin(x)
        assert fwd.rows == 8
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
            lin(torch.randn(8, 40))
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
            lin(torch.randn(8, 56))


def test_a_weight_changed_inside_the_block_is_repacked_not_served_stale() -> None:
    lin, x = _linear(), torch.randn(8, 48)
    with torch.no_grad(), packed_linears(lin) as (fwd,):
        for _ in range(PACK_AFTER + 1):
            lin(x)
        assert fwd.rows == 8
        lin.weight.mul_(2.0)  # in place: the packing's copy is stale
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), rtol=1e-5, atol=1e-5)
        lin.weight = nn.Parameter(torch.randn(80, 48))  # replaced
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), rtol=1e-5, atol=1e-5)


def test_eight_threads_decoding_one_model_give_the_sequential_tokens_and_restore_every_forward() -> None:
    model = _seq2seq()
    srcs = [torch.randint(4, 50, (2 + i % 3, 7), generator=torch.Generator().manual_seed(i)) for i in range(8)]
    cfgs = [GenerationConfig(strategy="beam" if i % 2 else "greedy", beam_size=3, max_new_tokens=PACK_AFTER + 6,
                             min_new_tokens=PACK_AFTER + 6) for i in range(8)]

    def run(i: int) -> torch.Tensor:
        if cfgs[i].strategy == "beam":
            return beam_search(model, srcs[i], cfgs[i]).sequences
        return generate(model, srcs[i], cfgs[i])

    expected = [run(i) for i in range(8)]
    got: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            start.wait(10)
            for _ in range(2):
                got[i] = run(i)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between bytecodes: races show up at once
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    for i in range(8):
        assert torch.equal(got[i], expected[i]), i
    assert not [n for n, m in model.named_modules() if "forward" in m.__dict__]
