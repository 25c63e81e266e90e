"""``python -m benchmark suite configs/suite.yaml``: every method of a suite file on every configured dataset.

A suite file lists methods (one or more method configs plus extra options each, optionally several training
seeds) and datasets (the embedded default, i.e. each method config's own ``data:`` section, and data configs
whose ``root`` the user set, directly or through an environment variable). Each (method, dataset, seed) is one
``python -m benchmark fit ...`` subprocess, so a crash loses that run only; each seed writes its own record,
and the leaderboard aggregates the seeds of a method into mean ± standard deviation. A run is skipped when its
result record exists (its path is worked out from the parsed config: dataset name and protocol), a
run that was interrupted is resumed from its ``last.ckpt``, and the leaderboard (md, csv, html) is
rebuilt at the end. Progress is shown with rich; each run's output goes to a log file.

Suite file::

    results_dir: results        # records (as --run.results_dir)
    root: runs                  # logs and checkpoints: <root>/<dataset>/<method>/version_N
    methods:
      - name: svmac             # the record's method name (--run.name)
        config: [configs/svmac.yaml, configs/cpu_quick.yaml]
        args: []                # extra command-line options for this method
        seeds: [0, 1, 2]        # optional: one run and record per training seed (--seed_everything), logs and
                                # checkpoints under <root>/<dataset>/seed<k>/<method>/; default: the config's seed
        datasets: [synthetic]   # optional: only these datasets (an image method on data without its inputs would
                                # fail); default: every dataset below
    datasets:
      - name: synthetic         # no config: the method configs' own data section
      - name: h36m
        config: configs/data/h36m.yaml
        root: ${H36M_ROOT}      # unset or empty: the dataset is skipped as not configured
        args: []
    args: []                    # options for every run (e.g. [--trainer.max_epochs, 5])
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

_ENV = re.compile(r"\$\{(\w+)\}|\$(\w+)")


class SuiteError(ValueError):
    pass


@dataclass
class Run:
    """One (method, dataset) pair of a suite."""

    method: str
    dataset: str
    args: list[str]  # everything after ``python -m benchmark fit``
    root: Path  # <root>/<dataset>: this run's logs and checkpoints live under <root>/<dataset>/<method>/
    skip_reason: str | None = None  # set when the dataset is not configured
    record: Path | None = None  # the method's result record, once the config is resolved
    seed: int | None = None  # the suite's training seed for this run; None: the config's own
    status: str = "pending"
    wall_s: float = 0.0
    log: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.method}@{self.dataset}" + ("" if self.seed is None else f"#seed{self.seed}")

    @property
    def fingerprint(self) -> str:
        """Hash of the command and the contents of its config files: a changed config is a new run."""
        h = hashlib.sha1(json.dumps(self.args).encode())
        for i, arg in enumerate(self.args[:-1]):
            if arg == "--config" and Path(self.args[i + 1]).is_file():
                h.update(Path(self.args[i + 1]).read_bytes())
        return h.hexdigest()[:12]


def expand_env(value: str, where: str) -> tuple[str, list[str]]:
    """``${VAR}`` / ``$VAR`` from the environment; returns the text and the names of unset variables."""
    missing: list[str] = []

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if not os.environ.get(name):
            missing.append(name)
            return ""
        return os.environ[name]

    return _ENV.sub(sub, str(value)), missing


def _as_list(value, what: str, path: Path) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [value]
    if not isinstance(value, list):
        raise SuiteError(f"suite file {path}: {what} must be a list, got {type(value).__name__}")
    return value


def _seeds(m: dict, i: int, path: Path) -> list[int | None]:
    """The training seeds of methods[i]: its ``seeds:`` list of distinct integers, or [None] (the config's seed)."""
    if m.get("seeds") is None:
        return [None]
    seeds = _as_list(m["seeds"], f"methods[{i}].seeds", path)
    if not seeds or any(not isinstance(x, int) or isinstance(x, bool) for x in seeds) or len(set(seeds)) != len(seeds):
        raise SuiteError(
            f"suite file {path}: methods[{i}].seeds must be a non-empty list of distinct integers, e.g. [0, 1, 2]; "
            f"got {m['seeds']!r}"
        )
    return seeds


def _only_datasets(m: dict, i: int, datasets: list, path: Path) -> set[str] | None:
    """A method's ``datasets:`` filter (None: every dataset), each name checked against the suite's datasets."""
    if "datasets" not in m:
        return None
    names = {str(n) for n in _as_list(m["datasets"], f"methods[{i}].datasets", path)}
    known = {str(d.get("name")) for d in datasets if isinstance(d, dict)}
    if names - known:
        raise SuiteError(f"suite file {path}: methods[{i}].datasets names {sorted(names - known)}, which the suite's "
                         f"datasets do not define; defined: {sorted(known)}")  # fmt: skip
    return names


def load_suite(path: str | Path) -> tuple[dict, list[Run]]:
    """Parse a suite file into its settings and one :class:`Run` per (method, dataset)."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"suite file {path} does not exist (see configs/suite.yaml)")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, dict) or not spec.get("methods"):
        raise SuiteError(
            f"suite file {path} must be a mapping with a non-empty 'methods:' list (see configs/suite.yaml)"
        )
    unknown = set(spec) - {"results_dir", "root", "methods", "datasets", "args"}
    if unknown:
        raise SuiteError(
            f"suite file {path}: unknown keys {sorted(unknown)}; allowed: results_dir, root, methods, datasets, args"
        )
    settings = {"results_dir": str(spec.get("results_dir", "results")), "root": str(spec.get("root", "runs"))}
    common = [str(a) for a in _as_list(spec.get("args"), "args", path)]
    datasets = spec.get("datasets") or [{"name": "default"}]
    runs, seen, dup = [], set(), set()  # (method, dataset) pairs: one entry each, whatever its seeds
    for i, m in enumerate(_as_list(spec["methods"], "methods", path)):
        m = {"config": m} if isinstance(m, str) else m
        configs = [str(c) for c in _as_list(m.get("config"), f"methods[{i}].config", path)]
        if not configs:
            raise SuiteError(
                f"suite file {path}: methods[{i}] needs 'config' (a method config such as configs/svmac.yaml)"
            )
        for c in configs:
            if not Path(c).is_file():
                raise SuiteError(f"suite file {path}: methods[{i}] config {c} does not exist")
        name = str(m.get("name") or Path(configs[0]).stem)
        margs = [str(a) for a in _as_list(m.get("args"), f"methods[{i}].args", path)]
        only = _only_datasets(m, i, datasets, path)
        for j, d in enumerate(datasets):
            if not isinstance(d, dict) or "name" not in d:
                raise SuiteError(f"suite file {path}: datasets[{j}] must be a mapping with a 'name'")
            dname, skip = str(d["name"]), None
            if only is not None and dname not in only:
                continue
            (dup if f"{name}@{dname}" in seen else seen).add(f"{name}@{dname}")
            args = [a for c in configs for a in ("--config", c)]
            if d.get("config"):
                if not Path(d["config"]).is_file():
                    raise SuiteError(f"suite file {path}: datasets[{j}] config {d['config']} does not exist")
                args += ["--config", str(d["config"])]
            dargs = []
            for a in _as_list(d.get("args"), f"datasets[{j}].args", path):
                text, missing = expand_env(a, f"datasets[{j}].args")
                skip = skip or (f"${missing[0]} is not set" if missing else None)
                dargs.append(text)
            if "root" in d:
                root, missing = expand_env(d["root"] or "", f"datasets[{j}].root")
                if missing or not root:
                    skip = skip or (f"${missing[0]} is not set" if missing else "root is not set")
                elif not Path(root).exists():
                    skip = skip or f"root {root} does not exist"
                dargs = ["--data.init_args.root", root, *dargs]
            args += dargs + margs + common
            for seed in _seeds(m, i, path):
                root = Path(settings["root"]) / dname / ("" if seed is None else f"seed{seed}")
                run_args = [*args, *([] if seed is None else ["--seed_everything", str(seed)])]
                run_args += ["--run.name", name, "--run.results_dir", settings["results_dir"], "--run.root", str(root)]
                runs.append(Run(method=name, dataset=dname, args=run_args, root=root, skip_reason=skip, seed=seed))
    if dup:
        raise SuiteError(f"suite file {path}: runs {sorted(dup)} appear twice; give the methods distinct 'name's")
    return settings, runs


def resolve_record(run: Run) -> Path:
    """Where ``run`` will write its method record: parses the run's config with the benchmark CLI itself."""
    from .cli import BenchmarkCLI, default_run_name
    from .records import protocol_id, record_path, record_protocol
    from .terminal import UsageError, known_classes

    known_classes()  # short class names (--model SVMAC) resolve as in `python -m benchmark fit`

    class Resolver(BenchmarkCLI):
        def before_instantiate_classes(self) -> None:  # no thread settings in this process
            pass

        def instantiate_trainer(self, **kwargs):  # nor a trainer
            return None

    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:  # their handlers hold the real stderr: redirecting it does not quiet them
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                cli = Resolver(args=run.args, run=False, subclass_mode_model=True, subclass_mode_data=True,
                               auto_configure_optimizers=False, seed_everything_default=False)  # fmt: skip
            except UsageError as e:
                raise SuiteError(f"{run.key}: the config does not parse: {e}") from e
            except SystemExit as e:
                raise SuiteError(f"{run.key}: the config does not parse: {err.getvalue().strip()[-800:]}") from e
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    dm, cfg = cli.datamodule, cli.config
    name = cfg.run.name or default_run_name(cfg.model)
    data_protocol = dict(getattr(dm, "protocol", {}))
    pid = protocol_id(record_protocol(dm.name, dm.skeleton.num_joints, data_protocol))
    seed = cfg.get("seed_everything")
    if isinstance(seed, bool) or seed is None:  # unset: the run draws a random seed, which names its record
        raise SuiteError(f"{run.key}: the config sets no integer seed_everything, so the run's record name (it "
                         "carries the seed) cannot be known before the run; set one in the config or list "
                         "'seeds:' for the method in the suite file")  # fmt: skip
    model = cli.model
    model.read_datamodule(dm)  # what setup would record, e.g. the background source the input column names
    input_desc = model.input_description(model.method_name, data_protocol)
    return record_path(cfg.run.results_dir, dm.name, name, input_desc, pid, int(seed))


def attempt_file(run: Run) -> Path:
    return run.root / run.method / "suite-attempt.json"


def command(run: Run) -> list[str]:
    """The subprocess command; resumes from ``last.ckpt`` when this very run (same fingerprint) was interrupted."""
    from .cli import find_last_checkpoint

    cmd = [sys.executable, "-m", "benchmark", "fit", *run.args]
    marker = attempt_file(run)
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text())
        except json.JSONDecodeError:
            previous = {}
        last = find_last_checkpoint(run.root / run.method)
        if previous.get("fingerprint") == run.fingerprint and previous.get("status") == "started" and last:
            cmd += ["--ckpt_path", "last"]
            run.notes.append(f"resumed from {last}")
    return cmd


