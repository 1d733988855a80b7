"""The SB-scale benchmark's ovnmeta half, small (K = 5), on a real SB, northd, Raft cluster
and relays: what docs/benchmarks.md's projection rests on must keep holding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench_sb_scale.py"


def test_five_ovnmeta_agents_cost_the_sb_only_what_they_host(tmp_path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--kinds", "ovnmeta", "--agents", "5",
         "--chassis", "40", "--networks", "100", "--ports", "400", "--layouts", "direct,relay",
         "--churn-seconds", "4", "--series-changes", "10", "--root", str(tmp_path / "sb"),
         "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [(r["layout"], r["kind"], r["agents"]) for r in result["runs"]] == [
        ("direct", "ovnmeta", 5), ("relay", "ovnmeta", 5)]
    for run in result["runs"]:
        # Conditional monitoring: an agent holds its networks' ports, not the cloud's 500.
        held = run["load"]["rows_held"]
        assert 0 < held["Port_Binding"] < 250 and held["Chassis"] == 1, held
        assert run["churn"]["changes"] > 0
        # Every agent echoes both nb_cfg bumps into its Chassis_Private row.
        assert all(r["answered"] == r["of"] == 5 for r in run["liveness"]), run["liveness"]
        # The SB (or every relay) restarted: every agent monitors again.
        assert run["reconnect"]["back"] == 5 and run["reconnect"]["all_back_s"] is not None
    assert result["runs"][1]["relays"] == 1 and result["runs"][1]["load"]["bytes_to_relays"] > 0
    # A change reaches only the agents that host the port's network: nothing when none does,
    # more bytes the more do.
    series = {s["hosting_agents"]: s["bytes_per_change"] for s in result["series"]}
    hosted = sorted(h for h in series if h != 0)
    assert 0 in series and hosted, series
    assert series[0] < 0.2 * series[hosted[0]], series
    assert series[hosted[-1]] > series[hosted[0]] or len(hosted) == 1, series
