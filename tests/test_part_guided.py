"""Part-guided synthesis (Kundu et al. 2020): T_fk, the puppet's warps and depth order, Algorithm 1's frozen halves,
the F1 measures, the background estimate of the pair data, and a tiny fit through the CLI."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny import tiny_humans_args

from benchmark.__main__ import main
from datamodules.motion.synthetic import SyntheticPoses
from datamodules.render.video_background import SyntheticHumanPairs
from datamodules.skeleton import H36M_17
from methods.kinematics import face_vector, pose_to_limbs
from methods.part_guided import (
    DEFAULT_BONES_MM,
    PartGuided,
    group_norms,
    saliency,
    segmentation_counts,
    segmentation_f1,
    silhouette_loss,
)
from methods.puppet import PUPPET_PARTS, Puppet, affine_from_anchors, depth_aware_parts, plot_puppet

ROOT = Path(__file__).resolve().parents[1]
BONES = torch.tensor(DEFAULT_BONES_MM)


def tiny_model(**kwargs) -> PartGuided:
    torch.manual_seed(0)
    opts = dict(image_size=32, pose_hidden=16, appearance_channels=4, decoder_base=4, decoder_depth=2,
                template_size=32, pss_k=(4,))  # fmt: skip
    model = PartGuided(prior=SyntheticPoses(train_subjects=[9], val_subjects=[10], test_subjects=[11],
                                            actions=["walk"], clips_per_action=1, frames_per_clip=10),
                       **{**opts, **kwargs})  # fmt: skip
    model.prior_limbs = pose_to_limbs(model.prior.load_clips("train").joints_world.float())[0]
    return model


def tiny_pairs(size: int = 32, **kwargs) -> SyntheticHumanPairs:
    motion = SyntheticPoses(train_subjects=[1], val_subjects=[2], test_subjects=[3], actions=["walk"],
                            clips_per_action=1, frames_per_clip=20)  # fmt: skip
    return SyntheticHumanPairs(motion=motion, mode="pair", image_size=size, num_workers=0, video_frames=20,
                               num_scenes=1, **kwargs)  # fmt: skip


# -- T_fk -----------------------------------------------------------------------------------------------------
def test_fk_keeps_bone_lengths_and_puts_the_face_vector_on_x():
    model = tiny_model()
    torch.manual_seed(1)
    limbs, cam = torch.randn(5, 17 * 3), torch.randn(5, 6)
    pose = model.pose(limbs, cam)
    lengths = H36M_17.bone_lengths(pose["p3d"])
    torch.testing.assert_close(lengths, model.bone_lengths[1:].expand(5, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(face_vector(pose["p3d"]), torch.tensor([1.0, 0, 0]).expand(5, 3), atol=1e-5, rtol=0)
    # the camera only rotates and moves it: camera-frame bone lengths are the same
    torch.testing.assert_close(H36M_17.bone_lengths(pose["X"]), lengths, atol=1e-5, rtol=0)
    # the frontal camera (zero angles) looks at the face: body forward (+X) is the camera's -z, left is +x
    R, _ = model.camera(torch.zeros(1, 6))
    torch.testing.assert_close(R[0] @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 0, -1]))
    torch.testing.assert_close(R[0] @ torch.tensor([0.0, 1, 0]), torch.tensor([1.0, 0, 0]))


# -- the puppet -----------------------------------------------------------------------------------------------
def test_segment_affine_maps_anchors_onto_joints():
    canon = torch.tensor([[[10.0, 5.0], [10.0, 25.0]], [[3.0, 4.0], [7.0, 1.0]]])
    target = torch.tensor([[[40.0, 40.0], [55.0, 40.0]], [[0.0, 0.0], [-6.0, 8.0]]])
    A = affine_from_anchors(canon, target, torch.tensor([0.5, 2.0]), min_length_ratio=0.1)
    homog = torch.cat([canon, torch.ones(2, 2, 1)], dim=-1)
    torch.testing.assert_close(homog @ A.transpose(-1, -2), target)
    # across the bone: a unit step perpendicular to the canonical bone becomes `across` px
    perp = A[0, :, :2] @ torch.tensor([1.0, 0.0])
    assert math.isclose(float(perp.norm()), 0.5, rel_tol=1e-6)


def test_puppet_warp_carries_canonical_anchors_onto_target_joints():
    puppet = Puppet(BONES, template_size=64)
    # target: the template joints turned by 30 degrees, halved and shifted (a similarity)
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    rot = torch.tensor([[c, -s], [s, c]])
    q = (0.5 * puppet.template_joints @ rot.T + torch.tensor([20.0, 12.0])).unsqueeze(0)
    A = puppet.affines(q, 0.5)[0]  # (L, 2, 3)
    for part, (a, b) in zip(PUPPET_PARTS[1:], puppet.limb_joints):
        l = PUPPET_PARTS.index(part)  # noqa: E741
        for j in (a, b):
            mapped = A[l, :, :2] @ puppet.template_joints[j] + A[l, :, 2]
            torch.testing.assert_close(mapped, q[0, j], atol=1e-4, rtol=0)
    # the torso's four anchors: shoulder and hip midpoints land exactly, the corners too (a similarity)
    for j in puppet.torso_joints:
        torch.testing.assert_close(A[0, :, :2] @ puppet.template_joints[j] + A[0, :, 2], q[0, j], atol=1e-3, rtol=0)
    # the resampled maps: phi_p at each posed anchor equals phi_c at the canonical anchor
    phi_p, _ = puppet.warp(q, 0.5, (48, 48))

    def sample(maps, pts, size):  # bilinear value at pixel coordinates (centre of pixel i at i + 0.5)
        grid = (2 * pts / size - 1).view(1, 1, -1, 2)
        return F.grid_sample(maps.unsqueeze(1), grid.expand(maps.shape[0], -1, -1, -1), align_corners=False)[:, 0, 0]

    ankles = [H36M_17.index("LKnee"), H36M_17.index("RElbow")]
    canon_vals = sample(puppet.phi_c, puppet.template_joints[ankles], 64)
    posed_vals = sample(phi_p[0], q[0, ankles], 48)
    torch.testing.assert_close(posed_vals, canon_vals, atol=0.08, rtol=0)
    assert posed_vals.amax() > 0.5


def test_depth_aware_softmax_matches_hand_computation():
    phi_p = torch.tensor([1.0, 1.0]).view(1, 2, 1, 1)
    phi_d, bar, y = depth_aware_parts(phi_p, torch.tensor([[1.0, 2.0]]), tau=1.0)
    e1, e2 = math.exp(1.0), math.exp(0.5)
    d = torch.tensor([e1, e2]) / (e1 + e2)
    torch.testing.assert_close(phi_d.flatten(), d)
    logits = torch.tensor([d[0], d[1], 1 - d[0]])
    torch.testing.assert_close(bar.flatten(), torch.softmax(logits, 0))
    assert int(y) == 0


def test_nearer_of_two_overlapping_limbs_wins():
    H = W = 16
    phi_p = torch.zeros(1, 3, H, W)
    phi_p[0, 0, :, :10] = 1.0  # part 0 covers columns 0-9, part 1 columns 6-15: overlap 6-9
    phi_p[0, 1, :, 6:] = 1.0
    for near, far in ((0, 1), (1, 0)):
        depth = torch.ones(1, 3)
        depth[0, near], depth[0, far] = 0.9, 1.1
        _, _, y = depth_aware_parts(phi_p, depth, tau=0.1)
        assert (y[0, :, 6:10] == near).all()
        assert (y[0, :, :6] == 0).all() and (y[0, :, 10:] == 1).all()
    phi_p[0, :, :, :] = 0
    _, _, y = depth_aware_parts(phi_p, torch.ones(1, 3), tau=0.1)
    assert (y == 3).all()  # nothing: background (channel L)
    # the puppet itself: a left forearm across the torso wins in front of it and loses behind it
    puppet = Puppet(BONES, template_size=64)
    q = puppet.template_joints.clone().unsqueeze(0)
    le, lw = H36M_17.index("LElbow"), H36M_17.index("LWrist")
    mid = puppet.template_joints[puppet.torso_joints].mean(0)
    q[0, le], q[0, lw] = mid + torch.tensor([12.0, 0.0]), mid - torch.tensor([12.0, 0.0])
    probe = mid.round().long()
    for forearm_depth, winner in ((0.6, "l_forearm"), (1.4, "torso")):  # 20 cm in front / behind (0.5 m unit)
        depth = torch.ones(1, 17)
        depth[0, [le, lw]] = forearm_depth
        out = puppet(q, depth, 1.0, (64, 64))
        assert int(out["y_p"][0, probe[1], probe[0]]) == PUPPET_PARTS.index(winner)


def test_puppet_figure(tmp_path):
    puppet = Puppet(BONES, template_size=48)
    path = plot_puppet(puppet, tmp_path / "puppet.png", puppet.template_joints[None], torch.ones(1, 17), (48, 48))
    assert path.stat().st_size > 1000


# -- Algorithm 1: each half of the energy minimisation moves only its own network ------------------------------
def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> int:
    return sum(not torch.equal(v, before[k]) for k, v in module.named_parameters())


@pytest.mark.parametrize("frozen", ["decoder", "encoder"])
def test_energy_step_moves_only_the_unfrozen_network(frozen):
    model = tiny_model()
    batch = tiny_pairs().dataset("train").__getitems__([0, 3, 5, 7])
    opts = model.configure_optimizers()
    trained = "encoder" if frozen == "decoder" else "decoder"
    losses = model.losses(batch, encoder_step=trained == "encoder")
    enc, dec = _snapshot(model.encoder), _snapshot(model.decoder)
    model.update(losses, opts, [k for k, (_, which) in enumerate(model._groups()) if which == trained])
    moved = {"encoder": _changed(model.encoder, enc), "decoder": _changed(model.decoder, dec)}
    assert moved[frozen] == 0
    assert moved[trained] > 0
    # the consistency step (Algorithm 1's last line) moves both
    losses = model.losses(batch, encoder_step=False)
    enc, dec = _snapshot(model.encoder), _snapshot(model.decoder)
    model.update(losses, opts, [k for k, (_, which) in enumerate(model._groups()) if which == "all"])
    assert _changed(model.encoder, enc) > 0 and _changed(model.decoder, dec) > 0


def test_cycle_pass_leaves_the_encoders_batchnorm_statistics_to_real_images():
    model = tiny_model()
    batch = tiny_pairs().dataset("train").__getitems__([0, 3, 5, 7])
    reference = copy.deepcopy(model)
    reference.encoder(torch.cat([batch["image"][:, 0], batch["image"][:, 1]]))  # the real images only
    model.losses(batch, encoder_step=True)
    bn = model.encoder.backbone.stem[1]
    torch.testing.assert_close(bn.running_mean, reference.encoder.backbone.stem[1].running_mean)
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert all(m.training for m in model.encoder.modules())  # back in training mode afterwards


def test_ablation_switches_change_the_losses():
    batch = tiny_pairs().dataset("train").__getitems__([0, 3])
    assert set(tiny_model().losses(batch, False)) == {"u", "c", "seg", "pz", "as"}
    assert set(tiny_model(use_prior=False).losses(batch, False)) == {"u", "c", "seg"}
    assert set(tiny_model(kinematic=False).losses(batch, False)) == {"u", "c", "seg", "pz", "as", "bone"}
    assert set(tiny_model(use_saliency=False).losses(batch, False)) == {"u", "c", "seg", "pz", "as"}
    with pytest.raises(ValueError, match="use_prior is true but no prior"):
        PartGuided(prior=None, image_size=32)
    with pytest.raises(ValueError, match="pair"):
        tiny_model().losses({"image": torch.rand(2, 3, 32, 32)}, False)


def test_image_losses_against_hand_computation():
    # two pixels, one channel: f-hat, I-hat, background B, target I_t, the posed puppet's w_fg
    out = {"fg": torch.tensor([0.5, 1.0]).view(1, 1, 1, 2), "image": torch.tensor([0.8, 0.2]).view(1, 1, 1, 2),
           "w_fg": torch.tensor([1.0, 0.25]).view(1, 1, 1, 2)}  # fmt: skip
    B, I_t = torch.tensor([0.4, 0.6]).view(1, 1, 1, 2), torch.tensor([0.5, 0.1]).view(1, 1, 1, 2)
    model = tiny_model()
    # composite: 0.5 * 0.8 + 0.5 * 0.4 = 0.6 and 1.0 * 0.2 = 0.2; L_I^u = (|0.6 - 0.5| + |0.2 - 0.1|) / 2
    torch.testing.assert_close(model.composite(out["fg"], out["image"], B), torch.tensor([0.6, 0.2]).view(1, 1, 1, 2))
    assert math.isclose(float(model.loss_u(out, I_t, B)), 0.1, rel_tol=1e-6)
    # no background estimate (w/o m_sal): I-hat itself is the frame, (|0.8 - 0.5| + |0.2 - 0.1|) / 2
    assert math.isclose(float(model.loss_u(out, I_t, None)), 0.2, rel_tol=1e-6)
    # L_I^c: (1 - w_fg) f-hat |I-hat - B| = (0 * 0.5 * 0.4 + 0.75 * 1.0 * 0.4) / 2; without B: 0.75 * 0.2 / 2
    assert math.isclose(float(model.loss_c(out, B)), 0.15, rel_tol=1e-6)
    assert math.isclose(float(model.loss_c(out, None)), 0.075, rel_tol=1e-6)
    # a decoder that paints nothing pays the person's contrast to the background: mean |B - I_t|
    empty = {**out, "fg": torch.zeros(1, 1, 1, 2)}
    assert math.isclose(float(model.loss_u(empty, I_t, B)), (0.1 + 0.5) / 2, rel_tol=1e-6)


def test_saliency_and_silhouette_loss_against_hand_computation():
    # saliency: max over channels of |I - B| / scale, capped at 1
    image = torch.tensor([[0.5, 0.1], [0.9, 0.3]]).view(1, 2, 1, 2)  # 2 channels, 2 pixels
    background = torch.tensor([[0.4, 0.1], [0.1, 0.2]]).view(1, 2, 1, 2)
    torch.testing.assert_close(saliency(image, background, 0.25), torch.tensor([1.0, 0.4]).view(1, 1, 1, 2))
    # sum |w - m| / sum (w + m): equal maps cost 0
    m = torch.tensor([[1.0, 0.5], [0.0, 0.2]]).view(1, 1, 2, 2)
    assert float(silhouette_loss(m, m, levels=2)) == 0.0
    # one pixel apart on a 2 x 2 grid: 2 / 2 = 1 at full size, 0 once pooled to one pixel; mean of the levels 0.5
    w = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    m = torch.tensor([[0.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    assert math.isclose(float(silhouette_loss(w, m, levels=1)), 1.0, rel_tol=1e-6)
    assert math.isclose(float(silhouette_loss(w, m, levels=2)), 0.5, rel_tol=1e-6)
    # half covered: |1 - 1| + |0 - 1| over 1 + 2 = 1/3 at both levels (pooled: 0.25 vs 0.5, 0.25 / 0.75)
    m = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    assert math.isclose(float(silhouette_loss(w, m, levels=2)), 1 / 3, rel_tol=1e-6)


def test_silhouette_term_trains_the_pose_heads_only():
    model = tiny_model(silhouette=True)
    batch = tiny_pairs().dataset("train").__getitems__([0, 3, 5, 7])
    losses = model.losses(batch, encoder_step=False)
    assert set(losses) == {"u", "c", "seg", "pz", "as", "sil"} and 0 < float(losses["sil"].detach()) <= 1
    grads = torch.autograd.grad(losses["sil"], [model.encoder.limbs[-1].weight, model.encoder.camera[-1].weight,
                                                model.decoder.out.weight], allow_unused=True, retain_graph=True)  # fmt: skip
    assert grads[0].abs().sum() > 0 and grads[1].abs().sum() > 0 and grads[2] is None
    opts = model.configure_optimizers()
    k = [name for name, _ in model._groups()].index("sil")
    enc, dec = _snapshot(model.encoder), _snapshot(model.decoder)
    model.update(losses, opts, [k])
    assert _changed(model.encoder, enc) > 0 and _changed(model.decoder, dec) == 0
    with pytest.raises(ValueError, match="silhouette"):
        tiny_model(silhouette=True, use_saliency=False)


class _FeatureMap(torch.nn.Module):
    """A backbone whose stride-16 features are its input (a hand-made map) and whose stride-32 features are 0."""

    stage_channels = {16: 8, 32: 8}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        return {16: x, 32: torch.zeros(x.shape[0], 8, 1, 1)}


def _decoder_appearance(pool: bool, row: int, col: int) -> torch.Tensor:
    """The appearance channels of the decoder's input when the source's only feature is a 4.0 at (row, col)."""
    model = tiny_model(appearance_pool=pool).eval()  # one sample: the heads' BatchNorm on running statistics
    model.encoder.backbone, model.encoder.trunk = _FeatureMap(), torch.nn.Linear(8, 16)
    head = torch.nn.Conv2d(8, 4, 1, bias=False)  # appearance channel k reads feature channel k
    head.weight.data = torch.eye(4, 8).view(4, 8, 1, 1)
    model.encoder.appearance = head
    feats = torch.zeros(1, 8, 4, 4)
    feats[0, 0, row, col] = 4.0  # "the person" on the 4 x 4 grid
    _, _, a_s = model.encoder(feats)
    seen = []
    model.decoder.register_forward_hook(lambda m, inp, out: seen.append(inp[0][:, model.L :]))
    X = torch.tensor([[0.0, 0.0, model.z0]]) + torch.zeros(1, model.skeleton.num_joints, 3)
    model.render(X + torch.randn(1, model.skeleton.num_joints, 3) * 0.1, a_s)
    return seen[0]


def test_pooled_appearance_carries_no_layout():
    # pooled: the grid's mean, 4 / 16 = 0.25 in channel 0 and 0 elsewhere, at every pixel wherever the person is
    here, there = _decoder_appearance(True, 1, 2), _decoder_appearance(True, 3, 0)
    expected = torch.zeros(1, 4, 32, 32)
    expected[:, 0] = 0.25
    torch.testing.assert_close(here, expected)
    torch.testing.assert_close(there, expected)
    # the paper's spatial code keeps the layout: the person's cell shows where it was
    here, there = _decoder_appearance(False, 1, 2), _decoder_appearance(False, 3, 0)
    assert here[0, 0, 8:16, 16:24].mean() > 1.0 and there[0, 0, 8:16, 16:24].mean() < 0.1
    # with the real encoder the pooled code is the spatial code's mean (same weights)
    pooled, spatial = tiny_model(), tiny_model(appearance_pool=False)
    spatial.load_state_dict(pooled.state_dict())
    image = torch.rand(2, 3, 32, 32)
    a_pooled, a_spatial = pooled.encoder(image)[2], spatial.encoder(image)[2]
    assert a_pooled.shape == (2, 4, 1, 1) and a_spatial.shape == (2, 4, 2, 2)
    torch.testing.assert_close(a_pooled, a_spatial.mean(dim=(-2, -1), keepdim=True))


# -- evaluation ---------------------------------------------------------------------------------------------------
class _Stride32Map(_FeatureMap):
    """A backbone whose stride-32 features are its input."""

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        return {16: torch.zeros(x.shape[0], 256, 2, 2), 32: x}  # ResNet-18 stride-16 channels


@pytest.mark.parametrize("grid", [1, 2])
def test_pose_grid_keeps_the_layout_of_the_pose_features(grid):
    model = tiny_model(pose_grid=grid).eval()
    assert model.encoder.trunk[0].in_features == 512 * grid * grid  # ResNet-18's stride-32 channels per cell
    model.encoder.backbone, model.encoder.trunk = _Stride32Map(), torch.nn.Linear(8 * grid * grid, 16)
    seen = []
    model.encoder.trunk.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    feats = torch.zeros(1, 8, 4, 4)
    feats[0, 0, 0, 1] = 4.0  # top-left 2 x 2 cell of the grid
    model.encoder(feats)
    expected = torch.zeros(1, 8 * grid * grid)
    expected[0, 0] = 4.0 / 16 if grid == 1 else 4.0 / 4  # the mean over the whole map / over its cell
    torch.testing.assert_close(seen[0], expected)
    with pytest.raises(ValueError, match="pose_grid"):
        tiny_model(pose_grid=0)


def test_segmentation_f1_against_hand_counts():
    # classes: 0, 1 = parts, 2 = background; 8 pixels
    target = torch.tensor([0, 0, 1, 1, 2, 2, 2, 1])
    pred = torch.tensor([0, 1, 1, 2, 2, 0, 2, 1])
    counts = segmentation_counts(pred.view(1, 8), target.view(1, 8), 3)
    torch.testing.assert_close(counts, torch.tensor([[1.0, 2, 2], [1, 1, 1], [1, 1, 1]]))
    f1 = segmentation_f1(counts)
    # parts: F1_0 = 2/(2+1+1) = 0.5, F1_1 = 4/(4+1+1) = 2/3; fg vs bg: tp 4 (pixels 0,1,2,7), fp 1 (pixel 5), fn 1 (3)
    assert math.isclose(f1["f1_parts"], (0.5 + 2 / 3) / 2, rel_tol=1e-9)
    assert math.isclose(f1["f1_fg"], 8 / 10, rel_tol=1e-9)


def test_pair_background_is_the_temporal_median_without_the_person():
    dm = tiny_pairs(size=32, background_frames=5)
    batch = dm.dataset("train").__getitems__([0, 4, 9, 13])
    assert batch["image"].shape == (4, 2, 3, 32, 32) and batch["background"].shape == (4, 3, 32, 32)
    assert batch["frame"].shape == (4, 2)
    diff = (batch["image"][:, 1] - batch["background"]).abs().amax(1)
    mask = batch["mask"][:, 1, 0]
    assert diff[~mask].mean() < 0.5 * diff[mask].mean()
    assert "background" in dm.provides and dm.dataset("val").mode == "single"
    with pytest.raises(ValueError, match="mode: pair"):
        SyntheticHumanPairs(mode="single")


def test_group_norm_decoder_is_the_same_in_training_and_evaluation():
    block = group_norms(torch.nn.Sequential(torch.nn.Conv2d(1, 12, 1), torch.nn.BatchNorm2d(12)))
    assert isinstance(block[1], torch.nn.GroupNorm) and block[1].num_groups == 4  # gcd(8, 12)
    model = tiny_model(decoder_norm="group")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.decoder.modules())
    x = torch.randn(2, model.L + 4, 32, 32)
    torch.testing.assert_close(model.decoder.train()(x[:1]), model.decoder.eval()(x)[:1])  # no batch statistics
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in tiny_model().decoder.modules())  # the default: batch
    with pytest.raises(ValueError, match="decoder_norm"):
        tiny_model(decoder_norm="instance")


def test_background_bias_sets_the_initial_foreground():
    """The bias is added to y-hat's background logit only; with equal logits otherwise f-hat = L / (L + e^bias)."""
    plain, biased = tiny_model(decoder_norm="group"), tiny_model(decoder_norm="group", background_bias=3.0)
    offset = biased.decoder.out.bias - plain.decoder.out.bias
    torch.testing.assert_close(offset, torch.eye(3 + plain.L + 1)[-1] * 3.0)
    X = plain.fk(plain.mean_limbs[None]) + torch.tensor([0.0, 0.0, 3.0])
    for model, expected in ((plain, 10 / 11), (biased, 10 / (10 + math.exp(3.0)))):
        with torch.no_grad():  # the segmentation logits: the bias offset alone
            model.decoder.out.weight.zero_()
            model.decoder.out.bias.copy_(offset if model is biased else torch.zeros_like(offset))
        out = model.render(X, torch.zeros(1, 4, 2, 2))
        torch.testing.assert_close(out["fg"], torch.full_like(out["fg"], expected))


