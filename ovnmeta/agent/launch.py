"""`ovnmeta-agent`'s entry point: config, lock and metadata socket first, the rest after.

Loading the whole agent (ovsdbapp, pyroute2, jinja2) takes some tenths of a second; the socket is
listening before that, so requests haproxy sends meanwhile wait in its backlog.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from oslo_config import cfg

from ovnmeta.agent import config, listener, logs
from ovnmeta.host import outlive, preflight
from ovnmeta.host.lock import AgentLock, AlreadyRunning

LOG = logging.getLogger("ovnmeta.agent.daemon")


def main(argv: list[str] | None = None) -> int:
    try:
        conf = config.load(sys.argv[1:] if argv is None else argv, prog="ovnmeta-agent")
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
    problem = _preflight(conf)
    if problem:
        LOG.error("%s", problem)
        if conf.log_file or conf.log_dir:   # else the log is on stdout already
            print(f"ovnmeta-agent: {problem}", file=sys.stderr)
        return 2
    lock = AgentLock(Path(conf.lock_path))
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        LOG.error("%s", exc)
        return 1
    LOG.info("ovnmeta-agent starting (pid lock %s)", lock.path)
    _helpers_cgroup(conf)
    if conf.metadata_workers > 1:
        _multiprocess_metrics(Path(conf.state_path) / "metrics")
    try:
        sock = listener.listen(conf)
        LOG.info("listening on %s", conf.metadata_proxy_socket)
        zygote = _zygote(conf, sock, lock) if conf.metadata_workers > 1 else None
        return _run(conf, sock, zygote)
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


def _run(conf: cfg.ConfigOpts, sock, zygote) -> int:
    from ovnmeta.proxy import eventloop
    from ovnmeta.agent.daemon import Agent
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
