"""Where a benchmark's CPU went: per process from /proc/<pid>/stat, for the machine from
/proc/stat, with the hypervisor's steal apart (a 2-core VM loses some to it, and a round
that lost more is not comparable). The one reader of both files for scripts and tests."""

from __future__ import annotations

import os
import time

HZ = os.sysconf("SC_CLK_TCK")


def stat_ticks(pid: int) -> int:
    """utime + stime of one process, all its threads, in clock ticks. Raises OSError when
    the process is gone: for callers to whom that is news (a sandbox daemon that died)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()   # the name may hold spaces and ")"
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int | None) -> float:
    """stat_ticks in seconds; 0 for no process or one gone (a server restarted counts anew)."""
    return process_ticks(pid) / HZ if pid else 0.0


def process_ticks(pid: int, children: bool = False) -> int:
    """utime + stime of one process (and its live children), in clock ticks (0 once gone)."""
    total = 0
    try:
        total += stat_ticks(pid)
        if not children:
            return total
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(c) for c in f.read().split()]
    except (OSError, ValueError, IndexError):
        return total
    return total + sum(process_ticks(c, True) for c in kids)


def _machine() -> list[int]:
    """/proc/stat's first line: user nice system idle iowait irq softirq steal guest ..."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:]]


def machine_ticks() -> tuple[int, int]:
    """(busy, stolen): all but idle, iowait and steal; what the hypervisor gave to others."""
    cpu = _machine()
    return sum(cpu[:8]) - cpu[3] - cpu[4] - cpu[7], cpu[7]


def machine_busy() -> tuple[int, int]:
    """(busy, total) ticks of the whole machine: busy counts steal, as time not idle.
    Guest time is already inside user and nice, so it is left out of the total."""
    cpu = _machine()
    return sum(cpu[:8]) - cpu[3] - cpu[4], sum(cpu[:8])


class CpuShares:
    """Where the machine's CPU went while a phase ran: ms of CPU per second of wall time,
    for the named processes and for the machine as a whole (the rest is wrk, the prober
    and the kernel's share of traffic), and what the hypervisor gave to others (steal)."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.hz = HZ
        self.start = self._sample()

    def _sample(self) -> tuple[float, tuple[int, int], dict[str, int]]:
        return (time.monotonic(), machine_ticks(),
                {n: sum(process_ticks(p, children=n == "haproxy") for p in ps)
                 for n, ps in self.pids.items()})

    def result(self) -> dict:
        (t0, busy0, by0), (t1, busy1, by1) = self.start, self._sample()
        per_s = lambda ticks: round(ticks * 1000 / self.hz / (t1 - t0))  # noqa: E731
        return {"machine": per_s(busy1[0] - busy0[0]), "stolen": per_s(busy1[1] - busy0[1]),
                **{n: per_s(by1[n] - by0[n]) for n in self.pids}}


def pin(pids: list[int], cpu_index: int) -> None:
    """Every thread of these processes onto one CPU (affinity is per thread: pinning the
    main thread alone leaves haproxy's or ovs-vswitchd's others where they were); a
    process gone meanwhile is skipped."""
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(int(tid), {cpu_index})
            except OSError:
                pass
