"""Writers of tiny dataset trees in the published file formats of Human3.6M, MPI-INF-3DHP and SURREAL.

Nobody here has the licensed data, so the loaders are tested on trees these functions write in exactly the formats
the datasets (and their common preprocessing) use: VideoPose3D's npz archives with pickled dicts, MATLAB v5 files
via ``scipy.io.savemat`` (cells as object arrays), MATLAB v7.3 files as HDF5 with the MATLAB user block and class
attributes via h5py, numbered JPEGs and ``.mp4``/``.avi`` videos via OpenCV, and MPI-INF-3DHP's text calibration.

The 2D annotations are made here with independent re-implementations of each dataset's own projection
(VideoPose3D's quaternion ``world_to_camera`` + ``project_to_2d`` for Human3.6M, MPI-INF-3DHP's 4x4 calibration
matrices, SURREAL's ``getExtrinsicBlender``/``getIntrinsicBlender`` with rounding), so a loader's camera handling is
checked against them rather than against itself. Joints a loader must drop are filled with far-away values so a
wrong joint mapping shows up as a large error.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import h5py
import numpy as np
import scipy.io

from datamodules.motion.procedural import ACTIONS as MOTIONS
from datamodules.motion.procedural import generate_clips, subject_bone_lengths
from datamodules.poses import split_generator
from datamodules.skeleton import H36M_JOINTS

GARBAGE_MM = 1.0e5  # value of joints a loader must drop


def motion_world(frames: int, seed: int, action: str = "wave", clips: int | None = None) -> np.ndarray:
    """(T, 17, 3) float64 world joints (mm, Z up, H36M_17 order) of a procedural clip near the origin.

    With ``clips``, (clips, T, 17, 3): that many performances generated in one batch.
    """
    gen = split_generator(seed, "fixture")
    lengths = subject_bone_lengths(1, gen).expand(clips or 1, -1)
    out = generate_clips(MOTIONS[action], lengths, frames, 50.0, gen)
    out[..., :2] -= out[:, :1, :1, :2].clone()  # pelvis of frame 0 above the origin
    out = out.double().numpy()
    return out if clips else out[0]


# -- MATLAB v7.3 -------------------------------------------------------------------------------------------------------
def _matlab73(path: Path) -> h5py.File:
    """An HDF5 file with the 512-byte user block MATLAB writes (text header, version 0x0200, 'IM')."""
    f = h5py.File(path, "w", userblock_size=512)
    f.close()
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 ."
    with open(path, "r+b") as raw:
        raw.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return h5py.File(path, "a")


def _matlab_array(f: h5py.File | h5py.Group, name: str, array: np.ndarray, matlab_class: str = "double",
                  compression: str | None = None):  # fmt: skip
    """A MATLAB array as MATLAB v7.3 stores it: dimensions reversed (h5py sees the transpose)."""
    ds = f.create_dataset(name, data=np.ascontiguousarray(np.asarray(array).T), compression=compression)
    ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
    return ds


# -- Human3.6M ---------------------------------------------------------------------------------------------------------
def _qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """VideoPose3D's ``qrot``: rotate v (..., 3) by unit quaternions q (..., 4), (w, x, y, z)."""
    qvec = q[..., 1:]
    uv = np.cross(qvec, v)
    uuv = np.cross(qvec, uv)
    return v + 2 * (q[..., :1] * uv + uuv)


def vp3d_world_to_camera(X: np.ndarray, quat, position) -> np.ndarray:
    """VideoPose3D's ``world_to_camera``: rotate ``X - position`` by the inverse quaternion."""
    q_inv = np.asarray(quat, dtype=np.float64) * np.array([1, -1, -1, -1])
    return _qrot(np.broadcast_to(q_inv, X.shape[:-1] + (4,)), X - np.asarray(position))


