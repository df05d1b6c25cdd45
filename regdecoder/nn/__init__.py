"""Pure-PyTorch modules (no AnnData): the masked layer, the decoders, the encoders and the image models."""

from ._decoder import COUNT_LIKELIHOODS, GENE_LIKELIHOODS, LIKELIHOODS, Decoder, DecoderConfig, likelihood_output
from ._encoder import Encoder, EncoderConfig
from ._images import (
    IMAGE_MODELS,
    CIFARDecoder1x1,
    CIFARDecoder4x4,
    CIFAREncoder1x1,
    CIFAREncoder4x4,
    MNISTDecoder,
    MNISTEncoder,
    image_loads,
    image_model,
    n_parameters,
)
from ._likelihoods import nb_nll, negative_binomial, poisson_nll
from ._sparse import SPARSE_DENSITY_THRESHOLD, SPARSE_MIN_WEIGHTS, SparseLinear

__all__ = [
    "COUNT_LIKELIHOODS",
    "GENE_LIKELIHOODS",
    "LIKELIHOODS",
    "likelihood_output",
    "nb_nll",
    "negative_binomial",
    "poisson_nll",
    "IMAGE_MODELS",
    "SPARSE_DENSITY_THRESHOLD",
    "SPARSE_MIN_WEIGHTS",
    "CIFARDecoder1x1",
    "CIFARDecoder4x4",
    "CIFAREncoder1x1",
    "CIFAREncoder4x4",
    "Decoder",
    "DecoderConfig",
    "Encoder",
    "EncoderConfig",
    "MNISTDecoder",
    "MNISTEncoder",
    "SparseLinear",
    "image_loads",
    "image_model",
    "n_parameters",
]
