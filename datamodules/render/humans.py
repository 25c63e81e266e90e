"""``SyntheticHumans``: rendered people in rooms, seen by calibrated cameras, with every ground truth.

The embedded default for image-based methods. Motion comes from any :class:`~datamodules.poses.PoseDataModule`
(``SyntheticPoses`` by default, ``MocapPoses`` for real motion capture); bodies from
``datamodules.render.bodies`` (ellipsoids sized from each subject's bone lengths, clothed per subject);
rooms and camera rigs from ``datamodules.render.scenes``; pixels from the analytic ray caster of
``datamodules.render.raycast``. Nothing is stored: every sample is rendered on the fly in the DataLoader
workers, as a pure function of ``seed`` and its index (optionally cached on disk).

Videos. Each motion sequence is cut into videos of ``video_frames`` frames (the last one takes the
remainder). A video is filmed in one scene by the scene's rig of ``views`` cameras (H36M-like:
around the room, 4-5.5 m away), placed around the person's mean position in that video and pulled
back when the person travels far. With ``camera_motion="orbit"`` the cameras instead follow the
person and circle around them (``orbit_deg_per_frame``), so the background moves.

Images. Like the usual Human3.6M crops, each image is a square (or ``image_size``-shaped) crop of
the full 1000 x 1000 camera frame around the person's silhouette (``crop_margin``, random
``crop_jitter`` in training), expressed as the crop's own intrinsics ``K``. Frames of one temporal
sample share one crop, so a static camera gives a static background.

Sampling modes (``mode`` for training, ``eval_mode`` for validation/test):

* ``single``: one view of one frame per sample; keys as in the batch contract, ``(B, ...)``.
* ``multiview``: the ``views`` synchronised cameras of one frame, ``(B, V, ...)``; each view its own crop.
* ``pair``: two frames of one video from one camera with one crop (static background), ``(B, 2, ...)``;
  the second frame is a random other frame at most ``pair_max_gap`` frames away.
* ``clip``: ``clip_length`` consecutive frames of one video from one camera, ``(B, T, ...)``.

Every image comes with ``mask``, ``parts`` (labels of ``datamodules.render.bodies.PARTS``), ``depth`` and
``flow`` to the next frame of its sequence (from the motion of each surface point in its part's
frame, and of the room for a moving camera; zero at a sequence's last frame), plus the pose keys.
Identifiers: ``subject``, ``action``, ``sequence``, ``scene`` are ``(B,)``; ``frame`` is ``(B, T)``
in the temporal modes and ``(B,)`` otherwise; ``camera`` (the rig camera index) is ``(B, V)`` in
multiview mode and ``(B,)`` otherwise.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import Dataset

from ..cameras import in_image
from ..contract import register
from ..poses import SPLITS, PoseClips, PoseDataModule, SplitLoaders
from ..skeleton import H36M_17, Skeleton
from . import bodies as B
from .raycast import cast, ellipsoid_bboxes, matvec, pixel_grid, project_points, scatter_dense, surface_normals
from .scenes import (
    FULL_FRAME,
    Scenes,
    background,
    contact_shadow,
    hash_normal,
    hash_uniform,
    make_scenes,
    rig_cameras,
)

MODES = ("single", "multiview", "pair", "clip")
#: the rendered maps (option ``maps`` picks which a data module yields; the pose keys always come)
PIXEL_KEYS = ("image", "mask", "parts", "depth", "flow")
#: Stages of :func:`render_views` show up under these names in ``torch.profiler`` (see ``benchmark/bench_render.py``).
STAGES = ("bodies", "crop", "cast", "shade", "background", "composite", "flow", "pose")
_stage = lambda name: torch.profiler.record_function(f"render/{name}")  # noqa: E731
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
#: Part of every cache key: bump it when a change to the renderer changes pixels.
RENDER_VERSION = 1


@dataclass
class MotionTable:
    """One split's motion ordered by (sequence, frame), cut into videos, with the subjects' bodies.

    Per row (N): ``joints`` (N, 17, 3) world mm; ``subject``, ``action``, ``sequence``, ``frame``;
    ``body`` (row of ``bodies``); ``next_row`` (the next frame of the sequence, itself at the end);
    ``video``; ``pos`` (position in the sequence). Per video (Nv): ``video_start`` (first row),
    ``video_len``, ``video_xy`` (mean root position, mm), ``video_radius`` (farthest root from it,
    mm), ``video_floor`` (floor height, mm), ``video_scene``.
    """

    joints: torch.Tensor
    subject: torch.Tensor
    action: torch.Tensor
    sequence: torch.Tensor
    frame: torch.Tensor
    body: torch.Tensor
    next_row: torch.Tensor
    video: torch.Tensor
    pos: torch.Tensor
    video_start: torch.Tensor
    video_len: torch.Tensor
    video_xy: torch.Tensor
    video_radius: torch.Tensor
    video_floor: torch.Tensor
    video_scene: torch.Tensor
    bodies: B.Bodies

    def __len__(self) -> int:
        return self.joints.shape[0]


def _scatter(values: torch.Tensor, index: torch.Tensor, size: int, reduce: str) -> torch.Tensor:
    out = torch.zeros(size, *values.shape[1:], dtype=values.dtype)
    idx = index.view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    return out.scatter_reduce(0, idx, values, reduce=reduce, include_self=False)


def build_table(clips: PoseClips, video_frames: int, num_scenes: int, seed: int) -> MotionTable:
    """Order ``clips`` by (sequence, frame), cut videos, size the bodies and find each floor (vectorised)."""
    if len(clips) == 0:
        raise ValueError("SyntheticHumans: the motion source returned no frames for this split")
    if clips.joints_world.shape[1:] != (H36M_17.num_joints, 3):
        raise ValueError(f"SyntheticHumans: motion joints must be (N, 17, 3) H36M joints in mm, got "
                         f"{tuple(clips.joints_world.shape)}")  # fmt: skip
    order = torch.argsort(clips.sequence * (int(clips.frame.max()) + 1) + clips.frame, stable=True)
    joints = clips.joints_world[order].float()
    sequence, frame = clips.sequence[order], clips.frame[order]
    n = len(order)
    rows = torch.arange(n)
    _, seq_block, seq_len = torch.unique_consecutive(sequence, return_inverse=True, return_counts=True)
    seq_start = torch.cumsum(seq_len, 0) - seq_len
    pos = rows - seq_start[seq_block]
    same_next = torch.zeros(n, dtype=torch.bool)
    same_next[:-1] = seq_block[1:] == seq_block[:-1]
    next_row = torch.where(same_next, rows + 1, rows)
    # Videos: fixed windows of the sequence; the last window absorbs a short remainder.
    n_windows = (seq_len[seq_block] // video_frames).clamp(min=1)
    window = torch.minimum(pos // video_frames, n_windows - 1)
    _, video, video_len = torch.unique_consecutive(
        seq_block * (n + 1) + window, return_inverse=True, return_counts=True
    )
    nv = len(video_len)
    video_start = torch.cumsum(video_len, 0) - video_len
    root_xy = joints[:, H36M_17.root, :2]
    video_xy = _scatter(root_xy, video, nv, "sum") / video_len.unsqueeze(-1)
    video_radius = _scatter((root_xy - video_xy[video]).norm(dim=-1), video, nv, "amax")

    subjects = clips.subject[order]
    subject_ids, body = torch.unique(subjects, return_inverse=True)
    lengths = torch.cat([torch.zeros(n, 1), H36M_17.bone_lengths(joints)], dim=-1)
    mean_lengths = _scatter(lengths, body, len(subject_ids), "mean")
    bodies = B.make_bodies(subject_ids, mean_lengths, seed)
    # The floor of a sequence touches its lowest body point over the whole sequence.
    lowest = B.ellipsoids(joints, body, bodies).lowest_z().amin(-1)
    seq_floor = _scatter(lowest, seq_block, len(seq_len), "amin")
    video_seq = seq_block[video_start]
    scene = (hash_uniform(seed, 7919, sequence[video_start]).squeeze(-1) * num_scenes).long().clamp(max=num_scenes - 1)
    return MotionTable(
        joints=joints, subject=subjects, action=clips.action[order], sequence=sequence, frame=frame, body=body,
        next_row=next_row, video=video, pos=pos, video_start=video_start, video_len=video_len, video_xy=video_xy,
        video_radius=video_radius, video_floor=seq_floor[video_seq], video_scene=scene, bodies=bodies,
    )  # fmt: skip


@dataclass(frozen=True)
class RenderConfig:
    """How views are rendered (see :class:`SyntheticHumans` for the meaning of each option)."""

    width: int = 128
    height: int = 128
    crop: bool = True
    crop_margin: float = 1.2
    crop_jitter: float = 0.0
    camera_motion: str = "static"
    orbit_deg_per_frame: float = 0.5
    noise_2d_px: float = 0.0
    tile: int = 4
    seed: int = 0
    maps: tuple[str, ...] = PIXEL_KEYS


def _union(boxes: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Union (M, 4) of boxes that share a ``group`` (M,) id, broadcast back to every member."""
    ng = int(group.max()) + 1
    lo = _scatter(boxes[:, :2], group, ng, "amin")
    hi = _scatter(boxes[:, 2:], group, ng, "amax")
    return torch.cat([lo, hi], dim=-1)[group]


