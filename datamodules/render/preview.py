"""A PNG contact sheet of rendered samples: ``python -m benchmark data preview synthetic``.

For :class:`~datamodules.render.humans.SyntheticHumans` each row is one frame seen by the rig's cameras
(image with the 2D skeleton drawn on it, one column per camera), then the first camera's mask,
part labels, depth and optical flow. Any other image data module gets one row per sample of its
first validation batch with the keys it has.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..skeleton import H36M_17, Skeleton


def flow_to_rgb(flow: torch.Tensor, max_px: float | None = None) -> np.ndarray:
    """(2, H, W) flow in px -> (H, W, 3) colour wheel image: hue = direction, saturation = magnitude."""
    import matplotlib.colors as mcolors

    u, v = flow[0].numpy(), flow[1].numpy()
    mag = np.hypot(u, v)
    scale = max_px if max_px is not None else max(float(np.percentile(mag, 99)), 1e-3)
    hue = (np.arctan2(-v, -u) / (2 * np.pi) + 0.5) % 1.0
    hsv = np.stack([hue, np.clip(mag / scale, 0, 1), np.ones_like(mag)], axis=-1)
    return mcolors.hsv_to_rgb(hsv)


def _parts_cmap():
    """Black background (label 0), then 19 distinct colours."""
    import matplotlib.colors as mcolors
    from matplotlib import colormaps

    colors = colormaps["tab20"].colors
    return mcolors.ListedColormap([(0.0, 0.0, 0.0), *colors[:19]])


def _draw_skeleton(ax, joints_2d: torch.Tensor, skeleton: Skeleton, visible: torch.Tensor | None = None) -> None:
    """Bones over an ``imshow`` image; our pixel centres are at +0.5, imshow's at integers."""
    left = {j for pair in skeleton.left_right for j in pair[:1]}
    right = {j for pair in skeleton.left_right for j in pair[1:]}
    xy = joints_2d.numpy() - 0.5
    for parent, child in skeleton.bones:
        if visible is not None and not (bool(visible[parent]) and bool(visible[child])):
            continue
        color = "tab:blue" if child in left else "tab:red" if child in right else "yellow"
        ax.plot(xy[[parent, child], 0], xy[[parent, child], 1], "-", color=color, linewidth=1.2)
    ax.plot(xy[:, 0], xy[:, 1], ".", color="white", markersize=2.5)


def _sample_batch(dm, num_samples: int) -> dict[str, torch.Tensor]:
    """``num_samples`` samples (B, V, ...) spread over the validation data."""
    from .humans import SyntheticHumans

    if isinstance(dm, SyntheticHumans):
        # Held-out subjects first (the default motion has two test subjects), spread over the split.
        for split in ("test", "val", "train"):
            try:
                ds = dm.dataset(split, "multiview")
            except (ValueError, KeyError, FileNotFoundError):
                continue
            index = torch.linspace(0, len(ds) - 1, num_samples).round().long().unique().tolist()
            return ds.__getitems__(index)
        raise ValueError(f"preview: {dm.name} has no split with samples")
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    if "image" not in batch:
        raise KeyError(f"preview: data module {type(dm).__name__} yields no 'image' key; it has {sorted(batch)}")
    batch = {k: v[:num_samples] for k, v in batch.items() if torch.is_tensor(v)}
    if batch["image"].dim() == 4:  # single view: add V = 1
        batch = {k: v.unsqueeze(1) if k in _PER_VIEW else v for k, v in batch.items()}
    return batch


def _label(dm, batch: dict[str, torch.Tensor], b: int) -> str:
    """'S7 walk f160' from the sample's ids."""
    first = lambda key: int(batch[key][b].flatten()[0])  # noqa: E731
    parts = []
    if "subject" in batch:
        parts.append(f"S{first('subject')}")
    if "action" in batch:
        names = getattr(dm, "action_names", None) or []
        a = first("action")
        parts.append(names[a] if 0 <= a < len(names) else f"action {a}")
    if "frame" in batch:
        parts.append(f"f{first('frame')}")
    return " ".join(parts)


_PER_VIEW = (
    "image",
    "mask",
    "parts",
    "depth",
    "flow",
    "joints_2d",
    "joints_2d_gt",
    "visible",
    "K",
    "R",
    "t",
    "joints_3d",
)


def preview(dm, out_png: str | Path, num_samples: int = 4) -> Path:
    """Write a contact sheet of ``num_samples`` samples of ``dm`` to ``out_png``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if num_samples < 1:
        raise ValueError(f"preview: num_samples must be >= 1, got {num_samples}")
    batch = _sample_batch(dm, num_samples)
    skeleton = getattr(dm, "skeleton", H36M_17)
    images = batch["image"]
    B, V = images.shape[:2]
    extras = [k for k in ("mask", "parts", "depth", "flow") if k in batch]
    cols = V + len(extras)
    fig, axes = plt.subplots(B, cols, figsize=(1.9 * cols, 1.9 * B + 0.4), squeeze=False)
    joints = batch.get("joints_2d_gt", batch.get("joints_2d"))
    for b in range(B):
        for v in range(V):
            ax = axes[b, v]
            ax.imshow(images[b, v].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            if joints is not None:
                vis = batch["visible"][b, v] if "visible" in batch else None
                _draw_skeleton(ax, joints[b, v], skeleton, vis)
            if b == 0:
                ax.set_title(f"camera {v}", fontsize=8)
        for c, key in enumerate(extras, start=V):
            ax = axes[b, c]
            value = batch[key][b, 0]
            if key == "flow":
                ax.imshow(flow_to_rgb(value), interpolation="nearest")
            elif key == "parts":
                ax.imshow(value.numpy(), cmap=_parts_cmap(), vmin=-0.5, vmax=19.5, interpolation="nearest")
            elif key == "depth":
                d = value[0].numpy()
                shown = np.where(d > 0, d, np.nan)
                ax.imshow(shown, cmap="viridis_r", interpolation="nearest")
            else:
                ax.imshow(value[0].float().numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if b == 0:
                ax.set_title(f"{key} (cam 0)", fontsize=8)
        axes[b, 0].set_ylabel(_label(dm, batch, b), fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    name = getattr(dm, "name", type(dm).__name__)
    fig.suptitle(f"{name}: {B} frames x {V} cameras (skeleton: ground-truth 2D; red = right, blue = left)", fontsize=9)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
