"""``python -m benchmark {fit,validate,test,predict} --config configs/<method>.yaml``.

A ``LightningCLI`` with the suite's defaults: a rich progress bar, checkpoints (``last`` and the
best by ``val/p_mpjpe``), a learning-rate monitor, the results writer, and loggers (CSV always;
W&B offline unless ``--run.wandb online``). ``fit`` tests the best checkpoint afterwards unless
``--run.test_after_fit false``: one command gives the numbers the leaderboard needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from .results import ResultsWriter


@dataclass
class RunOptions:
    """Options of a benchmark run (the ``run:`` section of a config).

    Args:
        name: run name (default: the model class name, lower case).
        root: folder for logs and checkpoints (``<root>/<name>/version_N``).
        results_dir: where result records are written.
        wandb: ``off``, ``offline`` (default; sync later with ``wandb sync``) or ``online``.
        wandb_project: W&B project name.
        test_after_fit: after ``fit``, test the best checkpoint and write result records.
        threads: CPU threads for torch (default: torch's choice). Small networks on a shared or
            small CPU often run faster on 1 thread than on oversubscribed cores.
    """

    name: str | None = None
    root: str = "runs"
    results_dir: str = "results"
    wandb: str = "offline"
    wandb_project: str = "posebench"
    test_after_fit: bool = True
    threads: int | None = None


class BenchmarkCLI(LightningCLI):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--run", type=RunOptions, default=RunOptions())
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/p_mpjpe", "checkpoint.mode": "min", "checkpoint.save_last": True,
            "checkpoint.filename": "best-epoch{epoch}-step{step}", "checkpoint.auto_insert_metric_name": False,
        })  # fmt: skip

    def before_instantiate_classes(self) -> None:
        run = (self.config[self.subcommand] if self.subcommand else self.config).run
        if run.wandb not in ("off", "offline", "online"):
            raise ValueError(f"--run.wandb must be off, offline or online, got {run.wandb!r}")
        if run.threads is not None:
            if run.threads < 1:
                raise ValueError(f"--run.threads must be >= 1, got {run.threads}")
            torch.set_num_threads(run.threads)

    def instantiate_trainer(self, **kwargs):
        cfg = self.config_init[self.subcommand] if self.subcommand else self.config_init
        run: RunOptions = cfg.run
        run.name = run.name or type(cfg.model).__name__.lower()
        trainer_cfg = cfg.get("trainer", {})
        extra = [RichProgressBar(), LearningRateMonitor(logging_interval="step"), ResultsWriter(run.results_dir)]
        kwargs["callbacks"] = list(trainer_cfg.get("callbacks") or []) + extra
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = make_loggers(run, cfg.data)
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        run: RunOptions = self.config_init[self.subcommand].run
        if run.test_after_fit:
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best_or_last(self.trainer))


def best_or_last(trainer) -> str | None:
    """The best checkpoint when one was saved, else the last one, else the weights in memory."""
    cb = trainer.checkpoint_callback
    if cb is not None and cb.best_model_path and Path(cb.best_model_path).exists():
        return cb.best_model_path
    if cb is not None and cb.last_model_path and Path(cb.last_model_path).exists():
        return cb.last_model_path
    return None


def make_loggers(run: RunOptions, data) -> list:
    loggers = [CSVLogger(save_dir=run.root, name=run.name)]
    if run.wandb != "off":
        from lightning.pytorch.loggers import WandbLogger

        online = run.wandb == "online" and bool(os.environ.get("WANDB_API_KEY"))
        tags = [run.name, getattr(data, "name", type(data).__name__)]
        loggers.append(WandbLogger(project=run.wandb_project, name=run.name, group=tags[1], tags=tags,
                                   save_dir=run.root, offline=not online))  # fmt: skip
    return loggers


def main(args: list[str] | None = None) -> None:
    BenchmarkCLI(args=args, subclass_mode_model=True, subclass_mode_data=True, auto_configure_optimizers=False)
