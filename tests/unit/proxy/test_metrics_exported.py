"""The metrics endpoint (proxy/metrics.py): what it exports from the agent's state and haproxy's
counters, with one process and with workers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ovnmeta.agent import statemetrics
from ovnmeta.proxy import metrics


STATS = """# pxname,svname,qcur,scur,req_tot,dreq,ereq,hrsp_4xx,hrsp_5xx,status
net-n1,FRONTEND,,,120,7,2,9,1,OPEN
ovnmeta_agent,BACKEND,,,0,0,0,0,0,UP
net-n2,FRONTEND,,,5,0,0,0,0,OPEN
"""


STATE = {"networks_served": 2, "vms_served": 3, "vms_bound": 4, "networks_in_backoff": 1,
         "reconcile_passes": 10, "reconcile_failures": 1, "reconcile_seconds": 0.02,
         "sb_connected": True, "sb_updated": 1.0, "haproxy_reloads": 3,
         "haproxy_reload_failures": 0}


def scrape(state=STATE, stats=STATS) -> dict[str, list]:
    reg = metrics.registry(statemetrics.StateCollector(
        lambda: state, lambda: metrics_parse(stats)))
    text = metrics.generate_latest(reg).decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def metrics_parse(stats: str):
    from ovnmeta.haproxy.runtime import parse_frontend_stats
    return parse_frontend_stats(stats)


def test_haproxy_frontends_are_read_by_network() -> None:
    assert metrics_parse(STATS) == {
        "n1": {"req_tot": 120, "dreq": 7, "ereq": 2, "hrsp_4xx": 9, "hrsp_5xx": 1},
        "n2": {"req_tot": 5, "dreq": 0, "ereq": 0, "hrsp_4xx": 0, "hrsp_5xx": 0}}
    assert metrics_parse("garbage") == {}


def test_state_and_requests_are_exposed() -> None:
    metrics.observe_request("n1", 200, 0.003)
    metrics.observe_request("n1", 404, 0.001)
    metrics.nova_error("10.0.0.1", "refused")
    got = scrape()
    assert any(labels == {"network": "n1", "status": "200"} and v >= 1
               for labels, v in got["ovnmeta_requests_total"])
    assert got["ovnmeta_vms_bound"] == [({}, 4.0)]
    assert got["ovnmeta_sb_connected"] == [({}, 1.0)]
    assert got["ovnmeta_reconcile_passes_total"] == [({}, 10.0)]
    assert ({"network": "n1"}, 7.0) in got["ovnmeta_haproxy_denied_requests_total"]
    assert got["ovnmeta_build_info"][0][0]["version"]
    assert any(labels == {"host": "10.0.0.1", "kind": "refused"}
               for labels, _ in got["ovnmeta_nova_errors_total"])
    # Everything exposed is in the list the dashboard test checks against.
    assert {n for n in got if n.startswith("ovnmeta_")} <= statemetrics.exported_names()


def test_headline_rates_come_from_the_counters() -> None:
    reg = metrics.registry(None)
    head = metrics.Headline(reg)
    head.sample()
    for _ in range(30):
        metrics.observe_request("n9", 200, 0.001)
    metrics.observe_request("n9", 502, 0.001)
    metrics.observe_nova("h", 0.004)
    head._samples[0] = (head._samples[0][0] - 2, *head._samples[0][1:])  # 2 s ago
    head.sample()
    s = head.summary()
    assert 14 < s["requests_per_second"] < 16.5 and s["errors_total"] >= 1
    assert s["nova_latency_ms"] == pytest.approx(4.0, abs=0.01)


def test_series_of_a_network_gone_are_dropped_and_rates_stay_sane() -> None:
    reg = metrics.registry(None)
    head = metrics.Headline(reg)
    metrics.observe_request("gone-net", 200, 0.001)
    metrics.observe_request("gone-net", 503, 0.001)
    metrics.index_miss("gone-net")
    metrics.observe_request("kept-net", 200, 0.001)
    metrics.observe_request("unknown", 404, 0.001)
    head.sample()
    assert metrics.retain_networks({"kept-net"}) >= 3
    nets = {s.labels.get("network") for f in reg.collect() for s in f.samples
            if s.name in ("ovnmeta_requests_total", "ovnmeta_index_misses_total")}
    assert "gone-net" not in nets and {"kept-net", "unknown"} <= nets
    # A series that went is not negative traffic, and it comes back if traffic does.
    head._samples[0] = (head._samples[0][0] - 2, *head._samples[0][1:])
    head.sample()
    s = head.summary()
    assert s["requests_per_second"] >= 0 and s["errors_per_second"] >= 0
    metrics.observe_request("gone-net", 200, 0.001)
    assert any(s.labels.get("network") == "gone-net" for f in reg.collect()
               for s in f.samples if s.name == "ovnmeta_requests_total")


def test_direct_path_is_exposed_when_on() -> None:
    assert "ovnmeta_direct_path_ready" not in scrape()
    state = {**STATE, "direct_ready": True, "direct_entries": 12, "direct_requests": 500,
             "direct_errors": {"refused": 2, "403 bad secret": 0}}
    got = scrape(state)
    assert got["ovnmeta_direct_path_ready"] == [({}, 1.0)]
    assert got["ovnmeta_direct_map_entries"] == [({}, 12.0)]
    assert got["ovnmeta_direct_requests_total"] == [({}, 500.0)]
    assert ({"kind": "refused"}, 2.0) in got["ovnmeta_direct_nova_errors_total"]
    assert {n for n in got if n.startswith("ovnmeta_")} <= statemetrics.exported_names()
    # `ovnmeta status` counts the direct path's requests with the agent's.
    headline = metrics.Headline(metrics.registry(None), direct=lambda: 500)
    headline.sample()
    assert headline.summary()["requests_total"] >= 500


MULTIPROCESS_SCRAPE = """
import sys
from prometheus_client import generate_latest
from ovnmeta.proxy import metrics
metrics.observe_request("gone-net", 200, 0.001)
metrics.index_miss("gone-net")
metrics.observe_request("kept-net", 200, 0.001)
reg = metrics.registry(None)
before = generate_latest(reg).decode()
metrics.retain_networks({"kept-net"})
after = generate_latest(reg).decode()
metrics.retain_networks({"kept-net", "gone-net"})
back = generate_latest(reg).decode()
print(before.count('network="gone-net"'), after.count('network="gone-net"'),
      after.count('network="kept-net"'), back.count('network="gone-net"'))
