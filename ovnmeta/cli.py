"""`ovnmeta`: the operator's command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ovnmeta import config, handoff, naming, netns
from ovnmeta.haproxy import HaproxyManager, Settings
from ovnmeta.lock import AgentLock, AlreadyRunning
from ovnmeta.ovs import LocalOvs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovnmeta", description="Operate the ovnmeta agent.")
    parser.add_argument("--config-file", action="append", default=[],
                        help="Agent config file(s), as given to ovnmeta-agent.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("cleanup", help="Remove every ovnmeta namespace, OVS port and haproxy "
                                   "(the agent must be stopped).")
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
            ovs.unplug(sorted(ovs.plugged()))
        except Exception as exc:
            print(f"ovnmeta cleanup: OVS ports not removed: cannot use the OVS DB at "
                  f"{conf.ovs.ovsdb_connection}: {exc}", file=sys.stderr)
            status = 1
        finally:
            ovs.stop()
        parked = handoff.collect(conf.metadata_proxy_socket)
        if parked is not None:  # a stopped agent's keeper: release it
            parked.close()
        removed = 0
        for ns in sorted(netns.list_namespaces()):
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
    conf = _conf(args.config_file)
    if args.command == "cleanup":
        return cleanup(conf)
    return 2


if __name__ == "__main__":
    sys.exit(main())
