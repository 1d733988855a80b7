"""A real, private OVN deployment (one chassis) for tests, benchmarks and the demo.

Every daemon is started from the distribution's binaries in one directory and stopped
by the PID in its pidfile, so `down` touches nothing it did not start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ovnmeta.host import procs

DEFAULT_ROOT = Path(os.environ.get("OVNMETA_SANDBOX_DIR", "/tmp/ovnmeta-sandbox"))


def _ovn_prefix() -> Path:
    """Where OVN and OVS are installed: Debian's packages (/usr), or a build of other
    versions named by OVNMETA_OVN_PREFIX (its bin/ and sbin/ go first on PATH, for the
    sandbox's daemons, the tests' ovn-nbctl and the agent's ovn-trace alike)."""
    prefix = os.environ.get("OVNMETA_OVN_PREFIX", "")
    if not prefix:
        return Path("/usr")
    root = Path(prefix)
    if not (root / "bin" / "ovn-nbctl").exists():
        raise SystemExit(f"OVNMETA_OVN_PREFIX={prefix}: no bin/ovn-nbctl there")
    dirs = [str(root / "bin"), str(root / "sbin")]
    path = os.environ.get("PATH", "").split(":")
    if path[:2] != dirs:
        os.environ["PATH"] = ":".join(dirs + path)
    return root


OVN_PREFIX = _ovn_prefix()
# The central side (NB, SB, northd and their ctl tools) may run another OVN than the chassis
# (OVS, ovn-controller, the agent's ovn-trace): OVNMETA_OVN_CENTRAL_PREFIX, to run a host
# mid-upgrade, its ovn-controller newer than the SB's schema (or older).
CENTRAL_PREFIX = Path(os.environ.get("OVNMETA_OVN_CENTRAL_PREFIX") or OVN_PREFIX)
OVS_SCHEMA = str(OVN_PREFIX / "share/openvswitch/vswitch.ovsschema")
NB_SCHEMA = str(CENTRAL_PREFIX / "share/ovn/ovn-nb.ovsschema")
SB_SCHEMA = str(CENTRAL_PREFIX / "share/ovn/ovn-sb.ovsschema")
CENTRAL_TOOLS = {"ovn-nbctl", "ovn-sbctl", "ovn-northd"}


def central(name: str) -> str:
    """The central side's binary (a full path when it is not the chassis side's)."""
    if CENTRAL_PREFIX == OVN_PREFIX:
        return name
    for sub in ("bin", "sbin"):
        if (CENTRAL_PREFIX / sub / name).exists():
            return str(CENTRAL_PREFIX / sub / name)
    return name

# Start order; `down` walks it backwards. The SB is one `ovnsb_db`, or the members of a Raft
# cluster `ovnsb_db-1`…`-N`, optionally behind an `ovnsb_relay`.
DAEMONS = ("ovsdb-server", "ovnnb_db", "ovnsb_db", "ovs-vswitchd", "ovn-northd", "ovn-controller")


class SandboxError(RuntimeError):
    """A sandbox command failed; the message carries the command and its stderr."""


@dataclass
class Sandbox:
    root: Path = DEFAULT_ROOT
    chassis: str = "ovnmeta-chassis-1"
    bridge: str = "br-int"
    sb_cluster: int = 1      # >1: a Raft cluster of that many SB members on loopback
    ssl: bool = False        # clients reach the SB (or its relay) over SSL, certs in root/pki
    relay: bool = False      # ovn-controller and the agent go through an ovsdb relay
    _env: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self._env = dict(os.environ)
        for var in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR",
                    "OVN_RUNDIR", "OVN_LOGDIR", "OVN_DBDIR"):
            self._env[var] = str(self.root)

    # -- connection strings ---------------------------------------------------
    @property
    def ovs_connection(self) -> str:
        return f"unix:{self.root}/db.sock"

    @property
    def nb_connection(self) -> str:
        return f"unix:{self.root}/ovnnb_db.sock"

    @property
    def sb_members(self) -> list[str]:
        """Daemon names of the SB servers that hold the database."""
        if self.sb_cluster <= 1:
            return ["ovnsb_db"]
        return [f"ovnsb_db-{i}" for i in range(1, self.sb_cluster + 1)]

    @property
    def daemons(self) -> list[str]:
        relay = ["ovnsb_relay"] if self.relay else []
        return ["ovsdb-server", "ovnnb_db", *self.sb_members, *relay,
                "ovs-vswitchd", "ovn-northd", "ovn-controller"]

    @property
    def sb_admin_connection(self) -> str:
        """The SB's unix sockets: what ovn-northd, ovn-sbctl and tests use."""
        return ",".join(f"unix:{self.root}/{m}.sock" for m in self.sb_members)

    @property
    def sb_connection(self) -> str:
        """What a chassis uses: ovn-controller and the agent."""
        state = self._state()
        if self.relay:
            return f"{self._proto}:127.0.0.1:{state.get('relay_port')}"
        if self.sb_cluster > 1 or self.ssl:
            return ",".join(f"{self._proto}:127.0.0.1:{state.get('sb_ports', {}).get(m)}"
                            for m in self.sb_members)
        return self.sb_admin_connection

    @property
    def _proto(self) -> str:
        return "ssl" if self.ssl else "tcp"

    @property
    def sb_tcp_connection(self) -> str:
        return f"tcp:127.0.0.1:{self._state().get('sb_tcp_port')}"

    @property
    def pki(self) -> dict[str, Path]:
        """Client key, certificate and CA for ssl: SB remotes (made by `up` with ssl)."""
        return {"private_key": self.root / "client-privkey.pem",
                "certificate": self.root / "client-cert.pem",
                "ca_cert": self.root / "pki" / "switchca" / "cacert.pem"}

    def agent_ovn_options(self) -> str:
        """The [ovn] lines that point an agent at this SB."""
        lines = [f"ovn_sb_connection = {self.sb_connection}"]
        if self.ssl:
            lines += [f"ovn_sb_{k} = {v}" for k, v in self.pki.items()]
        return "\n".join(lines) + "\n"

    @property
    def hostname(self) -> str:
        """The chassis's hostname, as ovn-controller reports it (OVS external_ids:hostname,
        else the system's): what neutron writes as requested-chassis. Read without the SB,
        which a test may have stopped."""
        configured = self.vsctl("--if-exists", "get", "open", ".",
                                "external_ids:hostname").strip().strip('"')
        return configured or socket.gethostname()

    # -- commands -------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
        if argv[0] in CENTRAL_TOOLS:
            argv = (central(argv[0]), *argv[1:])
        proc = subprocess.run(argv, env=self._env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise SandboxError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def vsctl(self, *args: str) -> str:
        return self.run("ovs-vsctl", f"--db={self.ovs_connection}", "--timeout=20", *args)

    def nbctl(self, *args: str) -> str:
        return self.run("ovn-nbctl", f"--db={self.nb_connection}", "--timeout=20", *args)

    def sbctl(self, *args: str) -> str:
        return self.run("ovn-sbctl", f"--db={self.sb_admin_connection}", "--timeout=20", *args)

    # -- state ----------------------------------------------------------------
    def pid(self, daemon: str) -> int | None:
        """PID of a daemon we started, or None when it is not running."""
        try:
            pid = int((self.root / f"{daemon}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if alive(pid) else None

    def status(self) -> dict[str, int | None]:
        return {d: self.pid(d) for d in self.daemons}

    def is_up(self) -> bool:
        return all(self.status().values())

    def _state(self) -> dict:
        try:
            return json.loads((self.root / "sandbox.json").read_text())
        except FileNotFoundError:
            return {}

    # -- lifecycle ------------------------------------------------------------
    def up(self) -> None:
        """Start whatever is not running yet; safe to call again."""
        self.root.mkdir(parents=True, exist_ok=True)
        state = self._state()
        mode = {"sb_cluster": self.sb_cluster, "ssl": self.ssl, "relay": self.relay}
        if state.get("mode", mode) != mode:
            raise SandboxError(f"{self.root} holds a sandbox in mode {state['mode']}, not "
                               f"{mode}: take it down first")
        state["mode"] = mode
        state.setdefault("sb_tcp_port", free_port())
        state.setdefault("sb_ports", {m: free_port() for m in self.sb_members})
        state.setdefault("raft_ports", {m: free_port() for m in self.sb_members})
        state.setdefault("relay_port", free_port())
        (self.root / "sandbox.json").write_text(json.dumps(state))
        if self.ssl:
            self._make_pki()
        self._start_db("ovsdb-server", "conf.db", OVS_SCHEMA, "db.sock")
        if not (self.root / "ovs-initialized").exists():
            self.vsctl("--no-wait", "init")
            (self.root / "ovs-initialized").touch()
        self._start_db("ovnnb_db", "ovnnb_db.db", NB_SCHEMA, "ovnnb_db.sock")
        self._start_sb(state)
        if not (self.root / "ovn-initialized").exists():
            self.nbctl("--no-wait", "init")
            self.sbctl("init")
            (self.root / "ovn-initialized").touch()
        if not self.pid("ovs-vswitchd"):
            self._refuse_foreign_bridge()
            self.run("ovs-vswitchd", self.ovs_connection, *self._daemon_args("ovs-vswitchd"))
        self.vsctl(
            "set", "open", ".",
            f"external_ids:system-id={self.chassis}",
            f"external_ids:ovn-remote={self.sb_connection}",
            "external_ids:ovn-encap-type=geneve",
            "external_ids:ovn-encap-ip=127.0.0.1",
            "external_ids:ovn-bridge-datapath-type=netdev",
            f"external_ids:ovn-bridge={self.bridge}",
        )
        self.vsctl("--may-exist", "add-br", self.bridge, "--", "set", "bridge", self.bridge,
                   "datapath_type=netdev", "fail-mode=secure",
                   "other-config:disable-in-band=true")
        if not self.pid("ovn-northd"):
            self.run("ovn-northd", f"--ovnnb-db={self.nb_connection}",
                     f"--ovnsb-db={self.sb_admin_connection}", *self._daemon_args("ovn-northd"))
        if not self.pid("ovn-controller"):
            self.run("ovn-controller", self.ovs_connection, *self._ssl_args(), "--pidfile",
                     f"--log-file={self.root}/ovn-controller.log", "--detach", "--no-chdir")
        self.wait_for(lambda: self.chassis in self.sbctl("--bare", "--columns=name", "list",
                                                         "Chassis"),
                      what=f"chassis {self.chassis} in the SB")

    def down(self) -> None:
        """Stop what `up` started (by pidfile) and remove the directory."""
        if self.pid("ovs-vswitchd") and self.pid("ovsdb-server"):
            self.vsctl("--if-exists", "del-br", self.bridge)
        started_vswitchd = bool(self.pid("ovs-vswitchd"))
        # Whatever mode the directory was brought up in: every pidfile of ours.
        names = [d for d in DAEMONS if d != "ovnsb_db"]
        sb = sorted(p.stem for p in self.root.glob("ovnsb_*.pid")) if self.root.exists() else []
        for daemon in reversed(names[:2] + sb + names[2:]):
            pid = self.pid(daemon)
            if pid:
                procs.terminate(pid)
        for dev in (self.bridge, "ovs-netdev"):
            # The userspace datapath leaves its tap devices behind (persist on); a host
            # restart or a SIGKILL leaves them orphaned, with no process holding them.
            if (started_vswitchd and Path(f"/sys/class/net/{dev}").exists()) or _orphan_tap(dev):
                self.run("ip", "link", "del", dev, check=False)
        if self.root.exists():
            shutil.rmtree(self.root)

    # -- the SB in its modes ----------------------------------------------------
    def _start_sb(self, state: dict) -> None:
        if self.sb_cluster <= 1:
            extra = [f"--remote=ptcp:{state['sb_tcp_port']}:127.0.0.1"]
            if self.ssl:
                extra += [f"--remote=pssl:{state['sb_ports']['ovnsb_db']}:127.0.0.1",
                          *self._server_ssl_args()]
            self._start_db("ovnsb_db", "ovnsb_db.db", SB_SCHEMA, "ovnsb_db.sock", extra=extra)
        else:
            first = self.sb_members[0]
            for member in self.sb_members:
                self.start_sb_member(member, state, create=True, seed=first)
            self.wait_for(self.sb_leader, what="an SB Raft leader", timeout=30)
        if self.relay:
            self.start_relay(state)

    def start_sb_member(self, member: str, state: dict | None = None, create: bool = False,
                        seed: str | None = None) -> None:
        """Start one SB cluster member (again, after a kill: its database file remains)."""
        state = state or self._state()
        db = self.root / f"{member}.db"
        raft = f"tcp:127.0.0.1:{state['raft_ports'][member]}"
        if create and not db.exists():
            if member == seed:
                self.run(central("ovsdb-tool"), "create-cluster", str(db), SB_SCHEMA, raft)
            else:
                self.run(central("ovsdb-tool"), "join-cluster", str(db), "OVN_Southbound", raft,
                         f"tcp:127.0.0.1:{state['raft_ports'][seed]}")
        if self.pid(member):
            return
        self.run(central("ovsdb-server"), str(db), f"--remote=punix:{self.root}/{member}.sock",
                 f"--remote=p{self._proto}:{state['sb_ports'][member]}:127.0.0.1",
                 *(self._server_ssl_args() if self.ssl else []), *self._daemon_args(member))

    def start_relay(self, state: dict | None = None) -> None:
        state = state or self._state()
        if self.pid("ovnsb_relay"):
            return
        self.run("ovsdb-server", f"--remote=p{self._proto}:{state['relay_port']}:127.0.0.1",
                 f"--remote=punix:{self.root}/ovnsb_relay.sock",
                 *(self._server_ssl_args() if self.ssl else []),
                 *self._daemon_args("ovnsb_relay"),
                 f"relay:OVN_Southbound:{self.sb_admin_connection}")

    def sb_leader(self) -> str | None:
        """The cluster member that is leader now, if any."""
        for member in self.sb_members:
            if not self.pid(member):
                continue
            out = self.run("ovs-appctl", "-t", f"{self.root}/{member}.ctl", "cluster/status",
                           "OVN_Southbound", check=False)
            if "Role: leader" in out:
                return member
        return None

    def kill(self, daemon: str) -> int:
        """SIGKILL one of our daemons (a crash); returns its PID."""
        pid = self.pid(daemon)
        if pid is None:
            raise SandboxError(f"{daemon} is not running")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not alive(pid), what=f"{daemon} gone", timeout=10)
        return pid

    def _make_pki(self) -> None:
        if self.pki["ca_cert"].exists():
            return
        pki = self.root / "pki"
        self.run("ovs-pki", f"--dir={pki}", "init")
        for name in ("sb", "client"):
            subprocess.run(["ovs-pki", f"--dir={pki}", "req+sign", name, "switch"],
                           cwd=self.root, env=self._env, check=True, capture_output=True)

    def _server_ssl_args(self) -> list[str]:
        return [f"--private-key={self.root}/sb-privkey.pem",
                f"--certificate={self.root}/sb-cert.pem",
                f"--ca-cert={self.pki['ca_cert']}"]

    def _ssl_args(self) -> list[str]:
        if not self.ssl:
            return []
        return [f"--private-key={self.pki['private_key']}",
                f"--certificate={self.pki['certificate']}", f"--ca-cert={self.pki['ca_cert']}"]

    def wait_for(self, predicate, what: str, timeout: float = 20.0, interval: float = 0.05):
        return wait_until(predicate, timeout=timeout, interval=interval, what=what)

    # -- helpers --------------------------------------------------------------
    def _daemon_args(self, name: str) -> list[str]:
        return [f"--pidfile={self.root}/{name}.pid", f"--log-file={self.root}/{name}.log",
                f"--unixctl={self.root}/{name}.ctl", "--detach", "--no-chdir"]

    def _start_db(self, name: str, db: str, schema: str, sock: str,
                  extra: list[str] | None = None) -> None:
        path = self.root / db
        side = (lambda exe: exe) if name == "ovsdb-server" else central
        if not path.exists():
            self.run(side("ovsdb-tool"), "create", str(path), schema)
        if self.pid(name):
            return
        self.run(side("ovsdb-server"), str(path), f"--remote=punix:{self.root}/{sock}",
                 *(extra or []), *self._daemon_args(name))

    def _refuse_foreign_bridge(self) -> None:
        # The userspace datapath makes a kernel tap device per bridge: two sandboxes (or a
        # host OVS) with the same bridge name would fight over it.
        for dev in (self.bridge, "ovs-netdev"):
            if _orphan_tap(dev):
                self.run("ip", "link", "del", dev, check=False)
        if Path(f"/sys/class/net/{self.bridge}").exists():
            raise SandboxError(
                f"a network device named {self.bridge} already exists: another OVS or sandbox"
                " is running on this host; stop it first")


_IFF_PERSIST = 0x0800


def _orphan_tap(dev: str) -> bool:
    """A persistent tap device no process has open: what a killed ovs-vswitchd leaves."""
    try:
        flags = int(Path(f"/sys/class/net/{dev}/tun_flags").read_text(), 16)
    except (OSError, ValueError):
        return False
    if not flags & _IFF_PERSIST:
        return False
    for fdinfo in Path("/proc").glob("[0-9]*/fdinfo/*"):
        try:
            if f"iff:\t{dev}\n" in fdinfo.read_text():
                return False
        except OSError:
            continue
    return True


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = ""):
    """Poll until predicate() is truthy and return its value; SandboxError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SandboxError(f"timed out after {timeout:g}s waiting for {what or predicate}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

alive = procs.running  # the name the tests and scripts use


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovn-sandbox", description=__doc__)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--sb-cluster", type=int, default=1, metavar="N",
                        help="run the SB as a Raft cluster of N members on loopback TCP")
    parser.add_argument("--ssl", action="store_true",
                        help="clients reach the SB over SSL (certs made in DIR/pki)")
    parser.add_argument("--relay", action="store_true",
                        help="ovn-controller and the agent use an ovsdb relay of the SB")
    args = parser.parse_args(argv)
    mode = {"sb_cluster": args.sb_cluster, "ssl": args.ssl, "relay": args.relay}
    if args.action != "up":  # status and down follow what the directory was brought up as
        mode = Sandbox(root=args.dir)._state().get("mode", mode)
    box = Sandbox(root=args.dir, **mode)
    try:
        if args.action == "up":
            box.up()
        elif args.action == "down":
            box.down()
    except SandboxError as exc:
        print(f"ovn-sandbox: {exc}", file=sys.stderr)
        return 1
    status = box.status()
    for daemon, pid in status.items():
        print(f"{daemon:16} {'running, pid ' + str(pid) if pid else 'stopped'}")
    if args.action == "up":
        print(f"SB for chassis: {box.sb_connection}")
        print(f"SB for admins:  {box.sb_admin_connection}")
        if box.ssl:
            print("SSL: " + "  ".join(f"{k}={v}" for k, v in box.pki.items()))
        print(f"OVS: {box.ovs_connection}  chassis: {box.chassis}")
    return 0 if args.action != "status" or all(status.values()) else 3


if __name__ == "__main__":
    sys.exit(main())
