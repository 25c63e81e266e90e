"""SyntheticHumans: the batch contract, sampling modes, flow, determinism, cache and preview (tiny renders)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.cameras import project, world_to_camera
from datamodules.contract import PROVIDERS
from datamodules.motion.synthetic import SyntheticPoses
from datamodules.poses import PoseClips, PoseDataModule, keep_batch
from datamodules.render import bodies as B
from datamodules.render.humans import SyntheticHumans, render_views
from datamodules.render.preview import preview
from datamodules.render.raycast import cast

ROOT = Path(__file__).resolve().parents[1]


def _motion() -> SyntheticPoses:
    return SyntheticPoses(train_subjects=[1, 2], val_subjects=[3], test_subjects=[4], actions=["walk", "jump"],
                          clips_per_action=1, frames_per_clip=12)  # fmt: skip


def _humans(**kwargs) -> SyntheticHumans:
    options = dict(image_size=48, num_workers=0, video_frames=6, num_scenes=2, batch_size=4, eval_batch_size=4, seed=5)
    return SyntheticHumans(motion=kwargs.pop("motion", None) or _motion(), **{**options, **kwargs})


@pytest.fixture(scope="module")
def dm() -> SyntheticHumans:
    return _humans()


def test_single_views_follow_the_batch_contract(dm):
    assert PROVIDERS["SyntheticHumans"] == frozenset(SyntheticHumans.provides)
    ds = dm.dataset("train", "single")
    batch = ds.__getitems__([0, 5, 9])
    assert set(SyntheticHumans.provides) <= set(batch)
    shapes = {"image": (3, 3, 48, 48), "mask": (3, 1, 48, 48), "parts": (3, 48, 48), "depth": (3, 1, 48, 48),
              "flow": (3, 2, 48, 48), "joints_3d": (3, 17, 3), "joints_2d": (3, 17, 2), "visible": (3, 17),
              "K": (3, 3, 3), "R": (3, 3, 3), "t": (3, 3), "subject": (3,), "frame": (3,), "camera": (3,)}  # fmt: skip
    for key, shape in shapes.items():
        assert tuple(batch[key].shape) == shape, key
    assert batch["mask"].dtype == torch.bool and batch["parts"].dtype == torch.int64
    assert 0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1
    assert torch.equal(batch["mask"][:, 0], batch["parts"] > 0)
    assert torch.equal(batch["depth"][:, 0] > 0, batch["mask"][:, 0])
    assert int(batch["parts"].max()) < len(B.PARTS)
    # Projected camera-frame joints are the 2D joints; camera-frame joints are the world joints moved by R, t.
    assert torch.allclose(project(batch["joints_3d"], batch["K"]), batch["joints_2d"], atol=1e-3)
    assert torch.allclose(
        world_to_camera(batch["joints_3d_world"], batch["R"], batch["t"]), batch["joints_3d"], atol=1e-2
    )
    assert bool(batch["visible"].all())  # the crop holds the whole person
    # Hit depths are plausible for a person 4-6 m away, and the silhouette surrounds the 2D pelvis.
    depth = batch["depth"][batch["mask"]]
    assert 3000 < float(depth.min()) and float(depth.max()) < 9000
    pelvis = batch["joints_2d"][:, 0].floor().long()
    assert bool(batch["mask"][torch.arange(3), 0, pelvis[:, 1], pelvis[:, 0]].all())


def test_multiview_pair_and_clip_samples(dm):
    mv = dm.dataset("train", "multiview").__getitems__([0, 3])
    assert mv["image"].shape == (2, 4, 3, 48, 48) and mv["camera"].tolist() == [[0, 1, 2, 3]] * 2
    assert torch.equal(mv["joints_3d_world"][:, 0], mv["joints_3d_world"][:, 3])  # one moment, four cameras
    eyes = -(mv["R"].transpose(-1, -2) @ mv["t"].unsqueeze(-1)).squeeze(-1)
    assert float(torch.cdist(eyes[0], eyes[0]).topk(2, largest=False).values[:, 1].min()) > 2000  # cameras apart
    assert torch.allclose(project(mv["joints_3d"], mv["K"]), mv["joints_2d"], atol=1e-3)

    pair = dm.dataset("train", "pair").__getitems__([0, 7, 13])
    assert pair["image"].shape == (3, 2, 3, 48, 48) and pair["frame"].shape == (3, 2)
    assert bool((pair["frame"][:, 0] != pair["frame"][:, 1]).all())
    for key in ("K", "R", "t"):  # one static camera and one crop for both frames
        assert torch.equal(pair[key][:, 0], pair[key][:, 1]), key
    # Static background: away from the person and the soft shadow at their feet, the pixels are the same.
    both_bg = ~(pair["mask"][:, 0] | pair["mask"][:, 1])[:, 0]
    same = (pair["image"][:, 0] == pair["image"][:, 1]).all(1)
    assert float(same[both_bg].float().mean()) > 0.9

    clip = _humans(clip_length=3).dataset("train", "clip").__getitems__([0, 4])
    assert clip["image"].shape == (2, 3, 3, 48, 48)
    assert (clip["frame"][:, 1:] - clip["frame"][:, :-1]).tolist() == [[1, 1], [1, 1]]


def _two_frames(dm: SyntheticHumans, row: int, view: int = 1):
    """Frames ``row`` and ``row + 1`` rendered with one crop, plus the next frame's hits."""
    table, cfg = dm.table("train"), dm.render_config("val")
    rows, views = torch.tensor([row, row + 1]), torch.tensor([view, view])
    out = render_views(
        table, dm.scenes, rows, views, torch.zeros(2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), cfg
    )
    ell_next = B.ellipsoids(table.joints[rows[1:]], table.body[rows[1:]], table.bodies)
    hits = cast(ell_next, out["K"][1:], out["R"][1:], out["t"][1:], cfg.width, cfg.height)
    return out, ell_next, hits


