"""EpipolarPose: the two-view geometry against closed forms (exact triangulation, E from known (R, t) and back,
the cheirality choice, the vector median), the pseudo-labels of exact projections, bad input dropped without
NaN, the refinement unit, the pseudo-label report and the two-stage fit through the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from kornia.geometry.epipolar import decompose_essential_matrix, essential_from_Rt
from tiny import tiny_humans_args

from benchmark.__main__ import main
from methods.epipolar import (
    essential_from_F,
    normalise_pose,
    pseudo_labels,
    ransac_fundamental,
    relative_pose,
    triangulate,
    vector_median,
)
from methods.epipolar_pose import EpipolarPose, RefinementUnit, refine_noise

ROOT = Path(__file__).resolve().parents[1]
DTYPE = torch.float64


def look_at(eye: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World (Z up) -> OpenCV camera (x right, y down, z forward) at ``eye`` looking at ``target``: R, t."""
    f = (target - eye) / (target - eye).norm()
    r = torch.linalg.cross(f, torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype))
    r = r / r.norm()
    d = torch.linalg.cross(f, r)
    R = torch.stack([r, d, f])
    return R, -R @ eye


def rig(views: int = 4, radius: float = 4500.0, step_deg: float = 90.0):
    """``views`` cameras on a circle around (0, 0, 1000) mm, 64 x 64 px crops (K (V, 3, 3), R (V, 3, 3), t (V, 3))."""
    target = torch.tensor([0.0, 0.0, 1000.0], dtype=DTYPE)
    Rs, ts = [], []
    for v in range(views):
        a = math.radians(20.0 + step_deg * v)
        R, t = look_at(
            torch.tensor([radius * math.cos(a), radius * math.sin(a), 1500.0 + 100 * v], dtype=DTYPE), target
        )
        Rs.append(R)
        ts.append(t)
    K = torch.tensor([[75.0, 0, 32.0], [0, 75.0, 32.0], [0, 0, 1]], dtype=DTYPE).expand(views, 3, 3)
    return K, torch.stack(Rs), torch.stack(ts)


