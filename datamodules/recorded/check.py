"""``python -m benchmark data check <dataset> <root>``: validate a user's dataset folder before training on it.

Every file the loaders read is opened with the loaders' own readers (so the check and the loaders agree on what is
malformed) and every problem is reported with the file it is in: a missing file, an unreadable or truncated
``.mat``/``.npz``, a wrong array shape, 2D sequences shorter than their 3D, a video shorter than its annotation.
Optional parts (extracted frames, masks, SURREAL's segmentation/depth/flow) are checked when present. It also counts
what the loaders leave out: Human3.6M frames without an extracted image, MPI-INF-3DHP annotation rows past the end
of their videos, SURREAL frames whose joints3D are all zero.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2

from .base import DataFormatError

#: Problems printed per check (all are returned).
MAX_PRINTED = 40
#: Errors a reader raises for a bad file (anything else is a bug and propagates).
FILE_ERRORS = (FileNotFoundError, DataFormatError, OSError, KeyError, ValueError)


def _attempt(problems: list[str], fn: Callable, *args):
    """``fn(*args)``, or None after appending the error's message to ``problems``."""
    try:
        return fn(*args)
    except FILE_ERRORS as err:
        problems.append(str(err).strip("'\""))
        return None


# -- Human3.6M ---------------------------------------------------------------------------------------------------------
def check_h36m(root: Path) -> tuple[list[str], list[str]]:
    """Problems and a summary of what was checked in a VideoPose3D-style Human3.6M folder."""
    from .base import MatlabCellMasks
    from .h36m import (
        ACTIONS,
        CAMERA_IDS,
        SUBJECTS,
        action_of,
        fetch_folder,
        read_positions_2d,
        read_positions_3d,
    )

    problems: list[str] = []
    checked: list[str] = []
    path3d = root / "data_3d_h36m.npz"
    data3d = _attempt(problems, read_positions_3d, path3d)
    if data3d is not None:
        checked.append(f"{path3d.name}: {sum(len(v) for v in data3d.values())} sequences")
        for subject in SUBJECTS:
            if subject not in data3d:
                problems.append(f"{path3d}: subject {subject} is missing (the protocols use {', '.join(SUBJECTS)})")
                continue
            have = {action_of(name) for name in data3d[subject]}
            missing = [a for a in ACTIONS if a not in have]
            if missing:
                problems.append(f"{path3d}: subject {subject} lacks actions {missing}")
    files2d = sorted(root.glob("data_2d_h36m_*.npz"))
    if not files2d:
        problems.append(f"{root}: no 2D file data_2d_h36m_<keypoints>.npz (e.g. _gt or _cpn_ft_h36m_dbb); the loader "
                        "needs one unless keypoints is null (2D projected from the 3D poses)")  # fmt: skip
    for path in files2d:
        loaded = _attempt(problems, read_positions_2d, path)
        if loaded is None or data3d is None:
            continue
        data2d = loaded[0]
        checked.append(f"{path.name}: {sum(len(v) for v in data2d.values())} sequences")
        for subject, sequences in data3d.items():
            for name, pos in sequences.items():
                views = data2d.get(subject, {}).get(name)
                if views is None:
                    problems.append(f"{path}: no 2D poses for {subject}/{name!r} (in data_3d_h36m.npz)")
                elif any(len(xy) < len(pos) for xy in views):
                    problems.append(f"{path}: {subject}/{name!r} has {[len(xy) for xy in views]} 2D frames per "
                                    f"camera, fewer than the {len(pos)} 3D frames")  # fmt: skip
    images = root / "images"
    if images.is_dir() and data3d is not None:
        count = with_image = annotated = 0
        for subject, sequences in data3d.items():
            for name, pos in sequences.items():
                folder_name = _attempt(problems, lambda s, n: fetch_folder(s, n)[0], subject, name)
                for camera in CAMERA_IDS if folder_name else ():
                    folder = images / subject / folder_name / "imageSequence" / camera
                    numbers = {int(p.stem[4:]) for p in folder.glob("img_*.jpg")} if folder.is_dir() else set()
                    if not folder.is_dir():
                        problems.append(f"frames of {subject}/{name!r} camera {camera}: no folder {folder} "
                                        "(h36m-fetch's folder for this recording, per metadata.xml)")  # fmt: skip
                    elif not numbers:
                        problems.append(f"{folder}: no img_%06d.jpg frames")
                    else:
                        count += 1
                    annotated += len(pos)
                    with_image += len(numbers & set(range(1, len(pos) + 1)))
        checked.append(f"images/: {count} frame folders; {annotated - with_image} of {annotated} annotated "
                       "(frame, camera) pairs have no image and are left out with pixels")  # fmt: skip
    mask_files = sorted(root.glob("S*/MySegmentsMat/ground_truth_bs/*.mat"))
    for path in mask_files:
        _attempt(problems, lambda p: MatlabCellMasks(p).available(), path)
    if mask_files:
        checked.append(f"{len(mask_files)} mask files")
    return problems, checked


