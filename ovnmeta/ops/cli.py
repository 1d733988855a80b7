"""`ovnmeta`: the operator's command line."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import shutil
import sys
import time
from pathlib import Path

from oslo_config import cfg

from ovnmeta import __version__
from ovnmeta.agent import config, control, handoff
from ovnmeta.agent.reconcile import Reconciler
from ovnmeta.core import plan
from ovnmeta.core.model import SbSnapshot
from ovnmeta.haproxy.manager import HaproxyManager
from ovnmeta.haproxy.settings import Settings
from ovnmeta.host.lock import AgentLock, AlreadyRunning
from ovnmeta.host.system import LinuxHost
from ovnmeta.ops import status, trace, tracereport
from ovnmeta.ovsdb.ovs import ChassisConfig, LocalOvs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovnmeta", description="Operate the ovnmeta agent.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config-file", action="append", default=[],
                        help="Agent config file(s), as given to ovnmeta-agent.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("cleanup", help="Remove every ovnmeta namespace, OVS port and haproxy "
                                   "(the agent must be stopped).")
    sub.add_parser("health", help="One line for health checks: exit 0 while the agent runs "
                                  "and holds the SB and local OVS DB, else 1 and why.")
    st = sub.add_parser("status", help="Networks served here and the agent's state.")
    st.add_argument("--json", action="store_true")
    tr = sub.add_parser("trace", help="Walk a VM's metadata path; name the first broken hop.")
    tr.add_argument("vm", help="logical port name, instance id, or IP (with --network)")
    tr.add_argument("--network", default="", help="network id, when the VM is given by IP")
    tr.add_argument("--json", action="store_true")
    return parser


def _conf(files: list[str]):
    argv = [a for f in files for a in ("--config-file", f)]
    return config.load(argv, prog="ovnmeta")


class _NothingDesired:
    """An SB view that wants nothing on this host: `ovnmeta cleanup` is the reconciler
    converging on an empty desired state, with the same plan as the agent's."""
    settled = True

    def snapshot(self) -> SbSnapshot:
        return SbSnapshot(chassis="")

    def connected(self) -> bool:
        return True


class _NoOvs:
    """The local OVS DB when it cannot be reached: nothing plugged that we can see."""

    def plugged(self) -> dict[str, str]:
        return {}

    def others(self) -> dict[str, tuple[str, bool]]:
        return {}

    def iface_ids(self) -> frozenset[str]:
        return frozenset()

    def unplug(self, devices: list[str]) -> None:
        pass

    def stop(self) -> None:
        pass


def cleanup(conf) -> int:
    """Undo everything the agent made on this host, as for decommissioning: the reconciler
    with nothing desired (other agents' processes in our namespaces stopped and their files
    removed as in a takeover), then haproxy's files and the socket keeper."""
    lock = AgentLock(Path(conf.lock_path))
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"ovnmeta cleanup: {exc}", file=sys.stderr)
        return 1
    try:
        haproxy = HaproxyManager(conf.haproxy.mode, Path(conf.state_path) / "haproxy",
                                 Settings(socket=conf.metadata_proxy_socket),
                                 binary=conf.haproxy.haproxy_path,
                                 template_dir=conf.haproxy.templates_dir)
        status = 0
        ovs = LocalOvs(conf.ovs.ovsdb_connection, conf.ovs.ovsdb_timeout, lambda: None)
        try:
            ovs.start()
            chassis = ovs.chassis_config()
        except Exception as exc:
            print(f"ovnmeta cleanup: OVS ports not removed: cannot use the OVS DB at "
                  f"{conf.ovs.ovsdb_connection}: {exc}", file=sys.stderr)
            status = 1
            ovs.stop()
            ovs, chassis = _NoOvs(), ChassisConfig("", "", "")
        host = LinuxHost()
        present = len(host.list_namespaces())
        rec = Reconciler(_NothingDesired(), ovs, chassis, haproxy, host=host)
        rec.waiting_for = []   # told to clean: whichever agent else runs
        deadline = time.monotonic() + plan.SOFT_STOP_SECONDS + plan.HARD_STOP_SECONDS + 5
        try:
            while True:
                rec.mark_all()
                rec.reconcile_once()
                if not rec.stopping or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            ovs.stop()
        haproxy.stop_all()
        handoff.release(conf.metadata_proxy_socket)  # the socket keeper
        left = len(host.list_namespaces())
        print(f"removed {present - left} namespace(s)")
        if left or rec.failures:
            print(f"ovnmeta cleanup: {left} namespace(s) left, {rec.failures} step(s) "
                  "failed: see the log above", file=sys.stderr)
            status = 1
        if not left:
            _remove_state(conf)
    finally:
        lock.release()
    if status == 0:
        Path(conf.lock_path).unlink(missing_ok=True)
    return status


def _remove_state(conf) -> None:
    """The agent's own files in state_path (its sockets, its haproxy directory), and the
    directory itself if that leaves it empty: shared with neutron, it is kept otherwise."""
    state = Path(conf.state_path)
    for path in (Path(conf.metadata_proxy_socket), state / control.CONTROL_SOCKET):
        path.unlink(missing_ok=True)
    shutil.rmtree(state / "metrics", ignore_errors=True)   # the workers' metric files
    for directory in (state / "haproxy", state):
        try:
            directory.rmdir()
        except OSError:
            pass   # not empty (neutron's files), or not there


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING)
    try:
        conf = _conf(args.config_file)
    except cfg.Error as exc:
        print(f"ovnmeta: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # a config file that is a directory, or unreadable
        print(f"ovnmeta: cannot read a config file: {exc.strerror}: {exc.filename}",
              file=sys.stderr)
        return 2
    if args.command == "cleanup":
        return cleanup(conf)
    if args.command == "health":
        ok, line = status.health(status.collect(conf.state_path, scan_host=False),
                                 conf.ovs.ovsdb_connection)
        print(line)
        return 0 if ok else 1
    if args.command == "status":
        state = status.collect(conf.state_path)
        print(status.to_json(state) if args.json else status.render(state))
        return 0 if status.healthy(state) else 1
    if args.command == "trace":
        ref = trace.VmRef(ip=args.vm, network=args.network) if _is_ip(args.vm) \
            else trace.VmRef(name=args.vm)
        result = trace.Tracer(conf).run(ref)
        print(result.to_json() if args.json else tracereport.render(result))
        return 0 if result.ok else 1
    return 2


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


if __name__ == "__main__":
    sys.exit(main())
