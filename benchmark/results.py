"""The callback that turns a test run into result records (``benchmark.records``) and, with a W&B
logger, into the run's summary and the leaderboard table of its protocol."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L

from .leaderboard import fmt_budget, group_tables, per_action_rows
from .records import RecordError, load_records, make_records, write_records

log = logging.getLogger(__name__)


class ResultsWriter(L.Callback):
    """Writes the result records at the end of every test run (rank zero only).

    With a W&B logger it also sets the run summary (``test/<metric>`` for the method and
    ``test_<baseline>/<metric>`` for the baselines: the same keys for every method, so W&B panels
    compare methods; ``.../<metric>_ci_low`` and ``_ci_high`` their 95% intervals over test sequences) and
    uploads the leaderboard of the run's (dataset, protocol) as a ``wandb.Table`` (seed mean, standard
    deviation, interval and paired-test p-value of every row).

    Args:
        results_dir: where records go (``<results_dir>/<dataset>/<method>__<input>__<protocol id>.json``).
        method_name: name of the method's record (default: the module's ``method_name``).

    The training time of the record's budget is the time spent in training epochs (validation
    included), summed over resumed fits: it is kept in every checkpoint.
    """

    def __init__(self, results_dir: str = "results", method_name: str | None = None):
        self.results_dir = results_dir
        self.method_name = method_name
        self.started = time.time()
        self.train_time_s: float | None = None
        self._train_start: float | None = None
        self._restored: float | None = None  # the training time kept in a loaded checkpoint
        self.written: list[Path] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.started = time.time()

    def on_train_start(self, trainer, pl_module) -> None:
        if self._restored is not None:  # a resumed fit continues the time of the fit it resumes
            self.train_time_s = self._restored
        self._train_start = time.time()

    def on_train_end(self, trainer, pl_module) -> None:
        self.train_time_s = self._elapsed_training()
        self._train_start = None

    def _elapsed_training(self) -> float | None:
        if self._train_start is None:
            return self.train_time_s
        return (self.train_time_s or 0.0) + time.time() - self._train_start

    def state_dict(self) -> dict:
        return {"train_time_s": self._elapsed_training()}

    def load_state_dict(self, state_dict: dict) -> None:
        # Only kept aside: testing the best checkpoint after a fit restores it too, and must not replace the
        # fit's own time with the time at which that checkpoint was written.
        self._restored = state_dict.get("train_time_s")

    def on_test_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir  # on every process: a collective call under DDP
        if not trainer.is_global_zero or not getattr(pl_module, "test_results", None):
            return
        records = make_records(
            pl_module, trainer, time.time() - self.started, self.method_name, log_dir, train_time_s=self.train_time_s
        )
        self.written = write_records(records, self.results_dir)
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                log_to_wandb(logger, records, self.results_dir)


def summary_key(record: dict, metric: str) -> str:
    """W&B summary key of a record's metric: ``test/p_mpjpe`` for the method, ``test_baseline-.../p_mpjpe``."""
    return f"test_{record['method']}/{metric}" if record.get("baseline") else f"test/{metric}"


def log_to_wandb(logger, records: list[dict], results_dir: str | Path) -> None:
    """Summary metrics of this run and the leaderboard of its (dataset, protocol) as ``wandb.Table`` s."""
    summary = {summary_key(r, m): v for r in records for m, v in r["metrics"].items()}
    for r in records:
        for m, (low, high) in r.get("ci", {}).items():
            summary.update({f"{summary_key(r, m)}_ci_low": low, f"{summary_key(r, m)}_ci_high": high})
    summary.update({"dataset": records[0]["dataset"], "protocol_id": records[0]["protocol_id"]})
    logger.experiment.summary.update(summary)
    pid = records[0]["protocol_id"]
    try:
        tables = [t for t in group_tables(load_records(Path(results_dir))) if t["protocol_id"] == pid]
    except RecordError as err:  # another run's record is broken: this run's records are written, keep the fit going
        log.warning(f"the leaderboard table was not uploaded to W&B: {err}")
        return
    for table in tables:
        columns, rows = leaderboard_table(table)
        logger.log_table(key="leaderboard", columns=columns, data=rows)
        actions, action_rows = per_action_rows(table)
        if actions:
            logger.log_table(key="leaderboard_per_action", columns=["method", *actions], data=action_rows)


def leaderboard_table(table: dict) -> tuple[list[str], list[list]]:
    """Columns and rows of the uploaded leaderboard: per metric its seed mean, then std and 95% interval columns."""
    columns = ["method", "input", "role", "training", *table["columns"], "seeds"]
    columns += [f"{c} {s}" for c in table["columns"] for s in ("std", "ci low", "ci high")]
    rows = []
    for row in table["rows"]:
        spread = [v for s, ci in zip(row["std"], row["ci"]) for v in (s, *(ci or (None, None)))]
        rows.append([row["method"], row["input"], row["role"], fmt_budget(row["budget"]), *row["values"],
                     row["n_seeds"], *spread, (row.get("test") or {}).get("p"), row["closed"]])  # fmt: skip
    return [*columns, "p vs best", "floor_to_ceiling"], rows
