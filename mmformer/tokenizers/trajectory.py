"""Control trajectories as tokens: (R̂₁, s₁, a₁, R̂₂, s₂, a₂, ...) for a causal backbone (decision transformer).

A raw trajectory batch is a dict of K timesteps per sample (right-padded, padding masked)::

    {"returns_to_go": (B, K) float, "states": (B, K, S) float, "actions": (B, K) long | (B, K, A) float,
     "timesteps": (B, K) long, "mask": (B, K) bool}

Each timestep becomes three tokens. Returns-to-go are divided by ``return_scale``, states are
normalized by the training data's statistics (buffers, so they travel in checkpoints and exports),
continuous values go through linear maps, discrete actions through an embedding table, and a
learned per-timestep embedding is added to all three tokens (Chen et al. 2021).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch, register_tokenizer

TOKENS_PER_STEP = 3  # return-to-go, state, action
KEYS = ("returns_to_go", "states", "actions", "timesteps", "mask")


@register_tokenizer("trajectory")
class TrajectoryTokenizer(ModalityTokenizer):
    """Returns-to-go, states and actions → interleaved tokens ``(B, 3K, dim)`` with mask ``(B, 3K)``.

    Args:
        dim: token width D.
        state_dim: observation size S (a task fills it from its data's ControlSpec when None).
        act_dim: number of discrete actions, or the size A of a continuous action vector (from the data when None).
        discrete_actions: an embedding table for action ids (else a linear map of action vectors); None = from
            the data in a task, discrete when built by hand.
        max_timestep: size of the timestep embedding table; later timesteps share its last row.
        return_scale: returns-to-go are divided by it (about the largest return of the task).
    """

    def __init__(
        self,
        dim: int,
        state_dim: int | None = None,
        act_dim: int | None = None,
        discrete_actions: bool | None = None,
        max_timestep: int = 1024,
        return_scale: float = 100.0,
    ) -> None:
        super().__init__(dim)
        if state_dim is None or act_dim is None:
            raise ValueError("TrajectoryTokenizer needs state_dim and act_dim: a task fills them from its data's "
                             "ControlSpec (leave them out of the recipe); set them when building it by hand")
        discrete_actions = True if discrete_actions is None else discrete_actions
        if state_dim <= 0 or act_dim <= 0 or max_timestep <= 0 or return_scale <= 0:
            raise ValueError(f"state_dim, act_dim, max_timestep and return_scale must be positive, got "
                             f"{state_dim}, {act_dim}, {max_timestep}, {return_scale}")
        self.state_dim, self.act_dim, self.discrete_actions = state_dim, act_dim, discrete_actions
        self.max_timestep, self.return_scale = max_timestep, return_scale
        self.embed_return = nn.Linear(1, dim)
        self.embed_state = nn.Linear(state_dim, dim)
        self.embed_action = nn.Embedding(act_dim, dim) if discrete_actions else nn.Linear(act_dim, dim)
        self.embed_timestep = nn.Embedding(max_timestep, dim)
        self.norm = nn.LayerNorm(dim)
        # Statistics of the training states, set by the task from the data (checkpointed as buffers).
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))

    @torch.no_grad()
    def set_state_stats(self, mean: Tensor, std: Tensor) -> None:
        """Stores the training data's state mean and std ``(S,)`` (std floored at 1e-6)."""
        if mean.shape != (self.state_dim,) or std.shape != (self.state_dim,):
            raise ValueError(f"state statistics have shapes {tuple(mean.shape)}/{tuple(std.shape)}, "
                             f"the tokenizer's state_dim is {self.state_dim}")
        self.state_mean.copy_(mean)
        self.state_std.copy_(std.clamp_min(1e-6))

    def check_inputs(self, inputs: dict[str, Tensor]) -> None:
        """Raises ValueError naming a missing key or a shape that does not fit this tokenizer."""
        missing = [k for k in KEYS if k not in inputs]
        if missing:
            raise ValueError(f"trajectory batch lacks {missing}; it needs {list(KEYS)}")
        b, k = inputs["timesteps"].shape
        s = inputs["states"].shape
        if tuple(s) != (b, k, self.state_dim):
            raise ValueError(f"states have shape {tuple(s)}, expected ({b}, {k}, {self.state_dim}) (state_dim)")
        a = tuple(inputs["actions"].shape)
        want = (b, k) if self.discrete_actions else (b, k, self.act_dim)
        if a != want:
            kind = "discrete action ids" if self.discrete_actions else f"{self.act_dim}-dim continuous actions"
            raise ValueError(f"actions have shape {a}, expected {want} for {kind}")

    def forward(self, inputs: dict[str, Tensor]) -> TokenBatch:
        self.check_inputs(inputs)
        dtype = self.embed_state.weight.dtype
        b, k = inputs["timesteps"].shape
        states = (inputs["states"].to(dtype) - self.state_mean) / self.state_std  # (B, K, S)
        r = self.embed_return(inputs["returns_to_go"].to(dtype)[..., None] / self.return_scale)  # (B, K, D)
        s = self.embed_state(states)
        actions = inputs["actions"]
        if self.discrete_actions:
            a = self.embed_action(actions.long().clamp(0, self.act_dim - 1))  # padding ids may be anything
        else:
            a = self.embed_action(actions.to(dtype))
        t = self.embed_timestep(inputs["timesteps"].long().clamp(0, self.max_timestep - 1))  # (B, K, D)
        tokens = torch.stack([r + t, s + t, a + t], dim=2).reshape(b, TOKENS_PER_STEP * k, self.dim)  # (B, 3K, D)
        mask = inputs["mask"].bool().repeat_interleave(TOKENS_PER_STEP, dim=1)  # (B, 3K)
        return TokenBatch(self.norm(tokens), mask)

    def token_counts(self, inputs: dict[str, Tensor]) -> Tensor:
        """Real tokens per right-padded segment: ``(B,)`` long, three per real timestep (what packing plans with)."""
        return TOKENS_PER_STEP * inputs["mask"].long().sum(1)

    def dummy_inputs(self, batch_size: int = 2, pad: int = 0, seed: int = 0) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(seed)
        k = 4
        lengths = torch.tensor([4, 2, 3, 1] * batch_size)[:batch_size]
        mask = torch.arange(k + pad) < lengths[:, None]  # (B, K + pad), right padding
        steps = torch.randint(0, 50, (batch_size, 1), generator=g) + torch.arange(k + pad)
        if self.discrete_actions:
            actions = torch.randint(0, self.act_dim, (batch_size, k + pad), generator=g)
        else:
            actions = torch.rand(batch_size, k + pad, self.act_dim, generator=g) * 2 - 1
        batch = {
            "returns_to_go": torch.rand(batch_size, k + pad, generator=g) * 100,
            "states": torch.randn(batch_size, k + pad, self.state_dim, generator=g),
            "actions": actions,
            "timesteps": steps,
            "mask": mask,
        }
        # Padding holds zeros, as the data pipeline writes it.
        for key in ("returns_to_go", "states", "actions", "timesteps"):
            m = mask if batch[key].dim() == 2 else mask[..., None]
            batch[key] = batch[key] * m
        # The real part must not depend on pad: regenerate it without padding and copy it in.
        return batch if pad == 0 else _with_real(self.dummy_inputs(batch_size, 0, seed), batch, k)


def _with_real(real: dict[str, Tensor], padded: dict[str, Tensor], k: int) -> dict[str, Tensor]:
    """``padded`` with its first ``k`` timesteps replaced by ``real``'s (same samples, more padding)."""
    out = {}
    for key, value in padded.items():
        value = value.clone()
        value[:, :k] = real[key]
        out[key] = value
    return out
