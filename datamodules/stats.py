"""``python -m benchmark data stats <config>``: what a data module holds, and a contact sheet of its poses.

:func:`data_stats` prints clips, frames and samples per split plus skeleton sanity checks (upright
fraction, figure height, bone-length spread), and draws random poses of every split from several
views so a person can see at a glance that the skeletons look human and stand upright.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from .poses import SPLITS
from .skeleton import H36M_17, Skeleton

#: (name, azimuth in degrees, elevation in degrees) of the orthographic views of the contact sheet.
VIEWS = (("front", 0.0, 0.0), ("side", 90.0, 0.0), ("oblique", 45.0, 25.0))


def _joint(skeleton: Skeleton, *names: str) -> int | None:
    return next((skeleton.joints.index(n) for n in names if n in skeleton.joints), None)


def face_forward(joints: torch.Tensor, skeleton: Skeleton = H36M_17) -> torch.Tensor:
    """(N, J, 3) world poses (Z up, mm), pelvis-centred and turned about Z so the subject faces -Y.

    The heading comes from the hip line (left hip minus right hip points to +X after the turn), so
    front and side views look the same for every sample.
    """
    root = joints[:, skeleton.root : skeleton.root + 1]
    centred = joints - root * torch.tensor([1.0, 1.0, 0.0])
    left, right = _joint(skeleton, "LHip"), _joint(skeleton, "RHip")
    if left is None or right is None:
        return centred
    across = centred[:, left, :2] - centred[:, right, :2]
    angle = torch.atan2(across[:, 1], across[:, 0])  # rotate by -angle to put the hip line on +X
    c, s = torch.cos(-angle), torch.sin(-angle)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    R = torch.stack(
        [torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1), torch.stack([zero, zero, one], -1)], -2
    )
    return centred @ R.transpose(-1, -2)


def orthographic(joints: torch.Tensor, azimuth_deg: float, elevation_deg: float) -> torch.Tensor:
    """(..., J, 3) world points (Z up) -> (..., J, 2) image-plane points (right, up) of a camera looking
    horizontally along +Y when azimuth = elevation = 0, turned by ``azimuth`` about Z and tilted down by
    ``elevation``."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    right = torch.tensor([math.cos(a), math.sin(a), 0.0])
    forward = torch.tensor([-math.sin(a) * math.cos(e), math.cos(a) * math.cos(e), -math.sin(e)])
    up = torch.linalg.cross(right, forward)
    return torch.stack([joints @ right, joints @ up], dim=-1)


def skeleton_checks(world: torch.Tensor, skeleton: Skeleton = H36M_17) -> dict[str, float]:
    """Sanity numbers of (N, J, 3) world poses in mm, Z up.

    ``upright``: fraction of poses whose head is above the pelvis; ``height_mm``: median head top
    minus lowest joint; ``bone_cv``: largest coefficient of variation of a bone length over the poses
    (a loose check: different subjects differ by a few %).
    """
    head, root = _joint(skeleton, "Head"), skeleton.root
    out: dict[str, float] = {}
    if head is not None:
        out["upright"] = float((world[:, head, 2] > world[:, root, 2]).float().mean())
        out["height_mm"] = float((world[:, head, 2] - world[..., 2].min(dim=1).values).median())
    lengths = skeleton.bone_lengths(world)
    out["bone_cv"] = float((lengths.std(dim=0) / lengths.mean(dim=0).clamp(min=1e-6)).max())
    return out


