"""The benchmark's phases over one cloud (an ovnmeta_testing.sbcloud.SbCloud): K agents of
a kind loaded, churned, asked for liveness and reconnected (run_kind); the cost of a
change by how many agents host it (hosting_series); the servers with no agent (alone,
restart_alone). `args` is the CLI's namespace."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

from ovnmeta_testing.sbscale.driver import Meter, Workers, Writer


def specs_for(cloud, k: int, per_process: int) -> list[list[dict]]:
    names = cloud.names
    remotes = cloud.agent_remotes()
    plugged: dict[int, list[str]] = {}
    for i, ch in enumerate(names["port_chassis"][: k * 20]):
        plugged.setdefault(ch, []).append(names["ports"][i])
    agents = [{"chassis": names["chassis"][c], "remote": remotes[c % len(remotes)],
               "plugged": plugged.get(c, [])} for c in range(k)]
    return [agents[i:i + per_process] for i in range(0, k, per_process)]


def per_process(kind: str, args) -> int:
    return args.neutron_per_process if kind == "neutron" else args.per_process


def run_kind(cloud, kind: str, python: str, k: int, args, work: Path) -> dict:
    rng = random.Random(11)
    result: dict = {"kind": kind, "agents": k}
    workers = Workers(kind, python, specs_for(cloud, k, per_process(kind, args)), work,
                      c_json=not args.python_json)
    try:
        meter = Meter(cloud, workers)
        t0 = time.time()
        workers.send("go")
        loaded = workers.collect("loaded", timeout=1800)
        load = meter.done()
        load["all_loaded_s"] = round(max(m["last"] for m in loaded) - t0, 2)
        load["per_agent_rss_kib"] = round(sum(m["per_agent_rss_kib"] for m in loaded)
                                          / len(loaded))
        load["per_agent_pss_kib"] = round(sum(m["per_agent_pss_kib"] for m in loaded)
                                          / len(loaded))
        load["rows_held"] = loaded[0]["rows"]
        load["processes"] = len(loaded)
        load["start_retries"] = sum(m.get("retries", 0) for m in loaded)
        result["json_parser"] = workers.ready[0]["json_parser"]
        result["load"] = load
        time.sleep(2)
        writer = Writer(cloud)
        result["churn"] = churn_phase(cloud, writer, args,
                                      list(range(len(cloud.names["ports"]))), True, workers, rng)
        # Churn elsewhere: flaps of ports in networks none of the K agents hosts.
        result["churn_elsewhere"] = churn_phase(cloud, writer, args,
                                                ports_by_hosting(cloud, k).get(0, []), False,
                                                workers, random.Random(13))
        chassis = [a["chassis"] for spec in specs_for(cloud, k, 1) for a in spec]
        rounds = []
        for _ in range(2):
            time.sleep(1)
            meter = Meter(cloud, workers)
            rnd = writer.liveness_round(chassis)
            rnd.update(meter.done())
            rounds.append(rnd)
        result["liveness"] = rounds
        writer.rpc.close()
        time.sleep(1)
        targets = cloud.relay_names[:cloud.active_relays] or ["sb"]
        workers.send("reconnect")
        meter = Meter(cloud, workers)
        t0 = time.time()
        cloud.restart(targets)
        back = workers.collect("reconnected", timeout=600)
        rec = meter.done(restarted=tuple(targets))
        rec["restarted"] = targets
        rec["all_back_s"] = round(max(m["last"] or 0 for m in back) - t0, 2) \
            if all(m["back"] == m["of"] for m in back) else None
        rec["back"] = sum(m["back"] for m in back)
        result["reconnect"] = rec
    finally:
        workers.close()
    return result


def restart_alone(cloud, ks: list[int]) -> list[dict]:
    """The reconnect phase's restart with no agent connected: what the servers spend on
    themselves (a standalone SB reloads its file, a relay fetches the whole SB from the
    cluster), to be told apart from what the agents' reconnection costs."""
    out = []
    for relays in sorted({math.ceil(k / 50) for k in ks}) if cloud.relays else [0]:
        if cloud.relays:
            cloud.use_relays(relays)
        targets = cloud.relay_names[:cloud.active_relays] or ["sb"]
        time.sleep(1)
        meter = Meter(cloud)
        cloud.restart(targets)
        # Ready again: the restarted servers answer a transaction.
        from ovnmeta_testing.sbcloud import Rpc

        def answers(name: str) -> bool:
            try:
                rpc = Rpc(f"unix:{cloud.root}/{name}.sock", timeout=5)
                rpc.transact("OVN_Southbound", {"op": "select", "table": "SB_Global",
                                                "where": [], "columns": ["nb_cfg"]})
                rpc.close()
                return True
            except Exception:
                return False
        from ovnmeta_testing.sandbox import wait_until
        wait_until(lambda: all(answers(n) for n in targets), timeout=300, interval=0.1,
                   what="restarted servers answering")
        time.sleep(3)   # a relay keeps syncing after it first answers
        m = meter.done(restarted=tuple(targets))
        out.append({"layout": "relay" if cloud.relays else "direct", "restarted": targets,
                    **{k: m[k] for k in ("sb_cpu_s", "leader_cpu_s", "relays_cpu_s")}})
    return out


def ports_by_hosting(cloud, k: int) -> dict[int, list[int]]:
    """Ports on chassis no agent plays, by how many of the K agents host their network
    (6 and more counted as 6)."""
    names = cloud.names
    hosts: dict[int, set[int]] = {}
    for i, ch in enumerate(names["port_chassis"]):
        if ch < k:
            hosts.setdefault(names["port_network"][i], set()).add(ch)
    by_h: dict[int, list[int]] = {}
    for i, ch in enumerate(names["port_chassis"]):
        if ch >= k:
            h = len(hosts.get(names["port_network"][i], ()))
            by_h.setdefault(min(h, 6), []).append(i)
    return by_h


