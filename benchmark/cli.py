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

import functools
import itertools
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from .results import ResultsWriter, protocol_id, record_protocol


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
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        super().__init__(*args, **kwargs)

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
            raise ValueError(f"--run.wandb must be off, offline or online, got {run.wandb!r}")
        if run.threads is not None:
            if run.threads < 1:
                raise ValueError(f"--run.threads must be >= 1, got {run.threads}")
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
            extra.insert(0, RichProgressBar())
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
        loggers.append(WandbLogger(save_dir=run.root, offline=not online, **ident))
    return loggers


def finish_wandb(trainer) -> None:
    """Close the W&B run of a command so that its files are complete when ``main()`` returns (tests, notebooks)."""
    if trainer is None or not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()


# -- resume ----------------------------------------------------------------------------------------------
def rng_states() -> dict:
    """Every random-number state a training step may draw from (torch CPU and CUDA, numpy, Python).

    As tensors, ints and tuples only: checkpoints load with ``torch.load(weights_only=True)``.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` (the order is a function of seed and epoch alone) that can skip its first samples once.

    Used for training with any number of processes (one included): unlike a ``RandomSampler``, it draws
    nothing from the global random state, so the model's random draws (dropout, augmentation) are the
    same whether or not a run was resumed.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip = 0

    def __iter__(self):
        skip, self.skip = self.skip, 0
        return itertools.islice(super().__iter__(), skip, None)


class ResumableDataLoader(DataLoader):
    """A training ``DataLoader`` with Lightning's ``state_dict`` / ``load_state_dict`` interface.

    Its state is the epoch and the number of batches the training loop completed in it; loading it makes
    the next epoch start where that one stopped (the sampler skips the completed batches' indices, no
    data is read for them).
    """

    #: () -> (epoch, batches completed in it), from the trainer; None on a copy that Lightning re-instantiated
    #: with another sampler (e.g. for ``overfit_batches``), which then behaves as a plain DataLoader
    progress: Callable[[], tuple[int, int]] | None = None

    def _resumable(self) -> bool:
        return self.progress is not None and isinstance(self.sampler, EpochSampler)

    def __iter__(self):
        if self._resumable():
            epoch, _ = self.progress()
            self.sampler.set_epoch(epoch)
            if self.generator is not None:  # worker seeds from (seed, epoch), not from the global random state
                self.generator.manual_seed(self.sampler.seed + epoch)
        return super().__iter__()

    def state_dict(self) -> dict:
        if not self._resumable():
            return {}
        epoch, batches = self.progress()
        return {
            "epoch": epoch,
            "batches": batches,
            "batch_size": self.batch_size,
            "world_size": self.sampler.num_replicas,
        }

    def load_state_dict(self, state: dict) -> None:
        if not state or not self._resumable():
            return
        if (state.get("batch_size"), state.get("world_size")) != (self.batch_size, self.sampler.num_replicas):
            rank_zero_warn(
                f"resuming with batch size {self.batch_size} on {self.sampler.num_replicas} processes, the checkpoint "
                f"had {state.get('batch_size')} on {state.get('world_size')}: the interrupted epoch restarts from its "
                "first batch"
            )
            return
        self.sampler.skip = state["batches"] * self.batch_size


def resumable_loader(loader, trainer: L.Trainer):
    """The same training batches from a :class:`ResumableDataLoader`; other loaders are returned unchanged.

    Handles what the data modules build: a map-style dataset with a ``RandomSampler`` (shuffle) or
    ``SequentialSampler`` under a plain ``BatchSampler``. The shuffle order becomes that of Lightning's
    ``DistributedSampler`` (seed ``PL_GLOBAL_SEED`` + epoch), with any number of processes.
    """
    if type(loader) is not DataLoader or type(loader.batch_sampler) is not BatchSampler:
        return loader
    sampler = loader.sampler
    if isinstance(sampler, RandomSampler) and not sampler.replacement and sampler._num_samples is None:
        shuffle = True
    elif isinstance(sampler, SequentialSampler):
        shuffle = False
    else:
        return loader
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    epoch_sampler = EpochSampler(loader.dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                 shuffle=shuffle, seed=seed, drop_last=loader.drop_last)  # fmt: skip
    out = ResumableDataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=epoch_sampler, drop_last=loader.drop_last,
        collate_fn=loader.collate_fn, num_workers=loader.num_workers, pin_memory=loader.pin_memory,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=torch.Generator(),
        prefetch_factor=loader.prefetch_factor, persistent_workers=loader.persistent_workers,
        multiprocessing_context=loader.multiprocessing_context,
    )  # fmt: skip
    loop = trainer.fit_loop
    out.progress = lambda: (trainer.current_epoch, loop.epoch_loop.batch_progress.current.completed)
    return out


class ExactResume(Callback):
    """Makes a resumed fit continue exactly: same batches, same random draws.

    * The training loader becomes a :class:`ResumableDataLoader` (its position is saved by Lightning).
    * Checkpoints carry the random-number states at the moment they were written; a resumed fit restores
      them just before its first training step (after setup and loader creation, which draw nothing
      from the global state here, so that step sees what it would have seen).
    """

    def __init__(self):
        self._pending: dict | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        dm = trainer.datamodule
        if stage != "fit" or dm is None or getattr(dm.train_dataloader, "_resumable", False):
            return
        original = dm.train_dataloader

        @functools.wraps(original)
        def train_dataloader():
            return resumable_loader(original(), dm.trainer)  # the trainer of this fit, also when dm is reused

        train_dataloader._resumable = True
        dm.train_dataloader = train_dataloader

    def state_dict(self) -> dict:
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict.get("rng")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None


class BenchmarkCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is always the latest state, also after a crash.

    Lightning writes ``last.ckpt`` only when it also writes a top-k checkpoint, so after an epoch that
    did not improve the monitored metric, "last" is an older state. Here ``last.ckpt`` is written at
    every checkpointing point (after the top-k bookkeeping, so it carries the updated best score), and
    with ``save_on_exception`` a fit that stops on an exception writes ``last.ckpt`` at the step it
    reached (no top-k-named file: it is no best). Under DDP only for Ctrl+C and SIGTERM, which reach
    every process: saving is collective and would wait forever for processes that did not fail.
    """

    _last_saved_step: int = -1

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_saved_step = trainer.global_step

    def _save_last_if_missing(self, trainer) -> None:
        if self.save_last and self._last_saved_step != trainer.global_step and trainer.global_step > 0:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missing(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_missing(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not self._should_save_on_exception(trainer) or trainer.state.fn != "fit":
            return
        if trainer.world_size > 1 and not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        rank_zero_info(
            f"stopped by {type(exception).__name__}: wrote {self.last_model_path}; resume with --ckpt_path last"
        )


def main(args: list[str] | None = None) -> None:
    BenchmarkCLI(args=args, subclass_mode_model=True, subclass_mode_data=True, auto_configure_optimizers=False)
