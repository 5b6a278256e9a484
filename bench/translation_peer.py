"""A plain-PyTorch translation script, the peer mmformer's translation recipe must beat at equal minutes.

What a user would write without a framework (issue #19's reference: d 256, 3+3 layers, a 4k joint BPE,
greedy decoding): ``torch.nn.Transformer`` (pre-norm, dropout 0.1, tied embeddings, sinusoidal positions),
sentencepiece, token-budget batches of similar lengths, AdamW with warm-up and a cosine schedule *over the
time budget* (so it ends at lr 0 when the minutes run out, whatever the machine's speed), label smoothing
0.1, then greedy decoding of the test split and sacrebleu. No mmformer import.

    python bench/translation_peer.py --train train.jsonl --test test.jsonl --minutes 14.6

Input: JSONL ``{"src", "tgt"}`` or TSV ``src<TAB>tgt`` files. Prints ``peer: test/bleu B, chrf C`` and the
steps it made.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import time
from pathlib import Path

import sacrebleu
import sentencepiece as spm
import torch
from torch import Tensor, nn

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def read(path: str) -> list[tuple[str, str]]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        if path.endswith(".jsonl"):
            obj = json.loads(line)
            rows.append((obj["src"], obj["tgt"]))
        else:
            src, tgt = line.split("\t")
            rows.append((src, tgt))
    return rows


def train_bpe(texts: list[str], vocab_size: int) -> spm.SentencePieceProcessor:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
                                   model_type="bpe", character_coverage=1.0, pad_id=PAD, unk_id=UNK, bos_id=BOS,
                                   eos_id=EOS, byte_fallback=True, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def batches(pairs: list[tuple[list[int], list[int]]], max_tokens: int, rng: random.Random) -> list[list[int]]:
    """Shuffled indices in chunks of 6,400 samples, each chunk sorted by length, cut at max_tokens padded tokens."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    out: list[list[int]] = []
    size = lambda i: max(len(pairs[i][0]), len(pairs[i][1]))
    for start in range(0, len(order), 100 * 64):
        chunk = sorted(order[start:start + 100 * 64], key=size)
        cur: list[int] = []
        for i in chunk:
            if cur and (len(cur) + 1) * size(i) > max_tokens:  # the chunk is sorted: i is the longest so far
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
    rng.shuffle(out)
    return out


def pad(rows: list[list[int]]) -> Tensor:
    return nn.utils.rnn.pad_sequence([torch.tensor(r) for r in rows], batch_first=True, padding_value=PAD)


class Sinusoid(nn.Module):
    def __init__(self, dim: int, max_len: int = 512) -> None:
        super().__init__()
        pos = torch.arange(max_len)[:, None]
        freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        self.register_buffer("pe", pe)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D)
        return x + self.pe[: x.shape[1]]


class Translator(nn.Module):
    def __init__(self, vocab: int, dim: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)
        self.pos = Sinusoid(dim)
        self.net = nn.Transformer(dim, heads, layers, layers, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.drop = nn.Dropout(dropout)

    def emb(self, ids: Tensor) -> Tensor:
        return self.drop(self.pos(self.embed(ids) * self.dim ** 0.5))

    def encode(self, src: Tensor) -> Tensor:
        return self.net.encoder(self.emb(src), src_key_padding_mask=src == PAD)

    def decode(self, memory: Tensor, src: Tensor, tgt_in: Tensor) -> Tensor:
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], dtype=torch.bool)
        h = self.net.decoder(self.emb(tgt_in), memory, tgt_mask=causal, tgt_is_causal=True,
                             tgt_key_padding_mask=tgt_in == PAD, memory_key_padding_mask=src == PAD)
        return h @ self.embed.weight.T  # tied output projection

    @torch.no_grad()
    def greedy(self, src: Tensor, max_len: Tensor) -> list[list[int]]:
        memory = self.encode(src)
        out = torch.full((len(src), 1), BOS)
        done = torch.zeros(len(src), dtype=torch.bool)
        for t in range(int(max_len.max())):
            nxt = self.decode(memory, src, out)[:, -1].argmax(-1)
            nxt = torch.where(done | (t >= max_len), torch.full_like(nxt, EOS), nxt)
            out = torch.cat([out, nxt[:, None]], 1)
            done |= nxt == EOS
            if done.all():
                break
        return [[i for i in row[1:] if i != PAD] for row in out.tolist()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--minutes", type=float, required=True, help="training budget (decoding the test split is extra)")
    p.add_argument("--vocab", type=int, default=4000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=1024, help="padded tokens per batch (2048: 24.7 BLEU on gettext, 1024: 33.6)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="also stop after this many steps (tests)")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    train, test = read(args.train), read(args.test)
    sp = train_bpe([s for pair in train for s in pair], args.vocab)
    enc = lambda s: sp.encode(s)[:126]
    data = [(enc(s) + [EOS], [BOS] + enc(t) + [EOS]) for s, t in train]
    model = Translator(sp.get_piece_size(), args.dim, args.layers, 4, 0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)
    rng, budget, step, epoch = random.Random(args.seed), args.minutes * 60, 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < budget and (args.max_steps is None or step < args.max_steps):
        for batch in batches(data, args.max_tokens, rng):
            frac = (time.perf_counter() - start) / budget
            if args.max_steps is not None:  # a step schedule instead of the clock (reproducible)
                frac = max(frac, step / args.max_steps)
            if frac >= 1:
                break
            lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * frac))
            for group in opt.param_groups:
                group["lr"] = lr
            src, tgt = pad([data[i][0] for i in batch]), pad([data[i][1] for i in batch])
            logits = model.decode(model.encode(src), src, tgt[:, :-1])
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 200 == 0:
                print(f"step {step} epoch {epoch} loss {loss.item():.3f} lr {lr:.2e} "
                      f"{(time.perf_counter() - start) / 60:.1f} min", flush=True)
        epoch += 1
    train_min = (time.perf_counter() - start) / 60
    model.eval()
    order = sorted(range(len(test)), key=lambda i: len(test[i][0]))
    out: dict[int, str] = {}
    for k in range(0, len(order), 64):
        idx = order[k:k + 64]
        src = pad([enc(test[i][0]) + [EOS] for i in idx])
        max_len = ((src != PAD).sum(1) * 1.5 + 10).long()  # the source-relative limit the recipe uses too
        for i, ids in zip(idx, model.greedy(src, max_len)):
            out[i] = sp.decode(ids[: ids.index(EOS)] if EOS in ids else ids)
    hyps = [out[i] for i in range(len(test))]
    refs = [t for _, t in test]
    bleu, chrf = sacrebleu.corpus_bleu(hyps, [refs]).score, sacrebleu.corpus_chrf(hyps, [refs]).score
    params = sum(p.numel() for p in model.parameters())
    print(f"peer: test/bleu {bleu:.1f}, chrf {chrf:.1f} ({step} steps, {epoch} epochs, {train_min:.1f} min of "
          f"training, {(time.perf_counter() - t0) / 60:.1f} min in all, {params / 1e6:.1f}M parameters)")


if __name__ == "__main__":
    main()
