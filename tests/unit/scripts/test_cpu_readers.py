"""The benchmarks' one reader of CPU time (ovnmeta_testing.cpu), against real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ovnmeta_testing import cpu


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def _gone_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_process_that_burns_cpu_counts_it():
    before = cpu.stat_ticks(os.getpid())
    _burn(0.2)
    assert cpu.stat_ticks(os.getpid()) - before >= 0.1 * cpu.HZ
    assert cpu.cpu_seconds(os.getpid()) >= 0.2


def test_a_gone_process_raises_for_the_strict_reader_and_counts_zero_for_the_others():
    pid = _gone_pid()
    with pytest.raises(OSError):
        cpu.stat_ticks(pid)
    assert cpu.process_ticks(pid) == 0
    assert cpu.cpu_seconds(pid) == 0.0
    assert cpu.cpu_seconds(None) == 0.0


def test_children_are_counted_when_asked():
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nend = time.process_time() + 0.3\n"
                              "while time.process_time() < end: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while cpu.process_ticks(child.pid) < 0.25 * cpu.HZ and time.monotonic() < deadline:
            time.sleep(0.05)
        alone = cpu.process_ticks(os.getpid())
        assert cpu.process_ticks(os.getpid(), children=True) >= alone + 0.25 * cpu.HZ
    finally:
        child.kill()
        child.wait()


def test_the_machine_is_busy_while_this_process_burns():
    busy0, total0 = cpu.machine_busy()
    work0, _stolen0 = cpu.machine_ticks()
    _burn(0.3)
    busy1, total1 = cpu.machine_busy()
    work1, _stolen1 = cpu.machine_ticks()
    assert total1 - total0 >= busy1 - busy0 >= 0.2 * cpu.HZ
    assert work1 - work0 >= 0.2 * cpu.HZ


def test_shares_name_each_process():
    shares = cpu.CpuShares({"me": [os.getpid()]})
    _burn(0.2)
    result = shares.result()
    assert set(result) == {"machine", "stolen", "me"}
    assert result["me"] > 0
