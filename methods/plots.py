"""Skeleton plots of predictions against ground truth."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from datamodules.skeleton import Skeleton
from metrics import procrustes_align


def _colour(name: str) -> str:
    return "tab:red" if name.startswith("R") else "tab:blue" if name.startswith("L") else "black"


def plot_pose_pairs(pred: torch.Tensor, target: torch.Tensor, skeleton: Skeleton, path: Path) -> Path:
    """Plot (N, J, 3) predictions (aligned to the target by similarity Procrustes) over ground truth.

    Written atomically; camera frame (x right, y down, z forward) shown from the front and the side.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aligned = procrustes_align(pred.double(), target.double()).float()
    target = target - target[:, skeleton.root : skeleton.root + 1]
    aligned = aligned - aligned[:, skeleton.root : skeleton.root + 1]
    n = pred.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.2), squeeze=False)
    for i in range(n):
        for row, (a, b, label) in enumerate(((0, 1, "front (x, y)"), (2, 1, "side (z, y)"))):
            ax = axes[row, i]
            for parent, child in skeleton.bones:
                c = _colour(skeleton.joints[child])
                ax.plot(target[i, [parent, child], a], target[i, [parent, child], b], color=c, alpha=0.35, lw=3)
                ax.plot(aligned[i, [parent, child], a], aligned[i, [parent, child], b], color=c, lw=1.2)
            ax.invert_yaxis()
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label)
    fig.suptitle("prediction (thin) over ground truth (thick)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)
    return path
