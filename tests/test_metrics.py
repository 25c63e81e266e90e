"""Metrics against hand-computed values (all distances in mm)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.spatial.transform import Rotation
from torchmetrics.utilities import dim_zero_sum

import metrics
from datamodules.skeleton import H36M_14_SUBSET
from metrics import functional as F
from metrics.centroids import centroids_path

G = torch.Generator().manual_seed(0)


def rand_poses(b: int, j: int = 17, scale: float = 300.0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(b, j, 3, generator=G, dtype=dtype) * scale


def rotation(rotvec) -> torch.Tensor:
    return torch.as_tensor(Rotation.from_rotvec(rotvec).as_matrix())


# --- protocol 1 -------------------------------------------------------------------------------------------------


def test_identical_poses_have_zero_error():
    x = rand_poses(8)
    for fn in (F.mpjpe, F.p_mpjpe, F.n_mpjpe):
        torch.testing.assert_close(fn(x, x.clone()), torch.zeros(8, dtype=x.dtype), atol=1e-9, rtol=0)
    assert torch.equal(F.pck(x, x), torch.ones(8, dtype=x.dtype))
    torch.testing.assert_close(F.auc(x, x), torch.full((8,), 30 / 31, dtype=x.dtype))  # PCK@0 is 0 (strict <)
    assert torch.equal(F.pss(x, x, F.pss_normalise(x[:3])), torch.ones(8, dtype=x.dtype))


def test_mpjpe_hand_computed():
    target = rand_poses(2, j=5)
    shift = torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64)
    # Translating the whole pose: removed by root-centring, 5 mm per joint without it.
    moved = target + shift
    torch.testing.assert_close(F.mpjpe(moved, target), torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(F.mpjpe(moved, target, root=None), torch.full((2,), 5.0, dtype=torch.float64))
    # One non-root joint moved by (3, 4, 0): 5 mm on 1 of 5 joints.
    one = target.clone()
    one[:, 3] += shift
    torch.testing.assert_close(F.mpjpe(one, target), torch.full((2,), 1.0, dtype=torch.float64))
    # The root moved: after centring the 4 other joints are off by 5 mm each.
    root = target.clone()
    root[:, 0] += shift
    torch.testing.assert_close(F.mpjpe(root, target), torch.full((2,), 4.0, dtype=torch.float64))
    # Joint subset {0, 3}: errors 0 and 5.
    torch.testing.assert_close(F.mpjpe(one, target, joints=[0, 3]), torch.full((2,), 2.5, dtype=torch.float64))
    torch.testing.assert_close(F.joint_errors(one, target)[:, 3], torch.full((2,), 5.0, dtype=torch.float64))


def test_t_mpjpe_hand_computed():
    target = rand_poses(2, j=5)
    shift = torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(
        F.t_mpjpe(target + shift, target), torch.zeros(2, dtype=torch.float64), atol=1e-9, rtol=0
    )
    # one of 5 joints moved by 5 mm: the centroid follows by 1 mm, so that joint is off by 4 and the others by 1
    one = target.clone()
    one[:, 3] += shift
    torch.testing.assert_close(F.t_mpjpe(one, target), torch.full((2,), 1.6, dtype=torch.float64))
    # over joints {0, 3} the centroid moves by 2.5 mm: both are off by 2.5
    torch.testing.assert_close(F.t_mpjpe(one, target, joints=[0, 3]), torch.full((2,), 2.5, dtype=torch.float64))


def test_root_centre():
    x = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3)
    c = F.root_centre(x, root=1)
    assert torch.equal(c[:, 1], torch.zeros(2, 3))
    assert torch.equal(c[:, 0], torch.full((2, 3), -3.0))
    assert F.root_centre(x, None) is x


# --- protocol 2 -------------------------------------------------------------------------------------------------


def test_procrustes_recovers_similarity_transform():
    target = rand_poses(6)
    rot = rotation([[0.3, -1.2, 2.0]] * 6)
    pred = 1.7 * target @ rot.transpose(1, 2) + torch.tensor([100.0, -50.0, 2000.0], dtype=torch.float64)
    assert (F.mpjpe(pred, target) > 100).all()
    torch.testing.assert_close(F.procrustes_align(pred, target), target)
    torch.testing.assert_close(F.p_mpjpe(pred, target), torch.zeros(6, dtype=torch.float64), atol=1e-8, rtol=0)
    # float32 input stays float32 and is accurate to well below a millimetre.
    out32 = F.p_mpjpe(pred.float(), target.float())
    assert out32.dtype == torch.float32 and out32.max() < 1e-2


def _reference_p_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Independent reference: scipy's Kabsch (proper rotation only) + least-squares scale."""
    out = []
    for p, t in zip(pred.numpy(), target.numpy()):
        p, t = p - p.mean(0), t - t.mean(0)
        rot, _ = Rotation.align_vectors(t, p)
        rp = rot.apply(p)
        s = (rp * t).sum() / (p * p).sum()
        out.append(((s * rp - t) ** 2).sum(-1).__pow__(0.5).mean())
    return torch.tensor(out, dtype=torch.float64)


