"""BVH reader and forward kinematics: hand-computed cases, both position-channel semantics, End Sites,
gzip, per-joint channel orders, and agreement with an independent reader (bvhio)."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

from datamodules.motion.bvh import (
    Bvh,
    BvhError,
    euler_to_matrix,
    format_bvh,
    forward_kinematics,
    parse_bvh,
    read_bvh,
    write_bvh,
)

# Root with 6 channels, a child with 3 rotation channels in another order, and an End Site.
CHAIN = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Knee
  {
    OFFSET 0 -10 0
    CHANNELS 3 Xrotation Yrotation Zrotation
    End Site
    {
      OFFSET 0 -5 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.0333333
1 2 3 0 0 0 0 0 0
1 2 3 90 0 0 0 0 0
0 0 0 0 0 0 90 0 0
"""


def test_hand_computed_forward_kinematics():
    bvh = parse_bvh(CHAIN)
    assert bvh.names == ("Hips", "Knee", "Knee/End Site")
    assert bvh.parents == (-1, 0, 1)
    assert bvh.num_frames == 3 and bvh.fps == pytest.approx(30.0, rel=1e-5)
    pos = bvh.positions()
    # frame 0: rest pose shifted by the root position
    np.testing.assert_allclose(pos[0], [[1, 2, 3], [1, -8, 3], [1, -13, 3]], atol=1e-12)
    # frame 1: root turned +90 deg about Z maps (0, -10, 0) to (10, 0, 0)
    np.testing.assert_allclose(pos[1], [[1, 2, 3], [11, 2, 3], [16, 2, 3]], atol=1e-12)
    # frame 2: knee bent +90 deg about X maps (0, -5, 0) to (0, 0, -5); the knee itself stays
    np.testing.assert_allclose(pos[2], [[0, 0, 0], [0, -10, 0], [0, -10, -5]], atol=1e-12)


def _two_axis(order: str) -> str:
    chans = " ".join(f"{a}rotation" for a in order)
    return f"""HIERARCHY
ROOT R
{{
  OFFSET 0 0 0
  CHANNELS 2 {chans}
  End Site
  {{
    OFFSET 1 0 0
  }}
}}
MOTION
Frames: 1
Frame Time: 0.01
90 90
"""


def test_channel_order_is_intrinsic_and_per_joint():
    # ZX: Rz(90) @ Rx(90) @ (1,0,0) = Rz(90) @ (1,0,0) = (0,1,0)
    np.testing.assert_allclose(parse_bvh(_two_axis("ZX")).positions()[0, 1], [0, 1, 0], atol=1e-12)
    # XZ: Rx(90) @ Rz(90) @ (1,0,0) = Rx(90) @ (0,1,0) = (0,0,1)
    np.testing.assert_allclose(parse_bvh(_two_axis("XZ")).positions()[0, 1], [0, 0, 1], atol=1e-12)


