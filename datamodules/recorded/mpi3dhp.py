"""MPI-INF-3DHP: the training sequences and the test set in their released formats.

Files (as released; ``root`` and ``test_root`` are the two unpacked archives):

* ``<root>/S<s>/Seq<q>/annot.mat`` (MATLAB v5, s = 1..8, q = 1, 2): cells ``annot2`` {14x1} of (F, 28*2) px,
  ``annot3`` and ``univ_annot3`` {14x1} of (F, 28*3) camera-frame mm, ``cameras`` (1x14, 0..13), ``frames`` (Fx1).
  The 28 joints are ``mpii_get_joint_set('all')``; the 17 that match Human3.6M are taken by name. ``annot.mat`` has
  more rows than the videos have frames: as the reference preprocessing does (the dataset's
  ``mpii_get_sequence_info.m``, mmpose 0.x ``preprocess_mpi_inf_3dhp.py``), each sequence is cut to its video's
  frame count in :data:`TRAIN_SEQUENCES`, which also gives its frame rate (25 or 50 fps).
* ``<root>/S<s>/Seq<q>/camera.calibration``: 'Skeletool Camera Calibration File V1.0' with per camera ``size`` (w h),
  4x4 row-major ``intrinsic`` and ``extrinsic`` (world to camera, mm; MPI's world is Y up).
* ``<test_root>/TS<i>/annot_data.mat`` (MATLAB v7.3 = HDF5, i = 1..6): ``annot2`` 2x17x1xN px, ``annot3`` and
  ``univ_annot3`` 3x17x1xN mm (h5py reads them transposed, (N, 1, 17, D)), ``valid_frame`` 1xN, ``activity_annotation``
  1xN (1..7); joints in ``mpii_get_joint_set('relevant')`` order. The test files carry no camera: ``K`` is fitted per
  sequence by least squares to ``annot2``/``annot3`` (the annotation's own projection), ``R`` is a level camera.
* Pixels (optional): training frames extracted as ``S<s>/Seq<q>/imageFrames/video_<c>/frame_%06d.jpg`` (1-based, as
  the common preprocessing scripts write them) or else decoded from ``imageSequence/video_<c>.avi``; test frames
  ``TS<i>/imageSequence/img_%06d.jpg``.

Protocol: train on S1..S8 with a camera set (``all`` 14, ``spin8`` = 0, 1, 2, 4, 5, 6, 7, 8, ``chest`` = the five
chest-height cameras 0, 2, 4, 7, 8, or a list), evaluate on TS1..TS6 on valid frames only against ``univ_annot3``
(the skeleton rescaled to Human3.6M's height) with :mod:`metrics.mpi3dhp`. ``action`` is the test activity; training
frames have none ('Unlabelled').
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

from ..cameras import camera_to_world, project
from ..contract import register
from ..skeleton import H36M_17
from .base import (
    DataFormatError,
    FrameSource,
    ImageFolder,
    PixelSources,
    RecordedDataModule,
    VideoFile,
    Views,
    check_shape,
    in_frame,
    load_mat,
    mat_key,
    open_h5,
    require_file,
)

#: ``mpii_get_joint_set('all')``: the 28 joints of the training annotation.
JOINTS_28 = ("spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top", "left_clavicle",
             "left_shoulder", "left_elbow", "left_wrist", "left_hand", "right_clavicle", "right_shoulder",
             "right_elbow", "right_wrist", "right_hand", "left_hip", "left_knee", "left_ankle", "left_foot",
             "left_toe", "right_hip", "right_knee", "right_ankle", "right_foot", "right_toe")  # fmt: skip
#: ``mpii_get_joint_set('relevant')``: the 17 joints of the test set (1-based [8 6 15 16 17 10 11 12 24 25 26 19 20
#: 21 5 4 7] of the 28).
JOINTS_17 = ("head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
             "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "pelvis",
             "spine", "head")  # fmt: skip
#: H36M_17 joint -> MPI-INF-3DHP joint (the correspondence the literature uses; MPI's 'head' is the head centre at
#: nose height, 'neck' the base of the neck).
H36M_FROM_MPI = {"Hip": "pelvis", "RHip": "right_hip", "RKnee": "right_knee", "RFoot": "right_ankle",
                 "LHip": "left_hip", "LKnee": "left_knee", "LFoot": "left_ankle", "Spine": "spine", "Thorax": "neck",
                 "Neck/Nose": "head", "Head": "head_top", "LShoulder": "left_shoulder", "LElbow": "left_elbow",
                 "LWrist": "left_wrist", "RShoulder": "right_shoulder", "RElbow": "right_elbow",
                 "RWrist": "right_wrist"}  # fmt: skip
FROM_28 = H36M_17.index_map(JOINTS_28, H36M_FROM_MPI)
FROM_17 = H36M_17.index_map(JOINTS_17, H36M_FROM_MPI)

#: (video frames, fps) per training sequence (s, q), from the dataset's ``mpii_get_sequence_info.m``; the same counts
#: cut the sequences in mmpose 0.x ``preprocess_mpi_inf_3dhp.py``.
TRAIN_SEQUENCES = {(1, 1): (6416, 25), (1, 2): (12430, 50), (2, 1): (6502, 25), (2, 2): (6081, 25),
                   (3, 1): (12488, 50), (3, 2): (12283, 50), (4, 1): (6171, 25), (4, 2): (6675, 25),
                   (5, 1): (12820, 50), (5, 2): (12312, 50), (6, 1): (6188, 25), (6, 2): (6145, 25),
                   (7, 1): (6239, 25), (7, 2): (6320, 25), (8, 1): (6468, 25), (8, 2): (6054, 25)}  # fmt: skip
CAMERA_SETS = {"all": tuple(range(14)), "spin8": (0, 1, 2, 4, 5, 6, 7, 8), "chest": (0, 2, 4, 7, 8)}
#: ``mpii_get_activity_name``: test activities 1..7 (``action`` 0..6); training frames get 'Unlabelled'.
ACTIVITIES = ("Standing/Walking", "Exercising", "Sitting", "Reaching/Crouching", "On The Floor", "Sports",
              "Miscellaneous")  # fmt: skip
ACTION_NAMES = (*ACTIVITIES, "Unlabelled")
#: Test-set image sizes (w, h): TS1-4 studio (2048x2048), TS5-6 outdoor (1920x1080).
TEST_SIZES = {1: (2048, 2048), 2: (2048, 2048), 3: (2048, 2048), 4: (2048, 2048), 5: (1920, 1080), 6: (1920, 1080)}
#: The suite's world (Z up) from MPI's (Y up): (x, y, z) -> (x, -z, y).
Z_UP_FROM_Y_UP = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
#: World-to-camera rotation of a level camera (image x = world x, image down = -Z, optical axis = +Y).
LEVEL_CAMERA_R = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


# -- files -------------------------------------------------------------------------------------------------------------
def read_calibration(path: Path) -> list[dict[str, np.ndarray]]:
    """``camera.calibration`` -> per camera ``K`` (3, 3), ``E`` (4, 4) world-to-camera (mm), ``size`` (w, h)."""
    require_file(path, "MPI-INF-3DHP camera calibration")
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not lines or " ".join(lines[0]) != "Skeletool Camera Calibration File V1.0":
        raise DataFormatError(f"{path} does not start with 'Skeletool Camera Calibration File V1.0'")
    cams: list[dict] = []
    for n, tokens in enumerate(lines[1:], start=2):
        key, values = tokens[0], tokens[1:]
        try:
            if key == "name":
                cams.append({})
            elif key == "size":
                cams[-1]["size"] = (int(float(values[0])), int(float(values[1])))
            elif key in ("intrinsic", "extrinsic"):
                if len(values) != 16:
                    raise DataFormatError(f"{path} line {n}: {key} has {len(values)} numbers, expected 16 (4x4)")
                cams[-1][key] = np.array(values, dtype=np.float64).reshape(4, 4)
        except (IndexError, ValueError) as err:
            if isinstance(err, DataFormatError):
                raise
            raise DataFormatError(f"{path} line {n}: cannot parse {' '.join(tokens)!r}") from err
    for c, cam in enumerate(cams):
        missing = [k for k in ("size", "intrinsic", "extrinsic") if k not in cam]
        if missing:
            raise DataFormatError(f"{path}: camera {c} lacks {missing}")
    if len(cams) != 14:
        raise DataFormatError(f"{path} describes {len(cams)} cameras, expected 14")
    return [{"K": c["intrinsic"][:3, :3], "E": c["extrinsic"], "size": c["size"]} for c in cams]


def _cell(data: dict, key: str, path: Path, width: int) -> np.ndarray:
    """A 14-camera cell of (F, 28 * width) matrices -> (14, F, 28, width)."""
    cell = np.asarray(mat_key(data, key, path, "MPI-INF-3DHP annotation"))
    if cell.dtype != object or cell.size != 14:
        raise DataFormatError(f"{path}: {key} must be a cell of 14 cameras, got {cell.dtype} {cell.shape}")
    arrays = [np.asarray(x, dtype=np.float64) for x in cell.reshape(-1)]
    frames = arrays[0].shape[0]
    for c, x in enumerate(arrays):
        check_shape(x, (frames, 28 * width), path, f"{key}{{{c + 1}}}")
    return np.stack(arrays).reshape(14, frames, 28, width)


def read_train_annotation(path: Path) -> dict[str, np.ndarray]:
    """``annot.mat`` -> ``annot2`` (14, F, 28, 2) px, ``annot3``/``univ_annot3`` (14, F, 28, 3) mm."""
    data = load_mat(Path(path), "MPI-INF-3DHP annotation")
    out = {"annot2": _cell(data, "annot2", path, 2), "annot3": _cell(data, "annot3", path, 3),
           "univ_annot3": _cell(data, "univ_annot3", path, 3)}  # fmt: skip
    frames = {k: v.shape[1] for k, v in out.items()}
    if len(set(frames.values())) != 1 or out["annot2"].shape[1] == 0:
        raise DataFormatError(f"{path}: annot2/annot3/univ_annot3 disagree on the frame count or are empty: {frames}")
    return out


def cut_to_video(annot: dict[str, np.ndarray], subject: int, sequence: int) -> dict[str, np.ndarray]:
    """The annotation's rows that have a video frame (``TRAIN_SEQUENCES``); rows past the video's end are dropped."""
    frames = TRAIN_SEQUENCES[(subject, sequence)][0]
    return {k: v[:, :frames] for k, v in annot.items()}


def read_test_annotation(path: Path) -> dict[str, np.ndarray]:
    """``annot_data.mat`` (v7.3) -> ``annot2`` (N, 17, 2), ``annot3``/``univ_annot3`` (N, 17, 3), ``valid_frame`` (N,)
    bool and ``activity_annotation`` (N,) int, in the test set's 17-joint order."""
    with open_h5(Path(path), "MPI-INF-3DHP test annotation") as f:
        try:
            raw = {k: np.asarray(mat_key(f, k, path, "MPI-INF-3DHP test annotation"))
                   for k in ("annot2", "annot3", "univ_annot3", "valid_frame", "activity_annotation")}  # fmt: skip
        except DataFormatError:
            raise
        except Exception as err:  # h5py on a truncated file fails when the data are read
            raise DataFormatError(f"{path} cannot be read ({type(err).__name__}: {err}); the file is truncated "
                                  "or corrupt -- download it again") from err  # fmt: skip
    n = raw["annot2"].shape[0]
    out = {"annot2": check_shape(raw["annot2"], (n, 1, 17, 2), path, "annot2")[:, 0].astype(np.float64)}
    for key in ("annot3", "univ_annot3"):
        out[key] = check_shape(raw[key], (n, 1, 17, 3), path, key)[:, 0].astype(np.float64)
    for key in ("valid_frame", "activity_annotation"):
        if raw[key].size != n:
            raise DataFormatError(f"{path}: {key} has {raw[key].size} entries for {n} frames of annot2")
        out[key] = raw[key].reshape(-1)
    out["valid_frame"] = out["valid_frame"] != 0
    activity = out["activity_annotation"][out["valid_frame"]]
    if activity.size and (activity.min() < 1 or activity.max() > 7 or np.any(activity != np.round(activity))):
        raise DataFormatError(f"{path}: activity_annotation of valid frames must be integers 1..7, got "
                              f"{sorted(set(activity.tolist()))[:10]}")  # fmt: skip
    out["activity_annotation"] = out["activity_annotation"].astype(np.int64)
    return out


