"""The 2D part puppet of Kundu et al. 2020 (Sec. 3.1): canonical part maps, their pose-anchored affine warps,
and the depth-aware part composition.

Paper: ``../shared/papers/kundu2020_part_guided_synthesis.txt``. Reusable on its own: it knows the
skeleton (``H36M_17``) and nothing about networks.

The puppet (built procedurally here; the paper annotates one template by hand)
------------------------------------------------------------------------------
* **Template pose.** A frontal T-pose drawn from the skeleton's rest directions
  (:data:`methods.kinematics.H36M_REST_DIRECTIONS`) and the given bone lengths: the body's left (+Y)
  is image right, up (+Z) is image up, on a ``template_size``-px square canvas covering the T-pose
  with a 12 % margin (``px_per_mm`` canvas pixels per millimetre).
* **Parts** (``PUPPET_PARTS``, L = 10): torso (anchored to the four joints LShoulder, RShoulder, LHip,
  RHip), head (Thorax -> Head) and the eight limb segments, each anchored to its two joints
  (``PART_ANCHORS``). Hands belong to the forearms and feet to the shins (their shapes extend past the
  wrist / ankle), the pelvis to the torso: :data:`DATA_TO_PUPPET` maps the renderer's 16 labels
  (``datamodules.render.bodies.PARTS``) onto these.
* **Binary shapes.** Capsules around each anchored segment with widths in mm (``PART_RADII_MM``); the
  torso is the shoulder/hip quadrilateral grown by 34 mm; the head a capsule from the nose to the head
  top.
* **phi_c** (canonical part maps): binary shape -> erosion (``kornia.morphology.erosion``, a
  ``erode_px`` square) -> Gaussian blur (``kornia.filters.gaussian_blur2d``, ``blur_sigma_px``), scaled
  to a peak of 1. **psi_c** (shape-uncertainty maps): the band between a dilation and an erosion of
  the binary shape (where body / apparel shape varies), blurred the same way, peak 1.

Warps S^(l) (Sec. 3.1 "Part deformation model"; the paper gives only their inputs)
-------------------------------------------------------------------------------------
Every part's affine map carries canonical pixels to image pixels, built from its anchors:

* a two-anchor part: rotation onto the posed bone, scale *along* the bone = posed length / canonical
  length (floored at ``min_length_ratio`` times the across scale, so a bone pointing at the camera
  leaves a blob, not a degenerate map), scale *across* the bone = the perspective scale at the limb's
  depth (``across`` argument: image px per canonical px, i.e. f / depth / px_per_mm), so limb width
  follows distance, not foreshortening. The canonical anchors land exactly on the posed joints.
* the torso (four anchors): the same construction on the segment from the hip midpoint to the
  shoulder midpoint; its across scale is the larger of the perspective scale times
  ``min_torso_width`` and the posed shoulder + hip widths measured across that segment divided by the
  canonical ones (a torso seen from the side stays a body-deep slab rather than a line). The torso
  shape is left-right symmetric, so front and back views need no mirroring.

Maps are resampled with ``torch.nn.functional.affine_grid`` / ``grid_sample`` (bilinear, zeros
outside). Pixel coordinates: pixel i covers [i, i + 1), its centre is i + 0.5 (as
``methods.nn.heads.normalized_to_pixels``; align_corners=False).

Depth-aware composition (Sec. 3.1, the three softmax steps)
-----------------------------------------------------------
With limb depths d^(l) = (depth of its two anchors) / 2 (four for the torso) in a unit of the caller's
(``PartGuided``: 1 + (z - z_root) / 0.5 m, about 1 at the pelvis) and a temperature ``tau`` (the paper
divides by raw depth; in metres that leaves all logits small and the softmax near uniform):

1. phi_d^(l) = softmax_l(phi_p^(l) / (tau d^(l)))
2. phi_d^(L+1) = 1 - max_l phi_d^(l) (background)
3. bar_phi_d = softmax over the L+1 channels of phi_d

and y^p = one-hot argmax of bar_phi_d (non-differentiable). Where two parts overlap with equal
phi_p, the nearer one (smaller d) has the larger logit and wins.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from datamodules.skeleton import H36M_17, Skeleton

from .kinematics import H36M_REST_DIRECTIONS

#: The puppet's parts (index l = 0..L-1); the background is channel L.
PUPPET_PARTS = ("torso", "head", "r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm",
                "r_thigh", "r_shin", "l_thigh", "l_shin")  # fmt: skip
#: Anchor joints of each part (the torso's four: left shoulder, right shoulder, left hip, right hip).
PART_ANCHORS = {
    "torso": ("LShoulder", "RShoulder", "LHip", "RHip"),
    "head": ("Thorax", "Head"),
    "r_upper_arm": ("RShoulder", "RElbow"), "r_forearm": ("RElbow", "RWrist"),
    "l_upper_arm": ("LShoulder", "LElbow"), "l_forearm": ("LElbow", "LWrist"),
    "r_thigh": ("RHip", "RKnee"), "r_shin": ("RKnee", "RFoot"),
    "l_thigh": ("LHip", "LKnee"), "l_shin": ("LKnee", "LFoot"),
}  # fmt: skip
#: Capsule radius (mm) of each part's binary shape, and how far the shape extends past the second anchor
#: (fraction of the bone: the hand past the wrist, the foot past the ankle, the skull above the head joint).
#: (Sized to the renderer's bodies: with ground-truth poses on 256 validation frames at 64 px, y^p scores F1 0.73
#: foreground / 0.60 parts; 18 % wider parts gave 0.70 / 0.57.)
PART_RADII_MM = {"torso": 34.0, "head": 80.0, "r_upper_arm": 47.0, "r_forearm": 41.0, "l_upper_arm": 47.0,
                 "l_forearm": 41.0, "r_thigh": 68.0, "r_shin": 53.0, "l_thigh": 68.0, "l_shin": 53.0}  # fmt: skip
PART_EXTEND = {"head": 0.25, "r_forearm": 0.45, "l_forearm": 0.45, "r_shin": 0.3, "l_shin": 0.3}

#: renderer label (``datamodules.render.bodies.PARTS``) -> puppet part index (background -> L)
_DATA_PARTS = {"background": None, "head": "head", "torso": "torso", "pelvis": "torso",
               "r_upper_arm": "r_upper_arm", "r_forearm": "r_forearm", "r_hand": "r_forearm",
               "l_upper_arm": "l_upper_arm", "l_forearm": "l_forearm", "l_hand": "l_forearm",
               "r_thigh": "r_thigh", "r_shin": "r_shin", "r_foot": "r_shin",
               "l_thigh": "l_thigh", "l_shin": "l_shin", "l_foot": "l_shin"}  # fmt: skip


def data_to_puppet_table() -> torch.Tensor:
    """(16,) long: renderer part label -> puppet label (0..L-1 parts, L background)."""
    from datamodules.render.bodies import PARTS

    L = len(PUPPET_PARTS)
    return torch.tensor([L if _DATA_PARTS[p] is None else PUPPET_PARTS.index(_DATA_PARTS[p]) for p in PARTS])


def _segment_distance(points: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of (..., 2) points to the segment a-b (2,)."""
    ab = b - a
    t = (((points - a) * ab).sum(-1) / ab.square().sum().clamp(min=1e-9)).clamp(0, 1)
    return (points - (a + t.unsqueeze(-1) * ab)).norm(dim=-1)


