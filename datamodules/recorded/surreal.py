"""SURREAL (synthetic humans rendered from CMU mocap) in its released layout.

``root`` is the ``SURREAL/data/cmu`` folder::

    <root>/{train,val,test}/run{0,1,2}/<sequence>/
        <sequence>_c%04d.mp4          RGB, 320x240
        <sequence>_c%04d_info.mat     annotation (MATLAB v5)
        <sequence>_c%04d_segm.mat     segm_1..segm_T   240x320 uint8, 0 background, 1..24 body parts
        <sequence>_c%04d_depth.mat    depth_1..depth_T 240x320 float, metres, 1e10 background
        <sequence>_c%04d_gtflow.mat   gtflow_1..       240x320x2 float, px (when present)

``_info.mat`` holds ``joints2D`` 2x24xT (px), ``joints3D`` 3x24xT (m, world), ``camLoc`` 3x1 (m), ``pose``, ``shape``,
``zrot``, ``gender``, ... The camera is SURREAL's: ``K = [[600, 0, 160], [0, 600, 120], [0, 0, 1]]`` and the extrinsic
of ``getExtrinsicBlender(camLoc)``. That extrinsic's fixed 3x3 part has determinant -1: the released ``joints3D``
live in a mirror image of the rendered scene. Camera-frame joints are unaffected (they project onto the images); the
suite's world is the mirror ``X_world = Q @ X_surreal`` with ``Q = R_level^T @ R_world2cv`` (``R_level``: a level
camera looking along +Y, image up = +Z), so that ``R = R_level`` is a proper rotation and the world is right-handed
with Z up (every SURREAL camera is level: its image down is the stored world's +Y).

Joints: the 24 SMPL joints carry swapped left/right labels in the released files (the 'left_hip' slot holds the
right hip as seen in the images, etc.; gulvarol/surreal#10), consistent with the mirror above; ``fix_left_right``
swaps them back, and the segmentation's part labels (part p = SMPL joint p - 1) with them. They map onto ``H36M_17``
as Hip = pelvis, Spine = spine2, Thorax = neck, Neck/Nose = head, and Head (top) = head + (head - neck), an
extrapolation because SMPL has no head-top joint (recorded in ``protocol``).

Pixels: ``joints2D`` are the rounded projection with ``K`` (SURREAL's ``misc/3Dto2D/main.m``, checked on the released
``01_01_c0001_info.mat``), and SURREAL's loader reads them as 0-based pixel indices (``loader_SURREAL.lua`` adds 1
for Lua), i.e. pixel centres -- the convention of the suite's crops; so ``K`` is used as published, with no half-pixel
shift.

Empty frames: frames whose ``joints3D`` are all zero (the body is out of the render) are left out of every split, as
SURREAL's own loader (``training/loader_SURREAL.lua``, ``loadJoints3D``) skips them; ``frame`` keeps the clip's frame
index, so pixels still come from the right video frame.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..cameras import project, world_to_camera
from ..contract import register
from ..skeleton import H36M_17
from .base import (
    DataFormatError,
    FrameSource,
    MatFrames,
    PixelSources,
    RecordedDataModule,
    VideoFile,
    Views,
    check_shape,
    in_frame,
    load_mat,
    mat_key,
)

SMPL_24 = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
           "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
           "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand",
           "right_hand")  # fmt: skip
#: SMPL joint index permutation that exchanges every left/right pair (SURREAL's label swap is its own inverse).
SWAP_LEFT_RIGHT = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22)
#: The same exchange for the segmentation's part labels (0 background, part p = SMPL joint p - 1).
SWAP_PARTS = (0, *(j + 1 for j in SWAP_LEFT_RIGHT))
#: H36M_17 joint -> SMPL joint; 'Head' (top) is extrapolated from neck and head (see module docstring).
H36M_FROM_SMPL = {"Hip": "pelvis", "RHip": "right_hip", "RKnee": "right_knee", "RFoot": "right_ankle",
                  "LHip": "left_hip", "LKnee": "left_knee", "LFoot": "left_ankle", "Spine": "spine2",
                  "Thorax": "neck", "Neck/Nose": "head", "Head": "head", "LShoulder": "left_shoulder",
                  "LElbow": "left_elbow", "LWrist": "left_wrist", "RShoulder": "right_shoulder",
                  "RElbow": "right_elbow", "RWrist": "right_wrist"}  # fmt: skip
FROM_24 = H36M_17.index_map(SMPL_24, H36M_FROM_SMPL)
HEAD, NECK = H36M_17.index("Head"), H36M_17.index("Thorax")

#: SURREAL's intrinsics (getIntrinsicBlender): 320x240 images, f = 600 px.
K_SURREAL = torch.tensor([[600.0, 0.0, 160.0], [0.0, 600.0, 120.0], [0.0, 0.0, 1.0]])
IMAGE_SIZE = (320, 240)
#: getExtrinsicBlender: R_world2cv = R_bcam2cv @ R_world2bcam, the same for every SURREAL camera (det -1).
R_WORLD_TO_CV = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
#: World-to-camera rotation of a level camera: image x = world x, image down = -Z, optical axis = +Y.
LEVEL_CAMERA_R = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: The suite's world from SURREAL's stored one (a reflection, undoing the stored mirror): X_world = Q @ X_surreal.
SUITE_FROM_SURREAL = LEVEL_CAMERA_R.T @ R_WORLD_TO_CV
SPLIT_FOLDERS = {"train": "train", "val": "val", "test": "test"}
CLIP_RE = re.compile(r"(.+)_c(\d{4})_info\.mat")


def surreal_camera(cam_loc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``R`` (3, 3), ``t`` (3,) mm mapping the suite's world (Z up, mm) to SURREAL's camera, from ``camLoc`` (m).

    getExtrinsicBlender gives ``X_cv = R_world2cv @ X_surreal + T`` with ``T = -R_world2cv @ camLoc``; with
    ``X_surreal = Q^T @ X_world`` that is ``X_cv = R_level @ X_world + T`` (``R_world2cv @ Q^T = R_level``).
    """
    t = -(R_WORLD_TO_CV @ cam_loc.reshape(3).float()) * 1000.0
    return LEVEL_CAMERA_R.clone(), t


