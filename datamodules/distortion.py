"""The Human3.6M lens model: radial (k1, k2, k3) and tangential (p1, p2) distortion.

This is the projection of the Human3.6M MATLAB code as VideoPose3D re-implements it in
``common/camera.py:project_to_2d``, with the parameters in VideoPose3D's order and sign. It is *not*
OpenCV's model: the tangential part is ``x * (p . x) + p * r^2`` instead of OpenCV's
``2 p1 x y + p2 (r^2 + 2 x^2)``, so ``cv2.projectPoints`` cannot reproduce Human3.6M's 2D poses.

Parameters travel as one (..., 5) tensor ``[k1, k2, k3, p1, p2]`` next to the usual ``K``; since the
distortion acts on normalised coordinates before ``K``, cropping or resizing an image only changes
``K`` (``K' = A @ K``) and the same distortion still applies.
"""

from __future__ import annotations

import torch


def distort(xy: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Distort normalised image coordinates.

    Args:
        xy: (..., J, 2) normalised coordinates ``(X / Z, Y / Z)`` of camera-frame points.
        dist: (..., 5) ``[k1, k2, k3, p1, p2]`` per camera (broadcast over the J points).

    Returns:
        (..., J, 2) distorted normalised coordinates.
    """
    if dist.shape[-1] != 5:
        raise ValueError(f"distortion must have 5 coefficients [k1, k2, k3, p1, p2], got shape {tuple(dist.shape)}")
    # VideoPose3D clamps to the unit square before distorting, and its ground-truth 2D poses were
    # made this way; the polynomial also explodes far outside the calibrated field of view.
    xy = xy.clamp(-1.0, 1.0)
    k = dist[..., None, :3]
    p = dist[..., None, 3:]
    r2 = (xy * xy).sum(dim=-1, keepdim=True)
    radial = 1.0 + (k * torch.cat([r2, r2**2, r2**3], dim=-1)).sum(dim=-1, keepdim=True)
    tangential = (p * xy).sum(dim=-1, keepdim=True)
    return xy * (radial + tangential) + p * r2


def apply_intrinsics(xy: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(..., J, 2) normalised coordinates and (..., 3, 3) K -> (..., J, 2) pixels."""
    return xy @ K[..., :2, :2].transpose(-1, -2) + K[..., None, :2, 2]


def project_distorted(points: torch.Tensor, K: torch.Tensor, dist: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Project camera-frame points through the Human3.6M lens model.

    Args:
        points: (..., J, 3) camera-frame points (mm, OpenCV axes: z forward).
        K: (..., 3, 3) intrinsics (px).
        dist: (..., 5) ``[k1, k2, k3, p1, p2]``.

    Returns:
        (..., J, 2) pixel coordinates, as in Human3.6M's released 2D poses.
    """
    xy = points[..., :2] / points[..., 2:].clamp(min=eps)
    return apply_intrinsics(distort(xy, dist), K)


def undistort_points(uv: torch.Tensor, K: torch.Tensor, dist: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """Remove the lens distortion from pixel coordinates: the pinhole pixels that ``K`` alone would give.

    The model has no closed-form inverse; a fixed-point iteration ``x <- (x_d - p r^2) / (radial + p . x)``
    converges in a few steps for Human3.6M's mild barrel distortion (residual < 1e-3 px after 20).

    Args:
        uv: (..., J, 2) distorted pixels.
        K: (..., 3, 3) intrinsics (px).
        dist: (..., 5) ``[k1, k2, k3, p1, p2]``.
        iterations: fixed-point steps.

    Returns:
        (..., J, 2) undistorted pixels (same ``K``).
    """
    f = torch.stack([K[..., 0, 0], K[..., 1, 1]], dim=-1).unsqueeze(-2)
    c = K[..., None, :2, 2]
    # Skew is zero for every camera of the three datasets; divide it out anyway for a general K.
    skew = K[..., 0, 1].unsqueeze(-1)
    y_d = (uv[..., 1] - c[..., 1]) / f[..., 1]
    x_d = (uv[..., 0] - c[..., 0] - skew * y_d) / f[..., 0]
    target = torch.stack([x_d, y_d], dim=-1)
    k = dist[..., None, :3]
    p = dist[..., None, 3:]
    xy = target
    for _ in range(iterations):
        r2 = (xy * xy).sum(dim=-1, keepdim=True)
        radial = 1.0 + (k * torch.cat([r2, r2**2, r2**3], dim=-1)).sum(dim=-1, keepdim=True)
        tangential = (p * xy).sum(dim=-1, keepdim=True)
        xy = (target - p * r2) / (radial + tangential)
    return apply_intrinsics(xy, K)
