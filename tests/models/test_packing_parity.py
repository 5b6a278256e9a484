"""Packed rows give the padded path's numbers: the same per-sample losses and the same gradients (1e-5)
for an encoder–decoder over text, an audio encoder + text decoder (with CTC), and a causal decision
transformer; planned the way training plans them (the tasks' ``on_before_batch_transfer``)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

from mmformer.backbone import BackboneConfig, Encoder
from mmformer.data.common.packing import plan_packing
from mmformer.losses import action_loss
from mmformer.models import DecisionTransformer
from mmformer.tasks.seq2seq import Seq2SeqTask
from mmformer.tokenizers.audio import AudioBatch, AudioTokenizer
from mmformer.tokenizers.text import TextTokenizer
from mmformer.tokenizers.trajectory import TrajectoryTokenizer
from mmformer.models.config import Seq2SeqConfig

V = 23


def _rows(lengths: list[int], width: int, lo: int = 3) -> torch.Tensor:
    """Right-padded id rows of the given real lengths (ids in [lo, V))."""
    g = torch.Generator().manual_seed(sum(lengths))
    out = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        out[i, :n] = torch.randint(lo, V, (n,), generator=g)
    return out


def _targets(lengths: list[int]) -> torch.Tensor:
    t = _rows([n + 2 for n in lengths], max(lengths) + 2)
    t[:, 0] = 1  # bos
    for i, n in enumerate(lengths):
        t[i, n + 1] = 2  # eos
    return t


def _grads(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    loss = loss_fn()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _assert_same(task: Seq2SeqTask, batch: dict[str, Any], pack_len: int) -> None:
    packed = task.on_before_batch_transfer({**batch, "pack_len": pack_len}, 0)
    src_plan, tgt_plan = packed["packing"]
    assert src_plan.rows < len(batch["target"])  # the batch really shares rows
    loss_a, grads_a = _grads(task, lambda: task._losses(batch)[0])
    loss_b, grads_b = _grads(task, lambda: task._losses(packed)[0])
    assert torch.allclose(loss_a, loss_b, atol=1e-5)
    assert len(grads_a) == len(grads_b)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, atol=1e-5)
    with torch.no_grad():  # per sample: the padded logits at the real positions are the packed ones
        tgt_in = batch["target"][:, :-1]
        ref = task.model(batch["source"], tgt_in)
        memory = task.model.encode(batch["source"], packing=src_plan)
        got = tgt_plan.unpack(task.model.decode(tgt_in, memory, packing=tgt_plan).logits, tgt_in.shape[1])
        real = torch.arange(tgt_in.shape[1]) < tgt_plan.length[:, None]
        assert torch.allclose(ref[real], got[real], atol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_translation_like_encoder_decoder_packed_equals_padded(positions: str) -> None:
    torch.manual_seed(0)
    cfg = BackboneConfig(dim=32, depth=2, num_heads=4, rope=positions == "rope")
    task = Seq2SeqTask(Seq2SeqConfig(lambda d: TextTokenizer(d, V, max_len=16, positions=positions), V, cfg, target_positions=positions, max_target_len=16), metrics=["wer"])
    lens = [7, 3, 5, 2, 6, 4]
    _assert_same(task, {"source": _rows(lens, 8), "target": _targets([4, 6, 2, 5, 3, 3])}, pack_len=12)


def test_speech_like_audio_encoder_text_decoder_with_ctc_packed_equals_padded() -> None:
    torch.manual_seed(0)
    tok = lambda d: AudioTokenizer(d, n_mels=16, n_fft=128, win_length=128, hop_length=64,  # noqa: E731
                                   conv_channels=(4, 4), freq_masks=0, time_masks=0)
    task = Seq2SeqTask(Seq2SeqConfig(tok, V, BackboneConfig(dim=32, depth=2, num_heads=4), decoder_depth=1, max_target_len=16), ctc_weight=0.3, metrics=["wer"])
    lengths = torch.tensor([3000, 1200, 2400, 800, 2000])
    wave = torch.randn(5, 3000) * 0.1 * (torch.arange(3000) < lengths[:, None])
    batch = {"source": AudioBatch(wave, lengths), "target": _targets([4, 2, 3, 1, 3])}
    counts = task.model.source_tokenizer.token_counts(batch["source"])
    assert torch.equal(counts, task.model.source_tokenizer(batch["source"]).mask.sum(1))  # plans are exact
    _assert_same(task, batch, pack_len=int(counts.max()) + 4)


@pytest.mark.parametrize("discrete", [True, False])
def test_decision_transformer_packed_equals_padded(discrete: bool) -> None:
    torch.manual_seed(0)
    tok = TrajectoryTokenizer(32, state_dim=3, act_dim=2, discrete_actions=discrete)
    model = DecisionTransformer(tok, Encoder(BackboneConfig(dim=32, depth=2, num_heads=2, causal=True)), 6)
    traj = tok.dummy_inputs(6, pad=2)  # lengths 4, 2, 3, 1, ... right-padded to K = 6
    (plan,) = plan_packing(tok.token_counts(traj), 18)
    assert plan.rows < 6

    def loss(packing: Any) -> torch.Tensor:
        out = model(traj, packing=packing)
        return action_loss(out, model.action_targets(traj, out.dtype), traj["mask"], discrete)

    loss_a, grads_a = _grads(model, lambda: loss(None))
    loss_b, grads_b = _grads(model, lambda: loss(plan))
    assert torch.allclose(loss_a, loss_b, atol=1e-5)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, atol=1e-5)
    with torch.no_grad():
        real = traj["mask"]
        assert torch.allclose(model(traj)[real], model(traj, packing=plan)[real], atol=1e-5)
