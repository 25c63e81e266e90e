import os
import shutil
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(2)


@pytest.fixture
def tiny_synthetic_kwargs():
    """A SyntheticPoses small enough for a test run in seconds."""
    return dict(train_subjects=[1, 2], val_subjects=[3], test_subjects=[4], actions=["walk", "wave"],
                clips_per_action=2, frames_per_clip=40, batch_size=64, eval_batch_size=256)  # fmt: skip


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch repository root: a copy of configs/ in tmp_path, which becomes the working directory."""
    shutil.copytree(Path(__file__).resolve().parents[1] / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    return tmp_path
