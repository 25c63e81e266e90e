"""Frames of 3D motion seen by random virtual cameras: the shared base of the pose data modules.

A subclass only says where world-frame joint clips come from (:meth:`PoseDataModule.load_clips`);
this module places one random camera per frame (or several), projects, adds optional 2D noise,
and serves batches that follow the batch contract (``datamodules.contract``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from .cameras import CameraRig, in_image, project, world_to_camera
from .skeleton import H36M_17, Skeleton

SPLITS = ("train", "val", "test")


@dataclass
class PoseClips:
    """World-frame frames of one split, flattened over clips: every tensor has N rows."""

    joints_world: torch.Tensor  # (N, J, 3) mm, Z up
    subject: torch.Tensor  # (N,) int64
    action: torch.Tensor  # (N,) int64
    sequence: torch.Tensor  # (N,) int64
    frame: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return self.joints_world.shape[0]

    def subsample(self, stride: int) -> PoseClips:
        keep = self.frame % stride == 0
        return PoseClips(*(x[keep] for x in (self.joints_world, self.subject, self.action, self.sequence, self.frame)))


class TensorBatches(Dataset):
    """A dataset of precomputed tensors whose batches are gathered with one index per tensor.

    ``__getitems__`` lets the DataLoader fetch a whole batch by fancy indexing instead of one sample
    at a time; pair it with ``collate_fn=keep_batch``.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        sizes = {k: v.shape[0] for k, v in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"tensors of one dataset must share their first dimension, got {sizes}")
        self.tensors = tensors

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices)
        return {k: v[idx] for k, v in self.tensors.items()}


def keep_batch(batch):
    """Collate function for :class:`TensorBatches`: the batch is already stacked."""
    return batch


class SplitLoaders:
    """The four DataLoaders of a data module whose splits are batch-gathering datasets.

    The data module provides ``split_dataset(split)``, ``batch_size``, ``eval_batch_size`` and
    ``num_workers``; training shuffles and drops the last partial batch, evaluation does neither.
    """

    def split_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(self.split_dataset(split), batch_size=batch_size, shuffle=shuffle, drop_last=shuffle,
                          collate_fn=keep_batch, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def split_generator(seed: int, *parts: object) -> torch.Generator:
    """A generator seeded from ``seed`` and names, stable across processes and Python versions."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def view_clips(clips: PoseClips, rig: CameraRig, views: int, noise_2d_px: float, generator: torch.Generator,
               skeleton: Skeleton = H36M_17) -> dict[str, torch.Tensor]:  # fmt: skip
    """Each frame seen by ``views`` random cameras: a dict of batch-contract tensors with N * views rows."""
    world = clips.joints_world.repeat(views, 1, 1)
    cams = rig.sample(world[:, skeleton.root], generator)
    cam_points = world_to_camera(world, cams["R"], cams["t"])
    joints_2d = project(cam_points, cams["K"])
    width, height = rig.image_size
    inside = in_image(joints_2d, width, height)
    noisy = (
        joints_2d + noise_2d_px * torch.randn(joints_2d.shape, generator=generator) if noise_2d_px > 0 else joints_2d
    )
    ids = {k: getattr(clips, k).repeat(views) for k in ("subject", "action", "sequence", "frame")}
    return {
        "joints_3d": cam_points,
        "joints_3d_world": world,
        "joints_2d": noisy,
        "joints_2d_gt": joints_2d,
        "visible": inside & (cam_points[..., 2] > 0),
        **cams,
        **ids,
    }


class PoseDataModule(SplitLoaders, L.LightningDataModule):
    """Base for data modules of 3D motion seen by random virtual cameras.

    Args:
        batch_size: training batch size.
        eval_batch_size: validation and test batch size.
        views_per_pose: random cameras per training frame (more views, more 2D variety).
        eval_views_per_pose: random cameras per validation / test frame.
        eval_stride: keep every k-th frame of each validation / test clip.
        noise_2d_px: std of Gaussian noise added to ``joints_2d`` (mimics detections); ``joints_2d_gt`` stays clean.
        camera: ranges of the random cameras.
        num_workers: DataLoader workers.
        seed: everything (motion, cameras, noise) is a function of this seed.
    """

    provides = ("joints_3d", "joints_3d_world", "joints_2d", "joints_2d_gt", "visible", "K", "R", "t",
                "subject", "action", "sequence", "frame")  # fmt: skip
    skeleton: Skeleton = H36M_17

    def __init__(self, batch_size: int = 256, eval_batch_size: int = 2048, views_per_pose: int = 1,
                 eval_views_per_pose: int = 1, eval_stride: int = 1, noise_2d_px: float = 0.0,
                 camera: CameraRig | None = None, num_workers: int = 0, seed: int = 0):  # fmt: skip
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                            ("views_per_pose", views_per_pose), ("eval_views_per_pose", eval_views_per_pose),
                            ("eval_stride", eval_stride)):  # fmt: skip
            if value < 1:
                raise ValueError(f"data option {name} must be >= 1, got {value}")
        if noise_2d_px < 0:
            raise ValueError(f"data option noise_2d_px must be >= 0, got {noise_2d_px}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.views_per_pose = views_per_pose
        self.eval_views_per_pose = eval_views_per_pose
        self.eval_stride = eval_stride
        self.noise_2d_px = noise_2d_px
        self.camera = camera or CameraRig()
        self.num_workers = num_workers
        self.seed = seed
        self.datasets: dict[str, TensorBatches] = {}

    # -- what a subclass provides ---------------------------------------------------------------
    @property
    def name(self) -> str:
        """Dataset name used in result records."""
        raise NotImplementedError

    @property
    def action_names(self) -> list[str]:
        raise NotImplementedError

    def load_clips(self, split: str) -> PoseClips:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    @property
    def protocol(self) -> dict[str, str]:
        """How the data of this module was made, for every result record."""
        return {"input_2d": f"gt+noise{self.noise_2d_px:g}px" if self.noise_2d_px else "gt",
                "annotation_3d": "camera-frame", "eval_stride": str(self.eval_stride)}  # fmt: skip

    def build(self, split: str) -> TensorBatches:
        if split not in self.datasets:
            clips = self.load_clips(split)
            views = self.views_per_pose
            if split != "train":
                clips, views = clips.subsample(self.eval_stride), self.eval_views_per_pose
            if len(clips) == 0:
                raise ValueError(f"{type(self).__name__}: the {split} split is empty; check its subject/file options")
            gen = split_generator(self.seed, type(self).__name__, split, "cameras")
            self.datasets[split] = TensorBatches(
                view_clips(clips, self.camera, views, self.noise_2d_px, gen, self.skeleton)
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage, SPLITS):
            self.build(split)

    def train_poses_3d(self) -> torch.Tensor:
        """(N, J, 3) camera-frame training poses in mm (for PSS clusters and the mean-pose baseline)."""
        return self.build("train").tensors["joints_3d"]

    def split_dataset(self, split: str) -> TensorBatches:
        return self.build(split)
