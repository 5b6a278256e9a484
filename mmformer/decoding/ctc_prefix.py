"""CTC prefix scores for label-synchronous beam search: hybrid CTC/attention decoding.

Watanabe et al. 2017 ("Hybrid CTC/Attention Architecture for End-to-End Speech Recognition", Algorithm 2):
an attention decoder alone may stop early or run on past the audio (nothing in it knows how much audio is
left); the CTC head's probability of a *prefix* — summed over every alignment of it to the frames — does.
Beam search ranks ``(1 - w) * log p_att(h) + w * log p_ctc(h...)`` (``GenerationConfig.ctc_weight``), where
the CTC term of a hypothesis is its prefix probability ``psi(h)`` and, once it ends with eos, the
probability of exactly that label sequence (``-F.ctc_loss``, which the tests check).

Forward variables of a prefix ``g`` at frame ``t``: ``r_n[t]`` (the last frame emits g's last label) and
``r_b[t]`` (it emits blank). Extending ``g`` by ``c``:

    phi[t]   = r_b(g)[t] + r_n(g)[t] * [last(g) != c]        (in log space: logaddexp)
    r_n(h)[t] = (r_n(h)[t-1] + phi[t-1]) * x_t(c)
    r_b(h)[t] = (r_n(h)[t-1] + r_b(h)[t-1]) * x_t(blank)
    psi(h)    = sum_t phi[t-1] * x_t(c)                     (+ x_0(c) when g is empty)
    psi(g + eos) = r_n(g)[T-1] + r_b(g)[T-1]

Padded frames (past a row's length) emit blank with probability 1, so frame ``T - 1`` holds every row's
end. Only ``C`` candidates per hypothesis are scored (the attention decoder's best, ESPnet's pre-beam):
each step costs ``O(T * R * C)`` in a loop over frames.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmformer.backbone import BackboneOutput
from mmformer.decoding.config import GenerationConfig

_NEG = float("-inf")


class CTCPrefixScorer:
    """Keeps each hypothesis' CTC forward variables and scores its candidate next labels.

    Args:
        log_probs: ``(R, T, V)`` per-frame log-probabilities (log-softmax of a CTC head), one row per hypothesis.
        lengths: ``(R,)`` real frames of each row.
        blank: the blank label (mmformer: the pad id).
        eos: the end-of-sequence id: appending it scores the probability of the whole label sequence.
    """

    def __init__(self, log_probs: Tensor, lengths: Tensor, blank: int, eos: int) -> None:
        if log_probs.dim() != 3 or lengths.shape != log_probs.shape[:1]:
            raise ValueError(f"log_probs must be (R, T, V) and lengths (R,), got {tuple(log_probs.shape)} and "
                             f"{tuple(lengths.shape)}")
        r, t, _ = log_probs.shape
        x = log_probs.float()
        pad = torch.arange(t, device=x.device)[None, :] >= lengths.to(x.device)[:, None]  # (R, T)
        x = x.masked_fill(pad[..., None], _NEG)
        x[..., blank] = x[..., blank].masked_fill(pad, 0.0)  # padded frames: blank, probability 1
        self.x = x.transpose(0, 1).contiguous()  # (T, R, V) frame-major for the loop over frames
        self.blank, self.eos = blank, eos
        # The empty prefix: every frame so far emitted blank.
        self.r_n = torch.full((t, r), _NEG, device=x.device)  # (T, R)
        self.r_b = self.x[:, :, blank].cumsum(0)  # (T, R)
        self.psi = torch.zeros(r, device=x.device)  # (R,) log prefix probability; the empty prefix: 1
        self.last = torch.full((r,), -1, dtype=torch.long, device=x.device)  # (R,) last label, -1 = none
        self.empty = torch.ones(r, dtype=torch.bool, device=x.device)  # (R,) prefix has no label yet
        self._pending: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def score(self, candidates: Tensor) -> Tensor:
        """``candidates (R, C)`` label ids → ``(R, C)`` ``log psi(g + c) - log psi(g)``, the CTC log-prob of
        each candidate as the next label (eos: of ending here). Remembered for :meth:`advance`."""
        t_len, r = self.r_n.shape
        c = candidates
        xs = self.x.gather(2, c[None].expand(t_len, -1, -1))  # (T, R, C) log x_t(c)
        same = c == self.last[:, None]  # (R, C) c repeats g's last label: needs a blank between
        phi = torch.logaddexp(self.r_b[..., None], torch.where(same, _NEG, self.r_n[..., None]))  # (T, R, C)
        start = torch.where(self.empty[:, None], xs[0], _NEG)  # (R, C) the first label at frame 0
        r_n = torch.empty_like(xs)
        r_b = torch.empty_like(xs)
        r_n[0], r_b[0] = start, _NEG
        blank = self.x[:, :, self.blank, None]  # (T, R, 1)
        for t in range(1, t_len):
            r_n[t] = torch.logaddexp(r_n[t - 1], phi[t - 1]) + xs[t]
            r_b[t] = torch.logaddexp(r_n[t - 1], r_b[t - 1]) + blank[t]
        psi = torch.logaddexp(start, torch.logsumexp(phi[:-1] + xs[1:], 0)) if t_len > 1 else start
        ended = torch.logaddexp(self.r_n[-1], self.r_b[-1])  # (R,) psi(g + eos)
        psi = torch.where(c == self.eos, ended[:, None], psi)
        self._pending = (c, r_n, r_b, psi)
        delta = psi - self.psi[:, None]
        return torch.where(torch.isneginf(self.psi)[:, None], _NEG, delta)  # a dead prefix stays dead

    def advance(self, rows: Tensor, tokens: Tensor) -> None:
        """Each new hypothesis ``i`` is old row ``rows[i]`` extended by ``tokens[i]``, one of that row's last
        candidates; a token not among them (the pad of a finished hypothesis) keeps the row's state."""
        if self._pending is None:
            raise RuntimeError("call score() before advance()")
        c, r_n, r_b, psi = self._pending
        c, psi = c[rows], psi[rows]  # (R, C)
        hit = c == tokens[:, None]  # (R, C)
        found = hit.any(1)  # (R,)
        col = hit.float().argmax(1)  # (R,)
        ar = torch.arange(len(rows), device=rows.device)
        new_n, new_b = r_n[:, rows, col], r_b[:, rows, col]  # (T, R)
        self.r_n = torch.where(found, new_n, self.r_n[:, rows])
        self.r_b = torch.where(found, new_b, self.r_b[:, rows])
        self.psi = torch.where(found, psi[ar, col], self.psi[rows])
        self.last = torch.where(found, tokens, self.last[rows])
        self.empty = self.empty[rows] & ~found
        self._pending = None


