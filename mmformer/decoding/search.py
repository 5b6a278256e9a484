"""Autoregressive search outside the model: greedy, sampling (temperature / top-k / top-p), batched beam search
and hybrid CTC/attention beam search, all over the decoder's KV cache; against degenerate loops, a length limit
relative to the source (fairseq's ``max_len_a * source_len + max_len_b``), n-gram blocking and a repetition
penalty (HF's ``no_repeat_ngram_size`` and ``repetition_penalty``), batched, off by default.

The model is any :class:`~mmformer.decoding.protocol.DecodingModel` (``encode``, ``decode``, ``new_cache``,
``max_target_len``); ``static_cache`` / ``compile`` also need ``new_cache(capacity, static=True)``: a
preallocated cache written in place, so every step has the same shapes and ``torch.compile`` builds one graph
for all of them. Several threads may decode with one model at once (each call owns its cache and stepper).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmformer.backbone import BackboneOutput
from mmformer.decoding.config import BeamOutput, GenerationConfig, check_steps
from mmformer.decoding.ctc_prefix import hybrid_scorer, hybrid_scores
from mmformer.decoding.processors import (constrain, length_penalty, repetition_penalty, row_limits, top_k_filter,
                                          top_p_filter)
from mmformer.decoding.stepper import Stepper
from mmformer.tokenizers.sentencepiece_vocab import EOS_ID

# Finished rows are checked (one host sync) every this many steps, not every step.
CHECK_EVERY = 8


def _prompt_plan(model: Any, prompt: Tensor, cfg: GenerationConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Splits right-padded ``prompt (B, L)`` ids into the part every row shares (prefilled at once) and the
    rest, forced step by step (fairseq's ``prefix_tokens``). Returns ``(start (B, m), forced (B, L - m),
    lengths (B,))``, m the shortest prompt."""
    if prompt.dim() != 2 or prompt.dtype != torch.long:
        raise ValueError(f"prompt must be (B, L) long ids, right-padded with pad_id, got {prompt.dtype} "
                         f"{tuple(prompt.shape)}")
    if cfg.strategy == "beam" or any((cfg.min_new_tokens, cfg.max_len_a, cfg.max_len_b, cfg.static_cache, cfg.compile,
                                      cfg.cuda_graphs)):
        raise ValueError("prompts continue with greedy or sampled decoding without min_new_tokens, max_len_a/b, "
                         "static_cache, compile or cuda_graphs; set generation.strategy greedy or sample, those off")
    lengths = (prompt != cfg.pad_id).sum(1)  # (B,)
    if prompt.shape[1] + cfg.max_new_tokens >= model.max_target_len:
        raise ValueError(f"a {prompt.shape[1]}-token prompt plus max_new_tokens={cfg.max_new_tokens} exceeds the "
                         f"model's {model.max_target_len} positions (bos included); shorten one of them")
    m = int(lengths.min()) if len(lengths) else 0  # one host sync, before the loop
    return prompt[:, :m], prompt[:, m:], lengths - m


@torch.no_grad()
def generate(model: Any, source: Any, cfg: GenerationConfig, memory: BackboneOutput | None = None,
             prompt: Tensor | None = None) -> Tensor:
    """Greedy or sampled decoding: ``(B, T)`` ids after bos (eos included, pad after it).

    ``prompt (B, L)``: right-padded ids (pad = ``cfg.pad_id``, no bos/eos) each row starts with; the result
    then holds the prompt followed by up to ``max_new_tokens`` generated ids per row.
    """
    if cfg.strategy == "beam" and prompt is None:
        return beam_search(model, source, cfg, memory).sequences[:, 0]
    if cfg.ctc_weight:
        raise ValueError("generation.ctc_weight (hybrid CTC/attention decoding) needs strategy: beam "
                         "(beam_size 1 is greedy with it)")
    steps = check_steps(model, cfg)
    memory = model.encode(source) if memory is None else memory
    b, device = memory.hidden.shape[0], memory.hidden.device
    start = forced = forced_len = None
    if prompt is not None:
        start, forced, forced_len = _prompt_plan(model, prompt.to(device), cfg)
        steps += forced.shape[1]
    if cfg.strategy not in ("greedy", "sample"):
        raise ValueError(f"strategy must be greedy, sample or beam, got {cfg.strategy!r}")
    limits = row_limits(memory, cfg)
    steps = steps if limits is None else min(steps, int(limits.max()))  # the one host sync, before the loop
    gen = torch.Generator(device=device).manual_seed(cfg.seed) if cfg.strategy == "sample" else None
    done = torch.zeros(b, dtype=torch.bool, device=device)
    with Stepper(model, memory, b, steps, cfg, device, start) as stepper:
        for t in range(steps):
            raw = repetition_penalty(stepper.logits(), stepper.prefix[:, 1:], cfg.repetition_penalty)
            logits = constrain(raw, stepper.prefix, t, cfg, limits)
            if cfg.strategy == "greedy":
                token = logits.max(-1).indices  # max's indices: argmax's first maximal index, by a faster CPU kernel
            else:
                logits = top_p_filter(top_k_filter(logits / max(cfg.temperature, 1e-6), cfg.top_k), cfg.top_p)
                token = torch.multinomial(logits.softmax(-1), 1, generator=gen)[:, 0]
            if forced is not None and t < forced.shape[1]:  # rows still inside their prompt take its next id
                token = torch.where(t < forced_len, forced[:, t], token)  # type: ignore[operator]
            token = token.masked_fill(done, cfg.pad_id)
            done |= token == cfg.eos_id
            stepper.push(token)
            if (t + 1) % CHECK_EVERY == 0 and bool(done.all()):
                break
    out = stepper.prefix[:, 1:]
    if prompt is not None:  # each row keeps max_new_tokens after its own prompt
        keep = torch.arange(out.shape[1], device=device) < (prompt.shape[1] - forced.shape[1]  # type: ignore[union-attr]
                                                            + forced_len + cfg.max_new_tokens)[:, None]
        out = out.masked_fill(~keep, cfg.pad_id)
    return out


