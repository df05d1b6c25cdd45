"""Tools on AnnData: fit a decoder without an encoder, infer latents of new cells, encoders and loads,
rank activities per group."""

from ._diagnostics import net_diagnostics, resolve_collinear
from ._distributed import fit_decoder_distributed
from ._encoder import encode, fit_autoencoder, fit_encoder
from ._fit import fit_decoder, infer
from ._load import load
from ._model import EncoderModel, Model
from ._rank import rank_activities

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
    "rank_activities",
    "resolve_collinear",
]
