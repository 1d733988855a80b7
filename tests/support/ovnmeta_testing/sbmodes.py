"""The sandbox in its Southbound modes (Raft cluster, SSL, relay) and a small cloud on it:
an agent, a nova double, networks and VMs under probing, as the SB-fault tests need.

Only one sandbox can run on a host (br-int is a kernel device), so `swapped` takes the
session's sandbox down for the length of a module and brings it back afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import AgentProcess
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.prober import Prober, Target
from ovnmeta_testing.sandbox import Sandbox, wait_until
from ovnmeta_testing.vm import FakeVM

SECRET = "sb-modes-secret"
URL = "http://169.254.169.254/openstack/latest/meta_data.json"


@contextmanager
def swapped(session_box: Sandbox, root: Path, **mode) -> Iterator[Sandbox]:
    """A sandbox in `mode` instead of the session's one, for the duration."""
    session_box.down()
    box = Sandbox(root=root, **mode)
    box.down()
    try:
        box.up()
        yield box
    finally:
        box.down()
        session_box.up()


def served(vm: FakeVM) -> bool:
    return vm.exec("curl", "-sf", "-m", "2", URL, check=False).returncode == 0


class Cloud:
    """One agent serving VMs on a sandbox, every VM probed; `close()` removes it all."""

    def __init__(self, box: Sandbox, workdir: Path, interval: float = 0.05,
                 nova_tls: list[str] = ()) -> None:
        self.box = box
        self.nova = NovaProcess({}, SECRET, workdir, tls=nova_tls).start()
        self.agent = AgentProcess(box, extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                             f"nova_metadata_port = {self.nova.port}")
        self.prober = Prober(interval=interval)
        self.nets: list[neutron.Network] = []
        self.vms: list[FakeVM] = []
        self.targets: dict[str, Target] = {}

    def network(self) -> neutron.Network:
        net = neutron.create_network(self.box, cidrs=(f"10.{len(self.nets) + 1}.0.0/24",))
        self.nets.append(net)
        return net

    def vm(self, net: neutron.Network, probe: bool = True, **nova_data) -> FakeVM:
        """A VM bound here, known to nova (with `nova_data` too); probed once it is first
        served."""
        port = neutron.create_vm_port(self.box, net)
        self.nova.add_instance(port.device_id, {"project_id": port.project_id,
                                                "hostname": port.name, **nova_data})
        vm = FakeVM(self.box, net, port).start()
        self.vms.append(vm)
        if probe:
            wait_until(lambda: served(vm), timeout=30, what=f"{vm.netns} served")
            self.targets[vm.netns] = self.prober.add(vm.netns, port.device_id)
        return vm

    def time_to_serve(self, vm: FakeVM, timeout: float = 30) -> tuple[float, float]:
        """(seconds until ovn-controller bound it, seconds from then until it was served)."""
        start = time.monotonic()
        vm.wait_bound(timeout=timeout)
        bound = time.monotonic()
        wait_until(lambda: served(vm), timeout=timeout, interval=0.05,
                   what=f"{vm.netns} served")
        return round(bound - start, 2), round(time.monotonic() - bound, 2)

    def remove_vm(self, vm: FakeVM) -> None:
        if vm.netns in self.targets:
            self.prober.remove(self.targets.pop(vm.netns))
        vm.destroy()
        self.vms.remove(vm)

    def failures(self) -> dict[str, dict]:
        return {name: r for name, r in self.prober.report().items()
                if r["failed"] or r["wrong"]}

    def probes(self) -> int:
        return sum(r["probes"] for r in self.prober.report().values())

    def close(self) -> str:
        """Remove it all; returns the agent's log (cleanup deletes its directory). Each step
        runs even when one before it failed (an ovs-vsctl timing out): the first error is
        raised after all of them, so no nova double or agent is left running."""
        log = ""
        errors: list[BaseException] = []

        def step(fn, *args) -> None:
            try:
                fn(*args)
            except Exception as exc:   # noqa: BLE001 (re-raised below)
                errors.append(exc)

        step(self.prober.stop)
        for vm in list(self.vms):
            step(vm.destroy)
        step(self.agent.stop)
        try:
            log = self.agent.log()
        except OSError:
            pass
        step(self.agent.cleanup)
        step(self.nova.stop)
        if errors:
            raise errors[0]
        return log
