"""Crashes under load: SIGKILL of the agent (as an OOM kill) and of a worker, each followed by
what systemd's Restart= does, while three VMs are probed every 0.05 s. No request may fail.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from ovnmeta.agent import control, handoff
from ovnmeta.host import procs
from ovnmeta_testing.agentproc import wait_until
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.prober import Prober

SECRET = "crash-secret"
URL = "http://169.254.169.254/openstack/latest/meta_data.json"


@pytest.fixture
def probed(make_network, make_vm, start_agent, tmp_path):
    nets = [make_network(cidrs=(f"10.{i}.0.0/24",)) for i in range(3)]
    vms = [make_vm(net) for net in nets]
    nova = NovaProcess({vm.port.device_id: {"project_id": vm.port.project_id,
                                            "hostname": vm.netns} for vm in vms},
                       SECRET, tmp_path).start()

    def start(extra: str = ""):
        agent = start_agent(extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                  f"nova_metadata_port = {nova.port}\n{extra}")
        prober = Prober(interval=0.05)
        for vm in vms:
            prober.add(vm.netns, vm.port.device_id)
        for vm in vms:
            wait_until(lambda: vm.exec("curl", "-sf", "-m", "1", URL, check=False)
                       .returncode == 0, timeout=20, what=f"{vm.netns} served")
        return agent, prober

    def add_vm(cidr: str):
        vm = make_vm(make_network(cidrs=(cidr,)))
        nova.add_instance(vm.port.device_id, {"project_id": vm.port.project_id,
                                              "hostname": vm.netns})
        return vm

    start.add_vm = add_vm
    yield start
    nova.stop()


def _served_again(agent, mark: int) -> bool:
    return "serving metadata" in agent.log()[mark:]


def test_sigkill_and_restart_one_second_later_fails_no_request(probed) -> None:
    agent, prober = probed()
    wait_until(lambda: handoff.alive(agent.socket), what="socket keeper")
    prober.start()
    try:
        time.sleep(1.0)
        agent.proc.send_signal(signal.SIGKILL)  # no handler runs: as an OOM kill
        agent.proc.wait()
        time.sleep(1.0)
        mark = len(agent.log())
        agent.start()
        wait_until(lambda: _served_again(agent, mark), timeout=20, what="agent back")
        time.sleep(1.0)
    finally:
        prober.stop()
    report, latency = prober.report(), prober.latency()
    print("sigkill", json.dumps(latency), json.dumps(report))
    assert sum(r["probes"] for r in report.values()) > 100
    assert all(r["failed"] == 0 and r["wrong"] == 0 for r in report.values()), report
    assert "took over the listening socket from its keeper" in agent.log()[mark:]


def test_worker_killed_under_load_fails_no_request(probed) -> None:
    agent, prober = probed("metadata_workers = 3")
    sock = str(agent.state_dir / control.CONTROL_SOCKET)

    def workers() -> list[int]:
        try:
            return control.request(sock, "/status")[1]["metadata_workers"]
        except Exception:
            return []
    wait_until(lambda: len(workers()) == 3, timeout=20, what="three serving processes")
    wait_until(lambda: agent.log().count("metadata worker serving") >= 2, what="workers up")
    prober.start()
    try:
        time.sleep(1.0)
        for pid in workers()[1:]:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: len(workers()) == 3, timeout=10, what="workers respawned")
        time.sleep(1.0)
    finally:
        prober.stop()
    report = prober.report()
    print("worker kill", json.dumps(prober.latency()), json.dumps(report))
    assert all(r["failed"] == 0 and r["wrong"] == 0 for r in report.values()), report
    # Workers learn the SB from the agent's feed, respawned ones included: a VM added now
    # is answered right by whichever of the three processes takes each connection.
    vm = probed.add_vm("10.9.0.0/24")
    wait_until(lambda: vm.exec("curl", "-sf", "-m", "1", URL, check=False).returncode == 0,
               timeout=20, what="the new VM served")
    out = vm.exec("sh", "-c", f"for i in $(seq 30); do curl -s -m 2 {URL}; echo; done").stdout
    answers = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(answers) == 30 and {a["hostname"] for a in answers} == {vm.netns}, answers[:2]
    # The first two came from the zygote (which serves as the second); the replacements are
    # new interpreters, as the zygote forks no more once it serves. None failed to fork.
    assert agent.log().count("replacing a metadata worker with a new interpreter") == 2
    assert "cannot fork a metadata worker" not in agent.log()


def test_workers_end_with_a_killed_agent(probed) -> None:
    agent, _ = probed("metadata_workers = 2")
    sock = str(agent.state_dir / control.CONTROL_SOCKET)
    wait_until(lambda: len(control.request(sock, "/status")[1]["metadata_workers"]) == 2,
               timeout=20, what="a worker")
    worker = control.request(sock, "/status")[1]["metadata_workers"][1]
    agent.proc.send_signal(signal.SIGKILL)  # even before the worker has loaded
    agent.proc.wait()
    wait_until(lambda: not procs.running(worker), timeout=10, what="the orphaned worker to exit")
    # The worker's zygote, a fork of the agent with its command line, goes too; so the lock
    # is free and the next agent starts and serves.
    wait_until(lambda: not _copies_of(agent), timeout=10, what="the agent's forks to exit")
    mark = len(agent.log())
    agent.start()
    wait_until(lambda: _served_again(agent, mark), timeout=20, what="the next agent serving")


def _copies_of(agent) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if str(agent.config).encode() in cmd and b"cleanup" not in cmd and procs.running(int(pid)):
            found.append(int(pid))
    return found
