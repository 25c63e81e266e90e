"""What a user sees in the terminal: known third-party noise silenced, short input errors, line progress.

Errors in the user's input (a config value, an option, a class name) are reduced to the option, the value
and the reason, plus where to look; ``POSEBENCH_DEBUG=1`` keeps the full traceback.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import traceback
import warnings

from lightning.pytorch.callbacks import ProgressBar

DEBUG_ENV = "POSEBENCH_DEBUG"


# -- known third-party noise ------------------------------------------------------------------------------
class _DropLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_third_party() -> None:
    """Silence the notices that say nothing about the user's run, each by its message and source.

    - Lightning advertises litlogger at every start (an INFO record of its rank-zero logger);
    - Lightning's ``_pytree`` builds torch's deprecated ``LeafSpec`` (a FutureWarning for Lightning's
      developers, not for its users).
    """
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLitLoggerTip) for f in logger.filters):
        logger.addFilter(_DropLitLoggerTip())
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )


# -- short errors -------------------------------------------------------------------------------------------
class UsageError(ValueError):
    """A mistake in the command line or config: printed as it is, without a traceback."""


def debug_requested() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def known_classes() -> dict[str, list[str]]:
    """Short names of the methods (``--model``) and data modules (``--data``), all imported.

    jsonargparse resolves ``--model SVMAC`` to any imported subclass of ``LightningModule`` by its class
    name, so importing them here is what makes the short names work.
    """
    import datamodules
    import methods

    known = {"model": list(methods.__all__), "data": [n for n in datamodules.__all__ if n != "PoseDataModule"]}
    for package, names in ((methods, known["model"]), (datamodules, known["data"])):
        for name in names:
            getattr(package, name)
    return known


_NOISE = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value", "Problem with given class_path",
          "Expected a <class 'NoneType'>", "Expected a path but", "Expected a dot import path")  # fmt: skip


def _reason(message: str) -> str:
    """The one informative line of a jsonargparse message (they nest Union and class_path wrappers)."""
    lines = [ln.strip().removeprefix("- ") for ln in message.splitlines()]
    useful = [ln for ln in lines if ln and not ln.startswith(_NOISE)]
    reason = useful[0] if useful else ""
    return re.sub(r"Expected a <class '([\w.]+)'>", r"expected a value of type \1", reason)


def _given(message: str, key: str) -> tuple[str, str | None]:
    """(option, value) that jsonargparse reports for ``Parser key "<key>"``."""
    nested = re.search(r"Given value: NestedArg\(key='([^']*)', val='(.*)'\)\s*$", message, re.M)
    if nested:
        sub, value = nested.groups()
        return (f"--{key}.{sub}" if sub == "class_path" else f"--{key}.init_args.{sub}"), value
    plain = re.search(r"^\s*Given value: (.*)$", message, re.M)
    return f"--{key}", (plain.group(1) if plain else None)


def _is_unknown_class(message: str) -> bool:
    return bool(re.search(r"dot import path|has no attribute|No module named|either not accessible", message))


def _unknown_class(group: str, value: str | None, message: str) -> str:
    known = known_classes()[group]
    what = "methods" if group == "model" else "data modules"
    why = _reason(message)
    return (f"error: --{group} {value}: no such class" + (f" ({why})" if why else "") + "\n"
            f"  known {what}: {', '.join(known)} (a short name, e.g. --{group} {known[0]}, or a full import path)")  # fmt: skip


def parse_error(message: str, subcommand: str | None) -> str:
    """A jsonargparse parse error in at most three lines: option, value, reason, where to look."""
    cmd = f"python -m benchmark {subcommand or 'fit'}"
    key = re.match(r'Parser key "([^"]+)":\s*(.*)', message, re.S)
    if key is None:  # e.g. "unrecognized arguments: fit --nope"
        return f"error: {_reason(message) or message}\n  every option: {cmd} --help"
    name, rest = key.groups()
    if name == "config":
        return f"error: --config: {_reason(rest)}\n  configs live under configs/, e.g. --config configs/svmac.yaml"
    option, value = _given(message, name)
    if name in ("model", "data") and option.endswith(("--model", "--data", ".class_path")) and _is_unknown_class(rest):
        return _unknown_class(name, value, rest)
    shown = f"{option} {value}" if value is not None else option
    cls = re.search(r"Problem with given class_path '(?:[\w.]*\.)?(\w+)'", rest)
    look = f"{cmd} --{name}.help {cls.group(1)}" if cls else f"{cmd} --help"
    return f"error: {shown}: {_reason(rest) or rest.strip()}\n  every option and its default: {look}; the merged config: --print_config"


def _failing_group(err: BaseException) -> str | None:
    """``model``, ``data`` or ``trainer``: whose constructor raised ``err`` (from its traceback)."""
    import lightning as L

    group = None
    for frame, _ in traceback.walk_tb(err.__traceback__):
        owner = frame.f_locals.get("self")
        if isinstance(owner, L.LightningModule):
            group = "model"
        elif isinstance(owner, L.LightningDataModule):
            group = "data"
        elif isinstance(owner, L.Trainer):
            group = "trainer"
    return group


def instantiation_error(err: BaseException, config) -> str | None:
    """A constructor's complaint about a config value, naming the option; None if ``err`` is not one."""
    root = err
    while root.__cause__ or root.__context__:
        root = root.__cause__ or root.__context__
    group = _failing_group(root)
    if group is None:
        return None
    section = config.get(group)
    init_args = getattr(section, "init_args", None) or (section if group == "trainer" else None) or {}
    option, message = f"--{group}", str(root)
    for arg, value in dict(init_args).items():
        if re.search(rf"\b{re.escape(arg)}\b", message):
            prefix = f"--{group}" if group == "trainer" else f"--{group}.init_args"
            option = f"{prefix}.{arg} {value}"
            break
    return f"error: {option}: {message}\n  the merged config: --print_config; a traceback: {DEBUG_ENV}=1"


