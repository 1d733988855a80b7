"""What went wrong between haproxy and nova on the direct path, read from haproxy's stats
socket: the agent sees no request on that path, so it logs and counts these in the words its
own path uses (ovnmeta.haproxy.maps keeps the maps themselves)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ovnmeta.core.throttle import Throttle
from ovnmeta.haproxy.runtime import stat_rows, worker_pid

LOG = logging.getLogger(__name__)

ANSWERS_TABLE = "ovnmeta_nova_answers"   # haproxy counts nova's 403 and 5xx here, by status
NOVA_BACKENDS = ("ovnmeta_nova", "ovnmeta_nova_busy")   # the main lane and the busy lane


def parse_answers(text: str) -> dict[int, int]:
    """`show table` of the answers table → {status: count}."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "key" in fields and "gpc0" in fields:
            try:
                out[int(fields["key"])] = int(fields["gpc0"])
            except ValueError:
                continue
    return out


def parse_backend_errors(csv: str, backends: tuple[str, ...] = NOVA_BACKENDS
                         ) -> dict[str, int]:
    """`show stat` → the nova backends' requests and connection and response errors,
    summed over both lanes."""
    out: dict[str, int] = {}
    for values in stat_rows(csv):
        if values.get("pxname") in backends and values.get("svname") == "BACKEND":
            for k in ("econ", "eresp", "stot"):
                out[k] = out.get(k, 0) + int(values.get(k) or 0)
    return out


class NovaWatch:
    """What went wrong between haproxy and nova on the direct path, logged by the agent in
    the words its own path uses: there the agent sees no request to log about."""

    def __init__(self, stats_socket: str, command: Callable[[str, str], str]) -> None:
        self.stats_socket = stats_socket
        self._command = command
        self._seen: dict[int | str, int] | None = None
        self._pid: int | None = None
        self.requests = 0         # sent straight to nova since this agent started
        # Failures since this agent started, by the kinds the agent's own path counts.
        self.errors = {"refused": 0, "timeout or invalid HTTP": 0, "403 bad secret": 0,
                       "5xx": 0}
        self._throttle = Throttle()

    def check(self) -> None:
        try:
            info = self._command(self.stats_socket, "show info")
            answers = self._command(self.stats_socket, f"show table {ANSWERS_TABLE}")
            stats = self._command(self.stats_socket, "show stat -1 2 -1")
        except OSError:
            if self._seen is None:
                self._seen = {}   # no haproxy yet: the one that comes is new, count it all
            return                # (MapSync logs haproxy being unreachable)
        pid = worker_pid(info)
        now: dict[int | str, int] = {**parse_answers(answers), **parse_backend_errors(stats)}
        if self._seen is None or pid is None:
            # A haproxy already running when this agent started: its past is not news.
            self._seen, self._pid = now, pid
            return
        before = self._seen if pid == self._pid else {}   # a new worker counts from 0
        self.requests += max(0, now.get("stot", 0) - before.get("stot", 0))
        delta = {k: v - before.get(k, 0) for k, v in now.items() if v > before.get(k, 0)}
        self._seen, self._pid = now, pid
        self.errors["refused"] += delta.get("econ", 0)
        self.errors["timeout or invalid HTTP"] += delta.get("eresp", 0)
        self.errors["403 bad secret"] += delta.get(403, 0)
        self.errors["5xx"] += sum(v for k, v in delta.items() if isinstance(k, int) and k >= 500)
        if delta.get(403):
            self._throttle.log(
                LOG, logging.ERROR, "403",
                "nova refused %d signed request(s) on the direct path (403): "
                "metadata_proxy_shared_secret in the agent's config does not match "
                "nova's [neutron] metadata_proxy_shared_secret", delta[403])
        for status in sorted(k for k in delta if isinstance(k, int) and k >= 500):
            self._throttle.log(LOG, logging.WARNING, str(status),
                               "nova answered %d to %d request(s) on the direct path", status,
                               delta[status])
        if delta.get("econ") or delta.get("eresp"):
            # haproxy's counters do not tell a reset from bytes that are not HTTP.
            self._throttle.log(
                LOG, logging.ERROR, "failed",
                "direct path: %d failed connection(s) to nova and %d failed answer(s) (reset, "
                "not HTTP or timed out); while haproxy's check finds nova down, VMs go through "
                "the agent", delta.get("econ", 0), delta.get("eresp", 0))
