"""Provisioning benchmark: cold start, reaction time and memory, against the real sandbox.

Cold start: from the agent's start until every VM got an HTTP 200 for its meta_data.json
(every VM probed at once, through OVN, haproxy and a nova double), and until every VM's
TCP connect succeeded. Reaction: from a VM's OVS port being added to its first TCP connect.

Prints JSON and a table. Run as root: .venv/bin/python scripts/bench_provision.py [--sizes 50,200]
Figures are measurements of this machine, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ovnmeta.core import naming
from ovnmeta.host import namespace, nssockets
from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import AgentProcess, ini_lines
from ovnmeta_testing.memory import pss_kib
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.sandbox import Sandbox
from ovnmeta_testing.vm import FakeVM

BENCH_DIR = Path("/tmp/ovnmeta-bench-sandbox")
SECRET = "bench-secret"


def connects(vm: FakeVM, timeout: float = 0.3) -> bool:
    """A TCP connect to 169.254.169.254:80 from inside the VM's namespace."""
    return nssockets.tcp_connect(vm.netns, "169.254.169.254", 80, timeout) is None


def answers_200(vm: FakeVM, timeout: float = 1.0) -> bool:
    """A GET of meta_data.json from inside the VM's namespace is answered 200."""
    with namespace.entered(vm.netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(("169.254.169.254", 80))
        sock.sendall(b"GET /openstack/latest/meta_data.json HTTP/1.1\r\n"
                     b"Host: 169.254.169.254\r\nConnection: close\r\n\r\n")
        return sock.recv(16).split(b" ")[1:2] == [b"200"]
    except (OSError, IndexError):
        return False
    finally:
        sock.close()


def connects_in(ns: str) -> bool:
    """haproxy accepts on 169.254.169.254:80, tried from inside the metadata namespace."""
    return nssockets.tcp_connect(ns, "169.254.169.254", 80, 0.05) is None


def haproxy_tree(agent: AgentProcess) -> list[int]:
    """haproxy masters from the pidfiles plus their workers."""
    pids = agent.haproxy_pids()
    workers = []
    for pid in pids:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        if children.exists():
            workers += [int(c) for c in children.read_text().split()]
    return pids + workers


def make_vms(box: Sandbox, count: int, start: int, bind: bool) -> list[FakeVM]:
    vms = []
    for i in range(start, start + count):
        cidr = f"10.{i // 250}.{i % 250}.0/24"
        net = neutron.create_network(box, cidrs=(cidr,))
        port = neutron.create_vm_port(box, net)
        vms.append(FakeVM(box, net, port).start(bind=bind))
    return vms


# The cold start: each VM's next try after a failed one, and its ARP retransmit time (the
# kernel's 1 s would add up to a second to each VM). 200 VMs probing every 100 ms, or
# resolving every 10 ms as in the reaction, loaded the two cores enough to slow the agent's
# first pass by a third: the figure's resolution is half a second.
COLD_PROBE_EVERY = 0.5
COLD_ARP_MS = 100


HAPROXY_OPTIONS = ""   # --haproxy-option lines for the agent's [haproxy]


def cold_start(box: Sandbox, mode: str, vms: list[FakeVM], nova: NovaProcess,
               direct_path: bool = True) -> dict:
    """Every VM probed at once, each by its own thread (a fresh try every 0.5 s until a
    GET is answered 200, the guests' ARP retried every 100 ms): when each VM was first
    served, not when a sequential sweep came back to it."""
    agent = AgentProcess(box, mode=mode, extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                               f"nova_metadata_port = {nova.port}")
    options = HAPROXY_OPTIONS + ("" if direct_path else "direct_path = false\n")
    agent.config.write_text(agent.config.read_text().replace(
        "[haproxy]\n", f"[haproxy]\n{options}"))
    for vm in vms:
        probe_arp_fast(vm, COLD_ARP_MS)
    served: dict[str, float] = {}
    connected: dict[str, float] = {}
    stop = threading.Event()

    def probe(vm: FakeVM) -> None:
        while not stop.is_set():
            if vm.netns not in connected and connects(vm, timeout=0.2):
                connected[vm.netns] = time.monotonic()
            if vm.netns in connected and answers_200(vm, timeout=0.5):
                served[vm.netns] = time.monotonic()
                return
            stop.wait(COLD_PROBE_EVERY)

    t0 = time.monotonic()
    agent.start()
    threads = [threading.Thread(target=probe, args=(vm,), daemon=True) for vm in vms]
    for t in threads:
        t.start()
    deadline = t0 + 300
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stop.set()
    if len(served) < len(vms):
        raise RuntimeError(f"{len(vms) - len(served)} VMs still unserved after 300 s")
    times = sorted(t - t0 for t in served.values())
    time.sleep(1.0)
    agent_pss = pss_kib([agent.proc.pid])
    haproxy_pss = pss_kib(haproxy_tree(agent))
    return {"agent": agent, "seconds": times[-1], "p50_seconds": statistics.median(times),
            "first_seconds": times[0],
            "tcp_seconds": max(connected.values()) - t0,
            "agent_pss_mib": agent_pss / 1024,
            "haproxy_pss_mib": haproxy_pss / 1024,
            "total_pss_mib": (agent_pss + haproxy_pss) / 1024,
            "haproxy_processes": len(haproxy_tree(agent))}


class _BoundWatch:
    """When the SB first showed each port bound to this chassis: one `ovsdb-client monitor`
    streaming Port_Binding changes, read in a thread (polling ovn-sbctl would cost the
    2-core machine a process every few ms, and its granularity would be that of the poll)."""

    def __init__(self, box: Sandbox) -> None:
        self._chassis = box.sbctl("--bare", "--columns=_uuid", "find", "Chassis",
                                  f"name={box.chassis}").strip()
        self.at: dict[str, float] = {}
        self._proc = subprocess.Popen(
            ["ovsdb-client", "monitor", box.sb_admin_connection.split(",")[0],
             "OVN_Southbound", "Port_Binding", "logical_port,chassis", "--format=csv"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            now = time.monotonic()
            if self._chassis and self._chassis in line:
                for field in line.strip().split(","):
                    self.at.setdefault(field.strip('"'), now)

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait()


class _ListenWatch:
    """When haproxy first accepted inside a metadata namespace, polled every PROBE_EVERY
    from a thread of its own."""

    def __init__(self) -> None:
        self.namespace = ""
        self.at: dict[str, float] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ns = self.namespace
            # ismount: the agent creates the file first, then bind-mounts the namespace on it
            if ns and ns not in self.at and os.path.ismount(f"/run/netns/{ns}") and \
                    connects_in(ns):
                self.at[ns] = time.monotonic()
            time.sleep(PROBE_EVERY)

    def stop(self) -> None:
        self._stop.set()


PROBE_EVERY = 0.002   # milestone polls
AGENT_SETTLE = 1.0    # seconds between a VM's connect and the next VM's plug
VM_CONNECT_TIMEOUT = 0.02


def probe_arp_fast(vm: FakeVM, ms: int = 10) -> None:
    """The probe starts before the metadata namespace exists. With the kernel's default
    1 s ARP retransmit, what we would time is the fake guest's ARP backoff, not the agent:
    probe ARP every 10 ms instead."""
    vm.exec("sysctl", "-qw", f"net.ipv4.neigh.eth0.retrans_time_ms={ms}")


def plug_until_connected(vm: FakeVM) -> tuple[float, float]:
    """Plug the VM's port; (monotonic time of the plug, of its first successful connect).
    A lost SYN is retried by the kernel only after 1 s: a fresh connect every
    VM_CONNECT_TIMEOUT instead."""
    # The agent idle again after the previous VM: its pass goes on after the VM connects
    # (haproxy's reload, the maps), 150-400 ms at 200 networks, longer with a bridge,
    # which serves the VM before the reload. A VM plugged meanwhile would time that wait.
    time.sleep(AGENT_SETTLE)
    t0 = time.monotonic()
    vm.plug()
    while not connects(vm, timeout=VM_CONNECT_TIMEOUT):
        if time.monotonic() - t0 > 30:
            raise RuntimeError(f"{vm.netns} not served 30 s after its port was plugged")
    return t0, time.monotonic()


def reaction(box: Sandbox, count: int, offset: int) -> dict:
    """Time from a VM's OVS port being added to its first successful connect, with two
    milestones on the way, each taken by its own watcher: the SB showing the port bound
    here (ovn-controller's share), and haproxy accepting in the metadata namespace."""
    vms = make_vms(box, count, offset, bind=False)
    for vm in vms:
        probe_arp_fast(vm)
    bound_watch, listen_watch = _BoundWatch(box), _ListenWatch()
    samples, bound, listening, share, timeline = [], [], [], [], []
    try:
        for vm in vms:
            md_ns = naming.namespace(vm.network.id)
            listen_watch.namespace = md_ns
            t0, done = plug_until_connected(vm)
            wall = time.time() - (time.monotonic() - t0)
            time.sleep(PROBE_EVERY * 2)
            t_bound = bound_watch.at.get(vm.port.name, done)
            t_listen = listen_watch.at.get(md_ns, done)
            samples.append((done - t0) * 1000)
            bound.append((t_bound - t0) * 1000)
            listening.append((t_listen - t0) * 1000)
            share.append((t_listen - t_bound) * 1000)
            # to line up with the agent's log: the plug's wall clock, then ms after it
            timeline.append({"plugged": time.strftime("%H:%M:%S", time.localtime(wall))
                             + f".{int(wall * 1000) % 1000:03d}", "bound": bound[-1],
                             "listening": listening[-1], "connected": samples[-1]})
    finally:
        bound_watch.stop()
        listen_watch.stop()
    samples.sort()
    return {"vms": count, "p50_ms": statistics.median(samples),
            "p95_ms": samples[max(0, int(len(samples) * 0.95) - 1)], "max_ms": samples[-1],
            # ovn-controller's share: until the SB says the VM port is bound here
            "ovn_bind_p50_ms": statistics.median(bound),
            # until haproxy accepts inside the metadata namespace (the agent's work done);
            # the rest is vswitchd attaching the port and ovn-controller's localport flows
            "listening_p50_ms": statistics.median(listening),
            # the "agent share": SB shows the port bound -> haproxy listening (the
            # agent may start before the SB binds, from the VM's OVS port: then it is small,
            # or negative)
            "bound_to_listening_p50_ms": statistics.median(share),
            "timeline_ms": [{k: round(v, 1) if isinstance(v, float) else v
                             for k, v in t.items()} for t in timeline]}, vms


def floor(box: Sandbox, served: list[FakeVM]) -> dict:
    """The same measure for a second VM on a network already served: namespace, localport
    and haproxy are up, the agent has nothing to do. What is left is OVS and ovn-controller
    binding the VM's port and installing its flows: the reaction's floor on this machine."""
    vms = []
    for vm in served:
        port = neutron.create_vm_port(box, vm.network)
        extra = FakeVM(box, vm.network, port).start(bind=False)
        probe_arp_fast(extra)
        vms.append(extra)
    samples = []
    try:
        for vm in vms:
            t0, done = plug_until_connected(vm)
            samples.append((done - t0) * 1000)
    finally:
        for vm in vms:
            vm.destroy()
            neutron.delete_port(box, vm.port)
    samples.sort()
    return {"vms": len(samples), "p50_ms": statistics.median(samples), "max_ms": samples[-1]}


def _keep_log(agent: AgentProcess, name: str) -> None:
    """The agent log outlives the run, for a look at where the time went."""
    Path(f"/tmp/ovnmeta-bench-{name}.log").write_text(agent.log())


def run(sizes: list[int], mode: str, reaction_vms: int, direct_path: bool = True) -> dict:
    box = Sandbox(root=BENCH_DIR)
    box.down()
    box.up()
    results: dict = {"mode": mode, "direct_path": direct_path, "cold_start": [],
                     "reaction": []}
    vms: list[FakeVM] = []
    spare: list[FakeVM] = []
    agent = None
    nova_dir = Path(tempfile.mkdtemp(prefix="ombench-"))
    nova = NovaProcess({}, SECRET, nova_dir).start()
    try:
        for size in sizes:
            vms += make_vms(box, size - len(vms), len(vms), bind=True)
            for vm in vms:
                vm.wait_bound(timeout=60)
                nova.add_instance(vm.port.device_id, {"project_id": vm.port.project_id,
                                                      "hostname": vm.port.name})
            res = cold_start(box, mode, vms, nova, direct_path)
            agent = res.pop("agent")
            res["networks"] = size
            results["cold_start"].append(res)
            r, extra = reaction(box, reaction_vms, len(vms))
            spare += extra
            r["networks"] = size
            r["floor"] = floor(box, vms[:reaction_vms // 2])
            results["reaction"].append(r)
            for vm in extra:  # the next size starts from exactly `size` networks again
                vm.destroy()
                neutron.delete_network(box, vm.network)
            _keep_log(agent, f"size-{size}")
            agent.cleanup()
            agent = None
    finally:
        if agent:
            _keep_log(agent, "failed")
            agent.cleanup()
        for vm in vms + spare:
            vm.destroy()
        nova.stop()
        shutil.rmtree(nova_dir, ignore_errors=True)
        box.down()
    return results


def table(results: dict) -> str:
    lines = [f"mode: {results['mode']}, direct_path = {results['direct_path']}",
             f"{'networks':>8} {'cold start: every VM 200 s':>26} {'half of them s':>14} "
             f"{'every TCP connect s':>19} "
             f"{'agent MiB':>10} {'haproxy MiB':>12} {'total MiB':>10} {'haproxy procs':>13}"]
    for r in results["cold_start"]:
        lines.append(f"{r['networks']:>8} {r['seconds']:>26.2f} {r['p50_seconds']:>14.2f} "
                     f"{r['tcp_seconds']:>19.2f} "
                     f"{r['agent_pss_mib']:>10.1f} "
                     f"{r['haproxy_pss_mib']:>12.1f} {r['total_pss_mib']:>10.1f} "
                     f"{r['haproxy_processes']:>13}")
    cs = results["cold_start"]
    if len(cs) >= 2:
        per = (cs[-1]["total_pss_mib"] - cs[0]["total_pss_mib"]) / (
            cs[-1]["networks"] - cs[0]["networks"])
        lines.append(f"memory per extra network: {per * 1024:.0f} KiB")
    for r in results["reaction"]:
        lines.append(f"reaction at {r['networks']} networks (OVS port added -> TCP connect "
                     f"ok), {r['vms']} VMs: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms,"
                     f" max {r['max_ms']:.0f} ms; p50 milestones: SB says bound "
                     f"{r['ovn_bind_p50_ms']:.0f} ms, haproxy listening in the namespace "
                     f"{r['listening_p50_ms']:.0f} ms; SB bound -> listening p50 "
                     f"{r['bound_to_listening_p50_ms']:.0f} ms")
        f = r["floor"]
        lines.append(f"  floor: a second VM on a network already served, {f['vms']} VMs: p50 "
                     f"{f['p50_ms']:.0f} ms, max {f['max_ms']:.0f} ms (OVS and ovn-controller "
                     "only)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="50,200")
    parser.add_argument("--mode", default="shared", choices=["shared", "per-network"])
    parser.add_argument("--reaction-vms", type=int, default=20)
    parser.add_argument("--no-direct-path", action="store_true",
                        help="[haproxy] direct_path = false")
    parser.add_argument("--haproxy-option", action="append", default=[],
                        metavar="KEY=VALUE", help="an [haproxy] option of the agent, e.g. "
                                                  "threads=0 (repeatable)")
    args = parser.parse_args()
    global HAPROXY_OPTIONS
    HAPROXY_OPTIONS = ini_lines(args.haproxy_option)
    results = run([int(s) for s in args.sizes.split(",")], args.mode, args.reaction_vms,
                  direct_path=not args.no_direct_path)
    results["haproxy_options"] = args.haproxy_option
    print(json.dumps(results, indent=1))
    print(table(results))
    if args.haproxy_option:
        print("[haproxy] " + ", ".join(args.haproxy_option))
    return 0


if __name__ == "__main__":
    sys.exit(main())
