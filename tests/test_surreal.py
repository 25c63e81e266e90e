"""SURREAL loader on a fixture tree in the released layout (.mp4 + _info/_segm/_depth/_gtflow .mat)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from fixtures_formats import write_surreal

from benchmark.config import load_datamodule
from datamodules.cameras import project, world_to_camera
from datamodules.recorded.base import DataFormatError, affine_intrinsics, apply_affine_2d, crop_affines
from datamodules.recorded.surreal import K_SURREAL, R_WORLD_TO_CV, SUITE_FROM_SURREAL, SURREAL, surreal_camera
from datamodules.skeleton import H36M_17

HEAD, NECK, HIP = H36M_17.index("Head"), H36M_17.index("Thorax"), H36M_17.index("Hip")
NOT_HEAD = [j for j in range(17) if j != HEAD]


@pytest.fixture(scope="module")
def surreal(tmp_path_factory):
    root = tmp_path_factory.mktemp("surreal")
    info = write_surreal(root, {"train": ["01_01", "02_03"], "val": ["05_01"], "test": ["07_02"]}, frames=6)
    return root, info


def dm_for(root, **kwargs) -> SURREAL:
    return SURREAL(str(root), **{"runs": ["run0"], "batch_size": 4, "eval_batch_size": 16, **kwargs})


def test_camera_from_camloc_hand_computed():
    # getExtrinsicBlender(camLoc = [6.7456; -0.9839; -1.9293]) = [0 0 -1 -1.9293; 0 1 0 0.9839; -1 0 0 6.7456]
    # (SURREAL's misc/3Dto2D/main.m): its rotation part has det -1, a mirror.
    assert torch.linalg.det(R_WORLD_TO_CV) == pytest.approx(-1.0)
    R, t = surreal_camera(torch.tensor([6.7456, -0.9839, -1.9293]))
    assert torch.allclose(t, torch.tensor([-1929.3, 983.9, 6745.6]), atol=1e-2)
    assert torch.allclose(R @ R.T, torch.eye(3)) and torch.linalg.det(R) == pytest.approx(1.0)  # a proper rotation
    assert torch.allclose(R @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, -1.0, 0.0]))  # world up = image up
    # Same camera frame as SURREAL's: main.m's joint J3D = [-0.8645; -1.0915; -1.0260] projects to (89, 112).
    j3d = torch.tensor([-0.8645, -1.0915, -1.0260]) * 1000
    x_cam = R @ (SUITE_FROM_SURREAL @ j3d) + t
    assert torch.allclose(x_cam, R_WORLD_TO_CV @ j3d + t, atol=1e-3)
    uv = 600 * x_cam[:2] / x_cam[2] + torch.tensor([160.0, 120.0])
    assert torch.equal(uv.round(), torch.tensor([89.0, 112.0]))
    # The camera centre in the suite's world stands 0.98 m above the ground (Z up).
    centre = -R.T @ t
    assert torch.allclose(centre, torch.tensor([1929.3, -6745.6, 983.9]), atol=1e-2)


def test_released_sample_projects_onto_its_joints2D_through_a_crop():
    # SURREAL's released misc/3Dto2D/01_01_c0001_info.mat: camLoc, and frame 1's joints 4..6 (joints3D m, joints2D).
    cam_loc = torch.tensor([6.745622158050537, -0.9838830232620239, -1.929298996925354])
    j3d = torch.tensor([[0.09616656601428986, -1.1325100660324097, -1.9798929691314697],
                        [0.02472154051065445, -0.5054571628570557, -2.104264497756958],
                        [0.14073699712753296, -0.4899463951587677, -1.8554044961929321]]) * 1000  # fmt: skip
    j2d = torch.tensor([[165.0, 107.0], [176.0, 163.0], [153.0, 165.0]])
    R, t = surreal_camera(cam_loc)
    cam = world_to_camera((j3d @ SUITE_FROM_SURREAL.T)[None], R[None], t[None])
    assert torch.equal(project(cam, K_SURREAL[None]).round()[0], j2d)  # the released rounding, to the pixel
    shifted = K_SURREAL.clone()
    shifted[:2, 2] -= 0.5  # a half-pixel shift would no longer reproduce the released joints2D
    assert not torch.equal(project(cam, shifted[None]).round()[0], j2d)
    # Through a person crop (x4 zoom), the cropped K still lands on the cropped joints2D (up to their rounding).
    A = crop_affines(j2d[None], torch.ones(1, 3, dtype=torch.bool), torch.tensor([[320, 240]]), "person", 256)
    cropped = project(cam, affine_intrinsics(K_SURREAL[None], A))
    scale = float(A[0, 0, 0])
    assert (cropped - apply_affine_2d(j2d[None], A)).abs().max() <= 0.5 * scale + 1e-3


def test_poses_projection_and_left_right(surreal):
    root, info = surreal
    dm = dm_for(root)
    t = dm.build("train").tensors
    assert t["joints_3d"].shape == (12, 17, 3) and t["K"][0].tolist() == [[600, 0, 160], [0, 600, 120], [0, 0, 1]]
    # joints2D were rounded to whole pixels in the release; the projection of joints_3d is within 1 px.
    reproj = project(t["joints_3d"], t["K"])
    assert (reproj[:, NOT_HEAD] - t["joints_2d"][:, NOT_HEAD]).abs().max() <= 0.5 + 1e-3
    assert (reproj - t["joints_2d_gt"]).abs().max() < 1e-3
    assert (world_to_camera(t["joints_3d_world"], t["R"], t["t"]) - t["joints_3d"]).abs().max() < 1e-2
    # The swapped labels are undone: the physical right hip is RHip again (fixture pose in the suite's frame).
    clip = info[str(Path(root) / "train" / "run0" / "01_01" / "01_01_c0001")]
    world = torch.tensor(clip["h36m_world"]).float()
    assert (t["joints_3d_world"][:6, NOT_HEAD] - world[:, NOT_HEAD]).abs().max() < 0.05
    head = 2 * world[:, H36M_17.index("Neck/Nose")] - world[:, NECK]  # extrapolated head top
    assert (t["joints_3d_world"][:6, HEAD] - head).abs().max() < 0.05
    assert (t["joints_3d_world"][:, HEAD, 2] > t["joints_3d_world"][:, HIP, 2]).all()  # Z up
    assert 4000 < float(t["joints_3d"][..., 2].min()) < float(t["joints_3d"][..., 2].max()) < 7000  # mm
    assert sorted(set(t["subject"].tolist())) == [1, 2]
    as_released = dm_for(root, fix_left_right=False).build("train").tensors["joints_3d_world"]
    r_hip, l_hip = H36M_17.index("RHip"), H36M_17.index("LHip")
    assert (as_released[:6, r_hip] - world[:, l_hip]).abs().max() < 0.05
    assert dm.protocol["left_right"] == "fixed"
    assert len(dm.build("test")) == 6 and len(dm_for(root, eval_stride=4).build("val")) == 2


def test_pixels_image_mask_parts_depth_flow(surreal):
    root, _ = surreal
    dm = dm_for(root, pixels=["image", "mask", "parts", "depth", "flow"], crop="full", image_size=160)
    batch = dm.build("test").__getitems__([5, 0, 2])
    assert batch["image"].shape == (3, 3, 160, 160) and batch["parts"].shape == (3, 160, 160)
    assert batch["parts"].dtype == torch.int64 and batch["mask"].dtype == torch.bool
    # Frame n of the .mp4 is grey 20 n + 10.
    assert torch.allclose(batch["image"].mean((1, 2, 3)) * 255, torch.tensor([110.0, 10.0, 50.0]), atol=4)
    # Parts 1 (hips) and 2 (leftUpLeg) in the file; the left/right fix relabels 2 as rightUpLeg (3).
    assert set(batch["parts"].unique().tolist()) == {0, 1, 3}
    assert torch.equal(batch["mask"][:, 0], batch["parts"] > 0)
    assert set(batch["depth"].unique().tolist()) == {0.0, 3500.0}  # metres -> mm, background 1e10 -> 0
    assert torch.equal(batch["depth"][:, 0] > 0, batch["mask"][:, 0])
    # Flow (1.5, -0.5) px scaled with the 320x240 -> 160x160 resize; the clip's last frame has none.
    assert torch.allclose(batch["flow"][1:, 0], torch.full((2, 160, 160), 0.75))
    assert torch.allclose(batch["flow"][1:, 1], torch.full((2, 160, 160), -1 / 3))
    assert batch["flow"][0].abs().max() == 0
    released = dm_for(root, pixels=["parts"], fix_left_right=False).build("test").__getitems__([0])
    assert set(released["parts"].unique().tolist()) == {0, 1, 2}
    # The pelvis block of part 1 sits where the resized K projects the pelvis.
    ys, xs = torch.meshgrid(torch.arange(160.0), torch.arange(160.0), indexing="ij")
    m = (batch["parts"] == 1).float()
    centre = torch.stack([(xs * m).sum((1, 2)), (ys * m).sum((1, 2))], -1) / m.sum((1, 2)).unsqueeze(-1)
    assert (centre - batch["joints_2d"][:, 0]).abs().max() < 1.5


def test_empty_frames_are_left_out(tmp_path):
    # Frames 0 and 3 of 6 have joints3D all zero (the body out of the render): SURREAL's loader skips them.
    write_surreal(tmp_path, {"test": ["08_01"]}, frames=6, extras=False, empty=(0, 3))
    dm = dm_for(tmp_path, pixels=["image"], crop="full", image_size=32)
    data = dm.build("test")
    assert data.tensors["frame"].tolist() == [1, 2, 4, 5] and dm.dropped_empty["test"] == 2
    assert data.tensors["joints_3d"][..., 2].min() > 4000  # no zero pose slipped in (it would sit at the camera)
    # The kept rows read their own video frames: frame n is grey 20 n + 10.
    grey = data.__getitems__([0, 1, 2, 3])["image"].mean((1, 2, 3)) * 255
    assert torch.allclose(grey, torch.tensor([30.0, 50.0, 90.0, 110.0]), atol=4)


def test_errors_name_the_file(surreal, tmp_path):
    root, _ = surreal
    with pytest.raises(FileNotFoundError, match="train folder"):
        dm_for(tmp_path).build("train")
    write_surreal(tmp_path, {"train": ["09_01"]}, frames=3, extras=False)
    clip = tmp_path / "train" / "run0" / "09_01" / "09_01_c0001"
    with pytest.raises(FileNotFoundError, match="09_01_c0001_segm.mat"):
        dm_for(tmp_path, pixels=["parts"]).build("train").__getitems__([0])
    Path(f"{clip}.mp4").unlink()
    with pytest.raises(FileNotFoundError, match="09_01_c0001.mp4"):
        dm_for(tmp_path, pixels=["image"]).build("train").__getitems__([0])
    data = {k: v for k, v in scipy.io.loadmat(f"{clip}_info.mat").items() if not k.startswith("__")}
    scipy.io.savemat(f"{clip}_info.mat", {**data, "joints3D": np.zeros((3, 23, 3))})
    with pytest.raises(DataFormatError, match=r"joints3D has shape \(3, 23, 3\)"):
        dm_for(tmp_path).build("train")
    Path(f"{clip}_info.mat").write_bytes(Path(f"{clip}_info.mat").read_bytes()[:300])
    with pytest.raises(DataFormatError, match="09_01_c0001_info.mat.*truncated"):
        dm_for(tmp_path).build("train")
    with pytest.raises(ValueError, match="runs"):
        dm_for(root, runs=["run7"])


def test_config_piece_loads(surreal, tmp_path):
    root, _ = surreal
    with open("configs/data/surreal.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["data"]["init_args"].update(root=str(root), runs=["run0"], max_clips=1)
    (tmp_path / "surreal.yaml").write_text(yaml.safe_dump(cfg))
    dm = load_datamodule([tmp_path / "surreal.yaml"])
    assert isinstance(dm, SURREAL) and len(dm.build("train")) == 6
