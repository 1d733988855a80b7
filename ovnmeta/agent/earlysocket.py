"""The metadata socket taken before oslo.config loads, when the command line makes it certain.

oslo.config and oslo.log take about 0.15 s of CPU to load, and seconds on a loaded host.
During a swap that is time neutron's agent still owns the socket path, and neutron 29's
agent listens with a backlog of 5 (its `metadata_backlog` is set after socketserver has
already called listen()): past five waiting requests, its haproxies answer 503. So the
options the socket and the lock need are read here from the `--config-file` files with the
standard library, the lock is taken and the socket bound within some tens of milliseconds
of the interpreter starting.

A hard link keeps whatever socket held the path (a unix socket's listener is reached through
any of its links): a start that fails later, at the full config or the preflight, hands the
path back to it. The full config must then name the same values (`matches`), or the socket
is handed back and bound again as before.

Whatever this reader cannot read exactly as oslo.config would gives None, and the agent binds
after its full config: `--config-dir`, no `--config-file`, `OS_DEFAULT__*` variables, quoted
values, substitutions other than `$state_path`, an unreadable file.
"""

from __future__ import annotations

import configparser
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ovnmeta.agent import handoff, listener
from ovnmeta.host import preflight
from ovnmeta.host.osloargs import config_files
from ovnmeta.host.lock import AgentLock, AlreadyRunning

# ovnmeta.agent.config's defaults; a unit test checks both readers agree.
DEFAULTS = {"state_path": "/var/lib/neutron", "lock_path": "/run/lock/ovnmeta-agent.lock",
            "metadata_proxy_socket": "$state_path/metadata_proxy",
            "metadata_proxy_socket_mode": "deduce", "metadata_proxy_user": "",
            "metadata_proxy_group": "", "metadata_backlog": "4096"}
MODES = ("deduce", "user", "group", "all")


@dataclass(frozen=True)
class Options:
    state_path: str
    lock_path: str
    metadata_proxy_socket: str
    metadata_proxy_socket_mode: str
    metadata_proxy_user: str
    metadata_proxy_group: str
    metadata_backlog: int

    def matches(self, conf) -> bool:
        """Whether the full config (an oslo ConfigOpts) gives these same values."""
        return all(getattr(conf, name) == getattr(self, name)
                   for name in self.__dataclass_fields__)


def _files(argv: Sequence[str]) -> list[str] | None:
    """The --config-file arguments in order; None when the command line has what oslo.config
    would read more from (--config-dir), asks for no start (--help, --version), or names no
    file."""
    if any(a.startswith("--config-dir") or a in ("-h", "--help", "--version") for a in argv):
        return None
    return config_files(list(argv)) or None


def read(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> Options | None:
    """The socket's and the lock's options from the command line's config files."""
    files = _files(argv)
    if files is None or any(k.startswith("OS_DEFAULT__") for k in environ):
        return None
    values = dict(DEFAULTS)
    for name in files:
        parser = configparser.ConfigParser(interpolation=None, strict=False,
                                           default_section="\0none")
        parser.optionxform = str   # type: ignore[assignment,method-assign]
        try:
            with open(name, encoding="utf-8") as f:
                parser.read_file(f)
        except (OSError, UnicodeDecodeError, configparser.Error):
            return None   # oslo.config will say what is wrong, in its words
        if parser.has_section("DEFAULT"):
            for key in DEFAULTS:
                if parser.has_option("DEFAULT", key):
                    values[key] = parser.get("DEFAULT", key).strip()
    if any(v[:1] in ("'", '"') for v in values.values()) or "$" in values["state_path"]:
        return None
    for key, value in values.items():
        value = value.replace("${state_path}", values["state_path"]) \
            .replace("$state_path", values["state_path"])
        if "$" in value:
            return None
        values[key] = value
    if values["metadata_proxy_socket_mode"] not in MODES:
        return None
    try:
        backlog = int(values.pop("metadata_backlog"))
    except ValueError:
        return None
    if backlog < 1 or not values["metadata_proxy_socket"].startswith("/"):
        return None
    return Options(metadata_backlog=backlog, **values)


class EarlySocket:
    """The lock and the listening socket, taken before the full config was read."""

    def __init__(self, options: Options, lock: AgentLock, sock: socket.socket,
                 previous: str | None) -> None:
        self.options, self.lock, self.sock, self.previous = options, lock, sock, previous
        self.settled = False

    @classmethod
    def take(cls, argv: Sequence[str]) -> EarlySocket | None:
        """None, having touched nothing, when the options are uncertain, another agent
        holds the lock, a keeper already holds the socket (a restart: nothing to hurry),
        or the preflight would refuse."""
        options = read(argv)
        if options is None:
            return None
        path = options.metadata_proxy_socket
        if handoff.alive(path):
            return None
        try:
            preflight.check(path, options.state_path)
        except (preflight.PreflightError, OSError):
            return None
        lock = AgentLock(Path(options.lock_path))
        try:
            lock.acquire()
        except (AlreadyRunning, OSError):
            return None
        previous = f"{path}.previous"
        try:
            if os.path.lexists(previous):
                os.unlink(previous)
            if os.path.exists(path):
                os.link(path, previous)
            else:
                previous = None
            mode = listener.socket_mode(options.metadata_proxy_socket_mode,
                                        options.metadata_proxy_user,
                                        options.metadata_proxy_group)
            sock = listener.bind_socket(path, mode, options.metadata_proxy_user,
                                        options.metadata_proxy_group, options.metadata_backlog)
        except (OSError, KeyError):   # KeyError: a user or group this host does not have
            if previous and os.path.lexists(previous):
                os.unlink(previous)
            lock.release()
            return None
        return cls(options, lock, sock, previous)

    def keep(self) -> None:
        """The start went on: the socket is the agent's, the old one's link goes."""
        if self.previous and os.path.lexists(self.previous):
            os.unlink(self.previous)
        self.previous = None
        self.settled = True

    def give_back(self) -> None:
        """The start failed: the path goes back to the socket that held it (or away), the
        lock is released. Once only, and never after keep()."""
        if self.settled:
            return
        self.settled = True
        path = self.options.metadata_proxy_socket
        if self.previous and os.path.lexists(self.previous):
            os.replace(self.previous, path)
        elif os.path.lexists(path):
            os.unlink(path)
        self.sock.close()
        self.lock.release()
