"""Body models for mesh-based methods: a built-in licence-free body, and SMPL through ``smplx``.

Both map per-joint rotations ``theta`` (axis-angle, radians) and shape coefficients ``beta`` to a surface
(vertices, mm) and the 17 ``H36M_17`` joints by a fixed linear joint regressor ``A`` (Tung et al. 2017, Eq. 2:
``X_kpt^T = A X^T``), in a body frame with +X forward, +Y to the body's left, +Z up and the pelvis at the
origin (the frame of :mod:`methods.kinematics`). A camera (``R``, ``T``) then carries them into the
camera frame.

:class:`BuiltinBody` (no licence, no file) is the renderer's body (``datamodules.render.bodies``: 21
ellipsoids in 11 part frames, sized from the bone lengths) turned into a mesh, plus a small sphere around
every joint (the rounded ends of a capsule body):

* **Pose.** ``theta`` (B, 17, 3) rotates the bones of a standing rest pose (the procedural motion's
  template: legs and arms hanging, head up) by forward kinematics (:func:`methods.kinematics.forward_kinematics`,
  Rodrigues through kornia); the root's rotation is the body's global orientation.
* **Shape.** ``beta`` (B, 4) are log-factors: overall size, leg length, arm length and girth (the widths
  of the trunk and limbs). Bone lengths are the template's times ``exp(size + legs | arms)``.
* **Skinning.** Rigid: each vertex belongs to one part frame, computed from the posed joints exactly as the
  renderer computes it (minimal-rotation limb frames; the twist about a bone is not modelled, so the
  surface depends on ``theta`` only through the joints).
* **Mesh.** Every ellipsoid is a Fibonacci sphere of ``points_per_part`` points mapped onto it, triangulated
  by its convex hull; every joint sphere is an icosahedron (12 vertices whose mean is exactly its centre).
* **Joint regressor A** (Eq. 2): row j averages the 12 vertices of joint j's sphere, so ``A X`` gives the
  kinematic joints exactly.
* **Visibility** (:func:`ellipsoid_visibility`): a vertex is visible when its surface faces the camera and
  the ray from the camera centre to it crosses no other primitive (analytic ray-ellipsoid tests).

Evaluating this body on ``SyntheticHumans`` flatters it: the renderer draws people with the same ellipsoids,
so the model can fit the silhouettes and flow of the data exactly, which no body model can do on real
people (SMPL on Human3.6M does not fit clothing, hair or a person's exact proportions). Numbers measured
with it on rendered data are an upper bound of what the method gets from a body model. Measured on the motion-capture
target at 64 px (``radius_jitter`` 0.2, widths off by 17% on average): adaptation scored 127.2 mm MPJPE against 133.7 with
the matched body, within the runs' spread, so at that size the match does not carry the result.

:class:`SMPLBody` wraps ``smplx.SMPL`` (24 joints, 10 betas, 6890 vertices) for users who have the model
file (a path in the config; it is never bundled: its licence forbids it). Its 17 joints are
``A = M J_regressor`` with ``M`` picking H36M joints from SMPL's 24 (or a user's 17-row H36M regressor,
``joint_regressor``); visibility is a vertex z-buffer (:func:`zbuffer_visibility`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import ConvexHull
from torch import nn

from datamodules.cameras import in_image
from datamodules.motion.procedural import _REST as PROCEDURAL_REST
from datamodules.render.bodies import _TEMPLATE, FRAMES, PRIMITIVES, part_frames
from datamodules.skeleton import H36M_17

from .kinematics import forward_kinematics

#: rest bone directions of the built-in body in its parent's frame (+X forward, +Y left, +Z up): the
#: procedural template's (x right, y forward, z up) turned into that frame
REST_DIRECTIONS = torch.tensor(
    [[0.0, 0.0, 0.0]] + [[d[1], -d[0], d[2]] for d, _ in (PROCEDURAL_REST[n] for n in H36M_17.joints[1:])]
)
#: shape coefficients of the built-in body (log-factors)
BETA_NAMES = ("size", "legs", "arms", "girth")
_LEGS = ("RKnee", "RFoot", "LKnee", "LFoot")
_ARMS = ("LElbow", "LWrist", "RElbow", "RWrist")
#: joint-sphere radius at size 1, mm (inside the limbs: it rounds the ends, it does not bulge)
JOINT_RADIUS_MM = 35.0


@dataclass
class BodyOutput:
    """A posed body in the body frame, mm.

    Attributes:
        vertices: (B, n, 3). joints: (B, 17, 3) ``A @ vertices`` (Eq. 2).
        centers, axes, radii: (B, Q, 3), (B, Q, 3, 3), (B, Q, 3) the primitives the surface lies on
            (built-in body only; None for a triangle mesh).
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    centers: torch.Tensor | None = None
    axes: torch.Tensor | None = None
    radii: torch.Tensor | None = None


