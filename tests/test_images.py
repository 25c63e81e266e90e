"""Images in, 3D out: the backbone factory, the supervised reference through the CLI (bf16 on CPU too),
the non-finite-loss stop, SyntheticHumans' poses-only mode, and the common table's floor-to-ceiling column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from tiny import tiny_humans_args
from torchvision.ops.misc import FrozenBatchNorm2d

from benchmark.__main__ import main
from benchmark.leaderboard import fmt_budget, gap_closed, group_tables, to_markdown
from datamodules.motion.synthetic import SyntheticPoses
from datamodules.render.humans import SyntheticHumans
from methods.base import BASELINES
from methods.nn.backbones import BackboneError, check_image, make_backbone

ROOT = Path(__file__).resolve().parents[1]


# -- backbones ------------------------------------------------------------------------------------------
def test_backbone_gives_features_at_every_stride():
    net = make_backbone("resnet18").eval()
    feats = net(torch.rand(2, 3, 64, 96))
    assert {s: tuple(f.shape) for s, f in feats.items()} == {
        4: (2, 64, 16, 24), 8: (2, 128, 8, 12), 16: (2, 256, 4, 6), 32: (2, 512, 2, 3)
    }  # fmt: skip
    assert make_backbone("resnet50", return_strides=(16,)).out_channels == 1024


def test_backbone_loads_torchvision_weights_and_freezes_batchnorm(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.nn.init.normal_(reference.layer3[0].conv1.weight)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)  # torchvision's format, classifier included
    net = make_backbone("resnet18", pretrained=str(path), frozen_bn=True)
    assert torch.equal(net.stages[2][0].conv1.weight, reference.layer3[0].conv1.weight)
    assert isinstance(net.stem[1], FrozenBatchNorm2d)
    assert torch.equal(net.stem[1].running_var, reference.bn1.running_var)


def test_backbone_channels_last():
    net = make_backbone("resnet18", channels_last=True).eval()
    out = net(torch.rand(1, 3, 64, 64))[32]
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_backbone_errors_name_the_option(tmp_path):
    with pytest.raises(BackboneError, match=r"'resnet19' does not exist.*resnet18.*model.init_args.backbone"):
        make_backbone("resnet19")
    with pytest.raises(BackboneError, match=r"nope.pth do not exist.*model.init_args.pretrained"):
        make_backbone("resnet18", pretrained=str(tmp_path / "nope.pth"))
    wrong = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), wrong)
    with pytest.raises(BackboneError, match=r"do not fit backbone resnet18 .*(unexpected|shape differs)"):
        make_backbone("resnet18", pretrained=str(wrong))
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(BackboneError, match="could not be read"):
        make_backbone("resnet18", pretrained=str(garbage))


def test_image_checks_name_the_options():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(2, 1, 64, 64\)"):
        check_image(torch.zeros(2, 1, 64, 64), (64, 64), "Supervised")
    with pytest.raises(ValueError, match=r"64x64 px.*48x48.*data.init_args.image_size.*model.init_args.image_size"):
        check_image(torch.zeros(2, 3, 48, 48), (64, 64), "Supervised")


# -- SyntheticHumans with fewer maps or none -------------------------------------------------------------------
def _motion() -> SyntheticPoses:
    return SyntheticPoses(train_subjects=[1], val_subjects=[2], test_subjects=[3], actions=["walk"],
                          clips_per_action=1, frames_per_clip=20)  # fmt: skip


def test_poses_only_mode_gives_the_same_frames_and_poses():
    opts = dict(image_size=32, num_workers=0, video_frames=10, num_scenes=1, eval_stride=5, noise_2d_px=3.0)
    with_pixels, poses_only = (
        SyntheticHumans(motion=_motion(), **opts),
        SyntheticHumans(motion=_motion(), maps=[], **opts),
    )
    a = with_pixels.dataset("test").__getitems__(list(range(8)))
    b = poses_only.dataset("test").__getitems__(list(range(8)))
    assert "image" not in b and "image" not in poses_only.provides and "joints_2d" in poses_only.provides
    for key in b:
        assert torch.equal(a[key], b[key]), key
    assert with_pixels.protocol == poses_only.protocol


def test_maps_option_keeps_only_the_chosen_maps_cached_or_not(tmp_path):
    opts = dict(image_size=32, num_workers=0, video_frames=10, num_scenes=1, eval_stride=5)
    full = SyntheticHumans(motion=_motion(), **opts).dataset("test").__getitems__([0, 3])
    for cache in (None, str(tmp_path)):
        dm = SyntheticHumans(motion=_motion(), maps=["image", "mask"], cache_dir=cache, **opts)
        for _ in range(2):  # the second read comes from the cache when there is one
            batch = dm.dataset("test").__getitems__([0, 3])
            assert {"image", "mask"} <= set(batch) and not {"parts", "depth", "flow"} & set(batch)
            assert torch.equal(batch["image"], full["image"]) and torch.equal(batch["mask"], full["mask"])
    with pytest.raises(ValueError, match=r"maps has unknown entries \['normals'\]"):
        SyntheticHumans(motion=_motion(), maps=["image", "normals"])


# -- the supervised reference through the CLI ---------------------------------------------------------
def _tiny_supervised(workdir: Path, *extra: str) -> list[str]:
    return [*tiny_humans_args("configs/supervised.yaml"), "--model.init_args.head_width", "16", *extra]


def test_supervised_fits_in_bf16_and_writes_a_ceiling_record(workdir):
    main(["fit", *_tiny_supervised(workdir, "--trainer.precision", "bf16-mixed")])
    records = {
        json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in (workdir / "results").rglob("*.json")
    }
    assert set(records) == {"supervised", *BASELINES}
    sup = records["supervised"]
    assert sup["input"] == "image rgb32x32" and sup["role"] == "ceiling"
    assert records["baseline-mean-pose"]["role"] == "floor" and records["baseline-mean-pose"]["input"] == "none"
    assert records["baseline-zero-depth"]["input"] == "2D gt"
    assert "input" not in sup["protocol"] and "input_2d" not in sup["protocol"]
    assert sup["budget"]["steps"] == 3 and sup["budget"]["precision"] == "bf16-mixed"
    assert sup["budget"]["train_time_s"] > 0 and records["baseline-mean-pose"]["budget"] is None
    assert all(v == v for v in sup["metrics"].values())  # finite numbers from a bf16 run
    assert (workdir / "results" / "humans-synthetic").is_dir()


def test_nonfinite_loss_stops_the_fit_naming_loss_and_step(workdir):
    from methods.base import NonFiniteLossError

    # Adam with lr 1e30 moves every weight by ~1e30 in the first step: the next loss is not finite
    with pytest.raises(NonFiniteLossError, match=r"loss 'train/loss' is (nan|inf) at step [1-4] \(epoch 0\)"):
        main(["fit", *_tiny_supervised(workdir, "--model.init_args.lr", "1e30", "--trainer.max_steps", "5")])
    ckpts = list((workdir / "runs" / "supervised").rglob("last*.ckpt"))
    assert ckpts, "the exception must leave a last.ckpt"


# -- the common table --------------------------------------------------------------------------------
def _record(method, value, role, input_desc, budget=None):
    return {"method": method, "dataset": "humans-synthetic", "protocol": {"dataset": "humans-synthetic"},
            "protocol_id": "p1", "metrics": {"p_mpjpe": value}, "input": input_desc, "role": role,
            "baseline": method.startswith("baseline-"), "budget": budget}  # fmt: skip


def test_one_table_with_inputs_budgets_and_the_floor_to_ceiling_share():
    budget = {"train_time_s": 420.0, "steps": 2900, "device": "cpu", "devices": 1}
    recs = [_record("baseline-mean-pose", 160.0, "floor", "none"),
            _record("supervised", 60.0, "ceiling", "image rgb64x64", budget),
            _record("svmac", 110.0, "method", "2D gt", budget),
            _record("svmac", 130.0, "method", "2D gt+noise5px", budget)]  # fmt: skip
    (table,) = group_tables(recs)
    rows = {(r["method"], r["input"]): r for r in table["rows"]}
    assert rows["svmac", "2D gt"]["closed"] == pytest.approx(0.5)  # (160 - 110) / (160 - 60)
    assert rows["svmac", "2D gt+noise5px"]["closed"] == pytest.approx(0.3)
    assert rows["supervised", "image rgb64x64"]["closed"] == 1.0 and rows["baseline-mean-pose", "none"]["closed"] == 0.0
    md = to_markdown([table])
    assert "| **svmac** | 2D gt | 7.0 min, 2.9k steps, cpu | 1 | 110.0 | 50% |" in md
    assert gap_closed([{"values": [1.0], "role": "method"}], ["p_mpjpe"]) == [None]  # no floor, no ceiling: no share
    assert fmt_budget(None) == "—"


def test_cosine_schedule_follows_steps_or_time_whichever_binds():
    import math
    import time
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer
    from lightning.pytorch.trainer.states import RunningStage

    from methods.optim import budget_fraction, cosine_schedule

    trainer = SimpleNamespace(estimated_stepping_batches=100, global_step=50, callbacks=[])
    assert budget_fraction(trainer) == 0.5
    timer = Timer(duration="00:00:01:40")  # 100 s
    timer._start_time[RunningStage.TRAINING] = time.monotonic() - 75.0  # 75 s of training so far
    trainer = SimpleNamespace(estimated_stepping_batches=math.inf, global_step=10, callbacks=[timer])
    assert budget_fraction(trainer) == pytest.approx(0.75, abs=0.01)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = cosine_schedule(opt, SimpleNamespace(_trainer=trainer))["scheduler"]
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.75)), rel=0.05)
    del sched


def test_training_time_sums_over_resumes_and_survives_testing_an_earlier_checkpoint():
    from benchmark.results import ResultsWriter

    fit = ResultsWriter()
    fit.on_train_start(None, None)
    fit._train_start -= 100.0  # 100 s of training
    fit.on_train_end(None, None)
    fit.load_state_dict({"train_time_s": 5.0})  # testing the best checkpoint, written after 5 s
    assert fit.train_time_s == pytest.approx(100.0, abs=1.0)
    resumed = ResultsWriter()
    resumed.load_state_dict(fit.state_dict())  # a fit resumed from the end of the first one
    resumed.on_train_start(None, None)
    resumed._train_start -= 10.0
    assert resumed.state_dict()["train_time_s"] == pytest.approx(110.0, abs=1.0)


def test_units_and_directions_of_the_methods_extra_metrics():
    from benchmark.leaderboard import _fmt, higher_is_better, unit

    assert unit("p_mpjpe") == "mm" and unit("pck150") == "%" and unit("seg_f1_parts") == "%"
    assert unit("limb_depth_sign") == "%" and not higher_is_better("limb_depth_sign")  # a failure rate
    assert _fmt("seg_f1_fg", 0.427) == "42.7" and _fmt("lr_confusion", 50.5) == "50.5"
