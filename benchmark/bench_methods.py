"""Training throughput of the image methods at their CPU size: images per second through the Lightning training loop
(loader + step, validation off), each method built from the config stack its README command uses.

``python -m benchmark.bench_methods [--steps 30] [--warmup 5] [--only part_guided ...]`` (also part of ``make bench``)

A step of each method reads a different number of images (single images, multi-view samples, frame pairs, 2-frame
clips), so the figure counts images, not samples. The adaptation stage of Tung et al. starts from a pretraining
export; the benchmark writes one from a freshly initialised network (the speed does not depend on the weights). The
methods that read motion capture (part-guided's 3D prior, Tung et al.'s target) need ``../shared/data``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightning as L
import torch
from rich.console import Console
from rich.table import Table

from benchmark.bench import BatchTimer, timed_fit
from benchmark.config import instantiate, merge, read_config

CPU = ["configs/cpu_images.yaml"]
STACKS = {
    "supervised": ["configs/supervised.yaml", *CPU],
    "epipolar_pose": ["configs/epipolar_pose.yaml", *CPU, "configs/cpu_epipolar_pose.yaml"],
    "part_guided": ["configs/part_guided.yaml", *CPU, "configs/cpu_part_guided.yaml"],
    "neural_rendering": ["configs/neural_rendering.yaml", *CPU, "configs/cpu_neural_rendering.yaml"],
    "motion_capture": ["configs/motion_capture.yaml", *CPU, "configs/cpu_motion_capture.yaml"],
    "motion_capture_adapt": ["configs/motion_capture.yaml", "configs/motion_capture_adapt.yaml", *CPU,
                             "configs/cpu_motion_capture.yaml", "configs/cpu_motion_capture_adapt.yaml"],
}  # fmt: skip


def images(batch: dict) -> int:
    """Frames in a batch: single images (B, 3, H, W), pairs or clips (B, T, 3, H, W), views (B, V, 3, H, W)."""
    return batch["image"].shape[:-3].numel()


def build(name: str, workdir: Path) -> tuple[L.LightningModule, L.LightningDataModule]:
    cfg = read_config(STACKS[name])
    if name == "motion_capture_adapt":
        pretrain = instantiate(read_config(STACKS["motion_capture"]), "model", L.LightningModule)
        export = pretrain.export(workdir / "pretrained.pt")
        cfg = merge(cfg, {"model": {"init_args": {"pretrained_checkpoint": str(export)}}})
    model = instantiate(cfg, "model", L.LightningModule, str(STACKS[name]))
    return model, instantiate(cfg, "data", L.LightningDataModule, str(STACKS[name]))


def train_rate(name: str, steps: int, warmup: int, workdir: Path) -> float:
    model, dm = build(name, workdir)
    return timed_fit(model, dm, BatchTimer(warmup, images), steps + warmup, default_root_dir=workdir)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench_methods", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per method")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--only", nargs="+", choices=sorted(STACKS), default=list(STACKS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            figures[name] = train_rate(name, args.steps, args.warmup, Path(tmp))
    table = Table(title=f"training images/s at the CPU size ({args.threads} threads, {args.steps} steps)")
    table.add_column("method (config stack)")
    table.add_column("images/s", justify="right")
    for name, rate in figures.items():
        table.add_row(f"{name} ({' + '.join(Path(p).stem for p in STACKS[name])})", f"{rate:,.1f}")
    Console().print(table)
    return figures


if __name__ == "__main__":
    main()