@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
def test_decoder_lr_sets_the_decoders_step(optimizer):
    """First step of Adagrad or Adam on a unit gradient moves every parameter by its group's learning rate."""
    model = tiny_model(lr=1e-3, decoder_lr=1e-2, optimizer=optimizer)
    opts = model.configure_optimizers()
    assert len(opts) == len(model._groups()) and all(type(o).__name__.lower() == optimizer for o in opts)
    enc, dec = _snapshot(model.encoder), _snapshot(model.decoder)
    for p in model._params("all"):
        p.grad = torch.ones_like(p)
    opts[0].step()  # L_I^u's optimiser: encoder and decoder
    for net, before, lr in ((model.encoder, enc, 1e-3), (model.decoder, dec, 1e-2)):
        for name, p in net.named_parameters():
            torch.testing.assert_close(before[name] - p.detach(), torch.full_like(p, lr), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="optimizer"):
        tiny_model(optimizer="sgd")


def test_pair_background_plate_is_the_frame_without_the_person():
    dm = tiny_pairs(size=32, background_source="plate")
    batch = dm.dataset("train").__getitems__([0, 4, 9, 13])
    plate, image, mask = batch["background"], batch["image"], batch["mask"].expand(-1, -1, 3, -1, -1)
    assert plate.shape == (4, 3, 32, 32)
    for k in range(2):  # both frames: off the person the frame is the plate, darker only in the contact shadow
        off = (image[:, k] - plate)[~mask[:, k]]
        assert off.max() <= 1e-6 and (off.abs() < 1e-6).float().mean() > 0.8
    assert (image - plate.unsqueeze(1)).abs()[mask].mean() > 0.1  # the person is not in it
    with pytest.raises(ValueError, match="background_source"):
        SyntheticHumanPairs(mode="pair", background_source="mask")


