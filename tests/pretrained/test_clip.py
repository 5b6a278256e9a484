"""CLIP parity: small random HF CLIPModel and open_clip CLIP, saved the standard way, converted to a
ContrastiveModel: the same image and text embeddings (padded captions of different lengths) and logit
scale, and export back into both libraries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmformer.pretrained import CheckpointError, from_pretrained
from mmformer.pretrained.clip import export
from tests.pretrained.conftest import close

VOCAB, EOT, PAD, LENGTHS = 99, 98, 0, (11, 6, 3)


def _hf_clip():
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16, pad_token_id=PAD, bos_token_id=97, eos_token_id=EOT)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).eval()


OC_CFG = {"embed_dim": 32, "quick_gelu": True,
          "vision_cfg": {"layers": 2, "width": 64, "head_width": 16, "patch_size": 8, "image_size": 32},
          "text_cfg": {"context_length": 16, "vocab_size": VOCAB, "width": 48, "heads": 4, "layers": 2}}


def _captions() -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded captions ending in the end-of-text id (also the largest id, as open_clip expects)."""
    ids = torch.randint(1, EOT - 1, (len(LENGTHS), max(LENGTHS)))
    pos = torch.arange(max(LENGTHS))[None]
    n = torch.tensor(LENGTHS)[:, None]
    ids = torch.where(pos == n - 1, EOT, ids).masked_fill(pos >= n, PAD)
    return ids, pos < n


def test_hf_clip_embeddings_match_and_export_back(tmp_path: Path) -> None:
    from transformers import CLIPModel

    peer = _hf_clip()
    peer.save_pretrained(tmp_path / "hf")
    model = from_pretrained(tmp_path / "hf")
    images, (ids, mask) = torch.randn(2, 3, 32, 32), _captions()
    theirs = peer(input_ids=ids, attention_mask=mask.long(), pixel_values=images)
    mine = model(images, ids)
    close(mine.embeds_a, theirs.image_embeds)
    close(mine.embeds_b, theirs.text_embeds)
    close(mine.logit_scale, peer.logit_scale.exp())
    close(model.encode_text(ids[-1:, :LENGTHS[-1]]), model.encode_text(ids)[-1:])  # padding changes nothing

    export(model, tmp_path / "back", eos_token_id=EOT)
    again = CLIPModel.from_pretrained(tmp_path / "back").eval()
    out = again(input_ids=ids, attention_mask=mask.long(), pixel_values=images)
    close(out.logits_per_image, theirs.logits_per_image)


def test_open_clip_embeddings_match_and_export_back(tmp_path: Path) -> None:
    import open_clip

    peer = open_clip.CLIP(embed_dim=OC_CFG["embed_dim"], vision_cfg=OC_CFG["vision_cfg"], text_cfg=OC_CFG["text_cfg"],
                          quick_gelu=True).eval()
    with torch.no_grad():
        for p in (peer.text_projection, peer.visual.proj):
            p.normal_(std=0.1)
    folder = tmp_path / "oc"
    folder.mkdir()
    save_file(peer.state_dict(), str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": OC_CFG}))
    model = from_pretrained(folder)
    images, (ids, _) = torch.randn(2, 3, 32, 32), _captions()
    ids = torch.nn.functional.pad(ids, (0, 16 - ids.shape[1]), value=PAD)  # open_clip reads full contexts
    close(model.encode_image(images, normalize=True), peer.encode_image(images, normalize=True))
    close(model.encode_text(ids, normalize=True), peer.encode_text(ids, normalize=True))

    export(model, tmp_path / "back", flavor="open_clip")
    again = open_clip.create_model(f"local-dir:{tmp_path / 'back'}").eval()
    close(again.encode_text(ids, normalize=True), peer.encode_text(ids, normalize=True))
    close(again.encode_image(images, normalize=True), peer.encode_image(images, normalize=True))


def test_wrong_clip_checkpoints_name_the_tensor_or_field(tmp_path: Path) -> None:
    _hf_clip().save_pretrained(tmp_path / "hf")
    weights = tmp_path / "hf" / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if k != "visual_projection.weight"}, str(weights))
    with pytest.raises(CheckpointError, match=r"no tensor 'visual_projection\.weight'"):
        from_pretrained(tmp_path / "hf")
    folder = tmp_path / "oc"
    folder.mkdir()
    save_file({"x": torch.zeros(1)}, str(folder / "open_clip_model.safetensors"))
    cfg = {"model_cfg": {**OC_CFG, "vision_cfg": {**OC_CFG["vision_cfg"], "timm_model_name": "convnext_tiny"}}}
    (folder / "open_clip_config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model_cfg\.vision_cfg\.timm_model_name is not supported"):
        from_pretrained(folder)