def churn_phase(cloud, writer: Writer, args, ports: list[int], anywhere: bool,
                workers: Workers | None, rng: random.Random) -> dict:
    """`--churn-rate` changes a second for `--churn-seconds` over `ports`, metered."""
    meter = Meter(cloud, workers)
    n = writer.churn(args.churn_rate, args.churn_seconds, ports, rng, anywhere=anywhere)
    time.sleep(1)
    m = meter.done()
    m["changes"] = n
    for key in ("sb_cpu_s", "leader_cpu_s", "relays_cpu_s", "agents_cpu_s"):
        if key in m:
            m[key.replace("_s", "_per_s")] = round(m[key] / m["seconds"], 3)
    m["bytes_per_s"] = round(m["bytes_to_agents"] / m["seconds"])
    return m


def alone(cloud, k: int, args) -> dict:
    """Both churns with no agent connected: the servers' own cost of the writes."""
    writer = Writer(cloud)
    try:
        return {"agents": k,
                "churn": churn_phase(cloud, writer, args,
                                     list(range(len(cloud.names["ports"]))), True, None,
                                     random.Random(11)),
                "churn_elsewhere": churn_phase(cloud, writer, args,
                                               ports_by_hosting(cloud, k).get(0, []), False,
                                               None, random.Random(13))}
    finally:
        writer.rpc.close()


def hosting_series(cloud, k: int, args, python: str, work: Path) -> list[dict]:
    """Cost of one binding flap by how many of the K agents host the port's network: ports on
    chassis no agent plays, flapped (unbind, bind back) 2 × `--series-changes` times."""
    by_h = ports_by_hosting(cloud, k)
    out = []
    workers = Workers("ovnmeta", python, specs_for(cloud, k, args.per_process), work,
                      c_json=not args.python_json)
    try:
        workers.send("go")
        workers.collect("loaded", timeout=1800)
        writer = Writer(cloud)
        rng = random.Random(5)
        for h in sorted(by_h):
            time.sleep(1)
            meter = Meter(cloud, workers)
            n = writer.churn(args.churn_rate, 2 * args.series_changes / args.churn_rate,
                             by_h[h], rng, anywhere=False)
            time.sleep(1)
            m = meter.done()
            out.append({"hosting_agents": h if h < 6 else "6+", "changes": n,
                        "bytes_per_change": round(m["bytes_to_agents"] / n),
                        "sb_cpu_ms_per_change": round(1000 * m["sb_cpu_s"] / n, 2),
                        "agents_cpu_ms_per_change": round(1000 * m["agents_cpu_s"] / n, 2)})
        writer.rpc.close()
    finally:
        workers.close()
    return out


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def layouts(args, kinds: list[str], ks: list[int], pythons: dict[str, str],
            work: Path) -> dict:
    """Every layout's cloud built once; each K's runs of each kind on it, and the hosting
    series on the direct one."""
    from ovnmeta_testing.sbcloud import Layout, SbCloud
    results: dict = {"cloud": {"chassis": args.chassis, "networks": args.networks,
                               "ports": args.ports},
                     "runs": [], "series": [], "memory": [], "restart_alone": [], "alone": []}
    for layout in [x for x in args.layouts.split(",") if x]:
        # One cloud per layout; with relays, ceil(K / 50) of them run for each K.
        cloud = SbCloud(Path(args.root), relays=math.ceil(max(ks) / 50) if layout == "relay"
                        else 0)
        try:
            _say(f"== {layout}: building the cloud")
            cloud.build(Layout(args.chassis, args.networks, args.ports, max(ks)),
                        on_step=lambda s: _say("   " + s))
            results["restart_alone"] += restart_alone(cloud, ks)
            for k in ks:
                relays = cloud.use_relays(math.ceil(k / 50)) if layout == "relay" else 0
                if args.alone:
                    results["alone"].append({"layout": layout, **alone(cloud, k, args)})
                for kind in kinds:
                    if kind == "neutron" and k > args.neutron_max_agents:
                        continue
                    _say(f"   {kind}: {k} agents")
                    r = run_kind(cloud, kind, pythons[kind], k, args, work)
                    r["layout"], r["relays"] = layout, relays
                    results["runs"].append(r)
                    _say(json.dumps(r))
            if layout == "direct" and "ovnmeta" in kinds:
                results["series"] = hosting_series(cloud, max(ks), args, pythons["ovnmeta"],
                                                   work)
        finally:
            cloud.down()
    return results


def memory(args, kinds: list[str], pythons: dict[str, str], work: Path) -> list[dict]:
    """One agent of each kind, at each cloud size P of --memory-ports (N = P / 10)."""
    from ovnmeta_testing.sbcloud import Layout, SbCloud
    rows = []
    for p in [int(x) for x in args.memory_ports.split(",") if x]:
        cloud = SbCloud(Path(args.root))
        try:
            _say(f"== memory at P = {p}")
            cloud.build(Layout(args.chassis, max(1, p // 10), p, 1),
                        on_step=lambda s: _say("   " + s))
            for kind in kinds:
                workers = Workers(kind, pythons[kind], specs_for(cloud, 1, 1), work,
                                  c_json=not args.python_json)
                try:
                    workers.send("go")
                    m = workers.collect("loaded", timeout=1800)[0]
                finally:
                    workers.close()
                rows.append({"ports": p, "kind": kind, "rows": m["rows"],
                             "rss_mib": round(m["per_agent_rss_kib"] / 1024, 2),
                             "pss_mib": round(m["per_agent_pss_kib"] / 1024, 2)})
        finally:
            cloud.down()
    return rows
