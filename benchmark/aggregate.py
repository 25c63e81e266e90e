"""Leaderboard rows from result records: seeds of one method aggregated, intervals, and the paired test.

Within one (dataset, protocol) table, the records of one method are its training seeds (one record each, see
``benchmark.records``). A row shows their mean, the standard deviation over seeds (``ddof=1``, from two seeds
on) and the number of seeds. Its 95% interval is the bootstrap interval over test sequences of the record
(one seed) or of the per-pose values averaged over the seeds (several seeds on identical frames; see
``metrics.uncertainty``).

Significance: the row with the lowest P-MPJPE is the best; every row evaluated on the same frames is compared
with it by ``metrics.uncertainty.paired_test`` on per-pose P-MPJPE (seed-averaged), and is *indistinguishable
from the best* when the two-sided p-value is at least 0.05. There is no correction for comparing several rows
with the best: the mark is the conservative one for a reader (it says "cannot tell apart" more often).
"""

from __future__ import annotations

import numpy as np

from metrics import uncertainty as U

from .records import RecordError, load_per_pose

TEST_METRIC = "p_mpjpe"
ALPHA = 0.05


def _seed_key(rec: dict) -> str:
    return str(rec.get("run", {}).get("seed", "unset"))


def _check_seeds(method: str, recs: list[dict]) -> None:
    seen: dict[str, str] = {}
    for rec in recs:
        key = _seed_key(rec)
        if key in seen:
            raise RecordError(
                f"records {seen[key]} and {rec.get('_path', '?')} are both method {method!r} with seed {key} on one "
                "protocol: keep one of them (a rerun of one seed replaces its record; these have different names)"
            )
        seen[key] = rec.get("_path", "?")


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    finite = [v for v in values if v is not None]
    if not finite:
        return None, None
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else None


def _per_action_mean(recs: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for action in dict.fromkeys(a for r in recs for a in r.get("per_action", {})):
        metrics = dict.fromkeys(m for r in recs for m in r.get("per_action", {}).get(action, {}))
        for m in metrics:
            vals = [r["per_action"][action][m] for r in recs if m in r.get("per_action", {}).get(action, {})]
            out.setdefault(action, {})[m] = _mean_std([v for v in vals if v == v])[0] if vals else None
    return out


def seed_averaged_per_pose(recs: list[dict]) -> dict[str, np.ndarray] | None:
    """Per-pose arrays of the records averaged over seeds; None unless every record has them on identical frames."""
    refs = [r.get("per_pose") for r in recs]
    if not all(refs) or len({ref["frames_sha1"] for ref in refs}) != 1:
        return None
    arrays = [load_per_pose(r) for r in recs]
    ids = {k: arrays[0][k] for k in ("unit", "frame", "action", "checksum") if k in arrays[0]}
    metrics = [k for k in arrays[0] if k not in ids and all(k in a for a in arrays)]
    return {**ids, **{m: np.mean([a[m] for a in arrays], axis=0) for m in metrics}}


def _interval(recs: list[dict], per_pose: dict | None, metric: str) -> list[float] | None:
    if len(recs) == 1:
        return recs[0].get("ci", {}).get(metric)
    if per_pose is None or metric not in per_pose:
        return None
    meta = recs[0].get("uncertainty", {})
    lo, hi = U.bootstrap_ci(per_pose[metric], per_pose["unit"], meta.get("level", U.LEVEL),
                            meta.get("resamples", U.RESAMPLES), seed=meta.get("seed", 0))  # fmt: skip
    return [lo, hi]


def action_intervals(per_pose: dict | None, actions: list[str], metric: str = TEST_METRIC) -> dict[str, list[float]]:
    """95% bootstrap interval of ``metric`` per action (over that action's sequences); {} without per-pose values."""
    if per_pose is None or metric not in per_pose or "action" not in per_pose:
        return {}
    out = {}
    for index, action in enumerate(actions):  # one bootstrap per action: a handful, not per pose
        rows = per_pose["action"] == index
        if rows.any():
            out[action] = list(U.bootstrap_ci(per_pose[metric][rows], per_pose["unit"][rows]))
    return out


def aggregate_row(method: str, recs: list[dict], metrics: list[str]) -> dict:
    """One leaderboard row from the records (seeds) of one (method, input) in one table; its training budget
    is the latest seed's."""
    _check_seeds(method, recs)
    per_pose = seed_averaged_per_pose(recs)
    stats = [_mean_std([r["metrics"].get(m) for r in recs]) for m in metrics]
    actions = list(dict.fromkeys(a for r in recs for a in r.get("per_action", {})))
    latest = max(recs, key=lambda r: str(r.get("run", {}).get("finished_at", "")))
    return {
        "method": method, "baseline": recs[0].get("baseline", False), "input": recs[0].get("input", "?"),
        "role": recs[0].get("role", "baseline" if recs[0].get("baseline") else "method"),
        "budget": latest.get("budget"),
        "values": [s[0] for s in stats], "std": [s[1] for s in stats],
        "ci": [_interval(recs, per_pose, m) for m in metrics],
        "n_seeds": len(recs), "seeds": sorted(_seed_key(r) for r in recs),
        "run": latest.get("run", {}), "runs": [r.get("run", {}) for r in recs],
        "per_action": _per_action_mean(recs), "per_action_ci": action_intervals(per_pose, actions),
        "uncertainty": recs[0].get("uncertainty"), "frames_sha1": (recs[0].get("per_pose") or {}).get("frames_sha1"),
        "_per_pose": per_pose, "test": None,
    }  # fmt: skip


def mark_significance(rows: list[dict]) -> dict | None:
    """Compare every row with the best (lowest P-MPJPE) on identical frames; sets ``row["test"]``.

    Returns what the table says about the test (metric, test name, alpha, unit, units), or None when no two
    rows could be compared.
    """
    candidates = [r for r in rows if r["_per_pose"] is not None and TEST_METRIC in r["_per_pose"]]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: float(np.mean(r["_per_pose"][TEST_METRIC])))
    compared = 0
    for row in candidates:
        if row is best or row["frames_sha1"] != best["frames_sha1"]:
            continue
        res = U.paired_test(row["_per_pose"][TEST_METRIC], best["_per_pose"][TEST_METRIC], best["_per_pose"]["unit"])
        row["test"] = {**res, "best": False, "same_as_best": res["p"] >= ALPHA}
        compared += 1
    if not compared:
        return None
    best["test"] = {"best": True}
    meta = best.get("uncertainty") or {}
    return {"metric": TEST_METRIC, "test": U.PAIRED_TEST, "alpha": ALPHA, "best": best["method"],
            "unit": meta.get("unit", "sequence"), "units": int(len(np.unique(best["_per_pose"]["unit"])))}  # fmt: skip
