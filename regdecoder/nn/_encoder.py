"""Encoders: expression -> latents (the paper's Table 3: one Linear layer + LeakyReLU)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


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
        Slope of the LeakyReLU after every layer, the output layer included (the
        paper's encoder ends with a LeakyReLU: latents are mostly non-negative).
    """

    n_genes: int
    n_latent: int
    hidden: tuple[int, ...] = field(default_factory=tuple)
    bias: bool = True
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
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
    Table 3), then a fixed per-latent factor ``scale`` (a buffer, ones at first).
    ``scale`` lets a jointly trained decoder's orientation rule (sign and scale of
    each latent) be applied to the encoder after training without retraining it.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        sizes = [config.n_genes, *config.hidden, config.n_latent]
        self.layers = nn.ModuleList(
            [nn.Linear(a, b, bias=config.bias) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.register_buffer("scale", torch.ones(config.n_latent))

    @property
    def n_weights(self) -> int:
        """Free parameters: every weight and bias (an encoder is never masked)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers:
            h = nn.functional.leaky_relu(layer(h), self.config.negative_slope)
        return h * self.scale
