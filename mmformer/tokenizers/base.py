"""The tokenizer contract: ``TokenBatch``, ``ModalityTokenizer`` and a thin registry for discovery."""

from __future__ import annotations

import abc
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Any, Callable, TypeVar

import torch
from torch import Tensor, nn

from mmformer.layers.packing import Packing

ENTRY_POINT_GROUP = "mmformer.tokenizers"


@dataclass
class TokenBatch:
    """The one currency between modality tokenizers and the backbone.

    Attributes:
        tokens: ``(B, N, D)`` float embeddings, positional information already added where the
            tokenizer owns an absolute scheme.
        mask: ``(B, N)`` bool, True = real token; None means every token is real, which lets
            attention take its fastest kernel.
        positions: ``(N,)`` or ``(B, N)`` integer positions for schemes applied inside attention
            (RoPE); None = ``0 .. N-1``.
        grid: ``(H, W)`` of the patch grid for 2D tokens (patches follow any prefix tokens, row-major).
        num_prefix_tokens: leading tokens that are not part of the grid or sequence (CLS, registers).
        needs_rope: the tokens carry no positional signal of their own and rely on the backbone's
            rotary attention (a backbone without RoPE refuses them rather than train order-blind).
        documents: ``(B, N)`` long, packed rows only (see :meth:`packed`): the sample each token
            belongs to, -1 in row tails; the backbone then attends within documents.
    """

    tokens: Tensor
    mask: Tensor | None = None
    positions: Tensor | None = None
    grid: tuple[int, int] | None = None
    num_prefix_tokens: int = 0
    needs_rope: bool = False
    documents: Tensor | None = None

    def __post_init__(self) -> None:
        if self.tokens.dim() != 3 or not self.tokens.is_floating_point():
            raise ValueError(
                f"TokenBatch.tokens must be a float (B, N, D) tensor, got {self.tokens.dtype} "
                f"of shape {tuple(self.tokens.shape)}"
            )
        b, n, _ = self.tokens.shape
        if self.mask is not None:
            if self.mask.dtype != torch.bool:
                raise ValueError(f"TokenBatch.mask must be bool (True = real token), got dtype {self.mask.dtype}")
            if tuple(self.mask.shape) != (b, n):
                raise ValueError(f"TokenBatch.mask has shape {tuple(self.mask.shape)}; tokens need ({b}, {n})")
        if self.positions is not None and tuple(self.positions.shape) not in {(n,), (b, n)}:
            raise ValueError(
                f"TokenBatch.positions has shape {tuple(self.positions.shape)}; tokens need ({n},) or ({b}, {n})"
            )
        if self.documents is not None and (tuple(self.documents.shape) != (b, n) or self.documents.is_floating_point()):
            raise ValueError(f"TokenBatch.documents must be integer ({b}, {n}), got {self.documents.dtype} "
                             f"{tuple(self.documents.shape)}")
        if self.grid is not None and self.num_prefix_tokens + self.grid[0] * self.grid[1] > n:
            raise ValueError(f"grid {self.grid} plus {self.num_prefix_tokens} prefix tokens exceeds {n} tokens")

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def seq_len(self) -> int:
        return self.tokens.shape[1]

    @property
    def dim(self) -> int:
        return self.tokens.shape[2]

    def real_mask(self) -> Tensor:
        """The mask with None expanded to all-True: ``(B, N)`` bool."""
        if self.mask is not None:
            return self.mask
        return torch.ones(self.tokens.shape[:2], dtype=torch.bool, device=self.tokens.device)

    def with_tokens(self, tokens: Tensor) -> TokenBatch:
        """The same batch layout around new ``(B, N, D')`` tokens."""
        return replace(self, tokens=tokens)

    def to(self, *args: Any, **kwargs: Any) -> TokenBatch:
        """Moves tokens like ``Tensor.to``; mask and positions move device only."""
        tokens = self.tokens.to(*args, **kwargs)
        move = (lambda t: None if t is None else t.to(tokens.device))
        return replace(self, tokens=tokens, mask=move(self.mask), positions=move(self.positions),
                       documents=move(self.documents))

    def packed(self, packing: Packing) -> TokenBatch:
        """This right-padded batch ``(B, N, D)`` with its samples packed into rows ``(R, L, D)``.

        Every sample's real tokens must be a prefix of its row (right padding) whose length is
        ``packing.length``. Absolute positions were added per sample already; RoPE positions restart
        per sample (``positions`` become ``(R, L)``). The result carries ``documents`` so the backbone
        isolates the samples, and ``mask`` = not a row tail.
        """
        if self.documents is not None:
            raise ValueError("this TokenBatch is packed already")
        if self.grid is not None or self.num_prefix_tokens:
            raise ValueError("packing keeps no patch grid or prefix tokens; pack sequence tokenizers only")
        docs = packing.documents()  # (R, L)
        if self.positions is not None and self.positions.dim() == 2:
            positions = packing.pack(self.positions[..., None])[..., 0]
        else:  # 0 .. n-1 per sample (a (N,) table is arange-like for right-padded rows)
            positions = packing.positions() if self.positions is None else packing.pack(
                self.positions[None, :, None].expand(self.batch_size, -1, -1))[..., 0]
        return TokenBatch(packing.pack(self.tokens), docs >= 0, positions, needs_rope=self.needs_rope, documents=docs)


