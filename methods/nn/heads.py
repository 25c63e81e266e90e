"""Pose heads: volumetric heatmaps with integral soft-argmax, and fully connected regression.

Coordinate convention of the soft-argmax (all functions here)
---------------------------------------------------------------
Coordinates are *normalised*, align_corners-style: along an axis of N cells, cell ``i`` sits at
``-1 + 2 i / (N - 1)`` (cell 0 at -1, cell N-1 at +1; an axis of one cell sits at 0). The output is
``(x, y, z)``: x along the heatmap width W, y along its height H (down), z along the depth bins D
(the volume's dim 2, increasing depth). This is the convention of ``torch.nn.functional.grid_sample``
with ``align_corners=True``.

To read them in crop pixels use :func:`normalized_to_pixels`: heatmap cell ``i`` of a heatmap N cells
wide over a crop ``S`` pixels wide covers pixels ``[i s, (i + 1) s)`` with ``s = S / N``, so its centre
is at ``(i + 0.5) s`` in the repository's pixel convention (origin at the top-left *corner* of the
image, pixel ``(row r, col c)`` centred at ``(c + 0.5, r + 0.5)``, as in ``datamodules/cameras.py``).
Depth: :func:`normalized_to_depth` maps z = -1 to the near end and z = +1 to the far end of a depth
range in mm (e.g. root-relative ``(-1000, 1000)``), i.e. bin ``k`` of D at
``near + k (far - near) / (D - 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from methods.nn.blocks import ResidualBlock, dense


def _axis(n: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised cell coordinates of an axis of ``n`` cells (see the module docstring)."""
    if n == 1:
        return torch.zeros(1, device=like.device, dtype=like.dtype)
    return torch.linspace(-1.0, 1.0, n, device=like.device, dtype=like.dtype)


def soft_argmax_3d(volumes: torch.Tensor) -> torch.Tensor:
    """Integral regression (Sun et al. 2018, Eq. 3) of (B, J, D, H, W) logits -> (B, J, 3) ``(x, y, z)``.

    A softmax over all ``D * H * W`` voxels of each joint, then the expected voxel coordinate under it,
    in normalised units (module docstring). Computed from the three marginals, so memory stays
    ``O(B J D H W)`` once. Softmax in float32 under autocast (bf16 logits lose the peak otherwise).
    """
    if volumes.dim() != 5:
        raise ValueError(f"soft_argmax_3d expects (B, J, D, H, W) volumes, got shape {tuple(volumes.shape)}")
    B, J, D, H, W = volumes.shape
    p = torch.softmax(volumes.float().reshape(B, J, D * H * W), dim=-1).reshape(B, J, D, H, W)
    x = (p.sum(dim=(2, 3)) * _axis(W, p)).sum(-1)
    y = (p.sum(dim=(2, 4)) * _axis(H, p)).sum(-1)
    z = (p.sum(dim=(3, 4)) * _axis(D, p)).sum(-1)
    return torch.stack([x, y, z], dim=-1)


def _expect_2d(p: torch.Tensor) -> torch.Tensor:
    """(B, J, H, W) probabilities -> (B, J, 2) expected ``(x, y)``."""
    H, W = p.shape[-2:]
    x = (p.sum(dim=-2) * _axis(W, p)).sum(-1)
    y = (p.sum(dim=-1) * _axis(H, p)).sum(-1)
    return torch.stack([x, y], dim=-1)