# -- MPI-INF-3DHP ------------------------------------------------------------------------------------------------------
def check_3dhp(root: Path, test_root: Path | None = None) -> tuple[list[str], list[str]]:
    """Problems and a summary for ``root/S1..S8/Seq1..2`` and ``test_root/TS1..TS6``.

    ``test_root`` defaults to ``root/mpi_inf_3dhp_test_set``, or ``root`` itself when it holds ``TS1``.
    """
    from .mpi3dhp import TRAIN_SEQUENCES, read_calibration, read_test_annotation, read_train_annotation

    problems: list[str] = []
    checked: list[str] = []
    count = cut = 0
    for s in range(1, 9):
        for q in (1, 2):
            folder = root / f"S{s}" / f"Seq{q}"
            if not folder.is_dir():
                problems.append(f"MPI-INF-3DHP training sequence folder {folder} does not exist")
                continue
            annot = _attempt(problems, read_train_annotation, folder / "annot.mat")
            calib = _attempt(problems, read_calibration, folder / "camera.calibration")
            if annot is not None:
                cut += max(0, annot["annot3"].shape[1] - TRAIN_SEQUENCES[(s, q)][0])
            if annot is not None and calib is not None:
                count += 1
    checked.append(f"{count} of 16 training sequences complete, {cut} annotation rows past the videos' ends cut")
    if test_root is None:  # the test set unpacked inside root, or root is the test set itself
        test_root = root if (root / "TS1").is_dir() else root / "mpi_inf_3dhp_test_set"
    count = 0
    for i in range(1, 7):
        path = test_root / f"TS{i}" / "annot_data.mat"
        if not path.parent.is_dir():
            problems.append(f"MPI-INF-3DHP test sequence folder {path.parent} does not exist")
            continue
        annot = _attempt(problems, read_test_annotation, path)
        if annot is None:
            continue
        count += 1
        if not annot["valid_frame"].any():
            problems.append(f"{path}: valid_frame marks no frame as valid")
        frames = test_root / f"TS{i}" / "imageSequence"
        if frames.is_dir():
            have = len(list(frames.glob("img_*.jpg"))) + len(list(frames.glob("img_*.png")))
            if have < len(annot["valid_frame"]):
                problems.append(f"{frames}: {have} images for {len(annot['valid_frame'])} annotated frames")
    checked.append(f"{count} of 6 test sequences readable")
    return problems, checked


# -- SURREAL -----------------------------------------------------------------------------------------------------------
def _mat_frames(path: Path, prefix: str, frames: int, shape: tuple[int, ...], allow_last_missing: bool) -> list[str]:
    """Problems of a per-frame .mat (``<prefix>1``..): variables present with the right shapes (headers only)."""
    import scipy.io

    try:
        variables = {name: tuple(size) for name, size, _ in scipy.io.whosmat(str(path))}
    except Exception as err:
        return [f"{path} cannot be read ({type(err).__name__}: {err}); the file is truncated or corrupt"]
    problems = []
    needed = frames - 1 if allow_last_missing else frames
    missing = [f"{prefix}{n}" for n in range(1, needed + 1) if f"{prefix}{n}" not in variables]
    if missing:
        problems.append(f"{path}: {len(missing)} of {needed} frames missing, e.g. {missing[:3]}")
    wrong = {k: v for k, v in variables.items() if k.startswith(prefix) and v != shape}
    if wrong:
        name, size = next(iter(wrong.items()))
        problems.append(f"{path}: {name} has shape {size}, expected {shape}")
    return problems


