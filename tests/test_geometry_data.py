"""Skeleton, cameras, the batch contract, procedural motion and SyntheticPoses."""

import math

import pytest
import torch

from datamodules.cameras import CameraRig, camera_to_world, intrinsics, look_at, project, world_to_camera
from datamodules.contract import check_keys
from datamodules.motion.procedural import ACTIONS, DOF_LIMITS, DOFS, forward_kinematics, joint_angles
from datamodules.motion.synthetic import SyntheticPoses
from datamodules.skeleton import H36M_17, Skeleton


def test_h36m_skeleton_structure():
    assert H36M_17.num_joints == 17 and H36M_17.root == 0
    assert H36M_17.joints[H36M_17.bones[2][1]] == "RFoot"
    flip = H36M_17.flip_permutation
    assert flip[H36M_17.index("LWrist")] == H36M_17.index("RWrist") and flip[0] == 0
    pairs = [
        (H36M_17.joints[H36M_17.bones[a][1]], H36M_17.joints[H36M_17.bones[b][1]]) for a, b in H36M_17.symmetric_bones
    ]
    assert ("LKnee", "RKnee") in pairs and len(pairs) == 6


def test_skeleton_errors_name_the_problem():
    with pytest.raises(ValueError, match="exactly one root"):
        Skeleton("bad", ("a", "b"), (-1, -1))
    with pytest.raises(KeyError, match="Nose"):
        H36M_17.index("Nose")
    with pytest.raises(KeyError, match="lacks joints"):
        H36M_17.index_map(["a"], {"Hip": "a"})


def test_bone_lengths_by_hand():
    joints = torch.zeros(17, 3)
    joints[1] = torch.tensor([3.0, 4.0, 0.0])  # RHip 5 mm from the hip
    assert H36M_17.bone_lengths(joints)[0] == pytest.approx(5.0)


def test_look_at_and_projection_by_hand():
    # A camera 5 m in front of the origin along -y, looking at it: the origin projects to the centre.
    R, t = look_at(torch.tensor([[0.0, -5000.0, 0.0]]), torch.zeros(1, 3))
    K = intrinsics(1000.0, (500.0, 400.0))
    pts = torch.tensor([[[0.0, 0.0, 0.0], [1000.0, 0.0, 0.0], [0.0, 0.0, 1000.0]]])
    cam = world_to_camera(pts, R, t)
    assert torch.allclose(cam[0, 0], torch.tensor([0.0, 0.0, 5000.0]), atol=1e-3)
    uv = project(cam, K)[0]
    assert torch.allclose(uv[0], torch.tensor([500.0, 400.0]), atol=1e-3)
    assert torch.allclose(uv[1], torch.tensor([700.0, 400.0]), atol=1e-3)  # +x world is image right
    assert torch.allclose(uv[2], torch.tensor([500.0, 200.0]), atol=1e-3)  # up is image up (y down)
    assert torch.allclose(camera_to_world(cam, R, t), pts, atol=1e-3)


def test_camera_rig_ranges():
    rig = CameraRig()
    targets = torch.zeros(2000, 3)
    cams = rig.sample(targets, torch.Generator().manual_seed(0))
    centre = -(cams["R"].transpose(1, 2) @ cams["t"].unsqueeze(-1)).squeeze(-1)  # camera centres
    dist = centre.norm(dim=-1)
    assert dist.min() > rig.distance_mm[0] - 400 and dist.max() < rig.distance_mm[1] + 400
    elevation = torch.rad2deg(torch.asin(centre[:, 2] / dist))
    assert elevation.min() > rig.elevation_deg[0] - 5 and elevation.max() < rig.elevation_deg[1] + 5
    azimuth = torch.atan2(centre[:, 1], centre[:, 0])
    assert torch.histc(azimuth, bins=8, min=-math.pi, max=math.pi).min() > 150  # full circle
    assert torch.allclose(cams["R"] @ cams["R"].transpose(1, 2), torch.eye(3).expand(2000, 3, 3), atol=1e-5)


def test_check_keys_names_missing_key_and_provider():
    with pytest.raises(KeyError, match=r"image .*SyntheticPoses|image"):
        check_keys(["joints_2d", "image"], SyntheticPoses.provides, method="X", datamodule="SyntheticPoses")
    check_keys(["joints_2d"], SyntheticPoses.provides, method="X", datamodule="SyntheticPoses")


def test_motion_within_joint_limits_and_upright():
    angles = joint_angles(ACTIONS["run"], 3, 50, 25.0, torch.Generator().manual_seed(0), noise_deg=30.0)
    lo = torch.deg2rad(torch.tensor([DOF_LIMITS[d][0] for d in DOFS]))
    hi = torch.deg2rad(torch.tensor([DOF_LIMITS[d][1] for d in DOFS]))
    assert (angles >= lo - 1e-6).all() and (angles <= hi + 1e-6).all()
    rest = forward_kinematics(torch.zeros(len(DOFS)), torch.full((17,), 100.0))
    assert rest[H36M_17.index("Head"), 2] > rest[0, 2] > rest[H36M_17.index("RFoot"), 2]
    assert rest[H36M_17.index("RShoulder"), 0] > 0 > rest[H36M_17.index("LShoulder"), 0]  # x is the right


def test_synthetic_poses_contract(tiny_synthetic_kwargs):
    dm = SyntheticPoses(**tiny_synthetic_kwargs, noise_2d_px=2.0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(dm.provides) <= set(batch)
    assert batch["joints_3d"].shape == (64, 17, 3) and batch["joints_2d"].shape == (64, 17, 2)
    # Projecting camera-frame joints with K reproduces the clean 2D joints; the noisy ones are ~2 px off.
    assert torch.allclose(project(batch["joints_3d"], batch["K"]), batch["joints_2d_gt"], atol=1e-2)
    noise = (batch["joints_2d"] - batch["joints_2d_gt"]).std()
    assert 1.5 < noise < 2.5
    # Bone lengths are constant within a clip, and people are 1.4 - 2.1 m tall-ish (head over the feet).
    world = dm.datasets["train"].tensors["joints_3d_world"]
    lengths = H36M_17.bone_lengths(world).view(-1, 40, 16)
    assert lengths.std(dim=1).max() < 1e-2
    assert world[..., 2].min() > -1e-3 and world[:, 10, 2].median() > 1400
    # Split by subject; deterministic by seed.
    assert set(dm.datasets["val"].tensors["subject"].tolist()) == {3}
    again = SyntheticPoses(**tiny_synthetic_kwargs, noise_2d_px=2.0)
    again.setup("fit")
    assert torch.equal(again.datasets["train"].tensors["joints_2d"], dm.datasets["train"].tensors["joints_2d"])


def test_synthetic_poses_bad_options():
    with pytest.raises(ValueError, match="fly"):
        SyntheticPoses(actions=["fly"])
    with pytest.raises(ValueError, match="batch_size"):
        SyntheticPoses(batch_size=0)
