"""Search outside the model: greedy, sampling, beam, CTC and hybrid CTC/attention decoding over a model that
satisfies :class:`DecodingModel` (a ``typing.Protocol``: models never import this package), with logit
processors, the KV cache (:class:`~mmformer.layers.kv_cache.DecoderCache`, which the attention layers write) and
the CPU fast path (MKL-packed weights) owned by the :class:`~mmformer.decoding.stepper.Stepper`.

- :mod:`~mmformer.decoding.config`: :class:`GenerationConfig` (a task's ``generation`` section), :class:`BeamOutput`;
- :mod:`~mmformer.decoding.search`: :func:`generate`, :func:`beam_search`, :func:`strip`;
- :mod:`~mmformer.decoding.processors`: top-k/top-p filters, repetition penalty, n-gram bans, length penalty;
- :mod:`~mmformer.decoding.ctc` (best-path CTC) and :mod:`~mmformer.decoding.ctc_prefix` (hybrid search's scorer);
- :mod:`~mmformer.decoding.stepper` and :mod:`~mmformer.decoding.packed`: step mechanics and the CPU fast path.
"""

from mmformer.decoding.config import BeamOutput, GenerationConfig, check_ctc_settings, validation_greedy
from mmformer.decoding.ctc import ctc_greedy_decode
from mmformer.decoding.ctc_prefix import CTCPrefixScorer
from mmformer.decoding.processors import (length_penalty, repeated_ngram_bans, repetition_penalty, top_k_filter,
                                          top_p_filter)
from mmformer.decoding.protocol import CTCDecodingModel, DecodingModel
from mmformer.decoding.search import beam_search, generate, strip
from mmformer.layers.kv_cache import DecoderCache

__all__ = ["BeamOutput", "CTCDecodingModel", "CTCPrefixScorer", "DecoderCache", "DecodingModel", "GenerationConfig",
           "beam_search", "check_ctc_settings", "ctc_greedy_decode", "generate", "length_penalty",
           "repeated_ngram_bans", "repetition_penalty", "strip", "top_k_filter", "top_p_filter",
           "validation_greedy"]
