"""The host's cache of nova's answers behind the real path (VM → OVN → haproxy → agent →
nova), with `[metadata_cache] enabled` and the direct path off: a reboot's reads do not
reach nova within the TTL, and an outage is served from the last good answers."""

from __future__ import annotations

import time

import pytest

from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import wait_until
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.vm import FakeVM

SECRET = "cache-secret"
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
    """Two VMs on two networks, nova, and the agent with the cache on; its TTL is the
    test's parameter (60 s unless given)."""
    ttl = getattr(request, "param", 60)
    vms = [make_vm(make_network()) for _ in range(2)]
    instances = {vm.port.device_id: {"project_id": vm.port.project_id,
                                     "hostname": f"vm-{n}", "user_data": f"#cloud-config\n{n}",
                                     "network_data": neutron.network_data(vm.network, vm.port)}
                 for n, vm in enumerate(vms)}
    nova = NovaProcess(instances, SECRET, tmp_path).start()
    agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                              f"nova_metadata_port = {nova.port}\n"
                              "[haproxy]\ndirect_path = false\n"
                              f"[metadata_cache]\nenabled = true\nttl = {ttl}\n")
    for vm in vms:
        wait_until(lambda: read(vm, PATHS[1])[0] == 200, timeout=20, what="served")
    yield {"vms": vms, "nova": nova, "agent": agent}
    nova.stop()


def test_a_reboot_within_the_ttl_asks_nova_nothing(cached) -> None:
    vms, nova = cached["vms"], cached["nova"]
    boot = {(n, p): read(vm, p) for n, vm in enumerate(vms) for p in PATHS}
    asked = nova.requests()
    reboot = {(n, p): read(vm, p) for n, vm in enumerate(vms) for p in PATHS}
    assert nova.requests() == asked
    for k, (status, body, how) in reboot.items():
        assert (status, body) == boot[k][:2], k
        assert how == ("hit" if status == 200 else ""), k
    assert boot[(0, PATHS[1])][1] != boot[(1, PATHS[1])][1]   # each VM its own


@pytest.mark.parametrize("cached", [0.5], indirect=True)
def test_nova_down_serves_the_last_answers_and_a_new_path_fails_at_once(cached) -> None:
    vm, nova = cached["vms"][0], cached["nova"]
    before = {p: read(vm, p) for p in PATHS[1:3]}
    nova.stop()
    time.sleep(0.6)   # past the TTL: only a failing nova lets these be served
    for path, (status, body, _) in before.items():
        assert read(vm, path) == (status, body, "stale"), path
    unknown = read(vm, "/openstack/2018-08-27/meta_data.json")
    assert unknown[0] == 502
    nova.start()
    wait_until(lambda: read(vm, "/openstack/2018-08-27/meta_data.json")[0] == 200,
               timeout=10, what="nova answering again")
