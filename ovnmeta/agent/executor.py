"""The executor: reads one network's actual state, plans it and carries the plan out on the
host and OVS.

It decides nothing about when to try again. Every failure is returned to the reconciler,
which owns backoff and readiness; this keeps no state about a network beyond a pass except
what only it can know: the signals it sent and the namespaces it made anew.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from ovnmeta.core import naming, plan
from ovnmeta.core.boundaries import Host, Ovs
from ovnmeta.core.model import METADATA_V4, ActualNetwork, NetworkSpec
from ovnmeta.host import foreign
from ovnmeta.ovsdb.ovs import ChassisConfig

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """A step that failed for a network: `what` names it as the log and status show it."""
    network: str
    what: str
    error: Exception

    def __str__(self) -> str:
        return f"{self.what}: {type(self.error).__name__}: {self.error}"


@dataclass(frozen=True)
class Converged:
    """What converging one network did: its steps, or the failure that stopped it."""
    steps: tuple[plan.Step, ...] = ()
    failure: Failure | None = None
    replaceable: bool = False   # another agent's parts are being replaced there


@dataclass
class OvsBatch:
    """The OVS side of a pass, done in as few transactions as the pass allows."""
    plug: dict[str, NetworkSpec] = field(default_factory=dict)
    replaces: tuple[str, ...] = ()     # other agents' ports our plugs replace
    then: dict[str, tuple[plan.Step, ...]] = field(default_factory=dict)  # after the commit
    unplug: list[str] = field(default_factory=list)
    changed: int = 0


@dataclass(frozen=True)
class Flushed:
    """The networks whose ports OVS took, and the failures of the commit or after it."""
    plugged: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()


class Executor:
    def __init__(self, host: Host, ovs: Ovs, chassis: ChassisConfig,
                 serving_pids: Callable[[], Collection[int | None]]) -> None:
        self.host, self.ovs, self.chassis = host, ovs, chassis
        self.serving_pids = serving_pids   # our haproxy's processes
        self.signals = foreign.Signals()   # what we sent other agents' processes
        self.recreated: set[str] = set()   # networks whose namespace was made anew

    def take_recreated(self) -> set[str]:
        recreated, self.recreated = self.recreated, set()
        return recreated

    # -- one network ----------------------------------------------------------
    def converge(self, net: str, spec: NetworkSpec | None, ns_present: bool,
                 view: plan.HostView, batch: OvsBatch) -> Converged:
        step = None
        replaceable = False
        try:
            with self.host.batch():
                actual = self.inspect(net, spec, ns_present, view)
                replaceable = plan.replaceable(actual)
                steps = plan.plan_network(spec, actual, netdev=self.chassis.netdev,
                                          now=time.monotonic())
                for step in steps:
                    self.apply(step, view.plugged, batch)
                if spec is not None and any(isinstance(s, plan.DelAddress) for s in steps):
                    self._verify(net, spec)
        except Exception as exc:
            what = plan.describe(step) if step else "inspect"
            return Converged(failure=Failure(net, what, exc), replaceable=replaceable)
        return Converged(tuple(steps), replaceable=replaceable)

    def _verify(self, net: str, spec: NetworkSpec) -> None:
        """Read the addresses back after a deletion, which can take others with it (the
        kernel drops a subnet's secondaries with its primary): anything still missing is
        a failure to retry."""
        assumed = plan.HostView({spec.outer: spec.iface_id}, {}, {})
        actual = self.inspect(net, spec, True, assumed)
        left = [s for s in plan.plan_network(spec, actual, self.chassis.netdev)
                if not isinstance(s, (plan.SignalProcess, plan.ForgetProcess))]
        if left:
            raise RuntimeError(f"not converged: {plan.describe(left[0])} still needed")

    def inspect(self, net: str, spec: NetworkSpec | None, ns_present: bool,
                view: plan.HostView) -> ActualNetwork:
        outer = naming.outer_device(net)
        ns = naming.namespace(net)
        if ns_present and not self.host.is_namespace(ns):
            LOG.warning("network %s: %s is not a network namespace (a leftover file?); "
                        "making a new one there", net, ns)
            ns_present = False
        inner, links = self.host.read_inner(ns, naming.inner_device(net),
                                            with_csum=self.chassis.netdev) \
            if ns_present else (None, ())
        outer_exists, outer_up = self.host.read_outer(outer)
        processes, ended = self.signals.read(net, list(view.processes.get(ns, ())))
        return ActualNetwork(network_id=net, namespace=ns_present, inner=inner,
                             outer_exists=outer_exists, outer_up=outer_up,
                             ovs_iface_id=view.plugged.get(outer), foreign_links=links,
                             foreign_ovs=view.foreign_ovs(net, spec),
                             foreign_procs=processes, ended=ended,
                             foreign_tables=self.host.read_firewall(ns) if ns_present else (),
                             served=bool(processes) and self._listens(net))

    def _listens(self, net: str) -> bool:
        """Our haproxy holds a socket listening on 169.254.169.254:80 in the namespace (a
        reload binds asynchronously: its return says nothing about that)."""
        return self.host.listens(naming.namespace(net), METADATA_V4.split("/")[0], 80,
                                 [p for p in self.serving_pids() if p])

    def apply(self, step: plan.Step, plugged: dict[str, str], batch: OvsBatch) -> None:
        match step:
            case plan.CreateNamespace(spec):
                self.host.create_namespace(spec)
                self.recreated.add(spec.network_id)
            case plan.CreateVeth(spec):
                if spec.outer in plugged:
                    # vswitchd does not reopen a port whose device vanished and came back
                    # under the same name: replug it from scratch.
                    self.ovs.unplug([spec.outer])
                self.host.create_veth(spec)
            case plan.ConfigureInner(spec, csum_off):
                self.host.configure_inner(spec, csum_off)
            case plan.AddAddress(spec, address):
                self.host.add_address(spec, address)
            case plan.DelAddress(spec, address):
                self.host.del_address(spec, address)
            case plan.DeleteNeighbours(spec, ips):
                self.host.delete_neighbours(spec, ips)
            case plan.AddNeighbours(spec, entries):
                self.host.add_neighbours(spec, entries)
            case plan.SetOuterUp(spec):
                self.host.set_outer_up(spec)
            case plan.PlugOvs(spec, replaces, then):
                batch.plug[spec.network_id] = spec
                batch.replaces += replaces
                if then:
                    batch.then[spec.network_id] = then
            case plan.DeleteLinks(spec, links):
                self.host.delete_links(spec.namespace, links)
            case plan.DeleteFirewall(spec, tables):
                self.host.delete_firewall(spec.namespace, tables)
            case plan.SignalProcess(net, process, sig):
                if sig == signal.SIGUSR1:   # a soft stop: its queued connections go to ours
                    self.host.migrate_queued_connections(naming.namespace(net))
                self.signals.send(net, process, sig, time.monotonic())
            case plan.ForgetProcess(net, process):
                self.signals.forget(net, process)
            case plan.DeleteNetwork(net, foreign_ovs):
                self.host.delete(net)
                batch.unplug += list(foreign_ovs)
                if naming.outer_device(net) in plugged:
                    batch.unplug.append(naming.outer_device(net))

    # -- the pass's OVS side and sweep --------------------------------------
    def flush(self, batch: OvsBatch) -> Flushed:
        """One OVS transaction for every port this pass adds (and the other agents' ports
        they replace), one for those it removes; then a takeover's switch."""
        try:
            self.ovs.unplug(batch.unplug)
        except Exception as exc:  # the next pass finds them as orphans and tries again
            LOG.error("removing OVS ports %s failed: %s", batch.unplug, exc)
        if not batch.plug:
            return Flushed()
        try:
            self.ovs.plug(self.chassis.bridge,
                          [(s.outer, s.iface_id) for s in batch.plug.values()],
                          replaces=batch.replaces)
            if batch.replaces:
                LOG.info("OVS ports of ours replaced %s", ", ".join(batch.replaces))
        except Exception as exc:
            return Flushed(failures=tuple(Failure(net, "PlugOvs", exc) for net in batch.plug))
        failures = []
        for net, steps in batch.then.items():  # a takeover's switch: their devices go now
            step = None
            try:
                with self.host.batch():
                    for step in steps:
                        self.apply(step, {}, batch)
            except Exception as exc:
                failures.append(Failure(net, plan.describe(step) if step else "switch", exc))
                continue
            LOG.info("network %s: %s", net, ", ".join(plan.describe(s) for s in steps))
        return Flushed(tuple(batch.plug), tuple(failures))

    def sweep_outers(self, ours: set[str]) -> None:
        """Delete outer ends no network owns.

        Unmounting a namespace destroys its pair only once nothing holds the namespace; an
        orphaned TCP socket still retransmitting to a deleted VM can hold it for minutes,
        leaving the outer end behind (and a network that comes back with it half-built).
        """
        for dev in sorted(self.host.outer_devices() - ours):
            LOG.info("deleting stray device %s: its namespace is gone", dev)
            try:
                self.host.delete_outer(dev)
            except Exception as exc:  # the next pass tries again
                LOG.warning("deleting stray device %s failed: %s", dev, exc)