def fibonacci_sphere(n: int) -> torch.Tensor:
    """(n, 3) nearly evenly spread unit vectors (golden-angle spiral)."""
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * k / n
    phi = k * math.pi * (3 - math.sqrt(5))
    r = (1 - z * z).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], -1).float()


def icosahedron() -> torch.Tensor:
    """(12, 3) unit vertices of a regular icosahedron (their mean is exactly zero)."""
    g = (1 + math.sqrt(5)) / 2
    v = [(-1, g, 0), (1, g, 0), (-1, -g, 0), (1, -g, 0), (0, -1, g), (0, 1, g), (0, -1, -g), (0, 1, -g),
         (g, 0, -1), (g, 0, 1), (-g, 0, -1), (-g, 0, 1)]  # fmt: skip
    return torch.nn.functional.normalize(torch.tensor(v, dtype=torch.float32), dim=-1)


def hull_faces(points: torch.Tensor) -> torch.Tensor:
    """(F, 3) triangles of the convex hull of unit-sphere points (their surface mesh)."""
    return torch.from_numpy(ConvexHull(points.double().numpy()).simplices.astype(np.int64))


def ellipsoid_visibility(points: torch.Tensor, owner: torch.Tensor, centers: torch.Tensor, axes: torch.Tensor,
                         radii: torch.Tensor, margin: float = 1e-3) -> torch.Tensor:  # fmt: skip
    """Which surface points a pinhole camera at the origin sees (camera frame), by ray casting. Not differentiable.

    Point i lies on ellipsoid ``owner[i]``. It is visible when (1) its outward normal faces the camera and
    (2) no other ellipsoid meets the ray ``s * x_i`` for ``s`` in ``(0, 1 - margin)`` (roots of
    ``|s a - b|^2 = 1`` in the ellipsoid's unit-sphere coordinates, ``a = D A^T x``, ``b = D A^T c``); a
    point inside another ellipsoid is hidden by it.

    Args:
        points: (B, n, 3) camera-frame points, mm; owner: (n,) ellipsoid index of each point.
        centers, axes, radii: (B, Q, 3), (B, Q, 3, 3) (columns = local axes), (B, Q, 3) in the camera frame.

    Returns:
        (B, n) bool.
    """
    with torch.no_grad():
        inv = axes.transpose(-1, -2) / radii.unsqueeze(-1)  # (B, Q, 3, 3): camera -> unit-sphere coordinates
        B, n, Q = points.shape[0], points.shape[1], centers.shape[1]
        a = torch.bmm(points, inv.permute(0, 3, 1, 2).reshape(B, 3, Q * 3)).view(B, n, Q, 3)  # (B, n, Q, 3)
        b = torch.einsum("bqij,bqj->bqi", inv, centers).unsqueeze(1)  # (B, 1, Q, 3)
        qa, qb, qc = (a * a).sum(-1), (a * b).sum(-1), (b * b).sum(-1) - 1  # s^2 qa - 2 s qb + qc = 0
        disc = qb * qb - qa * qc
        root = disc.clamp(min=0).sqrt()
        s1, s2 = (qb - root) / qa, (qb + root) / qa
        crosses = (disc > 0) & (s1 < 1 - margin) & (s2 > 0)
        own = torch.nn.functional.one_hot(owner, centers.shape[1]).bool().unsqueeze(0)
        blocked = (crosses & ~own).any(-1)
        # outward normal at the point: A D^-2 (unit coordinates) in the camera frame; front-facing if n . x < 0
        idx = owner.view(1, -1).expand(points.shape[0], -1)
        unit = torch.gather(a - b, 2, idx[..., None, None].expand(-1, -1, 1, 3)).squeeze(2)
        inv_own = torch.gather(inv, 1, idx[..., None, None].expand(-1, -1, 3, 3))
        normal = torch.einsum("bnji,bnj->bni", inv_own, unit)  # gradient of |inv (x - c)|^2 / 2
        facing = (normal * points).sum(-1) < 0
        return facing & ~blocked


