"""The template-descent diagnostic (benchmark.probe_template): its true pose and its bone-angle error."""

from __future__ import annotations

import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix

from benchmark.probe_template import bone_angle_error, main, true_pose
from datamodules.cameras import project
from datamodules.skeleton import H36M_17
from methods.neural_rendering import TEMPLATE_JOINTS, GaussianTemplate

K = torch.tensor([[100.0, 0.0, 32.0], [0.0, 100.0, 32.0], [0.0, 0.0, 1.0]])


def test_the_true_pose_puts_every_template_joint_on_the_given_joints():
    gen = torch.Generator().manual_seed(0)
    turn = axis_angle_to_rotation_matrix(torch.tensor([[0.0, 2.0, 0.5]]))[0]  # 118 degrees, no bone turns ~180
    joints = (TEMPLATE_JOINTS + 0.015 * torch.randn(2, 17, 3, generator=gen)) @ turn.T + torch.tensor([0.2, -0.1, 4.0])
    template = GaussianTemplate()
    rotvec, scale = true_pose(template.joints, joints)
    posed = template.pose(rotvec, scale, joints[:, 0])
    torch.testing.assert_close(posed["joints"], joints, atol=1e-5, rtol=0)
    assert bone_angle_error(posed["joints"], K.expand(2, 3, 3), project(joints, K.expand(2, 3, 3))) < (0.05, 0.05)


def test_a_foot_turned_90_degrees_in_the_image_plane_costs_one_limb_in_eight():
    joints = TEMPLATE_JOINTS.clone().unsqueeze(0) * torch.tensor([1.0, -1.0, 0.0]) + torch.tensor([0.0, 0.0, 4.0])
    turned = joints.clone()
    knee, foot = H36M_17.index("RKnee"), H36M_17.index("RFoot")
    bone = joints[0, foot] - joints[0, knee]
    turned[0, foot] = joints[0, knee] + torch.stack([-bone[1], bone[0], bone[2]])  # 90 degrees about the view axis
    limbs, every = bone_angle_error(turned, K.unsqueeze(0), project(joints, K.unsqueeze(0)))
    assert abs(limbs - 90 / 8) < 1e-3 and abs(every - 90 / 16) < 1e-3


def test_the_probe_runs_both_descents_at_a_tiny_size():
    out = main(["--objective", "colour", "--frames", "2", "--steps", "4", "--fit-frames", "4", "--fit-steps", "2",
                "--image-size", "32", "--render-size", "16", "--samples", "8", "--threads", "1"])  # fmt: skip
    assert set(out) == {"at_truth", "rest", "truth + noise"} and out["at_truth"] > 0
    assert [row[0] for row in out["rest"]] == [0, 1, 2, 3, 4]
    rest_start = out["rest"][0]
    assert rest_start[2] > 0 and torch.isfinite(torch.tensor(rest_start)).all()
