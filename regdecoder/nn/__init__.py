"""Pure-PyTorch modules (no AnnData): the masked layer, the decoders and the encoders."""

from ._decoder import Decoder, DecoderConfig
from ._encoder import Encoder, EncoderConfig
from ._sparse import SPARSE_DENSITY_THRESHOLD, SPARSE_MIN_WEIGHTS, SparseLinear

__all__ = [
    "SPARSE_DENSITY_THRESHOLD",
    "SPARSE_MIN_WEIGHTS",
    "Decoder",
    "DecoderConfig",
    "Encoder",
    "EncoderConfig",
    "SparseLinear",
]
