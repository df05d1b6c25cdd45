"""The fitted model: a decoder plus the names it needs, saved to and loaded from one file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..nn import Decoder, DecoderConfig
from ..train import infer_gradient, resolve_device, solve_latents

_FORMAT = "regdecoder.Model"


def read_saved(path: str | os.PathLike, fmt: str, *, what: str, writer: str) -> dict:
    """The dict saved in a regdecoder file of format ``fmt``, read safely (``weights_only=True``)."""
    path = Path(path)
    if not path.exists():
        msg = f"No {what} file at {str(path)!r}."
        raise FileNotFoundError(msg)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        msg = f"{str(path)!r} is not a regdecoder {what} file (written by `{writer}`)."
        raise ValueError(msg)
    return blob


class Model:
    """A trained decoder with its gene and latent names.

    Made by :func:`regdecoder.tl.fit_decoder`; used by :func:`regdecoder.tl.infer`.
    Save with :meth:`save` and load with :meth:`Model.load` (``torch.load`` with
    ``weights_only=True``: the file holds tensors, numbers and strings only).

    Attributes
    ----------
    decoder
        The :class:`~regdecoder.nn.Decoder` (a ``torch.nn.Module``).
    var_names
        Genes, in the decoder's output order.
    latent_names
        Names of the latents (TF names for a masked decoder).
    orientation
        Sign rule applied to each latent (see :mod:`regdecoder.train._orient`).
    z_mean
        Mean latent of the training cells; the start of gradient inference.
    history
        Training loss per epoch and the training seconds at each epoch.
    likelihood
        ``'mse'`` (default), ``'poisson'`` or ``'nb'``: the loss the decoder was fit
        with; count models infer new cells with the same likelihood.
    log_theta
        Per-gene log inverse dispersion of a negative-binomial model.
    library_ref
        Count models: the reference library size (size factor = a cell's total
        count / ``library_ref``).
    """

    def __init__(
        self,
        decoder: Decoder,
        *,
        var_names: list[str],
        latent_names: list[str],
        orientation: list[str] | None = None,
        z_mean: torch.Tensor | None = None,
        history: dict | None = None,
        likelihood: str = "mse",
        log_theta: torch.Tensor | None = None,
        library_ref: float | None = None,
    ) -> None:
        self.decoder = decoder
        self.likelihood = likelihood
        self.log_theta = log_theta
        self.library_ref = library_ref
        self.var_names = list(map(str, var_names))
        self.latent_names = list(map(str, latent_names))
        self.orientation = list(orientation) if orientation is not None else []
        n_latent = decoder.config.n_latent
        self.z_mean = z_mean if z_mean is not None else torch.zeros(n_latent)
        self.history = history or {}
        if len(self.var_names) != decoder.config.n_genes or len(self.latent_names) != n_latent:
            msg = (
                f"Names do not fit the decoder: {len(self.var_names)} genes for {decoder.config.n_genes} outputs, "
                f"{len(self.latent_names)} latent names for {n_latent} latents."
            )
            raise ValueError(msg)

    # --------------------------------------------------------------- basics
    @property
    def config(self) -> DecoderConfig:
        return self.decoder.config

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def to(self, device: str | torch.device) -> Model:
        """Move the decoder to ``device`` (``'auto'``, ``'cpu'``, ``'cuda'``...); returns self."""
        self.decoder.to(resolve_device(device))
        if self.log_theta is not None:
            self.log_theta = self.log_theta.to(resolve_device(device))
        return self

    @property
    def weights(self) -> np.ndarray:
        """Decoder weights, genes x latents (one-layer decoders only)."""
        return self.decoder.get_weight().cpu().numpy()

    def __repr__(self) -> str:
        kind = "masked" if self.config.masked else ("MLP" if self.config.hidden else "dense")
        return (
            f"Model({kind} decoder: {self.config.n_latent} latents -> {self.config.n_genes} genes, "
            f"{self.decoder.n_weights} weights, output={self.config.output!r})"
        )

    # ------------------------------------------------------------- compute
    @torch.no_grad()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """Expression predicted from latents ``z`` (cells x latents)."""
        zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.device)
        return self.decoder(zt).cpu().numpy()

    def infer_latents(
        self,
        x: torch.Tensor,
        *,
        method: str = "auto",
        max_iter: int | None = None,
        tol: float | None = None,
        size_factors: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int]:
        """Latents of new cells (a float32 tensor on the model's device), decoder frozen.

        ``method='als'`` (one-layer decoders; the default for them) solves the censored
        least-squares problem exactly, all cells with one shared factorisation;
        ``'gradient'`` runs full-batch Adam on the latents from ``z_mean``.
        Count models (``likelihood`` not ``'mse'``) need the cells' ``size_factors``
        and always use the gradient method with their likelihood.
        Returns the latents and the iterations run.
        """
        if self.likelihood != "mse":
            from ._counts import count_latents

            return count_latents(self, x, size_factors, max_iter=max_iter, tol=tol)
        if method == "auto":
            method = "als" if self.decoder.one_layer else "gradient"
        if method == "als":
            with torch.no_grad():
                return solve_latents(
                    x,
                    self.decoder.get_weight(),
                    self.decoder.get_bias(),
                    relu=self.config.output == "relu",
                    n_iter=100 if max_iter is None else max_iter,
                    tol=1e-5 if tol is None else tol,
                )
        if method == "gradient":
            z0 = self.z_mean.to(self.device).expand(x.shape[0], -1)
            return infer_gradient(
                self.decoder, x, z0, max_iter=500 if max_iter is None else max_iter, tol=1e-6 if tol is None else tol
            )
        msg = f"Unknown inference method {method!r}; use 'auto', 'als' or 'gradient'."
        raise ValueError(msg)

    # ------------------------------------------------------------ save/load
    def save(self, path: str | os.PathLike) -> None:
        """Write config, weights, gene and latent names and the package version to one file."""
        torch.save(self.to_dict(), Path(path))

    def to_dict(self) -> dict:
        """The saved form: tensors, numbers and strings only (readable with ``weights_only=True``)."""
        from .. import __version__

        state = {k: v.detach().cpu() for k, v in self.decoder.state_dict().items()}
        return {
            "format": _FORMAT,
            "version": __version__,
            "config": self.config.to_dict(),
            "state_dict": state,
            "var_names": self.var_names,
            "latent_names": self.latent_names,
            "orientation": self.orientation,
            "z_mean": self.z_mean.detach().cpu(),
            "likelihood": self.likelihood,
            "log_theta": None if self.log_theta is None else self.log_theta.detach().cpu(),
            "library_ref": self.library_ref,
            "history": {k: list(map(float, v)) for k, v in self.history.items() if isinstance(v, list)},
        }

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Model:
        """Load a model written by :meth:`save` (safely: ``weights_only=True``)."""
        blob = read_saved(path, _FORMAT, what="model", writer="Model.save")
        return cls.from_dict(blob).to(device)

    @classmethod
    def from_dict(cls, blob: dict) -> Model:
        """Rebuild a model (on the CPU) from :meth:`to_dict`'s output."""
        config = DecoderConfig(**blob["config"])
        state = blob["state_dict"]
        rows = state.get("layers.0.rows") if config.masked else None
        cols = state.get("layers.0.cols") if config.masked else None
        decoder = Decoder(config, rows, cols)
        decoder.load_state_dict(state)
        decoder.eval()
        return cls(
            decoder,
            var_names=blob["var_names"],
            latent_names=blob["latent_names"],
            orientation=blob.get("orientation"),
            z_mean=blob.get("z_mean"),
            history=blob.get("history"),
            likelihood=blob.get("likelihood", "mse"),
            log_theta=blob.get("log_theta"),
            library_ref=blob.get("library_ref"),
        )
