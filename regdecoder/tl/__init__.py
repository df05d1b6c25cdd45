"""Tools on AnnData: fit a decoder without an encoder, infer latents of new cells."""

from ._fit import fit_decoder, infer
from ._model import Model

__all__ = ["Model", "fit_decoder", "infer"]
