"""Tung et al. 2017: the body model, the re-projection losses against closed forms, the SMPL adapter, a tiny fit."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
from tiny import tiny_humans_args

from benchmark.leaderboard import fmt_budget
from datamodules.render.bodies import PRIM_NAMES
from datamodules.skeleton import H36M_17
from methods.body_model import SMPL_TO_BODY, SMPL_TO_H36M, BuiltinBody, SMPLBody, ellipsoid_visibility
from methods.motion_capture import (
    R0,
    MotionCapture,
    chamfer_loss,
    dis_flow,
    euler_rotation,
    keypoint_loss,
    motion_loss,
    pretraining_budget,
    project,
)

ROOT = Path(__file__).resolve().parents[1]


def _spheres(centres, radius=100.0):
    c = torch.tensor(centres, dtype=torch.float32).unsqueeze(0)
    Q = c.shape[1]
    return c, torch.eye(3).expand(1, Q, 3, 3), torch.full((1, Q, 3), radius)


def test_occluded_vertex_is_invisible():
    # two spheres on the optical axis: the near one hides the far one's front point; back-facing points are hidden
    # and a third sphere beside the far one is in the clear (its ray passes the near sphere 184 mm off its centre)
    centres, axes, radii = _spheres([[0.0, 0.0, 3000.0], [0.0, 0.0, 5000.0], [300.0, 0.0, 5000.0]])
    points = torch.tensor([[[0.0, 0.0, 2900.0], [0.0, 0.0, 4900.0], [0.0, 0.0, 3100.0], [300.0, 0.0, 4900.0]]])
    owner = torch.tensor([0, 1, 0, 2])
    seen = ellipsoid_visibility(points, owner, centres, axes, radii)
    assert seen.tolist() == [[True, False, False, True]]


def test_builtin_body_hides_its_back_and_its_inside():
    body = BuiltinBody(points_per_part=32)
    out = body(torch.zeros(1, 17, 3), torch.zeros(1, 4))
    R = euler_rotation(torch.zeros(1, 3)) @ R0  # facing the camera
    T = torch.tensor([[0.0, 0.0, 5000.0]])
    px = project(out.vertices, R, T, torch.tensor([64.0]), 64, 64)
    seen = body.visibility(out, R, T, px, 64, 64)[0]
    forward = out.vertices[0, :, 0]  # +X faces the camera
    chest = body.owner == 2  # the chest ellipsoid
    assert seen[chest][forward[chest].argmax()] and not seen[chest & (forward < -60)].any()
    assert seen[forward > 0].float().mean() > 0.3 and not seen[forward < -80].any()
    hip_sphere = body.owner == 21 + H36M_17.index("RHip")  # inside the pelvis ellipsoid
    assert not seen[hip_sphere].any()


def test_a_bent_elbow_bends_the_joints_and_the_mesh():
    body = BuiltinBody(points_per_part=16)
    theta = torch.zeros(2, 17, 3)
    theta[1, H36M_17.index("RElbow")] = torch.tensor([0.0, -math.pi / 2, 0.0])  # about +Y (left): forearm forward
    out = body(theta, torch.zeros(2, 4))
    e, w = H36M_17.index("RElbow"), H36M_17.index("RWrist")
    assert torch.allclose(out.joints[1, e], out.joints[0, e], atol=1e-3)
    assert torch.allclose(out.joints[1, w] - out.joints[1, e], torch.tensor([250.0, 0.0, 0.0]), atol=1e-2)
    assert torch.allclose(out.joints, body.joints(theta, torch.zeros(2, 4)), atol=1e-2)  # Eq. 2 gives the FK joints
    forearm = body.owner == PRIM_NAMES.index("r_forearm")
    centre = out.vertices[:, forearm].mean(1)
    assert centre[1, 0] - centre[0, 0] > 100  # the forearm's surface swung forward with it
    # a longer leg factor lengthens exactly the legs
    beta = torch.tensor([[0.0, math.log(1.1), 0.0, 0.0]])
    lengths = body.bone_lengths(beta)[0] / body.template_lengths
    assert torch.allclose(lengths[H36M_17.index("RKnee")], torch.tensor(1.1)) and lengths[H36M_17.index("Spine")] == 1


def test_a_jittered_body_changes_its_widths_not_its_joints():
    plain, jittered = BuiltinBody(points_per_part=16), BuiltinBody(points_per_part=16, radius_jitter=0.2)
    factors = jittered.radii_mm / plain.radii_mm
    n = torch.randn(factors.shape, generator=torch.Generator().manual_seed(0))  # the documented draw
    assert torch.allclose(factors, (0.2 * n).exp())
    theta = torch.zeros(1, 17, 3)
    a, b = plain(theta, torch.zeros(1, 4)), jittered(theta, torch.zeros(1, 4))
    assert torch.allclose(a.joints, b.joints, atol=1e-4) and not torch.allclose(a.vertices, b.vertices, atol=1.0)
    with pytest.raises(ValueError, match="radius_jitter"):
        BuiltinBody(radius_jitter=-1)


def test_keypoint_loss_closed_form():
    pred, target = torch.zeros(1, 2, 2), torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])
    assert keypoint_loss(pred, target, 10.0).item() == pytest.approx(0.25 / 2)
    assert keypoint_loss(pred, target, 10.0, torch.tensor([[True, False]])).item() == pytest.approx(0.25)


def test_chamfer_is_zero_on_coinciding_sets_and_grows_with_a_shift():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2:5, 3:6] = True
    ys, xs = torch.nonzero(mask[0], as_tuple=True)
    centres = (torch.stack([xs, ys], -1).float() + 0.5).unsqueeze(0) * 2  # mask at half of a 16 px image
    visible = torch.ones(1, centres.shape[1], dtype=torch.bool)
    assert chamfer_loss(centres, visible, mask, 16.0, chunk=4).item() == pytest.approx(0.0, abs=1e-9)
    # one pixel, one point shifted by d: both directions see d^2 (in units of the image size)
    one = torch.zeros(1, 8, 8, dtype=torch.bool)
    one[0, 4, 4] = True
    losses = [chamfer_loss(torch.tensor([[[9.0 + d, 9.0]]]), torch.ones(1, 1, dtype=torch.bool), one, 16.0).item()
              for d in (0.5, 1.0, 2.0)]  # fmt: skip
    assert losses == pytest.approx([2 * (d / 16) ** 2 for d in (0.5, 1.0, 2.0)])
    # invisible vertices are ignored
    far = torch.tensor([[[9.0, 9.0], [100.0, 100.0]]])
    assert chamfer_loss(far, torch.tensor([[True, False]]), one, 16.0).item() == pytest.approx(0.0, abs=1e-9)


def test_chamfer_gradient_pulls_points_onto_the_mask():
    one = torch.zeros(1, 8, 8, dtype=torch.bool)
    one[0, 4, 4] = True
    pts = torch.tensor([[[12.0, 9.0]]], requires_grad=True)
    chamfer_loss(pts, torch.ones(1, 1, dtype=torch.bool), one, 16.0).backward()
    assert pts.grad[0, 0, 0] > 0 and pts.grad[0, 0, 1] == 0


def _affine_flow(H=16, W=20):
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    u, v = 0.1 * xs - 0.05 * ys + 1.0, 0.02 * xs + 0.1 * ys - 2.0
    flow = torch.stack([u, v]).unsqueeze(0)
    true = lambda p: torch.stack(  # noqa: E731
        [0.1 * p[..., 0] - 0.05 * p[..., 1] + 1.0, 0.02 * p[..., 0] + 0.1 * p[..., 1] - 2.0], -1
    )
    return flow, true


def test_motion_loss_is_zero_for_the_true_motion_and_grows_with_an_error():
    flow, true = _affine_flow()
    g = torch.Generator().manual_seed(0)
    p1 = torch.rand(1, 50, 2, generator=g) * torch.tensor([18.0, 14.0]) + 1.0  # inside, off pixel centres
    p2 = p1 + true(p1)
    visible = torch.ones(1, 50, dtype=torch.bool)
    assert motion_loss(p1, p2, visible, flow, 20.0).item() == pytest.approx(0.0, abs=1e-5)
    off = p2 + torch.tensor([0.5, -0.25])
    assert motion_loss(p1, off, visible, flow, 20.0).item() == pytest.approx(0.75 / 20, abs=1e-5)
    # only visible vertices count
    wrong = p2.clone()
    wrong[0, 0] += 10.0
    hidden = visible.clone()
    hidden[0, 0] = False
    assert motion_loss(p1, wrong, hidden, flow, 20.0).item() == pytest.approx(0.0, abs=1e-5)


def test_motion_loss_on_the_mask_reads_only_the_persons_flow():
    # the person covers columns 0-9 and moves 2 px right; the background (columns 10-19) is still
    mask = torch.zeros(1, 20, 20, dtype=torch.bool)
    mask[:, :, :10] = True
    flow = torch.zeros(1, 2, 20, 20)
    flow[:, 0, :, :10] = 2.0
    # a vertex at x = 9.75 has 3/4 of its bilinear footprint on pixel 9 (person) and 1/4 on pixel 10 (background):
    # plain sampling reads 0.75 * 2 = 1.5 px, on the mask 2 px; a vertex at x = 15 is off the person
    p1 = torch.tensor([[[9.75, 5.5], [15.5, 5.5]]])
    p2 = p1 + torch.tensor([[[2.0, 0.0], [7.0, 0.0]]])
    visible = torch.tensor([[True, False]])
    assert motion_loss(p1, p2, visible, flow, 20.0).item() == pytest.approx(0.5 / 20, abs=1e-6)
    assert motion_loss(p1, p2, visible, flow, 20.0, mask).item() == pytest.approx(0.0, abs=1e-6)
    # the off-person vertex does not count on the mask even when visible (its wrong 7 px motion is ignored) ...
    both = torch.ones(1, 2, dtype=torch.bool)
    assert motion_loss(p1, p2, both, flow, 20.0, mask).item() == pytest.approx(0.0, abs=1e-6)
    # ... but does without it: (0.5 + 7) / 2 px
    assert motion_loss(p1, p2, both, flow, 20.0).item() == pytest.approx(3.75 / 20, abs=1e-6)


def test_direct_optimisation_starts_from_a_random_yaw_or_the_rest_pose():
    model = MotionCapture(image_size=32, base_channels=4, fc_width=16, points_per_part=8)
    raw = model.direct_start(64, torch.device("cpu"))
    p = model.decode(raw)
    # the camera is a yaw about the image's vertical axis: R = R_y(yaw) R0, yaw spread over the circle
    yaw = torch.atan2(raw[:, 3 * 17 + 4 + 3], raw[:, 3 * 17 + 4 + 2] + 1)
    zero = torch.zeros_like(yaw)
    assert torch.allclose(p["R"], euler_rotation(torch.stack([zero, yaw, zero], -1)) @ R0, atol=1e-6)
    assert yaw.min() < -2.0 and yaw.max() > 2.0
    assert p["theta"][:, 0].abs().max() == 0 and 0.2 < p["theta"][:, 1:].std() < 0.4
    assert torch.equal(model.direct_start(64, torch.device("cpu")), raw)  # a fixed seed
    model.hparams.direct_init = "rest"
    assert model.direct_start(3, torch.device("cpu")).abs().max() == 0


def test_dis_flow_finds_a_shift():
    g = torch.Generator().manual_seed(1)
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(48, 48), mode="bicubic")
    texture = texture.clamp(0, 1)
    a, b = texture[..., 8:40, 8:40], texture[..., 8:40, 6:38]  # the content moves 2 px to the right
    flow = dis_flow(a, b)
    assert flow.shape == (1, 2, 32, 32)
    assert flow[0, 0, 8:24, 8:24].median().item() == pytest.approx(2.0, abs=0.3)
    assert flow[0, 1, 8:24, 8:24].median().item() == pytest.approx(0.0, abs=0.3)


def _write_smpl(path: Path, n: int = 6890) -> dict:
    """A file in SMPL's distributed format: a latin-1 pickle of numpy arrays and a sparse joint regressor."""
    rng = np.random.default_rng(0)
    v = rng.normal(scale=0.3, size=(n, 3))
    jreg = np.zeros((24, n))
    for j in range(24):
        jreg[j, j * 10 : j * 10 + 10] = 0.1
    parents = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
    weights = np.zeros((n, 24))
    weights[:, 0] = 1.0
    data = {"v_template": v, "shapedirs": np.zeros((n, 3, 10)), "posedirs": np.zeros((n, 3, 207), np.float32),
            "J_regressor": scipy.sparse.csc_matrix(jreg), "weights": weights,
            "kintree_table": np.array([[4294967295, *parents[1:]], list(range(24))]),
            "f": np.array([[0, 1, 2], [1, 2, 3]], dtype=np.uint32)}  # fmt: skip
    data["shapedirs"][:, 1, 0] = 0.01  # beta_0 raises every vertex by 1 cm
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    return data


