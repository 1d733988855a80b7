"""The benchmark's results as a table and a projection to 1,000 and 5,000 chassis: pure,
from the JSON the benchmark prints (`--report FILE` reprints a saved one)."""

from __future__ import annotations

import math


METRICS = (("load", "sb_cpu_s"), ("load", "bytes_to_agents"), ("churn", "sb_cpu_per_s"),
           ("churn", "bytes_per_s"), ("reconnect", "sb_cpu_s"))


def _fit(points: list[tuple[float, float]]) -> dict:
    """Least squares y = a + b·K, and the exponent of y ~ K^e (log-log slope): e ≈ 1 is
    linear, e < 1 grows slower, e > 1 faster."""
    n = len(points)
    mx = sum(k for k, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((k - mx) ** 2 for k, _ in points)
    b = sum((k - mx) * (y - my) for k, y in points) / sxx if sxx else 0.0
    a = my - b * mx
    logs = [(math.log(k), math.log(y)) for k, y in points if y > 0]
    e = None
    if len(logs) >= 2:
        lx = sum(x for x, _ in logs) / len(logs)
        ly = sum(y for _, y in logs) / len(logs)
        den = sum((x - lx) ** 2 for x, _ in logs)
        e = sum((x - lx) * (y - ly) for x, y in logs) / den if den else None
    return {"a": a, "b": b, "exponent": round(e, 2) if e is not None else None}


def projection(results: dict, to: tuple[int, ...] = (1000, 5000)) -> list[dict]:
    """Each SB cost fitted over the measured K and projected to `to` agents. Churn is the
    cloud's own rate (`--churn-rate`); how it scales with the cloud is docs/benchmarks.md's part."""
    out = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results.get("runs", []):
        groups.setdefault((r["layout"], r["kind"]), []).append(r)
    for (layout, kind), runs in groups.items():
        if len({r["agents"] for r in runs}) < 2:
            continue
        for phase, metric in METRICS:
            key = metric if layout == "direct" or "bytes" in metric else \
                metric.replace("sb_", "leader_")
            pts = [(r["agents"], float(r[phase][key])) for r in runs]
            fit = _fit(pts)
            row = {"layout": layout, "kind": kind, "metric": f"{phase}.{key}",
                   "per_agent": round(fit["b"], 6), "exponent": fit["exponent"],
                   "measured": {k: y for k, y in pts}}
            for k in to:
                row[f"at_{k}"] = round(fit["a"] + fit["b"] * k, 2)
            out.append(row)
    return out


def _section(rows: list[dict] | None, columns: dict[str, str]) -> list[str]:
    """A markdown table of `rows`, headed by the keys of `columns`, showing their values."""
    if not rows:
        return []
    out = ["", " | ".join(columns), " | ".join("---" for _ in columns)]
    out += [" | ".join(str(r[k]) for k in columns.values()) for r in rows]
    return out


def table(results: dict) -> str:
    lines = []
    head = ("layout", "kind", "K", "load s", "load SB cpu", "load MB", "agent MiB",
            "churn SB cpu/s", "churn kB/s", "agents cpu/s", "elsewhere SB cpu/s",
            "elsewhere kB/s", "live s (1st/2nd)", "live SB cpu",
            "reconn s", "reconn SB cpu", "busy")
    lines.append(" | ".join(head))
    lines.append(" | ".join("---" for _ in head))
    for r in results.get("runs", []):
        ld, ch, lv, rc = r["load"], r["churn"], r["liveness"], r["reconnect"]
        relay = r["layout"] == "relay"

        def cpu(m: dict) -> str:
            if relay:
                return f"{m['leader_cpu_s']} L + {m['relays_cpu_s']} R"
            return str(m["sb_cpu_s"])
        def per_s(m: dict) -> str:
            if not m:
                return "—"
            if relay:
                return f"{m['leader_cpu_per_s']} L + {m['relays_cpu_per_s']} R"
            return str(m["sb_cpu_per_s"])
        el = r.get("churn_elsewhere", {})
        lines.append(" | ".join(str(x) for x in (
            r["layout"], r["kind"], r["agents"], ld["all_loaded_s"], cpu(ld),
            round(ld["bytes_to_agents"] / 1e6, 1), round(ld["per_agent_pss_kib"] / 1024, 1),
            per_s(ch), round(ch["bytes_per_s"] / 1e3, 1), ch["agents_cpu_per_s"], per_s(el),
            round(el["bytes_per_s"] / 1e3, 1) if el else "—",
            f"{lv[0]['seconds']}/{lv[1]['seconds']}", cpu(lv[0]),
            rc["all_back_s"], cpu(rc), f"{ld['machine_busy']}/{ch['machine_busy']}")))
    if results.get("alone") or results.get("restart_alone"):
        lines.append("")
        lines.append("no agents: layout | K's churn SB cpu/s | elsewhere SB cpu/s | restart SB cpu")
        lines.append("--- | --- | --- | ---")
        for a in results.get("alone", []):
            lines.append(f"{a['layout']} | {a['agents']}: {a['churn']['sb_cpu_per_s']} "
                         f"(leader {a['churn']['leader_cpu_per_s']}) | "
                         f"{a['churn_elsewhere']['sb_cpu_per_s']} | —")
        for a in results.get("restart_alone", []):
            lines.append(f"{a['layout']} | — | — | {'+'.join(a['restarted'])}: "
                         f"{a['sb_cpu_s']} SB, {a['relays_cpu_s']} relays")
    lines += _section(results.get("series"), {
        "hosting agents": "hosting_agents", "changes": "changes",
        "bytes/change": "bytes_per_change", "SB cpu ms/change": "sb_cpu_ms_per_change",
        "agents cpu ms/change": "agents_cpu_ms_per_change"})
    lines += _section(results.get("projection"), {
        "layout": "layout", "kind": "kind", "metric": "metric", "per agent": "per_agent",
        "exponent": "exponent", "at 1,000": "at_1000", "at 5,000": "at_5000"})
    if results.get("memory"):
        lines.append("")
        lines.append("P | kind | one agent RSS MiB | PSS MiB | rows held")
        lines.append("--- | --- | --- | --- | ---")
        for m in results["memory"]:
            lines.append(f"{m['ports']} | {m['kind']} | {m['rss_mib']} | {m['pss_mib']} | "
                         f"{sum(m['rows'].values())}")
    return "\n".join(lines)
