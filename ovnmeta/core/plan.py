"""The diff: the steps that take one network from what the host has to what is desired.

Pure: the reconciler feeds it records and executes the steps it returns, in order.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from ovnmeta.core import naming
from ovnmeta.core.model import ActualNetwork, ForeignProcess, NetworkSpec

# Processes of another agent's that a takeover replaces; any other process found in one
# of our namespaces is reported, never signalled.
REPLACEABLE = frozenset({"haproxy"})
SOFT_STOP_SECONDS = 10.0   # haproxy's soft stop lets requests finish; then SIGTERM
HARD_STOP_SECONDS = 5.0    # then SIGKILL


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
class DeleteNeighbours:
    """Forget neighbours whose MAC is not the SB's for that IP, or that no VM here has any
    more: the namespace would otherwise answer a VM that got a deleted VM's address at the
    old MAC until the entry expires (OVN answers the VM's own ARP, so nothing corrects it)."""
    spec: NetworkSpec
    ips: tuple[str, ...]


@dataclass(frozen=True)
class AddNeighbours:
    """Permanent neighbour entries (IP, MAC) for the VMs served here: see
    NetworkSpec.neighbours."""
    spec: NetworkSpec
    entries: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SetOuterUp:
    spec: NetworkSpec


@dataclass(frozen=True)
class PlugOvs:
    """Plug our outer end with the localport's iface-id, in a transaction shared with the
    pass's other plugs; `replaces` (another agent's ports for the same localport) are
    removed in it, so the iface-id never has two ports. Shared, because vswitchd
    reconfigures a userspace bridge at every transaction: 50 in a row stalled every VM's
    traffic on the bridge, not only the swapped networks' (the reconciler commits swaps
    SWAP_CHUNK networks at a time)."""
    spec: NetworkSpec
    replaces: tuple[str, ...] = ()
    then: tuple[Step, ...] = ()   # run once the transaction has committed


@dataclass(frozen=True)
class DeleteLinks:
    """Delete another agent's devices in the namespace (a veth end takes its peer along)."""
    spec: NetworkSpec
    links: tuple[str, ...]


@dataclass(frozen=True)
class DeleteFirewall:
    """Delete another agent's nftables tables in the namespace (neutron's iptables CHECKSUM
    rule for its own veth on a netdev bridge; ours turns TX checksum offload off instead)."""
    spec: NetworkSpec
    tables: tuple[str, ...]


@dataclass(frozen=True)
class SignalProcess:
    """Signal another agent's process in the namespace: haproxy's soft stop (SIGUSR1: stop
    listening, finish the requests it has, queued connections handed on) once ours serves
    the network, else SIGTERM; SIGTERM and then SIGKILL while it lingers."""
    network_id: str
    process: ForeignProcess
    signal: int


@dataclass(frozen=True)
class ForgetProcess:
    """A process the agent stopped has ended: the files neutron's layout names for it go."""
    network_id: str
    process: ForeignProcess


@dataclass(frozen=True)
class DeleteNetwork:
    network_id: str
    foreign_ovs: tuple[str, ...] = ()


Step = (CreateNamespace | CreateVeth | ConfigureInner | AddAddress | DelAddress | SetOuterUp
        | DeleteNeighbours | AddNeighbours
        | PlugOvs | DeleteLinks | DeleteFirewall | SignalProcess | ForgetProcess
        | DeleteNetwork)


def _exists(actual: ActualNetwork | None) -> bool:
    """Anything of the network on the host to delete. Another agent's processes alone are
    not: they are signalled, and followed by PID wherever their namespace went."""
    return actual is not None and bool(
        actual.namespace or actual.outer_exists or actual.ovs_iface_id is not None
        or actual.foreign_links or actual.foreign_ovs or actual.foreign_tables)


def replaceable(actual: ActualNetwork) -> bool:
    """Another agent's leftovers are here that a takeover replaces."""
    return bool(actual.foreign_links or actual.foreign_ovs or actual.foreign_tables
                or any(p.name in REPLACEABLE for p in actual.foreign_procs))


def next_signal(process: ForeignProcess, start: bool, graceful: bool,
                now: float) -> int | None:
    """The signal a foreign process gets now: the first one once `start`, then SIGTERM after
    a soft stop that lingers, SIGKILL after a SIGTERM that does; None to wait."""
    if not process.signal:
        if not start:
            return None
        return signal.SIGUSR1 if graceful and process.name == "haproxy" else signal.SIGTERM
    waited = now - process.signalled_at
    if process.signal == signal.SIGUSR1 and waited >= SOFT_STOP_SECONDS:
        return signal.SIGTERM
    if process.signal == signal.SIGTERM and waited >= HARD_STOP_SECONDS:
        return signal.SIGKILL
    return None


def _stops(actual: ActualNetwork, start: bool, graceful: bool, now: float) -> list[Step]:
    """Another agent's processes: signalled, escalated while they linger (whether or not
    `start` holds still), forgotten once gone."""
    steps: list[Step] = [ForgetProcess(actual.network_id, p) for p in actual.ended]
    for p in actual.foreign_procs:
        if p.name in REPLACEABLE and (sig := next_signal(p, start, graceful, now)):
            steps.append(SignalProcess(actual.network_id, p, sig))
    return steps


def plan_network(spec: NetworkSpec | None, actual: ActualNetwork | None,
                 netdev: bool, now: float = 0.0) -> list[Step]:
    """Steps for one network; an empty list means it already converged. `now` (monotonic
    seconds) times the escalation of another agent's processes."""
    if spec is None:
        if actual is None:
            return []
        gone = _stops(actual, start=True, graceful=False, now=now)
        if _exists(actual):
            gone.append(DeleteNetwork(actual.network_id, actual.foreign_ovs))
        return gone
    if actual is None:
        return _build(spec, netdev, with_namespace=True)
    # Their processes: soft-stopped only once ours answers in the namespace (until then
    # theirs keeps serving), escalated whatever else this network needs.
    stops = _stops(actual, start=actual.served, graceful=True, now=now)
    if not actual.namespace:
        return _build(spec, netdev, with_namespace=True, replaces=actual.foreign_ovs) + stops
    if actual.inner is None or not actual.outer_exists:
        if actual.foreign_links or actual.foreign_ovs or actual.foreign_tables:
            return _take_over(spec, actual, netdev) + stops
        return _build(spec, netdev, with_namespace=False) + stops

    if actual.foreign_ovs:  # the rest once ours is on the bridge: see _take_over
        return [PlugOvs(spec, replaces=actual.foreign_ovs)] + stops
    steps: list[Step] = []
    if actual.foreign_links:
        steps.append(DeleteLinks(spec, actual.foreign_links))
    steps += stops
    inner = actual.inner
    reconfigure = (inner.mac != spec.mac or not inner.up
                   or bool(spec.mtu and inner.mtu != spec.mtu) or (netdev and inner.tx_csum))
    if reconfigure:
        steps.append(ConfigureInner(spec, netdev))
    # Delete first: removing a primary address takes its subnet's secondaries with it.
    steps += [DelAddress(spec, a) for a in sorted(inner.addresses - spec.addresses)]
    # A new MAC takes the link down, and the kernel drops its IPv6 addresses then
    # (keep_addr_on_down is 0): those are added again, not left for the next look.
    flushed = {a for a in inner.addresses if ":" in a} if inner.mac != spec.mac else set()
    steps += [AddAddress(spec, a)
              for a in sorted((spec.addresses - inner.addresses) | (spec.addresses & flushed))]
    if actual.foreign_tables:  # their CHECKSUM rule; ours turned TX checksum off instead
        steps.append(DeleteFirewall(spec, actual.foreign_tables))
    # Taking the link down (a new MAC) flushes its neighbour entries, permanent ones too.
    wanted = spec.neighbours if reconfigure else spec.neighbours - inner.permanent
    # Learned entries for a VM's IP at another MAC, and permanent ones of VMs that left;
    # an entry to be written is replaced in place.
    stale = {ip for ip, mac in inner.neighbours - spec.neighbours if ip in spec.vm_ips}
    stale |= {ip for ip, _ in inner.permanent - spec.neighbours}
    stale -= {ip for ip, _ in wanted}
    if stale:
        steps.append(DeleteNeighbours(spec, tuple(sorted(stale))))
    steps += _neighbours(spec, wanted)
    if not actual.outer_up:
        steps.append(SetOuterUp(spec))
    if actual.ovs_iface_id != spec.iface_id:
        steps.append(PlugOvs(spec))
    return steps


def _build(spec: NetworkSpec, netdev: bool, with_namespace: bool,
           replaces: tuple[str, ...] = ()) -> list[Step]:
    steps: list[Step] = [CreateNamespace(spec)] if with_namespace else []
    steps += [CreateVeth(spec), ConfigureInner(spec, netdev)]
    steps += [AddAddress(spec, a) for a in sorted(spec.addresses)]
    steps += _neighbours(spec, spec.neighbours)
    steps += [SetOuterUp(spec), PlugOvs(spec, replaces=replaces)]
    return steps


def _neighbours(spec: NetworkSpec, entries: frozenset[tuple[str, str]]) -> list[Step]:
    return [AddNeighbours(spec, tuple(sorted(entries)))] if entries else []


def _take_over(spec: NetworkSpec, actual: ActualNetwork, netdev: bool) -> list[Step]:
    """Build ours beside another agent's pair, and switch in the order that keeps the gap
    short: our port replaces theirs on the bridge (the pass's OVS transaction), and right
    after that commits their devices go (with the addresses and routes on them) and only
    then do the addresses come up on ours, so no address is ever held twice and replies
    never leave through a device that is off the bridge."""
    then: list[Step] = [DeleteLinks(spec, actual.foreign_links)] if actual.foreign_links else []
    then += [AddAddress(spec, a) for a in sorted(spec.addresses)]
    then += _neighbours(spec, spec.neighbours)
    return [CreateVeth(spec), ConfigureInner(spec, netdev), SetOuterUp(spec),
            PlugOvs(spec, replaces=actual.foreign_ovs, then=tuple(then))]


@dataclass
class HostView:
    """What one pass read of the host, shared by the networks it converges."""
    plugged: dict[str, str]                       # our devices -> iface-id
    others: dict[str, tuple[str, bool]]           # other OVS interfaces -> (iface-id, VM's)
    processes: dict[str, list[ForeignProcess]]    # namespace -> processes inside it
    _by_iface: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (iface_id, _) in self.others.items():
            if iface_id:
                self._by_iface.setdefault(iface_id, []).append(name)

    def foreign_ovs(self, net: str, spec: NetworkSpec | None) -> tuple[str, ...]:
        """Other agents' ports for this network: the localport's iface-id on a port not
        ours, or neutron's device name on a port that is not a VM's."""
        found = set(self._by_iface.get(spec.iface_id, ())) if spec else set()
        neutron_outer = naming.neutron_veth(net)[0]
        iface_id, is_vm = self.others.get(neutron_outer, ("", True))
        if not is_vm and (spec is None or iface_id in ("", spec.iface_id)):
            found.add(neutron_outer)
        return tuple(sorted(found))


def describe(step: Step) -> str:
    """A step as the log says it: its kind, and what it names."""
    match step:
        case AddAddress(_, address) | DelAddress(_, address):
            return f"{type(step).__name__} {address}"
        case PlugOvs(spec, replaces):
            return f"PlugOvs iface-id={spec.iface_id}" + (
                f" replacing {','.join(replaces)}" if replaces else "")
        case DeleteNeighbours(_, ips):
            return f"DeleteNeighbours {','.join(ips)}"
        case AddNeighbours(_, entries):
            return f"AddNeighbours {','.join(ip for ip, _ in entries)}"
        case DeleteLinks(_, links):
            return f"DeleteLinks {','.join(links)}"
        case DeleteFirewall(_, tables):
            return f"DeleteFirewall {','.join(tables)}"
        case SignalProcess(_, process, sig):
            return f"SignalProcess {process.name} {process.pid} {signal.Signals(sig).name}"
        case ForgetProcess(_, process):
            return f"ForgetProcess {process.name} {process.pid}"
    return type(step).__name__
