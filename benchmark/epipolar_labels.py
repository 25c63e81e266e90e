"""``python -m benchmark epipolar-labels``: how good are EpipolarPose's pseudo-labels? (Kocabas et al., Sec. 4.1,
"Can we rely on the labels from multi-view images?")

Triangulates the 3D pseudo-labels V of multi-view training samples (:func:`methods.epipolar.pseudo_labels`, the
options of the config's model) from ground-truth 2D, from ground-truth 2D with Gaussian noise, and from a frozen
stage-1 network's 2D (``--lower``), without and with extrinsics, and prints N-MPJPE and P-MPJPE (mm) of every
usable view's label against that view's ground-truth camera-frame pose, plus the share of usable views::

    python -m benchmark epipolar-labels --config configs/epipolar_pose.yaml --config configs/cpu_images.yaml \\
        --config configs/cpu_epipolar_pose.yaml --lower runs/epipolarpose/version_0/lower_2d.pt --noise 5 1.25
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def label_errors(labels, gt: torch.Tensor, root: int) -> dict[str, torch.Tensor]:
    """Per usable view: N-MPJPE and P-MPJPE (mm) of unit-scale labels (B, V, J, 3) against ground truth (B, V, J, 3)."""
    from metrics.functional import n_mpjpe, p_mpjpe

    keep = labels.view_valid
    pred, target = labels.poses[keep], gt[keep].float()
    return {"n_mpjpe": n_mpjpe(pred, target, root), "p_mpjpe": p_mpjpe(pred, target), "views": keep.numel()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark epipolar-labels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, help="config files, layered left to right")
    parser.add_argument("--lower", help="a stage-1 network (lower_2d.pt or an EpipolarPose .ckpt) for the 'net' rows")
    parser.add_argument("--noise", type=float, nargs="*", default=[5.0], help="2D noise std (px at the image size)")
    parser.add_argument("--samples", type=int, default=512, help="multi-view training samples (evenly spaced)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--split", default="train")
    parser.add_argument("--json", help="also write the table to this JSON file")
    parser.add_argument("--figures", help="folder for labels_<2D>_<extrinsics>.png: 4 labels over their ground truth")
    args = parser.parse_args(argv)

    from benchmark.config import read_config
    from datamodules.render.humans import SyntheticHumans
    from methods.epipolar import pseudo_labels

    cfg = read_config(args.config)
    data_args = dict(cfg.get("data", {}).get("init_args", {}))
    model_args = dict(cfg.get("model", {}).get("init_args", {}))
    for key in ("batch_size", "eval_batch_size", "num_workers", "cache_dir", "mode", "eval_mode"):
        data_args.pop(key, None)
    motion = data_args.pop("motion", None)
    if isinstance(motion, dict):
        from jsonargparse import ArgumentParser

        from datamodules.poses import PoseDataModule

        p = ArgumentParser()
        p.add_argument("--motion", type=PoseDataModule)
        motion = p.instantiate_classes(p.parse_object({"motion": motion})).motion
    dm = SyntheticHumans(motion=motion, mode="multiview", num_workers=0,
                          maps=None if args.lower is not None else [], **data_args)  # fmt: skip
    ds = dm.dataset(args.split, "multiview")
    index = torch.linspace(0, len(ds) - 1, min(args.samples, len(ds))).long().unique()
    root = dm.skeleton.root
    size = int(model_args.get("image_size", dm.width))
    geometry = dict(root=root, iterations=int(model_args.get("ransac_iterations", 128)),
                    threshold=float(model_args.get("ransac_threshold", 0.015)) * size,
                    min_inliers=int(model_args.get("min_inliers", 10)), min_spread=float(model_args.get("min_spread", 0.05)),
                    min_front=float(model_args.get("min_front", 0.9)), backend=model_args.get("ransac_backend", "kornia"))  # fmt: skip
    lower = None
    if args.lower:
        from methods.epipolar_pose import EpipolarPose

        keep = {k: v for k, v in model_args.items() if k in ("backbone", "depth_bins", "deconv_layers", "filters",
                                                              "image_size", "volume_half_size")}  # fmt: skip
        lower = EpipolarPose(lower_checkpoint=args.lower, **keep).eval()
    sources = [("gt", 0.0)] + [(f"gt+noise{n:g}px", n) for n in args.noise] + ([("net", None)] if lower else [])
    gen = torch.Generator().manual_seed(0)
    results: dict[tuple[str, bool], dict[str, list]] = {}
    shown: dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]] = {}
    seconds = {False: 0.0, True: 0.0}
    net_px: list[torch.Tensor] = []
    pairs = {False: 0, True: 0}
    for chunk in index.split(args.batch):
        batch = ds.__getitems__(chunk.tolist())
        B, V = batch["K"].shape[:2]
        for name, noise in sources:
            if noise is None:
                with torch.no_grad():
                    x = lower.lower_2d(batch["image"].flatten(0, 1)).view(B, V, -1, 2)
                net_px.append((x - batch["joints_2d_gt"]).norm(dim=-1).flatten())
            else:
                x = batch["joints_2d_gt"] + noise * torch.randn(batch["joints_2d_gt"].shape, generator=gen)
            for ext in (False, True):
                start = time.perf_counter()
                labels = pseudo_labels(x, batch["K"], batch["R"], batch["t"], use_extrinsics=ext, **geometry)
                seconds[ext] += time.perf_counter() - start
                pairs[ext] += B * (V - 1)
                err = label_errors(labels, batch["joints_3d"], root)
                if (name, ext) not in shown:
                    shown[name, ext] = (labels.poses[labels.view_valid][:4], batch["joints_3d"][labels.view_valid][:4])
                acc = results.setdefault((name, ext), {"n_mpjpe": [], "p_mpjpe": [], "views": 0})
                acc["n_mpjpe"].append(err["n_mpjpe"])
                acc["p_mpjpe"].append(err["p_mpjpe"])
                acc["views"] += err["views"]
    rows = []
    for (name, ext), acc in results.items():
        n, p = torch.cat(acc["n_mpjpe"]), torch.cat(acc["p_mpjpe"])
        rows.append({"2d": name, "extrinsics": ext, "usable_views": len(p) / max(acc["views"], 1),
                     "n_mpjpe": float(n.mean()) if len(n) else float("nan"),
                     "p_mpjpe": float(p.mean()) if len(p) else float("nan"),
                     "p_mpjpe_median": float(p.median()) if len(p) else float("nan")})  # fmt: skip
    print(f"pseudo-label quality on {len(index)} {args.split} multi-view samples ({dm.views} views, "
          f"{dm.width}x{dm.height} px crops), every usable view's label vs its ground truth:")  # fmt: skip
    print(f"{'2D':<18}{'extrinsics':<12}{'usable':>8}{'N-MPJPE':>10}{'P-MPJPE':>10}{'median':>9}")
    for r in rows:
        print(f"{r['2d']:<18}{str(r['extrinsics']):<12}{r['usable_views']:>7.1%}{r['n_mpjpe']:>10.2f}"
              f"{r['p_mpjpe']:>10.2f}{r['p_mpjpe_median']:>9.2f}")  # fmt: skip
    if net_px:
        print(f"network 2D: mean joint error {float(torch.cat(net_px).mean()):.2f} px against the ground-truth 2D")
    for ext in (False, True):
        print(f"pseudo-labelling throughput ({'extrinsics' if ext else 'RANSAC'}): "
              f"{pairs[ext] / max(seconds[ext], 1e-9):.0f} view pairs/s")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.figures:
        from methods.plots import plot_pose_pairs

        for (name, ext), (pred, gt) in shown.items():
            if len(pred):
                path = Path(args.figures) / f"labels_{name}_{'extrinsics' if ext else 'ransac'}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                print(f"wrote {plot_pose_pairs(pred.float(), gt.float(), dm.skeleton, path)}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