def zbuffer_visibility(pixels: torch.Tensor, depth: torch.Tensor, width: int, height: int,
                       tolerance_mm: float = 30.0) -> torch.Tensor:  # fmt: skip
    """Visibility of projected vertices by a vertex z-buffer: visible when no closer vertex (by more than
    ``tolerance_mm``) falls in the same pixel, and inside the image. Not differentiable.

    Args:
        pixels: (B, n, 2) px; depth: (B, n) mm. Returns (B, n) bool.
    """
    with torch.no_grad():
        B, n = depth.shape
        col, row = pixels[..., 0].floor().long(), pixels[..., 1].floor().long()
        inside = in_image(pixels, width, height) & (depth > 0)  # floor(x) in [0, width) iff x is
        cell = torch.where(inside, row * width + col, width * height)  # outside -> a spare cell
        flat = cell + torch.arange(B, device=cell.device).unsqueeze(-1) * (width * height + 1)
        zbuf = torch.full((B * (width * height + 1),), float("inf"), device=depth.device, dtype=depth.dtype)
        zbuf.scatter_reduce_(0, flat.reshape(-1), depth.reshape(-1), reduce="amin")
        return inside & (depth <= zbuf[flat] + tolerance_mm)


class BuiltinBody(nn.Module):
    """The licence-free built-in body (module docstring): the renderer's ellipsoids as a rigidly skinned mesh.

    Args:
        points_per_part: vertices of each of the 21 ellipsoids (the 17 joint spheres have 12 each).
        radius_jitter: a body unlike the renderer's, to measure how much the match flatters the method: each
            ellipsoid's three radii times exp(radius_jitter * n), n ~ N(0, 1) drawn once from seed 0 (0: the
            renderer's shape). Joints, bones and the regressor A are unchanged.
    """

    num_joints = H36M_17.num_joints
    pose_joints = H36M_17.num_joints
    num_betas = len(BETA_NAMES)
    kind = "builtin"

    def __init__(self, points_per_part: int = 48, radius_jitter: float = 0.0):
        super().__init__()
        if points_per_part < 8 or radius_jitter < 0:
            raise ValueError(f"BuiltinBody needs points_per_part >= 8 and radius_jitter >= 0, got {points_per_part} "
                             f"and {radius_jitter}")  # fmt: skip
        P, J = len(PRIMITIVES), H36M_17.num_joints
        sphere, ico = fibonacci_sphere(points_per_part), icosahedron()
        self.register_buffer("template_lengths", _TEMPLATE.clone(), persistent=False)
        self.register_buffer("rest", REST_DIRECTIONS.clone(), persistent=False)
        legs = torch.tensor([n in _LEGS for n in H36M_17.joints], dtype=torch.float32)
        arms = torch.tensor([n in _ARMS for n in H36M_17.joints], dtype=torch.float32)
        self.register_buffer("leg_mask", legs, persistent=False)
        self.register_buffer("arm_mask", arms, persistent=False)
        self.register_buffer("frame_of", torch.tensor([FRAMES.index(p.frame) for p in PRIMITIVES]), persistent=False)
        self.register_buffer("center_mm", torch.tensor([p.center for p in PRIMITIVES]), persistent=False)
        self.register_buffer("center_len", torch.tensor([p.center_len for p in PRIMITIVES]), persistent=False)
        radii = torch.tensor([p.radii for p in PRIMITIVES])
        jitter = torch.randn(radii.shape, generator=torch.Generator().manual_seed(0))
        self.register_buffer("radii_mm", radii * (radius_jitter * jitter).exp(), persistent=False)
        self.register_buffer("radius_len", torch.tensor([p.radius_len for p in PRIMITIVES]), persistent=False)
        self.register_buffer("girth", torch.tensor([float(p.girth) for p in PRIMITIVES]), persistent=False)
        self.register_buffer("sphere", sphere, persistent=False)
        self.register_buffer("ico", ico, persistent=False)
        # vertex -> ellipsoid (21 parts, then 17 joint spheres); faces offset per ellipsoid
        owner = torch.cat([torch.arange(P).repeat_interleave(len(sphere)), P + torch.arange(J).repeat_interleave(12)])
        self.register_buffer("owner", owner, persistent=False)
        part_faces, joint_faces = hull_faces(sphere), hull_faces(ico)
        faces = [part_faces + p * len(sphere) for p in range(P)]
        faces += [joint_faces + P * len(sphere) + j * 12 for j in range(J)]
        self.register_buffer("faces", torch.cat(faces), persistent=False)
        # Eq. 2: row j averages joint j's 12 sphere vertices
        A = torch.zeros(J, len(owner))
        for j in range(J):
            A[j, P * len(sphere) + 12 * j : P * len(sphere) + 12 * (j + 1)] = 1 / 12
        self.register_buffer("A", A, persistent=False)

    @property
    def num_vertices(self) -> int:
        return self.owner.shape[0]

    def bone_lengths(self, beta: torch.Tensor) -> torch.Tensor:
        """(B, 4) -> (B, 17) mm: the template's bones times exp(size + legs | arms)."""
        log = beta[:, :1] + beta[:, 1:2] * self.leg_mask + beta[:, 2:3] * self.arm_mask
        return self.template_lengths * log.exp()

    def joints(self, theta: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Forward kinematics: (B, 17, 3) axis-angle and (B, 4) shape -> (B, 17, 3) joints, pelvis at the origin."""
        return forward_kinematics(theta, self.bone_lengths(beta), self.rest)

    def surface(self, joints: torch.Tensor, beta: torch.Tensor) -> BodyOutput:
        """The mesh around posed joints (B, 17, 3) with shape ``beta`` (B, 4) (size and girth set the widths)."""
        origins, rots, lengths = part_frames(joints)
        size, girth = beta[:, 0].exp().view(-1, 1, 1), beta[:, 3].exp().view(-1, 1)
        f = self.frame_of
        L = lengths[:, f]  # (B, P)
        width = torch.where(self.girth.bool(), girth, torch.ones_like(girth))  # (B, P)
        local_c = self.center_mm * size
        local_c = torch.cat([local_c[..., :2], local_c[..., 2:] + self.center_len.unsqueeze(-1) * L[..., None]], -1)
        radii = self.radii_mm * size
        radii = torch.cat([radii[..., :2] * width[..., None], radii[..., 2:] + self.radius_len[:, None] * L[..., None]],
                          -1)  # fmt: skip
        axes = rots[:, f]  # (B, P, 3, 3)
        centers = origins[:, f] + torch.einsum("bpij,bpj->bpi", axes, local_c)
        part_v = centers.unsqueeze(2) + torch.einsum("bpij,bpkj->bpki", axes, radii.unsqueeze(2) * self.sphere)
        r_joint = (JOINT_RADIUS_MM * size.view(-1, 1) * girth).view(-1, 1, 1, 1)
        joint_v = joints.unsqueeze(2) + r_joint * self.ico  # (B, J, 12, 3)
        vertices = torch.cat([part_v.flatten(1, 2), joint_v.flatten(1, 2)], dim=1)
        B, J = joints.shape[:2]
        eye = torch.eye(3, device=joints.device, dtype=joints.dtype).expand(B, J, 3, 3)
        return BodyOutput(
            vertices=vertices,
            joints=torch.einsum("jn,bnc->bjc", self.A, vertices),
            centers=torch.cat([centers, joints], 1),
            axes=torch.cat([axes, eye], 1),
            radii=torch.cat([radii, r_joint.view(B, 1, 1).expand(B, J, 3)], 1),
        )

    def forward(self, theta: torch.Tensor, beta: torch.Tensor) -> BodyOutput:
        """(B, 17, 3) axis-angle, (B, 4) shape -> the posed mesh and its joints (Eq. 2), body frame, mm."""
        return self.surface(self.joints(theta, beta), beta)

    def visibility(self, out: BodyOutput, R: torch.Tensor, T: torch.Tensor, pixels: torch.Tensor, width: int,
                   height: int) -> torch.Tensor:  # fmt: skip
        """(B, n) visible vertices of ``out`` seen by a camera at the origin of ``X_cam = R X + T`` (ray casting)."""
        points = torch.einsum("bij,bnj->bni", R, out.vertices) + T.unsqueeze(1)
        centers = torch.einsum("bij,bqj->bqi", R, out.centers) + T.unsqueeze(1)
        axes = torch.einsum("bij,bqjk->bqik", R, out.axes)
        seen = ellipsoid_visibility(points.detach(), self.owner, centers.detach(), axes.detach(), out.radii.detach())
        return seen & in_image(pixels, width, height)


#: SMPL's 24 joints -> H36M_17 (the nearest SMPL joint; SMPL has no nose, its head joint stands for both)
SMPL_TO_H36M = (0, 2, 5, 8, 1, 4, 7, 3, 12, 15, 15, 16, 18, 20, 17, 19, 21)
#: SMPL's frame (x left, y up, z forward) -> the body frame (+X forward, +Y left, +Z up)
SMPL_TO_BODY = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class SMPLBody(nn.Module):
    """SMPL (Loper et al. 2015) through ``smplx.SMPL``, with the built-in body's interface (module docstring).

    Args:
        model_path: the SMPL model file (``SMPL_NEUTRAL.pkl`` etc., the pickle SMPL is distributed as) or
            a folder holding ``SMPL_<GENDER>.pkl``. Never bundled: download it from smpl.is.tue.mpg.de.
        gender: ``neutral``, ``male`` or ``female`` (picks the file in a folder).
        num_betas: shape coefficients used (at most the file's).
        joint_regressor: optional ``.npy`` (17, 6890) H36M joint regressor; default: SMPL's own
            ``J_regressor`` rows picked by :data:`SMPL_TO_H36M`.
    """

    num_joints = H36M_17.num_joints
    pose_joints = 24
    kind = "smpl"

    def __init__(self, model_path: str, gender: str = "neutral", num_betas: int = 10,
                 joint_regressor: str | None = None):  # fmt: skip
        super().__init__()
        try:
            import smplx
        except ImportError as err:  # pragma: no cover - smplx is a dependency
            raise ImportError("SMPLBody needs the smplx package: pip install smplx") from err
        path = Path(model_path)
        if not path.exists():
            raise FileNotFoundError(f"SMPL model file {path} does not exist: set model.init_args.smpl_model_path to "
                                    "SMPL's .pkl (from smpl.is.tue.mpg.de; it is never bundled)")  # fmt: skip
        self.smpl = smplx.SMPL(str(path), gender=gender, num_betas=num_betas, batch_size=1)
        for p in self.smpl.parameters():
            p.requires_grad_(False)
        self.num_betas = self.smpl.num_betas
        if joint_regressor is not None:
            A = torch.from_numpy(np.load(joint_regressor)).float()
            if A.shape != (17, self.smpl.v_template.shape[0]):
                raise ValueError(f"joint_regressor {joint_regressor}: expected (17, {self.smpl.v_template.shape[0]}), "
                                 f"got {tuple(A.shape)}")  # fmt: skip
        else:
            A = self.smpl.J_regressor[list(SMPL_TO_H36M)]
        self.register_buffer("A", A.float(), persistent=False)
        self.register_buffer("to_body", SMPL_TO_BODY.clone(), persistent=False)

    @property
    def num_vertices(self) -> int:
        return self.smpl.v_template.shape[0]

    @property
    def faces(self) -> torch.Tensor:
        return self.smpl.faces_tensor

    def forward(self, theta: torch.Tensor, beta: torch.Tensor) -> BodyOutput:
        """(B, 24, 3) axis-angle (SMPL's joints; the first is the global orientation), (B, num_betas) ->
        vertices (B, 6890, 3) and joints (B, 17, 3) in the body frame, mm, pelvis joint at the origin."""
        B = theta.shape[0]
        out = self.smpl(betas=beta, global_orient=theta[:, 0], body_pose=theta[:, 1:].reshape(B, -1))
        verts = torch.einsum("ij,bnj->bni", self.to_body, out.vertices) * 1000.0
        joints = torch.einsum("jn,bnc->bjc", self.A, verts)
        root = joints[:, :1]
        return BodyOutput(vertices=verts - root, joints=joints - root)

    def visibility(self, out: BodyOutput, R: torch.Tensor, T: torch.Tensor, pixels: torch.Tensor, width: int,
                   height: int) -> torch.Tensor:  # fmt: skip
        """(B, n) visible vertices by a vertex z-buffer at the image's resolution."""
        depth = (torch.einsum("bij,bnj->bni", R, out.vertices) + T.unsqueeze(1))[..., 2]
        return zbuffer_visibility(pixels.detach(), depth.detach(), width, height)


def make_body(kind: str = "builtin", smpl_model_path: str | None = None, points_per_part: int = 48,
              radius_jitter: float = 0.0) -> nn.Module:  # fmt: skip
    """``builtin`` (:class:`BuiltinBody`) or ``smpl`` (:class:`SMPLBody`, needs ``smpl_model_path``)."""
    if kind == "builtin":
        return BuiltinBody(points_per_part, radius_jitter)
    if kind == "smpl":
        if not smpl_model_path:
            raise ValueError("body 'smpl' needs model.init_args.smpl_model_path: the SMPL .pkl you downloaded")
        return SMPLBody(smpl_model_path)
    raise ValueError(f"body {kind!r} is unknown; choose 'builtin' or 'smpl' (option model.init_args.body)")
