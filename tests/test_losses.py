"""CLIP loss: reference math, and DDP over 2 CPU processes equals one process on the whole batch."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from mmformer.losses import clip_loss, gather_with_grad, hard_negative_cross_entropy

WORLD, LOCAL_B, DIM, EMB = 2, 3, 5, 4


def test_clip_loss_matches_a_per_pair_reference() -> None:
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    out = clip_loss(img, txt, scale)
    ref = 0.0
    for i in range(6):  # -log softmax of the positive, image rows then text rows
        ref += -math.log(math.exp(scale * img[i] @ txt[i]) / sum(math.exp(scale * img[i] @ txt[j]) for j in range(6)))
        ref += -math.log(math.exp(scale * txt[i] @ img[i]) / sum(math.exp(scale * txt[i] @ img[j]) for j in range(6)))
    assert out.loss.item() == pytest.approx(ref / 12, rel=1e-6)
    assert out.logits_per_image.shape == (6, 6)
    perfect = clip_loss(img, img, torch.tensor(100.0)).loss
    assert perfect < out.loss  # aligned pairs score better than random ones


def test_hard_negatives_match_a_per_row_reference_and_beta_zero_is_infonce() -> None:
    """Robinson et al.'s denominator, written out per row: e^{l_ii} + (B-1) * sum_j q_ij e^{l_ij}."""
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(6, 8), dim=-1), F.normalize(torch.randn(6, 8), dim=-1)
    scale, beta = torch.tensor(10.0), 3.0
    cos = a @ b.t()
    want = []
    for i in range(6):
        neg = [j for j in range(6) if j != i]
        q = torch.softmax(beta * cos[i, neg], 0)
        denom = torch.exp(scale * cos[i, i]) + 5 * (q * torch.exp(scale * cos[i, neg])).sum()
        want.append(torch.log(denom) - scale * cos[i, i])
    torch.testing.assert_close(hard_negative_cross_entropy(scale * cos, cos, beta), torch.stack(want).mean())
    plain = clip_loss(a, b, scale)
    torch.testing.assert_close(clip_loss(a, b, scale, hard_negative_beta=0.0).loss, plain.loss)
    assert clip_loss(a, b, scale, hard_negative_beta=beta).loss > plain.loss  # hard negatives weigh more


def test_hard_negatives_push_hardest_on_the_closest_negative() -> None:
    """The gradient on a negative's similarity grows with beta when it is the closest one."""
    cos = torch.tensor([[0.9, 0.8, 0.0, -0.5], [0.1, 0.9, 0.0, 0.0], [0.0, 0.1, 0.9, 0.0], [0.0, 0.0, 0.1, 0.9]])
    grads = []
    for beta in (0.0, 5.0):
        c = cos.clone().requires_grad_(True)
        hard_negative_cross_entropy(10.0 * c, c, beta).backward()
        grads.append(c.grad[0])
    assert grads[1][1] > grads[0][1] > 0  # the near negative of row 0 is pushed away harder
    assert grads[1][2] < grads[0][2]  # an easy one less


def test_mismatched_embeddings_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"\(B, E\)"):
        clip_loss(torch.randn(3, 4), torch.randn(2, 4), torch.tensor(1.0))


def test_gather_is_the_identity_in_one_process() -> None:
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x


class Towers(nn.Module):
    """Two linear towers and a learnable log-scale: the smallest CLIP."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.image, self.text = nn.Linear(DIM, EMB), nn.Linear(DIM, EMB)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return clip_loss(F.normalize(self.image(a), dim=-1), F.normalize(self.text(b), dim=-1),
                         self.logit_scale.exp()).loss


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(WORLD * LOCAL_B, DIM, generator=g), torch.randn(WORLD * LOCAL_B, DIM, generator=g)


def _worker(rank: int, rendezvous: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=120))  # fail, never hang, if a peer dies
    try:
        model = nn.parallel.DistributedDataParallel(Towers())  # averages gradients over ranks
        a, b = _batch()
        mine = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
        loss = model(a[mine], b[mine])
        loss.backward()
        if rank == 0:
            torch.save({"loss": loss.detach(), "grads": {n: p.grad for n, p in model.module.named_parameters()}}, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_loss_and_gradients_equal_one_process_on_the_global_batch(tmp_path: Path) -> None:
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), str(out)), nprocs=WORLD, join=True)
    got = torch.load(out, weights_only=True)
    ref_model = Towers()
    ref = ref_model(*_batch())
    ref.backward()
    assert got["loss"].item() == pytest.approx(ref.item(), abs=1e-5)
    for name, p in ref_model.named_parameters():
        assert torch.allclose(got["grads"][name], p.grad, atol=1e-5), (name, got["grads"][name], p.grad)
    # the classic bug would be off by the world size: make sure the gradients are not trivially small
    assert ref_model.image.weight.grad.abs().max() > 1e-3


def test_sequence_cross_entropy_ignores_pads_and_smooths_labels() -> None:
    from mmformer.losses import sequence_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(2, 4, 7, generator=g), torch.tensor([[3, 4, 2, 0], [5, 2, 0, 0]])
    real = targets != 0
    ref = F.cross_entropy(logits[real], targets[real], label_smoothing=0.1)
    assert sequence_cross_entropy(logits, targets, 0.1).item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        sequence_cross_entropy(logits, targets[:, :2])


def test_soft_target_cross_entropy_equals_cross_entropy_on_one_hot_targets() -> None:
    from mmformer.losses import soft_target_cross_entropy

    logits, labels = torch.randn(4, 5), torch.tensor([0, 3, 1, 4])
    got = soft_target_cross_entropy(logits, F.one_hot(labels, 5).float())
    assert got.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_ctc_loss_reads_labels_before_eos_and_counts_real_frames() -> None:
    from mmformer.losses import ctc_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 8, generator=g)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    targets = torch.tensor([[4, 5, 2, 0], [6, 2, 0, 0]])  # pieces, eos (2), pads (0 = blank)
    ref = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), torch.tensor([[4, 5], [6, 0]]), torch.tensor([6, 4]),
                     torch.tensor([2, 1]), blank=0, zero_infinity=True)
    assert ctc_loss(logits, mask, targets, blank=0, special_ids=(2, 1)).item() == pytest.approx(ref.item(), rel=1e-6)


def test_action_loss_is_masked_cross_entropy_or_mse() -> None:
    from mmformer.losses import action_loss

    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(2, 3, 4, generator=g), torch.tensor([[0, 1, 2], [3, 0, 0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    assert action_loss(logits, ids, mask, True).item() == pytest.approx(
        F.cross_entropy(logits[mask], ids[mask]).item(), rel=1e-6)
    pred, target = torch.rand(2, 3, 2), torch.rand(2, 3, 2)
    assert action_loss(pred, target, mask, False).item() == pytest.approx(
        F.mse_loss(pred[mask], target[mask]).item(), rel=1e-6)
