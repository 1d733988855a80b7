"""systemd's notify protocol (Type=notify): READY, STATUS and the watchdog, as datagrams to
$NOTIFY_SOCKET. No library: the protocol is one sendmsg.

The variables are taken out of the environment at start, so haproxy, the socket keeper and
the workers (all started by the agent) never speak for it.
"""

from __future__ import annotations

import logging
import os
import socket
import time

LOG = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None) -> None:
        self.address = address
        # Pet at twice the rate systemd expects, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._last_pet = 0.0
        self.ready = False
        self._status = ""

    @classmethod
    def from_environment(cls) -> Notifier:
        address = os.environ.pop("NOTIFY_SOCKET", None)
        usec = os.environ.pop("WATCHDOG_USEC", None)
        pid = os.environ.pop("WATCHDOG_PID", None)
        watchdog = int(usec) if usec and usec.isdigit() and (
            pid is None or pid == str(os.getpid())) else None
        return cls(address, watchdog)

    def send(self, *fields: str) -> bool:
        if not self.address:
            return False
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]   # abstract namespace
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(address)
                s.sendall("\n".join(fields).encode())
        except OSError as exc:
            LOG.warning("systemd notify to %s failed: %s", self.address, exc)
            return False
        return True

    def pet(self) -> None:
        """Tell the watchdog we are alive, at most every half interval."""
        now = time.monotonic()
        if self.watchdog_interval and now - self._last_pet >= self.watchdog_interval:
            self._last_pet = now
            self.send("WATCHDOG=1")

    def serving(self, networks: int, vms: int) -> None:
        """After a complete reconcile pass: ready once, then the status when it changes."""
        status = f"STATUS=serving {networks} network(s), {vms} VM port(s)"
        fields = [] if self.ready else ["READY=1"]
        if status != self._status:
            fields.append(status)
        if fields and self.send(*fields):
            self.ready, self._status = True, status

    def stopping(self) -> None:
        self.send("STOPPING=1")
