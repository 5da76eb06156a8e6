"""Run the explorer over a suite of scopes for one configuration: `replog check`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from model.config import Config
from model.machine import ReplicationModel, Scope
from specs import explorer
from specs.invariants import Invariant
from specs.trace import render_mermaid, render_text


@dataclass
class ScopeRun:
    name: str
    scope: Scope
    outcome: explorer.Outcome


@dataclass
class CheckResult:
    config: Config
    runs: list[ScopeRun] = field(default_factory=list)

    @property
    def violation(self) -> explorer.Violation | None:
        for run in self.runs:
            if run.outcome.violation is not None:
                return run.outcome.violation
        return None

    @property
    def exhausted(self) -> bool:
        return all(run.outcome.stats.exhausted for run in self.runs)


def run_check(
    config: Config,
    scopes: list[tuple[str, Scope]],
    invariants: list[Invariant],
    limits: explorer.Limits,
    *,
    mode: str = "bfs",
    seed: int = 1,
    walks_max: int = 10_000,
) -> CheckResult:
    """Explore each scope in turn and stop at the first violation."""
    result = CheckResult(config)
    for name, scope in scopes:
        model = ReplicationModel(config, scope)
        if mode == "bfs":
            outcome = explorer.bfs(model, invariants, limits)
        else:
            outcome = explorer.random_walks(model, invariants, limits, seed, walks_max)
        result.runs.append(ScopeRun(name, scope, outcome))
        if outcome.violation is not None:
            break
    return result


def describe_run(run: ScopeRun) -> str:
    s = run.outcome.stats
    coverage = "exhausted" if s.exhausted else f"stopped by {s.stopped_by or 'violation'}"
    verdict = "VIOLATED" if run.outcome.violation else "held"
    return (
        f"scope {run.name:7s} {verdict:8s} {s.explored:>9,} transitions  {s.distinct:>9,} distinct "
        f"states  depth {s.depth:>3}  {s.elapsed_s:6.1f} s  {s.states_per_s:>8,.0f} states/s  "
        f"({coverage})"
    )


def write_counterexample(violation: explorer.Violation, out_dir: Path) -> tuple[Path, Path]:
    """trace.txt and trace.mmd (Mermaid sequenceDiagram) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text_path, diagram_path = out_dir / "trace.txt", out_dir / "trace.mmd"
    text_path.write_text(render_text(violation) + "\n")
    diagram_path.write_text(render_mermaid(violation))
    return text_path, diagram_path


def to_json(result: CheckResult, trace_paths: tuple[Path, Path] | None) -> dict:
    violation = result.violation
    out: dict = {
        "config": result.config.differences(),
        "verdict": "violated" if violation else "held",
        "exhausted": result.exhausted,
        "scopes": [
            {
                "name": run.name,
                "transitions": run.outcome.stats.explored,
                "distinct_states": run.outcome.stats.distinct,
                "depth": run.outcome.stats.depth,
                "seconds": round(run.outcome.stats.elapsed_s, 3),
                "exhausted": run.outcome.stats.exhausted,
                "violated": run.outcome.violation is not None,
            }
            for run in result.runs
        ],
    }
    if violation:
        out["violation"] = {
            "invariant": violation.invariant,
            "message": violation.message,
            "length": len(violation.trace),
            "steps": [action.describe() for action, _ in violation.trace],
        }
    if trace_paths:
        out["trace"], out["diagram"] = (str(p) for p in trace_paths)
    return out
