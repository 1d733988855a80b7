"""The diff: the steps that take one network from what the host has to what is desired.

Pure: the reconciler feeds it records and executes the steps it returns, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ovnmeta.model import ActualNetwork, NetworkSpec


@dataclass(frozen=True)
class CreateNamespace:
    spec: NetworkSpec


@dataclass(frozen=True)
class CreateVeth:
    """(Re)create the pair; any stale outer end is removed first."""
    spec: NetworkSpec


@dataclass(frozen=True)
class ConfigureInner:
    """MAC, MTU, link up and TX checksum off on the namespace end."""
    spec: NetworkSpec
    csum_off: bool


@dataclass(frozen=True)
class AddAddress:
    spec: NetworkSpec
    address: str


@dataclass(frozen=True)
class DelAddress:
    spec: NetworkSpec
    address: str


@dataclass(frozen=True)
class SetOuterUp:
    spec: NetworkSpec


@dataclass(frozen=True)
class PlugOvs:
    spec: NetworkSpec


@dataclass(frozen=True)
class DeleteNetwork:
    network_id: str


Step = (CreateNamespace | CreateVeth | ConfigureInner | AddAddress | DelAddress | SetOuterUp
        | PlugOvs | DeleteNetwork)


def _exists(actual: ActualNetwork | None) -> bool:
    return actual is not None and (actual.namespace or actual.outer
                                   or actual.ovs_iface_id is not None)


def plan_network(spec: NetworkSpec | None, actual: ActualNetwork | None,
                 netdev: bool) -> list[Step]:
    """Steps for one network; an empty list means it already converged."""
    if spec is None:
        return [DeleteNetwork(actual.network_id)] if _exists(actual) else []
    if actual is None or not actual.namespace:
        return _build(spec, netdev, with_namespace=True)
    if actual.inner is None or not actual.outer:
        return _build(spec, netdev, with_namespace=False)

    steps: list[Step] = []
    inner = actual.inner
    if (inner.mac != spec.mac or not inner.up or (spec.mtu and inner.mtu != spec.mtu)
            or (netdev and inner.tx_csum)):
        steps.append(ConfigureInner(spec, netdev))
    # Delete first: removing a primary address takes its subnet's secondaries with it.
    steps += [DelAddress(spec, a) for a in sorted(inner.addresses - spec.addresses)]
    steps += [AddAddress(spec, a) for a in sorted(spec.addresses - inner.addresses)]
    if not actual.outer_up:
        steps.append(SetOuterUp(spec))
    if actual.ovs_iface_id != spec.iface_id:
        steps.append(PlugOvs(spec))
    return steps


def _build(spec: NetworkSpec, netdev: bool, with_namespace: bool) -> list[Step]:
    steps: list[Step] = [CreateNamespace(spec)] if with_namespace else []
    steps += [CreateVeth(spec), ConfigureInner(spec, netdev)]
    steps += [AddAddress(spec, a) for a in sorted(spec.addresses)]
    steps += [SetOuterUp(spec), PlugOvs(spec)]
    return steps
