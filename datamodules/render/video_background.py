"""``SyntheticHumanPairs``: ``SyntheticHumans`` frame pairs with a background estimate of their video.

Methods that learn from frame pairs of a static camera (Kundu et al. 2020; Rhodin et al. 2018) take the
background of a video from the video itself — the per-pixel temporal median of its frames, as done on
Human3.6M — never from a ground-truth mask. In ``pair`` mode every training sample here also renders
``background_frames - 2`` more frames of the same video with the same camera and the same crop (the
crop covers the silhouettes of all of them), spread evenly over the window ``pair_max_gap`` frames
around the pair's first frame, and returns their per-pixel median with the pair as ``background``
(B, 3, H, W). The pair's keys are those of ``SyntheticHumans`` ``pair`` mode (``(B, 2, ...)``).

Where the person stays put over the window the median still shows them: the estimate is as imperfect
as a real one. Evaluation splits (``eval_mode``) are untouched, so the common table is the same.

``background_source: plate`` returns instead the empty room seen by the pair's camera and crop (the
renderer's own background, without the person and their contact shadow): the estimate a long video of a
person who walks about would give (Human3.6M's subjects cross the room; the median of [Rhodin et al.
2018] is taken over whole sequences). The synthetic videos are 50 frames and mostly in place (the median
video's pelvis does not travel at all), so their median keeps the torso (the median's foreground kept
about half of the person, IoU 0.48). The plate is privileged next to a real estimate: ``|I - plate|``
is the silhouette up to the shadow and pixels of the background's colour; methods that take it say so.
"""

from __future__ import annotations

import torch

from ..contract import register
from .humans import HumanRenders, SyntheticHumans, video_cameras
from .scenes import background

BACKGROUND_SOURCES = ("median", "plate")


class PairsWithBackground(HumanRenders):
    """``pair`` samples plus the temporal median of ``frames`` frames of their video, or the empty room
    (``source="plate"``; module docstring)."""

    def __init__(self, *args, frames: int = 5, source: str = "median", **kwargs):
        super().__init__(*args, **kwargs)
        if self.mode != "pair":
            raise ValueError(f"PairsWithBackground renders pair samples, got mode {self.mode!r}")
        self.frames = frames if source == "median" else 2
        self.source = source

    def layout(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, cams = super().layout(index)  # (B, 2)
        extra = self.frames - 2
        if extra <= 0:
            return rows, cams
        t = self.table
        anchor = rows[:, 0]
        vid = t.video[anchor]
        start, length = t.video_start[vid], t.video_len[vid]
        pos = anchor - start
        gap = length - 1 if self.pair_max_gap is None else torch.clamp(length - 1, max=self.pair_max_gap)
        lo, hi = (pos - gap).clamp(min=0), torch.minimum(pos + gap, length - 1)
        frac = torch.linspace(0, 1, extra) if extra > 1 else torch.tensor([0.5])  # both ends of the window included
        more = start.unsqueeze(-1) + torch.round(lo.unsqueeze(-1) + frac * (hi - lo).unsqueeze(-1)).long()
        return torch.cat([rows, more], dim=-1), cams[:, :1].expand(-1, 2 + extra)

    def plate(self, index: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) the room without the person, as the renderer draws it behind samples ``index`` seen
        through their crop intrinsics ``K`` (B, 3, 3); 8-bit like the frames."""
        rows, cams = self.layout(index)
        rows, cams = rows[:, 0], cams[:, 0]
        full, reach = video_cameras(self.table, self.scenes, rows, cams, self.cfg)
        vid = self.table.video[rows]
        rgb, _, _ = background(self.scenes, self.table.video_scene[vid], K, full["R"], full["eye"], self.cfg.width,
                               self.cfg.height, self.table.video_xy[vid], self.table.video_floor[vid],
                               1.3 * reach + 1500.0, with_points=False)  # fmt: skip  # the room render_views draws
        return torch.round(rgb.clamp(0, 1) * 255) / 255

    def render(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().render(index)
        if self.source == "plate":
            out["background"] = self.plate(index, out["K"][:, 0])
            return out
        slots = out["image"].shape[1]
        background = out["image"].median(dim=1).values
        for key, value in out.items():
            if torch.is_tensor(value) and value.dim() >= 2 and value.shape[1] == slots and key != "camera":
                out[key] = value[:, :2].contiguous()
        out["background"] = background
        return out


@register
class SyntheticHumanPairs(SyntheticHumans):
    """:class:`~datamodules.render.humans.SyntheticHumans` whose ``pair`` training samples carry ``background``,
    the temporal median of ``background_frames`` frames of their video (module docstring). Same name and
    evaluation splits as ``SyntheticHumans``, so results land on the same table.

    Args:
        background_frames: frames in the median, the pair included (>= 3 for a median that is not a mean).
        background_source: ``median`` (the temporal median above) or ``plate`` (the empty room: privileged,
            module docstring).
        **kwargs: see :class:`SyntheticHumans`.
    """

    provides = (*SyntheticHumans.provides, "background")

    def __init__(self, background_frames: int = 5, background_source: str = "median", **kwargs):
        super().__init__(**kwargs)
        if background_source not in BACKGROUND_SOURCES:
            raise ValueError(f"SyntheticHumanPairs option background_source must be one of {BACKGROUND_SOURCES}, "
                             f"got {background_source!r}")  # fmt: skip
        self.background_source = background_source
        if background_frames < 2:
            raise ValueError(f"SyntheticHumanPairs option background_frames must be >= 2, got {background_frames}")
        if self.mode != "pair":
            raise ValueError(f"SyntheticHumanPairs trains on frame pairs: set mode: pair (got {self.mode!r})")
        self.background_frames = background_frames
        if "image" not in self.maps:
            raise ValueError("SyntheticHumanPairs needs 'image' in its maps option (the background is a median of "
                             f"images), got maps {list(self.maps)}")  # fmt: skip

    def dataset(self, split: str, mode: str | None = None) -> HumanRenders:
        mode = mode or (self.mode if split == "train" else self.eval_mode)
        if mode != "pair" or (split, mode) in self.datasets:
            return super().dataset(split, mode)
        plain = super().dataset(split, mode)
        self.datasets[split, mode] = PairsWithBackground(
            plain.table, plain.scenes, mode, plain.anchors, plain.cfg, split, pair_max_gap=self.pair_max_gap,
            cache_dir=plain.cache_dir and plain.cache_dir.with_name(plain.cache_dir.name + f"-bg{self.tag}"),
            frames=self.background_frames, source=self.background_source,
        )  # fmt: skip
        return self.datasets[split, mode]

    @property
    def tag(self) -> str:
        return "plate" if self.background_source == "plate" else str(self.background_frames)
