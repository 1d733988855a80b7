"""nova misbehaving behind the real path (VM → OVN → haproxy → agent → nova): slow for one
instance, down for 30 s, resetting connections, answering bytes that are not HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from ovnmeta.host import nssockets
from ovnmeta_testing.agentproc import wait_until
from ovnmeta_testing.prober import Prober
from ovnmeta_testing.sandbox import free_port

URL = "http://169.254.169.254/openstack/latest/meta_data.json"
TIMEOUT = 3  # [metadata] nova_metadata_timeout


class Nova:
    """ovnmeta_testing.faultynova as a process; restartable in another mode."""

    def __init__(self, port: int) -> None:
        self.port, self.proc = port, None

    def start(self, mode: str = "ok", slow: dict[str, float] | None = None,
              empty: dict[str, int] | None = None) -> Nova:
        argv = [sys.executable, "-m", "ovnmeta_testing.faultynova", "--port", str(self.port),
                "--mode", mode]
        argv += [a for k, v in (slow or {}).items() for a in ("--slow", f"{k}={v}")]
        argv += [a for k, v in (empty or {}).items() for a in ("--empty", f"{k}={v}")]
        self.proc = subprocess.Popen(argv)
        wait_until(self._listening, what="faulty nova listening")
        return self

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def logged(agent, text: str) -> int:
    """Lines an operator sees (WARNING and above) that carry text."""
    return sum(text in line for line in agent.log().splitlines()
               if " WARNING " in line or " ERROR " in line)


def status(vm, timeout: float = 15) -> tuple[int, str]:
    out = vm.exec("curl", "-s", "-m", str(timeout), "-w", "\n%{http_code}", URL, check=False,
                  timeout=timeout + 5).stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


@pytest.fixture
def faulty(make_network, make_vm, start_agent):
    vms = [make_vm(make_network(cidrs=(f"10.{i}.0.0/24",))) for i in range(2)]
    nova = Nova(free_port())
    agent = start_agent(extra=f"nova_metadata_port = {nova.port}\n"
                              f"[metadata]\nnova_metadata_timeout = {TIMEOUT}")
    # The path up to haproxy, without a request (that would reach nova, which is the test's).
    for vm in vms:
        wait_until(lambda: nssockets.tcp_connect(vm.netns, "169.254.169.254", 80, 0.3) is None,
                   timeout=20, what=f"{vm.netns} reaching haproxy")
    yield {"vms": vms, "nova": nova, "agent": agent}
    nova.stop()


def test_slow_instance_gets_504_at_the_timeout_and_blocks_no_other_vm(faulty) -> None:
    slow_vm, other = faulty["vms"]
    faulty["nova"].start(slow={slow_vm.port.device_id: 20})
    wait_until(lambda: status(other, 2)[0] == 200, timeout=20, what="other VM served")
    prober = Prober(interval=0.05)
    prober.add(other.netns, other.port.device_id)
    result: dict = {}

    def slow_request() -> None:
        t0 = time.monotonic()
        result["status"] = status(slow_vm)[0]
        result["seconds"] = time.monotonic() - t0

    thread = threading.Thread(target=slow_request)
    prober.start()
    thread.start()
    thread.join()
    prober.stop()
    latency, report = prober.latency(), prober.report()[other.netns]
    print("other VM while one waits on nova:", json.dumps(latency), report["probes"])
    assert result["status"] == 504
    assert TIMEOUT <= result["seconds"] < TIMEOUT + 2
    assert report["failed"] == 0 and report["wrong"] == 0
    # Head-of-line blocking would hold the other VM for the whole timeout.
    assert latency["max"] < 1.0


def test_nova_down_30s_gives_502_then_recovers_at_once(faulty) -> None:
    vm = faulty["vms"][0]
    nova = faulty["nova"].start()
    wait_until(lambda: status(vm, 2)[0] == 200, timeout=20, what="served")
    nova.stop()
    down = [status(vm, 5)[0] for _ in range(3)]
    assert down == [502] * 3
    time.sleep(30)
    assert status(vm, 5)[0] == 502
    nova.start()
    back = time.monotonic()
    wait_until(lambda: status(vm, 2)[0] == 200, timeout=10, interval=0.05,
               what="served again")
    assert time.monotonic() - back <= 1.0
    assert "Traceback" not in faulty["agent"].log()
    # Throttled: one line for the outage (plus the 502s' own), not one per request.
    assert logged(faulty["agent"], "refused (") == 1


@pytest.mark.parametrize("mode, kind", [("reset", "reset"), ("garbage", "invalid HTTP")])
def test_resets_and_non_http_answers_are_502_logged_once(faulty, mode, kind) -> None:
    vm = faulty["vms"][0]
    faulty["nova"].start(mode=mode)
    answers = [status(vm, 5) for _ in range(5)]
    assert [code for code, _ in answers] == [502] * 5, answers
    # A request goes straight to nova until haproxy's check (every 2 s) or a failed connection
    # marks nova down; then through the agent. Each path names the failure once: the agent in
    # its own words, the direct path from haproxy's counters (read once a second, so the line
    # can follow the last answer by a second), which do not tell a reset from bytes that are
    # not HTTP.
    lines = {"agent": f": {kind} (", "direct path": "failed answer(s) (reset, not HTTP"}
    wait_until(lambda: any(logged(faulty["agent"], text) for text in lines.values()),
               timeout=5, what=f"the {kind} logged")
    time.sleep(1.5)
    counts = {path: logged(faulty["agent"], text) for path, text in lines.items()}
    print("lines logged by path:", counts)
    assert max(counts.values()) == 1, counts
    assert "Traceback" not in faulty["agent"].log()


@pytest.mark.parametrize("direct_path", ["true", "false"])
def test_slow_vendordata_is_waited_for_as_long_as_haproxy_waits(make_network, make_vm,
                                                                 start_agent, direct_path):
    """LP #2154609: nova answering after 15 s (dynamic vendordata) reaches the VM with the
    default config, straight from haproxy and through the agent alike: the nova timeout is
    haproxy's timeout_server (32 s) unless set. The old default, 10 s, answered 504."""
    vm = make_vm(make_network(cidrs=("10.0.0.0/24",)))
    nova = Nova(free_port()).start(slow={vm.port.device_id: 15})
    try:
        start_agent(extra=f"nova_metadata_port = {nova.port}\n"
                          f"[haproxy]\ndirect_path = {direct_path}")
        wait_until(lambda: nssockets.tcp_connect(vm.netns, "169.254.169.254", 80, 0.3) is None,
                   timeout=20, what=f"{vm.netns} reaching haproxy")
        t0 = time.monotonic()
        code, _ = status(vm, timeout=40)
        took = time.monotonic() - t0
        print(f"direct_path={direct_path}: {code} after {took:.1f} s")
        assert code == 200 and 15 <= took < 25
    finally:
        nova.stop()


