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
    x, y = xy.clamp(-1.0, 1.0).unbind(-1)
    k1, k2, k3, p1, p2 = (c.unsqueeze(-1) for c in dist.unbind(-1))
    r2 = x * x + y * y
    scale = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3)) + p1 * x + p2 * y  # radial + tangential
    return torch.stack([x * scale + p1 * r2, y * scale + p2 * r2], dim=-1)


def apply_intrinsics(xy: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(..., J, 2) normalised coordinates and (..., 3, 3) K -> (..., J, 2) pixels."""
    # Element-wise rather than a batched 2x2 matmul: much faster for many small cameras.
    x, y = xy.unbind(-1)
    K = K.unsqueeze(-3)
    return torch.stack([K[..., 0, 0] * x + K[..., 0, 1] * y + K[..., 0, 2], K[..., 1, 1] * y + K[..., 1, 2]], dim=-1)


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
    Kj = K.unsqueeze(-3)
    # Skew is zero for every camera of the three datasets; divide it out anyway for a general K.
    y_d = (uv[..., 1] - Kj[..., 1, 2]) / Kj[..., 1, 1]
    x_d = (uv[..., 0] - Kj[..., 0, 2] - Kj[..., 0, 1] * y_d) / Kj[..., 0, 0]
    k1, k2, k3, p1, p2 = (c.unsqueeze(-1) for c in dist.unbind(-1))
    x, y = x_d, y_d
    for _ in range(iterations):
        r2 = x * x + y * y
        scale = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3)) + p1 * x + p2 * y
        x, y = (x_d - p1 * r2) / scale, (y_d - p2 * r2) / scale
    return apply_intrinsics(torch.stack([x, y], dim=-1), K)
