"""Numbers you can trust: bootstrap intervals over sequences, the paired test, seeds aggregated on the leaderboard."""

import json
import time

import numpy as np
import pytest

from benchmark.leaderboard import group_tables, to_markdown
from benchmark.records import RecordError, load_per_pose, load_records, write_records
from metrics.uncertainty import bootstrap_ci, frames_hash, paired_test

RNG = np.random.default_rng(0)


def test_identical_values_give_a_zero_width_interval():
    low, high = bootstrap_ci(np.full(300, 47.3), np.arange(300) % 7)
    assert low == high == 47.3
    lows, highs = bootstrap_ci(np.tile([47.3, 0.8125], (50, 1)), np.arange(50) % 5)
    assert (lows == highs).all() and lows.tolist() == [47.3, 0.8125]


def test_interval_width_matches_the_standard_error_of_unit_means():
    # U equal-size units: the bootstrap sd of the mean is sd(unit means) * sqrt((U - 1) / U) / sqrt(U)
    units, per_unit = 40, 25
    values = RNG.normal(0, 10, units)[:, None] + RNG.normal(0, 3, (units, per_unit))
    means = values.mean(1)
    se = means.std(ddof=0) / np.sqrt(units)
    low, high = bootstrap_ci(values.ravel(), np.repeat(np.arange(units), per_unit), resamples=4000)
    assert high - low == pytest.approx(2 * 1.959964 * se, rel=0.08)
    assert low < values.mean() < high


def test_interval_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    true_mean, draws, units, per_unit = 50.0, 300, 30, 8
    unit_ids = np.repeat(np.arange(units), per_unit)
    hits = 0
    for _ in range(draws):  # draws of a simulated test set, not samples of one evaluation
        values = true_mean + rng.normal(0, 5, units)[unit_ids] + rng.normal(0, 2, units * per_unit)
        low, high = bootstrap_ci(values, unit_ids, seed=int(rng.integers(1 << 30)))
        hits += low <= true_mean <= high
    # percentile intervals of 30 units cover slightly below 95%; a frame-level bootstrap would cover far less
    assert 0.89 <= hits / draws <= 0.985


def test_bootstrap_is_seeded_and_takes_about_a_second_for_ten_thousand_units():
    values, units = RNG.normal(50, 10, (10_000, 7)), np.arange(10_000)
    start = time.perf_counter()
    first = bootstrap_ci(values, units, seed=3)
    assert time.perf_counter() - start < 10  # ~1.3 s on one contended core
    assert np.array_equal(first[0], bootstrap_ci(values, units, seed=3)[0])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(values, units, level=95)


def test_paired_test_finds_a_planted_difference_and_not_a_null_one():
    units = np.repeat(np.arange(20), 30)
    a = RNG.normal(60, 10, 20)[units] + RNG.normal(0, 5, 600)
    same = paired_test(a, a.copy(), units)
    assert same["p"] == 1.0 and same["diff"] == 0.0 and same["units"] == 20
    planted = paired_test(a + 2.0 + RNG.normal(0, 1, 600), a, units)
    assert planted["p"] < 0.001 and planted["diff"] == pytest.approx(2.0, abs=0.2)
    # under the null the test rejects at about its level (12 units: the exact sign-flip distribution)
    small = np.repeat(np.arange(12), 5)
    rejections = sum(paired_test(a[:60] + RNG.normal(0, 1, 60), a[:60], small, seed=s)["p"] < 0.05 for s in range(100))
    assert rejections / 100 <= 0.1
    with pytest.raises(ValueError, match="unit ids"):
        paired_test(a, a[:-1], units)


# -- records and the leaderboard --------------------------------------------------------------------------------------
PROTOCOL = {"dataset": "synthetic", "joints": "17", "input_2d": "gt"}
UNITS = np.repeat(np.arange(16), 10)


def per_pose(p_mpjpe: np.ndarray, shift_frames: int = 0) -> dict:
    ids = {"unit": UNITS, "frame": np.tile(np.arange(10), 16) + shift_frames, "action": UNITS % 2,
           "checksum": np.arange(160) * 7}  # fmt: skip
    return {"frames_sha1": frames_hash(ids["unit"], ids["frame"], ids["checksum"]),
            "arrays": {**ids, "p_mpjpe": p_mpjpe.astype(np.float32)}}  # fmt: skip


def record(method, seed, p_mpjpe, pid="aaaa1111", shift_frames=0, baseline=False):
    low, high = bootstrap_ci(p_mpjpe, UNITS)
    return {
        "schema": 2, "method": method, "dataset": "synthetic", "protocol": {**PROTOCOL, "pid": pid},
        "protocol_id": pid, "baseline": baseline, "input": "2D gt", "role": "baseline" if baseline else "method",
        "metrics": {"p_mpjpe": float(p_mpjpe.astype(np.float32).mean())},
        "metric_protocol": {"p_mpjpe": {"alignment": "procrustes"}}, "per_action": {"walk": {"p_mpjpe": 1.0 + seed}},
        "ci": {"p_mpjpe": [low, high]}, "uncertainty": {"unit": "sequence", "level": 0.95, "resamples": 1000, "seed": 0},
        "run": {"seed": str(seed), "finished_at": f"2025-01-0{seed + 1}"}, "_per_pose": per_pose(p_mpjpe, shift_frames),
    }  # fmt: skip


