"""``make bench``: throughput figures on this machine (not a test: it prints numbers, it asserts nothing).

* metric throughput: poses/s for P-MPJPE and PSS@50 on 1M random 17-joint poses;
* SVMAC training throughput: samples/s through the Lightning training loop (CPU-sized model);
* the supervised image reference at the CPU size of ``configs/cpu_images.yaml`` (ResNet-18, 64 px):
  images/s of the training loader alone (SyntheticHumans rendering in its worker), of the training
  step alone (one batch held in memory), and of the whole Lightning loop; the loader must outrun the step;
* neural rendering: posed Gaussian templates rendered per second at 64 and 128 px (64 samples per ray);
* plus the benchmarks of :data:`OPTIONAL` when present: BVH parsing, rendering, EpipolarPose's pseudo-labelling and
  steps, and every image method's training loop at its CPU size (:mod:`benchmark.bench_methods`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import time

import lightning as L
import torch
from rich.console import Console
from rich.table import Table


def best_time(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_metrics(num_poses: int = 1_000_000, chunk: int = 100_000) -> dict[str, float]:
    from metrics import fit_pss_centroids, p_mpjpe, pss

    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(num_poses, 17, 3, generator=gen) * 200
    target = pred + torch.randn(num_poses, 17, 3, generator=gen) * 30
    centroids = fit_pss_centroids(target[:20_000], 50, seed=0)

    def run(fn):
        return lambda: [fn(pred[i : i + chunk], target[i : i + chunk]) for i in range(0, num_poses, chunk)]

    return {
        "P-MPJPE poses/s": num_poses / best_time(run(p_mpjpe), repeats=1),
        "PSS@50 poses/s": num_poses / best_time(run(lambda p, t: pss(p, t, centroids)), repeats=1),
    }


class BatchTimer(L.Callback):
    """Items per second over the training batches after the first ``warmup`` (across epochs); ``count(batch)`` says
    how many items a batch holds (default: samples, the leading dimension of ``joints_3d``)."""

    def __init__(self, warmup: int, count=lambda batch: batch["joints_3d"].shape[0]):
        self.warmup, self.count = warmup, count
        self.batches, self.items, self.start, self.elapsed = 0, 0, None, 0.0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.batches += 1
        if self.batches == self.warmup:
            self.start = time.perf_counter()
        elif self.start is not None:
            self.items += self.count(batch)
            self.elapsed = time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        if self.elapsed <= 0:
            raise RuntimeError(f"BatchTimer: no batch timed after the {self.warmup} warm-up batches")
        return self.items / self.elapsed


def timed_fit(model, datamodule, timer: BatchTimer, steps: int, **trainer_args) -> float:
    """Fit ``steps`` training steps (no validation, logging or checkpoints) and return the timer's rate."""
    trainer = L.Trainer(max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                        num_sanity_val_steps=0, **trainer_args)  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    return timer.rate


def bench_svmac(steps: int = 300, width: int = 256, batch_size: int = 256) -> dict[str, float]:
    from datamodules.motion.synthetic import SyntheticPoses
    from methods.svmac import SVMAC

    dm = SyntheticPoses(batch_size=batch_size, views_per_pose=1)
    model = SVMAC(width=width, lr=2e-4, critic_lr=1e-3, critic_steps=3, eval_baselines=False, pss_k=())
    rate = timed_fit(model, dm, BatchTimer(warmup=20), steps)
    return {f"SVMAC train samples/s (width {width}, batch {batch_size}, 3 critic steps/gen step)": rate}


