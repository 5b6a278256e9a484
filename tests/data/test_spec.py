"""The data→task contract: every DataModule declares its spec, and a set-up module's spec holds what its tasks need."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import mmformer.data.modules
from corpora.control import ControlCorpus
from corpora.shapes import ShapesCorpus
from mmformer.data import (
    CsvCaptionData, DigitsData, ShapesCaptionData, TrajectoryData, TranslationData,
)
from mmformer.data.spec import ControlSpec, DataSpec, EvalSplit, ProvidesDataSpec
from tests.data.modules.test_captions import CAPTIONS, _images, _table
from tests.data.modules.test_speech import _data as speech_data
from tests.data.modules.test_translation import toy_tsv


def _datamodule_classes() -> list[type]:
    found = []
    for info in pkgutil.iter_modules(mmformer.data.modules.__path__):
        module = importlib.import_module(f"mmformer.data.modules.{info.name}")
        found += [c for _, c in inspect.getmembers(module, inspect.isclass)
                  if issubclass(c, pl.LightningDataModule) and c.__module__ == module.__name__]
    return found


def test_every_datamodule_implements_data_spec() -> None:
    classes = _datamodule_classes()
    names = {c.__name__ for c in classes}
    assert {"FashionMNISTData", "ImageFolderData", "TranslationData", "SpeechRecognitionData", "CsvCaptionData",
            "ShapesCaptionData", "TrajectoryData"} <= names
    for cls in classes:
        assert issubclass(cls, ProvidesDataSpec), cls
        assert not inspect.isabstract(cls), f"{cls.__name__} leaves {cls.__abstractmethods__} abstract"


def test_datamodules_are_re_exported_from_the_package() -> None:
    import mmformer.data as data

    for cls in _datamodule_classes():
        assert getattr(data, cls.__name__) is cls


def test_image_classification_declares_its_class_names() -> None:
    dm = DigitsData(batch_size=32)
    dm.setup("fit")
    assert dm.data_spec() == DataSpec(class_names=[str(d) for d in range(10)])


def test_translation_declares_target_and_source_vocabularies(tmp_path: Path) -> None:
    train = toy_tsv(tmp_path / "train.tsv", n=120)
    shared = TranslationData(train=train, data_dir=str(tmp_path), vocab_size=300, max_tokens=256)
    shared.setup("fit")
    spec = shared.data_spec()
    assert spec.vocab is not None and spec.source_vocab is spec.vocab
    split = TranslationData(train=train, data_dir=str(tmp_path), vocab_size=300, max_tokens=256,
                            shared_vocab=False)
    split.setup("fit")
    spec = split.data_spec()
    assert spec.vocab is not None and spec.source_vocab is not None and spec.source_vocab is not spec.vocab
    spec.require(["vocab", "source_vocab"], "TranslationData", "test")


def test_speech_declares_its_vocabulary(tmp_path: Path) -> None:
    dm = speech_data(tmp_path, unknown_chars="skip")
    with pytest.warns(UserWarning):
        dm.setup("fit")
    spec = dm.data_spec()
    assert spec.vocab is dm.vocab and spec.vocab is not None and spec.class_names is None
    with pytest.raises(ValueError, match="needs control from its data"):
        spec.require(["control"], "SpeechRecognitionData", "DecisionTransformerTask")


def test_captions_declare_vocab_tokenize_splits_and_predict_names(tmp_path: Path) -> None:
    names = _images(tmp_path, 6)
    train = _table(tmp_path, list(zip(names, CAPTIONS)))
    dm = CsvCaptionData(str(train), str(train), data_dir=str(tmp_path / "cache"), image_size=16, batch_size=4,
                        vocab_size=24, predict=str(train))
    dm.prepare_data()
    dm.setup("fit")
    spec = dm.data_spec()
    assert spec.vocab is dm.vocab and spec.eval_splits == [EvalSplit("")] and spec.predict_names is None
    ids = spec.tokenize(["a red square", "a circle"])
    assert ids.dtype == torch.long and ids.shape[0] == 2 and torch.equal(ids, dm.tokenize(["a red square", "a circle"]))
    dm.setup("predict")
    assert dm.data_spec().predict_names == [str(tmp_path / n) for n in names]


def test_shapes_declare_their_zero_shot_splits(tmp_path: Path) -> None:
    dm = ShapesCaptionData(ShapesCorpus(num_train=200, num_eval=40), data_dir=str(tmp_path), batch_size=16)
    dm.setup("test")
    splits = dm.data_spec().eval_splits
    assert [(s.name, s.retrieval) for s in splits] == [("", True), ("", False), ("unseen_", False)]
    assert set(splits[1].zeroshot) == {"shape", "color", "combo"} and splits[1].zeroshot["shape"].column == 0
    assert int(next(iter(dm.test_dataloader()))["split"].max()) < len(splits)


@pytest.mark.parametrize("env_id, discrete, act_dim", [("CartPole-v1", True, 2), ("Pendulum-v1", False, 1)])
def test_trajectories_declare_the_control_spec(tmp_path: Path, env_id: str, discrete: bool, act_dim: int) -> None:
    dm = TrajectoryData(env_id=env_id, data_dir=str(tmp_path), embedded=ControlCorpus(env_id, episodes_per_level=2),
                        context=5, batch_size=8)
    dm.setup("fit")
    control = dm.data_spec().control
    assert isinstance(control, ControlSpec)
    assert (control.env_id, control.context, control.discrete, control.act_dim) == (env_id, 5, discrete, act_dim)
    assert control.state_dim == dm.train_episodes.observations.shape[1] == control.state_mean.shape[0]
    assert torch.equal(control.state_std, dm.state_std) and control.ref_returns == dm.ref_returns
    assert torch.equal(control.dataset_returns, dm.all_episodes.returns)
    if discrete:
        assert control.action_low is None and control.action_high is None
    else:
        assert control.action_low.tolist() == [-2.0] and control.action_high.tolist() == [2.0]