def read_info(path: Path) -> dict[str, np.ndarray]:
    """``_info.mat`` -> ``joints2D`` (T, 24, 2) px, ``joints3D`` (T, 24, 3) m, ``camLoc`` (3,) m, validated."""
    data = load_mat(Path(path), "SURREAL annotation", variable_names=["joints2D", "joints3D", "camLoc"])
    j2d = np.asarray(mat_key(data, "joints2D", path, "SURREAL annotation"), dtype=np.float64)
    j3d = np.asarray(mat_key(data, "joints3D", path, "SURREAL annotation"), dtype=np.float64)
    cam = np.asarray(mat_key(data, "camLoc", path, "SURREAL annotation"), dtype=np.float64)
    # MATLAB drops a trailing singleton dimension: a one-frame clip has 2x24 joints.
    j2d = j2d.reshape(*j2d.shape, 1) if j2d.ndim == 2 else j2d
    j3d = j3d.reshape(*j3d.shape, 1) if j3d.ndim == 2 else j3d
    check_shape(j2d, (2, 24, None), path, "joints2D")
    check_shape(j3d, (3, 24, j2d.shape[2]), path, "joints3D")
    if cam.size != 3:
        raise DataFormatError(f"{path}: camLoc has shape {cam.shape}, expected (3, 1)")
    if j2d.shape[2] == 0:
        raise DataFormatError(f"{path}: joints2D has no frames")
    return {"joints2D": j2d.transpose(2, 1, 0), "joints3D": j3d.transpose(2, 1, 0), "camLoc": cam.reshape(3)}


def empty_frames(joints3D: np.ndarray) -> np.ndarray:
    """(T,) bool: frames whose ``joints3D`` (T, 24, 3) are all zero, which SURREAL's loader skips (loader_SURREAL.lua)."""
    return (joints3D == 0).all(axis=(1, 2))


def find_clips(root: Path, split: str, runs: tuple[str, ...]) -> list[Path]:
    """Sorted ``_info.mat`` paths of ``split`` (``<root>/<split>/<run>/<sequence>/<sequence>_c%04d_info.mat``)."""
    folder = Path(root) / SPLIT_FOLDERS[split]
    if not folder.is_dir():
        raise FileNotFoundError(f"SURREAL {split} folder {folder} does not exist (root must be SURREAL/data/cmu)")
    out = []
    for run in runs:
        if not (folder / run).is_dir():
            raise FileNotFoundError(f"SURREAL run folder {folder / run} does not exist; set runs to those you have")
        out += sorted((folder / run).glob("*/*_c[0-9][0-9][0-9][0-9]_info.mat"))
    if not out:
        raise FileNotFoundError(f"SURREAL {split}: no <sequence>_c%04d_info.mat files under {folder} runs {list(runs)}")
    return out