"""


def test_with_workers_a_scrape_drops_the_series_of_a_network_gone(tmp_path) -> None:
    """In multiprocess mode the values live in files every process writes; a network gone
    leaves the scrape all the same, and comes back with its count if it returns."""
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", MULTIPROCESS_SCRAPE], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert [int(n) for n in out] == [2, 0, 1, 2]
    assert list(tmp_path.glob("*.db"))   # the values did go through the files


def test_memory_endpoint_says_how_to_trace_and_lists_lines_when_tracing() -> None:
    import tracemalloc

    from ovnmeta.agent import control
    assert control.allocations() == {
        "tracing": False,
        "hint": "start ovnmeta-agent with PYTHONTRACEMALLOC=1 to trace allocations"}
    tracemalloc.start()
    try:
        kept = [bytearray(1000) for _ in range(1000)]
        out = control.allocations(top=5)
    finally:
        tracemalloc.stop()
    assert out["tracing"] and out["traced_kib"] >= 900 and 1 <= len(out["top"]) <= 5
    assert "test_metrics_exported.py" in out["top"][0]["where"] and kept
    assert " < " not in out["top"][0]["where"]

    def hold() -> list[bytearray]:
        return [bytearray(1000) for _ in range(1000)]

    tracemalloc.start(3)   # with frames, a line is a stack: who called what allocated
    try:
        kept = hold()
        out = control.allocations(top=5)
    finally:
        tracemalloc.stop()
    where = out["top"][0]["where"].split(" < ")
    assert len(where) >= 2 and kept
    assert where[0].endswith(f":{hold.__code__.co_firstlineno + 1}")
    assert "test_metrics_exported.py" in where[1]


def test_the_endpoint_serves_metrics_over_real_tcp_and_says_where_they_are() -> None:
    import asyncio
    import urllib.error
    import urllib.request

    from ovnmeta_testing.sandbox import free_port
    port = free_port()
    reg = metrics.registry(statemetrics.StateCollector(lambda: STATE, lambda: metrics_parse(STATS)))

    def fetch(path: str) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.headers["Content-Type"], r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()

    async def run() -> list[tuple[int, str, str]]:
        stop = asyncio.Event()
        served = asyncio.create_task(metrics.serve(reg, f"127.0.0.1:{port}", stop))
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        got = [await loop.run_in_executor(None, fetch, p) for p in ("/metrics", "/other")]
        with pytest.raises(OSError):    # a port in use: the agent logs it and goes on
            await metrics.serve(reg, f"127.0.0.1:{port}", stop)
        stop.set()
        await served
        return got
    (code, kind, body), (missing, _kind, why) = asyncio.run(run())
    assert code == 200 and kind == metrics.CONTENT_TYPE_LATEST
    assert "ovnmeta_networks_served 2.0" in body
    assert missing == 404 and "/metrics" in why


def test_the_headlines_own_registry_gives_the_same_figures() -> None:
    full, lean = metrics.Headline(metrics.registry(None)), \
        metrics.Headline(metrics.headline_registry())
    for _ in range(3):
        metrics.observe_request("n7", 200, 0.001)
    metrics.observe_request("n7", 503, 0.001)
    metrics.observe_nova("h", 0.002)
    metrics.index_miss("n7")
    full.sample()
    lean.sample()
    assert lean._samples[-1][1:] == full._samples[-1][1:]
    assert lean._samples[-1][1] >= 4 and lean._samples[-1][2] >= 1
    names = {f.name for f in metrics.headline_registry().collect()}
    assert "ovnmeta_index_misses" not in names and "process_cpu_seconds" not in names
