"""Batched two-view geometry for multi-view pseudo-labels: RANSAC fundamental matrices over joint
correspondences, E = K2^T F K1, the four (R, t) of E with the cheirality choice, DLT triangulation,
the vector median across view pairs, and the whole pseudo-labelling pipeline of EpipolarPose
(Kocabas et al. 2019, Sec. 3.1).

Conventions (kornia's, which this module builds on): ``x2^T F x1 = 0`` with pixel points ``x1`` in the
first and ``x2`` in the second image; ``E = K2^T F K1``; a relative motion ``(R, t)`` maps first-camera
coordinates to second-camera ones, ``X2 = R X1 + t``, with ``|t| = 1`` (the scale is unobservable).
Camera frames follow the suite (OpenCV: x right, y down, z forward).

Everything is vectorised over samples, view pairs, RANSAC hypotheses and joints: no Python loop over
samples. The one exception is the optional OpenCV backend of :func:`ransac_fundamental`, which calls
``cv2.findFundamentalMat`` once per pair (OpenCV has no batched API); see ``ransac_fundamental``.

Failures never raise and never give NaN: every estimate comes with a boolean ``valid`` mask (too few
views, degenerate (collinear) correspondences, too few RANSAC inliers, non-finite numbers, cheirality
failure), and invalid entries hold finite placeholder values that a caller must mask out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from kornia.geometry.epipolar import (
    essential_from_fundamental,
    find_fundamental,
    motion_from_essential_choose_solution,
    projection_from_KRt,
    sampson_epipolar_distance,
    triangulate_points,
)

from .geometry import mean_root_distance, root_centre

BACKENDS = ("kornia", "opencv")


def _finite(x: torch.Tensor, dims: int) -> torch.Tensor:
    """True where every element over the last ``dims`` dimensions is finite."""
    return torch.isfinite(x).flatten(-dims).all(dim=-1) if dims else torch.isfinite(x)


def spread_ratio(points: torch.Tensor) -> torch.Tensor:
    """(..., N, 2) points -> (...) second / first singular value of the centred points: 0 when collinear."""
    centred = points - points.mean(dim=-2, keepdim=True)
    s = torch.linalg.svdvals(centred.double())
    return (s[..., 1] / s[..., 0].clamp(min=1e-12)).to(points.dtype)


def _ransac_kornia(x1, x2, iterations, threshold, generator):
    """Batched RANSAC (MSAC scoring) over 8-point minimal sets: (P, N, 2) pixels -> (P, 3, 3) F, (P, N) inliers."""
    P, N, _ = x1.shape
    # iterations random 8-subsets per pair, drawn at once
    keys = torch.rand(P, iterations, N, device=x1.device, generator=generator)
    subset = keys.argsort(dim=-1)[..., :8]  # (P, I, 8)
    take = lambda x: torch.gather(x.unsqueeze(1).expand(-1, iterations, -1, -1), 2,  # noqa: E731
                                  subset.unsqueeze(-1).expand(-1, -1, -1, 2))  # fmt: skip
    hyp = find_fundamental(take(x1).reshape(-1, 8, 2), take(x2).reshape(-1, 8, 2))  # (P*I, 3, 3)
    hyp = torch.nan_to_num(hyp, nan=0.0, posinf=0.0, neginf=0.0)
    rep = lambda x: x.unsqueeze(1).expand(-1, iterations, -1, -1).reshape(-1, N, 2)  # noqa: E731
    err = sampson_epipolar_distance(rep(x1), rep(x2), hyp, squared=False).view(P, iterations, N)
    err = torch.nan_to_num(err, nan=float("inf"))
    # MSAC: truncated error, so ties in the inlier count go to the tighter fit
    cost = err.clamp(max=threshold).sum(-1)
    best = cost.argmin(dim=-1)
    inliers = err[torch.arange(P, device=x1.device), best] < threshold  # (P, N)
    # refit on the inliers (weighted 8-point), then re-read the inliers with the refit
    F = find_fundamental(x1, x2, weights=inliers.to(x1.dtype))
    F = torch.nan_to_num(F, nan=0.0, posinf=0.0, neginf=0.0)
    err = torch.nan_to_num(sampson_epipolar_distance(x1, x2, F, squared=False), nan=float("inf"))
    return F, err < threshold


def _ransac_opencv(x1, x2, iterations, threshold):
    """``cv2.findFundamentalMat`` (FM_RANSAC) per pair: (P, N, 2) -> (P, 3, 3) F, (P, N) inliers (on the CPU)."""
    import cv2
    import numpy as np

    a, b = x1.detach().double().cpu().numpy(), x2.detach().double().cpu().numpy()
    P, N, _ = a.shape
    F = np.zeros((P, 3, 3))
    inl = np.zeros((P, N), dtype=bool)
    for k in range(P):  # OpenCV has no batched API
        if not (np.isfinite(a[k]).all() and np.isfinite(b[k]).all()):
            continue
        f, m = cv2.findFundamentalMat(a[k], b[k], cv2.FM_RANSAC, threshold, 0.999, iterations)
        if f is not None and f.shape == (3, 3) and m is not None:
            F[k], inl[k] = f, m.ravel().astype(bool)
    return torch.from_numpy(F).to(x1), torch.from_numpy(inl).to(x1.device)


def ransac_fundamental(x1: torch.Tensor, x2: torch.Tensor, iterations: int = 128, threshold: float = 1.0,
                       min_inliers: int = 8, min_spread: float = 0.05, backend: str = "kornia",
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Fundamental matrices of P view pairs by RANSAC over their N correspondences.

    Args:
        x1, x2: (P, N, 2) pixel points of the first and second view (N >= 8).
        iterations: RANSAC hypotheses per pair (8-point minimal sets).
        threshold: inlier threshold on the Sampson distance (px).
        min_inliers: a pair with fewer inliers is invalid.
        min_spread: a pair whose points are (nearly) collinear in either view (second / first singular value of
            the centred points below this) is degenerate, hence invalid.
        backend: ``kornia`` (batched over pairs and hypotheses, on the tensors' device; kornia's 8-point solver
            and Sampson distance) or ``opencv`` (``cv2.findFundamentalMat`` one pair at a time, on the CPU).
        generator: random generator of the hypotheses (kornia backend).

    Returns:
        F (P, 3, 3) with ``x2^T F x1 = 0``, inliers (P, N) bool, valid (P,) bool. Invalid pairs hold finite values.
    """
    if backend not in BACKENDS:
        raise ValueError(f"ransac backend {backend!r} is unknown; choose from {BACKENDS}")
    if x1.shape[-2] < 8:
        raise ValueError(f"the fundamental matrix needs >= 8 correspondences per pair, got {x1.shape[-2]}")
    x1, x2 = x1.float(), x2.float()
    finite = _finite(x1, 2) & _finite(x2, 2)
    x1, x2 = torch.nan_to_num(x1), torch.nan_to_num(x2)
    if backend == "kornia":
        F, inliers = _ransac_kornia(x1, x2, iterations, threshold, generator)
    else:
        F, inliers = _ransac_opencv(x1, x2, iterations, threshold)
    spread = torch.minimum(spread_ratio(x1), spread_ratio(x2))
    valid = (
        finite & (spread > min_spread) & (inliers.sum(-1) >= min_inliers) & _finite(F, 2) & (F.abs().sum((-2, -1)) > 0)
    )
    return F, inliers & valid.unsqueeze(-1), valid