@torch.no_grad()
def beam_search(model: Any, source: Any, cfg: GenerationConfig, memory: BackboneOutput | None = None) -> BeamOutput:
    """Batched beam search over the KV cache with GNMT length normalization.

    Every source keeps ``K`` hypotheses as rows ``b*K .. b*K+K-1``. A hypothesis that emits eos is
    finished: from then on its only continuation is pad at log-prob 0, so its score and length
    freeze while it competes, length-normalized, with the live ones. Candidates are ranked by
    ``score / ((5 + len) / 6) ** alpha`` at every step, so the length penalty shapes the search,
    not only the final order. Stops when every hypothesis has finished or after ``max_new_tokens``.
    """
    steps, k = check_steps(model, cfg), cfg.beam_size
    if k < 1:
        raise ValueError(f"beam_size must be >= 1, got {k}")
    memory = model.encode(source) if memory is None else memory
    b, device = memory.hidden.shape[0], memory.hidden.device
    limits = row_limits(memory, cfg)
    steps = steps if limits is None else min(steps, int(limits.max()))  # the one host sync, before the loop
    limits = None if limits is None else limits.repeat_interleave(k)  # (B*K,) rows b*K .. b*K+K-1
    ctc = hybrid_scorer(model, memory, cfg, k)
    # A model whose decode lets g consecutive rows share a memory row (Seq2Seq's cross-attention) reads it once
    # per source; others (a prefix LM, whose prefix runs through the self-attention) get it K times.
    shared = memory if getattr(model, "grouped_memory", False) else memory.repeat(k)
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: let only the first one expand at step 0
    lengths = torch.zeros(b, k, dtype=torch.long, device=device)
    done = torch.zeros(b, k, dtype=torch.bool, device=device)
    base = (torch.arange(b, device=device) * k)[:, None]  # (B, 1) first row of each source
    frozen: Tensor | None = None
    with Stepper(model, shared, b * k, steps, cfg, device) as stepper:
        for t in range(steps):
            # The model's own log-probs (normalized before the bans), so scores are true sequence log-probs
            # (of the penalized distribution when repetition_penalty is set).
            raw = repetition_penalty(stepper.logits(), stepper.prefix[:, 1:], cfg.repetition_penalty).log_softmax(-1)
            logp = constrain(raw, stepper.prefix, t, cfg, limits)
            if ctc is not None:
                logp = hybrid_scores(logp, ctc, cfg)
            logp = logp.view(b, k, -1)
            v = logp.shape[-1]
            if frozen is None:  # finished hypotheses continue only with pad, at no cost; (V,) built once
                frozen = torch.full_like(logp[0, 0], float("-inf"))
                frozen[cfg.pad_id] = 0.0
            logp = torch.where(done[..., None], frozen, logp)
            cand = scores[..., None] + logp  # (B, K, V)
            cand_len = torch.where(done, lengths, lengths + 1)  # (B, K): every token of a beam adds the same length
            # alpha = 0 divides by exactly 1: skipping the (B, K, V) division changes no bit.
            ranked = cand if cfg.length_penalty == 0 else cand / length_penalty(cand_len, cfg.length_penalty)[..., None]
            top, flat = ranked.view(b, -1).topk(k, dim=-1)  # (B, K) best candidates over K*V
            beam, token = flat // v, flat % v
            scores = cand.view(b, -1).gather(1, flat)
            lengths = cand_len.gather(1, beam)
            done = done.gather(1, beam) | (token == cfg.eos_id)
            stepper.push(token.view(-1), (base + beam).view(-1))
            if ctc is not None:
                ctc.advance((base + beam).view(-1), token.view(-1))
            if (t + 1) % CHECK_EVERY == 0 and bool(done.all()):
                break
    normalized = scores / length_penalty(lengths, cfg.length_penalty)
    normalized, order = normalized.sort(dim=-1, descending=True)  # already sorted; kept explicit
    seq = stepper.prefix[:, 1:].view(b, k, -1)
    seq = seq.gather(1, order[..., None].expand_as(seq))
    return BeamOutput(seq, scores.gather(1, order), normalized, lengths.gather(1, order))


def strip(ids: Tensor, eos_id: int = EOS_ID) -> list[list[int]]:
    """Generated ``(B, T)`` ids → per-row lists without eos and what follows."""
    rows = ids.tolist()
    return [r[: r.index(eos_id)] if eos_id in r else r for r in rows]


__all__ = ["CHECK_EVERY", "beam_search", "generate", "strip"]
