"""Decoders: one masked (or dense) linear layer, or an MLP."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ._likelihoods import negative_binomial, poisson_nll, squared_error
from ._sparse import SparseLinear

_OUTPUTS = ("relu", "linear", "softplus", "exp")
LIKELIHOODS = ("mse", "poisson", "nb")
COUNT_LIKELIHOODS = ("poisson", "nb")
#: What a user chooses (scvi-tools' ``gene_likelihood``): ``'mse'`` (the squared error on a ReLU
#: output, zeros censored: log-normalised expression), ``'normal'`` (Gaussian errors on a linear
#: output, nothing censored: signed data such as contrasts, fold changes, scaled values),
#: ``'poisson'``, ``'nb'`` (counts, on a softplus output).
GENE_LIKELIHOODS = ("mse", "normal", "poisson", "nb")


def likelihood_output(gene_likelihood: str) -> tuple[str, str]:
    """The decoder's ``(likelihood, output)`` for a user's ``gene_likelihood``: ``'normal'`` is
    the squared error (the Gaussian log-likelihood up to constants) on a linear output."""
    if gene_likelihood not in GENE_LIKELIHOODS:
        msg = f"`gene_likelihood` must be one of {GENE_LIKELIHOODS}, got {gene_likelihood!r}."
        raise ValueError(msg)
    if gene_likelihood == "normal":
        return "mse", "linear"
    return gene_likelihood, "softplus" if gene_likelihood in COUNT_LIKELIHOODS else "relu"


@dataclass
class DecoderConfig:
    """Everything needed to rebuild a decoder (stored in saved models).

    Attributes
    ----------
    n_genes
        Output dimension.
    n_latent
        Latent dimension (TFs for a masked decoder).
    hidden
        Hidden layer widths; empty for a one-layer decoder.
    bias
        Learn an additive bias per output (and per hidden unit).
    output
        Output activation, ``'relu'`` (the paper's GRN decoder), ``'linear'``, or a
        positive link for count likelihoods: ``'softplus'`` or ``'exp'`` (the output is
        then a rate per unit library size).
    masked
        One-layer decoder whose weights are restricted to a network (``SparseLinear``).
    impl
        SparseLinear kernel, ``'auto'``, ``'dense'`` or ``'sparse'``.
    likelihood
        The gene likelihood (scvi-tools' ``gene_likelihood``): ``'mse'`` (squared error;
        with ``output='relu'`` the zeros are censored values), ``'poisson'`` or ``'nb'``
        (negative binomial with a learned inverse dispersion per gene, the parameter
        ``log_theta``). Count likelihoods need a positive link (``'softplus'``, ``'exp'``):
        the output is then a rate per unit size factor.
    """

    n_genes: int
    n_latent: int
    hidden: tuple[int, ...] = field(default_factory=tuple)
    bias: bool = False
    output: str = "relu"
    masked: bool = False
    impl: str = "auto"
    likelihood: str = "mse"

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.output not in _OUTPUTS:
            msg = f"`output` must be one of {_OUTPUTS}, got {self.output!r}."
            raise ValueError(msg)
        if self.likelihood not in LIKELIHOODS:
            msg = f"`gene_likelihood` must be one of {LIKELIHOODS}, got {self.likelihood!r}."
            raise ValueError(msg)
        if self.likelihood in COUNT_LIKELIHOODS and self.output not in ("softplus", "exp"):
            msg = (
                f"gene_likelihood={self.likelihood!r} needs a positive link: output='softplus' "
                f"(the default for counts) or 'exp', got {self.output!r}."
            )
            raise ValueError(msg)
        if self.masked and self.hidden:
            msg = "A masked (network) decoder has one layer; use `hidden=()` with a net."
            raise ValueError(msg)
        if self.n_latent < 1 or self.n_genes < 1:
            msg = f"A decoder needs n_latent >= 1 and n_genes >= 1, got {self.n_latent} and {self.n_genes}."
            raise ValueError(msg)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class Decoder(nn.Module):
    """Map latents ``z`` (``batch x n_latent``) to expression (``batch x n_genes``).

    With ``config.masked`` the decoder is one :class:`SparseLinear` layer on the edges
    ``(rows, cols)`` (gene index, latent index); otherwise one dense linear layer, or
    an MLP when ``config.hidden`` is not empty. The output activation is applied last.
    The decoder owns its likelihood (:meth:`nll`) and, for ``'nb'``, the per-gene log
    inverse dispersion ``log_theta`` (a parameter, initialised at log 10).
    """

    def __init__(
        self, config: DecoderConfig, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.config = config
        if config.masked:
            if rows is None or cols is None:
                msg = "A masked decoder needs the edge list (`rows`, `cols`)."
                raise ValueError(msg)
            self.layers = nn.ModuleList(
                [SparseLinear(config.n_latent, config.n_genes, rows, cols, bias=config.bias, impl=config.impl)]
            )
        else:
            sizes = [config.n_latent, *config.hidden, config.n_genes]
            self.layers = nn.ModuleList(
                [nn.Linear(a, b, bias=config.bias) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
            )
        if config.likelihood == "nb":
            self.log_theta = nn.Parameter(torch.full((config.n_genes,), math.log(10.0)))

    def nll(self, out: torch.Tensor, x: torch.Tensor, size_factors: torch.Tensor | None = None) -> torch.Tensor:
        """The summed negative log-likelihood (``'mse'``: squared error) of data ``x`` given
        the decoder's output ``out`` (batch x genes) and, for counts, the cells' size factors
        (a column, one row per cell)."""
        lik = self.config.likelihood
        if lik == "nb":
            return negative_binomial(self.log_theta)(out, x, size_factors)
        if lik == "poisson":
            return poisson_nll(out, x, size_factors)
        return squared_error(out, x, size_factors)

    @property
    def one_layer(self) -> bool:
        """True when the decoder is a single (masked or dense) linear layer."""
        return len(self.layers) == 1

    @property
    def n_weights(self) -> int:
        """Free weights: unmasked weights of every layer (biases excluded)."""
        return sum(layer.nnz if isinstance(layer, SparseLinear) else layer.weight.numel() for layer in self.layers)

    @property
    def n_weights_dense(self) -> int:
        """Weights counting every entry of each weight matrix, masked or not (biases excluded)."""
        return sum(layer.in_features * layer.out_features for layer in self.layers)

    @property
    def n_bias(self) -> int:
        return sum(layer.bias.numel() for layer in self.layers if layer.bias is not None)

    def linear(self, z: torch.Tensor) -> torch.Tensor:
        """Output before the final activation."""
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.linear(z)
        out = self.config.output
        if out == "relu":
            return torch.relu(h)
        if out == "softplus":
            return nn.functional.softplus(h)
        if out == "exp":
            return torch.exp(h.clamp(max=30.0))
        return h

    # Helpers for one-layer solvers: the weight matrix as a dense tensor.
    def get_weight(self) -> torch.Tensor:
        """Dense ``n_genes x n_latent`` weight matrix of a one-layer decoder."""
        self._need_one_layer()
        return self.layers[0].weight.detach()

    @torch.no_grad()
    def set_weight(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Write a dense weight matrix (values off the mask are ignored) and bias."""
        self._need_one_layer()
        layer = self.layers[0]
        if isinstance(layer, SparseLinear):
            layer.values.copy_(weight[layer.rows, layer.cols])
        else:
            layer.weight.copy_(weight)
        if bias is not None and layer.bias is not None:
            layer.bias.copy_(bias)

    def get_bias(self) -> torch.Tensor | None:
        self._need_one_layer()
        b = self.layers[0].bias
        return None if b is None else b.detach()

    def get_mask(self) -> torch.Tensor:
        """Boolean ``n_genes x n_latent`` mask of a one-layer decoder (all True if dense)."""
        self._need_one_layer()
        layer = self.layers[0]
        if isinstance(layer, SparseLinear):
            return layer.mask
        return torch.ones_like(layer.weight, dtype=torch.bool)

    def _need_one_layer(self) -> None:
        if not self.one_layer:
            msg = "This operation needs a one-layer decoder; this one has hidden layers."
            raise ValueError(msg)
