"""mmformer: modality tokenizers feed a shared transformer backbone; heads and Lightning tasks on top."""

from mmformer.backbone import BackboneConfig, BackboneOutput, Block, Decoder, Encoder
from mmformer.tokenizers.base import ModalityTokenizer, TokenBatch, list_tokenizers, register_tokenizer

__version__ = "0.1.0"
__all__ = [
    "BackboneConfig", "BackboneOutput", "Block", "Decoder", "Encoder",
    "ModalityTokenizer", "TokenBatch", "list_tokenizers", "register_tokenizer",
]