def test_flow_agrees_with_the_next_frames_reprojected_hit_points():
    dm = _humans(image_size=64)
    table = dm.table("train")
    errors = []
    for row in (2, 8, 15):  # frames inside one video of their sequence
        assert table.next_row[row] == row + 1
        out, _, hits = _two_frames(dm, row)
        # Move each surface point visible at t+1 back to t (same primitive, same unit-sphere coordinates).
        ell_now = B.ellipsoids(table.joints[[row]], table.body[[row]], table.bodies)
        back = ell_now.to_world(hits.unit, hits.view, hits.prim)
        cam = world_to_camera(back.unsqueeze(0), out["R"][:1], out["t"][:1])[0]
        uv = project(cam, out["K"][0])
        px = uv.floor().long()
        inside = (px >= 0).all(-1) & (px < 64).all(-1)
        px, uv, cam, hits_xy, prim = px[inside], uv[inside], cam[inside], hits.xy[inside], hits.prim[inside]
        # Visible at t too: frame t shows the same part at that pixel, at that depth.
        parts_t, depth_t = out["parts"][0, px[:, 1], px[:, 0]], out["depth"][0, 0, px[:, 1], px[:, 0]]
        visible = (parts_t == B.PART_OF[prim]) & ((depth_t - cam[:, 2]).abs() < 10)
        assert int(visible.sum()) > 100
        flow = out["flow"][0, :, px[:, 1], px[:, 0]].T[visible]
        errors.append((flow - (hits_xy - uv)[visible]).norm(dim=-1))
    errors = torch.cat(errors)
    assert float(errors.median()) < 0.5
    assert float(errors.median()) < 0.05  # in fact: the flow field is smooth within a pixel


def _warp_error(out, pixels: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """|image_{t+1}(p + flow) - image_t(p)| per pixel (bilinear sampling), for a (H, W) bool selection."""
    H, W = out["image"].shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    x, y = xs + flow[0], ys + flow[1]
    grid = torch.stack([x / W * 2 - 1, y / H * 2 - 1], dim=-1).unsqueeze(0)
    warped = torch.nn.functional.grid_sample(out["image"][1:], grid, align_corners=False)[0]
    inside = (x > 0.5) & (x < W - 0.5) & (y > 0.5) & (y < H - 0.5)
    return (warped - out["image"][0]).abs().mean(0)[pixels & inside]


def test_textures_move_with_the_flow():
    # Warping frame t+1 back along the flow reproduces frame t's body colours better than not moving it
    # (exactly only away from part boundaries and up to the change in shading).
    dm = _humans(image_size=64)
    with_flow, without = [], []
    for row in (2, 8, 15, 20):
        out, _, _ = _two_frames(dm, row)
        moving = out["mask"][0, 0] & out["mask"][1, 0] & (out["flow"][0].norm(dim=0) > 0.5)
        with_flow.append(_warp_error(out, moving, out["flow"][0]))
        without.append(_warp_error(out, moving, torch.zeros_like(out["flow"][0])))
    assert float(torch.cat(with_flow).mean()) < 0.7 * float(torch.cat(without).mean())


def test_orbiting_camera_has_background_flow_that_reprojects_the_room():
    dm = _humans(image_size=64, camera_motion="orbit", orbit_deg_per_frame=3.0)
    out, _, _ = _two_frames(dm, 8)
    background = ~(out["mask"][0, 0] | out["mask"][1, 0])
    flow = out["flow"][0]
    assert float(flow[:, background].norm(dim=0).median()) > 0.5  # the room moves in the image
    # Bottom-row pixels see the floor near the feet: intersect their rays with the floor by hand and
    # re-project the floor point with the next frame's camera.
    table = dm.table("train")
    floor = float(table.video_floor[table.video[8]])
    K, R, t = out["K"][0], out["R"][0], out["t"][0]
    eye = -R.T @ t
    cols = background[-1].nonzero().squeeze(-1)
    pix = torch.stack([cols + 0.5, torch.full_like(cols, 63, dtype=torch.float32) + 0.5, torch.ones(len(cols))], -1)
    rays = (R.T @ torch.linalg.inv(K) @ pix.T).T
    points = eye + ((floor - eye[2]) / rays[:, 2]).unsqueeze(-1) * rays
    expected = project(world_to_camera(points.unsqueeze(0), out["R"][1:], out["t"][1:])[0], out["K"][1]) - pix[:, :2]
    assert len(cols) > 10 and torch.allclose(flow[:, 63, cols].T, expected, atol=1e-2)
    # And the images agree: warping frame t+1 back along the flow matches frame t on the room.
    assert float(_warp_error(out, background, flow).median()) < 0.5 * float(
        _warp_error(out, background, 0 * flow).median()
    )


def test_same_seed_same_pixels_whatever_the_batch(dm):
    ds = dm.dataset("train", "single")
    a = ds.__getitems__([1, 6, 11])
    b = _humans().dataset("train", "single").__getitems__([1, 6, 11])
    for key in a:
        assert torch.equal(a[key], b[key]), key
    alone = ds.__getitems__([6])
    assert torch.equal(alone["parts"][0], a["parts"][1]) and torch.equal(alone["K"][0], a["K"][1])
    assert float((alone["image"][0] - a["image"][1]).abs().max()) <= 1 / 255 + 1e-6
    other = _humans(seed=6).dataset("train", "single").__getitems__([1, 6, 11])
    assert not torch.equal(other["image"], a["image"])
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=keep_batch, sampler=[1, 6, 11])
    from_workers = next(iter(loader))
    assert float((from_workers["image"] - a["image"]).abs().max()) <= 1 / 255 + 1e-6
    assert torch.equal(from_workers["parts"], a["parts"])


