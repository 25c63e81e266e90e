"""Small building blocks shared by the methods."""

from __future__ import annotations

from torch import nn


class ResidualBlock(nn.Module):
    """Two fully connected layers with a skip connection (Martinez et al. 2017 style).

    Each linear layer is followed by (optional) batch normalisation, LeakyReLU and dropout.
    """

    def __init__(self, width: int, dropout: float = 0.0, batch_norm: bool = True, slope: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(2):
            layers.append(nn.Linear(width, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.LeakyReLU(slope))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.body(x)


def dense(in_features: int, out_features: int, dropout: float = 0.0, batch_norm: bool = True, slope: float = 0.2):
    """Linear -> (BN) -> LeakyReLU -> (dropout)."""
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(out_features))
    layers.append(nn.LeakyReLU(slope))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
