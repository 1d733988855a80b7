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

Run as root (outside CI):
  python3 -m venv /tmp/nvenv && /tmp/nvenv/bin/pip install neutron==29.0.0
  .venv/bin/python scripts/bench_sb_scale.py --neutron-venv /tmp/nvenv \
      [--agents 25,50,100,200] [--layouts direct,relay] [--kinds ovnmeta,neutron]
Prints JSON (also to `--json`) and a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = Path("/tmp/ovnmeta-bench-sb-scale")
SB_CFG_SUFFIX = "-sb-cfg"


# ---------------------------------------------------------------------------------------
# The worker: a process hosting several agents of one kind. Imports only the stdlib at the
# top, since it runs under neutron's virtualenv too.
# ---------------------------------------------------------------------------------------
def _mem() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            out["rss_kib"] = int(line.split()[1])
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            out["pss_kib"] = int(line.split()[1])
    return out


def _say(**msg) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


class _OvnmetaAgent:
    def __init__(self, chassis: str, remote: str, plugged: list[str]) -> None:
        from ovnmeta.ovsdb.sbview import SbView
        self.view = SbView(remote, chassis, lambda dirty: None, bridge="br-int")
        self.view.watch_plugged(frozenset(plugged))

    def start(self) -> None:
        self.view.start()

    @property
    def idl(self):
        return self.view._idl

    def loaded(self) -> bool:
        return self.view.settled and _monitoring(self.idl) and _conditions_settled(self.idl)

    def rows(self) -> dict:
        return self.view.monitored_rows


class _NeutronAgent:
    def __init__(self, chassis: str, remote: str, plugged: list[str]) -> None:
        self.chassis, self.remote = chassis, remote
        self.sb_idl = None
        self._idl = None

    def start(self) -> None:
        from neutron.agent.ovn.metadata import agent as meta_agent
        from neutron.agent.ovn.metadata import ovsdb as meta_ovsdb
        # As the metadata agent's start() does, with only the event that writes liveness:
        # the port events would provision namespaces (they match the rows the IDL holds
        # either way).
        tables = ('Encap', 'Port_Binding', 'Datapath_Binding', 'SB_Global', 'Chassis',
                  'Chassis_Private')
        events = (meta_agent.SbGlobalUpdateEvent(self),)
        idl = meta_ovsdb.MetadataAgentOvnSbIdl(chassis=self.chassis, tables=tables,
                                               events=events)
        self._idl = idl
        self.sb_idl = idl.start()

    @property
    def idl(self):
        return self._idl

    def loaded(self) -> bool:
        return self.sb_idl is not None and _monitoring(self._idl)

    def rows(self) -> dict:
        return {t: len(self._idl.tables[t].rows) for t in self._idl.tables}


def _monitoring(idl) -> bool:
    return idl is not None and idl._session.is_connected() and \
        idl.state == idl.IDL_S_MONITORING


def _conditions_settled(idl) -> bool:
    return not any(t._condition_state.new is not None or t._condition_state.requested
                   is not None for t in idl.tables.values())


def _setup_neutron(remote: str) -> None:
    from oslo_config import cfg
    from neutron.conf.agent.database import agents_db
    from neutron.conf.plugins.ml2.drivers.ovn import ovn_conf
    ovn_conf.register_opts()
    agents_db.register_db_agents_opts()   # agent_down_time: SbGlobalUpdateEvent's jitter
    cfg.CONF([], project="neutron")
    # Everything an agent's start() imports, before the memory baseline is read.
    from neutron.agent.ovn.metadata import agent, ovsdb  # noqa: F401
    from neutron.plugins.ml2.drivers.ovn.mech_driver.ovsdb import impl_idl_ovn  # noqa: F401
    cfg.CONF.set_override("ovn_sb_connection", remote, "ovn")


def worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    kind = spec["kind"]
    if kind == "neutron":
        _setup_neutron(spec["agents"][0]["remote"])
        import logging
        logging.basicConfig(level=logging.WARNING)
        cls = _NeutronAgent
        # Each agent connects to its own remote; neutron reads the option at construction.
        from oslo_config import cfg
    else:
        import logging
        logging.basicConfig(level=logging.WARNING)
        import ovnmeta.ovsdb.sbview  # noqa: F401  (imported before the baseline is read)
        cls = _OvnmetaAgent
    agents = []
    for a in spec["agents"]:
        if kind == "neutron":
            cfg.CONF.set_override("ovn_sb_connection", a["remote"], "ovn")
        agents.append(cls(a["chassis"], a["remote"], a["plugged"]))
    base = _mem()
    import ovs.json
    _say(event="ready", json_parser=ovs.json.PARSER, **base)
    sys.stdin.readline()   # go
    done: dict[int, float] = {}

    retries = [0]

    def run(i: int, agent) -> None:
        # As the agents do: ovnmeta-agent retries its SB connection every 2 s, neutron's
        # start() is wrapped in its own retry. A busy SB can miss a schema request.
        while True:
            try:
                agent.start()
                return
            except Exception as exc:
                retries[0] += 1
                print(f"agent {i}: {exc}; retrying in 2 s", file=sys.stderr)
                time.sleep(2)
                if kind == "ovnmeta":
                    agents[i] = agent = cls(spec["agents"][i]["chassis"],
                                            spec["agents"][i]["remote"],
                                            spec["agents"][i]["plugged"])

    threads = [threading.Thread(target=run, args=(i, a), daemon=True)
               for i, a in enumerate(agents)]
    for t in threads:
        t.start()
    while len(done) < len(agents):
        for i, a in enumerate(agents):
            if i not in done and a.idl is not None and a.loaded():
                done[i] = time.time()
        time.sleep(0.01)
    mem = _mem()
    _say(event="loaded", last=max(done.values()), rows=agents[0].rows(), retries=retries[0],
         rss_kib=mem["rss_kib"], pss_kib=mem["pss_kib"],
         per_agent_rss_kib=(mem["rss_kib"] - base["rss_kib"]) / len(agents),
         per_agent_pss_kib=(mem["pss_kib"] - base["pss_kib"]) / len(agents))
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "reconnect":
            gone: dict[int, bool] = {}
            back: dict[int, float] = {}
            deadline = time.time() + 300
            while len(back) < len(agents) and time.time() < deadline:
                for i, a in enumerate(agents):
                    if i in back:
                        continue
                    if not _monitoring(a.idl):
                        gone[i] = True
                    elif gone.get(i) and a.loaded():
                        back[i] = time.time()
                time.sleep(0.01)
            _say(event="reconnected", last=max(back.values()) if back else None,
                 back=len(back), of=len(agents))
        elif cmd == "quit":
            break
    for a in agents:
        try:
            if kind == "ovnmeta":
                a.view.stop()
            else:
                a.sb_idl.ovsdb_connection.stop(timeout=5)
        except Exception:
            pass
    return 0


# ---------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------
DEBIAN_OVS = Path("/usr/lib/python3/dist-packages/ovs")


