"""Extra processes serving the metadata socket when metadata_workers > 1.

Each worker inherits the listening socket, so the kernel spreads connections among the
processes. A worker holds no SB or OVS connection: the agent streams its one view to every
worker (ovnmeta.workerfeed), which keeps a worker small and the SB's load independent of the
worker count. The agent keeps the workers alive and stops them with itself.
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

from ovnmeta import config, eventloop, logs, procs, proxy, workerfeed
from ovnmeta.nova import NovaClient, NovaEndpoint
from ovnmeta.peers import PeerPolicy

LOG = logging.getLogger("ovnmeta.workers")  # also when run as __main__
FEED_TIMEOUT = 2.0  # a worker that takes longer to accept a feed is stuck: it is replaced


class _Worker:
    def __init__(self, proc: subprocess.Popen, feed: socket.socket) -> None:
        self.proc = proc
        self.feed = feed        # the agent's end of the worker's feed socketpair
        self.sent = -1          # the feed version it last received


class WorkerPool:
    def __init__(self, count: int, config_args: list[str], sock: socket.socket) -> None:
        self.count = count
        self.config_args = config_args
        self.sock = sock
        self.workers: list[_Worker] = []

    def _spawn(self) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = [self.sock.fileno(), theirs.fileno()]
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ovnmeta.workers", *self.config_args,
                 "--fd", str(fds[0]), "--feed", str(fds[1]), "--parent", str(os.getpid())],
                pass_fds=fds)
        finally:
            theirs.close()
        ours.setblocking(False)
        return _Worker(proc, ours)

    def start(self) -> None:
        self.workers = [self._spawn() for _ in range(self.count)]
        LOG.info("started %d extra metadata worker(s): %s", self.count, self.pids())

    def check(self) -> None:
        """Respawn workers that died; a fresh one gets the current feed on the next publish."""
        for i, worker in enumerate(self.workers):
            if worker.proc.poll() is not None:
                LOG.error("metadata worker %d exited with %s; respawning", worker.proc.pid,
                          worker.proc.returncode)
                worker.feed.close()
                self.workers[i] = self._spawn()

    async def publish(self, frame: bytes, version: int) -> None:
        """Send `frame` to every live worker that has not had this version yet."""
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            if worker.sent == version or worker.proc.poll() is not None:
                continue
            try:
                await asyncio.wait_for(loop.sock_sendall(worker.feed, frame), FEED_TIMEOUT)
                worker.sent = version
            except (asyncio.TimeoutError, OSError) as exc:
                # Half a frame may have gone: the stream is unusable, so is the worker.
                LOG.error("metadata worker %d did not take the SB view (%s); replacing it",
                          worker.proc.pid, exc or type(exc).__name__)
                worker.proc.kill()

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers if w.proc.poll() is None]

    def stop(self, timeout: float = 10.0) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.terminate()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            try:
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
            worker.feed.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovnmeta-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--feed", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    procs.die_with_parent(args.parent)
    conf = config.load(rest, prog="ovnmeta-worker")
    logs.setup(conf)
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    feed = socket.socket(fileno=args.feed)
    feed.setblocking(False)
    eventloop.run(_serve(conf, sock, feed, NovaEndpoint.from_conf(conf)))
    return 0


async def _serve(conf, sock: socket.socket, feed: socket.socket,
                 endpoint: NovaEndpoint) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    view = workerfeed.FedView()
    reader, _writer = await asyncio.open_unix_connection(sock=feed)
    follower = asyncio.create_task(_follow(view, reader, stopped))
    # Serve only with a view: a worker answering 404 for VMs it has not heard of yet
    # would fail requests the agent can answer.
    waiting = asyncio.create_task(view.settled.wait())
    await asyncio.wait([waiting, asyncio.create_task(stopped.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    if stopped.is_set():
        follower.cancel()
        return
    nova = NovaClient(endpoint)
    metadata = proxy.MetadataProxy.from_conf(conf, view.snapshot, nova, plugged=view.plugged)
    LOG.info("metadata worker serving")
    try:
        peers = PeerPolicy.for_haproxy(conf.metadata_proxy_user, conf.metadata_proxy_group)
        await proxy.serve(proxy.make_server(metadata, peers), sock, stopped,
                          backlog=conf.metadata_backlog)
    finally:
        follower.cancel()
        await nova.close()


async def _follow(view: workerfeed.FedView, reader: asyncio.StreamReader,
                  stopped: asyncio.Event) -> None:
    """Keep the view current; the feed's end means the agent is gone, and so is the worker
    (it finishes the requests it holds: the next agent's workers take the socket)."""
    try:
        await view.follow(reader)
        LOG.info("the agent closed the SB view feed; metadata worker stopping")
    except workerfeed.FeedError as exc:
        LOG.error("%s; metadata worker stopping", exc)
    stopped.set()


if __name__ == "__main__":
    sys.exit(main())
