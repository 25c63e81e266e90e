"""Recorded datasets (Human3.6M, MPI-INF-3DHP, SURREAL): the data-module machinery they share.

A dataset module reads its published files into :class:`Views` -- annotated frames, each seen by V synchronised
cameras -- and, when pixels are asked for, a :class:`PixelSources` that reads any (video, frame). This module turns
them into batches of the contract (``datamodules.contract``) under the standard protocol options:

* ``train_stride`` / ``eval_stride``: keep frames whose index is a multiple (Human3.6M's every-64th-frame evaluation
  is ``eval_stride: 64``);
* ``multiview``: training rows are synchronised views ``(B, V, ...)`` instead of single images ``(B, ...)``;
* ``pair_offset``: training rows are frame pairs ``(B, 2, ...)`` of one video, ``frame`` and ``frame + offset``;
* ``pixels``: images, masks, part labels, depth, flow, cropped around the person (``crop: person``) or resized
  whole (``crop: full``) to ``image_size``; ``K`` and the 2D joints follow the crop, so
  ``project(joints_3d, K)`` still lands on the pixels.

Validation and test rows are always single-view, single-frame: the monocular protocol every method is scored on.
Loaders never return partial data silently: a missing or malformed file raises an error naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from ..poses import SPLITS, SplitLoaders, TensorBatches
from ..skeleton import H36M_17, Skeleton

#: Batch keys of every recorded data module (poses, cameras, ids).
POSE_KEYS = ("joints_3d", "joints_3d_world", "joints_2d", "joints_2d_gt", "visible", "K", "R", "t",
             "subject", "action", "sequence", "frame", "camera")  # fmt: skip
PIXEL_KINDS = ("image", "mask", "parts", "depth", "flow")


class DataFormatError(ValueError):
    """A dataset file exists but is not in its published format; the message names the file and what is wrong."""


# -- reading files with errors that name them --------------------------------------------------------------------------
def require_file(path: Path, what: str, hint: str = "") -> Path:
    """``path`` if it is a file, else ``FileNotFoundError`` naming it (``what``: e.g. 'Human3.6M 3D poses')."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist{'; ' + hint if hint else ''}")
    return path


def load_mat(path: Path, what: str, variable_names: list[str] | None = None) -> dict:
    """A MATLAB v5 file through ``scipy.io.loadmat``, with errors naming the file."""
    import scipy.io

    require_file(path, what)
    try:
        return scipy.io.loadmat(str(path), variable_names=variable_names)
    except NotImplementedError as err:  # scipy's answer to v7.3 (HDF5) files
        raise DataFormatError(f"{what} {path} is a MATLAB v7.3 (HDF5) file; the published file is MATLAB v5") from err
    except Exception as err:
        raise DataFormatError(f"{what} {path} cannot be read ({type(err).__name__}: {err}); the file is truncated "
                              "or corrupt -- download or extract it again") from err  # fmt: skip


def open_h5(path: Path, what: str):
    """An HDF5 file (MATLAB v7.3 .mat) opened read-only through h5py, with errors naming the file."""
    import h5py

    require_file(path, what)
    try:
        return h5py.File(path, "r")
    except Exception as err:
        raise DataFormatError(f"{what} {path} cannot be opened as HDF5 / MATLAB v7.3 ({type(err).__name__}: {err}); "
                              "the file is truncated or corrupt -- download it again") from err  # fmt: skip


def mat_key(data, key: str, path: Path, what: str):
    """``data[key]`` or a :class:`DataFormatError` naming the file and the keys it has."""
    if key not in data:
        have = sorted(k for k in data.keys() if not k.startswith("__"))
        raise DataFormatError(f"{what} {path} has no variable {key!r}; it has {have}")
    return data[key]