def errors(mean: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return mean + rng.normal(0, 8, 16)[UNITS] + rng.normal(0, 2, 160)


def test_records_keep_per_pose_values_beside_them_and_refuse_other_frames(tmp_path):
    (path,) = write_records([record("svmac", 0, errors(50, 0))], tmp_path)
    assert path.name == "svmac__2D-gt__aaaa1111__seed0.json" and path.with_suffix(".npz").is_file()
    rec = json.loads(path.read_text())
    assert "_per_pose" not in rec and rec["per_pose"]["file"] == "svmac__2D-gt__aaaa1111__seed0.npz"
    (loaded,) = load_records(tmp_path)
    arrays = load_per_pose(loaded)
    assert np.array_equal(arrays["p_mpjpe"], errors(50, 0).astype(np.float32))
    # a per-pose file of other frames under the record's name (overwritten by another run) is refused by name
    write_records([{**record("other", 0, errors(50, 0), shift_frames=1), "method": "svmac"}], tmp_path / "x")
    (tmp_path / "x" / "synthetic" / "svmac__2D-gt__aaaa1111__seed0.npz").replace(path.with_suffix(".npz"))
    with pytest.raises(RecordError, match="svmac__2D-gt__aaaa1111__seed0.npz holds other frames"):
        load_per_pose(loaded)


def test_seeds_aggregate_to_mean_and_std_and_protocols_stay_apart(tmp_path):
    seeds = [errors(m, s) for s, m in enumerate((50.0, 53.0, 47.5))]
    recs = [record("svmac", s, v) for s, v in enumerate(seeds)]
    recs += [record("svmac", 0, errors(90, 9), pid="bbbb2222")]  # another protocol: never in the same row
    write_records(recs, tmp_path)
    first, second = group_tables(load_records(tmp_path))
    (row,) = first["rows"]
    means = [float(v.astype(np.float32).mean()) for v in seeds]
    assert row["n_seeds"] == 3 and row["seeds"] == ["0", "1", "2"]
    assert row["values"][0] == pytest.approx(sum(means) / 3)
    assert row["std"][0] == pytest.approx(np.sqrt(sum((m - sum(means) / 3) ** 2 for m in means) / 2))
    # the interval of several seeds: over sequences, of the per-pose values averaged over the seeds
    low, high = bootstrap_ci(np.mean([v.astype(np.float32) for v in seeds], axis=0), UNITS)
    assert row["ci"][0] == pytest.approx([low, high])
    assert row["per_action"]["walk"]["p_mpjpe"] == pytest.approx(2.0)  # (1 + 2 + 3) / 3
    (other,) = second["rows"]
    assert (
        other["n_seeds"] == 1 and other["std"] == [None] and other["values"][0] == pytest.approx(errors(90, 9).mean())
    )
    assert "| **svmac** | 2D gt | — | 3 | " in to_markdown([first]) and " ±" in to_markdown([first])
    # two records of one seed in one table: the leaderboard names both files instead of averaging twice
    dup = record("svmac", 1, seeds[1])
    (tmp_path / "synthetic" / "copy.json").write_text(json.dumps({**dup, "_per_pose": None}))
    with pytest.raises(RecordError, match=r"copy\.json.*seed 1|seed 1.*copy\.json"):
        group_tables(load_records(tmp_path))


def test_leaderboard_marks_rows_the_paired_test_cannot_tell_from_the_best(tmp_path):
    base, rng = errors(50, 0), np.random.default_rng(5)  # tied: +2.3 mm on half the sequences, -1.7 on the rest
    recs = [record("best", 0, base), record("tied", 0, base + 0.3 + np.where(UNITS % 2, 2.0, -2.0)),
            record("worse", 0, base + 6 + rng.normal(0, 1, 160)),
            record("elsewhere", 0, base + 1.0, shift_frames=1)]  # fmt: skip  # other frames: not compared
    write_records(recs, tmp_path)
    (table,) = group_tables(load_records(tmp_path))
    tests = {r["method"]: r["test"] for r in table["rows"]}
    assert tests["best"] == {"best": True} and tests["elsewhere"] is None
    assert tests["tied"]["same_as_best"] and tests["tied"]["p"] >= 0.05
    assert not tests["worse"]["same_as_best"] and tests["worse"]["p"] < 0.001
    md = to_markdown([table])
    assert "**tied** ≈" in md and "**best** ✱" in md and "**worse** |" in md
    assert "paired sign-flip permutation test" in md and "16 sequences" in md