def test_smpl_adapter_reads_a_file_in_smpl_format(tmp_path):
    data = _write_smpl(tmp_path / "SMPL_NEUTRAL.pkl")
    body = SMPLBody(str(tmp_path / "SMPL_NEUTRAL.pkl"))
    assert body.num_vertices == 6890 and body.pose_joints == 24 and body.num_betas == 10
    out = body(torch.zeros(2, 24, 3), torch.zeros(2, 10))
    verts = torch.from_numpy(data["v_template"]).float() @ SMPL_TO_BODY.T * 1000.0
    joints = torch.from_numpy(data["J_regressor"].toarray()).float()[list(SMPL_TO_H36M)] @ verts
    assert torch.allclose(out.vertices[0], verts - joints[0], atol=1e-2)
    assert torch.allclose(out.joints[0], joints - joints[0], atol=1e-2)
    # beta_0 moves every vertex 10 mm along SMPL's y (up), the body frame's +Z: root-relative nothing changes
    beta = torch.zeros(1, 10)
    beta[0, 0] = 1.0
    assert torch.allclose(body(torch.zeros(1, 24, 3), beta).vertices[0], out.vertices[0], atol=1e-2)
    # a global rotation of 90 deg about SMPL's y (up) turns the body about +Z
    theta = torch.zeros(1, 24, 3)
    theta[0, 0, 1] = math.pi / 2
    turned = body(theta, torch.zeros(1, 10)).vertices[0]
    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(turned, out.vertices[0] @ rz.T, atol=1e-2)
    with pytest.raises(FileNotFoundError, match="smpl_model_path"):
        SMPLBody(str(tmp_path / "missing.pkl"))


