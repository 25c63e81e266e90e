"""Pose-aware augmentation of batch-contract dicts (``datamodules/contract.py``): colour jitter, horizontal
flip and in-plane rotation, applied consistently to the image, its label maps, the 2D and 3D joints and
the camera.

Conventions (``docs/architecture.md``): OpenCV camera frame (x right, y down, z forward), pixel origin at
the top-left *corner* of the image, pixel ``(row r, col c)`` centred at ``(c + 0.5, r + 0.5)``. Hence the
horizontal flip maps ``u -> W - u`` (column c -> W - 1 - c, centre c + 0.5 -> W - c - 0.5) and the camera
follows with ``cx -> W - cx`` (``K' = A K D``, ``A = [[-1, 0, W], [0, 1, 0], [0, 0, 1]]``,
``D = diag(-1, 1, 1)``, which also negates a skew), ``x -> -x`` in 3D, and left/right joints and part
labels swap, so ``project(joints_3d', K') == joints_2d'`` exactly.

Keys handled: ``image``, ``mask``, ``parts``, ``depth``, ``flow``, ``joints_2d``, ``joints_2d_gt``,
``visible``, ``joints_3d``, ``K``, and (for consistency with the camera) ``R``, ``t``, ``joints_3d_world``.
Identity keys (``subject``, ``action``, ``frame``, ``sequence``, ``camera``, ``scene``) pass through; any
other key (``distortion``: the tangential terms do not survive a flip) raises ``ValueError``.

Batches may carry extra leading dims (``(B, V, ...)`` views or ``(B, T, ...)`` frames): ``which`` and
``angle`` then have those leading dims; :class:`PoseAugment` draws one flip per sample (shared by its
views, so ``joints_3d_world`` of shape (B, J, 3) stays one body) and one angle per image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import kornia.augmentation as KA
import torch
from kornia.geometry.transform import warp_affine
from torch import nn

from datamodules.render.bodies import PARTS
from datamodules.skeleton import H36M_17, Skeleton

PASSTHROUGH = frozenset({"subject", "action", "frame", "sequence", "camera", "scene"})
HANDLED = frozenset(
    {"image", "mask", "parts", "depth", "flow", "joints_2d", "joints_2d_gt", "visible", "joints_3d", "K", "R", "t"}
    | {"joints_3d_world"}
)


def _mirror_table(names) -> list[int]:
    swap = {"l_": "r_", "r_": "l_"}
    return [names.index(swap[n[:2]] + n[2:]) if n[:2] in swap else i for i, n in enumerate(names)]


#: label -> label of the mirrored part (``r_forearm`` <-> ``l_forearm``; background, head, torso, pelvis fixed).
PART_FLIP = torch.tensor(_mirror_table(list(PARTS)))


def _check_keys(batch: Mapping) -> None:
    unknown = sorted(k for k in batch if k not in HANDLED | PASSTHROUGH)
    if unknown:
        raise ValueError(
            f"PoseAugment cannot keep keys {unknown} consistent under flip/rotation; drop them before augmenting "
            f"(handled: {sorted(HANDLED)}, passed through: {sorted(PASSTHROUGH)})"
        )
    if "image" not in batch:
        raise ValueError("PoseAugment needs batch['image'] (B, 3, H, W) for the image size")


def _sel(which: torch.Tensor, x: torch.Tensor, lead: int) -> torch.Tensor:
    """``which`` (lead dims) broadcast against x (lead dims + trailing)."""
    return which.reshape(*which.shape, *([1] * (x.dim() - lead)))


def hflip(batch: Mapping, which: torch.Tensor, skeleton: Skeleton = H36M_17) -> dict:
    """Mirror the samples where ``which`` (leading dims of the image, bool) is True; others unchanged.

    Image-like keys flip along W; ``parts`` labels map through :data:`PART_FLIP`; ``flow``'s u negates;
    ``joints_2d(_gt)`` u -> W - u and ``joints_3d`` x -> -x, both with left/right joints swapped
    (``skeleton.flip_permutation``, also for ``visible``); ``K -> A K D`` (cx -> W - cx);
    ``R -> D R M``, ``t -> D t``, ``joints_3d_world -> M X[perm]`` with the world mirror
    ``M = diag(-1, 1, 1)`` (keeps Z up and R a proper rotation). Module docstring: conventions.
    """
    _check_keys(batch)
    out = dict(batch)
    image = batch["image"]
    lead = image.dim() - 3
    W = image.shape[-1]
    perm = list(skeleton.flip_permutation)
    which = which.to(image.device, torch.bool)

    def where(key, flipped):
        x = batch[key]
        out[key] = torch.where(_sel(which, x, lead), flipped, x)

    for key in ("image", "mask", "depth"):
        if key in batch:
            where(key, batch[key].flip(-1))
    if "parts" in batch:
        parts = batch["parts"]
        where("parts", PART_FLIP.to(parts.device)[parts.flip(-1).long()].to(parts.dtype))
    if "flow" in batch:
        flow = batch["flow"].flip(-1)
        where("flow", torch.cat([-flow[..., :1, :, :], flow[..., 1:, :, :]], dim=-3))
    for key in ("joints_2d", "joints_2d_gt"):
        if key in batch:
            uv = batch[key][..., perm, :]
            where(key, torch.stack([W - uv[..., 0], uv[..., 1]], dim=-1))
    if "visible" in batch:
        where("visible", batch["visible"][..., perm])
    if "joints_3d" in batch:
        X = batch["joints_3d"][..., perm, :]
        where("joints_3d", X * X.new_tensor([-1.0, 1.0, 1.0]))
    if "K" in batch:
        K = batch["K"]
        A = K.new_tensor([[-1.0, 0.0, W], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        D = K.new_tensor([-1.0, 1.0, 1.0])
        where("K", (A @ K) * D)  # (A K) D: scale columns
    if "R" in batch:
        R = batch["R"]
        mirror = R.new_tensor([-1.0, 1.0, 1.0])
        where("R", R * mirror.unsqueeze(-1) * mirror)  # D R M: rows by D, columns by M
    if "t" in batch:
        where("t", batch["t"] * batch["t"].new_tensor([-1.0, 1.0, 1.0]))
    if "joints_3d_world" in batch:
        Xw = batch["joints_3d_world"]
        # shared by the views of a sample when it lacks the view dim: flips must then agree across views
        w = which if Xw.dim() - 2 == lead else which.reshape(*which.shape[: Xw.dim() - 2], -1)[..., 0]
        flipped = Xw[..., perm, :] * Xw.new_tensor([-1.0, 1.0, 1.0])
        out["joints_3d_world"] = torch.where(_sel(w, Xw, w.dim()), flipped, Xw)
    return out


def rotation_z(angle: torch.Tensor) -> torch.Tensor:
    """(...) radians -> (..., 3, 3) rotation about the camera z axis, ``[[c, -s, 0], [s, c, 0], [0, 0, 1]]``
    (with y down, a positive angle turns the image clockwise on screen)."""
    c, s = angle.cos(), angle.sin()
    z, o = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, -s, z, s, c, z, z, z, o], dim=-1).reshape(*angle.shape, 3, 3)


def image_rotation(K: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) K, (...) angle -> (..., 3, 3) pixel homography ``H = K Rz K^-1`` (affine: last row 0 0 1)
    that a camera rotation ``Rz(angle)`` about its z axis induces on the image: ``p' = H p``.

    With ``fx == fy`` and no skew it is a rotation about the principal point; otherwise it also shears
    and scales anisotropically (``K2 Rot K2^-1`` about the principal point), which keeps K unchanged and
    2D/3D consistent for any intrinsics.
    """
    return K @ rotation_z(angle).to(K) @ torch.linalg.inv(K)


