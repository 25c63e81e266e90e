"""The command line: a tiny fit + test writes result records, and bad configs fail fast and clearly."""

import json
import time

import numpy as np
import pytest
from tiny import tiny_args

from benchmark.__main__ import main

TINY = tiny_args(clips=2, batch_size=64)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    shutil.copytree(repo / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_fit_then_test_writes_records_and_leaderboard(workdir, capsys):
    main(["fit", *TINY, "--model.init_args.artifacts_dir", "art"])
    records = sorted((workdir / "results" / "synthetic").glob("*.json"))
    names = {json.loads(p.read_text())["method"] for p in records}
    assert names == {"svmac", "baseline-mean-pose", "baseline-zero-depth"}
    rec = json.loads(next(p for p in records if p.name.startswith("svmac")).read_text())
    assert set(rec["metrics"]) == {"mpjpe", "p_mpjpe", "n_mpjpe", "pck150", "auc", "pss4", "pss8"}
    assert rec["metric_protocol"]["p_mpjpe"]["alignment"] == "procrustes"
    assert set(rec["per_action"]) == {"walk", "wave"}
    assert (
        rec["run"]["checkpoint"]
        and rec["run"]["global_step"] > 0
        and rec["input"] == "2D gt"
        and "input_2d" not in rec["protocol"]
    )
    # a 95% interval over the 4 test sequences (2 actions x 2 clips of subject 4) around every metric; per-pose values
    assert records[-1].name == "svmac__2D-gt__" + rec["protocol_id"] + "__seed0.json"
    assert rec["uncertainty"] == {"method": "percentile bootstrap", "level": 0.95, "resamples": 1000, "seed": 0,
                                  "unit": "sequence", "units": 4, "poses": 160}  # fmt: skip
    for key, value in rec["metrics"].items():
        low, high = rec["ci"][key]
        assert low <= value + 1e-4 and value - 1e-4 <= high and low < high, key
    per_pose = np.load(workdir / "results" / "synthetic" / rec["per_pose"]["file"])
    assert per_pose["p_mpjpe"].shape == (160,) and per_pose["p_mpjpe"].mean() == pytest.approx(
        rec["metrics"]["p_mpjpe"], rel=1e-5
    )
    assert (workdir / "runs" / "svmac" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert (workdir / "runs" / "svmac" / "version_0" / "test_predictions.png").is_file()
    assert sorted(p.name for p in (workdir / "art").glob("*.pt"))  # PSS centroids saved as artifacts
    assert main(["leaderboard"]) == 0
    table = (workdir / "LEADERBOARD.md").read_text()
    assert "svmac" in table and "baseline-zero-depth" in table and "P-MPJPE [procrustes, 17j]" in table
    assert (workdir / "leaderboard.csv").read_text().count("\n") == 4


def test_missing_config_file_fails_fast(workdir, capsys):
    start = time.time()
    with pytest.raises(SystemExit):
        main(["fit", "--config", "configs/nope.yaml"])
    assert "nope.yaml" in capsys.readouterr().err
    assert time.time() - start < 10


def test_unknown_option_is_named(workdir, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *TINY, "--model.init_args.widht", "3"])
    assert "widht" in capsys.readouterr().err


def test_datamodule_lacking_a_key_fails_with_its_name(workdir):
    start = time.time()
    args = [a if a != "configs/svmac.yaml" else "configs/svmac.yaml" for a in TINY]
    with pytest.raises(KeyError, match=r"joints_2d.*SyntheticPoses"):
        main(["fit", *args, "--data.class_path", "posesonly.PosesWithout2D"])
    assert time.time() - start < 30


def test_leaderboard_without_results_says_what_to_do(workdir, capsys):
    assert main(["leaderboard"]) == 1
    assert "make run" in capsys.readouterr().out
