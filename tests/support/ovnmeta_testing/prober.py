"""Probes many VMs' metadata at a fixed cadence, from inside their namespaces, and reports
the longest gap each VM saw between answers and any answer that was another instance's.

Each probe is a fresh TCP connection made from a socket opened in the VM's namespace, so
hundreds of VMs are probed from one asyncio loop without a process per request.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field

from ovnmeta.host.namespace import entered

PATH = "/openstack/latest/meta_data.json"


@dataclass
class Probe:
    started: float
    status: int          # 0: no HTTP answer (refused, reset, timeout)
    uuid: str = ""
    error: str = ""
    seconds: float = 0.0  # until the answer (or the failure)


@dataclass
class Target:
    name: str            # the VM's namespace
    instance_id: str     # the uuid nova must answer with
    probes: list[Probe] = field(default_factory=list)
    inflight: int = 0

    def wrong(self) -> list[Probe]:
        return [p for p in self.probes if p.status == 200 and p.uuid != self.instance_id]

    def failed(self) -> list[Probe]:
        return [p for p in self.probes if p.status != 200]

    def max_gap(self, start: float, end: float) -> float:
        """Longest stretch of the window in which no probe that started got a right answer."""
        good = sorted(p.started for p in self.probes
                      if p.status == 200 and p.uuid == self.instance_id)
        marks = [start] + good + [end]
        return max(b - a for a, b in zip(marks, marks[1:]))


def _socket_in(ns: str, family: int) -> socket.socket:
    with entered(ns):
        return socket.socket(family, socket.SOCK_STREAM)


async def _probe(target: Target, address: str, timeout: float) -> None:
    """One probe; the caller counted it in target.inflight, which this uncounts."""
    started = time.monotonic()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = _socket_in(target.name, family)
    except BaseException:
        target.inflight -= 1
        raise
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (address, 80))
            host = f"[{address}]" if family == socket.AF_INET6 else address
            await loop.sock_sendall(sock, f"GET {PATH} HTTP/1.0\r\nHost: {host}\r\n\r\n"
                                    .encode())
            data = b""
            while chunk := await loop.sock_recv(sock, 65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        uuid = json.loads(body).get("uuid", "") if status == 200 else ""
        target.probes.append(Probe(started, status, uuid,
                                   seconds=time.monotonic() - started))
    except (OSError, TimeoutError, ValueError, IndexError) as exc:
        target.probes.append(Probe(started, 0, error=f"{type(exc).__name__}: {exc}",
                                   seconds=time.monotonic() - started))
    finally:
        target.inflight -= 1
        sock.close()


class Prober:
    """Probes every target every `interval` seconds in a background thread."""

    def __init__(self, interval: float = 0.1, timeout: float = 3.0,
                 address: str = "169.254.169.254") -> None:
        self.interval, self.timeout, self.address = interval, timeout, address
        self.targets: list[Target] = []
        self._removed: list[Target] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = self.ended = 0.0

    def add(self, name: str, instance_id: str) -> Target:
        target = Target(name, instance_id)
        with self._lock:
            self.targets.append(target)
        return target

    def remove(self, target: Target) -> None:
        """Stop probing a target (a VM about to be deleted); its probes stay reported.

        Returns once no probe of it is in flight, so deleting the VM next fails none.
        """
        with self._lock:
            self.targets.remove(target)
            self._removed.append(target)
        deadline = time.monotonic() + self.timeout + 1.0
        while target.inflight and time.monotonic() < deadline:
            time.sleep(0.01)

    def start(self) -> Prober:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.ended = time.monotonic()

    async def _run(self) -> None:
        pending: set[asyncio.Task] = set()
        tick = time.monotonic()
        while not self._stop.is_set():
            with self._lock:  # counted under the lock: remove() then waits for them
                for target in self.targets:
                    target.inflight += 1
                    task = asyncio.create_task(_probe(target, self.address, self.timeout))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            tick += self.interval
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        if pending:
            await asyncio.wait(pending)

    def latency(self) -> dict[str, float]:
        """p50, p99 and max seconds of every probe that got an answer."""
        times = sorted(p.seconds for t in self.targets for p in t.probes if p.status)
        if not times:
            return {}
        pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]  # noqa: E731
        return {"p50": round(pick(0.5), 4), "p99": round(pick(0.99), 4),
                "max": round(times[-1], 4)}

    def report(self) -> dict[str, dict]:
        """Per target: probes, failures, wrong answers, the longest gap in seconds."""
        out = {}
        for t in self.targets + self._removed:
            first = min((p.started for p in t.probes), default=self.started)
            last = max((p.started for p in t.probes), default=self.ended)
            out[t.name] = {"probes": len(t.probes), "failed": len(t.failed()),
                           "wrong": len(t.wrong()),
                           "max_gap": round(t.max_gap(first, last), 3),
                           "errors": sorted({p.error or str(p.status)
                                             for p in t.failed()})[:5],
                           "failed_at": [round(p.started - self.started, 2)
                                         for p in t.failed()][:20]}
        return out