def test_the_method_runs_on_the_smpl_body(tmp_path):
    _write_smpl(tmp_path / "smpl.pkl")
    model = MotionCapture(body="smpl", smpl_model_path=str(tmp_path / "smpl.pkl"), image_size=32, base_channels=4,
                          fc_width=16)  # fmt: skip
    p = model.pose(torch.zeros(2, 24 * 3 + 10 + 9), with_visibility=True)
    assert p["joints_cam"].shape == (2, 17, 3) and p["visible"].shape == (2, 6890) and p["visible"].any()


def test_options_fail_with_their_name():
    with pytest.raises(ValueError, match="pretrained_checkpoint"):
        MotionCapture(stage="adapt")
    with pytest.raises(ValueError, match="losses"):
        MotionCapture(losses=("kpt", "depth"))
    with pytest.raises(ValueError, match="smpl_model_path"):
        MotionCapture(body="smpl")
    with pytest.raises(ValueError, match="direct_init"):
        MotionCapture(direct_init="zero")


def test_tiny_pretrain_then_adapt_through_the_cli(tmp_path):
    """Pretraining exports the network; adaptation starts from it and writes the adapted, pretrained and direct rows."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shutil.copytree(ROOT / "configs", tmp_path / "configs")  # runs in tmp_path: its artifacts stay there
    common = ["--run.root", str(tmp_path / "runs"), "--run.results_dir", str(tmp_path / "results"),
              "--data.init_args.cache_dir", "null"]  # fmt: skip
    pre = tiny_humans_args("configs/motion_capture.yaml", "configs/cpu_motion_capture.yaml", steps=2)
    export = tmp_path / "pre.pt"
    run = lambda args: subprocess.run([sys.executable, "-m", "benchmark", "fit", *args], cwd=tmp_path, env=env,  # noqa: E731
                                      capture_output=True, text=True, timeout=600)  # fmt: skip
    r = run(pre + common + ["--model.init_args.export_path", str(export), "--run.test_after_fit", "false"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert export.is_file()
    configs = ["motion_capture", "motion_capture_adapt", "cpu_images", "cpu_motion_capture", "cpu_motion_capture_adapt"]
    adapt = [a for c in configs for a in ("--config", f"configs/{c}.yaml")] + pre[6:]
    r = run(adapt + common + ["--model.init_args.pretrained_checkpoint", str(export), "--model.init_args.direct_steps",
                              "2", "--data.init_args.eval_stride", "10", "--trainer.limit_test_batches", "1"])  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    records = {
        json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json")
    }
    assert {"motioncapture", "motioncapture-pretrained", "motioncapture-direct-kpt-seg-motion"} <= set(records)
    rec = records["motioncapture"]
    assert rec["input"] == "image rgb32x32 (source 3D labels, then adapted on 2D gt + mask gt + flow dis)"
    assert records["motioncapture-pretrained"]["input"] == "image rgb32x32 (source 3D labels)"
    assert {"t_mpjpe", "surface", "mpjpe"} <= set(rec["metrics"])
    assert records["motioncapture-direct-kpt-seg-motion"]["input"] == "image rgb32x32 + 2D gt + mask gt + flow dis"
    # the pretrained row carries the pretraining's budget (2 steps, timed), the adapted row names it
    pretraining = records["motioncapture-pretrained"]["budget"]
    assert pretraining["steps"] == 2 and pretraining["train_time_s"] > 0 and pretraining["device"] == "cpu"
    assert rec["budget"]["pretraining"] == {k: pretraining[k] for k in ("train_time_s", "steps", "epochs")}
    assert fmt_budget(rec["budget"]).endswith(
        f"steps pretraining, then {fmt_budget(rec['budget'] | {'pretraining': None})}"
    )


def test_the_bodys_projected_motion_matches_the_renderers_flow():
    """Conventions end to end: the built-in body placed on rendered frames' true joints and cameras moves, inside the
    silhouette, as the renderer's flow says (its shape is the renderer's up to size and girth), and fits the mask."""
    from datamodules import SyntheticHumans, SyntheticPoses

    motion = SyntheticPoses(train_subjects=[1], val_subjects=[2], test_subjects=[3], actions=["walk", "jump"],
                            clips_per_action=1, frames_per_clip=20)  # fmt: skip
    dm = SyntheticHumans(motion=motion, mode="clip", clip_length=2, image_size=64, num_scenes=1, video_frames=10,
                         maps=["mask", "flow"], crop_jitter=0.0)  # fmt: skip
    b = dm.dataset("train").__getitems__([0, 9, 17, 30])
    body = BuiltinBody(48)
    J = b["joints_3d"].flatten(0, 1).float()  # camera frame: the body is posed there directly
    out = body.surface(J, torch.zeros(len(J), 4))
    uvw = torch.einsum("bij,bnj->bni", b["K"].flatten(0, 1).float(), out.vertices)
    px = (uvw[..., :2] / uvw[..., 2:]).view(4, 2, -1, 2)
    seen = ellipsoid_visibility(out.vertices, body.owner, out.centers, out.axes, out.radii).view(4, 2, -1)[:, 0]
    mask = b["mask"][:, 0, 0]
    interior = torch.nn.functional.max_pool2d((~mask).float()[:, None], 5, 1, 2)[:, 0] < 0.5
    ij = px[:, 0].floor().long().clamp(0, 63)
    inner = seen & interior[torch.arange(4)[:, None], ij[..., 1], ij[..., 0]]
    flow = b["flow"][:, 0].float()
    moved = motion_loss(px[:, 0], px[:, 1], inner, flow, 1.0).mean()
    still = motion_loss(px[:, 0], px[:, 0], inner, flow, 1.0).mean()
    assert inner.sum() > 50 and still > 0.5 and moved < 0.25 * still
    half = torch.nn.functional.avg_pool2d(mask[:, None].float(), 2)[:, 0] > 0.5
    fit = chamfer_loss(px[:, 0], seen, half, 64.0).mean()
    assert fit < 0.5 * chamfer_loss(px[:, 0] + 3.0, seen, half, 64.0).mean()


def test_the_table_stack_tests_on_the_image_tables_split():
    """configs/motion_capture_table.yaml, layered last, puts the adapted and pretrained rows on the image table: the same
    test protocol and rooms as the supervised reference's, whatever the CPU adaptation file set for the CMU target."""
    from benchmark.config import load_datamodule, read_config

    cpu = ["configs/cpu_images.yaml", "configs/cpu_motion_capture.yaml", "configs/cpu_motion_capture_adapt.yaml"]
    stack = [
        "configs/motion_capture.yaml",
        "configs/motion_capture_adapt.yaml",
        *cpu,
        "configs/motion_capture_table.yaml",
    ]
    table, reference = load_datamodule(stack), load_datamodule(["configs/supervised.yaml", "configs/cpu_images.yaml"])
    assert table.protocol == reference.protocol and table.seed == reference.seed == 0
    assert table.mode == "clip" and table.clip_length == 2  # the motion loss still gets frame pairs in training
    cfg = read_config(stack)
    assert cfg["trainer"]["limit_test_batches"] == 1.0 and cfg["model"]["init_args"]["direct_steps"] == 0


def test_pretraining_budget_reads_an_export_or_a_lightning_checkpoint(tmp_path):
    torch.save(
        {"global_step": 7, "epoch": 1, "callbacks": {"ResultsWriter": {"train_time_s": 12.5}}}, tmp_path / "a.ckpt"
    )
    assert pretraining_budget(str(tmp_path / "a.ckpt")) == {"train_time_s": 12.5, "steps": 7, "epochs": 1}
    torch.save({"net": {}, "budget": {"train_time_s": 3.0, "steps": 2, "epochs": 0}}, tmp_path / "b.pt")
    assert pretraining_budget(str(tmp_path / "b.pt")) == {"train_time_s": 3.0, "steps": 2, "epochs": 0}
    torch.save({"net": {}}, tmp_path / "old.pt")  # an export from before budgets were kept
    assert pretraining_budget(str(tmp_path / "old.pt")) is None and pretraining_budget(str(tmp_path / "no.pt")) is None
