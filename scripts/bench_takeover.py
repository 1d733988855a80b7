"""Takeover benchmark: a host neutron's agent served, swapped to ovnmeta under probing.

For each size, N networks with one VM each are laid out as neutron 29's OVN metadata agent
leaves them (ovnmeta_testing.neutron_host: namespace, tap…0/1, OVS port, addresses, one
haproxy per network on the shared socket), and a stand-in for neutron's agent process serves
the socket (ovnmeta_testing.neutron_agent, with neutron's backlog of 4096). Every VM is
probed every `--interval` seconds from its namespace, a new connection each time. First
`--settle` seconds with neutron's stand-in alone: the rig's own baseline. Then docs/migrate.md's
procedure: ovnmeta-agent starts with the same state_path while neutron's agent runs, and once
ovnmeta says it holds the socket, neutron's agent gets SIGTERM (`--stop-first` stops
neutron's agent 1 s before ovnmeta starts instead: an operator typing the two commands the
other way round). Once nothing of neutron's is left, `--settle` seconds more with ovnmeta
alone. Reports, per size: the longest gap any VM saw between right answers (and the median
VM's), failed probes (in total, and before / during / after the swap: failures outside it
are the host's or the rig's), wrong answers (another instance's data), the time until
nothing of neutron's is left.

Run as root: .venv/bin/python scripts/bench_takeover.py [--sizes 50] [--mode shared]
             [--stop-first] [--interval 0.1] [--settle 1] [--workers 1]
Prints JSON and a table; asserts nothing. The agent's log goes to
/tmp/ovnmeta-bench-takeover-agent-<size>.log.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import AgentProcess
from ovnmeta_testing.neutron_agent import FakeNeutronAgent
from ovnmeta_testing.neutron_host import NeutronMetadata
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.prober import Prober
from ovnmeta_testing.sandbox import Sandbox
from ovnmeta_testing.vm import FakeVM

BENCH_DIR = Path("/tmp/ovnmeta-bench-takeover")
SECRET = "bench-takeover"


def _spread(times: list[float]) -> dict:
    """When the failed probes started, in seconds since probing began."""
    if not times:
        return {}
    times.sort()
    return {"first": round(times[0], 2), "median": round(times[len(times) // 2], 2),
            "last": round(times[-1], 2)}


def _phases(prober: Prober, t0: float, t1: float) -> dict:
    """Failed / probes before the swap (neutron's agent alone), during it, and after it
    (ovnmeta alone): failures outside the swap are the host's or the rig's, not the swap's."""
    out = {}
    for name, lo, hi in (("before", 0.0, t0), ("swap", t0, t1), ("after", t1, float("inf"))):
        probes = [p for t in prober.targets for p in t.probes if lo <= p.started < hi]
        out[name] = {"seconds": round(min(hi, prober.ended) - max(lo, prober.started), 1),
                     "probes": len(probes), "failed": sum(p.status != 200 for p in probes)}
    return out


def run(box: Sandbox, size: int, mode: str, stop_first: bool, interval: float = 0.1,
        settle: float = 1.0, workers: int = 1) -> dict:
    nets = [neutron.create_network(box, cidrs=(f"10.{i // 250}.{i % 250}.0/24",))
            for i in range(size)]
    vms = [FakeVM(box, net, neutron.create_vm_port(box, net)).start() for net in nets]
    work = Path(tempfile.mkdtemp(prefix="omt-", dir="/tmp"))
    nova = NovaProcess({vm.port.device_id: {"project_id": vm.port.project_id,
                                            "hostname": vm.netns} for vm in vms},
                       SECRET, work).start()
    agent = AgentProcess(box, mode=mode, state_dir=work,
                         extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                               f"nova_metadata_port = {nova.port}\n"
                               f"metadata_workers = {workers}")
    layouts = [NeutronMetadata(net, agent.state_dir, agent.socket).build(box) for net in nets]
    for vm in vms:
        vm.wait_bound(timeout=60)
    old = FakeNeutronAgent("neutron-ovn-metadata-agent", agent.socket,
                           {vm.port.ip: vm.port.device_id for vm in vms}, work).start()
    prober = Prober(interval=interval)
    for vm in vms:
        prober.add(vm.netns, vm.port.device_id)
    try:
        prober.start()
        time.sleep(settle)   # neutron's agent serving, probed: the rig's own baseline
        t0 = time.monotonic()
        if stop_first:
            old.stop()
            time.sleep(1.0)
            agent.start()
        else:
            agent.start()
            while "still runs" not in agent.log():
                if time.monotonic() > t0 + 60:
                    raise RuntimeError("ovnmeta did not see neutron's agent in 60 s")
                time.sleep(0.02)
            old.stop()
        # The agent logs each neutron haproxy it has stopped, the last step of a network's
        # takeover; checking the host itself costs seconds per pass at this size.
        deadline = t0 + 300
        while agent.log().count("has ended") < size:
            if time.monotonic() > deadline:
                raise RuntimeError("neutron's haproxies still running after 300 s")
            time.sleep(0.05)
        t1 = time.monotonic()
        replaced = t1 - t0
        left = [item for layout in layouts for item in layout.leftovers(box)]
        if left:
            raise RuntimeError(f"left of neutron's: {left[:5]}")
        time.sleep(settle)   # ovnmeta alone serving, probed
        prober.stop()
        Path(f"{BENCH_DIR}-agent-{size}.log").write_text(agent.log())
        print("\n".join(line for line in agent.log().splitlines()
                        if " pass " in line or "starting" in line or "listening" in line
                        or "loaded" in line), file=sys.stderr)
        report = prober.report()
        gaps = sorted(r["max_gap"] for r in report.values())
        return {
            "networks": size, "mode": mode, "interval_s": interval, "workers": workers,
            "procedure": "stop-first" if stop_first else "start-then-stop",
            "max_gap_s": gaps[-1], "median_vm_max_gap_s": round(statistics.median(gaps), 3),
            "vms_over_1s": sum(g > 1.0 for g in gaps),
            "probes": sum(r["probes"] for r in report.values()),
            "failed": sum(r["failed"] for r in report.values()),
            "wrong": sum(r["wrong"] for r in report.values()),
            "all_replaced_s": round(replaced, 2),
            "failures": dict(collections.Counter(
                p.error.split(":")[0] if p.error else str(p.status)
                for t in prober.targets for p in t.failed())),
            "failed_at_s": _spread([p.started - prober.started
                                    for t in prober.targets for p in t.failed()]),
            "phases": _phases(prober, t0, t1),
        }
    except RuntimeError:
        print(agent.log()[-20000:], file=sys.stderr)
        raise
    finally:
        prober.stop()
        old.stop()
        agent.cleanup()
        for layout in layouts:
            layout.destroy(box)
        for vm in vms:
            vm.destroy()
        nova.stop()
        for net in nets:
            neutron.delete_network(box, net)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50")
    parser.add_argument("--mode", default="shared", choices=["shared", "per-network"])
    parser.add_argument("--stop-first", action="store_true",
                        help="stop neutron's agent 1 s before ovnmeta starts")
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between two probes of one VM")
    parser.add_argument("--workers", type=int, default=1,
                        help="ovnmeta's metadata_workers")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds probed before the swap and after it, the baseline")
    args = parser.parse_args()
    box = Sandbox(root=BENCH_DIR)
    box.down()
    box.up()
    results = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            results.append(run(box, size, args.mode, args.stop_first, args.interval,
                               args.settle, args.workers))
    finally:
        box.down()
    print(json.dumps(results, indent=1))
    print()
    print("| networks | mode | procedure | longest gap, any VM | median VM's longest gap "
          "| VMs over 1 s | failed / probes | wrong answers | all of neutron's replaced after "
          "| failed before / during / after the swap |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['networks']} | {r['mode']} | {r['procedure']} | {r['max_gap_s']:.2f} s | "
              f"{r['median_vm_max_gap_s']:.2f} s | {r['vms_over_1s']} | "
              f"{r['failed']} / {r['probes']} | {r['wrong']} | {r['all_replaced_s']:.1f} s | "
              + " / ".join(f"{v['failed']}/{v['probes']}" for v in r["phases"].values())
              + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
