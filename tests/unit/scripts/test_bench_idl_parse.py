"""scripts/bench_idl_parse.py, run as a user would (python-ovs's real parser, no OVS).
Checks the script works and what each IDL does per row, not how fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "bench_idl_parse.py"


def test_both_idls_parse_an_update_alone_and_beside_a_busy_thread() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--rows", "20", "--rounds", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout[:out.stdout.index("\n]\n") + 2])
    assert {(r["idl"], r["busy_thread"]) for r in results} == {
        (idl, busy) for idl in ("ovsdbapp OvsdbIdl", "ovnmeta _OvsIdl")
        for busy in (False, True)}
    assert all(r["rows"] == 20 and len(r["ms"]) == 1 and r["p50_ms"] > 0 for r in results)
    assert "| ovnmeta _OvsIdl | yes |" in out.stdout
