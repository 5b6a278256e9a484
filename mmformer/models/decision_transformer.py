"""Decision transformer (Chen et al. 2021) as a plain model: return-conditioned action prediction
with a causal backbone over (return-to-go, state, action) tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmformer.backbone import Encoder
from mmformer.heads import ActionHead
from mmformer.layers.packing import Packing
from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch
from mmformer.tokenizers.trajectory import TOKENS_PER_STEP

# What the model and its task read from a trajectory tokenizer besides forward(traj) → (B, 3K, D) tokens
# interleaved (return, state, action) per step: the sizes the data is checked against, and the setter of
# the training states' statistics.
TRAJECTORY_TOKENIZER_API = ("state_dim", "act_dim", "discrete_actions", "set_state_stats")


def check_trajectory_tokenizer(tokenizer: object) -> None:
    """Raises a TypeError naming what ``tokenizer`` lacks to serve a decision transformer.

    Any :class:`ModalityTokenizer` with ``state_dim``, ``act_dim``, ``discrete_actions`` and
    ``set_state_stats(mean, std)`` qualifies (:class:`TrajectoryTokenizer`, a subclass, or a plug-in).
    """
    missing = [name for name in TRAJECTORY_TOKENIZER_API if not hasattr(tokenizer, name)]
    if not isinstance(tokenizer, ModalityTokenizer) or missing:
        what = f"lacks {', '.join(missing)}" if missing else "is not a ModalityTokenizer"
        raise TypeError(f"the decision transformer's tokenizer {type(tokenizer).__name__} {what}: it needs a "
                        f"ModalityTokenizer with {', '.join(TRAJECTORY_TOKENIZER_API)} (e.g. "
                        f"mmformer.tokenizers.trajectory.TrajectoryTokenizer or a subclass)")


def sample_categorical(logits: Tensor, temperature: float = 1.0, uniform: Tensor | None = None) -> Tensor:
    """Samples one id per row of ``logits (B, C)`` from ``softmax(logits / temperature)``: ``(B,)``.

    By inverse CDF: row ``b`` takes the first id whose cumulative probability exceeds ``uniform[b]``
    (``(B,)`` in ``[0, 1)``; None draws it from torch's global generator). Passing the draws in lets
    each row's randomness come from its own stream, whatever else is in the batch.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature} (take the argmax for greedy decoding)")
    if uniform is None:
        uniform = torch.rand(logits.shape[0], device=logits.device)
    cdf = F.softmax(logits.float() / temperature, -1).cumsum(-1)  # (B, C)
    ids = torch.searchsorted(cdf, uniform.to(cdf)[:, None], right=True)[:, 0]  # (B,)
    return ids.clamp_max(logits.shape[-1] - 1)  # a draw above the rounded total takes the last id


class DecisionTransformer(nn.Module):
    """Trajectory ``(B, K)`` → action predictions at every state token.

    Args:
        tokenizer: the trajectory tokenizer (holds the state statistics): a :class:`TrajectoryTokenizer`
            or any tokenizer with its API (see :func:`check_trajectory_tokenizer`).
        backbone: a causal encoder.
        context: K, the timesteps the model sees (rollouts slide a K-step window).
        head_dropout: dropout before the action head.
    """

    def __init__(
        self, tokenizer: ModalityTokenizer, backbone: Encoder, context: int, head_dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_trajectory_tokenizer(tokenizer)
        if not backbone.causal:
            raise ValueError("a decision transformer needs a causal backbone (BackboneConfig(causal=True))")
        self.tokenizer, self.backbone, self.context = tokenizer, backbone, context
        self.discrete, self.act_dim, self.state_dim = tokenizer.discrete_actions, tokenizer.act_dim, tokenizer.state_dim
        self.head = ActionHead(backbone.config.dim, self.act_dim, self.discrete, head_dropout)
        # Continuous actions live in [low, high] (the env's bounds, set from the data; checkpointed).
        self.register_buffer("action_low", -torch.ones(self.act_dim))
        self.register_buffer("action_high", torch.ones(self.act_dim))

    def forward(self, traj: dict[str, Tensor], packing: Packing | None = None) -> Tensor:
        """Discrete: logits ``(B, K, act_dim)``; continuous: squashed actions in ``[-1, 1]`` ``(B, K, A)``.

        ``packing`` (planned from ``tokenizer.token_counts(traj)``) runs the backbone on packed rows, each
        segment attending causally within itself; the outputs come back in the padded layout.
        """
        batch = self.tokenizer(traj)
        # Padding is on the right and attention is causal, so no real token ever sees a padded one:
        # dropping the mask keeps SDPA's is_causal kernel (padded outputs are ignored by the loss).
        tokens = TokenBatch(batch.tokens)
        if packing is None:
            hidden = self.backbone(tokens).hidden  # (B, 3K, D)
        else:
            hidden = packing.unpack(self.backbone(tokens.packed(packing)).hidden, batch.seq_len)  # (B, 3K, D)
        return self.head(hidden[:, 1::TOKENS_PER_STEP])  # state tokens predict the action: (B, K, A)

    def to_unit(self, actions: Tensor) -> Tensor:
        """Continuous actions → ``[-1, 1]`` by the action bounds."""
        return (actions - self.action_low) / (self.action_high - self.action_low) * 2 - 1

    def from_unit(self, unit: Tensor) -> Tensor:
        """``[-1, 1]`` → continuous actions within the bounds."""
        return self.action_low + (unit + 1) * 0.5 * (self.action_high - self.action_low)

    @torch.no_grad()
    def act(self, traj: dict[str, Tensor], sample: bool = True, temperature: float = 1.0,
            uniform: Tensor | None = None) -> Tensor:
        """Action for the last timestep of each window: ``(B,)`` ids or ``(B, A)`` env-scaled vectors.

        Args:
            traj: trajectory windows ``(B, k)`` (the current action is a placeholder).
            sample: discrete actions are sampled from the softmax (else the most likely one);
                continuous ones are always the deterministic tanh output.
            temperature: softmax temperature when sampling.
            uniform: ``(B,)`` draws in ``[0, 1)``, one per row (see :func:`sample_categorical`);
                None draws from torch's global generator.
        """
        out = self(traj)[:, -1]  # (B, A)
        if not self.discrete:
            return self.from_unit(out)
        if not sample:
            return out.argmax(-1)
        return sample_categorical(out, temperature, uniform)

    def action_targets(self, traj: dict[str, Tensor], dtype: torch.dtype = torch.float32) -> Tensor:
        """What ``forward`` is trained towards: ``(B, K)`` action ids, or ``(B, K, A)`` actions in ``[-1, 1]``.

        Continuous actions are cast to ``dtype`` (the predictions' dtype) before scaling. With
        :func:`mmformer.losses.action_loss`: ``action_loss(out, model.action_targets(traj, out.dtype),
        traj["mask"], model.discrete)``.
        """
        return traj["actions"] if self.discrete else self.to_unit(traj["actions"].to(dtype))
