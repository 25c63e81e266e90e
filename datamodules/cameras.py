"""Batched pinhole cameras: intrinsics, extrinsics, projection and virtual camera sampling.

Conventions (the whole suite uses them):

* world frame: right-handed, Z up, millimetres, the ground at Z = 0;
* camera frame: OpenCV, x right, y down, z forward (into the scene), millimetres;
* ``R, t`` map world to camera: ``X_cam = R @ X_world + t``;
* ``K`` maps camera coordinates to pixels, with the pixel origin at the top-left corner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def world_to_camera(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(..., J, 3) world points, (..., 3, 3) R, (..., 3) t -> (..., J, 3) camera-frame points."""
    return points @ R.transpose(-1, -2) + t.unsqueeze(-2)


def camera_to_world(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`world_to_camera`."""
    return (points - t.unsqueeze(-2)) @ R


def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Perspective projection of (..., J, 3) camera-frame points with (..., 3, 3) K -> (..., J, 2) px."""
    uvw = points @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:].clamp(min=eps)


def weak_perspective_project(points: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """Weak-perspective (affine) projection: (..., J, 3) points, (..., 2, 3) matrix -> (..., J, 2)."""
    return points @ P.transpose(-1, -2)


def intrinsics(focal: torch.Tensor | float, center: tuple[float, float], batch: int = 1) -> torch.Tensor:
    """(B, 3, 3) intrinsics with square pixels, focal length in px and principal point ``center``."""
    f = torch.as_tensor(focal, dtype=torch.float32).expand(batch)
    K = torch.zeros(batch, 3, 3)
    K[:, 0, 0] = f
    K[:, 1, 1] = f
    K[:, 0, 2] = center[0]
    K[:, 1, 2] = center[1]
    K[:, 2, 2] = 1.0
    return K


def look_at(eye: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-camera ``R (B, 3, 3), t (B, 3)`` of cameras at ``eye (B, 3)`` looking at ``target (B, 3)``.

    The world is Z up, so the image's y axis (down) is the projection of -Z.
    """
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.tensor([0.0, 0.0, 1.0]).expand_as(forward)
    right = torch.nn.functional.normalize(torch.cross(forward, up, dim=-1), dim=-1)
    down = torch.cross(forward, right, dim=-1)
    R = torch.stack([right, down, forward], dim=-2)
    t = -(R @ eye.unsqueeze(-1)).squeeze(-1)
    return R, t


@dataclass(frozen=True)
class CameraRig:
    """Ranges for random virtual cameras around a person (Human3.6M-like defaults).

    Azimuth covers the full circle; elevation is the angle of the camera above the target's
    horizontal plane; distance is from the camera to the target (the pelvis) in mm.
    """

    elevation_deg: tuple[float, float] = (-10.0, 35.0)
    distance_mm: tuple[float, float] = (3500.0, 6500.0)
    focal_px: float = 1145.0
    image_size: tuple[int, int] = (1000, 1000)  # (width, height)
    target_jitter_mm: float = 200.0

    def __post_init__(self) -> None:
        lo, hi = self.elevation_deg
        if not -89.0 < lo <= hi < 89.0:
            raise ValueError(f"camera elevation range {self.elevation_deg} must lie within (-89, 89) degrees")
        if not 0 < self.distance_mm[0] <= self.distance_mm[1]:
            raise ValueError(f"camera distance range {self.distance_mm} must be positive and increasing")

    def sample(self, targets: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One random camera per target point (B, 3) in world mm -> ``K, R, t`` batches."""
        n = targets.shape[0]
        u = torch.rand(n, 4, generator=generator)
        azimuth = 2 * math.pi * u[:, 0]
        lo, hi = (math.radians(a) for a in self.elevation_deg)
        elevation = lo + (hi - lo) * u[:, 1]
        distance = self.distance_mm[0] + (self.distance_mm[1] - self.distance_mm[0]) * u[:, 2]
        jitter = self.target_jitter_mm * (torch.rand(n, 3, generator=generator) * 2 - 1)
        aim = targets + jitter
        offset = torch.stack(
            [
                torch.cos(elevation) * torch.cos(azimuth),
                torch.cos(elevation) * torch.sin(azimuth),
                torch.sin(elevation),
            ],
            dim=-1,
        )
        R, t = look_at(aim + distance.unsqueeze(-1) * offset, aim)
        width, height = self.image_size
        K = intrinsics(self.focal_px, (width / 2.0, height / 2.0), batch=n)
        return {"K": K, "R": R, "t": t}


def in_image(uv: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(..., 2) pixel coordinates -> (...) bool: inside the ``width`` x ``height`` image (origin top-left)."""
    return (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)