def test_mirrored_pose_is_not_aligned_away():
    target = rand_poses(5)
    mirror = target * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # left/right reflection
    err = F.p_mpjpe(mirror, target)
    assert (err > 10).all()  # a reflection-permitting alignment would give 0 here
    torch.testing.assert_close(err, _reference_p_mpjpe(mirror, target))
    # And on unrelated random pairs.
    a, b = rand_poses(5), rand_poses(5)
    torch.testing.assert_close(F.p_mpjpe(a, b), _reference_p_mpjpe(a, b))
    # The aligned pose is a proper similarity of pred: signed volumes keep their sign.
    aligned = F.procrustes_align(mirror, target)

    def vol(x):
        return torch.linalg.det(x[:, 1:4] - x[:, :1])

    assert (torch.sign(vol(aligned)) == torch.sign(vol(mirror))).all()


def test_procrustes_degenerate_prediction():
    target = rand_poses(3, j=4)
    pred = torch.zeros_like(target)  # all joints at one point: best fit is the target centroid
    expected = (target - target.mean(1, keepdim=True)).norm(dim=-1).mean(-1)
    torch.testing.assert_close(F.p_mpjpe(pred, target), expected)


def test_non_finite_prediction_scores_nan_without_crashing():
    target = rand_poses(3)
    pred = target.clone()
    pred[1, 2, 0] = float("nan")
    for fn in (F.mpjpe, F.p_mpjpe, F.n_mpjpe):
        out = fn(pred, target)
        assert torch.isnan(out[1]) and (out[[0, 2]].abs() < 1e-6).all(), fn.__name__


def test_p_mpjpe_joint_subset_aligns_on_subset():
    target = rand_poses(4)
    pred = target.clone()
    pred[:, 5] += 500.0  # far off, but excluded
    sub = [i for i in range(17) if i != 5]
    torch.testing.assert_close(
        F.p_mpjpe(pred, target, joints=sub), torch.zeros(4, dtype=torch.float64), atol=1e-8, rtol=0
    )


# --- N-MPJPE ----------------------------------------------------------------------------------------------------


def test_n_mpjpe():
    target = rand_poses(4)
    pred = target + torch.randn(4, 17, 3, generator=G, dtype=torch.float64) * 20
    torch.testing.assert_close(F.n_mpjpe(2.5 * pred, target), F.n_mpjpe(pred, target))
    torch.testing.assert_close(F.n_mpjpe(0.5 * target, target), torch.zeros(4, dtype=torch.float64), atol=1e-9, rtol=0)
    # Two joints, root at the origin: target (100, 0, 0), pred (100, 100, 0) -> s = 1e4 / 2e4 = 0.5,
    # scaled pred (50, 50, 0), error sqrt(50^2 + 50^2) on one of two joints.
    t = torch.tensor([[[0.0, 0, 0], [100, 0, 0]]], dtype=torch.float64)
    p = torch.tensor([[[0.0, 0, 0], [100, 100, 0]]], dtype=torch.float64)
    torch.testing.assert_close(F.n_mpjpe(p, t), torch.tensor([50 * math.sqrt(2) / 2], dtype=torch.float64))


