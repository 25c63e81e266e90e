"""``python -m benchmark leaderboard``: ``LEADERBOARD.md``, ``leaderboard.csv`` (``benchmark.leaderboard``) and
``leaderboard.html``, the leaderboard as one self-contained page (inline CSS and SVG charts, no network).

One section per (dataset, protocol) table of ``benchmark.leaderboard.group_tables``: the protocol, the
metric table (best value per column marked; every column named with its protocol, each cell's full
metric protocol in its tooltip; under each number the standard deviation over training seeds and the 95%
interval over test sequences; rows the paired test cannot tell from the best marked ≈), bar charts of the
errors (mm) and of the rates (%) with the intervals as error bars, per-action P-MPJPE as a chart with
intervals and as a table with a per-column colour scale, how every metric was computed, and the run
metadata of every row's seeds (git commit, config hash, seed, versions, hardware, wall time, checkpoint).
Numbers of different protocols stay in different sections: nothing is averaged across them.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import math
import os
import re
import sys
import time
from pathlib import Path

from .leaderboard import (
    UNCERTAINTY_NOTE,
    _fmt,
    display_name,
    fmt_budget,
    fmt_closed,
    group_tables,
    higher_is_better,
    per_action_rows,
    print_tables,
    row_mark,
    significance_note,
    to_markdown,
    unit,
    write_csv,
)
from .records import RecordError, load_records, write_text_atomic

ERROR_METRICS = ("mpjpe", "p_mpjpe", "n_mpjpe")
CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;color:#222;
     padding:0 1rem;line-height:1.4}
h1{margin-bottom:.2rem}h2{margin-top:2.5rem;border-bottom:2px solid #ddd;padding-bottom:.3rem}
.meta,.note{color:#666;font-size:.9rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem}th{background:#f4f4f4;text-align:center}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.baseline td,tr.floor td{color:#777;font-style:italic}
tr.ceiling td{background:#f3f6fc}
td.closed{white-space:nowrap}
.gap{display:inline-block;width:5rem;height:.6rem;background:#eee;margin-right:.4rem;vertical-align:middle}
.gap span{display:block;height:100%;background:#4a7bd0}
td.best{font-weight:bold;background:#e6f4ea}
.protocol{background:#f8f8f8;border-left:4px solid #4a7bd0;padding:.4rem .8rem;font-size:.9rem}
.protocol code{margin-right:.8rem}
figure.chart{margin:1rem 0}figure.chart svg{max-width:100%;height:auto}
figcaption{color:#666;font-size:.85rem}
details{margin:.6rem 0}summary{cursor:pointer;font-weight:600}
td.small,th.small{font-size:.8rem}
span.spread{display:block;color:#777;font-size:.72rem;white-space:nowrap}
span.mark{color:#4a7bd0;font-weight:bold}
nav ul{columns:2}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _anchor(table: dict) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{table['dataset']}-{table['protocol_id']}".lower()).strip("-")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog, no metadata), and closed."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    _pyplot().close(fig)
    svg = re.sub(r"<metadata>.*?</metadata>", "", buf.getvalue(), flags=re.S)  # creator/date RDF: noise
    return svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE: the element is inlined into HTML


def _error_bars(values: list, intervals: list, scale: float) -> list[list[float]]:
    """matplotlib's (2, N) asymmetric error bars from [low, high] intervals; zero where there is none."""
    lows, highs = [], []
    for v, ci in zip(values, intervals):
        ok = _finite(v) and ci is not None and all(_finite(c) for c in ci)
        lows.append(max(v - ci[0], 0.0) * scale if ok else 0.0)
        highs.append(max(ci[1] - v, 0.0) * scale if ok else 0.0)
    return [lows, highs]


