"""Motion-capture rigs mapped onto the canonical 17-joint skeleton (``H36M_17``), in mm, Z up.

A :class:`Rig` says how the points of one BVH skeleton become the 17 evaluation joints:

* ``table`` names, for every ``H36M_17`` joint, a source point: a BVH joint, an End Site
  (``"<joint>/End Site"``), or one of the two kinds of derived points below. It is resolved with
  :meth:`Skeleton.index_map`, so a missing name fails with the list of available ones.
* ``markers``: points rigidly attached to a joint at a fixed offset in that joint's local frame
  (file units). They follow the joint's rotation, e.g. a head top that nods with the head.
* ``blends``: affine combinations of points (weights sum to 1), e.g. the pelvis centre as the
  midpoint of the two hip joints, or a spine point part way between two spine joints.

Units are converted to millimetres and the file's Y-up axes to the suite's world frame (Z up,
right-handed): ``(x, y, z)_world = (x, -z, y)_bvh``, a +90 degree rotation about X.

Conventions shared by all rigs, so that one data set can be tested against another:

* **Hip** is the midpoint of the two hip joints (as in Human3.6M, where the pelvis joint sits
  between the hips), not the rig's root bone, which sits 2 to 10 cm higher depending on the rig.
* **Thorax** is the point of the neck chain about 1 to 3 cm above the line of the shoulder joints.
* **Spine** lies on the spine chain at about 48 % of the way from Hip to Thorax (the Human3.6M ratio).
* **Neck/Nose** is the base of the skull (about 10 cm above the thorax); no rig has a nose marker,
  so it carries no forward offset.
* **Head** is the top of the head (about 19 to 20 cm above the thorax).
* Feet are the ankles, wrists the wrist joints.

Each rig lists in ``approximations`` the joints that do not correspond to a marker of the rig.
The numbers quoted there were measured on the files in ``../shared/data`` (standing frames).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..skeleton import H36M_17, Skeleton
from .bvh import Bvh, forward_kinematics

#: BVH (Y up) to world (Z up): x stays, world y = -bvh z, world z = bvh y.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

#: One length unit of the CMU ASF/AMC data and of the cgspeed BVH conversions: 1/0.45 inch.
CMU_UNIT_MM = 25.4 / 0.45


class RigError(ValueError):
    """A BVH skeleton that a rig cannot map (unknown or missing joint names)."""


@dataclass(frozen=True)
class Rig:
    """How a BVH skeleton maps onto a target skeleton (default ``H36M_17``).

    Attributes:
        name: short identifier (used in cache keys and error messages).
        description: where the rig comes from.
        mm_per_unit: millimetres per file length unit.
        table: target joint name -> source point name (BVH joint, End Site, marker or blend).
        markers: derived point -> (BVH joint, offset in that joint's local frame, file units).
        blends: derived point -> {source point: weight}; weights sum to 1.
        feet: source points whose lowest one is taken as the floor contact (for the floor height).
        approximations: target joint -> how it is approximated, for every joint that is not a marker.
        up_to_world: (3, 3) rotation from file axes to the world frame (Z up).
        positions: how position channels combine with offsets (see ``datamodules.motion.bvh``).
        target: the skeleton produced.
    """

    name: str
    description: str
    mm_per_unit: float
    table: dict[str, str]
    markers: dict[str, tuple[str, tuple[float, float, float]]] = field(default_factory=dict)
    blends: dict[str, dict[str, float]] = field(default_factory=dict)
    feet: tuple[str, ...] = ()
    approximations: dict[str, str] = field(default_factory=dict)
    up_to_world: tuple[tuple[float, ...], ...] = tuple(map(tuple, Y_UP_TO_Z_UP))
    positions: str = "replace"
    target: Skeleton = H36M_17

    def __post_init__(self) -> None:
        for name, weights in self.blends.items():
            if abs(sum(weights.values()) - 1.0) > 1e-9:
                raise ValueError(f"rig {self.name!r}: weights of blend {name!r} must sum to 1, got {weights}")
        clash = set(self.markers) & set(self.blends)
        if clash:
            raise ValueError(f"rig {self.name!r}: {sorted(clash)} defined both as markers and as blends")
        missing = [j for j in self.target.joints if j not in self.table]
        if missing:
            raise ValueError(f"rig {self.name!r} does not map target joints {missing}")

    @property
    def source_joints(self) -> set[str]:
        """BVH point names this rig needs (markers and blends resolved to what they use)."""
        derived = set(self.markers) | set(self.blends)
        used = {n for n in self.table.values() if n not in derived}
        used |= {joint for joint, _ in self.markers.values()}
        used |= {n for w in self.blends.values() for n in w if n not in derived}
        return used | set(self.feet)

    def missing_joints(self, names: tuple[str, ...] | list[str]) -> list[str]:
        """Names this rig needs that a BVH skeleton with ``names`` lacks (empty: the rig fits)."""
        return sorted(self.source_joints - set(names))

    @cached_property
    def fingerprint(self) -> str:
        """Hash of everything that changes the converted numbers (part of cache keys)."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]

    def points(self, bvh: Bvh) -> tuple[np.ndarray, list[str]]:
        """(T, P, 3) positions in file units of every BVH point, then markers, then blends, and their names."""
        missing = self.missing_joints(bvh.names)
        if missing:
            raise RigError(f"{bvh.source}: rig {self.name!r} needs joints {missing}, which the file lacks; "
                           f"the file has {list(bvh.joint_names)}")  # fmt: skip
        pos, rot = forward_kinematics(bvh, self.positions)  # type: ignore[arg-type]
        names = list(bvh.names)
        extra = []
        for joint, offset in self.markers.values():
            j = names.index(joint)
            extra.append(pos[:, j] + rot[:, j] @ np.asarray(offset, dtype=np.float64))
        names += list(self.markers)
        pos = np.concatenate([pos, np.stack(extra, axis=1)], axis=1) if extra else pos
        for name, weights in self.blends.items():  # a blend may use earlier blends and markers
            idx = [names.index(n) for n in weights]
            blend = np.einsum("tpc,p->tc", pos[:, idx], np.fromiter(weights.values(), dtype=np.float64))
            pos = np.concatenate([pos, blend[:, None]], axis=1)
            names.append(name)
        return pos, names

    def to_world(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) file-unit points -> (..., 3) world mm, Z up."""
        return (points @ np.asarray(self.up_to_world).T) * self.mm_per_unit

    def convert(self, bvh: Bvh) -> tuple[np.ndarray, np.ndarray]:
        """Target joints (T, J, 3) in world mm (Z up) and the lowest foot point's height (T,) in mm."""
        pos, names = self.points(bvh)
        joints = self.to_world(pos[:, self.target.index_map(names, self.table)])
        feet = [names.index(n) for n in self.feet]
        lowest = self.to_world(pos[:, feet])[..., 2].min(axis=1) if feet else joints[..., 2].min(axis=1)
        return joints, lowest


_LIMB_PARTS = {
    "Hip": "hip",
    "Knee": "knee",
    "Foot": "ankle",
    "Shoulder": "shoulder",
    "Elbow": "elbow",
    "Wrist": "wrist",
}


def _limbs(names: dict[str, str], left: str, right: str) -> dict[str, str]:
    """Limb rows of a table (``LHip`` ... ``RWrist``) from per-part name patterns, e.g. ``{"hip": "UpperLeg_{s}"}``."""
    return {f"{side}{joint}": names[part].format(s=tag)
            for side, tag in (("L", left), ("R", right)) for joint, part in _LIMB_PARTS.items()}  # fmt: skip


#: Bandai Namco Research Motiondataset 1 and 2 (cm, Y up; every joint has 6 channels whose
#: position part equals the offset; the End Sites of Head and hands have zero offset).
BANDAI = Rig(
    name="bandai",
    description="Bandai Namco Research Motiondataset (BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset)",
    mm_per_unit=10.0,
    table={
        "Hip": "pelvis",
        "Spine": "mid_spine",
        "Thorax": "Neck",
        "Neck/Nose": "skull_base",
        "Head": "head_top",
        **_limbs(
            {
                "hip": "UpperLeg_{s}",
                "knee": "LowerLeg_{s}",
                "ankle": "Foot_{s}",
                "shoulder": "UpperArm_{s}",
                "elbow": "LowerArm_{s}",
                "wrist": "Hand_{s}",
            },
            "L",
            "R",
        ),
    },  # fmt: skip
    # Every Bandai bone lies along its parent's local +X, and the Head joint's +X is the head's up
    # axis (checked on 21 clips: within a median 3-24 degrees of the neck->head direction, and it
    # follows nodding), so points along Head's +X move with the head.
    markers={"skull_base": ("Head", (4.0, 0.0, 0.0)), "head_top": ("Head", (13.5, 0.0, 0.0))},
    blends={"pelvis": {"UpperLeg_L": 0.5, "UpperLeg_R": 0.5}, "mid_spine": {"Spine": 0.69, "Chest": 0.31}},
    feet=("Foot_L", "Foot_R", "Toes_L", "Toes_R"),
    approximations={
        "Hip": "midpoint of UpperLeg_L and UpperLeg_R (the Hips bone sits 2.2 cm above it)",
        "Spine": "0.69 Spine + 0.31 Chest: 48 % of the way from the pelvis (hip centre) to the Neck joint",
        "Thorax": "the Neck joint (base of the neck), 3 cm above the shoulder joints",
        "Neck/Nose": "4 cm along the Head joint's +X axis (the Head joint itself is only 6.5 cm above the "
        "Neck joint); the rig has no face marker",
        "Head": "13.5 cm along the Head joint's +X axis: the rig has no head-top marker (the Head End Site has "
        "zero offset), so the head top is extrapolated along the head's own up axis, placing it about "
        "20 cm above the thorax like the CMU rigs' measured head top",
    },  # fmt: skip
)

#: CMU clips converted from exponential maps (cgspeed MotionBuilder-friendly skeleton: 31 joints,
#: per-joint channel orders, Neck and shoulders at zero offset from Spine1; 1/0.45 inch units).
CMU = Rig(
    name="cmu",
    description="CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu), MotionBuilder-friendly BVH names",
    mm_per_unit=CMU_UNIT_MM,
    table={
        "Hip": "pelvis",
        "Spine": "mid_spine",
        "Thorax": "thorax",
        "Neck/Nose": "Head",
        "Head": "Head/End Site",
        **_limbs(
            {
                "hip": "{s}UpLeg",
                "knee": "{s}Leg",
                "ankle": "{s}Foot",
                "shoulder": "{s}Arm",
                "elbow": "{s}ForeArm",
                "wrist": "{s}Hand",
            },
            "Left",
            "Right",
        ),
    },  # fmt: skip
    blends={
        "pelvis": {"LeftUpLeg": 0.5, "RightUpLeg": 0.5},
        "thorax": {"Spine1": 0.15, "Neck1": 0.85},
        "mid_spine": {"LowerBack": 0.18, "Spine": 0.82},
    },
    feet=("LeftFoot", "RightFoot", "LeftToeBase", "RightToeBase", "LeftToeBase/End Site", "RightToeBase/End Site"),
    approximations={
        "Hip": "midpoint of LeftUpLeg and RightUpLeg (the Hips root sits 10 cm above and 3.5 cm behind it)",
        "Spine": "0.18 LowerBack + 0.82 Spine: 48 % of the way from the pelvis to the thorax",
        "Thorax": "0.15 Spine1 + 0.85 Neck1: Spine1 (= Neck, lower neck) lies 5 cm below the shoulder joints in "
        "this short-torso skeleton, so the thorax is placed 2.5 cm above the shoulders on the neck",
        "Neck/Nose": "the Head joint (base of the skull), 10 cm above the thorax",
    },  # fmt: skip
)

#: CMU subject files from the cgspeed "3dsMax-friendly" release (131_*.bvh.gz): other names,
#: collars at zero offset from Chest2, a lower and an upper neck bone, arms down in the rest pose.
CMU_3DSMAX = Rig(
    name="cmu-3dsmax",
    description="CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu), cgspeed 3dsMax-friendly BVH names",
    mm_per_unit=CMU_UNIT_MM,
    table={
        "Hip": "pelvis",
        "Spine": "Chest",
        "Thorax": "Neck",
        "Neck/Nose": "Head",
        "Head": "Head/End Site",
        **_limbs(
            {
                "hip": "{s}Hip",
                "knee": "{s}Knee",
                "ankle": "{s}Ankle",
                "shoulder": "{s}Shoulder",
                "elbow": "{s}Elbow",
                "wrist": "{s}Wrist",
            },
            "Left",
            "Right",
        ),
    },  # fmt: skip
    blends={"pelvis": {"LeftHip": 0.5, "RightHip": 0.5}},
    feet=("LeftAnkle", "RightAnkle", "LeftToe", "RightToe", "LeftToe/End Site", "RightToe/End Site"),
    approximations={
        "Hip": "midpoint of LeftHip and RightHip (the Hips root sits 9 cm above them)",
        "Spine": "the Chest joint: 46 % of the way from the pelvis to the thorax",
        "Thorax": "the Neck joint (start of the upper neck), level with the shoulder joints; lowerneck is 8 cm lower",
        "Neck/Nose": "the Head joint (base of the skull), 9 cm above the thorax",
    },  # fmt: skip
)

#: Known rigs, tried in this order when a file's rig is detected from its joint names.
RIGS: dict[str, Rig] = {rig.name: rig for rig in (BANDAI, CMU, CMU_3DSMAX)}


def detect_rig(names: tuple[str, ...] | list[str], source: str = "<bvh>") -> Rig:
    """The first known rig whose joints all occur in ``names``; an error lists what each rig lacks."""
    for rig in RIGS.values():
        if not rig.missing_joints(names):
            return rig
    lacks = "\n".join(f"  - {rig.name}: lacks {rig.missing_joints(names)}" for rig in RIGS.values())
    raise RigError(
        f"{source}: unknown skeleton; no known rig matches its joints {list(names)}.\n{lacks}\n"
        "Add a Rig for it in datamodules/motion/rigs.py (a table onto H36M_17 names) and list it in RIGS."
    )


def get_rig(name: str) -> Rig:
    try:
        return RIGS[name]
    except KeyError:
        raise RigError(f"unknown rig {name!r}; choose one of {sorted(RIGS)} or 'auto'") from None