def check_shape(array: np.ndarray, expected: tuple[int | None, ...], path: Path, key: str) -> np.ndarray:
    """``array`` if its shape matches ``expected`` (None = any size), else a :class:`DataFormatError`."""
    shape = tuple(np.shape(array))
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
        want = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
        raise DataFormatError(f"{path}: {key} has shape {shape}, expected {want}")
    return np.asarray(array)


# -- annotated frames --------------------------------------------------------------------------------------------------
@dataclass
class Views:
    """Annotated frames of one split, each seen by V synchronised cameras.

    Per-view tensors have shape (N, V, ...); ``extra`` holds dataset-specific per-view tensors outside the contract
    (e.g. Human3.6M's ``distortion`` (N, V, 5)), which travel into batches too.
    """

    joints_3d: torch.Tensor  # (N, V, J, 3) camera frame, mm
    joints_3d_world: torch.Tensor  # (N, V, J, 3) world frame (Z up), mm
    joints_2d: torch.Tensor  # (N, V, J, 2) px: the 2D input (detections, or the released 2D annotation)
    joints_2d_gt: torch.Tensor  # (N, V, J, 2) px: projection of joints_3d
    visible: torch.Tensor  # (N, V, J) bool: in front of the camera and inside the image
    K: torch.Tensor  # (N, V, 3, 3) px
    R: torch.Tensor  # (N, V, 3, 3) world to camera
    t: torch.Tensor  # (N, V, 3) mm
    image_size: torch.Tensor  # (N, V, 2) int64 (width, height) px
    camera: torch.Tensor  # (N, V) int64 dataset camera index
    video: torch.Tensor  # (N, V) int64 index into the split's PixelSources, -1 = none
    subject: torch.Tensor  # (N,) int64
    action: torch.Tensor  # (N,) int64 into the module's action_names
    sequence: torch.Tensor  # (N,) int64, unique per recording within the split
    frame: torch.Tensor  # (N,) int64 frame index within the recording (0-based)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.joints_3d.shape[0]

    @property
    def num_views(self) -> int:
        return self.joints_3d.shape[1]

    def index(self, rows: torch.Tensor) -> Views:
        """The frames selected by a (N,) bool mask or an index tensor."""
        out = {f.name: getattr(self, f.name)[rows] for f in fields(self) if f.name != "extra"}
        return Views(**out, extra={k: v[rows] for k, v in self.extra.items()})

    @staticmethod
    def cat(parts: list[Views]) -> Views:
        if not parts:
            raise ValueError("Views.cat needs at least one part")
        out = {f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Views) if f.name != "extra"}
        return Views(**out, extra={k: torch.cat([p.extra[k] for p in parts]) for k in parts[0].extra})