def body(n: int = 17, seed: int = 0) -> torch.Tensor:
    """(n, 3) world points in a person-sized box around (0, 0, 1000) mm."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g, dtype=DTYPE) - 0.5) * torch.tensor([500.0, 500.0, 1700.0], dtype=DTYPE) + \
        torch.tensor([0.0, 0.0, 1000.0], dtype=DTYPE)  # fmt: skip


def project(X: torch.Tensor, K: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    cam = X @ R.transpose(-1, -2) + t.unsqueeze(-2)
    uvw = cam @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:]


def relative(R: torch.Tensor, t: torch.Tensor, i: int, j: int):
    """Camera i -> camera j: X_j = R_ij X_i + t_ij."""
    Rij = R[j] @ R[i].T
    return Rij, t[j] - Rij @ t[i]


# -- the geometry against closed forms -------------------------------------------------------------------
def test_dlt_triangulation_of_exact_projections_is_exact():
    K, R, t = rig(2)
    X = body()
    x1, x2 = project(X, K[0], R[0], t[0]), project(X, K[1], R[1], t[1])
    got = triangulate(K[0], R[0], t[0], K[1], R[1], t[1], x1, x2)
    assert torch.allclose(got, X, atol=1e-6)


def test_essential_from_known_R_t_decomposes_back():
    K, R, t = rig(2)
    Rij, tij = relative(R, t, 0, 1)
    E = essential_from_Rt(
        torch.eye(3, dtype=DTYPE)[None], torch.zeros(1, 3, 1, dtype=DTYPE), Rij[None], tij.view(1, 3, 1)
    )
    # E = [t]x R: x2^T E x1 = 0 for normalised coordinates of every point
    X = body()
    c1, c2 = X @ R[0].T + t[0], X @ R[1].T + t[1]
    assert ((c2 @ E[0]) * c1).sum(-1).abs().max() < 1e-6 * c1.norm(dim=-1).max() * c2.norm(dim=-1).max()
    R1, R2, tt = decompose_essential_matrix(E)
    unit = tij / tij.norm()
    assert min((R1[0] - Rij).abs().max(), (R2[0] - Rij).abs().max()) < 1e-6
    assert min((tt[0, :, 0] - unit).abs().max(), (tt[0, :, 0] + unit).abs().max()) < 1e-6


def test_cheirality_picks_the_right_one_of_the_four_motions():
    K, R, t = rig(2)
    Rij, tij = relative(R, t, 0, 1)
    X = body()
    x1, x2 = project(X, K[0], R[0], t[0])[None], project(X, K[1], R[1], t[1])[None]
    E = essential_from_Rt(
        torch.eye(3, dtype=DTYPE)[None], torch.zeros(1, 3, 1, dtype=DTYPE), Rij[None], tij.view(1, 3, 1)
    )
    for sign in (1.0, -1.0):  # E and -E are the same essential matrix: the choice must not depend on its sign
        Rg, tg, Xg, count = relative_pose(sign * E, K[:1], K[1:], x1, x2)
        assert torch.allclose(Rg[0], Rij, atol=1e-6) and torch.allclose(tg[0], tij / tij.norm(), atol=1e-6)
        assert int(count) == X.shape[0]
        # the points come back in the first camera's frame, at the scale |t| = 1
        assert torch.allclose(Xg[0] * tij.norm(), X @ R[0].T + t[0], atol=1e-4)


def test_vector_median_closed_forms():
    p = torch.randn(5, 3)
    same = p.expand(3, 5, 3)
    assert torch.equal(vector_median(same), p)  # identical candidates: that point
    # on a line at 0, 1, 10: sums of distances 11, 10, 19 -> 1 (the median, not the mean 3.67)
    c = torch.tensor([[[0.0, 0, 0]], [[1.0, 0, 0]], [[10.0, 0, 0]]])
    assert torch.equal(vector_median(c), torch.tensor([[1.0, 0, 0]]))
    # without candidate 1: 0 and 10 tie at 10, the first wins; batched over a leading dimension
    both = torch.stack([c, c])
    got = vector_median(both, torch.tensor([[True, True, True], [True, False, True]]))
    assert torch.equal(got, torch.tensor([[[1.0, 0, 0]], [[0.0, 0, 0]]]))


def test_ransac_finds_F_through_outliers():
    K, R, t = rig(2)
    X = body(30, seed=1)
    x1, x2 = project(X, K[0], R[0], t[0]).float(), project(X, K[1], R[1], t[1]).float()
    x2[:4] += torch.tensor([9.0, -7.0])  # 4 gross outliers of 30
    g = torch.Generator().manual_seed(0)
    F, inliers, valid = ransac_fundamental(x1[None], x2[None], iterations=200, threshold=0.2, generator=g)
    assert bool(valid[0]) and inliers[0, :4].sum() == 0 and inliers[0, 4:].all()
    Rij, tij = relative(R, t, 0, 1)
    Rg, tg, _, _ = relative_pose(essential_from_F(F, K[:1].float(), K[1:].float()), K[:1], K[1:], x1[None], x2[None],
                                 inliers)  # fmt: skip
    assert torch.allclose(Rg[0].double(), Rij, atol=2e-3)


# -- the pseudo-labels -------------------------------------------------------------------------------------
def _views(B: int = 3, V: int = 4):
    K, R, t = rig(V)
    X = torch.stack([body(seed=s) for s in range(B)])  # (B, J, 3) world
    x = project(X.unsqueeze(1), K, R, t)  # (B, V, J, 2)
    cam = X.unsqueeze(1) @ R.transpose(-1, -2) + t.unsqueeze(-2)  # (B, V, J, 3)
    ex = lambda a: a.expand(B, *a.shape).float()  # noqa: E731
    return x.float(), ex(K), ex(R), ex(t), cam.float()


@pytest.mark.parametrize("extrinsics", [False, True])
def test_pseudo_labels_of_exact_projections_are_the_poses_in_every_camera_frame(extrinsics):
    x, K, R, t, cam = _views()
    labels = pseudo_labels(x, K, R, t, use_extrinsics=extrinsics, threshold=0.5)
    assert labels.valid.all() and labels.view_valid.all() and labels.pair_valid.all()
    # root-centred, unit mean distance to the root, in each view's own frame (no alignment)
    assert (labels.poses - normalise_pose(cam)).abs().max() < 1e-3


def test_bad_input_is_dropped_and_counted_never_nan():
    x, K, R, t, cam = _views(B=4)
    x[1] = x[1, :, :1] + torch.linspace(0, 20, 17).view(1, 17, 1) * torch.tensor([1.0, 0.5])  # collinear joints
    x[2, 2] = float("nan")  # a broken detection in view 2: pairs (1, 2), (2, 3) fail
    labels = pseudo_labels(x, K, threshold=0.5)
    assert labels.valid.tolist() == [True, False, True, True]
    assert labels.view_valid[2].tolist() == [True, True, False, False]  # the rotation chain stops at the failure
    assert labels.view_valid[1].sum() == 0 and torch.isfinite(labels.poses).all()
    assert (labels.poses[2, :2] - normalise_pose(cam[2, :2])).abs().max() < 1e-3  # its first pair still labels
    one = pseudo_labels(x[:, :1], K[:, :1])  # fewer than two views: every sample dropped
    assert not one.valid.any() and torch.isfinite(one.poses).all()


def test_training_step_drops_bad_samples_with_a_finite_loss():
    x, K, R, t, cam = _views(B=2)
    x[:] = float("nan")  # nothing usable in the whole batch
    model = EpipolarPose(backbone="resnet18", image_size=32, depth_bins=4, filters=8, use_gt_2d=True)
    batch = {"image": torch.rand(2, 4, 3, 32, 32), "joints_2d": x, "K": K, "joints_3d": cam}
    loss = model._stage_2(batch, batch["image"].flatten(0, 1))
    assert torch.isfinite(loss) and float(loss.detach()) == 0.0
    loss.backward()  # still a graph: the step runs, with zero gradients


def test_refinement_unit_and_its_noise_model():
    clean = normalise_pose(torch.randn(64, 17, 3))
    noisy = refine_noise(clean, 0.05, 0.1, 0.1, generator=torch.Generator().manual_seed(0))
    assert noisy.shape == clean.shape and torch.allclose(noisy[:, 0], torch.zeros(64, 3))
    assert torch.allclose((noisy[:, 1:] - noisy[:, :1]).norm(dim=-1).mean(-1), torch.ones(64), atol=1e-5)
    err = (noisy - clean).norm(dim=-1)
    assert 0.05 < float(err.mean()) < 0.5  # noisy, but a pose
    ru = RefinementUnit(17, width=32, dropout=0.0)
    outs = ru(noisy)
    assert len(outs) == 2 and outs[0].shape == clean.shape  # intermediate and final outputs


def test_options_are_checked():
    with pytest.raises(ValueError, match=r"lower_steps > 0.*lower_checkpoint.*use_gt_2d"):
        EpipolarPose(backbone="resnet18", image_size=32)
    with pytest.raises(FileNotFoundError, match="lower_checkpoint nope.pt does not exist"):
        EpipolarPose(backbone="resnet18", image_size=32, lower_checkpoint="nope.pt")
    with pytest.raises(ValueError, match="ransac_backend"):
        EpipolarPose(backbone="resnet18", image_size=32, use_gt_2d=True, ransac_backend="magic")


def test_cosine_schedule_restarts_at_stage_two():
    from types import SimpleNamespace

    model = EpipolarPose(backbone="resnet18", image_size=32, depth_bins=4, filters=8, lower_steps=10,
                         lr_schedule="cosine")  # fmt: skip
    assert model._cosine_factor(0) == pytest.approx(1.0)
    assert model._cosine_factor(5) == pytest.approx(0.5)  # half-way through stage 1
    assert model._cosine_factor(10) == pytest.approx(0.0)
    # stage 2 starts at 20% of a 100-step budget: full rate there, half at 60%, zero at the end
    model._trainer = SimpleNamespace(estimated_stepping_batches=100, global_step=20, callbacks=[])
    model._lower_ready, model._stage_2_from = True, 0.2
    assert model._cosine_factor(20) == pytest.approx(1.0)
    model._trainer.global_step = 60
    assert model._cosine_factor(60) == pytest.approx(0.5)
    model._trainer.global_step = 100
    assert model._cosine_factor(100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="lr_schedule"):
        EpipolarPose(backbone="resnet18", image_size=32, use_gt_2d=True, lr_schedule="linear")


# -- through the CLI ---------------------------------------------------------------------------------------
def _tiny(*extra: str) -> list[str]:
    return [
        *tiny_humans_args("configs/epipolar_pose.yaml", "configs/cpu_epipolar_pose.yaml", actions=("walk",), batch_size=2),
        "--model.init_args.depth_bins", "4", "--model.init_args.filters", "16", "--model.init_args.deconv_layers", "2",
        *extra,
    ]  # fmt: skip


def _records(workdir: Path) -> dict[str, dict]:
    return {r["method"]: r for r in (json.loads(p.read_text()) for p in (workdir / "results").rglob("*.json"))}


def test_two_stages_in_one_fit_then_stage_two_from_the_saved_lower_branch(workdir):
    main(["fit", *_tiny("--model.init_args.lower_steps", "2", "--trainer.val_check_interval", "1")])
    (version,) = (workdir / "runs" / "epipolarpose").glob("version_*")
    lower = version / "lower_2d.pt"
    assert lower.is_file()  # stage 1 ran for 2 steps, then froze and saved the lower branch
    columns = (version / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/loss_2d" in columns and "train/loss_3d" in columns and "train/dropped_samples" in columns
    val = [line.split(",") for line in (version / "metrics.csv").read_text().splitlines()[1:]]
    scores = [float(row[columns.index("val/p_mpjpe")]) for row in val if row[columns.index("val/p_mpjpe")]]
    assert scores[:2] == [math.inf, math.inf] and math.isfinite(scores[2])  # stage 1 (steps 1, 2) is never best
    rec = _records(workdir)["epipolarpose"]
    assert rec["input"] == "image rgb32x32 (labels from 2D net)" and rec["budget"]["steps"] == 3
    assert "step=3" in rec["run"]["checkpoint"] or "step3" in rec["run"]["checkpoint"]
    assert all(v == v for v in rec["metrics"].values())
    # stage 2 alone from the saved lower branch, with extrinsics; the state dicts of both branches are loaded
    shutil.rmtree(workdir / "results")
    main(["fit", *_tiny("--model.init_args.lower_steps", "0", "--model.init_args.lower_checkpoint", str(lower),
                        "--model.init_args.use_extrinsics", "true", "--run.test_after_fit", "false")])  # fmt: skip
    model = EpipolarPose(backbone="resnet18", image_size=32, depth_bins=4, filters=16, deconv_layers=2,
                         lower_checkpoint=str(lower))  # fmt: skip
    assert torch.equal(model.lower.head.final.weight, torch.load(lower)["head.final.weight"])


def test_gt_2d_fit_records_its_label_source_and_the_label_report(workdir, capsys):
    main(["fit", *_tiny("--model.init_args.use_gt_2d", "true", "--model.init_args.refine", "true",
                        "--model.init_args.refine_width", "16")])  # fmt: skip
    rec = _records(workdir)["epipolarpose"]
    assert rec["input"] == "image rgb32x32 (labels from 2D gt)" and rec["run"]["method_hparams"]["use_gt_2d"] is True
    capsys.readouterr()
    assert main(["epipolar-labels", "--config", "configs/epipolar_pose.yaml", "--config", "configs/cpu_images.yaml",
                 "--samples", "16", "--noise", "5", "--json", "labels.json"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "view pairs/s" in out
    rows = {(r["2d"], r["extrinsics"]): r for r in json.loads(Path("labels.json").read_text())}
    assert rows["gt", False]["p_mpjpe"] < 5.0 and rows["gt", True]["p_mpjpe"] < 5.0
    assert rows["gt+noise5px", True]["p_mpjpe"] > rows["gt", True]["p_mpjpe"]


def test_human36m_piece_trains_on_its_multiview_frames(workdir):
    """configs/epipolar_pose_h36m.yaml on a Human3.6M tree in the published layout (tests/fixtures_formats.py)."""
    from fixtures_formats import write_h36m

    root = workdir / "h36m"
    sequences = {"S1": ["Eating 2", "Photo 1"], "S9": ["Walking 1"]}
    write_h36m(root, sequences, frames=65, images=sequences)
    main(["fit", "--config", "configs/epipolar_pose.yaml", "--config", "configs/cpu_images.yaml",
          "--config", "configs/cpu_epipolar_pose.yaml", "--config", "configs/data/h36m.yaml",
          "--config", "configs/epipolar_pose_h36m.yaml", "--data.init_args.root", str(root),
          "--data.init_args.train_subjects", "[S1]", "--data.init_args.val_subjects", "[S9]",
          "--data.init_args.test_subjects", "[S9]", "--data.init_args.image_size", "32",
          "--model.init_args.image_size", "32", "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
          "--data.init_args.eval_stride", "16", "--model.init_args.depth_bins", "4", "--model.init_args.filters", "16",
          "--model.init_args.deconv_layers", "2", "--model.init_args.lower_steps", "1",
          "--model.init_args.use_extrinsics", "true", "--model.init_args.pss_k", "[4]",
          "--model.init_args.artifacts_dir", "art", "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
          "--trainer.log_every_n_steps", "1", "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
          "--trainer.enable_model_summary", "false", "--run.wandb", "off", "--run.threads", "1"])  # fmt: skip
    rec = _records(workdir)["epipolarpose"]
    assert rec["budget"]["steps"] == 2 and rec["input"] == "image rgb32x32 (labels from 2D net, extrinsics)"
    assert math.isfinite(rec["metrics"]["p_mpjpe"])
    (version,) = (workdir / "runs" / "epipolarpose").glob("version_*")
    columns = (version / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/loss_2d" in columns and "train/loss_3d" in columns  # both stages ran on the 4-view frames
