"""Entry point: ``python -m benchmark <command> ...``; ``python -m benchmark --help`` lists the commands."""

from __future__ import annotations

import sys

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

HELP = """\
usage: python -m benchmark <command> [options]

posebench: self-supervised 3D human pose estimation, one benchmark.

commands:
  fit          train a method, then test its best checkpoint and write result records
  validate     one evaluation pass over the validation split (--ckpt_path)
  test         test a checkpoint and write result records (--ckpt_path)
  predict      3D poses from a checkpoint (--ckpt_path)
  suite        every method of a suite file on every configured dataset, then the leaderboard
  leaderboard  LEADERBOARD.md, leaderboard.csv and leaderboard.html from the records under results/
  data stats   clips and frames per split, and a contact sheet of poses
  data check   validate a dataset folder (h36m, 3dhp, surreal) and name what is missing
  data preview a contact sheet of rendered samples
  epipolar-labels  how good EpipolarPose's triangulated pseudo-labels are (GT 2D, noisy 2D, the network's 2D)

examples:
  python -m benchmark fit --config configs/svmac.yaml --config configs/cpu_quick.yaml
  python -m benchmark fit --model SVMAC --data SyntheticPoses --trainer.max_epochs 5
  python -m benchmark fit --config configs/svmac.yaml --print_config
  python -m benchmark suite configs/suite.yaml --dry-run
  python -m benchmark leaderboard
  python -m benchmark data stats configs/svmac.yaml

`python -m benchmark <command> --help` shows the options of a command; `fit --model.help SVMAC` those of a method.
"""


def main(argv: list[str] | None = None) -> int:
    """``argv`` None reads ``sys.argv``."""
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] in ("-h", "--help", "help"):
        print(HELP, end="")
        return 0 if words else 2
    command = words[0]
    if command == "data":
        from .data_cli import main as data_main

        return data_main(words[1:])
    if command == "leaderboard":
        from .report import main as leaderboard_main

        return leaderboard_main(words[1:])
    if command == "epipolar-labels":
        from .epipolar_labels import main as labels_main

        return labels_main(words[1:])
    if command == "suite":
        from .suite import main as suite_main

        return suite_main(words[1:])
    if command not in LIGHTNING_COMMANDS and not command.startswith("-"):  # options may precede the command
        print(f"error: unknown command {command!r}\n\n{HELP}", end="", file=sys.stderr)
        return 2
    from .cli import main as cli_main

    # LightningCLI reads sys.argv itself when given None (it warns when given both)
    cli_main(None if argv is None else words)
    return 0


if __name__ == "__main__":
    sys.exit(main())
