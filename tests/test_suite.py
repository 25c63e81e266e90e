"""``python -m benchmark suite``: parsing, skipping, one subprocess per run, failures isolated, resume markers."""

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import Callback
from tiny import tiny_args

from benchmark.__main__ import main
from benchmark.suite import SuiteError, load_suite, run_suite
from methods.base import BASELINES

REPO = Path(__file__).resolve().parents[1]
TINY = [*tiny_args(epochs=1, config=False), "--run.threads", "1"]


class Crash(Callback):
    """Fails the run at its third training batch (a crash inside one run of a suite)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 2:
            raise RuntimeError("simulated crash")


@pytest.fixture
def workdir(workdir, monkeypatch):
    # the subprocesses import test_suite.Crash, and this checkout rather than an editable install elsewhere
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join((str(REPO / "tests"), str(REPO))))
    monkeypatch.delenv("H36M_ROOT", raising=False)
    return workdir


def write_suite(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def test_suite_file_expands_runs_roots_and_skips_unconfigured_datasets(workdir, monkeypatch):
    (workdir / "h36m").mkdir()
    monkeypatch.setenv("SURREAL_HOME", str(workdir / "h36m"))
    suite = write_suite(workdir / "s.yaml", {
        "results_dir": "res", "root": "logs", "args": ["--trainer.max_epochs", "1"],
        "methods": ["configs/svmac.yaml", {"name": "nodisc", "config": "configs/svmac.yaml",
                                           "args": ["--model.init_args.use_critic", "false"]},
                    {"name": "images", "config": "configs/svmac.yaml", "datasets": ["synthetic"]}],
        "datasets": [{"name": "synthetic"},
                     {"name": "h36m", "config": "configs/data/h36m.yaml", "root": "${H36M_ROOT}"},
                     {"name": "surreal", "config": "configs/data/surreal.yaml", "root": "$SURREAL_HOME"},
                     {"name": "gone", "config": "configs/data/surreal.yaml", "root": str(workdir / "nope")}],
    })  # fmt: skip
    settings, runs = load_suite(suite)
    assert settings == {"results_dir": "res", "root": "logs"}
    assert [r.key for r in runs] == [
        f"{m}@{d}" for m in ("svmac", "nodisc") for d in ("synthetic", "h36m", "surreal", "gone")
    ] + ["images@synthetic"]  # a method's datasets filter keeps only those
    skips = {r.key: r.skip_reason for r in runs}
    assert skips["svmac@synthetic"] is None and skips["svmac@surreal"] is None
    assert skips["svmac@h36m"] == "$H36M_ROOT is not set" and "does not exist" in skips["nodisc@gone"]
    nodisc = next(r for r in runs if r.key == "nodisc@surreal").args
    assert nodisc[:4] == ["--config", "configs/svmac.yaml", "--config", "configs/data/surreal.yaml"]
    assert nodisc[nodisc.index("--data.init_args.root") + 1] == str(workdir / "h36m")
    assert nodisc[-10:] == ["--model.init_args.use_critic", "false", "--trainer.max_epochs", "1", "--run.name", "nodisc",
                            "--run.results_dir", "res", "--run.root", "logs/surreal"]  # fmt: skip


@pytest.mark.parametrize(("spec", "message"), [
    ({"methods": []}, "non-empty 'methods:'"),
    ({"methods": ["configs/nope.yaml"]}, "configs/nope.yaml does not exist"),
    ({"methods": ["configs/svmac.yaml"], "datasetz": []}, "unknown keys \\['datasetz'\\]"),
    ({"methods": ["configs/svmac.yaml", "configs/svmac.yaml"]}, "appear twice"),
    ({"methods": [{"config": "configs/svmac.yaml", "datasets": ["h63m"]}], "datasets": [{"name": "h36m"}]},
     r"methods\[0\].datasets names \['h63m'\].*defined: \['h36m'\]"),
])  # fmt: skip
def test_bad_suite_files_say_what_is_wrong(workdir, spec, message):
    with pytest.raises(SuiteError, match=message):
        load_suite(write_suite(workdir / "bad.yaml", spec))
    assert main(["suite", str(workdir / "missing.yaml")]) == 2


def test_suite_runs_isolates_a_crash_skips_done_runs_and_resumes_the_crashed_one(workdir, capsys):
    suite = write_suite(workdir / "s.yaml", {
        "results_dir": "res", "root": "logs", "args": TINY,
        "methods": [{"name": "ok", "config": "configs/svmac.yaml"},
                    {"name": "crash", "config": "configs/svmac.yaml", "args": ["--trainer.callbacks+=test_suite.Crash"]}],
        "datasets": [{"name": "synthetic"}, {"name": "h36m", "config": "configs/data/h36m.yaml", "root": "${H36M_ROOT}"}],
    })  # fmt: skip
    runs = {r.key: r for r in run_suite(suite)}
    assert runs["ok@synthetic"].status == "done" and runs["crash@synthetic"].status == "failed"  # isolated
    assert runs["ok@h36m"].status.startswith("skipped: dataset not configured")
    assert "simulated crash" in capsys.readouterr().out  # the tail of the failed run's log
    records = {json.loads(p.read_text())["method"] for p in (workdir / "res" / "synthetic").glob("*.json")}
    assert records == {"ok", *BASELINES}
    assert (workdir / "leaderboard.html").is_file() and "ok" in (workdir / "LEADERBOARD.md").read_text()
    assert (workdir / "logs" / "suite-logs" / "crash@synthetic.log").is_file()
    # the crash wrote last.ckpt; the attempt marker says it did not finish
    assert (workdir / "logs" / "synthetic" / "crash" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert (
        json.loads((workdir / "logs" / "synthetic" / "crash" / "suite-attempt.json").read_text())["status"] == "started"
    )

    capsys.readouterr()
    runs = {r.key: r for r in run_suite(suite, dry_run=True)}
    assert runs["ok@synthetic"].status.startswith("skipped: results exist")
    assert runs["crash@synthetic"].status == "would run"
    assert runs["crash@h36m"].status == "skipped: dataset not configured ($H36M_ROOT is not set)"
    out = capsys.readouterr().out
    crash_cmd = next(line for line in out.splitlines() if line.startswith("crash@synthetic"))
    assert crash_cmd.rstrip().endswith("--ckpt_path last")  # resumes the interrupted run
    assert "ok@synthetic:" not in out  # done: not run again


def test_seeds_expand_into_one_run_each_with_its_own_folder_and_record(workdir):
    suite = write_suite(workdir / "s.yaml", {
        "results_dir": "res", "root": "logs",
        "methods": [{"name": "svmac", "config": "configs/svmac.yaml", "seeds": [0, 2]}, "configs/svmac.yaml"],
    })  # fmt: skip
    with pytest.raises(SuiteError, match="appear twice"):  # 'svmac' twice: the seeds do not make it distinct
        load_suite(suite)
    suite = write_suite(workdir / "s.yaml", {
        "results_dir": "res", "root": "logs", "args": TINY,
        "methods": [{"name": "svmac", "config": "configs/svmac.yaml", "seeds": [0, 2]},
                    {"name": "one", "config": "configs/svmac.yaml"}],
    })  # fmt: skip
    _, runs = load_suite(suite)
    assert [r.key for r in runs] == ["svmac@default#seed0", "svmac@default#seed2", "one@default"]
    seed2 = runs[1].args
    assert seed2[seed2.index("--seed_everything") + 1] == "2" and seed2[-1] == "logs/default/seed2"
    assert runs[2].root == Path("logs/default") and "--seed_everything" not in runs[2].args
    from benchmark.suite import resolve_record

    assert resolve_record(runs[1]).name.endswith("__seed2.json") and resolve_record(runs[2]).name.endswith(
        "__seed0.json"
    )
    for bad in ([], [1, 1], ["a"], True):
        spec = {"methods": [{"config": "configs/svmac.yaml", "seeds": bad}]}
        with pytest.raises(SuiteError, match=r"methods\[0\]\.seeds must be"):
            load_suite(write_suite(workdir / "bad.yaml", spec))


def test_a_run_that_wrote_its_record_under_another_name_is_named_in_the_failure(tmp_path):
    from benchmark.suite import Run, outcome

    run = Run(method="pg", dataset="synthetic", args=[], root=tmp_path, record=tmp_path / "pg__image__p__seed0.json")
    assert outcome(run, 1, 0.0) == "exit code 1"
    assert outcome(run, 0, 0.0) == f"exited 0 but wrote no record {run.record}"
    (tmp_path / "pg__image-background-plate__p__seed0.json").write_text("{}")
    (tmp_path / "pgx__image__p__seed0.json").write_text("{}")  # another method's record: not this run's
    assert outcome(run, 0, 0.0).endswith("; it wrote pg__image-background-plate__p__seed0.json (the suite expected "
                                         "another name: please report it)")  # fmt: skip
    assert outcome(run, 0, time.time() + 60) == f"exited 0 but wrote no record {run.record}"  # written before the run
    run.record.write_text("{}")
    assert outcome(run, 0, 0.0) is None
