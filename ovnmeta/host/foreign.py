"""Another agent's processes: neutron's agent itself, while it still runs on this host, and
what it left inside our namespaces, and stopping those.

neutron's OVN metadata agent runs one haproxy per network inside `ovnmeta-<net>`; ovnmeta
never runs anything in there (its haproxy binds from the root namespace), so any process
found in one is someone else's. Finding them is one scan of /proc per pass.
"""

from __future__ import annotations

import configparser
import logging
import os
import signal
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ovnmeta.core.model import METADATA_AGENT, OVN_AGENT, ForeignProcess, NeutronAgent
from ovnmeta.host import procs
from ovnmeta.host.osloargs import config_files

LOG = logging.getLogger(__name__)


def _ns_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _haproxy_files(argv: list[str]) -> tuple[str, str]:
    """(config, pidfile) of a haproxy command line: -f FILE, and the config's pidfile."""
    config = ""
    for flag, value in zip(argv, argv[1:]):
        if flag == "-f":
            config = value
    pidfile = ""
    if config:
        try:
            for line in Path(config).read_text().splitlines():
                words = line.split()
                if len(words) == 2 and words[0] == "pidfile":
                    pidfile = words[1]
        except OSError:
            pass
    return config, pidfile


def describe(pid: int) -> ForeignProcess | None:
    try:
        argv = [a.decode(errors="replace") for a in
                Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    config, pidfile = _haproxy_files(argv) if name == "haproxy" else ("", "")
    return ForeignProcess(pid=pid, name=name, config=config, pidfile=pidfile)


def in_namespaces(namespaces: dict[str, str]) -> dict[str, list[ForeignProcess]]:
    """Processes whose network namespace is one of `namespaces` (name -> bind-mount path)."""
    wanted = {key: name for name, path in namespaces.items() if (key := _ns_key(path))}
    found: dict[str, list[ForeignProcess]] = {}
    if not wanted:
        return found
    me = os.getpid()
    # One stat a process, and its state read only for those in our namespaces: reading
    # every process's state first (procs.live) cost 2-3 ms a scan with 80 processes.
    for pid in procs.pids():
        if pid == me:
            continue
        ns = wanted.get(_ns_key(f"/proc/{pid}/ns/net"))
        if ns is None or not procs.running(pid):   # a zombie has no namespace left
            continue
        proc = describe(pid)
        if proc:
            found.setdefault(ns, []).append(proc)
    return found


def command_line(raw: bytes) -> list[str]:
    """The arguments of a /proc/PID/cmdline. neutron's agents set their process title, one
    string: "<agent> (<interpreter> <script> --config-file …)", or cotyledon's
    "<agent>: master process [<script> --config-file …]" and "<agent>: ServiceWrapper
    worker(0)". Such a title is split on blanks and brackets."""
    argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if len(argv) == 1 and " " in argv[0]:
        argv = argv[0].translate(str.maketrans("()[]", "    ")).split()
        argv = [a.rstrip(":") for a in argv]
    return argv


def agent_name(argv: list[str]) -> str | None:
    """Which neutron agent a command line runs, if any: the program, or the script an
    interpreter runs."""
    for arg in argv[:2]:
        name = os.path.basename(arg)
        if name in (METADATA_AGENT, OVN_AGENT):
            return name
    return None


def agent_extensions(files: Iterable[str]) -> tuple[str, ...] | None:
    """[agent] extensions as neutron-ovn-agent reads them from its files (the last one
    setting it wins); None when a file cannot be read."""
    found: tuple[str, ...] = ()
    for path in files:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            with open(path) as f:
                parser.read_file(f)
        except (OSError, configparser.Error):
            return None
        if parser.has_option("agent", "extensions"):
            found = tuple(e.strip() for e in parser.get("agent", "extensions").split(",")
                          if e.strip())
    return found


# ovnmeta's image runs the agent as `neutron-ovn-metadata-agent` (container/), a script
# naming this module: its command line alone looks like neutron's agent.
OVNMETA_SHIM_MARK = b"ovnmeta.agent.launch"


def is_ovnmeta_shim(pid: int, argv: list[str]) -> bool:
    """The command line runs ovnmeta's `neutron-ovn-metadata-agent` script, read through the
    process's own root (it may be another container's)."""
    for arg in argv[:2]:
        if os.path.basename(arg) == METADATA_AGENT and arg.startswith("/"):
            try:
                with open(f"/proc/{pid}/root{arg}", "rb") as f:
                    return OVNMETA_SHIM_MARK in f.read(4096)
            except OSError:
                return False
    return False


def neutron_agents() -> list[NeutronAgent]:
    """neutron's metadata agents running on this host, one scan of /proc."""
    found = []
    for live in procs.live():
        argv = command_line(live.cmdline)
        name = agent_name(argv)
        if name is None or is_ovnmeta_shim(live.pid, argv):
            continue
        files = config_files(argv) or config_files(    # a worker's: its master's
            command_line(procs.cmdline(live.parent)))
        extensions = agent_extensions(files) if name == OVN_AGENT else ()
        found.append(NeutronAgent(live.pid, name, extensions))
    return found


class Signals:
    """What the agent signalled, and when: the part of another agent's processes' actual
    state that only the agent knows. The plan reads it (core/plan.py decides each next
    signal and when a stopped process is forgotten); this only sends and records. Kept by
    PID, so a process is followed after its namespace is gone."""

    def __init__(self) -> None:
        self._sent: dict[int, tuple[str, ForeignProcess]] = {}   # pid -> (network, process)

    @property
    def pending(self) -> bool:
        return bool(self._sent)

    def networks(self) -> set[str]:
        """Networks with a process signalled and not yet forgotten: each pass looks again."""
        return {net for net, _ in self._sent.values()}

    def read(self, network_id: str, found: list[ForeignProcess]
             ) -> tuple[tuple[ForeignProcess, ...], tuple[ForeignProcess, ...]]:
        """The network's foreign processes with what was sent to them (those found in its
        namespace, and those signalled wherever they are now), and the signalled ones that
        have ended since."""
        alive = {p.pid: p for p in found}
        ended = []
        for pid, (net, sent) in self._sent.items():
            if net != network_id:
                continue
            if pid in alive and _same(alive[pid], sent):
                alive[pid] = sent
            elif _same(describe(pid), sent):
                alive[pid] = sent
            else:
                ended.append(sent)
        return tuple(alive.values()), tuple(ended)

    def send(self, network_id: str, process: ForeignProcess, sig: int, now: float) -> None:
        if not _same(describe(process.pid), process):  # ended, or the PID was reused
            self.forget(network_id, process)
            return
        if process.signal:
            LOG.warning("network %s: %s pid %d still running; sending %s", network_id,
                        process.name, process.pid, signal.Signals(sig).name)
        else:
            LOG.info("network %s: stopping %s pid %d left by another agent (%s)", network_id,
                     process.name, process.pid, signal.Signals(sig).name)
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            pass
        self._sent[process.pid] = (network_id, replace(process, signal=sig,
                                                       signalled_at=now))

    def forget(self, network_id: str, process: ForeignProcess) -> None:
        """A stopped process has ended: its files go, and the record."""
        if self._sent.pop(process.pid, None):
            LOG.info("network %s: %s pid %d has ended", network_id, process.name, process.pid)
        remove_files(process, network_id)


def remove_files(process: ForeignProcess, network_id: str) -> None:
    """Remove what neutron's layout names for this network, and nothing else."""
    for path in neutron_files(process, network_id):
        try:
            os.unlink(path)
            LOG.info("removed %s", path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            LOG.warning("could not remove %s: %s", path, exc)


def _same(a: ForeignProcess | None, b: ForeignProcess) -> bool:
    return a is not None and (a.pid, a.name, a.config) == (b.pid, b.name, b.config)


def neutron_files(process: ForeignProcess, network_id: str) -> list[str]:
    """neutron's haproxy files for a network: <state_path>/ovn-metadata-proxy/<net>.conf and
    <external_pids>/<net>.pid.haproxy. Files of any other shape are not ours to delete."""
    out = []
    config = Path(process.config)
    if config.name == f"{network_id}.conf" and config.parent.name == "ovn-metadata-proxy":
        out.append(str(config))
    if Path(process.pidfile).name == f"{network_id}.pid.haproxy":
        out.append(process.pidfile)
    return out
