"""Contract checks a tokenizer author can call from their own tests.

Example::

    from mmformer.testing import check_tokenizer
    def test_my_tokenizer():
        check_tokenizer(MySensorTokenizer(dim=32))
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch


class ContractError(AssertionError):
    """A tokenizer broke the ModalityTokenizer contract; the message says which part."""


def _require(ok: bool, name: str, msg: str) -> None:
    if not ok:
        raise ContractError(f"{name}: {msg}")


def _map_tensors(x: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Applies ``fn`` to every tensor inside nested lists/tuples/dicts; everything else kept."""
    if isinstance(x, Tensor):
        return fn(x)
    if isinstance(x, dict):
        return {k: _map_tensors(v, fn) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_map_tensors(v, fn) for v in x)
    return x


def _real_rows(batch: TokenBatch, i: int) -> Tensor:
    """Sample i's real tokens ``(n_i, D)``."""
    return batch.tokens[i][batch.real_mask()[i]]


def check_tokenizer(
    tokenizer: ModalityTokenizer,
    inputs: Any = None,
    padded_inputs: Any = None,
    *,
    atol: float = 1e-5,
    check_dtype: bool = True,
) -> TokenBatch:
    """Runs the tokenizer contract checks and returns the TokenBatch of ``inputs``.

    Checks: output types, shapes and dtypes; a non-empty mask per sample; finite tokens;
    determinism in eval mode; padding invariance (``padded_inputs`` holds the same samples with
    extra padding); gradients reach every trainable parameter; float64 and (when CUDA exists)
    device moves keep the tokens.

    Args:
        tokenizer: the tokenizer under test.
        inputs: a raw batch; default ``tokenizer.dummy_inputs()``.
        padded_inputs: the same samples padded further; default ``tokenizer.dummy_inputs(pad=3)``
            when ``inputs`` was not given. Pass both to check your own data.
        atol: tolerance of the invariance checks.
        check_dtype: also run in float64 and compare.
    Raises:
        ContractError: naming the broken part of the contract.
    """
    name = type(tokenizer).__name__
    if inputs is None:
        inputs, padded_inputs = tokenizer.dummy_inputs(), tokenizer.dummy_inputs(pad=3)
    was_training = tokenizer.training
    param = next(tokenizer.parameters(), None)
    home = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    tokenizer.eval()
    try:
        with torch.no_grad():
            out = tokenizer(inputs)
            _require(isinstance(out, TokenBatch), name, f"forward must return a TokenBatch, got {type(out).__name__}")
            b, n, d = out.tokens.shape
            _require(d == tokenizer.dim, name, f"tokens have width {d}, tokenizer.dim is {tokenizer.dim}")
            _require(n > 0 and b > 0, name, f"empty TokenBatch of shape {(b, n, d)}")
            real = out.real_mask()
            _require(bool(real.any(dim=1).all()), name, "every sample needs at least one real token (mask True)")
            _require(bool(torch.isfinite(out.tokens).all()), name, "tokens contain NaN or inf")
            if param is not None:
                _require(out.tokens.dtype == param.dtype, name,
                         f"tokens are {out.tokens.dtype} but the module's parameters are {param.dtype}")
            again = tokenizer(inputs)
            _require(torch.allclose(out.tokens, again.tokens, atol=atol), name, "eval-mode forward is not deterministic")
            if padded_inputs is not None:
                _check_padding(name, out, tokenizer(padded_inputs), atol)
        _check_gradients(name, tokenizer, inputs)
        if check_dtype:
            _check_move(name, tokenizer, inputs, out, torch.float64, "cpu", atol=1e-4)
        if torch.cuda.is_available():
            _check_move(name, tokenizer, inputs, out, torch.float32, "cuda", atol=1e-3)
    finally:
        tokenizer.to(*home).train(was_training)
    return out


def _check_padding(name: str, out: TokenBatch, padded: TokenBatch, atol: float) -> None:
    _require(padded.batch_size == out.batch_size, name, "padded inputs changed the batch size")
    _require(padded.seq_len >= out.seq_len, name, "padded inputs produced fewer tokens")
    for i in range(out.batch_size):
        a, p = _real_rows(out, i), _real_rows(padded, i)
        _require(a.shape == p.shape, name,
                 f"sample {i} has {a.shape[0]} real tokens, but {p.shape[0]} once the batch is padded further; "
                 f"padding must be masked out (mask False)")
        _require(torch.allclose(a, p, atol=atol), name,
                 f"sample {i}'s real tokens change when the batch is padded further "
                 f"(max diff {(a - p).abs().max().item():.3g}); padding leaks into real tokens")


def _check_gradients(name: str, tokenizer: ModalityTokenizer, inputs: Any) -> None:
    if not any(p.requires_grad for p in tokenizer.parameters()):
        return  # nothing to train (a fixed feature extractor)
    saved = {n: b.detach().clone() for n, b in tokenizer.named_buffers()}  # BatchNorm running stats
    tokenizer.zero_grad(set_to_none=True)
    tokenizer.train()
    torch.manual_seed(0)
    out = tokenizer(inputs)
    # A weighted sum so no gradient cancels by symmetry (a plain sum of normalized tokens can).
    weight = torch.linspace(0.5, 1.5, out.dim, device=out.tokens.device, dtype=out.tokens.dtype)
    (out.tokens[out.real_mask()] * weight).sum().backward()
    missing = [n for n, p in tokenizer.named_parameters() if p.requires_grad and p.grad is None]
    _require(not missing, name, f"no gradient reaches parameters {missing}")
    with torch.no_grad():  # a training-mode forward must not change the module it checks
        for n, b in tokenizer.named_buffers():
            b.copy_(saved[n])
    tokenizer.zero_grad(set_to_none=True)
    tokenizer.eval()


def _check_move(
    name: str, tokenizer: ModalityTokenizer, inputs: Any, ref: TokenBatch, dtype: torch.dtype, device: str,
    atol: float,
) -> None:
    moved = tokenizer.to(device=device, dtype=dtype)
    with torch.no_grad():
        out = moved(_map_tensors(inputs, lambda t: t.to(device, dtype) if t.is_floating_point() else t.to(device)))
    _require(out.tokens.dtype == dtype, name, f"after .to({dtype}) tokens are {out.tokens.dtype}")
    _require(out.tokens.device.type == device, name, f"after .to({device!r}) tokens are on {out.tokens.device}")
    _require(out.real_mask().device.type == device, name, f"mask stayed on {out.real_mask().device}")
    _require(torch.allclose(out.tokens.float().cpu(), ref.tokens.float(), atol=atol), name,
             f"tokens differ after moving to {device}/{dtype}")

