"""Fair shares of nova on the direct path: past [haproxy] nova_maxconn, requests wait in
haproxy, a VM with fewer in flight ahead of one with more; past nova_vm_maxconn, a VM's
requests wait in the busy lane. None is refused."""

from __future__ import annotations

import time

import subprocess
from pathlib import Path

from ovnmeta_testing.sandbox import wait_until
from ovnmeta_testing.sbmodes import URL, Cloud

from tests.sandbox.test_direct_path import goes_direct, metrics_port, served_direct
from tests.sandbox.test_metrics import fetch


def test_a_vm_flooding_nova_waits_behind_its_neighbour(sandbox, tmp_path) -> None:
    cloud = Cloud(sandbox, tmp_path)
    cloud.agent.config.write_text(cloud.agent.config.read_text().replace(
        "[haproxy]\n", "[haproxy]\nnova_maxconn = 2\n", 1))
    port = metrics_port(cloud)
    try:
        # The agent's own path has no such limit: this is haproxy's path to nova.
        net, neighbour = served_direct(cloud, port, timeout=15)
        # nova takes 0.5 s for each of the flooder's requests: two hold both slots.
        flooder = cloud.vm(net, probe=False, delay=0.5)
        wait_until(lambda: goes_direct(port, flooder, net), timeout=30,
                   what="the flooder served by the direct path")
        flood = flooder.popen("sh", "-c", "for i in $(seq 8); do curl -s -o /dev/null -w "
                              f"'%{{http_code}} ' {URL} & done; wait",
                              stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)   # 2 at nova, 6 waiting in haproxy
        assert fetch(neighbour, 1) == [200]
        # Served ahead of the flooder's queue, so the flood is still on: in arrival order
        # the neighbour would come after all eight of its requests (four rounds of 0.5 s).
        assert flood.poll() is None
        codes, _ = flood.communicate(timeout=30)
        assert codes.split() == ["200"] * 8   # queued, not refused
    finally:
        print(cloud.close())


def test_a_vm_past_its_share_waits_in_the_busy_lane(sandbox, tmp_path) -> None:
    cloud = Cloud(sandbox, tmp_path)
    cloud.agent.config.write_text(cloud.agent.config.read_text().replace(
        "[haproxy]\n", "[haproxy]\nnova_vm_maxconn = 2\n", 1))
    port = metrics_port(cloud)
    try:
        net, neighbour = served_direct(cloud, port, timeout=15)
        flooder = cloud.vm(net, probe=False, delay=0.5)
        wait_until(lambda: goes_direct(port, flooder, net), timeout=30,
                   what="the flooder served by the direct path")
        flood = flooder.popen("sh", "-c", "for i in $(seq 10); do curl -s -o /dev/null -w "
                              f"'%{{http_code}} ' {URL} & done; wait",
                              stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        # nova_maxconn (16) has room for all ten; the busy lane lets two at a time past
        # the flooder's share of two.
        assert fetch(neighbour, 1) == [200]
        assert flood.poll() is None
        codes, _ = flood.communicate(timeout=30)
        assert codes.split() == ["200"] * 10   # queued, not refused
        peak = cloud.nova.peak_in_flight(flooder.port.device_id)
        assert 1 <= peak <= 4, f"{peak} of the flooder's requests were at nova at once"
        # [haproxy] threads: one, whatever the machine's CPUs.
        master, = cloud.agent.haproxy_pids()
        worker = Path(f"/proc/{master}/task/{master}/children").read_text().split()[-1]
        assert "Threads:\t1\n" in Path(f"/proc/{worker}/status").read_text()
    finally:
        print(cloud.close())
