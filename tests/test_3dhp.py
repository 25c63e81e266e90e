"""MPI-INF-3DHP loader (annot.mat v5 cells, camera.calibration, v7.3 test annotation) and its evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from fixtures_formats import write_3dhp_test, write_3dhp_train, write_mpi_calibration

from benchmark.config import load_datamodule
from datamodules.cameras import project, world_to_camera
from datamodules.recorded.base import DataFormatError
from datamodules.recorded.mpi3dhp import ACTION_NAMES, CAMERA_SETS, FROM_17, FROM_28, MPIINF3DHP, TRAIN_SEQUENCES
from datamodules.skeleton import H36M_14_SUBSET, H36M_17
from metrics.mpi3dhp import JOINT_GROUPS, JOINT_SETS, evaluate_3dhp


@pytest.fixture(scope="module")
def mpi(tmp_path_factory):
    root = tmp_path_factory.mktemp("3dhp")
    # As released, the annotation (12 rows) runs past the end of the video (10 frames).
    train = write_3dhp_train(root, subjects=(1, 2), sequences=(1,), frames=12, video_cameras=(0,), video_frames=10)
    test = write_3dhp_test(root / "mpi_inf_3dhp_test_set", sequences=(1, 5), frames=20, images=(1,))
    return root, train, test


def dm_for(root, **kwargs) -> MPIINF3DHP:
    args = dict(train_subjects=[1, 2], sequences=[1], cameras="chest", test_sequences=[1, 5], batch_size=8,
                eval_batch_size=64)  # fmt: skip
    return MPIINF3DHP(str(root), **{**args, **kwargs})


def test_joint_maps_pick_the_named_joints():
    # 'relevant' = 1-based [8 6 15 16 17 10 11 12 24 25 26 19 20 21 5 4 7] of the 28 (mpii_get_joint_set.m)
    relevant = [7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6]
    assert [relevant[i] for i in FROM_17] == FROM_28
    assert FROM_17 == [14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4]
    assert CAMERA_SETS["chest"] == (0, 2, 4, 7, 8)


def test_training_sequences(mpi):
    root, train, _ = mpi
    dm = dm_for(root)
    t = dm.build("train").tensors
    cams = list(CAMERA_SETS["chest"])
    assert t["joints_3d"].shape == (2 * 12 * 5, 17, 3)
    # Rows are (frame, camera): camera-frame annot3 in H36M order (a wrong joint index would hit the 1e5 mm fill).
    expected = torch.tensor(train[(1, 1)]["annot3"][cams].transpose(1, 0, 2, 3).reshape(-1, 17, 3)).float()
    assert (t["joints_3d"][: 12 * 5] - expected).abs().max() < 0.01
    assert (project(t["joints_3d"], t["K"]) - t["joints_2d"]).abs().max() < 1.0
    assert (project(t["joints_3d"], t["K"]) - t["joints_2d"]).abs().max() < 1e-2
    assert (world_to_camera(t["joints_3d_world"], t["R"], t["t"]) - t["joints_3d"]).abs().max() < 0.01
    # MPI's Y-up world becomes the suite's Z-up world: the fixture's world poses come back.
    world = torch.tensor(train[(1, 1)]["world"]).float()
    assert (t["joints_3d_world"][0:60:5] - world).abs().max() < 0.01
    assert set(t["camera"].tolist()) == set(cams) and set(t["subject"].tolist()) == {1, 2}
    assert set(t["action"].tolist()) == {ACTION_NAMES.index("Unlabelled")}
    univ = dm_for(root, train_annotation="univ_annot3").build("train").tensors["joints_3d"]
    expected_univ = torch.tensor(train[(1, 1)]["univ"][cams].transpose(1, 0, 2, 3).reshape(-1, 17, 3)).float()
    assert (univ[: 12 * 5] - expected_univ).abs().max() < 0.01
    multi = dm_for(root, multiview=True, cameras="all")
    batch = next(iter(multi.train_dataloader()))
    assert batch["joints_3d"].shape == (8, 14, 17, 3)


def test_training_rows_cut_to_the_video(mpi, monkeypatch):
    # mpii_get_sequence_info.m: S1/Seq1 6416 frames at 25 fps, S1/Seq2 12430 at 50, S8/Seq2 6054 at 25.
    assert (TRAIN_SEQUENCES[(1, 1)], TRAIN_SEQUENCES[(1, 2)], TRAIN_SEQUENCES[(8, 2)]) == ((6416, 25), (12430, 50),
                                                                                           (6054, 25))  # fmt: skip
    assert len(TRAIN_SEQUENCES) == 16 and {fps for _, fps in TRAIN_SEQUENCES.values()} == {25, 50}
    root, train, _ = mpi
    monkeypatch.setitem(TRAIN_SEQUENCES, (1, 1), (10, 50))  # the fixture's S1/Seq1 video: 10 frames, 12 rows
    dm = dm_for(root)
    t = dm.build("train").tensors
    s1 = t["subject"] == 1
    assert s1.sum() == 10 * 5 and t["frame"][s1].max() == 9 and (t["subject"] == 2).sum() == 12 * 5
    assert dm.sequence_info[(1, 1)] == {"rows": 12, "frames": 10, "fps": 50}
    assert dm.sequence_info[(2, 1)] == {"rows": 12, "frames": 12, "fps": 25}
    cams = list(CAMERA_SETS["chest"])
    expected = torch.tensor(train[(1, 1)]["annot3"][cams][:, :10].transpose(1, 0, 2, 3).reshape(-1, 17, 3)).float()
    assert (t["joints_3d"][s1] - expected).abs().max() < 0.01


def test_test_set_valid_frames_activities_and_K(mpi):
    root, _, test = mpi
    dm = dm_for(root, test_annotation="annot3")
    t = dm.build("test").tensors
    valid = {i: np.flatnonzero(test[i]["valid"]) for i in (1, 5)}
    assert len(t["frame"]) == len(valid[1]) + len(valid[5]) == 30
    assert t["frame"][t["subject"] == 1].tolist() == valid[1].tolist()
    assert t["action"][t["subject"] == 5].tolist() == (test[5]["activity"][valid[5]] - 1).astype(int).tolist()
    # K is fitted to the annotation's own projection: it is the fixture's K and reprojects within 1 px.
    for i in (1, 5):
        assert torch.allclose(t["K"][t["subject"] == i][0], torch.tensor(test[i]["K"]).float(), atol=1e-2)
        assert dm.intrinsics_fit[i] < 1e-2
    assert (project(t["joints_3d"], t["K"]) - t["joints_2d"]).abs().max() < 1e-2
    ts5 = t["joints_3d"][t["subject"] == 5]
    assert (ts5 - torch.tensor(test[5]["annot3"][valid[5]]).float()).abs().max() < 0.01
    assert (world_to_camera(t["joints_3d_world"], t["R"], t["t"]) - t["joints_3d"]).abs().max() < 0.01
    # World Z up for the level test camera: the head is above the pelvis.
    assert (t["joints_3d_world"][:, H36M_17.index("Head"), 2] > t["joints_3d_world"][:, 0, 2] + 300).all()
    official = dm_for(root).build("test").tensors["joints_3d"]  # default: univ_annot3, the evaluation's ground truth
    assert (official[: len(valid[1])] - torch.tensor(test[1]["univ"][valid[1]]).float()).abs().max() < 0.01
    assert len(dm_for(root, valid_only=False).build("test")) == 40


def test_pixels_from_video_and_test_images(mpi):
    root, _, _ = mpi
    dm = dm_for(root, train_subjects=[1], cameras=[0], test_sequences=[1], pixels=["image"], image_size=32, crop="full")
    data = dm.build("train")
    assert data.tensors["frame"].tolist() == list(range(10))  # 12 annotated rows, 10 video frames
    batch = data.__getitems__([0, 3, 9])
    assert batch["image"].shape == (3, 3, 32, 32)
    # video_0.avi frame n is grey 20 * (n % 12) + 10: the right frames are decoded (MJPG is lossy by a few levels).
    assert torch.allclose(batch["image"].mean((1, 2, 3)) * 255, torch.tensor([10.0, 70.0, 190.0]), atol=4)
    val = dm.build("val").__getitems__([0, 1, 2, 3])
    assert torch.allclose(val["image"].mean((1, 2, 3)) * 255, 10.0 * (val["frame"] % 20).float(), atol=3)
    assert (project(val["joints_3d"], val["K"]) - val["joints_2d"]).abs().max() > 0  # univ_annot3: not projective
    with pytest.raises(FileNotFoundError, match="video_2.avi"):
        dm_for(root, cameras=[2], pixels=["image"]).build("train")


def test_errors_name_the_file(mpi, tmp_path):
    root, _, _ = mpi
    with pytest.raises(FileNotFoundError, match=r"S1[/\\]Seq1[/\\]annot.mat"):
        dm_for(tmp_path).build("train")
    write_3dhp_train(tmp_path, subjects=(1,), frames=3)
    cams = [{"K": np.eye(3), "E": np.eye(4), "size": (10, 10)}] * 13
    write_mpi_calibration(tmp_path / "S1" / "Seq1" / "camera.calibration", cams)
    with pytest.raises(DataFormatError, match="13 cameras, expected 14"):
        dm_for(tmp_path, train_subjects=[1]).build("train")
    bad = {k: v for k, v in scipy.io.loadmat(tmp_path / "S1" / "Seq1" / "annot.mat").items() if not k.startswith("__")}
    bad["annot2"][3, 0] = bad["annot2"][3, 0][:, :50]
    scipy.io.savemat(tmp_path / "S1" / "Seq1" / "annot.mat", bad)
    with pytest.raises(DataFormatError, match=r"annot2\{4\} has shape \(3, 50\)"):
        MPIINF3DHP(str(tmp_path), train_subjects=[1], sequences=[1]).build("train")
    test_file = root / "mpi_inf_3dhp_test_set" / "TS1" / "annot_data.mat"
    (tmp_path / "TS1").mkdir()
    (tmp_path / "TS1" / "annot_data.mat").write_bytes(test_file.read_bytes()[:3000])
    with pytest.raises(DataFormatError, match="truncated"):
        MPIINF3DHP(str(tmp_path), test_root=str(tmp_path), test_sequences=[1]).build("test")
    with pytest.raises(ValueError, match="camera set 'top'"):
        dm_for(root, cameras="top")


def _poses_with_errors(errors: list[list[float]], seed: int = 0):
    """Random targets and predictions whose root-centred joint errors are exactly ``errors`` (N, 17) mm."""
    gen = torch.Generator().manual_seed(seed)
    err = torch.tensor(errors, dtype=torch.float64)
    target = torch.randn(len(errors), 17, 3, generator=gen, dtype=torch.float64) * 300
    direction = torch.nn.functional.normalize(
        torch.randn(len(errors), 17, 3, generator=gen, dtype=torch.float64), dim=-1
    )
    offset = direction * err.unsqueeze(-1)
    offset[:, 0] = 0  # the pelvis (root) is exact
    shift = torch.randn(len(errors), 1, 3, generator=gen, dtype=torch.float64) * 1000  # absolute position is ignored
    return target + offset + shift, target


def test_official_pck_auc_hand_computed():
    # Four frames: A (TS1, activity 1) all joints 98 mm off; B (TS1, activity 2) 198 mm; C (TS2, activity 1) joints
    # 1..8 48 mm and 9..16 158 mm; D invalid with 1000 mm (must not count). Thresholds 0, 5, ..., 150 (31):
    # 98 -> below 11 of them (100..150), 48 -> 21 (50..150), 158/198 -> none; the pelvis (0 mm) -> 30.
    errors = [[0] + [98] * 16, [0] + [198] * 16, [0] + [48] * 8 + [158] * 8, [0] + [1000] * 16]
    pred, target = _poses_with_errors(errors)
    res = evaluate_3dhp(pred, target, sequence=torch.tensor([1, 1, 2, 2]), activity=torch.tensor([1, 2, 1, 2]),
                        valid=torch.tensor([True, True, True, False]))  # fmt: skip
    a17, a14 = res["all17"], res["h36m14"]
    # all17: PCK counts A 17/17, B 1/17 (pelvis), C 9/17; AUC sums A 30 + 16 * 11, B 30, C 30 + 8 * 21 (of 17 * 31).
    assert a17["sequences"]["TS1"]["pck"] == pytest.approx(100 * 18 / 34)
    assert a17["sequences"]["TS1"]["auc"] == pytest.approx(100 * (206 + 30) / (2 * 527))
    assert a17["sequences"]["TS2"]["pck"] == pytest.approx(100 * 9 / 17)
    assert a17["sequences"]["TS2"]["auc"] == pytest.approx(100 * 198 / 527)
    assert a17["activities"]["Standing/Walking"]["pck"] == pytest.approx(100 * 26 / 34)
    assert a17["activities"]["Standing/Walking"]["auc"] == pytest.approx(100 * (206 + 198) / 1054)
    assert a17["activities"]["Exercising"]["auc"] == pytest.approx(100 * 30 / 527)
    assert a17["all"]["pck"] == pytest.approx(100 * 27 / 51) and a17["all"]["frames"] == 3
    assert a17["all"]["auc"] == pytest.approx(100 * 434 / 1581)
    assert a17["all"]["groups"]["Hip"]["pck"] == pytest.approx(100 * 7 / 9)  # RHip, LHip, pelvis: 3 + 1 + 3
    # h36m14 (no pelvis, spine, head centre): C has 7 joints at 48 mm (1..6, 8) and 7 at 158 mm (10..16).
    assert a14["sequences"]["TS1"]["pck"] == pytest.approx(50.0)
    assert a14["sequences"]["TS1"]["auc"] == pytest.approx(100 * 154 / 868)
    assert a14["sequences"]["TS2"]["auc"] == pytest.approx(100 * 147 / 434)
    assert a14["activities"]["Standing/Walking"]["pck"] == pytest.approx(75.0)
    assert a14["activities"]["Exercising"]["pck"] == pytest.approx(0.0)
    assert a14["all"]["pck"] == pytest.approx(50.0) and a14["all"]["auc"] == pytest.approx(100 * 301 / 1302)
    assert a14["all"]["groups"]["Hip"]["pck"] == pytest.approx(100 * 4 / 6)
    assert a14["all"]["groups"]["Hip"]["auc"] == pytest.approx(100 * (2 * 11 + 2 * 21) / (6 * 31))
    assert a14["all"]["mpjpe"] == pytest.approx((14 * 98 + 14 * 198 + 7 * 48 + 7 * 158) / 42)
    assert set(a14["activities"]) == {"Standing/Walking", "Exercising"}


def test_joint_groups_partition_their_sets():
    for name, groups in JOINT_GROUPS.items():
        assert sorted(j for g in groups.values() for j in g) == sorted(JOINT_SETS[name])
    assert JOINT_SETS["h36m14"] == tuple(H36M_14_SUBSET) and len(JOINT_SETS["h36m14"]) == 14


def test_all17_groups_are_the_released_scripts():
    # The released mpii_get_pck_auc_joint_groups.m, 1-based into the test set's 17 'relevant' joints; the later
    # variant (h36m14) comments out the head centre [17] and spine [16] and drops the pelvis [15] from Hip.
    released = {"Head": [1, 17], "Neck": [2], "Shoulder": [3, 6], "Elbow": [4, 7], "Wrist": [5, 8], "Spine": [16],
                "Hip": [9, 12, 15], "Knee": [10, 13], "Ankle": [11, 14]}  # fmt: skip
    as_h36m = {g: sorted(j for j in range(17) if FROM_17[j] + 1 in mpi) for g, mpi in released.items()}
    assert as_h36m == {g: sorted(j) for g, j in JOINT_GROUPS["all17"].items()}
    variant = {g: [i for i in mpi if i not in (15, 16, 17)] for g, mpi in released.items() if g != "Spine"}
    assert {g: sorted(j for j in range(17) if FROM_17[j] + 1 in mpi) for g, mpi in variant.items()} == {
        g: sorted(j) for g, j in JOINT_GROUPS["h36m14"].items()
    }


def test_perfect_prediction_from_the_loader_scores_as_the_scripts(mpi):
    root, _, _ = mpi
    t = dm_for(root).build("test").tensors
    res = evaluate_3dhp(t["joints_3d"], t["joints_3d"], t["subject"], t["action"] + 1)
    for joint_set in ("all17", "h36m14"):
        assert res[joint_set]["all"]["pck"] == pytest.approx(100.0)
        assert res[joint_set]["all"]["auc"] == pytest.approx(100 * 30 / 31)  # PCK at 0 mm is 0 (strict <)
    with pytest.raises(ValueError, match="activity codes must be 1..7"):
        evaluate_3dhp(t["joints_3d"], t["joints_3d"], t["subject"], t["action"])


def test_config_piece_loads(mpi, tmp_path):
    root, _, _ = mpi
    with open("configs/data/3dhp.yaml") as f:
        cfg = yaml.safe_load(f)
    cfg["data"]["init_args"].update(root=str(root), test_root=str(root / "mpi_inf_3dhp_test_set"),
                                    train_subjects=[1, 2], sequences=[1], test_sequences=[1, 5])  # fmt: skip
    (tmp_path / "3dhp.yaml").write_text(yaml.safe_dump(cfg))
    dm = load_datamodule([tmp_path / "3dhp.yaml"])
    assert isinstance(dm, MPIINF3DHP) and dm.cameras == CAMERA_SETS["spin8"]
    assert len(dm.build("train")) == 2 * 12 * 8
