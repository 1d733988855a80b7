"""`ovnmeta status`: what the agent serves and in what state, live from its control socket,
with what the host shows when the agent is down."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ovnmeta.agent import control
from ovnmeta.core import naming
from ovnmeta.host import links, namespace


def collect(state_path: str, scan_host: bool = True) -> dict:
    """The agent's status; `scan_host` adds what each namespace holds (a health probe,
    run every few seconds, skips that)."""
    path = str(Path(state_path) / control.CONTROL_SOCKET)
    try:
        code, status = control.request(path, "/status", timeout=3)
        status["agent_running"] = code == 200
    except Exception as exc:
        status = {"agent_running": False, "agent_error": f"no answer on {path}: {exc}",
                  "networks": {n: {} for n in
                               filter(None, map(naming.network_from_namespace,
                                                namespace.list_namespaces()))}}
    if not scan_host:
        return status
    present = namespace.list_namespaces()
    for net, info in status.get("networks", {}).items():
        ns = naming.namespace(net)
        info["namespace_present"] = ns in present
        inner, others = links.read_inner(ns, naming.inner_device(net), with_csum=False) \
            if ns in present else (None, ())
        info["foreign_devices"] = list(others)
        info["veth"] = "up" if inner and inner.up else ("down" if inner else "missing")
        info["host_addresses"] = sorted(inner.addresses) if inner else []
        info["ofport"] = status.get("ofports", {}).get(naming.outer_device(net))
    return status


def healthy(status: dict) -> bool:
    return status["agent_running"] and status.get("sb_connected") and \
        status.get("chassis_registered") is not False and all(
        n.get("ready") and n["namespace_present"] and n["veth"] == "up"
        for n in status["networks"].values())


def health(status: dict, ovs_connection: str) -> tuple[bool, str]:
    """A probe's verdict, in one line: the agent answers, and holds the SB and the local OVS
    DB. Networks not yet ready do not fail it (a liveness probe would restart an agent that
    is converging)."""
    if not status["agent_running"]:
        why = status.get("agent_error") or "its control socket answered with an error"
        return False, f"unhealthy: agent not running ({why})"
    problems = []
    if not status.get("sb_connected"):
        problems.append(f"Southbound DB {status.get('sb_connection', '?')} not connected")
    if not status.get("ovs_connected"):
        problems.append(f"local OVS DB {ovs_connection} not connected")
    if problems:
        return False, f"unhealthy: {'; '.join(problems)} (agent pid {status['agent_pid']})"
    nets = status.get("networks", {})
    ready = sum(1 for n in nets.values() if n.get("ready"))
    return True, (f"healthy: agent pid {status['agent_pid']}, SB and OVS connected, "
                  f"{ready}/{len(nets)} network(s) ready")


def render(status: dict) -> str:
    lines = []
    if not status["agent_running"]:
        lines.append(f"agent: NOT RUNNING ({status['agent_error']})")
    else:
        age = time.time() - status["last_reconcile"]
        lines.append(f"agent: pid {status['agent_pid']}, chassis {status['chassis']}, bridge "
                     f"{status['bridge']} ({status['datapath_type'] or 'system'})")
        lines.append(f"SB {status['sb_connection']}: "
                     f"{'connected' if status['sb_connected'] else 'DISCONNECTED'}, rows held "
                     f"{status['sb_rows']}; OVS: "
                     f"{'connected' if status['ovs_connected'] else 'DISCONNECTED'}")
        if status.get("chassis_registered") is False:
            lines.append(f"chassis {status['chassis']}: NOT REGISTERED: the SB has no Chassis "
                         "row for it (ovn-controller not running or registered here, or the "
                         "chassis was deleted); no port can be bound to this host")
        t = status.get("traffic") or {}
        if t:
            nova = (f"{t['nova_latency_ms']} ms" if t.get("nova_latency_ms") is not None
                    else "-")
            sb_age = status.get("sb_last_update_age")
            lines.append(f"traffic (last {t['window_seconds']}s): {t['requests_per_second']} "
                         f"req/s, {t['errors_per_second']} errors/s, nova latency {nova}; "
                         f"{t['requests_total']} requests, {t['errors_total']} errors since "
                         f"start; last SB update "
                         f"{'-' if sb_age is None else f'{sb_age:.0f}s'} ago")
        lines.append(f"last reconcile {age:.1f}s ago ({status['last_reconcile_seconds']*1000:.0f}"
                     f" ms), {status['passes']} passes; haproxy {status['haproxy']['mode']}: "
                     f"pids {status['haproxy']['pids']}")
        if status.get("waiting_for"):
            lines.append(f"waiting for {', '.join(status['waiting_for'])} to stop: serving "
                         "its haproxies' requests, its namespaces untouched until then")
        direct = status.get("direct_path")
        state = "ready" if direct and direct["ready"] else "NOT READY (through the agent)"
        lines.append("direct path: off (every request through the agent)" if not direct else
                     f"direct path: {state}, {direct['entries']} addresses in haproxy's "
                     f"maps, {direct['requests']} requests straight to nova since start")
    nets = status.get("networks", {})
    lines.append(f"{len(nets)} network(s):")
    for net, n in sorted(nets.items()):
        state = "ready" if n.get("ready") else ("NOT READY" if status["agent_running"] else "?")
        lines.append(f"  {net}  {state}")
        lines.append(f"    namespace {naming.namespace(net)}: "
                     f"{'present' if n['namespace_present'] else 'MISSING'}, veth {n['veth']}, "
                     f"OVS ofport {n['ofport']}")
        if n.get("localport"):
            lines.append(f"    localport {n['localport']} {n['mac']}, VM ports here "
                         f"{n['vm_ports']}")
        lines.append(f"    addresses {' '.join(n['host_addresses']) or '-'}")
        if n.get("foreign_devices"):
            lines.append(f"    devices ovnmeta did not make: {' '.join(n['foreign_devices'])}"
                         " (another agent's; replaced while the agent runs)")
        for key in ("error", "haproxy_error"):
            if n.get(key):
                lines.append(f"    {key}: {n[key]}")
    for p in status.get("problems", []):
        lines.append(f"  not served: {p['network']}: {p['reason']}")
    return "\n".join(lines)


def to_json(status: dict) -> str:
    return json.dumps(status, indent=1, sort_keys=True, default=str)
