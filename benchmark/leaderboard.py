"""Comparison tables from result records: grouping, column names, Markdown, CSV and the terminal.

``python -m benchmark leaderboard`` (``benchmark.report.main``) writes them with the HTML page. Records from different
protocols (dataset, 2D input, joint set, subsampling, ...) are never averaged together: each
(dataset, protocol) gets its own table. Within a table, the records of one method (its training seeds) make
one row: mean, standard deviation over seeds, 95% interval over test sequences, and whether a paired test
can tell it from the best row (``benchmark.aggregate``).
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from metrics.uncertainty import LEVEL, RESAMPLES

from .aggregate import aggregate_row, mark_significance
from .records import write_text_atomic

#: column order and display names; lower is better unless listed in HIGHER_IS_BETTER
COLUMNS = {"mpjpe": "MPJPE", "p_mpjpe": "P-MPJPE", "n_mpjpe": "N-MPJPE", "pck150": "PCK@150", "auc": "AUC",
           "pss50": "PSS@50", "pss100": "PSS@100"}  # fmt: skip
HIGHER_IS_BETTER = {"pck150", "auc", "pss50", "pss100"}
UNCERTAINTY_NOTE = ("Cells: mean over training seeds, ±standard deviation over seeds (from two seeds on), "
                    f"[{100 * LEVEL:g}% percentile-bootstrap interval over test sequences, {RESAMPLES} resamples].")  # fmt: skip


#: failure rates that metrics store in percent already (lower is better): metrics/failure_modes.py
PERCENT_ERRORS = {"lr_confusion", "limb_depth_sign"}


def higher_is_better(metric: str) -> bool:
    """Rates (PCK at any threshold, AUC, PSS at any k, segmentation F1) are fractions in [0, 1], shown in %;
    the failure rates of ``PERCENT_ERRORS`` are percentages where lower is better; the rest are mm."""
    return metric in HIGHER_IS_BETTER or metric.startswith(("pck", "pss", "seg_f1", "puppet_f1"))


def unit(metric: str) -> str:
    return "%" if higher_is_better(metric) or metric in PERCENT_ERRORS else "mm"


def display_name(metric: str) -> str:
    """'P-MPJPE', 'PCK@150', 'PSS@8', ...: the listed names, and PCK/PSS at any threshold or k."""
    if metric in COLUMNS:
        return COLUMNS[metric]
    for prefix in ("pck", "pss"):
        if metric.startswith(prefix) and metric[len(prefix) :]:
            return f"{prefix.upper()}@{metric[len(prefix) :]}"
    return metric


TAGS = {"alignment": "", "joints": "j", "threshold_mm": "mm", "scale": ""}


def column_name(metric: str, protocol: dict) -> str:
    """'P-MPJPE [procrustes, 17j]' — every number carries its protocol."""
    parts = []
    for key, value in protocol.items():
        if key in TAGS and value not in ("n/a", ""):
            parts.append(f"{value}{TAGS[key]}" if key != "scale" else f"scale={value}")
    return f"{display_name(metric)} [{', '.join(parts)}]" if parts else display_name(metric)


def group_tables(records: list[dict]) -> list[dict]:
    """One table per (dataset, protocol): {title, protocol, metrics, columns, rows, test}.

    One row per (method, input): a method's training seeds are aggregated (``benchmark.aggregate``), and rows
    of different inputs (SVMAC on ground-truth 2D, on noisy 2D, the image methods) share the table of their test
    frames. Each row carries its ``input``, ``role`` (method, ceiling, floor, baseline), training ``budget`` and
    ``closed``: the share of the P-MPJPE gap between the floor (the mean training pose) and the best ceiling
    (the supervised reference) that the row closes.
    """
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for rec in records:
        groups[(rec["dataset"], rec["protocol_id"])].append(rec)
    tables = []
    for (dataset, pid), recs in sorted(groups.items()):
        metrics = [m for m in COLUMNS if any(m in r["metrics"] for r in recs)]
        extra = sorted({m for r in recs for m in r["metrics"]} - set(metrics))
        metrics += extra
        protocol_of = {
            m: next((r.get("metric_protocol", {}).get(m, {}) for r in recs if m in r["metrics"]), {}) for m in metrics
        }
        by_row: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for rec in recs:
            by_row[(rec["method"], rec.get("input", "?"))].append(rec)
        rows = [aggregate_row(method, rs, metrics) for (method, _), rs in by_row.items()]
        key = metrics.index("p_mpjpe") if "p_mpjpe" in metrics else None
        rows.sort(key=lambda r: (r["values"][key] if key is not None and r["values"][key] is not None
                                 else float("inf"), r["method"], r["input"]))  # fmt: skip
        for row, closed in zip(rows, gap_closed(rows, metrics)):
            row["closed"] = closed
        tables.append({
            "title": f"{dataset} — protocol {pid}", "dataset": dataset, "protocol_id": pid,
            "protocol": recs[0]["protocol"], "metrics": metrics, "metric_protocols": protocol_of,
            "columns": [column_name(m, protocol_of[m]) for m in metrics],
            "rows": rows, "test": mark_significance(rows),
        })  # fmt: skip
    return tables


def gap_closed(rows: list[dict], metrics: list[str], metric: str = "p_mpjpe") -> list[float | None]:
    """Per row, (floor - value) / (floor - ceiling) of ``metric``: 0 at the mean pose, 1 at the supervised
    reference (the best ceiling row); None when the table lacks either."""
    if metric not in metrics:
        return [None] * len(rows)
    values = [row["values"][metrics.index(metric)] for row in rows]
    floors = [v for row, v in zip(rows, values) if row.get("role") == "floor" and v is not None]
    ceilings = [v for row, v in zip(rows, values) if row.get("role") == "ceiling" and v is not None]
    if not floors or not ceilings or min(floors) <= min(ceilings):
        return [None] * len(rows)
    floor, ceiling = min(floors), min(ceilings)
    return [None if v is None else (floor - v) / (floor - ceiling) for v in values]


def fmt_budget(budget: dict | None) -> str:
    """'7.0 min, 2.9k steps, cpu' — the training a row got; '—' for baselines; a row that started from another
    run's training: '12.0 min, 3.5k steps pretraining, then 3.0 min, 901 steps, cpu'."""
    if not budget:
        return "—"
    n = budget.get("devices", 1)
    device = f"{n}x {budget.get('device', '?')}" if n > 1 else str(budget.get("device", "?"))
    first = f"{_time_steps(budget['pretraining'])} pretraining, then " if budget.get("pretraining") else ""
    return f"{first}{_time_steps(budget)}, {device}"


