"""What K agents cost the Southbound DB: ovnmeta's SB view against neutron 29's SB IDL.

A synthetic cloud in a real SB (ovnmeta_testing.sbcloud): C chassis, N neutron networks with
a localport each, P VM ports, built in the NB and turned into SB rows by ovn-northd; then
Chassis, Encap, Chassis_Private and every port's binding written into the SB as
ovn-controller would, and northd stopped. K simulated agents each play one chassis that has
20 ports bound. They run in worker processes (`--per-process` agents each), each agent with
the production code of its kind:

- ovnmeta: `ovnmeta.ovsdb.sbview.SbView` with its conditions, given the chassis's ports as
  plugged (no OVS needed);
- neutron: `neutron.agent.ovn.metadata.ovsdb.MetadataAgentOvnSbIdl` with the metadata
  agent's tables and chassis conditions, and its own `SbGlobalUpdateEvent` writing the
  sb-cfg key (its jitter included); run by the python of `--neutron-venv`.

For each layout (`direct`: agents on one standalone SB; `relay`: a 3-member Raft SB with
ceil(K/50) ovsdb relays in front, agents spread over them) and each K, and each kind:
- load: from `go` until every agent is loaded; server CPU; bytes the servers sent the agents;
  each agent's memory (the worker's RSS after loading minus before, divided by its agents);
- churn: `--churn-rate` binding changes per second for `--churn-seconds` across the cloud
  (unbind a random port, then bind it to a random chassis); server CPU and bytes per second,
  the agents' total CPU;
- liveness: two rounds of bumping SB_Global.nb_cfg, each until every agent's Chassis_Private
  sb-cfg key shows it; server CPU;
- reconnect: the SB (direct) or every relay (relay) killed and started again; time until
  every agent is monitoring again, server CPU.
Then, at the largest K (ovnmeta), the cost of one change by how many agents host the
changed port's network (a flap on a chassis that no agent plays); and (`--memory-ports`) one
agent of each kind at P = 2,000 / 20,000 / 100,000 with N = P / 10.

The parts are ovnmeta_testing.sbscale's (worker, driver, phases, report); this is the
command line. Run as root (outside CI):
  python3 -m venv /tmp/nvenv && /tmp/nvenv/bin/pip install neutron==29.0.0
  .venv/bin/python scripts/bench_sb_scale.py --neutron-venv /tmp/nvenv \
      [--agents 25,50,100,200] [--layouts direct,relay] [--kinds ovnmeta,neutron]
Prints JSON (also to `--json`) and a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ovnmeta_testing.sbscale import phases, report

ROOT = Path("/tmp/ovnmeta-bench-sb-scale")


def arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chassis", type=int, default=1000)
    p.add_argument("--networks", type=int, default=2000)
    p.add_argument("--ports", type=int, default=20000)
    p.add_argument("--agents", default="25,50,100,200")
    p.add_argument("--kinds", default="ovnmeta,neutron")
    p.add_argument("--layouts", default="direct,relay")
    p.add_argument("--per-process", type=int, default=25, help="ovnmeta agents per worker")
    p.add_argument("--neutron-per-process", type=int, default=5,
                   help="neutron agents per worker: one of 25 parsing 22,000 rows each missed "
                        "the SB's probes and never finished loading")
    p.add_argument("--churn-rate", type=float, default=20)
    p.add_argument("--churn-seconds", type=float, default=60)
    p.add_argument("--series-changes", type=int, default=100)
    p.add_argument("--memory-ports", default="",
                   help="e.g. 2000,20000,100000: one agent per kind at each P (N = P/10)")
    p.add_argument("--neutron-venv", default="/tmp/nvenv")
    p.add_argument("--neutron-max-agents", type=int, default=200,
                   help="skip neutron's runs above this K")
    p.add_argument("--python-json", action="store_true",
                   help="agents use python-ovs's pure-Python JSON parser, as installed from "
                        "PyPI (default: the C parser, as distributions ship it)")
    p.add_argument("--root", default=str(ROOT))
    p.add_argument("--json", default="")
    p.add_argument("--alone", action="store_true",
                   help="also meter both churns with no agent connected, for each K")
    p.add_argument("--report", default="",
                   help="print the table (and projection) of a saved --json, run nothing")
    return p


def main() -> int:
    parser = arguments()
    args = parser.parse_args()
    if args.report:
        results = json.loads(Path(args.report).read_text())
    else:
        pythons = {"ovnmeta": sys.executable,
                   "neutron": str(Path(args.neutron_venv) / "bin" / "python")}
        kinds = args.kinds.split(",")
        if "neutron" in kinds and not Path(pythons["neutron"]).exists():
            parser.error(f"no neutron virtualenv at {args.neutron_venv} (see above)")
        ks = [int(k) for k in args.agents.split(",") if k]
        work = Path(args.root + "-work")
        work.mkdir(parents=True, exist_ok=True)
        results = phases.layouts(args, kinds, ks, pythons, work)
        results["memory"] = phases.memory(args, kinds, pythons, work)
    results["projection"] = report.projection(results)
    if not args.report:
        print(json.dumps(results, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print(report.table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