def template_pose_2d(bone_lengths: torch.Tensor, skeleton: Skeleton = H36M_17) -> torch.Tensor:
    """(J,) bone lengths (mm, root entry ignored) -> (J, 2) frontal T-pose in mm, x = body's left, y = down."""
    J = skeleton.num_joints
    dirs = H36M_REST_DIRECTIONS
    pos = [torch.zeros(3)] * J
    for j, p in enumerate(skeleton.parents):
        if p >= 0:
            pos[j] = pos[p] + float(bone_lengths[j]) * dirs[j]
    xyz = torch.stack(pos)
    return torch.stack([xyz[:, 1], -xyz[:, 2]], dim=-1)


def affine_from_anchors(canon: torch.Tensor, target: torch.Tensor, across: torch.Tensor,
                        min_length_ratio: float = 0.3) -> torch.Tensor:  # fmt: skip
    """Rotation + anisotropic scale + translation carrying segment ``canon`` onto segment ``target``.

    Args:
        canon: (..., 2, 2) canonical start and end points (px).
        target: (..., 2, 2) posed start and end points (px).
        across: (...,) scale perpendicular to the segment (posed px per canonical px).
        min_length_ratio: the along-bone scale is at least this times ``across``.

    Returns:
        (..., 2, 3) ``A`` with ``A @ [x, 1]`` the image point of canonical point x; ``A`` maps
        ``canon[..., 0]`` onto ``target[..., 0]`` and, unless the floor applies, ``canon[..., 1]`` onto
        ``target[..., 1]``.
    """
    r = canon[..., 1, :] - canon[..., 0, :]
    q = target[..., 1, :] - target[..., 0, :]
    r_len = r.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    e_r = r / r_len
    # direction of the posed bone; a zero-length bone keeps the canonical direction
    e_q = F.normalize(q + 1e-6 * e_r, dim=-1)
    perp = lambda v: torch.stack([-v[..., 1], v[..., 0]], dim=-1)  # noqa: E731 - 90 degree turn
    q_len = q.norm(dim=-1, keepdim=True)
    along = torch.maximum(q_len, min_length_ratio * across.unsqueeze(-1) * r_len) / r_len
    M = along.unsqueeze(-1) * e_q.unsqueeze(-1) * e_r.unsqueeze(-2)
    M = M + across[..., None, None] * perp(e_q).unsqueeze(-1) * perp(e_r).unsqueeze(-2)
    t = target[..., 0, :] - (M @ canon[..., 0, :].unsqueeze(-1)).squeeze(-1)
    return torch.cat([M, t.unsqueeze(-1)], dim=-1)


