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
"""

from __future__ import annotations

import torch

from ..contract import register
from .humans import HumanRenders, SyntheticHumans


class PairsWithBackground(HumanRenders):
    """``pair`` samples plus the temporal median of ``frames`` frames of their video (module docstring)."""

    def __init__(self, *args, frames: int = 5, **kwargs):
        super().__init__(*args, **kwargs)
        if self.mode != "pair":
            raise ValueError(f"PairsWithBackground renders pair samples, got mode {self.mode!r}")
        self.frames = frames

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

    def render(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().render(index)
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
        **kwargs: see :class:`SyntheticHumans`.
    """

    provides = (*SyntheticHumans.provides, "background")

    def __init__(self, background_frames: int = 5, **kwargs):
        super().__init__(**kwargs)
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
            cache_dir=plain.cache_dir and plain.cache_dir.with_name(plain.cache_dir.name + f"-bg{self.background_frames}"),
            frames=self.background_frames,
        )  # fmt: skip
        return self.datasets[split, mode]
