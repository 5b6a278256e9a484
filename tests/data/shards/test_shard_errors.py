"""Bad shards given to any DataModule fail in ``setup``, before training, with an error naming the path:
shards of another kind, a split that was never prepared, a truncated or missing chunk or ``columns.json``, a URI
that cannot be read."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from mmformer.data import ManifestData
from mmformer.data.modules.captions import CsvCaptionData
from mmformer.data.modules.speech import SpeechRecognitionData
from mmformer.data.modules.trajectories import TrajectoryData
from mmformer.data.modules.translation import TranslationData
from mmformer.data.shards.format import ShardError
from mmformer.data.shards.prepare import prepare
from tests.data.manifests import ALL_FIELDS
from tests.data.modules.test_translation import toy_tsv
from tests.data.shards.common import prepare_splits
from tests.data.shards.test_trajectory_shards import cartpole_npz
from tests.data.test_manifest import ROLES

MODULES: dict[str, Callable[[str, str], Any]] = {  # shards, data_dir → DataModule
    "translation": lambda s, d: TranslationData(shards=s, data_dir=d, vocab_size=300),
    "speech": lambda s, d: SpeechRecognitionData(shards=s, data_dir=d, units="char", vocab_size=32),
    "captions": lambda s, d: CsvCaptionData(shards=s, data_dir=d, vocab_size=40),
    "manifest": lambda s, d: ManifestData(shards=s, fields=ALL_FIELDS, inputs=ROLES, data_dir=d),
    "trajectories": lambda s, d: TrajectoryData(shards=f"{s}/train", data_dir=d),  # one folder, no splits
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Text-pair shards (train/val/test) and episode shards laid out as a train split."""
    tmp = tmp_path_factory.mktemp("bad")
    pairs = prepare_splits("pairs", {s: Path(toy_tsv(tmp / f"{s}.tsv", 30, k)) for k, s in
                                     enumerate(("train", "val", "test"))}, tmp / "pairs", "1KB")
    prepare("d4rl", cartpole_npz(tmp / "d.npz"), tmp / "episodes" / "train", chunk_bytes="1KB", progress=False)
    return {"pairs": Path(pairs), "episodes": tmp / "episodes"}


@pytest.mark.parametrize("name", list(MODULES))
def test_shards_of_another_kind_are_refused_naming_them(name: str, prepared: dict[str, Path], tmp_path: Path) -> None:
    other = prepared["episodes" if name == "translation" else "pairs"]
    kind = "trajectories" if name == "translation" else "text_pairs"
    with pytest.raises(ShardError, match=f"{other}/train holds shards of a {kind} dataset"):
        MODULES[name](str(other), str(tmp_path)).setup("fit")


@pytest.mark.parametrize("name", list(MODULES))
def test_a_split_never_prepared_is_named(name: str, tmp_path: Path) -> None:
    with pytest.raises(ShardError, match=f"no shards at {tmp_path / 'none'}/train: .*mmformer prepare"):
        MODULES[name](str(tmp_path / "none"), str(tmp_path)).setup("fit")


@pytest.mark.parametrize("name", ["translation", "trajectories"])
def test_a_truncated_or_missing_chunk_is_named_in_setup(name: str, prepared: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(prepared["pairs" if name == "translation" else "episodes"], broken)
    chunk = sorted((broken / "train").glob("*.bin"))[-1]
    chunk.write_bytes(chunk.read_bytes()[:10])
    with pytest.raises(ShardError, match=f"{chunk} is truncated"):
        MODULES[name](str(broken), str(tmp_path)).setup("fit")
    chunk.unlink()
    with pytest.raises(ShardError, match=f"{chunk} is missing"):
        MODULES[name](str(broken), str(tmp_path)).setup("fit")
    if name != "translation":
        return  # episodes have no small fields: no columns.json
    shutil.copytree(prepared["pairs"], broken, dirs_exist_ok=True)
    columns = broken / "train" / "columns.json"
    columns.write_text(columns.read_text()[:20])
    with pytest.raises(ShardError, match=f"cannot read {columns}: JSONDecodeError"):
        MODULES[name](str(broken), str(tmp_path)).setup("fit")
    columns.unlink()
    with pytest.raises(ShardError, match=f"{columns} is missing"):
        MODULES[name](str(broken), str(tmp_path)).setup("fit")


@pytest.mark.parametrize("name", list(MODULES))
def test_a_uri_that_cannot_be_read_is_named_in_setup(name: str, tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="cannot read shards at nosuch://bucket/x/train"):
        MODULES[name]("nosuch://bucket/x", str(tmp_path)).setup("fit")
