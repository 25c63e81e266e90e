"""Result records: one JSON file per (method, dataset, protocol), written atomically.

Layout: ``results/<dataset>/<method>__<protocol id>__seed<seed>.json`` (without ``__seed..`` when the run set
no seed), one record per training seed. A record holds the metric values, the protocol of every number,
per-action values, a 95% bootstrap interval of every metric over test sequences (``ci``, how in
``uncertainty``), and run metadata (git commit, config hash, seed, package versions, wall time, hardware,
checkpoint), so every number can be traced to its run.

Next to each record, ``<same name>.npz`` holds its per-pose values (one float32 array per metric) and the
identity of every test pose (``unit``, ``frame``, ``action``, ``checksum`` of the ground truth), in a
canonical order. The record names the file and the content hash of those identities (``per_pose``), so the
leaderboard pairs two records pose by pose only when they were evaluated on identical frames.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path

import lightning as L
import numpy as np
import torch

from metrics.uncertainty import frames_hash

SCHEMA = 2  # 2: protocol without the inputs; input, role, budget, intervals and per-pose values per record


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> Path:
    """Write text to a temporary file in the target folder, then rename: readers never see half a file."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write bytes to a temporary file in the target folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, payload: dict) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True))


def protocol_id(protocol: dict) -> str:
    return hashlib.sha1(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:8]


def git_commit() -> str:
    """Commit of the code that ran (the repository holding this package, wherever the command ran), ``-dirty``
    when tracked files differ from it; ``unknown`` outside a git checkout."""
    code = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True, cwd=code
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=code).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    names = ("torch", "lightning", "torchmetrics", "kornia", "numpy", "scikit-learn")
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def hardware() -> dict[str, str | int]:
    info: dict[str, str | int] = {"machine": platform.machine(), "cpus": os.cpu_count() or 0,
                                  "python": platform.python_version()}  # fmt: skip
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    return info


def config_hash(log_dir: str | Path | None) -> str:
    path = Path(log_dir or ".") / "config.yaml"
    return hashlib.sha1(path.read_bytes()).hexdigest()[:10] if path.is_file() else "none"


#: data-protocol keys that describe what a method was given, not how it was scored: they go into a
#: record's ``input`` (a column of the row), so methods on images, ground-truth 2D and noisy 2D share a table
INPUT_KEYS = ("input", "input_2d")


def record_protocol(dataset: str, num_joints: int, data_protocol: dict) -> dict:
    """The evaluation protocol (frames, joints, annotation, ...) of a (dataset, data protocol); its hash
    names the record file and decides the leaderboard table. The inputs (``INPUT_KEYS``) are left out."""
    return {"dataset": dataset, "joints": str(num_joints),
            **{k: v for k, v in data_protocol.items() if k not in INPUT_KEYS}}  # fmt: skip


def record_path(results_dir: str | Path, dataset: str, method: str, input_desc: str, pid: str, seed=None) -> Path:
    """``<results_dir>/<dataset>/<method>__<input>__<protocol id>[__seed<seed>].json``: one record per
    (method, input, protocol, training seed)."""
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "-", input_desc).strip("-") or "none"
    suffix = "" if seed in (None, "", "unset") else f"__seed{seed}"
    return Path(results_dir) / dataset / f"{method}__{slug}__{pid}{suffix}.json"


def budget(trainer: L.Trainer, train_time_s: float | None) -> dict:
    """The training budget of a run: time, optimiser steps, epochs, and what it ran on."""
    accel = type(trainer.accelerator).__name__.replace("Accelerator", "").lower()
    device = torch.cuda.get_device_name(0) if accel == "cuda" and torch.cuda.is_available() else accel
    return {"train_time_s": None if train_time_s is None else round(train_time_s, 1),
            "steps": trainer.global_step, "epochs": trainer.current_epoch, "device": device,
            "devices": trainer.world_size, "threads": torch.get_num_threads(),
            "precision": str(trainer.precision)}  # fmt: skip


