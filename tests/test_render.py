"""The ray caster, bodies and scenes against hand-computed geometry."""

from __future__ import annotations

import math

import pytest
import torch

from datamodules.cameras import intrinsics, look_at
from datamodules.motion.procedural import ACTIONS, generate_clips, subject_bone_lengths
from datamodules.render import bodies as B
from datamodules.render.raycast import (
    Ellipsoids,
    cast,
    ellipsoid_bboxes,
    invert_intrinsics,
    matmul,
    matvec,
    pixel_grid,
    scatter_dense,
)
from datamodules.render.scenes import background, contact_shadow, hash_normal, hash_uniform, make_scenes, rig_cameras


def _camera(focal: float = 100.0, center: float = 32.0):
    """Identity camera (looking down +z from the origin), square pixels."""
    return intrinsics(focal, (center, center)), torch.eye(3).unsqueeze(0), torch.zeros(1, 3)


def _sphere(center, radius) -> Ellipsoids:
    return Ellipsoids(torch.tensor([[center]], dtype=torch.float32), torch.eye(3).expand(1, 1, 3, 3).clone(),
                      torch.full((1, 1, 3), float(radius)))  # fmt: skip


def _dense(hits, size):
    depth = scatter_dense(hits, hits.depth, (1, size, size))[0]
    prim = scatter_dense(hits, hits.prim, (1, size, size), fill=-1)[0]
    return depth, prim


def test_sphere_on_axis_depth_and_silhouette_radius():
    # Sphere of radius 200 mm, 1000 mm ahead, focal 100 px, principal point on pixel (32, 32)'s centre.
    K, R, t = _camera(100.0, 32.5)
    ell = _sphere((0.0, 0.0, 1000.0), 200.0)
    size = 65
    depth, prim = _dense(cast(ell, K, R, t, size, size), size)
    assert depth[32, 32].item() == pytest.approx(800.0, abs=1e-2)  # D - r on the axis
    # Silhouette: the tangent cone's half angle asin(r / D) -> radius f * r / sqrt(D^2 - r^2) = 20.412 px.
    rho = 100.0 * 200.0 / math.sqrt(1000.0**2 - 200.0**2)
    xy = pixel_grid(size, size)[..., :2] - 32.5
    dist = xy.norm(dim=-1)
    assert bool((prim[dist < rho - 0.01] == 0).all())
    assert bool((prim[dist > rho + 0.01] == -1).all())
    assert (prim == 0).sum().item() == pytest.approx(math.pi * rho**2, rel=0.02)
    # Off-axis depth: a ray through pixel (x, y) hits at s with |s d - c| = r, d = K^-1 (x, y, 1).
    d = torch.tensor([(40.5 - 32.5) / 100.0, 0.0, 1.0])
    b, a = d[2] * 1000.0, (d * d).sum()
    s = (b - math.sqrt(b * b - a * (1000.0**2 - 200.0**2))) / a
    assert depth[32, 40].item() == pytest.approx(s.item(), abs=1e-2)
    box = ellipsoid_bboxes(ell, K, R, t)[0, 0]
    assert box.tolist() == pytest.approx([32.5 - rho, 32.5 - rho, 32.5 + rho, 32.5 + rho], abs=1e-3)


def test_rotated_ellipsoid_box_matches_silhouette_and_tiles_do_not_change_hits():
    K, R, t = _camera(120.0, 32.0)
    angle = math.radians(35)
    axes = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1.0]])
    tilt = torch.tensor([[1.0, 0, 0], [0, math.cos(0.4), -math.sin(0.4)], [0, math.sin(0.4), math.cos(0.4)]])
    ell = Ellipsoids(torch.tensor([[[60.0, -40.0, 1500.0]]]), (tilt @ axes).view(1, 1, 3, 3),
                     torch.tensor([[[300.0, 90.0, 150.0]]]))  # fmt: skip
    box = ellipsoid_bboxes(ell, K, R, t)[0, 0]
    hits = {tile: cast(ell, K, R, t, 64, 64, tile=tile) for tile in (1, 4, 7, 64)}
    ref = hits[64]
    for h in hits.values():
        assert torch.equal(h.pixel, ref.pixel) and torch.equal(h.depth, ref.depth)
    xy = ref.xy
    # Pixel centres inside the silhouette lie inside the exact box; the box is tight to half a pixel.
    assert xy[:, 0].min() >= box[0] and xy[:, 0].max() <= box[2]
    assert xy[:, 1].min() >= box[1] and xy[:, 1].max() <= box[3]
    assert (xy[:, 0].min() - box[0]).item() < 1.0 and (box[2] - xy[:, 0].max()).item() < 1.0
    # Every hit lies on the surface: unit-sphere coordinates of norm 1, world point at depth z.
    assert ref.unit.norm(dim=-1).sub(1).abs().max().item() < 1e-4
    world = ell.to_world(ref.unit, ref.view, ref.prim)
    assert world[:, 2].tolist() == pytest.approx(ref.depth.tolist(), abs=1e-2)


