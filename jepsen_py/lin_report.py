"""A linearizability violation as text and as a self-contained HTML timeline.

Both read the JSON-ready anomaly that `linearizable.check` returns, so a stored
`results.json` can be rendered again later.
"""

from __future__ import annotations

import html
from typing import Any

_ROW_PX = 28
_EVENT_PX = 14
_LABEL_PX = 80
_COLOURS = {"failed": "#d62728", "window": "#ff7f0e", "prefix": "#2ca02c", "other": "#c7c7c7"}


def to_text(violation: dict[str, Any]) -> str:
    failed = violation["failed_op"]
    lines = [
        f"not linearizable: no order lets process {failed['process']}'s "
        f"{failed['op']} (history index {failed['index']}) return",
        "",
        "minimal failing window"
        + ("" if violation["window_is_minimal"] else " (search limit reached: may not be minimal)")
        + " - these outcomes contradict each other even if every other op's were unknown:",
    ]
    lines += [_line(op) for op in violation["window"]]
    lines += ["", "longest linearizable prefix, in linearization order (-> state after):"]
    lines += [f"{_line(op)}  => {op['state_after']}" for op in violation["linearizable_prefix"]]
    return "\n".join(lines)


def _line(op: dict[str, Any]) -> str:
    ret = "open" if op["ret"] is None else op["ret"]
    return f"  [{op['index']:>6}] p{op['process']:<4} {op['op']:<32} call {op['call']} ret {ret}"


def to_html(violation: dict[str, Any]) -> str:
    """One row per process, one bar per op from invocation to completion; colours mark the
    failing op, the minimal window and the linearized prefix (numbered in order)."""
    ops = violation["partition_ops"]
    role = {op["call"]: "other" for op in ops}
    order = {op["call"]: position for position, op in enumerate(violation["linearizable_prefix"])}
    role |= {call: "prefix" for call in order}
    role |= {op["call"]: "window" for op in violation["window"]}
    role[violation["failed_op"]["call"]] = "failed"
    end = max(max(op["call"], op["ret"] or 0) for op in ops) + 2
    first = min(op["call"] for op in ops)
    processes = sorted({op["process"] for op in ops})
    row = {process: position for position, process in enumerate(processes)}
    width = _LABEL_PX + (end - first) * _EVENT_PX
    height = (len(processes) + 1) * _ROW_PX
    shapes = [
        f'<text x="4" y="{(row[p] + 1) * _ROW_PX - 9}">process {html.escape(str(p))}</text>'
        for p in processes
    ]
    for op in ops:
        shapes.append(_bar(op, role[op["call"]], order.get(op["call"]), row, first, end))
    legend = " ".join(
        f'<span style="background:{colour};padding:2px 6px">{name}</span>'
        for name, colour in _COLOURS.items()
    )
    return (
        "<!doctype html><meta charset=utf-8><title>linearizability violation</title>"
        "<style>body{font:13px sans-serif} text{font:11px monospace}</style>"
        f"<h1>Not linearizable</h1><p>{legend}</p>"
        f'<svg width="{width}" height="{height}">{"".join(shapes)}</svg>'
        f"<pre>{html.escape(to_text(violation))}</pre>"
    )


def _bar(
    op: dict[str, Any], role: str, order: int | None, row: dict[Any, int], first: int, end: int
) -> str:
    x = _LABEL_PX + (op["call"] - first) * _EVENT_PX
    ret = end if op["ret"] is None else op["ret"]
    width = max((ret - op["call"]) * _EVENT_PX, 4)
    y = row[op["process"]] * _ROW_PX + 4
    label = op["op"] if order is None else f"{order + 1}. {op['op']}"
    title = html.escape(f"[{op['index']}] p{op['process']} {op['op']}")
    dash = ' stroke-dasharray="4 2"' if op["ret"] is None else ""
    return (
        f'<g><title>{title}</title><rect x="{x}" y="{y}" width="{width}" '
        f'height="{_ROW_PX - 8}" fill="{_COLOURS[role]}" stroke="#333"{dash}/>'
        f'<text x="{x + 3}" y="{y + _ROW_PX - 13}">{html.escape(label)}</text></g>'
    )
