"""`ovnmeta`: the operator's command line."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path

from oslo_config import cfg

from ovnmeta.agent import config, handoff
from ovnmeta.core import naming, plan
from ovnmeta.host import foreign, netns, procs
from ovnmeta.ops import status, trace
from ovnmeta.haproxy.manager import HaproxyManager
from ovnmeta.haproxy.settings import Settings
from ovnmeta.host.lock import AgentLock, AlreadyRunning
from ovnmeta.ovsdb.ovs import LocalOvs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovnmeta", description="Operate the ovnmeta agent.")
    parser.add_argument("--config-file", action="append", default=[],
                        help="Agent config file(s), as given to ovnmeta-agent.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("cleanup", help="Remove every ovnmeta namespace, OVS port and haproxy "
                                   "(the agent must be stopped).")
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


def cleanup(conf) -> int:
    """Undo everything the agent made on this host, as for decommissioning."""
    lock = AgentLock(Path(conf.lock_path))
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"ovnmeta cleanup: {exc}", file=sys.stderr)
        return 1
    try:
        HaproxyManager(conf.haproxy.mode, Path(conf.state_path) / "haproxy",
                       Settings(socket=conf.metadata_proxy_socket),
                       binary=conf.haproxy.haproxy_path,
                       template_dir=conf.haproxy.templates_dir).stop_all()
        status = 0
        ovs = LocalOvs(conf.ovs.ovsdb_connection, conf.ovs.ovsdb_timeout, lambda: None)
        try:
            ovs.start()
            # Ours, and neutron's tap…0 of a namespace not yet taken over.
            theirs = {naming.neutron_veth(net)[0] for ns in netns.list_namespaces()
                      if (net := naming.network_from_namespace(ns))}
            ovs.unplug(sorted(ovs.plugged()) + sorted(
                name for name, (_, is_vm) in ovs.others().items()
                if name in theirs and not is_vm))
        except Exception as exc:
            print(f"ovnmeta cleanup: OVS ports not removed: cannot use the OVS DB at "
                  f"{conf.ovs.ovsdb_connection}: {exc}", file=sys.stderr)
            status = 1
        finally:
            ovs.stop()
        handoff.release(conf.metadata_proxy_socket)  # the socket keeper
        present = sorted(netns.list_namespaces())
        # Anything still running inside (neutron's haproxy, not yet taken over) would keep
        # a deleted namespace alive.
        inside = foreign.in_namespaces({ns: f"{netns.NETNS_DIR}/{ns}" for ns in present})
        for ns, found in inside.items():
            for proc in found:
                if proc.name in plan.REPLACEABLE:
                    print(f"stopping {proc.name} pid {proc.pid} in {ns}")
                    procs.terminate(proc.pid, timeout=5)
                    foreign.remove_files(proc, naming.network_from_namespace(ns))
        removed = 0
        for ns in present:
            net = naming.network_from_namespace(ns)
            if net:
                netns.delete(net)
                removed += 1
        print(f"removed {removed} namespace(s)")
    finally:
        lock.release()
    return status


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
    if args.command == "cleanup":
        return cleanup(conf)
    if args.command == "status":
        state = status.collect(conf.state_path)
        print(status.to_json(state) if args.json else status.render(state))
        return 0 if status.healthy(state) else 1
    if args.command == "trace":
        ref = trace.VmRef(ip=args.vm, network=args.network) if _is_ip(args.vm) \
            else trace.VmRef(name=args.vm)
        result = trace.Tracer(conf).run(ref)
        print(result.to_json() if args.json else trace.render(result))
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