def invert_affine(A: torch.Tensor) -> torch.Tensor:
    """(..., 2, 3) -> (..., 2, 3) inverse affine map."""
    M, t = A[..., :2], A[..., 2:]
    Minv = torch.linalg.inv(M)
    return torch.cat([Minv, -Minv @ t], dim=-1)


def depth_aware_parts(phi_p: torch.Tensor, depth: torch.Tensor, tau: float = 0.1):
    """The three depth-aware softmax steps of Sec. 3.1 and y^p.

    Args:
        phi_p: (B, L, H, W) posed part maps (depth-unaware).
        depth: (B, L) limb depths d^(l) relative to the root depth (about 1).
        tau: temperature: logits are phi_p / (tau * d).

    Returns:
        phi_d (B, L, H, W), bar_phi (B, L+1, H, W) (channel L: background) and y_p (B, H, W) long labels
        (argmax of bar_phi, L for the background).
    """
    phi_d = torch.softmax(phi_p / (tau * depth.clamp(min=1e-3))[..., None, None], dim=1)
    background = 1.0 - phi_d.amax(dim=1, keepdim=True)
    bar_phi = torch.softmax(torch.cat([phi_d, background], dim=1), dim=1)
    return phi_d, bar_phi, bar_phi.argmax(dim=1)