def vp3d_project(X: np.ndarray, intr: dict) -> np.ndarray:
    """VideoPose3D's ``project_to_2d`` in pixels for camera-frame points (..., 3)."""
    f, c = np.asarray(intr["focal"]), np.asarray(intr["center"])
    k, p = np.asarray(intr["radial"]), np.asarray(intr["tangential"])
    XX = np.clip(X[..., :2] / X[..., 2:], -1, 1)
    r2 = np.sum(XX**2, axis=-1, keepdims=True)
    radial = 1 + np.sum(k * np.concatenate([r2, r2**2, r2**3], axis=-1), axis=-1, keepdims=True)
    tan = np.sum(p * XX, axis=-1, keepdims=True)
    return f * (XX * (radial + tan) + p * r2) + c


#: Human3.6M's metadata.xml (shipped with h36m-fetch): ``mapping`` rows 'action subaction|S1|S5|S6|S7|S8|S9|S11' naming
#: each subject's recording, and ``actionnames`` (action id 1 first). Written out here independently of the loader.
H36M_METADATA_MAPPING = """
2 1|Directions 1|Directions 1|Directions 1|Directions 1|Directions 1|Directions 1|Directions 1
 2 2|Directions|Directions 2|Directions|Directions|Directions|Directions|Directions
 3 1|Discussion 1|Discussion 2|Discussion 1|Discussion 1|Discussion 1|Discussion 1|Discussion 1
 3 2|Discussion|Discussion 3|Discussion|Discussion|Discussion|Discussion 2|Discussion 2
 4 1|Eating 2|Eating 1|Eating 1|Eating 1|Eating 1|Eating 1|Eating 1
 4 2|Eating|Eating|Eating 2|Eating|Eating|Eating|Eating
 5 1|Greeting 1|Greeting 1|Greeting 1|Greeting 1|Greeting 1|Greeting 1|Greeting 2
 5 2|Greeting|Greeting 2|Greeting|Greeting|Greeting|Greeting|Greeting
 6 1|Phoning 1|Phoning 1|Phoning 1|Phoning 2|Phoning 1|Phoning 1|Phoning 3
 6 2|Phoning|Phoning|Phoning|Phoning|Phoning|Phoning|Phoning 2
 7 1|Posing 1|Posing 1|Posing 2|Posing 1|Posing 1|Posing 1|Posing 1
 7 2|Posing|Posing|Posing|Posing|Posing|Posing|Posing
 8 1|Purchases 1|Purchases 1|Purchases 1|Purchases 1|Purchases 1|Purchases 1|Purchases 1
 8 2|Purchases|Purchases|Purchases|Purchases|Purchases|Purchases|Purchases
 9 1|Sitting 1|Sitting 1|Sitting 1|Sitting 1|Sitting 1|Sitting 1|Sitting 1
 9 2|Sitting 2|Sitting|Sitting 2|Sitting|Sitting|Sitting|Sitting
10 1|SittingDown 2|SittingDown|SittingDown 1|SittingDown|SittingDown|SittingDown|SittingDown
10 2|SittingDown|SittingDown 1|SittingDown|SittingDown 1|SittingDown 1|SittingDown 1|SittingDown 1
11 1|Smoking 1|Smoking 1|Smoking 1|Smoking 1|Smoking 1|Smoking 1|Smoking 2
11 2|Smoking|Smoking|Smoking|Smoking|Smoking|Smoking|Smoking
12 1|TakingPhoto 1|Photo|Photo|Photo|Photo 1|Photo 1|Photo 1
12 2|TakingPhoto|Photo 2|Photo 1|Photo 1|Photo|Photo|Photo
13 1|Waiting 1|Waiting 1|Waiting 3|Waiting 1|Waiting 1|Waiting 1|Waiting 1
13 2|Waiting|Waiting 2|Waiting|Waiting 2|Waiting|Waiting|Waiting
14 1|Walking 1|Walking 1|Walking 1|Walking 1|Walking 1|Walking 1|Walking 1
14 2|Walking|Walking|Walking|Walking 2|Walking|Walking|Walking
15 1|WalkingDog 1|WalkDog 1|WalkDog 1|WalkDog 1|WalkDog 1|WalkDog 1|WalkDog 1
15 2|WalkingDog|WalkDog|WalkDog|WalkDog|WalkDog|WalkDog|WalkDog
16 1|WalkTogether 1|WalkTogether 1|WalkTogether 1|WalkTogether 1|WalkTogether 1|WalkTogether 1|WalkTogether 1
16 2|WalkTogether|WalkTogether|WalkTogether|WalkTogether|WalkTogether 2|WalkTogether|WalkTogether
"""
H36M_METADATA_SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
H36M_METADATA_ACTIONNAMES = ("Miscellaneous", "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Posing",
                             "Purchases", "Sitting", "SittingDown", "Smoking", "TakingPhoto", "Waiting", "Walking",
                             "WalkingDog", "WalkingTogether")  # fmt: skip