# -- the CLI ------------------------------------------------------------------------------------------------------
def test_tiny_fit_through_the_cli(workdir):
    tiny = "--model.init_args.prior.init_args"
    args = ["fit", *tiny_humans_args("configs/part_guided.yaml", "configs/cpu_part_guided.yaml", batch_size=4, steps=4),
            "--model.init_args.prior", "datamodules.SyntheticPoses", f"{tiny}.train_subjects", "[4]",
            f"{tiny}.val_subjects", "[5]", f"{tiny}.test_subjects", "[6]", f"{tiny}.actions", "[walk]",
            f"{tiny}.clips_per_action", "1", f"{tiny}.frames_per_clip", "20",
            "--model.init_args.pose_hidden", "16", "--model.init_args.appearance_channels", "4",
            "--model.init_args.decoder_base", "4", "--model.init_args.decoder_depth", "2",
            "--model.init_args.template_size", "32"]  # fmt: skip
    assert main(args) == 0
    run = workdir / "runs" / "partguided" / "version_0"
    assert (run / "val_synthesis.png").is_file() and (run / "synthesis" / "step_000004.png").is_file()
    metrics = (run / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/loss_u", "train/loss_pz", "train/loss_seg", "val/seg_f1_fg"):
        assert key in metrics
    with open(run / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row["step"]]
    assert max(steps) == 4  # global_step counts iterations of Algorithm 1, not the optimisers' steps
    (record,) = (workdir / "results" / "humans-synthetic").glob("partguided__*.json")
    data = json.loads(record.read_text())
    assert data["input"] == "image rgb32x32 (trained on pairs, background plate, 3D prior)"
    for key in ("p_mpjpe", "seg_f1_fg", "seg_f1_parts", "puppet_f1_fg", "puppet_f1_parts"):
        assert key in data["metrics"]
