"""Human3.6M loader on fixture trees in VideoPose3D's archive format (see tests/fixtures_formats.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from fixtures_formats import _qrot, h36m_metadata, write_h36m

from benchmark.config import load_datamodule
from datamodules.cameras import project, world_to_camera
from datamodules.recorded.base import DataFormatError, action_wise_mean
from datamodules.recorded.distortion import distort, project_distorted, undistort_points
from datamodules.recorded.h36m import (
    ACTIONS,
    CAMERA_IDS,
    EXTRINSICS,
    INTRINSICS,
    Human36M,
    camera_parameters,
    fetch_folder,
)

SEQUENCES = {"S1": ["Directions 1", "TakingPhoto"], "S5": ["Walking 1"], "S9": ["Walking 1"],
             "S11": ["Directions", "Directions 1"]}  # fmt: skip
#: Recordings whose h36m-fetch folder is not their name with '-' (S1 "Eating 2" is Eating-1, "Eating" Eating-2).
PIXEL_SEQUENCES = {"S1": ["Eating 2", "Eating", "Photo 1", "WalkTogether 1"], "S9": ["Walking 1"]}


@pytest.fixture(scope="module")
def h36m(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m")
    return root, write_h36m(root, SEQUENCES, frames=130)


@pytest.fixture(scope="module")
def h36m_pixels(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m_pixels")
    info = write_h36m(root, PIXEL_SEQUENCES, frames=65, images=PIXEL_SEQUENCES,
                      masks={"S1": ("Photo 1",), "S9": ("Walking 1",)})  # fmt: skip
    return root, info


def dm_for(root, **kwargs) -> Human36M:
    args = dict(train_subjects=["S1", "S5"], val_subjects=["S9"], test_subjects=["S9", "S11"], batch_size=16,
                eval_batch_size=64)  # fmt: skip
    return Human36M(str(root), **{**args, **kwargs})


def test_distortion_hand_computed_and_inverse():
    # x = (0.1, 0.2), k1 = 0.1, p = (0.01, 0.02): r2 = 0.05, radial = 1.005, p.x = 0.005
    # x_d = 0.1 * 1.01 + 0.01 * 0.05 = 0.1015, y_d = 0.2 * 1.01 + 0.02 * 0.05 = 0.203
    out = distort(torch.tensor([[[0.1, 0.2]]]), torch.tensor([[0.1, 0.0, 0.0, 0.01, 0.02]]))
    assert torch.allclose(out, torch.tensor([[[0.1015, 0.203]]]), atol=1e-7)
    cam = camera_parameters("S9")
    points = torch.randn(4, 50, 3) * torch.tensor([800.0, 800.0, 300.0]) + torch.tensor([0.0, 0.0, 5000.0])
    distorted = project_distorted(points, cam["K"], cam["distortion"])
    pinhole = project(points, cam["K"])
    assert (distorted - pinhole).abs().max() > 5.0  # the lens model matters by several px at the image borders
    assert (undistort_points(distorted, cam["K"], cam["distortion"]) - pinhole).abs().max() < 1e-2


def test_cameras_are_the_published_ones():
    cam = camera_parameters("S1")
    quat, position = EXTRINSICS["S1"][2]
    # Camera centre C = -R^T t is the published translation; R^T rotates camera axes like VideoPose3D's qrot.
    centre = -(cam["R"][2].T @ cam["t"][2])
    assert torch.allclose(centre, torch.tensor(position, dtype=torch.float32), atol=1e-2)
    axes = _qrot(np.tile(np.asarray(quat), (3, 1)), np.eye(3))  # images of the camera's x, y, z axes in the world
    assert np.allclose(cam["R"][2].T.numpy(), axes.T, atol=1e-5)
    assert torch.allclose(torch.linalg.det(cam["R"]), torch.ones(4), atol=1e-5)
    intr = INTRINSICS[CAMERA_IDS[2]]
    assert cam["K"][2, 0, 0] == pytest.approx(intr["focal"][0]) and cam["K"][2, 1, 2] == pytest.approx(
        intr["center"][1]
    )
    assert cam["size"][0].tolist() == [1000, 1002] and cam["size"][1].tolist() == [1000, 1000]
    # Every camera looks at the capture volume around the world origin (z forward in OpenCV axes).
    assert (cam["t"][:, 2] > 3000).all()


def test_batches_shapes_units_and_projection(h36m):
    root, info = h36m
    dm = dm_for(root)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    b = 64
    shapes = {"joints_3d": (b, 17, 3), "joints_3d_world": (b, 17, 3), "joints_2d": (b, 17, 2), "visible": (b, 17),
              "K": (b, 3, 3), "R": (b, 3, 3), "t": (b, 3), "distortion": (b, 5), "subject": (b,),
              "frame": (b,)}  # fmt: skip
    assert {k: tuple(batch[k].shape) for k in shapes} == shapes
    assert set(dm.provides) <= set(batch)
    # mm: camera-frame depth of a person 3-7 m away; world poses are the archive's metres x 1000.
    assert 2500 < float(batch["joints_3d"][..., 2].min()) and float(batch["joints_3d"][..., 2].max()) < 8000
    first = (batch["subject"] == 9) & (batch["frame"] == 0)
    assert torch.allclose(batch["joints_3d_world"][first][0], torch.tensor(info["world"]["S9"]["Walking 1"][0]).float(),
                          atol=0.05)  # fmt: skip
    # Projecting joints_3d with K and the Human3.6M lens model reproduces the released 2D poses (px).
    reproj = project_distorted(batch["joints_3d"], batch["K"], batch["distortion"])
    assert (reproj - batch["joints_2d"]).abs().max() < 1.0
    assert (reproj - batch["joints_2d"]).abs().max() < 1e-2
    assert (world_to_camera(batch["joints_3d_world"], batch["R"], batch["t"]) - batch["joints_3d"]).abs().max() < 1e-2
    assert batch["visible"].all()
    assert (dm.train_poses_3d().shape, dm.train_poses_3d().dtype) == ((3 * 130 * 4, 17, 3), torch.float32)


def test_protocol_splits_actions_and_stride(h36m):
    root, _ = h36m
    dm = dm_for(root)
    train, test = dm.build("train").tensors, dm.build("test").tensors
    assert set(train["subject"].tolist()) == {1, 5} and set(test["subject"].tolist()) == {9, 11}
    # 'S11/Directions' (the corrupted video) is left out; 'S11/Directions 1' stays.
    assert len(test["frame"]) == 2 * 130 * 4
    assert set(test["action"].tolist()) == {ACTIONS.index("Walking"), ACTIONS.index("Directions")}
    assert ACTIONS.index("Photo") in train["action"].tolist()  # 'TakingPhoto' -> 'Photo'
    assert len(dm_for(root, exclude=[]).build("test").tensors["frame"]) == 3 * 130 * 4
    strided = dm_for(root, eval_stride=64).build("test").tensors
    assert sorted(set(strided["frame"].tolist())) == [0, 64, 128] and len(strided["frame"]) == 3 * 2 * 4
    one = dm_for(root, cameras=[1]).build("test").tensors
    assert set(one["camera"].tolist()) == {1} and len(one["frame"]) == 2 * 130
    assert one["K"][0, 0, 0] == pytest.approx(INTRINSICS["55011271"]["focal"][0])
    # Every (frame, camera) of a sequence is its own video for frame pairing.
    assert len(test["sequence"].unique()) == 2 * 4
    assert dm.protocol["excluded"] == "S11/Directions" and dm.protocol["input_2d"] == "gt"
    assert dm_for(root, val_subjects=["S9", "S11"]).build("val") is not dm.build("test")
    same = dm_for(root, val_subjects=["S9", "S11"])
    assert same.build("test") is same.build("val")  # equal sources: one copy serves validation and test
    means = action_wise_mean(torch.tensor([1.0, 3.0, 10.0]), torch.tensor([13, 13, 0]), list(ACTIONS))
    assert means == {"Directions": 10.0, "Walking": 2.0}


def test_multiview_and_frame_pairs(h36m):
    root, _ = h36m
    multi = dm_for(root, multiview=True)
    batch = next(iter(multi.train_dataloader()))
    assert batch["joints_3d"].shape == (16, 4, 17, 3) and batch["K"].shape == (16, 4, 3, 3)
    assert batch["subject"].shape == (16,)
    # Synchronised views: one world pose, four cameras.
    assert (batch["joints_3d_world"] - batch["joints_3d_world"][:, :1]).abs().max() == 0
    assert (world_to_camera(batch["joints_3d_world"], batch["R"], batch["t"]) - batch["joints_3d"]).abs().max() < 1e-2
    assert next(iter(multi.val_dataloader()))["joints_3d"].ndim == 3  # evaluation stays monocular
    pairs = dm_for(root, pair_offset=5)
    t = pairs.build("train").tensors
    assert t["joints_3d"].shape == (3 * 4 * 125, 2, 17, 3)
    assert (t["frame"][:, 1] - t["frame"][:, 0] == 5).all()
    assert (t["sequence"][:, 0] == t["sequence"][:, 1]).all() and (t["camera"][:, 0] == t["camera"][:, 1]).all()
    with pytest.raises(ValueError, match="multiview and pair_offset"):
        dm_for(root, multiview=True, pair_offset=2)


def test_undistorted_2d_follow_pinhole_K(h36m):
    root, _ = h36m
    t = dm_for(root, undistort_2d=True).build("test").tensors
    assert (project(t["joints_3d"], t["K"]) - t["joints_2d"]).abs().max() < 0.05
    assert (project(t["joints_3d"], t["K"]) - t["joints_2d_gt"]).abs().max() < 0.05
    assert (t["distortion"] == 0).all()


def test_images_masks_and_cropped_intrinsics(h36m_pixels):
    root, info = h36m_pixels
    dm = Human36M(str(root), train_subjects=["S9"], val_subjects=["S9"], test_subjects=["S9"], pixels=["image", "mask"],
                  image_size=64, batch_size=8)  # fmt: skip
    data = dm.build("train")
    assert len(data) == 2 * 4  # h36m-fetch kept frames 0 and 64 of S9's 65: only those are used
    assert sorted(set(data.tensors["frame"].tolist())) == [0, 64]
    batch = data.__getitems__(list(range(8)))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["mask"].shape == (8, 1, 64, 64)
    assert (
        batch["image"].dtype == torch.float32 and 0 <= float(batch["image"].min()) <= float(batch["image"].max()) <= 1
    )

    def centroid(m):  # (..., H, W) bool -> (..., 2) px
        ys, xs = torch.meshgrid(torch.arange(float(m.shape[-2])), torch.arange(float(m.shape[-1])), indexing="ij")
        m = m.float()
        return torch.stack([(xs * m).sum((-2, -1)), (ys * m).sum((-2, -1))], -1) / m.sum((-2, -1)).unsqueeze(-1)

    # The white disc drawn at the pelvis lands where the cropped K puts the pelvis.
    pelvis = batch["joints_2d_gt"][:, 0]
    assert (centroid(batch["image"].mean(1) > 0.5) - pelvis).abs().max() < 1.0
    assert (centroid(batch["mask"][:, 0]) - pelvis).abs().max() < 1.0
    assert (
        project_distorted(batch["joints_3d"], batch["K"], batch["distortion"]) - batch["joints_2d"]
    ).abs().max() < 1e-2
    multi = Human36M(str(root), train_subjects=["S9"], pixels=["image"], image_size=32, multiview=True).build("train")
    views = multi.__getitems__([0, 1])
    assert views["image"].shape == (2, 4, 3, 32, 32) and views["K"].shape == (2, 4, 3, 3)
    assert (centroid(views["image"].mean(2) > 0.5) - views["joints_2d_gt"][:, :, 0]).abs().max() < 1.0
    full = Human36M(str(root), train_subjects=["S9"], pixels=["image"], crop="full", image_size=100).build("train")
    assert full.tensors["K"][0, 0, 0] == pytest.approx(INTRINSICS[CAMERA_IDS[0]]["focal"][0] * 0.1, rel=1e-6)


def test_fetch_folders_follow_metadata_table():
    table = h36m_metadata()  # the fixture's own transcription of metadata.xml
    assert len(table) == 7 * 30
    assert all(fetch_folder(subject, name) == table[(subject, name)] for subject, name in table)
    # The examples, by hand: the folder is metadata.xml's (action, subaction), not the name.
    assert fetch_folder("S1", "Directions 1") == ("Directions-1", "Directions 1")
    assert fetch_folder("S1", "Directions") == ("Directions-2", "Directions")
    assert fetch_folder("S1", "Eating 2")[0] == "Eating-1" and fetch_folder("S11", "Greeting 2")[0] == "Greeting-1"
    assert fetch_folder("S1", "WalkTogether 1")[0] == "WalkingTogether-1"
    assert fetch_folder("S1", "Photo 1") == ("TakingPhoto-1", "TakingPhoto 1")  # the original name names the masks
    assert fetch_folder("S6", "Photo 1")[0] == "TakingPhoto-2"
    with pytest.raises(DataFormatError, match=r"S5/'Photo 1' is not a recording of S5"):
        fetch_folder("S5", "Photo 1")


def test_frames_come_from_their_own_recording(h36m_pixels):
    root, info = h36m_pixels
    dm = Human36M(str(root), train_subjects=["S1"], pixels=["image"], image_size=64)
    data = dm.build("train")
    t = data.tensors
    names = [name for _, name in dm.sequences("train")]
    assert sorted(names) == sorted(PIXEL_SEQUENCES["S1"])
    # Exactly the frames h36m-fetch extracted (the 40 mm rule), for every camera.
    seq = t["sequence"] // 4
    for i, name in enumerate(names):
        kept = info["image_frames"]["S1"][name]
        assert 1 < len(kept) < 65 and t["frame"][seq == i].tolist() == np.repeat(kept, 4).tolist()
    # Each row's disc carries its recording's blue level (JPEG: within a few levels).
    first = [int(torch.nonzero(seq == i)[0]) for i in range(len(names))]
    image = data.__getitems__(first)["image"]
    disc = image[:, 0] > 0.5  # red is 255 inside the disc only
    blue = (image[:, 2] * disc).sum((1, 2)) / disc.sum((1, 2)) * 255
    expected = torch.tensor([float(info["code"]["S1"][n]) for n in names])
    assert (blue - expected).abs().max() < 6
    masks = Human36M(str(root), train_subjects=["S1"], actions=["Photo"], pixels=["mask"], image_size=32)
    assert masks.build("train").__getitems__([0])["mask"].any()  # read from 'TakingPhoto 1.54138969.mat'


def test_errors_name_the_file(h36m, tmp_path):
    root, _ = h36m
    with pytest.raises(FileNotFoundError, match="data_3d_h36m.npz"):
        dm_for(tmp_path).build("train")
    with pytest.raises(FileNotFoundError, match="data_2d_h36m_cpn_ft_h36m_dbb.npz"):
        dm_for(root, keypoints="cpn_ft_h36m_dbb").build("train")
    with pytest.raises(
        FileNotFoundError, match=r"S1/'Directions 1' camera 54138969: no img_%06d.jpg in .*Directions-1"
    ):
        dm_for(root, pixels=["image"]).build("train")
    with pytest.raises(ValueError, match="S2"):
        dm_for(root, train_subjects=["S2"])
    with pytest.raises(ValueError, match="pixels"):
        dm_for(root, pixels=["depth"])
    # A 3D archive with 17 instead of 32 joints, and 2D files shorter than the 3D or in the COCO layout.
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d={"S1": {"Walking 1": np.zeros((5, 17, 3))}})
    with pytest.raises(DataFormatError, match=r"positions_3d\['S1'\]\['Walking 1'\] has shape \(5, 17, 3\)"):
        dm_for(tmp_path).build("train")
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d={"S1": {"Walking 1": np.ones((5, 32, 3))}})
    meta = {
        "layout_name": "h36m",
        "num_joints": 17,
        "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]],
    }
    np.savez(tmp_path / "data_2d_h36m_gt.npz", positions_2d={"S1": {"Walking 1": [np.zeros((4, 17, 2))] * 4}},
             metadata=meta)  # fmt: skip
    with pytest.raises(DataFormatError, match="at least as long"):
        dm_for(tmp_path, train_subjects=["S1"]).build("train")
    np.savez(tmp_path / "data_2d_h36m_gt.npz", positions_2d={"S1": {"Walking 1": [np.zeros((5, 17, 2))] * 4}},
             metadata={**meta, "layout_name": "coco"})  # fmt: skip
    with pytest.raises(DataFormatError, match="layout_name is 'coco'"):
        dm_for(tmp_path, train_subjects=["S1"]).build("train")
    (tmp_path / "data_3d_h36m.npz").write_bytes((root / "data_3d_h36m.npz").read_bytes()[:200])
    with pytest.raises(DataFormatError, match="truncated"):
        dm_for(tmp_path).build("train")


def test_config_piece_loads(h36m, tmp_path):
    root, _ = h36m
    with open("configs/data/h36m.yaml") as f:
        cfg = yaml.safe_load(f)
    assert cfg["data"]["init_args"]["root"].startswith("/path/to")
    cfg["data"]["init_args"].update(root=str(root), eval_stride=64, train_subjects=["S1"])
    (tmp_path / "h36m.yaml").write_text(yaml.safe_dump(cfg))
    dm = load_datamodule([tmp_path / "h36m.yaml"])
    assert isinstance(dm, Human36M)
    dm.setup("test")
    assert len(dm.build("test")) == 3 * 2 * 4
