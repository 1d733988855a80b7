"""The direct path on a real agent, haproxy and OVN: a known VM's GETs go haproxy → nova
without the agent, POSTs through it; a new network (a haproxy reload) keeps every VM direct;
a stopped agent takes every request back before its maps could go stale; nova's refusals
are the agent's to log."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from ovnmeta_testing.sandbox import _free_port, wait_until
from ovnmeta_testing.sbmodes import URL, Cloud

from tests.sandbox.test_metrics import delta, fetch, scrape


def agent_requests(metrics: dict, network: str) -> float:
    return sum(v for (name, labels), v in metrics.items()
               if name == "ovnmeta_requests_total" and ("network", network) in labels)


def goes_direct(port: int, vm, net) -> bool:
    """One GET answered 200 without the agent seeing it. A new haproxy worker checks the
    agent's readiness before it uses the maps: until then (≤ 0.5 s) the agent answers."""
    before = agent_requests(scrape(port), net.id)
    return fetch(vm, 1) == [200] and agent_requests(scrape(port), net.id) == before


def metrics_port(cloud: Cloud) -> int:
    """The agent's metrics endpoint (off in tests by default) on a free port."""
    port = _free_port()
    cloud.agent.config.write_text(cloud.agent.config.read_text().replace(
        "[metrics]\nlisten =\n", f"[metrics]\nlisten = 127.0.0.1:{port}\n"))
    return port


def served_direct(cloud: Cloud, port: int, timeout: float = 10):
    """The agent started, a network with one VM, served, and by the direct path."""
    cloud.agent.start()
    net = cloud.network()
    vm = cloud.vm(net, probe=False)
    wait_until(lambda: fetch(vm, 1) == [200], timeout=30, what="VM served")
    wait_until(lambda: goes_direct(port, vm, net), timeout=timeout, what="the direct path")
    return net, vm


@pytest.fixture
def direct(sandbox, tmp_path):
    cloud = Cloud(sandbox, tmp_path)
    port = metrics_port(cloud)
    try:
        net, vm = served_direct(cloud, port)
        yield {"cloud": cloud, "port": port, "net": net, "vm": vm}
    finally:
        # Also when the setup failed: a leaked agent holds the host lock for every later test.
        print(cloud.close())


def test_gets_go_straight_to_nova_and_posts_through_the_agent(direct) -> None:
    vm, net, port = direct["vm"], direct["net"], direct["port"]
    before = scrape(port)
    assert fetch(vm, 20) == [200] * 20
    mid = scrape(port)
    assert delta(before, mid, "ovnmeta_haproxy_requests_total", network=net.id) == 20
    assert agent_requests(mid, net.id) - agent_requests(before, net.id) == 0
    # Not on the map's path: a POST (its body limit and errors are the agent's).
    out = vm.exec("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                  "--data-binary", "x", URL.replace("meta_data.json", "password")).stdout
    after = scrape(port)
    assert agent_requests(after, net.id) - agent_requests(mid, net.id) == 1, out


def test_a_reload_for_a_new_network_keeps_every_vm_served_direct(direct) -> None:
    cloud, vm, port = direct["cloud"], direct["vm"], direct["port"]
    other = cloud.network()
    vm2 = cloud.vm(other, probe=False)
    wait_until(lambda: fetch(vm2, 1) == [200], timeout=30, what="new network served")
    # The reload's new worker got the maps again: both go direct.
    wait_until(lambda: "pushing all" in cloud.agent.log(), timeout=10,
               what="maps pushed to the new haproxy worker")
    wait_until(lambda: goes_direct(port, vm2, other), timeout=10, what="the direct path")
    before = scrape(port)
    assert fetch(vm, 10) == [200] * 10 and fetch(vm2, 10) == [200] * 10
    after = scrape(port)
    for net in (direct["net"], other):
        assert agent_requests(after, net.id) - agent_requests(before, net.id) == 0


def test_a_stopped_agent_takes_every_request_back_at_once(direct) -> None:
    """While the agent is gone its maps could go stale: haproxy stops using them within
    its check interval (0.5 s), and the request waits for the next agent instead."""
    cloud, vm = direct["cloud"], direct["vm"]
    os.kill(cloud.agent.proc.pid, signal.SIGKILL)
    cloud.agent.proc.wait(10)
    time.sleep(1.0)
    curl = subprocess.Popen(["ip", "netns", "exec", vm.netns, "curl", "-s", "-o", "/dev/null",
                             "-m", "30", "-w", "%{http_code}", URL],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert curl.poll() is None, "answered while the agent was down: the map was used"
    cloud.agent.start()
    code = curl.communicate(timeout=40)[0]
    assert code.strip() == "200", code
