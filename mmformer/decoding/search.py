"""Autoregressive decoding outside the model: greedy, sampling (temperature / top-k / top-p) and
batched beam search, all over the decoder's KV cache; against degenerate loops, a length limit
relative to the source (fairseq's ``max_len_a * source_len + max_len_b``), n-gram blocking and a
repetition penalty (HF's ``no_repeat_ngram_size`` and ``repetition_penalty``), batched, off by default.

Any model with ``encode(source) -> BackboneOutput`` (the memory), ``decode(ids, memory, cache, last_only)
-> (logits, _)``, ``new_cache(capacity)`` and ``max_target_len`` works (see
:class:`mmformer.models.seq2seq.Seq2Seq`). ``static_cache`` / ``compile`` also need ``new_cache(capacity,
static=True)``: a preallocated cache written in place, so every decoding step has the same shapes and
``torch.compile`` builds one graph for all of them (no recompilation as the position moves on).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Literal, NamedTuple, TypeVar

import torch
from torch import Tensor

from mmformer.backbone import BackboneOutput
from mmformer.ctc_prefix import CTCPrefixScorer
from mmformer.layers.packed_linear import packed_linears
from mmformer.logit_processors import (length_penalty, repeated_ngram_bans, repetition_penalty, top_k_filter,
                                       top_p_filter)
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID

# Finished rows are checked (one host sync) every this many steps, not every step.
_CHECK_EVERY = 8
# torch.compile's backend for GenerationConfig(compile=True) (tests swap in a counting backend).
_COMPILE_BACKEND: Any = "inductor"


@dataclass
class GenerationConfig:
    """How to decode; every field is a YAML key under ``model.init_args.generation``."""

    strategy: Literal["greedy", "sample", "beam"] = "beam"  # decoding algorithm
    max_new_tokens: int = 128  # tokens generated after bos at most (eos included)
    min_new_tokens: int = 0  # eos is banned before this many tokens (fixed-length benchmarks)
    beam_size: int = 4  # hypotheses kept per source (beam)
    length_penalty: float = 0.6  # GNMT alpha: scores are divided by ((5 + len) / 6) ** alpha (beam)
    temperature: float = 1.0  # logits are divided by it before sampling (sample)
    top_k: int = 0  # keep the k most likely tokens, 0 = off (sample)
    top_p: float = 1.0  # keep the smallest set with this much probability, 1 = off (sample)
    seed: int = 0  # sampling seed, so samples are reproducible
    use_cache: bool = True  # KV cache; False recomputes the whole prefix every step (for parity checks)
    # Static KV cache: preallocated for every step, written in place, read whole under a validity mask, so each
    # decoding step has the same shapes (needs a model whose new_cache takes static=True, e.g. Seq2Seq).
    static_cache: bool = False
    compile: bool = False  # torch.compile the decoding step (implies static_cache); compiled once per model/shape
    cuda_graphs: bool = False  # compile with mode="reduce-overhead": a GPU replays each step as a CUDA graph
    # Eager CPU fp32 steps multiply by weights packed for MKL once per call (mmformer.layers.packed_linear): the
    # same function up to float rounding; eager beam-4 1.07-1.08x faster on one core, greedy 1.00-1.08x.
    packed_weights: bool = True
    # Row i stops (eos forced) after min(max_new_tokens, floor(max_len_a * S_i + max_len_b)) tokens, S_i = its
    # real memory positions (source tokens; encoder frames for audio), as fairseq; both 0 = off.
    max_len_a: float = 0.0
    max_len_b: int = 0
    no_repeat_ngram_size: int = 0  # no n-gram of this size occurs twice in an output (fairseq/HF); 0 = off
    repetition_penalty: float = 1.0  # CTRL/HF: logits of tokens already generated are divided by it if > 0,
    #                                  multiplied if < 0 (before log-softmax in beam search); 1 = off
    # Hybrid CTC/attention beam search (Watanabe et al. 2017; mmformer.ctc_prefix): hypotheses are ranked by
    # (1 - w) log p_att + w log p_ctc, the CTC head's prefix probability, so the decoder cannot run past the
    # audio nor stop before its end; needs a model with a CTC head (ctc_weight > 0 in training). 0 = off.
    ctc_weight: float = 0.0
    ctc_pre_beam: int = 0  # CTC-scored candidates per hypothesis: the decoder's best this many; 0 = 1.5 * beam
    # Special ids: mmformer's sentencepiece vocabularies by default; a converted checkpoint's own otherwise
    # (e.g. Marian's decoder_start/eos/pad, from mmformer.pretrained.special_ids).
    bos_id: int = BOS_ID  # every row starts with it (a decoder's start token); never generated
    eos_id: int = EOS_ID  # ends a row
    pad_id: int = PAD_ID  # fills a row after eos; never generated


def validation_greedy(cfg: GenerationConfig) -> GenerationConfig:
    """Validation's decoding for a task that tests with ``cfg``: greedy (cheap enough for every validation),
    with ``cfg``'s length limits, anti-repetition options and special ids, so what validation measures stops
    where the test's decoding does."""
    return GenerationConfig(strategy="greedy", max_new_tokens=cfg.max_new_tokens, max_len_a=cfg.max_len_a,
                            max_len_b=cfg.max_len_b, no_repeat_ngram_size=cfg.no_repeat_ngram_size,
                            repetition_penalty=cfg.repetition_penalty, bos_id=cfg.bos_id, eos_id=cfg.eos_id,
                            pad_id=cfg.pad_id)