def _crop_intrinsics(K: torch.Tensor, box: torch.Tensor, cfg: RenderConfig, keys: torch.Tensor) -> torch.Tensor:
    """Intrinsics (M, 3, 3) of an output-sized crop around ``box`` (M, 4) on the full frame, px.

    The crop has the output's aspect ratio, covers ``crop_margin`` times the box's larger extent and,
    with ``crop_jitter``, is randomly rescaled (log-uniform) and shifted, seeded by ``keys`` (M, 2).
    """
    W, H = cfg.width, cfg.height
    full = torch.tensor([0.0, 0.0, *FULL_FRAME])
    box = torch.where(torch.isfinite(box).all(-1, keepdim=True) & torch.tensor(cfg.crop), box, full)
    margin = cfg.crop_margin if cfg.crop else 1.0
    center = (box[:, :2] + box[:, 2:]) / 2
    side_w = torch.maximum(box[:, 2] - box[:, 0], (box[:, 3] - box[:, 1]) * (W / H)) * margin
    if cfg.crop and cfg.crop_jitter > 0:
        u = hash_uniform(keys[:, 0], keys[:, 1], 104729, n=3) * 2 - 1
        side_w = side_w * torch.exp(cfg.crop_jitter * u[:, 0])
        center = center + cfg.crop_jitter * 0.5 * side_w.unsqueeze(-1) * u[:, 1:]
    scale = W / side_w  # output px per full-frame px
    x0 = center[:, 0] - side_w / 2
    y0 = center[:, 1] - side_w * (H / W) / 2
    Kc = K.clone()
    Kc[:, 0, 0] = K[:, 0, 0] * scale
    Kc[:, 1, 1] = K[:, 1, 1] * scale
    Kc[:, 0, 2] = (K[:, 0, 2] - x0) * scale
    Kc[:, 1, 2] = (K[:, 1, 2] - y0) * scale
    return Kc


