"""The shared kit of the image methods: heads, SPADE, encoder-decoder, kinematics, augmentation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from datamodules.cameras import project
from datamodules.render.bodies import PARTS
from datamodules.skeleton import H36M_17
from methods.augment import PoseAugment, hflip, rotate
from methods.kinematics import (
    H36M_REST_DIRECTIONS,
    canonical_rotation,
    face_vector,
    forward_kinematics,
    limbs_to_pose,
    pose_to_limbs,
)
from methods.nn.encdec import EncoderDecoder
from methods.nn.heads import (
    FCHead,
    VolumetricHead,
    depth_to_normalized,
    normalized_to_depth,
    normalized_to_pixels,
    pixels_to_normalized,
    soft_argmax_2d,
    soft_argmax_3d,
    volume_to_2d,
)
from methods.nn.spade import SPADE, SPADEResBlock

# --- heads -----------------------------------------------------------------------------------------


def test_soft_argmax_one_hot_and_midpoint():
    D, H, W = 5, 6, 7
    vol = torch.zeros(2, 3, D, H, W)
    vol[0, 0, 1, 2, 3] = 100.0  # one voxel (d=1, h=2, w=3)
    vol[1, 2, 0, 5, 6] = 100.0  # two equal voxels: (0, 5, 6) and (4, 1, 0)
    vol[1, 2, 4, 1, 0] = 100.0
    xyz = soft_argmax_3d(vol)
    assert torch.allclose(xyz[0, 0], torch.tensor([-1 + 2 * 3 / 6, -1 + 2 * 2 / 5, -1 + 2 * 1 / 4]), atol=1e-6)
    a = torch.tensor([1.0, 1.0, -1.0])  # (w=6, h=5, d=0)
    b = torch.tensor([-1.0, -1 + 2 * 1 / 5, 1.0])  # (w=0, h=1, d=4)
    assert torch.allclose(xyz[1, 2], (a + b) / 2, atol=1e-6)
    assert torch.allclose(xyz[0, 1], torch.zeros(3), atol=1e-6)  # uniform volume: the centre
    xy, heat = volume_to_2d(vol, return_heatmaps=True)
    assert torch.allclose(xy, xyz[..., :2], atol=1e-6)
    assert heat.shape == (2, 3, H, W) and torch.allclose(heat.sum((-1, -2)), torch.ones(2, 3))
    hm = torch.zeros(1, 1, H, W)
    hm[0, 0, 4, 2] = 100.0
    assert torch.allclose(soft_argmax_2d(hm)[0, 0], torch.tensor([-1 + 2 * 2 / 6, -1 + 2 * 4 / 5]), atol=1e-6)


def test_coordinate_helpers():
    # heatmap 8 wide x 4 high over a 64 x 32 crop: stride 8; cell (col 3, row 1) centre at (28, 12) px
    xy = torch.tensor([-1 + 2 * 3 / 7, -1 + 2 * 1 / 3])
    px = normalized_to_pixels(xy, heatmap_size=(4, 8), crop_size=(32, 64))
    assert torch.allclose(px, torch.tensor([28.0, 12.0]))
    assert torch.allclose(pixels_to_normalized(px, (4, 8), (32, 64)), xy)
    z = torch.tensor([-1.0, 0.0, 1.0])
    assert torch.allclose(normalized_to_depth(z, (-1000, 1000)), torch.tensor([-1000.0, 0.0, 1000.0]))
    assert torch.allclose(depth_to_normalized(torch.tensor([500.0]), (-1000, 1000)), torch.tensor([0.5]))


def test_volumetric_and_fc_heads():
    head = VolumetricHead(8, num_joints=3, depth_bins=4, deconv_layers=2, filters=8)
    x = torch.randn(2, 8, 4, 5).to(memory_format=torch.channels_last)
    vol = head(x)
    assert vol.shape == (2, 3, 4, 16, 20)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) and m.bias is None for m in head.modules()) == 2
    assert soft_argmax_3d(vol).shape == (2, 3, 3)
    fc = FCHead(12, 6, hidden=(16, 16), dropout=0.1, blocks=1, out_shape=(2, 3))
    assert fc(torch.randn(4, 3, 2, 2)).shape == (4, 2, 3)
    with pytest.raises(ValueError, match="out_shape"):
        FCHead(12, 5, out_shape=(2, 3))


# --- SPADE and the encoder-decoder -----------------------------------------------------------------


def test_spade_zero_init_is_plain_normalisation():
    torch.manual_seed(0)
    x, label = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 4, 4)
    plain = F.batch_norm(x, None, None, training=True)
    assert torch.allclose(SPADE(4, 3, hidden=8, zero_init=True)(x, label), plain, atol=1e-6)
    inst = SPADE(4, 3, hidden=8, norm="instance", mode="bilinear", zero_init=True)
    assert torch.allclose(inst(x, label), F.instance_norm(x), atol=1e-6)

    block = SPADEResBlock(4, 6, label_channels=3, hidden=8, zero_init=True)
    act = torch.nn.LeakyReLU(0.2)
    bn = lambda t: F.batch_norm(t, None, None, training=True)
    expected = block.conv_s(bn(x)) + block.conv_1(act(bn(block.conv_0(act(bn(x))))))
    assert torch.allclose(block(x, label), expected, atol=1e-5)

    block = SPADEResBlock(4, 4, label_channels=3, hidden=8)  # nonzero gamma/beta: the labels matter
    assert not block.learned_shortcut
    assert not torch.allclose(block(x, label), block(x, torch.randn_like(label)))


def test_encoder_decoder_shapes_gradients_and_errors():
    torch.manual_seed(0)
    net = EncoderDecoder(3, 2, base=4, depth=3)
    x = torch.randn(2, 3, 16, 24, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 2, 16, 24)
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()

    cond_net = EncoderDecoder(3, 3, base=4, depth=2, cond_channels=5)
    xc = torch.randn(2, 3, 12, 8).to(memory_format=torch.channels_last)
    cond = torch.randn(2, 5, 6, 4)
    assert cond_net(xc, cond).shape == (2, 3, 12, 8)
    assert not torch.allclose(cond_net(xc, cond), cond_net(xc, torch.randn_like(cond)))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 8"):
        net(torch.randn(1, 3, 20, 24))
    with pytest.raises(ValueError, match="cond"):
        cond_net(xc)


def test_encoder_decoder_without_skips_reads_only_the_bottleneck():
    torch.manual_seed(0)
    net = EncoderDecoder(3, 2, base=4, depth=2, skips=False)
    # no concatenation: each decoder block reads the upsampled features alone (widths 16 -> 8 -> 4); with skips the
    # encoder's features at that scale are concatenated (twice the channels)
    assert [b[0].in_channels for b in net.blocks] == [8, 4]
    assert [b[0].in_channels for b in EncoderDecoder(3, 2, base=4, depth=2).blocks] == [16, 8]
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 2, 16, 16)
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0


# --- kinematics ------------------------------------------------------------------------------------

CHILDREN = [c for _, c in H36M_17.bones]


def test_fk_bone_lengths_rest_pose_and_knee():
    torch.manual_seed(0)
    J = 17
    lengths = torch.rand(3, J) * 400 + 50
    joints = forward_kinematics(torch.randn(3, J, 3), lengths, root=torch.randn(3, 3))
    assert torch.allclose(H36M_17.bone_lengths(joints), lengths[:, CHILDREN], rtol=1e-5)

    L = torch.arange(1.0, 18.0)  # bone ending at joint j has length j + 1
    rest = forward_kinematics(torch.zeros(1, J, 3), L)[0]
    name = lambda n: rest[H36M_17.index(n)]
    assert torch.allclose(name("RFoot"), torch.tensor([0.0, -2.0, -3.0 - 4.0]))
    assert torch.allclose(name("LWrist"), torch.tensor([0.0, 12 + 13 + 14.0, 8 + 9.0]))
    assert torch.allclose(name("Head"), torch.tensor([0.0, 0.0, 8 + 9 + 10 + 11.0]))

    knee = H36M_17.index("RKnee")
    rot = torch.zeros(1, J, 3)
    rot[0, knee] = torch.tensor([0.0, math.pi / 2, 0.0])  # +90 degrees about +Y (the body's left)
    bent = forward_kinematics(rot, L)[0]
    foot = H36M_17.index("RFoot")
    expected = rest.clone()
    expected[foot] = rest[knee] + L[foot] * torch.tensor([-1.0, 0.0, 0.0])  # shin turns backwards
    assert torch.allclose(bent, expected, atol=1e-5)

    from kornia.geometry.conversions import axis_angle_to_rotation_matrix

    aa = torch.randn(2, J, 3)
    mats = axis_angle_to_rotation_matrix(aa.reshape(-1, 3)).reshape(2, J, 3, 3)
    assert torch.allclose(forward_kinematics(aa, L), forward_kinematics(mats, L), atol=1e-4)


def test_limbs_round_trip_and_bone_lengths():
    torch.manual_seed(0)
    pose = torch.randn(5, 17, 3, dtype=torch.float64) * 300 + torch.tensor([0.0, 0.0, 3000.0], dtype=torch.float64)
    limbs, lengths, R = pose_to_limbs(pose)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(5, dtype=torch.float64))
    back = limbs_to_pose(limbs, lengths)
    canon = (pose - pose[:, :1]) @ R.transpose(-1, -2)
    assert torch.allclose(back, canon, atol=1e-9)
    assert torch.allclose(face_vector(back), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand(5, 3))

    raw = torch.randn(4, 17, 3)  # unnormalised network output: lengths still exact
    bl = torch.rand(17) * 300 + 100
    out = limbs_to_pose(raw, bl)
    assert torch.allclose(H36M_17.bone_lengths(out), bl[CHILDREN].expand(4, -1), rtol=1e-5)

    # the T-pose rest pose is canonical already; the right knee's limb in the hip's frame by hand:
    # a = (0, -1, 0) (hip limb), b = face = (1, 0, 0), c = a x b = (0, 0, 1); shin (0, 0, -1) -> (0, 0, -1)
    rest = forward_kinematics(torch.zeros(1, 17, 3), torch.full((17,), 100.0))
    assert torch.allclose(canonical_rotation(rest), torch.eye(3).expand(1, 3, 3), atol=1e-6)
    rest_limbs, _, _ = pose_to_limbs(rest)
    assert torch.allclose(rest_limbs[0, H36M_17.index("RKnee")], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)
    assert torch.allclose(rest_limbs[0, H36M_17.index("LHip")], H36M_REST_DIRECTIONS[H36M_17.index("LHip")])


# --- augmentation ----------------------------------------------------------------------------------


def _rotation(n: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3))
    return q * torch.linalg.det(q).sign().reshape(n, 1, 1)


def _batch(B=4, H=24, W=32, fy=40.0, skew=0.0):
    torch.manual_seed(1)
    K = torch.tensor([[40.0, skew, 15.3], [0.0, fy, 11.7], [0.0, 0.0, 1.0]]).expand(B, 3, 3).clone()
    X = torch.randn(B, 17, 3) * torch.tensor([300.0, 300.0, 200.0]) + torch.tensor([0.0, 0.0, 2500.0])
    R, t = _rotation(B), torch.randn(B, 3) * 1000
    return {
        "image": torch.rand(B, 3, H, W),
        "mask": torch.rand(B, 1, H, W) > 0.5,
        "parts": torch.randint(0, len(PARTS), (B, H, W)),
        "depth": torch.rand(B, 1, H, W) * 3000,
        "joints_3d": X,
        "joints_2d": project(X, K),
        "visible": torch.rand(B, 17) > 0.3,
        "K": K,
        "R": R,
        "t": t,
        "joints_3d_world": (X - t.unsqueeze(1)) @ R,
        "subject": torch.arange(B),
    }


def _assert_consistent(b, tol=1e-3):
    assert (project(b["joints_3d"], b["K"]) - b["joints_2d"]).abs().max() < tol
    world_to_cam = b["joints_3d_world"] @ b["R"].transpose(-1, -2) + b["t"].unsqueeze(-2)
    assert torch.allclose(world_to_cam, b["joints_3d"], atol=1e-2)
    assert torch.allclose(torch.linalg.det(b["R"]), torch.ones(b["R"].shape[:-2]), atol=1e-5)


def test_flip_twice_identity_and_consistency():
    b = _batch()
    which = torch.tensor([True, False, True, True])
    f = hflip(b, which)
    _assert_consistent(f)
    W = b["image"].shape[-1]
    assert torch.equal(f["image"][0], b["image"][0].flip(-1)) and torch.equal(f["image"][1], b["image"][1])
    lf, rf = PARTS.index("l_forearm"), PARTS.index("r_forearm")
    r, c = 3, 5
    parts = b["parts"].clone()
    parts[0, r, c] = rf
    assert hflip({**b, "parts": parts}, which)["parts"][0, r, W - 1 - c] == lf
    lw, rw = H36M_17.index("LWrist"), H36M_17.index("RWrist")
    assert torch.allclose(f["joints_2d"][0, lw, 0], W - b["joints_2d"][0, rw, 0])
    ff = hflip(f, which)
    for key, value in b.items():
        if value.is_floating_point():
            assert torch.allclose(ff[key], value, atol=1e-4), key
        else:
            assert torch.equal(ff[key], value), key


def test_rotation_consistency_any_intrinsics():
    for fy, skew in ((40.0, 0.0), (52.0, 3.0)):  # square pixels, then fx != fy with skew
        b = _batch(fy=fy, skew=skew)
        angle = torch.tensor([0.3, 0.0, -1.2, math.pi / 2])
        rb = rotate(b, angle)
        _assert_consistent(rb)
        assert torch.equal(rb["image"][1], b["image"][1]) and torch.equal(rb["K"], b["K"])
        assert rb["parts"].dtype == torch.int64 and rb["mask"].dtype == torch.bool


def _blob(center: torch.Tensor, H: int, W: int, sigma: float = 1.5) -> torch.Tensor:
    """(B, 2) continuous px -> (B, 3, H, W) Gaussian dots (pixel (r, c) centred at (c + .5, r + .5))."""
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    d2 = (u - center[:, 0, None, None]) ** 2 + (v - center[:, 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma**2)).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def _centroid(image: torch.Tensor) -> torch.Tensor:
    H, W = image.shape[-2:]
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    w = image[:, 0]
    return torch.stack([(w * u).sum((-1, -2)), (w * v).sum((-1, -2))], -1) / w.sum((-1, -2)).unsqueeze(-1)


def test_dot_at_joint_lands_at_transformed_joint():
    H, W = 48, 64
    b = _batch(H=H, W=W)
    b["K"][:, :2, 2] = torch.tensor([30.7, 22.2])
    b["joints_3d"][:, 0] = torch.tensor(
        [[100.0, -80.0, 2500.0], [-200.0, 50.0, 2000.0], [0.0, 0.0, 3000.0], [150, 150, 2200]]
    )
    b["joints_2d"] = project(b["joints_3d"], b["K"])
    b["joints_3d_world"] = (b["joints_3d"] - b["t"].unsqueeze(1)) @ b["R"]
    b["image"] = _blob(b["joints_2d"][:, 0], H, W)
    assert (_centroid(b["image"]) - b["joints_2d"][:, 0]).abs().max() < 0.05
    f = hflip(b, torch.tensor([True, True, False, True]))
    assert (_centroid(f["image"]) - f["joints_2d"][:, 0]).abs().max() < 0.05  # pelvis maps to itself
    r = rotate(b, torch.tensor([0.4, -0.7, 1.0, 2.5]))
    assert (_centroid(r["image"]) - r["joints_2d"][:, 0]).abs().max() < 0.1


def test_pose_augment_module():
    b = _batch()
    b["image"] = b["image"].to(memory_format=torch.channels_last)
    aug = PoseAugment(flip_p=0.5, rotate_p=0.7, max_degrees=40)
    torch.manual_seed(3)
    out = aug(b)
    _assert_consistent(out)
    assert out["image"].shape == b["image"].shape and 0 <= out["image"].min() and out["image"].max() <= 1
    assert torch.equal(out["subject"], b["subject"])
    assert out["image"].is_contiguous(memory_format=torch.channels_last)
    aug.eval()
    assert all(aug(b)[k] is b[k] for k in b)
    with pytest.raises(ValueError, match="distortion"):
        hflip({**b, "distortion": torch.zeros(4, 5)}, torch.ones(4, dtype=torch.bool))

    # views: (B, V, ...) with one flip per sample shared by its views, one angle per view
    mv = {k: v.reshape(2, 2, *v.shape[1:]) for k, v in b.items() if k != "joints_3d_world"}
    aug.train()
    out = PoseAugment(flip_p=1.0, rotate_p=1.0)(mv)
    assert out["image"].shape == (2, 2, 3, 24, 32)
    assert (project(out["joints_3d"], out["K"]) - out["joints_2d"]).abs().max() < 1e-3
