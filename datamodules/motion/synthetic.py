"""``SyntheticPoses``: the embedded default data for 2D-to-3D methods (procedural motion, virtual cameras)."""

from __future__ import annotations

import torch

from ..contract import register
from ..poses import PoseClips, PoseDataModule, split_generator
from .procedural import ACTIONS, generate_clips, subject_bone_lengths


@register
class SyntheticPoses(PoseDataModule):
    """Procedural human motion (``datamodules.motion.procedural``) seen by random H36M-like cameras.

    Subjects differ in bone lengths; actions are named (``walk``, ``run``, ...); clips of every
    (subject, action) are random performances. Train/val/test split by subject, like Human3.6M.
    Everything is deterministic given ``seed``.

    Args:
        train_subjects / val_subjects / test_subjects: subject ids (1-based) of each split.
        actions: action names to generate (default: all of ``datamodules.motion.procedural.ACTIONS``).
        clips_per_action: performances per (subject, action).
        frames_per_clip: frames per performance.
        fps: frame rate of the clips.
        motion_noise_deg: amplitude of the smooth random motion added to every joint angle.
        bone_variation: relative std of each subject's bone lengths around the height-scaled template.
        **kwargs: see :class:`datamodules.poses.PoseDataModule`.
    """

    def __init__(self, train_subjects: list[int] = (1, 2, 3, 4, 5), val_subjects: list[int] = (6,),
                 test_subjects: list[int] = (7, 8), actions: list[str] | None = None, clips_per_action: int = 4,
                 frames_per_clip: int = 250, fps: float = 25.0, motion_noise_deg: float = 6.0,
                 bone_variation: float = 0.05, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.subjects = {"train": tuple(train_subjects), "val": tuple(val_subjects), "test": tuple(test_subjects)}
        for split, ids in self.subjects.items():
            if any(s < 1 for s in ids):
                raise ValueError(f"SyntheticPoses {split}_subjects must be ids >= 1, got {list(ids)}")
        unknown = set(actions or ()) - ACTIONS.keys()
        if unknown:
            raise ValueError(f"SyntheticPoses actions {sorted(unknown)} are unknown; choose from {sorted(ACTIONS)}")
        self._actions = list(actions or ACTIONS)
        self.clips_per_action = clips_per_action
        self.frames_per_clip = frames_per_clip
        self.fps = fps
        self.motion_noise_deg = motion_noise_deg
        self.bone_variation = bone_variation

    @property
    def name(self) -> str:
        return "synthetic"

    @property
    def action_names(self) -> list[str]:
        return self._actions

    def bone_lengths(self, subjects: tuple[int, ...]) -> torch.Tensor:
        """(S, J) rest lengths in mm of the given subjects (drawn once for ids 1..max)."""
        all_lengths = subject_bone_lengths(max(max(v, default=1) for v in self.subjects.values()),
                                           split_generator(self.seed, "bones"), self.bone_variation)  # fmt: skip
        return all_lengths[[s - 1 for s in subjects]]

    def load_clips(self, split: str) -> PoseClips:
        subjects = self.subjects[split]
        lengths = self.bone_lengths(subjects)
        parts = []
        for s, subject in enumerate(subjects):
            for a, action in enumerate(self._actions):
                gen = split_generator(self.seed, "motion", subject, action)
                clip = generate_clips(ACTIONS[action], lengths[s].expand(self.clips_per_action, -1),
                                      self.frames_per_clip, self.fps, gen, self.motion_noise_deg)  # fmt: skip
                parts.append((clip, subject, a))
        joints = torch.cat([clip.flatten(0, 1) for clip, _, _ in parts])
        n_frames = self.frames_per_clip
        ids = lambda f: torch.cat([f(clip, subject, a) for clip, subject, a in parts])  # noqa: E731
        return PoseClips(
            joints_world=joints,
            subject=ids(lambda c, s, a: torch.full((c.shape[0] * n_frames,), s)),
            action=ids(lambda c, s, a: torch.full((c.shape[0] * n_frames,), a)),
            sequence=torch.arange(len(parts) * self.clips_per_action).repeat_interleave(n_frames),
            frame=torch.arange(n_frames).repeat(len(parts) * self.clips_per_action),
        )
