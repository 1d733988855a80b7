"""scripts/bench_idle.py, run as a user would: a real OVN sandbox, two networks served by
the agent, its threads' and haproxy's CPU read while nothing is asked. Checks that it
measures, not how much CPU is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_idle.py"


def test_an_idle_agent_is_measured_by_thread() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--networks", "2", "--seconds", "2",
                          "--settle", "0"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (result,) = json.loads(out.stdout[:out.stdout.index("\n]\n") + 2])
    assert result["networks"] == 2 and result["seconds"] == 2
    threads = {t["thread"] for t in result["threads"]}
    assert len(threads) >= 4      # the event loop, both IDLs, the reconciler at least
    assert all(t["ms_per_s"] >= 0 for t in result["threads"])
    assert result["machine_busy_ms_per_s"] > 0
    assert "| 2 |" in out.stdout
    assert not os.path.exists("/tmp/ovnmeta-bench-idle-sandbox/ovn-northd.pid")
