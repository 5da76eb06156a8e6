"""report.html: one self-contained page per run (inline CSS and SVG, no scripts).

Sections: the verdict and how to replay the run; its configuration; each checker's
verdict; the faults injected; latency and throughput over time with the fault windows
shaded; a timeline of ops per process; each anomaly with the ops around it. Links go
only to files inside the run directory (history, results, junit, node logs).
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from typing import Any

from jepsen_py.campaign import evidence, svg
from jepsen_py.history import Op, pair_positions

LATENCY_POINTS_MAX = 6_000
TIMELINE_OPS_MAX = 6_000
CONTEXT_OPS = 4
REFERENCES_PER_EXAMPLE = 2
VERDICTS = {
    True: ("VALID", "valid"),
    False: ("INVALID", "invalid"),
    "unknown": ("UNKNOWN", "unknown"),
    "incomplete": ("INCOMPLETE", "unknown"),
}
_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1000px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd;
  padding: 3px 8px; text-align: left; vertical-align: top; font-size: 13px; }
code, pre { font: 12px ui-monospace, monospace; } pre { background: #f6f6f6; padding: 8px;
  overflow-x: auto; white-space: pre-wrap; }
.valid { color: #fff; background: #2ca02c; } .invalid { color: #fff; background: #d62728; }
.unknown { color: #fff; background: #7f7f7f; } .badge { padding: 2px 10px; border-radius: 4px; }
.title { font-weight: 600; font-size: 13px; } .tick { font-size: 11px; fill: #444; }
.axis { stroke: #444; } .grid { stroke: #eee; } tr.focus td { background: #fff3cd; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _json(value: Any) -> str:
    return _e(json.dumps(value, default=str))


def render(results: dict[str, Any], history: list[Op]) -> str:
    perf = results["checkers"].get("perf", {}).get("stats", {})
    windows = perf.get("nemesis_windows", [])
    duration_s = history[-1].time / 1e9 if history else 0.0
    sections = [
        _header(results),
        _configuration(results),
        _checkers(results),
        _faults(history),
        _charts(history, perf, windows, duration_s),
        _rebalances(results, windows, duration_s),
        _timeline(history, windows, duration_s),
        _anomalies(results, history),
        _files(results),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>replog campaign {_e(results['run_id'])}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def _header(results: dict[str, Any]) -> str:
    label, css = VERDICTS["incomplete" if results["verdict"] == "incomplete" else results["valid"]]
    error = results["facts"].get("harness_error")
    parts = [
        f"<h1>replog campaign {_e(results['run_id'])} "
        f'<span class="badge {css}">{label}</span></h1>',
        f"<p>Replay: <code>{_e(results['spec']['command'])}</code></p>",
        f"<p>Workload <b>{_e(results['workload'])}</b>, seed <b>{_e(results['seed'])}</b>, "
        f"{results['stats']['ops']} ops by {results['stats']['processes']} processes, "
        f"{results['stats']['nemesis_ops']} nemesis ops.</p>",
    ]
    if error:
        parts.append(f"<h2>The harness failed</h2><pre>{_e(error)}</pre>")
    parts.append(_evidence(results))
    errors = results["facts"].get("broker_errors") or {"count": 0}
    if errors["count"]:
        shown = "\n".join(errors["first"])
        parts.append(
            '<h2><span class="badge invalid">'
            f"Brokers logged {errors['count']} ERROR lines</span></h2>"
            f"<p>Not part of the verdict: read the node logs.</p><pre>{_e(shown)}</pre>"
        )
    return "".join(parts)


def _evidence(results: dict[str, Any]) -> str:
    """Faults fired; what stopped the run or was not tested, when the verdict says so."""
    facts = results["facts"]
    fired = ", ".join(f"{kind} x{count}" for kind, count in results["stats"]["faults"].items())
    parts = [f"<p>Faults fired: {_e(fired or 'none')}.</p>"]
    if facts.get("interrupted"):
        parts.append(
            f"<h2>Incomplete: interrupted by {_e(facts['interrupted'])}</h2><p>The cluster "
            "was stopped early; the checkers judged the history up to then, so what they "
            "found is not a verdict (a write not yet read looks lost).</p>"
        )
    if facts.get("missing"):
        parts.append(
            f"<h2>Not tested as asked</h2><p>{_e(evidence.describe(facts['missing']))}.</p>"
        )
    return "".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _configuration(results: dict[str, Any]) -> str:
    spec = results["spec"]
    rows = [
        [_e(key), _e(value)]
        for key, value in spec.items()
        if key not in ("config", "effective_config", "kafka_config")
    ]
    settings = [[_e(key), _e(value)] for key, value in sorted(results["config"].items())]
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    return (
        "<h2>Configuration</h2>"
        + _table(["campaign", "value"], rows)
        + "<p>Settings that differ from replog's defaults (brokers and clients):</p>"
        + _table(["key", "value"], settings)
        + f"<p>Versions: {_e(versions)}</p>"
    )


def _checkers(results: dict[str, Any]) -> str:
    rows = []
    for name, checker in results["checkers"].items():
        label, css = VERDICTS[checker["valid"]] if checker["judges"] else ("MEASURED", "")
        # The checker's own summary (jepsen_py.result.Result.summary): the same verdict line
        # and counts as the terminal and the anomaly list below.
        said = [checker["verdict"], *checker["notes"]]
        if checker["allowed_counts"]:
            said.append(f"allowed (not violations): {json.dumps(checker['allowed_counts'])}")
        scalars = {k: v for k, v in checker["stats"].items() if not isinstance(v, dict | list)}
        rows.append(
            [
                _e(name),
                f'<span class="badge {css}">{label}</span>',
                "<br>".join(_e(line) for line in said),
                _json(scalars),
            ]
        )
    outcomes = [
        [_e(f), str(c["ok"]), str(c["fail"]), str(c["info"])]
        for f, c in sorted(results["stats"]["by_f"].items())
    ]
    return (
        "<h2>Verdict per checker</h2>"
        + _table(["checker", "verdict", "why", "stats"], rows)
        + "<h2>Client ops</h2>"
        + _table(["f", "ok", "fail", "info"], outcomes)
    )


def _faults(history: list[Op]) -> str:
    rows = []
    for call, ret in _nemesis_pairs(history):
        start = history[call]
        end = history[ret] if ret is not None else None
        rows.append(
            [
                f"{start.time / 1e9:.2f}",
                _e(start.f),
                _json(start.value),
                "-" if end is None else f"{end.type} after {(end.time - start.time) / 1e9:.2f} s",
                "" if end is None else _json(end.value if end.type == "ok" else end.error),
            ]
        )
    if not rows:
        return "<h2>Faults</h2><p>No nemesis ops.</p>"
    return "<h2>Faults</h2>" + _table(["at (s)", "op", "asked", "outcome", "done"], rows)


def _nemesis_pairs(history: list[Op]) -> list[tuple[int, int | None]]:
    pairs: list[tuple[int, int | None]] = []
    open_call: int | None = None
    for position, op in enumerate(history):
        if op.is_client:
            continue
        if op.type == "invoke":
            open_call = position
            pairs.append((position, None))
        elif open_call is not None:
            pairs[-1] = (open_call, position)
            open_call = None
    return pairs


def _charts(
    history: list[Op], perf: dict[str, Any], windows: list[dict[str, Any]], duration_s: float
) -> str:
    latencies: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for call, ret in pair_positions(history):
        if ret is None:
            continue
        invocation, completion = history[call], history[ret]
        latency_ms = max((completion.time - invocation.time) / 1e6, 0.01)
        latencies[completion.type].append((invocation.time / 1e9, latency_ms))
    stride = max(1, sum(map(len, latencies.values())) // LATENCY_POINTS_MAX)
    latency_series = [
        svg.Series(outcome, svg.OUTCOME_COLOURS[outcome], points[::stride])
        for outcome, points in sorted(latencies.items())
    ]
    palette = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    bucket_ns = perf.get("bucket_ns", 1_000_000_000)
    throughput = [
        svg.Series(name, palette[i % len(palette)], _zero_filled(points, bucket_ns, duration_s))
        for i, (name, points) in enumerate(sorted(perf.get("throughput_per_s", {}).items()))
    ]
    note = "" if stride == 1 else f"<p>Every {stride}th op is drawn.</p>"
    return (
        "<h2>Latency</h2>"
        + note
        + svg.chart(
            "latency by outcome", "ms (log)", latency_series, windows, duration_s, log_y=True
        )
        + "<h2>Throughput</h2>"
        + svg.chart("completions per second", "ops/s", throughput, windows, duration_s, lines=True)
    )


def _rebalances(results: dict[str, Any], windows: list[dict[str, Any]], duration_s: float) -> str:
    """The consumer workload's group: new generations per second, and the generation."""
    stats = results["checkers"].get("consumer", {}).get("stats", {})
    rebalances = stats.get("rebalances")
    if not rebalances:
        return ""
    per_second = svg.Series(
        "new generations", "#d62728", _zero_filled(rebalances["series"], 1_000_000_000, duration_s)
    )
    generation = svg.Series(
        "generation", "#1f77b4", [(at / 1e9, float(g)) for g, at in rebalances["generations"]]
    )
    return (
        f"<h2>Rebalances</h2><p>{rebalances['count']} rebalances after the first join.</p>"
        + svg.chart("rebalances per second", "per s", [per_second], windows, duration_s, lines=True)
        + svg.chart("group generation", "generation", [generation], windows, duration_s)
    )