class ModalityTokenizer(nn.Module, abc.ABC):
    """Turns a raw batch of one modality into a :class:`TokenBatch` of width ``dim``.

    Subclasses take ``dim`` as their first ``__init__`` argument: task modules build tokenizers
    as ``tokenizer(dim)`` from YAML (``class_path`` + ``init_args`` without ``dim``), so the
    backbone's width reaches every tokenizer without being repeated in a config.

    Contract (checked by :func:`mmformer.testing.check_tokenizer`):
      * ``forward(inputs)`` returns ``TokenBatch(tokens (B, N, dim), mask (B, N) bool or None)``;
      * a sample's real tokens do not depend on how much padding its batch carries;
      * tokens come out in the module's floating dtype and on its device;
      * gradients reach the tokenizer's parameters.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"tokenizer dim must be positive, got {dim}")
        self.dim = dim

    @abc.abstractmethod
    def forward(self, inputs: Any) -> TokenBatch:
        """Raw modality batch → TokenBatch."""

    def dummy_inputs(self, batch_size: int = 2, pad: int = 0, seed: int = 0) -> Any:
        """A small deterministic raw batch for contract tests.

        ``pad > 0`` returns the same samples with ``pad`` more units of padding (time steps,
        characters, ...) so padding invariance can be checked. Override it in each tokenizer.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not define dummy_inputs(); pass inputs to check_tokenizer explicitly"
        )


T = TypeVar("T", bound=type)
_REGISTRY: dict[str, type[ModalityTokenizer]] = {}


def register_tokenizer(name: str | None = None) -> Callable[[T], T]:
    """Class decorator listing a tokenizer for discovery (``list_tokenizers``) and generic tests.

    It never constructs anything: configs name classes by ``class_path``.
    """

    def deco(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, ModalityTokenizer)):
            raise TypeError(f"{cls!r} is not a ModalityTokenizer subclass")
        key = name or cls.__name__
        if _REGISTRY.get(key, cls) is not cls:
            raise ValueError(f"tokenizer name {key!r} is already registered by {_REGISTRY[key].__qualname__}")
        _REGISTRY[key] = cls
        return cls

    return deco


def registered_tokenizers(include_entry_points: bool = True) -> dict[str, type[ModalityTokenizer]]:
    """Tokenizers registered so far by name (modules imported until now), plus those other packages
    expose in the ``mmformer.tokenizers`` entry-point group (loaded on demand).

    :func:`mmformer.tokenizers.list_tokenizers` is the full list: it imports the built-in tokenizers first.
    """
    found = dict(_REGISTRY)
    if include_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, ModalityTokenizer)):
                raise TypeError(f"entry point {ep.name!r} ({ep.value}) is not a ModalityTokenizer subclass")
            found.setdefault(ep.name, cls)
    return found
