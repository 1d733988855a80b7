"""What the reconciler's last pass saw and did, as typed records: read by the metrics and,
as JSON over the control socket, by `ovnmeta status`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NetworkStatus:
    namespace: str
    localport: str
    mac: str
    addresses: list[str]
    vm_ports: int
    ready: bool            # converged and served
    error: str             # the last failed step, while it backs off
    haproxy_error: str


@dataclass(frozen=True)
class ProblemStatus:
    network: str
    reason: str            # why a network the SB names is not served


@dataclass(frozen=True)
class HaproxyStatus:
    mode: str = ""
    pids: dict[str, int | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class ReconcileStatus:
    """What the last pass saw and did, for `ovnmeta status` and the metrics."""
    time: float = 0.0
    duration: float = 0.0
    networks: dict[str, NetworkStatus] = field(default_factory=dict)
    problems: list[ProblemStatus] = field(default_factory=list)
    haproxy: HaproxyStatus = HaproxyStatus()