class Puppet(nn.Module):
    """One canonical 2D puppet (module docstring) and its pose-anchored deformation T_s.

    Args:
        bone_lengths: (J,) length of the bone ending at each joint, mm (root entry ignored): the
            template's proportions.
        template_size: canonical canvas side (px).
        erode_px / blur_sigma_px: erosion square side and Gaussian sigma of phi_c (canvas px); the
            uncertainty band of psi_c is ``2 * erode_px`` wide.
        min_length_ratio: floor of the along-bone scale relative to the across scale.
        min_torso_width: floor of the torso's across scale relative to the perspective scale.
        tau: temperature of the depth-aware softmax.
    """

    def __init__(self, bone_lengths: torch.Tensor, template_size: int = 96, erode_px: int = 3,
                 blur_sigma_px: float = 2.0, min_length_ratio: float = 0.3, min_torso_width: float = 0.45,
                 tau: float = 0.1, skeleton: Skeleton = H36M_17):  # fmt: skip
        super().__init__()
        if skeleton != H36M_17:
            raise ValueError(f"Puppet: only H36M_17 has a puppet template, got skeleton {skeleton.name!r}")
        if template_size < 16 or erode_px < 1 or blur_sigma_px <= 0 or tau <= 0:
            raise ValueError("Puppet needs template_size >= 16, erode_px >= 1, blur_sigma_px > 0 and tau > 0, got "
                             f"{template_size}, {erode_px}, {blur_sigma_px}, {tau}")  # fmt: skip
        self.skeleton = skeleton
        self.size, self.tau = template_size, tau
        self.min_length_ratio, self.min_torso_width = min_length_ratio, min_torso_width
        self.num_parts = len(PUPPET_PARTS)
        idx = skeleton.index
        self.limb_joints = [(idx(PART_ANCHORS[p][0]), idx(PART_ANCHORS[p][1])) for p in PUPPET_PARTS[1:]]
        self.torso_joints = [idx(j) for j in PART_ANCHORS["torso"]]
        # joints whose mean depth is each part's depth
        depth_index = torch.zeros(self.num_parts, skeleton.num_joints)
        depth_index[0, self.torso_joints] = 0.25
        for part, (a, b) in enumerate(self.limb_joints, start=1):
            depth_index[part, a] += 0.5
            depth_index[part, b] += 0.5
        self.register_buffer("depth_weights", depth_index, persistent=False)

        # -- template: T-pose on the canvas --
        pose_mm = template_pose_2d(bone_lengths.float().cpu(), skeleton)
        lo, hi = pose_mm.amin(0), pose_mm.amax(0)
        extent = float((hi - lo).max()) + 2 * max(PART_RADII_MM.values())
        self.px_per_mm = template_size / (1.12 * extent)
        center = (lo + hi) / 2
        joints_px = (pose_mm - center) * self.px_per_mm + template_size / 2
        self.register_buffer("template_joints", joints_px, persistent=False)  # (J, 2) canvas px
        shapes = self._binary_shapes(joints_px)  # (L, 1, S, S)
        k = torch.ones(erode_px, erode_px)
        eroded = kornia.morphology.erosion(shapes, k)
        dilated = kornia.morphology.dilation(shapes, k)
        ksize = 2 * math.ceil(3 * blur_sigma_px) + 1
        blur = lambda x: kornia.filters.gaussian_blur2d(x, (ksize, ksize), (blur_sigma_px, blur_sigma_px))  # noqa: E731
        peak = lambda x: x / x.flatten(1).amax(1).clamp(min=1e-6).view(-1, 1, 1, 1)  # noqa: E731
        self.register_buffer("binary", shapes[:, 0], persistent=False)
        self.register_buffer("phi_c", peak(blur(eroded))[:, 0], persistent=False)  # (L, S, S)
        self.register_buffer("psi_c", peak(blur(dilated - eroded))[:, 0], persistent=False)
        # canonical segments of every part (torso: hip midpoint -> shoulder midpoint) and torso widths
        J = joints_px
        t = self.torso_joints
        torso_seg = torch.stack([(J[t[2]] + J[t[3]]) / 2, (J[t[0]] + J[t[1]]) / 2])
        segs = [torso_seg] + [torch.stack([J[a], J[b]]) for a, b in self.limb_joints]
        self.register_buffer("canon_segments", torch.stack(segs), persistent=False)  # (L, 2, 2)
        axis = F.normalize(torso_seg[1] - torso_seg[0], dim=-1)
        normal = torch.stack([-axis[1], axis[0]])
        width = ((J[t[0]] - J[t[1]]) @ normal).abs() + ((J[t[2]] - J[t[3]]) @ normal).abs()
        self.register_buffer("canon_torso_width", width, persistent=False)

    def _binary_shapes(self, J: torch.Tensor) -> torch.Tensor:
        S = self.size
        c = torch.arange(S, dtype=torch.float32) + 0.5
        grid = torch.stack(torch.meshgrid(c, c, indexing="xy"), dim=-1)  # (S, S, 2): x, y
        shapes = []
        for part in PUPPET_PARTS:
            radius = PART_RADII_MM[part] * self.px_per_mm
            if part == "torso":
                ls, rs, lh, rh = (J[j] for j in self.torso_joints)
                quad = [ls, lh, rh, rs]
                edges = torch.stack([_segment_distance(grid, quad[i], quad[(i + 1) % 4]) for i in range(4)])
                cross = torch.stack([(quad[(i + 1) % 4] - quad[i])[0] * (grid - quad[i])[..., 1]
                                     - (quad[(i + 1) % 4] - quad[i])[1] * (grid - quad[i])[..., 0]
                                     for i in range(4)])  # fmt: skip
                inside = (cross >= 0).all(0) | (cross <= 0).all(0)
                shape = inside | (edges.amin(0) <= radius)
            else:
                a, b = (J[j] for j in (self.skeleton.index(n) for n in PART_ANCHORS[part]))
                if part == "head":
                    a = J[self.skeleton.index("Neck/Nose")]
                b = b + PART_EXTEND.get(part, 0.0) * (b - a)
                shape = _segment_distance(grid, a, b) <= radius
            shapes.append(shape.float())
        return torch.stack(shapes).unsqueeze(1)

    # -- T_s -----------------------------------------------------------------------------------------
    def part_depths(self, depth: torch.Tensor) -> torch.Tensor:
        """(B, J) joint depths -> (B, L) limb depths d^(l) (mean of the part's anchors)."""
        return depth @ self.depth_weights.t()

    def affines(self, q: torch.Tensor, across: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) posed joints (image px), (B, L) or scalar across scales -> (B, L, 2, 3) maps canonical px -> px."""
        B = q.shape[0]
        across = torch.as_tensor(across, dtype=q.dtype, device=q.device).expand(B, self.num_parts)
        t = self.torso_joints
        torso = torch.stack([(q[:, t[2]] + q[:, t[3]]) / 2, (q[:, t[0]] + q[:, t[1]]) / 2], dim=1)  # (B, 2, 2)
        axis = F.normalize(torso[:, 1] - torso[:, 0] + 1e-6, dim=-1)
        normal = torch.stack([-axis[:, 1], axis[:, 0]], dim=-1)
        width = ((q[:, t[0]] - q[:, t[1]]) * normal).sum(-1).abs() + ((q[:, t[2]] - q[:, t[3]]) * normal).sum(-1).abs()
        torso_across = torch.maximum(width / self.canon_torso_width, self.min_torso_width * across[:, 0])
        a, b = zip(*self.limb_joints)
        limbs = torch.stack([q[:, list(a)], q[:, list(b)]], dim=2)  # (B, L-1, 2, 2)
        target = torch.cat([torso.unsqueeze(1), limbs], dim=1)
        across = torch.cat([torso_across.unsqueeze(1), across[:, 1:]], dim=1)
        canon = self.canon_segments.to(q).expand(B, -1, -1, -1)
        return affine_from_anchors(canon, target, across, self.min_length_ratio)

    def warp(self, q: torch.Tensor, across: torch.Tensor | float, size: tuple[int, int]):
        """phi_p^(l) = S^(l) o phi_c^(l) and psi_p^(l) = S^(l) o psi_c^(l) (Sec. 3.1).

        Args:
            q: (B, J, 2) posed 2D joints in output px.
            across: (B, L) or scalar: image px per canonical px perpendicular to each part.
            size: output (H, W).

        Returns:
            phi_p, psi_p: (B, L, H, W).
        """
        B, L = q.shape[0], self.num_parts
        H, W = size
        inv = invert_affine(self.affines(q.float(), across))  # image px -> canonical px
        # normalised coords (align_corners=False): x_px = (x_n + 1) W / 2; canonical x_n = 2 x_px / S - 1
        to_px = q.new_tensor([[W / 2, 0, W / 2], [0, H / 2, H / 2], [0, 0, 1]]).float()
        S = self.size
        from_px = q.new_tensor([[2 / S, 0], [0, 2 / S]]).float()
        theta = from_px @ (inv @ to_px)
        theta = torch.cat([theta[..., :2], theta[..., 2:] - 1.0], dim=-1)  # the "- 1" of x_n = 2 x / S - 1
        grid = F.affine_grid(theta.reshape(B * L, 2, 3), [B * L, 2, H, W], align_corners=False)
        maps = torch.stack([self.phi_c, self.psi_c], dim=1).to(grid.dtype)  # (L, 2, S, S)
        maps = maps.unsqueeze(0).expand(B, -1, -1, -1, -1).reshape(B * L, 2, S, S)
        out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out.view(B, L, 2, H, W)
        return out[:, :, 0], out[:, :, 1]

    def forward(self, q: torch.Tensor, joint_depth: torch.Tensor, across: torch.Tensor | float,
                size: tuple[int, int]) -> dict[str, torch.Tensor]:  # fmt: skip
        """T_s with the depth-aware composition: posed joints (B, J, 2) px and their relative depths (B, J).

        Returns phi_p, psi_p, phi_d (B, L, H, W), bar_phi (B, L+1, H, W), y_p (B, H, W), w_fg and w_unc
        (B, 1, H, W) (max over parts of phi_p / psi_p) and the limb depths d (B, L).
        """
        phi_p, psi_p = self.warp(q, across, size)
        d = self.part_depths(joint_depth.float())
        phi_d, bar_phi, y_p = depth_aware_parts(phi_p, d, self.tau)
        return {"phi_p": phi_p, "psi_p": psi_p, "phi_d": phi_d, "bar_phi": bar_phi, "y_p": y_p, "depth": d,
                "w_fg": phi_p.amax(1, keepdim=True), "w_unc": psi_p.amax(1, keepdim=True)}  # fmt: skip


# -- pictures -----------------------------------------------------------------------------------------------
#: one colour per puppet part (and black for the background)
PART_COLOURS = torch.tensor([[0.85, 0.85, 0.85], [0.95, 0.75, 0.2], [0.9, 0.2, 0.2], [1.0, 0.55, 0.55],
                             [0.2, 0.35, 0.9], [0.55, 0.7, 1.0], [0.7, 0.1, 0.5], [1.0, 0.5, 0.85],
                             [0.1, 0.6, 0.3], [0.5, 0.9, 0.55], [0.0, 0.0, 0.0]])  # fmt: skip


def colour_labels(labels: torch.Tensor) -> torch.Tensor:
    """(..., H, W) puppet labels (L = background) -> (..., H, W, 3) RGB."""
    return PART_COLOURS[labels.long().cpu().clamp(0, len(PART_COLOURS) - 1)]


def colour_maps(maps: torch.Tensor) -> torch.Tensor:
    """(L, H, W) soft part maps -> (H, W, 3): each part's colour weighted by its map (max-normalised)."""
    maps = maps.detach().float().cpu()
    rgb = torch.einsum("lhw,lc->hwc", maps, PART_COLOURS[: maps.shape[0]])
    return (rgb / rgb.amax().clamp(min=1e-6)).clamp(0, 1)


