"""In-memory stand-ins for the four boundaries (ovnmeta.core.boundaries), for unit tests of
the reconciler and the executor. mypy checks each against its Protocol (the test command
runs it), so a fake cannot lose a method the real adapter gained.

The sandbox tests run the same code against the real host, OVS, SB and haproxy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager

from ovnmeta.core import naming
from ovnmeta.core.boundaries import Haproxy, Host, Ovs, Sb
from ovnmeta.core.model import (ForeignProcess, Frontend, LinkState, NetworkSpec,
                                NeutronAgent, SbSnapshot)
from ovnmeta.haproxy.manager import HaproxyManager
from ovnmeta.host.system import LinuxHost
from ovnmeta.ovsdb.ovs import LocalOvs
from ovnmeta.ovsdb.sbview import SbView


class FakeSb:
    def __init__(self, snap: SbSnapshot) -> None:
        self.snap, self.settled, self.up = snap, True, True

    def snapshot(self) -> SbSnapshot:
        return self.snap

    def connected(self) -> bool:
        return self.up


class FakeOvs:
    def __init__(self) -> None:
        self.ports: dict[str, str] = {}
        self.foreign: dict[str, tuple[str, bool]] = {}   # name -> (iface-id, a VM's)
        self.replaced: list[str] = []

    def plugged(self) -> dict[str, str]:
        return dict(self.ports)

    def others(self) -> dict[str, tuple[str, bool]]:
        return dict(self.foreign)

    def iface_ids(self) -> frozenset[str]:
        return frozenset()

    def plug(self, bridge: str, ports: list[tuple[str, str]],
             replaces: tuple[str, ...] = ()) -> None:
        self.ports.update(ports)
        self.replaced += replaces
        for name in replaces:
            self.foreign.pop(name, None)

    def unplug(self, devices: list[str]) -> None:
        for d in devices:
            self.ports.pop(d, None)


class FakeHaproxy:
    """Records the frontends it was told to serve; `meanwhile` runs as a reload would."""

    def __init__(self) -> None:
        self.mode = "shared"
        self.reloads = 0
        self.frontends: list[str] = []
        self.recreated: list[set[str]] = []

    def sync(self, frontends: list[Frontend], recreated: Collection[str] = frozenset(),
             meanwhile: Callable[[], None] | None = None) -> dict[str, str]:
        self.frontends = [f.network_id for f in frontends]
        self.recreated.append(set(recreated))
        if meanwhile:   # as a reload would: while haproxy loads the config
            meanwhile()
        return {}

    def pids(self) -> dict[str, int | None]:
        return {}

    def configured_networks(self) -> set[str]:
        return set(self.frontends)


class FakeHost:
    """Namespaces and their inner devices, as the reconciler reads and changes the host."""

    def __init__(self) -> None:
        self.namespaces: dict[str, LinkState | None] = {}
        self.fail_create: Exception | None = None
        self.create_calls = 0
        self.stray: set[str] = set()   # outer ends whose namespace is gone but still held
        self.agents: list[NeutronAgent] = []
        self.migrated: list[str] = []

    def batch(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def list_namespaces(self) -> set[str]:
        return set(self.namespaces)

    def is_namespace(self, ns: str) -> bool:
        return ns in self.namespaces

    def read_inner(self, ns: str, dev: str, with_csum: bool = True
                   ) -> tuple[LinkState | None, tuple[str, ...]]:
        return self.namespaces.get(ns), ()

    def read_outer(self, dev: str) -> tuple[bool, bool]:
        return self._outer(dev), self._outer(dev)

    def read_firewall(self, ns: str) -> tuple[str, ...]:
        return ()

    def processes_in(self, namespaces: set[str]) -> dict[str, list[ForeignProcess]]:
        return {}

    def neutron_agents(self) -> list[NeutronAgent]:
        return list(self.agents)

    def outer_devices(self) -> set[str]:
        return self.stray | {naming.outer_device(net) for net in self._networks()}

    def delete_outer(self, dev: str) -> None:
        self.stray.discard(dev)

    def create_namespace(self, spec: NetworkSpec) -> None:
        self.create_calls += 1
        if self.fail_create:
            raise self.fail_create
        self.namespaces[spec.namespace] = None

    def create_veth(self, spec: NetworkSpec) -> None:
        self._set(spec, mac="")

    def configure_inner(self, spec: NetworkSpec, csum_off: bool) -> None:
        self._set(spec, mac=spec.mac)

    def add_address(self, spec: NetworkSpec, address: str) -> None:
        old = self._inner(spec)
        self.namespaces[spec.namespace] = LinkState(old.mac, old.mtu, old.up,
                                                    old.addresses | {address})

    def del_address(self, spec: NetworkSpec, address: str) -> None:
        old = self._inner(spec)
        self.namespaces[spec.namespace] = LinkState(old.mac, old.mtu, old.up,
                                                    old.addresses - {address})

    def add_neighbours(self, spec: NetworkSpec,
                       entries: tuple[tuple[str, str], ...]) -> None:
        pass

    def delete_neighbours(self, spec: NetworkSpec, ips: tuple[str, ...]) -> None:
        pass

    def set_outer_up(self, spec: NetworkSpec) -> None:
        pass

    def delete_links(self, ns: str, names: tuple[str, ...]) -> None:
        pass

    def delete_firewall(self, ns: str, tables: tuple[str, ...]) -> None:
        pass

    def delete(self, net_id: str) -> None:
        self.namespaces.pop(naming.namespace(net_id))

    def migrate_queued_connections(self, ns: str) -> None:
        self.migrated.append(ns)

    def listens(self, namespace: str, address: str, port: int, pids: list[int]) -> bool:
        return False

    def listeners(self, namespace: str, address: str, port: int) -> list[ForeignProcess]:
        return []

    def tcp_connect(self, ns: str, address: str, port: int,
                    timeout: float) -> OSError | None:
        return None

    def _networks(self) -> set[str]:
        return {net for ns in self.namespaces if (net := naming.network_from_namespace(ns))}

    def _outer(self, dev: str) -> bool:
        return any(naming.outer_device(net) == dev and self.namespaces[naming.namespace(net)]
                   for net in self._networks())

    def _inner(self, spec: NetworkSpec) -> LinkState:
        link = self.namespaces[spec.namespace]
        if link is None:
            raise IndexError(f"no device {spec.inner} in {spec.namespace}")
        return link

    def _set(self, spec: NetworkSpec, mac: str) -> None:
        old = self.namespaces.get(spec.namespace)
        self.namespaces[spec.namespace] = LinkState(
            mac=mac, mtu=1500, up=bool(mac), addresses=old.addresses if old else frozenset())


def _implements(sbview: SbView, localovs: LocalOvs, manager: HaproxyManager) -> None:
    """Never called: mypy checks each fake, and each real adapter, against its boundary."""
    sb: Sb = FakeSb(SbSnapshot(chassis=""))
    sb = sbview
    ovs: Ovs = FakeOvs()
    ovs = localovs
    haproxy: Haproxy = FakeHaproxy()
    haproxy = manager
    host: Host = FakeHost()
    host = LinuxHost()
    del sb, ovs, haproxy, host
