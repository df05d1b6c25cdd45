"""Encoders: expression -> latents (the paper's Table 3: one Linear layer + LeakyReLU, or a linear
output on centred input for latents that are centred)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

#: The encoder's output layers: the paper's LeakyReLU, or linear (latents of either sign).
OUTPUTS = ("leaky_relu", "linear")


@dataclass
class EncoderConfig:
    """Everything needed to rebuild an encoder (stored in saved encoder files).

    Attributes
    ----------
    n_genes
        Input dimension.
    n_latent
        Output dimension (one unit per latent of the decoder).
    hidden
        Hidden layer widths of an MLP encoder; empty for the paper's one-layer encoder.
    bias
        Learn biases.
    negative_slope
        Slope of the LeakyReLU after every hidden layer, and after the output layer
        when ``output='leaky_relu'``.
    output
        ``'leaky_relu'``: the output layer ends in a LeakyReLU (the paper's encoder, for
        latents that are levels >= 0 with a fixed origin; saved files without this field
        are of this kind). ``'linear'``: no nonlinearity after the output layer, for
        latents of either sign (a decoder with a per-gene offset, whose latents
        :func:`~regdecoder.tl.fit_decoder` centres: half of them are negative, which a
        LeakyReLU of slope 0.01 can only output with 100-fold weights).
    center
        Subtract a fixed per-gene input mean (the buffer ``x_mean``, zeros until set)
        before the first layer, so the first layer's bias starts near its optimum
        instead of having to cancel ``W @ mean(x)``.
    """

    n_genes: int
    n_latent: int
    hidden: tuple[int, ...] = field(default_factory=tuple)
    bias: bool = True
    negative_slope: float = 0.01
    output: str = "leaky_relu"
    center: bool = False

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.output not in OUTPUTS:
            msg = f"An encoder's `output` must be one of {OUTPUTS}, got {self.output!r}."
            raise ValueError(msg)
        if self.n_latent < 1 or self.n_genes < 1:
            msg = f"An encoder needs n_genes >= 1 and n_latent >= 1, got {self.n_genes} and {self.n_latent}."
            raise ValueError(msg)
        if any(h < 1 for h in self.hidden):
            msg = f"Hidden layer widths must be positive integers, got {list(self.hidden)}."
            raise ValueError(msg)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class Encoder(nn.Module):
    """Map expression (``batch x n_genes``) to latents (``batch x n_latent``).

    ``Linear -> LeakyReLU`` for each layer (one layer by default, as in the paper's
    Table 3; the last without the LeakyReLU when ``config.output == 'linear'``), on
    ``x - x_mean`` when ``config.center`` (``x_mean`` a buffer, zeros until set), then a
    fixed per-latent factor ``scale`` (a buffer, ones at first). ``scale`` lets a jointly
    trained decoder's orientation rule (sign and scale of each latent) be applied to the
    encoder after training without retraining it.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        sizes = [config.n_genes, *config.hidden, config.n_latent]
        self.layers = nn.ModuleList(
            [nn.Linear(a, b, bias=config.bias) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.register_buffer("scale", torch.ones(config.n_latent))
        if config.center:  # only then: files of uncentred encoders (0.1.0's) hold no such buffer
            self.register_buffer("x_mean", torch.zeros(config.n_genes))

    @property
    def n_weights(self) -> int:
        """Free parameters: every weight and bias (an encoder is never masked)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x - self.x_mean if self.config.center else x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last or self.config.output == "leaky_relu":
                h = nn.functional.leaky_relu(h, self.config.negative_slope)
        return h * self.scale
