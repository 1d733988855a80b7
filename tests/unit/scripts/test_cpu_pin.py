"""ovnmeta_testing.cpu.pin, what scripts/bench_proxy.py --pin does: every thread of a
process lands on the CPU asked for (affinity is per thread, so pinning only the main thread
would leave haproxy's or ovs-vswitchd's other threads where the scheduler put them)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ovnmeta_testing import cpu

THREADS = "import threading, time\n" \
          "[threading.Thread(target=time.sleep, args=(30,), daemon=True).start() for _ in range(3)]\n" \
          "print('ready', flush=True); time.sleep(30)\n"


def _affinities(pid: int) -> list[set[int]]:
    return [os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_pin_moves_every_thread_of_the_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", THREADS], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert len(_affinities(proc.pid)) == 4
        target = max(os.sched_getaffinity(0))
        cpu.pin([proc.pid], target)
        assert _affinities(proc.pid) == [{target}] * 4
        cpu.pin([proc.pid, 2 ** 22 + 1], min(os.sched_getaffinity(0)))  # a gone pid: skipped
        assert _affinities(proc.pid) == [{min(os.sched_getaffinity(0))}] * 4
    finally:
        proc.kill()
        proc.wait()
