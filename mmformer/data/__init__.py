"""DataModules, dataset readers and the builders of the offline embedded defaults."""

from mmformer.data.image_sources import DigitsData, FashionMNISTData, IdxImageData, TorchvisionImageData
from mmformer.data.images import ImageClassificationData, TensorImageDataset

__all__ = [
    "DigitsData", "FashionMNISTData", "IdxImageData", "TorchvisionImageData",
    "ImageClassificationData", "TensorImageDataset",
]
from mmformer.data.image_files import ImageFolderData, load_image  # noqa: E402

__all__ += ["ImageFolderData", "load_image"]
from mmformer.data.text_pairs import read_pairs  # noqa: E402
from mmformer.data.translation import TranslationData  # noqa: E402

__all__ += ["TranslationData", "read_pairs"]
from mmformer.data.control_datasets import build_control_dataset  # noqa: E402
from mmformer.data.trajectories import TrajectoryData, episodes_from_arrays, read_d4rl  # noqa: E402

__all__ += ["TrajectoryData", "build_control_dataset", "episodes_from_arrays", "read_d4rl"]
from mmformer.data.captions import CaptionDataModule, CsvCaptionData, read_caption_table  # noqa: E402
from mmformer.data.shapes import ShapesCaptionData  # noqa: E402

__all__ += ["CaptionDataModule", "CsvCaptionData", "ShapesCaptionData", "read_caption_table"]
from mmformer.data.audio import load_audio, read_manifest  # noqa: E402
from mmformer.data.speech import BucketBatchSampler, SpeechRecognitionData  # noqa: E402

__all__ += ["BucketBatchSampler", "SpeechRecognitionData", "load_audio", "read_manifest"]
