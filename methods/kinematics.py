"""Differentiable kinematics on a skeleton (default ``H36M_17``): rotations or local limb vectors to joints.

Batched over any leading dimensions (B, or B, V, ...); the only Python loop is over the joints in
topological order (parents come first, ``Skeleton`` guarantees it).

Rest frame of :func:`forward_kinematics` (``H36M_REST_DIRECTIONS``)
----------------------------------------------------------------------
A body frame like the world frame of the data (``docs/architecture.md``): +X forward (where the
face points), +Y to the body's left, +Z up. The rest pose is T-pose-like: legs and spine straight
down/up, arms straight out sideways:

=========================  ==============  ================================
bone ending at             direction        meaning
=========================  ==============  ================================
RHip / LHip                (0, -1, 0) / (0, 1, 0)   pelvis to the hips, sideways
R/L Knee, R/L Foot         (0, 0, -1)       legs straight down
Spine, Thorax, Neck/Nose,  (0, 0, 1)        spine and head straight up
Head
L Shoulder/Elbow/Wrist     (0, 1, 0)        left arm out to the left
R Shoulder/Elbow/Wrist     (0, -1, 0)       right arm out to the right
=========================  ==============  ================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.geometry.conversions import axis_angle_to_rotation_matrix

from datamodules.skeleton import H36M_17, Skeleton

_REST = {
    "RHip": (0, -1, 0), "RKnee": (0, 0, -1), "RFoot": (0, 0, -1),
    "LHip": (0, 1, 0), "LKnee": (0, 0, -1), "LFoot": (0, 0, -1),
    "Spine": (0, 0, 1), "Thorax": (0, 0, 1), "Neck/Nose": (0, 0, 1), "Head": (0, 0, 1),
    "LShoulder": (0, 1, 0), "LElbow": (0, 1, 0), "LWrist": (0, 1, 0),
    "RShoulder": (0, -1, 0), "RElbow": (0, -1, 0), "RWrist": (0, -1, 0),
}  # fmt: skip

#: (17, 3) unit rest direction of the bone ending at each H36M_17 joint, in the parent's frame (module
#: docstring); the root's row is zero (unused).
H36M_REST_DIRECTIONS = torch.tensor([_REST.get(name, (0, 0, 0)) for name in H36M_17.joints], dtype=torch.float32)


def forward_kinematics(
    rotations: torch.Tensor,
    bone_lengths: torch.Tensor,
    rest_directions: torch.Tensor | None = None,
    skeleton: Skeleton = H36M_17,
    root: torch.Tensor | None = None,
) -> torch.Tensor:
    """Joint positions from per-joint local rotations and bone lengths.

    ``G_j = G_parent(j) @ R_j`` (``G_root = R_root``: the root's rotation is the global orientation) and
    ``x_j = x_parent(j) + G_parent(j) @ (L_j * d_j)``: the rotation at a joint turns the bones *below*
    it (a knee rotation moves the foot, not the knee).

    Args:
        rotations: (..., J, 3) axis-angle (radians, kornia convention) or (..., J, 3, 3) matrices.
        bone_lengths: (..., J) or (J,) length of the bone ending at joint j (root entry ignored), in the
            output's units (e.g. mm).
        rest_directions: (J, 3) or (..., J, 3) direction of each bone in its parent's frame at rest,
            normalised here; default :data:`H36M_REST_DIRECTIONS` (H36M_17 only).
        root: (..., 3) root position; default the origin.

    Returns:
        (..., J, 3) joints. Bone lengths are exactly ``bone_lengths`` (rotations preserve norms).
    """
    J = skeleton.num_joints
    if rotations.dim() >= 3 and rotations.shape[-3:] == (J, 3, 3):
        mats, lead = rotations, rotations.shape[:-3]
    elif rotations.shape[-2:] == (J, 3):
        lead = rotations.shape[:-2]
        mats = axis_angle_to_rotation_matrix(rotations.reshape(-1, 3)).reshape(*lead, J, 3, 3)
    else:
        raise ValueError(
            f"forward_kinematics: rotations must be (..., {J}, 3) or (..., {J}, 3, 3), got {tuple(rotations.shape)}"
        )
    if rest_directions is None:
        if skeleton != H36M_17:
            raise ValueError(f"forward_kinematics: give rest_directions for skeleton {skeleton.name!r}")
        rest_directions = H36M_REST_DIRECTIONS
    dirs = F.normalize(rest_directions.to(mats), dim=-1)
    lengths = bone_lengths.to(mats)
    offsets = (lengths.unsqueeze(-1) * dirs).expand(*lead, J, 3)  # (..., J, 3) bone vectors in the parent frame
    origin = mats.new_zeros(*lead, 3) if root is None else root.to(mats).expand(*lead, 3)
    r = skeleton.root
    G: list[torch.Tensor | None] = [None] * J
    X: list[torch.Tensor | None] = [None] * J
    G[r], X[r] = mats[..., r, :, :], origin
    for j, p in enumerate(skeleton.parents):
        if p < 0:
            continue
        X[j] = X[p] + (G[p] @ offsets[..., j, :].unsqueeze(-1)).squeeze(-1)
        G[j] = G[p] @ mats[..., j, :, :]
    return torch.stack(X, dim=-2)


# --- Kundu et al. 2020, Sec. 3.2a: parent-relative local limb vectors ----------------------------------

#: Names of the joints that span the face plane in H36M_17: the neck is ``Thorax`` (where the shoulders
#: attach; H36M's ``Neck/Nose`` is the nose), with the two hips.
KUNDU_NECK, KUNDU_LHIP, KUNDU_RHIP = "Thorax", "LHip", "RHip"


def face_vector(pose: torch.Tensor, skeleton: Skeleton = H36M_17, eps: float = 1e-8) -> torch.Tensor:
    """Unit normal of the (neck, left hip, right hip) plane, pointing forward: (..., J, 3) -> (..., 3).

    ``normalize((rhip - neck) x (lhip - neck))``; in a body frame with +Y left and +Z up this is +X.
    """
    n, lh, rh = (skeleton.index(k) for k in (KUNDU_NECK, KUNDU_LHIP, KUNDU_RHIP))
    neck = pose[..., n, :]
    return F.normalize(torch.linalg.cross(pose[..., rh, :] - neck, pose[..., lh, :] - neck), dim=-1, eps=eps)


def _gram_schmidt(limb: torch.Tensor, face: torch.Tensor, eps: float) -> torch.Tensor:
    """(..., 3) parent limb and face vectors -> (..., 3, 3) rotation whose columns are the local axes:
    ``a = limb / |limb|``, ``b = face - (face . a) a`` normalised, ``c = a x b``."""
    a = F.normalize(limb, dim=-1, eps=eps)
    b = F.normalize(face - (face * a).sum(-1, keepdim=True) * a, dim=-1, eps=eps)
    return torch.stack([a, b, torch.linalg.cross(a, b)], dim=-1)


def _frame_joints(skeleton: Skeleton) -> frozenset[int]:
    """Joints whose limb lives in the canonical frame, not a parent-relative one: the hips and the neck
    (they define the face vector) and the root's other children (no parent limb to build a frame from)."""
    named = {skeleton.index(k) for k in (KUNDU_NECK, KUNDU_LHIP, KUNDU_RHIP)}
    return frozenset(named | {j for j, p in enumerate(skeleton.parents) if p == skeleton.root})


def canonical_rotation(pose: torch.Tensor, skeleton: Skeleton = H36M_17, eps: float = 1e-8) -> torch.Tensor:
    """(..., J, 3) pose -> (..., 3, 3) rotation ``R`` into Kundu's canonical frame C (``x_C = R @ x``).

    Rows of R: X = face vector (forward), Z = the pelvis-to-neck direction made orthogonal to X (up),
    Y = Z x X (the body's left). So C is the body frame of :data:`H36M_REST_DIRECTIONS`.
    """
    X = face_vector(pose, skeleton, eps)
    up = pose[..., skeleton.index(KUNDU_NECK), :] - pose[..., skeleton.root, :]
    Z = F.normalize(up - (up * X).sum(-1, keepdim=True) * X, dim=-1, eps=eps)
    return torch.stack([X, torch.linalg.cross(Z, X), Z], dim=-2)


def pose_to_limbs(pose: torch.Tensor, skeleton: Skeleton = H36M_17, eps: float = 1e-8):
    """Kundu et al. 2020, Sec. 3.2a: a pose to local limb vectors ``v3D`` (inverse of :func:`limbs_to_pose`).

    Args:
        pose: (..., J, 3) joints in any frame and unit.

    Returns:
        ``(limbs, bone_lengths, R)``: limbs (..., J, 3) unit limb directions — for the hips, the neck and
        the root's other children (Spine) in the canonical frame C (see :func:`canonical_rotation`), for
        every other joint in its parent's local frame (:func:`limbs_to_pose`); the root's row is zero.
        bone_lengths (..., J) (root entry 0) and R (..., 3, 3) with ``limbs_to_pose(limbs, bone_lengths)
        == (pose - pose[root]) @ R.T``.
    """
    R = canonical_rotation(pose, skeleton, eps)
    canon = (pose - pose[..., skeleton.root : skeleton.root + 1, :]) @ R.transpose(-1, -2)
    face = face_vector(canon, skeleton, eps)  # = +X up to rounding; recomputed as limbs_to_pose does
    frame_joints = _frame_joints(skeleton)
    limbs = [torch.zeros_like(canon[..., 0, :])] * skeleton.num_joints
    lengths = [torch.zeros_like(canon[..., 0, 0])] * skeleton.num_joints
    for j, p in enumerate(skeleton.parents):
        if p < 0:
            continue
        v = canon[..., j, :] - canon[..., p, :]
        lengths[j] = v.norm(dim=-1)
        v = F.normalize(v, dim=-1, eps=eps)
        if j not in frame_joints:
            frame = _gram_schmidt(canon[..., p, :] - canon[..., skeleton.parents[p], :], face, eps)
            v = (frame.transpose(-1, -2) @ v.unsqueeze(-1)).squeeze(-1)
        limbs[j] = v
    return torch.stack(limbs, dim=-2), torch.stack(lengths, dim=-1), R


def limbs_to_pose(
    local_limbs: torch.Tensor, bone_lengths: torch.Tensor, skeleton: Skeleton = H36M_17, eps: float = 1e-8
) -> torch.Tensor:
    """``p3D = T_fk(v3D)`` of Kundu et al. 2020, Sec. 3.2a: local limb vectors to a canonical pose.

    Details the paper leaves open, decided here:

    - The neck is H36M's ``Thorax``; the face vector is ``normalize((rhip - neck) x (lhip - neck))``,
      computed from the pose being built (so it is +X exactly when the canonical limbs are canonical).
    - Canonical-frame limbs: the hips, the neck, and ``Spine`` (a child of the pelvis, which has no
      parent limb to build a local frame from). Their rows are directions in C.
    - Every other joint j with parent p and grandparent g: its row is the direction in p's frame with
      columns ``a = (p - g) / |p - g|``, ``b`` = the face vector made orthogonal to a (Gram-Schmidt),
      ``c = a x b``.
    - Rows are normalised before scaling by ``bone_lengths``, so bone lengths are exact whatever the
      network outputs (the paper's "constant array of limb length magnitudes").
    - The pelvis sits at the origin. A parent limb parallel to the face vector is degenerate (``eps``).

    Args:
        local_limbs: (..., J, 3) limb vectors (any length; root row ignored).
        bone_lengths: (..., J) or (J,) length of the bone ending at each joint (root entry ignored).

    Returns:
        (..., J, 3) canonical pose (face along +X, +Z up, +Y left), root at the origin.
    """
    J = skeleton.num_joints
    if local_limbs.shape[-2:] != (J, 3):
        raise ValueError(f"limbs_to_pose: local_limbs must be (..., {J}, 3), got {tuple(local_limbs.shape)}")
    dirs = F.normalize(local_limbs, dim=-1, eps=eps)
    vecs = dirs * bone_lengths.to(dirs).unsqueeze(-1)
    frame_joints = _frame_joints(skeleton)
    X: list[torch.Tensor | None] = [None] * J
    X[skeleton.root] = torch.zeros_like(vecs[..., 0, :])
    for j, p in enumerate(skeleton.parents):  # the canonical-frame joints first: they fix the face vector
        if j in frame_joints:
            X[j] = X[p] + vecs[..., j, :] if X[p] is not None else None
    if any(X[j] is None for j in frame_joints):
        raise ValueError(f"limbs_to_pose: skeleton {skeleton.name!r} needs the neck's ancestors in the canonical frame")
    neck, lh, rh = (X[skeleton.index(k)] for k in (KUNDU_NECK, KUNDU_LHIP, KUNDU_RHIP))
    face = F.normalize(torch.linalg.cross(rh - neck, lh - neck), dim=-1, eps=eps)
    for j, p in enumerate(skeleton.parents):
        if p < 0 or j in frame_joints:
            continue
        frame = _gram_schmidt(X[p] - X[skeleton.parents[p]], face, eps)
        X[j] = X[p] + (frame @ vecs[..., j, :].unsqueeze(-1)).squeeze(-1)
    return torch.stack(X, dim=-2)
