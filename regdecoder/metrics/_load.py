"""The load: data values per free parameter (paper eqs. 3-5), the one formula every fit uses."""

from __future__ import annotations

COUNTED = (
    "alpha_d and alpha_e count only the free (unmasked) weights and the biases; "
    "alpha_d_all_weights counts every entry of each decoder weight matrix, masked or not"
)


def load_values(
    n_obs: int,
    n_genes: int,
    n_latent: int,
    *,
    n_weights: int,
    n_weights_all: int | None = None,
    n_weights_encoder: int | None = None,
) -> dict:
    """The loads from sizes and weight counts.

    ``alpha_d = N n / (C_d + N m)`` (eq. 4: each cell's ``m`` latents are learned too),
    ``alpha_e = m N / C_e`` (eq. 5: ``N`` target vectors of size ``m`` for ``C_e``
    encoder weights) and, for an autoencoder trained end to end, the general load of
    eq. 3, ``alpha_ae = N n / (C_e + C_d)``.

    Parameters
    ----------
    n_obs, n_genes, n_latent
        ``N`` cells, ``n`` genes, ``m`` latents.
    n_weights
        ``C_d``: free decoder weights (and biases).
    n_weights_all
        Every entry of the decoder's weight matrices (and biases); default ``n_weights``.
    n_weights_encoder
        ``C_e``; None: no encoder loads.

    Returns
    -------
    dict with ``alpha_d``, ``alpha_d_all_weights``, ``n_weights``, ``n_weights_all``,
    ``n_cells``, ``counted`` and, with an encoder, ``alpha_e``, ``alpha_ae``,
    ``alpha_ae_all_weights``, ``n_weights_encoder``.
    """
    n_weights_all = n_weights if n_weights_all is None else n_weights_all
    out = {
        "alpha_d": n_obs * n_genes / (n_weights + n_obs * n_latent),
        "alpha_d_all_weights": n_obs * n_genes / (n_weights_all + n_obs * n_latent),
        "n_weights": int(n_weights),
        "n_weights_all": int(n_weights_all),
        "n_cells": int(n_obs),
        "counted": COUNTED,
    }
    if n_weights_encoder is not None:
        out.update(
            alpha_e=n_latent * n_obs / n_weights_encoder,
            alpha_ae=n_obs * n_genes / (n_weights_encoder + n_weights),
            alpha_ae_all_weights=n_obs * n_genes / (n_weights_encoder + n_weights_all),
            n_weights_encoder=int(n_weights_encoder),
        )
    return out


def decoder_load(decoder, n_obs: int, *, n_weights_encoder: int | None = None) -> dict:
    """:func:`load_values` for a :class:`~regdecoder.nn.Decoder` trained on ``n_obs`` cells."""
    cfg = decoder.config
    return load_values(
        n_obs,
        cfg.n_genes,
        cfg.n_latent,
        n_weights=decoder.n_weights + decoder.n_bias,
        n_weights_all=decoder.n_weights_dense + decoder.n_bias,
        n_weights_encoder=n_weights_encoder,
    )
