"""Extra processes serving the metadata socket when metadata_workers > 1.

Each worker inherits the listening socket, so the kernel spreads connections among the
processes. A worker holds no SB or OVS connection: the agent streams its one view to every
worker (ovnmeta.agent.workerfeed), which keeps the SB's load independent of the worker count.
Workers come from a zygote, a copy of the agent made before it starts any thread: it forks
the other workers, then serves as the last one itself. A worker then shares the interpreter
and the modules the agent loaded, copy-on-write, instead of loading its own (about 25 MiB a
process), and no worker is forked from a process whose other threads may hold locks. A
zygote that went on waiting beside its workers would keep its own copy of every page both
the agent and a worker write (6 MiB): it would cost as much as a worker and serve nothing.
So a worker that dies is replaced by a new interpreter. The agent keeps the workers alive
and stops them with itself.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from ovnmeta.agent import config, logs, workerfeed
from ovnmeta.host import heap, procs
from ovnmeta.proxy import eventloop, handler
from ovnmeta.core.model import NovaEndpoint
from ovnmeta.proxy.nova import NovaClient
from ovnmeta.proxy.peers import PeerPolicy

LOG = logging.getLogger("ovnmeta.agent.workers")  # also when run as __main__
FEED_TIMEOUT = 2.0  # a worker that takes longer to accept a feed is stuck: it is replaced


class Zygote:
    """The single-threaded process that forks the workers (see the module's docstring)."""

    def __init__(self, conf, sock: socket.socket, drop_fds: tuple[int, ...] = ()) -> None:
        self._conf = conf
        self._sock = sock
        self._drop_fds = drop_fds
        self._ctl: socket.socket | None = None
        self.pid = 0
        self.serving = False    # it became a worker: it forks no more

    def start(self) -> None:
        """Fork now: call before the agent starts any thread."""
        if threading.active_count() > 1:
            LOG.warning("forking the worker zygote from a process with %d threads",
                        threading.active_count())
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # What is loaded now stays out of the collector's reach, here and in the copies:
        # a collection would write to every object's header and unshare the pages.
        gc.collect()
        gc.freeze()
        agent = os.getpid()

        def zygote() -> None:
            ours.close()
            _zygote(self._conf, self._sock, theirs, agent, self._drop_fds)
        pid = _fork(zygote, "the worker zygote")
        theirs.close()
        self.pid, self._ctl = pid, ours
        LOG.debug("worker zygote %d started", pid)

    def alive(self) -> bool:
        return bool(self.pid) and procs.running(self.pid)

    def fork_worker(self) -> tuple[int, socket.socket]:
        """A new worker's PID and the agent's end of its feed."""
        return self._ask(b"fork")

    def serve(self) -> tuple[int, socket.socket]:
        """Make the zygote the last worker; its PID and the agent's end of its feed."""
        pid, ours = self._ask(b"serve")
        self.serving = True
        self._ctl.close()
        self._ctl = None
        return pid, ours

    def _ask(self, command: bytes) -> tuple[int, socket.socket]:
        if self.serving or not self.alive():
            raise OSError("the worker zygote is serving" if self.serving
                          else "the worker zygote is gone")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._ctl.settimeout(10)
            socket.send_fds(self._ctl, [command], [theirs.fileno()])
            reply = self._ctl.recv(32)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        if not reply:
            ours.close()
            raise OSError("the worker zygote closed its control socket")
        return int(reply), ours

    def stop(self) -> None:
        if self._ctl is not None:
            self._ctl.close()    # the zygote exits on its end's EOF
            self._ctl = None
        if self.pid and not self.serving:   # once serving, the pool stops it as a worker
            procs.terminate(self.pid, timeout=5)


def _zygote(conf, sock: socket.socket, ctl: socket.socket, agent: int,
            drop_fds: tuple[int, ...]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    procs.die_with_parent(agent)
    for fd in drop_fds:
        os.close(fd)
    # Reap workers as they exit, also once serving: the agent watches them by PID.
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    while True:
        msg, fds, _flags, _addr = socket.recv_fds(ctl, 16, 1)
        if not msg:
            return                     # the agent closed its end: stopping or gone
        feed = socket.socket(fileno=fds[0])
        if msg == b"serve":
            ctl.send(str(os.getpid()).encode())
            ctl.close()
            _run_worker(conf, sock, feed)
            return

        def worker() -> None:
            # Not bound to the zygote's life (a worker itself now): the end of the agent's
            # feed stops it, the agent's death included.
            ctl.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _run_worker(conf, sock, feed)
        pid = _fork(worker, "a metadata worker")
        feed.close()
        ctl.send(str(pid).encode())


def _fork(child: Callable[[], None], what: str) -> int:
    """Fork; the child runs `child` and exits, never returning into its parent's code."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child()
            code = 0
        except BaseException:
            LOG.exception("%s failed", what)
        finally:
            os._exit(code)
    return pid


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


class _Worker:
    def __init__(self, pid: int, feed: socket.socket, proc: subprocess.Popen | None = None
                 ) -> None:
        self.pid = pid
        self.proc = proc        # when started as a new interpreter (no zygote)
        self.feed = feed        # the agent's end of the worker's feed socketpair
        self.sent = -1          # the feed version it last received

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return procs.running(self.pid)


class WorkerPool:
    def __init__(self, count: int, config_args: list[str], sock: socket.socket,
                 zygote: Zygote | None = None) -> None:
        self.count = count
        self.config_args = config_args
        self.sock = sock
        self.zygote = zygote
        self.workers: list[_Worker] = []

    def _spawn(self, last: bool = False) -> _Worker:
        if self.zygote is not None and not self.zygote.serving:
            try:
                pid, ours = self.zygote.serve() if last else self.zygote.fork_worker()
                ours.setblocking(False)
                return _Worker(pid, ours)
            except (OSError, ValueError) as exc:
                LOG.error("cannot fork a metadata worker from the zygote (%s); starting it "
                          "as a new interpreter", exc)
                self.zygote = None
        elif self.zygote is not None:
            LOG.info("replacing a metadata worker with a new interpreter (the zygote serves)")
        return self._exec()

    def _exec(self) -> _Worker:
        """A worker as a new interpreter: more memory, no zygote needed."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = [self.sock.fileno(), theirs.fileno()]
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ovnmeta.agent.workers", *self.config_args,
                 "--fd", str(fds[0]), "--feed", str(fds[1]), "--parent", str(os.getpid())],
                pass_fds=fds)
        finally:
            theirs.close()
        ours.setblocking(False)
        return _Worker(proc.pid, ours, proc)

    def start(self) -> None:
        self.workers = [self._spawn(last=i == self.count - 1) for i in range(self.count)]
        LOG.info("started %d extra metadata worker(s): %s", self.count, self.pids())

    def check(self) -> bool:
        """Respawn workers that died (True if any); a fresh one gets the current feed on the
        next publish."""
        respawned = False
        for i, worker in enumerate(self.workers):
            if not worker.alive():
                LOG.error("metadata worker %d exited; respawning", worker.pid)
                worker.feed.close()
                self.workers[i] = self._spawn()
                respawned = True
        return respawned

    async def publish(self, frame: bytes, version: int) -> None:
        """Send `frame` to every live worker that has not had this version yet."""
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            if worker.sent == version or not worker.alive():
                continue
            try:
                await asyncio.wait_for(loop.sock_sendall(worker.feed, frame), FEED_TIMEOUT)
                worker.sent = version
            except (asyncio.TimeoutError, OSError) as exc:
                # Half a frame may have gone: the stream is unusable, so is the worker.
                LOG.error("metadata worker %d did not take the SB view (%s); replacing it",
                          worker.pid, exc or type(exc).__name__)
                _kill(worker.pid)

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.alive()]

    def stop(self, timeout: float = 10.0) -> None:
        for worker in self.workers:     # all at once: they finish their requests in parallel
            if worker.alive():
                _kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            if worker.alive():
                procs.terminate(worker.pid, timeout=max(0.1, deadline - time.monotonic()))
            if worker.proc is not None:
                worker.proc.wait()
            worker.feed.close()
        if self.zygote is not None:
            self.zygote.stop()


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


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
    _run_worker(conf, sock, socket.socket(fileno=args.feed))
    return 0


