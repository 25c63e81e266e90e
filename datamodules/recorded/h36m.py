"""Human3.6M from the VideoPose3D-style archives, with the published cameras and the standard protocols.

Files under ``root`` (the layout VideoPose3D's ``data/prepare_data_h36m.py`` and ``prepare_data_2d_h36m_*.py``
write):

* ``data_3d_h36m.npz``: ``positions_3d[subject][action]`` -> (T, 32, 3) float, world frame, **metres**; a pickled
  dict of dicts in a 0-d object array (``np.load(..., allow_pickle=True)['positions_3d'].item()``).
* ``data_2d_h36m_<keypoints>.npz`` (optional, ``keypoints``: ``gt``, ``cpn_ft_h36m_dbb``, ...):
  ``positions_2d[subject][action]`` -> list of 4 (T', 17, 2) float pixel arrays, one per camera in the order
  54138969, 55011271, 58860488, 60457274, with T' >= T (some videos have extra frames; they are cut to T);
  ``metadata`` -> {``layout_name`` (optional, must be 'h36m'), ``num_joints`` 17, ``keypoints_symmetry``}.
* Pixels (optional, ``pixels: [image]``), in the layout of the h36m-fetch extraction tool (``process_all.py``):
  ``<image_root>/<subject>/<ActionName>-<subaction>/imageSequence/<camera id>/img_%06d.jpg`` with 1-based frame
  numbers. The folder is not derived from the archive's sequence name: the dataset's ``metadata.xml`` says which
  recording is which (action, subaction) per subject (S1 "Eating 2" -> ``Eating-1``, "Eating" -> ``Eating-2``;
  "WalkTogether 1" -> ``WalkingTogether-1``); :data:`RECORDINGS` embeds that table. Current h36m-fetch keeps every
  64th frame of S9/S11 and, for the training subjects, a frame whenever a joint moved 40 mm since the last kept one;
  only frames that have an image are used, and a sequence whose folder is missing or empty is an error.
* Masks (optional, ``pixels: [..., mask]``): the official foreground masks
  ``<mask_root>/<subject>/MySegmentsMat/ground_truth_bs/<recording>.<camera id>.mat`` (MATLAB v7.3, cell ``Masks``),
  named by the original recording name of the same table (S1 "Photo 1" -> "TakingPhoto 1").

World frame: Human3.6M's (Z up, mm). The camera intrinsics (focal length, centre, radial k1..k3, tangential p1, p2,
resolution) and every subject's extrinsics (camera-to-world quaternion and camera position, mm) are the published
numbers, as embedded in VideoPose3D's ``common/h36m_dataset.py``. ``joints_2d`` keeps the lens distortion unless
``undistort_2d``; each batch carries ``distortion`` (B, 5) ``[k1, k2, k3, p1, p2]`` for
:func:`datamodules.recorded.distortion.project_distorted` (outside the batch contract).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from kornia.geometry.conversions import quaternion_to_rotation_matrix

from ..contract import register
from .base import (
    DataFormatError,
    FrameSource,
    ImageFolder,
    MatlabCellMasks,
    PixelSources,
    RecordedDataModule,
    Views,
    in_frame,
    require_file,
)
from .distortion import project_distorted, undistort_points

CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")

#: Published intrinsics of the four cameras (VideoPose3D's ``h36m_cameras_intrinsic_params``): centre and focal
#: length in px, distortion ``[k1, k2, k3]`` and ``[p1, p2]`` in VideoPose3D's convention, resolution (w, h).
INTRINSICS = {
    "54138969": dict(center=(512.54150390625, 515.4514770507812), focal=(1145.0494384765625, 1143.7811279296875),
                     radial=(-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
                     tangential=(-0.0009756988729350269, -0.00142447161488235), size=(1000, 1002)),
    "55011271": dict(center=(508.8486328125, 508.0649108886719), focal=(1149.6756591796875, 1147.5916748046875),
                     radial=(-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
                     tangential=(-0.0016190266469493508, -0.0027408944442868233), size=(1000, 1000)),
    "58860488": dict(center=(519.8158569335938, 501.40264892578125), focal=(1149.1407470703125, 1148.7989501953125),
                     radial=(-0.2083381861448288, 0.25548800826072693, -0.0024604974314570427),
                     tangential=(0.0014843869721516967, -0.0007599993259645998), size=(1000, 1000)),
    "60457274": dict(center=(514.9682006835938, 501.88201904296875), focal=(1145.5113525390625, 1144.77392578125),
                     radial=(-0.198384091258049, 0.21832367777824402, -0.008947807364165783),
                     tangential=(-0.0005872055771760643, -0.0018133620033040643), size=(1000, 1002)),
}  # fmt: skip

#: Published extrinsics per subject and camera (VideoPose3D's ``h36m_cameras_extrinsic_params``): the
#: camera-to-world rotation as a quaternion (w, x, y, z) and the camera position in the world (mm).
EXTRINSICS = {
    "S1": (((0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088),
            (1841.1070556640625, 4955.28466796875, 1563.4454345703125)),
           ((0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205),
            (1761.278564453125, -5078.0068359375, 1606.2650146484375)),
           ((0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696),
            (-1846.7777099609375, 5215.04638671875, 1491.972412109375)),
           ((0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435),
            (-1794.7896728515625, -3722.698974609375, 1574.8927001953125))),
    "S5": (((0.1467377245426178, -0.162370964884758, -0.7551892995834351, 0.6178938746452332),
            (2097.3916015625, 4880.94482421875, 1605.732421875)),
           ((0.6159758567810059, -0.7626792192459106, -0.15728192031383514, 0.1189815029501915),
            (2031.7008056640625, -5167.93310546875, 1612.923095703125)),
           ((0.14291371405124664, -0.12907841801643372, 0.7678384780883789, -0.6110143065452576),
            (-1620.5948486328125, 5171.65869140625, 1496.43701171875)),
           ((0.5920479893684387, -0.7814217805862427, 0.1274748593568802, -0.15036417543888092),
            (-1637.1737060546875, -3867.3173828125, 1547.033203125))),
    "S6": (((0.1337897777557373, -0.15692396461963654, -0.7571090459823608, 0.6198879480361938),
            (1935.4517822265625, 4950.24560546875, 1618.0838623046875)),
           ((0.6147197484970093, -0.7628812789916992, -0.16174767911434174, 0.11819244921207428),
            (1969.803955078125, -5128.73876953125, 1632.77880859375)),
           ((0.1529948115348816, -0.13529130816459656, 0.7646096348762512, -0.6112781167030334),
            (-1769.596435546875, 5185.361328125, 1476.993408203125)),
           ((0.5916101336479187, -0.7804774045944214, 0.12832270562648773, -0.1561593860387802),
            (-1721.668701171875, -3884.13134765625, 1540.4879150390625))),
    "S7": (((0.1435241848230362, -0.1631336808204651, -0.7548328638076782, 0.6188824772834778),
            (1974.512939453125, 4926.3544921875, 1597.8326416015625)),
           ((0.6141672730445862, -0.7638262510299683, -0.1596645563840866, 0.1177929937839508),
            (1937.0584716796875, -5119.7900390625, 1631.5665283203125)),
           ((0.14550060033798218, -0.12874816358089447, 0.7660516500473022, -0.6127139329910278),
            (-1741.8111572265625, 5208.24951171875, 1464.8245849609375)),
           ((0.5912848114967346, -0.7821764349937439, 0.12445473670959473, -0.15196487307548523),
            (-1734.7105712890625, -3832.42138671875, 1548.5830078125))),
    "S8": (((0.14110587537288666, -0.15589867532253265, -0.7561917304992676, 0.619644045829773),
            (2150.65185546875, 4896.1611328125, 1611.9046630859375)),
           ((0.6169601678848267, -0.7647668123245239, -0.14846350252628326, 0.11158157885074615),
            (2219.965576171875, -5148.453125, 1613.0440673828125)),
           ((0.1471444070339203, -0.13377119600772858, 0.7670128345489502, -0.6100369691848755),
            (-1571.2215576171875, 5137.0185546875, 1498.1761474609375)),
           ((0.5927824378013611, -0.7825870513916016, 0.12147816270589828, -0.14631995558738708),
            (-1476.913330078125, -3896.7412109375, 1547.97216796875))),
    "S9": (((0.15540587902069092, -0.15548215806484222, -0.7532095313072205, 0.6199594736099243),
            (2044.45849609375, 4935.1171875, 1481.2275390625)),
           ((0.618784487247467, -0.7634735107421875, -0.14132238924503326, 0.11933968216180801),
            (1990.959716796875, -5123.810546875, 1568.8048095703125)),
           ((0.13357827067375183, -0.1367100477218628, 0.7689454555511475, -0.6100738644599915),
            (-1670.9921875, 5211.98583984375, 1528.387939453125)),
           ((0.5879399180412292, -0.7823407053947449, 0.1427614390850067, -0.14794869720935822),
            (-1696.04345703125, -3827.099853515625, 1591.4127197265625))),
    "S11": (((0.15232472121715546, -0.15442320704460144, -0.7547563314437866, 0.6191070079803467),
             (2098.440185546875, 4926.5546875, 1500.278564453125)),
            ((0.6189449429512024, -0.7600917220115662, -0.15300633013248444, 0.1255258321762085),
             (2083.182373046875, -4912.1728515625, 1561.07861328125)),
            ((0.14943228662014008, -0.15650227665901184, 0.7681233882904053, -0.6026304364204407),
             (-1609.8153076171875, 5177.3359375, 1537.896728515625)),
            ((0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809),
             (-1590.738037109375, -3854.1689453125, 1578.017578125))),
}  # fmt: skip

SUBJECTS = tuple(EXTRINSICS)
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")

#: The 17 of the 32 mocap joints that make ``H36M_17`` (VideoPose3D drops the other 15 as static or duplicate).
KEEP_32 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
#: ``keypoints_symmetry`` of a 2D file in the Human3.6M 17-joint layout: (left joints, right joints).
SYMMETRY_17 = ((4, 5, 6, 11, 12, 13), (1, 2, 3, 14, 15, 16))

#: The 15 actions, with VideoPose3D's names (the original 'TakingPhoto' and 'WalkingDog' renamed).
ACTIONS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases", "Sitting",
           "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether")  # fmt: skip
ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}


#: h36m-fetch's folder action names: metadata.xml's ``actionnames`` for actions 2..16 (1 is '_ALL', never extracted).
FETCH_ACTIONS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Posing", "Purchases", "Sitting",
                 "SittingDown", "Smoking", "TakingPhoto", "Waiting", "Walking", "WalkingDog", "WalkingTogether")  # fmt: skip
#: metadata.xml's ``mapping`` (Human3.6M's metadata, as shipped with h36m-fetch): per subject the recording (original
#: file name) of action 2..16, subaction 1 then 2, in order; h36m-fetch extracts it to ``<FETCH_ACTIONS[a]>-<sub>``.
RECORDINGS = {
    "S1": ("Directions 1", "Directions", "Discussion 1", "Discussion", "Eating 2", "Eating", "Greeting 1", "Greeting",
            "Phoning 1", "Phoning", "Posing 1", "Posing", "Purchases 1", "Purchases", "Sitting 1", "Sitting 2",
            "SittingDown 2", "SittingDown", "Smoking 1", "Smoking", "TakingPhoto 1", "TakingPhoto", "Waiting 1",
            "Waiting", "Walking 1", "Walking", "WalkingDog 1", "WalkingDog", "WalkTogether 1", "WalkTogether"),
    "S5": ("Directions 1", "Directions 2", "Discussion 2", "Discussion 3", "Eating 1", "Eating", "Greeting 1",
            "Greeting 2", "Phoning 1", "Phoning", "Posing 1", "Posing", "Purchases 1", "Purchases", "Sitting 1",
            "Sitting", "SittingDown", "SittingDown 1", "Smoking 1", "Smoking", "Photo", "Photo 2", "Waiting 1",
            "Waiting 2", "Walking 1", "Walking", "WalkDog 1", "WalkDog", "WalkTogether 1", "WalkTogether"),
    "S6": ("Directions 1", "Directions", "Discussion 1", "Discussion", "Eating 1", "Eating 2", "Greeting 1",
            "Greeting", "Phoning 1", "Phoning", "Posing 2", "Posing", "Purchases 1", "Purchases", "Sitting 1",
            "Sitting 2", "SittingDown 1", "SittingDown", "Smoking 1", "Smoking", "Photo", "Photo 1", "Waiting 3",
            "Waiting", "Walking 1", "Walking", "WalkDog 1", "WalkDog", "WalkTogether 1", "WalkTogether"),
    "S7": ("Directions 1", "Directions", "Discussion 1", "Discussion", "Eating 1", "Eating", "Greeting 1", "Greeting",
            "Phoning 2", "Phoning", "Posing 1", "Posing", "Purchases 1", "Purchases", "Sitting 1", "Sitting",
            "SittingDown", "SittingDown 1", "Smoking 1", "Smoking", "Photo", "Photo 1", "Waiting 1", "Waiting 2",
            "Walking 1", "Walking 2", "WalkDog 1", "WalkDog", "WalkTogether 1", "WalkTogether"),
    "S8": ("Directions 1", "Directions", "Discussion 1", "Discussion", "Eating 1", "Eating", "Greeting 1", "Greeting",
            "Phoning 1", "Phoning", "Posing 1", "Posing", "Purchases 1", "Purchases", "Sitting 1", "Sitting",
            "SittingDown", "SittingDown 1", "Smoking 1", "Smoking", "Photo 1", "Photo", "Waiting 1", "Waiting",
            "Walking 1", "Walking", "WalkDog 1", "WalkDog", "WalkTogether 1", "WalkTogether 2"),
    "S9": ("Directions 1", "Directions", "Discussion 1", "Discussion 2", "Eating 1", "Eating", "Greeting 1",
            "Greeting", "Phoning 1", "Phoning", "Posing 1", "Posing", "Purchases 1", "Purchases", "Sitting 1",
            "Sitting", "SittingDown", "SittingDown 1", "Smoking 1", "Smoking", "Photo 1", "Photo", "Waiting 1",
            "Waiting", "Walking 1", "Walking", "WalkDog 1", "WalkDog", "WalkTogether 1", "WalkTogether"),
    "S11": ("Directions 1", "Directions", "Discussion 1", "Discussion 2", "Eating 1", "Eating", "Greeting 2",
            "Greeting", "Phoning 3", "Phoning 2", "Posing 1", "Posing", "Purchases 1", "Purchases", "Sitting 1",
            "Sitting", "SittingDown", "SittingDown 1", "Smoking 2", "Smoking", "Photo 1", "Photo", "Waiting 1",
            "Waiting", "Walking 1", "Walking", "WalkDog 1", "WalkDog", "WalkTogether 1", "WalkTogether"),
}  # fmt: skip


def action_of(sequence_name: str) -> str:
    """Canonical action of an archive sequence name: 'Directions 1' -> 'Directions', 'TakingPhoto' -> 'Photo'."""
    base = sequence_name.split(" ")[0]
    return ALIASES.get(base, base)


def camera_parameters(subject: str) -> dict[str, torch.Tensor]:
    """The four cameras of ``subject`` in the suite's conventions.

    Returns:
        ``K`` (4, 3, 3) px, ``R`` (4, 3, 3) world-to-camera, ``t`` (4, 3) mm (``X_cam = R @ X_world + t``),
        ``distortion`` (4, 5) ``[k1, k2, k3, p1, p2]``, ``size`` (4, 2) int64 (width, height) px.
    """
    if subject not in EXTRINSICS:
        raise KeyError(f"Human3.6M has no camera calibration for subject {subject!r}; subjects are {list(SUBJECTS)}")
    intr = [INTRINSICS[c] for c in CAMERA_IDS]
    K = torch.zeros(4, 3, 3, dtype=torch.float64)
    K[:, 0, 0] = torch.tensor([c["focal"][0] for c in intr], dtype=torch.float64)
    K[:, 1, 1] = torch.tensor([c["focal"][1] for c in intr], dtype=torch.float64)
    K[:, :2, 2] = torch.tensor([c["center"] for c in intr], dtype=torch.float64)
    K[:, 2, 2] = 1.0
    quat = torch.tensor([q for q, _ in EXTRINSICS[subject]], dtype=torch.float64)
    position = torch.tensor([p for _, p in EXTRINSICS[subject]], dtype=torch.float64)
    # The quaternion rotates camera axes into the world (VideoPose3D: X_world = q X_cam q* + position), so
    # world-to-camera is its transpose, and t = -R @ position.
    R = quaternion_to_rotation_matrix(quat / quat.norm(dim=-1, keepdim=True)).transpose(-1, -2)
    t = -(R @ position.unsqueeze(-1)).squeeze(-1)
    dist = torch.tensor([c["radial"] + c["tangential"] for c in intr], dtype=torch.float64)
    size = torch.tensor([c["size"] for c in intr], dtype=torch.int64)
    return {"K": K.float(), "R": R.float(), "t": t.float(), "distortion": dist.float(), "size": size}


# -- reading the archives ----------------------------------------------------------------------------------------------
def _load_npz_dict(path: Path, key: str, what: str) -> dict:
    require_file(path, what, "see datamodules/recorded/h36m.py for the expected files (VideoPose3D's data/ layout)")
    try:
        with np.load(path, allow_pickle=True) as archive:
            if key not in archive.files:
                raise DataFormatError(f"{what} {path} has no array {key!r}; it has {archive.files}")
            value = archive[key]
            extra = {k: archive[k] for k in archive.files if k != key}
    except DataFormatError:
        raise
    except Exception as err:
        raise DataFormatError(f"{what} {path} cannot be read ({type(err).__name__}: {err}); the file is truncated "
                              "or corrupt -- download or convert it again") from err  # fmt: skip
    if value.dtype != object or value.ndim != 0 or not isinstance(value.item(), dict):
        raise DataFormatError(f"{path}: {key} must be a pickled dict (0-d object array) as VideoPose3D writes it, "
                              f"got a {value.dtype} array of shape {value.shape}")  # fmt: skip
    return {"data": value.item(), **{k: v.item() if v.dtype == object and v.ndim == 0 else v for k, v in extra.items()}}


def read_positions_3d(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``positions_3d`` of ``data_3d_h36m.npz``: {subject: {sequence: (T, 32, 3) float32 metres}}, validated."""
    data = _load_npz_dict(Path(path), "positions_3d", "Human3.6M 3D poses")["data"]
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject, sequences in data.items():
        if not isinstance(sequences, dict):
            raise DataFormatError(f"{path}: positions_3d[{subject!r}] must be a dict of sequences")
        out[subject] = {}
        for name, pos in sequences.items():
            pos = np.asarray(pos)
            if pos.ndim != 3 or pos.shape[1:] != (32, 3) or pos.shape[0] == 0:
                raise DataFormatError(f"{path}: positions_3d[{subject!r}][{name!r}] has shape {pos.shape}, expected "
                                      "(T, 32, 3) with T > 0 (metres, 32 mocap joints)")  # fmt: skip
            if action_of(name) not in ACTIONS:
                raise DataFormatError(f"{path}: sequence {subject}/{name!r} is not one of the actions {list(ACTIONS)}")
            out[subject][name] = pos.astype(np.float32)
    return out


