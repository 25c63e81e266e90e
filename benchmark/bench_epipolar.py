"""EpipolarPose throughput: pseudo-labelling in view pairs per second (RANSAC backends kornia and OpenCV, and with
extrinsics) and training images per second of both stages at the CPU size (ResNet-18, 64 px, 8 multi-view
samples = 32 images per step, one batch held in memory).

``python -m benchmark.bench_epipolar [--batch 8] [--size 64] [--iterations 128]`` (also part of ``make bench``)
"""

from __future__ import annotations

import argparse

import torch

from .bench import best_time as _best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench_epipolar", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="multi-view samples per step")
    parser.add_argument("--label-batch", type=int, default=32, help="multi-view samples per pseudo-labelling call")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=128)
    args = parser.parse_args(argv)

    from datamodules.motion.synthetic import SyntheticPoses
    from datamodules.render.humans import SyntheticHumans
    from methods.epipolar import pseudo_labels
    from methods.epipolar_pose import EpipolarPose

    motion = SyntheticPoses(train_subjects=(1,), val_subjects=(4,), test_subjects=(5,), clips_per_action=1)
    dm = SyntheticHumans(motion=motion, mode="multiview", image_size=args.size, num_workers=0)
    ds = dm.dataset("train", "multiview")
    step = max(len(ds) // args.label_batch, 1)
    labels_batch = ds.__getitems__(list(range(0, step * args.label_batch, step))[: args.label_batch])
    x = labels_batch["joints_2d_gt"] + 0.5 * torch.randn(labels_batch["joints_2d_gt"].shape)
    B, V = x.shape[:2]
    pairs = B * (V - 1)
    figures = {}
    for backend in ("kornia", "opencv"):
        sec = _best(lambda b=backend: pseudo_labels(x, labels_batch["K"], iterations=args.iterations, backend=b))
        figures[f"pseudo-labels, RANSAC {backend} ({args.iterations} hypotheses, {B} samples x {V - 1} pairs)"] = (
            pairs / sec
        )
    sec = _best(lambda: pseudo_labels(x, labels_batch["K"], labels_batch["R"], labels_batch["t"], use_extrinsics=True))
    figures[f"pseudo-labels, extrinsics ({B} samples x {V - 1} pairs)"] = pairs / sec

    batch = ds.__getitems__(list(range(args.batch)))
    images = batch["image"].flatten(0, 1)
    model = EpipolarPose(backbone="resnet18", image_size=args.size, depth_bins=32, lower_steps=1, eval_baselines=False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def train(stage: int):
        model._lower_ready = stage == 2
        for _ in range(3):
            loss = model.training_step(batch, 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    for stage in (1, 2):
        sec = _best(lambda s=stage: train(s), repeats=2) / 3
        figures[
            f"training step, stage {stage}, ResNet-18 {args.size}px, {images.shape[0]} images (batch in memory)"
        ] = images.shape[0] / sec
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        unit = "view pairs/s" if key.startswith("pseudo") else "images/s"
        print(f"{key:<{width}}  {value:>9,.0f} {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
