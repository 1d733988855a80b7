"""Which networks a reconcile pass looks at, and which of those it may change.

Pure: the reconciler gathers the inputs (its marks, the SB snapshot, what the host shows),
this decides. A network is looked at when something says it may differ from what is
desired; a rolling resync looks at each of them once an interval, a few at every pass, so
a missed event costs one interval at most (a full resync at start and after a bad pass).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ovnmeta.core.model import NetworkSpec, PortRecord


@dataclass(frozen=True)
class PassInputs:
    desired: Mapping[str, NetworkSpec]
    present: frozenset[str]          # networks with a namespace of ours on the host
    ready: frozenset[str]            # networks earlier passes converged
    dirty: frozenset[str] = frozenset()         # marked by SB and OVS events
    full: bool = False                          # a full resync (start, a bad pass)
    sweep: frozenset[str] = frozenset()         # due for their periodic look (`sweep`)
    retry_due: frozenset[str] = frozenset()     # failed, and their backoff has run out
    backing_off: frozenset[str] = frozenset()   # failed, still waiting for their retry
    watched: frozenset[str] = frozenset()       # being taken over, or a process stopping
    moved_ports: frozenset[str] = frozenset()   # logical ports plugged or unplugged here
    ports: Iterable[PortRecord] = ()            # the SB snapshot's ports
    plugged: Mapping[str, str] | None = None    # our OVS devices → iface-id
    may_delete: bool = True                     # the SB is connected: its absences are real


def to_check(i: PassInputs) -> set[str]:
    """The networks this pass inspects on the host."""
    check = set(i.dirty)
    check |= {n for n in i.desired if n not in i.present or n not in i.ready}
    check |= i.present - i.desired.keys()
    check |= i.retry_due | i.watched | i.sweep
    # A VM plugged or unplugged here: its network's neighbours are checked, even while the
    # SB view lags behind.
    check |= {p.network_id for p in i.ports if p.logical_port in i.moved_ports}
    if i.full:
        check |= i.desired.keys() | i.present
    if i.plugged is not None:   # an OVS event only wakes us: compare plugged with desired
        check |= {n for n in i.ready & i.desired.keys()
                  if i.plugged.get(i.desired[n].outer) != i.desired[n].iface_id}
    return check


def to_converge(i: PassInputs, check: Iterable[str]) -> list[str]:
    """Of the networks checked, those this pass may change, in a stable order: not one still
    backing off (unless this is a full resync), and no removal while the SB view cannot be
    refreshed (it is still the best view there is: keep serving it)."""
    return [n for n in sorted(set(check))
            if (i.full or n not in i.backing_off)
            and (n in i.desired or i.may_delete)]


def sweep(networks: Iterable[str], checked_at: Mapping[str, float], now: float,
          interval: float, period: float) -> frozenset[str]:
    """The rolling resync: of the networks not looked at for `interval` seconds, the longest
    unlooked-at, as many as passes every `period` seconds need to see each one within
    about an interval. All at once, a resync of 200 networks was 3.5 s of CPU in one burst
    every minute, in which the host's requests waited."""
    nets = list(networks)
    due = sorted((checked_at.get(n, -math.inf), n) for n in nets
                 if now - checked_at.get(n, -math.inf) >= interval)
    quota = max(1, math.ceil(len(nets) * period / interval))
    return frozenset(n for _, n in due[:quota])
