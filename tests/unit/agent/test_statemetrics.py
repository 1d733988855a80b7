"""The agent's state as metrics (agent/statemetrics.py): the host cache's figures appear
when the cache is on, with the names the docs and exported_names() give."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ovnmeta.agent import statemetrics
from ovnmeta.proxy import metrics

BASE = {"networks_served": 1, "vms_served": 1, "vms_bound": 1, "networks_in_backoff": 0,
        "reconcile_passes": 1, "reconcile_failures": 0, "reconcile_seconds": 0.01,
        "sb_connected": True, "sb_updated": 1.0, "haproxy_reloads": 1,
        "haproxy_reload_failures": 0}
CACHE = {"cache_bytes": 4096, "cache_entries": 7, "cache_hits": 30, "cache_misses": 8,
         "cache_evictions": 2}


def samples(state: dict) -> dict[str, float]:
    reg = metrics.registry(statemetrics.StateCollector(lambda: state, lambda: {}))
    text = generate_latest(reg).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_the_cache_figures_are_exported_when_the_cache_is_on() -> None:
    got = samples({**BASE, **CACHE})
    assert got["ovnmeta_cache_bytes"] == 4096 and got["ovnmeta_cache_entries"] == 7
    assert got["ovnmeta_cache_hits_total"] == 30 and got["ovnmeta_cache_misses_total"] == 8
    assert got["ovnmeta_cache_evictions_total"] == 2
    assert {n for n in got if n.startswith("ovnmeta_")} <= statemetrics.exported_names()
    assert "ovnmeta_cache_stale_answers_total" in got


def test_without_the_cache_its_state_figures_are_absent() -> None:
    assert not any(n.startswith("ovnmeta_cache_")
                   and not n.startswith("ovnmeta_cache_stale_answers")
                   for n in samples(BASE))
