"""A synthetic cloud in a real Southbound DB, for measuring what many agents cost the SB.

NB and SB ovsdb-servers and ovn-northd in a private directory, nothing else: no OVS, no
br-int, no ovn-controller, so it runs beside the test sandbox. The NB gets C chassis' worth of
neutron-style networks and ports in a few large transactions; ovn-northd turns them into OVN's
own SB rows; then the Chassis, Encap and Chassis_Private rows and each port's binding are
written into the SB as ovn-controller would write them, and northd is stopped, so that during a
measurement the SB serves only the agents and the writer.

For the relay layout the standalone SB file seeds a 3-member Raft cluster and R ovsdb relays
stand in front of it. Server CPU is read from /proc; the bytes a server sent to its clients
from the kernel's TCP counters (`ss`, bytes_acked) of the sockets on its listening port.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ovnmeta.host import procs
from ovnmeta_testing.sandbox import (NB_SCHEMA, OVS_SCHEMA, SB_SCHEMA, SandboxError, free_port,
                                     wait_until)

BATCH = 25000   # rows per NB/SB transaction while building: each NB one is a northd pass


class Rpc:
    """A minimal OVSDB JSON-RPC client (RFC 7047): transact, and one monitor's updates."""

    def __init__(self, remote: str, timeout: float = 600) -> None:
        kind, _, rest = remote.partition(":")
        if kind == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(rest)
        else:
            host, _, port = rest.rpartition(":")
            self.sock = socket.create_connection((host, int(port)))
        self.sock.settimeout(timeout)
        self._buf = ""
        self._dec = json.JSONDecoder()
        self._id = 0
        self.updates: list[dict] = []

    def close(self) -> None:
        self.sock.close()

    def _send(self, msg: dict) -> None:
        self.sock.sendall(json.dumps(msg).encode())

    def _next(self) -> dict:
        while True:
            text = self._buf.lstrip()
            if text:
                try:
                    msg, end = self._dec.raw_decode(text)
                    self._buf = text[end:]
                    return msg
                except json.JSONDecodeError:
                    pass
            data = self.sock.recv(1 << 20)
            if not data:
                raise SandboxError("OVSDB connection closed")
            self._buf += data.decode()

    def _handle(self, msg: dict) -> None:
        if msg.get("method") == "echo":
            self._send({"result": msg["params"], "error": None, "id": msg["id"]})
        elif msg.get("method") in ("update", "update2", "update3"):
            self.updates.append(msg["params"][-1])

    def call(self, method: str, params: list):
        self._id += 1
        ident = self._id
        self._send({"method": method, "params": params, "id": ident})
        while True:
            msg = self._next()
            if msg.get("id") == ident and "method" not in msg:
                if msg.get("error"):
                    raise SandboxError(f"{method}: {msg['error']}")
                return msg["result"]
            self._handle(msg)

    def transact(self, db: str, *ops: dict) -> list:
        result = self.call("transact", [db, *ops])
        for r in result:
            if isinstance(r, dict) and r.get("error"):
                raise SandboxError(f"transact: {r}")
        return result

    def poll(self, seconds: float) -> None:
        """Read notifications for up to `seconds` (answering echoes)."""
        deadline = time.monotonic() + seconds
        self.sock.settimeout(max(0.001, seconds))
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                self._handle(self._next())
        except (TimeoutError, socket.timeout):
            pass
        finally:
            self.sock.settimeout(600)


def _uuid(u: str) -> list:
    return ["uuid", u]


def _map(d: dict[str, str]) -> list:
    return ["map", [[k, v] for k, v in d.items()]]


def _mac(i: int) -> str:
    return "fa:16:3e:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)


