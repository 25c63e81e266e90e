"""How sure a benchmark number is: bootstrap intervals over test units and a paired test between two methods.

Every metric of this suite is a mean of per-pose values, and frames of one sequence are correlated, so the
resampling unit is the *sequence* (any integer id per pose; ``methods.base`` falls back to the single pose
when a data module gives no sequence id, and records which unit it used).

* :func:`bootstrap_ci`: percentile bootstrap over units. A resample draws ``n_units`` units with replacement;
  its statistic is (sum of the drawn units' per-pose values) / (their pose count), i.e. the same pose-weighted
  mean the leaderboard reports. All resamples are one ``(n_resamples, n_units)`` draw (chunked only when that
  array would pass :data:`MAX_DRAW` entries), seeded, so a record's interval is reproducible.
* :func:`paired_test`: for two methods evaluated on identical frames, a two-sided paired **sign-flip
  permutation test** on the per-sequence mean differences (``scipy.stats.permutation_test``,
  ``permutation_type="samples"``): under the null hypothesis that neither method is better, each sequence's
  difference is as likely to have either sign. It tests the mean, the quantity the leaderboard ranks (a Wilcoxon
  signed-rank test would test a location shift of the median instead), and it is exact when ``2**n_units`` is at most
  the number of resamples. Sequences, not poses, are the unit for the same reason as in the bootstrap.
* :func:`frames_hash`: a content hash of the frame identities (unit, frame, ground-truth checksum of every
  pose), so that only records of identical frames are paired.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from scipy import stats

LEVEL = 0.95
RESAMPLES = 1000
#: largest (resamples x units) block drawn at once (64 MB of int64); larger problems are drawn in chunks
MAX_DRAW = 1 << 23
PAIRED_TEST = "paired sign-flip permutation test (two-sided) on per-unit mean differences"


def unit_sums(values: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit sums ``(U, M)`` (float64) and pose counts ``(U,)`` of per-pose ``values`` ``(N,)`` or ``(N, M)``."""
    values = np.asarray(values, dtype=np.float64)
    units = np.asarray(units)
    if values.shape[0] != units.shape[0]:
        raise ValueError(f"unit_sums: {values.shape[0]} per-pose values but {units.shape[0]} unit ids")
    _, inverse = np.unique(units, return_inverse=True)
    counts = np.bincount(inverse)
    flat = values.reshape(len(values), -1)
    sums = np.zeros((len(counts), flat.shape[1]))
    np.add.at(sums, inverse, flat)
    return sums.reshape((len(counts), *values.shape[1:])), counts


def _draw_counts(rng: np.random.Generator, resamples: int, units: int) -> np.ndarray:
    """``(resamples, units)`` how often each unit is drawn in each resample (units drawn with replacement)."""
    idx = rng.integers(0, units, size=(resamples, units))
    offsets = np.arange(resamples)[:, None] * units
    return np.bincount((idx + offsets).ravel(), minlength=resamples * units).reshape(resamples, units)


def bootstrap_ci(values: np.ndarray, units: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Percentile bootstrap interval over units of the pose-weighted mean of ``values`` (``(N,)`` or ``(N, M)``).

    Returns ``(low, high)``, each of ``values.shape[1:]`` (a float for 1-D input). Identical values give a
    zero-width interval; a single unit gives the point estimate twice (nothing to resample).
    """
    if not 0 < level < 1:
        raise ValueError(f"bootstrap_ci: level must lie in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"bootstrap_ci: resamples must be >= 1, got {resamples}")
    if len(values) == 0:
        raise ValueError("bootstrap_ci: no per-pose values (was the test set empty?)")
    values = np.asarray(values, dtype=np.float64)
    # sums of deviations from the first pose: identical values give exactly zero, hence a zero-width interval
    ref = values[0]
    sums, counts = unit_sums(values - ref, units)
    centred = sums.reshape(len(counts), -1)
    rng = np.random.default_rng(seed)
    chunk = max(1, MAX_DRAW // len(counts))
    stats_ = []
    for start in range(0, resamples, chunk):
        draw = _draw_counts(rng, min(chunk, resamples - start), len(counts)).astype(np.float64)
        stats_.append(ref.reshape(-1) + (draw @ centred) / (draw @ counts)[:, None])
    alpha = (1 - level) / 2
    low, high = np.quantile(np.concatenate(stats_), [alpha, 1 - alpha], axis=0)
    shape = sums.shape[1:]
    return (float(low[0]), float(high[0])) if not shape else (low.reshape(shape), high.reshape(shape))


def unit_means(values: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Per-unit means of per-pose ``values``, in the order of the sorted unit ids."""
    sums, counts = unit_sums(values, units)
    return sums / counts.reshape((-1,) + (1,) * (sums.ndim - 1))


def paired_test(a: np.ndarray, b: np.ndarray, units: np.ndarray, resamples: int = 10000, seed: int = 0) -> dict:
    """Paired sign-flip permutation test of ``mean(a - b) == 0`` over units (see the module docstring).

    ``a`` and ``b`` are per-pose values of one metric of two methods on the *same* frames, in the same order.
    Returns ``{"p": two-sided p-value, "diff": mean difference a - b over poses, "units": n, "test": name}``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) != len(units):
        raise ValueError(
            f"paired_test: per-pose values must be two (N,) arrays with one unit id each; got {a.shape}, "
            f"{b.shape} and {np.shape(units)} unit ids"
        )
    d = unit_means(a - b, units)
    out = {"diff": float((a - b).mean()), "units": int(len(d)), "test": PAIRED_TEST}
    if not np.any(d):  # identical per-unit means: the permutation distribution is all zeros
        return {**out, "p": 1.0}
    res = stats.permutation_test((d,), np.mean, permutation_type="samples", vectorized=True,
                                 n_resamples=resamples, alternative="two-sided", rng=seed)  # fmt: skip
    return {**out, "p": float(res.pvalue)}


def pose_checksum(joints: torch.Tensor) -> torch.Tensor:
    """(B,) int64 fingerprint of each ground-truth pose (sum of |coordinates| in µm): tells camera views apart."""
    return (joints.detach().double().abs().sum(dim=tuple(range(1, joints.ndim))) * 1000).round().long()


def frames_hash(unit: np.ndarray, frame: np.ndarray, checksum: np.ndarray) -> str:
    """Content hash of the frame identities of an evaluation (in their stored order)."""
    h = hashlib.sha1()
    for array in (unit, frame, checksum):
        h.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]
