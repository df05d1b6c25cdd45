"""Pure-PyTorch modules (no AnnData): the masked layer and the decoders."""

from ._decoder import Decoder, DecoderConfig
from ._sparse import SPARSE_DENSITY_THRESHOLD, SparseLinear

__all__ = ["SPARSE_DENSITY_THRESHOLD", "Decoder", "DecoderConfig", "SparseLinear"]
