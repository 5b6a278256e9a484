"""PrefixLM: the prefix-LM mask against a naive reference, CausalLM parity with no prefix, KV-cached
generation against full recomputation, prefix padding invariance, and learning."""

from __future__ import annotations

import pytest
import torch

from mmformer.backbone import BackboneConfig, BackboneOutput, Encoder
from mmformer.decoding import GenerationConfig, generate
from mmformer.layers.attention import attend
from mmformer.models import CausalLM
from mmformer.models.prefix_lm import PrefixLM
from mmformer.tokenizers.image import ImagePatchTokenizer
from mmformer.tokenizers.sentencepiece_vocab import BOS_ID, EOS_ID, PAD_ID
from mmformer.tokenizers.text import TextTokenizer
from mmformer.models.config import PrefixLMConfig

V, D = 40, 32


def _model(prefix: bool = True, rope: bool = False, seed: int = 0) -> PrefixLM:
    torch.manual_seed(seed)
    cfg = BackboneConfig(dim=D, depth=2, num_heads=4, mlp_ratio=2.0, causal=True, rope=rope)
    text = TextTokenizer(D, V, max_len=48, positions="rope" if rope else "learned")
    image = ImagePatchTokenizer(D, image_size=16, patch_size=8, in_chans=3, cls_token=False) if prefix else None
    return PrefixLM(text, Encoder(cfg), image).eval()


def _ids(b: int = 3, t: int = 7, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, V, (b, t), generator=g)
    ids[:, 0] = BOS_ID
    return ids


def test_attention_mask_equals_naive_reference() -> None:
    """Bidirectional over the real prefix, causal over text, padded keys never seen: an explicit loop."""
    torch.manual_seed(0)
    b, h, n, hd, p = 2, 2, 7, 8, 3
    q, k, v = (torch.randn(b, h, n, hd) for _ in range(3))
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 2] = False  # the second row's prefix has one real token fewer
    allowed = torch.zeros(b, n, n, dtype=torch.bool)
    for r in range(b):
        for i in range(n):
            for j in range(n):
                allowed[r, i, j] = bool(mask[r, j]) and (j < p or j <= i)
            allowed[r, i, i] |= not mask[r, i]  # a padded query sees itself (kept finite, never read)
    scores = (q @ k.transpose(-2, -1)) / hd**0.5
    ref = scores.masked_fill(~allowed[:, None], float("-inf")).softmax(-1) @ v
    out = attend(q, k, v, mask, causal=True, prefix_len=p).out
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    weights = attend(q, k, v, mask, causal=True, prefix_len=p, need_weights=True).weights
    assert torch.equal(weights > 0, allowed[:, None].expand_as(weights))


def test_model_attends_prefix_bidirectionally_and_text_causally() -> None:
    model = _model()
    images, ids = torch.randn(2, 3, 16, 16), _ids(2)
    memory = model.encode(images)
    out = model.decode(ids, memory)
    later = ids.clone()
    later[:, 4] = (later[:, 4] + 1 - 4) % (V - 4) + 4  # change text token 4
    out2 = model.decode(later, memory)
    torch.testing.assert_close(out2.logits[:, :4], out.logits[:, :4])  # earlier text cannot see it
    assert not torch.allclose(out2.logits[:, 4:], out.logits[:, 4:])
    p = memory.hidden.shape[1]
    torch.testing.assert_close(out2.output.hidden[:, :p], out.output.hidden[:, :p])  # the prefix cannot see text
    shifted = memory._replace(hidden=memory.hidden.clone())
    shifted.hidden[:, -1] += torch.randn(D)  # the last prefix token: every prefix token and every text token sees it
    out3 = model.decode(ids, shifted)
    assert not torch.allclose(out3.output.hidden[:, 0], out.output.hidden[:, 0])
    assert (out3.logits - out.logits).abs().amax(-1).min() > 0


def test_empty_prefix_equals_causal_lm() -> None:
    model = _model(prefix=False)
    torch.manual_seed(3)
    lm = CausalLM(TextTokenizer(D, V, max_len=48), Encoder(model.backbone.config)).eval()
    lm.load_state_dict(model.state_dict())
    ids = _ids()
    want = lm(ids)
    assert torch.equal(model(ids), want)
    assert torch.equal(model.decode(ids, model.encode(ids.shape[0])).logits, want)
    empty = BackboneOutput(torch.zeros(ids.shape[0], 0, D), None)
    assert torch.equal(model(ids, prefix=empty), want)