def h36m_metadata() -> dict[tuple[str, str], tuple[str, str]]:
    """{(subject, VideoPose3D sequence name): (h36m-fetch folder, original recording name)}.

    h36m-fetch's ``process_all.py`` writes recording (action a, subaction b) to ``<actionnames[a]>-<b>``; VideoPose3D's
    ``prepare_data_h36m.py`` names it after the file with TakingPhoto -> Photo and WalkingDog -> WalkDog.
    """
    out = {}
    for line in H36M_METADATA_MAPPING.strip().splitlines():
        ids, *recordings = line.split("|")
        action, subaction = ids.split()
        for subject, recording in zip(H36M_METADATA_SUBJECTS, recordings):
            vp3d = recording.replace("TakingPhoto", "Photo").replace("WalkingDog", "WalkDog")
            out[(subject, vp3d)] = (f"{H36M_METADATA_ACTIONNAMES[int(action) - 1]}-{subaction}", recording)
    return out


def h36m_fetch_frames(subject: str, world: np.ndarray) -> np.ndarray:
    """0-based frames current h36m-fetch extracts: every 64th of S9/S11; for the others, a frame once some joint has
    moved 40 mm since the last kept frame (``select_frame_indices_to_include``)."""
    if subject in ("S9", "S11"):
        return np.arange(0, len(world), 64)
    kept = [0]
    for f in range(1, len(world)):
        if np.linalg.norm(world[f] - world[kept[-1]], axis=-1).max() >= 40.0:
            kept.append(f)
    return np.asarray(kept)


