"""Resume: a fit stopped mid-epoch and resumed with ``--ckpt_path last`` ends exactly like an uninterrupted fit."""

import json

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from tiny import tiny_args

from benchmark.__main__ import main
from benchmark.cli import find_last_checkpoint
from benchmark.resume import EpochSampler

# 3 actions x 1 clip x 41 frames x 2 subjects = 246 training poses: 7 batches of 32 per epoch (drop_last).
TINY = [*tiny_args(actions=("walk", "wave", "run"), frames=41, eval_batch_size=50), "--trainer.deterministic", "true"]
STOP_EPOCH, STOP_BATCH = 1, 3


class StopAt(Callback):
    """Raises before training batch ``batch`` of epoch ``epoch`` (as a crash or Ctrl+C would)."""

    def __init__(self, epoch: int = STOP_EPOCH, batch: int = STOP_BATCH):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError(f"stop at epoch {self.epoch} batch {self.batch}")


def record(results_dir, method="svmac"):
    (path,) = (results_dir / "synthetic").glob(f"{method}__*.json")
    return json.loads(path.read_text())


def test_interrupted_fit_resumes_to_the_same_metrics(workdir):
    main(["fit", *TINY, "--run.root", "full", "--run.results_dir", "res_full"])

    with pytest.raises(RuntimeError, match="stop at epoch 1 batch 3"):
        main(
            [
                "fit",
                *TINY,
                "--run.root",
                "cut",
                "--run.results_dir",
                "res_cut",
                "--trainer.callbacks+=test_resume.StopAt",
            ]
        )
    last = find_last_checkpoint(workdir / "cut" / "svmac")
    ckpt = torch.load(last, weights_only=True)
    # written at the interruption: 7 batches of epoch 0 and 3 of epoch 1 done (2 optimiser steps per batch)
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 2 * (7 + STOP_BATCH))
    assert not (workdir / "res_cut").exists()

    main(["fit", *TINY, "--run.root", "cut", "--run.results_dir", "res_cut", "--ckpt_path", "last"])
    full, resumed = record(workdir / "res_full"), record(workdir / "res_cut")
    assert resumed["run"]["global_step"] == full["run"]["global_step"] == 2 * 7 * 2
    # the resumed fit kept writing into the interrupted run's checkpoint folder and logs to a new version
    assert "cut/svmac/version_0/checkpoints" in resumed["run"]["checkpoint"]
    assert (workdir / "cut" / "svmac" / "version_1" / "metrics.csv").is_file()
    # deterministic mode: the same numbers, bit for bit: the test of the best checkpoint, the validation after
    # every epoch (the last one trained partly before and partly after the interruption) and the final weights
    assert resumed["metrics"] == full["metrics"]
    assert resumed["per_action"] == full["per_action"]
    end_full = torch.load(workdir / "full/svmac/version_0/checkpoints/last.ckpt", weights_only=True)
    end_cut = torch.load(workdir / "cut/svmac/version_0/checkpoints/last.ckpt", weights_only=True)
    assert [v["step"] for v in end_cut["val_history"]] == [14, 28]
    assert end_cut["val_history"] == end_full["val_history"]
    assert all(torch.equal(end_full["state_dict"][k], end_cut["state_dict"][k]) for k in end_full["state_dict"])


def test_epoch_sampler_skips_once_and_orders_by_seed_and_epoch():
    from torch.utils.data import DistributedSampler

    data = list(range(10))
    sampler, reference = (
        cls(data, num_replicas=1, rank=0, shuffle=True, seed=3) for cls in (EpochSampler, DistributedSampler)
    )
    sampler.set_epoch(2)
    reference.set_epoch(2)
    order = list(sampler)
    assert order == list(reference) and sorted(order) == data and order != data
    sampler.skip = 4
    assert list(sampler) == order[4:]
    assert list(sampler) == order  # the skip applies to one epoch only
