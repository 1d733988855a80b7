"""The metadata socket haproxy sends requests to: bound first thing at start, or collected
from the keeper a previous agent parked it in (ovnmeta.handoff).

Kept free of heavy imports: ovnmeta-agent listens within about 0.15 s of starting, so that
neutron's haproxies (during a takeover) or ours (after a crash) wait in the backlog rather
than fail while the rest of the agent loads.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import socket

from ovnmeta import handoff

LOG = logging.getLogger(__name__)


def socket_mode(mode: str, user: str, group: str) -> int:
    """Permissions of the socket, as neutron's metadata_proxy_socket_mode defines them."""
    if mode == "deduce":
        mode = "group" if group else ("user" if user else "all")
    return {"user": 0o644, "group": 0o664, "all": 0o666}[mode]


def bind_socket(path: str, mode: int, user: str = "", group: str = "",
                backlog: int = 4096) -> socket.socket:
    """A listening unix socket at path, replacing a stale one from an earlier agent."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}"
    if os.path.exists(tmp):
        os.unlink(tmp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(tmp)
    os.chmod(tmp, mode)
    if user or group:
        os.chown(tmp, pwd.getpwnam(user).pw_uid if user else -1,
                 grp.getgrnam(group).gr_gid if group else -1)
    sock.listen(backlog)
    # rename() swaps the path atomically: haproxy never finds it missing across a restart.
    os.replace(tmp, path)
    sock.setblocking(False)
    return sock


def listen(conf) -> socket.socket:
    """The previous agent's socket if one is parked, else a new one, per the config."""
    sock = handoff.collect(conf.metadata_proxy_socket)
    if sock is not None:
        LOG.info("took over the listening socket from the previous agent")
        sock.setblocking(False)
        return sock
    mode = socket_mode(conf.metadata_proxy_socket_mode, conf.metadata_proxy_user,
                       conf.metadata_proxy_group)
    return bind_socket(conf.metadata_proxy_socket, mode, conf.metadata_proxy_user,
                       conf.metadata_proxy_group, conf.metadata_backlog)