def fit_intrinsics(joints_3d: torch.Tensor, joints_2d: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Least-squares pinhole ``K`` (3, 3) with ``u = fx X/Z + cx``, ``v = fy Y/Z + cy``.

    Args:
        joints_3d: (N, J, 3) camera-frame points (mm); joints_2d: (N, J, 2) their pixels.

    Returns ``K`` and the RMS reprojection residual (px).
    """
    X = joints_3d.reshape(-1, 3).double()
    uv = joints_2d.reshape(-1, 2).double()
    keep = X[:, 2] > 1.0
    X, uv = X[keep], uv[keep]
    if len(X) < 3:
        raise ValueError("fit_intrinsics needs at least 3 points in front of the camera")
    K = torch.eye(3, dtype=torch.float64)
    residual = []
    for axis in range(2):
        A = torch.stack([X[:, axis] / X[:, 2], torch.ones(len(X), dtype=torch.float64)], dim=-1)
        sol = torch.linalg.lstsq(A, uv[:, axis : axis + 1]).solution.squeeze(-1)
        K[axis, axis], K[axis, 2] = sol[0], sol[1]
        residual.append(A @ sol - uv[:, axis])
    rms = float(torch.cat(residual).pow(2).mean().sqrt())
    return K.float(), rms


def resolve_cameras(cameras: str | list[int]) -> tuple[int, ...]:
    if isinstance(cameras, str):
        if cameras not in CAMERA_SETS:
            raise ValueError(
                f"MPI-INF-3DHP camera set {cameras!r} unknown; use {sorted(CAMERA_SETS)} or a list of 0..13"
            )
        return CAMERA_SETS[cameras]
    out = tuple(int(c) for c in cameras)
    if not out or any(c not in range(14) for c in out) or len(set(out)) != len(out):
        raise ValueError(f"MPI-INF-3DHP cameras must be distinct indices 0..13, got {list(cameras)}")
    return out


@register
class MPIINF3DHP(RecordedDataModule):
    """MPI-INF-3DHP (17 of 28 joints, 14 training cameras, 6 test sequences).

    Args:
        root: folder with ``S1`` .. ``S8``.
        test_root: folder with ``TS1`` .. ``TS6`` (default ``<root>/mpi_inf_3dhp_test_set``).
        train_subjects: training subjects (1..8).
        sequences: training sequences per subject (1, 2).
        cameras: training cameras: a set name (``spin8``, ``chest``, ``all``) or indices 0..13.
        val_subjects: None = validate on the test sequences (the common practice); else training subjects held out.
        test_sequences: test sequences (1..6).
        train_annotation / test_annotation: ``annot3`` (camera-frame mm, projects onto ``annot2``) or ``univ_annot3``
            (rescaled to the Human3.6M skeleton; the official evaluation's ground truth) as ``joints_3d``.
        valid_only: keep only test frames with ``valid_frame`` (the official evaluation does).
        **kwargs: see :class:`datamodules.recorded.base.RecordedDataModule`.
    """

    provides = ("joints_3d", "joints_3d_world", "joints_2d", "joints_2d_gt", "visible", "K", "R", "t", "subject",
                "action", "sequence", "frame", "image")  # fmt: skip
    pixel_kinds = ("image",)

    def __init__(self, root: str, test_root: str | None = None, train_subjects: list[int] = (1, 2, 3, 4, 5, 6, 7, 8),
                 sequences: list[int] = (1, 2), cameras: str | list[int] = "spin8",
                 val_subjects: list[int] | None = None, test_sequences: list[int] = (1, 2, 3, 4, 5, 6),
                 train_annotation: str = "annot3", test_annotation: str = "univ_annot3", valid_only: bool = True,
                 **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.root = Path(root)
        self.test_root = Path(test_root) if test_root else self.root / "mpi_inf_3dhp_test_set"
        for opt, values, allowed in (("train_subjects", train_subjects, range(1, 9)), ("sequences", sequences, (1, 2)),
                                     ("val_subjects", val_subjects or (), range(1, 9)),
                                     ("test_sequences", test_sequences, range(1, 7))):  # fmt: skip
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"MPIINF3DHP {opt} {bad} out of range {list(allowed)}")
        for opt, value in (("train_annotation", train_annotation), ("test_annotation", test_annotation)):
            if value not in ("annot3", "univ_annot3"):
                raise ValueError(f"MPIINF3DHP {opt} must be 'annot3' or 'univ_annot3', got {value!r}")
        self.train_subjects = tuple(train_subjects)
        self.sequences = tuple(sequences)
        self.cameras = resolve_cameras(cameras)
        self.camera_set = cameras if isinstance(cameras, str) else ",".join(map(str, self.cameras))
        self.val_subjects = tuple(val_subjects) if val_subjects else None
        self.test_sequences = tuple(test_sequences)
        self.train_annotation, self.test_annotation = train_annotation, test_annotation
        self.valid_only = valid_only
        self._videos: dict[str, list[tuple]] = {}
        self.intrinsics_fit: dict[int, float] = {}
        #: Per loaded training sequence (s, q): annotation ``rows``, ``frames`` kept (its video's), ``fps``.
        self.sequence_info: dict[tuple[int, int], dict[str, int]] = {}

    @property
    def name(self) -> str:
        return "3dhp"

    @property
    def action_names(self) -> list[str]:
        return list(ACTION_NAMES)

    @property
    def protocol(self) -> dict[str, str]:
        out = super().protocol
        out.update(input_2d="gt", annotation_3d=f"train:{self.train_annotation} test:{self.test_annotation}",
                   cameras=self.camera_set, train_subjects=",".join(f"S{s}" for s in self.train_subjects),
                   test_sequences=",".join(f"TS{i}" for i in self.test_sequences),
                   test_frames="valid_frame" if self.valid_only else "all")  # fmt: skip
        return out

    def split_source(self, split: str) -> object:
        if split == "train" or (split == "val" and self.val_subjects):
            return (split, self.train_subjects if split == "train" else self.val_subjects)
        return ("test", self.test_sequences)

    def load_views(self, split: str) -> Views:
        if split == "train" or (split == "val" and self.val_subjects):
            subjects = self.train_subjects if split == "train" else self.val_subjects
            views, videos = self._train_views(subjects)
        else:
            views, videos = self._test_views()
        self._videos[split] = videos
        return views

    def _train_views(self, subjects: tuple[int, ...]) -> tuple[Views, list[tuple]]:
        cams = list(self.cameras)
        parts, videos = [], []
        for s in subjects:
            for q in self.sequences:
                folder = self.root / f"S{s}" / f"Seq{q}"
                annot = read_train_annotation(folder / "annot.mat")
                rows = annot["annot3"].shape[1]
                annot = cut_to_video(annot, s, q)
                self.sequence_info[(s, q)] = {"rows": rows, "frames": annot["annot3"].shape[1],
                                              "fps": TRAIN_SEQUENCES[(s, q)][1]}  # fmt: skip
                calib = read_calibration(folder / "camera.calibration")
                n, v = annot["annot3"].shape[1], len(cams)
                cam3 = torch.from_numpy(annot["annot3"][cams][:, :, FROM_28]).permute(1, 0, 2, 3).float()
                joints_3d = cam3
                if self.train_annotation == "univ_annot3":
                    univ = annot["univ_annot3"][cams][:, :, FROM_28]
                    joints_3d = torch.from_numpy(univ).permute(1, 0, 2, 3).float()
                joints_2d = torch.from_numpy(annot["annot2"][cams][:, :, FROM_28]).permute(1, 0, 2, 3).float()
                K = torch.tensor(np.stack([calib[c]["K"] for c in cams]), dtype=torch.float32)
                E = torch.tensor(np.stack([calib[c]["E"] for c in cams]), dtype=torch.float32)
                R = E[:, :3, :3] @ Z_UP_FROM_Y_UP.T  # X_cam = R_mpi X_mpi + t = R_mpi W^T X_suite + t
                t = E[:, :3, 3]
                size = torch.tensor([calib[c]["size"] for c in cams], dtype=torch.int64)
                expand = lambda x, n=n: x.unsqueeze(0).expand(n, *x.shape)  # noqa: E731
                world = camera_to_world(cam3[:, 0], expand(R)[:, 0], expand(t)[:, 0])  # from the first camera
                gt_2d = project(cam3, expand(K))
                video = torch.arange(len(videos), len(videos) + v).expand(n, v)
                videos += [("train", s, q, c) for c in cams]
                parts.append(Views(
                    joints_3d=joints_3d, joints_3d_world=world.unsqueeze(1).expand(n, v, 17, 3), joints_2d=joints_2d,
                    joints_2d_gt=gt_2d, visible=in_frame(gt_2d, expand(size), cam3[..., 2]), K=expand(K),
                    R=expand(R), t=expand(t), image_size=expand(size), camera=torch.tensor(cams).expand(n, v),
                    video=video, subject=torch.full((n,), s), action=torch.full((n,), len(ACTIVITIES)),
                    sequence=torch.full((n,), len(parts)), frame=torch.arange(n),
                ))  # fmt: skip
        return Views.cat(parts), videos

    def _test_views(self) -> tuple[Views, list[tuple]]:
        parts, videos = [], []
        for i in self.test_sequences:
            path = self.test_root / f"TS{i}" / "annot_data.mat"
            annot = read_test_annotation(path)
            keep = annot["valid_frame"] if self.valid_only else np.ones_like(annot["valid_frame"])
            frames = torch.from_numpy(np.flatnonzero(keep))
            if len(frames) == 0:
                raise DataFormatError(f"{path}: no valid frames (valid_frame is all 0)")
            cam3, univ, joints_2d = (torch.from_numpy(annot[k][keep][:, FROM_17]).float()
                                     for k in ("annot3", "univ_annot3", "annot2"))  # fmt: skip
            valid = torch.from_numpy(annot["valid_frame"][keep])
            K, rms = fit_intrinsics(cam3[valid], joints_2d[valid])
            self.intrinsics_fit[i] = rms
            if rms > 1.0:
                rank_zero_warn(f"{path}: the fitted pinhole K reprojects annot3 onto annot2 with {rms:.2f} px RMS")
            n = len(frames)
            activity = torch.from_numpy(annot["activity_annotation"][keep])
            # Invalid frames (kept only with valid_only=False) may carry any activity code; they get 'Unlabelled'.
            action = torch.where(valid, activity - 1, torch.full_like(activity, len(ACTIVITIES)))
            size = torch.tensor(TEST_SIZES[i], dtype=torch.int64).expand(n, 1, 2)
            R, t = LEVEL_CAMERA_R.expand(n, 1, 3, 3), torch.zeros(n, 1, 3)
            gt_2d = project(cam3, K)
            parts.append(Views(
                joints_3d=(univ if self.test_annotation == "univ_annot3" else cam3).unsqueeze(1),
                joints_3d_world=camera_to_world(cam3, R[:, 0], t[:, 0]).unsqueeze(1), joints_2d=joints_2d.unsqueeze(1),
                joints_2d_gt=gt_2d.unsqueeze(1), visible=in_frame(gt_2d, size[:, 0], cam3[..., 2]).unsqueeze(1),
                K=K.expand(n, 1, 3, 3), R=R, t=t, image_size=size, camera=torch.full((n, 1), -1),
                video=torch.full((n, 1), len(videos)), subject=torch.full((n,), i), action=action,
                sequence=torch.full((n,), len(parts)), frame=frames,
            ))  # fmt: skip
            videos.append(("test", i))
        return Views.cat(parts), videos

    def pixel_sources(self, split: str) -> PixelSources:
        if split not in self._videos:
            self.load_views(split)
        sources: list[dict[str, FrameSource]] = []
        for entry in self._videos[split]:
            if entry[0] == "test":
                folder = self.test_root / f"TS{entry[1]}" / "imageSequence"
                ext = "png" if not any(folder.glob("img_*.jpg")) and any(folder.glob("img_*.png")) else "jpg"
                sources.append({"image": ImageFolder(str(folder / f"img_{{:06d}}.{ext}"), first=1)})
                continue
            _, s, q, c = entry
            seq = self.root / f"S{s}" / f"Seq{q}"
            frames = seq / "imageFrames" / f"video_{c}"
            video = seq / "imageSequence" / f"video_{c}.avi"
            if frames.is_dir():
                sources.append({"image": ImageFolder(str(frames / "frame_{:06d}.jpg"), first=1)})
            elif video.is_file():
                sources.append({"image": VideoFile(video)})
            else:
                raise FileNotFoundError(f"MPI-INF-3DHP S{s}/Seq{q} camera {c}: neither extracted frames {frames} nor "
                                        f"the video {video} exist")  # fmt: skip
        return PixelSources(sources)
