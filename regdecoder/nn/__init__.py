"""Pure-PyTorch modules (no AnnData): the masked layer and the decoders."""

from ._decoder import Decoder, DecoderConfig
from ._sparse import SPARSE_DENSITY_THRESHOLD, SPARSE_MIN_WEIGHTS, SparseLinear

__all__ = ["SPARSE_DENSITY_THRESHOLD", "SPARSE_MIN_WEIGHTS", "Decoder", "DecoderConfig", "SparseLinear"]
