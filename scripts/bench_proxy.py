"""Proxy benchmark: wrk from a VM through OVN → haproxy → "nova", by the direct path (haproxy
signs from the agent's maps) or, with --no-direct-path, through the agent.

"nova" here is a constant backend written in C: nginx on loopback answering every request
with `return 200` and the body the nova double gives this VM. The ceiling, measured in the
same run, is the fastest way haproxy reaches it the way the agent reaches nova: a haproxy in
the root namespace bound in the VM's namespace (`bind … namespace`), static signed headers,
over TCP to the same nginx with the same keep-alive policy as the agent's haproxy. So the
share of the ceiling measures what ovnmeta adds (its maps, its header rules, its shared
haproxy's frontends, the agent's own CPU), not a test double. Agent and ceiling are measured
in alternation, `--rounds` times each (after a short uncounted run of each; the even rounds
measure the ceiling first), from 65 s after the agent's start (its rolling resync runs by
then, as it does for good), with an empty SB and with extra unrelated
Port_Binding rows; the agent's CPU time per request is read from /proc around each run, and
the PSS of the agent (with its workers) and haproxy after it. `--networks N` makes N
networks with one VM each (wrk runs from the first), as a compute node serving N networks.
Prints JSON and a table; asserts nothing.

    .venv/bin/python scripts/bench_proxy.py [--networks 50] [--workers 1] [--extra-ports 0]
                                            [--rounds 2] [--no-direct-path] [--cache]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ovnmeta.agent import control
from ovnmeta.core import naming
from ovnmeta.host import procs
from ovnmeta.haproxy.runtime import stat_rows, stats_command
from ovnmeta.haproxy.novawatch import NOVA_BACKENDS
from ovnmeta.haproxy.settings import shared_stats_socket
from ovnmeta.core.signing import sign_instance_id
from ovnmeta_testing import benchconfigs, cpu
from ovnmeta_testing.agentproc import (AgentProcess, agent_processes, ini_lines,
                                      wait_until)
from ovnmeta_testing.memory import pss_kib, rollup_kib
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.sandbox import Sandbox, free_port, alive
from ovnmeta_testing.vm import FakeVM, one_per_network

BENCH_DIR = Path("/tmp/ovnmeta-bench-sandbox")
SECRET = "bench-secret"
PATH = "/openstack/latest/meta_data.json"
CEILING_PORT = 8080




def start_nginx(work: Path, port: int, body: str) -> int:
    cfg = work / "nginx.conf"
    cfg.write_text(benchconfigs.constant_nginx(
        dir=work, port=port, body=body.replace("\\", "\\\\").replace("'", "\\'")))
    subprocess.run(["nginx", "-c", str(cfg), "-p", str(work)], check=True)
    return int((work / "nginx.pid").read_text())


def wrk(vm: FakeVM, url: str, connections: int, seconds: int) -> dict:
    out = vm.exec("wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url,
                  timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"),
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock_errors.group(1) if sock_errors else ""}


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group(0))
    if text.endswith("us"):
        return value / 1000
    if text.endswith("ms"):
        return value
    if text.endswith("s"):
        return value * 1000
    return value


def add_unrelated_ports(box: Sandbox, count: int, per_switch: int = 500) -> None:
    """Ports on other switches, bound nowhere: a big cloud this chassis does not serve."""
    made = 0
    while made < count:
        switch = f"bench-other-{made // per_switch}"
        args = ["--", "ls-add", switch]
        for i in range(min(per_switch, count - made)):
            name = f"{switch}-p{i}"
            mac = f"fa:16:3f:{(made + i) >> 16 & 255:02x}:{(made + i) >> 8 & 255:02x}:" \
                  f"{(made + i) & 255:02x}"
            args += ["--", "lsp-add", switch, name, "--", "lsp-set-addresses", name,
                     f"{mac} 172.16.{(i >> 8) & 255}.{i & 255}"]
        box.nbctl(*args)
        made += min(per_switch, count - made)
    box.wait_for(lambda: int(box.sbctl("--bare", "--columns=_uuid", "list", "Port_Binding")
                             .count("\n")) >= count, what=f"{count} Port_Bindings in the SB",
                 timeout=300, interval=1)


def restart_under_load(vm: FakeVM, agent: AgentProcess, connections: int,
                       seconds: int) -> dict:
    """wrk through the agent while the agent is stopped and started again mid-run."""
    result: dict = {}
    load = threading.Thread(target=lambda: result.update(
        wrk(vm, f"http://169.254.169.254{PATH}", connections, seconds)))
    before = _ready_check(agent)
    load.start()
    time.sleep(seconds / 3)
    result_restart_s = agent.restart()
    load.join()
    after = _ready_check(agent)
    return {**result, "restart_seconds": result_restart_s,
            # haproxy's readiness check of the agent failing turns the direct path off
            "direct_path_off_times": (int(after["chkdown"]) - int(before["chkdown"])
                                      if before and after else None)}


def _ready_check(agent: AgentProcess) -> dict[str, str] | None:
    """haproxy's row for its readiness check of the agent (None without the direct path)."""
    try:
        csv = stats_command(shared_stats_socket(agent.state_dir / "haproxy"), "show stat")
    except OSError:
        return None
    return next((r for r in stat_rows(csv)
                 if r.get("pxname") == "ovnmeta_ready" and r.get("svname") == "agent"), None)


