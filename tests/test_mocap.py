"""Rig mappings, the MocapPoses data module, its cache and the data stats, on BVH files the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from datamodules.contract import KEYS
from datamodules.motion import mocap as mocap_module
from datamodules.motion.bvh import Bvh, read_bvh, write_bvh
from datamodules.motion.mocap import MocapPoses, resample_indices
from datamodules.motion.rigs import CMU_UNIT_MM, detect_rig
from datamodules.skeleton import H36M_17

REPO = Path(__file__).resolve().parents[1]
J = {name: i for i, name in enumerate(H36M_17.joints)}
ZXY = ("Zrotation", "Xrotation", "Yrotation")

# (name, parent, offset, constant ZXY rotation in degrees). Bandai style: cm, every bone along its
# local +X; the Hips turn +90 deg about Z so that +X points up (world Y, as in the real files).
BANDAI_SPEC = [
    ("joint_Root", None, (0, 0, 0), (0, 0, 0)),
    ("Hips", "joint_Root", (0, 90, 0), (90, 0, 0)),
    ("Spine", "Hips", (15, 0, 0), (0, 0, 0)),
    ("Chest", "Spine", (10, 0, 0), (0, 0, 0)),
    ("Neck", "Chest", (16, 0, 0), (0, 0, 0)),
    ("Head", "Neck", (6, 0, 0), (0, 0, 0)),
    ("Head/End Site", "Head", (0, 0, 0), None),
    ("Shoulder_L", "Chest", (13, -5, 0), (-90, 0, 0)),  # global identity: +X is the subject's left
    ("UpperArm_L", "Shoulder_L", (5, 0, 0), (-90, 0, 0)),  # global Rz(-90): +X points down
    ("LowerArm_L", "UpperArm_L", (24, 0, 0), (0, 0, 0)),
    ("Hand_L", "LowerArm_L", (22, 0, 0), (0, 0, 0)),
    ("Hand_L/End Site", "Hand_L", (0, 0, 0), None),
    ("Shoulder_R", "Chest", (13, 5, 0), (90, 0, 0)),  # global Rz(180): +X is the subject's right
    ("UpperArm_R", "Shoulder_R", (5, 0, 0), (90, 0, 0)),  # global Rz(270): +X points down
    ("LowerArm_R", "UpperArm_R", (24, 0, 0), (0, 0, 0)),
    ("Hand_R", "LowerArm_R", (22, 0, 0), (0, 0, 0)),
    ("Hand_R/End Site", "Hand_R", (0, 0, 0), None),
    ("UpperLeg_L", "Hips", (-2, -6.5, 0), (180, 0, 0)),  # global Rz(270): down
    ("LowerLeg_L", "UpperLeg_L", (39, 0, 0), (0, 0, 0)),
    ("Foot_L", "LowerLeg_L", (41, 0, 0), (0, 0, 0)),
    ("Toes_L", "Foot_L", (0, 0, 12), (0, 0, 0)),
    ("Toes_L/End Site", "Toes_L", (0, 0, 0), None),
    ("UpperLeg_R", "Hips", (-2, 6.5, 0), (180, 0, 0)),
    ("LowerLeg_R", "UpperLeg_R", (39, 0, 0), (0, 0, 0)),
    ("Foot_R", "LowerLeg_R", (41, 0, 0), (0, 0, 0)),
    ("Toes_R", "Foot_R", (0, 0, 12), (0, 0, 0)),
    ("Toes_R/End Site", "Toes_R", (0, 0, 0), None),
]


def _mirror(name: str) -> str:
    """Left-side joint name -> right-side name (``LeftArm`` -> ``RightArm``, ``LHipJoint`` -> ``RHipJoint``)."""
    if name.startswith("Left"):
        return "Right" + name[4:]
    return "R" + name[1:] if name[0] == "L" and name[1].isupper() else name


def _side(spec_left: list) -> list:
    """Right-side rows from left-side rows: names mirrored, x offsets negated."""
    return [(_mirror(n), _mirror(p), (-o[0], *o[1:]), r) for n, p, o, r in spec_left]


_CMU_LEFT = [
    ("LHipJoint", "Hips", (0, 0, 0), (0, 0, 0)),
    ("LeftUpLeg", "LHipJoint", (1.65, -1.8, 0.6), (0, 0, 0)),
    ("LeftLeg", "LeftUpLeg", (0, -7.5, 0), (0, 0, 0)),
    ("LeftFoot", "LeftLeg", (0, -7.2, 0), (0, 0, 0)),
    ("LeftToeBase", "LeftFoot", (0, -0.6, 2.1), (0, 0, 0)),
    ("LeftToeBase/End Site", "LeftToeBase", (0, 0, 1.1), None),
    ("LeftShoulder", "Spine1", (0, 0, 0), (0, 0, 0)),
    ("LeftArm", "LeftShoulder", (3.5, 0.9, 0), (0, 0, 0)),
    ("LeftForeArm", "LeftArm", (4.9, 0, 0), (0, 0, 0)),
    ("LeftHand", "LeftForeArm", (3.4, 0, 0), (0, 0, 0)),
]
# cgspeed MotionBuilder-friendly names, T-pose, 1/0.45 inch units.
CMU_SPEC = [
    ("Hips", None, (0, 17, 0), (0, 0, 0)),
    ("LowerBack", "Hips", (0, 0, 0), (0, 0, 0)),
    ("Spine", "LowerBack", (0, 2.05, 0), (0, 0, 0)),
    ("Spine1", "Spine", (0, 2.06, 0), (0, 0, 0)),
    ("Neck", "Spine1", (0, 0, 0), (0, 0, 0)),
    ("Neck1", "Neck", (0, 1.57, 0), (0, 0, 0)),
    ("Head", "Neck1", (0, 1.56, 0), (0, 0, 0)),
    ("Head/End Site", "Head", (0, 1.63, 0), None),
    *_CMU_LEFT,
    *_side(_CMU_LEFT),
]
_MAX_LEFT = [
    ("LHipJoint", "Hips", (0, 0, 0), (0, 0, 0)),
    ("LeftHip", "LHipJoint", (1.25, -1.64, 0.7), (0, 0, 0)),
    ("LeftKnee", "LeftHip", (0, -7.3, 0), (0, 0, 0)),
    ("LeftAnkle", "LeftKnee", (0, -6.9, 0), (0, 0, 0)),
    ("LeftToe", "LeftAnkle", (0, -0.4, 2.2), (0, 0, 0)),
    ("LeftToe/End Site", "LeftToe", (0, 0, 1.1), None),
    ("LeftCollar", "Chest2", (0, 0, 0), (0, 0, 0)),
    ("LeftShoulder", "LeftCollar", (3.05, 1.47, 0), (0, 0, 0)),
    ("LeftElbow", "LeftShoulder", (0, -4.25, 0), (0, 0, 0)),
    ("LeftWrist", "LeftElbow", (0, -3.28, 0), (0, 0, 0)),
]
# cgspeed 3dsMax-friendly names (CMU 131_*.bvh), arms down.
CMU_3DSMAX_SPEC = [
    ("Hips", None, (0, 16, 0), (0, 0, 0)),
    ("lowerback", "Hips", (0, 0, 0), (0, 0, 0)),
    ("Chest", "lowerback", (0, 1.99, 0), (0, 0, 0)),
    ("Chest2", "Chest", (0, 1.99, 0), (0, 0, 0)),
    ("lowerneck", "Chest2", (0, 0, 0), (0, 0, 0)),
    ("Neck", "lowerneck", (0, 1.61, 0), (0, 0, 0)),
    ("Head", "Neck", (0, 1.60, 0), (0, 0, 0)),
    ("Head/End Site", "Head", (0, 1.63, 0), None),
    *_MAX_LEFT,
    *_side(_MAX_LEFT),
]


def make_bvh(spec: list, frames: int = 30, frame_time: float = 1 / 30, six_channels: bool = False,
             wiggle_deg: float = 0.0) -> Bvh:  # fmt: skip
    """A BVH from a spec; ``six_channels`` gives every joint Bandai-style position channels equal to its offset;
    ``wiggle_deg`` adds a smooth rotation to every non-root joint (different per joint and axis)."""
    order = [row[0] for row in spec]
    names, parents, offsets, channels, columns = [], [], [], [], []
    t = np.arange(frames)[:, None]
    for k, (name, parent, offset, rot) in enumerate(spec):
        names.append(name)
        parents.append(-1 if parent is None else order.index(parent))
        offsets.append(offset)
        if rot is None:  # End Site
            channels.append(())
            continue
        angles = np.tile(np.asarray(rot, dtype=float), (frames, 1))
        if parent is not None and wiggle_deg:
            angles = angles + wiggle_deg * np.sin(0.2 * t * (1 + 0.1 * k) + np.arange(3))
        if parent is None or six_channels:
            channels.append(("Xposition", "Yposition", "Zposition", *ZXY))
            columns.append(np.concatenate([np.tile(np.asarray(offset, dtype=float), (frames, 1)), angles], axis=1))
        else:
            channels.append(ZXY)
            columns.append(angles)
    return Bvh(tuple(names), tuple(parents), np.asarray(offsets, dtype=float), tuple(channels),
               np.concatenate(columns, axis=1), frame_time)  # fmt: skip


# -- rigs ---------------------------------------------------------------------------------------------


def test_bandai_rig_hand_computed_positions():
    joints, lowest = detect_rig(make_bvh(BANDAI_SPEC, six_channels=True).names).convert(
        make_bvh(BANDAI_SPEC, six_channels=True)
    )
    pose = joints[0]
    # world (x, y, z) = (x, -z, y)_bvh * 10 mm; left is +X; numbers from the spec by hand
    expected = {
        "Hip": (0, 0, 880), "LHip": (65, 0, 880), "RHip": (-65, 0, 880), "LKnee": (65, 0, 490), "LFoot": (65, 0, 80),
        "Spine": (0, 0, 900 + 10 * (0.69 * 15 + 0.31 * 25)), "Thorax": (0, 0, 1310),
        "Neck/Nose": (0, 0, 1410), "Head": (0, 0, 1505),  # 4 and 13.5 cm along the Head joint's +X (up)
        "LShoulder": (100, 0, 1280), "LElbow": (100, 0, 1040), "LWrist": (100, 0, 820),
        "RShoulder": (-100, 0, 1280), "RWrist": (-100, 0, 820),
    }  # fmt: skip
    for name, xyz in expected.items():
        np.testing.assert_allclose(pose[J[name]], xyz, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(lowest, 80.0, atol=1e-9)  # ankles; toes point forward at ankle height


@pytest.mark.parametrize(
    ("spec", "rig_name", "hip_height", "head_top"),
    [
        (BANDAI_SPEC, "bandai", 880.0, 1505.0),
        (CMU_SPEC, "cmu", (17 - 1.8) * CMU_UNIT_MM, (17 + 2.05 + 2.06 + 1.57 + 1.56 + 1.63) * CMU_UNIT_MM),
        (CMU_3DSMAX_SPEC, "cmu-3dsmax", (16 - 1.64) * CMU_UNIT_MM, (16 + 1.99 * 2 + 1.61 + 1.60 + 1.63) * CMU_UNIT_MM),
    ],
)
def test_rigs_map_to_upright_figures_in_mm(spec, rig_name, hip_height, head_top):
    bvh = make_bvh(spec, six_channels=rig_name == "bandai")
    rig = detect_rig(bvh.names)
    assert rig.name == rig_name
    pose = rig.convert(bvh)[0][0]
    z = {name: pose[J[name], 2] for name in J}
    assert z["Hip"] == pytest.approx(hip_height) and z["Head"] == pytest.approx(head_top)
    chain = ["LFoot", "LKnee", "Hip", "Spine", "Thorax", "Neck/Nose", "Head"]
    assert all(z[a] < z[b] for a, b in zip(chain, chain[1:])), {k: round(float(z[k])) for k in chain}
    assert z["LWrist"] < z["LShoulder"] and z["RWrist"] < z["RShoulder"] or rig_name == "cmu"  # CMU spec: T-pose
    assert pose[J["LHip"], 0] > 0 > pose[J["RHip"], 0]  # the subject's left is +X in these files
    assert pose[J["Hip"], 0] == pytest.approx(0.0, abs=1e-9)  # midway between the hips
    height = z["Head"] - min(z["LFoot"], z["RFoot"])
    assert 1200 < height < 1700  # ankle to head top of an adult, in mm (not cm, not file units)


def test_rig_offsets_scale_to_mm():
    pose = detect_rig(make_bvh(CMU_SPEC).names).convert(make_bvh(CMU_SPEC))[0][0]
    thigh = np.linalg.norm(pose[J["LKnee"]] - pose[J["LHip"]])
    assert thigh == pytest.approx(7.5 * CMU_UNIT_MM)  # 423.3 mm
    shoulders = pose[J["LShoulder"]] - pose[J["RShoulder"]]
    np.testing.assert_allclose(shoulders, (7.0 * CMU_UNIT_MM, 0, 0), atol=1e-9)
    thorax = 0.15 * (17 + 4.11) + 0.85 * (17 + 4.11 + 1.57)
    assert pose[J["Thorax"], 2] == pytest.approx(thorax * CMU_UNIT_MM)


#: Children of bones that are one rigid BVH segment in every rig: thighs, shins, upper arms, forearms. (The hip
#: halves are rigid only where the hip joints hang directly off the root, as in Bandai; the CMU LHipJoint /
#: RHipJoint rotate in these wiggled test files although they never do in the real data.)
RIGID = ("LKnee", "RKnee", "LFoot", "RFoot", "LElbow", "RElbow", "LWrist", "RWrist")


def test_rigid_bones_keep_their_length_over_time():
    for spec, six in ((BANDAI_SPEC, True), (CMU_SPEC, False), (CMU_3DSMAX_SPEC, False)):
        bvh = make_bvh(spec, frames=50, six_channels=six, wiggle_deg=25.0)
        joints = torch.from_numpy(detect_rig(bvh.names).convert(bvh)[0])
        lengths = H36M_17.bone_lengths(joints)  # (T, 16)
        rigid = [b for b, (_, c) in enumerate(H36M_17.bones) if H36M_17.joints[c] in RIGID]
        assert float(lengths[:, rigid].std(dim=0).max()) < 1e-6
        assert float(lengths[:, rigid].min()) > 50.0  # mm: real bones, not collapsed points
        assert float(joints[..., 2].std(dim=0).max()) > 1.0  # the wiggle does move joints


def test_unknown_joint_names_fail_clearly():
    bvh = make_bvh([("Root", None, (0, 0, 0), (0, 0, 0)), ("Foo", "Root", (0, 1, 0), (0, 0, 0))])
    with pytest.raises(ValueError, match=r"strange.bvh: unknown skeleton.*\n  - bandai: lacks \[.*'Chest'"):
        detect_rig(bvh.names, "strange.bvh")


# -- MocapPoses -----------------------------------------------------------------------------------------


@pytest.fixture
def mocap_root(tmp_path) -> Path:
    """Bandai-like and CMU-like folders: 4 Bandai clips (30 Hz, 30 frames) with .json labels, 2 CMU clips (120 Hz)."""
    bandai = tmp_path / "bandai" / "dataset-2"
    (bandai / "cfg").mkdir(parents=True)
    (bandai / "data").mkdir()
    (bandai / "cfg" / "content_label.txt").write_text("dataset-2_walk\ndataset-2_wave-left-hand\n")
    (bandai / "cfg" / "style_label.txt").write_text("dataset-2_normal\ndataset-2_youthful\n")
    clips = {  # stem -> (content id, style id, wiggle); the .json wins over the name (walk_normal_002)
        "dataset-2_walk_normal_001": (0, 0, 0.0),
        "dataset-2_walk_normal_002": (1, 0, 20.0),
        "dataset-2_walk_youthful_001": (0, 1, 10.0),
        "dataset-2_wave-left-hand_normal_001": (1, 0, 5.0),
    }
    for stem, (content, style, wiggle) in clips.items():
        write_bvh(bandai / "data" / f"{stem}.bvh.gz", make_bvh(BANDAI_SPEC, six_channels=True, wiggle_deg=wiggle))
        (bandai / "data" / f"{stem}.json").write_text(json.dumps({"content": content, "style": style}))
    cmu = tmp_path / "cmu"
    cmu.mkdir()
    write_bvh(cmu / "walking_test_1.bvh", make_bvh(CMU_SPEC, frames=48, frame_time=1 / 120, wiggle_deg=10))
    write_bvh(cmu / "131_01.bvh.gz", make_bvh(CMU_3DSMAX_SPEC, frames=24, frame_time=1 / 120))
    return tmp_path


def _module(root: Path, **kwargs) -> MocapPoses:
    args = dict(
        train={"roots": [str(root / "bandai")], "exclude_styles": ["youthful"]},
        val={"roots": [str(root / "bandai")], "styles": ["youthful"]},
        test={"roots": [str(root / "cmu")]},
        fps=10,
        cache_dir=str(root / "cache"),
        parse_workers=0,
        batch_size=4,
        eval_batch_size=8,
    )
    return MocapPoses(**{**args, **kwargs})


def test_splits_labels_and_batches(mocap_root):
    dm = _module(mocap_root)
    assert [f.stem for f in dm.files["val"]] == ["dataset-2_walk_youthful_001"]
    assert [f.content for f in dm.files["train"]] == ["walk", "wave-left-hand", "wave-left-hand"]  # .json wins
    assert [(f.content, f.style) for f in dm.files["test"]] == [("unlabelled", "cmu-131"), ("walking", "cmu")]
    assert dm.action_names == ["unlabelled", "walk", "walking", "wave-left-hand"]
    assert dm.subject_names == ["cmu", "cmu-131", "normal", "youthful"]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == set(dm.provides) and set(dm.provides) <= set(KEYS)
    assert batch["joints_3d"].shape == (4, 17, 3) and batch["joints_2d"].shape == (4, 17, 2)
    assert batch["K"].shape == (4, 3, 3) and batch["joints_3d"].dtype == torch.float32
    # camera frame: the figure is in front of the camera, 3.5 to 6.5 m away (CameraRig defaults)
    assert bool((batch["joints_3d"][..., 2] > 2500).all())
    train = dm.build("train").tensors
    assert len(train["frame"]) == 3 * 10  # 30 frames at 30 Hz -> 10 at 10 Hz, per clip
    assert train["frame"].tolist() == list(range(10)) * 3
    assert train["sequence"].tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert set(train["subject"].tolist()) == {3}  # style "normal" is subject_names[2]
    assert train["action"].tolist() == [1] * 10 + [3] * 20


def test_resampling_floor_and_world_numbers(mocap_root):
    dm = _module(mocap_root, floor=True)
    test = dm.load_clips("test")
    # 48 frames at 120 Hz -> frames 0, 12, 24, 36; 24 frames -> 0, 12 (131_01 sorts first)
    assert test.frame.tolist() == [0, 1, 0, 1, 2, 3] and test.sequence.tolist() == [0, 0, 1, 1, 1, 1]
    train = dm.load_clips("train")
    still = train.joints_world[:10]  # dataset-2_walk_normal_001: no wiggle, ankles 80 mm up -> floor at Z = 0
    np.testing.assert_allclose(still[:, J["Hip"]].numpy(), np.tile([0.0, 0.0, 800.0], (10, 1)), atol=1e-3)
    raw = _module(mocap_root, floor=False).load_clips("train").joints_world[:10]
    np.testing.assert_allclose(raw[:, J["Hip"], 2].numpy(), 880.0, atol=1e-3)


def test_resample_indices():
    assert resample_indices(10, 30.0, 10.0).tolist() == [0, 3, 6, 9]
    assert resample_indices(48, 120.0, 10.0).tolist() == [0, 12, 24, 36]
    assert resample_indices(7, 30.0, 25.0).tolist() == [0, 1, 2, 4, 5, 6]  # nearest frame of t = k / 25 s
    assert resample_indices(5, 30.0, None).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot resample a 30 Hz clip up to 60 Hz"):
        resample_indices(5, 30.0, 60.0)


def test_cache_hit_on_second_load(mocap_root, monkeypatch):
    first = _module(mocap_root)
    a = first.load_clips("train")
    assert first.load_stats["train"] == {"parsed": 3, "cached": 0}
    entries = sorted((mocap_root / "cache").rglob("*.npz"))
    assert len(entries) == 3 + 1  # one per file and one bundle for the train list
    assert not list((mocap_root / "cache").rglob("*.tmp"))  # atomic writes leave no temporaries

    def no_parsing(*args, **kwargs):
        raise AssertionError("a warm start must not parse BVH files")

    monkeypatch.setattr(mocap_module, "parse_bvh", no_parsing)
    second = _module(mocap_root)
    b = second.load_clips("train")
    assert second.load_stats["train"] == {"parsed": 0, "cached": 3}
    torch.testing.assert_close(a.joints_world, b.joints_world)
    monkeypatch.undo()

    # A changed file is parsed again (its content hash changed); the others come from their entries.
    changed = mocap_root / "bandai" / "dataset-2" / "data" / "dataset-2_walk_normal_001.bvh.gz"
    write_bvh(changed, make_bvh(BANDAI_SPEC, six_channels=True, wiggle_deg=30.0))
    third = _module(mocap_root)
    c = third.load_clips("train")
    assert third.load_stats["train"] == {"parsed": 1, "cached": 2}
    assert not torch.allclose(a.joints_world[:10], c.joints_world[:10])
    torch.testing.assert_close(a.joints_world[10:], c.joints_world[10:])


def test_parallel_parse_matches_serial(mocap_root):
    serial = _module(mocap_root, use_cache=False).load_clips("test")
    parallel = _module(mocap_root, use_cache=False, parse_workers=2).load_clips("test")
    torch.testing.assert_close(serial.joints_world, parallel.joints_world)
    assert not (mocap_root / "cache").exists()


def test_missing_or_empty_root_says_where_data_comes_from(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)does not exist.*Bandai.*mocap\.cs\.cmu\.edu.*roots"):
        MocapPoses(train={"roots": [str(tmp_path / "nowhere")]}, cache_dir=str(tmp_path / "c"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"(?s)holds no \.bvh or \.bvh\.gz files.*Bandai"):
        MocapPoses(train={"roots": [str(tmp_path / "empty")]}, cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="needs at least one of train / val / test"):
        MocapPoses()


def test_option_errors(mocap_root):
    bandai = str(mocap_root / "bandai")
    with pytest.raises(ValueError, match=r"both the train and the val split"):
        MocapPoses(train={"roots": [bandai]}, val={"roots": [bandai], "styles": ["youthful"]})
    with pytest.raises(ValueError, match=r"unknown keys \['style'\]"):
        MocapPoses(train={"roots": [bandai], "style": ["normal"]})
    with pytest.raises(ValueError, match="selects no file"):
        MocapPoses(train={"roots": [bandai], "contents": ["swim"]})
    with pytest.raises(ValueError, match="cannot resample"):
        _module(mocap_root, fps=200).load_clips("test")
    with pytest.raises(ValueError, match="unknown rig 'cmu2'"):
        _module(mocap_root, rig="cmu2")
    strange = mocap_root / "strange"
    strange.mkdir()
    write_bvh(
        strange / "odd.bvh", make_bvh([("Root", None, (0, 0, 0), (0, 0, 0)), ("Foo", "Root", (0, 1, 0), (0, 0, 0))])
    )
    with pytest.raises(ValueError, match=r"odd\.bvh: unknown skeleton"):
        MocapPoses(train={"roots": [str(strange)]}, use_cache=False, parse_workers=0).load_clips("train")


def test_file_and_pattern_filters(mocap_root):
    root = str(mocap_root / "bandai")
    by_glob = MocapPoses(train={"roots": [root], "files": ["dataset-2_walk_*"]}, use_cache=False)
    assert [f.stem for f in by_glob.files["train"]] == [
        "dataset-2_walk_normal_001", "dataset-2_walk_normal_002", "dataset-2_walk_youthful_001"]  # fmt: skip
    by_regex = MocapPoses(train={"roots": [root], "include": ["_00[2]$"], "exclude": ["youthful"]}, use_cache=False)
    assert [f.stem for f in by_regex.files["train"]] == ["dataset-2_walk_normal_002"]
    by_path = MocapPoses(train={"roots": [root], "files": ["dataset-2/data/*wave*"]}, use_cache=False)
    assert [f.stem for f in by_path.files["train"]] == ["dataset-2_wave-left-hand_normal_001"]
    per_file = MocapPoses(train={"roots": [root]}, subject_from="file", use_cache=False)
    assert per_file.subject_names == sorted(f.stem for f in per_file.files["train"])


def test_config_file_instantiates(mocap_root, tmp_path):
    from benchmark.config import load_datamodule

    cfg = yaml.safe_load((REPO / "configs" / "data" / "mocap_bandai_cmu.yaml").read_text())
    args = cfg["data"]["init_args"]
    assert args["train"]["roots"] == ["../shared/data/bandai"] and args["test"]["roots"] == ["../shared/data/cmu"]
    for split, folder in (("train", "bandai"), ("val", "bandai"), ("test", "cmu")):
        args[split]["roots"] = [str(mocap_root / folder)]
    args["cache_dir"] = str(tmp_path / "cache")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    dm = load_datamodule([path])
    assert isinstance(dm, MocapPoses) and dm.name == "bandai-cmu" and dm.fps == 10
    assert [f.style for f in dm.files["val"]] == ["youthful"]
    assert {f.style for f in dm.files["train"]} == {"normal"}
    assert len(dm.files["test"]) == 2


def test_data_stats_prints_counts_and_writes_contact_sheet(mocap_root, tmp_path):
    from datamodules.stats import data_stats

    out = tmp_path / "sheet.png"
    result = data_stats(_module(mocap_root), out, samples_per_split=1)
    assert out.is_file() and out.stat().st_size > 10_000
    rows = result["splits"]
    assert {s: (rows[s]["clips"], rows[s]["frames_native"], rows[s]["frames"]) for s in rows} == {
        "train": (3, 90, 30), "val": (1, 30, 10), "test": (2, 72, 6)}  # fmt: skip
    assert all(row["upright"] == 1.0 for row in rows.values())
    assert 1300 < rows["train"]["height_mm"] < 1500  # head top 1505 mm minus ankles at 80 mm


def test_read_back_written_fixture(mocap_root):
    bvh = read_bvh(mocap_root / "cmu" / "131_01.bvh.gz")
    assert bvh.fps == pytest.approx(120.0, rel=1e-5) and "LeftCollar" in bvh.names