class BeamOutput(NamedTuple):
    sequences: Tensor  # (B, K, T) generated ids after bos, eos included, pad after it; best first
    scores: Tensor  # (B, K) sum of token log-probabilities of each hypothesis
    normalized: Tensor  # (B, K) scores / length penalty; the order of ``sequences``
    lengths: Tensor  # (B, K) generated tokens, eos included


def _compiled_steps(cfg: GenerationConfig) -> bool:
    """Whether decoding steps after the first run compiled (``compile`` or ``cuda_graphs``, over the cache)."""
    return cfg.use_cache and (cfg.compile or cfg.cuda_graphs)


def _check(model: Any, cfg: GenerationConfig) -> int:
    if cfg.max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {cfg.max_new_tokens}")
    if cfg.max_len_a < 0 or cfg.max_len_b < 0 or cfg.no_repeat_ngram_size < 0 or cfg.repetition_penalty <= 0:
        raise ValueError(f"max_len_a, max_len_b and no_repeat_ngram_size must be >= 0 and repetition_penalty > 0, "
                         f"got {cfg.max_len_a}, {cfg.max_len_b}, {cfg.no_repeat_ngram_size}, {cfg.repetition_penalty}")
    limit = model.max_target_len - 1  # bos takes a position
    if cfg.max_new_tokens > limit:
        raise ValueError(f"max_new_tokens={cfg.max_new_tokens} exceeds the decoder's {model.max_target_len}-position "
                         f"table (bos included); lower it or train with a longer target max_len")
    return cfg.max_new_tokens


def _ban_specials(scores: Tensor, eos_too: bool = False, cfg: GenerationConfig | None = None) -> Tensor:
    """pad and bos are never generated: pad only fills rows after eos, bos only starts them.
    ``eos_too`` also bans eos (before ``min_new_tokens``); ``cfg`` gives the ids (default: mmformer's).
    Fills ``scores`` in place (a decoding step's fresh scores: a copy would re-read the whole (R, V) block)."""
    pad, bos, eos = (PAD_ID, BOS_ID, EOS_ID) if cfg is None else (cfg.pad_id, cfg.bos_id, cfg.eos_id)
    # A vocabulary may reuse eos as bos or pad (GPT-2, Whisper): eos stays allowed unless eos_too.
    banned = [pad, bos, eos] if eos_too else [i for i in (pad, bos) if i != eos]
    if not banned:
        return scores
    return scores.index_fill_(-1, torch.tensor(banned, dtype=torch.long, device=scores.device), float("-inf"))


