"""Exact resume of an interrupted fit: same batches, same random draws, an up-to-date ``last.ckpt``.

Used by ``benchmark/cli.py``: :class:`ExactResume` and :class:`BenchmarkCheckpoint` are among the CLI's
default callbacks; ``--ckpt_path last`` (resolved by the CLI) then continues a run exactly.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, SequentialSampler


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
