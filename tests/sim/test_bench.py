"""`replog bench sim` runs end to end on a short load and prints both figures."""

from __future__ import annotations

import re

import pytest

from impl.sim.bench import main


def test_bench_sim_prints_idle_and_load_figures(capsys):
    args = ["--idle-seconds", "2", "--seconds", "10", "--fault-interval", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"^idle cluster: 2 simulated s .* 0 acked writes", out, re.M), out
    load = re.search(r"^load with faults: 10 simulated s .* (\d+) acked writes", out, re.M)
    assert load is not None and int(load.group(1)) > 100, out


def test_bench_sim_refuses_bad_arguments(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--rate", "0"])
    assert stopped.value.code == 2
    assert "argument --rate: must be a number > 0, got '0'" in capsys.readouterr().err