def _row_limits(memory: BackboneOutput, cfg: GenerationConfig, steps: int) -> Tensor | None:
    """``(B,)`` tokens each row may generate (eos included) under the relative limit; None when off.

    A row whose limit exceeds ``max_new_tokens`` stops there without eos, as it does with no limit."""
    if cfg.max_len_a == 0 and cfg.max_len_b == 0:
        return None
    hidden = memory.hidden
    source = memory.mask.sum(1) if memory.mask is not None else torch.full(hidden.shape[:1], hidden.shape[1],
                                                                          device=hidden.device)
    return (cfg.max_len_a * source.double() + cfg.max_len_b).floor().long().clamp_min(1)  # beyond steps: no eos


def _constrain(scores: Tensor, prefix: Tensor, t: int, cfg: GenerationConfig, limits: Tensor | None) -> Tensor:
    """Bans specials (and eos before ``min_new_tokens``) and repeated n-grams in ``scores (R, V)``; rows
    that reach their length limit at step ``t``, or have no token left, get eos only (at its score before
    the bans, so beam scores stay the model's log-probs). ``scores`` is the step's own tensor: filled in place."""
    eos_too = t < cfg.min_new_tokens
    eos = scores[:, cfg.eos_id:cfg.eos_id + 1]  # (R, 1)
    if eos_too:  # the bans fill eos's column in place too: keep its score (otherwise they never touch it)
        eos = eos.clone()
    scores = _ban_specials(scores, eos_too=eos_too, cfg=cfg)
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


