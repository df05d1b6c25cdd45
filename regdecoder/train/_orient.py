"""Orientation of a one-layer decoder's latents (sign and scale).

The model ``x = ReLU(W z + b)`` is unchanged by ``z_j -> c z_j, w_j -> w_j / c`` for any
``c != 0``. We fix ``c`` once, after training, so every solver reports the same thing:

1. **Scale**: the weights of each latent have root-mean-square 1 over its edges, so
   an activity is in units of expression per unit regulation strength.
2. **Sign**, by the first rule that applies to the latent:

   ``'prior'``
       the latent has edges in the prior network (signed, or all +1 for a net without
       signs): the learned weights must agree with the prior's signs, ``sum_i
       sign(prior_ij) w_ij > 0``. A repressor's activity then rises when its targets fall.
   ``'mean'``
       no prior edges (``n_extra`` latents, decoders without a net) and no bias: the mean
       activity over the training cells is positive (TF levels are non-negative, as in the
       simulator).
   ``'skew'``
       no prior edges, with a bias (the mean is then not identified): the activity's
       distribution is right-skewed, as levels of a non-negative quantity usually are.

The rule used for each latent is recorded, and the decoder is flipped with it, so
test-time inference on new cells inherits the orientation.
"""

from __future__ import annotations

import torch

from ._als import normalise_scale


def orient(
    weight: torch.Tensor,
    z: torch.Tensor,
    mask: torch.Tensor,
    *,
    prior_sign: torch.Tensor | None,
    has_bias: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Return rescaled and sign-fixed ``(weight, z)`` and the rule used per latent."""
    weight, z = normalise_scale(weight, z, mask)
    n_latent = weight.shape[1]
    sign = torch.zeros(n_latent, dtype=weight.dtype, device=weight.device)
    rules = [""] * n_latent
    # every latent with prior edges follows them, all-positive nets included (their activities
    # rise with their targets, as ulm reads them); the skew of a latent's activities inverted
    # MHC-II regulators in antigen-presenting cells on CollecTRI with every weight set to +1
    if prior_sign is not None:
        agreement = (weight * prior_sign.to(weight.device, weight.dtype)).sum(0)
        sign = torch.sign(agreement)
    # Statistics of the latents are computed where the latents live (a table paged on the
    # host stays there) and only the per-latent signs travel.
    if has_bias:
        zc = z - z.mean(0)
        fallback = torch.sign((zc**3).mean(0)).to(weight.device)
        fallback_rule = "skew"
    else:
        fallback = torch.sign(z.mean(0)).to(weight.device)
        fallback_rule = "mean"
    for j in range(n_latent):
        if sign[j] != 0:
            rules[j] = "prior"
        else:
            sign[j] = fallback[j] if fallback[j] != 0 else 1.0
            rules[j] = fallback_rule
    return weight * sign, z * sign.to(z.device), rules


@torch.no_grad()
def orient_decoder(decoder, z: torch.Tensor, prior_sign: torch.Tensor | None) -> tuple[torch.Tensor, list[str]]:
    """Orient a one-layer decoder in place (its weights rescaled and sign-fixed by
    :func:`orient`) and return the matching latents and the rule per latent. Decoders with
    hidden layers are returned unchanged (rules empty)."""
    z = z.detach()
    if not decoder.one_layer:
        return z, []
    weight, z, rules = orient(
        decoder.get_weight(), z, decoder.get_mask(), prior_sign=prior_sign, has_bias=decoder.get_bias() is not None
    )
    decoder.set_weight(weight)
    return z, rules
