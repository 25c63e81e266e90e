"""Data modules for tests: one lacks the 2D joints (methods must fail early), one tests fewer actions than it trains."""

from datamodules.motion.synthetic import SyntheticPoses


class PosesWithout2D(SyntheticPoses):
    provides = tuple(k for k in SyntheticPoses.provides if k not in ("joints_2d", "joints_2d_gt"))


class FewerTestActions(SyntheticPoses):
    """The test split holds the first action only (like a test set recorded with other actions than training)."""

    def load_clips(self, split: str):
        from datamodules.poses import PoseClips

        clips = super().load_clips(split)
        if split != "test":
            return clips
        keep = clips.action == 0
        return PoseClips(*(x[keep] for x in (clips.joints_world, clips.subject, clips.action, clips.sequence,
                                              clips.frame)))  # fmt: skip
