"""ovnmeta's image run the way kolla-ansible runs `neutron_ovn_metadata_agent` (podman, runc):
VMs get their own metadata; kolla's health check passes, and fails when the agent is stopped
or OVS is out of reach; OpenStack-Helm's probe gets an answer below 500; and neither a
container restart nor an image update loses a request of VMs probed every 0.1 s."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from ovnmeta import __version__
from ovnmeta_testing.agentproc import wait_until
from ovnmeta_testing.container import (OVS_TCP_REMOTE, KollaContainer, build_image,
                                       kolla_configs, podman, podman_env)
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.prober import Prober

SECRET = "container-shared-secret"
IMAGE = f"localhost/ovnmeta-test:{__version__}"
NEXT = f"localhost/ovnmeta-test:{__version__}-next"


@pytest.fixture(scope="module")
def image() -> str:
    if not shutil.which("podman"):
        pytest.fail("podman is not installed: scripts/install.sh installs it")
    size = build_image(IMAGE)
    print(f"image {IMAGE}: {size / 1e6:.0f} MB")
    yield IMAGE
    podman("rmi", "-f", NEXT, IMAGE, check=False)


@pytest.fixture
def kolla(request, sandbox, image, ovs_tcp, make_network, make_vm, tmp_path):
    nets = [make_network(cidrs=("10.0.0.0/24",)) for _ in range(2)]
    vms = [make_vm(net) for net in nets for _ in range(2)]
    nova = NovaProcess({vm.port.device_id: {"hostname": vm.netns} for vm in vms}, SECRET,
                       tmp_path).start()
    extra = getattr(request, "param", "")
    configs = kolla_configs(tmp_path / "etc-neutron", sandbox.sb_tcp_connection, nova.port,
                            SECRET, default_extra=extra)
    box = KollaContainer(image, configs, tmp_path / "log")
    box.cleanup()   # a run that crashed may have left ours behind
    box.run()
    try:
        box.wait_serving(1)
        yield {"box": box, "vms": vms, "ovs_ctl": ovs_tcp,
               "sandbox": sandbox}
    finally:
        print(f"--- agent log ---\n{box.agent_log()[-6000:]}")
        box.cleanup()
        nova.stop()


def _prober(vms) -> Prober:
    prober = Prober(interval=0.1)
    for vm in vms:
        prober.add(vm.netns, vm.port.device_id)
    return prober


def _all_answered(vms) -> bool:
    """Every VM answered with its own instance for half a second."""
    prober = _prober(vms).start()
    time.sleep(0.5)
    prober.stop()
    return all(row["probes"] and not row["failed"] and not row["wrong"]
               for row in prober.report().values())


def test_vms_get_their_own_metadata_and_the_health_checks_pass(kolla):
    box = kolla["box"]
    wait_until(lambda: _all_answered(kolla["vms"]), timeout=30, what="every VM answered")
    ok, said = box.health()
    assert ok, said
    assert box.helm_probe() < 500
    # Under kolla's command line, with kolla's name on the process the health check looks for.
    info = box.inspect()
    assert info["Config"]["Cmd"][0] == "neutron-ovn-metadata-agent"


def test_the_health_checks_fail_and_say_why_without_ovs_sb_or_agent(kolla):
    """kolla's check (OVS over TCP) and `ovnmeta health` (the probe docs/install.md gives
    OpenStack-Helm and systemd users), each as the SB, OVS or the agent goes away."""
    box, sandbox = kolla["box"], kolla["sandbox"]
    wait_until(lambda: box.health()[0], timeout=30, what="the health check passing")
    healthy = box.ovnmeta("health")
    assert healthy.returncode == 0 and healthy.stdout.startswith("healthy: "), healthy
    ctl = kolla["ovs_ctl"]
    sandbox.run("ovs-appctl", "-t", ctl, "ovsdb-server/remove-remote", OVS_TCP_REMOTE)
    try:
        wait_until(lambda: not box.health()[0], timeout=20, what="the health check failing")
        assert "holds no TCP connection to port(s) 6640" in box.health()[1]
        out = wait_until(lambda: (lambda o: o if o.returncode == 1 else None)(
            box.ovnmeta("health")), timeout=20, what="ovnmeta health failing")
        assert "local OVS DB tcp:127.0.0.1:6640 not connected" in out.stdout, out
    finally:
        sandbox.run("ovs-appctl", "-t", ctl, "ovsdb-server/add-remote", OVS_TCP_REMOTE)
    wait_until(lambda: box.health()[0], timeout=30, what="the health check passing again")
    wait_until(lambda: box.ovnmeta("health").returncode == 0, timeout=30,
               what="ovnmeta health passing again")
    sandbox.kill("ovnsb_db")
    try:
        out = wait_until(lambda: (lambda o: o if o.returncode == 1 else None)(
            box.ovnmeta("health")), timeout=20, what="ovnmeta health failing")
        assert f"Southbound DB {sandbox.sb_tcp_connection} not connected" in out.stdout, out
    finally:
        sandbox.up()
    wait_until(lambda: box.ovnmeta("health").returncode == 0, timeout=60,
               what="ovnmeta health passing with the SB back")
    box.stop()
    ok, said = box.health()
    assert not ok, said


@pytest.mark.parametrize("how", ["restart", "image-update"])
def test_restart_and_image_update_lose_no_request(kolla, how):
    box = kolla["box"]
    wait_until(lambda: _all_answered(kolla["vms"]), timeout=30, what="every VM answered")
    if how == "image-update":
        # A new tag with a new image ID, as an update brings: the same content, relabelled.
        _relabel(box.image, NEXT)
    prober = _prober(kolla["vms"]).start()
    time.sleep(1.0)
    started = time.monotonic()
    if how == "restart":
        box.restart()
    else:
        box.stop()
        box.remove()
        box.run(image=NEXT)
    box.wait_serving(2)
    took = time.monotonic() - started
    time.sleep(2.0)
    prober.stop()
    report = prober.report()
    probes = sum(r["probes"] for r in report.values())
    failed = {n: r for n, r in report.items() if r["failed"] or r["wrong"]}
    print(json.dumps({"how": how, "vms": len(report), "probes": probes,
                      "failed": sum(r["failed"] for r in report.values()),
                      "wrong": sum(r["wrong"] for r in report.values()),
                      "max_gap_s": max(r["max_gap"] for r in report.values()),
                      "until_serving_s": round(took, 2), "latency": prober.latency()}))
    assert probes > 100
    assert failed == {}, failed
    assert box.health()[0]


@pytest.mark.parametrize("kolla", ["helpers_outlive_container = false\n"], indirect=True)
def test_helpers_left_in_the_container_die_with_it_and_requests_fail(kolla):
    """The control: without their own cgroup, haproxy and the keeper stop with the container
    (runc kills its whole cgroup, host PID namespace or not), and a restart fails requests."""
    box = kolla["box"]
    wait_until(lambda: _all_answered(kolla["vms"]), timeout=30, what="every VM answered")
    prober = _prober(kolla["vms"]).start()
    time.sleep(0.5)
    box.restart()
    box.wait_serving(2)
    time.sleep(1.0)
    prober.stop()
    failed = sum(r["failed"] for r in prober.report().values())
    print(json.dumps({"how": "restart, helpers inside", "failed": failed}))
    assert failed > 0


def _relabel(image: str, tag: str) -> None:
    subprocess.run(["podman", "build", "-q", "--network", "host", "-t", tag, "-"],
                   input=f"FROM {image}\nLABEL org.ovnmeta.update=next\n", text=True,
                   capture_output=True, check=True, timeout=300, env=podman_env())


@pytest.mark.parametrize("case", ["unprivileged", "netns-private", "netns-missing",
                                  "socket-dir-read-only", "config-missing"])
def test_a_container_started_wrong_says_why_in_one_line_and_touches_nothing(
        case, sandbox, image, tmp_path):
    """Each wrong start exits non-zero at once with one line naming the cause, before the
    agent makes a namespace, a port or a process."""
    # iproute2 makes /run/netns a shared mount point with its first namespace: the state a
    # host has once any network namespace was made, and what ':shared' needs.
    subprocess.run(["ip", "netns", "add", "omt-prep"], check=True)
    subprocess.run(["ip", "netns", "del", "omt-prep"], check=True)
    configs = kolla_configs(tmp_path / "etc-neutron", sandbox.sb_tcp_connection, 8775, SECRET)
    mounts = {"netns": "/run/netns:/run/netns:shared", "state": f"{tmp_path / 'state'}:"
              "/var/lib/neutron/kolla", "etc": f"{configs}:/etc/neutron:ro"}
    (tmp_path / "state").mkdir()
    flags = ["--privileged"]
    expect = ""
    command = ["neutron-ovn-metadata-agent", "--config-file", "/etc/neutron/neutron.conf",
               "--config-file", "/etc/neutron/neutron_ovn_metadata_agent.ini"]
    if case == "unprivileged":
        flags, expect = [], "lacks CAP_SYS_ADMIN and CAP_NET_ADMIN"
    elif case == "netns-private":
        mounts["netns"], expect = "/run/netns:/run/netns:private", \
            "/run/netns is mounted private, not shared"
    elif case == "netns-missing":
        del mounts["netns"]
        expect = "/run/netns is not mounted from the host in this container"
    elif case == "socket-dir-read-only":
        mounts["state"] += ":ro"
        expect = ("cannot write in /var/lib/neutron/kolla (the directory of "
                  "metadata_proxy_socket): Read-only file system")
    else:
        command[-1] = "/etc/neutron/missing.ini"
        expect = "Failed to find some config files: /etc/neutron/missing.ini"
    # kolla's ini logs to a file; here the one line must reach the container's output.
    (configs / "neutron.conf").write_text((configs / "neutron.conf").read_text()
                                          .replace("log_dir = /var/log/kolla/neutron\n", ""))
    before = set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                                text=True).stdout.split())
    ports = sandbox.vsctl("list-ports", "br-int")
    argv = ["run", "--rm", *flags, "--network", "host", "--pid", "host", "--cgroupns", "host"]
    for volume in mounts.values():
        argv += ["-v", volume]
    out = podman(*argv, image, *command, check=False, timeout=120)
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert out.returncode == 2, (out.returncode, lines)
    assert len(lines) == 1 and expect in lines[0], lines
    assert "Traceback" not in out.stderr
    after = set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                               text=True).stdout.split())
    assert {ns for ns in after - before if ns.startswith("ovnmeta-")} == set()
    assert sandbox.vsctl("list-ports", "br-int") == ports
    assert list((tmp_path / "state").iterdir()) == []
