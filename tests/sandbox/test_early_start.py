"""A new VM's network is provisioned from its OVS port, before ovn-controller binds it."""

from __future__ import annotations

import os
import signal

from ovnmeta.core import naming
from ovnmeta.host import namespace, nssockets
from ovnmeta_testing.agentproc import namespaces, wait_until
from ovnmeta_testing.echo import EchoServer
from ovnmeta_testing.echo import wait_served


def listening(net_id: str) -> bool:
    """Not before the agent has mounted the namespace: its name exists as a plain file for
    a moment first, and entering that fails (EINVAL)."""
    ns = naming.namespace(net_id)
    try:
        return namespace.is_namespace(ns) and nssockets.tcp_connect(ns, "169.254.169.254", 80,
                                                            0.2) is None
    except OSError:  # deleted under us
        return False


def test_the_namespace_and_listener_come_with_the_vm_port_not_its_binding(
        sandbox, make_network, make_vm, start_agent) -> None:
    with EchoServer() as echo:
        start_agent(extra=f"nova_metadata_port = {echo.port}")
        net = make_network()
        vm = make_vm(net, bind=False)
        controller = sandbox.pid("ovn-controller")
        os.kill(controller, signal.SIGSTOP)   # nothing gets bound meanwhile
        try:
            vm.plug()
            wait_until(lambda: listening(net.id), timeout=15,
                       what="haproxy listening in the new network's namespace")
            assert vm.bound_chassis() == ""   # the SB has not bound the VM's port
        finally:
            os.kill(controller, signal.SIGCONT)
        vm.wait_bound()
        seen = wait_served(vm)
        assert dict(seen["headers"])["x-instance-id"] == vm.port.device_id


def test_a_port_requested_on_another_chassis_is_not_served_here(
        sandbox, make_network, make_vm, start_agent) -> None:
    start_agent()
    elsewhere, control = make_network(), make_network(cidrs=("10.1.0.0/24",))
    vm_elsewhere = make_vm(elsewhere, bind=False)
    sandbox.nbctl("set", "Logical_Switch_Port", vm_elsewhere.port.name,
                  "options:requested-chassis=some-other-chassis")
    vm_control = make_vm(control, bind=False)
    vm_elsewhere.plug()
    vm_control.plug()
    # The agent has seen both plugs once the control network is served.
    wait_until(lambda: listening(control.id), timeout=15, what="the control network served")
    assert naming.namespace(elsewhere.id) not in namespaces()
    assert vm_elsewhere.bound_chassis() == ""