def test_disk_cache_returns_what_was_rendered(tmp_path):
    plain = _humans().dataset("val", "pair").__getitems__([0, 2])
    cached_dm = _humans(cache_dir=str(tmp_path))
    first = cached_dm.dataset("val", "pair").__getitems__([0, 2])
    files = sorted(tmp_path.rglob("*.pt"))
    assert len(files) == 2
    second = _humans(cache_dir=str(tmp_path)).dataset("val", "pair").__getitems__([2, 0])
    for key in plain:
        assert torch.equal(first[key], plain[key]), key
        assert torch.equal(second[key], plain[key].flip(0)), key


class _ShuffledMocap(PoseDataModule):
    """A motion source shaped like MocapPoses: frame ids every 3rd, rows in no particular order."""

    @property
    def name(self) -> str:
        return "fake-mocap"

    @property
    def action_names(self) -> list[str]:
        return ["walk"]

    def load_clips(self, split: str) -> PoseClips:
        clips = SyntheticPoses(train_subjects=[11], val_subjects=[12], test_subjects=[13], actions=["walk"],
                               clips_per_action=2, frames_per_clip=8).load_clips(split)  # fmt: skip
        order = torch.randperm(len(clips), generator=torch.Generator().manual_seed(0))
        return PoseClips(clips.joints_world[order], clips.subject[order], torch.zeros_like(clips.action[order]),
                         clips.sequence[order] + 40, clips.frame[order] * 3)  # fmt: skip


def test_any_pose_data_module_drives_it_and_the_loader_works():
    dm = _humans(motion=_ShuffledMocap(), mode="clip", clip_length=2, video_frames=4)
    assert dm.name == "humans-fake-mocap" and dm.action_names == ["walk"]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 2, 3, 48, 48)
    assert bool((batch["frame"][:, 1] - batch["frame"][:, 0] == 3).all())  # consecutive frames of the source
    assert bool((batch["subject"] == 11).all())
    poses = dm.train_poses_3d()
    single = dm.dataset("train", "single")
    assert poses.shape == (len(single), 17, 3)
    sample = single.__getitems__([5])
    assert torch.allclose(poses[5], sample["joints_3d"][0], atol=1e-2)


def test_bad_options_fail_with_the_option_named():
    cases = (({"mode": "video"}, "mode"), ({"camera_motion": "shaky"}, "camera_motion"),
             ({"image_size": 0}, "image_size"), ({"clip_length": 9, "video_frames": 4}, "clip_length"))  # fmt: skip
    for kwargs, word in cases:
        with pytest.raises(ValueError, match=word):
            SyntheticHumans(motion=_motion(), **kwargs)


def test_preview_writes_a_contact_sheet(dm, tmp_path):
    out = preview(dm, tmp_path / "sheet.png", num_samples=2)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_config_piece_builds_the_data_module():
    from benchmark.config import load_datamodule

    dm = load_datamodule([ROOT / "configs/data/humans.yaml"])
    assert isinstance(dm, SyntheticHumans) and isinstance(dm.motion, SyntheticPoses)
    assert (dm.width, dm.height, dm.views) == (128, 128, 4)


def test_the_protocol_names_a_scene_seed_other_than_the_default():
    """Another seed renders other rooms, clothing and lighting, so other test images: its records must not share the
    default scenes' table (whose protocol, and so its records' ids, stay as they were)."""
    default, other = SyntheticHumans(seed=0).protocol, SyntheticHumans(seed=3).protocol
    assert "scene_seed" not in default and other.pop("scene_seed") == "3"
    assert other == default
