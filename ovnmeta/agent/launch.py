"""`ovnmeta-agent`'s entry point: lock and metadata socket first, the rest after.

The socket is listening before the agent loads what it needs (oslo.config, ovsdbapp,
pyroute2, jinja2: some tenths of a second idle, seconds on a loaded host), so requests
haproxy sends meanwhile wait in its backlog. When the command line makes it certain, the
socket is bound even before oslo.config loads (ovnmeta.agent.earlysocket); this module
imports nothing heavy until then.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ovnmeta.agent import listener
from ovnmeta.agent.earlysocket import EarlySocket
from ovnmeta.host import outlive, preflight
from ovnmeta.host.lock import AgentLock, AlreadyRunning

if TYPE_CHECKING:
    from oslo_config import cfg

LOG = logging.getLogger("ovnmeta.agent.daemon")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    early = EarlySocket.take(args)
    code = _start(args, early)
    if code is not None and early is not None:   # the start failed: hand the path back
        early.give_back()
    return code or 0


def _start(args: list[str], early: EarlySocket | None) -> int | None:
    """None once the agent ran; else the exit code of a start that failed before it."""
    from oslo_config import cfg

    from ovnmeta.agent import config, logs
    try:
        conf = config.load(args, prog="ovnmeta-agent")
    except cfg.Error as exc:
        print(f"ovnmeta-agent: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # a config file that is a directory, or unreadable
        print(f"ovnmeta-agent: cannot read a config file: {exc.strerror}: {exc.filename}",
              file=sys.stderr)
        return 2
    try:
        logs.setup(conf)
    except OSError as exc:
        print(f"ovnmeta-agent: cannot open the log: {exc.strerror}: {exc.filename}",
              file=sys.stderr)
        return 2
    if early is not None and not early.options.matches(conf):
        LOG.warning("the socket bound at start (%s) is not the config's (%s): bound again",
                    early.options.metadata_proxy_socket, conf.metadata_proxy_socket)
        early.give_back()
        early = None
    # The early socket passed the preflight on these very paths (matches() says so).
    problem = _preflight(conf) if early is None else None
    if problem:
        LOG.error("%s", problem)
        if conf.log_file or conf.log_dir:   # else the log is on stdout already
            print(f"ovnmeta-agent: {problem}", file=sys.stderr)
        return 2
    if early is None:
        lock = AgentLock(Path(conf.lock_path))
        try:
            lock.acquire()
        except AlreadyRunning as exc:
            LOG.error("%s", exc)
            return 1
    else:
        lock = early.lock
    LOG.info("ovnmeta-agent starting (pid lock %s)", lock.path)
    try:
        _helpers_cgroup(conf)
        if conf.metadata_workers > 1:
            _multiprocess_metrics(Path(conf.state_path) / "metrics")
        if early is None:
            sock = listener.listen(conf)
        else:
            early.keep()
            sock = early.sock
            listener.keep(sock, conf.metadata_proxy_socket)
        LOG.info("listening on %s%s", conf.metadata_proxy_socket,
                 "" if early is None else " (bound before the config was loaded)")
        zygote = _zygote(conf, sock, lock) if conf.metadata_workers > 1 else None
        _run(conf, sock, zygote)
        return None
    finally:
        lock.release()


def _preflight(conf: cfg.ConfigOpts) -> str | None:
    try:
        preflight.check(conf.metadata_proxy_socket, conf.state_path)
    except preflight.PreflightError as exc:
        return str(exc)
    return None


def _helpers_cgroup(conf: cfg.ConfigOpts) -> None:
    """In a container, haproxy and the keeper start outside its cgroup (ovnmeta.host.outlive)."""
    if not conf.helpers_outlive_container or not preflight.in_container():
        return
    group, why = outlive.prepare()
    if group is None:
        LOG.warning("%s", why)
        return
    outlive.use(group)
    LOG.info("in a container: haproxy and the socket keeper run in cgroup %s, outside it",
             outlive.CGROUP_NAME)


def _multiprocess_metrics(directory: Path) -> None:
    """Workers' metrics go to files the endpoint sums; set before prometheus_client loads
    (in this process and, inherited, in the workers). Counters restart with the agent."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _zygote(conf: cfg.ConfigOpts, sock, lock: AgentLock):
    """The workers' zygote, forked before the agent loads what only it needs (ovsdbapp,
    pyroute2, jinja2) and before any thread: workers share what the zygote loaded,
    and the agent's later work does not unshare pages of a heap that big."""
    from ovnmeta.agent.workers import Zygote
    zygote = Zygote(conf, sock, drop_fds=(lock.fd,) if lock.fd is not None else ())
    zygote.start()
    return zygote


def _run(conf: cfg.ConfigOpts, sock, zygote) -> None:
    from ovnmeta.agent import logs
    from ovnmeta.agent.daemon import Agent
    from ovnmeta.proxy import eventloop
    from ovnmeta.host.procs import become_subreaper

    logs.reapply_levels(conf)
    become_subreaper()
    agent = Agent(conf, sock)
    agent.zygote = zygote
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop.set())
    try:
        agent.start()
        eventloop.run(agent.serve())
    except SystemExit:
        pass
    finally:
        LOG.info("ovnmeta-agent stopping; namespaces and haproxy stay for the next agent")
        agent.shutdown()


if __name__ == "__main__":
    sys.exit(main())