def check_surreal(root: Path, max_clips: int | None = None) -> tuple[list[str], list[str]]:
    """Problems and a summary for ``root`` = ``SURREAL/data/cmu`` (``max_clips`` per split, None = all)."""
    from .surreal import empty_frames, read_info

    problems: list[str] = []
    checked: list[str] = []
    for split in ("train", "val", "test"):
        folder = root / split
        if not folder.is_dir():
            problems.append(f"SURREAL {split} folder {folder} does not exist (root must be SURREAL/data/cmu)")
            continue
        infos = sorted(folder.glob("run*/*/*_c[0-9][0-9][0-9][0-9]_info.mat"))[:max_clips]
        if max_clips is None:
            stems = {str(p)[: -len("_info.mat")] for p in infos}
            for video in sorted(folder.glob("run*/*/*_c[0-9][0-9][0-9][0-9].mp4")):
                if str(video)[:-4] not in stems:
                    problems.append(f"{video}: no annotation {video.stem}_info.mat next to it")
        if not infos:
            problems.append(f"SURREAL {split}: no <sequence>_c%04d_info.mat under {folder}/run*/<sequence>/")
            continue
        extras_present = {kind: 0 for kind in ("segm", "depth", "gtflow")}
        empty = 0
        for info_path in infos:
            info = _attempt(problems, read_info, info_path)
            empty += 0 if info is None else int(empty_frames(info["joints3D"]).sum())
            stem = str(info_path)[: -len("_info.mat")]
            video = Path(stem + ".mp4")
            if not video.is_file():
                problems.append(f"{video}: missing (the RGB video of {info_path.name})")
            elif info is not None:
                cap = cv2.VideoCapture(str(video))
                count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
                cap.release()
                if count < 0:
                    problems.append(f"{video}: OpenCV cannot open it (corrupt or unsupported codec)")
                elif count < len(info["joints2D"]):
                    problems.append(f"{video}: {count} frames for {len(info['joints2D'])} annotated frames")
            for kind, shape in (("segm", (240, 320)), ("depth", (240, 320)), ("gtflow", (240, 320, 2))):
                path = Path(f"{stem}_{kind}.mat")
                if path.is_file():
                    extras_present[kind] += 1
                    if info is not None:
                        frames = len(info["joints2D"])
                        problems += _mat_frames(path, f"{kind}_", frames, shape, allow_last_missing=kind == "gtflow")
        for kind, n in extras_present.items():
            if 0 < n < len(infos):
                problems.append(f"SURREAL {split}: only {n} of {len(infos)} clips have _{kind}.mat; pixels that need "
                                "it will fail on the others")  # fmt: skip
        checked.append(f"{split}: {len(infos)} clips" + "".join(f", {n} {k}" for k, n in extras_present.items() if n)
                       + f", {empty} empty frames left out (joints3D all zero)")  # fmt: skip
    return problems, checked


CHECKERS = {"h36m": check_h36m, "3dhp": check_3dhp, "surreal": check_surreal}


def check_dataset(dataset: str, root: str | Path, verbose: bool = True, **options) -> list[str]:
    """Validate ``root`` as the folder of ``dataset`` ('h36m', '3dhp' or 'surreal'); print and return the problems.

    ``options`` go to the dataset's checker (``test_root`` for 3dhp, ``max_clips`` for surreal). An empty list means
    the folder loads.
    """
    if dataset not in CHECKERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(CHECKERS)}")
    root = Path(root)
    if not root.is_dir():
        problems, checked = [f"{root}: the {dataset} folder does not exist"], []
    else:
        problems, checked = CHECKERS[dataset](root, **options)
    if verbose:
        print(f"data check {dataset} {root}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        for line in checked:
            print(f"  checked {line}")
        for line in problems[:MAX_PRINTED]:
            print(f"  PROBLEM {line}")
        if len(problems) > MAX_PRINTED:
            print(f"  ... and {len(problems) - MAX_PRINTED} more")
    return problems


__all__ = ["check_dataset", "check_h36m", "check_3dhp", "check_surreal"]
