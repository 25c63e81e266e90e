"""The command line: a tiny fit + test writes result records, bad configs fail fast and clearly, and the terminal
shows the user what concerns their run (help, short errors, progress lines, complete leaderboard numbers)."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from tiny import tiny_args

from benchmark.__main__ import main
from benchmark.leaderboard import _fmt, group_tables, per_action_markdown, print_tables
from benchmark.records import load_records
from benchmark.terminal import DEBUG_ENV
from methods.base import BASELINES

TINY = tiny_args(clips=2, batch_size=64)


def test_fit_then_test_writes_records_and_leaderboard(workdir, capsys):
    main(["fit", *TINY, "--model.init_args.artifacts_dir", "art"])
    records = sorted((workdir / "results" / "synthetic").glob("*.json"))
    names = {json.loads(p.read_text())["method"] for p in records}
    assert names == {"svmac", *BASELINES}
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
    # SVMAC's loss balance at every validation lands in the CSV log (and W&B: same self.log)
    header = (workdir / "runs" / "svmac" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val_balance/grad_depth_svmac", "val_balance/grad_camera_adv", "val_balance/loss_3d"} <= set(header)
    assert sorted(p.name for p in (workdir / "art").glob("*.pt"))  # PSS centroids saved as artifacts
    assert main(["leaderboard"]) == 0
    table = (workdir / "LEADERBOARD.md").read_text()
    assert "svmac" in table and "baseline-zero-depth" in table and "P-MPJPE [procrustes, 17j]" in table
    assert (workdir / "leaderboard.csv").read_text().count("\n") == 1 + len(names)  # header, one row per record


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


# -- what a user sees in the terminal: subprocesses, as from a shell, with stdout a pipe (a log file) ----------
REPO = Path(__file__).resolve().parents[1]
LIGHTNING_NOISE = ["LightningCLI's args parameter", "litlogger", "LeafSpec", "anonymous setting", "git root",
                   "Traceback"]  # fmt: skip


def run_cli(args: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1",
           "COLUMNS": "80"}  # fmt: skip
    env.pop(DEBUG_ENV, None)
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_help_lists_every_command(tmp_path):
    shown = run_cli(["--help"], tmp_path)
    bare = run_cli([], tmp_path)
    assert shown.returncode == 0 and bare.returncode == 2 and bare.stdout == shown.stdout
    for command in ["fit", "validate", "test", "predict", "suite", "leaderboard", "data stats", "data check",
                    "data preview", "--model SVMAC"]:  # fmt: skip
        assert command in shown.stdout
    assert "__main__" not in shown.stdout + shown.stderr and "Lightning Trainer" not in shown.stdout


@pytest.mark.parametrize(
    "bad, option, says",
    [(["--model.init_args.num_angles", "-3"], "--model.init_args.num_angles -3", "num_angles must be >= 1"),
     (["--model.class_path", "methods.nope.X"], "--model methods.nope.X", "known methods: SVMAC"),
     (["--model", "Nope"], "--model Nope", "known methods: SVMAC")],
)  # fmt: skip
def test_bad_input_is_a_short_error_naming_the_option(workdir, bad, option, says):
    done = run_cli(["fit", "--config", "configs/svmac.yaml", "--run.wandb", "off", *bad], workdir)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    err = lines[next(i for i, ln in enumerate(lines) if ln.startswith("error:")) :]
    assert len(err) <= 3 and err[0].startswith(f"error: {option}: ") and says in done.stderr, done.stderr
    assert len(lines) - len(err) <= 1  # at most Lightning's "Seed set to 0" before it
    assert not any(noise in done.stdout + done.stderr for noise in LIGHTNING_NOISE)


@pytest.fixture(scope="module")
def short_name_fit(tmp_path_factory):
    """A tiny fit with the short class names, W&B offline, progress bar on and output to a pipe."""
    workdir = tmp_path_factory.mktemp("fit")
    args = ["fit", "--model", "SVMAC", "--data", "SyntheticPoses", *tiny_args(wandb="offline", config=False),
            "--trainer.enable_progress_bar", "true", "--trainer.log_every_n_steps", "1"]  # fmt: skip
    return workdir, run_cli(args, workdir)


def test_short_class_names_train(short_name_fit):
    workdir, done = short_name_fit
    assert done.returncode == 0, done.stderr[-2000:]
    names = sorted(p.name.split("__")[0] for p in (workdir / "results" / "synthetic").glob("*.json"))
    assert names == sorted(["svmac", *BASELINES])


def test_a_clean_fit_prints_no_third_party_notices(short_name_fit):
    _, done = short_name_fit
    out = done.stdout + done.stderr
    assert [noise for noise in LIGHTNING_NOISE if noise in out] == []


def test_without_a_terminal_every_validation_prints_a_line(short_name_fit):
    _, done = short_name_fit
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["0", "1"], done.stdout  # tiny_args: 2 epochs, one validation each
    assert all("val P-MPJPE" in ln and "baseline-zero-depth" in ln and "step" in ln for ln in lines)
    assert "it/s" not in done.stdout  # no rich bar drawn into the log


def test_leaderboard_at_80_columns_shows_every_number_in_full():
    metrics = {"mpjpe": 1210.34, "p_mpjpe": 395.25, "n_mpjpe": 1000.12, "pck150": 0.4567, "auc": 0.2, "pss50": 0.5,
               "pss100": 0.1234}  # fmt: skip
    names = ["svmac-nodisc-supervised-5pct-angles-3", "baseline-zero-depth", "baseline-mean-pose"]
    records = [{"dataset": "synthetic", "protocol_id": "abc", "protocol": {"dataset": "synthetic"}, "method": name,
                "metrics": metrics, "baseline": name.startswith("baseline")} for name in names]  # fmt: skip
    out = io.StringIO()
    print_tables(group_tables(records), Console(file=out, width=80))
    text = out.getvalue()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    for metric, value in metrics.items():
        assert _fmt(metric, value) in text
    assert text.count("395.2") == len(names)  # every row, every number


def test_per_action_table_has_only_the_test_sets_actions(workdir):
    main(["fit", *TINY, "--data.class_path", "posesonly.FewerTestActions", "--run.test_after_fit", "true"])
    records = load_records(workdir / "results")
    assert records and all(set(rec["per_action"]) == {"walk"} for rec in records)
    table = group_tables(records)[0]
    assert "—" not in per_action_markdown(table)


def test_read_config_layers_files_at_every_depth_as_lightningcli(tmp_path):
    from benchmark.config import read_config

    base, cpu, other = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    base.write_text(
        "data:\n  class_path: datamodules.SyntheticHumans\n  init_args: {mode: multiview, image_size: 256}\n"
    )
    cpu.write_text("data:\n  init_args: {image_size: 64}\ntrainer: {max_time: '00:00:10:00'}\n")
    other.write_text("data:\n  class_path: datamodules.SyntheticPoses\n  init_args: {batch_size: 8}\n")
    cfg = read_config([base, cpu])
    assert cfg["data"] == {
        "class_path": "datamodules.SyntheticHumans",
        "init_args": {"mode": "multiview", "image_size": 64},
    }
    assert cfg["trainer"] == {"max_time": "00:00:10:00"}
    # a different class starts its init_args afresh
    assert read_config([base, cpu, other])["data"] == {
        "class_path": "datamodules.SyntheticPoses",
        "init_args": {"batch_size": 8},
    }


def test_load_model_builds_the_method_a_config_stack_names(tmp_path):
    from benchmark.config import load_model

    base, cpu = tmp_path / "m.yaml", tmp_path / "cpu.yaml"
    base.write_text("model:\n  class_path: methods.svmac.SVMAC\n  init_args: {width: 64, lr: 0.1}\n")
    cpu.write_text("model:\n  init_args: {width: 16}\n")
    model = load_model([base, cpu])
    assert type(model).__name__ == "SVMAC" and model.hparams.width == 16 and model.hparams.lr == 0.1
    with pytest.raises(KeyError, match="no 'model' section"):
        load_model([_write(tmp_path / "d.yaml", "data: {}\n")])


def _write(path, text):
    path.write_text(text)
    return path


def test_bench_methods_stacks_exist_and_the_timer_counts_images():
    from benchmark.bench import BatchTimer
    from benchmark.bench_methods import STACKS, images

    root = Path(__file__).resolve().parents[1]
    assert all((root / p).is_file() for stack in STACKS.values() for p in stack)
    timer = BatchTimer(warmup=1, count=images)
    for image in (torch.zeros(4, 3, 8, 8), torch.zeros(2, 2, 3, 8, 8), torch.zeros(5, 3, 8, 8)):
        timer.on_train_batch_end(None, None, None, {"image": image}, 0)
    assert timer.items == 2 * 2 + 5  # the warm-up batch is not counted; a pair counts two images
    with pytest.raises(RuntimeError, match="warm-up"):
        _ = BatchTimer(warmup=3).rate


def test_bench_supervised_runs_at_a_tiny_size():
    """``make bench``'s image-reference figures (a smoke run: the rates are positive, their size is not tested)."""
    from benchmark.bench import bench_supervised

    rates = bench_supervised(batches=2, image_size=32, batch_size=4, workers=0)
    assert len(rates) == 3 and all(rate > 0 for rate in rates.values())
