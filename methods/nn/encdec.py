"""A U-Net-style encoder-decoder with bilinear upsampling and optional SPADE conditioning.

The image-to-image network of part-guided synthesis (Kundu et al. 2020, Sec. 3.3: part maps and
appearance to a foreground image) and neural rendering (Schmidtke et al.: rendered features to an
image). Bilinear upsampling followed by a conv, not transposed convs, avoids checkerboard artefacts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.nn.spade import SPADEResBlock


def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.2, inplace=True),
    )


class EncoderDecoder(nn.Module):
    """Encoder-decoder with skip connections (``skips=False``: without, a plain bottlenecked encoder-decoder).

    Encoder: a 3x3 stem to ``base`` channels, then ``depth`` stages of [3x3 conv stride 2 -> BN -> LeakyReLU,
    3x3 conv -> BN -> LeakyReLU], doubling the channels (capped at ``max_channels``). Decoder, per stage:
    bilinear x2 upsampling (align_corners=False) -> 3x3 conv, concatenation with the encoder's skip at
    that resolution (when ``skips``), then a block: a conv block, or a :class:`SPADEResBlock` conditioned on ``cond`` when
    ``cond_channels > 0``. A 1x1 conv gives ``out_channels`` raw outputs (apply sigmoid/tanh yourself).

    Shapes: x (B, in_channels, H, W) with H and W divisible by ``2**depth`` (ValueError otherwise),
    cond (B, cond_channels, h, w) at any size (SPADE resizes it per block) -> (B, out_channels, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base: int = 32,
        depth: int = 4,
        cond_channels: int = 0,
        max_channels: int = 512,
        spade_hidden: int = 64,
        spade_mode: str = "nearest",
        skips: bool = True,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"EncoderDecoder: depth must be >= 1, got {depth}")
        self.in_channels, self.depth, self.cond_channels, self.skips = in_channels, depth, cond_channels, skips
        cat = 2 if skips else 1  # a block reads the upsampled features, plus the skip when there is one
        widths = [min(base * 2**i, max_channels) for i in range(depth + 1)]
        self.stem = _conv_block(in_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(_conv_block(widths[i], widths[i + 1], stride=2), _conv_block(widths[i + 1], widths[i + 1]))
            for i in range(depth)
        )
        self.up = nn.ModuleList(nn.Conv2d(widths[i + 1], widths[i], 3, padding=1) for i in reversed(range(depth)))
        if cond_channels > 0:
            self.blocks = nn.ModuleList(
                SPADEResBlock(cat * widths[i], widths[i], cond_channels, hidden=spade_hidden, mode=spade_mode)
                for i in reversed(range(depth))
            )
        else:
            self.blocks = nn.ModuleList(_conv_block(cat * widths[i], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"EncoderDecoder: expected x of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        m = 2**self.depth
        if H % m or W % m:
            raise ValueError(
                f"EncoderDecoder: height and width must be divisible by 2**depth = {m} (depth={self.depth}), "
                f"got {H}x{W}; crop or pad the input, or lower depth"
            )
        if self.cond_channels > 0 and (cond is None or cond.dim() != 4 or cond.shape[1] != self.cond_channels):
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"EncoderDecoder: expected cond of shape (B, {self.cond_channels}, h, w), got {got}")
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up, block in zip(self.up, self.blocks):
            h = up(F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False))
            skip = skips.pop()
            if self.skips:
                h = torch.cat([h, skip], dim=1)
            h = block(h, cond) if self.cond_channels > 0 else block(h)
        return self.out(h)
