"""Rates of the two failure modes Schmidtke et al. report for self-supervised 3D pose from images (Sec. 5):
left/right confusion and limbs pointing the wrong way in depth.

Both are :class:`metrics.classes._GroupedPoseMetric` s (same states, same per-action means, same DDP
reduction), in percent, lower is better:

* :class:`LeftRightConfusion` (``lr_confusion``): share of poses that are closer to the ground truth after
  swapping the prediction's left and right joint labels. "Closer" is N-MPJPE (root-centred, least-squares
  scale, no rotation), because a rotation alignment would undo the failure the paper shows (a back-facing
  person predicted front-facing is a 180-degree rotation away from the swapped labels' answer).
* :class:`LimbDepthSign` (``limb_depth_sign``): share of limbs (upper arms, forearms, thighs, shins) whose
  depth direction (child minus parent z in the camera frame: away from or towards the camera) differs from
  the ground truth's, counted over the limbs whose ground-truth direction is clear (|dz| > ``min_slope``
  times the limb's length); a per-limb, not per-pose, mean.
"""

from __future__ import annotations

import torch

from datamodules.skeleton import H36M_17, Skeleton
from metrics import functional as F
from metrics.classes import _GroupedPoseMetric


class LeftRightConfusion(_GroupedPoseMetric):
    name = "lr_confusion"

    def __init__(self, skeleton: Skeleton = H36M_17, num_groups: int = 1, **kwargs):
        super().__init__(num_groups=num_groups, **kwargs)
        if not skeleton.left_right:
            raise ValueError(f"LeftRightConfusion: skeleton {skeleton.name!r} has no left/right pairs")
        self.perm = list(skeleton.flip_permutation)
        self.root = skeleton.root

    @property
    def protocol(self) -> dict[str, str]:
        return {"alignment": "scale", "unit": "% of poses", **super().protocol}

    def _values(self, pred, target):
        plain = F.n_mpjpe(pred, target, root=self.root)
        swapped = F.n_mpjpe(pred[:, self.perm], target, root=self.root)
        return 100.0 * (swapped < plain).double()


class LimbDepthSign(_GroupedPoseMetric):
    name = "limb_depth_sign"

    def __init__(self, skeleton: Skeleton = H36M_17, min_slope: float = 0.2, num_groups: int = 1, **kwargs):
        super().__init__(num_groups=num_groups, **kwargs)
        paired = {j for pair in skeleton.left_right for j in pair}
        # limbs: bones between two paired joints (not the hip/shoulder girdle bones from the centre line)
        self.limbs = [(p, c) for p, c in skeleton.bones if p in paired and c in paired]
        if not self.limbs:
            raise ValueError(f"LimbDepthSign: skeleton {skeleton.name!r} has no limbs between left/right joints")
        self.min_slope = float(min_slope)

    @property
    def protocol(self) -> dict[str, str]:
        return {"alignment": "none", "unit": "% of limbs", "limbs": str(len(self.limbs)),
                "min_slope": f"{self.min_slope:g}"}  # fmt: skip

    def _counts(self, pred, target):
        parents, children = map(list, zip(*self.limbs))
        gt = target[:, children] - target[:, parents]
        dz_pred = pred[:, children, 2] - pred[:, parents, 2]
        clear = gt[..., 2].abs() > self.min_slope * gt.norm(dim=-1)
        wrong = clear & (torch.sign(dz_pred) != torch.sign(gt[..., 2]))
        return wrong.sum(-1), clear.sum(-1)

    def update(self, pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor | None = None) -> None:
        wrong, clear = self._counts(pred.float(), target.float())
        if group is None:
            group = torch.zeros(pred.shape[0], dtype=torch.long, device=pred.device)
        group = torch.as_tensor(group, device=pred.device).long()
        self.total = self.total.index_add(0, group, 100.0 * wrong.to(self.total.dtype))
        self.count = self.count.index_add(0, group, clear.to(self.count.dtype))
