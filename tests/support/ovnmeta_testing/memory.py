"""Memory of processes as benchmarks and soaks report it: PSS, which splits shared pages
fairly, and RSS, what the kernel and an operator's `ps` show."""

from __future__ import annotations

from pathlib import Path


def pss_kib(pids: list[int]) -> int:
    return sum(rollup_kib(pid).get("Pss", 0) for pid in pids)


def rollup_kib(pid: int) -> dict[str, int]:
    """One process's smaps_rollup in KiB: Pss, Private_Clean, Private_Dirty, Rss, ..."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0])
    except (OSError, IndexError, ValueError):   # gone meanwhile
        pass
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of a process, KiB; 0 when it is gone or has no memory (a kernel thread)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
