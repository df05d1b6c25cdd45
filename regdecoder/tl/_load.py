"""The load: data values per free parameter (paper eqs. 3-5)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from anndata import AnnData

from ..metrics._load import decoder_load, load_values
from ._model import Model


def _encoder_weights(n_genes: int, n_latent: int, hidden: Sequence[int], bias: bool = True) -> int:
    sizes = [n_genes, *hidden, n_latent]
    return sum(a * b + (b if bias else 0) for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def load(
    source: AnnData | Model | str | os.PathLike | None = None,
    *,
    n_obs: int | None = None,
    n_genes: int | None = None,
    n_latent: int | None = None,
    n_edges: int | None = None,
    encoder_hidden: Sequence[int] = (),
    key: str = "regdecoder",
) -> dict:
    """Decoder load ``alpha_d`` and encoder load ``alpha_e`` (paper eqs. 3-5).

    ``alpha_d = N n / (C_d + N m)`` with ``N`` cells, ``n`` genes, ``m`` latents and
    ``C_d`` free decoder weights: the decoder is over-determined when ``alpha_d > 1``.
    ``alpha_e = m N / C_e``: an encoder with ``C_e`` weights fitted to ``N`` latent
    vectors. Both counts of a masked decoder are given: ``alpha_d`` counts only the
    unmasked weights (the free ones), ``alpha_d_all_weights`` every entry of the
    weight matrix (what a dense layer of the same shape would have). Note that
    ``alpha_d < n / m`` for any ``N``.

    Parameters
    ----------
    source
        An AnnData fitted by any ``rd.tl.fit_*`` (the load it stored in
        ``uns[key]['load']`` is returned); a fitted :class:`~regdecoder.tl.Model`
        (``n_obs`` defaults to its training cells; with an encoder, its ``alpha_e``);
        the path of a model file written by :meth:`~regdecoder.tl.Model.save` (read
        with :meth:`~regdecoder.tl.Model.load`); or None to compute from sizes.
    n_obs
        Number of training cells ``N``.
    n_genes, n_latent
        ``n`` and ``m`` (sizes only).
    n_edges
        Unmasked decoder weights (edges of the prior network); None: a dense decoder
        (sizes only).
    encoder_hidden
        Hidden widths of the encoder whose ``alpha_e`` is reported when the source
        has no encoder of its own (sizes or a decoder Model); ``()`` is the paper's
        one-layer encoder (weights and biases counted).
    key
        Where the fit wrote its results (AnnData source).

    Returns
    -------
    A dict with ``alpha_d``, ``alpha_d_all_weights``, ``n_weights`` (free decoder
    weights and biases), ``n_weights_all``, ``n_cells``, ``counted`` (which weights
    count) and, where an encoder is involved, ``alpha_e``, ``alpha_ae`` (eq. 3 for
    the whole autoencoder), ``alpha_ae_all_weights`` and ``n_weights_encoder``.

    Raises
    ------
    KeyError
        An AnnData without ``uns[key]['load']`` (names the call to run).
    FileNotFoundError, ValueError
        A path with no file, or a file that is not a regdecoder model; sizes that are
        missing or not positive.
    TypeError
        A ``source`` of another type.
    """
    if isinstance(source, (str, os.PathLike)):
        source = Model.load(source)
    if isinstance(source, AnnData):
        if key not in source.uns or "load" not in source.uns[key]:
            msg = (
                f"Did not find adata.uns[{key!r}]['load']. Run `rd.tl.fit_decoder`, `rd.tl.fit_encoder` or "
                "`rd.tl.fit_autoencoder` first (or pass the `key_added` it used as `key=`)."
            )
            raise KeyError(msg)
        return dict(source.uns[key]["load"])
    if isinstance(source, Model):
        n = source.n_obs if n_obs is None else n_obs
        if not n:
            msg = "This Model does not know how many cells trained it: pass `n_obs=` (or the fitted AnnData instead)."
            raise ValueError(msg)
        cfg = source.config
        n_enc = (
            source.encoder.n_weights
            if source.encoder is not None
            else _encoder_weights(cfg.n_genes, cfg.n_latent, encoder_hidden)
        )
        return decoder_load(source.decoder, _positive(n, "n_obs"), n_weights_encoder=n_enc)
    if source is not None:
        msg = (
            "`source` must be an AnnData, a Model, an EncoderModel, the path of a saved model or None (sizes), "
            f"got {type(source).__name__}."
        )
        raise TypeError(msg)
    if n_obs is None or n_genes is None or n_latent is None:
        msg = "From sizes, give `n_obs`, `n_genes` and `n_latent` (and `n_edges` for a masked decoder)."
        raise ValueError(msg)
    n, m, big_n = _positive(n_genes, "n_genes"), _positive(n_latent, "n_latent"), _positive(n_obs, "n_obs")
    dense = n * m
    if n_edges is not None and not 0 < n_edges <= dense:
        msg = f"`n_edges` must be between 1 and n_genes * n_latent = {dense}, got {n_edges}."
        raise ValueError(msg)
    return load_values(
        big_n,
        n,
        m,
        n_weights=dense if n_edges is None else int(n_edges),
        n_weights_all=dense,
        n_weights_encoder=_encoder_weights(n, m, encoder_hidden),
    )


def _positive(value, name: str) -> int:
    if int(value) != value or value < 1:
        msg = f"`{name}` must be a positive integer, got {value!r}."
        raise ValueError(msg)
    return int(value)
