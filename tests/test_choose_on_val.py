"""bench/choose_on_val.py decodes validation data only: the test loop it runs is fed the validation split, and a
DataModule that builds only its stage's splits (as TranslationData does) never reads its test split."""

from __future__ import annotations

import pytest

from bench.choose_on_val import feed_validation


class _StagedData:
    """Builds only the splits of the stage it is set up for, like mmformer's TranslationData."""

    def __init__(self) -> None:
        self.built: dict[str, list[str]] = {}

    def setup(self, stage: str | None = None) -> None:
        split = {"fit": "train", "validate": "val", "test": "test"}[stage or "fit"]
        self.built[split] = [f"{split} sentence"]

    def val_dataloader(self) -> list[str]:
        return self.built["val"]  # KeyError when the val split was never built

    def test_dataloader(self) -> list[str]:
        return self.built["test"]


def test_the_test_loop_runs_the_validation_split_and_never_builds_the_test_split() -> None:
    dm = _StagedData()
    feed_validation(dm)
    dm.setup("test")  # what Trainer.test calls
    assert dm.test_dataloader() == ["val sentence"]
    assert "test" not in dm.built


def test_a_task_is_only_for_multi_task_data() -> None:
    with pytest.raises(SystemExit, match="--task is for multi-task recipes"):
        feed_validation(_StagedData(), task="speech")
