"""Memory of processes as benchmarks report it: PSS, which splits shared pages fairly."""

from __future__ import annotations

from pathlib import Path


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total