def wait_idle(box: Sandbox, limit: float = 0.05, timeout: float = 120,
              also: list[int] = ()) -> None:
    """Until northd, ovn-controller and the DB servers (and `also`: the agent, just
    restarted, finishing its first passes) use under `limit` of a core."""
    pids = [p for p in box.status().values() if p] + list(also)
    hz = cpu.HZ
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu.stat_ticks(p) for p in pids)
        time.sleep(1.0)
        if (sum(cpu.stat_ticks(p) for p in pids) - before) / hz < limit:
            return


def _agent_ticks(agent: AgentProcess) -> int:
    """CPU ticks of the agent and its workers."""
    return sum(cpu.stat_ticks(p) for p in agent_processes(agent) if alive(p))


def _args(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
    except OSError:
        return "?"


def pss_mib(pids: list[int]) -> float:
    return round(pss_kib(pids) / 1024, 1)


PROFILE: Path | None = None  # --profile: py-spy's collapsed stacks of the agent during wrk
# --pin: CPU of both haproxys and CPU of ovs-vswitchd, set again before every round (a
# reload makes new haproxy workers).
PIN: dict[str, int] = {}


def _pin_round(vm: FakeVM, agent: AgentProcess) -> None:
    """The same placement for both paths: their haproxys share one CPU and ovs-vswitchd,
    whose main thread forwards every packet of the userspace datapath, has the other.
    Takes the scheduler's placement out of the comparison (it did not take out the two
    latency modes the README describes: those are below haproxy)."""
    if not PIN:
        return
    haproxys = agent.haproxy_pids() + CEILING_HAPROXY
    cpu.pin(haproxys + [c for p in haproxys for c in procs.children(p)], PIN["haproxy"])
    cpu.pin([vm.box.pid("ovs-vswitchd") or 0], PIN["ovs"])


def measure(vm: FakeVM, agent: AgentProcess, connections: int, seconds: int,
            ceiling_first: bool = False) -> dict:
    """One round: the agent's path and the ceiling, one after the other."""
    _pin_round(vm, agent)
    ceiling = _measure_ceiling(vm, connections, seconds) if ceiling_first else None
    through = _measure_agent(vm, agent, connections, seconds)
    if ceiling is None:
        ceiling = _measure_ceiling(vm, connections, seconds)
    return {"agent": through, "ceiling": ceiling, "ratio": through["rps"] / ceiling["rps"],
            "p99_ratio": through["p99_ms"] / ceiling["p99_ms"],
            "first": "ceiling" if ceiling_first else "agent"}


CEILING_HAPROXY: list[int] = []   # the ceiling's haproxy, once started


def _haproxy_ticks(pids: list[int]) -> int:
    return sum(cpu.process_ticks(p, children=True) for p in pids)


def _per_request_us(ticks: int, result: dict, seconds: int) -> float:
    """CPU time per request: unlike req/s, little moved by what else the machine runs."""
    return round(ticks / cpu.HZ / max(1.0, result["rps"] * seconds) * 1e6, 1)


def _measure_ceiling(vm: FakeVM, connections: int, seconds: int) -> dict:
    shares = cpu.CpuShares({})
    before = _haproxy_ticks(CEILING_HAPROXY)
    ceiling = wrk(vm, f"http://169.254.169.254:{CEILING_PORT}{PATH}", connections, seconds)
    ceiling["haproxy_cpu_us_per_request"] = _per_request_us(
        _haproxy_ticks(CEILING_HAPROXY) - before, ceiling, seconds)
    ceiling["stolen_ms_per_s"] = shares.result()["stolen"]
    return ceiling


PROFILED: list[str] = []     # the profiles written, one per agent round, in order


def _measure_agent(vm: FakeVM, agent: AgentProcess, connections: int, seconds: int) -> dict:
    hz = cpu.HZ
    spy = None
    if PROFILE:
        out = f"{PROFILE}.{len(PROFILED) + 1}"
        PROFILED.append(out)
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-f",
                                "raw", "-o", out, "-d", str(seconds), "-p",
                                str(agent.proc.pid), "-s"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = _agent_ticks(agent)
    haproxy = agent.haproxy_pids()
    haproxy_before = _haproxy_ticks(haproxy)
    direct_before = direct_counts(agent)
    shares = cpu.CpuShares({})
    through = wrk(vm, f"http://169.254.169.254{PATH}", connections, seconds)
    through["stolen_ms_per_s"] = shares.result()["stolen"]
    # haproxy's master and workers: a reload during the run would make this a guess.
    through["haproxy_cpu_us_per_request"] = _per_request_us(
        _haproxy_ticks(haproxy) - haproxy_before, through, seconds)
    if spy:
        spy.wait(30)
    agent_cpu = (_agent_ticks(agent) - before) / hz
    through["agent_cpu_us_per_request"] = round(
        agent_cpu / max(1.0, through["rps"] * seconds) * 1e6, 1)
    # How many of the requests took the direct path, and how often haproxy's checks turned
    # it off (the ready check on the agent, or nova marked down): the rest went via the agent.
    direct_after = direct_counts(agent)
    through["direct"] = {k: direct_after.get(k, 0) - direct_before.get(k, 0)
                         for k in direct_after}
    agent_pids = agent_processes(agent)
    haproxy = agent.haproxy_pids()
    haproxy += [c for p in list(haproxy) for c in procs.children(p)]
    through["pss_mib"] = {"agent": pss_mib(agent_pids), "haproxy": pss_mib(haproxy)}
    # Per process of the agent's tree: what a worker costs is its private memory.
    through["agent_processes"] = [
        {"pid": pid, "args": _args(pid), "pss_mib": round(r.get("Pss", 0) / 1024, 1),
         "private_mib": round((r.get("Private_Clean", 0) + r.get("Private_Dirty", 0))
                              / 1024, 1)}
        for pid in agent_pids for r in [rollup_kib(pid)]]
    # What the machine would get back if the workers (and a zygote) exited: their private
    # pages. PSS also moves shares of pages they map with processes outside the agent
    # (the interpreter's files), which stay in memory either way.
    through["workers_private_mib"] = round(sum(
        p["private_mib"] for p in through["agent_processes"]
        if p["pid"] != agent.proc.pid and "ovnmeta.agent.handoff" not in p["args"]), 1)
    return through


WARMUP_SECONDS = 2
RESYNC_SETTLE = 65   # s after the agent's start: reconcile_interval (60) and its first pass


def measure_rounds(vm: FakeVM, agent: AgentProcess, connections: int, seconds: int,
                   rounds: int) -> dict:
    """`rounds` rounds, each reported, and their sums. The first wrk after a pause is the
    slowest (the agent's first round was its slowest in five of seven runs when it always
    went first), so both paths get a short run that is not counted, and the rounds
    alternate which path goes first."""
    for url in (f"http://169.254.169.254{PATH}",
                f"http://169.254.169.254:{CEILING_PORT}{PATH}"):
        wrk(vm, url, connections, WARMUP_SECONDS)
    each = [measure(vm, agent, connections, seconds, ceiling_first=bool(i % 2))
            for i in range(rounds)]
    agent_rps = sum(r["agent"]["rps"] for r in each)
    ceiling_rps = sum(r["ceiling"]["rps"] for r in each)
    agent_p99 = sum(r["agent"]["p99_ms"] for r in each) / rounds
    ceiling_p99 = sum(r["ceiling"]["p99_ms"] for r in each) / rounds
    return {**each[-1], "rounds": each, "ratio": agent_rps / ceiling_rps,
            "p99_ratio": agent_p99 / ceiling_p99}


def direct_counts(agent: AgentProcess) -> dict[str, int]:
    """The shared haproxy's direct-path counters: requests sent straight to nova, and the
    ready and nova servers' UP→DOWN transitions."""
    try:
        csv = stats_command(shared_stats_socket(agent.state_dir / "haproxy"),
                            "show stat -1 6 -1")
    except OSError:
        return {}
    out = {}
    for v in stat_rows(csv):
        if v.get("pxname") in NOVA_BACKENDS and v.get("svname") == "BACKEND":
            out["requests"] = out.get("requests", 0) + int(v.get("stot") or 0)
        elif v.get("pxname") in ("ovnmeta_nova", "ovnmeta_ready") and v.get("svname") != "BACKEND":
            key = "ready_down" if v["pxname"] == "ovnmeta_ready" else "nova_down"
            out[key] = out.get(key, 0) + int(v.get("chkdown") or 0)
    return out


def start_haproxy(cfg: Path, text: str) -> int:
    cfg.write_text(text)
    pidfile = cfg.with_suffix(".pid")
    subprocess.run(["haproxy", "-D", "-p", str(pidfile), "-f", str(cfg)], check=True)
    return int(pidfile.read_text().split()[0])


def run(extra_ports: int, connections: int, seconds: int, networks: int = 1,
        workers: int = 1, direct_path: bool = True, rounds: int = 2, threads: int = 1,
        haproxy_options: tuple[str, ...] = (), cache: bool = False) -> dict:
    box = Sandbox(root=BENCH_DIR)
    box.down()
    box.up()
    work = Path(tempfile.mkdtemp(prefix="ombench-"))
    vms: list[FakeVM] = []
    one_per_network(box, networks, vms)
    vm = vms[0]
    net, port = vm.network, vm.port
    nova = NovaProcess({v.port.device_id: {"project_id": v.port.project_id, "hostname": "bench"}
                        for v in vms}, SECRET, work).start()
    constant_port = free_port()
    agent = AgentProcess(box, extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                    f"nova_metadata_port = {nova.port}\ndebug = false\n"
                                    f"metadata_workers = {workers}")
    agent.config.write_text(agent.config.read_text().replace(
        "[haproxy]\n", f"[haproxy]\nthreads = {threads}\n"
                       + ("" if direct_path else "direct_path = false\n")
                       + ini_lines(list(haproxy_options))))
    if cache:   # the harness writes it off; --cache measures the default
        agent.config.write_text(agent.config.read_text().replace(
            "[metadata_cache]\nenabled = false\n", "[metadata_cache]\nenabled = true\n"))
    pids: list[int] = []
    try:
        agent.start()
        url = f"http://169.254.169.254{PATH}"
        for v in vms:
            wait_until(lambda: v.exec("curl", "-sf", url, check=False).returncode == 0,
                       timeout=60, what=f"agent path from {v.netns}")
        # The body nova gives this VM, through the agent, becomes the constant backend's.
        body = work / "meta_data.json"
        body.write_text(vm.exec("curl", "-sf", url).stdout)
        pids.append(start_nginx(work, constant_port, body.read_text()))
        agent.stop()
        agent.config.write_text(agent.config.read_text().replace(
            f"nova_metadata_port = {nova.port}", f"nova_metadata_port = {constant_port}"))
        nova.stop()
        agent.start()
        started = time.monotonic()
        wait_until(lambda: vm.exec("curl", "-sf", url, check=False).stdout == body.read_text(),
                   timeout=30, what="agent path to the constant backend")
        ns = naming.namespace(net.id)
        CEILING_HAPROXY[:] = [start_haproxy(work / "ceiling.cfg", benchconfigs.ceiling_haproxy(
            port=CEILING_PORT, nbthread=f"nbthread {threads}" if threads else "", namespace=ns,
            instance=port.device_id, project=port.project_id,
            signature=sign_instance_id(SECRET, port.device_id), nova_port=constant_port))]
        pids += CEILING_HAPROXY
        wait_idle(box, limit=0.1, also=agent_processes(agent))
        # The rolling resync starts one reconcile_interval after the first pass and then
        # never stops (a few networks a second, 40-60 ms of CPU a second at 200 networks):
        # measure the agent as it runs for good, not in the quiet minute before.
        time.sleep(max(0.0, started + RESYNC_SETTLE - time.monotonic()))
        results = {"connections": connections, "seconds": seconds, "networks": networks,
                   "metadata_workers": workers, "direct_path": direct_path,
                   "metadata_cache": cache,
                   "haproxy_threads": threads or "one per CPU",
                   "backend": "nginx return 200 (C), "
                              f"{len(body.read_text())}-byte meta_data.json",
                   "ceiling": "haproxy in the root namespace, bind … namespace, TCP to nginx",
                   "haproxy_options": list(haproxy_options),
                   "pinned": dict(PIN),
                   "rounds": rounds, "warmup_seconds": WARMUP_SECONDS,
                   "measured_after_agent_start_s": RESYNC_SETTLE, "runs": []}
        res = measure_rounds(vm, agent, connections, seconds, rounds)
        res["extra_port_bindings"] = 0
        results["runs"].append(res)
        if extra_ports:
            add_unrelated_ports(box, extra_ports)
            box.nbctl("--wait=hv", "sync")
            # the OVN daemons' catch-up must not land in the agent's run
            wait_idle(box, limit=0.1, also=agent_processes(agent))
            res = measure_rounds(vm, agent, connections, seconds, rounds)
            res["extra_port_bindings"] = extra_ports
            results["runs"].append(res)
        results["restart"] = restart_under_load(vm, agent, connections, seconds)
        if PROFILED:
            results["profiles"] = list(PROFILED)
        code, status = control.request(str(agent.state_dir / control.CONTROL_SOCKET),
                                       "/status")
        results["agent_sb_rows"] = status["sb_rows"]
        # What the agent did to haproxy, for runs whose counters reset (a reload mid-run).
        results["agent_haproxy_log"] = [line for line in agent.log().splitlines()
                                        if "haproxy" in line and " INFO " in line
                                        or " WARNING " in line or " ERROR " in line][-20:]
        return results
    finally:
        for pid in pids:
            if alive(pid):
                subprocess.run(["kill", str(pid)])
        agent.cleanup()
        nova.stop()
        for v in vms:
            v.destroy()
        box.down()
        subprocess.run(["rm", "-rf", str(work)])


def table(results: dict) -> str:
    lines = [f"wrk -t1 -c{results['connections']} -d{results['seconds']}s, path {PATH}; "
             f"{results['networks']} networks, metadata_workers = "
             f"{results['metadata_workers']}, direct_path = {results['direct_path']}, "
             f"haproxy threads (both) {results['haproxy_threads']}; "
             + "".join(f"[haproxy] {o}; " for o in results.get("haproxy_options", ()))
             + f"backend: {results['backend']}; ceiling: {results['ceiling']}; "
             f"{results['rounds']} rounds after a {results.get('warmup_seconds', 0)} s "
             f"warm-up of each, the ceiling first in the even ones"
             + ("; pinned: both haproxys on CPU {haproxy}, ovs-vswitchd on CPU {ovs}".format(
                 **results["pinned"]) if results.get("pinned") else ""),
             f"{'extra PBs':>9} {'round':>5} {'agent req/s':>11} {'p50 ms':>7} {'p99 ms':>7} "
             f"{'ceiling req/s':>13} {'p50 ms':>7} {'p99 ms':>7} {'share':>6} {'p99 x':>6} "
             f"{'errors':>6} {'agent CPU µs/req':>16} {'haproxy CPU µs/req, agent / ceiling':>35} "
             f"{'PSS agent+haproxy MiB':>21} "
             f"{'workers private MiB':>19} {'stolen ms/s':>11}"]
    for r in results["runs"]:
        for i, one in enumerate(r["rounds"], 1):
            a, c = one["agent"], one["ceiling"]
            lines.append(f"{r['extra_port_bindings']:>9} {i:>5} {a['rps']:>11.0f} "
                         f"{a['p50_ms']:>7.2f} {a['p99_ms']:>7.2f} {c['rps']:>13.0f} "
                         f"{c['p50_ms']:>7.2f} {c['p99_ms']:>7.2f} {one['ratio']:>6.1%} "
                         f"{one['p99_ratio']:>6.2f} {a['non_2xx']:>6} "
                         f"{a['agent_cpu_us_per_request']:>16} "
                         f"{a.get('haproxy_cpu_us_per_request', '-')!s:>17} / "
                         f"{c.get('haproxy_cpu_us_per_request', '-')!s:<15} "
                         f"{a['pss_mib']['agent']:>9} + {a['pss_mib']['haproxy']:<9} "
                         f"{a.get('workers_private_mib', 0):>19} "
                         f"{a.get('stolen_ms_per_s', '-')!s:>5} /{c.get('stolen_ms_per_s', '-')!s:>4}")
        lines.append(f"{r['extra_port_bindings']:>9} {'all':>5} share of the ceiling "
                     f"{r['ratio']:.1%} (sums of req/s), p99 {r['p99_ratio']:.2f}× "
                     f"the ceiling's (means)")
    r = results.get("restart")
    if r:
        lines.append(f"agent restarted during wrk: {r['rps']:.0f} req/s over the run, "
                     f"p99 {r['p99_ms']:.1f} ms, non-2xx {r['non_2xx']}, socket errors "
                     f"{r['socket_errors'] or 'none'} (stop to serving again: "
                     f"{r['restart_seconds']:.2f} s; direct path turned off "
                     f"{r.get('direct_path_off_times', '-')} time(s))")
    if len(results["runs"]) == 2:
        base, big = (sum(one["agent"]["rps"] for one in r["rounds"])
                     for r in results["runs"])
        lines.append(f"agent req/s with extra rows vs empty SB: {big / base - 1:+.1%}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--networks", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="metadata_workers")
    parser.add_argument("--extra-ports", type=int, default=0)
    parser.add_argument("--no-direct-path", action="store_true",
                        help="[haproxy] direct_path = false: every request through the agent")
    parser.add_argument("--profile", help="py-spy (installed separately) collapsed stacks "
                                          "of the agent during each of its rounds, to "
                                          "FILE.1, FILE.2, … in the order they ran")
    parser.add_argument("--haproxy-threads", type=int, default=1,
                        help="nbthread of both the agent's haproxy ([haproxy] threads) and "
                             "the ceiling's; 0: haproxy's default, one per CPU")
    parser.add_argument("--haproxy-option", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="an [haproxy] option of the agent, e.g. nova_vm_maxconn=0 "
                             "(repeatable)")
    parser.add_argument("--cache", action="store_true",
                        help="[metadata_cache] on (the default; off here unless given): "
                             "repeated GETs are answered by haproxy's cache")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of agent and ceiling, each reported; the even "
                             "ones measure the ceiling first")
    parser.add_argument("--pin", action="store_true",
                        help="both haproxys (agent's and ceiling's) on CPU 0 and "
                             "ovs-vswitchd on CPU 1 before every round, so that both paths "
                             "get the same placement")
    args = parser.parse_args()
    global PROFILE
    PROFILE = Path(args.profile) if args.profile else None
    if args.pin:
        if not {0, 1} <= os.sched_getaffinity(0):
            parser.error("--pin needs CPUs 0 and 1")
        PIN.update(haproxy=0, ovs=1)
    results = run(args.extra_ports, args.connections, args.duration, args.networks,
                  args.workers, direct_path=not args.no_direct_path, rounds=args.rounds,
                  threads=args.haproxy_threads, haproxy_options=tuple(args.haproxy_option),
                  cache=args.cache)
    print(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