# -- progress without a terminal ----------------------------------------------------------------------------
class LineProgress(ProgressBar):
    """One plain line per validation (epoch, step, elapsed, val P-MPJPE and the baselines').

    Used when stdout is not a terminal (a log file, CI, SLURM): a live bar cannot draw there, and a log
    should still show the run moving.
    """

    def __init__(self, metric: str = "p_mpjpe") -> None:
        super().__init__()
        self.metric = metric
        self._enabled = True
        self._start: float | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._enabled or trainer.sanity_checking:
            return
        elapsed = None if self._start is None else time.monotonic() - self._start
        print(progress_line(trainer.current_epoch, trainer.global_step, elapsed, trainer.callback_metrics,
                            self.metric), flush=True)  # fmt: skip


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def progress_line(epoch: int, step: int, elapsed: float | None, metrics: dict, metric: str = "p_mpjpe") -> str:
    """'epoch 3  step 120  0:01:05  val P-MPJPE 84.2 mm  (baseline-mean-pose 179.0, baseline-zero-depth 102.2)'."""
    from .leaderboard import display_name, higher_is_better

    parts = [f"epoch {epoch}", f"step {step}"] + ([_clock(elapsed)] if elapsed is not None else [])
    own = metrics.get(f"val/{metric}")
    if own is not None:
        unit = "" if higher_is_better(metric) else " mm"  # rates are fractions
        parts.append(f"val {display_name(metric)} {float(own):.{3 if unit == '' else 1}f}{unit}")
    baselines = sorted((k[4 : -len(metric) - 1], float(v)) for k, v in metrics.items()
                       if k.startswith("val_") and k.endswith(f"/{metric}"))  # fmt: skip
    line = "  ".join(parts)
    if baselines:
        line += "  (" + ", ".join(f"{name} {v:.1f}" for name, v in baselines) + ")"
    return line


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