def video_cameras(table: MotionTable, scenes: Scenes, rows: torch.Tensor, views: torch.Tensor, cfg: RenderConfig,
                  step: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:  # fmt: skip
    """Full-frame cameras (``K, R, t, eye``, (M, ...)) filming ``rows`` (M,) with rig cameras ``views`` (M,).

    The cameras belong to each row's video. ``step`` (M,) asks instead for that video's cameras
    ``step`` frames later (the next frame of a flow target may lie in the following video). Also
    returns how far (mm) the cameras may get from the video's centre, for sizing the room.
    """
    vid = table.video[rows]
    scene, floor = table.video_scene[vid], table.video_floor[vid]
    later = rows if step is None else rows + step
    if cfg.camera_motion == "orbit":
        # The camera follows the pelvis and circles it at a constant rate through the video.
        pos = (rows - table.video_start[vid]).float() - table.video_len[vid] / 2
        if step is not None:
            pos = pos + step
        offset = math.radians(cfg.orbit_deg_per_frame) * pos
        cams = rig_cameras(
            scenes, scene, views, table.joints[later, H36M_17.root, :2], floor, torch.ones(len(rows)), offset
        )
        reach = scenes.cam_distance[scene].amax(-1) + table.video_radius[vid]
    else:
        # Static rig around the video's centre, pulled back when the person travels far.
        scale = torch.clamp((table.video_radius[vid] + 1200.0) / 2500.0, min=1.0)
        cams = rig_cameras(scenes, scene, views, table.video_xy[vid], floor, scale, torch.zeros(len(rows)))
        reach = scenes.cam_distance[scene].amax(-1) * scale
    return cams, reach


def render_views(table: MotionTable, scenes: Scenes, rows: torch.Tensor, views: torch.Tensor, group: torch.Tensor,
                 keys: torch.Tensor, cfg: RenderConfig) -> dict[str, torch.Tensor]:  # fmt: skip
    """Render M views: frame ``rows`` (M,) of ``table`` seen by rig cameras ``views`` (M,).

    Views with the same ``group`` (M,) id share one crop (temporal samples); ``keys`` (M, 2) int64
    seed the random crop jitter (same for a group) and 2D noise. Returns flat ``(M, ...)`` tensors of
    the batch contract: image (M, 3, H, W) in [0, 1], mask (M, 1, H, W), parts (M, H, W), depth
    (M, 1, H, W) mm, flow (M, 2, H, W) px, joints (M, 17, 3|2), visible (M, 17), K, R (M, 3, 3), t (M, 3).
    Only the maps in ``cfg.maps`` are returned (flow is not computed without it); with no maps, only
    the pose keys and cameras, with the same values as when pixels are rendered.
    """
    M, W, H = len(rows), cfg.width, cfg.height
    vid = table.video[rows]
    scene, floor = table.video_scene[vid], table.video_floor[vid]
    joints, body = table.joints[rows], table.body[rows]
    next_rows = table.next_row[rows]
    moving = cfg.camera_motion == "orbit"
    with_flow = "flow" in cfg.maps  # the next frame's cameras and bodies serve the flow only
    with _stage("bodies"):
        cams, reach = video_cameras(table, scenes, rows, views, cfg)
        R, t = cams["R"], cams["t"]
        if with_flow:  # this frame's and the next frame's bodies in one go (fewer, larger tensor ops)
            cams_next = video_cameras(table, scenes, rows, views, cfg, step=next_rows - rows)[0] if moving else cams
            both = B.ellipsoids(torch.cat([joints, table.joints[next_rows]]), body.repeat(2), table.bodies)
            ell, ell_next = both.split(M)
        else:
            ell = B.ellipsoids(joints, body, table.bodies)

    with _stage("crop"):  # around the silhouette: the union of the primitives' exact boxes on the full frame
        boxes = ellipsoid_bboxes(ell, cams["K"], R, t)
        person = torch.cat([boxes[..., :2].amin(1), boxes[..., 2:].amax(1)], dim=-1)
        K = _crop_intrinsics(cams["K"], _union(person, group), cfg, keys)
        s = (K[:, 0, 0] / cams["K"][:, 0, 0]).view(M, 1, 1)
        shift = (K[:, :2, 2] - cams["K"][:, :2, 2] * s.view(M, 1)).unsqueeze(1).repeat(1, 1, 2)
    if not cfg.maps:  # poses only: the same crops, cameras and 2D joints without casting a ray
        return pose_keys(joints, K, R, t, keys, cfg)

    with _stage("cast"):
        hits = cast(ell, K, R, t, W, H, tile=cfg.tile, boxes=boxes * s + shift)
        hv, hp = hits.view, hits.prim
        view_of, pix_of = hits.pixel // (H * W), hits.pixel % (H * W)

    with _stage("shade"):  # albedo x (hemispheric ambient + Lambert) under the scene's light
        _, axes, radii = ell.take(hv, hp)
        normal = surface_normals(axes, radii, hits.unit)
        light = torch.cat([scenes.light, scenes.light_color, scenes.ambient[:, None], scenes.diffuse[:, None]], -1)
        light = light.index_select(0, scene)[hv]  # (n, 8): direction, colour, ambient, diffuse
        lambert = (normal * light[:, :3]).sum(-1, keepdim=True).clamp(min=0)
        shade = light[:, 6:7] * (0.75 + 0.25 * normal[:, 2:3]) + light[:, 7:8] * lambert
        body_rgb = B.albedo(table.bodies, body[hv], hp, hits.unit, radii) * shade * light[:, 3:6]

    with _stage("background"):  # the room behind every pixel, with the person's contact shadow
        # A static camera with one crop (pair, clip) sees one background: render it once per group
        # (``lead`` is each group's first view, ``slot`` each view's group) and only shadow it per frame.
        slot = torch.unique(group, return_inverse=True)[1] if not moving else torch.arange(M)
        lead = torch.full((int(slot.max()) + 1,), M).scatter_reduce(0, slot, torch.arange(M), reduce="amin")
        if not (torch.equal(vid[lead][slot], vid) and torch.equal(views[lead][slot], views)):
            slot = lead = torch.arange(M)  # a group spanning cameras: no sharing
        image, ground, room = background(scenes, scene[lead], K[lead], R[lead], cams["eye"][lead], W, H,
                                         table.video_xy[vid[lead]], floor[lead], 1.3 * reach[lead] + 1500.0,
                                         with_points=moving)  # fmt: skip
        light = scenes.light[scene]
        shadow_xy = joints[:, [3, 6], :2].mean(1) - 250.0 * light[:, :2] / light[:, 2:].clamp(min=0.3)
        image = image[slot] * contact_shadow(ground[slot], shadow_xy)

    with _stage("composite"):
        image = image.view(M, 3, H * W)
        image[view_of, :, pix_of] = body_rgb
        image = torch.round(image.clamp_(0, 1) * 255) / 255  # 8-bit like real frames (and exactly cacheable)
        parts = scatter_dense(hits, B.PART_OF[hp], (M, H, W))
        depth = scatter_dense(hits, hits.depth, (M, H, W)).unsqueeze(1)

    flow = None
    if with_flow:
        with _stage("flow"):  # surface points keep their unit-sphere coordinates on their primitive
            flow = torch.zeros(M, 2, H * W)
            if moving:  # the room is static: re-project it with the next camera
                room = room.view(M, 3, H * W).transpose(1, 2)
                uv_next, _ = project_points(
                    room, K.unsqueeze(1), cams_next["R"].unsqueeze(1), cams_next["t"].unsqueeze(1)
                )
                flow = (uv_next - pixel_grid(W, H)[..., :2].reshape(1, H * W, 2)).transpose(1, 2).contiguous()
            p_next = ell_next.to_world(hits.unit, hv, hp)
            uv_next, _ = project_points(p_next, K[hv], cams_next["R"][hv], cams_next["t"][hv])
            flow[view_of, :, pix_of] = uv_next - hits.xy

    maps = {"image": image.view(M, 3, H, W), "mask": (parts > 0).unsqueeze(1), "parts": parts, "depth": depth,
            "flow": flow.view(M, 2, H, W) if flow is not None else None}  # fmt: skip
    return {**{k: maps[k] for k in cfg.maps}, **pose_keys(joints, K, R, t, keys, cfg)}


def pose_keys(joints: torch.Tensor, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor, keys: torch.Tensor,
              cfg: RenderConfig) -> dict[str, torch.Tensor]:  # fmt: skip
    """The pose keys of M views: world joints (M, 17, 3) mm seen by crop cameras K, R, t; 2D noise seeded by ``keys``."""
    W, H = cfg.width, cfg.height
    with _stage("pose"):
        cam_joints = matvec(R.unsqueeze(1), joints) + t.unsqueeze(1)
        joints_2d, _ = project_points(joints, K.unsqueeze(1), R.unsqueeze(1), t.unsqueeze(1))
        inside = in_image(joints_2d, W, H)
        noisy = joints_2d
        if cfg.noise_2d_px > 0:
            joint = torch.arange(H36M_17.num_joints)
            noisy = joints_2d + cfg.noise_2d_px * hash_normal(keys[:, :1], keys[:, 1:], joint, 7, n=2)
    return {
        "joints_3d": cam_joints,
        "joints_3d_world": joints,
        "joints_2d": noisy,
        "joints_2d_gt": joints_2d,
        "visible": inside & (cam_joints[..., 2] > 0),
        "K": K,
        "R": R,
        "t": t,
    }


class HumanRenders(Dataset):
    """Rendered samples of one split in one sampling mode; ``__getitems__`` renders a whole batch at once.

    Use with ``collate_fn=keep_batch``. A sample is a pure function of (seed, split, mode, index):
    its randomness (crop jitter, pair partner, 2D noise) comes from hashing those integers, so
    pixels do not depend on the batch, the worker or the order of loading.
    """

    def __init__(self, table: MotionTable, scenes: Scenes, mode: str, anchors: torch.Tensor, cfg: RenderConfig,
                 split: str, clip_length: int = 2, pair_max_gap: int | None = None,
                 cache_dir: str | Path | None = None):  # fmt: skip
        if mode not in MODES:
            raise ValueError(f"SyntheticHumans mode {mode!r} is unknown; choose from {MODES}")
        self.table, self.scenes, self.mode, self.anchors, self.cfg = table, scenes, mode, anchors, cfg
        self.views = scenes.num_views
        self.slots = {"single": 1, "multiview": self.views, "pair": 2, "clip": clip_length}[mode]
        self.pair_max_gap = pair_max_gap
        self.key = cfg.seed * 1000 + _SPLIT_CODE[split] * 10 + MODES.index(mode)
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def __len__(self) -> int:
        return len(self.anchors) * (1 if self.mode == "multiview" else self.views)

    def layout(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows and rig cameras (B, slots) of samples ``index`` (B,)."""
        if self.mode == "multiview":
            rows = self.anchors[index].unsqueeze(-1).expand(-1, self.views)
            return rows, torch.arange(self.views).expand_as(rows)
        anchor, cam = self.anchors[index // self.views], index % self.views
        if self.mode == "single":
            return anchor.unsqueeze(-1), cam.unsqueeze(-1)
        if self.mode == "clip":
            rows = anchor.unsqueeze(-1) + torch.arange(self.slots)
            return rows, cam.unsqueeze(-1).expand_as(rows)
        # pair: a uniformly drawn other frame of the same video within pair_max_gap.
        t = self.table
        vid = t.video[anchor]
        start, length = t.video_start[vid], t.video_len[vid]
        pos = anchor - start
        gap = length - 1 if self.pair_max_gap is None else torch.clamp(length - 1, max=self.pair_max_gap)
        lo, hi = (pos - gap).clamp(min=0), torch.minimum(pos + gap, length - 1)
        choices = hi - lo
        k = (hash_uniform(self.key, index, 31337).squeeze(-1) * choices).long().clamp(max=(choices - 1).clamp(min=0))
        other = lo + k
        other = torch.where(other >= pos, other + 1, other)
        other = torch.where(choices > 0, other, pos)
        return torch.stack([anchor, start + other], dim=-1), cam.unsqueeze(-1).expand(-1, 2)

    def render(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Render samples ``index`` (B,) into a batch dict (see the module docstring for shapes)."""
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise IndexError(f"SyntheticHumans {self.mode} dataset has {len(self)} samples, got index {index.tolist()}")
        rows, cams = self.layout(index)
        b, slots = rows.shape
        flat_rows, flat_cams = rows.reshape(-1), cams.reshape(-1)
        temporal = self.mode in ("pair", "clip")
        sample = torch.arange(b).repeat_interleave(slots)
        group = sample if temporal else torch.arange(b * slots)
        # Per-view random keys: (dataset, sample and camera); one per sample for a shared temporal crop.
        keys = torch.stack(
            [torch.full_like(flat_rows, self.key), index[sample] * 64 + (63 if temporal else flat_cams)], -1
        )
        out = render_views(self.table, self.scenes, flat_rows, flat_cams, group, keys, self.cfg)
        if self.mode != "single":
            out = {k: v.view(b, slots, *v.shape[1:]) for k, v in out.items()}
        else:
            out = {k: v.view(b, *v.shape[1:]) for k, v in out.items()}
        t = self.table
        first = rows[:, 0]
        out.update(subject=t.subject[first], action=t.action[first], sequence=t.sequence[first],
                   scene=t.video_scene[t.video[first]])  # fmt: skip
        out["frame"] = t.frame[rows] if temporal else t.frame[first]
        out["camera"] = cams if self.mode == "multiview" else cams[:, 0]
        return out

    # -- loading, with the optional on-disk cache ------------------------------------------------
    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.int64).view(-1)
        if self.cache_dir is None:
            return self.render(index)
        paths = [self.cache_dir / f"{i // 1000:05d}" / f"{i}.pt" for i in index.tolist()]
        items: list[dict | None] = [torch.load(p, weights_only=True) if p.is_file() else None for p in paths]
        missing = [k for k, item in enumerate(items) if item is None]
        if missing:  # render what is missing in one batch, store each sample on its own
            fresh = self.render(index[missing])
            for j, k in enumerate(missing):
                items[k] = _to_storage({key: v[j] for key, v in fresh.items()})
                _atomic_save(items[k], paths[k])
        items = [_from_storage(item, self.cfg.maps) for item in items]
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def _to_storage(item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Compact cache form: 8-bit image and parts; no mask when parts are there (it is ``parts > 0``)."""
    out = {k: v for k, v in item.items() if k != "mask" or "parts" not in item}
    if "image" in item:
        out["image"] = torch.round(item["image"] * 255).to(torch.uint8)
    if "parts" in item:
        out["parts"] = item["parts"].to(torch.uint8)
    return out


def _from_storage(item: dict[str, torch.Tensor], maps: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = dict(item)
    if "image" in item:
        out["image"] = item["image"].to(torch.float32) / 255
    if "parts" in item:
        out["parts"] = item["parts"].to(torch.int64)
        if "mask" in maps:
            out["mask"] = (out["parts"] > 0).unsqueeze(-3)
    return out


def _atomic_save(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


@register
class SyntheticHumans(SplitLoaders, L.LightningDataModule):
    """Synthetic people rendered on the fly: images with masks, part labels, depth, flow and 3D poses.

    Args:
        motion: where the 3D motion comes from (any ``PoseDataModule``: its ``load_clips(split)``);
            default ``SyntheticPoses()``. Its subjects, actions and splits are used as they are.
        mode: training sampling mode, one of ``single``, ``multiview``, ``pair``, ``clip``.
        eval_mode: validation/test sampling mode.
        image_size: output size in px, an int for square images or ``[width, height]``.
        views: cameras in each scene's rig (Human3.6M has 4).
        clip_length: frames per sample in ``clip`` mode.
        video_frames: frames per video (one static rig placement, one scene).
        pair_max_gap: largest frame distance between the two frames of a ``pair`` (None: the whole video).
        train_stride / eval_stride: anchor frames are every k-th frame of each sequence.
        num_scenes: procedural rooms, assigned to sequences at random.
        camera_motion: ``static`` (H36M-like) or ``orbit`` (cameras follow the person and circle).
        orbit_deg_per_frame: orbit speed for ``camera_motion=orbit``.
        crop: crop around the person (True) or show the whole camera frame (False).
        crop_margin: crop side / silhouette extent.
        crop_jitter: training crop jitter (log-scale and shift as fractions of the crop); 0 in evaluation.
        noise_2d_px: std of Gaussian noise on ``joints_2d`` (mimics detections); ``joints_2d_gt`` stays clean.
        tile: tile size (px) of the ray caster's culling; a speed knob only.
        cache_dir: if set, rendered samples are stored there (~270 KB per 128 x 128 view) and reused.
        maps: which rendered maps to yield, a subset of ``image, mask, parts, depth, flow`` (default:
            all). Fewer maps make smaller batches and caches (flow is not computed without it); an empty
            list gives the same samples' poses, cameras and 2D joints without ray casting, for 2D-to-3D
            methods on the same frames.
        batch_size / eval_batch_size / num_workers: DataLoader settings (rendering runs in the workers).
        seed: every pixel is a function of this seed (and the motion's own seed).
    """

    provides = ("image", "mask", "parts", "depth", "flow", "joints_3d", "joints_3d_world", "joints_2d", "joints_2d_gt",
                "visible", "K", "R", "t", "subject", "action", "frame", "sequence", "camera", "scene")  # fmt: skip
    skeleton: Skeleton = H36M_17

    def __init__(self, motion: PoseDataModule | None = None, mode: str = "single", eval_mode: str = "single",
                 image_size: int | tuple[int, int] = 128, views: int = 4, clip_length: int = 2, video_frames: int = 50,
                 pair_max_gap: int | None = 25, train_stride: int = 1, eval_stride: int = 10, num_scenes: int = 8,
                 camera_motion: str = "static", orbit_deg_per_frame: float = 0.5, crop: bool = True,
                 crop_margin: float = 1.2, crop_jitter: float = 0.1, noise_2d_px: float = 0.0, tile: int = 4,
                 cache_dir: str | None = None, batch_size: int = 32, eval_batch_size: int = 64, num_workers: int = 2,
                 seed: int = 0, maps: list[str] | None = None):  # fmt: skip
        super().__init__()
        for name, value in (("mode", mode), ("eval_mode", eval_mode)):
            if value not in MODES:
                raise ValueError(f"SyntheticHumans option {name}={value!r} is unknown; choose from {MODES}")
        if camera_motion not in ("static", "orbit"):
            raise ValueError(f"SyntheticHumans option camera_motion={camera_motion!r}; choose 'static' or 'orbit'")
        width, height = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        for name, value in (("image_size", min(width, height)), ("views", views), ("clip_length", clip_length),
                            ("video_frames", video_frames), ("train_stride", train_stride),
                            ("eval_stride", eval_stride), ("num_scenes", num_scenes), ("tile", tile),
                            ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):  # fmt: skip
            if value < 1:
                raise ValueError(f"SyntheticHumans option {name} must be >= 1, got {value}")
        if pair_max_gap is not None and pair_max_gap < 1:
            raise ValueError(f"SyntheticHumans option pair_max_gap must be >= 1 or null, got {pair_max_gap}")
        if clip_length > video_frames:
            raise ValueError(
                f"SyntheticHumans clip_length ({clip_length}) must not exceed video_frames ({video_frames})"
            )
        if crop_margin < 1.0 or crop_jitter < 0 or noise_2d_px < 0:
            raise ValueError("SyntheticHumans options need crop_margin >= 1, crop_jitter >= 0 and noise_2d_px >= 0, "
                             f"got {crop_margin}, {crop_jitter}, {noise_2d_px}")  # fmt: skip
        if motion is None:
            from ..motion.synthetic import SyntheticPoses

            motion = SyntheticPoses(seed=seed)
        self.motion = motion
        self.mode, self.eval_mode = mode, eval_mode
        self.width, self.height = int(width), int(height)
        self.views, self.clip_length, self.video_frames = views, clip_length, video_frames
        self.pair_max_gap = pair_max_gap
        self.strides = {"train": train_stride, "val": eval_stride, "test": eval_stride}
        self.num_scenes = num_scenes
        self.camera_motion, self.orbit_deg_per_frame = camera_motion, orbit_deg_per_frame
        self.crop, self.crop_margin, self.crop_jitter = crop, crop_margin, crop_jitter
        self.noise_2d_px, self.tile = noise_2d_px, tile
        self.cache_dir = cache_dir
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.seed = seed
        self.maps = PIXEL_KEYS if maps is None else tuple(maps)
        unknown = sorted(set(self.maps) - set(PIXEL_KEYS))
        if unknown:
            raise ValueError(f"SyntheticHumans option maps has unknown entries {unknown}; choose from {PIXEL_KEYS}")
        if self.maps != PIXEL_KEYS:
            self.provides = tuple(k for k in type(self).provides if k not in PIXEL_KEYS or k in self.maps)
        self.tables: dict[str, MotionTable] = {}
        self.datasets: dict[tuple[str, str], HumanRenders] = {}

    @cached_property
    def scenes(self) -> Scenes:
        """The rooms and camera rigs (built on first use: constructing the data module stays cheap)."""
        return make_scenes(self.num_scenes, self.views, self.seed)

    @property
    def name(self) -> str:
        return f"humans-{self.motion.name}"

    @property
    def action_names(self) -> list[str]:
        return self.motion.action_names

    @property
    def protocol(self) -> dict[str, str]:
        """What the test set depends on. ``seed`` draws the rooms, clothing and lighting, so other test images: it is
        named when it is not the default 0 (records of the default scenes keep the protocol id they always had)."""
        return {"input": f"rgb{self.width}x{self.height}", "motion": self.motion.name,
                "input_2d": f"gt+noise{self.noise_2d_px:g}px" if self.noise_2d_px else "gt",
                "annotation_3d": "camera-frame", "eval_stride": str(self.strides["test"]),
                "eval_mode": self.eval_mode, "camera_motion": self.camera_motion,
                **({"scene_seed": str(self.seed)} if self.seed else {})}  # fmt: skip

    def render_config(self, split: str) -> RenderConfig:
        return RenderConfig(width=self.width, height=self.height, crop=self.crop, crop_margin=self.crop_margin,
                            crop_jitter=self.crop_jitter if split == "train" else 0.0, camera_motion=self.camera_motion,
                            orbit_deg_per_frame=self.orbit_deg_per_frame, noise_2d_px=self.noise_2d_px,
                            tile=self.tile, seed=self.seed, maps=self.maps)  # fmt: skip

    def table(self, split: str) -> MotionTable:
        if split not in SPLITS:
            raise ValueError(f"SyntheticHumans: unknown split {split!r}; choose from {SPLITS}")
        if split not in self.tables:
            self.tables[split] = build_table(
                self.motion.load_clips(split), self.video_frames, self.num_scenes, self.seed
            )
        return self.tables[split]

    def anchors(self, split: str, mode: str) -> torch.Tensor:
        """Rows of ``split`` that start a sample of ``mode`` (every stride-th frame that fits)."""
        t = self.table(split)
        keep = t.pos % self.strides[split] == 0
        if mode == "clip":
            keep &= (torch.arange(len(t)) - t.video_start[t.video]) + self.clip_length <= t.video_len[t.video]
        return keep.nonzero().squeeze(-1)

    def dataset(self, split: str, mode: str | None = None) -> HumanRenders:
        """The rendered dataset of ``split`` in ``mode`` (default: ``mode`` for train, ``eval_mode`` otherwise)."""
        mode = mode or (self.mode if split == "train" else self.eval_mode)
        if (split, mode) not in self.datasets:
            anchors = self.anchors(split, mode)
            if len(anchors) == 0:
                raise ValueError(f"SyntheticHumans: no {mode} samples in the {split} split; check the motion source "
                                 f"and the stride/clip_length/video_frames options")  # fmt: skip
            cache = None
            if self.cache_dir:
                cache = Path(self.cache_dir) / self._cache_key(split, mode)
            self.datasets[split, mode] = HumanRenders(self.table(split), self.scenes, mode, anchors,
                                                      self.render_config(split), split, self.clip_length,
                                                      self.pair_max_gap, cache)  # fmt: skip
        return self.datasets[split, mode]

    def _cache_key(self, split: str, mode: str) -> str:
        """Folder name that changes whenever anything that decides the pixels changes."""
        t = self.table(split)
        h = hashlib.sha256()
        options = (asdict(self.render_config(split)), self.views, self.clip_length, self.video_frames,
                   self.pair_max_gap, self.strides[split], self.num_scenes, mode, split)  # fmt: skip
        h.update(repr((RENDER_VERSION, options)).encode())
        for tensor in (t.joints, t.subject, t.sequence, t.frame):
            h.update(tensor.numpy().tobytes())
        return f"{split}-{mode}-{h.hexdigest()[:16]}"

    def setup(self, stage: str | None = None) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage, SPLITS):
            self.dataset(split)

    def train_poses_3d(self) -> torch.Tensor:
        """(N, 17, 3) camera-frame training poses in mm: every train anchor frame seen by every rig camera."""
        t = self.table("train")
        rows = self.anchors("train", "single").repeat_interleave(self.views)
        cams = torch.arange(self.views).repeat(len(rows) // self.views)
        cam, _ = video_cameras(t, self.scenes, rows, cams, self.render_config("train"))
        return matvec(cam["R"].unsqueeze(1), t.joints[rows]) + cam["t"].unsqueeze(1)

    def split_dataset(self, split: str):
        return self.dataset(split)