def c_json_overlay(python: str, workdir: Path) -> str | None:
    """A copy of `python`'s python-ovs with the C JSON parser of Debian's
    python3-openvswitch added (self-contained, libopenvswitch linked in), for PYTHONPATH.

    python-ovs from PyPI builds its C parser only where libopenvswitch's headers are (not
    packaged in Debian 12), and falls back to a parser in pure Python that is many times
    slower: 25 neutron agents loading 22,000 Port_Binding rows with it each took longer than
    the SB's 60 s inactivity probe, were cut off and started over. Distributions ship the C
    parser, so both kinds run with it here."""
    so = sorted(DEBIAN_OVS.glob("_json*.so"))
    if not so:
        return None
    src = subprocess.run([python, "-c", "import os, ovs; print(os.path.dirname(ovs.__file__))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    overlay = workdir / ("ovs-c-json-" + hashlib.sha1(python.encode()).hexdigest()[:8])
    if not (overlay / "ovs" / so[0].name).exists():
        shutil.rmtree(overlay, ignore_errors=True)
        shutil.copytree(src, overlay / "ovs")
        shutil.copy2(so[0], overlay / "ovs" / so[0].name)
    return str(overlay)


class Workers:
    """K agents of one kind in ceil(K / per_process) worker processes."""

    overlay = True   # main() turns it off with --python-json

    def __init__(self, kind: str, python: str, specs: list[list[dict]], workdir: Path) -> None:
        self.procs: list[subprocess.Popen] = []
        env = dict(os.environ)
        path = c_json_overlay(python, workdir) if Workers.overlay else None
        if path:
            env["PYTHONPATH"] = path
        for n, agents in enumerate(specs):
            path = workdir / f"worker-{kind}-{n}.json"
            path.write_text(json.dumps({"kind": kind, "agents": agents}))
            self.procs.append(subprocess.Popen(
                [python, str(HERE), "--worker", str(path)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=open(workdir / f"worker-{kind}-{n}.log", "w"),
                text=True, env=env))
        self.ready = [self._read(p, "ready", 300) for p in self.procs]

    def _read(self, proc: subprocess.Popen, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {proc.pid} ended before {event!r} "
                                   f"(exit {proc.wait()}): see its log")
            msg = json.loads(line)
            if msg.get("event") == event:
                return msg
        raise RuntimeError(f"worker {proc.pid}: no {event!r} within {timeout:g} s")

    def send(self, cmd: str) -> None:
        for p in self.procs:
            p.stdin.write(cmd + "\n")
            p.stdin.flush()

    def collect(self, event: str, timeout: float = 600) -> list[dict]:
        return [self._read(p, event, timeout) for p in self.procs]

    def cpu(self) -> float:
        from ovnmeta_testing.cpu import cpu_seconds
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def close(self) -> None:
        for p in self.procs:
            try:
                p.stdin.write("quit\n")
                p.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Meter:
    """Server CPU, bytes sent to the agents, machine busy share, over one phase."""

    def __init__(self, cloud, workers: Workers | None = None) -> None:
        from ovnmeta_testing import cpu, sbcloud
        self.s, self.cpu, self.cloud, self.workers = sbcloud, cpu, cloud, workers
        self.t0 = time.monotonic()
        self.cpu0 = self._cpu()
        self.bytes0 = self._bytes()
        self.busy0 = cpu.machine_busy()
        self.wcpu0 = workers.cpu() if workers else 0.0

    def _cpu(self) -> dict[str, float]:
        return {n: self.cpu.cpu_seconds(self.cloud.pid(n)) for n in self.cloud.servers}

    def _bytes(self) -> dict[str, int]:
        return {n: self.s.bytes_sent([self.cloud.ports[n]]) for n in self.cloud.servers}

    def done(self, restarted: tuple[str, ...] = ()) -> dict:
        """The phase's figures. Servers `restarted` during the phase are new processes with
        new sockets: their CPU and bytes count from zero. Every agent socket is new after a
        reconnect, so bytes count from zero for all servers then."""
        cpu1, bytes1, busy1 = self._cpu(), self._bytes(), self.cpu.machine_busy()
        seconds = time.monotonic() - self.t0
        leader = self.cloud.leader() if self.cloud.relays else "sb"
        cpu = {n: cpu1[n] - (0 if n in restarted else self.cpu0[n]) for n in cpu1}
        sent = {n: bytes1[n] - (0 if restarted else self.bytes0[n]) for n in bytes1}
        db = [n for n in self.cloud.members]
        out = {"seconds": round(seconds, 2),
               "sb_cpu_s": round(sum(cpu[n] for n in db), 2),
               "leader_cpu_s": round(cpu.get(leader, 0.0), 2),
               "relays_cpu_s": round(sum(cpu[n] for n in self.cloud.relay_names), 2),
               "bytes_to_agents": sum(sent[n] for n in (self.cloud.relay_names or db)),
               "bytes_to_relays": sum(sent[n] for n in db) if self.cloud.relays else 0,
               "machine_busy": round((busy1[0] - self.busy0[0]) / max(1, busy1[1] - self.busy0[1]), 2)}
        if self.workers:
            out["agents_cpu_s"] = round(self.workers.cpu() - self.wcpu0, 2)
        return out


class Writer:
    """Writes as ovn-controllers would: Port_Binding chassis changes, straight to the SB."""

    def __init__(self, cloud) -> None:
        from ovnmeta_testing.sbcloud import Rpc
        self.cloud = cloud
        member = cloud.leader() if cloud.relays else "sb"
        self.rpc = Rpc(f"unix:{cloud.root}/{member}.sock")
        self.pbs = cloud.pb_uuids(self.rpc)
        self.names = cloud.names

    def set_chassis(self, port: str, chassis_uuid: str | None) -> None:
        row = {"chassis": ["uuid", chassis_uuid] if chassis_uuid else ["set", []],
               "up": bool(chassis_uuid)}
        self.rpc.transact("OVN_Southbound", {"op": "update", "table": "Port_Binding",
                                             "where": [["_uuid", "==",
                                                        ["uuid", self.pbs[port]]]],
                                             "row": row})

    def churn(self, rate: float, seconds: float, ports: list[int], rng: random.Random,
              anywhere: bool = True) -> int:
        """`rate` changes/s: unbind a port, next time bind it (to a random chassis, or back
        to its own when not `anywhere`)."""
        names, uuids = self.names["ports"], self.names["chassis_uuids"]
        done, pending = 0, None
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            if pending is None:
                i = rng.choice(ports)
                self.set_chassis(names[i], None)
                pending = i
            else:
                ch = rng.randrange(len(uuids)) if anywhere else self.names["port_chassis"][pending]
                self.set_chassis(names[pending], uuids[ch])
                if anywhere:
                    self.names["port_chassis"][pending] = ch
                pending = None
            done += 1
            next_at = start + done / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        if pending is not None:
            self.set_chassis(names[pending], uuids[self.names["port_chassis"][pending]])
        return done

    def liveness_round(self, chassis: list[str], timeout: float = 120) -> dict:
        """Bump SB_Global.nb_cfg as neutron-server's liveness check does (through NB and
        northd in a cloud; here northd is stopped, so straight into SB_Global), then wait
        until every agent's Chassis_Private sb-cfg key shows it."""
        from ovnmeta_testing.sbcloud import Rpc
        member = self.cloud.leader() if self.cloud.relays else "sb"
        mon = Rpc(f"unix:{self.cloud.root}/{member}.sock")
        first = mon.call("monitor", ["OVN_Southbound", "live", {"Chassis_Private": {
            "columns": ["name", "external_ids"]}}])
        current = self.rpc.transact("OVN_Southbound", {"op": "select", "table": "SB_Global",
                                                       "where": [], "columns": ["nb_cfg"]})
        target = current[0]["rows"][0]["nb_cfg"] + 1
        keys: dict[str, dict] = {}

        def absorb(update: dict) -> None:
            for uuid_, change in update.get("Chassis_Private", {}).items():
                new = change.get("new")
                if new is None:
                    continue
                ext = new.get("external_ids", ["map", []])
                keys[new.get("name") or keys.get(uuid_, {}).get("name", "")] = dict(ext[1])
        absorb(first)
        want = set(chassis)
        t0 = time.monotonic()
        self.rpc.transact("OVN_Southbound", {"op": "mutate", "table": "SB_Global", "where": [],
                                             "mutations": [["nb_cfg", "+=", 1]]})
        done = {}
        while len(done) < len(want) and time.monotonic() - t0 < timeout:
            mon.poll(0.05)
            for u in mon.updates:
                absorb(u)
            mon.updates.clear()
            for name in want - done.keys():
                ext = keys.get(name, {})
                if any(k.endswith(SB_CFG_SUFFIX) and v == str(target) for k, v in ext.items()):
                    done[name] = time.monotonic() - t0
        mon.close()
        return {"seconds": round(max(done.values()), 2) if done else None,
                "answered": len(done), "of": len(want),
                "median_s": round(sorted(done.values())[len(done) // 2], 2) if done else None}


def specs_for(cloud, k: int, per_process: int) -> list[list[dict]]:
    names = cloud.names
    remotes = cloud.agent_remotes()
    plugged: dict[int, list[str]] = {}
    for i, ch in enumerate(names["port_chassis"][: k * 20]):
        plugged.setdefault(ch, []).append(names["ports"][i])
    agents = [{"chassis": names["chassis"][c], "remote": remotes[c % len(remotes)],
               "plugged": plugged.get(c, [])} for c in range(k)]
    return [agents[i:i + per_process] for i in range(0, k, per_process)]


def per_process(kind: str, args) -> int:
    return args.neutron_per_process if kind == "neutron" else args.per_process


def run_kind(cloud, kind: str, python: str, k: int, args, work: Path) -> dict:
    rng = random.Random(11)
    result: dict = {"kind": kind, "agents": k}
    workers = Workers(kind, python, specs_for(cloud, k, per_process(kind, args)), work)
    try:
        meter = Meter(cloud, workers)
        t0 = time.time()
        workers.send("go")
        loaded = workers.collect("loaded", timeout=1800)
        load = meter.done()
        load["all_loaded_s"] = round(max(m["last"] for m in loaded) - t0, 2)
        load["per_agent_rss_kib"] = round(sum(m["per_agent_rss_kib"] for m in loaded)
                                          / len(loaded))
        load["per_agent_pss_kib"] = round(sum(m["per_agent_pss_kib"] for m in loaded)
                                          / len(loaded))
        load["rows_held"] = loaded[0]["rows"]
        load["processes"] = len(loaded)
        load["start_retries"] = sum(m.get("retries", 0) for m in loaded)
        result["json_parser"] = workers.ready[0]["json_parser"]
        result["load"] = load
        time.sleep(2)
        writer = Writer(cloud)
        result["churn"] = churn_phase(cloud, writer, args,
                                      list(range(len(cloud.names["ports"]))), True, workers, rng)
        # Churn elsewhere: flaps of ports in networks none of the K agents hosts.
        result["churn_elsewhere"] = churn_phase(cloud, writer, args,
                                                ports_by_hosting(cloud, k).get(0, []), False,
                                                workers, random.Random(13))
        chassis = [a["chassis"] for spec in specs_for(cloud, k, 1) for a in spec]
        rounds = []
        for _ in range(2):
            time.sleep(1)
            meter = Meter(cloud, workers)
            rnd = writer.liveness_round(chassis)
            rnd.update(meter.done())
            rounds.append(rnd)
        result["liveness"] = rounds
        writer.rpc.close()
        time.sleep(1)
        targets = cloud.relay_names[:cloud.active_relays] or ["sb"]
        workers.send("reconnect")
        meter = Meter(cloud, workers)
        t0 = time.time()
        cloud.restart(targets)
        back = workers.collect("reconnected", timeout=600)
        rec = meter.done(restarted=tuple(targets))
        rec["restarted"] = targets
        rec["all_back_s"] = round(max(m["last"] or 0 for m in back) - t0, 2) \
            if all(m["back"] == m["of"] for m in back) else None
        rec["back"] = sum(m["back"] for m in back)
        result["reconnect"] = rec
    finally:
        workers.close()
    return result


def restart_alone(cloud, ks: list[int]) -> list[dict]:
    """The reconnect phase's restart with no agent connected: what the servers spend on
    themselves (a standalone SB reloads its file, a relay fetches the whole SB from the
    cluster), to be told apart from what the agents' reconnection costs."""
    out = []
    for relays in sorted({math.ceil(k / 50) for k in ks}) if cloud.relays else [0]:
        if cloud.relays:
            cloud.use_relays(relays)
        targets = cloud.relay_names[:cloud.active_relays] or ["sb"]
        time.sleep(1)
        meter = Meter(cloud)
        cloud.restart(targets)
        # Ready again: the restarted servers answer a transaction.
        from ovnmeta_testing.sbcloud import Rpc

        def answers(name: str) -> bool:
            try:
                rpc = Rpc(f"unix:{cloud.root}/{name}.sock", timeout=5)
                rpc.transact("OVN_Southbound", {"op": "select", "table": "SB_Global",
                                                "where": [], "columns": ["nb_cfg"]})
                rpc.close()
                return True
            except Exception:
                return False
        from ovnmeta_testing.sandbox import wait_until
        wait_until(lambda: all(answers(n) for n in targets), timeout=300, interval=0.1,
                   what="restarted servers answering")
        time.sleep(3)   # a relay keeps syncing after it first answers
        m = meter.done(restarted=tuple(targets))
        out.append({"layout": "relay" if cloud.relays else "direct", "restarted": targets,
                    **{k: m[k] for k in ("sb_cpu_s", "leader_cpu_s", "relays_cpu_s")}})
    return out


def ports_by_hosting(cloud, k: int) -> dict[int, list[int]]:
    """Ports on chassis no agent plays, by how many of the K agents host their network
    (6 and more counted as 6)."""
    names = cloud.names
    hosts: dict[int, set[int]] = {}
    for i, ch in enumerate(names["port_chassis"]):
        if ch < k:
            hosts.setdefault(names["port_network"][i], set()).add(ch)
    by_h: dict[int, list[int]] = {}
    for i, ch in enumerate(names["port_chassis"]):
        if ch >= k:
            h = len(hosts.get(names["port_network"][i], ()))
            by_h.setdefault(min(h, 6), []).append(i)
    return by_h


def churn_phase(cloud, writer: Writer, args, ports: list[int], anywhere: bool,
                workers: Workers | None, rng: random.Random) -> dict:
    """`--churn-rate` changes a second for `--churn-seconds` over `ports`, metered."""
    meter = Meter(cloud, workers)
    n = writer.churn(args.churn_rate, args.churn_seconds, ports, rng, anywhere=anywhere)
    time.sleep(1)
    m = meter.done()
    m["changes"] = n
    for key in ("sb_cpu_s", "leader_cpu_s", "relays_cpu_s", "agents_cpu_s"):
        if key in m:
            m[key.replace("_s", "_per_s")] = round(m[key] / m["seconds"], 3)
    m["bytes_per_s"] = round(m["bytes_to_agents"] / m["seconds"])
    return m


def alone(cloud, k: int, args) -> dict:
    """Both churns with no agent connected: the servers' own cost of the writes."""
    writer = Writer(cloud)
    try:
        return {"agents": k,
                "churn": churn_phase(cloud, writer, args,
                                     list(range(len(cloud.names["ports"]))), True, None,
                                     random.Random(11)),
                "churn_elsewhere": churn_phase(cloud, writer, args,
                                               ports_by_hosting(cloud, k).get(0, []), False,
                                               None, random.Random(13))}
    finally:
        writer.rpc.close()


def hosting_series(cloud, k: int, args, python: str, work: Path) -> list[dict]:
    """Cost of one binding flap by how many of the K agents host the port's network: ports on
    chassis no agent plays, flapped (unbind, bind back) 2 × `--series-changes` times."""
    by_h = ports_by_hosting(cloud, k)
    out = []
    workers = Workers("ovnmeta", python, specs_for(cloud, k, args.per_process), work)
    try:
        workers.send("go")
        workers.collect("loaded", timeout=1800)
        writer = Writer(cloud)
        rng = random.Random(5)
        for h in sorted(by_h):
            time.sleep(1)
            meter = Meter(cloud, workers)
            n = writer.churn(args.churn_rate, 2 * args.series_changes / args.churn_rate,
                             by_h[h], rng, anywhere=False)
            time.sleep(1)
            m = meter.done()
            out.append({"hosting_agents": h if h < 6 else "6+", "changes": n,
                        "bytes_per_change": round(m["bytes_to_agents"] / n),
                        "sb_cpu_ms_per_change": round(1000 * m["sb_cpu_s"] / n, 2),
                        "agents_cpu_ms_per_change": round(1000 * m["agents_cpu_s"] / n, 2)})
        writer.rpc.close()
    finally:
        workers.close()
    return out


METRICS = (("load", "sb_cpu_s"), ("load", "bytes_to_agents"), ("churn", "sb_cpu_per_s"),
           ("churn", "bytes_per_s"), ("reconnect", "sb_cpu_s"))


def _fit(points: list[tuple[float, float]]) -> dict:
    """Least squares y = a + b·K, and the exponent of y ~ K^e (log-log slope): e ≈ 1 is
    linear, e < 1 grows slower, e > 1 faster."""
    n = len(points)
    mx = sum(k for k, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((k - mx) ** 2 for k, _ in points)
    b = sum((k - mx) * (y - my) for k, y in points) / sxx if sxx else 0.0
    a = my - b * mx
    logs = [(math.log(k), math.log(y)) for k, y in points if y > 0]
    e = None
    if len(logs) >= 2:
        lx = sum(x for x, _ in logs) / len(logs)
        ly = sum(y for _, y in logs) / len(logs)
        den = sum((x - lx) ** 2 for x, _ in logs)
        e = sum((x - lx) * (y - ly) for x, y in logs) / den if den else None
    return {"a": a, "b": b, "exponent": round(e, 2) if e is not None else None}


def projection(results: dict, to: tuple[int, ...] = (1000, 5000)) -> list[dict]:
    """Each SB cost fitted over the measured K and projected to `to` agents. Churn is the
    cloud's own rate (`--churn-rate`); how it scales with the cloud is docs/benchmarks.md's part."""
    out = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results.get("runs", []):
        groups.setdefault((r["layout"], r["kind"]), []).append(r)
    for (layout, kind), runs in groups.items():
        if len({r["agents"] for r in runs}) < 2:
            continue
        for phase, metric in METRICS:
            key = metric if layout == "direct" or "bytes" in metric else \
                metric.replace("sb_", "leader_")
            pts = [(r["agents"], float(r[phase][key])) for r in runs]
            fit = _fit(pts)
            row = {"layout": layout, "kind": kind, "metric": f"{phase}.{key}",
                   "per_agent": round(fit["b"], 6), "exponent": fit["exponent"],
                   "measured": {k: y for k, y in pts}}
            for k in to:
                row[f"at_{k}"] = round(fit["a"] + fit["b"] * k, 2)
            out.append(row)
    return out


def _section(rows: list[dict] | None, columns: dict[str, str]) -> list[str]:
    """A markdown table of `rows`, headed by the keys of `columns`, showing their values."""
    if not rows:
        return []
    out = ["", " | ".join(columns), " | ".join("---" for _ in columns)]
    out += [" | ".join(str(r[k]) for k in columns.values()) for r in rows]
    return out


def table(results: dict) -> str:
    lines = []
    head = ("layout", "kind", "K", "load s", "load SB cpu", "load MB", "agent MiB",
            "churn SB cpu/s", "churn kB/s", "agents cpu/s", "elsewhere SB cpu/s",
            "elsewhere kB/s", "live s (1st/2nd)", "live SB cpu",
            "reconn s", "reconn SB cpu", "busy")
    lines.append(" | ".join(head))
    lines.append(" | ".join("---" for _ in head))
    for r in results.get("runs", []):
        ld, ch, lv, rc = r["load"], r["churn"], r["liveness"], r["reconnect"]
        relay = r["layout"] == "relay"

        def cpu(m: dict) -> str:
            if relay:
                return f"{m['leader_cpu_s']} L + {m['relays_cpu_s']} R"
            return str(m["sb_cpu_s"])
        def per_s(m: dict) -> str:
            if not m:
                return "—"
            if relay:
                return f"{m['leader_cpu_per_s']} L + {m['relays_cpu_per_s']} R"
            return str(m["sb_cpu_per_s"])
        el = r.get("churn_elsewhere", {})
        lines.append(" | ".join(str(x) for x in (
            r["layout"], r["kind"], r["agents"], ld["all_loaded_s"], cpu(ld),
            round(ld["bytes_to_agents"] / 1e6, 1), round(ld["per_agent_pss_kib"] / 1024, 1),
            per_s(ch), round(ch["bytes_per_s"] / 1e3, 1), ch["agents_cpu_per_s"], per_s(el),
            round(el["bytes_per_s"] / 1e3, 1) if el else "—",
            f"{lv[0]['seconds']}/{lv[1]['seconds']}", cpu(lv[0]),
            rc["all_back_s"], cpu(rc), f"{ld['machine_busy']}/{ch['machine_busy']}")))
    if results.get("alone") or results.get("restart_alone"):
        lines.append("")
        lines.append("no agents: layout | K's churn SB cpu/s | elsewhere SB cpu/s | restart SB cpu")
        lines.append("--- | --- | --- | ---")
        for a in results.get("alone", []):
            lines.append(f"{a['layout']} | {a['agents']}: {a['churn']['sb_cpu_per_s']} "
                         f"(leader {a['churn']['leader_cpu_per_s']}) | "
                         f"{a['churn_elsewhere']['sb_cpu_per_s']} | —")
        for a in results.get("restart_alone", []):
            lines.append(f"{a['layout']} | — | — | {'+'.join(a['restarted'])}: "
                         f"{a['sb_cpu_s']} SB, {a['relays_cpu_s']} relays")
    lines += _section(results.get("series"), {
        "hosting agents": "hosting_agents", "changes": "changes",
        "bytes/change": "bytes_per_change", "SB cpu ms/change": "sb_cpu_ms_per_change",
        "agents cpu ms/change": "agents_cpu_ms_per_change"})
    lines += _section(results.get("projection"), {
        "layout": "layout", "kind": "kind", "metric": "metric", "per agent": "per_agent",
        "exponent": "exponent", "at 1,000": "at_1000", "at 5,000": "at_5000"})
    if results.get("memory"):
        lines.append("")
        lines.append("P | kind | one agent RSS MiB | PSS MiB | rows held")
        lines.append("--- | --- | --- | --- | ---")
        for m in results["memory"]:
            lines.append(f"{m['ports']} | {m['kind']} | {m['rss_mib']} | {m['pss_mib']} | "
                         f"{sum(m['rows'].values())}")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chassis", type=int, default=1000)
    parser.add_argument("--networks", type=int, default=2000)
    parser.add_argument("--ports", type=int, default=20000)
    parser.add_argument("--agents", default="25,50,100,200")
    parser.add_argument("--kinds", default="ovnmeta,neutron")
    parser.add_argument("--layouts", default="direct,relay")
    parser.add_argument("--per-process", type=int, default=25,
                        help="ovnmeta agents per worker process")
    parser.add_argument("--neutron-per-process", type=int, default=5,
                        help="neutron agents per worker process: one of 25 parsing 22,000 "
                             "rows each missed the SB's probes and never finished loading")
    parser.add_argument("--churn-rate", type=float, default=20)
    parser.add_argument("--churn-seconds", type=float, default=60)
    parser.add_argument("--series-changes", type=int, default=100)
    parser.add_argument("--memory-ports", default="",
                        help="e.g. 2000,20000,100000: one agent per kind at each P (N = P/10)")
    parser.add_argument("--neutron-venv", default="/tmp/nvenv")
    parser.add_argument("--neutron-max-agents", type=int, default=200,
                        help="skip neutron's runs above this K")
    parser.add_argument("--python-json", action="store_true",
                        help="agents use python-ovs's pure-Python JSON parser, as installed "
                             "from PyPI (default: the C parser, as distributions ship it)")
    parser.add_argument("--root", default=str(ROOT))
    parser.add_argument("--json", default="")
    parser.add_argument("--alone", action="store_true",
                        help="also meter both churns with no agent connected, for each K")
    parser.add_argument("--report", default="",
                        help="print the table (and projection) of a saved --json, run nothing")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        saved["projection"] = projection(saved)
        print(table(saved))
        return 0

    from ovnmeta_testing.sbcloud import Layout, SbCloud
    Workers.overlay = not args.python_json
    pythons = {"ovnmeta": sys.executable,
               "neutron": str(Path(args.neutron_venv) / "bin" / "python")}
    kinds = args.kinds.split(",")
    if "neutron" in kinds and not Path(pythons["neutron"]).exists():
        parser.error(f"no neutron virtualenv at {args.neutron_venv} (see the docstring)")
    ks = [int(k) for k in args.agents.split(",") if k]
    work = Path(args.root + "-work")
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"cloud": {"chassis": args.chassis, "networks": args.networks,
                               "ports": args.ports}, "runs": [], "series": [], "memory": [], "restart_alone": [], "alone": []}
    for layout in [x for x in args.layouts.split(",") if x]:
        # One cloud per layout; with relays, ceil(K / 50) of them run for each K.
        cloud = SbCloud(Path(args.root), relays=math.ceil(max(ks) / 50) if layout == "relay"
                        else 0)
        try:
            print(f"== {layout}: building the cloud", file=sys.stderr)
            cloud.build(Layout(args.chassis, args.networks, args.ports, max(ks)),
                        on_step=lambda s: print("   " + s, file=sys.stderr))
            results["restart_alone"] += restart_alone(cloud, ks)
            for k in ks:
                relays = cloud.use_relays(math.ceil(k / 50)) if layout == "relay" else 0
                if args.alone:
                    results["alone"].append({"layout": layout, **alone(cloud, k, args)})
                for kind in kinds:
                    if kind == "neutron" and k > args.neutron_max_agents:
                        continue
                    print(f"   {kind}: {k} agents", file=sys.stderr)
                    r = run_kind(cloud, kind, pythons[kind], k, args, work)
                    r["layout"], r["relays"] = layout, relays
                    results["runs"].append(r)
                    print(json.dumps(r), file=sys.stderr)
            if layout == "direct" and "ovnmeta" in kinds:
                results["series"] = hosting_series(cloud, max(ks), args, pythons["ovnmeta"],
                                                   work)
        finally:
            cloud.down()
    for p in [int(x) for x in args.memory_ports.split(",") if x]:
        cloud = SbCloud(Path(args.root))
        try:
            print(f"== memory at P = {p}", file=sys.stderr)
            cloud.build(Layout(args.chassis, max(1, p // 10), p, 1),
                        on_step=lambda s: print("   " + s, file=sys.stderr))
            for kind in kinds:
                workers = Workers(kind, pythons[kind], specs_for(cloud, 1, 1), work)
                try:
                    workers.send("go")
                    m = workers.collect("loaded", timeout=1800)[0]
                finally:
                    workers.close()
                results["memory"].append({
                    "ports": p, "kind": kind, "rows": m["rows"],
                    "rss_mib": round(m["per_agent_rss_kib"] / 1024, 2),
                    "pss_mib": round(m["per_agent_pss_kib"] / 1024, 2)})
        finally:
            cloud.down()
    results["projection"] = projection(results)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