def _run_worker(conf, sock: socket.socket, feed: socket.socket) -> None:
    sock.setblocking(False)
    feed.setblocking(False)
    eventloop.run(_serve(conf, sock, feed, NovaEndpoint.from_conf(conf)))


async def _serve(conf, sock: socket.socket, feed: socket.socket,
                 endpoint: NovaEndpoint) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    view = workerfeed.FedView()
    reader, _writer = await asyncio.open_unix_connection(sock=feed)
    follower = asyncio.create_task(_follow(view, reader, stopped))
    trimmer = asyncio.create_task(heap.keep_trimmed(stopped))
    # Serve only with a view: a worker answering 404 for VMs it has not heard of yet
    # would fail requests the agent can answer.
    waiting = asyncio.create_task(view.settled.wait())
    await asyncio.wait([waiting, asyncio.create_task(stopped.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    if stopped.is_set():
        follower.cancel()
        trimmer.cancel()
        return
    nova = NovaClient(endpoint)
    metadata = handler.MetadataProxy.from_conf(conf, view.snapshot, nova, plugged=view.plugged)
    LOG.info("metadata worker serving")
    try:
        peers = PeerPolicy.for_haproxy(conf.metadata_proxy_user, conf.metadata_proxy_group)
        await handler.serve(handler.make_server(metadata, peers), sock, stopped,
                          backlog=conf.metadata_backlog)
    finally:
        follower.cancel()
        trimmer.cancel()
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