class _Stepper:
    """Feeds one new token per row and returns next-token log-probs, with or without the KV cache.

    Rows are *logical* (the order generation ranks them in); with a cache that can copy rows, each lives in
    a *physical* cache row ``slots[r]``. Beam search's reorder then keeps a surviving beam where it is and
    copies only beams duplicated into dropped ones (``_reassign``), instead of gathering every row of
    every layer's cache each step. The model sees ids in physical order; logits come back in logical order.

    ``start (R, m)``: ids after bos that every row begins with (the common part of the prompts); the first
    cached step feeds them with bos at once (prefill), later steps one token each.
    """

    def __init__(self, model: Any, memory: BackboneOutput, rows: int, steps: int, cfg: GenerationConfig,
                 device: torch.device, start: Tensor | None = None):
        self.model, self.memory = model, memory
        compiled = _compiled_steps(cfg)
        static = self.static = cfg.use_cache and (cfg.static_cache or compiled)
        if not cfg.use_cache:
            self.cache = None
        else:
            self.cache = model.new_cache(steps + 1, static=True) if static else model.new_cache(steps + 1)
        # The first step runs eagerly: it allocates the cache's buffers and the memory's cross-attention K/V, so
        # compiled steps (CUDA graphs too) only write into tensors that exist, at addresses that never move.
        self.decode = model.decode
        self._compiled = _compiled(model, "reduce-overhead" if cfg.cuda_graphs else None) if compiled else None
        self._graphs = bool(compiled and cfg.cuda_graphs)
        m = 0 if start is None else start.shape[1]
        # (R, steps + 1 + m) ids so far, written in place (no growing cat per step); ``prefix`` is the filled part.
        self._ids = torch.full((rows, steps + 1 + m), cfg.pad_id, dtype=torch.long, device=device)
        self._ids[:, 0] = cfg.bos_id
        if start is not None:
            self._ids[:, 1:1 + m] = start
        self.t = 1 + m
        self.fed = 0  # positions of ``prefix`` already in the cache
        # Logical row r sits in physical cache row slots[r]; None = the identity (no reorder so far).
        self.slots: Tensor | None = None
        self._rows = torch.arange(rows, device=device)

    @property
    def prefix(self) -> Tensor:
        """``(R, t)`` ids so far, bos first, in logical row order."""
        return self._ids[:, : self.t]

    def logits(self) -> Tensor:
        if self.cache is None:
            return self.model.decode(self.prefix, self.memory, None, last_only=True)[0][:, -1].float()
        new = self._ids[:, self.fed:self.t]  # (R, n) not in the cache yet: bos (+ a prompt's common part), then 1 id
        self.fed = self.t
        if self.slots is None:  # a fresh contiguous tensor: the same shape and strides every step (no recompiles)
            ids = new.clone() if self.static else new
        else:  # physical order: row slots[r] gets logical row r's tokens
            ids = torch.empty_like(new).index_copy_(0, self.slots, new)
        # (R, V) physical; CUDA graphs: always a copy (a graph's output buffer is overwritten by its next replay)
        out = self.decode(ids, self.memory, self.cache, last_only=True)[0][:, -1].to(torch.float32, copy=self._graphs)
        if self.static:
            self.cache.advance()
        if self._compiled is not None and self.decode is not self._compiled:
            # Unguarded: a new call (new buffers) re-records its CUDA graphs without recompiling.
            for t in [*self.cache.tensors(), *(t for t in (self.memory.hidden, self.memory.mask) if t is not None)]:
                torch._dynamo.mark_static_address(t)
            self.decode = self._compiled
        return out if self.slots is None else out.index_select(0, self.slots)

    def push(self, token: Tensor, rows: Tensor | None = None) -> None:
        """Appends ``token (R,)``; ``rows (R,)`` first reorders the history (beam search)."""
        if rows is not None:
            self._ids[:, : self.t] = self._ids[:, : self.t].index_select(0, rows)
            if self.cache is not None:
                if hasattr(self.cache, "copy_rows"):
                    self._reassign(rows)
                else:
                    self.cache.reorder(rows)
        self._ids[:, self.t] = token
        self.t += 1

    def _reassign(self, rows: Tensor) -> None:
        """New logical row r continues old logical row ``rows[r]``: it takes over that row's cache slot when it
        is the first to claim it; later claimants (duplicated beams) get the slots nobody claimed, filled by
        copying. Beams only move within their source's block of rows, and each block has as many unclaimed
        slots as extra claimants, so matching both in ascending order keeps every row in its block."""
        n = rows.shape[0]
        want = rows if self.slots is None else self.slots.index_select(0, rows)  # (R,) physical slot claimed
        owner = torch.full_like(want, n).scatter_reduce_(0, want, self._rows, "amin")  # first claimant per slot
        extra = (owner.index_select(0, want) != self._rows).nonzero()[:, 0]  # (n_dup,) ascending logical rows
        if extra.numel() == 0:
            self.slots = want
            return
        free = (owner == n).nonzero()[:, 0]  # (n_dup,) ascending physical slots nobody claimed
        self.cache.copy_rows(want.index_select(0, extra), free)
        self.slots = want.index_copy(0, extra, free)


def _compiled(model: Any, mode: str | None = None) -> Any:
    """``torch.compile(model.decode, mode=mode)``, built once per model and mode.

    Shapes are static except the static cache's attention window (powers of two, see
    :func:`~mmformer.layers.kv_cache.attention_window`): dynamo's default (``dynamic=None``) compiles the first
    window's shapes, and when the window grows, one graph with that length symbolic, instead of a graph per
    window (which would run into dynamo's recompile limit when greedy and beam search share a model)."""
    if getattr(model, "_compiled_decode", None) is None:  # a plain attribute: not a submodule, not saved
        object.__setattr__(model, "_compiled_decode", {})
    by_mode = model._compiled_decode
    if mode not in by_mode:
        by_mode[mode] = torch.compile(model.decode, dynamic=None, backend=_COMPILE_BACKEND, mode=mode)
    return by_mode[mode]


_F = TypeVar("_F", bound=Callable[..., Any])


def _packed(fn: _F) -> _F:
    """Runs ``fn(model, source, cfg, ...)`` with the model's linears on MKL-packed weights when its steps are
    eager and ``cfg.packed_weights`` (:func:`~mmformer.layers.packed_linear.packed_linears`: CPU fp32 only;
    compiled steps are left to inductor)."""
    @functools.wraps(fn)
    def run(model: Any, source: Any, cfg: GenerationConfig, *args: Any, **kwargs: Any) -> Any:
        with packed_linears(model, cfg.packed_weights and cfg.use_cache and not _compiled_steps(cfg)):
            return fn(model, source, cfg, *args, **kwargs)
    return run  # type: ignore[return-value]


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


