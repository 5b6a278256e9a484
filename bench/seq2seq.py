"""Seq2seq training-step speed: mmformer's ``Seq2Seq`` against ``torch.nn.Transformer`` of identical size.

Both models, in one process, are a pre-norm encoder–decoder (d 256, 4+4 layers, 4 heads, FFN 1024, GELU,
LayerNorm eps 1e-5, final encoder and decoder norms, dropout 0) with a source embedding table, a target
embedding table tied to the output projection (vocab 8000), sqrt(d)-scaled embeddings and sinusoidal
positions. The torch model is loaded with mmformer's weights, so both compute one function (the max logit
difference is printed). The batch is right-padded: sources carry a key-padding mask (encoder
self-attention and decoder cross-attention); targets are causal only (a pad never precedes a real token),
and the loss ignores pad.

One step: forward, label-smoothed cross-entropy (0.1), backward, grads zeroed (set_to_none) and, with
``--adamw``, an AdamW update. Warm-up, interleaved rounds with rotated order, medians (bench/common.py).

Run:
    OMP_NUM_THREADS=1 .venv/bin/python bench/seq2seq.py            # about a minute on 1 thread
    OMP_NUM_THREADS=1 .venv/bin/python bench/seq2seq.py --quick    # tiny smoke run

Last line: ``ratio vs torch.nn.Transformer: X.XX`` with X = torch_time / mmformer_time (> 1: mmformer is
faster). Target (issue #4): >= 1.0.
"""

from __future__ import annotations

import argparse
import math
import statistics
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common import interleaved_times, print_ratios
from mmformer.backbone import BackboneConfig, Decoder, Encoder
from mmformer.layers.positions import sinusoidal_1d
from mmformer.models.seq2seq import Seq2Seq
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID
from mmformer.tokenizers.text import TextTokenizer

PEER = "torch.nn.Transformer"