def bench_supervised(
    batches: int = 40, image_size: int = 64, batch_size: int = 32, workers: int = 1
) -> dict[str, float]:
    """Images/s of the training loader, of the training step alone and of both in the Lightning loop."""
    from datamodules import SyntheticHumans
    from methods.supervised import Supervised

    def data():
        return SyntheticHumans(image_size=image_size, batch_size=batch_size, num_workers=workers)

    dm = data()
    dm.setup("fit")
    loader = iter(dm.train_dataloader())
    batch = next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    loader_rate = batches * batch_size / (time.perf_counter() - start)
    del loader

    # the step alone, outside a Trainer: a constant rate (the default cosine schedule reads the trainer's budget)
    model = Supervised(
        backbone="resnet18", image_size=image_size, eval_baselines=False, pss_k=(), lr_schedule="constant"
    )
    opt = model.configure_optimizers()
    model.train()

    def step():
        loss = torch.nn.functional.l1_loss(model(batch["image"]), batch["joints_3d"][..., :3] / 1000)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step_time = best_time(lambda: [step() for _ in range(10)], repeats=2) / 10

    fresh = Supervised(backbone="resnet18", image_size=image_size, eval_baselines=False, pss_k=())
    loop_rate = timed_fit(fresh, data(), BatchTimer(warmup=5), batches + 5)
    what = f"supervised ResNet-18 {image_size}px batch {batch_size}"
    return {
        f"{what}: training loader images/s ({workers} worker)": loader_rate,
        f"{what}: training step images/s (batch in memory)": batch_size / step_time,
        f"{what}: Lightning loop images/s (loader + step)": loop_rate,
    }


def bench_template_render(sizes: tuple[int, ...] = (64, 128), batch: int = 8, samples: int = 64) -> dict[str, float]:
    """Neural rendering (Schmidtke et al.): posed 16-part Gaussian templates rendered per second, forward alone and
    forward + backward (chunks recomputed), ``samples`` per ray, at each image size."""
    from methods.neural_rendering import GaussianTemplate
    from methods.nn.gaussian_render import render_gaussians

    gen = torch.Generator().manual_seed(0)
    tpl = GaussianTemplate()
    rot = (0.3 * torch.randn(batch, tpl.num_parts, 3, generator=gen)).requires_grad_()
    figures = {}
    for size in sizes:
        K = torch.tensor([[size * 2.2, 0, size / 2], [0, size * 2.2, size / 2], [0, 0, 1.0]]).expand(batch, 3, 3)

        def render(K=K, size=size):
            posed = tpl.pose(rot, torch.ones(batch, tpl.num_parts, 3), torch.tensor([0.0, 0.0, 4.5]).expand(batch, 3))
            return render_gaussians(posed["centres"], posed["whiten"], tpl.occupancy, tpl.colours, K, (size, size),
                                    3.3, 5.7, samples)[0]  # fmt: skip

        with torch.no_grad():
            fwd = best_time(render, repeats=2)
        both = best_time(lambda: render().sum().backward(), repeats=2)
        what = f"neural rendering: templates/s at {size}px, {samples} samples/ray, batch {batch}"
        figures[f"{what} (forward)"] = batch / fwd
        figures[f"{what} (forward + backward)"] = batch / both
    return figures


OPTIONAL = ("benchmark.bench_mocap", "benchmark.bench_render", "benchmark.bench_epipolar", "benchmark.bench_methods")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="metrics and SVMAC only")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU threads to try")
    args = parser.parse_args(argv)
    console = Console()
    figures: dict[str, float] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        figures.update({f"{k} [{threads} thread(s)]": v for k, v in bench_metrics().items()})
        figures.update({f"{k} [{threads} thread(s)]": v for k, v in bench_svmac().items()})
        if not args.quick:
            figures.update({f"{k} [{threads} thread(s)]": v for k, v in bench_supervised().items()})
            figures.update({f"{k} [{threads} thread(s)]": v for k, v in bench_template_render().items()})
    table = Table(title=f"posebench throughput (torch {torch.__version__}, {os.cpu_count()} CPUs)")
    table.add_column("what")
    table.add_column("figure", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,.1f}" if value < 100 else f"{value:,.0f}")
    console.print(table)
    if not args.quick:
        for name in OPTIONAL:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError:
                continue
            console.rule(name)
            module.main([])  # their defaults, not this command's arguments
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