@_packed
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
    steps = _check(model, cfg)
    memory = model.encode(source) if memory is None else memory
    b, device = memory.hidden.shape[0], memory.hidden.device
    start = forced = forced_len = None
    if prompt is not None:
        start, forced, forced_len = _prompt_plan(model, prompt.to(device), cfg)
        steps += forced.shape[1]
    limits = _row_limits(memory, cfg, steps)
    steps = steps if limits is None else min(steps, int(limits.max()))  # the one host sync, before the loop
    gen = torch.Generator(device=device).manual_seed(cfg.seed) if cfg.strategy == "sample" else None
    stepper = _Stepper(model, memory, b, steps, cfg, device, start)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    for t in range(steps):
        raw = repetition_penalty(stepper.logits(), stepper.prefix[:, 1:], cfg.repetition_penalty)
        logits = _constrain(raw, stepper.prefix, t, cfg, limits)
        if cfg.strategy == "greedy":
            # max's indices, not argmax: the same first maximal index, but argmax's CPU kernel takes ~3x as long
            # over a (8, 8000) row block (~95 vs ~30 us, 2% of an eager greedy step)
            token = logits.max(-1).indices
        elif cfg.strategy == "sample":
            logits = top_p_filter(top_k_filter(logits / max(cfg.temperature, 1e-6), cfg.top_k), cfg.top_p)
            token = torch.multinomial(logits.softmax(-1), 1, generator=gen)[:, 0]
        else:
            raise ValueError(f"strategy must be greedy, sample or beam, got {cfg.strategy!r}")
        if forced is not None and t < forced.shape[1]:  # rows still inside their prompt take its next id
            token = torch.where(t < forced_len, forced[:, t], token)  # type: ignore[operator]
        token = token.masked_fill(done, cfg.pad_id)
        done |= token == cfg.eos_id
        stepper.push(token)
        if (t + 1) % _CHECK_EVERY == 0 and bool(done.all()):
            break
    out = stepper.prefix[:, 1:]
    if prompt is not None:  # each row keeps max_new_tokens after its own prompt
        keep = torch.arange(out.shape[1], device=device) < (prompt.shape[1] - forced.shape[1]  # type: ignore[union-attr]
                                                            + forced_len + cfg.max_new_tokens)[:, None]
        out = out.masked_fill(~keep, cfg.pad_id)
    return out


@_packed
@torch.no_grad()
def beam_search(model: Any, source: Any, cfg: GenerationConfig, memory: BackboneOutput | None = None) -> BeamOutput:
    """Batched beam search over the KV cache with GNMT length normalization.

    Every source keeps ``K`` hypotheses as rows ``b*K .. b*K+K-1``. A hypothesis that emits eos is
    finished: from then on its only continuation is pad at log-prob 0, so its score and length
    freeze while it competes, length-normalized, with the live ones. Candidates are ranked by
    ``score / ((5 + len) / 6) ** alpha`` at every step, so the length penalty shapes the search,
    not only the final order. Stops when every hypothesis has finished or after ``max_new_tokens``.
    """
    steps, k = _check(model, cfg), cfg.beam_size
    if k < 1:
        raise ValueError(f"beam_size must be >= 1, got {k}")
    memory = model.encode(source) if memory is None else memory
    b, device = memory.hidden.shape[0], memory.hidden.device
    limits = _row_limits(memory, cfg, steps)
    steps = steps if limits is None else min(steps, int(limits.max()))  # the one host sync, before the loop
    limits = None if limits is None else limits.repeat_interleave(k)  # (B*K,) rows b*K .. b*K+K-1
    ctc = _ctc_scorer(model, memory, cfg, k)
    # A model whose decode lets g consecutive rows share a memory row (Seq2Seq's cross-attention) reads it once
    # per source; others (a prefix LM, whose prefix runs through the self-attention) get it K times.
    shared = memory if getattr(model, "grouped_memory", False) else memory.repeat(k)
    stepper = _Stepper(model, shared, b * k, steps, cfg, device)
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: let only the first one expand at step 0
    lengths = torch.zeros(b, k, dtype=torch.long, device=device)
    done = torch.zeros(b, k, dtype=torch.bool, device=device)
    base = (torch.arange(b, device=device) * k)[:, None]  # (B, 1) first row of each source
    frozen: Tensor | None = None
    for t in range(steps):
        # The model's own log-probs (normalized before the bans), so scores are true sequence log-probs
        # (of the penalized distribution when repetition_penalty is set).
        raw = repetition_penalty(stepper.logits(), stepper.prefix[:, 1:], cfg.repetition_penalty).log_softmax(-1)
        logp = _constrain(raw, stepper.prefix, t, cfg, limits)
        if ctc is not None:
            logp = _joint(logp, ctc, cfg)
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
        if (t + 1) % _CHECK_EVERY == 0 and bool(done.all()):
            break
    normalized = scores / length_penalty(lengths, cfg.length_penalty)
    normalized, order = normalized.sort(dim=-1, descending=True)  # already sorted; kept explicit
    seq = stepper.prefix[:, 1:].view(b, k, -1)
    seq = seq.gather(1, order[..., None].expand_as(seq))
    return BeamOutput(seq, scores.gather(1, order), normalized, lengths.gather(1, order))


