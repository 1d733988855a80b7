"""scripts/bench_haproxy_rules.py, run as a user would: real haproxy with the agent's
rendered config bound in real namespaces, nginx behind it, wrk in front (no OVN). Checks
that every variant serves by the direct path and is measured, not how fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_haproxy_rules.py"


def test_every_variant_is_served_and_measured() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--frontends", "3", "--duration", "1",
                          "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout[:out.stdout.index("\n}\n") + 2])
    variants = result["variants"]
    assert "agent (as rendered)" in variants and len(variants) >= 8
    for name, v in variants.items():
        (one,) = v["rounds"]
        assert one["rps"] > 0 and one["non_2xx"] == 0, name
        assert one["haproxy_cpu_us_per_request"] > 0, name
    assert "vs ceiling" in out.stdout
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "omhr-" not in listed     # its namespaces are gone