@register
class SURREAL(RecordedDataModule):
    """SURREAL (CMU mocap bodies, one camera per clip, 320x240, T ~ 100 frames per clip).

    Args:
        root: the ``SURREAL/data/cmu`` folder (holding ``train``, ``val``, ``test``).
        runs: which of ``run0`` (50% clip overlap), ``run1`` (30%), ``run2`` (70%) to use.
        fix_left_right: undo the swapped left/right joint labels of the released files.
        max_clips: use at most this many clips per split (the first in sorted order), None = all.
        **kwargs: see :class:`datamodules.recorded.base.RecordedDataModule`; ``pixels`` from image (the .mp4), mask and
            parts (``_segm.mat``), depth (``_depth.mat``, mm), flow (``_gtflow.mat``).
    """

    provides = ("joints_3d", "joints_3d_world", "joints_2d", "joints_2d_gt", "visible", "K", "R", "t", "subject",
                "action", "sequence", "frame", "image", "mask", "parts", "depth", "flow")  # fmt: skip
    pixel_kinds = ("image", "mask", "parts", "depth", "flow")

    def __init__(self, root: str, runs: list[str] = ("run0", "run1", "run2"), fix_left_right: bool = True,
                 max_clips: int | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.root = Path(root)
        bad = [r for r in runs if r not in ("run0", "run1", "run2")]
        if bad or not runs:
            raise ValueError(f"SURREAL runs must be among run0, run1, run2, got {list(runs)}")
        if max_clips is not None and max_clips < 1:
            raise ValueError(f"SURREAL max_clips must be >= 1 or null, got {max_clips}")
        self.runs = tuple(runs)
        self.fix_left_right = fix_left_right
        self.max_clips = max_clips
        self._clips: dict[str, list[tuple[Path, int]]] = {}
        #: Per split, frames left out because their joints3D are all zero.
        self.dropped_empty: dict[str, int] = {}

    @property
    def name(self) -> str:
        return "surreal"

    @property
    def action_names(self) -> list[str]:
        return ["cmu"]

    @property
    def protocol(self) -> dict[str, str]:
        out = super().protocol
        out.update(input_2d="gt", runs=",".join(self.runs),
                   left_right="fixed" if self.fix_left_right else "as released",
                   head_top="extrapolated head+(head-neck)")  # fmt: skip
        return out

    def load_views(self, split: str) -> Views:
        paths = find_clips(self.root, split, self.runs)[: self.max_clips]
        parts, clips = [], []
        self.dropped_empty[split] = 0
        for seq_id, path in enumerate(paths):
            info = read_info(path)
            total = len(info["joints3D"])
            kept = np.flatnonzero(~empty_frames(info["joints3D"]))
            self.dropped_empty[split] += total - len(kept)
            j3d = torch.from_numpy(info["joints3D"][kept]).float() * 1000.0  # (T', 24, 3) mm, SURREAL world
            j2d = torch.from_numpy(info["joints2D"][kept]).float()
            if self.fix_left_right:
                j3d, j2d = j3d[:, list(SWAP_LEFT_RIGHT)], j2d[:, list(SWAP_LEFT_RIGHT)]
            world = (j3d @ SUITE_FROM_SURREAL.T)[:, FROM_24]  # X_world = Q X_surreal (row vectors)
            world[:, HEAD] = 2 * world[:, HEAD] - world[:, NECK]
            R, t = surreal_camera(torch.from_numpy(info["camLoc"]))
            n = world.shape[0]
            R_n, t_n = R.expand(n, 3, 3), t.expand(n, 3)
            joints_3d = world_to_camera(world, R_n, t_n)
            gt_2d = project(joints_3d, K_SURREAL.expand(n, 3, 3))
            joints_2d = j2d[:, FROM_24].clone()
            joints_2d[:, HEAD] = gt_2d[:, HEAD]  # no released 2D for the extrapolated joint
            size = torch.tensor(IMAGE_SIZE).expand(n, 2)
            parts.append(Views(
                joints_3d=joints_3d.unsqueeze(1), joints_3d_world=world.unsqueeze(1),
                joints_2d=joints_2d.unsqueeze(1), joints_2d_gt=gt_2d.unsqueeze(1),
                visible=in_frame(gt_2d, size, joints_3d[..., 2]).unsqueeze(1), K=K_SURREAL.expand(n, 1, 3, 3),
                R=R.expand(n, 1, 3, 3), t=t.expand(n, 1, 3), image_size=size.unsqueeze(1),
                camera=torch.zeros(n, 1, dtype=torch.int64), video=torch.full((n, 1), seq_id),
                subject=torch.full((n,), _cmu_subject(path)), action=torch.zeros(n, dtype=torch.int64),
                sequence=torch.full((n,), seq_id), frame=torch.from_numpy(kept),
            ))  # fmt: skip
            clips.append((path, total))
        self._clips[split] = clips
        return Views.cat(parts)

    def pixel_sources(self, split: str) -> PixelSources:
        if split not in self._clips:
            self.load_views(split)
        sources = []
        for info_path, frames in self._clips[split]:
            stem = str(info_path)[: -len("_info.mat")]
            entry: dict[str, FrameSource] = {}
            if "image" in self.pixels:
                entry["image"] = VideoFile(stem + ".mp4")
            if "mask" in self.pixels:
                entry["mask"] = MatFrames(stem + "_segm.mat", "segm_{}", "mask")
            if "parts" in self.pixels:
                relabel = SWAP_PARTS if self.fix_left_right else None
                entry["parts"] = MatFrames(stem + "_segm.mat", "segm_{}", "parts", relabel=relabel)
            if "depth" in self.pixels:
                entry["depth"] = MatFrames(stem + "_depth.mat", "depth_{}", "depth")
            if "flow" in self.pixels:
                entry["flow"] = MatFrames(stem + "_gtflow.mat", "gtflow_{}", "flow", last_frame=frames - 1,
                                          fill_shape=(IMAGE_SIZE[1], IMAGE_SIZE[0], 2))  # fmt: skip
            sources.append(entry)
        return PixelSources(sources)


def _cmu_subject(path: Path) -> int:
    """CMU mocap subject of a clip: '01_01_c0001_info.mat' -> 1 (0 when the name does not follow the pattern)."""
    match = re.match(r"(\d+)_", path.name)
    return int(match.group(1)) if match else 0
