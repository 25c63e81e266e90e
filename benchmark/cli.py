"""``python -m benchmark {fit,validate,test,predict} --config configs/<method>.yaml``.

A ``LightningCLI`` with the suite's defaults: a rich progress bar, checkpoints (``last`` and the
best by ``val/p_mpjpe``), a learning-rate monitor, the results writer, and loggers (CSV always;
W&B offline unless ``--run.wandb online``). ``fit`` tests the best checkpoint afterwards unless
``--run.test_after_fit false``: one command gives the numbers the leaderboard needs.

Resume: ``--ckpt_path last`` continues the newest ``last.ckpt`` of the run (any ``version_N``). A fit
that stops on an exception (Ctrl+C, a crash, a SLURM time limit) first writes ``last.ckpt`` at the
step it reached, and :class:`ExactResume` stores the random-number states and the position in the
training epoch in every checkpoint, so the resumed fit takes the same batches with the same random
draws as an uninterrupted one (bit for bit in deterministic mode).

Multi-GPU: ``--trainer.strategy ddp --trainer.devices N`` (and ``--trainer.num_nodes``). Methods
with manual optimisation (several backward passes per step, e.g. a generator and a critic) get
DDP's unused-parameter detection, which they need.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from .records import protocol_id, record_protocol
from .results import ResultsWriter
from .resume import BenchmarkCheckpoint, ExactResume
from .terminal import (
    LineProgress,
    UsageError,
    debug_requested,
    instantiation_error,
    known_classes,
    parse_error,
    quiet_third_party,
    stdout_is_terminal,
)


@dataclass
class RunOptions:
    """Options of a benchmark run (the ``run:`` section of a config).

    Args:
        name: run name (default: the model class name, lower case); names the method's result record,
            so ablations of one method get their own leaderboard rows (e.g. ``svmac-nodisc``).
        root: folder for logs and checkpoints (``<root>/<name>/version_N``).
        results_dir: where result records are written.
        wandb: ``off``, ``offline`` (default; sync later with ``wandb sync``) or ``online`` (needs an API key:
            ``WANDB_API_KEY`` or ``wandb login``; without one the run logs offline).
        wandb_project: W&B project name.
        wandb_tags: extra W&B tags (method, dataset and protocol are always tags).
        test_after_fit: after ``fit``, test the best checkpoint and write result records.
        threads: CPU threads for torch (default: torch's choice). Small networks on a shared or
            small CPU often run faster on 1 thread than on oversubscribed cores.
    """

    name: str | None = None
    root: str = "runs"
    results_dir: str = "results"
    wandb: str = "offline"
    wandb_project: str = "posebench"
    wandb_tags: list[str] = field(default_factory=list)
    test_after_fit: bool = True
    threads: int | None = None


class BenchmarkCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # exit_on_error=False: parse errors come back as exceptions, which main() shortens
        kwargs.setdefault("parser_kwargs", {"default_env": False, "exit_on_error": False, "prog": "python -m benchmark",
                                            "description": "posebench: train and test a method (fit, validate, test, "
                                            "predict). `python -m benchmark --help` lists every command."})  # fmt: skip
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise UsageError(parse_error(str(err), _subcommand_of(args))) from err

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, KeyError) as err:  # a constructor refusing a value, e.g. num_angles -3
            message = instantiation_error(err, self.config[self.subcommand] if self.subcommand else self.config)
            if message is None:
                raise
            raise UsageError(message) from err

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--run", type=RunOptions, default=RunOptions())
        parser.add_lightning_class_args(BenchmarkCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/p_mpjpe", "checkpoint.mode": "min", "checkpoint.save_last": True,
            "checkpoint.save_on_exception": True,
            "checkpoint.filename": "best-epoch{epoch}-step{step}", "checkpoint.auto_insert_metric_name": False,
        })  # fmt: skip

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        run = cfg.run
        if run.wandb not in ("off", "offline", "online"):
            raise UsageError(f"error: --run.wandb {run.wandb}: must be off, offline or online")
        if run.threads is not None:
            if run.threads < 1:
                raise UsageError(f"error: --run.threads {run.threads}: must be >= 1")
            torch.set_num_threads(run.threads)
        if self.subcommand and cfg.get("ckpt_path") == "last":
            self._resolve_last(cfg)

    def _resolve_last(self, cfg) -> None:
        """``--ckpt_path last``: the newest ``last*.ckpt`` of any version of this run.

        Lightning only looks in the new run's own (empty) ``version_N+1/checkpoints``. A resumed fit keeps
        writing checkpoints into the folder it resumes from, so the checkpoint callback's state (best
        score and path) carries over; its logs go to a new ``version_N``.
        """
        name = cfg.run.name or default_run_name(cfg.model)
        found = find_last_checkpoint(Path(cfg.run.root) / name)
        if found is None:
            rank_zero_warn(f"--ckpt_path last: no last*.ckpt under {Path(cfg.run.root) / name}/version_*/checkpoints/; "
                           "starting from scratch")  # fmt: skip
            cfg.ckpt_path = None
            return
        rank_zero_info(f"--ckpt_path last: resuming from {found}")
        cfg.ckpt_path = str(found)
        if self.subcommand == "fit" and cfg.checkpoint.dirpath is None:
            cfg.checkpoint.dirpath = str(found.parent)

    def instantiate_trainer(self, **kwargs):
        cfg = self.config_init[self.subcommand] if self.subcommand else self.config_init
        run: RunOptions = cfg.run
        run.name = run.name or type(cfg.model).__name__.lower()
        trainer_cfg = cfg.get("trainer", {})
        extra = [LearningRateMonitor(logging_interval="step"), ResultsWriter(run.results_dir, method_name=run.name),
                 ExactResume()]  # fmt: skip
        if trainer_cfg.get("enable_progress_bar") is not False:
            # a live bar only draws on a terminal; a log file gets a line per validation instead
            extra.insert(0, RichProgressBar() if stdout_is_terminal() else LineProgress())
        kwargs["callbacks"] = list(trainer_cfg.get("callbacks") or []) + extra
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = make_loggers(run, cfg.data, cfg.model)
        strategy = ddp_strategy(trainer_cfg.get("strategy"), cfg.model)
        if strategy is not None:
            kwargs["strategy"] = strategy
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        run: RunOptions = self.config_init[self.subcommand].run
        if run.test_after_fit:
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best_or_last(self.trainer))
        finish_wandb(self.trainer)

    def after_test(self) -> None:
        finish_wandb(self.trainer)

    def after_validate(self) -> None:
        finish_wandb(self.trainer)


def default_run_name(model_cfg) -> str:
    """The model class name, lower case, from a ``class_path`` config or an instance."""
    class_path = getattr(model_cfg, "class_path", None) or type(model_cfg).__name__
    return class_path.rsplit(".", 1)[-1].lower()


def find_last_checkpoint(run_dir: Path) -> Path | None:
    """The most recently written ``last*.ckpt`` under ``run_dir/version_*/checkpoints`` (or ``run_dir/*/``)."""
    candidates = [p for p in run_dir.glob("*/checkpoints/last*.ckpt") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def ddp_strategy(strategy, model: L.LightningModule):
    """``ddp`` for a manually optimised model: ``DDPStrategy(find_unused_parameters=True)``, else None (keep).

    With manual optimisation a training step runs several backward passes over different parameter sets
    (critic, then generator); DDP without unused-parameter detection stops at the first parameter that
    received no gradient.
    """
    if strategy != "ddp" or getattr(model, "automatic_optimization", True):
        return None
    from lightning.pytorch.strategies import DDPStrategy

    rank_zero_info(f"{type(model).__name__} optimises manually: DDP with find_unused_parameters=True")
    return DDPStrategy(find_unused_parameters=True)


def best_or_last(trainer) -> str | None:
    """The best checkpoint when one was saved, else the last one, else the weights in memory."""
    cb = trainer.checkpoint_callback
    if cb is not None and cb.best_model_path and Path(cb.best_model_path).exists():
        return cb.best_model_path
    if cb is not None and cb.last_model_path and Path(cb.last_model_path).exists():
        return cb.last_model_path
    return None


# -- W&B -------------------------------------------------------------------------------------------------
def wandb_has_key() -> bool:
    """An API key in the environment or in ~/.netrc (``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def wandb_identity(run: RunOptions, data, model) -> dict:
    """Project, run name, group, tags and config of a run, from method, dataset and protocol.

    The group is the (dataset, protocol) pair: W&B then lines up exactly the runs whose numbers the
    leaderboard puts in one table.
    """
    dataset = getattr(data, "name", type(data).__name__)
    skeleton = getattr(data, "skeleton", None)
    data_protocol = dict(getattr(data, "protocol", {}) or {})
    protocol = record_protocol(dataset, skeleton.num_joints if skeleton is not None else 0, data_protocol)
    pid = protocol_id(protocol)
    method = run.name or type(model).__name__.lower()
    tags = [method, type(model).__name__.lower(), dataset, f"protocol:{pid}"]
    tags += [f"{k}={v}" for k, v in sorted(data_protocol.items())] + list(run.wandb_tags)
    tags = list(dict.fromkeys(t[:64] for t in tags))  # W&B limits tags to 64 characters
    return {
        "project": run.wandb_project,
        "name": f"{method}-{dataset}",
        "group": f"{dataset}-{pid}",
        "tags": tags,
        "config": {"method": method, "dataset": dataset, "protocol_id": pid, "protocol": protocol},
    }


def make_loggers(run: RunOptions, data, model=None) -> list:
    # an absolute root: checkpoints record the folder they were saved in, and the checkpoint callback compares
    # it with its own (absolute) folder when a fit resumes; a relative path would never match
    loggers = [CSVLogger(save_dir=os.path.realpath(run.root), name=run.name)]
    if run.wandb != "off":
        from lightning.pytorch.loggers import WandbLogger

        online = run.wandb == "online" and wandb_has_key()
        if run.wandb == "online" and not online:
            rank_zero_warn("--run.wandb online but no W&B API key (WANDB_API_KEY or `wandb login`): logging offline")
        ident = wandb_identity(run, data, model)
        # W&B looks for the git commit from its folder and warns when the folder does not exist yet
        Path(run.root).mkdir(parents=True, exist_ok=True)
        logger = WandbLogger(save_dir=run.root, offline=not online, **ident)
        # Lightning always passes ``anonymous`` (None when unset), a W&B setting that now only warns
        logger._wandb_init.pop("anonymous", None)
        loggers.append(logger)
    return loggers


def finish_wandb(trainer) -> None:
    """Close the W&B run of a command so that its files are complete when ``main()`` returns (tests, notebooks)."""
    if trainer is None or not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()


def _subcommand_of(args) -> str | None:
    words = list(sys.argv[1:] if args is None else args)
    return next((w for w in words if w in ("fit", "validate", "test", "predict")), None)


def main(args: list[str] | None = None) -> None:
    """``args`` None reads ``sys.argv``; a usage error exits with status 2 and a short message."""
    quiet_third_party()
    known_classes()  # imported classes resolve by short name: --model SVMAC, --data SyntheticPoses
    try:
        BenchmarkCLI(args=args, subclass_mode_model=True, subclass_mode_data=True, auto_configure_optimizers=False)
    except UsageError as err:
        if debug_requested():
            raise
        print(err, file=sys.stderr)
        raise SystemExit(2) from None
