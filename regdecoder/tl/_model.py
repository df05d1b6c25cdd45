"""The fitted model: a decoder (and optionally an encoder) with the names it needs, saved to
and loaded from one file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ..nn import Decoder, DecoderConfig, Encoder, EncoderConfig
from ..train import infer, resolve_device

_FORMAT = "regdecoder.Model"
_ENCODER_FORMAT_V010 = "regdecoder.EncoderModel"  # 0.1.0 wrote encoders in a format of their own
_KINDS = ("decoder", "encoder", "autoencoder")


class Model:
    """A trained decoder with its gene and latent names, and optionally an encoder.

    Made by :func:`regdecoder.tl.fit_decoder` (``kind='decoder'``),
    :func:`~regdecoder.tl.fit_encoder` (``'encoder'``: an encoder trained on the frozen
    decoder, which is shared, not copied) and :func:`~regdecoder.tl.fit_autoencoder`
    (``'autoencoder'``: both trained together). Used by :func:`~regdecoder.tl.infer` and,
    with an encoder, :func:`~regdecoder.tl.encode`. Save with :meth:`save` and load with
    :meth:`Model.load` (``torch.load(weights_only=True)``: the file holds tensors, numbers
    and strings only; files written by regdecoder 0.1.0, decoders and encoders, load too).

    Attributes
    ----------
    decoder
        The :class:`~regdecoder.nn.Decoder` (a ``torch.nn.Module``); it owns the gene
        likelihood and, for ``'nb'``, the dispersion.
    encoder
        The :class:`~regdecoder.nn.Encoder`, or None.
    var_names
        Genes, in the decoder's output order.
    latent_names
        Names of the latents (TF names for a masked decoder).
    orientation
        Sign rule applied to each latent (see :mod:`regdecoder.train._orient`).
    z_mean
        Mean latent of the training cells; the start of gradient inference.
    history
        Loss per epoch and training seconds of the last training (the encoder's for
        ``kind='encoder'``).
    library_ref
        Count models: the reference library size (size factor = a cell's library size /
        ``library_ref``).
    gene_mean
        The centre of the marginal t-values (:mod:`regdecoder.train._score`), subtracted from
        every cell: each gene's mean over the training cells for the ReLU model; zeros for the
        linear decoder (``gene_likelihood='normal'``) and after a single training sample.
        None for decoders that report no marginal t.
    gene_detected
        The fraction of training cells in which each gene is nonzero (the latent solver's
        preconditioner; :func:`regdecoder.train.solve_latents`), or None.
    kind
        ``'decoder'``, ``'encoder'`` or ``'autoencoder'``.
    key
        The default ``key_added`` of :func:`~regdecoder.tl.encode`.
    n_obs
        Number of training cells (for :func:`~regdecoder.tl.load`).
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
        library_ref: float | None = None,
        gene_mean: torch.Tensor | None = None,
        gene_detected: torch.Tensor | None = None,
        encoder: Encoder | None = None,
        kind: str = "decoder",
        key: str = "regdecoder",
        n_obs: int = 0,
    ) -> None:
        self.decoder = decoder
        self.encoder = encoder
        self.library_ref = library_ref
        self.gene_mean = gene_mean
        self.gene_detected = gene_detected
        self.var_names = list(map(str, var_names))
        self.latent_names = list(map(str, latent_names))
        self.orientation = list(orientation) if orientation is not None else []
        n_latent = decoder.config.n_latent
        self.z_mean = z_mean if z_mean is not None else torch.zeros(n_latent)
        self.history = history or {}
        self.kind, self.key, self.n_obs = kind, key, int(n_obs)
        if kind not in _KINDS:
            msg = f"`kind` must be one of {_KINDS}, got {kind!r}."
            raise ValueError(msg)
        if len(self.var_names) != decoder.config.n_genes or len(self.latent_names) != n_latent:
            msg = (
                f"Names do not fit the decoder: {len(self.var_names)} genes for {decoder.config.n_genes} outputs, "
                f"{len(self.latent_names)} latent names for {n_latent} latents."
            )
            raise ValueError(msg)
        if encoder is not None and (
            encoder.config.n_genes != decoder.config.n_genes or encoder.config.n_latent != n_latent
        ):
            msg = (
                f"Encoder ({encoder.config.n_genes} genes -> {encoder.config.n_latent} latents) does not fit the "
                f"decoder ({n_latent} latents -> {decoder.config.n_genes} genes)."
            )
            raise ValueError(msg)

    # --------------------------------------------------------------- basics
    @property
    def config(self) -> DecoderConfig:
        return self.decoder.config

    @property
    def likelihood(self) -> str:
        """The gene likelihood the decoder was fit with (``'mse'``, ``'poisson'``, ``'nb'``)."""
        return self.decoder.config.likelihood

    @property
    def log_theta(self) -> torch.Tensor | None:
        """Per-gene log inverse dispersion of a negative-binomial model."""
        p = getattr(self.decoder, "log_theta", None)
        return None if p is None else p.detach()

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def to(self, device: str | torch.device) -> Model:
        """Move decoder (and encoder) to ``device`` (``'auto'``, ``'cpu'``, ``'cuda'``...); returns self."""
        dev = resolve_device(device)
        self.decoder.to(dev)
        if self.encoder is not None:
            self.encoder.to(dev)
        return self

    @property
    def weights(self) -> np.ndarray:
        """Decoder weights, genes x latents (one-layer decoders only)."""
        return self.decoder.get_weight().cpu().numpy()

    def __repr__(self) -> str:
        kind = "masked" if self.config.masked else ("MLP" if self.config.hidden else "dense")
        text = (
            f"Model({kind} decoder: {self.config.n_latent} latents -> {self.config.n_genes} genes, "
            f"{self.decoder.n_weights} weights, output={self.config.output!r}, likelihood={self.likelihood!r}"
        )
        if self.encoder is not None:
            shape = " -> ".join(
                map(str, [self.encoder.config.n_genes, *self.encoder.config.hidden, self.config.n_latent])
            )
            text += f"; {self.kind}: {shape}, {self.encoder.n_weights} weights"
        return text + ")"

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
        """Latents of expression ``x`` (cells x genes, model gene order, on the model's device)
        with the decoder frozen; see :func:`regdecoder.train.infer`: for one-layer decoders the
        one latent solver, as :func:`~regdecoder.tl.infer` and :func:`~regdecoder.tl.fit_decoder`
        run it (the same latents for the same cells). Returns the latents and the iterations
        run."""
        return infer(
            self.decoder, x, method=method, max_iter=max_iter, tol=tol, size_factors=size_factors, z_start=self.z_mean,
            detected=self.gene_detected,
        )  # fmt: skip

    @torch.no_grad()
    def encode_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Latents of expression ``x`` (cells x genes, model gene order), one pass of the encoder."""
        if self.encoder is None:
            msg = (
                "This Model is a decoder without an encoder: infer latents with `rd.tl.infer(adata, model)`, "
                "or train an encoder on it first with `rd.tl.fit_encoder(adata, model)`."
            )
            raise TypeError(msg)
        self.encoder.eval()
        return self.encoder(x)

    # ------------------------------------------------------------ save/load
    def save(self, path: str | os.PathLike) -> None:
        """Write configs, weights, gene and latent names and the package version to one file."""
        torch.save(self.to_dict(), Path(path))

    def to_dict(self) -> dict:
        """The saved form: tensors, numbers and strings only (readable with ``weights_only=True``)."""
        enc = None
        if self.encoder is not None:
            enc = {
                "config": self.encoder.config.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
            }
        return {
            "format": _FORMAT,
            "version": __version__,
            "config": self.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.decoder.state_dict().items()},
            "var_names": self.var_names,
            "latent_names": self.latent_names,
            "orientation": self.orientation,
            "z_mean": self.z_mean.detach().cpu(),
            "library_ref": self.library_ref,
            "gene_mean": None if self.gene_mean is None else self.gene_mean.detach().cpu(),
            "gene_detected": None if self.gene_detected is None else self.gene_detected.detach().cpu(),
            "history": {k: list(map(float, v)) for k, v in self.history.items() if isinstance(v, list)},
            "kind": self.kind,
            "key": self.key,
            "n_obs": self.n_obs,
            "encoder": enc,
        }

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Model:
        """Load a model written by :meth:`save` (safely: ``weights_only=True``).

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ValueError
            The file is not a regdecoder model.
        """
        path = Path(path)
        if not path.exists():
            msg = f"No model file at {str(path)!r}."
            raise FileNotFoundError(msg)
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch fails in many ways on a file that is not (or no longer) a model file
            msg = (
                f"Could not read {str(path)!r} as a regdecoder model file ({type(err).__name__}); it is truncated, "
                "corrupted or not a file written by `Model.save`."
            )
            raise ValueError(msg) from err
        if not isinstance(blob, dict) or blob.get("format") not in (_FORMAT, _ENCODER_FORMAT_V010):
            msg = f"{str(path)!r} is not a regdecoder model file (written by `Model.save`)."
            raise ValueError(msg)
        return cls.from_dict(blob).to(device)

    @classmethod
    def from_dict(cls, blob: dict) -> Model:
        """Rebuild a model (on the CPU) from :meth:`to_dict`'s output (or a 0.1.0 file's)."""
        if blob.get("format") == _ENCODER_FORMAT_V010:  # 0.1.0: the decoder's blob nested in the encoder's
            blob = {
                **blob["decoder"],
                "encoder": {"config": blob["config"], "state_dict": blob["state_dict"]},
                **{k: blob.get(k) for k in ("kind", "key", "n_obs", "history")},
            }
        cfg = dict(blob["config"])
        state = dict(blob["state_dict"])
        if "likelihood" not in cfg:  # 0.1.0 kept the likelihood and the NB dispersion beside the decoder
            cfg["likelihood"] = blob.get("likelihood", "mse")
            if blob.get("log_theta") is not None:
                state["log_theta"] = blob["log_theta"]
        config = DecoderConfig(**cfg)
        rows = state.get("layers.0.rows") if config.masked else None
        cols = state.get("layers.0.cols") if config.masked else None
        decoder = Decoder(config, rows, cols)
        decoder.load_state_dict(state)
        decoder.eval()
        encoder = None
        if blob.get("encoder") is not None:
            encoder = Encoder(EncoderConfig(**blob["encoder"]["config"]))
            encoder.load_state_dict(blob["encoder"]["state_dict"])
            encoder.eval()
        return cls(
            decoder,
            var_names=blob["var_names"],
            latent_names=blob["latent_names"],
            orientation=blob.get("orientation"),
            z_mean=blob.get("z_mean"),
            history=blob.get("history"),
            library_ref=blob.get("library_ref"),
            gene_mean=blob.get("gene_mean"),
            gene_detected=blob.get("gene_detected"),
            encoder=encoder,
            kind=blob.get("kind", "decoder"),
            key=blob.get("key", "regdecoder"),
            n_obs=blob.get("n_obs", 0),
        )


#: The name of 0.1.0's encoder model class: one :class:`Model` holds both now.
EncoderModel = Model