def _draw(ax, points: np.ndarray, skeleton: Skeleton, ground: float | None) -> None:
    left = {i for pair in skeleton.left_right for i in pair[:1]}
    right = {pair[1] for pair in skeleton.left_right}
    for parent, child in skeleton.bones:
        colour = "tab:blue" if child in left else "tab:red" if child in right else "0.2"
        ax.plot(*points[[parent, child]].T, color=colour, lw=2, solid_capstyle="round")
    ax.scatter(*points.T, s=6, color="k", zorder=3)
    if ground is not None:
        ax.axhline(ground, color="0.6", lw=0.8, ls="--")
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def contact_sheet(samples: list[tuple[str, dict[str, torch.Tensor]]], out_png: Path, skeleton: Skeleton = H36M_17,
                  image_size: tuple[int, int] | None = None) -> Path:  # fmt: skip
    """One column per sample: orthographic ``VIEWS`` of its world pose (rows, shared mm scale), then its
    camera image (2D joints in px, last row).

    ``samples``: (title, single-sample batch dict with ``joints_3d_world`` (J, 3) and optionally
    ``joints_2d`` (J, 2)).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(VIEWS) + 1
    fig, axes = plt.subplots(rows, len(samples), figsize=(1.9 * len(samples), 2.6 * rows), squeeze=False)
    world = face_forward(torch.stack([s["joints_3d_world"] for _, s in samples]).float(), skeleton)
    views = [orthographic(world, az, el).numpy() for _, az, el in VIEWS]  # each (N, J, 2)
    half = max(float(np.abs(v[..., 0]).max()) for v in views) + 100.0
    bottom = min(min(float(v[..., 1].min()) for v in views), 0.0) - 100.0
    top = max(float(v[..., 1].max()) for v in views) + 100.0
    for col, (title, sample) in enumerate(samples):
        for row, (view, _, elevation) in enumerate(VIEWS):
            ax = axes[row, col]
            _draw(ax, views[row][col], skeleton, ground=0.0 if elevation == 0 else None)
            ax.set_xlim(-half, half)
            ax.set_ylim(bottom, top)
            if col == 0:
                ax.set_ylabel(f"{view} view\n(mm, shared scale)", fontsize=8)
        axes[0, col].set_title(title, fontsize=7)
        ax = axes[-1, col]
        if "joints_2d" in sample:
            uv = sample["joints_2d"].float().numpy() * np.array([1.0, -1.0])  # image y points down
            _draw(ax, uv, skeleton, ground=None)
            if image_size is not None:
                w, h = image_size
                ax.add_patch(matplotlib.patches.Rectangle((0, -h), w, h, fill=False, lw=0.8, color="0.5"))
                ax.set_xlim(-0.02 * w, 1.02 * w)
                ax.set_ylim(-1.02 * h, 0.02 * h)
            if col == 0:
                ax.set_ylabel("camera image (px)", fontsize=8)
        else:
            ax.axis("off")
    fig.suptitle(
        "random poses, turned to face the front view (blue: left, red: right; dashed: ground Z = 0)", fontsize=10
    )
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


def data_stats(dm, out_png: str | Path, samples_per_split: int = 4, seed: int = 0) -> dict:
    """Print clips / frames / samples per split and skeleton checks; write a PNG contact sheet.

    Works for every :class:`datamodules.poses.PoseDataModule`; data modules with a ``summary()``
    (e.g. ``MocapPoses``) add clip counts, native frame counts and durations. Returns the numbers.
    """
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # piped output: do not squeeze the table into 80 columns
    skeleton = getattr(dm, "skeleton", H36M_17)
    summary = {row["split"]: row for row in dm.summary()} if hasattr(dm, "summary") else {}
    configured = list(summary) or list(SPLITS)
    gen = torch.Generator().manual_seed(seed)
    result: dict = {"name": getattr(dm, "name", type(dm).__name__), "splits": {}}
    picks: list[tuple[str, dict[str, torch.Tensor]]] = []
    actions = list(getattr(dm, "action_names", []))
    for split in configured:
        try:
            dataset = dm.build(split)
        except (ValueError, NotImplementedError) as err:
            console.print(f"[yellow]{split}: not available ({err})[/yellow]")
            continue
        tensors = dataset.tensors
        world = tensors["joints_3d_world"]
        row = dict(summary.get(split, {}))
        row.setdefault("clips", int(tensors["sequence"].unique().numel()))
        frame_ids = tensors["sequence"] * (int(tensors["frame"].max()) + 1) + tensors["frame"]
        row.setdefault("frames", int(frame_ids.unique().numel()))  # distinct frames; samples = frames x views
        row["samples"] = len(dataset)
        row["actions"] = int(tensors["action"].unique().numel())
        row.update(skeleton_checks(world, skeleton))
        result["splits"][split] = row
        for i in torch.randperm(len(dataset), generator=gen)[:samples_per_split].tolist():
            sample = dataset[i]
            action = actions[int(sample["action"])] if actions else str(int(sample["action"]))
            picks.append((f"{split}: {action}\nseq {int(sample['sequence'])} frame {int(sample['frame'])}", sample))

    table = Table(title=f"data: {result['name']}")
    columns = (
        "split",
        "clips",
        "frames_native",
        "frames",
        "seconds",
        "samples",
        "actions",
        "upright",
        "height_mm",
        "bone_cv",
    )
    for col in columns:
        table.add_column(col, justify="right")
    for split, row in result["splits"].items():
        cells = []
        for col in columns[1:]:
            value = row.get(col, "")
            if isinstance(value, float):
                value = f"{value:.3f}" if col in ("upright", "bone_cv") else f"{value:,.0f}"
            elif isinstance(value, int):
                value = f"{value:,}"
            cells.append(str(value))
        table.add_row(split, *cells)
    console.print(table)
    if picks:
        camera = getattr(dm, "camera", None)
        path = contact_sheet(picks, Path(out_png), skeleton, getattr(camera, "image_size", None))
        result["png"] = str(path)
        console.print(f"contact sheet: {path}")
    return result
