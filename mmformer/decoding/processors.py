"""Logit processors of decoding: pure functions on ``(R, V)`` scores (top-k, nucleus, CTRL's repetition penalty,
n-gram blocking, the bans and length limits of a :class:`~mmformer.decoding.config.GenerationConfig`) and GNMT's
length penalty. :mod:`mmformer.decoding.search` applies them step by step."""

from __future__ import annotations

import torch
from torch import Tensor

from mmformer.backbone import BackboneOutput
from mmformer.decoding.config import GenerationConfig
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keeps the ``k`` largest logits of the last dim, the rest set to -inf (k <= 0: unchanged)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter (Holtzman et al. 2020): keeps the most likely tokens whose probabilities sum
    to at least ``p`` (always at least one), the rest set to -inf (p >= 1: unchanged)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop_sorted = (cum - sorted_logits.softmax(-1)) >= p  # mass before this token already reaches p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def repetition_penalty(logits: Tensor, generated: Tensor, penalty: float) -> Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, as HF applies it): for every token id present in
    ``generated (R, t)``, its logit in ``logits (R, V)`` is divided by ``penalty`` when positive and
    multiplied by it when negative (penalty 1: unchanged)."""
    if penalty == 1.0 or generated.shape[1] == 0:
        return logits
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, generated, True)  # (R, V)
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def repeated_ngram_bans(generated: Tensor, n: int, vocab_size: int) -> Tensor:
    """Tokens that would repeat an n-gram of ``generated (R, t)``: ``(R, V)`` bool, True = banned.

    Token ``v`` is banned for row r when the row's last ``n - 1`` tokens followed by ``v`` already occur
    in it (n = 1 bans every generated token). Vectorized over rows and positions (n <= 0: none banned).
    """
    r, t = generated.shape
    banned = torch.zeros(r, vocab_size, dtype=torch.bool, device=generated.device)
    if n <= 0 or t < n:
        return banned
    windows = generated.unfold(1, n, 1)  # (R, t-n+1, n) every n-gram so far
    suffix = generated[:, t - n + 1:]  # (R, n-1) what the next token would extend
    match = (windows[..., :-1] == suffix[:, None, :]).all(-1)  # (R, t-n+1) n-grams with that prefix
    hits = torch.zeros(r, vocab_size, device=generated.device).scatter_add_(1, windows[..., -1], match.float())
    return hits > 0


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT's ``((5 + len) / 6) ** alpha`` (Wu et al. 2016)."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def ban_specials(scores: Tensor, eos_too: bool = False, cfg: GenerationConfig | None = None) -> Tensor:
    """pad and bos are never generated: pad only fills rows after eos, bos only starts them.
    ``eos_too`` also bans eos (before ``min_new_tokens``); ``cfg`` gives the ids (default: mmformer's).
    Fills ``scores`` in place (a decoding step's fresh scores: a copy would re-read the whole (R, V) block)."""
    pad, bos, eos = (PAD_ID, BOS_ID, EOS_ID) if cfg is None else (cfg.pad_id, cfg.bos_id, cfg.eos_id)
    # A vocabulary may reuse eos as bos or pad (GPT-2, Whisper): eos stays allowed unless eos_too.
    banned = [pad, bos, eos] if eos_too else [i for i in (pad, bos) if i != eos]
    if not banned:
        return scores
    return scores.index_fill_(-1, torch.tensor(banned, dtype=torch.long, device=scores.device), float("-inf"))


def row_limits(memory: BackboneOutput, cfg: GenerationConfig) -> Tensor | None:
    """``(B,)`` tokens each row may generate (eos included) under the relative limit
    ``floor(max_len_a * S + max_len_b)``, S the row's real memory positions; None when off.

    A row whose limit exceeds ``max_new_tokens`` stops there without eos, as it does with no limit."""
    if cfg.max_len_a == 0 and cfg.max_len_b == 0:
        return None
    hidden = memory.hidden
    source = memory.mask.sum(1) if memory.mask is not None else torch.full(hidden.shape[:1], hidden.shape[1],
                                                                          device=hidden.device)
    return (cfg.max_len_a * source.double() + cfg.max_len_b).floor().long().clamp_min(1)


def constrain(scores: Tensor, prefix: Tensor, t: int, cfg: GenerationConfig, limits: Tensor | None) -> Tensor:
    """Bans specials (and eos before ``min_new_tokens``) and repeated n-grams in ``scores (R, V)``; rows
    that reach their length limit at step ``t``, or have no token left, get eos only (at its score before
    the bans, so beam scores stay the model's log-probs). ``prefix (R, t + 1)``: the ids so far, bos first.
    ``scores`` is the step's own tensor: filled in place."""
    eos_too = t < cfg.min_new_tokens
    eos = scores[:, cfg.eos_id:cfg.eos_id + 1]  # (R, 1)
    if eos_too:  # the bans fill eos's column in place too: keep its score (otherwise they never touch it)
        eos = eos.clone()
    scores = ban_specials(scores, eos_too=eos_too, cfg=cfg)
    if cfg.no_repeat_ngram_size > 0:
        scores = scores.masked_fill(repeated_ngram_bans(prefix[:, 1:], cfg.no_repeat_ngram_size, scores.shape[-1]),
                                    float("-inf"))
        force = torch.isneginf(scores).all(-1, keepdim=True)  # (R, 1) everything banned: end the row
    else:
        force = None
    if limits is not None:
        at_limit = (t + 1 >= limits)[:, None]  # (R, 1) the row's last allowed token
        force = at_limit if force is None else force | at_limit
    if force is None:
        return scores
    is_eos = torch.arange(scores.shape[-1], device=scores.device) == cfg.eos_id  # (V,)
    return torch.where(force, torch.where(is_eos, eos, float("-inf")), scores)


__all__ = ["ban_specials", "constrain", "length_penalty", "repeated_ngram_bans", "repetition_penalty", "row_limits",
           "top_k_filter", "top_p_filter"]