class TorchSeq2Seq(nn.Module):
    """``nn.Transformer`` with the same embeddings, positions and tied output projection as mmformer's."""

    def __init__(self, dim: int, layers: int, heads: int, ffn: int, vocab: int, max_len: int) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(vocab, dim, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(vocab, dim, padding_idx=PAD_ID)
        # Its encoder warns that pre-norm disables the nested-tensor inference path (irrelevant to training).
        warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
        self.transformer = nn.Transformer(dim, heads, layers, layers, ffn, dropout=0.0, activation="gelu",
                                          batch_first=True, norm_first=True, layer_norm_eps=1e-5)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.tgt_embed.weight
        self.register_buffer("pos", sinusoidal_1d(torch.arange(max_len), dim), persistent=False)  # (L, D)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(max_len), persistent=False)
        self.scale = math.sqrt(dim)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """``src (B, S)``, ``tgt_in (B, T)`` ids → logits ``(B, T, V)``."""
        s, t = src.shape[1], tgt_in.shape[1]
        pad = src == PAD_ID  # (B, S) True = ignore (torch's convention)
        x = self.src_embed(src) * self.scale + self.pos[:s]
        y = self.tgt_embed(tgt_in) * self.scale + self.pos[:t]
        h = self.transformer(x, y, tgt_mask=self.causal[:t, :t], src_key_padding_mask=pad,
                             memory_key_padding_mask=pad, tgt_is_causal=True)
        return self.lm_head(h)


def build_ours(a: argparse.Namespace) -> Seq2Seq:
    """mmformer's Seq2Seq as Seq2SeqTask builds it, at the peer's size (pre-norm, eps 1e-5)."""
    cfg = BackboneConfig(dim=a.dim, depth=a.layers, num_heads=a.heads, mlp_ratio=a.ffn / a.dim, mlp="gelu",
                         norm_eps=1e-5, norm_position="pre")
    tok = lambda: TextTokenizer(a.dim, a.vocab, max_len=a.max_len, positions="sinusoidal", scale=True)  # noqa: E731
    return Seq2Seq(tok(), Encoder(cfg), tok(), Decoder(cfg), tie_embeddings=True)


@torch.no_grad()
def load_ours_into_torch(ours: Seq2Seq, peer: TorchSeq2Seq) -> None:
    """Copies mmformer's weights into the torch model (qkv fused = in_proj; cross q|kv = in_proj)."""
    peer.src_embed.weight.copy_(ours.source_tokenizer.embed.weight)
    peer.tgt_embed.weight.copy_(ours.target_tokenizer.embed.weight)
    tr = peer.transformer
    for stack, theirs in ((ours.encoder, tr.encoder), (ours.decoder, tr.decoder)):
        for blk, layer in zip(stack.blocks, theirs.layers):
            pairs = [(blk.attn.qkv, "self_attn.in_proj_"), (blk.attn.proj, "self_attn.out_proj."),
                     (blk.norm1, "norm1."), (blk.mlp.fc1, "linear1."), (blk.mlp.fc2, "linear2.")]
            if blk.cross_attn is None:
                pairs.append((blk.norm2, "norm2."))
            else:
                pairs += [(blk.norm_cross, "norm2."), (blk.norm2, "norm3."),
                          (blk.cross_attn.proj, "multihead_attn.out_proj.")]
                for s in ("weight", "bias"):
                    fused = torch.cat([getattr(blk.cross_attn.q, s), getattr(blk.cross_attn.kv, s)])
                    layer.get_parameter(f"multihead_attn.in_proj_{s}").copy_(fused)
            for mod, prefix in pairs:
                for s in ("weight", "bias"):
                    layer.get_parameter(f"{prefix}{s}").copy_(getattr(mod, s))
        theirs.norm.load_state_dict(stack.norm.state_dict())


def make_batch(a: argparse.Namespace) -> tuple[Tensor, Tensor]:
    """Right-padded ``src (B, S)`` and ``target (B, T+1)`` = bos + pieces + eos + pad; lengths in [L/2, L]."""
    g = torch.Generator().manual_seed(0)

    def rows(n: int, lengths: Tensor) -> Tensor:
        ids = torch.randint(4, a.vocab, (a.batch, n), generator=g)
        return ids.masked_fill(torch.arange(n)[None] >= lengths[:, None], PAD_ID)

    src = rows(a.src_len, torch.randint(a.src_len // 2, a.src_len + 1, (a.batch,), generator=g))
    n = torch.randint(a.tgt_len // 2, a.tgt_len, (a.batch,), generator=g)  # pieces; eos makes it <= tgt_len
    tgt = rows(a.tgt_len, n + 1)
    tgt[torch.arange(a.batch), n] = EOS_ID
    return src, torch.cat([torch.full((a.batch, 1), BOS_ID), tgt], 1)


def make_step(model: Callable[[Tensor, Tensor], Tensor], params: list[nn.Parameter], src: Tensor, target: Tensor,
              smoothing: float, adamw: bool) -> Callable[[], None]:
    """Forward, label-smoothed CE over non-pad targets, backward (and an AdamW step)."""
    opt = torch.optim.AdamW(params, lr=1e-4) if adamw else None
    tgt_in, tgt_out = target[:, :-1], target[:, 1:]

    def step() -> None:
        for p in params:
            p.grad = None
        logits = model(src, tgt_in)
        F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID,
                        label_smoothing=smoothing).backward()
        if opt is not None:
            opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--src-len", type=int, default=32, help="longest source (others shorter, right-padded)")
    p.add_argument("--tgt-len", type=int, default=32, help="decoder input length (bos + pieces, padded)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4, help="encoder layers = decoder layers")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--adamw", action="store_true", help="include an AdamW update in every step")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the machine is shared)")
    p.add_argument("--repeats", type=int, default=10, help="interleaved timing rounds")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model before timing")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 2 rounds (smoke test)")
    a = p.parse_args()
    if a.quick:
        a.batch, a.src_len, a.tgt_len, a.dim, a.layers, a.heads, a.ffn, a.vocab = 2, 8, 8, 32, 1, 2, 64, 100
        a.repeats, a.warmup = 2, 1
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    ours = build_ours(a).train()
    peer = TorchSeq2Seq(a.dim, a.layers, a.heads, a.ffn, a.vocab, a.max_len).train()
    load_ours_into_torch(ours, peer)
    counts = {"mmformer": sum(p.numel() for p in ours.parameters()), PEER: sum(p.numel() for p in peer.parameters())}
    if len(set(counts.values())) != 1:
        raise SystemExit(f"parameter counts differ: {counts}")
    src, target = make_batch(a)
    with torch.no_grad():
        diff = (ours(src, target[:, :-1]) - peer(src, target[:, :-1])).abs().max().item()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, fp32 CPU, batch {a.batch}, "
          f"source <= {a.src_len}, target {a.tgt_len}, d={a.dim} layers={a.layers}+{a.layers} heads={a.heads} "
          f"ffn={a.ffn} vocab={a.vocab}, pre-norm, {'AdamW' if a.adamw else 'no optimizer'}, "
          f"params {counts['mmformer']:,} each, max |logit diff| (same weights) {diff:.1e}, "
          f"warmup {a.warmup}, rounds {a.repeats}")
    steps = {
        "mmformer": make_step(ours, list(ours.parameters()), src, target, a.label_smoothing, a.adamw),
        PEER: make_step(peer, list(peer.parameters()), src, target, a.label_smoothing, a.adamw),
    }
    times = interleaved_times(steps, a.repeats, a.warmup)
    tokens = int((target[:, 1:] != PAD_ID).sum())
    for k, v in times.items():
        med = statistics.median(v)
        print(f"{k}: median {med * 1e3:.1f} ms [{min(v) * 1e3:.1f}-{max(v) * 1e3:.1f}], "
              f"{tokens / med:.0f} target tokens/s")
    print_ratios(times, [PEER])


if __name__ == "__main__":
    main()
