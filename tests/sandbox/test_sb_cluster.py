"""The SB as a 3-member Raft cluster reached over SSL: end to end, a wrong CA, the leader
killed under load, and the whole SB down for 60 s."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ovnmeta.core import naming
from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import namespaces
from ovnmeta_testing.sandbox import SandboxError, wait_until
from ovnmeta_testing.sbmodes import Cloud, served, swapped

ROOT = Path(os.environ.get("OVNMETA_TEST_SANDBOX_DIR", "/tmp/ovnmeta-test-sandbox") + "-raft")

pytestmark = pytest.mark.usefixtures("cluster")


@pytest.fixture(scope="module")
def cluster(sandbox):
    with swapped(sandbox, ROOT, sb_cluster=3, ssl=True) as box:
        yield box


@pytest.fixture
def cloud(cluster, tmp_path):
    cloud = Cloud(cluster, tmp_path)
    yield cloud
    print(f"--- agent log ---\n{cloud.close()}")


def test_ssl_end_to_end_and_leader_killed_under_load(cluster, cloud) -> None:
    assert cluster.sb_connection.startswith("ssl:") and "ovn_sb_ca_cert" in \
        cloud.agent.config.read_text()
    cloud.agent.start()
    net = cloud.network()
    cloud.vm(net), cloud.vm(cloud.network())
    pid = cloud.agent.proc.pid
    cloud.prober.start()
    time.sleep(1)
    leader = cluster.sb_leader()
    cluster.kill(leader)
    cluster.wait_for(lambda: cluster.sb_leader() not in (None, leader), timeout=30,
                     what="a new leader")
    time.sleep(2)
    late = cloud.vm(net, probe=False)
    bound, served_after = cloud.time_to_serve(late)
    print(f"VM added after the leader kill: bound in {bound}s, served {served_after}s later")
    cluster.start_sb_member(leader)
    time.sleep(1)
    cloud.prober.stop()
    assert cloud.failures() == {} and cloud.probes() > 50
    assert cloud.agent.running() and cloud.agent.proc.pid == pid
    assert served_after <= 2.0
    assert "Traceback" not in cloud.agent.log()


def wrong_ca(cluster, cloud) -> Path:
    """The agent's config names the CA of another PKI: the SB's certificate fails it."""
    ca = cloud.agent.state_dir / "ca.pem"
    other = cloud.agent.state_dir / "pki"
    cluster.run("ovs-pki", f"--dir={other}", "init")
    shutil.copy(other / "switchca" / "cacert.pem", ca)
    cloud.agent.config.write_text(cloud.agent.config.read_text().replace(
        f"ovn_sb_ca_cert = {cluster.pki['ca_cert']}", f"ovn_sb_ca_cert = {ca}"))
    return ca


def test_wrong_ca_is_one_clear_error_then_retried(cluster, cloud) -> None:
    ca = wrong_ca(cluster, cloud)
    cloud.agent.start()
    wait_until(lambda: "ovn_sb_ca_cert" in cloud.agent.log(), timeout=20,
               what="an error naming ovn_sb_ca_cert")
    time.sleep(5)  # two more retries
    assert cloud.agent.running()
    errors = [line for line in cloud.agent.log().splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert f"ovn_sb_ca_cert = {ca}" in errors[0] and "is not verified by" in errors[0]
    assert errors[0].count("ovn_sb_ca_cert") == 1, "one cause, said once for every remote"
    # The right CA in that file: the next retry connects, without a restart.
    shutil.copy(cluster.pki["ca_cert"], ca)
    vm = cloud.vm(cloud.network())
    assert served(vm) and "Traceback" not in cloud.agent.log()


def test_whole_sb_down_for_60s_serves_on_and_catches_up(cluster, cloud) -> None:
    cloud.agent.start()
    kept = cloud.vm(cloud.network())
    leaving_net = cloud.network()
    leaving = cloud.vm(leaving_net)
    cloud.prober.start()
    time.sleep(1)
    for member in cluster.sb_members:
        cluster.kill(member)
    down_at = time.monotonic()
    # Meanwhile: a VM leaves (its network's last) and one is booted.
    cloud.remove_vm(leaving)
    neutron.delete_port(cluster, leaving.port)  # NB only: northd cannot reach the SB
    joining_net = cloud.network()
    joining = cloud.vm(joining_net, probe=False)
    time.sleep(60 - (time.monotonic() - down_at))
    assert naming.namespace(leaving_net.id) in namespaces(), "torn down while the SB was away"
    for member in cluster.sb_members:
        cluster.start_sb_member(member)
    back_at = time.monotonic()
    # OVN's own daemons come back on their reconnect backoff (up to 8 s each, northd then
    # ovn-controller), so the agent's part is timed from the SB showing each change.
    seen: dict[str, float] = {}

    def sb_read(*args: str) -> str:  # any member, never waiting on an election
        return cluster.run("ovn-sbctl", "--no-leader-only", f"--db={cluster.sb_admin_connection}",
                           "--timeout=2", "--bare", *args, timeout=5)

    def bound_here() -> bool:
        chassis = sb_read("--columns=chassis", "find", "Port_Binding",
                          f"logical_port={joining.port.name}").strip()
        return bool(chassis) and sb_read("--columns=name", "list", "Chassis",
                                         chassis).strip() == cluster.chassis

    def caught_up() -> bool:
        now = time.monotonic() - back_at
        checks = {
            "bound in SB": bound_here,
            "served": lambda: served(joining),
            "gone from SB": lambda: not sb_read("--columns=_uuid", "find", "Port_Binding",
                                                f"logical_port={leaving.port.name}").strip(),
            "namespace gone": lambda: naming.namespace(leaving_net.id) not in namespaces(),
        }
        for what, check in checks.items():
            try:
                done = what not in seen and check()
            except (SandboxError, subprocess.TimeoutExpired):  # a member still starting
                done = False
            if done:
                seen[what] = now
        return len(seen) == len(checks)

    try:
        wait_until(caught_up, timeout=60, interval=0.05,
                   what="every change made meanwhile applied")
    except Exception as exc:
        raise AssertionError(f"{exc}; done by then: {seen}") from None
    cloud.prober.stop()
    print("after the SB's return (s): " + ", ".join(f"{k} {v:.2f}" for k, v in seen.items()))
    assert cloud.failures() == {} and cloud.targets[kept.netns].probes
    assert seen["served"] - seen["bound in SB"] <= 5.0
    assert seen["namespace gone"] - seen["gone from SB"] <= 5.0
    assert "Traceback" not in cloud.agent.log()


def test_trace_reads_the_cluster_over_ssl_and_names_a_wrong_ca(cluster, cloud) -> None:
    """trace connects as the agent does: the same remotes, SSL files and diagnosis."""
    cloud.agent.start()
    vm = cloud.vm(cloud.network())

    def trace() -> dict:
        proc = subprocess.run([str(Path(sys.executable).parent / "ovnmeta"), "--config-file",
                               str(cloud.agent.config), "trace", vm.port.name, "--json"],
                              capture_output=True, text=True, timeout=120)
        return json.loads(proc.stdout)
    result = trace()
    assert result["ok"], result
    wrong_ca(cluster, cloud)
    result = trace()
    first = next(h for h in result["hops"] if not h["ok"])
    assert first["number"] == 1 and "ovn_sb_ca_cert" in first["evidence"], first
