"""The direct path on a real agent, haproxy and OVN: a known VM's GETs go haproxy → nova
without the agent, POSTs through it; a new network (a haproxy reload) keeps every VM direct;
a killed agent takes every request back before its maps could go stale, while one restarted
on request keeps the direct path (the next agent vouches for the maps) and one that does not
come back loses it within seconds; nova's refusals are the agent's to log."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from ovnmeta.agent import handoff
from ovnmeta.haproxy.runtime import stat_rows, stats_command
from ovnmeta.haproxy.settings import MAPS_DIR, map_path, shared_stats_socket
from ovnmeta.core.signing import sign_instance_id
from ovnmeta_testing.agentproc import STARTING
from ovnmeta_testing.sandbox import free_port, wait_until
from ovnmeta_testing.sbmodes import SECRET, URL, Cloud

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
    port = free_port()
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
    # The reload's new worker's maps were read back: both go direct.
    wait_until(lambda: "reading back all" in cloud.agent.log(), timeout=10,
               what="maps pushed to the new haproxy worker")
    wait_until(lambda: goes_direct(port, vm2, other), timeout=10, what="the direct path")
    before = scrape(port)
    assert fetch(vm, 10) == [200] * 10 and fetch(vm2, 10) == [200] * 10
    after = scrape(port)
    for net in (direct["net"], other):
        assert agent_requests(after, net.id) - agent_requests(before, net.id) == 0


def ready_check(cloud: Cloud) -> dict[str, str]:
    """haproxy's row for its readiness check of the agent (status, chkdown: times down)."""
    csv = stats_command(shared_stats_socket(cloud.agent.state_dir / "haproxy"), "show stat")
    return next(r for r in stat_rows(csv)
                if r["pxname"] == "ovnmeta_ready" and r["svname"] == "agent")


def waits_for_the_next_agent(cloud: Cloud, vm) -> None:
    """With no agent running, a GET is not answered from the maps: it waits in the
    socket's backlog and the next agent answers it."""
    curl = subprocess.Popen(["ip", "netns", "exec", vm.netns, "curl", "-s", "-o", "/dev/null",
                             "-m", "30", "-w", "%{http_code}", URL],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert curl.poll() is None, "answered while no agent ran: the map was used"
    cloud.agent.start()
    code = curl.communicate(timeout=40)[0]
    assert code.strip() == "200", code


def test_a_restart_on_request_keeps_the_direct_path(direct) -> None:
    """The stopping agent leaves haproxy's check waiting with the socket keeper, and the
    next agent answers it once it has read back haproxy's maps: the check never fails, so
    the VMs' GETs stay on the direct path through the restart."""
    cloud, vm, net, port = direct["cloud"], direct["vm"], direct["net"], direct["port"]
    before = ready_check(cloud)
    assert before["status"] == "UP", before
    codes: list[int] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            codes.extend(fetch(vm, 1))
    prober = threading.Thread(target=probe)
    prober.start()
    try:
        cloud.agent.restart()
        log = cloud.agent.log()
        assert "left haproxy's readiness check with the socket keeper" in log
        wait_until(lambda: "took haproxy's readiness check over" in
                   cloud.agent.log().split(STARTING)[-1], timeout=10,
                   what="the new agent took the check over")
        time.sleep(1.0)   # past the next check or two
    finally:
        done.set()
        prober.join()
    after = ready_check(cloud)
    assert after["status"] == "UP" and after["chkdown"] == before["chkdown"], after
    assert codes and set(codes) == {200}, codes
    assert goes_direct(port, vm, net)


def test_a_restart_with_another_secret_does_not_vouch_for_the_old_signatures(direct) -> None:
    """metadata_proxy_shared_secret changed across the restart: the maps the last agent
    left carry signatures of the old secret, so the check it left is failed at once, and
    the path comes back once the maps are signed with the new one."""
    cloud, net = direct["cloud"], direct["net"]
    before = ready_check(cloud)
    config = cloud.agent.config.read_text()
    assert f"metadata_proxy_shared_secret = {SECRET}\n" in config
    cloud.agent.config.write_text(config.replace(
        f"metadata_proxy_shared_secret = {SECRET}\n", "metadata_proxy_shared_secret = new\n"))
    cloud.agent.restart()
    wait_until(lambda: "signed with another metadata_proxy_shared_secret" in
               cloud.agent.log().split(STARTING)[-1], timeout=10, what="the refusal")
    wait_until(lambda: int(ready_check(cloud)["chkdown"]) > int(before["chkdown"]),
               timeout=5, what="the check failing")
    wait_until(lambda: ready_check(cloud)["status"] == "UP", timeout=10,
               what="the maps signed anew")
    haproxy_dir = cloud.agent.state_dir / "haproxy"
    held = stats_command(shared_stats_socket(haproxy_dir),
                         f"show map {map_path(haproxy_dir / MAPS_DIR, net.id)}")
    signatures = [line.rsplit("|", 1)[1] for line in held.splitlines() if "|" in line]
    assert signatures and all(s == sign_instance_id("new", direct["vm"].port.device_id)
                              for s in signatures), held


def test_a_stopped_agent_that_does_not_come_back_loses_the_direct_path(direct) -> None:
    """What the keeper holds for the next agent it holds for HOLD_SECONDS only: then the
    check fails and requests wait for an agent instead of using maps nobody keeps."""
    cloud, vm = direct["cloud"], direct["vm"]
    cloud.agent.stop()
    assert "left haproxy's readiness check with the socket keeper" in cloud.agent.log()
    # The hold, then the check that waited in it failing, then one more interval.
    wait_until(lambda: ready_check(cloud)["status"].startswith("DOWN"),
               timeout=handoff.HOLD_SECONDS + 3, interval=0.1, what="the check failing")
    waits_for_the_next_agent(cloud, vm)


def test_a_stopped_agent_takes_every_request_back_at_once(direct) -> None:
    """While the agent is gone its maps could go stale: haproxy stops using them within
    its check interval (0.5 s), and the request waits for the next agent instead."""
    cloud, vm = direct["cloud"], direct["vm"]
    os.kill(cloud.agent.proc.pid, signal.SIGKILL)
    cloud.agent.proc.wait(10)
    time.sleep(1.0)
    waits_for_the_next_agent(cloud, vm)
