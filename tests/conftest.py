"""Fixtures shared by every test: the real OVN sandbox, neutron-style networks, fake VMs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import AgentProcess
from ovnmeta_testing.container import OVS_TCP_REMOTE
from ovnmeta_testing.echo import EchoServer
from ovnmeta_testing.sandbox import CENTRAL_PREFIX, OVN_PREFIX, Sandbox
from ovnmeta_testing.vm import VM_NETNS_PREFIX, FakeVM

SANDBOX_TESTS = Path(__file__).parent / "sandbox"


def pytest_report_header() -> str:
    """Which OVN the sandbox runs (OVNMETA_OVN_PREFIX picks a build other than Debian's)."""
    try:
        out = subprocess.run(["ovn-controller", "--version"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()
    except OSError:
        return f"OVN: none found (prefix {OVN_PREFIX})"
    central = "" if CENTRAL_PREFIX == OVN_PREFIX else f"; NB, SB and northd from {CENTRAL_PREFIX}"
    return f"OVN: {' / '.join(out[:2])} (prefix {OVN_PREFIX}{central})"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/sandbox/ is marked `sandbox`: `-m "not sandbox"` runs the rest
    without root or OVN."""
    for item in items:
        if SANDBOX_TESTS in Path(item.fspath).parents:
            item.add_marker(pytest.mark.sandbox)

TEST_SANDBOX_DIR = Path(os.environ.get("OVNMETA_TEST_SANDBOX_DIR", "/tmp/ovnmeta-test-sandbox"))


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture(autouse=True)
def no_agent_left_running() -> Iterator[None]:
    """A test (or a fixture whose setup failed) that leaves its agent running fails here, and
    the agent is removed: otherwise it would hold the host lock and fail every later test."""
    yield
    left = AgentProcess.leftovers()
    for agent in left:
        agent.cleanup()
    assert not left, f"an agent was left running: {[a.log_path for a in left]}"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("sandbox tests need root")
    box = Sandbox(root=TEST_SANDBOX_DIR)
    box.down()  # a run that crashed may have left our own sandbox behind
    box.up()
    before = _namespaces()
    yield box
    left = {ns for ns in _namespaces() - before
            if ns.startswith((VM_NETNS_PREFIX, "ovnmeta-"))}
    box.down()
    for ns in left:  # reported below, but not left on the machine for the next run
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert not left, f"tests left namespaces behind: {sorted(left)}"


@pytest.fixture
def make_network(sandbox: Sandbox) -> Iterator[Callable[..., neutron.Network]]:
    created: list[neutron.Network] = []

    def make(cidrs: tuple[str, ...] = ("10.0.0.0/24",), **kwargs) -> neutron.Network:
        net = neutron.create_network(sandbox, cidrs=cidrs, **kwargs)
        created.append(net)
        return net

    yield make
    for net in created:
        neutron.delete_network(sandbox, net)


@pytest.fixture
def make_vm(sandbox: Sandbox) -> Iterator[Callable[..., FakeVM]]:
    created: list[FakeVM] = []

    def make(network: neutron.Network, bind: bool = True, **kwargs) -> FakeVM:
        port = neutron.create_vm_port(sandbox, network, **kwargs)
        vm = FakeVM(sandbox, network, port)
        created.append(vm)
        vm.start(bind=bind)
        return vm

    yield make
    for vm in created:
        vm.destroy()
        neutron.delete_port(sandbox, vm.port)


@pytest.fixture
def start_agent(sandbox: Sandbox) -> Iterator[Callable[..., AgentProcess]]:
    """Start real ovnmeta-agent processes; everything they built is removed afterwards."""
    agents: list[AgentProcess] = []

    def start(mode: str = "shared", state_dir: Path | None = None, extra: str = "",
              run: bool = True) -> AgentProcess:
        agent = AgentProcess(sandbox, mode=mode, state_dir=state_dir, extra=extra)
        agents.append(agent)
        return agent.start() if run else agent

    yield start
    for agent in agents:
        agent.stop()
        # Shown by pytest only when the test failed.
        print(f"--- agent log {agent.log_path} ---\n{agent.log()}")
    for agent in agents:
        agent.cleanup()



@pytest.fixture
def echo() -> Iterator[EchoServer]:
    """A stand-in nova that answers with what reached it (ovnmeta_testing.echo)."""
    with EchoServer() as server:
        yield server


@pytest.fixture
def ovs_tcp(sandbox: Sandbox) -> Iterator[str]:
    """The local OVS DB on TCP 6640 too, as kolla's and openstack-ansible's [ovs]
    ovsdb_connection and kolla's health check expect; yields ovsdb-server's control socket."""
    ctl = str(sandbox.root / "ovsdb-server.ctl")
    sandbox.run("ovs-appctl", "-t", ctl, "ovsdb-server/add-remote", OVS_TCP_REMOTE)
    yield ctl
    sandbox.run("ovs-appctl", "-t", ctl, "ovsdb-server/remove-remote", OVS_TCP_REMOTE,
                check=False)
