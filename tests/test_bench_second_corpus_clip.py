"""The CLIP second-corpus bench's data section: the glyph manifests read through ManifestData, with zero-shot
glyph/background/colour labels in the test split (what ``mmformer test`` turns into test/zeroshot_glyph_acc)."""

import sys
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from second_corpus_clip import PROMPTS, data_section  # noqa: E402

from mmformer.data import ManifestData  # noqa: E402
from mmformer.data.builders import glyph_captions as gc  # noqa: E402


def test_only_the_data_section_changes_and_it_reads_the_glyph_manifests(tmp_path: Path) -> None:
    paths = gc.build(tmp_path / "data", gc.GlyphCaptionsConfig(num_train=200, num_eval=20))
    section = data_section(paths, "val")
    assert section["init_args"]["test"] == str(paths["val"])  # choosing on validation leaves test unseen
    recipe = yaml.safe_load((BENCH.parent / "tasks/clip.yaml").read_text())
    assert section["init_args"]["vocab_size"] == recipe["model"]["init_args"]["tokenizer_b"]["init_args"]["vocab_size"]
    args = {**section["init_args"], "data_dir": str(tmp_path / "data"), "vocab_size": 64, "batch_size": 8}
    dm = ManifestData(**args)
    dm.prepare_data()
    dm.setup("test")
    spec = dm.data_spec()
    zs = spec.eval_splits[0].zeroshot
    assert set(zs) == set(PROMPTS) and zs["glyph"].classes == list(gc.GLYPHS)
    batch = next(iter(dm.test_dataloader()))
    assert batch["a"].shape == (8, 3, 48, 48) and batch["labels"].shape == (8, len(PROMPTS))
    assert spec.tokenize(["the digit 7"]).shape[0] == 1
