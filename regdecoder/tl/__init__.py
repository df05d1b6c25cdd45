"""Tools on AnnData: fit a decoder without an encoder, infer latents of new cells, encoders and loads."""

from ._diagnostics import net_diagnostics, resolve_collinear
from ._encoder import EncoderModel, encode, fit_autoencoder, fit_encoder
from ._fit import fit_decoder, infer
from ._load import load
from ._model import Model
from ._scale import fit_decoder_distributed

__all__ = [
    "EncoderModel",
    "Model",
    "encode",
    "fit_autoencoder",
    "fit_decoder",
    "fit_decoder_distributed",
    "fit_encoder",
    "infer",
    "load",
    "net_diagnostics",
    "resolve_collinear",
]
