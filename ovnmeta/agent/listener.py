"""The metadata socket haproxy sends requests to: collected from its keeper
(ovnmeta.agent.handoff), or bound anew with a keeper started for it, first thing at start.

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

from ovnmeta.agent import handoff

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
    """The socket the keeper holds (a previous agent's), else a new one and a keeper."""
    path = conf.metadata_proxy_socket
    sock = handoff.collect(path)
    if sock is not None:
        LOG.info("took over the listening socket from its keeper")
        sock.setblocking(False)
        if not handoff.can_hold(path):
            # Started by an earlier ovnmeta, it would let haproxy's readiness check fail at
            # every restart. This process holds the socket meanwhile: nothing is refused.
            handoff.release(path)
            if handoff.start(sock, path):
                LOG.info("replaced the socket keeper an earlier ovnmeta started")
        return sock
    mode = socket_mode(conf.metadata_proxy_socket_mode, conf.metadata_proxy_user,
                       conf.metadata_proxy_group)
    sock = bind_socket(path, mode, conf.metadata_proxy_user, conf.metadata_proxy_group,
                       conf.metadata_backlog)
    keep(sock, path)
    return sock


def keep(sock: socket.socket, path: str) -> None:
    """A keeper for a socket this agent bound."""
    if not handoff.start(sock, path):
        LOG.warning("the socket keeper did not start: a crash of the agent would refuse "
                    "requests until it is back")
