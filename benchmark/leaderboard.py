"""Comparison tables from result records: grouping, column names, Markdown, CSV and the terminal.

``python -m benchmark leaderboard`` (``benchmark.report.main``) writes them with the HTML page. Records from different
protocols (dataset, 2D input, joint set, subsampling, ...) are never averaged together: each
(dataset, protocol) gets its own table.
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

from .records import write_text_atomic

#: column order and display names; lower is better unless listed in HIGHER_IS_BETTER
COLUMNS = {"mpjpe": "MPJPE", "p_mpjpe": "P-MPJPE", "n_mpjpe": "N-MPJPE", "pck150": "PCK@150", "auc": "AUC",
           "pss50": "PSS@50", "pss100": "PSS@100"}  # fmt: skip
HIGHER_IS_BETTER = {"pck150", "auc", "pss50", "pss100"}


def higher_is_better(metric: str) -> bool:
    """Rates (PCK at any threshold, AUC, PSS at any k) are fractions in [0, 1], shown in %; the rest are mm."""
    return metric in HIGHER_IS_BETTER or metric.startswith(("pck", "pss"))


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
    """One table per (dataset, protocol): {title, protocol, columns, rows}."""
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
        rows = sorted(recs, key=lambda r: (r["metrics"].get("p_mpjpe", float("inf")), r["method"]))
        tables.append({
            "title": f"{dataset} — protocol {pid}", "dataset": dataset, "protocol_id": pid,
            "protocol": recs[0]["protocol"], "metrics": metrics, "metric_protocols": protocol_of,
            "columns": [column_name(m, protocol_of[m]) for m in metrics],
            "rows": [{"method": r["method"], "baseline": r.get("baseline", False),
                      "values": [r["metrics"].get(m) for m in metrics], "run": r.get("run", {}),
                      "per_action": r.get("per_action", {})} for r in rows],
        })  # fmt: skip
    return tables


def _fmt(metric: str, value) -> str:
    if value is None or value != value:  # missing, or NaN (e.g. an action without poses)
        return "—"
    return f"{100 * value:.1f}" if higher_is_better(metric) else f"{value:.1f}"


def to_markdown(tables: list[dict]) -> str:
    out = io.StringIO()
    out.write("# Leaderboard\n\nErrors in mm (lower is better); PCK, AUC and PSS in % (higher is better).\n"
              "Each table is one dataset and protocol; numbers from different protocols are never mixed.\n")  # fmt: skip
    for t in tables:
        out.write(
            f"\n## {t['title']}\n\nProtocol: "
            + ", ".join(f"{k}={v}" for k, v in sorted(t["protocol"].items()))
            + "\n\n"
        )
        out.write("| method | " + " | ".join(t["columns"]) + " |\n")
        out.write("| --- | " + " | ".join("---:" for _ in t["columns"]) + " |\n")
        for row in t["rows"]:
            name = f"*{row['method']}*" if row["baseline"] else f"**{row['method']}**"
            out.write(f"| {name} | " + " | ".join(_fmt(m, v) for m, v in zip(t["metrics"], row["values"])) + " |\n")
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
    writer.writerow(["dataset", "protocol_id", "method", "baseline", *metrics, "protocol"])
    for t in tables:
        for row in t["rows"]:
            values = dict(zip(t["metrics"], row["values"]))
            writer.writerow([t["dataset"], t["protocol_id"], row["method"], row["baseline"],
                             *(values.get(m, "") for m in metrics), json.dumps(t["protocol"], sort_keys=True)])  # fmt: skip
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
        cells = [[_fmt(m, v) for m, v in zip(t["metrics"], row["values"])] for row in t["rows"]]
        headers = [display_name(m) for m in t["metrics"]]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
        chunks = _metric_chunks(widths, console.width)
        for n, chunk in enumerate(chunks):
            title = t["title"] + (f" ({n + 1}/{len(chunks)})" if len(chunks) > 1 else "")
            table = Table(title=title, caption=caption if n == len(chunks) - 1 else None)
            room = max(METHOD_MIN_WIDTH, console.width - 4 - sum(widths[i] + 3 for i in chunk))
            table.add_column("method", overflow="fold", min_width=min(room, max(len(r["method"]) for r in t["rows"])))
            for i in chunk:
                table.add_column(headers[i], justify="right", no_wrap=True, min_width=widths[i])
            for row, values in zip(t["rows"], cells):
                style = "dim" if row["baseline"] else "bold"
                name = "\n".join(textwrap.wrap(row["method"], room, break_on_hyphens=True))  # at '-' if it can
                table.add_row(escape(name), *(values[i] for i in chunk), style=style)
            console.print(table)
