"""Who may talk to the metadata socket: haproxy, nothing else.

The socket answers with any VM's metadata, user data included, signed by the agent, to
whoever names the VM's network and address. neutron's default socket mode (`deduce` with no
user or group) is 0666, so any local user could ask; the kernel's SO_PEERCRED tells who is
on the other end of each connection, and only root, the agent's own user and the
user/group haproxy runs as (`metadata_proxy_user`/`_group`) are served.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import socket
import struct
from dataclasses import dataclass

LOG = logging.getLogger(__name__)
_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class PeerPolicy:
    uids: frozenset[int]
    gids: frozenset[int] = frozenset()

    @classmethod
    def for_haproxy(cls, user: str = "", group: str = "") -> PeerPolicy:
        """root, this process's user, and haproxy's user and group (names or ids)."""
        uids = {0, os.geteuid()}
        gids = set()
        if user:
            uids.add(int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid)
        if group:
            gids.add(int(group) if group.isdigit() else grp.getgrnam(group).gr_gid)
        return cls(frozenset(uids), frozenset(gids))

    def allows(self, peer: Peer) -> bool:
        return peer.uid in self.uids or peer.gid in self.gids


def peer_of(sock: socket.socket) -> Peer:
    return Peer(*_CREDS.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                               _CREDS.size)))


class Refusals:
    """Logs a refused peer once per user, not once per request."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def note(self, peer: Peer) -> None:
        if peer.uid in self._seen:
            LOG.debug("refused pid %d uid %d gid %d", peer.pid, peer.uid, peer.gid)
            return
        self._seen.add(peer.uid)
        LOG.warning("refused a metadata request from pid %d (uid %d, gid %d): only haproxy "
                    "may use the metadata socket (root, the agent's user, "
                    "metadata_proxy_user/_group); further refusals of uid %d are logged "
                    "at debug level", peer.pid, peer.uid, peer.gid, peer.uid)