def write_h36m(root: Path, subjects: dict[str, list[str]], frames: int = 130, detector: str | None = "gt",
               images: dict[str, tuple[str, ...]] | None = None, masks: dict[str, tuple[str, ...]] | None = None,
               extra_2d_frames: int = 3) -> dict:  # fmt: skip
    """A VideoPose3D-style Human3.6M tree.

    Args:
        root: output folder.
        subjects: {subject: [archive sequence names]} e.g. {"S1": ["Directions 1", "TakingPhoto"]}.
        frames: frames per sequence (50 fps).
        detector: name of the 2D file (``data_2d_h36m_<detector>.npz``), None for none. The 2D poses are the
            VideoPose3D projection of the 3D poses, with ``extra_2d_frames`` more frames than the 3D.
        images: {subject: sequence names} that get JPEGs of the frames h36m-fetch keeps (:func:`h36m_fetch_frames`)
            in its folders (:func:`h36m_metadata`): black with a disc of radius 40 px at the pelvis, white but for
            its blue level, ``code`` = 40 k + 20 for the k-th name of the subject, which identifies the recording.
        masks: {subject: sequence names} that get the official v7.3 foreground masks of every frame (a disc of radius
            60 px at the pelvis), named by the original recording.

    Returns:
        {"world": {subject: {name: (T, 17, 3) mm}}, "pixels_2d": {subject: {name: (4, T, 17, 2)}},
        "image_frames": {subject: {name: 0-based frames with images}}, "code": {subject: {name: blue level}}}.
    """
    from datamodules.recorded.h36m import CAMERA_IDS, EXTRINSICS, INTRINSICS, KEEP_32

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    positions_3d, positions_2d, worlds, pixels = {}, {}, {}, {}
    for s_idx, (subject, names) in enumerate(subjects.items()):
        positions_3d[subject], positions_2d[subject], worlds[subject], pixels[subject] = {}, {}, {}, {}
        performances = motion_world(frames + extra_2d_frames, seed=s_idx, clips=len(names))
        for name, world in zip(names, performances):
            full = np.full((len(world), 32, 3), GARBAGE_MM)
            full[:, list(KEEP_32)] = world
            positions_3d[subject][name] = (full[:frames] / 1000.0).astype(np.float32)
            views = []
            for c, cam_id in enumerate(CAMERA_IDS):
                quat, pos = EXTRINSICS[subject][c]
                views.append(
                    vp3d_project(vp3d_world_to_camera(world, quat, pos), INTRINSICS[cam_id]).astype(np.float32)
                )
            positions_2d[subject][name] = views
            worlds[subject][name] = world[:frames]
            pixels[subject][name] = np.stack(views)[:, :frames]
    np.savez_compressed(root / "data_3d_h36m.npz", positions_3d=positions_3d)
    if detector is not None:
        metadata = {"layout_name": "h36m", "num_joints": 17,
                    "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}  # fmt: skip
        np.savez_compressed(root / f"data_2d_h36m_{detector}.npz", positions_2d=positions_2d, metadata=metadata)
    metadata = h36m_metadata()
    image_frames, codes = {}, {}
    for subject, names in (images or {}).items():
        image_frames[subject], codes[subject] = {}, {}
        for k, name in enumerate(names):
            kept = h36m_fetch_frames(subject, worlds[subject][name])
            image_frames[subject][name], codes[subject][name] = kept, 40 * k + 20
            for c, cam_id in enumerate(CAMERA_IDS):
                w, h = INTRINSICS[cam_id]["size"]
                folder = root / "images" / subject / metadata[(subject, name)][0] / "imageSequence" / cam_id
                folder.mkdir(parents=True, exist_ok=True)
                for f in kept:
                    u, v = pixels[subject][name][c, f, 0]
                    img = np.zeros((h, w, 3), np.uint8)
                    cv2.circle(img, (round(float(u)), round(float(v))), 40, (40 * k + 20, 255, 255), -1)  # BGR
                    cv2.imwrite(str(folder / f"img_{f + 1:06d}.jpg"), img)
    for subject, names in (masks or {}).items():
        for name in names:
            for c, cam_id in enumerate(CAMERA_IDS):
                w, h = INTRINSICS[cam_id]["size"]
                mask_list = []
                for f in range(frames):
                    u, v = pixels[subject][name][c, f, 0]
                    mask = np.zeros((h, w), np.uint8)
                    cv2.circle(mask, (round(float(u)), round(float(v))), 60, 1, -1)
                    mask_list.append(mask)
                recording = metadata[(subject, name)][1]
                write_h36m_masks(root / subject / "MySegmentsMat" / "ground_truth_bs" / f"{recording}.{cam_id}.mat",
                                 mask_list)  # fmt: skip
    return {"world": worlds, "pixels_2d": pixels, "image_frames": image_frames, "code": codes}


def write_h36m_masks(path: Path, masks: list[np.ndarray]) -> None:
    """Human3.6M's ``ground_truth_bs`` file: MATLAB v7.3, a 1xN cell ``Masks`` of logical HxW images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _matlab73(path) as f:
        refs_group = f.create_group("#refs#")
        refs = []
        for i, mask in enumerate(masks):
            ds = _matlab_array(refs_group, f"m{i}", mask.astype(np.uint8), "logical", "gzip")  # MATLAB deflates too
            refs.append(ds.ref)
        cell = f.create_dataset("Masks", data=np.array(refs, dtype=h5py.ref_dtype).reshape(-1, 1))
        cell.attrs["MATLAB_class"] = np.bytes_("cell")


# -- MPI-INF-3DHP ------------------------------------------------------------------------------------------------------
#: The 28 joints of MPI-INF-3DHP's training annotation (``mpii_get_joint_set('all')``).
MPI_28 = ("spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top", "left_clavicle", "left_shoulder",
          "left_elbow", "left_wrist", "left_hand", "right_clavicle", "right_shoulder", "right_elbow", "right_wrist",
          "right_hand", "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe", "right_hip", "right_knee",
          "right_ankle", "right_foot", "right_toe")  # fmt: skip
#: The 17 joints of the test set (``mpii_get_joint_set('relevant')``), 1-based indices into MPI_28 in the MATLAB code.
MPI_17 = ("head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
          "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "pelvis",
          "spine", "head")  # fmt: skip
#: Which MPI joint each H36M_17 joint is (by name): the correspondence the fixtures write.
H36M_FROM_MPI = {"Hip": "pelvis", "RHip": "right_hip", "RKnee": "right_knee", "RFoot": "right_ankle",
                 "LHip": "left_hip", "LKnee": "left_knee", "LFoot": "left_ankle", "Spine": "spine", "Thorax": "neck",
                 "Neck/Nose": "head", "Head": "head_top", "LShoulder": "left_shoulder", "LElbow": "left_elbow",
                 "LWrist": "left_wrist", "RShoulder": "right_shoulder", "RElbow": "right_elbow",
                 "RWrist": "right_wrist"}  # fmt: skip
Y_UP_FROM_Z_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # MPI world (Y up) from the suite's world (Z up)


def _mpi_joints(h36m: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(..., 17, D) H36M-ordered joints placed into the MPI joint list ``names`` (others = GARBAGE_MM)."""
    out = np.full(h36m.shape[:-2] + (len(names), h36m.shape[-1]), GARBAGE_MM)
    for j, joint in enumerate(H36M_JOINTS):
        out[..., names.index(H36M_FROM_MPI[joint]), :] = h36m[..., j, :]
    return out


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World (Z up) to OpenCV camera rotation of a camera at ``eye`` looking at ``target``."""
    fwd = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd])


def mpi_cameras(num: int = 14, seed: int = 0) -> list[dict]:
    """``num`` cameras around the origin: K, a 4x4 world(Y up)-to-camera extrinsic (mm), size (2048, 2048)."""
    rng = np.random.default_rng(seed)
    cams = []
    for c in range(num):
        azimuth = 2 * math.pi * c / num
        height = 900.0 + 900.0 * (c % 3)
        eye = np.array([4000 * math.cos(azimuth), 4000 * math.sin(azimuth), height])
        R_z = _look_at(eye, np.array([0.0, 0.0, 900.0]))
        R = R_z @ Y_UP_FROM_Z_UP.T  # the calibration maps MPI (Y-up) world points
        t = -R_z @ eye
        E = np.eye(4)
        E[:3, :3], E[:3, 3] = R, t
        f = 1490.0 + 10 * rng.random()
        K = np.array([[f, 0, 1020.0 + 10 * rng.random()], [0, f, 1040.0 + 10 * rng.random()], [0, 0, 1]])
        cams.append({"K": K, "E": E, "size": (2048, 2048)})
    return cams


def write_mpi_calibration(path: Path, cams: list[dict]) -> None:
    """MPI-INF-3DHP's ``camera.calibration`` (Skeletool format; 4x4 row-major intrinsic and extrinsic)."""
    lines = ["Skeletool Camera Calibration File V1.0"]
    for c, cam in enumerate(cams):
        K4 = np.eye(4)
        K4[:3, :3] = cam["K"]
        lines += [f"name          {c}", "  sensor      10 10", f"  size        {cam['size'][0]} {cam['size'][1]}",
                  "  animated    0", "  intrinsic   " + " ".join(f"{x:.10g}" for x in K4.ravel()),
                  "  extrinsic   " + " ".join(f"{x:.10g}" for x in cam["E"].ravel()), "  radial      0"]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def write_3dhp_train(root: Path, subjects: tuple[int, ...] = (1, 2), sequences: tuple[int, ...] = (1,),
                     frames: int = 12, video_cameras: tuple[int, ...] = (),
                     video_frames: int | None = None) -> dict:  # fmt: skip
    """``S<s>/Seq<q>/annot.mat`` (MATLAB v5: 14x1 cells ``annot2`` (F, 56), ``annot3``/``univ_annot3`` (F, 84),
    ``cameras`` 1x14, ``frames`` Fx1) and ``camera.calibration``; optionally ``imageSequence/video_<c>.avi``.
    ``video_frames`` < ``frames`` writes videos shorter than the annotation, as the released sequences are.

    Returns {(s, q): {"world": (F, 17, 3) Z-up mm, "cams": [...], "annot3": (14, F, 17, 3), "annot2": (14, F, 17, 2),
    "univ": (14, F, 17, 3)}} in H36M order.
    """
    cams = mpi_cameras()
    out = {}
    for s in subjects:
        for q in sequences:
            folder = Path(root) / f"S{s}" / f"Seq{q}"
            folder.mkdir(parents=True, exist_ok=True)
            world = motion_world(frames, seed=10 * s + q, action="squat")
            world_y = world @ Y_UP_FROM_Z_UP.T
            a2, a3, univ = [], [], []
            for cam in cams:
                X = world_y @ cam["E"][:3, :3].T + cam["E"][:3, 3]
                uvw = X @ cam["K"].T
                a3.append(X)
                a2.append(uvw[..., :2] / uvw[..., 2:])
                univ.append(X[:, :1] + 0.9 * (X - X[:, :1]))  # a scaled skeleton about the pelvis

            def cell(arrays, d):  # a 14x1 MATLAB cell: an object array savemat writes as a cell
                out = np.empty((14, 1), dtype=object)
                for c, a in enumerate(arrays):
                    out[c, 0] = _mpi_joints(a, MPI_28).reshape(frames, 28 * d)
                return out

            scipy.io.savemat(folder / "annot.mat", {
                "annot2": cell(a2, 2), "annot3": cell(a3, 3), "univ_annot3": cell(univ, 3),
                "cameras": np.arange(14).reshape(1, 14), "frames": np.arange(frames).reshape(-1, 1)})  # fmt: skip
            write_mpi_calibration(folder / "camera.calibration", cams)
            for c in video_cameras:
                write_video(
                    folder / "imageSequence" / f"video_{c}.avi", video_frames or frames, cams[c]["size"], "MJPG"
                )
            out[(s, q)] = {"world": world, "cams": cams, "annot3": np.stack(a3), "annot2": np.stack(a2),
                           "univ": np.stack(univ)}  # fmt: skip
    return out


def write_3dhp_test(root: Path, sequences: tuple[int, ...] = (1, 5), frames: int = 20, images: tuple[int, ...] = ()):
    """``TS<i>/annot_data.mat`` in MATLAB v7.3 (as released): ``annot2`` 2x17x1xN, ``annot3``/``univ_annot3`` 3x17x1xN,
    ``valid_frame`` 1xN, ``activity_annotation`` 1xN (1..7), ``bb_crop``; h5py sees them transposed, (N, 1, 17, 3).

    Every 4th frame is invalid; activities cycle 1..7. TS1-4 are 2048x2048 with f = 1500 px, TS5-6 1920x1080 with
    f = 1684 px. ``images``: sequences that get ``imageSequence/img_%06d.jpg`` (1-based) for every frame.
    Returns {i: {"annot3", "annot2", "univ" (N, 17, .) H36M order, "valid", "activity", "K"}}.
    """
    out = {}
    for i in sequences:
        folder = Path(root) / f"TS{i}"
        folder.mkdir(parents=True, exist_ok=True)
        if i <= 4:
            K, size = np.array([[1500.0, 0, 1017.0], [0, 1500.0, 1043.0], [0, 0, 1]]), (2048, 2048)
        else:
            K, size = np.array([[1684.0, 0, 939.9], [0, 1684.0, 560.1], [0, 0, 1]]), (1920, 1080)
        world = motion_world(frames, seed=1000 + i, action="punch")
        cam = _look_at(np.array([0.0, -4200.0, 1000.0]), np.array([0.0, 0.0, 900.0]))
        X = (world - np.array([0.0, -4200.0, 1000.0])) @ cam.T
        uvw = X @ K.T
        a2 = uvw[..., :2] / uvw[..., 2:]
        univ = X[:, :1] + 0.9 * (X - X[:, :1])
        valid = (np.arange(frames) % 4 != 3).astype(np.float64)
        activity = (np.arange(frames) % 7 + 1).astype(np.float64)
        with _matlab73(folder / "annot_data.mat") as f:
            for name, arr in (("annot2", a2), ("annot3", X), ("univ_annot3", univ)):
                mpi = _mpi_joints(arr, MPI_17)[:, None]  # (N, 1, 17, D) as h5py reads it
                f.create_dataset(name, data=mpi).attrs["MATLAB_class"] = np.bytes_("double")
            f.create_dataset("valid_frame", data=valid.reshape(-1, 1)).attrs["MATLAB_class"] = np.bytes_("double")
            ds = f.create_dataset("activity_annotation", data=activity.reshape(-1, 1))
            ds.attrs["MATLAB_class"] = np.bytes_("double")
            f.create_dataset("bb_crop", data=np.zeros((frames, 4))).attrs["MATLAB_class"] = np.bytes_("double")
        if i in images:
            seq = folder / "imageSequence"
            seq.mkdir(exist_ok=True)
            for n in range(frames):
                img = np.full((size[1], size[0], 3), 10 * (n % 20), np.uint8)
                cv2.imwrite(str(seq / f"img_{n + 1:06d}.jpg"), img)
        out[i] = {"annot3": X, "annot2": a2, "univ": univ, "valid": valid.astype(bool), "activity": activity, "K": K,
                  "size": size}  # fmt: skip
    return out


# -- SURREAL -----------------------------------------------------------------------------------------------------------
SMPL_24 = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
           "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
           "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand",
           "right_hand")  # fmt: skip
