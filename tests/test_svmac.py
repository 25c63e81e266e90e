"""SVMAC's equations against hand-computed values, and its training step."""

import math

import pytest
import torch

from datamodules.motion.synthetic import SyntheticPoses
from methods.geometry import mean_root_distance, normalise_2d, rotation_y
from methods.svmac import (
    SVMAC,
    angle_loss,
    cameq_loss,
    camera_scale,
    pairwise_consistency,
    symmetry_loss,
    weakcam_loss,
)


def test_weakcam_zero_for_scaled_orthographic_and_positive_otherwise():
    ortho = torch.tensor([[2.0, 0, 0], [0, 2.0, 0]])
    assert weakcam_loss(ortho).item() == pytest.approx(0.0, abs=1e-6)
    assert camera_scale(ortho).item() == pytest.approx(2.0)
    skew = torch.tensor([[1.0, 0, 0], [0, 2.0, 0]])  # K K^T = diag(1, 4), trace 5 -> ||diag(2/5-1, 8/5-1)||
    assert weakcam_loss(skew).item() == pytest.approx(math.hypot(0.6, 0.6), rel=1e-5)


def test_cameq_by_hand():
    K = torch.zeros(3, 1, 2, 3)
    K[1, 0, 0, 0] = 6.0  # |K0-K1|_1 = 6, |K1-K2|_1 = 6, |K0-K2|_1 = 0 -> mean over 3 pairs of (6/6, 6/6, 0) = 2/3
    assert cameq_loss(K).item() == pytest.approx(2 / 3)


def test_pairwise_consistency_by_hand():
    P = torch.zeros(2, 1, 3, 2)  # m = 2 poses of N = 3 joints
    P[1, 0, 0] = torch.tensor([3.0, 4.0])  # one joint differs by 5 -> 25 / (N m) = 25 / 6
    assert pairwise_consistency(P).item() == pytest.approx(25 / 6)


def test_rotation_matches_eq7_and_keeps_lengths():
    R = rotation_y(torch.tensor(math.pi / 2))
    assert torch.allclose(R, torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]]), atol=1e-6)
    model = SVMAC(width=32)
    X = torch.randn(4, 17, 3) + torch.tensor([0, 0, 10.0])
    X[:, 0] = torch.tensor([0, 0, 10.0])
    rotated = model.rotate(X, torch.rand(2, 4))
    assert torch.allclose(rotated[:, :, 0], X[:, 0].expand(2, 4, 3), atol=1e-5)  # the root stays at (0, 0, c)
    assert torch.allclose((rotated - X[:, :1]).norm(dim=-1), (X - X[:, :1]).norm(dim=-1).expand(2, 4, 17), atol=1e-4)


def test_normalisation_eq1_2():
    x = torch.randn(5, 17, 2) * 100 + 400
    n = normalise_2d(x, 0.1)
    assert torch.allclose(n[:, 0], torch.zeros(5, 2), atol=1e-6)
    assert torch.allclose(mean_root_distance(n).flatten(), torch.full((5,), 0.1), atol=1e-6)


def test_angle_and_symmetry_losses_on_true_poses(tiny_synthetic_kwargs):
    dm = SyntheticPoses(**tiny_synthetic_kwargs)
    X = dm.build("train").tensors["joints_3d"]
    model = SVMAC(width=32)
    joints = model._angle_joints
    # Eq. 23 as printed penalises relu(sin beta); true poses (x right, y down, z forward) rarely pay it,
    # while the same poses mirrored in depth nearly always do.
    true_penalty = angle_loss(X, *joints)
    mirrored = X * torch.tensor([1.0, 1.0, -1.0])
    assert (true_penalty > 0).float().mean() < 0.2
    assert (angle_loss(mirrored, *joints) > 0).float().mean() > 0.8
    assert symmetry_loss(X, model.skeleton.bones, model.skeleton.symmetric_bones).max() < 1e-6


def test_lift_is_perspective_consistent():
    model = SVMAC(width=32).eval()
    x = normalise_2d(torch.randn(8, 17, 2), 0.1)
    X, K = model.lift(x)
    assert torch.allclose(X[..., :2] / X[..., 2:], x, atol=1e-5)  # Eq. 1-2 with f = 1
    assert torch.allclose(X[:, 0], torch.tensor([0.0, 0.0, 10.0]).expand(8, 3), atol=1e-5)
    assert torch.allclose(K, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(8, 2, 3), atol=0.2)  # orthographic start


@pytest.mark.parametrize("num_angles,use_critic,sup", [(1, True, 0.0), (2, False, 0.0), (3, True, 0.5)])
def test_generator_losses_finite_for_every_ablation(num_angles, use_critic, sup, tiny_synthetic_kwargs):
    dm = SyntheticPoses(**tiny_synthetic_kwargs)
    batch = {k: v[:32] for k, v in dm.build("train").tensors.items()}
    model = SVMAC(width=32, num_angles=num_angles, use_critic=use_critic, supervised_fraction=sup)
    losses = model.generator_losses(model.normalise(batch["joints_2d"]), batch)
    assert all(torch.isfinite(v) for v in losses.values())
    assert ("sup" in losses) == (sup > 0)
    total = model.total_loss(losses)
    total.backward()
    assert model.generator.pose[-1].weight.grad.abs().sum() > 0


def test_critic_gradient_penalty_is_one_sided_to_unit_norm():
    torch.manual_seed(0)
    model = SVMAC(width=16)
    real = torch.randn(64, 17, 2)
    loss, w = model.critic_loss(real, real.clone())
    assert w.abs() < 1e-5  # identical distributions: zero Wasserstein estimate
    assert loss >= 0


def test_bad_options_fail_with_their_names():
    with pytest.raises(ValueError, match="num_angles"):
        SVMAC(num_angles=0)
    with pytest.raises(ValueError, match="supervised_fraction"):
        SVMAC(supervised_fraction=2.0)
    with pytest.raises(ValueError, match="lambdas"):
        SVMAC(lambdas=(1.0, 2.0))
