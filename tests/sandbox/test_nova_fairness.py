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


class Flood:
    """A network served by the direct path with a neighbour VM, and a flooder VM whose
    every answer takes nova 0.5 s, firing `requests` GETs at once."""

    def __init__(self, cloud: Cloud, haproxy_options: str, requests: int) -> None:
        cloud.agent.config.write_text(cloud.agent.config.read_text().replace(
            "[haproxy]\n", f"[haproxy]\n{haproxy_options}", 1))
        port = metrics_port(cloud)
        # The agent's own path has no such limits: this is haproxy's path to nova.
        net, self.neighbour = served_direct(cloud, port, timeout=15)
        self.flooder = cloud.vm(net, probe=False, delay=0.5)
        wait_until(lambda: goes_direct(port, self.flooder, net), timeout=30,
                   what="the flooder served by the direct path")
        self.requests = requests
        self.proc = self.flooder.popen(
            "sh", "-c", f"for i in $(seq {requests}); do curl -s -o /dev/null -w "
                        f"'%{{http_code}} ' {URL} & done; wait",
            stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)

    def check_neighbour_first(self) -> None:
        """The neighbour is answered while the flood still waits; then every request of
        the flood is answered: queued, not refused."""
        assert fetch(self.neighbour, 1) == [200]
        assert self.proc.poll() is None
        codes, _ = self.proc.communicate(timeout=30)
        assert codes.split() == ["200"] * self.requests


def test_a_vm_flooding_nova_waits_behind_its_neighbour(sandbox, tmp_path) -> None:
    cloud = Cloud(sandbox, tmp_path)
    try:
        # 2 at nova, 6 waiting in haproxy (no busy lane: the priority alone).
        flood = Flood(cloud, "nova_maxconn = 2\nnova_vm_maxconn = 0\n", 8)
        # Served ahead of the flooder's queue, so the flood is still on: in arrival order
        # the neighbour would come after all eight of its requests (four rounds of 0.5 s).
        flood.check_neighbour_first()
    finally:
        print(cloud.close())


def test_a_vm_past_its_share_waits_in_the_busy_lane(sandbox, tmp_path) -> None:
    cloud = Cloud(sandbox, tmp_path)
    try:
        # nova_maxconn (16) has room for all ten; the busy lane lets two at a time past
        # the flooder's share of two.
        flood = Flood(cloud, "nova_vm_maxconn = 2\n", 10)
        flood.check_neighbour_first()
        peak = cloud.nova.peak_in_flight(flood.flooder.port.device_id)
        assert 1 <= peak <= 4, f"{peak} of the flooder's requests were at nova at once"
        # [haproxy] threads: one, whatever the machine's CPUs.
        master, = cloud.agent.haproxy_pids()
        worker = Path(f"/proc/{master}/task/{master}/children").read_text().split()[-1]
        assert "Threads:\t1\n" in Path(f"/proc/{worker}/status").read_text()
    finally:
        print(cloud.close())
