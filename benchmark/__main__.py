"""Entry point: ``python -m benchmark <fit|validate|test|predict|data|leaderboard|suite> ...``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "data":
        from .data_cli import main as data_main

        return data_main(argv[1:])
    if argv and argv[0] == "leaderboard":
        from .report import main as leaderboard_main

        return leaderboard_main(argv[1:])
    if argv and argv[0] == "epipolar-labels":
        return __import__("benchmark.epipolar_labels", fromlist=["main"]).main(argv[1:])
    if argv and argv[0] == "suite":
        from .suite import main as suite_main

        return suite_main(argv[1:])
    from .cli import main as cli_main

    cli_main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