@dataclass
class Layout:
    """Who is where: N networks of `ports_per_network` VM ports, C chassis. The first
    `agents` chassis (the simulated agents' hosts) get exactly `ports_per_agent` ports each,
    the rest of the cloud's ports are spread over the other chassis, so that one agent's own
    load stays the same while P grows."""
    chassis: int
    networks: int
    ports: int
    agents: int
    ports_per_agent: int = 20
    seed: int = 7

    def __post_init__(self) -> None:
        if self.agents * self.ports_per_agent > self.ports:
            raise ValueError("more agent ports than ports")
        if self.agents > self.chassis:
            raise ValueError("more agents than chassis")

    def assign(self) -> list[tuple[int, int]]:
        """(network index, chassis index) of every VM port."""
        rng = random.Random(self.seed)
        out = []
        for i in range(self.ports):
            net = rng.randrange(self.networks)
            if i < self.agents * self.ports_per_agent:
                ch = i // self.ports_per_agent
            else:
                ch = rng.randrange(self.agents, self.chassis) if self.chassis > self.agents \
                    else rng.randrange(self.chassis)
            out.append((net, ch))
        return out


@dataclass
class SbCloud:
    root: Path
    relays: int = 0            # 0: one standalone SB; >0: a 3-member Raft SB behind relays
    names: dict = field(default_factory=dict, init=False)   # what build() made

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.env = dict(os.environ)
        for var in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVN_RUNDIR", "OVN_LOGDIR",
                    "OVN_DBDIR"):
            self.env[var] = str(self.root)
        self.ports: dict[str, int] = {}
        self.active_relays = self.relays

    # -- processes --------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 600) -> str:
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise SandboxError(f"{' '.join(argv)}: exit {proc.returncode}: "
                               f"{proc.stderr.strip()}")
        return proc.stdout

    def _args(self, name: str) -> list[str]:
        return [f"--pidfile={self.root}/{name}.pid", f"--log-file={self.root}/{name}.log",
                f"--unixctl={self.root}/{name}.ctl", "--detach", "--no-chdir"]

    def pid(self, name: str) -> int | None:
        try:
            pid = int((self.root / f"{name}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if procs.running(pid) else None

    def stop(self, name: str) -> None:
        pid = self.pid(name)
        if pid:
            procs.terminate(pid)
            wait_until(lambda: not procs.running(pid), timeout=30, what=f"{name} stopped")

    def kill(self, name: str) -> None:
        pid = self.pid(name)
        if pid:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not procs.running(pid), timeout=30, what=f"{name} killed")

    @property
    def members(self) -> list[str]:
        return [f"sb-{i}" for i in (1, 2, 3)] if self.relays else ["sb"]

    @property
    def relay_names(self) -> list[str]:
        return [f"relay-{i}" for i in range(1, self.relays + 1)]

    @property
    def servers(self) -> list[str]:
        return [*self.members, *self.relay_names]

    def use_relays(self, count: int) -> int:
        """Run the first `count` relays and stop the others (agents use the running ones)."""
        for i, name in enumerate(self.relay_names):
            if i < count and not self.pid(name):
                self.start_relay(name)
            elif i >= count:
                self.stop(name)
        self.active_relays = min(count, self.relays)
        return self.active_relays

    def admin(self) -> str:
        """The SB's unix sockets: what the writer uses (as ovn-controller would, directly)."""
        return ",".join(f"unix:{self.root}/{m}.sock" for m in self.members)

    def agent_remotes(self) -> list[str]:
        """Where agents connect: the SB's TCP port, or one relay each (round robin)."""
        names = self.relay_names[:self.active_relays] or self.members
        return [f"tcp:127.0.0.1:{self.ports[n]}" for n in names]

    def down(self) -> None:
        for name in ["northd", *reversed(self.servers), "nb"]:
            pid = self.pid(name)
            if pid:
                procs.terminate(pid)
        if self.root.exists():
            shutil.rmtree(self.root)

    def _start_server(self, name: str, db: str, tcp: bool = True) -> None:
        """Its TCP remote has no inactivity probe. With the default 5 s, or 60 s, the SB cut
        off neutron agents still parsing a 22,000-row dump on this shared 2-core machine,
        and they started over, endlessly; an agent with a node of its own would not be.
        The remote comes from a Manager row of a small Open_vSwitch database served beside
        the SB's: a per-server probe that no SB Connection row (which every cluster member
        and relay would share) can give."""
        self.ports.setdefault(name, free_port())
        remotes = [f"--remote=punix:{self.root}/{name}.sock"]
        dbs = [db]
        if tcp:
            conf = self.root / f"{name}-remote.db"
            if not conf.exists():
                self.run("ovsdb-tool", "create", str(conf), OVS_SCHEMA)
                self.run("ovsdb-tool", "transact", str(conf), json.dumps([
                    "Open_vSwitch",
                    {"op": "insert", "table": "Manager", "uuid-name": "m", "row": {
                        "target": f"ptcp:{self.ports[name]}:127.0.0.1", "inactivity_probe": 0}},
                    {"op": "insert", "table": "Open_vSwitch", "row": {
                        "manager_options": ["named-uuid", "m"]}}]))
            dbs.append(str(conf))
            remotes.append("--remote=db:Open_vSwitch,Open_vSwitch,manager_options")
        self.run("ovsdb-server", *dbs, *remotes, *self._args(name))

    def start_relay(self, name: str) -> None:
        members = ",".join(f"tcp:127.0.0.1:{self.ports[m]}" for m in self.members)
        self._start_server(name, f"relay:OVN_Southbound:{members}")

    def start_member(self, name: str) -> None:
        self._start_server(name, str(self.root / f"{name}.db"))

    def restart(self, names: list[str]) -> None:
        """Kill and start again, as a crash and systemd's Restart= would."""
        for name in names:
            self.kill(name)
        for name in names:
            if name.startswith("relay"):
                self.start_relay(name)
            else:
                self.start_member(name)

    def leader(self) -> str | None:
        for m in self.members:
            out = self.run("ovs-appctl", "-t", f"{self.root}/{m}.ctl", "cluster/status",
                           "OVN_Southbound", check=False)
            if "Role: leader" in out:
                return m
        return None

    # -- building ---------------------------------------------------------------
    def build(self, layout: Layout, on_step=print) -> None:
        """Bring up NB, SB and northd, make the cloud, bind it, stop northd; then the
        relay layout when asked."""
        self.down()
        self.root.mkdir(parents=True)
        self.run("ovsdb-tool", "create", str(self.root / "nb.db"), NB_SCHEMA)
        self.run("ovsdb-tool", "create", str(self.root / "sb.db"), SB_SCHEMA)
        self._start_server("nb", str(self.root / "nb.db"), tcp=False)
        self._start_server("sb", str(self.root / "sb.db"))
        self.run("ovn-nbctl", f"--db=unix:{self.root}/nb.sock", "--no-wait", "init")
        self.run("ovn-sbctl", f"--db=unix:{self.root}/sb.sock", "init")
        self.run("ovn-northd", f"--ovnnb-db=unix:{self.root}/nb.sock",
                 f"--ovnsb-db=unix:{self.root}/sb.sock", *self._args("northd"))
        t0 = time.monotonic()
        nets, ports = self._nb(layout)
        on_step(f"NB written: {len(nets)} networks, {len(ports)} VM ports "
                f"({time.monotonic() - t0:.1f} s)")
        sb = Rpc(f"unix:{self.root}/sb.sock")
        want = layout.ports + layout.networks

        def counted() -> bool:
            got = sb.transact("OVN_Southbound", {"op": "select", "table": "Port_Binding",
                                                 "where": [], "columns": ["_uuid"]})
            return len(got[0]["rows"]) >= want
        wait_until(counted, timeout=3600, interval=2, what=f"{want} Port_Binding rows")
        on_step(f"northd made the SB rows ({time.monotonic() - t0:.1f} s)")
        chassis = self._chassis(sb, layout)
        self._bind(sb, layout, ports, chassis)
        on_step(f"chassis and bindings written ({time.monotonic() - t0:.1f} s)")
        sb.close()
        self.stop("northd")
        self.names = {"chassis": [c[0] for c in chassis], "chassis_uuids": [c[1] for c in chassis],
                      "networks": nets, "ports": [p[0] for p in ports],
                      "port_network": [p[1] for p in ports],
                      "port_chassis": [p[2] for p in ports]}
        if self.relays:
            self._cluster()
            on_step(f"Raft cluster and {self.relays} relays up ({time.monotonic() - t0:.1f} s)")

    def _nb(self, layout: Layout) -> tuple[list[str], list[tuple[str, int, int]]]:
        nb = Rpc(f"unix:{self.root}/nb.sock")
        nets = [str(uuid.UUID(int=random.Random(layout.seed + i).getrandbits(128)))
                for i in range(layout.networks)]
        assign = layout.assign()
        by_net: dict[int, list[int]] = {}
        for i, (n, _) in enumerate(assign):
            by_net.setdefault(n, []).append(i)
        ports: list[tuple[str, int, int]] = [("", 0, 0)] * layout.ports
        ops: list[dict] = []
        rows = 0

        def flush() -> None:
            nonlocal ops, rows
            if ops:
                nb.transact("OVN_Northbound", *ops)
            ops, rows = [], 0
        for n, net in enumerate(nets):
            members = by_net.get(n, [])
            cidr = f"10.{n // 256 % 256}.{n % 256}.0/24" if len(members) < 250 else \
                f"10.{n % 256}.0.0/16"
            prefix = cidr.rsplit(".", 1)[0] if cidr.endswith("/24") else cidr.split(".0.0")[0]
            lsp = []
            md = str(uuid.UUID(int=random.Random(f"md{n}").getrandbits(128)))
            md_ip = f"{prefix}.2" if cidr.endswith("/24") else f"{prefix}.0.2"
            ops.append(self._lsp(f"md{n}", md, "localport", f"{_mac(n)} {md_ip}", {
                "neutron:device_owner": "network:distributed",
                "neutron:device_id": f"ovnmeta-{net}", "neutron:cidrs": f"{md_ip}/24"}))
            lsp.append(["named-uuid", f"md{n}"])
            for j, i in enumerate(members):
                name = str(uuid.UUID(int=random.Random(f"p{i}").getrandbits(128)))
                host = j + 10
                ip = f"{prefix}.{host}" if cidr.endswith("/24") else \
                    f"{prefix}.{host // 250}.{host % 250 + 3}"
                ops.append(self._lsp(f"p{i}", name, "", f"{_mac(1 << 20 | i)} {ip}", {
                    "neutron:device_owner": "compute:nova",
                    "neutron:device_id": str(uuid.UUID(int=random.Random(f"d{i}")
                                                       .getrandbits(128))),
                    "neutron:cidrs": ip}))
                lsp.append(["named-uuid", f"p{i}"])
                ports[i] = (name, n, assign[i][1])
            ops.append({"op": "insert", "table": "Logical_Switch", "row": {
                "name": f"neutron-{net}", "ports": ["set", lsp],
                "external_ids": _map({"neutron:network_name": f"net-{n}",
                                      "neutron:mtu": "1442"})}})
            rows += len(lsp) + 1
            if rows >= BATCH:
                flush()
        flush()
        nb.close()
        return nets, ports

    @staticmethod
    def _lsp(named: str, name: str, type_: str, addresses: str, ext: dict) -> dict:
        return {"op": "insert", "table": "Logical_Switch_Port", "uuid-name": named, "row": {
            "name": name, "type": type_, "addresses": addresses,
            "external_ids": _map(ext)}}

    def _chassis(self, sb: Rpc, layout: Layout) -> list[tuple[str, str]]:
        out = []
        for start in range(0, layout.chassis, 500):
            ops = []
            for c in range(start, min(start + 500, layout.chassis)):
                name = f"chassis-{c:05d}"
                ops += [
                    {"op": "insert", "table": "Encap", "uuid-name": f"e{c}", "row": {
                        "type": "geneve", "ip": f"172.{16 + c // 65536}.{c // 256 % 256}.{c % 256}",
                        "chassis_name": name, "options": _map({"csum": "true"})}},
                    {"op": "insert", "table": "Chassis", "uuid-name": f"c{c}", "row": {
                        "name": name, "hostname": f"compute-{c:05d}",
                        "encaps": ["named-uuid", f"e{c}"],
                        "other_config": _map({"ovn-bridge-mappings": "",
                                              "datapath-type": "system"})}},
                    {"op": "insert", "table": "Chassis_Private", "row": {
                        "name": name, "chassis": ["named-uuid", f"c{c}"]}}]
            result = sb.transact("OVN_Southbound", *ops)
            out += [(f"chassis-{c:05d}", result[3 * i + 1]["uuid"][1])
                    for i, c in enumerate(range(start, min(start + 500, layout.chassis)))]
        return out

    def pb_uuids(self, sb: Rpc) -> dict[str, str]:
        got = sb.transact("OVN_Southbound", {"op": "select", "table": "Port_Binding",
                                             "where": [], "columns": ["_uuid", "logical_port"]})
        return {r["logical_port"]: r["_uuid"][1] for r in got[0]["rows"]}

    def _bind(self, sb: Rpc, layout: Layout, ports, chassis) -> None:
        pbs = self.pb_uuids(sb)
        ops = []
        for name, _, ch in ports:
            ops.append({"op": "update", "table": "Port_Binding",
                        "where": [["_uuid", "==", _uuid(pbs[name])]],
                        "row": {"chassis": _uuid(chassis[ch][1]), "up": True}})
            if len(ops) >= BATCH:
                sb.transact("OVN_Southbound", *ops)
                ops = []
        if ops:
            sb.transact("OVN_Southbound", *ops)

    def _cluster(self) -> None:
        """Seed a 3-member Raft SB with the standalone one's data, then start the relays."""
        self.stop("sb")
        raft = {m: free_port() for m in self.members}
        first = self.members[0]
        self.run("ovsdb-tool", "create-cluster", str(self.root / f"{first}.db"),
                 str(self.root / "sb.db"), f"tcp:127.0.0.1:{raft[first]}")
        for m in self.members[1:]:
            self.run("ovsdb-tool", "join-cluster", str(self.root / f"{m}.db"),
                     "OVN_Southbound", f"tcp:127.0.0.1:{raft[m]}",
                     f"tcp:127.0.0.1:{raft[first]}")
        for m in self.members:
            self.start_member(m)
        wait_until(self.leader, timeout=120, interval=0.5, what="an SB Raft leader")
        wait_until(self._cluster_has_all, timeout=600, interval=1,
                   what="every member joined")
        for r in self.relay_names:
            self.start_relay(r)

    def _cluster_has_all(self) -> bool:
        for m in self.members:
            out = self.run("ovs-appctl", "-t", f"{self.root}/{m}.ctl", "cluster/status",
                           "OVN_Southbound", check=False)
            if "Status: cluster member" not in out:
                return False
        return True


# -- measuring the servers ------------------------------------------------------
_ACKED = re.compile(r"bytes_acked:(\d+)")


def bytes_sent(ports: list[int]) -> int:
    """Bytes acknowledged by the peers of every established TCP socket on these local
    ports: what the servers listening there sent their clients."""
    if not ports:
        return 0
    flt = " or ".join(f"sport = :{p}" for p in ports)
    out = subprocess.run(["ss", "-tinH", "state", "established", f"( {flt} )"],
                         capture_output=True, text=True).stdout
    return sum(int(m) for m in _ACKED.findall(out))