def test_nearest_primitive_wins_and_behind_camera_is_ignored():
    K, R, t = _camera(100.0, 32.5)
    ell = Ellipsoids(torch.tensor([[[0.0, 0.0, 1000.0], [0.0, 0.0, 700.0], [0.0, 0.0, -500.0]]]),
                     torch.eye(3).expand(1, 3, 3, 3).clone(),
                     torch.tensor([[[200.0] * 3, [50.0] * 3, [300.0] * 3]]))  # fmt: skip
    depth, prim = _dense(cast(ell, K, R, t, 65, 65), 65)
    assert prim[32, 32].item() == 1 and depth[32, 32].item() == pytest.approx(650.0, abs=1e-2)
    assert prim[32, 45].item() == 0  # outside the small sphere's 7.2 px radius, inside the big one's 20.4
    assert not bool((prim == 2).any())


def test_intrinsics_inverse_and_elementwise_products():
    K = torch.tensor([[[500.0, 2.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]]])
    assert torch.allclose(invert_intrinsics(K), torch.linalg.inv(K), atol=1e-7)
    A, Bm = torch.randn(5, 3, 3), torch.randn(5, 3, 3)
    v = torch.randn(5, 3)
    assert torch.allclose(matmul(A, Bm), A @ Bm, atol=1e-5)
    assert torch.allclose(matvec(A, v), (A @ v.unsqueeze(-1)).squeeze(-1), atol=1e-5)


def test_hash_rng_is_a_pure_function_of_its_keys():
    keys = torch.arange(20000)
    u = hash_uniform(7, keys, n=2)
    assert u.shape == (20000, 2) and float(u.min()) >= 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.003
    assert torch.equal(hash_uniform(7, keys[123:130], n=2), u[123:130])  # batch composition does not matter
    assert not torch.equal(hash_uniform(8, keys, n=2), u)
    z = hash_normal(3, keys)
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1) < 0.03


def _walk(frames: int = 6) -> torch.Tensor:
    lengths = subject_bone_lengths(2, torch.Generator().manual_seed(0))
    return generate_clips(ACTIONS["walk"], lengths, frames, 25.0, torch.Generator().manual_seed(1))  # (2, T, 17, 3)


def test_part_frames_are_rotations_aligned_with_their_bones():
    joints = _walk()
    origins, rots, lengths = B.part_frames(joints)
    eye = torch.eye(3).expand_as(rots)
    assert torch.allclose(rots @ rots.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rots), torch.ones(rots.shape[:-2]), atol=1e-5)
    ends = {"r_thigh": "RKnee", "r_shin": "RFoot", "l_upper_arm": "LElbow", "l_forearm": "LWrist", "head": "Head"}
    for frame, joint in ends.items():
        f = B.FRAMES.index(frame)
        bone = joints[..., B.H36M_17.index(joint), :] - origins[..., f, :]
        assert torch.allclose(rots[..., f, :, 2] * lengths[..., f, None], bone, atol=1e-3)
    # The pelvis frame's x points to the right hip, its y (forward) away from the body's back.
    pelvis = rots[..., 0, :, :]
    to_rhip = joints[..., 1, :] - joints[..., 0, :]
    assert bool(((pelvis[..., :, 0] * to_rhip).sum(-1) > 0).all())


def test_swing_is_the_minimal_rotation():
    a = torch.nn.functional.normalize(torch.randn(100, 3), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(100, 3), dim=-1)
    keep = (a * b).sum(-1) > -0.9
    S = B._swing(a[keep], b[keep])
    assert torch.allclose(matvec(S, a[keep]), b[keep], atol=1e-4)
    axis = torch.cross(a[keep], b[keep], dim=-1)
    assert torch.allclose(matvec(S, axis), axis, atol=1e-4)  # rotates about a x b only


