"""The host's cache of nova's answers behind the real path (VM → OVN → haproxy → agent →
nova), through the agent alone (direct_path off) and with haproxy's cache in front of it
(the direct path): a reboot's reads do not reach nova within the TTL, a change in nova is
served within it, and an outage or a hung nova is served from the last good answers, with
prompt errors for what was never kept."""

from __future__ import annotations

import os
import signal
import time

import pytest

from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import wait_until
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.vm import FakeVM

SECRET = "cache-secret"
ENTRY_BOUND = 16384   # [metadata_cache] max_entry_bytes here: larger answers pass through
# What cloud-init's OpenStack reader asks at boot, most of it.
PATHS = ["/openstack", "/openstack/latest/meta_data.json", "/openstack/latest/user_data",
         "/openstack/latest/network_data.json", "/openstack/latest/vendor_data.json",
         "/latest/meta-data/instance-id", "/latest/meta-data/hostname"]


def read(vm: FakeVM, path: str) -> tuple[int, str, str]:
    out = vm.exec("curl", "-s", "-m", "5", "-D", "/dev/stderr", "-w", "\n%{http_code}",
                  f"http://169.254.169.254{path}", check=False, timeout=10)
    body, _, code = out.stdout.rpartition("\n")
    cache = next((line.split(":", 1)[1].strip() for line in out.stderr.splitlines()
                  if line.lower().startswith("x-ovnmeta-cache:")), "")
    return int(code or 0), body, cache


@pytest.fixture
def cached(request, make_network, make_vm, start_agent, tmp_path):
    """Two VMs on two networks, nova, and the agent with the cache on. The parameter gives
    the path ("agent": direct_path off; "direct": haproxy's cache in front of the agent)
    and optionally the TTL (60 s unless given)."""
    path, _, ttl = getattr(request, "param", "agent").partition(":")
    vms = [make_vm(make_network()) for _ in range(2)]
    instances = {vm.port.device_id: {"project_id": vm.port.project_id,
                                     "hostname": f"vm-{n}", "user_data": f"#cloud-config\n{n}",
                                     "network_data": neutron.network_data(vm.network, vm.port)}
                 for n, vm in enumerate(vms)}
    nova = NovaProcess(instances, SECRET, tmp_path).start()
    agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                              f"nova_metadata_port = {nova.port}\n"
                              f"[haproxy]\ndirect_path = {path == 'direct'}\n"
                              "[metadata]\nnova_metadata_timeout = 3\n"
                              f"[metadata_cache]\nenabled = true\nttl = {ttl or 60}\n"
                              f"stale_after = 1\nmax_entry_bytes = {ENTRY_BOUND}\n")
    for vm in vms:
        wait_until(lambda: read(vm, PATHS[1])[0] == 200, timeout=20, what="served")
    yield {"vms": vms, "nova": nova, "agent": agent, "instances": instances, "path": path}
    if nova.proc and nova.proc.poll() is None:
        os.kill(nova.proc.pid, signal.SIGCONT)
    nova.stop()


@pytest.mark.parametrize("cached", ["agent", "direct"], indirect=True)
def test_a_reboot_within_the_ttl_asks_nova_nothing(cached) -> None:
    vms, nova = cached["vms"], cached["nova"]
    boot = {(n, p): read(vm, p) for n, vm in enumerate(vms) for p in PATHS}
    asked, haproxy_hits = nova.requests(), cached["agent"].haproxy_cache_hits()
    reboot = {(n, p): read(vm, p) for n, vm in enumerate(vms) for p in PATHS}
    assert nova.requests() == asked
    for k, (status, body, how) in reboot.items():
        assert (status, body) == boot[k][:2], k
        assert how == ("hit" if status == 200 else ""), k
    assert boot[(0, PATHS[1])][1] != boot[(1, PATHS[1])][1]   # each VM its own
    # On the direct path haproxy answered them itself; the agent alone otherwise.
    answered = sum(1 for status, _, _ in reboot.values() if status == 200)
    direct = cached["path"] == "direct"
    assert cached["agent"].haproxy_cache_hits() - haproxy_hits == (answered if direct else 0)