def essential_from_F(F: torch.Tensor, K1: torch.Tensor, K2: torch.Tensor) -> torch.Tensor:
    """E = K2^T F K1 (Kocabas et al. Sec. 3.1 write E = K^T F K for one shared K), via kornia."""
    return essential_from_fundamental(F, K1.to(F), K2.to(F))


def relative_pose(E: torch.Tensor, K1: torch.Tensor, K2: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """The (R, t) of E among its four decompositions that puts the most points in front of both cameras.

    kornia's ``motion_from_essential_choose_solution``: SVD of E -> R in {U W V^T, U W^T V^T}, t = +-u3, each
    candidate's points triangulated (DLT) and counted at positive depth in both views (the cheirality check).
    Returns R (P, 3, 3), t (P, 3) with |t| = 1, the points (P, N, 3) in the first camera's frame, and the
    count (P,) of points at positive depth in both views (restricted to ``mask``).
    """
    R, t, X, count = motion_from_essential_choose_solution(E, K1.to(E), K2.to(E), x1.to(E), x2.to(E), mask)
    return R, t.squeeze(-1), X, count


def triangulate(K1: torch.Tensor, R1: torch.Tensor, t1: torch.Tensor, K2: torch.Tensor, R2: torch.Tensor,
                t2: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Linear (DLT) triangulation (Hartley & Zisserman 12.2, kornia ``triangulate_points``) of (..., N, 2) pixel
    correspondences seen by cameras ``X_cam = R X + t`` with intrinsics K -> (..., N, 3) points in the frame of R, t."""
    P1 = projection_from_KRt(K1, R1, t1.unsqueeze(-1))
    P2 = projection_from_KRt(K2, R2, t2.unsqueeze(-1))
    return triangulate_points(P1, P2, x1, x2)


def vector_median(points: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Vector median (Astola et al. 1990) over dim -3 of (..., M, J, 3): per joint, the one of the M candidates
    with the smallest sum of Euclidean distances to the others. ``valid`` (..., M) excludes candidates (a row
    with none valid returns candidate 0). With M = 2 it returns the first valid candidate."""
    if valid is None:
        valid = torch.ones(points.shape[:-2], dtype=torch.bool, device=points.device)
    d = (points.unsqueeze(-3) - points.unsqueeze(-4)).norm(dim=-1)  # (..., M, M, J): candidate a to b
    w = valid.to(points.dtype)
    cost = (d * w[..., None, :, None]).sum(dim=-2)  # (..., M, J): sum over b
    cost = cost.masked_fill(~valid.unsqueeze(-1), float("inf"))  # (..., M, J)
    pick = cost.argmin(dim=-2, keepdim=True)  # (..., 1, J)
    return torch.gather(points, -3, pick.unsqueeze(-1).expand(*pick.shape, 3)).squeeze(-3)


def normalise_pose(pose: torch.Tensor, root: int = 0) -> torch.Tensor:
    """Root-centre (..., J, 3) and scale to unit mean distance from the root (the scale is dropped)."""
    centred = root_centre(pose, root)
    return centred / mean_root_distance(centred, root)


@dataclass
class PseudoLabels:
    """Output of :func:`pseudo_labels`: per sample the pose V in every view's camera frame, root-centred at unit
    scale (``poses`` (B, V, J, 3)); ``valid`` (B,) samples with a label; ``view_valid`` (B, V) the views whose
    label is usable in the loss (without extrinsics, a view behind a failed pair has no rotation to its frame);
    ``pair_valid`` (B, V - 1);
    ``frame_pose`` (B, J, 3) the vector median in the reference frame (the first camera's, or the world's
    with extrinsics), unit scale."""

    poses: torch.Tensor
    valid: torch.Tensor
    view_valid: torch.Tensor
    pair_valid: torch.Tensor
    frame_pose: torch.Tensor


def pseudo_labels(joints_2d: torch.Tensor, K: torch.Tensor, R: torch.Tensor | None = None, t: torch.Tensor | None = None,
                  use_extrinsics: bool = False, root: int = 0, iterations: int = 128, threshold: float = 1.0,
                  min_inliers: int = 8, min_spread: float = 0.05, min_front: float = 0.9, backend: str = "kornia",
                  generator: torch.Generator | None = None) -> PseudoLabels:  # fmt: skip
    """EpipolarPose's 3D pseudo-labels (Sec. 3.1) of B multi-view samples, batched over samples and pairs.

    For consecutive views (i, i+1): without extrinsics, F by RANSAC (:func:`ransac_fundamental`), E = K2^T F K1,
    (R, t) of E by the cheirality check, DLT triangulation of every joint in camera i's frame, scale dropped
    (root-centred, unit mean root distance); each pair's pose is rotated into camera 0's frame by chaining the
    relative rotations; the vector median across pairs gives V, which is rotated into every view's frame. With
    ``use_extrinsics`` the data's R, t give the projection matrices (world frame) and no RANSAC runs.

    Args:
        joints_2d: (B, V, J, 2) pixels (ground truth or a network's); K: (B, V, 3, 3); R, t: (B, V, 3, 3),
            (B, V, 3) world -> camera, needed for ``use_extrinsics`` only.
        min_front: a pair whose triangulation puts fewer than this fraction of joints in front of both
            cameras fails the cheirality check (invalid).
        the rest: see :func:`ransac_fundamental`.

    A sample with fewer than two views or no valid pair is invalid (``valid`` False); nothing raises.
    """
    B, V, J, _ = joints_2d.shape
    dev, dtype = joints_2d.device, torch.float32
    if V < 2:
        zeros = torch.zeros(B, V, J, 3, device=dev, dtype=dtype)
        none = torch.zeros(B, dtype=torch.bool, device=dev)
        return PseudoLabels(zeros, none, none.view(B, 1).expand(B, V), torch.zeros(B, 0, dtype=torch.bool, device=dev), zeros[:, 0] if V else
                            torch.zeros(B, J, 3, device=dev))  # fmt: skip
    x = joints_2d.float()
    K = K.float()
    x1, x2 = x[:, :-1].reshape(-1, J, 2), x[:, 1:].reshape(-1, J, 2)  # (P, J, 2), P = B (V - 1)
    K1, K2 = K[:, :-1].reshape(-1, 3, 3), K[:, 1:].reshape(-1, 3, 3)
    finite = _finite(x1, 2) & _finite(x2, 2) & _finite(K1, 2) & _finite(K2, 2)
    # non-finite input would make the eigen-solvers of the triangulation fail: such pairs get a placeholder
    placeholder = lambda a, b: torch.where(finite.view(-1, *([1] * (a.dim() - 1))), a, b)  # noqa: E731
    grid = torch.linspace(-1, 1, J, device=dev)
    dummy = torch.stack([grid, grid.square()], -1).expand_as(x1)
    x1, x2 = placeholder(torch.nan_to_num(x1), dummy), placeholder(torch.nan_to_num(x2), dummy)
    K1, K2 = (
        placeholder(torch.nan_to_num(K1), torch.eye(3, device=dev)),
        placeholder(torch.nan_to_num(K2), torch.eye(3, device=dev)),
    )
    if use_extrinsics:
        if R is None or t is None:
            raise ValueError("pseudo_labels(use_extrinsics=True) needs the cameras' R and t (batch keys 'R', 't')")
        R, t = R.float(), t.float()
        Rw1, Rw2 = R[:, :-1].reshape(-1, 3, 3), R[:, 1:].reshape(-1, 3, 3)
        tw1, tw2 = t[:, :-1].reshape(-1, 3), t[:, 1:].reshape(-1, 3)
        X = triangulate(K1, Rw1, tw1, K2, Rw2, tw2, x1, x2)  # world frame
        d1 = (X @ Rw1.transpose(-1, -2) + tw1.unsqueeze(-2))[..., 2]
        d2 = (X @ Rw2.transpose(-1, -2) + tw2.unsqueeze(-2))[..., 2]
        front = ((d1 > 0) & (d2 > 0)).float().mean(-1)
        valid = finite & (front >= min_front)
        to_ref = torch.eye(3, device=dev).expand(B * (V - 1), 3, 3)  # already in the reference (world) frame
    else:
        F, inliers, valid = ransac_fundamental(
            x1, x2, iterations, threshold, min_inliers, min_spread, backend, generator
        )
        valid = valid & finite
        E = essential_from_F(F, K1, K2)
        try:
            Rrel, trel, X, count = relative_pose(E, K1, K2, x1, x2, inliers)
        except torch.linalg.LinAlgError:  # a solver that did not converge: drop the whole batch, never crash
            Rrel, trel = torch.eye(3, device=dev).expand_as(E).clone(), torch.zeros(E.shape[0], 3, device=dev)
            X, count = torch.zeros_like(x1[..., :1]).expand(-1, -1, 3).clone(), torch.zeros(E.shape[0], device=dev)
            valid = torch.zeros_like(valid)
        # cheirality over every joint of the chosen (R, t), not just the inliers the choice was made on
        d2 = (X @ Rrel.transpose(-1, -2) + trel.unsqueeze(-2))[..., 2]
        front = ((X[..., 2] > 0) & (d2 > 0)).float().mean(-1)
        valid = valid & (count > 0) & (front >= min_front)
        # chain the relative rotations: camera i -> camera 0 is (R_{0->1} ... R_{i-1->i})^T
        Rrel = torch.where(valid.view(-1, 1, 1), Rrel, torch.eye(3, device=dev)).view(B, V - 1, 3, 3)
        chain = [torch.eye(3, device=dev).expand(B, 3, 3)]  # camera 0 -> camera v
        for i in range(V - 1):  # over views (a handful), not samples
            chain.append(Rrel[:, i] @ chain[-1])
        chain = torch.stack(chain, 1)  # (B, V, 3, 3)
        to_ref = chain[:, :-1].transpose(-1, -2).reshape(-1, 3, 3)  # camera i -> camera 0
    X = normalise_pose(torch.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0), root)
    valid = valid & _finite(X, 2) & (X.abs().amax((-2, -1)) < 1e3)
    X = torch.where(valid.view(-1, 1, 1), X, torch.zeros_like(X))
    Xref = (X @ to_ref.transpose(-1, -2)).view(B, V - 1, J, 3)  # in the reference frame
    pair_valid = valid.view(B, V - 1)
    if not use_extrinsics:
        # a broken link breaks the rotation chain for every later pair of the sample
        pair_valid = pair_valid.long().cumprod(-1).bool()
    median = vector_median(Xref, pair_valid)  # (B, J, 3)
    ok = pair_valid.any(-1)
    # the reference frame -> every view's camera frame (rotation only: the pose is root-centred)
    to_view = R if use_extrinsics else chain  # reference frame -> camera v, (B, V, 3, 3)
    poses = normalise_pose(median.unsqueeze(1) @ to_view.transpose(-1, -2), root)
    if use_extrinsics:
        view_valid = ok.view(B, 1).expand(B, V)
    else:
        view_valid = torch.cat([ok.view(B, 1), pair_valid], dim=1)
    poses = torch.where(view_valid.view(B, V, 1, 1), poses, torch.zeros_like(poses))
    return PseudoLabels(
        poses, ok, view_valid, pair_valid, torch.where(ok.view(B, 1, 1), median, torch.zeros_like(median))
    )
