"""Spatially-adaptive normalisation (SPADE, Park et al. 2019, Eq. 1) and its residual block (Sec. 3, Fig. 4).

Used by the decoders of part-guided synthesis (Kundu et al. 2020, conditioned on part maps) and neural
rendering (Schmidtke et al., conditioned on rendered feature maps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"SPADE: norm must be 'batch' or 'instance', got {kind!r}")


class SPADE(nn.Module):
    """``out = norm(x) * (1 + gamma(m)) + beta(m)`` (Park et al. 2019, Eq. 1).

    ``norm`` is parameter-free BatchNorm2d (default, as in the paper) or InstanceNorm2d. ``gamma`` and
    ``beta`` are 3x3 convs on a shared 3x3 conv + ReLU of the label map ``m``, which is first resized to
    x's height and width: ``mode="nearest"`` (default; right for one-hot part labels, as in the paper) or
    ``"bilinear"`` (align_corners=False; for soft maps such as rendered features or blurred part maps).

    Args:
        channels: C of x (B, C, H, W).
        label_channels: channels of the label map (B, L, h, w), any h, w.
        hidden: channels of the shared conv.
        zero_init: start gamma and beta at zero, so the layer starts as plain normalisation.
    """

    def __init__(
        self,
        channels: int,
        label_channels: int,
        hidden: int = 128,
        norm: str = "batch",
        mode: str = "nearest",
        zero_init: bool = False,
    ):
        super().__init__()
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"SPADE: mode must be 'nearest' or 'bilinear', got {mode!r}")
        self.norm = _norm(norm, channels)
        self.mode = mode
        self.shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)
        if zero_init:
            for conv in (self.gamma, self.beta):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if label.shape[-2:] != x.shape[-2:]:
            kwargs = {} if self.mode == "nearest" else {"align_corners": False}
            label = F.interpolate(label.to(x.dtype), size=x.shape[-2:], mode=self.mode, **kwargs)
        h = self.shared(label.to(x.dtype))
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SPADEResBlock(nn.Module):
    """SPADE residual block (Park et al. 2019, Fig. 4 right).

    ``x + conv(act(SPADE(conv(act(SPADE(x))))))``: 3x3 convs through ``min(in, out)`` channels,
    LeakyReLU(0.2). When ``in_channels != out_channels`` the shortcut is learned: SPADE -> 1x1 conv
    without bias. (B, in, H, W) x, (B, L, h, w) label -> (B, out, H, W). ``spectral_norm`` wraps the
    convs as in the paper's generator (off by default).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        label_channels: int,
        hidden: int = 128,
        norm: str = "batch",
        mode: str = "nearest",
        spectral_norm: bool = False,
        zero_init: bool = False,
    ):
        super().__init__()
        mid = min(in_channels, out_channels)
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        spade = lambda c: SPADE(c, label_channels, hidden, norm=norm, mode=mode, zero_init=zero_init)
        self.norm_0, self.conv_0 = spade(in_channels), sn(nn.Conv2d(in_channels, mid, 3, padding=1))
        self.norm_1, self.conv_1 = spade(mid), sn(nn.Conv2d(mid, out_channels, 3, padding=1))
        self.learned_shortcut = in_channels != out_channels
        if self.learned_shortcut:
            self.norm_s = spade(in_channels)
            self.conv_s = sn(nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, label)) if self.learned_shortcut else x
        dx = self.conv_0(self.act(self.norm_0(x, label)))
        dx = self.conv_1(self.act(self.norm_1(dx, label)))
        return shortcut + dx
