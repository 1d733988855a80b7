"""Soak: networks and VMs created and deleted without pause for N minutes while every live
VM is probed, then everything deleted and the host checked for leftovers.

Reports the agent's RSS and open file descriptors at the start (after a warm-up) and the
end, what is left on the host once no VM remains (namespaces, veths, OVS ports, haproxy
frontends), and the requests to live VMs that failed. Used by scripts/soak.py and, for two
minutes, by tests/sandbox/test_soak.py.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field

from ovnmeta.agent import control
from ovnmeta.core import naming
from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import AgentProcess, namespaces
from ovnmeta_testing.memory import rss_kib
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.prober import Prober, Target
from ovnmeta_testing.sandbox import Sandbox, wait_until
from ovnmeta_testing.vm import FakeVM

SECRET = "soak-secret"
MAX_NETWORKS = 6
MAX_VMS_PER_NETWORK = 2


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> dict[str, int]:
    """The agent's open fds by kind (socket, pipe, anon_inode:[eventpoll], a file's
    directory): what grows, when the count does."""
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/"):
            kind = os.path.dirname(target)
        elif target.startswith("anon_inode:"):
            kind = target
        else:
            kind = target.split(":", 1)[0]          # socket, pipe
        kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


@dataclass
class _Cloud:
    box: Sandbox
    nova: NovaProcess
    prober: Prober
    nets: dict[str, neutron.Network] = field(default_factory=dict)
    vms: dict[str, list[tuple[FakeVM, Target]]] = field(default_factory=dict)
    counter: int = 0
    ops: dict[str, int] = field(default_factory=dict)

    def add_network(self) -> None:
        self.counter += 1
        i = self.counter % 250
        net = neutron.create_network(self.box, cidrs=(f"10.{i}.0.0/24",))
        self.nets[net.id] = net
        self.vms[net.id] = []
        self.add_vm(net.id)

    def add_vm(self, net_id: str) -> None:
        net = self.nets[net_id]
        port = neutron.create_vm_port(self.box, net)
        self.nova.add_instance(port.device_id, {"project_id": port.project_id,
                                                "hostname": f"soak-{self.counter}"})
        vm = FakeVM(self.box, net, port).start()
        # Probed only once served: provisioning time is not a failure.
        wait_until(lambda: vm.exec("curl", "-sf", "-m", "1",
                                   "http://169.254.169.254/openstack/latest/meta_data.json",
                                   check=False).returncode == 0,
                   timeout=30, what=f"new VM {vm.netns} served")
        self.vms[net_id].append((vm, self.prober.add(vm.netns, port.device_id)))

    def delete_vm(self, net_id: str) -> None:
        vm, target = self.vms[net_id].pop()
        self.prober.remove(target)
        vm.destroy()
        neutron.delete_port(self.box, vm.port)

    def delete_network(self, net_id: str) -> None:
        while self.vms[net_id]:
            self.delete_vm(net_id)
        neutron.delete_network(self.box, self.nets.pop(net_id))
        del self.vms[net_id]

    def step(self, rng: random.Random) -> None:
        choices = ["add_network"] if len(self.nets) < MAX_NETWORKS else []
        if self.nets:
            choices += ["delete_network", "delete_vm", "add_vm"]
        op = rng.choice(choices)
        self.ops[op] = self.ops.get(op, 0) + 1
        if op == "add_network":
            self.add_network()
            return
        net_id = rng.choice(sorted(self.nets))
        if op == "add_vm" and len(self.vms[net_id]) < MAX_VMS_PER_NETWORK:
            self.add_vm(net_id)
        elif op == "delete_vm" and len(self.vms[net_id]) > 1:
            self.delete_vm(net_id)
        elif op == "delete_network":
            self.delete_network(net_id)


def leftovers(box: Sandbox, agent: AgentProcess) -> dict[str, list[str]]:
    ovs = box.vsctl("--bare", "--columns=name", "list", "Interface").split()
    cfg = agent.state_dir / "haproxy" / "shared.cfg"
    frontends = [line.split()[1] for line in
                 (cfg.read_text().splitlines() if cfg.exists() else [])
                 if line.startswith("frontend ")]
    return {
        "namespaces": sorted(n for n in namespaces() if n.startswith(naming.NAMESPACE_PREFIX)),
        "veths": sorted(d for d in os.listdir("/sys/class/net") if d.startswith("omt")),
        "ovs_ports": sorted(n for n in ovs if n.startswith("omt")),
        "haproxy_frontends": frontends,
        # Bridges ([haproxy] bridges) still there: their config files, gone with them.
        "haproxy_bridges": sorted(p.name for p in (agent.state_dir / "haproxy").glob(
            "bridge-*.cfg")),
    }


def memory(agent: AgentProcess, top: int = 300) -> dict:
    """The agent's /memory answer (tracemalloc's top lines), or why there is none."""
    try:
        return control.request(str(agent.state_dir / control.CONTROL_SOCKET),
                               f"/memory?top={top}", timeout=30)[1]
    except (OSError, ValueError) as exc:
        return {"error": str(exc)}


def grown(start: dict, end: dict) -> list[dict]:
    """Lines whose traced memory grew between two /memory answers, most first (both list
    the top 300, so a line missing at the start was small there, not absent)."""
    before = {t["where"]: t["kib"] for t in start.get("top", [])}
    rows = [{"where": t["where"], "kib_start": before.get(t["where"], 0.0),
             "kib_end": t["kib"], "count_end": t["count"]} for t in end.get("top", [])]
    return sorted((r for r in rows if r["kib_end"] > r["kib_start"]),
                  key=lambda r: r["kib_start"] - r["kib_end"])


def settled(samples: list[dict], after: float = 10.0, window: float = 10.0) -> dict:
    """RSS and fds once the first `after` minutes are over: their ranges, and the fewest
    fds in each `window` minutes. A sample can catch connections in flight (a probe's, a
    haproxy check's); a leak raises the fewest as well, so that is the count to watch."""
    late = [s for s in samples if s["minute"] >= after]
    if not late:
        return {}
    floors: dict[int, int] = {}
    for s in late:
        slot = int((s["minute"] - after) // window)
        floors[slot] = min(floors.get(slot, s["fds"]), s["fds"])
    rss = [s["rss_kib"] / 1024 for s in late]
    return {"after_minute": after, "samples": len(late),
            "rss_mib_min": round(min(rss), 1), "rss_mib_max": round(max(rss), 1),
            "fds_min": min(s["fds"] for s in late), "fds_max": max(s["fds"] for s in late),
            "fds_fewest_per_window": [floors[k] for k in sorted(floors)],
            "window_minutes": window}


def run(box: Sandbox, minutes: float, seed: int = 1, warmup: float = 20.0,
        sample_every: float = 60.0, trace: int = 0) -> dict:
    """`sample_every` seconds the agent's RSS and fds go into `samples` (a leak grows for
    good, a high-water mark levels off); with `trace` the agent runs under tracemalloc and
    its top allocation lines (stacks of `trace` frames) at the start and the end are
    compared. A snapshot costs the agent tens of MiB it keeps as a high-water mark: RSS is
    read before each one, and only an untraced run's RSS is the agent's own."""
    rng = random.Random(seed)
    agent = AgentProcess(box)
    if trace:
        agent.env["PYTHONTRACEMALLOC"] = str(int(trace))
    nova = NovaProcess({}, SECRET, agent.state_dir).start()
    agent.config.write_text(agent.config.read_text().replace(
        "[DEFAULT]\n", f"[DEFAULT]\nmetadata_proxy_shared_secret = {SECRET}\n"
                       f"nova_metadata_port = {nova.port}\n", 1))
    prober = Prober(interval=0.2)
    cloud = _Cloud(box, nova, prober)
    result: dict = {"minutes": minutes, "seed": seed}
    try:
        agent.start()
        prober.start()
        end = time.monotonic() + minutes * 60
        warm_until = time.monotonic() + min(warmup, minutes * 60 / 4)
        start_rss = start_fds = start_kinds = None
        began, samples, next_sample, traced_start = time.monotonic(), [], 0.0, {}
        while time.monotonic() < end:
            cloud.step(rng)
            now = time.monotonic()
            if start_rss is None and now >= warm_until:
                start_rss, start_fds = rss_kib(agent.proc.pid), fds(agent.proc.pid)
                start_kinds = fd_kinds(agent.proc.pid)
                traced_start = memory(agent) if trace else {}
            if now >= next_sample:
                samples.append({"minute": round((now - began) / 60, 2),
                                "rss_kib": rss_kib(agent.proc.pid),
                                "fds": fds(agent.proc.pid), "networks": len(cloud.nets)})
                next_sample = now + sample_every
        end_rss = rss_kib(agent.proc.pid)
        traced_end = memory(agent) if trace else {}
        for net_id in sorted(cloud.nets):
            cloud.delete_network(net_id)
        prober.stop()
        try:
            wait_until(lambda: not any(leftovers(box, agent).values()), timeout=30,
                       what="nothing left", interval=0.5)
        except Exception:  # reported below, with what is left
            pass
        report = prober.report()
        result.update({
            "operations": cloud.ops,
            "vms_probed": len(report),
            "probes": sum(r["probes"] for r in report.values()),
            "failed_to_live_vms": sum(r["failed"] for r in report.values()),
            "wrong": sum(r["wrong"] for r in report.values()),
            "failures": {name: {"errors": r["errors"], "at": r["failed_at"]}
                         for name, r in report.items() if r["failed"] or r["wrong"]},
            "rss_kib_start": start_rss, "rss_kib_end": end_rss,
            "fds_start": start_fds, "fds_end": fds(agent.proc.pid),
            "fd_kinds_start": start_kinds, "fd_kinds_end": fd_kinds(agent.proc.pid),
            "left": leftovers(box, agent),
            "samples": samples,
            "settled": settled(samples),
            **({"traced_kib_start": traced_start.get("traced_kib"),
                "traced_kib_end": traced_end.get("traced_kib"),
                "traced_grown": grown(traced_start, traced_end)[:15]} if trace else {}),
            "agent_running": agent.running(),
            "tracebacks": agent.log().count("Traceback"),
        })
        return result
    finally:
        prober.stop()
        for net_id in sorted(cloud.nets):
            try:
                cloud.delete_network(net_id)
            except Exception:  # cleanup below still runs
                pass
        agent.cleanup()
        nova.stop()