def in_frame(joints_2d: torch.Tensor, image_size: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """(..., J) bool: in front of the camera (depth > 0) and inside ``[0, W) x [0, H)``.

    Args:
        joints_2d: (..., J, 2) px; image_size: (..., 2) (width, height) px; depth: (..., J) camera z (mm).
    """
    size = image_size.to(joints_2d.dtype).unsqueeze(-2)
    return (depth > 0) & (joints_2d >= 0).all(dim=-1) & (joints_2d < size).all(dim=-1)


# -- crops -------------------------------------------------------------------------------------------------------------
def crop_affines(joints_2d: torch.Tensor, visible: torch.Tensor, image_size: torch.Tensor, mode: str, out_size: int,
                 margin: float = 1.25, min_side_px: float = 32.0) -> torch.Tensor:  # fmt: skip
    """(..., 2, 3) affine maps from original pixels to the ``out_size`` square output.

    ``person``: a square around the bounding box of the visible joints (all joints when none is visible), its side
    ``margin`` times the box's longer side; ``full``: the whole image resized (aspect ratio not kept). Pixel centres
    follow OpenCV (pixel i covers [i - 0.5, i + 0.5]), so ``full`` matches ``cv2.resize``.

    Args:
        joints_2d: (..., J, 2) px; visible: (..., J) bool; image_size: (..., 2) (width, height) px.
    """
    size = image_size.to(joints_2d.dtype)
    if mode == "full":
        scale = out_size / size  # (..., 2): sx, sy
        lo = torch.zeros_like(scale)
    elif mode == "person":
        vis = visible | ~visible.any(dim=-1, keepdim=True)
        inf = torch.finfo(joints_2d.dtype).max
        lo_box = torch.where(vis.unsqueeze(-1), joints_2d, torch.full_like(joints_2d, inf)).amin(dim=-2)
        hi_box = torch.where(vis.unsqueeze(-1), joints_2d, torch.full_like(joints_2d, -inf)).amax(dim=-2)
        centre = (lo_box + hi_box) / 2
        side = ((hi_box - lo_box).amax(dim=-1) * margin).clamp(min=min_side_px)
        lo = centre - side.unsqueeze(-1) / 2
        scale = (out_size / side).unsqueeze(-1).expand_as(lo)
    else:
        raise ValueError(f"crop must be 'person' or 'full', got {mode!r}")
    A = torch.zeros(*scale.shape[:-1], 2, 3, dtype=joints_2d.dtype)
    A[..., 0, 0] = scale[..., 0]
    A[..., 1, 1] = scale[..., 1]
    A[..., :, 2] = scale * (0.5 - lo) - 0.5
    return A


def apply_affine_2d(points: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """(..., J, 2) px mapped by (..., 2, 3) affines."""
    return points @ A[..., :, :2].transpose(-1, -2) + A[..., None, :, 2]


def affine_intrinsics(K: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """``K' = [A; 0 0 1] @ K``: the intrinsics of the cropped image, (..., 3, 3)."""
    A3 = torch.cat([A, torch.tensor([0.0, 0.0, 1.0], dtype=A.dtype).expand(*A.shape[:-2], 1, 3)], dim=-2)
    return A3 @ K


# -- pixels ------------------------------------------------------------------------------------------------------------
class FrameSource:
    """Pixels of one kind for the frames of one recording. Picklable: files are opened per read."""

    def read(self, frames: np.ndarray) -> list[np.ndarray]:
        """Arrays (H, W[, C]) for 0-based ``frames``: RGB uint8, bool masks, int parts, float depth (mm) / flow (px)."""
        raise NotImplementedError

    def available(self) -> np.ndarray | None:
        """0-based frames that have pixels (None: every annotated frame)."""
        return None


class ImageFolder(FrameSource):
    """Numbered image files, e.g. ``.../img_{:06d}.jpg`` with ``first`` = the number of frame 0 (usually 1).

    ``kind`` 'image' reads RGB; 'mask' reads a grey image and thresholds it at 128.
    """

    def __init__(self, template: str, first: int = 1, kind: str = "image"):
        self.template, self.first, self.kind = str(template), first, kind

    def path(self, frame: int) -> Path:
        return Path(self.template.format(int(frame) + self.first))

    def read(self, frames: np.ndarray) -> list[np.ndarray]:
        out = []
        for f in frames:
            path = self.path(f)
            flag = cv2.IMREAD_COLOR if self.kind == "image" else cv2.IMREAD_GRAYSCALE
            img = cv2.imread(str(path), flag)
            if img is None:
                raise FileNotFoundError(f"frame {int(f)}: image {path} is missing or unreadable")
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if self.kind == "image" else img >= 128)
        return out

    def available(self) -> np.ndarray:
        folder = self.path(0).parent
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder {folder} does not exist")
        name = Path(self.template).name
        pattern = re.compile(re.escape(name).replace(re.escape("{:06d}"), r"(\d+)").replace(re.escape("{}"), r"(\d+)"))
        numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))]
        return np.asarray(sorted(numbers), dtype=np.int64) - self.first