def plot_puppet(puppet: Puppet, path, q: torch.Tensor | None = None, joint_depth: torch.Tensor | None = None,
                size: tuple[int, int] = (96, 96), across: float | torch.Tensor = 1.0):  # fmt: skip
    """Figure of the canonical puppet (binary shapes, phi_c, psi_c with anchors) and, given a posed 2D
    pose ``q`` (1, J, 2) with joint depths (1, J), its warped w_fg, w_unc and y^p. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("binary part shapes", colour_maps(puppet.binary)), ("phi_c (eroded + blurred)", colour_maps(puppet.phi_c)),
              ("psi_c (shape uncertainty)", puppet.psi_c.amax(0).cpu())]  # fmt: skip
    if q is not None:
        out = puppet(q, joint_depth, across, size)
        panels += [("w_fg (posed)", out["w_fg"][0, 0].detach().cpu()), ("w_unc (posed)", out["w_unc"][0, 0].detach().cpu()),
                   ("y^p (depth-aware)", colour_labels(out["y_p"][0]))]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for k, (ax, (title, img)) in enumerate(zip(axes, panels)):
        ax.imshow(img.numpy(), cmap="gray" if img.dim() == 2 else None, vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        if k < 3:
            joints = puppet.template_joints.cpu() - 0.5
            ax.scatter(joints[:, 0], joints[:, 1], s=6, c="cyan")
        elif q is not None:
            ax.scatter(q[0, :, 0].detach().cpu() - 0.5, q[0, :, 1].detach().cpu() - 0.5, s=6, c="cyan")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
