"""What `ovnmeta trace` found, hop by hop, and how it prints: text for a terminal, JSON for
a script."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

HOPS = 7   # VM port, localport, ovn-trace, namespace, haproxy, agent, nova


@dataclass
class Hop:
    number: int
    name: str
    ok: bool = False
    evidence: str = ""
    fix: str = ""
    detail: str = ""


@dataclass
class TraceResult:
    vm: str
    hops: list[Hop] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.hops) and all(h.ok for h in self.hops) and len(self.hops) == HOPS

    def to_json(self) -> str:
        return json.dumps({"vm": self.vm, "ok": self.ok, "hops": [asdict(h) for h in self.hops]},
                          indent=1)


class Broken(Exception):
    """The current hop failed; carries what to print."""

    def __init__(self, evidence: str, fix: str, detail: str = "") -> None:
        super().__init__(evidence)
        self.evidence, self.fix, self.detail = evidence, fix, detail


def render(result: TraceResult) -> str:
    lines = [f"metadata path of {result.vm}:"]
    for hop in result.hops:
        mark = "✓" if hop.ok else "✗"
        lines.append(f" {mark} {hop.number}. {hop.name}: {hop.evidence}")
        if not hop.ok:
            lines.append(f"      fix: {hop.fix}")
            if hop.detail:
                lines += ["      " + line for line in hop.detail.splitlines()]
    if result.ok:
        lines.append("all hops pass")
    else:
        untested = HOPS - len(result.hops)
        if untested:
            lines.append(f"({untested} later hop(s) not checked)")
    return "\n".join(lines)
