"""A BVH reader and vectorised forward kinematics.

BVH ("Biovision Hierarchy") stores a skeleton (``HIERARCHY``: joints, their ``OFFSET`` from the
parent and their ``CHANNELS``) and a motion table (``MOTION``: one row of channel values per frame).
This module reads ``.bvh`` and gzip-compressed ``.bvh.gz`` files and computes global joint
positions for all frames at once.

Conventions, which follow the BVH definition used by MotionBuilder, Blender and the CMU and
Bandai Namco releases:

* Rotation channels are Euler angles in degrees about the joint's *local* axes, composed in the
  order they are listed (intrinsic order): ``CHANNELS 3 Zrotation Xrotation Yrotation`` means
  ``R_local = Rz @ Rx @ Ry`` acting on column vectors. Every joint may list its own order.
* ``G_child = G_parent @ R_local`` and ``P_child = P_parent + G_parent @ t_local``.
* ``t_local`` is the joint's ``OFFSET``, except where the joint has position channels: those
  *replace* the offset on their axes (``positions="replace"``, the common semantics and the one of
  the Bandai Namco files, whose children carry constant position channels equal to their offset,
  and of most roots). A few exporters store displacements *added* to the offset instead; pass
  ``positions="add"`` for them.
* ``End Site`` blocks become extra points named ``"<parent>/End Site"``, with no channels.

Lengths stay in the file's units (the reader does not know them); see ``datamodules.motion.rigs``.
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

_ROTATION = {"Xrotation": "X", "Yrotation": "Y", "Zrotation": "Z"}
_POSITION = {"Xposition": 0, "Yposition": 1, "Zposition": 2}
_AXIS = {"X": 0, "Y": 1, "Z": 2}
END_SITE = "End Site"


class BvhError(ValueError):
    """A malformed BVH file; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Bvh:
    """One BVH file: skeleton and motion table.

    Attributes:
        names: point names in file order; End Sites are named ``"<parent>/End Site"``.
        parents: parent index of each point, -1 for the root (parents come before children).
        offsets: (J, 3) rest offsets from the parent, file units.
        channels: per point, its channel names in file order (empty for End Sites).
        motion: (T, C) channel values, one row per frame (degrees and file units).
        frame_time: seconds per frame.
        source: file name, for error messages.
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    motion: np.ndarray
    frame_time: float
    source: str = "<string>"

    def __post_init__(self) -> None:
        J = len(self.names)
        if not (len(self.parents) == len(self.channels) == J and np.shape(self.offsets) == (J, 3)):
            raise BvhError(f"{self.source}: names, parents, channels and offsets (J, 3) must agree on J = {J}")
        if len(set(self.names)) != J:
            raise BvhError(f"{self.source}: joint names must be unique, got {list(self.names)}")
        if any(p >= j or (p < 0 and j > 0) for j, p in enumerate(self.parents)) or (J and self.parents[0] != -1):
            raise BvhError(f"{self.source}: the root must come first and every parent before its children")
        width = sum(len(c) for c in self.channels)
        if self.motion.ndim != 2 or self.motion.shape[1] != width:
            raise BvhError(f"{self.source}: motion must be (frames, {width} channels), got {self.motion.shape}")
        if self.frame_time <= 0:
            raise BvhError(f"{self.source}: Frame Time must be positive, got {self.frame_time}")

    @cached_property
    def channel_start(self) -> tuple[int, ...]:
        """Per point, the column of its first channel in ``motion``."""
        return tuple(int(s) for s in np.cumsum([0] + [len(c) for c in self.channels])[:-1])

    @property
    def num_frames(self) -> int:
        return self.motion.shape[0]

    @property
    def num_points(self) -> int:
        return len(self.names)

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Names of the real joints (End Sites left out)."""
        return tuple(n for n in self.names if not n.endswith("/" + END_SITE))

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{self.source}: no joint {name!r}; joints are {list(self.names)}") from None

    def channel(self, joint: str, channel: str) -> np.ndarray:
        """(T,) values of one channel of one joint, e.g. ``channel("Hips", "Yposition")``."""
        j = self.index(joint)
        if channel not in self.channels[j]:
            raise KeyError(f"{self.source}: joint {joint!r} has channels {list(self.channels[j])}, not {channel!r}")
        return self.motion[:, self.channel_start[j] + self.channels[j].index(channel)]

    def positions(self, positions: Literal["replace", "add"] = "replace") -> np.ndarray:
        """(T, J, 3) global positions of all points (End Sites included), file units."""
        return forward_kinematics(self, positions)[0]


