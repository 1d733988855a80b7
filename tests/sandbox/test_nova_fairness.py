"""Fair shares of nova on the direct path: past [haproxy] nova_maxconn, requests wait in
haproxy, a VM with fewer in flight ahead of one with more; none is refused."""

from __future__ import annotations

import time

import subprocess

from ovnmeta_testing.sandbox import _free_port, wait_until
from ovnmeta_testing.sbmodes import URL, Cloud

from tests.sandbox.test_direct_path import goes_direct
from tests.sandbox.test_metrics import fetch


def test_a_vm_flooding_nova_waits_behind_its_neighbour(sandbox, tmp_path) -> None:
    port = _free_port()
    cloud = Cloud(sandbox, tmp_path)
    cloud.agent.config.write_text(cloud.agent.config.read_text()
                                  .replace("[haproxy]\n", "[haproxy]\nnova_maxconn = 2\n", 1)
                                  .replace("[metrics]\nlisten =\n",
                                           f"[metrics]\nlisten = 127.0.0.1:{port}\n"))
    try:
        cloud.agent.start()
        net = cloud.network()
        # nova takes 0.5 s for each of the flooder's requests: two hold both slots.
        flooder = cloud.vm(net, probe=False, delay=0.5)
        neighbour = cloud.vm(net, probe=False)
        wait_until(lambda: fetch(neighbour, 1) == [200] and fetch(flooder, 1) == [200],
                   timeout=30, what="both VMs served")
        # The agent has no such limit: this is about haproxy's path to nova.
        wait_until(lambda: goes_direct(port, neighbour, net), timeout=15,
                   what="the direct path")
        flood = flooder.popen("sh", "-c", "for i in $(seq 8); do curl -s -o /dev/null -w "
                              f"'%{{http_code}} ' {URL} & done; wait",
                              stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)   # 2 at nova, 6 waiting in haproxy
        started = time.monotonic()
        assert fetch(neighbour, 1) == [200]
        waited = time.monotonic() - started
        codes, _ = flood.communicate(timeout=30)
        # First in line: at most one of the flooder's requests ends before it gets a slot
        # (0.5 s); in arrival order it would wait for three rounds of two (1.5 s).
        assert waited < 1.0, waited
        assert codes.split() == ["200"] * 8   # queued, not refused
    finally:
        print(cloud.close())
