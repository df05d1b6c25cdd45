"""Tools on AnnData: fit a decoder without an encoder, infer latents of new cells."""

from ._fit import fit_decoder, infer
from ._model import Model
from ._scale import fit_decoder_distributed

__all__ = ["Model", "fit_decoder", "fit_decoder_distributed", "infer"]