def _zero_filled(
    points: list[list[float]], bucket_ns: int, duration_s: float
) -> list[tuple[float, float]]:
    """Every bucket of the run, 0 where nothing completed (so lines drop to 0 in an
    outage instead of bridging it)."""
    rates = {int(at): rate for at, rate in points}
    buckets = int(duration_s * 1e9 // bucket_ns) + 1
    return [(b * bucket_ns / 1e9, rates.get(b * bucket_ns, 0.0)) for b in range(buckets)]


def _timeline(history: list[Op], windows: list[dict[str, Any]], duration_s: float) -> str:
    pairs = pair_positions(history)[:TIMELINE_OPS_MAX]
    rows: dict[Any, int] = {}
    bars = []
    for call, ret in pairs:
        invocation = history[call]
        completion = history[ret] if ret is not None else None
        row = rows.setdefault(invocation.process, len(rows))
        end_ns = completion.time if completion is not None else history[-1].time
        outcome = completion.type if completion is not None else "info"
        shown = json.dumps(invocation.value, default=str)[:80]
        label = f"{invocation.process} {invocation.f} {shown} -> {outcome}"
        bars.append(
            svg.Bar(row, invocation.time / 1e9, end_ns / 1e9, svg.OUTCOME_COLOURS[outcome], label)
        )
    nemesis_row = len(rows)
    for call, ret in _nemesis_pairs(history):
        start = history[call]
        end_ns = history[ret].time if ret is not None else history[-1].time
        colour = svg.FAULT_COLOURS.get(start.f, "#7f7f7f")
        bars.append(
            svg.Bar(
                nemesis_row,
                start.time / 1e9,
                end_ns / 1e9,
                colour,
                f"nemesis {start.f} {start.value}",
            )
        )
    names = [f"p{p}" for p in rows] + ["nemesis"]
    note = (
        f"<p>The first {TIMELINE_OPS_MAX} of {len(pair_positions(history))} client ops.</p>"
        if len(pairs) == TIMELINE_OPS_MAX
        else ""
    )
    return "<h2>Timeline</h2>" + note + svg.timeline(names, bars, windows, duration_s)


def _anomalies(results: dict[str, Any], history: list[Op]) -> str:
    if not results["anomalies"]:
        return "<h2>Anomalies</h2><p>None found.</p>"
    parts = ["<h2>Anomalies</h2>"]
    for kind, entry in results["anomalies"].items():
        parts.append(f"<h3>{_e(kind)}: {entry['count']}</h3>")
        for example in entry["examples"]:
            parts.append(f"<pre>{_json(example)}</pre>")
            for index in _references(example)[:REFERENCES_PER_EXAMPLE]:
                parts.append(_ops_around(history, index))
    return "".join(parts)


def _references(example: Any) -> list[int]:
    """History positions an anomaly case names (`*_index`, `index`, `position`)."""
    found: list[int] = []
    if isinstance(example, dict):
        for key, value in example.items():
            if (key == "position" or key.endswith("index")) and isinstance(value, int):
                found.append(value)
            elif isinstance(value, dict | list):
                found += _references(value)
    elif isinstance(example, list):
        for item in example:
            found += _references(item)
    return list(dict.fromkeys(found))


def _ops_around(history: list[Op], index: int) -> str:
    if not 0 <= index < len(history):
        return ""
    low, high = max(0, index - CONTEXT_OPS), min(len(history), index + CONTEXT_OPS + 1)
    rows = []
    for op in history[low:high]:
        css = ' class="focus"' if op.index == index else ""
        cells = [op.index, f"{op.time / 1e9:.3f}", op.process, op.type, op.f]
        value = json.dumps(op.value, default=str)[:300]
        error = "" if op.error is None else f" ({op.error})"
        rows.append(
            f"<tr{css}>"
            + "".join(f"<td>{_e(c)}</td>" for c in cells)
            + f"<td><code>{_e(value)}{_e(error)}</code></td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("index", "time (s)", "process", "type", "f", "value"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _files(results: dict[str, Any]) -> str:
    links = [("history.jsonl", "history"), ("results.json", "results"), ("junit.xml", "junit")]
    links += [
        (path, f"node {node} log") for node, path in results["facts"].get("node_logs", {}).items()
    ]
    items = "".join(f'<li><a href="{_e(path)}">{_e(label)}</a></li>' for path, label in links)
    return f"<h2>Files</h2><ul>{items}</ul>"