class VideoFile(FrameSource):
    """Frames of a video file decoded by OpenCV (SURREAL's .mp4, MPI-INF-3DHP's .avi)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self, frames: np.ndarray) -> list[np.ndarray]:
        require_file(self.path, "video")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise DataFormatError(f"video {self.path} cannot be opened by OpenCV (corrupt or unsupported codec)")
        order = np.argsort(frames, kind="stable")
        out: list[np.ndarray | None] = [None] * len(frames)
        position = -1
        try:
            for i in order:
                f = int(frames[i])
                if f != position:  # seek only when not reading on (sorted frames of one batch are often adjacent)
                    cap.set(cv2.CAP_PROP_POS_FRAMES, f)
                ok, img = cap.read()
                if not ok:
                    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
                    raise DataFormatError(f"video {self.path}: frame {f} cannot be decoded (the video has {count} "
                                          "frames); it is shorter than its annotation or truncated")  # fmt: skip
                out[i] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
                position = f + 1
        finally:
            cap.release()
        return out  # type: ignore[return-value]

    def available(self) -> np.ndarray:
        """Frames 0 .. count - 1 of the video's header (an annotation may run past the video's end)."""
        require_file(self.path, "video")
        cap = cv2.VideoCapture(str(self.path))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
        cap.release()
        if count < 0:
            raise DataFormatError(f"video {self.path} cannot be opened by OpenCV (corrupt or unsupported codec)")
        return np.arange(count)


class MatFrames(FrameSource):
    """One variable per frame in a MATLAB v5 file, e.g. SURREAL's ``segm_1``, ``depth_1``, ``gtflow_1``.

    Args:
        path: the .mat file.
        key: variable name template with ``{}`` for the frame number (``first`` = number of frame 0).
        kind: 'parts' (int), 'mask' (parts > 0), 'depth' (metres -> mm; ``background_m`` and beyond -> 0) or 'flow'.
        last_frame: with ``fill_shape``, the clip's last frame may lack its variable and reads as zeros (a flow
            field needs a next frame); any other missing variable raises.
        relabel: for 'parts', a lookup table applied to the labels (e.g. exchanging left and right parts).
    """

    def __init__(self, path: str | Path, key: str, kind: str, first: int = 1, background_m: float = 1e9,
                 last_frame: int | None = None, fill_shape: tuple[int, ...] | None = None,
                 relabel: tuple[int, ...] | None = None):  # fmt: skip
        self.path, self.key, self.kind, self.first = Path(path), key, kind, first
        self.background_m, self.last_frame, self.fill_shape = background_m, last_frame, fill_shape
        self.relabel = None if relabel is None else np.asarray(relabel, dtype=np.int64)

    def read(self, frames: np.ndarray) -> list[np.ndarray]:
        names = [self.key.format(int(f) + self.first) for f in frames]
        data = load_mat(self.path, f"{self.kind} file", variable_names=sorted(set(names)))
        out = []
        for f, name in zip(frames, names):
            if name not in data:
                if self.fill_shape is not None and int(f) == self.last_frame:
                    out.append(np.zeros(self.fill_shape, np.float32))
                    continue
                raise DataFormatError(f"{self.path} has no variable {name!r} for frame {int(f)}")
            x = np.asarray(data[name])
            if self.kind == "parts":
                labels = x.astype(np.int64)
                if self.relabel is not None:
                    if labels.size and (labels.min() < 0 or labels.max() >= len(self.relabel)):
                        raise DataFormatError(f"{self.path}: {name} has labels outside 0..{len(self.relabel) - 1}")
                    labels = self.relabel[labels]
                out.append(labels)
            elif self.kind == "mask":
                out.append(x > 0)
            elif self.kind == "depth":
                x = x.astype(np.float32)
                out.append(np.where(x >= self.background_m, 0.0, x * 1000.0).astype(np.float32))
            else:
                out.append(x.astype(np.float32))
        return out


class MatlabCellMasks(FrameSource):
    """Human3.6M's foreground masks ``MySegmentsMat/ground_truth_bs/<Action>.<camera>.mat``.

    MATLAB v7.3 (HDF5) files whose variable ``Masks`` is a cell array with one logical image per frame; h5py sees
    the cell as a (N, 1) or (1, N) array of object references and each image transposed (W, H).
    """

    def __init__(self, path: str | Path, key: str = "Masks"):
        self.path, self.key = Path(path), key

    def read(self, frames: np.ndarray) -> list[np.ndarray]:
        with open_h5(self.path, "Human3.6M mask file") as f:
            cells = mat_key(f, self.key, self.path, "Human3.6M mask file")
            refs = np.asarray(cells).reshape(-1)
            out = []
            for frame in frames:
                if not 0 <= int(frame) < len(refs):
                    raise DataFormatError(f"{self.path}: {self.key} has {len(refs)} masks, frame {int(frame)} asked")
                out.append(np.asarray(f[refs[int(frame)]]).T > 0)
        return out

    def available(self) -> np.ndarray:
        with open_h5(self.path, "Human3.6M mask file") as f:
            return np.arange(np.asarray(mat_key(f, self.key, self.path, "Human3.6M mask file")).size)


class PixelSources:
    """Per recording (``video`` id) a :class:`FrameSource` per pixel kind."""

    def __init__(self, videos: list[dict[str, FrameSource]]):
        self.videos = videos

    def available(self, video: torch.Tensor, frame: torch.Tensor, kinds: tuple[str, ...]) -> torch.Tensor:
        """(N, V) bool: every asked kind has pixels for (video, frame)."""
        ok = torch.ones(video.shape, dtype=torch.bool)
        frames = frame.unsqueeze(-1).expand_as(video) if frame.ndim < video.ndim else frame
        for v in video.unique().tolist():
            where = video == v
            if v < 0:
                ok[where] = False
                continue
            for kind in kinds:
                have = self.videos[v][kind].available()
                if have is not None:
                    ok[where] &= torch.isin(frames[where], torch.as_tensor(have))
        return ok

    def render(self, video: torch.Tensor, frame: torch.Tensor, affine: torch.Tensor, kinds: tuple[str, ...],
               size: int) -> dict[str, torch.Tensor]:  # fmt: skip
        """Pixels of every (video, frame) warped by its affine into ``size`` x ``size``.

        Args:
            video, frame: (B, *M) int64; affine: (B, *M, 2, 3) original px -> output px.

        Returns:
            ``image`` (B, *M, 3, S, S) float in [0, 1]; ``mask`` (B, *M, 1, S, S) bool; ``parts`` (B, *M, S, S) int64;
            ``depth`` (B, *M, 1, S, S) mm; ``flow`` (B, *M, 2, S, S) px.
        """
        lead = tuple(video.shape)
        vid = video.reshape(-1).numpy()
        frm = frame.reshape(-1).numpy()
        aff = affine.reshape(-1, 2, 3).numpy().astype(np.float64)
        n = len(vid)
        channels = {"image": 3, "mask": 1, "parts": 0, "depth": 1, "flow": 2}
        dtypes = {"image": np.float32, "mask": bool, "parts": np.int64, "depth": np.float32, "flow": np.float32}
        out = {k: np.zeros((n, *((channels[k],) if channels[k] else ()), size, size), dtypes[k]) for k in kinds}
        for v in np.unique(vid):
            rows = np.flatnonzero(vid == v)
            for kind in kinds:
                for r, array in zip(rows, self.videos[int(v)][kind].read(frm[rows])):
                    out[kind][r] = _warp(kind, array, aff[r], size)
        return {k: torch.from_numpy(x).reshape(*lead, *x.shape[1:]) for k, x in out.items()}


def _warp(kind: str, array: np.ndarray, A: np.ndarray, size: int) -> np.ndarray:
    """One frame's pixels warped into the output square, channels first."""
    linear = kind in ("image", "flow")
    flags = cv2.INTER_LINEAR if linear else cv2.INTER_NEAREST
    src = array.astype(np.uint8) if kind == "mask" else array
    if kind == "parts":
        src = array.astype(np.uint16)  # warpAffine takes no 64-bit integers
    warped = cv2.warpAffine(src, A, (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if kind == "image":
        return warped.transpose(2, 0, 1).astype(np.float32) / 255.0
    if kind == "mask":
        return warped[None] > 0
    if kind == "parts":
        return warped.astype(np.int64)
    if kind == "depth":
        return warped[None].astype(np.float32)
    # A flow vector is a displacement: it scales with the linear part of the map (exact when the next frame gets
    # the same crop, as with crop: full).
    return (warped.reshape(-1, 2) @ A[:, :2].T).reshape(size, size, 2).transpose(2, 0, 1).astype(np.float32)


class FrameBatches(TensorBatches):
    """:class:`TensorBatches` plus pixels read and warped per batch.

    ``video``, ``frame`` (N, *M) and ``affine`` (N, *M, 2, 3) say where each row's pixels come from; they stay out of
    the batch.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], pixels: PixelSources | None = None,
                 video: torch.Tensor | None = None, frame: torch.Tensor | None = None,
                 affine: torch.Tensor | None = None, kinds: tuple[str, ...] = (), size: int = 256):  # fmt: skip
        super().__init__(tensors)
        self.pixels, self.video, self.frame, self.affine = pixels, video, frame, affine
        self.kinds, self.size = tuple(kinds), size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = super().__getitems__(indices)
        if self.pixels is not None and self.kinds:
            idx = torch.as_tensor(indices)
            batch.update(self.pixels.render(self.video[idx], self.frame[idx], self.affine[idx], self.kinds, self.size))
        return batch


def action_wise_mean(values: torch.Tensor, action: torch.Tensor, action_names: list[str]) -> dict[str, float]:
    """Mean of per-sample ``values`` (B,) per action id (B,), as {name: mean}; actions without samples are left out.

    Human3.6M reports errors averaged per action (over all its frames, cameras and subjects) and then the mean over
    the 15 actions.
    """
    values = values.detach().double().flatten()
    action = action.detach().long().flatten()
    sums = torch.bincount(action, weights=values, minlength=len(action_names))
    counts = torch.bincount(action, minlength=len(action_names))
    return {name: float(sums[a] / counts[a]) for a, name in enumerate(action_names) if counts[a] > 0}


# -- the data module ---------------------------------------------------------------------------------------------------
class RecordedDataModule(SplitLoaders, L.LightningDataModule):
    """Base of the recorded-dataset modules; a subclass implements ``name``, ``action_names``, :meth:`load_views`
    (and :meth:`pixel_sources` when it offers pixels).

    Args:
        batch_size: training batch size.
        eval_batch_size: validation and test batch size.
        train_stride: keep training frames whose index is a multiple of this.
        eval_stride: keep validation/test frames whose index is a multiple of this (64: Human3.6M's protocol of
            evaluating every 64th frame).
        multiview: training rows are the synchronised views of a frame, (B, V, ...).
        pair_offset: > 0 makes training rows frame pairs (B, 2, ...) of one video: frame f and f + pair_offset.
        pixels: pixel kinds to load with every row, from ``image``, ``mask``, ``parts``, ``depth``, ``flow`` (what
            the dataset has); empty = poses only, no image files needed. With pixels, only frames that have them
            are used (e.g. the frames an extraction tool wrote).
        image_size: side of the square output images (px).
        crop: ``person`` (square around the 2D ground truth, ``crop_margin`` times its box) or ``full`` (whole
            image resized).
        crop_margin: crop side over the longer side of the joints' bounding box.
        num_workers: DataLoader workers.
    """

    skeleton: Skeleton = H36M_17
    #: Pixel kinds the dataset can provide (subclasses narrow this).
    pixel_kinds: tuple[str, ...] = ()

    def __init__(self, batch_size: int = 256, eval_batch_size: int = 1024, train_stride: int = 1, eval_stride: int = 1,
                 multiview: bool = False, pair_offset: int = 0, pixels: list[str] | None = None,
                 image_size: int = 256, crop: str = "person", crop_margin: float = 1.25,
                 num_workers: int = 0):  # fmt: skip
        super().__init__()
        cls = type(self).__name__
        options = {"batch_size": batch_size, "eval_batch_size": eval_batch_size, "train_stride": train_stride,
                   "eval_stride": eval_stride, "image_size": image_size}  # fmt: skip
        for opt, value in options.items():
            if value < 1:
                raise ValueError(f"{cls}: data option {opt} must be >= 1, got {value}")
        if pair_offset < 0:
            raise ValueError(f"{cls}: data option pair_offset must be >= 0 (0 = no pairs), got {pair_offset}")
        if multiview and pair_offset:
            raise ValueError(f"{cls}: multiview and pair_offset cannot be combined; choose one sample layout")
        if crop not in ("person", "full"):
            raise ValueError(f"{cls}: data option crop must be 'person' or 'full', got {crop!r}")
        pixels = tuple(pixels or ())
        unknown = [k for k in pixels if k not in self.pixel_kinds]
        if unknown:
            raise ValueError(f"{cls}: pixels {unknown} are not available from this dataset; "
                             f"choose from {list(self.pixel_kinds)} (or none for poses only)")  # fmt: skip
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_stride, self.eval_stride = train_stride, eval_stride
        self.multiview, self.pair_offset = multiview, pair_offset
        self.pixels = pixels
        self.image_size, self.crop, self.crop_margin = image_size, crop, crop_margin
        self.num_workers = num_workers
        # What this instance's batches carry (the class attribute lists everything the dataset can provide).
        self.provides = POSE_KEYS + pixels
        self.datasets: dict[str, FrameBatches] = {}

    # -- what a subclass provides ----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def action_names(self) -> list[str]:
        raise NotImplementedError

    def load_views(self, split: str) -> Views:
        """The annotated frames of ``split`` ('train', 'val' or 'test')."""
        raise NotImplementedError

    def split_source(self, split: str) -> object:
        """What ``split`` is read from; validation and test with equal sources share one dataset (no second copy)."""
        return split

    def pixel_sources(self, split: str) -> PixelSources:
        """Where the pixels of ``split``'s videos (the ``video`` ids of :meth:`load_views`) come from."""
        raise NotImplementedError(f"{type(self).__name__} has no pixels")

    # -- shared ------------------------------------------------------------------------------------------------------
    @property
    def protocol(self) -> dict[str, str]:
        """How the data of this module was made, for every result record (subclasses add their choices)."""
        layout = "multiview" if self.multiview else f"pairs+{self.pair_offset}" if self.pair_offset else "single"
        out = {"dataset": self.name, "annotation_3d": "camera-frame", "eval_stride": str(self.eval_stride),
               "train_stride": str(self.train_stride), "train_layout": layout}  # fmt: skip
        if self.pixels:
            out["pixels"] = f"{'+'.join(self.pixels)} {self.crop} {self.image_size}px"
        if "image" in self.pixels:  # what an image method reads, named as SyntheticHumans names it
            out["input"] = f"rgb{self.image_size}x{self.image_size}"
        return out

    def build(self, split: str) -> FrameBatches:
        if split in self.datasets:
            return self.datasets[split]
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
        for other in ("val", "test"):
            if split != "train" and other in self.datasets and self.split_source(other) == self.split_source(split):
                self.datasets[split] = self.datasets[other]
                return self.datasets[split]
        cls = type(self).__name__
        views = self.load_views(split)
        train = split == "train"
        stride = self.train_stride if train else self.eval_stride
        keep = views.frame % stride == 0
        sources = None
        if self.pixels:
            sources = self.pixel_sources(split)
            have = sources.available(views.video, views.frame, self.pixels).all(dim=1)
            rank_zero_info(f"{cls} {split}: {int((keep & have).sum())} of {int(keep.sum())} frames have {self.pixels}")
            keep &= have
        if not keep.all():  # (a copy; skipped when every frame stays)
            views = views.index(keep)
        if len(views) == 0:
            raise ValueError(f"{cls}: the {split} split is empty (after stride {stride}"
                             f"{' and keeping frames with pixels' if self.pixels else ''}); "
                             "check its subject/sequence options and the data folder")  # fmt: skip
        tensors = {
            "joints_3d": views.joints_3d, "joints_3d_world": views.joints_3d_world, "joints_2d": views.joints_2d,
            "joints_2d_gt": views.joints_2d_gt, "visible": views.visible, "K": views.K, "R": views.R, "t": views.t,
            "camera": views.camera, **views.extra,
        }  # fmt: skip
        n, v = views.joints_3d.shape[:2]
        frame_nv = views.frame.unsqueeze(1).expand(n, v)
        affine = None
        if self.pixels:
            affine = crop_affines(views.joints_2d_gt, views.visible, views.image_size, self.crop, self.image_size,
                                  self.crop_margin)  # fmt: skip
            tensors["K"] = affine_intrinsics(views.K, affine)
            tensors["joints_2d"] = apply_affine_2d(views.joints_2d, affine)
            tensors["joints_2d_gt"] = apply_affine_2d(views.joints_2d_gt, affine)
        ids = {"subject": views.subject, "action": views.action, "sequence": views.sequence, "frame": views.frame}
        hidden = {"video": views.video, "video_frame": frame_nv, **({"affine": affine} if affine is not None else {})}
        if train and self.multiview:
            out = {**tensors, **ids}
        else:
            # Single-view rows: each (frame, camera) is one sample; each camera's recording is its own sequence.
            out = {k: x.flatten(0, 1) for k, x in tensors.items()}
            out.update({k: x.repeat_interleave(v) for k, x in ids.items()})
            out["sequence"] = views.sequence.repeat_interleave(v) * v + torch.arange(v).repeat(n)
            hidden = {k: x.flatten(0, 1) for k, x in hidden.items()}
            if train and self.pair_offset:
                first, second = self._pairs(out["sequence"], out["frame"], self.pair_offset, split)
                out = {k: torch.stack([x[first], x[second]], dim=1) for k, x in out.items()}
                hidden = {k: torch.stack([x[first], x[second]], dim=1) for k, x in hidden.items()}
        self.datasets[split] = FrameBatches(out, sources, hidden["video"], hidden["video_frame"], hidden.get("affine"),
                                            self.pixels, self.image_size)  # fmt: skip
        return self.datasets[split]

    def _pairs(self, sequence: torch.Tensor, frame: torch.Tensor, offset: int, split: str):
        """Row indices (P,), (P,) of frame pairs (f, f + offset) of one sequence."""
        key = sequence * (1 << 32) + frame
        order = torch.argsort(key)
        sorted_key = key[order]
        pos = torch.searchsorted(sorted_key, key + offset).clamp(max=len(key) - 1)
        found = sorted_key[pos] == key + offset
        if not found.any():
            raise ValueError(f"{type(self).__name__}: no frame pairs {offset} frames apart in the {split} split; "
                             "lower pair_offset or train_stride")  # fmt: skip
        return torch.nonzero(found).squeeze(1), order[pos[found]]

    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage, SPLITS):
            self.build(split)

    def train_poses_3d(self) -> torch.Tensor:
        """(N, J, 3) camera-frame training poses in mm (for PSS clusters and the mean-pose baseline)."""
        poses = self.build("train").tensors["joints_3d"]
        return poses.reshape(-1, *poses.shape[-2:])

    def split_dataset(self, split: str) -> FrameBatches:
        return self.build(split)
