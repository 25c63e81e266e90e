"""``python -m benchmark data {stats,check,preview} ...``: look at data before training on it."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="clips and frames per split, and a PNG contact sheet of poses")
    stats.add_argument("config", nargs="+", help="config file(s) with a 'data' section, e.g. configs/svmac_mocap.yaml")
    stats.add_argument("--out", type=Path, default=Path("runs/data_stats.png"))
    check = sub.add_parser("check", help="validate a dataset folder and report what is missing or malformed")
    check.add_argument("dataset", choices=["h36m", "3dhp", "surreal"])
    check.add_argument("root", type=Path)
    preview = sub.add_parser("preview", help="a PNG contact sheet of rendered samples")
    preview.add_argument("what", help="'synthetic' or a config file with a 'data' section")
    preview.add_argument("--out", type=Path, default=Path("runs/preview.png"))
    preview.add_argument("--samples", type=int, default=4)
    args = parser.parse_args(argv)

    if args.command == "stats":
        from datamodules.stats import data_stats

        from .config import load_datamodule

        data_stats(load_datamodule(args.config), args.out)
        return 0
    if args.command == "check":
        from datamodules.recorded.check import check_dataset

        problems = check_dataset(args.dataset, args.root)
        return 1 if problems else 0
    if args.command == "preview":
        from datamodules.render.preview import preview as render_preview

        if args.what == "synthetic":
            from datamodules.render.humans import SyntheticHumans

            dm = SyntheticHumans()
        else:
            from .config import load_datamodule

            dm = load_datamodule([args.what])
        render_preview(dm, args.out, args.samples)
        return 0
    return 2
