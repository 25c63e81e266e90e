"""Per-pose 3D pose metrics as pure tensor functions.

Every error function takes ``pred`` and ``target`` of shape ``(B, J, 3)`` in millimetres and returns one value per
pose, shape ``(B,)``, so callers can average over any grouping (all poses, per action, per subject) exactly: the
dataset-level number is the mean of the per-pose numbers, as in VideoPose3D and EpipolarPose.

Protocols:

* ``mpjpe`` (protocol 1): mean Euclidean joint distance after translating both poses so that the root joint
  (pelvis, index 0 of ``H36M_17``) is at the origin.
* ``p_mpjpe`` (protocol 2): mean joint distance after similarity Procrustes alignment (rotation, uniform scale,
  translation) of the prediction onto the target; reflections are not allowed.
* ``n_mpjpe``: mean joint distance after root-centring and the least-squares scale ``s = <p, t> / <p, p>``
  (Rhodin et al. 2018), for methods that only predict pose up to scale.
* ``pck`` / ``auc``: MPI-INF-3DHP's 3D PCK (joint error strictly below 150 mm after root-centring at the pelvis) and
  its area under the curve over thresholds 0, 5, ..., 150 mm.
* ``pss``: EpipolarPose's Pose Structure Score, 1 where prediction and target fall into the same k-means cluster of
  scale-normalised, root-centred poses.

Half-precision inputs are computed in float32; float64 inputs stay float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: Thresholds of the MPI-INF-3DHP PCK curve in mm: 0, 5, ..., 150 (31 values), as in its evaluation code.
AUC_THRESHOLDS_MM: tuple[float, ...] = tuple(float(t) for t in range(0, 151, 5))

#: Poses per chunk in the chunked helpers (P-MPJPE, PSS labels): bounds temporary memory to a few hundred MB.
CHUNK_POSES = 1 << 17

JointsArg = Sequence[int] | torch.Tensor | None


def _float(x: torch.Tensor) -> torch.Tensor:
    """Integer and half inputs become float32; float32/float64 are kept."""
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.to(torch.float32)


def _check_poses(x: torch.Tensor, fn: str, arg: str = "poses") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {arg} must be a torch.Tensor of shape (B, J, 3), got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"{fn}: {arg} must have shape (B, J, 3), got {tuple(x.shape)}; reshape to (-1, J, 3) first")
    return _float(x)


def _check_pair(pred: torch.Tensor, target: torch.Tensor, fn: str) -> tuple[torch.Tensor, torch.Tensor]:
    pred = _check_poses(pred, fn, "pred")
    target = _check_poses(target, fn, "target")
    if pred.shape != target.shape:
        raise ValueError(f"{fn}: pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.device != target.device:
        raise ValueError(f"{fn}: pred is on {pred.device} but target on {target.device}; move both to one device")
    dtype = torch.promote_types(pred.dtype, target.dtype)
    return pred.to(dtype), target.to(dtype)


def _check_root(root: int | None, num_joints: int, fn: str) -> None:
    if root is not None and not -num_joints <= root < num_joints:
        raise ValueError(f"{fn}: root={root} is out of range for {num_joints} joints")


def _joint_index(joints: JointsArg, num_joints: int, device: torch.device, fn: str) -> torch.Tensor | None:
    """Validated (J',) int64 index of the evaluated joints, or None for all joints."""
    if joints is None:
        return None
    index = torch.as_tensor(joints, dtype=torch.long).flatten()
    if index.numel() == 0:
        raise ValueError(f"{fn}: joints is empty; pass None to evaluate all {num_joints} joints")
    if int(index.min()) < 0 or int(index.max()) >= num_joints:
        raise ValueError(f"{fn}: joints {index.tolist()} out of range for poses with {num_joints} joints")
    return index.to(device)


def root_centre(x: torch.Tensor, root: int | None = 0) -> torch.Tensor:
    """Translate each pose so that joint ``root`` is at the origin.

    Args:
        x: (B, J, D) joints (mm).
        root: index of the root joint (0 = pelvis in ``H36M_17``); None returns ``x`` unchanged.

    Returns:
        (B, J, D) root-relative joints (mm).
    """
    x = _check_poses(x, "root_centre", "x")
    if root is None:
        return x
    _check_root(root, x.shape[1], "root_centre")
    return x - x[:, root].unsqueeze(1)


def joint_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Euclidean distance per joint, without any alignment.

    Args:
        pred, target: (B, J, 3) joints (mm).

    Returns:
        (B, J) distances (mm).
    """
    pred, target = _check_pair(pred, target, "joint_errors")
    return torch.linalg.vector_norm(pred - target, dim=-1)


def _select(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    return x if index is None else x.index_select(1, index)


def mpjpe(pred: torch.Tensor, target: torch.Tensor, root: int | None = 0, joints: JointsArg = None) -> torch.Tensor:
    """Mean per-joint position error, protocol 1.

    Args:
        pred, target: (B, J, 3) joints (mm).
        root: both poses are translated so that this joint is at the origin before measuring; None = no alignment
            (absolute error, e.g. for camera-space root prediction).
        joints: indices of the joints averaged over (after root-centring); None = all joints.

    Returns:
        (B,) mean joint distance per pose (mm).
    """
    pred, target = _check_pair(pred, target, "mpjpe")
    _check_root(root, pred.shape[1], "mpjpe")
    index = _joint_index(joints, pred.shape[1], pred.device, "mpjpe")
    err = torch.linalg.vector_norm(root_centre(pred, root) - root_centre(target, root), dim=-1)
    return _select(err, index).mean(dim=-1)


def t_mpjpe(pred: torch.Tensor, target: torch.Tensor, joints: JointsArg = None) -> torch.Tensor:
    """MPJPE after the best translation (centroid alignment over the averaged joints): the reconstruction error
    "up to translation" of Tung et al. 2017. pred, target: (B, J, 3) mm -> (B,) mm."""
    pred, target = _check_pair(pred, target, "t_mpjpe")
    index = _joint_index(joints, pred.shape[1], pred.device, "t_mpjpe")
    pred, target = (x if index is None else x.index_select(1, index) for x in (pred, target))
    err = torch.linalg.vector_norm(
        (pred - pred.mean(1, keepdim=True)) - (target - target.mean(1, keepdim=True)), dim=-1
    )
    return err.mean(dim=-1)


def _det3(m: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) -> (B,) determinants as the triple product (several times faster than LU for tiny matrices)."""
    return (torch.linalg.cross(m[:, 0], m[:, 1]) * m[:, 2]).sum(dim=-1)


def _procrustes(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mu_pred = pred.mean(dim=1, keepdim=True)
    mu_target = target.mean(dim=1, keepdim=True)
    p = pred - mu_pred
    t = target - mu_target
    # Row-vector form: find rotation R, scale s minimising ||s p R - t||. With H = p^T t = U S V^T the optimum is
    # R = U D V^T, s = tr(D S) / ||p||^2, D = diag(1, 1, det(U V^T)) (Umeyama 1991). D forbids reflections: without it
    # a mirrored (left/right swapped) prediction could be "aligned" to a perfect score.
    h = p.transpose(1, 2) @ t
    # LAPACK/cuSOLVER raise on NaN/inf; a diverged prediction should score NaN like MPJPE does, not crash evaluation.
    finite = torch.isfinite(h).all(dim=(1, 2))
    h = torch.where(finite[:, None, None], h, torch.zeros((), dtype=h.dtype, device=h.device))
    u, s, vh = torch.linalg.svd(h)
    det = _det3(u) * _det3(vh)
    d = torch.ones_like(s)
    d[:, -1] = torch.where(det < 0, -1.0, 1.0).to(s.dtype)
    rot = (u * d[:, None, :]) @ vh
    # A degenerate prediction (all joints at one point) has ||p|| = 0; clamping gives s = 0, i.e. the aligned pose
    # collapses onto the target centroid, which is the least-squares answer.
    norm_sq = p.square().sum(dim=(1, 2)).clamp_min(torch.finfo(p.dtype).tiny)
    scale = (s * d).sum(dim=-1) / norm_sq
    scale = torch.where(finite, scale, torch.full((), float("nan"), dtype=scale.dtype, device=scale.device))
    return scale[:, None, None] * (p @ rot) + mu_target


def procrustes_align(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Similarity-align ``pred`` onto ``target`` (rotation + uniform scale + translation, no reflection).

    Uses a batched ``torch.linalg.svd`` of the 3x3 cross-covariance, with the determinant sign correction so that the
    result is a proper rotation even when a reflection would fit better.

    Args:
        pred, target: (B, J, 3) joints (mm).

    Returns:
        (B, J, 3) aligned prediction (mm), in the target's frame.
    """
    pred, target = _check_pair(pred, target, "procrustes_align")
    if pred.shape[-1] != 3:
        raise ValueError(f"procrustes_align: expects 3D joints (B, J, 3), got {tuple(pred.shape)}")
    return _procrustes(pred, target)


def p_mpjpe(pred: torch.Tensor, target: torch.Tensor, joints: JointsArg = None) -> torch.Tensor:
    """Procrustes-aligned MPJPE, protocol 2.

    Poses are processed in chunks of ``CHUNK_POSES`` so that millions of poses fit in memory.

    Args:
        pred, target: (B, J, 3) joints (mm).
        joints: indices of the evaluated joints; the alignment is fitted on these joints only. None = all joints.

    Returns:
        (B,) mean joint distance per pose after similarity alignment (mm).
    """
    pred, target = _check_pair(pred, target, "p_mpjpe")
    if pred.shape[-1] != 3:
        raise ValueError(f"p_mpjpe: expects 3D joints (B, J, 3), got {tuple(pred.shape)}")
    index = _joint_index(joints, pred.shape[1], pred.device, "p_mpjpe")
    pred, target = _select(pred, index), _select(target, index)
    out = [
        torch.linalg.vector_norm(_procrustes(p, t) - t, dim=-1).mean(dim=-1)
        for p, t in zip(pred.split(CHUNK_POSES), target.split(CHUNK_POSES))
    ]
    return torch.cat(out) if out else pred.new_zeros(0)


def medoid_pose(poses: torch.Tensor, candidates: int = 128, references: int = 512) -> torch.Tensor:
    """The best constant prediction under P-MPJPE: the pose with the lowest mean P-MPJPE to the others.

    Searched among ``candidates`` evenly spaced poses against ``references`` evenly spaced ones (consecutive frames
    are near copies, so a spread-out subset loses little: on the image table's 160k training poses, 128 x 512 and
    1024 x 4096 pick poses that score within 1 mm of each other on its test split, 124 mm). Deterministic, so every
    DDP rank picks the same pose.

    Args:
        poses: (N, J, 3) joints (mm), e.g. the training poses.

    Returns:
        (J, 3) one of ``poses``.
    """
    poses = _float(_check_poses(poses, "medoid_pose"))
    if poses.shape[-1] != 3 or poses.shape[0] == 0:
        raise ValueError(f"medoid_pose: expects (N > 0, J, 3) joints, got {tuple(poses.shape)}")
    n = poses.shape[0]
    cand = poses[torch.linspace(0, n - 1, min(candidates, n), device=poses.device).round().long()]
    ref = poses[torch.linspace(0, n - 1, min(references, n), device=poses.device).round().long()]
    pairs = (cand[:, None].expand(-1, len(ref), -1, -1), ref[None].expand(len(cand), -1, -1, -1))
    err = p_mpjpe(*(x.reshape(-1, *poses.shape[1:]) for x in pairs)).view(len(cand), len(ref)).mean(dim=1)
    return cand[err.argmin()]


def n_mpjpe(pred: torch.Tensor, target: torch.Tensor, root: int | None = 0, joints: JointsArg = None) -> torch.Tensor:
    """Scale-normalised MPJPE.

    Both poses are root-centred, then ``pred`` is multiplied by the least-squares scale ``s = <p, t> / <p, p>``
    (per pose, over the evaluated joints and all coordinates), so the score ignores a global scale error.

    Args:
        pred, target: (B, J, 3) joints (mm).
        root: root joint for centring; None = no centring.
        joints: indices of the evaluated joints (selected after root-centring); None = all joints.

    Returns:
        (B,) mean joint distance per pose after scaling (mm).
    """
    pred, target = _check_pair(pred, target, "n_mpjpe")
    _check_root(root, pred.shape[1], "n_mpjpe")
    index = _joint_index(joints, pred.shape[1], pred.device, "n_mpjpe")
    p = _select(root_centre(pred, root), index)
    t = _select(root_centre(target, root), index)
    scale = (p * t).sum(dim=(1, 2)) / p.square().sum(dim=(1, 2)).clamp_min(torch.finfo(p.dtype).tiny)
    return torch.linalg.vector_norm(scale[:, None, None] * p - t, dim=-1).mean(dim=-1)


def _root_errors(pred: torch.Tensor, target: torch.Tensor, joints: JointsArg, root: int | None, fn: str):
    pred, target = _check_pair(pred, target, fn)
    _check_root(root, pred.shape[1], fn)
    index = _joint_index(joints, pred.shape[1], pred.device, fn)
    # Centre on the root before selecting joints: the 14-joint MPI-INF-3DHP subset excludes the pelvis itself.
    err = torch.linalg.vector_norm(root_centre(pred, root) - root_centre(target, root), dim=-1)
    return _select(err, index)


def pck(
    pred: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 150.0,
    joints: JointsArg = None,
    root: int | None = 0,
) -> torch.Tensor:
    """3D Percentage of Correct Keypoints (MPI-INF-3DHP convention).

    A joint is correct when its error after root-centring is **strictly less than** ``threshold``.

    Args:
        pred, target: (B, J, 3) joints (mm).
        threshold: distance threshold (mm).
        joints: indices of the evaluated joints (e.g. ``H36M_14_SUBSET``); None = all joints.
        root: root joint for centring (pelvis); None = no centring.

    Returns:
        (B,) fraction of correct joints per pose, in [0, 1].
    """
    err = _root_errors(pred, target, joints, root, "pck")
    return (err < threshold).to(err.dtype).mean(dim=-1)


def auc(
    pred: torch.Tensor,
    target: torch.Tensor,
    thresholds: Sequence[float] | torch.Tensor | None = None,
    joints: JointsArg = None,
    root: int | None = 0,
) -> torch.Tensor:
    """Area under the 3D PCK curve: the mean of ``pck`` over ``thresholds``.

    The default thresholds are MPI-INF-3DHP's 0, 5, ..., 150 mm (31 values, ``AUC_THRESHOLDS_MM``). Because PCK uses a
    strict ``<``, PCK at 0 mm is always 0, so a perfect prediction scores 30/31 = 0.968, matching the reference
    evaluation code. Computed exactly via ``searchsorted`` (no (B, J, T) comparison tensor).

    Args:
        pred, target: (B, J, 3) joints (mm).
        thresholds: (T,) thresholds (mm), any order; None = 0:5:150.
        joints: indices of the evaluated joints; None = all joints.
        root: root joint for centring; None = no centring.

    Returns:
        (B,) AUC per pose, in [0, 1].
    """
    err = _root_errors(pred, target, joints, root, "auc")
    thr = torch.as_tensor(AUC_THRESHOLDS_MM if thresholds is None else thresholds, dtype=err.dtype, device=err.device)
    thr = thr.flatten().sort().values
    if thr.numel() == 0:
        raise ValueError("auc: thresholds is empty; pass None for MPI-INF-3DHP's 0:5:150 mm")
    # For each joint, the number of thresholds t with err < t is T minus the number with t <= err.
    num_le = torch.searchsorted(thr, err.contiguous(), right=True)
    return (thr.numel() - num_le).to(err.dtype).mean(dim=-1) / thr.numel()


def pss_normalise(poses: torch.Tensor, root: int | None = 0) -> torch.Tensor:
    """Root-centre each pose and scale it to unit Frobenius norm (the PSS pose space).

    Args:
        poses: (B, J, 3) joints (mm).
        root: root joint for centring.

    Returns:
        (B, J*3) unit-norm flattened poses (unitless). An all-zero pose stays zero.
    """
    x = root_centre(_check_poses(poses, "pss_normalise"), root).flatten(1)
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def fit_pss_centroids(
    poses: torch.Tensor | np.ndarray,
    k: int = 50,
    seed: int = 0,
    max_poses: int = 100_000,
    n_init: int = 1,
) -> torch.Tensor:
    """Fit the k-means cluster centres of the Pose Structure Score on (training) poses.

    Args:
        poses: (N, J, 3) joints (mm), e.g. ``datamodule.train_poses_3d()``.
        k: number of clusters (EpipolarPose reports PSS with k = 50 and 100).
        seed: seeds both the subsampling and k-means, so the result is deterministic.
        max_poses: at most this many poses (a seeded random subset) are clustered; consecutive video frames are
            nearly identical, so a subset loses little and keeps fitting to seconds.
        n_init: k-means++ restarts (the best inertia wins); 1 is scikit-learn's "auto" for k-means++.

    Returns:
        (k, J*3) float32 centroids in the ``pss_normalise`` space.
    """
    from sklearn.cluster import KMeans

    poses = torch.as_tensor(poses)
    # Normalise in float64, cluster in float32: unit-norm vectors need no more, and it halves k-means' memory traffic.
    x = pss_normalise(poses.to(torch.float64)).to(torch.float32).cpu().numpy()
    if x.shape[0] < k:
        raise ValueError(f"fit_pss_centroids: need at least k={k} poses, got {x.shape[0]}")
    if x.shape[0] > max_poses:
        rng = np.random.default_rng(seed)
        x = x[np.sort(rng.choice(x.shape[0], size=max_poses, replace=False))]
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
    return torch.from_numpy(km.cluster_centers_).to(torch.float32)


def pss_labels(poses: torch.Tensor, centroids: torch.Tensor, chunk_size: int = CHUNK_POSES) -> torch.Tensor:
    """Index of the nearest PSS centroid for each pose.

    Args:
        poses: (B, J, 3) joints (mm).
        centroids: (k, J*3) centroids from ``fit_pss_centroids``.
        chunk_size: poses per chunk; bounds the (chunk, k) distance matrix.

    Returns:
        (B,) int64 cluster ids in [0, k).
    """
    x = pss_normalise(poses)
    if not isinstance(centroids, torch.Tensor) or centroids.ndim != 2 or centroids.shape[1] != x.shape[1]:
        shape = tuple(centroids.shape) if isinstance(centroids, torch.Tensor) else type(centroids).__name__
        raise ValueError(
            f"pss_labels: centroids must have shape (k, {x.shape[1]}) for poses with {poses.shape[1]} joints, got "
            f"{shape}; fit them on poses of the same skeleton"
        )
    c = centroids.to(device=x.device, dtype=x.dtype)
    # argmin ||x - c||^2 = argmin (||c||^2 - 2 x.c); one matmul per chunk and no square root.
    c_sq = c.square().sum(dim=1)
    out = [torch.addmm(c_sq, chunk, c.T, alpha=-2.0).argmin(dim=1) for chunk in x.split(chunk_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def pss(pred: torch.Tensor, target: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Pose Structure Score per pose: 1.0 where ``pred`` and ``target`` have the same nearest centroid.

    Args:
        pred, target: (B, J, 3) joints (mm).
        centroids: (k, J*3) centroids from ``fit_pss_centroids``.

    Returns:
        (B,) 0.0 / 1.0 per pose (0 for a non-finite prediction); the data-set PSS is its mean.
    """
    pred, target = _check_pair(pred, target, "pss")
    same = pss_labels(pred, centroids) == pss_labels(target, centroids)
    # argmin over a NaN row returns some index; a non-finite prediction must count as a miss.
    return (same & torch.isfinite(pred).all(dim=(1, 2))).to(pred.dtype)
