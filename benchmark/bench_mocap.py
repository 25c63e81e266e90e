"""Time parsing a motion-capture folder cold (empty cache) and warm (cache filled by the cold run).

    python -m benchmark.bench_mocap [--root ../shared/data/bandai] [--workers N] [--fps 10] [--json out.json]

Issue 3 asks for all of ``../shared/data/bandai`` in under 2 minutes cold and under 10 seconds warm.
The cold run uses a fresh temporary cache folder (deleted afterwards unless ``--cache-dir`` is given),
so the numbers do not depend on what an earlier run left in ``~/.cache/posebench``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from datamodules.motion.mocap import MocapPoses

COLD_LIMIT_S = 120.0
WARM_LIMIT_S = 10.0


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(root: str, cache_dir: Path, workers: int | None, fps: float | None) -> dict:
    """Build a data module over ``root`` and time its listing, cold parse, warm parse and dataset build."""
    make = lambda: MocapPoses(train={"roots": [root]}, fps=fps, cache_dir=str(cache_dir), parse_workers=workers)  # noqa: E731
    dm, t_list = _timed(make)
    clips, t_cold = _timed(lambda: dm.parsed("train"))
    dm_warm, t_list_warm = _timed(make)
    clips_warm, t_warm = _timed(lambda: dm_warm.parsed("train"))
    dataset, t_build = _timed(lambda: dm_warm.build("train"))
    frames = sum(c.joints.shape[0] for c in clips)
    assert frames == sum(c.joints.shape[0] for c in clips_warm), "warm load returned other clips than the cold parse"
    return {
        "root": root,
        "files": len(clips),
        "frames": frames,
        "workers": workers or os.cpu_count(),
        "cpus": os.cpu_count(),
        "list_s": t_list,
        "cold_s": t_list + t_cold,
        "warm_s": t_list_warm + t_warm,
        "build_train_s": t_build,
        "train_samples": len(dataset),
        "fps": fps,
        "cold_ok": t_list + t_cold < COLD_LIMIT_S,
        "warm_ok": t_list_warm + t_warm < WARM_LIMIT_S,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmark.bench_mocap", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/bandai", help="folder of .bvh / .bvh.gz files")
    parser.add_argument("--workers", type=int, default=None, help="parse processes (default: all CPUs)")
    parser.add_argument("--fps", type=float, default=10.0, help="target frame rate of the built dataset")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="keep the cache here (must be empty for a cold run)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    if args.cache_dir is not None:
        if args.cache_dir.exists() and any(args.cache_dir.iterdir()):
            parser.error(f"--cache-dir {args.cache_dir} is not empty; a cold run needs an empty folder")
        result = run(args.root, args.cache_dir, args.workers, args.fps)
    else:
        with tempfile.TemporaryDirectory(prefix="posebench-mocap-cache-") as tmp:
            result = run(args.root, Path(tmp), args.workers, args.fps)

    table = Table(title=f"MocapPoses parse times: {result['root']}")
    for col in ("what", "seconds", "limit", "ok"):
        table.add_column(col)
    table.add_row("list + label files", f"{result['list_s']:.2f}", "", "")
    table.add_row(
        "cold (parse, FK, map, write cache)", f"{result['cold_s']:.1f}", f"{COLD_LIMIT_S:.0f}", str(result["cold_ok"])
    )
    table.add_row(
        "warm (hash files, read cache)", f"{result['warm_s']:.2f}", f"{WARM_LIMIT_S:.0f}", str(result["warm_ok"])
    )
    table.add_row(f"build train set at {args.fps:g} Hz (cameras)", f"{result['build_train_s']:.2f}", "", "")
    console = Console()
    console.print(table)
    console.print(f"{result['files']} files, {result['frames']:,} frames, {result['train_samples']:,} train samples, "
                  f"{result['workers']} parse workers on {result['cpus']} CPUs")  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
