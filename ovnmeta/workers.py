"""Extra processes serving the metadata socket when metadata_workers > 1.

Each worker inherits the listening socket and keeps its own small SB view (conditional
monitoring makes that cheap), so no state is shared and the kernel spreads connections.
The agent keeps them alive and stops them with itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from ovnmeta import config, eventloop, logs, procs, proxy, sbview
from ovnmeta.nova import NovaClient, NovaEndpoint
from ovnmeta.ovs import LocalOvs
from ovnmeta.peers import PeerPolicy

LOG = logging.getLogger(__name__)


class WorkerPool:
    def __init__(self, count: int, config_args: list[str], chassis: str,
                 sock: socket.socket) -> None:
        self.count = count
        self.config_args = config_args
        self.chassis = chassis
        self.sock = sock
        self.procs: list[subprocess.Popen] = []

    def _spawn(self) -> subprocess.Popen:
        fd = self.sock.fileno()
        return subprocess.Popen(
            [sys.executable, "-m", "ovnmeta.workers", *self.config_args, "--fd", str(fd),
             "--chassis", self.chassis, "--parent", str(os.getpid())], pass_fds=[fd])

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.count)]
        LOG.info("started %d extra metadata worker(s): %s", self.count,
                 [p.pid for p in self.procs])

    def check(self) -> None:
        """Respawn workers that died."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                LOG.error("metadata worker %d exited with %s; respawning", proc.pid,
                          proc.returncode)
                self.procs[i] = self._spawn()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def stop(self, timeout: float = 10.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovnmeta-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--chassis", required=True)
    parser.add_argument("--parent", type=int, required=True)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    procs.die_with_parent(args.parent)
    conf = config.load(rest, prog="ovnmeta-worker")
    logs.setup(conf)
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    sb = sbview.SbView.from_conf(conf, args.chassis, lambda _: None)
    sb.start()
    ovs = LocalOvs(conf.ovs.ovsdb_connection, conf.ovs.ovsdb_timeout, lambda: None)
    ovs.start()
    eventloop.run(_serve(conf, sb, ovs, sock, NovaEndpoint.from_conf(conf)))
    sb.stop()
    ovs.stop()
    return 0


async def _serve(conf, sb: sbview.SbView, ovs: LocalOvs, sock: socket.socket,
                 endpoint: NovaEndpoint) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    while not sb.settled and not stopped.is_set():
        await asyncio.sleep(0.02)
    nova = NovaClient(endpoint)
    metadata = proxy.MetadataProxy.from_conf(conf, sb.snapshot, nova, plugged=ovs.iface_ids)
    LOG.info("metadata worker serving")
    try:
        peers = PeerPolicy.for_haproxy(conf.metadata_proxy_user, conf.metadata_proxy_group)
        await proxy.serve(proxy.make_server(metadata, peers), sock, stopped)
    finally:
        await nova.close()


if __name__ == "__main__":
    sys.exit(main())
