"""``data check``: complete fixture trees pass; broken ones (missing file, truncated file, wrong shape) are named."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from fixtures_formats import write_3dhp_test, write_3dhp_train, write_h36m, write_surreal

from benchmark.data_cli import main as data_cli
from datamodules.recorded.check import check_dataset
from datamodules.recorded.h36m import ACTIONS, SUBJECTS
from datamodules.recorded.mpi3dhp import TRAIN_SEQUENCES


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("check")
    names = [f"{a} 1" for a in ACTIONS]
    write_h36m(base / "h36m", {s: names for s in SUBJECTS}, frames=3)
    write_3dhp_train(base / "3dhp", subjects=tuple(range(1, 9)), sequences=(1, 2), frames=2)
    write_3dhp_test(base / "3dhp" / "mpi_inf_3dhp_test_set", sequences=tuple(range(1, 7)), frames=4)
    write_surreal(base / "surreal", {"train": ["01_01", "01_02"], "val": ["02_01"], "test": ["03_01"]}, frames=3,
                  empty=(1,))  # fmt: skip
    return base


def broken(trees: Path, dataset: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trees / dataset, tmp_path / dataset))


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("dataset", ["h36m", "3dhp", "surreal"])
def test_complete_trees_pass(trees, dataset, capsys):
    assert check_dataset(dataset, trees / dataset) == []
    assert f"data check {dataset} {trees / dataset}: OK" in capsys.readouterr().out
    assert data_cli(["check", dataset, str(trees / dataset)]) == 0


def test_counts_are_reported(trees, tmp_path, capsys, monkeypatch):
    # h36m-fetch keeps frames 0 and 64 of S9's 65 (every 64th): 63 of 65 per camera have no image.
    write_h36m(tmp_path / "h36m", {"S9": ["Walking 1"]}, frames=65, images={"S9": ("Walking 1",)})
    check_dataset("h36m", tmp_path / "h36m")
    assert "checked images/: 4 frame folders; 252 of 260 annotated (frame, camera) pairs have no image" in (
        capsys.readouterr().out
    )
    monkeypatch.setitem(TRAIN_SEQUENCES, (3, 2), (1, 25))  # S3/Seq2: 2 annotated rows, a 1-frame video
    check_dataset("3dhp", trees / "3dhp")
    assert "checked 16 of 16 training sequences complete, 1 annotation rows past the videos' ends cut" in (
        capsys.readouterr().out
    )
    check_dataset("surreal", trees / "surreal")
    out = capsys.readouterr().out
    assert "checked train: 2 clips, 2 segm, 2 depth, 2 gtflow, 2 empty frames left out (joints3D all zero)" in out
    assert "checked test: 1 clips, 1 segm, 1 depth, 1 gtflow, 1 empty frames left out" in out


def test_h36m_problems_are_named(trees, tmp_path, capsys):
    root = broken(trees, "h36m", tmp_path)
    (root / "data_2d_h36m_gt.npz").unlink()
    problems = check_dataset("h36m", root)
    assert len(problems) == 1 and "no 2D file data_2d_h36m_<keypoints>.npz" in problems[0]
    # 2D poses of the wrong shape, and one sequence shorter than its 3D.
    meta = {
        "layout_name": "h36m",
        "num_joints": 17,
        "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]],
    }
    two_d = {s: {f"{a} 1": [np.zeros((3, 17, 2))] * 4 for a in ACTIONS} for s in SUBJECTS}
    two_d["S5"]["Eating 1"] = [np.zeros((2, 17, 2))] * 4
    np.savez(root / "data_2d_h36m_cpn.npz", positions_2d=two_d, metadata=meta)
    two_d["S7"]["Posing 1"] = [np.zeros((3, 16, 2))] * 4
    np.savez(root / "data_2d_h36m_bad.npz", positions_2d=two_d, metadata=meta)
    problems = check_dataset("h36m", root)
    assert any("data_2d_h36m_cpn.npz: S5/'Eating 1' has [2, 2, 2, 2] 2D frames" in p for p in problems)
    assert any("data_2d_h36m_bad.npz: positions_2d['S7']['Posing 1'][0] has shape (3, 16, 2)" in p for p in problems)
    truncate(root / "data_3d_h36m.npz", 500)
    problems = check_dataset("h36m", root)
    assert any("data_3d_h36m.npz cannot be read" in p and "truncated" in p for p in problems)
    out = capsys.readouterr().out
    assert "PROBLEM" in out and "data_3d_h36m.npz" in out
    assert data_cli(["check", "h36m", str(root)]) == 1


def test_h36m_missing_subject_and_frames(trees, tmp_path):
    root = broken(trees, "h36m", tmp_path)
    data = np.load(root / "data_3d_h36m.npz", allow_pickle=True)["positions_3d"].item()
    del data["S6"]
    del data["S9"]["Smoking 1"]
    np.savez(root / "data_3d_h36m.npz", positions_3d=data)
    (root / "images" / "S1" / "Posing-1" / "imageSequence" / "54138969").mkdir(parents=True)
    problems = check_dataset("h36m", root, verbose=False)
    assert any("subject S6 is missing" in p for p in problems)
    assert any("subject S9 lacks actions ['Smoking']" in p for p in problems)
    assert any("Posing-1" in p and "no img_%06d.jpg frames" in p for p in problems)


def test_3dhp_problems_are_named(trees, tmp_path):
    root = broken(trees, "3dhp", tmp_path)
    (root / "S3" / "Seq2" / "annot.mat").unlink()
    truncate(root / "mpi_inf_3dhp_test_set" / "TS2" / "annot_data.mat", 4000)
    annot = root / "S1" / "Seq1" / "annot.mat"
    data = {k: v for k, v in scipy.io.loadmat(annot).items() if not k.startswith("__")}
    data["annot3"][5, 0] = data["annot3"][5, 0][:, :80]
    scipy.io.savemat(annot, data)
    with h5py.File(root / "mpi_inf_3dhp_test_set" / "TS4" / "annot_data.mat", "a") as f:
        del f["univ_annot3"]
        f.create_dataset("univ_annot3", data=np.zeros((4, 1, 16, 3)))
    problems = check_dataset("3dhp", root, verbose=False)
    assert len(problems) == 4, problems
    assert any(str(Path("S3/Seq2/annot.mat")) in p and "does not exist" in p for p in problems)
    assert any("TS2" in p and "truncated or corrupt" in p for p in problems)
    assert any(str(Path("S1/Seq1/annot.mat")) in p and "annot3{6} has shape (2, 80)" in p for p in problems)
    assert any("TS4" in p and "univ_annot3 has shape (4, 1, 16, 3)" in p for p in problems)


def test_surreal_problems_are_named(trees, tmp_path):
    root = broken(trees, "surreal", tmp_path)
    (root / "val" / "run0" / "02_01" / "02_01_c0001.mp4").unlink()
    truncate(root / "test" / "run0" / "03_01" / "03_01_c0001_segm.mat", 400)
    info = root / "train" / "run0" / "01_02" / "01_02_c0001_info.mat"
    data = {k: v for k, v in scipy.io.loadmat(info).items() if not k.startswith("__")}
    scipy.io.savemat(info, {**data, "joints2D": np.zeros((3, 24, 3))})
    (root / "train" / "run0" / "01_01" / "01_01_c0001_depth.mat").unlink()
    problems = check_dataset("surreal", root, verbose=False)
    assert any("02_01_c0001.mp4: missing" in p for p in problems)
    assert any("03_01_c0001_segm.mat" in p and ("truncated" in p or "frames missing" in p) for p in problems)
    assert any("01_02_c0001_info.mat: joints2D has shape (3, 24, 3)" in p for p in problems)
    assert any("only 1 of 2 clips have _depth.mat" in p for p in problems)
    assert check_dataset("surreal", tmp_path / "nowhere", verbose=False) == [
        f"{tmp_path / 'nowhere'}: the surreal folder does not exist"
    ]
