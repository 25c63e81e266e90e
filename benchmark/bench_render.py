"""Rendering throughput of ``SyntheticHumans``: single views per second and where the time goes.

``python -m benchmark.bench_render [--workers 2] [--batch 64] [--batches 20] [--rounds 3] [--size 128]``

1. Throughput: the training DataLoader (single-view mode, shuffled, ``--workers`` worker processes
   rendering on the fly, one thread each) is drained for ``--batches`` batches after a warm-up;
   repeated ``--rounds`` times because the CPU is shared.
2. Breakdown: one batch rendered in this process under ``torch.profiler``, split by the stages of
   ``datamodules.render.humans.render_views`` (bodies, crop, cast, shade, background, composite, flow, pose).
3. The other sampling modes (multiview, pair, clip), rendered in this process, in views per second.
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def _motion():
    from datamodules.motion.synthetic import SyntheticPoses

    # Fewer clips than the default: setup time is not what is measured, rendering is.
    return SyntheticPoses(train_subjects=(1, 2, 3), val_subjects=(4,), test_subjects=(5,), clips_per_action=1,
                          frames_per_clip=250)  # fmt: skip


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``), None elsewhere."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def throughput(dm, batches: int, warmup: int = 3) -> tuple[float, int, float | None]:
    """Single views per second drained from ``dm``'s training loader, the views counted, and the
    rendering CPU seconds per view spent in the worker processes (None if unknown)."""
    loader = dm.train_dataloader()
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    workers = [w.pid for w in getattr(it, "_workers", [])]  # private, but only for accounting
    cpu0 = [_cpu_seconds(pid) for pid in workers]
    views = 0
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        views += batch["image"].shape[0]
    elapsed = time.perf_counter() - start
    cpu1 = [_cpu_seconds(pid) for pid in workers]
    del it
    # Workers render ahead (prefetching), so their CPU time over the window is a slight overestimate.
    known = workers and None not in cpu0 + cpu1
    cpu_per_view = sum(b - a for a, b in zip(cpu0, cpu1)) / views if known else None
    return views / elapsed, views, cpu_per_view


def breakdown(dataset, batch: int) -> tuple[dict[str, float], float]:
    """Milliseconds per stage for one batch rendered in this process (one thread), and the total."""
    from torch.profiler import ProfilerActivity, profile

    from datamodules.render.humans import STAGES

    index = list(range(0, len(dataset), max(1, len(dataset) // batch)))[:batch]
    dataset.__getitems__(index)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        dataset.__getitems__(index)
        total = time.perf_counter() - start
    times = {e.key.split("/", 1)[1]: e.cpu_time_total / 1e3 for e in prof.key_averages() if e.key.startswith("render/")}
    return {s: times.get(s, 0.0) for s in STAGES}, total * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench_render", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)

    from datamodules.render.humans import SyntheticHumans

    motion = _motion()
    start = time.perf_counter()
    dm = SyntheticHumans(motion=motion, image_size=args.size, batch_size=args.batch, num_workers=args.workers)
    dm.setup("fit")
    setup_s, load = time.perf_counter() - start, os.getloadavg()[0]
    print(f"setup (motion, bodies, scenes): {setup_s:.1f} s; {len(dm.dataset('train'))} training views; "
          f"{os.cpu_count()} CPUs, load average {load:.1f}")  # fmt: skip

    rates, costs = [], []
    for r in range(args.rounds):
        rate, views, cpu = throughput(dm, args.batches)
        rates.append(rate)
        cost = f", {1e3 * cpu:.2f} ms worker CPU per view" if cpu else ""
        costs += [cpu] if cpu else []
        print(f"round {r + 1}: {rate:6.1f} single views/s at {args.size}x{args.size} ({views} views, "
              f"{args.workers} workers, batch {args.batch}{cost}; load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    print(f"best {max(rates):.1f} views/s, median {sorted(rates)[len(rates) // 2]:.1f} views/s")
    if costs and args.workers:
        cost = min(costs)
        print(f"rendering costs {1e3 * cost:.2f} CPU ms per view: {args.workers} workers on {args.workers} "
              f"otherwise idle cores would deliver about {args.workers / cost:.0f} views/s")  # fmt: skip

    torch.set_num_threads(1)
    stages, total = breakdown(dm.dataset("train"), args.batch)
    print(f"where the time goes (one batch of {args.batch} in one thread, {total:.0f} ms, "
          f"{total / args.batch:.2f} ms per view):")  # fmt: skip
    for name, ms in stages.items():
        print(f"  {name:<11}{ms:8.1f} ms  {100 * ms / total:5.1f}%")
    print(f"  {'(other)':<11}{total - sum(stages.values()):8.1f} ms")

    for mode in ("multiview", "pair", "clip"):
        ds = dm.dataset("train", mode)
        n = max(1, args.batch // ds.slots)
        index = list(range(0, len(ds), max(1, len(ds) // n)))[:n]
        ds.__getitems__(index)
        start = time.perf_counter()
        ds.__getitems__(index)
        dt = time.perf_counter() - start
        print(f"{mode:<10} {n * ds.slots / dt:6.1f} views/s in one thread ({n} samples x {ds.slots} views)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