def rotate(batch: Mapping, angle: torch.Tensor) -> dict:
    """In-plane rotation of every sample by ``angle`` (leading dims of the image, radians) about the camera
    z axis through the principal point; ``angle = 0`` leaves a sample bit-identical.

    3D: ``joints_3d -> Rz X``, ``R -> Rz R``, ``t -> Rz t`` (world unchanged); K unchanged. 2D and maps:
    the induced pixel map ``H = K Rz K^-1`` (:func:`image_rotation`) on joints and flow vectors, and as an
    affine warp of the maps (kornia ``warp_affine``, align_corners=True in pixel-index coordinates, i.e.
    our continuous pixel coordinates minus 0.5): bilinear for ``image`` and ``flow``, nearest for ``mask``,
    ``parts`` and ``depth``; outside the source is 0 (black, background, no depth).
    """
    _check_keys(batch)
    if "K" not in batch:
        raise ValueError("rotate needs batch['K'] (B, 3, 3): the rotation is about the principal point")
    out = dict(batch)
    image = batch["image"]
    lead = image.dim() - 3
    H_img, W_img = image.shape[-2:]
    angle = angle.to(image.device, torch.float32)
    K = batch["K"].float()
    Rz = rotation_z(angle)
    Hpx = image_rotation(K, angle)  # (..., 3, 3) in continuous pixel coords
    shift = Hpx.new_tensor([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    unshift = Hpx.new_tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    M = (shift @ Hpx @ unshift)[..., :2, :].reshape(-1, 2, 3)  # in pixel-index coords
    keep = angle == 0

    def where(key, new):
        x = batch[key]
        out[key] = torch.where(_sel(keep, x, lead), x, new.to(x.dtype))

    def warp(x, mode):
        flat = x.reshape(-1, *x.shape[lead:])
        warped = warp_affine(flat.float(), M, (H_img, W_img), mode=mode, align_corners=True)
        return warped.reshape(x.shape)

    if "image" in batch:
        where("image", warp(image, "bilinear"))
    if "mask" in batch:
        where("mask", warp(batch["mask"], "nearest") > 0.5)
    if "depth" in batch:
        where("depth", warp(batch["depth"], "nearest"))
    if "parts" in batch:
        parts = batch["parts"]
        where("parts", warp(parts.unsqueeze(-3), "nearest").squeeze(-3).round())
    if "flow" in batch:
        flow = warp(batch["flow"], "bilinear")
        A = Hpx[..., :2, :2].unsqueeze(-3).unsqueeze(-3)  # (..., 1, 1, 2, 2)
        vec = (A @ flow.movedim(-3, -1).unsqueeze(-1)).squeeze(-1).movedim(-1, -3)
        where("flow", vec)
    for key in ("joints_2d", "joints_2d_gt"):
        if key in batch:
            uv = batch[key].float()
            where(key, uv @ Hpx[..., :2, :2].transpose(-1, -2) + Hpx[..., :2, 2].unsqueeze(-2))
    if "joints_3d" in batch:
        where("joints_3d", batch["joints_3d"].float() @ Rz.transpose(-1, -2))
    if "R" in batch:
        where("R", Rz @ batch["R"].float())
    if "t" in batch:
        where("t", (Rz @ batch["t"].float().unsqueeze(-1)).squeeze(-1))
    return out


class PoseAugment(nn.Module):
    """Colour jitter, horizontal flip and in-plane rotation of a batch dict, drawn per sample.

    Vectorised: the random draws are (B,) tensors on the batch's device and each transform is applied
    to the whole batch and selected with ``torch.where`` (no loop over samples, no host sync). Uses the
    global torch RNG (seed with ``torch.manual_seed`` / Lightning's ``seed_everything``). Active in
    training mode only (``eval()`` makes it the identity).

    Args:
        flip_p: probability of a horizontal flip (:func:`hflip`).
        rotate_p: probability of a rotation; its angle is uniform in ``[-max_degrees, max_degrees]``
            (:func:`rotate`).
        max_degrees: rotation range, degrees.
        brightness, contrast, saturation, hue: kornia ``ColorJitter`` ranges (image only; 0 disables).
        jitter_p: probability of colour jitter per sample.
        skeleton: gives the left/right joint pairs.
    """

    def __init__(
        self,
        flip_p: float = 0.5,
        rotate_p: float = 0.5,
        max_degrees: float = 30.0,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.02,
        jitter_p: float = 0.8,
        skeleton: Skeleton = H36M_17,
    ):
        super().__init__()
        self.flip_p, self.rotate_p, self.max_radians = flip_p, rotate_p, math.radians(max_degrees)
        self.skeleton = skeleton
        use_jitter = jitter_p > 0 and any(v > 0 for v in (brightness, contrast, saturation, hue))
        self.jitter = KA.ColorJitter(brightness, contrast, saturation, hue, p=jitter_p) if use_jitter else None

    def forward(self, batch: Mapping) -> dict:
        if not self.training:
            return dict(batch)
        image = batch["image"]
        lead = image.shape[:-3]
        out = dict(batch)
        if self.jitter is not None:
            flat = image.reshape(-1, *image.shape[-3:])
            out["image"] = self.jitter(flat).reshape(image.shape).clamp(0, 1)
        if self.flip_p > 0:
            which = torch.rand(lead[:1], device=image.device) < self.flip_p
            out = hflip(out, which.reshape(*lead[:1], *([1] * (len(lead) - 1))).expand(lead), self.skeleton)
        if self.rotate_p > 0 and self.max_radians > 0:
            angle = (torch.rand(lead, device=image.device) * 2 - 1) * self.max_radians
            angle = torch.where(torch.rand(lead, device=image.device) < self.rotate_p, angle, torch.zeros_like(angle))
            out = rotate(out, angle)
        if image.dim() == 4 and image.is_contiguous(memory_format=torch.channels_last):
            out["image"] = out["image"].contiguous(memory_format=torch.channels_last)  # keep the caller's format
        return out