def read_positions_2d(path: Path) -> tuple[dict[str, dict[str, list[np.ndarray]]], dict]:
    """``positions_2d`` and ``metadata`` of a ``data_2d_h36m_<keypoints>.npz``, validated."""
    loaded = _load_npz_dict(Path(path), "positions_2d", "Human3.6M 2D poses")
    meta = loaded.get("metadata")
    if not isinstance(meta, dict):
        raise DataFormatError(f"{path} has no 'metadata' dict (num_joints, keypoints_symmetry)")
    if meta.get("layout_name", "h36m") != "h36m":
        raise DataFormatError(f"{path}: metadata layout_name is {meta['layout_name']!r}, not the Human3.6M "
                              "17-joint layout 'h36m'; use 2D detections in that layout "
                              "(e.g. data_2d_h36m_cpn_ft_h36m_dbb.npz)")  # fmt: skip
    if meta.get("num_joints") != 17:
        raise DataFormatError(f"{path}: metadata num_joints is {meta.get('num_joints')!r}, expected 17")
    symmetry = meta.get("keypoints_symmetry")
    if symmetry is None or [list(map(int, s)) for s in symmetry] != [list(s) for s in SYMMETRY_17]:
        raise DataFormatError(f"{path}: metadata keypoints_symmetry is {symmetry!r}, expected {SYMMETRY_17} "
                              "(left, right joints of the Human3.6M 17-joint order)")  # fmt: skip
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject, sequences in loaded["data"].items():
        out[subject] = {}
        for name, views in sequences.items():
            if len(views) != 4:
                raise DataFormatError(f"{path}: positions_2d[{subject!r}][{name!r}] has {len(views)} cameras, "
                                      "expected a list of 4")  # fmt: skip
            arrays = []
            for c, xy in enumerate(views):
                xy = np.asarray(xy)
                if xy.ndim != 3 or xy.shape[1:] != (17, 2):
                    raise DataFormatError(f"{path}: positions_2d[{subject!r}][{name!r}][{c}] has shape {xy.shape}, "
                                          "expected (T, 17, 2) pixels")  # fmt: skip
                arrays.append(xy.astype(np.float32))
            out[subject][name] = arrays
    return out, meta