def check_ctc_settings(ctc_weight: float, generation: GenerationConfig | None) -> None:
    """A task's CTC loss weight in [0, 1], and hybrid decoding only with a CTC head to decode with: checked when
    the task is built, before training, not when the test finally decodes."""
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    if generation is not None and generation.ctc_weight > 0 and ctc_weight == 0:
        raise ValueError(f"generation.ctc_weight={generation.ctc_weight} (hybrid CTC/attention decoding) needs a "
                         f"CTC head: train one with model.init_args.ctc_weight > 0, or decode without it "
                         f"(model.init_args.generation.ctc_weight=0)")


def _ctc_scorer(model: Any, memory: BackboneOutput, cfg: GenerationConfig, k: int) -> CTCPrefixScorer | None:
    """The CTC prefix scorer of hybrid decoding over ``K`` hypotheses per source, or None when off."""
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


def _joint(logp: Tensor, ctc: CTCPrefixScorer, cfg: GenerationConfig) -> Tensor:
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


def sequence_log_probs(model: Any, source: Any, sequences: Tensor, cfg: GenerationConfig | None = None) -> Tensor:
    """Sum of token log-probs of ``sequences (B, T)`` (ids after bos; pads after eos ignored),
    by one full teacher-forced forward pass: the reference that beam scores must equal.
    ``cfg`` gives the special ids (default: mmformer's)."""
    bos_id, eos_id, pad_id = (BOS_ID, EOS_ID, PAD_ID) if cfg is None else (cfg.bos_id, cfg.eos_id, cfg.pad_id)
    memory = model.encode(source)
    bos = torch.full_like(sequences[:, :1], bos_id)
    logits = model.decode(torch.cat([bos, sequences[:, :-1]], 1), memory)[0].float()
    logp = logits.log_softmax(-1).gather(-1, sequences[..., None])[..., 0]  # (B, T)
    ended = (sequences == eos_id).long().cumsum(1) - (sequences == eos_id).long()  # 1 after the first eos
    return (logp * ((ended == 0) & (sequences != pad_id))).sum(1)


def strip(ids: Tensor, eos_id: int = EOS_ID) -> list[list[int]]:
    """Generated ``(B, T)`` ids → per-row lists without eos and what follows."""
    rows = ids.tolist()
    return [r[: r.index(eos_id)] if eos_id in r else r for r in rows]


__all__ = ["BeamOutput", "GenerationConfig", "beam_search", "check_ctc_settings", "generate", "length_penalty",
           "repeated_ngram_bans", "repetition_penalty", "sequence_log_probs", "strip", "top_k_filter", "top_p_filter"]
