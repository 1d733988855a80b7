"""A real, private OVN deployment (one chassis) for tests, benchmarks and the demo.

Every daemon is started from the distribution's binaries in one directory and stopped
by the PID in its pidfile, so `down` touches nothing it did not start.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ovnmeta import procs

DEFAULT_ROOT = Path(os.environ.get("OVNMETA_SANDBOX_DIR", "/tmp/ovnmeta-sandbox"))
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"

# Start order; `down` walks it backwards.
DAEMONS = ("ovsdb-server", "ovnnb_db", "ovnsb_db", "ovs-vswitchd", "ovn-northd", "ovn-controller")


class SandboxError(RuntimeError):
    """A sandbox command failed; the message carries the command and its stderr."""


@dataclass
class Sandbox:
    root: Path = DEFAULT_ROOT
    chassis: str = "ovnmeta-chassis-1"
    bridge: str = "br-int"
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
    def sb_connection(self) -> str:
        return f"unix:{self.root}/ovnsb_db.sock"

    @property
    def sb_tcp_connection(self) -> str:
        return f"tcp:127.0.0.1:{self._state().get('sb_tcp_port')}"

    # -- commands -------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
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
        return self.run("ovn-sbctl", f"--db={self.sb_connection}", "--timeout=20", *args)

    # -- state ----------------------------------------------------------------
    def pid(self, daemon: str) -> int | None:
        """PID of a daemon we started, or None when it is not running."""
        try:
            pid = int((self.root / f"{daemon}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if alive(pid) else None

    def status(self) -> dict[str, int | None]:
        return {d: self.pid(d) for d in DAEMONS}

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
        if "sb_tcp_port" not in state:
            state["sb_tcp_port"] = _free_port()
            (self.root / "sandbox.json").write_text(json.dumps(state))
        self._start_db("ovsdb-server", "conf.db", OVS_SCHEMA, "db.sock")
        if not (self.root / "ovs-initialized").exists():
            self.vsctl("--no-wait", "init")
            (self.root / "ovs-initialized").touch()
        self._start_db("ovnnb_db", "ovnnb_db.db", NB_SCHEMA, "ovnnb_db.sock")
        self._start_db("ovnsb_db", "ovnsb_db.db", SB_SCHEMA, "ovnsb_db.sock",
                       extra=[f"--remote=ptcp:{state['sb_tcp_port']}:127.0.0.1"])
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
                     f"--ovnsb-db={self.sb_connection}", *self._daemon_args("ovn-northd"))
        if not self.pid("ovn-controller"):
            self.run("ovn-controller", self.ovs_connection, "--pidfile",
                     f"--log-file={self.root}/ovn-controller.log", "--detach", "--no-chdir")
        self.wait_for(lambda: self.chassis in self.sbctl("--bare", "--columns=name", "list",
                                                         "Chassis"),
                      what=f"chassis {self.chassis} in the SB")

    def down(self) -> None:
        """Stop what `up` started (by pidfile) and remove the directory."""
        if self.pid("ovs-vswitchd") and self.pid("ovsdb-server"):
            self.vsctl("--if-exists", "del-br", self.bridge)
        started_vswitchd = bool(self.pid("ovs-vswitchd"))
        for daemon in reversed(DAEMONS):
            pid = self.pid(daemon)
            if pid:
                procs.terminate(pid)
        for dev in (self.bridge, "ovs-netdev"):
            # The userspace datapath leaves its tap devices behind (persist on); a host
            # restart or a SIGKILL leaves them orphaned, with no process holding them.
            if (started_vswitchd and Path(f"/sys/class/net/{dev}").exists()) or _orphan_tap(dev):
                self.run("ip", "link", "del", dev, check=False)
        if self.root.exists():
            for child in self.root.iterdir():
                child.unlink()
            self.root.rmdir()

    def wait_for(self, predicate, what: str, timeout: float = 20.0, interval: float = 0.05):
        return wait_until(predicate, timeout=timeout, interval=interval, what=what)

    # -- helpers --------------------------------------------------------------
    def _daemon_args(self, name: str) -> list[str]:
        return [f"--pidfile={self.root}/{name}.pid", f"--log-file={self.root}/{name}.log",
                f"--unixctl={self.root}/{name}.ctl", "--detach", "--no-chdir"]

    def _start_db(self, name: str, db: str, schema: str, sock: str,
                  extra: list[str] | None = None) -> None:
        path = self.root / db
        if not path.exists():
            self.run("ovsdb-tool", "create", str(path), schema)
        if self.pid(name):
            return
        self.run("ovsdb-server", str(path), f"--remote=punix:{self.root}/{sock}",
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


alive = procs.running  # the name the tests and scripts use


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovn-sandbox", description=__doc__)
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args(argv)
    box = Sandbox(root=args.dir)
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
        print(f"SB: {box.sb_connection}  (tcp: {box.sb_tcp_connection})")
        print(f"OVS: {box.ovs_connection}  chassis: {box.chassis}")
    return 0 if args.action != "status" or all(status.values()) else 3


if __name__ == "__main__":
    sys.exit(main())
