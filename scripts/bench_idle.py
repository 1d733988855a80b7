"""What an idle agent costs: its CPU per thread, and haproxy's, with N networks served and
no request made, in the steady state (from 65 s after the agent's start: the rolling resync
runs by then, as it does for good). A real OVN sandbox, N networks with one VM each, the
nova double; the direct path on (haproxy checks the agent's maps twice a second).

Threads are named from `py-spy dump` when py-spy is installed (it is not a dependency),
else by their thread id. Run as root:

    .venv/bin/python scripts/bench_idle.py [--networks 50,200] [--seconds 60] [--settle 65]
                                           [--profile FILE]

Prints JSON and a table; figures are measurements of this machine, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ovnmeta.host import procs
from ovnmeta_testing import cpu, neutron
from ovnmeta_testing.agentproc import AgentProcess, wait_until
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.sandbox import Sandbox
from ovnmeta_testing.vm import FakeVM, one_per_network

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_proxy  # noqa: E402  (wait_idle, agent_processes, the settle time)

BENCH_DIR = Path("/tmp/ovnmeta-bench-idle-sandbox")
SECRET = "bench-secret"
URL = "http://169.254.169.254/openstack/latest/meta_data.json"


def thread_ticks(pid: int) -> dict[int, int]:
    """utime + stime of each thread of a process, by thread id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = int(fields[11]) + int(fields[12])
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by thread id, from py-spy when it is installed."""
    spy = _py_spy()
    if spy is None:
        return {}
    out = subprocess.run([spy, "dump", "-p", str(pid)], capture_output=True, text=True)
    return {int(m.group(1)): m.group(2)
            for m in re.finditer(r'^Thread (\d+) \([^)]*\): "([^"]*)"', out.stdout, re.M)}


def haproxy_pids(agent: AgentProcess) -> list[int]:
    """The agent's haproxy master(s) and workers (it is their subreaper)."""
    mine = set(bench_proxy.agent_processes(agent))
    found, todo = [], list(mine)
    while todo:
        pid = todo.pop()
        for child in procs.children(pid):
            if child not in mine and child not in found:
                found.append(child)
                todo.append(child)
    return found


def _py_spy() -> str | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return spy if os.path.exists(spy) else None


def measure(networks: int, seconds: float, settle: float = bench_proxy.RESYNC_SETTLE,
            box: Sandbox | None = None, profile: str | None = None) -> dict:
    """One size; in a sandbox of its own unless handed one (which is left running)."""
    own = box is None
    if own:
        box = Sandbox(root=BENCH_DIR)
        box.down()
        box.up()
    work = Path(tempfile.mkdtemp(prefix="ombench-idle-"))
    vms: list[FakeVM] = []
    nova = agent = None
    try:
        one_per_network(box, networks, vms)
        nova = NovaProcess({v.port.device_id: {"project_id": v.port.project_id,
                                               "hostname": "idle"} for v in vms},
                           SECRET, work).start()
        agent = AgentProcess(box, extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                        f"nova_metadata_port = {nova.port}\ndebug = false")
        agent.start()
        started = time.monotonic()
        for v in vms:
            wait_until(lambda: v.exec("curl", "-sf", URL, check=False).returncode == 0,
                       timeout=120, what=f"metadata from {v.netns}")
        served = time.monotonic() - started
        time.sleep(max(0.0, started + settle - time.monotonic()))
        bench_proxy.wait_idle(box, limit=0.1)
        pid = agent.proc.pid
        names = thread_names(pid)
        others = [p for p in bench_proxy.agent_processes(agent) if p != pid]
        hap = haproxy_pids(agent)
        before = thread_ticks(pid)
        rest_before = sum(cpu.process_ticks(p) for p in others)
        hap_before = sum(cpu.process_ticks(p) for p in hap)
        machine_before = cpu.machine_ticks()
        spying = None
        if profile and _py_spy():
            spying = subprocess.Popen([_py_spy(), "record", "-p", str(pid), "-d",
                                       str(int(seconds)), "-r", "100", "-f", "raw",
                                       "--nonblocking", "-o", profile],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(seconds)
        after = thread_ticks(pid)
        rest = sum(cpu.process_ticks(p) for p in others) - rest_before
        hap_ticks = sum(cpu.process_ticks(p) for p in hap) - hap_before
        busy, stolen = (a - b for a, b in zip(cpu.machine_ticks(), machine_before))
        if spying:
            spying.wait(timeout=30)

        def per_second(ticks: int) -> float:
            return round(ticks / cpu.HZ / seconds * 1000, 1)
        threads = sorted(({"thread": names.get(tid, f"tid {tid}"),
                           "ms_per_s": per_second(t - before.get(tid, 0))}
                          for tid, t in after.items()), key=lambda t: -t["ms_per_s"])
        agent_ms = per_second(sum(after.values()) - sum(before.get(t, 0) for t in after))
        return {"networks": networks, "seconds": seconds, "all_served_after_s": round(served, 1),
                "measured_after_agent_start_s": round(time.monotonic() - started - seconds, 1),
                "agent_ms_per_s": agent_ms, "threads": threads,
                "other_agent_processes_ms_per_s": per_second(rest),
                "haproxy_ms_per_s": per_second(hap_ticks),
                "machine_busy_ms_per_s": per_second(busy),
                **({"profile": profile} if spying else {}),
                "steal_ms_per_s": per_second(stolen)}
    finally:
        if agent:
            agent.cleanup()
        if nova:
            nova.stop()
        for v in vms:
            v.destroy()
            neutron.delete_network(box, v.network)
        if own:
            box.down()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="50,200",
                        help="comma-separated sizes, each in a fresh sandbox")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--settle", type=float, default=bench_proxy.RESYNC_SETTLE,
                        help="seconds after the agent's start before measuring")
    parser.add_argument("--profile", help="py-spy (installed separately) raw stacks of the "
                        "agent while measured, to FILE.<networks>")
    args = parser.parse_args()
    results = [measure(int(n), args.seconds, args.settle,
                       profile=f"{args.profile}.{n}" if args.profile else None)
               for n in args.networks.split(",")]
    print(json.dumps(results, indent=1))
    print(table(results))
    return 0


def table(results: list[dict]) -> str:
    lines = ["", "| networks | agent ms/s | by thread, ms/s | socket keeper etc. ms/s "
                 "| haproxy ms/s | machine busy ms/s | steal ms/s |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        by_thread = ", ".join(f"{t['thread']} {t['ms_per_s']}" for t in r["threads"]
                              if t["ms_per_s"] > 0) or "–"
        lines.append(f"| {r['networks']} | {r['agent_ms_per_s']} | {by_thread} | "
                     f"{r['other_agent_processes_ms_per_s']} | {r['haproxy_ms_per_s']} | "
                     f"{r['machine_busy_ms_per_s']} | {r['steal_ms_per_s']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