#: Physical joints of H36M_17 and the SMPL joint each sits at in the fixture (Head is the loader's extrapolation).
H36M_FROM_SMPL = {"Hip": "pelvis", "RHip": "right_hip", "RKnee": "right_knee", "RFoot": "right_ankle",
                  "LHip": "left_hip", "LKnee": "left_knee", "LFoot": "left_ankle", "Spine": "spine2",
                  "Thorax": "neck", "Neck/Nose": "head", "LShoulder": "left_shoulder", "LElbow": "left_elbow",
                  "LWrist": "left_wrist", "RShoulder": "right_shoulder", "RElbow": "right_elbow",
                  "RWrist": "right_wrist"}  # fmt: skip
SURREAL_K = np.array([[600.0, 0, 160], [0, 600, 120], [0, 0, 1]])
SURREAL_Q = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]).T @ np.array([[0.0, 0, -1], [0, 1, 0], [-1, 0, 0]])


def surreal_extrinsic(cam_loc: np.ndarray) -> np.ndarray:
    """SURREAL's ``getExtrinsicBlender``: 3x4 world-to-(computer vision)camera matrix from ``camLoc``."""
    R_world2bcam = np.array([[0, 0, 1], [0, -1, 0], [-1, 0, 0]], dtype=np.float64).T
    T_world2bcam = -R_world2bcam @ cam_loc
    R_bcam2cv = np.diag([1.0, -1.0, -1.0])
    return np.concatenate([R_bcam2cv @ R_world2bcam, (R_bcam2cv @ T_world2bcam)[:, None]], axis=1)