def read_bvh(path: str | Path) -> Bvh:
    """Read a ``.bvh`` or ``.bvh.gz`` file (gzip is recognised by its magic bytes, not the suffix)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"BVH file {path} does not exist") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise BvhError(f"{path}: corrupt gzip data ({err}); re-download or re-compress the file") from None
    return parse_bvh(data, source=str(path))


def parse_bvh(data: bytes | str, source: str = "<string>") -> Bvh:
    """Parse the text of a BVH file (``bytes`` or ``str``)."""
    if isinstance(data, str):
        data = data.encode()
    match = re.search(rb"^\s*MOTION\s*$", data, flags=re.MULTILINE)
    if not match:
        raise BvhError(f"{source}: no MOTION section; is this a BVH file?")
    names, parents, offsets, channels = _parse_hierarchy(data[: match.start()].decode("utf-8", "replace"), source)
    num_channels = sum(len(c) for c in channels)

    # The three header lines of MOTION, then the table (parsed in C by numpy's text reader).
    rest = data[match.end() :]
    header = {}
    for key in (b"Frames", b"Frame Time"):
        m = re.search(rb"^\s*" + key + rb"\s*:\s*(\S+)[ \t]*\r?$", rest, flags=re.MULTILINE)
        if not m:
            raise BvhError(f"{source}: MOTION section lacks the '{key.decode()}:' line")
        header[key] = m
    try:
        num_frames = int(header[b"Frames"].group(1))
        frame_time = float(header[b"Frame Time"].group(1))
    except ValueError:
        raise BvhError(f"{source}: cannot read 'Frames:' / 'Frame Time:' values") from None
    table = rest[max(header[b"Frames"].end(), header[b"Frame Time"].end()) :]
    if num_frames == 0:
        motion = np.zeros((0, num_channels))
    else:
        try:
            motion = np.loadtxt(io.BytesIO(table), dtype=np.float64, ndmin=2)
        except ValueError as err:
            raise BvhError(f"{source}: malformed motion data ({err})") from None
    if motion.shape != (num_frames, num_channels):
        raise BvhError(f"{source}: expected {num_frames} frames x {num_channels} channels (from Frames: and the "
                       f"CHANNELS lines), found a table of shape {motion.shape}")  # fmt: skip
    return Bvh(
        names=tuple(names),
        parents=tuple(parents),
        offsets=np.asarray(offsets, dtype=np.float64).reshape(-1, 3),
        channels=tuple(channels),
        motion=motion,
        frame_time=frame_time,
        source=source,
    )


def format_bvh(bvh: Bvh, precision: int = 6) -> str:
    """The text of a BVH file holding ``bvh`` (inverse of :func:`parse_bvh` up to number formatting)."""
    children: list[list[int]] = [[] for _ in bvh.names]
    for j, p in enumerate(bvh.parents):
        if p >= 0:
            children[p].append(j)
    num = lambda v: f"{v:.{precision}f}"  # noqa: E731
    lines = ["HIERARCHY"]

    def block(j: int, depth: int) -> None:
        pad = "\t" * depth
        if bvh.names[j].endswith("/" + END_SITE):
            lines.append(f"{pad}End Site")
        else:
            lines.append(f"{pad}{'ROOT' if bvh.parents[j] < 0 else 'JOINT'} {bvh.names[j]}")
        lines.append(pad + "{")
        lines.append(f"{pad}\tOFFSET {' '.join(num(v) for v in bvh.offsets[j])}")
        if bvh.channels[j]:
            lines.append(f"{pad}\tCHANNELS {len(bvh.channels[j])} {' '.join(bvh.channels[j])}")
        for c in children[j]:
            block(c, depth + 1)
        lines.append(pad + "}")

    block(0, 0)
    lines += ["MOTION", f"Frames: {bvh.num_frames}", f"Frame Time: {bvh.frame_time:.7f}"]
    table = io.StringIO()
    np.savetxt(table, bvh.motion, fmt=f"%.{precision}f", delimiter=" ")
    return "\n".join(lines) + "\n" + table.getvalue()


def write_bvh(path: str | Path, bvh: Bvh, precision: int = 6) -> Path:
    """Write ``bvh`` to ``path``; a ``.gz`` suffix writes gzip-compressed text."""
    path = Path(path)
    data = format_bvh(bvh, precision).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _parse_hierarchy(text: str, source: str) -> tuple[list[str], list[int], list[list[float]], list[tuple[str, ...]]]:
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    stack: list[int] = []  # open blocks, as point indices
    pending: int | None = None  # declared point whose "{" has not come yet
    lines = text.splitlines()
    if not lines or lines[0].strip() != "HIERARCHY":
        raise BvhError(f"{source}: the file must start with HIERARCHY")
    for lineno, line in enumerate(lines[1:], start=2):
        tokens = line.split()
        if not tokens:
            continue
        key = tokens[0]
        where = f"{source}, line {lineno}"
        if key in ("ROOT", "JOINT") or (key == "End" and tokens[1:2] == ["Site"]):
            if key == "ROOT" and names:
                raise BvhError(f"{where}: a second ROOT; only one skeleton per file is supported")
            if key != "ROOT" and not stack:
                raise BvhError(f"{where}: {key} outside of any joint block")
            parent = stack[-1] if stack else -1
            if key == "End":
                name = f"{names[parent]}/{END_SITE}"
            else:
                name = " ".join(tokens[1:])
                if not name:
                    raise BvhError(f"{where}: {key} without a name")
            if name in names:
                raise BvhError(f"{where}: joint name {name!r} occurs twice")
            names.append(name)
            parents.append(parent)
            offsets.append([0.0, 0.0, 0.0])
            channels.append(())
            pending = len(names) - 1
        elif key == "{":
            if pending is None:
                raise BvhError(f"{where}: '{{' without a ROOT/JOINT/End Site before it")
            stack.append(pending)
            pending = None
        elif key == "}":
            if not stack:
                raise BvhError(f"{where}: unbalanced '}}'")
            stack.pop()
        elif key == "OFFSET":
            if not stack or len(tokens) != 4:
                raise BvhError(f"{where}: OFFSET needs 3 numbers inside a joint block")
            try:
                offsets[stack[-1]] = [float(v) for v in tokens[1:]]
            except ValueError:
                raise BvhError(f"{where}: OFFSET values {tokens[1:]} are not numbers") from None
        elif key == "CHANNELS":
            if not stack:
                raise BvhError(f"{where}: CHANNELS outside a joint block")
            j = stack[-1]
            if names[j].endswith("/" + END_SITE):
                raise BvhError(f"{where}: an End Site cannot have CHANNELS")
            try:
                n = int(tokens[1])
            except (IndexError, ValueError):
                raise BvhError(f"{where}: CHANNELS must be followed by a count") from None
            chans = tuple(tokens[2:])
            unknown = [c for c in chans if c not in _ROTATION and c not in _POSITION]
            if len(chans) != n or unknown or len(set(chans)) != n:
                raise BvhError(f"{where}: bad CHANNELS line {line.strip()!r}; expected {n} distinct names among "
                               f"{sorted(_POSITION) + sorted(_ROTATION)}")  # fmt: skip
            channels[j] = chans
        else:
            raise BvhError(f"{where}: unexpected {key!r} in HIERARCHY")
    if stack or pending is not None:
        raise BvhError(f"{source}: HIERARCHY ends with unclosed blocks")
    if not names:
        raise BvhError(f"{source}: HIERARCHY declares no ROOT")
    return names, parents, offsets, channels


# -- rotations ------------------------------------------------------------------------------------


def euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """(..., K) Euler angles in degrees about local axes ``order`` (e.g. ``"ZXY"``, K = len(order)) -> (..., 3, 3).

    Intrinsic composition: ``R = R_order[0] @ R_order[1] @ ...`` (the BVH convention). The axis
    rotations are multiplied as unit quaternions (element-wise arithmetic, much faster than
    stacked 3x3 matrix products), then converted once.
    """
    angles = np.radians(np.asarray(angles_deg, dtype=np.float64))
    if angles.shape[-1] != len(order) or not set(order) <= set(_AXIS):
        raise ValueError(f"order {order!r} must name one axis (X/Y/Z) per angle, got {angles.shape[-1]} angles")
    half = 0.5 * angles
    c, s = np.cos(half), np.sin(half)
    q = None
    for k, axis in enumerate(order):
        qk = [c[..., k], np.zeros_like(c[..., k]), np.zeros_like(c[..., k]), np.zeros_like(c[..., k])]
        qk[1 + _AXIS[axis]] = s[..., k]
        q = qk if q is None else _quat_mul(q, qk)
    return _quat_to_matrix(*q)


def _quat_mul(a, b):
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return [
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ]


def _quat_to_matrix(w, x, y, z) -> np.ndarray:
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    rows = (
        (1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)),
        (2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)),
        (2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)),
    )
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


# -- forward kinematics ---------------------------------------------------------------------------


def local_transforms(bvh: Bvh, positions: Literal["replace", "add"] = "replace") -> tuple[np.ndarray, np.ndarray]:
    """Per-frame local rotations (T, J, 3, 3) and translations (T, J, 3, file units) of every point.

    Joints that share a rotation order are converted in one call, so the cost does not grow with
    the number of Python-level joints beyond a handful of groups.
    """
    if positions not in ("replace", "add"):
        raise ValueError(f"positions must be 'replace' or 'add', got {positions!r}")
    T, J = bvh.num_frames, bvh.num_points
    rotations = np.broadcast_to(np.eye(3), (T, J, 3, 3)).copy()
    translations = np.broadcast_to(bvh.offsets, (T, J, 3)).copy()
    groups: dict[str, tuple[list[int], list[list[int]]]] = {}
    for j, chans in enumerate(bvh.channels):
        start = bvh.channel_start[j]
        rot = [(c, start + k) for k, c in enumerate(chans) if c in _ROTATION]
        if rot:
            order = "".join(_ROTATION[c] for c, _ in rot)
            joints, cols = groups.setdefault(order, ([], []))
            joints.append(j)
            cols.append([col for _, col in rot])
        for k, c in enumerate(chans):
            if c in _POSITION:
                value = bvh.motion[:, start + k]
                axis = _POSITION[c]
                translations[:, j, axis] = value if positions == "replace" else bvh.offsets[j, axis] + value
    for order, (joints, cols) in groups.items():
        rotations[:, joints] = euler_to_matrix(bvh.motion[:, cols], order)  # (T, n, K) -> (T, n, 3, 3)
    return rotations, translations


def forward_kinematics(bvh: Bvh, positions: Literal["replace", "add"] = "replace") -> tuple[np.ndarray, np.ndarray]:
    """Global positions (T, J, 3) in file units and global rotations (T, J, 3, 3) of every point.

    Vectorised over frames; the only Python loop is over the points of the hierarchy (parents
    always come before their children). End Sites get their parent's rotation.
    """
    local_r, local_t = local_transforms(bvh, positions)
    glob_r = np.empty_like(local_r)
    glob_p = np.empty_like(local_t)
    for j, p in enumerate(bvh.parents):
        if p < 0:
            glob_r[:, j] = local_r[:, j]
            glob_p[:, j] = local_t[:, j]
        else:
            glob_p[:, j] = glob_p[:, p] + np.einsum("tab,tb->ta", glob_r[:, p], local_t[:, j])
            glob_r[:, j] = glob_r[:, p] @ local_r[:, j]
    return glob_p, glob_r