def make_records(
    module,
    trainer: L.Trainer,
    wall_time_s: float,
    method_name: str | None = None,
    log_dir: str | None = None,
    train_time_s: float | None = None,
) -> list[dict]:
    """One record per evaluated estimator (the method and its baselines) from ``module.test_results``.

    A result's ``budget`` entries replace the run's (e.g. a pretrained network tested beside its adaptation carries
    the pretraining's time and steps); ``budget["pretraining"]`` names the training a row started from.

    ``method_name`` renames the method's record (e.g. an ablation run ``--run.name svmac-nodisc``); the
    baselines keep their names. ``log_dir`` defaults to ``trainer.log_dir`` (a collective call under DDP:
    pass it when calling from one process only).
    """
    protocol = record_protocol(module.data_name, module.skeleton.num_joints, module.data_protocol)
    ckpt = getattr(trainer, "ckpt_path", None)
    log_dir = trainer.log_dir if log_dir is None else log_dir
    run = {
        "git_commit": git_commit(),
        "config_hash": config_hash(log_dir),
        "seed": os.environ.get("PL_GLOBAL_SEED", "unset"),
        "versions": package_versions(),
        "hardware": hardware(),
        "wall_time_s": round(wall_time_s, 1),
        "checkpoint": str(ckpt) if ckpt else None,
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
        "log_dir": log_dir,
        "world_size": trainer.world_size,
        "strategy": type(trainer.strategy).__name__,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "val_history": list(getattr(module, "val_history", []))[-20:],
        "method_hparams": {
            k: v for k, v in dict(module.hparams).items() if isinstance(v, (int, float, str, bool, list, tuple))
        },
    }
    spent = budget(trainer, train_time_s)
    records = []
    for name, result in module.test_results.items():
        baseline = name.startswith("baseline-")
        if method_name and name == module.method_name:
            name = method_name
        rec = {
            "schema": SCHEMA, "method": name, "dataset": module.data_name, "protocol": protocol,
            "protocol_id": protocol_id(protocol), "input": result.get("input", "unknown"),
            "role": result.get("role", "baseline" if baseline else "method"), "metrics": result["metrics"],
            "metric_protocol": result["metric_protocol"], "per_action": result["per_action"],
            "baseline": baseline, "budget": None if baseline else {**spent, **result.get("budget", {})}, "run": run,
        }  # fmt: skip
        if "ci" in result:
            rec.update(ci=result["ci"], uncertainty=result["uncertainty"])
            # written next to the record by write_records; "_" keys never reach the JSON
            rec["_per_pose"] = result["per_pose"]
        records.append(rec)
    return records


def write_records(records: list[dict], results_dir: str | Path) -> list[Path]:
    """Each record as JSON, its per-pose values (if any) first as ``.npz`` beside it; both atomic."""
    paths = []
    for rec in records:
        path = record_path(
            results_dir, rec["dataset"], rec["method"], rec["input"], rec["protocol_id"], rec["run"].get("seed")
        )
        rec = dict(rec)
        per_pose = rec.pop("_per_pose", None)
        if per_pose is not None:
            buf = io.BytesIO()
            np.savez_compressed(buf, **per_pose["arrays"])
            npz = write_bytes_atomic(path.with_suffix(".npz"), buf.getvalue())
            rec["per_pose"] = {"file": npz.name, "frames_sha1": per_pose["frames_sha1"],
                               "poses": int(len(per_pose["arrays"]["unit"]))}  # fmt: skip
        paths.append(write_json_atomic(path, rec))
    return paths


class RecordError(ValueError):
    pass


def load_records(results_dir: Path) -> list[dict]:
    records = []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise RecordError(f"result record {path} is not valid JSON ({e}); delete it or rerun its test") from e
        for key in ("method", "dataset", "protocol", "protocol_id", "metrics"):
            if key not in rec:
                raise RecordError(f"result record {path} lacks key {key!r}; it was not written by this suite")
        rec["_path"] = str(path)
        records.append(rec)
    return records


def load_per_pose(record: dict) -> dict[str, np.ndarray] | None:
    """The per-pose arrays of a loaded record (see the module docstring), or None when it has none.

    Raises :class:`RecordError` when the file is missing, unreadable or holds other frames than the record says.
    """
    ref = record.get("per_pose")
    if not ref:
        return None
    path = Path(record["_path"]).parent / ref["file"]
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise RecordError(
            f"per-pose file {path} of record {record['_path']} cannot be read ({e}); rerun that test or delete "
            "the record's 'per_pose' entry"
        ) from e
    if frames_hash(arrays["unit"], arrays["frame"], arrays["checksum"]) != ref["frames_sha1"]:
        raise RecordError(
            f"per-pose file {path} holds other frames than record {record['_path']} names (frames_sha1 "
            f"{ref['frames_sha1']}): it was overwritten by another run; rerun that test"
        )
    return arrays
