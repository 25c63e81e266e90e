"""Skeletons as objects: joint names, parents, root, left/right pairs and bones.

The canonical evaluation skeleton is the 17-joint Human3.6M order used by VideoPose3D and
EpipolarPose. Every other rig (MPI-INF-3DHP, SMPL, BVH rigs) maps onto it through a named table
of joint names (see ``Skeleton.index_map``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class Skeleton:
    """A kinematic tree.

    Attributes:
        name: short identifier, used in error messages and result records.
        joints: joint names in array order.
        parents: parent index of each joint, -1 for the root.
        left_right: pairs ``(left, right)`` of joint indices that mirror each other.
    """

    name: str
    joints: tuple[str, ...]
    parents: tuple[int, ...]
    left_right: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if len(self.joints) != len(self.parents):
            raise ValueError(f"skeleton {self.name!r}: {len(self.joints)} joints but {len(self.parents)} parents")
        roots = [i for i, p in enumerate(self.parents) if p < 0]
        if len(roots) != 1:
            raise ValueError(f"skeleton {self.name!r} must have exactly one root, found {roots}")
        for i, p in enumerate(self.parents):
            if p >= i and p >= 0:
                raise ValueError(f"skeleton {self.name!r}: parent of joint {i} ({p}) must come before it")

    def __len__(self) -> int:
        return len(self.joints)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    def index(self, name: str) -> int:
        try:
            return self.joints.index(name)
        except ValueError:
            raise KeyError(f"skeleton {self.name!r} has no joint {name!r}; joints are {list(self.joints)}") from None

    @cached_property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """``(parent, child)`` index pairs, one per non-root joint, in joint order."""
        return tuple((p, c) for c, p in enumerate(self.parents) if p >= 0)

    @cached_property
    def flip_permutation(self) -> tuple[int, ...]:
        """Joint order of the left/right mirrored skeleton."""
        perm = list(range(self.num_joints))
        for left, right in self.left_right:
            perm[left], perm[right] = right, left
        return tuple(perm)

    @cached_property
    def symmetric_bones(self) -> tuple[tuple[int, int], ...]:
        """Pairs of bone indices (into ``bones``) whose lengths should be equal (left vs right)."""
        child_to_bone = {c: b for b, (_, c) in enumerate(self.bones)}
        return tuple((child_to_bone[left], child_to_bone[right]) for left, right in self.left_right)

    def bone_vectors(self, joints: torch.Tensor) -> torch.Tensor:
        """(..., J, 3) joints -> (..., J-1, 3) child minus parent vectors."""
        parents, children = zip(*self.bones)
        return joints[..., list(children), :] - joints[..., list(parents), :]

    def bone_lengths(self, joints: torch.Tensor) -> torch.Tensor:
        """(..., J, D) joints -> (..., J-1) bone lengths in the joints' units."""
        return self.bone_vectors(joints).norm(dim=-1)

    def index_map(self, source_names: list[str] | tuple[str, ...], table: dict[str, str]) -> list[int]:
        """Indices into ``source_names`` that produce this skeleton's joints.

        ``table`` maps each of this skeleton's joint names to a source joint name; a missing entry
        or unknown source name raises an error naming it.
        """
        missing = [j for j in self.joints if j not in table]
        if missing:
            raise KeyError(f"mapping onto {self.name!r} lacks joints {missing}")
        out = []
        for joint in self.joints:
            src = table[joint]
            if src not in source_names:
                raise KeyError(
                    f"mapping onto {self.name!r}: source joint {src!r} (for {joint!r}) not in {list(source_names)}"
                )
            out.append(list(source_names).index(src))
        return out


H36M_JOINTS = (
    "Hip", "RHip", "RKnee", "RFoot", "LHip", "LKnee", "LFoot", "Spine", "Thorax", "Neck/Nose", "Head",
    "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist",
)  # fmt: skip

#: The canonical 17-joint Human3.6M skeleton (VideoPose3D / EpipolarPose order).
H36M_17 = Skeleton(
    name="h36m17",
    joints=H36M_JOINTS,
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    left_right=((4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16)),
)

#: The 14-joint subset used by many lifting papers on MPI-INF-3DHP (no pelvis, spine, neck/nose).
H36M_14_SUBSET = tuple(i for i, name in enumerate(H36M_JOINTS) if name not in ("Hip", "Spine", "Neck/Nose"))
