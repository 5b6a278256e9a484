"""Packed rows: the first-fit planner (coverage, budget, errors), pack/unpack round trips, and the
document masks (a token never sees another document)."""

from __future__ import annotations

import pytest
import torch

from mmformer.backbone import BackboneConfig, Decoder, Encoder
from mmformer.data.common.packing import MarkPacked, plan_packing
from mmformer.layers.packing import document_mask
from mmformer.tokenizers.base import TokenBatch


def test_planner_covers_every_sample_once_within_the_budget() -> None:
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(1, 20, (57,), generator=g), torch.randint(1, 9, (57,), generator=g)
    ps, pt = plan_packing([src, tgt], 24)
    assert torch.equal(ps.row, pt.row) and ps.rows == pt.rows
    for p, lens in ((ps, src), (pt, tgt)):
        taken = torch.zeros(p.rows, p.width, dtype=torch.long)
        for b in range(len(lens)):  # every token of every sample lands in one slot, no slot twice
            taken[p.row[b], p.start[b] : p.start[b] + lens[b]] += 1
        assert taken.max() == 1 and taken.sum() == lens.sum() and p.width <= 24
        assert int(taken.sum(1).max()) == p.width  # the width is the fullest row, not the budget
    assert ps.rows < len(src) and ps.rows >= int((src.sum() + 23) // 24)  # packs, within the lower bound
    again = plan_packing([src, tgt], 24)  # a deterministic function of the lengths (exact resume)
    assert all(torch.equal(a.start, b.start) and torch.equal(a.row, b.row) for a, b in zip(again, (ps, pt)))


def test_planner_refuses_a_sample_longer_than_a_row() -> None:
    with pytest.raises(ValueError, match="sample 2 of the batch has \\[9\\] tokens, more than pack_len=8"):
        plan_packing(torch.tensor([3, 4, 9]), 8)
    with pytest.raises(ValueError, match="positive"):
        MarkPacked(0)
    assert MarkPacked(16)({"x": 1}) == {"x": 1, "pack_len": 16}


def test_pack_unpack_round_trip_and_tails_are_zero() -> None:
    lens = torch.tensor([3, 5, 2, 4])
    (p,) = plan_packing(lens, 7)
    x = torch.randn(4, 6, 3) * (torch.arange(6)[None, :, None] < lens[:, None, None])
    y = p.pack(x)
    assert y.shape == (p.rows, p.width, 3) and y.abs().sum(-1).ne(0).sum() == lens.sum()
    assert torch.equal(p.unpack(y, 6), x)
    docs, pos = p.documents(), p.positions()
    for b in range(4):
        assert torch.equal(pos[docs == b], torch.arange(int(lens[b])))  # positions restart per document


def test_document_mask_sdpa_rows_are_within_documents_causal_and_finite() -> None:
    docs = torch.tensor([[0, 0, 1, 1, 1, -1]])
    m = document_mask(docs, docs, causal=True, kernel="sdpa").dense[0, 0]
    assert m[3].tolist() == [False, False, True, True, False, False]  # own document, not the future
    assert m[5].tolist() == [False] * 5 + [True]  # a row tail sees itself only: finite, read by nobody
    mem = torch.tensor([[1, 1, 0, -1]])
    c = document_mask(docs, mem, causal=False, kernel="sdpa").dense[0, 0]
    assert c[0].tolist() == [False, False, True, False] and c[5].all()


@pytest.mark.parametrize("causal", [False, True])
def test_changing_one_document_leaves_the_others_outputs_alone(causal: bool) -> None:
    torch.manual_seed(0)
    enc = Encoder(BackboneConfig(dim=16, depth=2, num_heads=2, causal=causal)).eval()
    lens = torch.tensor([4, 3, 5])
    (p,) = plan_packing(lens, 9)  # documents 0 and 1 share a row
    x = torch.randn(3, 5, 16)
    out = enc(TokenBatch(x).packed(p)).hidden
    x2 = x.clone()
    x2[1] += torch.randn(5, 16)
    out2 = enc(TokenBatch(x2).packed(p)).hidden
    docs = p.documents()
    others = (docs >= 0) & (docs != 1)  # real tokens of the other documents (row tails are read by nobody)
    assert torch.allclose(out[others], out2[others], atol=1e-6)
    assert not torch.allclose(out[docs == 1], out2[docs == 1])
    dec = Decoder(BackboneConfig(dim=16, depth=1, num_heads=2)).eval()
    mem = enc(TokenBatch(x).packed(p))
    tgt = TokenBatch(torch.randn(3, 5, 16)).packed(p)
    a = dec(tgt, mem.hidden, mem.mask, memory_documents=mem.documents).hidden
    b = dec(tgt, enc(TokenBatch(x2).packed(p)).hidden, mem.mask, memory_documents=mem.documents).hidden
    assert torch.allclose(a[others], b[others], atol=1e-6)  # cross-attention: own source only
    with pytest.raises(ValueError, match="pack the decoder's tokens and its memory together"):
        dec(tgt, mem.hidden, mem.mask)