def write_video(path: Path, frames: int, size: tuple[int, int], fourcc: str = "mp4v") -> None:
    """A video whose frame n is uniformly grey at level 20 * (n % 12) + 10 (to check frame indexing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for n in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 * (n % 12) + 10, np.uint8))
    writer.release()


def write_surreal(root: Path, clips: dict[str, list[str]], frames: int = 6, extras: bool = True,
                  swapped: bool = True, empty: tuple[int, ...] = ()) -> dict:  # fmt: skip
    """A SURREAL tree ``<root>/<split>/run0/<seq>/<seq>_c0001{.mp4,_info.mat,_segm.mat,_depth.mat,_gtflow.mat}``.

    ``clips``: {split: [sequence names like '01_01']}. The info file holds ``joints2D`` 2x24xT (rounded px, as
    SURREAL's check script asserts), ``joints3D`` 3x24xT (m), ``camLoc`` 3x1, ``pose``, ``shape``, ``zrot``, ``gender``,
    ``sequence``, ``clipNo``... With ``swapped``, the left/right labels are exchanged as in the released data.
    segm: a 40x30 px block of part 1 around the pelvis and part 2 elsewhere inside a box; depth 3.5 m there, 1e10
    background; gtflow (u, v) = (1.5, -0.5) px. ``empty``: 0-based frames written as SURREAL writes a frame without
    the body in the render: ``joints3D`` all zero and ``joints2D`` all [0, 0] (the two checks of loader_SURREAL.lua).

    Returns {clip path stem: {"h36m_world": (T, 17, 3) mm in SURREAL's world, "cam_loc", "joints3D_smpl"}}.
    """
    out = {}
    for split, names in clips.items():
        for k, seq in enumerate(names):
            folder = Path(root) / split / "run0" / seq
            folder.mkdir(parents=True, exist_ok=True)
            stem = folder / f"{seq}_c0001"
            world_z = motion_world(frames, seed=500 + 10 * k + len(split), action="kick")  # Z up, mm
            # The released joints3D are a mirror image of the scene (getExtrinsicBlender's rotation has det -1):
            # X_surreal = Q^T X_world with Q = R_level^T R_world2cv, R_level a level camera looking along +Y.
            h36m_s = world_z @ SURREAL_Q / 1000.0
            smpl = np.full((frames, 24, 3), GARBAGE_MM / 1000)
            for j, joint in enumerate(H36M_JOINTS):
                if joint in H36M_FROM_SMPL:
                    smpl[:, SMPL_24.index(H36M_FROM_SMPL[joint])] = h36m_s[:, j]
            if swapped:  # the released labels: SMPL's 'left_*' slots hold the right joints and vice versa
                perm = list(range(24))
                for left, right in ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23)):
                    perm[left], perm[right] = right, left
                smpl = smpl[:, perm]
            cam_loc = np.array([5.5, -0.95 + 0.01 * k, -0.3])
            RT = surreal_extrinsic(cam_loc)
            X = smpl @ RT[:, :3].T + RT[:, 3]
            uvw = X @ SURREAL_K.T
            j2d = np.round(uvw[..., :2] / uvw[..., 2:])
            smpl[list(empty)], j2d[list(empty)] = 0.0, 0.0
            info = {
                "joints2D": j2d.transpose(2, 1, 0).astype(np.float32),
                "joints3D": smpl.transpose(2, 1, 0).astype(np.float32),
                "camLoc": cam_loc.reshape(3, 1).astype(np.float32), "camDist": np.float32(5.5),
                "pose": np.zeros((72, frames), np.float32), "shape": np.zeros((10, frames), np.float32),
                "zrot": np.zeros((frames, 1), np.float32), "gender": np.zeros((frames, 1), np.uint8),
                "sequence": f"{seq}_c0001", "clipNo": 1.0, "source": "cmu", "stride": np.uint8(50),
                "light": np.zeros((9, 100), np.float32),
            }  # fmt: skip
            scipy.io.savemat(f"{stem}_info.mat", info)
            write_video(Path(f"{stem}.mp4"), frames, (320, 240))
            if extras:
                segm, depth, flow = {}, {}, {}
                for n in range(frames):
                    u, v = j2d[n, 0]  # pelvis slot (not swapped)
                    s = np.zeros((240, 320), np.uint8)
                    s[60:200, 100:220] = 2
                    s[int(v) - 15 : int(v) + 15, int(u) - 20 : int(u) + 20] = 1
                    segm[f"segm_{n + 1}"] = s
                    depth[f"depth_{n + 1}"] = np.where(s > 0, 3.5, 1e10).astype(np.float32)
                    if n < frames - 1:  # no flow for the last frame
                        flow[f"gtflow_{n + 1}"] = np.dstack([np.full((240, 320), 1.5), np.full((240, 320), -0.5)])
                scipy.io.savemat(f"{stem}_segm.mat", segm)
                scipy.io.savemat(f"{stem}_depth.mat", depth)
                scipy.io.savemat(f"{stem}_gtflow.mat", {k: v.astype(np.float32) for k, v in flow.items()})
            out[str(stem)] = {"h36m_world": world_z, "cam_loc": cam_loc, "joints3D_smpl": smpl, "joints2D": j2d}
    return out
