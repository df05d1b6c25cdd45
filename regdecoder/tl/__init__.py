"""Tools on AnnData: fit a decoder without an encoder, infer latents of new cells."""

from ._diagnostics import net_diagnostics, resolve_collinear
from ._fit import fit_decoder, infer
from ._model import Model

__all__ = ["Model", "fit_decoder", "infer", "net_diagnostics", "resolve_collinear"]