def bar_chart_svg(table: dict) -> str:
    """Grouped horizontal bars: errors (mm) on the left, rates (%) on the right, each with its 95% interval as an
    error bar. An inline ``<svg>`` element."""
    import matplotlib

    plt = _pyplot()

    rows = table["rows"]
    panels = [
        ("error (mm), lower is better", [m for m in table["metrics"] if m in ERROR_METRICS], 1.0),
        ("rate (%), higher is better", [m for m in table["metrics"] if higher_is_better(m)], 100.0),
    ]
    panels = [p for p in panels if p[1]]
    if not panels or not rows:
        return ""
    height = 0.9 + 0.32 * len(rows) * max(len(p[1]) for p in panels)
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), height), squeeze=False)
        colours = plt.get_cmap("tab10").colors
        for ax, (label, metrics, scale) in zip(axes[0], panels):
            width = 0.8 / len(metrics)
            for j, metric in enumerate(metrics):
                k = table["metrics"].index(metric)
                values = [row["values"][k] for row in rows]
                ys = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(rows))]
                xs = [v * scale if _finite(v) else 0.0 for v in values]
                err = _error_bars(values, [row.get("ci", [None] * len(values))[k] for row in rows], scale)
                bars = ax.barh(ys, xs, height=width * 0.92, color=colours[j % 10], label=display_name(metric),
                               xerr=err, error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333"})  # fmt: skip
                for bar, row, v, hi in zip(bars, rows, values, err[1]):
                    if row["baseline"]:
                        bar.set_alpha(0.45)
                    text = f"{v * scale:.1f}" if _finite(v) else "n/a"
                    ax.annotate(text, (bar.get_width() + hi, bar.get_y() + bar.get_height() / 2), xytext=(2, 0),
                                textcoords="offset points", va="center", fontsize=7)  # fmt: skip
            ax.set_yticks(range(len(rows)))
            ax.set_yticklabels([row["method"] for row in rows])
            ax.invert_yaxis()
            ax.set_xlabel(label)
            ax.margins(x=0.15)
            ax.grid(axis="x", alpha=0.3)
            ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(metrics), frameon=False)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        fig.tight_layout()
        return _svg(fig)


def per_action_chart_svg(table: dict, metric: str = "p_mpjpe") -> str:
    """Grouped vertical bars of ``metric`` per action, one colour per row, with each action's 95% interval over
    its test sequences as an error bar (baselines faded). An inline ``<svg>`` element, "" without per-action values."""
    import matplotlib

    actions, rows = per_action_rows(table, metric)
    if not actions:
        return ""
    plt = _pyplot()
    width = 0.8 / len(rows)
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(max(5.0, 0.25 * len(actions) * len(rows) + 2.0), 3.2))
        colours = plt.get_cmap("tab10").colors
        for j, (row, (method, *values)) in enumerate(zip(table["rows"], rows)):
            intervals = [row.get("per_action_ci", {}).get(a) for a in actions]
            xs = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(actions))]
            ax.bar(xs, [v if _finite(v) else 0.0 for v in values], width=width * 0.92, color=colours[j % 10],
                   alpha=0.45 if row["baseline"] else 1.0, label=method, yerr=_error_bars(values, intervals, 1.0),
                   error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333"})  # fmt: skip
        ax.set_xticks(range(len(actions)))
        ax.set_xticklabels(
            actions, rotation=30 if len(actions) > 6 else 0, ha="right" if len(actions) > 6 else "center"
        )
        ax.set_ylabel(f"{display_name(metric)} ({unit(metric)})")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(rows), 4), frameon=False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.tight_layout()
        return _svg(fig)


def _metric_table(table: dict) -> str:
    best = {}
    for k, metric in enumerate(table["metrics"]):
        values = [row["values"][k] for row in table["rows"] if _finite(row["values"][k])]
        if values:
            best[k] = max(values) if higher_is_better(metric) else min(values)
    out = ['<table class="leaderboard"><thead><tr><th>method</th><th>input</th><th>training</th><th>seeds</th>']
    out += [
        f"<th>{_e(col)}<br><span class='small'>{unit(m)}</span></th>"
        for m, col in zip(table["metrics"], table["columns"])
    ]
    out.append("<th>floor → ceiling<br><span class='small'>P-MPJPE gap closed</span></th></tr></thead><tbody>")
    for row in table["rows"]:
        mark = f'<span class="mark">{_e(row_mark(row))}</span>' if row_mark(row) else ""
        out.append(f'<tr class="{"baseline" if row["baseline"] else row["role"]}"><td>{_e(row["method"])}{mark}</td>'
                   f'<td>{_e(row["input"])}</td><td class="small">{_e(fmt_budget(row["budget"]))}</td>'
                   f'<td class="num" title="{_e(", ".join(row.get("seeds", [])))}">{row.get("n_seeds", 1)}</td>')  # fmt: skip
        for k, (metric, value) in enumerate(zip(table["metrics"], row["values"])):
            cls = "num best" if k in best and value == best[k] else "num"
            tip = json.dumps(table["metric_protocols"].get(metric, {}), sort_keys=True)
            out.append(f'<td class="{cls}" title="{_e(tip)}">{_e(_fmt(metric, value))}{_spread(metric, row, k)}</td>')
        out.append(_closed_cell(row["closed"]))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _closed_cell(value: float | None) -> str:
    """The share of the floor-to-ceiling gap as a number and a bar (0% = mean pose, 100% = supervised)."""
    if value is None:
        return '<td class="num">—</td>'
    width = max(0.0, min(value, 1.2)) / 1.2 * 100
    return (f'<td class="num closed"><span class="gap"><span style="width:{width:.0f}%"></span></span>'
            f"{_e(fmt_closed(value))}</td>")  # fmt: skip