def soft_argmax_2d(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, J, H, W) logits -> (B, J, 2) ``(x, y)`` normalised: softmax over the H*W pixels, then expectation."""
    if heatmaps.dim() != 4:
        raise ValueError(f"soft_argmax_2d expects (B, J, H, W) heatmaps, got shape {tuple(heatmaps.shape)}")
    B, J, H, W = heatmaps.shape
    p = torch.softmax(heatmaps.float().reshape(B, J, H * W), dim=-1).reshape(B, J, H, W)
    return _expect_2d(p)


def volume_to_2d(volumes: torch.Tensor, return_heatmaps: bool = False):
    """2D pose from the same volume: softmax over the volume, marginalise depth, 2D expectation.

    (B, J, D, H, W) logits -> (B, J, 2) normalised ``(x, y)``, equal to ``soft_argmax_3d(volumes)[..., :2]``
    (the 2D and 3D poses are one distribution, as EpipolarPose trains 2D from the 3D volume). With
    ``return_heatmaps`` also the (B, J, H, W) marginal probability maps (each sums to 1).
    """
    if volumes.dim() != 5:
        raise ValueError(f"volume_to_2d expects (B, J, D, H, W) volumes, got shape {tuple(volumes.shape)}")
    B, J, D, H, W = volumes.shape
    p = torch.softmax(volumes.float().reshape(B, J, D * H * W), dim=-1).reshape(B, J, D, H, W).sum(dim=2)
    xy = _expect_2d(p)
    return (xy, p) if return_heatmaps else xy


def normalized_to_pixels(xy: torch.Tensor, heatmap_size: Sequence[int], crop_size: Sequence[int]) -> torch.Tensor:
    """Normalised (..., 2) ``(x, y)`` on a heatmap of ``heatmap_size = (H, W)`` cells -> crop pixels.

    ``crop_size = (H_crop, W_crop)`` pixels; cell ``i`` maps to ``(i + 0.5) * W_crop / W`` (cell centre,
    pixel origin at the crop's top-left corner). Inverse: :func:`pixels_to_normalized`.
    """
    size = xy.new_tensor([heatmap_size[1], heatmap_size[0]])
    crop = xy.new_tensor([crop_size[1], crop_size[0]])
    cell = (xy + 1) * (size - 1).clamp(min=1) / 2
    return (cell + 0.5) * crop / size


def pixels_to_normalized(uv: torch.Tensor, heatmap_size: Sequence[int], crop_size: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`normalized_to_pixels` (e.g. for 2D targets): crop px (..., 2) -> normalised."""
    size = uv.new_tensor([heatmap_size[1], heatmap_size[0]])
    crop = uv.new_tensor([crop_size[1], crop_size[0]])
    cell = uv * size / crop - 0.5
    return cell * 2 / (size - 1).clamp(min=1) - 1


def normalized_to_depth(z: torch.Tensor, depth_range: Sequence[float]) -> torch.Tensor:
    """Normalised z in [-1, 1] -> mm: -1 is ``depth_range[0]`` (near), +1 is ``depth_range[1]`` (far)."""
    near, far = depth_range
    return near + (z + 1) * (far - near) / 2


def depth_to_normalized(z_mm: torch.Tensor, depth_range: Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`normalized_to_depth`."""
    near, far = depth_range
    return (z_mm - near) * 2 / (far - near) - 1


class VolumetricHead(nn.Module):
    """Deconvolution head to per-joint volumetric heatmaps (Xiao et al. 2018; Sun et al. 2018, Sec. 3).

    ``deconv_layers`` x [ConvTranspose2d(kernel 4, stride 2, padding 1, no bias) -> BN -> ReLU], each
    doubling the resolution, then a 1x1 conv to ``num_joints * depth_bins`` channels.

    Input: (B, in_channels, h, w) backbone features (any memory format). Output: (B, J, D, H, W) logits
    with ``H = h * 2**deconv_layers``; decode with :func:`soft_argmax_3d` / :func:`volume_to_2d`.
    ``depth_bins=1`` gives a 2D heatmap head (squeeze dim 2 and use :func:`soft_argmax_2d`).
    Weights initialised as in Simple Baselines (normal std 0.001, BN to identity, final bias 0).
    """

    def __init__(
        self,
        in_channels: int,
        num_joints: int,
        depth_bins: int = 64,
        deconv_layers: int = 3,
        filters: int = 256,
        kernel: int = 4,
    ):
        super().__init__()
        if kernel != 4:
            # padding 1 / output_padding 0 doubles the size only for kernel 4 (Simple Baselines also allows 2, 3)
            padding, output_padding = {2: (0, 0), 3: (1, 1)}.get(kernel, (None, None))
            if padding is None:
                raise ValueError(f"VolumetricHead: kernel must be 2, 3 or 4 (doubles the resolution), got {kernel}")
        else:
            padding, output_padding = 1, 0
        self.num_joints, self.depth_bins = num_joints, depth_bins
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(deconv_layers):
            layers += [
                nn.ConvTranspose2d(
                    channels, filters, kernel, stride=2, padding=padding, output_padding=output_padding, bias=False
                ),
                nn.BatchNorm2d(filters),
                nn.ReLU(inplace=True),
            ]
            channels = filters
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(channels, num_joints * depth_bins, kernel_size=1)
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.final(self.deconv(features))
        B, _, H, W = out.shape
        return out.reshape(B, self.num_joints, self.depth_bins, H, W)


class FCHead(nn.Module):
    """Fully connected regression head: per hidden width ``dense`` (Linear -> BN -> activation -> dropout),
    then ``blocks`` Martinez-style :class:`ResidualBlock` s at the last width, then a Linear.

    ``slope=0`` gives ReLU, ``slope>0`` LeakyReLU. Input (B, in_features) or (B, ...) flattened from dim 1
    (pool backbone maps first). Output (B, out_features), or (B, *out_shape) when ``out_shape`` is given
    (e.g. ``(17, 3)``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (1024,),
        dropout: float = 0.0,
        batch_norm: bool = True,
        slope: float = 0.0,
        blocks: int = 0,
        out_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        if out_shape is not None and int(torch.tensor(out_shape).prod()) != out_features:
            raise ValueError(f"FCHead: out_shape {tuple(out_shape)} does not hold out_features={out_features}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(dense(width, h, dropout=dropout, batch_norm=batch_norm, slope=slope))
            width = h
        layers += [ResidualBlock(width, dropout=dropout, batch_norm=batch_norm, slope=slope) for _ in range(blocks)]
        layers.append(nn.Linear(width, out_features))
        self.body = nn.Sequential(*layers)
        self.out_shape = tuple(out_shape) if out_shape is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x.flatten(1))
        return out if self.out_shape is None else out.reshape(out.shape[0], *self.out_shape)
