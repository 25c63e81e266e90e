"""Neural rendering of a Gaussian template (methods/neural_rendering.py): template, chain, losses, metrics, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix

from benchmark.__main__ import main
from benchmark.suite import Run, resolve_record
from datamodules.skeleton import H36M_17
from methods.base import BASELINES
from methods.neural_rendering import TEMPLATE_JOINTS, GaussianTemplate, NeuralRendering, part_tree
from metrics.failure_modes import LeftRightConfusion, LimbDepthSign

ROOT = Path(__file__).resolve().parents[1]


def _tiny_model(**kw):
    args = dict(backbone="resnet18", image_size=32, render_size=16, num_samples=12, gen_base=8, gen_depth=3,
                spade_hidden=8, head_width=16, pss_k=(), probe_samples=0)  # fmt: skip
    return NeuralRendering(**{**args, **kw})


def test_part_tree_starts_at_the_core_and_anchors_children_at_shared_joints():
    order, parent, anchor = part_tree()
    assert order[0] == H36M_17.index("Spine") and parent[0] == -1 and anchor[0] == H36M_17.root
    assert sorted(order) == list(range(1, 17))
    for j, p, a in zip(order, parent, anchor):
        assert a == H36M_17.parents[j]  # the joint the bone starts at
        if p >= 0:
            assert order.index(p) < order.index(j)  # parents come first
            # the shared anchor lies on the parent bone (its start or its end)
            assert a in (p, H36M_17.parents[p])


def test_zero_pose_is_the_template_and_one_common_rotation_is_a_rigid_motion():
    tpl = GaussianTemplate()
    B, K = 3, 16
    t = torch.tensor([[0.1, -0.2, 4.0], [0.0, 0.0, 3.0], [-0.3, 0.1, 5.0]])
    posed = tpl.pose(torch.zeros(B, K, 3), torch.ones(B, K, 3), t)
    assert torch.allclose(posed["joints"], TEMPLATE_JOINTS + t[:, None], atol=1e-6)
    # every part rotated by the same R: the whole template turns rigidly about the root (closed form R X + t)
    r = torch.tensor([0.3, -1.1, 0.5])
    R = axis_angle_to_rotation_matrix(r[None])[0]
    posed = tpl.pose(r.expand(B, K, 3), torch.ones(B, K, 3), t)
    assert torch.allclose(posed["joints"], TEMPLATE_JOINTS @ R.T + t[:, None], atol=1e-5)
    # the Gaussians' means are the bones' midpoints
    mid = (posed["joints"][:, 1:] + posed["joints"][:, list(H36M_17.parents[1:])]) / 2
    assert torch.allclose(posed["centres"], mid, atol=1e-5)


def test_the_chain_keeps_parts_attached_and_rotations_absolute():
    torch.manual_seed(0)
    tpl = GaussianTemplate()
    B, K = 4, 16
    rot, scale = torch.randn(B, K, 3), torch.exp(0.3 * torch.randn(B, K, 3))
    t = torch.randn(B, 3)
    posed = tpl.pose(rot, scale, t)
    H, tau = posed["H"], posed["tau"]
    order, parent, anchor = part_tree()
    X = TEMPLATE_JOINTS
    for j, p, a in zip(order, parent, anchor):
        child_end = H[:, j - 1] @ X[a] + tau[:, j - 1]
        parent_end = t if p < 0 else H[:, p - 1] @ X[a] + tau[:, p - 1]
        assert torch.allclose(child_end, parent_end, atol=1e-5)  # Fig. 2: t = a~^n - a~^m re-attaches
    # bone j's vector is H_j times its template vector: its own rotation and scale, not its parent's
    bones = posed["joints"][:, 1:] - posed["joints"][:, list(H36M_17.parents[1:])]
    rest = X[1:] - X[list(H36M_17.parents[1:])]
    assert torch.allclose(bones, torch.einsum("bkij,kj->bki", H, rest), atol=1e-5)


def test_an_untrained_encoder_centres_the_template_and_the_boundary_loss_is_eq7():
    model = _tiny_model().eval()
    K = torch.tensor([[60.0, 0, 16], [0, 60.0, 16], [0, 0, 1]]).expand(2, 3, 3)
    with torch.no_grad():
        posed = model.encode(torch.rand(2, 3, 32, 32), K)
    root_px = posed["translation"] @ K[0].T
    assert torch.allclose(root_px[:, :2] / root_px[:, 2:], torch.full((2, 2), 16.0), atol=0.5)
    # depth: a 1.75 m template over 1/1.2 of the crop
    assert torch.allclose(posed["translation"][:, 2], torch.tensor(60.0 * 1.75 / (32 / 1.2)), rtol=0.05)
    # Eq. 7 by hand: one anchor at x = 1.5, y = -0.5 (inside), one at x = 0.2, y = -2.0 (outside), crop coords
    joints = torch.tensor([[[1.5 * 16 / 60, -0.5 * 16 / 60, 1.0], [0.2 * 16 / 60, -2.0 * 16 / 60, 1.0]]])
    loss = NeuralRendering.boundary_loss(joints, K[:1], (32, 32))
    assert float(loss) == pytest.approx(1.5 + 2.0, abs=1e-5)


def test_depth_range_bounds_the_root_depth():
    model = _tiny_model(depth_range=0.5).eval()
    with torch.no_grad():
        model.head[-1].bias[-1] = 100.0  # the log-depth output pushed far away
        K = torch.tensor([[60.0, 0, 16], [0, 60.0, 16], [0, 0, 1]]).expand(1, 3, 3)
        z = model.encode(torch.rand(1, 3, 32, 32), K)["translation"][0, 2]
    assert float(z) == pytest.approx(60.0 * 1.75 / (32 / 1.2) * math.exp(0.5), rel=1e-3)


def test_the_reconstruction_loss_sums_pixels_per_image_or_averages_them():
    recon, target = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    target[1] = 0.0  # the second image is perfect
    # sum: image 0 contributes 48 values x 0.25, image 1 nothing; batch mean = 6
    assert float(_tiny_model().reconstruction_loss(recon, target)) == pytest.approx(6.0)
    assert float(_tiny_model(recon_reduction="mean").reconstruction_loss(recon, target)) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="recon_reduction"):
        _tiny_model(recon_reduction="median")


def test_the_rotation_regulariser_decays_linearly_to_zero():
    model = _tiny_model(reg_weight=1.0, reg_decay_steps=500)
    assert [model.reg_alpha(s) for s in (0, 250, 500, 2000)] == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_gradients_reach_every_template_and_encoder_parameter():
    torch.manual_seed(0)
    model = _tiny_model(learn_shape=True)
    B = 3
    K = torch.tensor([[60.0, 0, 16], [0, 60.0, 16], [0, 0, 1]]).expand(B, 2, 3, 3)
    loss = model.training_step({"image": torch.rand(B, 2, 3, 32, 32), "K": K}, 0)
    loss.backward()
    names = [n for n, p in model.named_parameters()]
    assert any(n.startswith("template.log_sigma") for n in names) and any(n.startswith("backbone.") for n in names)
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
            or float(p.grad.abs().sum()) == 0]  # fmt: skip
    assert not dead, f"no gradient: {dead}"


def test_per_part_conditioning_maps_sum_to_the_opacity_and_colour_to_the_rgb_render():
    torch.manual_seed(0)
    rgb, parts = _tiny_model().eval(), _tiny_model(condition="parts", gen_skips=False).eval()
    parts.load_state_dict({k: v for k, v in rgb.state_dict().items() if not k.startswith("generator.")}, strict=False)
    K = torch.tensor([[60.0, 0, 16], [0, 60.0, 16], [0, 0, 1]]).expand(2, 3, 3)
    with torch.no_grad():
        posed = rgb.encode(torch.rand(2, 3, 32, 32), K)
        posed["translation"] = posed["translation"] * 0.9  # nearer: bigger, so parts overlap
        r_rgb, r_parts = rgb.render(posed, K, (32, 32)), parts.render(posed, K, (32, 32))
    assert r_rgb.shape == (2, 4, 32, 32) and r_parts.shape == (2, 17, 32, 32)
    assert r_parts[:, -1].amax() > 0.5  # the template is in view
    # one-hot colours: the part channels partition the opacity (sum_k c_k = 1 at every sample)
    assert torch.allclose(r_parts[:, :-1].sum(1), r_parts[:, -1], atol=1e-5)
    # Eq. 2 is linear in the colours: the part maps times the RGB colours are the RGB render
    assert torch.allclose(parts.render_rgb(r_parts), r_rgb, atol=1e-5)
    assert parts.generator.cond_channels == 17 and parts.generator.in_channels == 20 and not parts.generator.skips
    with pytest.raises(ValueError, match="condition"):
        _tiny_model(condition="depth")


def test_pair_mode_is_required_with_a_clear_message():
    model = _tiny_model()
    K = torch.eye(3).expand(2, 3, 3)
    with pytest.raises(ValueError, match="mode: pair"):
        model.training_step({"image": torch.rand(2, 3, 32, 32), "K": K}, 0)


def test_failure_mode_rates_against_hand_made_cases():
    torch.manual_seed(0)
    gt = torch.randn(6, 17, 3) * 200
    lr, limbs = LeftRightConfusion(), LimbDepthSign()
    lr.update(gt, gt)
    assert float(lr.compute()) == 0.0
    lr.reset()
    lr.update(gt[:, list(H36M_17.flip_permutation)], gt)  # labels swapped: every pose is closer after swapping back
    assert float(lr.compute()) == 100.0
    limbs.update(gt, gt)
    assert float(limbs.compute()) == 0.0
    limbs.reset()
    mirrored = gt * torch.tensor([1.0, 1.0, -1.0])  # every limb's depth sign flipped
    limbs.update(mirrored, gt)
    assert float(limbs.compute()) == 100.0
    # one pose, two clear limbs, one of them flipped: 50% (only limbs with |dz| > 0.2 length count)
    pose = torch.zeros(1, 17, 3)
    pose[0, 2] = torch.tensor([0.0, 100.0, 100.0])  # RKnee: thigh pointing away (dz = +100 of length 141)
    pose[0, 5] = torch.tensor([0.0, 100.0, -100.0])  # LKnee: thigh pointing towards the camera
    pose[0, 3], pose[0, 6] = pose[0, 2] + torch.tensor([0.0, 100.0, 0]), pose[0, 5] + torch.tensor([0.0, 100.0, 0])
    pred = pose.clone()
    pred[0, 5, 2] = 100.0  # the left thigh now points away too
    pred[0, 6, 2] = 100.0
    limbs.reset()
    limbs.update(pred, pose)
    assert float(limbs.compute()) == pytest.approx(50.0)


def tiny_fit_args(actions: str = "[walk, jump]", steps: int = 3, sanity: int = 1) -> list[str]:
    """The CPU config stack shrunk to a 32 px, few-step fit on tiny synthetic videos."""
    return ["--config", "configs/neural_rendering.yaml", "--config", "configs/cpu_images.yaml",
            "--config", "configs/cpu_neural_rendering.yaml",
            "--model.init_args.image_size", "32", "--data.init_args.image_size", "32",
            "--model.init_args.render_size", "16", "--model.init_args.num_samples", "8",
            "--model.init_args.gen_base", "8", "--model.init_args.spade_hidden", "8",
            "--model.init_args.head_width", "16", "--model.init_args.pss_k", "[4]",
            "--model.init_args.probe_samples", "24",
            "--data.init_args.motion", "datamodules.SyntheticPoses",
            "--data.init_args.motion.init_args.train_subjects", "[1]",
            "--data.init_args.motion.init_args.val_subjects", "[2]",
            "--data.init_args.motion.init_args.test_subjects", "[3]",
            "--data.init_args.motion.init_args.actions", actions,
            "--data.init_args.motion.init_args.clips_per_action", "1",
            "--data.init_args.motion.init_args.frames_per_clip", "20",
            "--data.init_args.num_scenes", "1", "--data.init_args.video_frames", "10",
            "--data.init_args.eval_stride", "5", "--data.init_args.batch_size", "4",
            "--data.init_args.eval_batch_size", "32", "--data.init_args.num_workers", "0",
            "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(steps),
            "--trainer.num_sanity_val_steps", str(sanity), "--trainer.log_every_n_steps", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--run.wandb", "off", "--run.threads", "1"]  # fmt: skip


def test_tiny_cli_fit_writes_both_protocols_failure_rates_and_the_template_figure(workdir):
    main(["fit", *tiny_fit_args(), "--model.init_args.artifacts_dir", "art"])
    records = {
        json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in (workdir / "results").rglob("*.json")
    }
    assert set(records) == {"neuralrendering", "neuralrendering-linear", *BASELINES}
    for name in ("neuralrendering", "neuralrendering-linear"):
        rec = records[name]
        assert rec["role"] == "method" and rec["input"] == "image rgb32x32"
        assert {"p_mpjpe", "lr_confusion", "limb_depth_sign"} <= set(rec["metrics"])
        assert all(math.isfinite(v) for v in rec["metrics"].values())
        assert 0 <= rec["metrics"]["lr_confusion"] <= 100 and 0 <= rec["metrics"]["limb_depth_sign"] <= 100
    assert "probe" in records["neuralrendering-linear"]["metric_protocol"]["p_mpjpe"]
    for name in ("neuralrendering", "neuralrendering-linear"):  # both protocols get a bootstrap interval
        low, high = records[name]["ci"]["p_mpjpe"]
        assert low <= records[name]["metrics"]["p_mpjpe"] <= high
    log_dir = next((workdir / "runs").rglob("val_templates.png")).parent
    assert (log_dir / "train_reconstructions.png").is_file()
    metrics = (log_dir / "metrics.csv").read_text()
    assert "train/loss_recon" in metrics and "val_neuralrendering-linear/p_mpjpe" in metrics


def test_composite_lays_the_generator_output_by_the_render_opacity_over_the_background():
    torch.manual_seed(0)
    x_dt = torch.rand(2, 3, 32, 32)
    rendered = torch.zeros(2, 17, 32, 32)
    rendered[:, -1, :, :16] = 1.0  # opaque left half
    rendered[:, -1, 5, 20] = 0.25
    rendered[:, 0] = rendered[:, -1]  # one part fills the opacity
    model = _tiny_model(condition="parts", composite="x_dt").eval()
    with torch.no_grad():
        out = model.reconstruct(rendered, x_dt)
    F_, rec = out["foreground"], out["recon"]
    clear = rendered[:, -1:].expand_as(x_dt) == 0
    assert torch.equal(rec[clear], x_dt[clear])  # where the template is not, the background shows
    assert torch.allclose(rec[..., :16], F_[..., :16])
    assert torch.allclose(rec[:, :, 5, 20], 0.25 * F_[:, :, 5, 20] + 0.75 * x_dt[:, :, 5, 20])
    # layered: the background layer is generated from x_dt alone (the render does not reach it)
    layered = _tiny_model(condition="parts", composite="layered").eval()
    r = rendered.clone().requires_grad_()
    out = layered.reconstruct(r, x_dt)
    assert layered.background is not None and out["background"].shape == x_dt.shape
    (grad,) = torch.autograd.grad(out["background"].sum(), r, allow_unused=True)
    assert grad is None or float(grad.abs().sum()) == 0.0
    assert torch.allclose(out["recon"][clear], out["background"][clear])
    assert _tiny_model().background is None and "foreground" not in _tiny_model().reconstruct(
        torch.zeros(1, 4, 32, 32), torch.rand(1, 3, 32, 32))  # fmt: skip
    with pytest.raises(ValueError, match="composite"):
        _tiny_model(composite="alpha")


def test_perceptual_loss_reads_a_weights_file_and_fails_clearly_without_one(tmp_path):
    from methods.nn.perceptual import IMAGENET_STD, PerceptualLoss

    with pytest.raises(FileNotFoundError, match="perceptual_weights.*not found"):
        _tiny_model(perceptual_weights=str(tmp_path / "vgg19.pth"))
    # conv1_1 with identity centre taps on channels 0-2, zero elsewhere: the feature error is |x - y| / std
    w = torch.zeros(64, 3, 3, 3)
    for c in range(3):
        w[c, c, 1, 1] = 1.0
    torch.save({"features.0.weight": w, "features.0.bias": torch.zeros(64), "classifier.0.weight": torch.zeros(1)},
               tmp_path / "vgg19.pth")  # fmt: skip
    loss = PerceptualLoss(str(tmp_path / "vgg19.pth"), layers=1)
    x, y = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    y[:, 1] = 0.5  # only the green channel differs
    expected_sum = 16 * 0.5 / IMAGENET_STD[1]  # per image: 16 pixels of channel 1
    assert float(loss(x, y, "sum")) == pytest.approx(expected_sum, rel=1e-5)
    assert float(loss(x, y, "mean")) == pytest.approx(expected_sum / (64 * 16), rel=1e-5)
    with pytest.raises(ValueError, match="not a VGG-19 state dict"):
        PerceptualLoss(str(tmp_path / "vgg19.pth"), layers=3)  # conv1_2's weights are missing from the file
    # random features: a model trains with them, and the frozen VGG gets no gradient
    torch.manual_seed(0)
    model = _tiny_model(perceptual_weights="random", perceptual_layers=4)
    K = torch.tensor([[60.0, 0, 16], [0, 60.0, 16], [0, 0, 1]]).expand(2, 2, 3, 3)
    model.training_step({"image": torch.rand(2, 2, 3, 32, 32), "K": K}, 0).backward()
    assert all(p.grad is None for p in model.perceptual.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.backbone.parameters())


def test_global_appearance_reaches_the_generator_only_as_a_pooled_vector():
    torch.manual_seed(0)
    model = _tiny_model(condition="parts", composite="layered", appearance="global", appearance_dim=5).eval()
    assert model.generator.in_channels == 17 + 5
    rendered = torch.rand(2, 17, 32, 32)
    x1, x2 = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert model.appearance(x1).shape == (2, 5, 1, 1)
        f1, f2 = model.reconstruct(rendered, x1)["foreground"], model.reconstruct(rendered, x2)["foreground"]
        assert not torch.allclose(f1, f2)  # x_dt matters ...
        model.appearance[-2].weight.zero_()  # ... only through the vector: a constant vector cuts x_dt off
        f1, f2 = model.reconstruct(rendered, x1)["foreground"], model.reconstruct(rendered, x2)["foreground"]
        assert torch.equal(f1, f2)
    with pytest.raises(ValueError, match="appearance"):
        _tiny_model(appearance="pixels")


def test_background_composite_shows_the_data_background_where_the_template_is_not():
    torch.manual_seed(0)
    x_dt, bg = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    model = _tiny_model(condition="parts", composite="background", appearance="global").eval()
    assert model.background is None and "background" in model.requires
    rendered = torch.zeros(2, 17, 32, 32)
    with torch.no_grad():
        out = model.reconstruct(rendered, x_dt, bg)  # A = 0: the reconstruction IS the background, exactly
        assert torch.equal(out["recon"], bg) and torch.equal(out["background"], bg)
        rendered[:, -1] = 1.0  # A = 1: the generator's output alone
        rendered[:, 0] = 1.0
        out = model.reconstruct(rendered, x_dt, bg)
        assert torch.equal(out["recon"], out["foreground"])
        rendered[:, -1] = rendered[:, 0] = 0.25
        out = model.reconstruct(rendered, x_dt, bg)
        assert torch.allclose(out["recon"], 0.25 * out["foreground"] + 0.75 * bg)
    with pytest.raises(ValueError, match="composite: background.*'background'.*SyntheticHumanPairs"):
        model.reconstruct(rendered, x_dt)
    K = torch.tensor([[60.0, 0, 16], [0, 60.0, 16], [0, 0, 1]]).expand(2, 2, 3, 3)
    with pytest.raises(ValueError, match="'background'"):
        model.training_step({"image": torch.rand(2, 2, 3, 32, 32), "K": K}, 0)
    # the background gets no gradient into the model, but the template's opacity does through (F - B)
    model.train()
    loss = model.training_step({"image": torch.rand(2, 2, 3, 32, 32), "K": K, "background": bg}, 0)
    loss.backward()
    assert float(model.head[-1].weight.grad.abs().sum()) > 0


def test_background_composite_needs_the_key_from_the_data_module_and_records_its_source(workdir):
    args = [
        *tiny_fit_args("[walk]", steps=2, sanity=0),
        "--model.init_args.composite",
        "background",
        "--trainer.limit_val_batches",
        "1",
    ]
    with pytest.raises(KeyError, match="background"):  # SyntheticHumans has no background estimate
        main(["fit", *args])
    args += ["--data.class_path", "datamodules.SyntheticHumanPairs", "--data.init_args.background_source", "plate"]
    main(["fit", *args])
    paths = {json.loads(p.read_text())["method"]: p for p in (workdir / "results").rglob("*.json")}
    records = {name: json.loads(p.read_text()) for name, p in paths.items()}
    for name in ("neuralrendering", "neuralrendering-linear"):
        assert records[name]["input"] == "image rgb32x32 (trained on pairs, background plate)"
    assert records["baseline-mean-pose"]["input"] == "none"
    # the suite names the record before the run, without a setup: it must name the one the run wrote
    run = Run(method="neuralrendering", dataset="synthetic", args=args, root=workdir)
    assert resolve_record(run).resolve() == paths["neuralrendering"].resolve()


def test_multiscale_reconstruction_loss_adds_area_weighted_errors_of_pooled_images():
    target = torch.zeros(1, 3, 32, 32)
    flat = torch.full_like(target, 0.5)  # a constant error survives pooling: each level adds the pixel sum again
    checker = (torch.arange(32).view(-1, 1) + torch.arange(32)).remainder(2).float().expand(1, 3, 32, 32) * 0.5
    one, three = _tiny_model(), _tiny_model(recon_scales=3)
    assert float(one.reconstruction_loss(flat, target)) == pytest.approx(3 * 32 * 32 * 0.25)
    assert float(three.reconstruction_loss(flat, target)) == pytest.approx(3 * 3 * 32 * 32 * 0.25)
    # a 1-pixel checkerboard averages to 0.25 everywhere on every pooled level: 0.0625 per pixel, area-weighted
    expected = 3 * 32 * 32 * (0.125 + 2 * 0.0625)
    assert float(three.reconstruction_loss(checker, target)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="recon_scales"):
        _tiny_model(recon_scales=0)
