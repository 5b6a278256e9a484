"""How to decode: :class:`GenerationConfig` (a task's ``generation`` YAML section), its checks, and the named
output of beam search."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from torch import Tensor

from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID


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
    # Eager CPU fp32 steps multiply by weights packed for MKL (mmformer.decoding.packed): the same function up to
    # float rounding, faster where a step's few rows are bound by reading the weights (bench/generation.py).
    packed_weights: bool = True
    # Row i stops (eos forced) after min(max_new_tokens, floor(max_len_a * S_i + max_len_b)) tokens, S_i = its
    # real memory positions (source tokens; encoder frames for audio), as fairseq; both 0 = off.
    max_len_a: float = 0.0
    max_len_b: int = 0
    no_repeat_ngram_size: int = 0  # no n-gram of this size occurs twice in an output (fairseq/HF); 0 = off
    repetition_penalty: float = 1.0  # CTRL/HF: logits of tokens already generated are divided by it if > 0,
    #                                  multiplied if < 0 (before log-softmax in beam search); 1 = off
    # Hybrid CTC/attention beam search (Watanabe et al. 2017; mmformer.decoding.ctc_prefix): hypotheses are ranked
    # by (1 - w) log p_att + w log p_ctc, the CTC head's prefix probability, so the decoder cannot run past the
    # audio nor stop before its end; needs a model with a CTC head (ctc_weight > 0 in training). 0 = off.
    ctc_weight: float = 0.0
    ctc_pre_beam: int = 0  # CTC-scored candidates per hypothesis: the decoder's best this many; 0 = 1.5 * beam
    # Special ids: mmformer's sentencepiece vocabularies by default; a converted checkpoint's own otherwise
    # (e.g. Marian's decoder_start/eos/pad, from mmformer.pretrained.special_ids).
    bos_id: int = BOS_ID  # every row starts with it (a decoder's start token); never generated
    eos_id: int = EOS_ID  # ends a row
    pad_id: int = PAD_ID  # fills a row after eos; never generated

    @property
    def compiled_steps(self) -> bool:
        """Whether decoding steps after the first run compiled (``compile`` or ``cuda_graphs``, over the cache)."""
        return self.use_cache and (self.compile or self.cuda_graphs)

    @property
    def static_steps(self) -> bool:
        """Whether the KV cache is static (fixed-shape steps): asked for, or needed by compiled steps."""
        return self.use_cache and (self.static_cache or self.compiled_steps)


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


def check_steps(model: Any, cfg: GenerationConfig) -> int:
    """``cfg.max_new_tokens``, after checking it and the anti-repetition options against ``model``'s positions."""
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


def check_ctc_settings(ctc_weight: float, generation: GenerationConfig | None) -> None:
    """A task's CTC loss weight in [0, 1], and hybrid decoding only with a CTC head to decode with: checked when
    the task is built, before training, not when the test finally decodes."""
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    if generation is not None and generation.ctc_weight > 0 and ctc_weight == 0:
        raise ValueError(f"generation.ctc_weight={generation.ctc_weight} (hybrid CTC/attention decoding) needs a "
                         f"CTC head: train one with model.init_args.ctc_weight > 0, or decode without it "
                         f"(model.init_args.generation.ctc_weight=0)")


__all__ = ["BeamOutput", "GenerationConfig", "check_ctc_settings", "check_steps", "validation_greedy"]
