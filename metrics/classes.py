"""``torchmetrics.Metric`` wrappers of the per-pose metrics, with per-group (e.g. per-action) means.

Every metric keeps two states, ``total`` (G,) float64 sums of the per-pose values and ``count`` (G,) int64 pose
counts, both reduced with ``sum`` across processes. The data-set mean is ``total.sum() / count.sum()`` and the group
means are ``total / count``: the same numbers one process would get on the whole data set, whatever the sharding
(DistributedSampler padding aside), because every metric here is a mean of independent per-pose values.

Usage::

    metric = MPJPE(num_groups=len(dm.action_names))
    metric.update(pred, batch["joints_3d"], group=batch["action"])
    metric.compute()         # scalar, mean over all poses (mm)
    metric.compute_groups()  # (G,) per-action means, NaN for actions without poses
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from metrics import functional as F

_DEFAULT_THRESHOLDS = F.AUC_THRESHOLDS_MM


class _GroupedPoseMetric(Metric):
    """Mean of a per-pose value, overall and per group. Subclasses implement ``_values(pred, target) -> (B,)``."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    #: short identifier used as the result-record key.
    name: str = ""

    total: torch.Tensor
    count: torch.Tensor

    def __init__(self, num_groups: int = 1, joints: Sequence[int] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if int(num_groups) < 1:
            raise ValueError(f"{type(self).__name__}: num_groups must be >= 1, got {num_groups}")
        self.num_groups = int(num_groups)
        self.joints = None if joints is None else tuple(int(j) for j in joints)
        self._num_joints: int | None = None
        # float64 sums: a float32 running sum over millions of ~50 mm errors would drift in the 4th digit.
        self.add_state("total", torch.zeros(self.num_groups, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(self.num_groups, dtype=torch.long), dist_reduce_fx="sum")
        # per-pose values of this process, kept only while asked (the test epoch: bootstrap intervals, paired tests)
        self._keep = False
        self._kept: list[torch.Tensor] = []

    def keep_values(self, keep: bool = True) -> None:
        """Start (or stop) keeping every update's per-pose values; starting clears what was kept."""
        self._keep, self._kept = bool(keep), []

    def kept_values(self) -> torch.Tensor:
        """(N,) per-pose values of this process's updates since :meth:`keep_values`, in update order."""
        return torch.cat(self._kept) if self._kept else torch.zeros(0, dtype=self.total.dtype, device=self.device)

    def _values(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _joints_protocol(self) -> str:
        if self.joints is not None:
            return str(len(self.joints))
        return "all" if self._num_joints is None else str(self._num_joints)

    @property
    def protocol(self) -> dict[str, str]:
        """How the number was computed, for result records (all values are strings)."""
        return {"joints": self._joints_protocol()}

    def update(self, pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor | None = None) -> None:
        """Accumulate a batch.

        Args:
            pred, target: (B, J, 3) joints (mm).
            group: (B,) int64 group ids in [0, num_groups), e.g. ``batch["action"]``; None = group 0.
        """
        if isinstance(pred, torch.Tensor) and pred.ndim == 3:
            if self._num_joints is not None and pred.shape[1] != self._num_joints:
                raise ValueError(
                    f"{type(self).__name__}.update: got poses with {pred.shape[1]} joints after {self._num_joints}; "
                    "use one metric object per skeleton"
                )
            self._num_joints = int(pred.shape[1])
        values = self._values(pred, target)
        batch = values.shape[0]
        if group is None:
            group = torch.zeros(batch, dtype=torch.long, device=values.device)
        else:
            group = torch.as_tensor(group, device=values.device)
            if group.shape != (batch,) or group.is_floating_point() or group.dtype == torch.bool:
                raise ValueError(
                    f"{type(self).__name__}.update: group must be a ({batch},) integer tensor of group ids "
                    f"(e.g. batch['action']), got {group.dtype} of shape {tuple(group.shape)}"
                )
            group = group.long()
            if batch:
                lo, hi = torch.aminmax(group)
                if lo < 0 or hi >= self.num_groups:
                    raise ValueError(
                        f"{type(self).__name__}.update: group ids must lie in [0, {self.num_groups}) but range over "
                        f"[{int(lo)}, {int(hi)}]; create the metric with num_groups=len(datamodule.action_names)"
                    )
        self.total = self.total.index_add(0, group, values.detach().to(self.total.dtype))
        if self._keep:
            self._kept.append(values.detach().float())
        self.count = self.count + torch.bincount(group, minlength=self.num_groups)

    def compute(self) -> torch.Tensor:
        """Mean over all poses seen (all processes): scalar tensor, NaN if no pose was seen."""
        return (self.total.sum() / self.count.sum()).to(torch.get_default_dtype())

    def compute_groups(self) -> torch.Tensor:
        """(G,) per-group means over all processes; NaN where a group has no poses."""
        # compute() is synced by torchmetrics' wrapper; this method syncs the same way itself (unless the caller
        # already synced, e.g. inside ``metric.sync_context()``, which must then stay synced).
        if self._is_synced:
            total, count = self.total, self.count
        else:
            with self.sync_context(
                dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
            ):
                total, count = self.total.clone(), self.count.clone()
        return (total / count).to(torch.get_default_dtype())


class MPJPE(_GroupedPoseMetric):
    """Mean per-joint position error after root-centring (protocol 1), mm. See ``metrics.functional.mpjpe``."""

    name = "mpjpe"

    def __init__(self, num_groups: int = 1, joints: Sequence[int] | None = None, root: int | None = 0, **kwargs):
        super().__init__(num_groups=num_groups, joints=joints, **kwargs)
        self.root = root

    @property
    def protocol(self) -> dict[str, str]:
        return {"alignment": "none" if self.root is None else "root", **super().protocol}

    def _values(self, pred, target):
        return F.mpjpe(pred, target, root=self.root, joints=self.joints)


class TMPJPE(_GroupedPoseMetric):
    """MPJPE after the best translation (centroid alignment), mm. See ``functional.t_mpjpe``."""

    name = "t_mpjpe"

    @property
    def protocol(self) -> dict[str, str]:
        return {"alignment": "translation", **super().protocol}

    def _values(self, pred, target):
        return F.t_mpjpe(pred, target, joints=self.joints)


class PMPJPE(_GroupedPoseMetric):
    """MPJPE after similarity Procrustes alignment without reflection (protocol 2), mm. See ``functional.p_mpjpe``."""

    name = "p_mpjpe"

    @property
    def protocol(self) -> dict[str, str]:
        return {"alignment": "procrustes", **super().protocol}

    def _values(self, pred, target):
        return F.p_mpjpe(pred, target, joints=self.joints)


class NMPJPE(_GroupedPoseMetric):
    """MPJPE after root-centring and least-squares scaling of the prediction, mm. See ``functional.n_mpjpe``."""

    name = "n_mpjpe"

    def __init__(self, num_groups: int = 1, joints: Sequence[int] | None = None, root: int | None = 0, **kwargs):
        super().__init__(num_groups=num_groups, joints=joints, **kwargs)
        self.root = root

    @property
    def protocol(self) -> dict[str, str]:
        return {"alignment": "scale", **super().protocol}

    def _values(self, pred, target):
        return F.n_mpjpe(pred, target, root=self.root, joints=self.joints)


class PCK(_GroupedPoseMetric):
    """3D PCK: fraction of joints with root-centred error strictly below ``threshold`` mm (MPI-INF-3DHP)."""

    higher_is_better = True

    def __init__(
        self,
        threshold: float = 150.0,
        joints: Sequence[int] | None = None,
        num_groups: int = 1,
        root: int | None = 0,
        **kwargs,
    ):
        super().__init__(num_groups=num_groups, joints=joints, **kwargs)
        if not threshold > 0:
            raise ValueError(f"PCK: threshold must be a positive distance in mm, got {threshold}")
        self.threshold = float(threshold)
        self.root = root

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"pck{self.threshold:g}"

    @property
    def protocol(self) -> dict[str, str]:
        return {"threshold_mm": f"{self.threshold:g}", "alignment": "none" if self.root is None else "root",
                **super().protocol}  # fmt: skip

    def _values(self, pred, target):
        return F.pck(pred, target, threshold=self.threshold, joints=self.joints, root=self.root)


class AUC(_GroupedPoseMetric):
    """Area under the 3D PCK curve over ``thresholds`` (default 0, 5, ..., 150 mm; 31 values). See ``functional.auc``.

    Note: as in MPI-INF-3DHP's evaluation code, PCK at 0 mm is always 0, so a perfect prediction scores 30/31.
    """

    name = "auc"
    higher_is_better = True

    def __init__(
        self,
        thresholds: Sequence[float] | None = None,
        joints: Sequence[int] | None = None,
        num_groups: int = 1,
        root: int | None = 0,
        **kwargs,
    ):
        super().__init__(num_groups=num_groups, joints=joints, **kwargs)
        self.thresholds = tuple(float(t) for t in (_DEFAULT_THRESHOLDS if thresholds is None else thresholds))
        if not self.thresholds:
            raise ValueError("AUC: thresholds is empty; pass None for MPI-INF-3DHP's 0:5:150 mm")
        self.root = root

    @property
    def protocol(self) -> dict[str, str]:
        if sorted(self.thresholds) == list(_DEFAULT_THRESHOLDS):
            thr = "0:5:150"
        else:
            thr = ",".join(f"{t:g}" for t in self.thresholds)
        return {"thresholds_mm": thr, "alignment": "none" if self.root is None else "root", **super().protocol}

    def _values(self, pred, target):
        return F.auc(pred, target, thresholds=self.thresholds, joints=self.joints, root=self.root)


class PSS(_GroupedPoseMetric):
    """Pose Structure Score (EpipolarPose): fraction of poses whose prediction falls in the target's k-means cluster.

    Each pose is assigned to its nearest fixed centroid independently, so the per-pose match (0 or 1) does not depend
    on the other poses: summing matches and counts across processes gives exactly the single-process PSS.

    Args:
        centroids: (k, J*3) centroids from ``metrics.fit_pss_centroids`` / ``metrics.centroids_for``. They are a
            non-persistent buffer: they follow ``.to(device)`` but are not written into checkpoints.
        num_groups: number of groups for ``compute_groups``.
    """

    higher_is_better = True

    centroids: torch.Tensor

    def __init__(self, centroids: torch.Tensor, num_groups: int = 1, **kwargs):
        super().__init__(num_groups=num_groups, **kwargs)
        if not isinstance(centroids, torch.Tensor) or centroids.ndim != 2 or centroids.shape[1] % 3:
            shape = tuple(centroids.shape) if isinstance(centroids, torch.Tensor) else type(centroids).__name__
            raise ValueError(f"PSS: centroids must be a (k, J*3) tensor, got {shape}; see metrics.centroids_for")
        self.register_buffer("centroids", centroids.detach().float().clone(), persistent=False)

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"pss{self.k}"

    @property
    def protocol(self) -> dict[str, str]:
        return {"k": str(self.k), **super().protocol}

    def _joints_protocol(self) -> str:
        return str(self.centroids.shape[1] // 3)

    def _values(self, pred, target):
        return F.pss(pred, target, self.centroids)
