"""Pose normalisation and rotations shared by the 2D-to-3D lifting methods."""

from __future__ import annotations

import torch


def root_centre(x: torch.Tensor, root: int = 0) -> torch.Tensor:
    """(..., J, D) -> the same with joint ``root`` at the origin."""
    return x - x[..., root : root + 1, :]


def mean_root_distance(x: torch.Tensor, root: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """(..., J, D) -> (..., 1, 1) mean distance of the other joints to the root."""
    d = root_centre(x, root).norm(dim=-1)
    num = x.shape[-2] - 1
    return (d.sum(dim=-1, keepdim=True) / num).unsqueeze(-1).clamp(min=eps)


def normalise_2d(x: torch.Tensor, scale: float, root: int = 0) -> torch.Tensor:
    """Root-centre (..., J, 2) poses and rescale so the mean distance to the root is ``scale``.

    Differentiable, so re-projections can be normalised inside the training graph.
    """
    centred = root_centre(x, root)
    return centred * (scale / mean_root_distance(centred, root))


def rotation_y(theta: torch.Tensor) -> torch.Tensor:
    """(...) angles in radians -> (..., 3, 3) rotations about the camera's vertical (y) axis, as in SVMAC Eq. 7."""
    c, s = torch.cos(theta), torch.sin(theta)
    zero, one = torch.zeros_like(theta), torch.ones_like(theta)
    return torch.stack(
        [torch.stack([c, zero, -s], -1), torch.stack([zero, one, zero], -1), torch.stack([s, zero, c], -1)], -2
    )