@pytest.mark.parametrize("direct_path", ["true", "false"])
def test_nova_empty_200_and_204_reach_the_vm_intact_and_at_once(make_network, make_vm,
                                                                start_agent, direct_path):
    """LP #2097273: nova answers some paths with a 200 without a body, or a 204. Both reach
    the VM as they are, at once (neutron 29's agent answered 502 to both)."""
    vm = make_vm(make_network(cidrs=("10.0.0.0/24",)))
    empty = {"/openstack/latest/vendor_data2.json": 200, "/openstack/latest/user_data": 204}
    nova = Nova(free_port()).start(empty=empty)
    try:
        start_agent(extra=f"nova_metadata_port = {nova.port}\n"
                          f"[haproxy]\ndirect_path = {direct_path}")
        wait_until(lambda: nssockets.tcp_connect(vm.netns, "169.254.169.254", 80, 0.3) is None,
                   timeout=20, what=f"{vm.netns} reaching haproxy")
        wait_until(lambda: status(vm)[0] == 200, timeout=20, what="the VM served")
        for path, code in empty.items():
            out = vm.exec("curl", "-s", "-m", "5", "-D", "-", "-o", "/dev/null", "-w",
                          "\nSUMMARY %{http_code} %{size_download} %{time_total}",
                          f"http://169.254.169.254{path}", check=False, timeout=10).stdout
            head, _, summary = out.rpartition("\nSUMMARY ")
            got, size, took = summary.split()
            print(f"{path}: {got}, {size} bytes, {float(took) * 1000:.0f} ms")
            assert (int(got), int(size)) == (code, 0), out
            assert float(took) < 2, out   # at once: not a timeout's worth of waiting
            assert "transfer-encoding" not in head.lower(), head
    finally:
        nova.stop()