def _spread(metric: str, row: dict, k: int) -> str:
    """Under a number: '±std' over seeds and the '[low, high]' interval over sequences, where known."""
    parts = []
    if row.get("std") and row["std"][k] is not None:
        parts.append(f"±{_fmt(metric, row['std'][k])}")
    if row.get("ci") and row["ci"][k]:
        parts.append(f"[{_fmt(metric, row['ci'][k][0])}, {_fmt(metric, row['ci'][k][1])}]")
    return f'<span class="spread">{_e(" ".join(parts))}</span>' if parts else ""


def _per_action_table(table: dict, metric: str = "p_mpjpe") -> str:
    actions, rows = per_action_rows(table, metric)
    if not actions:
        return ""
    # colour each action column from its best (white) to its worst (red): where each method struggles
    spans = []
    for a in range(len(actions)):
        col = [r[1 + a] for r in rows if _finite(r[1 + a])]
        spans.append((min(col), max(col)) if col else (0.0, 0.0))
    out = [
        f"<h3>{_e(display_name(metric))} per action (mm)</h3>",
        '<table class="per-action"><thead><tr><th>method</th>',
    ]
    out += [f"<th>{_e(a)}</th>" for a in actions]
    out.append("</tr></thead><tbody>")
    for row, (method, *values) in zip(table["rows"], rows):
        out.append(f'<tr class="{"baseline" if row["baseline"] else "method"}"><td>{_e(method)}</td>')
        for (lo, hi), v in zip(spans, values):
            shade = 0.0 if not _finite(v) or hi <= lo else (v - lo) / (hi - lo)
            style = f"background:rgba(214,39,40,{0.45 * shade:.2f})" if _finite(v) else ""
            out.append(f'<td class="num" style="{style}">{_e(_fmt(metric, v))}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _protocol_table(table: dict) -> str:
    keys = sorted({k for p in table["metric_protocols"].values() for k in p})
    out = [
        '<table class="metric-protocol"><thead><tr><th>metric</th>',
        *(f"<th>{_e(k)}</th>" for k in keys),
        "</tr></thead><tbody>",
    ]
    for metric in table["metrics"]:
        proto = table["metric_protocols"].get(metric, {})
        out.append(f"<tr><td>{_e(display_name(metric))}</td>")
        out += [f"<td>{_e(proto.get(k, ''))}</td>" for k in keys]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


RUN_COLUMNS = ("git_commit", "config_hash", "seed", "wall_time_s", "epoch", "global_step", "world_size", "finished_at")


def _run_table(table: dict) -> str:
    """One line per record behind the table: every seed of every row."""
    out = ['<table class="runs"><thead><tr><th>method</th>', *(f"<th class='small'>{c}</th>" for c in RUN_COLUMNS)]
    out.append(
        "<th class='small'>hardware</th><th class='small'>versions</th><th class='small'>checkpoint</th></tr></thead><tbody>"
    )
    for row in table["rows"]:
        out += [_run_row(row["method"], run) for run in row.get("runs") or [row.get("run", {})]]
    out.append("</tbody></table>")
    return "".join(out)


def _run_row(method: str, run: dict) -> str:
    commit = str(run.get("git_commit", ""))
    cells = [commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")] + [run.get(c, "") for c in RUN_COLUMNS[1:]]
    hw = ", ".join(f"{k}={v}" for k, v in sorted((run.get("hardware") or {}).items()))
    versions = ", ".join(f"{k} {v}" for k, v in sorted((run.get("versions") or {}).items()))
    ckpt = os.path.basename(str(run.get("checkpoint") or "")) or "in-memory weights"
    tds = "".join(
        f"<td class='small' title='{_e(commit)}'>{_e(c)}</td>" if i == 0 else f"<td class='small'>{_e(c)}</td>"
        for i, c in enumerate(cells)
    )
    return (f"<tr><td>{_e(method)}</td>{tds}<td class='small'>{_e(hw)}</td><td class='small'>{_e(versions)}</td>"
            f"<td class='small' title='{_e(run.get('checkpoint') or '')}'>{_e(ckpt)}</td></tr>")  # fmt: skip


def section(table: dict) -> str:
    proto = " ".join(f"<code>{_e(k)}={_e(v)}</code>" for k, v in sorted(table["protocol"].items()))
    n_methods = sum(not r["baseline"] for r in table["rows"])
    chart, actions_chart = bar_chart_svg(table), per_action_chart_svg(table)
    parts = [
        f'<section class="table" id="{_anchor(table)}">',
        f"<h2>{_e(table['title'])}</h2>",
        f'<div class="protocol"><b>Protocol</b> {proto}</div>',
        f"<p class='note'>{n_methods} method(s) and {len(table['rows']) - n_methods} baseline(s) on the same frames. "
        "Errors in mm (lower is better), PCK/AUC/PSS in % (higher is better); best value per column in green; "
        "hover a number for its metric protocol.</p>",
        _metric_table(table),
        f"<p class='note'>{_e(UNCERTAINTY_NOTE)}</p>",
        f"<p class='note'>{_e(significance_note(table))}</p>" if table.get("test") else "",
        f'<figure class="chart">{chart}<figcaption>{_e(table["title"])}: method (solid) and baselines (faded); '
        "error bars: 95% interval over test sequences</figcaption></figure>" if chart else "",
        f'<figure class="chart">{actions_chart}<figcaption>P-MPJPE per action; error bars: 95% interval over '
        "that action's test sequences</figcaption></figure>" if actions_chart else "",
        _per_action_table(table),
        "<details><summary>How each metric was computed</summary>" + _protocol_table(table) + "</details>",
        "<details open><summary>Runs behind these numbers</summary>" + _run_table(table) + "</details>",
        "</section>",
    ]  # fmt: skip
    return "\n".join(p for p in parts if p)


def to_html(tables: list[dict], title: str = "posebench leaderboard", source: str = "results/") -> str:
    """The whole page as a string (``tables`` from ``benchmark.leaderboard.group_tables``)."""
    n_records = sum(len(t["rows"]) for t in tables)
    nav = "".join(f'<li><a href="#{_anchor(t)}">{_e(t["title"])}</a></li>' for t in tables)
    body = "\n".join(section(t) for t in tables)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{CSS}</style></head>
<body><h1>{_e(title)}</h1>
<p class="meta">{n_records} result records from <code>{_e(source)}</code> in {len(tables)} table(s); generated
{_e(time.strftime("%Y-%m-%d %H:%M:%S %Z"))}. Each table is one dataset and protocol: numbers of different protocols
are never averaged or ranked together.</p>
<nav><ul>{nav}</ul></nav>
{body}
</body></html>
"""


def write_html(tables: list[dict], path: str | Path, results_dir: str | Path = "results") -> Path:
    """Write ``leaderboard.html`` atomically; returns its path."""
    return write_text_atomic(Path(path), to_html(tables, source=str(results_dir)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark leaderboard", description=__doc__)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for LEADERBOARD.md, .csv and .html")
    args = parser.parse_args(argv or [])
    if not args.results.is_dir():
        print(f"no results under {args.results}/: run a test first, e.g. `make run` or "
              "`python -m benchmark fit --config configs/svmac.yaml`")  # fmt: skip
        return 1
    try:
        tables = group_tables(load_records(args.results))
    except RecordError as err:  # a broken or duplicated record: say which, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not tables:
        print(f"no result records under {args.results}/")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    md = write_text_atomic(args.out / "LEADERBOARD.md", to_markdown(tables))
    write_csv(tables, args.out / "leaderboard.csv")
    html = write_html(tables, args.out / "leaderboard.html", results_dir=args.results)
    print_tables(tables)
    print(f"wrote {md}, {args.out / 'leaderboard.csv'} and {html}")
    return 0