@pytest.mark.parametrize("order", ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"])
def test_euler_matches_scipy_intrinsic(order):
    from scipy.spatial.transform import Rotation

    angles = np.random.default_rng(0).uniform(-180, 180, size=(50, 3))
    expected = Rotation.from_euler(order.upper(), angles, degrees=True).as_matrix()  # upper case: intrinsic
    np.testing.assert_allclose(euler_to_matrix(angles, order), expected, atol=1e-12)


REPLACE = """HIERARCHY
ROOT Root
{
  OFFSET 100 200 300
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Child
  {
    OFFSET 10 0 0
    CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 0 0
    }
  }
}
MOTION
Frames: 1
Frame Time: 0.0333333
1 2 3 0 0 0 10 0 0 0 0 0
"""


def test_position_channels_replace_the_offset():
    """Bandai semantics: a child's position channels equal its offset and replace it (not add)."""
    pos = parse_bvh(REPLACE).positions("replace")[0]
    np.testing.assert_allclose(pos[0], [1, 2, 3])  # root: channels, not OFFSET 100 200 300
    np.testing.assert_allclose(pos[1], [11, 2, 3])  # child: root + 10, not root + 20
    np.testing.assert_allclose(pos[2], pos[1])  # zero-offset End Site (Bandai head and hands)


def test_position_channels_added_to_the_offset():
    pos = parse_bvh(REPLACE).positions("add")[0]
    np.testing.assert_allclose(pos[0], [101, 202, 303])
    np.testing.assert_allclose(pos[1], [121, 202, 303])
    with pytest.raises(ValueError, match="replace"):
        parse_bvh(REPLACE).positions("sum")


def test_end_site_follows_parent_rotation():
    text = CHAIN.replace("OFFSET 0 -5 0", "OFFSET 2 0 0")
    pos = parse_bvh(text).positions()
    # frame 1: Rz(90) maps the End Site offset (2, 0, 0) to (0, 2, 0) from the knee at (11, 2, 3)
    np.testing.assert_allclose(pos[1, 2], [11, 4, 3], atol=1e-12)


def test_gzip_and_plain_files_read_the_same(tmp_path):
    plain = tmp_path / "a.bvh"
    plain.write_text(CHAIN)
    packed = tmp_path / "a.bvh.gz"
    packed.write_bytes(gzip.compress(CHAIN.encode()))
    a, b = read_bvh(plain), read_bvh(packed)
    np.testing.assert_array_equal(a.motion, b.motion)
    assert a.names == b.names and a.frame_time == b.frame_time == pytest.approx(0.0333333)


def _random_bvh(frames: int = 40, seed: int = 0) -> Bvh:
    """Six points, mixed channel orders, a translating root; random angles up to +-180 deg."""
    rng = np.random.default_rng(seed)
    channels = (
        ("Xposition", "Yposition", "Zposition", "Yrotation", "Zrotation", "Xrotation"),
        ("Zrotation", "Xrotation", "Yrotation"),
        ("Xrotation", "Yrotation", "Zrotation"),
        (),
        ("Zrotation", "Yrotation", "Xrotation"),
        (),
    )
    names = ("Hips", "Spine", "Neck", "Neck/End Site", "LeftUpLeg", "LeftUpLeg/End Site")
    parents = (-1, 0, 1, 2, 0, 4)
    offsets = np.array([[0, 0, 0], [0.5, 10, -1], [0, 8, 0.3], [0, 4, 0], [3, -2, 0.5], [0, -9, 1]], dtype=float)
    motion = rng.uniform(-180, 180, size=(frames, 15))
    motion[:, :3] = rng.normal(0, 50, size=(frames, 3))
    return Bvh(names, parents, offsets, channels, motion, 1 / 120)


def test_bone_lengths_constant_over_time():
    bvh = _random_bvh()
    pos = bvh.positions()
    for j, p in enumerate(bvh.parents):
        if p >= 0:
            lengths = np.linalg.norm(pos[:, j] - pos[:, p], axis=-1)
            np.testing.assert_allclose(lengths, np.linalg.norm(bvh.offsets[j]), rtol=1e-12)


def test_global_rotations_are_orthonormal():
    _, rot = forward_kinematics(_random_bvh())
    np.testing.assert_allclose(rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)


def test_write_read_round_trip(tmp_path):
    bvh = _random_bvh(frames=5)
    back = read_bvh(write_bvh(tmp_path / "r.bvh.gz", bvh))
    assert back.names == bvh.names and back.channels == bvh.channels and back.parents == bvh.parents
    np.testing.assert_allclose(back.motion, bvh.motion, atol=5e-7)
    np.testing.assert_allclose(back.positions(), bvh.positions(), atol=1e-4)


def test_matches_independent_reader_bvhio(tmp_path):
    bvhio = pytest.importorskip("bvhio")
    bvh = _random_bvh(frames=12)
    path = tmp_path / "random.bvh"
    path.write_text(format_bvh(bvh, precision=6))
    ours = read_bvh(path).positions()
    root = bvhio.readAsHierarchy(str(path))
    for frame in range(bvh.num_frames):
        root.loadPose(frame, recursive=True)
        for joint, _, _ in root.layout():
            ref = np.array(joint.PositionWorld, dtype=np.float64)
            np.testing.assert_allclose(ours[frame, bvh.index(joint.Name)], ref, atol=2e-5 * (1 + np.abs(ref).max()))


def test_channel_accessor_and_errors():
    bvh = parse_bvh(CHAIN)
    np.testing.assert_array_equal(bvh.channel("Hips", "Zrotation"), [0, 90, 0])
    with pytest.raises(KeyError, match="Knee"):
        bvh.channel("Knee", "Xposition")
    with pytest.raises(KeyError, match="no joint 'Elbow'"):
        bvh.index("Elbow")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CHAIN.replace("MOTION", "MOTON"), "no MOTION"),
        (CHAIN.replace("Frames: 3", "Frames: 4"), r"expected 4 frames x 9 channels"),
        (CHAIN.replace("0 0 0 0 0 0 90 0 0\n", "0 0 0 0 0 0 90 0\n"), "malformed motion|expected 3 frames"),
        (CHAIN.replace("Xrotation Yrotation Zrotation", "Xrotation Yrotation Wrotation"), "bad CHANNELS"),
        (CHAIN.replace("OFFSET 0 -10 0", "OFFSET 0 -10"), "OFFSET needs 3 numbers"),
        (CHAIN.replace("Frame Time: 0.0333333", "Frame Time: 0"), "Frame Time must be positive"),
        (CHAIN.replace("  }\n}\nMOTION", "  }\nMOTION"), "unclosed"),
    ],
)
def test_malformed_files_name_the_problem(text, message):
    with pytest.raises(BvhError, match=message):
        parse_bvh(text, source="bad.bvh")


def test_corrupt_gzip_names_the_file(tmp_path):
    path = tmp_path / "broken.bvh.gz"
    path.write_bytes(gzip.compress(CHAIN.encode())[:30])
    with pytest.raises(BvhError, match="broken.bvh.gz"):
        read_bvh(path)
    with pytest.raises(FileNotFoundError, match="missing.bvh"):
        read_bvh(tmp_path / "missing.bvh")


def test_rotation_about_up_axis_keeps_heights():
    bvh = parse_bvh(CHAIN.replace("1 2 3 90 0 0 0 0 0", f"1 2 3 0 0 {math.degrees(1.0)} 0 0 0"))
    pos = bvh.positions()
    np.testing.assert_allclose(pos[1, :, 1], pos[0, :, 1], atol=1e-12)  # Y rotation: heights unchanged
