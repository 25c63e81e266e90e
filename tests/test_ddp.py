"""DDP: fit + test on 2 CPU processes gives the test metrics of one process on the same checkpoint.

The test set has 123 poses (3 actions x 41 frames), evaluated in batches of 50: not divisible by the
2 processes, so Lightning's DistributedSampler pads one process's share with a repeated pose, which
``methods.base`` must drop (PSS values are multiples of 1/123, not 1/124).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_args
from torch.utils.data import DataLoader, DistributedSampler

from benchmark.__main__ import main
from methods.base import BASELINES, unpadded_share

REPO = Path(__file__).resolve().parents[1]
TINY = tiny_args(actions=("walk", "wave", "run"), frames=41, eval_batch_size=50, epochs=1)
TEST_POSES = 123


def records(results_dir: Path) -> dict[str, dict]:
    return {r["method"]: r for r in (json.loads(p.read_text()) for p in (results_dir / "synthetic").glob("*.json"))}


def test_ddp_fit_and_test_equal_one_process(workdir):
    # this checkout's code, not whatever an editable install points at
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmark", "fit", *TINY, "--run.results_dir", "res_ddp", "--run.threads", "1",
           "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = records(workdir / "res_ddp")
    assert ddp["svmac"]["run"]["world_size"] == 2 and ddp["svmac"]["run"]["strategy"] == "DDPStrategy"
    ckpt = ddp["svmac"]["run"]["checkpoint"]

    # the same checkpoint tested by one process (training nondeterminism across process counts does not matter)
    main(["test", *TINY, "--run.results_dir", "res_one", "--ckpt_path", ckpt])
    one = records(workdir / "res_one")
    assert one["svmac"]["run"]["world_size"] == 1 and set(one) == set(ddp) == {"svmac", *BASELINES}
    for method in one:
        for key, value in one[method]["metrics"].items():
            assert ddp[method]["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (method, key)
        for action, values in one[method]["per_action"].items():
            assert ddp[method]["per_action"][action] == pytest.approx(values, rel=1e-6, abs=1e-9), (method, action)
        # per-pose values gathered from both processes, in the same canonical order, give the same intervals
        dpp, opp = (np.load(workdir / d / "synthetic" / r[method]["per_pose"]["file"]) for d, r in
                    (("res_ddp", ddp), ("res_one", one)))  # fmt: skip
        assert ddp[method]["per_pose"]["frames_sha1"] == one[method]["per_pose"]["frames_sha1"]
        assert np.array_equal(dpp["unit"], opp["unit"]) and len(dpp["unit"]) == TEST_POSES
        assert np.allclose(dpp["p_mpjpe"], opp["p_mpjpe"], rtol=1e-5, atol=1e-4)
        for key, interval in one[method]["ci"].items():
            assert ddp[method]["ci"][key] == pytest.approx(interval, rel=1e-5, abs=1e-6), (method, key)
        # every pose counted once: PSS is a count of matches over the 123 test poses
        for key in ("pss4", "pss8"):
            matches = ddp[method]["metrics"][key] * TEST_POSES
            assert matches == pytest.approx(round(matches), abs=1e-3), (method, key, matches)


@pytest.mark.parametrize(("n", "world", "expected"), [(123, 2, [None, 61]), (124, 2, [None, None]), (10, 4, [None, None, 2, 2]), (2, 4, [None, None, 0, 0])])  # fmt: skip
def test_unpadded_share_counts_the_real_samples(n, world, expected):
    # DistributedSampler pads 123 -> 124: rank 0 takes positions 0, 2, ..., 122 (62 real), rank 1 takes
    # 1, 3, ..., 123 (61 real + the padding); 10 on 4 ranks: 3 each, ranks 2 and 3 hold 2 real ones
    shares = [unpadded_share(DataLoader(range(n), sampler=DistributedSampler(range(n), world, r, shuffle=False)))
              for r in range(world)]  # fmt: skip
    assert shares == expected
    assert unpadded_share(DataLoader(range(n))) is None
    assert unpadded_share(DataLoader(range(n), sampler=DistributedSampler(range(n), world, 0, drop_last=True))) is None


def test_padding_is_dropped_from_the_end_of_a_share():
    from methods.base import PoseEstimator

    module = PoseEstimator()
    module._eval_real, module._eval_seen = 61, 0
    batch = {"joints_3d": torch.zeros(50, 17, 3), "action": torch.arange(50), "names": ["x"] * 50, "scale": 1.0}
    assert module._drop_padding(batch)["joints_3d"].shape[0] == 50  # positions 0..49: all real
    tail = module._drop_padding({**batch, "joints_3d": torch.zeros(12, 17, 3), "action": torch.arange(12),
                                 "names": ["x"] * 12})  # fmt: skip
    assert tail["joints_3d"].shape[0] == tail["action"].shape[0] == len(tail["names"]) == 11  # 50..60 real, 61 padding
    assert tail["scale"] == 1.0
    assert module._drop_padding(batch)["joints_3d"].shape[0] == 0  # past the share: all padding