def hybrid_scorer(model: Any, memory: BackboneOutput, cfg: GenerationConfig, k: int) -> CTCPrefixScorer | None:
    """The CTC prefix scorer of hybrid decoding over ``k`` hypotheses per source (rows ``b*k .. b*k+k-1``), or
    None when ``cfg.ctc_weight`` is 0. ``model``: a :class:`~mmformer.decoding.protocol.CTCDecodingModel`."""
    if cfg.ctc_weight == 0.0:
        return None
    if not 0.0 < cfg.ctc_weight <= 1.0:
        raise ValueError(f"generation.ctc_weight must be in [0, 1], got {cfg.ctc_weight}")
    if getattr(model, "ctc_head", None) is None:
        raise ValueError("generation.ctc_weight > 0 needs a model with a CTC head: train it with ctc_weight > 0 "
                         "(model.init_args.ctc_weight), or set generation.ctc_weight to 0")
    log_probs = model.ctc_logits(memory).float().log_softmax(-1)  # (B, S, V)
    lengths = memory.mask.sum(1) if memory.mask is not None else torch.full(log_probs.shape[:1], log_probs.shape[1])
    return CTCPrefixScorer(log_probs.repeat_interleave(k, 0), lengths.repeat_interleave(k, 0), cfg.pad_id,
                           cfg.eos_id)


def hybrid_scores(logp: Tensor, ctc: CTCPrefixScorer, cfg: GenerationConfig) -> Tensor:
    """``logp (R, V)`` decoder log-probs → hybrid scores: the decoder's ``C`` best tokens per row, and eos,
    get ``(1 - w) logp + w * ctc``, every other token -inf (ESPnet's pre-beam). eos is always a candidate,
    so a hypothesis whose labels have used up the audio can end even when the decoder would go on."""
    pre_beam = cfg.ctc_pre_beam or -(-3 * cfg.beam_size // 2)  # ceil(1.5 * K)
    cand = logp.topk(min(pre_beam, logp.shape[-1]), dim=-1).indices  # (R, C)
    cand = torch.cat([cand, torch.full_like(cand[:, :1], cfg.eos_id)], 1)  # (R, C + 1); a repeat is harmless
    top = logp.gather(-1, cand)
    joint = (1.0 - cfg.ctc_weight) * top + cfg.ctc_weight * ctc.score(cand)
    joint = joint.masked_fill(torch.isneginf(top), float("-inf"))  # a banned token stays banned
    return torch.full_like(logp, float("-inf")).scatter(-1, cand, joint)


__all__ = ["CTCPrefixScorer", "hybrid_scorer", "hybrid_scores"]
