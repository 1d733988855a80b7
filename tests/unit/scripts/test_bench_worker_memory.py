"""scripts/bench_worker_memory.py, run as a user would: real forked workers, a nova double,
requests on a real socket (no OVN). Checks the script works, not how much memory is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "bench_worker_memory.py"


def test_two_workers_serve_and_their_pages_are_accounted() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--workers", "2", "--requests", "20"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[:out.stdout.index("\n}\n") + 2])
    assert result["answered"] == 20
    workers = result["worker_processes"]
    assert len(workers) == 2 and len({w["pid"] for w in workers}) == 2
    assert all(w["pss_mib"] > 0 and w["private_mib"] > 0 for w in workers)
    assert result["total_pss_mib"] > result["agent"]["pss_mib"]
    if os.geteuid() == 0:   # page frame numbers are visible to root only
        kib = sum(k for _kind, k in result["unshared_by_kind_kib"])
        assert result["first_worker_unshared_mib"] > 0
        assert 0 < kib <= result["first_worker_unshared_mib"] * 1024 + 4
    assert "the first worker's pages no longer shared" in out.stdout