@pytest.mark.parametrize("rope", [False, True])
def test_prefix_padding_invariance(rope: bool) -> None:
    """Extra padded prefix positions change no text logit (nor, with RoPE, any text position)."""
    model = _model(rope=rope)
    memory = model.encode(torch.randn(2, 3, 16, 16))
    p = memory.hidden.shape[1]
    mask = torch.ones(2, p, dtype=torch.bool)
    mask[0, p - 1] = False  # row 0 has one real prefix token fewer
    memory = memory._replace(mask=mask)
    ids = _ids(2)
    want = model.decode(ids, memory).logits
    padded = BackboneOutput(torch.cat([memory.hidden, torch.randn(2, 3, D)], 1),
                            torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1))
    torch.testing.assert_close(model.decode(ids, padded).logits, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_cached_generation_equals_full_recompute(strategy: str) -> None:
    model = _model()
    images = torch.randn(3, 3, 16, 16)
    cfg = dict(strategy=strategy, max_new_tokens=12, top_k=8, top_p=0.9, beam_size=3, seed=5)
    cached = generate(model, images, GenerationConfig(**cfg))
    full = generate(model, images, GenerationConfig(**cfg, use_cache=False))
    assert torch.equal(cached, full)
    assert cached.shape[1] > 1


def test_prompted_generation_continues_each_prompt() -> None:
    """Ragged prompts: each row starts with its own prompt; cached = recomputed; a row's continuation
    does not depend on the other rows' prompts (greedy)."""
    model = _model(prefix=False)
    prompt = torch.tensor([[5, 6, 7, 8], [9, 10, PAD_ID, PAD_ID]])
    cfg = GenerationConfig(strategy="greedy", max_new_tokens=6, min_new_tokens=0)
    out = generate(model, 2, cfg, prompt=prompt)
    assert torch.equal(out, generate(model, 2, GenerationConfig(strategy="greedy", max_new_tokens=6,
                                                                 use_cache=False), prompt=prompt))
    assert out[0, :4].tolist() == [5, 6, 7, 8] and out[1, :2].tolist() == [9, 10]
    alone = generate(model, 1, cfg, prompt=prompt[1:, :2])
    n = alone.shape[1]
    assert out[1, :n].tolist() == alone[0].tolist()
    assert (out[1, 2 + 6:] == PAD_ID).all()  # at most max_new_tokens after its prompt
    with pytest.raises(ValueError, match="greedy or sample"):
        generate(model, 2, GenerationConfig(strategy="beam", max_new_tokens=6), prompt=prompt)


def test_tiny_model_overfits_a_batch() -> None:
    model = _model().train()
    images = torch.randn(4, 3, 16, 16)
    ids = _ids(4, 9)
    ids[:, -1] = EOS_ID
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(120):
        logits = model.decode(ids[:, :-1], model.encode(images)).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1), ignore_index=PAD_ID)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1, loss.item()


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="width"):
        PrefixLM(TextTokenizer(D, V), Encoder(BackboneConfig(dim=D, depth=1, num_heads=4, causal=True)),
                 ImagePatchTokenizer(16, image_size=16, patch_size=8))
    with pytest.raises(ValueError, match="pass the source"):
        _model().encode(3)


def _copy_model(rope: bool = False, seed: int = 0) -> PrefixLM:
    """A text prefix over the text's vocabulary with a CTC head on the prefix (speech-like: CTC over frames)."""
    torch.manual_seed(seed)
    cfg = BackboneConfig(dim=D, depth=2, num_heads=4, mlp_ratio=2.0, causal=True, rope=rope)
    kind = "rope" if rope else "learned"
    text, source = TextTokenizer(D, V, max_len=48, positions=kind), TextTokenizer(D, V, max_len=48, positions=kind)
    return PrefixLM(text, Encoder(cfg), source, ctc_vocab_size=V).eval()


@pytest.mark.parametrize("rope", [False, True])
def test_ctc_logits_of_the_prefix_alone_equal_the_full_pass(rope: bool) -> None:
    """Decoding scores CTC over the prefix run alone; training reads it off the [prefix | text] pass: equal,
    because no prefix token attends to text (padded prefix rows included)."""
    model = _copy_model(rope)
    source = torch.tensor([[5, 6, 7, 8], [9, 10, 11, PAD_ID]])
    memory = model.encode(source)
    out = model.decode(_ids(2), memory)
    p = memory.hidden.shape[1]
    full = model.ctc_logits(memory, out.output.hidden[:, :p])
    alone = model.ctc_logits(memory)
    assert alone.shape == (2, 4, V)
    torch.testing.assert_close(alone[memory.mask], full[memory.mask], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no CTC head"):
        _model().ctc_logits(memory)
    with pytest.raises(ValueError, match="needs a prefix tokenizer"):
        PrefixLM(TextTokenizer(D, V), Encoder(BackboneConfig(dim=D, depth=1, num_heads=4, causal=True)),
                 ctc_vocab_size=V)


def test_ctc_head_trains_and_hybrid_decoding_copies() -> None:
    """Copying the prefix with CTC + attention losses: the hybrid CTC/attention beam search emits the copy."""
    from mmformer.tasks.prefix_lm import PrefixLMTask  # the task's loss, not a re-implementation of it

    torch.manual_seed(0)
    task = PrefixLMTask(PrefixLMConfig(V, prefix_tokenizer=lambda d: TextTokenizer(d, V, max_len=48), backbone=BackboneConfig(dim=D, depth=2, num_heads=4, mlp_ratio=2.0)), ctc_weight=0.5)
    g = torch.Generator().manual_seed(3)
    # distinct labels per row: five frames cannot carry a repeated label (CTC needs a blank between)
    src = torch.stack([torch.randperm(V - 4, generator=g)[:5] + 4 for _ in range(16)])
    target = torch.cat([torch.full((16, 1), BOS_ID), src, torch.full((16, 1), EOS_ID)], 1)
    opt = torch.optim.AdamW(task.parameters(), lr=3e-3)
    for _ in range(200):
        logits, labels, _, ctc = task._logits({"source": src, "target": target})
        loss = task._loss(torch.nn.functional.cross_entropy(logits.reshape(-1, V), labels.reshape(-1)), ctc)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert ctc is not None and ctc.item() < 0.2, ctc
    task.eval()
    cfg = GenerationConfig(strategy="beam", beam_size=2, max_new_tokens=8, ctc_weight=0.5)
    out = generate(task.model, src, cfg)
    assert torch.equal(out[:, :5], src) and (out[:, 5:] == EOS_ID).logical_or(out[:, 5:] == PAD_ID).all()
