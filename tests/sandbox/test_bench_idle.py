"""scripts/bench_idle.py as its own code runs it, in the test session's OVN sandbox: two
networks served by the agent, its threads' and haproxy's CPU read while nothing is asked.
Checks that it measures and cleans up, not how much CPU is used."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_idle.py"


def test_an_idle_agent_is_measured_by_thread(sandbox) -> None:
    spec = importlib.util.spec_from_file_location("bench_idle", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    switches = sandbox.nbctl("ls-list")
    result = bench.measure(2, 2, settle=0, box=sandbox)
    assert result["networks"] == 2 and result["seconds"] == 2
    threads = {t["thread"] for t in result["threads"]}
    assert len(threads) >= 4      # the event loop, both IDLs, the reconciler at least
    assert all(t["ms_per_s"] >= 0 for t in result["threads"])
    # /proc/stat counts 10 ms ticks: an idle machine can spend none of them busy in 2 s
    # (seen once: 0.0), so the reading is checked for range, not for being above zero.
    cores = os.cpu_count() or 1
    assert 0 <= result["machine_busy_ms_per_s"] <= 1000 * cores + 50   # ms of CPU per s
    assert 0 <= result["steal_ms_per_s"] <= 1000 * cores + 50
    assert "| 2 |" in bench.table([result])
    # Its networks, VMs and agent are gone; the session's sandbox stays up.
    assert sandbox.nbctl("ls-list") == switches
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "ovnmeta-" not in listed
