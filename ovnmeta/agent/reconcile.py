"""The reconciler: one loop that makes the host match what the SB says, network by network.

Events only mark networks dirty. Each pass picks the networks to look at (core.worklist), has
the executor (agent.executor) read, plan (core.plan) and change each, and retries the
failures it returns with backoff; then haproxy serves the ready ones. A missed event, a
hand-deleted namespace or a restart all converge the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from ovnmeta.agent.executor import Executor, Failure, OvsBatch
from ovnmeta.agent.passstatus import HaproxyStatus, NetworkStatus, ProblemStatus, ReconcileStatus
from ovnmeta.core import naming, plan, worklist
from ovnmeta.core.boundaries import Haproxy, Host, Ovs, Sb
from ovnmeta.core.desired import Problem, desired_networks
from ovnmeta.core.model import Frontend, NetworkSpec, NeutronAgent, SbSnapshot
from ovnmeta.haproxy.maps import MapSync
from ovnmeta.host.system import LinuxHost
from ovnmeta.ovsdb.ovs import ChassisConfig

LOG = logging.getLogger(__name__)
DEBOUNCE = 0.005      # collect a burst of events into one pass
HOST_CHECK = 1.0      # an idle pass this often finds hand-deleted namespaces, dead haproxy
OUTER_SWEEP = 10.0    # seconds between looks for outer ends left without their namespace
TAKEOVER_POLL = 0.05  # while another agent's leftovers are being replaced...
TAKEOVER_FAST = 15.0  # ...for this long; one that takes longer is looked at every HOST_CHECK
AGENT_POLL = 0.2      # while neutron's agent still runs: how often to look for it again
# A takeover swaps this many networks' ports per OVS transaction: one transaction for all
# makes the last network wait for every other's switch after it (seconds at 200 networks);
# one per network reconfigures vswitchd so often that the whole bridge's traffic stalls.
SWAP_CHUNK = 10
# A pass making many networks (a start, 200 of them) hands their ports to OVS this many at a
# time as it goes, not all after the last: ovn-controller and vswitchd then set up the first
# ones on the other core while the agent makes the rest (one transaction at the end left
# them 1 s of the cold start to do alone, after the agent was done).
PLUG_CHUNK = 40
MAX_BACKOFF = 30.0


@dataclass
class _Backoff:
    failures: int = 0
    retry_at: float = 0.0
    error: str = ""


class Reconciler:
    def __init__(self, sb: Sb, ovs: Ovs, chassis: ChassisConfig, haproxy: Haproxy,
                 resync_interval: float = 60.0, cidrs_key: str = "neutron:cidrs",
                 maps: MapSync | None = None, host: Host | None = None) -> None:
        self.sb, self.ovs, self.chassis, self.haproxy = sb, ovs, chassis, haproxy
        self.maps = maps   # the direct path's maps: told which frontends haproxy serves
        self.host: Host = host or LinuxHost()
        self.executor = Executor(self.host, ovs, chassis, lambda: list(haproxy.pids().values()))
        self.resync_interval = resync_interval
        self.cidrs_key = cidrs_key
        self._cond = threading.Condition()
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._backoff: dict[str, _Backoff] = {}
        self._ready: set[str] = set()
        self._problems: set[Problem] = set()
        self._notes: set[tuple[str, str]] = set()
        self._checked_at: dict[str, float] = {}   # network → when a pass last looked at it
        self._last_host_check = 0.0
        self._outers_swept_at = float("-inf")
        self._recorded: tuple | None = None   # what the last status's networks came from
        self._taking_over: set[str] = set()
        self._iface_ids: frozenset[str] = frozenset()
        self._takeover_since: float | None = None
        # neutron's agents still running here: the host is theirs until they are gone. Only
        # looked for until the first time none runs (a start while they run is the swap).
        self.waiting_for: list[NeutronAgent] | None = None
        self.passes = 0
        self._last_desired: tuple | None = None
        self.failures = 0     # network changes that failed, for the metrics
        self.status = ReconcileStatus()

    @property
    def stopping(self) -> bool:
        """Another agent's process was signalled and has not been seen to end yet."""
        return self.executor.signals.pending

    def backoff_count(self) -> int:
        """Networks whose last change failed and wait for their retry."""
        return sum(1 for b in self._backoff.values() if b.failures)

    # -- marking work (any thread) -------------------------------------------
    def mark(self, networks: set[str] | None) -> None:
        """Networks to look at again; None means all of them."""
        with self._cond:
            if networks is None:
                self._all_dirty = True
            else:
                self._dirty |= networks
            self._cond.notify()

    def mark_all(self) -> None:
        self.mark(None)

    # -- the loop -------------------------------------------------------------
    def run(self, stop: threading.Event, on_pass: Callable[[], None] = lambda: None) -> None:
        """Reconcile until stopped; on_pass runs after every pass, even one that waited for
        the SB (the systemd watchdog: a loop that hangs stops calling it)."""
        while not stop.is_set():
            try:
                on_pass()
            except Exception:  # the metrics or a notification: never the reconciler's end
                LOG.exception("after-pass hook failed")
            with self._cond:
                if not (self._dirty or self._all_dirty):
                    self._cond.wait(timeout=self._next_wakeup())
            if stop.is_set():
                return
            time.sleep(DEBOUNCE)
            try:
                self.reconcile_once()
            except Exception:  # never let one bad pass kill the agent
                LOG.exception("reconcile pass failed; retrying")
                self.mark_all()
                stop.wait(1.0)

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        deadlines = [self._last_host_check + HOST_CHECK]   # the rolling resync's cadence too
        if self.waiting_for:
            deadlines.append(self._last_host_check + AGENT_POLL)
        if self.executor.signals.pending or (self._taking_over and self._takeover_since is not None
                                     and now - self._takeover_since < TAKEOVER_FAST):
            deadlines.append(self._last_host_check + TAKEOVER_POLL)
        deadlines += [b.retry_at for b in self._backoff.values()]
        return max(0.0, min(deadlines) - now)

    def reconcile_once(self) -> None:
        """One pass: plan and apply for the networks that need a look, then haproxy."""
        started = time.monotonic()
        if not self.sb.settled:
            LOG.debug("SB view not loaded yet; waiting before touching the host")
            self._last_host_check = started
            return
        if self._other_agent_runs():
            self._last_host_check = started
            return
        with self._cond:
            full = self._all_dirty
            dirty, self._dirty, self._all_dirty = self._dirty, set(), False
        if dirty:
            LOG.debug("pass %d: %d network(s) marked", self.passes + 1, len(dirty))
        snapshot = self.sb.snapshot()
        iface_ids = self.ovs.iface_ids()
        desired, problems = self._desired(snapshot, iface_ids)
        present = {net for ns in self.host.list_namespaces()
                   if (net := naming.network_from_namespace(ns))}
        plugged = self.ovs.plugged()
        moved = iface_ids ^ self._iface_ids
        self._iface_ids = iface_ids
        inputs = worklist.PassInputs(
            desired=desired, present=frozenset(present), ready=frozenset(self._ready),
            dirty=frozenset(dirty), full=full,
            retry_due=frozenset(n for n, b in self._backoff.items() if b.retry_at <= started),
            backing_off=frozenset(n for n, b in self._backoff.items() if b.retry_at > started),
            watched=frozenset(self._taking_over | self.executor.signals.networks()),
            moved_ports=frozenset(moved), ports=snapshot.ports, plugged=plugged,
            may_delete=self.sb.connected(),
            sweep=worklist.sweep(desired.keys() | present, self._checked_at, started,
                                 self.resync_interval, HOST_CHECK))
        check = worklist.to_check(inputs)
        self._checked_at = {n: started if n in check else self._checked_at.get(n, started)
                            for n in desired.keys() | present}
        host = plan.HostView(plugged, self.ovs.others(), self.host.processes_in(
            {naming.namespace(n) for n in check & present}))
        # Another agent's port for a network we serve, wherever it shows up.
        check |= {n for n in desired if host.foreign_ovs(n, desired[n])}
        self._taking_over = set()
        batch = OvsBatch()
        for net in worklist.to_converge(inputs, check):
            self._converge(net, desired.get(net), net in present, host, batch)
            if len(batch.then) >= SWAP_CHUNK or (
                    len(batch.plug) >= PLUG_CHUNK and not (batch.replaces or batch.then)):
                self._flush(batch)
                batch = OvsBatch(changed=batch.changed)
        if inputs.may_delete:
            ours = {naming.outer_device(n) for n in desired.keys() | present}
            for device in sorted(plugged.keys() - ours - set(batch.unplug)):
                LOG.info("removing orphan OVS port %s (iface-id %s)", device, plugged[device])
                batch.unplug.append(device)
            # A pass that changed something, and now and then: a held namespace lets go of
            # its pair minutes after it was deleted, and the sysfs listing costs every pass.
            if batch.changed or started - self._outers_swept_at >= OUTER_SWEEP:
                self._outers_swept_at = started
                self.executor.sweep_outers(ours)
        converged = time.monotonic()
        if not self._taking_over:
            self._takeover_since = None
        elif self._takeover_since is None:
            self._takeover_since = started
        # New networks' ports go to OVS while haproxy loads their frontends: the two take
        # 30-300 ms each at 200 networks, and a VM reaches the namespace only through its
        # port anyway. A takeover keeps the order (its switch comes with the ports).
        together = bool(batch.plug) and not (batch.replaces or batch.then)
        ovs_time = 0.0
        if together:
            def plug() -> None:
                nonlocal ovs_time
                at = time.monotonic()
                self._flush(batch)
                ovs_time = time.monotonic() - at
            errors = self._serve(desired, present, batch.plug.keys(), meanwhile=plug)
        else:
            self._flush(batch)
            ovs_time = time.monotonic() - converged
            errors = self._serve(desired, present)
        haproxy_time = time.monotonic() - converged - ovs_time
        self._last_host_check = time.monotonic()
        self.passes += 1
        if batch.changed:
            LOG.info("pass %d: %d network(s) changed, %d checked, %d served, in %.3fs "
                     "(host %.3f, OVS %.3f, haproxy %.3f%s)", self.passes, batch.changed,
                     len(check), len(self._ready), self._last_host_check - started,
                     converged - started, ovs_time, haproxy_time,
                     ", together" if together else "")
        self._record(desired, problems, errors, started)

    def _serve(self, desired: dict[str, NetworkSpec], present: set[str],
               plugging: Collection[str] = (),
               meanwhile: Callable[[], None] | None = None) -> dict[str, str]:
        """haproxy serves the ready networks, and those whose OVS ports `meanwhile` adds
        (while haproxy loads the config); returns its errors by network."""
        self._ready &= desired.keys()
        # A network whose change failed keeps the frontend haproxy already has for it: its
        # namespace still answers (one step failing, say at a restart, is no reason to stop
        # serving it, nor to stop a shared haproxy that serves nothing else).
        keep = {n for n in desired.keys() - self._ready
                if n in self._backoff and n in present} & self.haproxy.configured_networks()
        frontends = [Frontend.for_spec(desired[n])
                     for n in sorted(self._ready | keep | set(plugging))]
        reloads = 0
        if self.maps:
            self.maps.prepare([f.network_id for f in frontends])
            reloads = self.haproxy.reloads
        recreated = set(self.executor.recreated)
        errors = self.haproxy.sync(frontends, recreated=recreated, meanwhile=meanwhile)
        self.executor.recreated -= recreated
        if self.maps:
            self.maps.served(self.haproxy.configured_networks(),
                             reloaded=self.haproxy.reloads != reloads)
        return errors

    def _desired(self, snapshot: SbSnapshot, iface_ids: frozenset[str]
                 ) -> tuple[dict[str, NetworkSpec], list[Problem]]:
        """desired_networks(), computed again only when the SB view or the OVS ports changed
        (both are replaced, never modified): an idle pass every second at 200 networks
        spent 5-15 ms of CPU on it."""
        last = self._last_desired
        if last and last[0] is snapshot and last[1] is iface_ids:
            return last[2]
        result = desired_networks(snapshot, cidrs_key=self.cidrs_key, plugged=iface_ids)
        self._last_desired = (snapshot, iface_ids, result)
        return result

    def _other_agent_runs(self) -> bool:
        """neutron's agent still serves this host: started before it stops (the swap
        without a gap), the agent serves its haproxies' requests on the socket it took over,
        and leaves namespaces, veths and haproxies alone until that agent is gone."""
        if self.waiting_for == []:
            return False
        running = [a for a in self.host.neutron_agents() if a.serves_metadata]
        if running and self.waiting_for is None:
            LOG.info("%s still runs: serving its haproxies' requests, and taking over its "
                     "namespaces once it has stopped", ", ".join(map(str, running)))
        elif not running and self.waiting_for:
            LOG.info("%s has stopped: taking over the host",
                     ", ".join(map(str, self.waiting_for)))
        self.waiting_for = running
        return bool(running)

    # -- one network ----------------------------------------------------------
    def _converge(self, net: str, spec: NetworkSpec | None, ns_present: bool,
                  host: plan.HostView, batch: OvsBatch) -> None:
        done = self.executor.converge(net, spec, ns_present, host, batch)
        if done.replaceable:
            self._taking_over.add(net)
        if done.failure:
            self._fail(done.failure)
            return
        if done.steps:
            batch.changed += 1
            LOG.info("network %s: %s", net, ", ".join(plan.describe(s) for s in done.steps))
        if spec is None:
            self._ready.discard(net)
            self._backoff.pop(net, None)
        elif net not in batch.plug:  # otherwise ready once the batch is plugged
            self._ready.add(net)
            self._backoff.pop(net, None)

    def _fail(self, failure: Failure) -> None:
        """The one owner of backoff: a failed network waits, doubling, up to MAX_BACKOFF."""
        net = failure.network
        b = self._backoff.setdefault(net, _Backoff())
        b.failures += 1
        self.failures += 1
        delay = min(MAX_BACKOFF, 0.5 * 2 ** (b.failures - 1))
        b.retry_at, b.error = time.monotonic() + delay, str(failure)
        self._ready.discard(net)
        LOG.error("network %s: %s failed (%s: %s); retry %d in %.1fs", net, failure.what,
                  type(failure.error).__name__, failure.error, b.failures, delay)

    def _flush(self, batch: OvsBatch) -> None:
        """The pass's OVS transactions: plugged networks are ready, failed ones back off."""
        flushed = self.executor.flush(batch)
        for net in flushed.plugged:
            self._ready.add(net)
            self._backoff.pop(net, None)
        for failure in flushed.failures:
            self._fail(failure)

    # -- status ---------------------------------------------------------------
    def _record(self, desired: dict[str, NetworkSpec], problems: list[Problem],
                errors: dict[str, str], started: float) -> None:
        for p in set(problems) - self._problems:  # once each, not at every pass
            LOG.warning("network %s not served: %s", p.network_id, p.reason)
        self._problems = set(problems)
        last = self._recorded   # (the desired state recorded last, ...)
        if last is None or last[0] is not desired:   # the same object while unchanged
            notes = {(net, note) for net, spec in desired.items() for note in spec.notes}
            for net, note in sorted(notes - self._notes):
                LOG.warning("network %s: %s", net, note)
            self._notes = notes
        status = ReconcileStatus(
            time=time.time(), duration=time.monotonic() - started,
            problems=[ProblemStatus(p.network_id, p.reason) for p in problems],
            haproxy=HaproxyStatus(self.haproxy.mode, self.haproxy.pids(), errors))
        # The networks' part again only when what it shows changed (an idle pass at 200
        # networks spent 1-2 ms on it); `desired` is the same object while unchanged.
        made_from = (desired, frozenset(self._ready),
                     tuple(sorted((n, b.error) for n, b in self._backoff.items())),
                     tuple(sorted(errors.items())))
        if last is not None and last[0] is desired and last[1:] == made_from[1:]:
            status.networks = self.status.networks
            self.status = status
            return
        self._recorded = made_from
        for net, spec in desired.items():
            b = self._backoff.get(net)
            status.networks[net] = NetworkStatus(
                namespace=spec.namespace, localport=spec.iface_id, mac=spec.mac,
                addresses=sorted(spec.addresses), vm_ports=spec.vm_ports,
                ready=net in self._ready, error=b.error if b else "",
                haproxy_error=errors.get(net) or errors.get("*", ""))
        self.status = status  # served by the control socket (ovnmeta status)