# --- PCK / AUC --------------------------------------------------------------------------------------------------


def _pck_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Root (error 0) plus 5 joints with errors exactly 0, 100, 149.9, 150, 200 mm."""
    target = rand_poses(1, j=6).round()  # integer mm: adding 150 and root-centring stay exact
    pred = target.clone()
    pred[0, 1:, 0] += torch.tensor([0.0, 100.0, 149.9, 150.0, 200.0], dtype=torch.float64)
    return pred, target


def test_pck_strict_threshold():
    pred, target = _pck_case()
    errs = F.joint_errors(pred, target)[0, 1:]
    torch.testing.assert_close(errs, torch.tensor([0.0, 100.0, 149.9, 150.0, 200.0], dtype=torch.float64))
    assert F.pck(pred, target, joints=[1, 2, 3, 4, 5]).item() == pytest.approx(3 / 5)
    assert F.pck(pred, target).item() == pytest.approx(4 / 6)  # the root itself is always correct
    assert F.pck(pred, target, threshold=150.1, joints=range(1, 6)).item() == pytest.approx(4 / 5)
    assert F.pck(pred, target, threshold=100.0, joints=range(1, 6)).item() == pytest.approx(1 / 5)


def test_auc_hand_computed():
    pred, target = _pck_case()
    # Thresholds t in {0, 5, ..., 150} with err < t: 0 -> 30 (5..150), 100 -> 10 (105..150), 149.9 -> 1 (150),
    # 150 -> 0, 200 -> 0. AUC = 41 / (5 joints * 31 thresholds).
    assert F.auc(pred, target, joints=range(1, 6)).item() == pytest.approx(41 / 155)
    # Equal to the mean of PCK over the thresholds, in any threshold order.
    thr = [150.0, 0.0, 120.0, 149.95]
    expected = sum(F.pck(pred, target, threshold=t).item() if t > 0 else 0.0 for t in thr) / 4
    assert F.auc(pred, target, thresholds=thr).item() == pytest.approx(expected)
    assert F.auc(pred, target, thresholds=[150.0]).item() == pytest.approx(F.pck(pred, target).item())
    # Random data: searchsorted result equals the direct (B, J, T) comparison.
    a, b = rand_poses(32), rand_poses(32, scale=310)
    err = F.joint_errors(F.root_centre(a), F.root_centre(b))
    direct = (err[..., None] < torch.tensor(metrics.AUC_THRESHOLDS_MM, dtype=torch.float64)).double().mean((1, 2))
    torch.testing.assert_close(F.auc(a, b), direct)


# --- PSS --------------------------------------------------------------------------------------------------------


def _two_families(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    base_a, base_b = rand_poses(1), rand_poses(1)
    noise = lambda: torch.randn(n, 17, 3, generator=G, dtype=torch.float64) * 5.0
    return base_a + noise(), base_b + noise()


def test_pss_clusters_two_families():
    fam_a, fam_b = _two_families()
    centroids = F.fit_pss_centroids(torch.cat([fam_a, fam_b]), k=2, seed=0)
    assert centroids.shape == (2, 51) and centroids.dtype == torch.float32
    la, lb = F.pss_labels(fam_a, centroids), F.pss_labels(fam_b, centroids)
    assert (la == la[0]).all() and (lb == lb[0]).all() and la[0] != lb[0]
    assert torch.equal(F.pss(fam_a, fam_a, centroids), torch.ones(40, dtype=torch.float64))
    assert torch.equal(F.pss(fam_b, fam_a, centroids), torch.zeros(40, dtype=torch.float64))
    # Scale and translation do not change the structure; half the predictions swapped -> PSS 0.5.
    assert torch.equal(F.pss(3.0 * fam_a + 1000.0, fam_a, centroids), torch.ones(40, dtype=torch.float64))
    broken = fam_a.clone()
    broken[0, 4, 1] = float("nan")
    assert F.pss(broken, fam_a, centroids)[:2].tolist() == [0.0, 1.0]
    mixed = torch.cat([fam_a[:20], fam_b[20:]])
    assert F.pss(mixed, fam_a, centroids).mean().item() == 0.5
    # Deterministic for a seed; small chunks give the same labels.
    torch.testing.assert_close(F.fit_pss_centroids(torch.cat([fam_a, fam_b]), k=2, seed=0), centroids)
    assert torch.equal(F.pss_labels(fam_a, centroids, chunk_size=7), la)


def test_pss_normalise_and_errors():
    x = rand_poses(3)
    n = F.pss_normalise(x)
    assert n.shape == (3, 51)
    torch.testing.assert_close(n.norm(dim=1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(n.view(3, 17, 3)[:, 0], torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"centroids must have shape \(k, 51\)"):
        F.pss_labels(x, torch.zeros(4, 42))
    with pytest.raises(ValueError, match="need at least k=5 poses"):
        F.fit_pss_centroids(x, k=5)


# --- input checking ---------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    x = rand_poses(2)
    with pytest.raises(ValueError, match=r"mpjpe: pred \(2, 17, 3\) and target \(2, 16, 3\)"):
        F.mpjpe(x, x[:, :16])
    with pytest.raises(ValueError, match=r"must have shape \(B, J, 3\)"):
        F.p_mpjpe(x[0], x[0])
    with pytest.raises(ValueError, match="out of range for poses with 17 joints"):
        F.pck(x, x, joints=[0, 17])
    with pytest.raises(ValueError, match="root=20"):
        F.mpjpe(x, x, root=20)
    # Half precision is computed in float32.
    assert F.mpjpe(x.half(), x.half()).dtype == torch.float32


# --- torchmetrics classes ---------------------------------------------------------------------------------------


def _classes(centroids):
    sub = metrics.functional.AUC_THRESHOLDS_MM
    return [
        (metrics.MPJPE(num_groups=4), lambda p, t: F.mpjpe(p, t)),
        (metrics.PMPJPE(num_groups=4), lambda p, t: F.p_mpjpe(p, t)),
        (metrics.NMPJPE(num_groups=4), lambda p, t: F.n_mpjpe(p, t)),
        (
            metrics.PCK(threshold=500.0, joints=range(1, 17), num_groups=4),
            lambda p, t: F.pck(p, t, 500.0, range(1, 17)),
        ),
        (metrics.AUC(thresholds=[t * 4 for t in sub], num_groups=4), lambda p, t: F.auc(p, t, [x * 4 for x in sub])),
        (metrics.PSS(centroids, num_groups=4), lambda p, t: F.pss(p, t, centroids)),
    ]


def test_metric_classes_match_functions_per_group():
    fam_a, fam_b = _two_families(30)
    centroids = F.fit_pss_centroids(torch.cat([fam_a, fam_b]), k=2, seed=0)
    target = torch.cat([fam_a, fam_b]).float()
    pred = (
        torch.cat([fam_a[:20], fam_b[:10], fam_b[10:], fam_a[20:]]).float() + torch.randn(60, 17, 3, generator=G) * 50
    )
    group = torch.randint(0, 3, (60,), generator=G)  # group 3 stays empty
    for metric, fn in _classes(centroids):
        for sl in (slice(0, 7), slice(7, 40), slice(40, 60)):
            metric.update(pred[sl], target[sl], group=group[sl])
        ref = fn(pred, target).double()
        assert metric.compute().item() == pytest.approx(ref.mean().item(), rel=1e-5), metric.name
        groups = metric.compute_groups()
        assert groups.shape == (4,) and torch.isnan(groups[3]), metric.name
        for g in range(3):
            assert groups[g].item() == pytest.approx(ref[group == g].mean().item(), rel=1e-5), (metric.name, g)
        # The states are sums and counts (what DDP reduces with "sum").
        assert torch.equal(metric.count, torch.bincount(group, minlength=4))
        assert metric._reductions["total"] is dim_zero_sum and metric._reductions["count"] is dim_zero_sum


def test_metric_names_and_protocols():
    c = torch.zeros(50, 51)
    assert metrics.MPJPE().name == "mpjpe" and metrics.MPJPE().protocol == {"alignment": "root", "joints": "all"}
    m = metrics.PMPJPE()
    m.update(rand_poses(2).float(), rand_poses(2).float())
    assert m.name == "p_mpjpe" and m.protocol == {"alignment": "procrustes", "joints": "17"}
    assert metrics.NMPJPE().protocol["alignment"] == "scale"
    pck = metrics.PCK(joints=H36M_14_SUBSET)
    assert pck.name == "pck150" and pck.protocol["threshold_mm"] == "150" and pck.protocol["joints"] == "14"
    assert metrics.AUC().name == "auc" and metrics.AUC().protocol["thresholds_mm"] == "0:5:150"
    assert metrics.PSS(c).name == "pss50" and metrics.PSS(c).protocol == {"k": "50", "joints": "17"}
    assert "centroids" not in metrics.PSS(c).state_dict()  # not written into model checkpoints
    assert not metrics.MPJPE.higher_is_better and metrics.PCK.higher_is_better and metrics.PSS.higher_is_better
    assert metrics.AUC.full_state_update is False


def test_metric_forward_and_group_errors():
    m = metrics.MPJPE(num_groups=2)
    t = rand_poses(4, j=5).float()
    p = t.clone()
    p[:, 3, 0] += 10.0  # 10 mm on 1 of 5 joints -> 2 mm
    batch_value = m(p, t, group=torch.tensor([0, 0, 1, 1]))
    assert batch_value.item() == pytest.approx(2.0)
    m.update(t, t, group=torch.tensor([1, 1, 1, 1]))
    assert m.compute().item() == pytest.approx(1.0)
    torch.testing.assert_close(m.compute_groups(), torch.tensor([2.0, 2 * 2 / 6]))
    with pytest.raises(ValueError, match=r"group ids must lie in \[0, 2\).*num_groups"):
        m.update(p, t, group=torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"group must be a \(4,\) integer tensor"):
        m.update(p, t, group=torch.zeros(4))
    with pytest.raises(ValueError, match="17 joints after 5"):
        m.update(rand_poses(2).float(), rand_poses(2).float())


def test_metric_sync_across_two_emulated_processes():
    """Two 'ranks' fed disjoint halves; a fake all-gather stands in for torch.distributed."""
    pred, target = rand_poses(30).float(), rand_poses(30).float()
    group = torch.randint(0, 3, (30,), generator=G)
    single = metrics.PMPJPE(num_groups=3)
    single.update(pred, target, group)
    ranks = []

    def gather(tensor, group=None):
        other = ranks[1]
        return [tensor, other.total if tensor is ranks[0].total else other.count]

    ranks.append(metrics.PMPJPE(num_groups=3, dist_sync_fn=gather, distributed_available_fn=lambda: True))
    ranks.append(metrics.PMPJPE(num_groups=3))
    ranks[0].update(pred[:11], target[:11], group[:11])
    ranks[1].update(pred[11:], target[11:], group[11:])
    torch.testing.assert_close(ranks[0].compute(), single.compute())
    torch.testing.assert_close(ranks[0].compute_groups(), single.compute_groups())
    assert ranks[0].count.sum() == 11  # local state restored after syncing
    with ranks[0].sync_context(dist_sync_fn=gather):  # an outer sync stays in force
        torch.testing.assert_close(ranks[0].compute_groups(), single.compute_groups())
        assert ranks[0].count.sum() == 30
    assert ranks[0].count.sum() == 11


# --- centroid artifacts -----------------------------------------------------------------------------------------


def test_centroid_save_load_round_trip(tmp_path):
    c = torch.randn(3, 51, generator=G)
    meta = {"data": "synthetic", "k": 3, "seed": 0, "num_poses": 10}
    path = metrics.save_centroids(tmp_path / "sub" / "c.pt", c, meta)
    loaded, loaded_meta = metrics.load_centroids(path)
    assert torch.equal(loaded, c) and loaded_meta == meta
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temp file left behind
    with pytest.raises(FileNotFoundError, match=r"missing\.pt not found.*centroids_for"):
        metrics.load_centroids(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"bad\.pt cannot be read"):
        metrics.load_centroids(bad)
    torch.save({"centroids": c}, bad)
    with pytest.raises(ValueError, match=r"bad\.pt is not a"):
        metrics.load_centroids(bad)
    with pytest.raises(TypeError, match="meta"):
        metrics.save_centroids(tmp_path / "x.pt", c, {"when": object()})


def test_centroids_for_caches_and_refits(tmp_path):
    fam_a, fam_b = _two_families(10)
    poses = torch.cat([fam_a, fam_b])
    calls = []

    def poses_fn():
        calls.append(1)
        return poses

    c1 = metrics.centroids_for("toy", 2, poses_fn, cache_dir=tmp_path)
    path = centroids_path("toy", 2, tmp_path)
    assert path.name == "pss_toy_k2.pt" and len(calls) == 1
    _, meta = metrics.load_centroids(path)
    assert meta["data"] == "toy" and meta["k"] == 2 and meta["num_poses"] == 20 and meta["seed"] == 0
    # Cached: with num_poses given, poses_fn is not even called.
    assert torch.equal(metrics.centroids_for("toy", 2, poses_fn, cache_dir=tmp_path, num_poses=20), c1)
    assert len(calls) == 1
    # Different number of poses -> refit and overwrite.
    poses = poses[:15]
    metrics.centroids_for("toy", 2, poses_fn, cache_dir=tmp_path)
    assert len(calls) == 2 and metrics.load_centroids(path)[1]["num_poses"] == 15
    # An unreadable cache file is refitted, not trusted.
    path.write_bytes(b"garbage")
    metrics.centroids_for("toy", 2, poses_fn, cache_dir=tmp_path)
    assert len(calls) == 3 and metrics.load_centroids(path)[1]["num_poses"] == 15
    with pytest.raises(ValueError, match="file-name part"):
        metrics.centroids_for("../evil", 2, poses_fn, cache_dir=tmp_path)


def test_package_exports_the_functions_not_submodules():
    import metrics
    from metrics import functional

    assert metrics.pss is functional.pss and callable(metrics.pss)


def test_medoid_pose_is_the_best_constant_under_p_mpjpe():
    g = torch.Generator().manual_seed(3)
    a, b, c = torch.randn(3, 17, 3, generator=g, dtype=torch.float64) * 200
    rot = torch.from_numpy(Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix())
    # three similarity copies of a (P-MPJPE 0 among them) and two other poses: a copy of a is the medoid
    poses = torch.stack([b, a, 2.0 * a @ rot.T + 50.0, 0.5 * a @ rot + torch.tensor([1.0, -3.0, 9.0]), c])
    best = F.medoid_pose(poses)
    assert any(torch.equal(best, poses[i]) for i in (1, 2, 3))
    costs = torch.stack([F.p_mpjpe(p.expand_as(poses), poses).mean() for p in poses])
    assert F.p_mpjpe(best.expand_as(poses), poses).mean() == pytest.approx(costs.min().item(), rel=1e-9)
    assert costs[[0, 4]].min() > costs.min() + 1.0
    # only the evenly spaced candidates compete: with 2 of 5 poses, b (index 0) or c (index 4)
    assert torch.equal(F.medoid_pose(poses, candidates=2), poses[0 if costs[0] < costs[4] else 4])
    with pytest.raises(ValueError, match="medoid_pose"):
        F.medoid_pose(torch.zeros(0, 17, 3))
