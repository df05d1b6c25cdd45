"""Every recipe and preset, in one place.

A :class:`Recipe` says how to fit: the solver, its length and stop rule, the gradient
engine's optimiser settings, and the start. ``fit_decoder(recipe=...)`` takes a preset
name (``'fast'``, ``'paper'``), a dict of field overrides (``{'max_epochs': 20}``) or a
Recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace

_SOLVERS = ("auto", "als", "gradient")
_STARTS = ("random", "pca", "als", "prior")


@dataclass(frozen=True)
class Recipe:
    """How to fit a decoder (and encoders).

    Attributes
    ----------
    solver
        ``'als'`` (censored alternating least squares, one-layer decoders with the
        ``'mse'`` likelihood), ``'gradient'`` (the gradient engine), ``'auto'``.
    max_epochs
        Cap on epochs.
    tol
        ALS: stop when an epoch lowers the loss by less than this fraction. Gradient
        engine with ``early_stopping``: the relative improvement that counts.
    early_stopping, patience
        Gradient engine: stop when the epoch loss has not improved by ``tol`` for
        ``patience`` epochs.
    batch_size, lr_weights, weight_decay, z_optimizer, lr_z, momentum_z, weight_decay_z,
    reduction, lr_encoder
        The gradient engine's optimisers: Adam on the weights (``lr_weights``), SGD or
        Adam on the latent rows (``z_optimizer``), Adam on encoders (``lr_encoder``).
        ``reduction='sum'`` sums the error over the batch and genes, which the paper's
        SGD step on the latents (lr 0.01) needs to move them at all.
    start, z_init_std, start_epochs
        The one warm start: ``'random'`` (latents N(0, ``z_init_std``^2), PyTorch's
        default weights: the paper's), ``'pca'`` (per-TF principal directions, then
        least-squares latents), ``'prior'`` (ALS: the prior's signed weights and the gene
        means as the bias, no randomness; ``'pca'`` without a signed prior), ``'als'``
        (``start_epochs`` epochs of ALS on the normalised data; count likelihoods).
    shrink
        ALS with a signed prior: the weights of each gene are shrunk toward the prior's
        signs with the penalty ``shrink * N * ||w_g - s_g||^2`` (``N`` cells).
    center
        ALS with a bias: centre each latent over the training cells at the end.
    callback
        Called after every epoch with a dict (``epoch``, ``loss``, ``seconds``, ``z``,
        ``model``); returning True stops. Not part of :meth:`to_dict`.
    """

    solver: str = "gradient"
    max_epochs: int = 500
    tol: float = 1e-4
    early_stopping: bool = False
    patience: int = 10
    batch_size: int = 32
    lr_weights: float = 1e-3
    weight_decay: float = 1e-5
    z_optimizer: str = "sgd"
    lr_z: float = 1e-2
    momentum_z: float = 0.9
    weight_decay_z: float = 1e-5
    reduction: str = "sum"
    z_init_std: float = 1.0
    lr_encoder: float = 1e-4
    start: str = "random"
    start_epochs: int = 10
    shrink: float = 0.0
    center: bool = False
    callback: Callable | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.solver not in _SOLVERS:
            msg = f"Recipe.solver must be one of {_SOLVERS}, got {self.solver!r}."
            raise ValueError(msg)
        if self.start not in _STARTS:
            msg = f"Recipe.start must be one of {_STARTS}, got {self.start!r}."
            raise ValueError(msg)
        if int(self.max_epochs) < 1 or int(self.batch_size) < 1:
            msg = f"Recipe.max_epochs and batch_size must be positive, got {self.max_epochs} and {self.batch_size}."
            raise ValueError(msg)

    def to_dict(self) -> dict:
        """Every field but the callback (what is stored in ``uns[key]['params']['recipe']``)."""
        d = asdict(self)
        d.pop("callback")
        return d

    def updated(self, overrides: dict | None = None, **changes) -> Recipe:
        """A copy with the user's ``overrides`` (a dict of fields), then the given
        ``changes`` that are not None (cast to the field's type) applied.

        An unknown field is a ValueError that lists the valid ones.
        """
        names = {f.name for f in fields(self)}
        new = {k: v for k, v in (overrides or {}).items() if v is not None}
        new.update({k: v for k, v in changes.items() if v is not None})
        unknown = sorted(set(new) - names)
        if unknown:
            msg = f"Unknown field(s) {unknown} in `recipe`. Valid fields: {sorted(names - {'callback'})}."
            raise ValueError(msg)
        for k, v in new.items():
            default = getattr(self, k)
            if k != "callback" and default is not None and not isinstance(v, type(default)):
                new[k] = type(default)(v)
        return replace(self, **new)


#: The paper's recipe for the simulated GRN (sec. 3.3): gradient engine, batch 32, Adam
#: 1e-3 on the weights, SGD lr 1e-2 momentum 0.9 on the latents, weight decay 1e-5, 500
#: epochs, random start.
PAPER = Recipe()

#: The gradient engine's fast default (MLPs; one-layer decoders with solver='gradient'):
#: larger batches and Adam on the latents, from the ALS start where the decoder has one
#: layer. Converges in far fewer epochs than the paper's recipe.
FAST = Recipe(
    max_epochs=200, batch_size=256, lr_weights=1e-3, z_optimizer="adam", lr_z=1e-2, momentum_z=0.0, start="pca"
)

#: The default for one-layer decoders: censored ALS from the prior's signed weights, weights
#: shrunk toward the prior's signs (lambda 0.1), latents centred, at most 50 epochs, stop
#: below a relative loss decrease of 1e-4. On pbmc68k_reduced + CollecTRI this made the
#: activities the same for every seed and for fits on different subsets of the cells.
ALS = Recipe(solver="als", max_epochs=50, tol=1e-4, start="prior", shrink=0.1, center=True)

#: The ALS of regdecoder 0.1.0: masked-PCA start (seeded), no shrinkage, tol 1e-3.
ALS_V010 = Recipe(solver="als", max_epochs=50, tol=1e-3, start="pca")

#: Count likelihoods (Poisson, NB): FAST with 10x larger steps, from 10 ALS epochs on the
#: normalised counts. From the ALS start, FAST's steps left the NB fit under-converged after
#: 200 epochs (simulated counts, library 1,000, 500 cells: signed PCC 0.855 vs 0.915).
COUNTS = FAST.updated(lr_weights=1e-2, lr_z=1e-1, start="als")

#: Encoders and autoencoders, fast: larger batches and a 10x larger Adam step than the
#: paper's (batch 32, lr 1e-4, 500 epochs; autoencoder 1000).
ENCODER_FAST = Recipe(max_epochs=200, batch_size=128, lr_encoder=1e-3)
#: The paper's encoder recipe (Adam lr 1e-4, batch 32, weight decay 1e-5, 500 epochs).
ENCODER_PAPER = PAPER
#: The paper's autoencoder recipe: as the encoder's, 1000 epochs.
AUTOENCODER_PAPER = PAPER.updated(max_epochs=1000)

#: The paper's MNIST recipe (sec. 3.1): Adam lr 1e-3 with weight decay 1e-5 on the
#: weights (decoder, and encoder + decoder of the autoencoder), SGD lr 0.02 momentum 0.9
#: on the latents, 200 epochs, summed binary cross-entropy. The paper does not state the
#: batch size for the images; 32 is its batch size elsewhere (sec. 3.3) and is used here.
MNIST_PAPER = PAPER.updated(max_epochs=200, lr_z=0.02, lr_encoder=1e-3)

#: The paper's CIFAR10 recipe (sec. 3.2): Adam lr 1e-4 with weight decay 1e-5 on the
#: weights, SGD lr 0.1 momentum 0.9 on the latents, summed squared error. Epochs are
#: 100-400 in the paper; 200 here. Batch size 32 (not stated for the images).
CIFAR_PAPER = PAPER.updated(max_epochs=200, lr_weights=1e-4, lr_z=0.1)

PRESETS = {"fast": None, "paper": PAPER, "v010": ALS_V010}


def resolve_recipe(recipe, *, one_layer: bool, likelihood: str = "mse", soft_mask: bool = False) -> Recipe:
    """The recipe a fit uses, from ``fit_decoder``'s ``recipe`` argument.

    ``None`` or ``'fast'``: ALS for one-layer decoders with the ``'mse'`` likelihood,
    COUNTS for count likelihoods, else FAST (from an ALS start with a soft mask). ``'paper'``: the paper's recipe. A dict:
    overrides of that default (``{'solver': 'gradient'}`` picks FAST's settings as the
    base; ``{'preset': 'paper', ...}`` the paper's). A :class:`Recipe` is used as it is.
    """
    if isinstance(recipe, Recipe):
        base, overrides = recipe, {}
    else:
        if isinstance(recipe, str):
            recipe = {"preset": recipe}
        if recipe is not None and not isinstance(recipe, dict):
            msg = f"`recipe` must be None, 'fast', 'paper', a dict of Recipe fields or a Recipe, got {type(recipe).__name__}."
            raise TypeError(msg)
        overrides = dict(recipe or {})
        preset = overrides.pop("preset", None) or "fast"
        if preset not in PRESETS:
            msg = f"Unknown preset {preset!r}; use one of {sorted(PRESETS)}."
            raise ValueError(msg)
        solver = overrides.get("solver", "auto")
        if preset == "paper" and solver == "als":
            msg = "preset='paper' is the paper's gradient recipe; leave `solver` out or use 'gradient' with it."
            raise ValueError(msg)
        if preset == "paper":
            base = PAPER
        elif preset == "v010":
            base = ALS_V010
        elif likelihood != "mse":
            base = COUNTS
        elif soft_mask:
            base = FAST.updated(start="als")
        elif solver == "gradient" or (solver == "auto" and not one_layer):
            base = FAST
        else:
            base = ALS
    out = base.updated(overrides)
    if out.solver == "auto":
        out = out.updated(solver="als" if one_layer and likelihood == "mse" and not soft_mask else "gradient")
    return out
