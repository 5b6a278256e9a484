"""Data by role: :mod:`.readers` of users' formats, the LightningDataModules in :mod:`.modules`, and the
machinery they share in :mod:`.common`. The offline embedded corpora are built by the ``corpora`` package
beside this one, which recipes name by dotted path (``embedded:``) and mmformer never imports.
:mod:`.spec` is the data→task contract every DataModule implements.

The public names below are re-exported lazily: ``from mmformer.data import TranslationData`` imports
only the translation module (and ``import mmformer.data`` imports nothing heavy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmformer.lazy import lazy_exports

_EXPORTS = {
    # DataModules (their class names are stable: Lightning keys checkpointed DataModule state by them)
    "ImageClassificationData": "modules.images", "IdxImageData": "modules.images",
    "FashionMNISTData": "modules.images", "DigitsData": "modules.images", "TorchvisionImageData": "modules.images",
    "ImageFolderData": "modules.images", "TensorImageDataset": "modules.images",
    "TranslationData": "modules.translation",
    "SpeechRecognitionData": "modules.speech",
    "CsvCaptionData": "modules.captions", "ShapesCaptionData": "modules.captions",
    "TrajectoryData": "modules.trajectories",
    "ManifestData": "modules.manifest",
    "MultiTaskData": "modules.multitask",
    # readers
    "load_image": "readers.image_files", "read_pairs": "readers.text_pairs",
    "load_audio": "readers.audio", "read_manifest": "readers.audio",
    "read_table": "readers.manifest", "ManifestError": "readers.manifest",
    "read_d4rl": "readers.d4rl", "episodes_from_arrays": "readers.d4rl",
    # shared machinery
    "BucketBatchSampler": "common.batching",
    # the data→task contract
    "DataSpec": "spec", "ControlSpec": "spec", "EvalSplit": "spec", "ZeroShotSpec": "spec",
    "ProvidesDataSpec": "spec",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, {name: f"mmformer.data.{mod}" for name, mod in _EXPORTS.items()})


if TYPE_CHECKING:  # static analysers and IDEs see the names
    from mmformer.data.common.batching import BucketBatchSampler
    from mmformer.data.modules.captions import CsvCaptionData, ShapesCaptionData
    from mmformer.data.modules.images import (
        DigitsData, FashionMNISTData, IdxImageData, ImageClassificationData, ImageFolderData, TensorImageDataset,
        TorchvisionImageData,
    )
    from mmformer.data.modules.manifest import ManifestData
    from mmformer.data.modules.multitask import MultiTaskData
    from mmformer.data.modules.speech import SpeechRecognitionData
    from mmformer.data.modules.trajectories import TrajectoryData
    from mmformer.data.modules.translation import TranslationData
    from mmformer.data.readers.audio import load_audio, read_manifest
    from mmformer.data.readers.d4rl import episodes_from_arrays, read_d4rl
    from mmformer.data.readers.image_files import load_image
    from mmformer.data.readers.manifest import ManifestError, read_table
    from mmformer.data.readers.text_pairs import read_pairs
    from mmformer.data.spec import ControlSpec, DataSpec, EvalSplit, ProvidesDataSpec, ZeroShotSpec
