"""A data module for tests that lacks the 2D joints (to check that methods fail early)."""

from datamodules.motion.synthetic import SyntheticPoses


class PosesWithout2D(SyntheticPoses):
    provides = tuple(k for k in SyntheticPoses.provides if k not in ("joints_2d", "joints_2d_gt"))