@pytest.mark.parametrize("cached", ["direct"], indirect=True)
def test_a_vm_can_neither_read_nor_replace_a_neighbours_kept_answers(cached) -> None:
    """haproxy's cache keys by Host, which haproxy sets from its map: a VM naming its
    neighbour's instance in Host, or asking past the cache, gets its own answers, and its
    neighbour still gets its own."""
    vm0, vm1 = cached["vms"]
    victim = vm1.port.device_id
    theirs = read(vm1, PATHS[1])
    assert theirs[0] == 200 and victim in theirs[1]
    for extra in (["-H", f"Host: {victim}"],
                  ["-H", f"Host: {victim}", "-H", "Cache-Control: no-cache"]):
        out = vm0.exec("curl", "-s", "-m", "5", *extra, f"http://169.254.169.254{PATHS[1]}",
                       check=False, timeout=10)
        assert vm0.port.device_id in out.stdout and victim not in out.stdout, extra
    assert read(vm1, PATHS[1])[:2] == theirs[:2]


@pytest.mark.parametrize("cached", ["agent:1", "direct:1"], indirect=True)
def test_nova_down_serves_the_last_answers_and_a_new_path_fails_at_once(cached) -> None:
    vm, nova = cached["vms"][0], cached["nova"]
    before = {p: read(vm, p) for p in PATHS[1:3]}
    nova.stop()
    time.sleep(1.2)   # past the TTL, haproxy's too: only a failing nova lets these be served
    for path, (status, body, _) in before.items():
        assert read(vm, path) == (status, body, "stale"), path
    started = time.monotonic()
    unknown = [read(vm, f"/openstack/{v}/meta_data.json")[0] for v in ("2018-08-27",
                                                                      "2017-02-22")]
    assert time.monotonic() - started < 2
    # Refused (502), or 503 once the breaker knows nova is failing.
    assert set(unknown) <= {502, 503} and unknown[-1] == 503
    nova.start()
    wait_until(lambda: read(vm, "/openstack/2018-08-27/meta_data.json")[0] == 200,
               timeout=10, what="nova answering again")
    assert read(vm, PATHS[1])[2] in ("", "hit")   # fresh again, not stale


@pytest.mark.parametrize("cached", ["direct:2"], indirect=True)
def test_a_change_in_nova_is_served_within_the_ttl(cached) -> None:
    vm, nova = cached["vms"][0], cached["nova"]
    path = "/openstack/latest/user_data"
    assert read(vm, path)[1] == "#cloud-config\n0"
    data = dict(cached["instances"][vm.port.device_id], user_data="#cloud-config\nchanged")
    nova.add_instance(vm.port.device_id, data)
    changed = time.monotonic()
    wait_until(lambda: read(vm, path)[1] == "#cloud-config\nchanged", timeout=10,
               interval=0.2, what="the new user data")
    assert time.monotonic() - changed < 2 + 1   # the TTL, and a read's time


@pytest.mark.parametrize("cached", ["direct:2"], indirect=True)
def test_an_answer_over_the_entry_bound_is_passed_through_every_time(cached) -> None:
    vm, nova = cached["vms"][0], cached["nova"]
    big = "#cloud-config\n" + "# padding\n" * (ENTRY_BOUND // 10)
    nova.add_instance(vm.port.device_id, dict(cached["instances"][vm.port.device_id],
                                              user_data=big))
    wait_until(lambda: read(vm, PATHS[2])[1] == big, timeout=10,
               what="the new user data past the TTL")
    asked = nova.requests()
    for _ in range(3):
        status, body, how = read(vm, PATHS[2])
        assert (status, how) == (200, "") and body == big
    assert nova.requests() == asked + 3


@pytest.mark.parametrize("cached", ["direct:1"], indirect=True)
def test_a_hung_nova_gets_stale_answers_within_stale_after_and_then_prompt_503s(cached) -> None:
    vm, nova = cached["vms"][0], cached["nova"]
    good = read(vm, PATHS[2])
    os.kill(nova.proc.pid, signal.SIGSTOP)   # accepts (the kernel does), never answers
    time.sleep(1.2)
    started = time.monotonic()
    assert read(vm, PATHS[2]) == (good[0], good[1], "stale")
    assert time.monotonic() - started < 1 + 0.8    # stale_after, and a read's time
    # Nothing kept: the first waits nova_metadata_timeout (3 s); the breaker then answers
    # at once.
    first = read(vm, "/openstack/2018-08-27/meta_data.json")
    started = time.monotonic()
    again = read(vm, "/openstack/2017-02-22/meta_data.json")
    assert first[0] in (503, 504) and again[0] == 503
    assert time.monotonic() - started < 1
    os.kill(nova.proc.pid, signal.SIGCONT)
    wait_until(lambda: read(vm, "/openstack/2017-02-22/meta_data.json")[0] == 200,
               timeout=10, what="nova answering again")
