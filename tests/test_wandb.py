"""W&B: a tiny fit logs offline (no API key) and the run directory holds the identity, summary, tables and images."""

import json
import struct
from pathlib import Path

import pytest
from tiny import tiny_args

from benchmark.__main__ import main
from benchmark.cli import RunOptions, wandb_identity
from methods.base import BASELINES

REPO = Path(__file__).resolve().parents[1]
TINY = tiny_args(wandb=None)


def wandb_records(path: Path):
    """The records of an offline run's ``run-<id>.wandb`` file (protobuf records in LevelDB-log framing).

    wandb >= 0.19 keeps the summary of an offline run in this log only (no ``wandb-summary.json``) and no
    longer ships a Python reader for it: blocks of 32 KiB after a 7-byte file header; each chunk has a
    7-byte header (crc32, length uint16, type: 1 full, 2 first, 3 middle, 4 last).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += block - pos % block
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


@pytest.fixture
def workdir(workdir, monkeypatch):
    for var in ("WANDB_API_KEY", "WANDB_MODE"):  # only the CLI decides: no key, so offline
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(workdir / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(workdir / "runs"))
    return workdir


def test_offline_run_has_identity_summary_leaderboard_table_and_images(workdir):
    main(["fit", *TINY, "--run.wandb", "online", "--run.wandb_tags", "[smoke]"])  # online without a key: offline
    import wandb

    wandb.teardown()  # the CLI finished the run; stopping the W&B service also waits until it closed the run's files
    (run_dir,) = (workdir / "runs" / "wandb").glob("offline-run-*")
    summary, history, run = {}, set(), None
    for rec in wandb_records(next(run_dir.glob("run-*.wandb"))):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run = rec.run
        elif kind == "summary":
            summary.update({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "history":
            history.update((i.key or "/".join(i.nested_key)).split("/")[0] for i in rec.history.item)
    (record_path,) = (workdir / "results" / "synthetic").glob("svmac__*.json")
    record = json.loads(record_path.read_text())
    pid = record["protocol_id"]
    # identity: project, group = dataset + protocol, tags from method, dataset, protocol
    assert (run.project, run.run_group, run.display_name) == ("posebench", f"synthetic-{pid}", "svmac-synthetic")
    assert {"svmac", "synthetic", f"protocol:{pid}", "input_2d=gt", "smoke"} <= set(run.tags)
    # summary: the same keys for every method (test/<metric>, test_<baseline>/<metric>), values = the records
    for key, value in record["metrics"].items():
        assert summary[f"test/{key}"] == pytest.approx(value)
        assert f"test_baseline-mean-pose/{key}" in summary and f"val/{key}" in summary
    assert summary["protocol_id"] == pid
    # the leaderboard of this protocol as wandb.Tables, prediction plots at validation and test
    assert {"leaderboard", "leaderboard_per_action", "val", "test"} <= history
    table = json.loads(next((run_dir / "files" / "media" / "table").glob("leaderboard_[0-9]*.table.json")).read_text())
    assert table["columns"][:5] == ["method", "input", "role", "training", "MPJPE [root, 17j, scale=train-mean]"]
    assert {row[1] for row in table["data"]} == {"none", "2D gt"} and table["columns"][-1] == "floor_to_ceiling"
    assert sorted(row[0] for row in table["data"]) == sorted(["svmac", *BASELINES])
    assert len(list((run_dir / "files" / "media" / "images" / "val").glob("predictions_*.png"))) == 2  # 2 epochs


def test_identity_of_an_ablation_run():
    class Data:
        name = "h36m"
        protocol = {"input_2d": "cpn_ft_h36m_dbb", "eval_stride": "64"}

        class skeleton:
            num_joints = 17

    class SVMAC:
        pass

    ident = wandb_identity(RunOptions(name="svmac-nodisc", wandb_project="p"), Data(), SVMAC())
    assert ident["name"] == "svmac-nodisc-h36m" and ident["project"] == "p"
    assert ident["tags"][:3] == ["svmac-nodisc", "svmac", "h36m"] and "input_2d=cpn_ft_h36m_dbb" in ident["tags"]
    assert ident["group"] == f"h36m-{ident['config']['protocol_id']}"
    # the group is the leaderboard table: the protocol without the input (it is a column of the table's rows)
    assert ident["config"]["protocol"] == {"dataset": "h36m", "joints": "17", "eval_stride": "64"}