def canonical_name(name: str) -> str:
    """VideoPose3D's name of a recording: 'TakingPhoto 1' -> 'Photo 1', 'WalkingDog' -> 'WalkDog'."""
    return name.replace("TakingPhoto", "Photo").replace("WalkingDog", "WalkDog")


def fetch_folder(subject: str, name: str) -> tuple[str, str]:
    """(h36m-fetch folder, original recording name) of archive sequence ``subject``/``name`` via :data:`RECORDINGS`."""
    recordings = [canonical_name(r) for r in RECORDINGS.get(subject, ())]
    if canonical_name(name) not in recordings:
        raise DataFormatError(f"Human3.6M sequence {subject}/{name!r} is not a recording of {subject} in the dataset's "
                              f"metadata.xml (it has {sorted(recordings)}); fix the name in data_3d_h36m.npz")  # fmt: skip
    i = recordings.index(canonical_name(name))
    return f"{FETCH_ACTIONS[i // 2]}-{i % 2 + 1}", RECORDINGS[subject][i]


@register
class Human36M(RecordedDataModule):
    """Human3.6M (17 joints, 4 cameras, 50 fps) from VideoPose3D-style archives.

    Args:
        root: folder with ``data_3d_h36m.npz`` and ``data_2d_h36m_<keypoints>.npz``.
        keypoints: which 2D file feeds ``joints_2d``: ``gt`` (the released 2D ground truth), a detector name such as
            ``cpn_ft_h36m_dbb``, or None to use the projection of the 3D poses (no 2D file needed).
        train_subjects / val_subjects / test_subjects: subjects per split (standard: S1, S5, S6, S7, S8 / S9, S11).
        cameras: camera indices 0..3 (54138969, 55011271, 58860488, 60457274) used; all four by default.
        actions: restrict to these actions (names of ``ACTIONS``); None = all 15.
        exclude: ``subject/sequence`` entries left out; default the corrupted 'S11/Directions' video.
        undistort_2d: remove the lens distortion from ``joints_2d``/``joints_2d_gt`` so the pinhole ``K`` alone
            reproduces them (``distortion`` is then zero).
        image_root: folder of extracted frames (default ``<root>/images``).
        mask_root: folder holding ``<subject>/MySegmentsMat/ground_truth_bs`` (default ``root``).
        **kwargs: see :class:`datamodules.recorded.base.RecordedDataModule` (strides, multiview, frame pairs, pixels).
    """

    provides = ("joints_3d", "joints_3d_world", "joints_2d", "joints_2d_gt", "visible", "K", "R", "t", "subject",
                "action", "sequence", "frame", "camera", "distortion", "image", "mask")  # fmt: skip
    pixel_kinds = ("image", "mask")

    def __init__(self, root: str, keypoints: str | None = "gt", train_subjects: list[str] = TRAIN_SUBJECTS,
                 val_subjects: list[str] = TEST_SUBJECTS, test_subjects: list[str] = TEST_SUBJECTS,
                 cameras: list[int] = (0, 1, 2, 3), actions: list[str] | None = None,
                 exclude: list[str] = ("S11/Directions",), undistort_2d: bool = False, image_root: str | None = None,
                 mask_root: str | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.root = Path(root)
        self.keypoints = keypoints
        self.subjects = {"train": tuple(train_subjects), "val": tuple(val_subjects), "test": tuple(test_subjects)}
        for split, subjects in self.subjects.items():
            unknown = [s for s in subjects if s not in SUBJECTS]
            if unknown:
                raise ValueError(f"Human36M {split}_subjects {unknown} unknown; subjects are {list(SUBJECTS)}")
        self.cameras = tuple(int(c) for c in cameras)
        if not self.cameras or any(c not in range(4) for c in self.cameras) or len(set(self.cameras)) != len(cameras):
            raise ValueError(f"Human36M cameras must be distinct indices in 0..3, got {list(cameras)}")
        unknown = sorted(set(actions or ()) - set(ACTIONS))
        if unknown:
            raise ValueError(f"Human36M actions {unknown} unknown; actions are {list(ACTIONS)}")
        self.actions = tuple(actions) if actions else ACTIONS
        self.exclude = frozenset(exclude)
        self.undistort_2d = undistort_2d
        self.image_root = Path(image_root) if image_root else self.root / "images"
        self.mask_root = Path(mask_root) if mask_root else self.root
        self._poses_3d: dict | None = None
        self._poses_2d: dict | None = None
        self._videos: dict[str, list[tuple[str, str, int]]] = {}

    @property
    def name(self) -> str:
        return "h36m"

    @property
    def action_names(self) -> list[str]:
        return list(ACTIONS)

    @property
    def protocol(self) -> dict[str, str]:
        out = super().protocol
        input_2d = self.keypoints or "projected-gt"
        out.update(input_2d=input_2d + (" undistorted" if self.undistort_2d else ""),
                   train_subjects=",".join(self.subjects["train"]), test_subjects=",".join(self.subjects["test"]),
                   cameras=",".join(CAMERA_IDS[c] for c in self.cameras),
                   excluded=",".join(sorted(self.exclude)))  # fmt: skip
        return out

    def split_source(self, split: str) -> object:
        return split if split == "train" else self.subjects[split]

    # -- files ------------------------------------------------------------------------------------------------------
    def poses_3d(self) -> dict:
        if self._poses_3d is None:
            self._poses_3d = read_positions_3d(self.root / "data_3d_h36m.npz")
        return self._poses_3d

    def poses_2d(self) -> dict:
        if self._poses_2d is None:
            self._poses_2d = read_positions_2d(self.root / f"data_2d_h36m_{self.keypoints}.npz")[0]
        return self._poses_2d

    def sequences(self, split: str) -> list[tuple[str, str]]:
        """(subject, archive sequence name) of ``split`` in a fixed order, after actions and exclusions."""
        data = self.poses_3d()
        out = []
        for subject in self.subjects[split]:
            if subject not in data:
                raise DataFormatError(f"{self.root / 'data_3d_h36m.npz'} has no subject {subject!r} "
                                      f"(it has {sorted(data)}); fix {split}_subjects or the archive")  # fmt: skip
            for name in sorted(data[subject]):
                if f"{subject}/{name}" not in self.exclude and action_of(name) in self.actions:
                    out.append((subject, name))
        return out

    # -- frames -----------------------------------------------------------------------------------------------------
    def load_views(self, split: str) -> Views:
        cams = list(self.cameras)
        parts, videos = [], []
        for seq_id, (subject, name) in enumerate(self.sequences(split)):
            world = torch.from_numpy(self.poses_3d()[subject][name][:, list(KEEP_32)]) * 1000.0  # (T, 17, 3) mm
            n, v = world.shape[0], len(cams)
            cam = {k: x[cams] for k, x in camera_parameters(subject).items()}  # (V, ...), broadcast over frames
            # X_cam = R X_world + t for every (frame, view) as one contraction (no per-frame 3x3 matmuls).
            joints_3d = torch.einsum("tjc,vdc->tvjd", world, cam["R"]) + cam["t"][None, :, None, :]  # (T, V, 17, 3)
            gt_2d = project_distorted(joints_3d, cam["K"], cam["distortion"])
            if self.keypoints is None:
                joints_2d = gt_2d
            else:
                joints_2d = self._file_2d(subject, name, n)[:, cams]
            dist = cam["distortion"]
            if self.undistort_2d:
                joints_2d = undistort_points(joints_2d, cam["K"], dist)
                gt_2d = undistort_points(gt_2d, cam["K"], dist)
                dist = torch.zeros_like(dist)
            per_view = {k: x.unsqueeze(0).expand(n, *x.shape) for k, x in cam.items()}
            video = torch.arange(len(videos), len(videos) + v).expand(n, v)
            videos += [(subject, name, c) for c in cams]
            parts.append(Views(
                joints_3d=joints_3d, joints_3d_world=world.unsqueeze(1).expand(n, v, 17, 3), joints_2d=joints_2d,
                joints_2d_gt=gt_2d, visible=in_frame(gt_2d, cam["size"], joints_3d[..., 2]), K=per_view["K"],
                R=per_view["R"], t=per_view["t"], image_size=per_view["size"], camera=torch.tensor(cams).expand(n, v),
                video=video, subject=torch.full((n,), int(subject[1:])),
                action=torch.full((n,), ACTIONS.index(action_of(name))), sequence=torch.full((n,), seq_id),
                frame=torch.arange(n), extra={"distortion": dist.expand(n, v, 5)},
            ))  # fmt: skip
        if not parts:
            raise ValueError(f"Human36M: no sequences for the {split} split (subjects {list(self.subjects[split])}, "
                             f"actions {list(self.actions)}, excluded {sorted(self.exclude)})")  # fmt: skip
        self._videos[split] = videos
        return Views.cat(parts)

    def _file_2d(self, subject: str, name: str, frames: int) -> torch.Tensor:
        """(T, 4, 17, 2) px of one sequence from the 2D file, cut to the 3D length."""
        path = self.root / f"data_2d_h36m_{self.keypoints}.npz"
        seqs = self.poses_2d().get(subject, {})
        if name not in seqs:
            raise DataFormatError(f"{path} has no 2D poses for {subject}/{name!r}, which data_3d_h36m.npz has")
        views = seqs[name]
        short = [len(xy) for xy in views if len(xy) < frames]
        if short:
            raise DataFormatError(f"{path}: {subject}/{name!r} has {short} 2D frames for {frames} 3D frames; "
                                  "2D sequences must be at least as long as the 3D ones")  # fmt: skip
        return torch.from_numpy(np.stack([xy[:frames] for xy in views], axis=1))

    # -- pixels -----------------------------------------------------------------------------------------------------
    def pixel_sources(self, split: str) -> PixelSources:
        if split not in self._videos:
            self.load_views(split)
        sources = []
        for subject, name, cam in self._videos[split]:
            camera_id = CAMERA_IDS[cam]
            entry: dict[str, FrameSource] = {}
            folder_name, recording = fetch_folder(subject, name)
            if "image" in self.pixels:
                folder = self.image_root / subject / folder_name / "imageSequence" / camera_id
                if not folder.is_dir() or not any(folder.glob("img_*.jpg")):
                    raise FileNotFoundError(f"Human3.6M frames of {subject}/{name!r} camera {camera_id}: no "
                                            f"img_%06d.jpg in {folder} (h36m-fetch's folder for this recording, per "
                                            "metadata.xml); extract it with h36m-fetch or drop the sequence "
                                            "(actions/exclude)")  # fmt: skip
                entry["image"] = ImageFolder(str(folder / "img_{:06d}.jpg"), first=1)
            if "mask" in self.pixels:
                path = self.mask_root / subject / "MySegmentsMat" / "ground_truth_bs" / f"{recording}.{camera_id}.mat"
                require_file(path, f"Human3.6M masks of {subject}/{name!r} camera {camera_id}")
                entry["mask"] = MatlabCellMasks(path)
            sources.append(entry)
        return PixelSources(sources)
