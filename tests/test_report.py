"""``leaderboard.html``: content from hand-made records, and a look at it in headless Chromium."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from benchmark.leaderboard import group_tables
from benchmark.records import load_records
from benchmark.report import main as leaderboard_main
from benchmark.report import to_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
METRIC_PROTOCOL = {"mpjpe": {"alignment": "root", "joints": "17", "scale": "train-mean"},
                   "p_mpjpe": {"alignment": "procrustes", "joints": "17", "scale": "n/a"},
                   "pck150": {"alignment": "root", "joints": "17", "threshold_mm": "150", "scale": "train-mean"},
                   "pss8": {"k": "8", "joints": "17", "scale": "n/a"}}  # fmt: skip


def make_record(method, p_mpjpe, noise="gt", baseline=False, **per_action):
    protocol = {"dataset": "synthetic", "joints": "17", "input_2d": noise}
    return {
        "schema": 1, "method": method, "dataset": "synthetic", "protocol": protocol,
        "protocol_id": "aaaa1111" if noise == "gt" else "bbbb2222", "baseline": baseline,
        "metrics": {"mpjpe": p_mpjpe + 40.0, "p_mpjpe": p_mpjpe, "pck150": 0.8125, "pss8": 0.5},
        "metric_protocol": METRIC_PROTOCOL, "per_action": {a: {"p_mpjpe": v} for a, v in per_action.items()},
        "run": {"git_commit": "0123456789abcdef0123-dirty", "config_hash": "cafe01", "seed": "0", "wall_time_s": 12.5,
                "hardware": {"cpus": 2}, "versions": {"torch": "2.15"}, "checkpoint": "runs/x/best.ckpt", "world_size": 2},
    }  # fmt: skip


@pytest.fixture
def results(tmp_path):
    recs = [make_record("svmac", 50.25, walk=40.0, run=60.5), make_record("<b>evil</b>", 70.0, walk=80.0),
            make_record("baseline-mean-pose", 120.0, baseline=True, walk=110.0, run=130.0),
            make_record("svmac", 65.0, noise="gt+noise5px")]  # fmt: skip
    for i, rec in enumerate(recs):
        path = tmp_path / "results" / "synthetic" / f"{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    return tmp_path / "results"


def test_html_has_one_section_per_protocol_with_numbers_charts_actions_and_runs(results):
    page = to_html(group_tables(load_records(results)))
    sections = re.findall(r'<section class="table" id="([^"]+)">(.*?)</section>', page, flags=re.S)
    assert [s[0] for s in sections] == ["synthetic-aaaa1111", "synthetic-bbbb2222"]
    clean, noisy = sections[0][1], sections[1][1]
    # never averaged across protocols: the noisy-input svmac (65.0) only in its own section
    assert "65.0" in noisy and "65.0" not in clean and "50.2" in clean and "50.2" not in noisy
    assert "input_2d=gt+noise5px" in noisy and "input_2d=gt</code>" in clean
    # numbers: mm with one decimal, rates in %; best P-MPJPE marked; column names carry the protocol
    assert '<td class="num best"' in clean and ">50.2<" in clean and ">81.2<" in clean and ">50.0<" in clean
    assert "P-MPJPE [procrustes, 17j]" in clean and "PSS@8 [17j]" in clean
    assert "&lt;b&gt;evil&lt;/b&gt;" in clean and "<b>evil</b>" not in page  # method names are escaped
    assert clean.count("<svg") == 2 and "</svg>" in clean  # the inline bar chart and the per-action chart
    assert "P-MPJPE per action; error bars" in clean and "seeds</th>" in clean
    assert '<table class="per-action">' in clean and ">60.5<" in clean and "—" in clean  # evil has no 'run'
    assert "0123456789ab-dirty" in clean and "cafe01" in clean and "best.ckpt" in clean  # run metadata
    # self-contained: nothing to fetch (no external scripts, styles, images or fonts)
    assert not re.search(r"""(src|href)=["']?(https?:|//)|<link|@import|url\((?!#)""", page)


def test_leaderboard_command_writes_the_html(results, tmp_path, capsys):
    assert leaderboard_main(["--results", str(results), "--out", str(tmp_path / "out")]) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"LEADERBOARD.md", "leaderboard.csv", "leaderboard.html"}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_chromium_renders_the_table_and_the_chart(results, tmp_path):
    html = tmp_path / "leaderboard.html"
    html.write_text(to_html(group_tables(load_records(results))))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--hide-scrollbars"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=60).stdout
    # the browser parsed the table (rows with the method names) and the SVG chart (bars and their labels)
    assert dom.count('<table class="leaderboard">') == 2 and "<td>svmac</td>" in dom
    chart = dom[dom.index("<svg") : dom.index("</svg>")]
    assert "svmac" in chart and "baseline-mean-pose" in chart and "<path" in chart
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1400", html.as_uri()],
                   capture_output=True, timeout=60, check=True)  # fmt: skip
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (1400, 1200)
    # not a blank page: dark text and the coloured bars (tab10 blue 1f77b4) are on it
    assert (pixels.mean(-1) < 0.3).mean() > 0.002
    blue = np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255).max(-1) < 0.05
    assert blue.sum() > 500


def test_duplicated_records_stop_the_leaderboard_with_both_names_and_no_traceback(results, tmp_path, capsys):
    # the same method, seed and protocol under a second file name (e.g. a record of an older naming scheme)
    (results / "synthetic" / "0-old.json").write_text((results / "synthetic" / "0.json").read_text())
    assert leaderboard_main(["--results", str(results), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: records ") and "0.json" in err and "0-old.json" in err and "keep one" in err