def execute(run: Run, logs: Path, progress: Progress, task) -> None:
    """Run one fit subprocess, its output to ``logs/<method>@<dataset>.log``; sets status and wall time."""
    logs.mkdir(parents=True, exist_ok=True)
    run.log = logs / f"{run.key}.log"
    cmd = command(run)
    marker = attempt_file(run)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": run.fingerprint, "status": "started", "command": cmd[1:]}))
    start = time.time()
    with open(run.log, "w") as log:
        log.write("$ " + " ".join(cmd[1:]) + "\n")
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while proc.poll() is None:
                progress.update(task, description=f"{run.key} [dim]({time.time() - start:.0f} s)")
                time.sleep(0.5)
        except KeyboardInterrupt:  # the child got the same Ctrl+C: let it write last.ckpt, then stop the suite
            proc.wait()
            raise
    run.wall_s = time.time() - start
    problem = outcome(run, proc.returncode, start)
    if problem is None:
        run.status = "done"
        marker.write_text(json.dumps({"fingerprint": run.fingerprint, "status": "done", "command": cmd[1:]}))
    else:
        run.status = "failed"
        run.notes.append(problem)


def outcome(run: Run, returncode: int, start: float) -> str | None:
    """None when the run exited 0 and wrote the record the suite expects; else what went wrong. A run that wrote
    its method's record under another name is named too: the suite and the run disagree on the name (a bug)."""
    if returncode != 0:
        return f"exit code {returncode}"
    if run.record is not None and run.record.is_file():
        return None
    problem = f"exited 0 but wrote no record {run.record}"
    if run.record is not None:
        written = sorted(p.name for p in run.record.parent.glob(f"{run.method}__*.json") if p.stat().st_mtime >= start)
        if written:
            problem += f"; it wrote {', '.join(written)} (the suite expected another name: please report it)"
    return problem


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_suite(suite: str | Path, extra: list[str] | None = None, dry_run: bool = False, force: bool = False,
              only: str | None = None, leaderboard: bool = True, console: Console | None = None) -> list[Run]:  # fmt: skip
    """Run a suite; returns its runs with their status. ``extra`` options are appended to every run."""
    console = console or Console()
    settings, runs = load_suite(suite)
    if only:
        runs = [r for r in runs if re.search(only, r.key)]
    for r in runs:
        r.args += list(extra or [])
    todo = []
    for r in runs:
        if r.skip_reason:
            r.status = f"skipped: dataset not configured ({r.skip_reason})"
            continue
        try:
            r.record = resolve_record(r)
        except Exception as e:  # a broken config is this run's failure, not the suite's
            r.status, r.notes = "failed", [f"config: {e}"]
            continue
        if r.record.is_file() and not force:
            r.status = f"skipped: results exist ({r.record})"
        else:
            todo.append(r)
    if dry_run:
        for r in todo:
            console.print(f"[bold]{escape(r.key)}[/]: " + escape(" ".join(command(r)[1:])), soft_wrap=True)
            r.status = "would run"
    else:
        logs = Path(settings["root"]) / "suite-logs"
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("suite", total=len(todo))
            for r in todo:
                execute(r, logs, progress, task)
                style = "green" if r.status == "done" else "red"
                progress.console.print(f"[{style}]{r.status}[/] {escape(r.key)} in {r.wall_s:.0f} s (log {r.log})")
                if r.status == "failed":
                    progress.console.print(escape(_tail(r.log)), style="dim", soft_wrap=True)
                progress.advance(task)
    summary = Table(title=f"suite {suite}")
    for col in ("run", "status", "wall (s)", "notes"):
        summary.add_column(col)
    for r in runs:
        summary.add_row(
            escape(r.key), escape(r.status), f"{r.wall_s:.0f}" if r.wall_s else "", escape("; ".join(r.notes))
        )
    console.print(summary)
    failed = [r for r in runs if r.status == "failed"]
    if leaderboard and not dry_run and Path(settings["results_dir"]).is_dir():
        from .report import main as leaderboard_main

        leaderboard_main(["--results", settings["results_dir"]])
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed: {escape(', '.join(r.key for r in failed))}[/]")
    return runs


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    extra: list[str] = []
    if "--" in argv:  # everything after -- goes to every run
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m benchmark suite", description=__doc__.split("\n\n")[0],
                                     epilog="Options after -- are passed to every run, e.g. -- --trainer.max_epochs 1")  # fmt: skip
    parser.add_argument(
        "suite", nargs="?", default="configs/suite.yaml", help="suite file (default configs/suite.yaml)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands of the runs that would run")
    parser.add_argument("--force", action="store_true", help="run even when the result records exist")
    parser.add_argument("--only", help="regular expression on '<method>@<dataset>' selecting runs")
    parser.add_argument("--no-leaderboard", action="store_true", help="do not rebuild the leaderboard at the end")
    args = parser.parse_args(argv)
    try:
        runs = run_suite(args.suite, extra, args.dry_run, args.force, args.only, not args.no_leaderboard)
    except SuiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if any(r.status == "failed" for r in runs) else 0
