"""The CLIP second-corpus bench's data section: the glyph manifests read through ManifestData, with zero-shot
glyph/background/colour labels in the test split (what ``mmformer test`` turns into test/zeroshot_glyph_acc)."""

import sys
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from second_corpus_clip import PROMPTS, data_section  # noqa: E402

from mmformer.data import ManifestData  # noqa: E402
from corpora import glyph_captions as gc  # noqa: E402


def test_only_the_data_section_changes_and_it_reads_the_glyph_manifests(tmp_path: Path) -> None:
    paths = gc.build(tmp_path / "data", gc.GlyphCaptionsConfig(num_train=200, num_eval=20))
    section = data_section(paths, "val")
    assert section["init_args"]["test"] == str(paths["val"])  # choosing on validation leaves test unseen
    recipe = yaml.safe_load((BENCH.parent / "tasks/clip.yaml").read_text())
    assert section["init_args"]["vocab_size"] == recipe["data"]["init_args"]["vocab_size"]  # the model follows the data
    assert "vocab_size" not in recipe["model"]["init_args"]["model"]["tokenizer_b"]["init_args"]
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
    assert zs["glyph"].templates == section["init_args"]["zeroshot"]["glyph"]  # the caption-worded prompts


def test_caption_prompts_are_worded_like_captions_with_the_colours_averaged_away() -> None:
    from second_corpus_clip import caption_prompts

    prompts = caption_prompts()
    assert len(prompts) == len(gc.TEMPLATES) * len(gc.colour_pairs()) == len(set(prompts))
    for prompt in prompts:
        assert prompt.count("{}") == 1 and "  " not in prompt and " at the " not in prompt
        named = [c for c in gc.COLOR_NAMES if f" {c} " in f" {prompt.replace(',', ' ')} "]
        assert len(named) == 2, prompt  # a glyph colour and a background, never the size or position
    seven = {p.format("7") for p in prompts}
    rng = __import__("numpy").random.default_rng(0)
    attrs = {"glyph": "7", "color": "white", "background": "green", "size": "small", "position": "top"}
    assert gc.caption(rng, attrs, drop=1.0) in seven  # a training caption without size and position is a prompt


def test_test_table_rows_parse_with_their_sign() -> None:
    from common import TEST_METRIC

    table = "│ test/return@-80 │ -97.125 │\n│ test/zeroshot_glyph_acc │ 0.78 │\n┃ test/bleu ┃ 49.5 ┃"
    assert dict(TEST_METRIC.findall(table)) == {"test/return@-80": "-97.125", "test/zeroshot_glyph_acc": "0.78",
                                                "test/bleu": "49.5"}
