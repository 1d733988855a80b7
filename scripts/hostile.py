"""A hostile VM against ovnmeta: malformed, oversized, slow and pipelined requests through
haproxy and straight at the agent's socket, then a flood with rate limiting off and on,
while two other VMs (one on the attacker's network, one on another) are probed.

Run as root: .venv/bin/python scripts/hostile.py --requests 100000
Prints JSON and a table. Asserts nothing; tests/sandbox/test_hostile.py runs a small
barrage and does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ovnmeta_testing import hostile
from ovnmeta_testing.agentproc import ini_lines
from ovnmeta_testing.sandbox import Sandbox

SANDBOX_DIR = Path("/tmp/ovnmeta-hostile-sandbox")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--flood-seconds", type=int, default=30,
                        help="seconds of each flood: 20 probes a second per victim, so at "
                             "30 its p99 is the 6th slowest of 600")
    parser.add_argument("--baseline-seconds", type=float, default=60,
                        help="seconds of the victims' baseline: at 60 its p99 is the 12th "
                             "slowest of 1,200 (at 10, the 2nd of 200, which one scheduling "
                             "hiccup doubles)")
    parser.add_argument("--agent-log", default="/tmp/ovnmeta-hostile-agent.log")
    parser.add_argument("--haproxy-option", action="append", default=[],
                        metavar="KEY=VALUE", help="an [haproxy] option of the agent, e.g. "
                                                  "nova_maxconn=4 (repeatable)")
    args = parser.parse_args()
    box = Sandbox(root=SANDBOX_DIR)
    box.down()
    box.up()
    try:
        with tempfile.TemporaryDirectory(prefix="omt-") as work:
            r = hostile.run(box, Path(work), args.requests, flood_seconds=args.flood_seconds,
                            baseline_seconds=args.baseline_seconds,
                            agent_log=Path(args.agent_log),
                            haproxy_options=ini_lines(args.haproxy_option))
    finally:
        box.down()
    print(json.dumps(r, indent=1))

    b = r["baseline"]

    def lat(v: dict, victim: str | None = None) -> str:
        """p50 / p99, and p99 against the baseline's (goal: ≤ 2×) for a phase's victim."""
        text = f"{v.get('p50_ms', '-')} / {v.get('p99_ms', '-')} ms"
        base = b[victim].get("p99_ms") if victim else None
        if base and v.get("p99_ms") is not None:
            text += f" ({v['p99_ms'] / base:.2f}×)"
        return f"{text}, {v['failed']} failed"

    print("\n| phase | requests | seconds | victim, same network: p50 / p99 (p99 / "
          "baseline's) | victim, other network: p50 / p99 (p99 / baseline's) |")
    print("|---|---|---|---|---|")
    print(f"| baseline | – | – | {lat(b['victim_same_network'])} | "
          f"{lat(b['victim_other_network'])} |")
    for name, p in r["attacks"].items():
        v = p["victims"]
        print(f"| {name.replace('_', ' ')} | {p['requests']} | {p['seconds']} | "
              f"{lat(v['victim_same_network'], 'victim_same_network')} | "
              f"{lat(v['victim_other_network'], 'victim_other_network')} |")
    for name, f in r["flood"].items():
        v, a = f["victims"], f["attacker"]
        print(f"| flood, {name.replace('_', ' ')}: attacker {a.get('req_per_s')} req/s, "
              f"{a['non_2xx']} non-2xx | {a.get('requests')} | {args.flood_seconds} | "
              f"{lat(v['victim_same_network'], 'victim_same_network')} | "
              f"{lat(v['victim_other_network'], 'victim_other_network')} |")
    cpus = os.cpu_count() or 1
    print(f"\nCPU, ms per second (of {1000 * cpus:,} on {cpus} cores; stolen: taken by the "
          "hypervisor, not in the machine's figure):")
    phases = [("baseline", r.get("baseline_cpu_ms_per_s", {}))] + [
        (f"flood, {name.replace('_', ' ')}", f["attacker"].get("cpu_ms_per_s", {}))
        for name, f in r["flood"].items()]
    for name, cpu in phases:
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    print(f"\nagent RSS {r['rss_kib_before'] / 1024:.1f} MiB before, "
          f"{r['rss_kib_after'] / 1024:.1f} MiB 5 s after the barrage; same process: "
          f"{r['agent_same_pid']}; tracebacks: {r['tracebacks']}; "
          f"attacker only ever got its own identity: {r['attacker_identity_ok']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