def test_body_primitives_follow_the_skeleton_and_appearance_is_per_subject():
    joints = _walk(3)[0]  # (T, 17, 3)
    lengths = torch.cat([torch.zeros(3, 1), B.H36M_17.bone_lengths(joints)], -1)
    bodies = B.make_bodies(torch.tensor([4, 9]), lengths[:2], seed=0)
    again = B.make_bodies(torch.tensor([9]), lengths[1:2], seed=0)
    assert torch.equal(bodies.colors[1], again.colors[0])  # subject 9 looks the same whoever else is there
    assert not torch.equal(bodies.colors[0], bodies.colors[1])
    ell = B.ellipsoids(joints, torch.zeros(3, dtype=torch.long), bodies)
    assert ell.shape == (3, len(B.PRIMITIVES))
    # A limb's ellipsoid spans its bone: the thigh's centre is 45% down the thigh.
    thigh = B.PRIM_NAMES.index("r_thigh")
    expected = joints[:, 1] + 0.45 * (joints[:, 2] - joints[:, 1])
    assert torch.allclose(ell.center[:, thigh], expected, atol=1e-3)
    # The feet reach below the ankles (soles), the skull above the neck.
    foot = B.PRIM_NAMES.index("r_foot")
    assert bool((ell.lowest_z()[:, foot] < joints[:, 3, 2] - 40).all())
    n = 50
    unit = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)
    prim = torch.randint(0, len(B.PRIMITIVES), (n,))
    color = B.albedo(bodies, torch.zeros(n, dtype=torch.long), prim, unit, ell.radii[0, prim])
    assert color.shape == (n, 3) and float(color.min()) >= 0 and float(color.max()) <= 1


def test_background_rays_hit_floor_wall_and_ceiling_where_expected():
    scenes = make_scenes(2, 4, seed=3)
    eye = torch.tensor([[0.0, -4000.0, 1500.0]])
    R, t = look_at(eye, torch.tensor([[0.0, 0.0, 1500.0]]))  # level view towards +y
    K = intrinsics(20.0, (16.0, 16.0))  # rows 0 and 31 look 37.8 degrees up and down
    rgb, ground, points = background(scenes, torch.tensor([1]), K, R, eye, 32, 32, torch.zeros(1, 2), torch.zeros(1),
                                     torch.tensor([9000.0]))  # fmt: skip
    assert rgb.shape == (1, 3, 32, 32) and float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    # Bottom row: the floor (z = 0), 1500 / tan(37.8 deg) = 1935 mm ahead; its floor position is reported.
    assert points[0, 2, 31].abs().max().item() < 1e-2
    assert points[0, 1, 31, 16].item() == pytest.approx(-4000.0 + 1500.0 * 20.0 / 15.5, rel=1e-4)
    assert torch.equal(ground[0, :, 31], points[0, :2, 31])
    # Middle rows: the round wall of radius 9 m; top row: the ceiling at the scene's wall height.
    assert points[0, :2, 15, 16].norm().item() == pytest.approx(9000.0, rel=1e-4)
    assert points[0, 2, 0, 16].item() == pytest.approx(scenes.wall_height[1].item(), rel=1e-5)
    assert bool((ground[0, :, :16] > 1e8).all())  # no floor above the horizon
    # The contact shadow darkens the floor by half at its centre and not at all beyond its radius.
    shade = contact_shadow(ground, points[0, :2, 31, 16].view(1, 2))
    assert shade[0, 0, 31, 16].item() == pytest.approx(0.5) and shade[0, 0, 31, 0].item() == 1.0
    assert bool((shade[0, 0, :16] == 1).all())


def test_rig_cameras_look_at_the_target_from_their_distance_and_height():
    scenes = make_scenes(1, 4, seed=0)
    target_xy = torch.tensor([[100.0, 200.0]]).expand(4, 2)
    cams = rig_cameras(scenes, torch.zeros(4, dtype=torch.long), torch.arange(4), target_xy, torch.full((4,), 50.0),
                       torch.ones(4), torch.zeros(4))  # fmt: skip
    target = torch.tensor([100.0, 200.0, 50.0]) + torch.tensor([0.0, 0.0, 1.0]) * scenes.target_height[0]
    uv = matvec(cams["K"], matvec(cams["R"], target.expand(4, 3)) + cams["t"])
    assert torch.allclose(uv[:, :2] / uv[:, 2:], scenes.cam_center[0], atol=1e-2)  # the target at the principal point
    horizontal = (cams["eye"][:, :2] - torch.tensor([100.0, 200.0])).norm(dim=-1)
    assert torch.allclose(horizontal, scenes.cam_distance[0], rtol=1e-5)
    assert torch.allclose(cams["eye"][:, 2], 50.0 + scenes.cam_height[0])