def _time_steps(budget: dict) -> str:
    t = budget.get("train_time_s")
    when = "? min" if t is None else f"{t / 60:.1f} min" if t < 5400 else f"{t / 3600:.1f} h"
    steps = budget.get("steps") or 0
    count = f"{steps / 1000:.1f}k" if steps >= 1000 else str(steps)
    return f"{when}, {count} steps"


def fmt_closed(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _fmt(metric: str, value) -> str:
    if value is None or value != value:  # missing, or NaN (e.g. an action without poses)
        return "—"
    return f"{100 * value:.1f}" if higher_is_better(metric) else f"{value:.1f}"


def fmt_cell(metric: str, row: dict, k: int) -> str:
    """'50.2 ±1.3 [48.1, 52.3]': mean over seeds, their standard deviation, the 95% interval over sequences."""
    text = _fmt(metric, row["values"][k])
    if text == "—":
        return text
    if row.get("std") and row["std"][k] is not None:
        text += f" ±{_fmt(metric, row['std'][k])}"
    if row.get("ci") and row["ci"][k]:
        text += f" [{_fmt(metric, row['ci'][k][0])}, {_fmt(metric, row['ci'][k][1])}]"
    return text


def significance_note(table: dict) -> str:
    """How the table's significance marks were made, in words (Markdown and HTML)."""
    t = table.get("test")
    if not t:
        return ""
    return (f"≈: not distinguishable from the best row ({t['best']}) by {display_name(t['metric'])} at "
            f"{100 * (1 - t['alpha']):g}% (p ≥ {t['alpha']:g}, {t['test']}; {t['units']} {t['unit']}s, "
            "identical frames, no multiple-comparison correction); ✱: the best row; rows evaluated on other frames "
            "are not compared.")  # fmt: skip


def row_mark(row: dict) -> str:
    test = row.get("test") or {}
    return " ✱" if test.get("best") else " ≈" if test.get("same_as_best") else ""


def seeds_text(row: dict) -> str:
    return f"{row.get('n_seeds', 1)}"


def to_markdown(tables: list[dict]) -> str:
    out = io.StringIO()
    out.write("# Leaderboard\n\nErrors in mm (lower is better); PCK, AUC and PSS in % (higher is better).\n"
              "Each table is one dataset and protocol; numbers from different protocols are never mixed.\n"
              "'input' is what a row's estimator read at test time, 'training' its budget; 'floor→ceiling' is the share "
              "of the P-MPJPE gap between the mean training pose (0%) and the supervised reference (100%) a row closes.\n")  # fmt: skip
    for t in tables:
        out.write(
            f"\n## {t['title']}\n\nProtocol: "
            + ", ".join(f"{k}={v}" for k, v in sorted(t["protocol"].items()))
            + "\n\n"
        )
        out.write("| method | input | training | seeds | " + " | ".join(t["columns"]) + " | floor→ceiling |\n")
        out.write("| --- | --- | --- | ---: | " + " | ".join("---:" for _ in t["columns"]) + " | ---: |\n")
        for row in t["rows"]:
            name = (f"*{row['method']}*" if row["baseline"] else f"**{row['method']}**") + row_mark(row)
            cells = [name, row["input"], fmt_budget(row["budget"]), seeds_text(row),
                     *(fmt_cell(m, row, k) for k, m in enumerate(t["metrics"])), fmt_closed(row["closed"])]  # fmt: skip
            out.write("| " + " | ".join(cells) + " |\n")
        out.write(f"\n{UNCERTAINTY_NOTE}\n")
        if t.get("test"):
            out.write(f"\n{significance_note(t)}\n")
        out.write(per_action_markdown(t))
    return out.getvalue()


def per_action_rows(table: dict, metric: str = "p_mpjpe") -> tuple[list[str], list[list]]:
    """Per-action values of one metric: (actions, rows of [method, value per action]); None where missing."""
    actions = list(dict.fromkeys(a for row in table["rows"] for a in row["per_action"]))
    rows = [[row["method"], *(row["per_action"].get(a, {}).get(metric) for a in actions)] for row in table["rows"]]
    return actions, rows


def per_action_markdown(table: dict, metric: str = "p_mpjpe") -> str:
    """Per-action values of one metric: rows are methods, columns actions."""
    actions, rows = per_action_rows(table, metric)
    if not actions:
        return ""
    lines = [f"\n{display_name(metric)} per action:\n", "| method | " + " | ".join(actions) + " |",
             "| --- | " + " | ".join("---:" for _ in actions) + " |"]  # fmt: skip
    for method, *values in rows:
        lines.append(f"| {method} | " + " | ".join(_fmt(metric, v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def write_csv(tables: list[dict], path: Path) -> None:
    metrics = list(dict.fromkeys(m for t in tables for m in t["metrics"]))
    out = io.StringIO()
    writer = csv.writer(out)
    stats = [f"{m}_{s}" for m in metrics for s in ("std", "ci_low", "ci_high")]
    writer.writerow(["dataset", "protocol_id", "method", "input", "role", "baseline", *metrics, "n_seeds", *stats,
                     "p_vs_best", "floor_to_ceiling", "train_time_s", "steps", "device", "protocol"])  # fmt: skip
    for t in tables:
        for row in t["rows"]:
            values = dict(zip(t["metrics"], row["values"]))
            extra = {m: (s, *(ci or ("", ""))) for m, s, ci in zip(t["metrics"], row["std"], row["ci"])}
            cells = [("" if v is None else v) for m in metrics for v in extra.get(m, ("", "", ""))]
            test = row.get("test") or {}
            b = row["budget"] or {}
            writer.writerow([t["dataset"], t["protocol_id"], row["method"], row["input"], row["role"], row["baseline"],
                             *(values.get(m, "") for m in metrics), row["n_seeds"], *cells, test.get("p", ""),
                             "" if row["closed"] is None else row["closed"],
                             b.get("train_time_s", ""), b.get("steps", ""), b.get("device", ""),
                             json.dumps(t["protocol"], sort_keys=True)])  # fmt: skip
    write_text_atomic(path, out.getvalue())


#: the method column folds long names down to this width rather than take the numbers' room
METHOD_MIN_WIDTH = 12


def _metric_chunks(widths: list[int], total: int) -> list[list[int]]:
    """Indexes of the metric columns per table so that each table fits ``total`` characters (rich's box:
    one border plus, per column, its width, two spaces of padding and a border)."""

    def fits(chunk: list[int]) -> bool:
        return 1 + METHOD_MIN_WIDTH + 3 + sum(widths[i] + 3 for i in chunk) <= total

    chunks: list[list[int]] = [[]]
    for i in range(len(widths)):
        if chunks[-1] and not fits(chunks[-1] + [i]):
            chunks.append([])
        chunks[-1].append(i)
    # as many tables as needed, with the columns spread evenly over them when they still fit (4 + 3, not 6 + 1)
    size = -(-len(widths) // len(chunks))
    even = [list(range(i, min(i + size, len(widths)))) for i in range(0, len(widths), size)]
    return even if len(even) == len(chunks) and all(map(fits, even)) else chunks


def print_tables(tables: list[dict], console: Console | None = None) -> None:
    """Terminal tables with short column names; the protocol tags of every column go in the caption.

    A number is never cut: long method names fold onto several lines, and metrics that do not fit the
    console's width (80 in a log file) go on to a second table with the same rows.
    """
    console = console or Console()
    for t in tables:
        protocol = ", ".join(f"{k}={v}" for k, v in sorted(t["protocol"].items()))
        caption = escape(f"{protocol}\ncolumns: " + "; ".join(t["columns"]))  # "[...]" is not rich markup here
        # the floor-to-ceiling share is one more right-aligned column; the input goes under the method's name
        cells = [[*(_fmt(m, v) for m, v in zip(t["metrics"], row["values"])), fmt_closed(row["closed"])]
                 for row in t["rows"]]  # fmt: skip
        headers = [*(display_name(m) for m in t["metrics"]), "f→c"]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
        chunks = _metric_chunks(widths, console.width)
        for n, chunk in enumerate(chunks):
            title = t["title"] + (f" ({n + 1}/{len(chunks)})" if len(chunks) > 1 else "")
            table = Table(title=title, caption=caption if n == len(chunks) - 1 else None)
            room = max(METHOD_MIN_WIDTH, console.width - 4 - sum(widths[i] + 3 for i in chunk))
            longest = max(len(s) for r in t["rows"] for s in (r["method"], r["input"]))
            table.add_column("method / input", overflow="fold", min_width=min(room, longest))
            for i in chunk:
                table.add_column(headers[i], justify="right", no_wrap=True, min_width=widths[i])
            for row, values in zip(t["rows"], cells):
                style = "dim" if row["baseline"] else "bold"
                name = "\n".join(textwrap.wrap(row["method"], room, break_on_hyphens=True))  # at '-' if it can
                label = escape(name) + "\n[not bold dim]" + escape(row["input"]) + "[/]"
                table.add_row(label, *(values[i] for i in chunk), style=style)
            console.print(table)
