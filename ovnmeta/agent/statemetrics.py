"""The agent's state as Prometheus metrics, read when Prometheus scrapes: networks and VMs
served, reconcile passes, the SB connection, haproxy's reloads, the direct path, and
haproxy's own counters per network. Only the main process knows these; the data path's
metrics are proxy/metrics.py's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ovnmeta import __version__
from ovnmeta.proxy import metrics

STATE_METRICS = {
    "ovnmeta_networks_served": "Networks whose namespace and haproxy frontend are ready.",
    "ovnmeta_vms_served": "VM ports bound here on the networks served.",
    "ovnmeta_vms_bound": "VM ports the SB binds to this chassis, served or not.",
    "ovnmeta_networks_in_backoff": "Networks whose last change failed and waits to be retried.",
    "ovnmeta_reconcile_passes": "Reconcile passes since the agent started.",
    "ovnmeta_reconcile_failures": "Network changes that failed (each is retried).",
    "ovnmeta_reconcile_duration_seconds": "Duration of the last reconcile pass.",
    "ovnmeta_sb_connected": "1 while the Southbound DB connection is up.",
    "ovnmeta_chassis_registered": "1 while the SB has this host's Chassis row (0: "
                                  "ovn-controller not registered or evicted; -1: not known "
                                  "yet).",
    "ovnmeta_sb_last_update_age_seconds": "Seconds since the SB view last changed or was "
                                          "confirmed current by a reconnect.",
    "ovnmeta_haproxy_reloads": "haproxy (re)loads and starts the agent asked for.",
    "ovnmeta_haproxy_reload_failures": "haproxy configs that failed to check or load.",
    "ovnmeta_build_info": "The running ovnmeta's version.",
    "ovnmeta_direct_path_ready": "1 while haproxy's maps match the agent's view (haproxy "
                                 "then sends known VMs' GETs straight to nova).",
    "ovnmeta_direct_map_entries": "Client addresses in haproxy's maps.",
    "ovnmeta_direct_requests": "Requests haproxy sent straight to nova (the direct path).",
    "ovnmeta_direct_nova_errors": "Direct-path requests nova refused or failed, by kind.",
    "ovnmeta_cache_bytes": "Bytes of nova's answers kept on this host (the agent's process).",
    "ovnmeta_cache_entries": "nova's answers kept on this host.",
    "ovnmeta_cache_hits": "Requests answered from the host's cache without asking nova.",
    "ovnmeta_cache_misses": "Requests the cache could not answer, sent to nova.",
    "ovnmeta_cache_evictions": "Answers dropped to keep the cache within its bytes.",
}
# haproxy's per-frontend counters ("show stat" fields), re-exported by network.
HAPROXY_FIELDS = {
    "req_tot": ("ovnmeta_haproxy_requests", "HTTP requests haproxy received."),
    "dreq": ("ovnmeta_haproxy_denied_requests",
             "Requests haproxy denied: 429 from rate limiting."),
    "ereq": ("ovnmeta_haproxy_request_errors",
             "Requests haproxy could not parse or that timed out."),
    "hrsp_4xx": ("ovnmeta_haproxy_responses_4xx", "4xx answers haproxy sent."),
    "hrsp_5xx": ("ovnmeta_haproxy_responses_5xx", "5xx answers haproxy sent."),
    "cache_lookups": ("ovnmeta_haproxy_cache_lookups",
                      "GETs haproxy looked up in its cache of nova's answers (the direct "
                      "path with [metadata_cache] on)."),
    "cache_hits": ("ovnmeta_haproxy_cache_hits",
                   "GETs haproxy answered from its cache, asking neither the agent nor nova."),
}



class StateCollector(Collector):
    """The agent's state as metrics, from callables the agent hands over."""

    def __init__(self, status: Callable[[], dict],
                 haproxy_stats: Callable[[], dict[str, dict[str, int]]]) -> None:
        self._status = status
        self._haproxy_stats = haproxy_stats

    def collect(self) -> Iterable[Metric]:
        s = self._status()
        gauge = lambda name, value: _one(GaugeMetricFamily, name, value)  # noqa: E731
        counter = lambda name, value: _one(CounterMetricFamily, name, value)  # noqa: E731
        yield gauge("ovnmeta_networks_served", s["networks_served"])
        yield gauge("ovnmeta_vms_served", s["vms_served"])
        yield gauge("ovnmeta_vms_bound", s["vms_bound"])
        yield gauge("ovnmeta_networks_in_backoff", s["networks_in_backoff"])
        yield counter("ovnmeta_reconcile_passes", s["reconcile_passes"])
        yield counter("ovnmeta_reconcile_failures", s["reconcile_failures"])
        yield gauge("ovnmeta_reconcile_duration_seconds", s["reconcile_seconds"])
        yield gauge("ovnmeta_sb_connected", 1 if s["sb_connected"] else 0)
        registered = s.get("chassis_registered")
        yield gauge("ovnmeta_chassis_registered", -1 if registered is None else int(registered))
        yield gauge("ovnmeta_sb_last_update_age_seconds",
                    max(0.0, time.time() - s["sb_updated"]) if s["sb_updated"] else -1)
        yield counter("ovnmeta_haproxy_reloads", s["haproxy_reloads"])
        yield counter("ovnmeta_haproxy_reload_failures", s["haproxy_reload_failures"])
        if "direct_ready" in s:
            yield gauge("ovnmeta_direct_path_ready", 1 if s["direct_ready"] else 0)
            yield gauge("ovnmeta_direct_map_entries", s["direct_entries"])
            yield counter("ovnmeta_direct_requests", s["direct_requests"])
            errors = CounterMetricFamily("ovnmeta_direct_nova_errors",
                                         STATE_METRICS["ovnmeta_direct_nova_errors"],
                                         labels=["kind"])
            for kind, value in sorted(s["direct_errors"].items()):
                errors.add_metric([kind], value)
            yield errors
        if "cache_bytes" in s:
            yield gauge("ovnmeta_cache_bytes", s["cache_bytes"])
            yield gauge("ovnmeta_cache_entries", s["cache_entries"])
            yield counter("ovnmeta_cache_hits", s["cache_hits"])
            yield counter("ovnmeta_cache_misses", s["cache_misses"])
            yield counter("ovnmeta_cache_evictions", s["cache_evictions"])
        info = GaugeMetricFamily("ovnmeta_build_info", STATE_METRICS["ovnmeta_build_info"],
                                 labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        stats = self._haproxy_stats()
        for field, (name, doc) in HAPROXY_FIELDS.items():
            family = CounterMetricFamily(name, doc, labels=["network"])
            for network, values in sorted(stats.items()):
                family.add_metric([network], values.get(field, 0))
            yield family


def _one(kind: type, name: str, value: float) -> Metric:
    family = kind(name, STATE_METRICS[name])
    family.add_metric([], value)
    return family


def exported_names() -> set[str]:
    """Every metric name a scrape can show, with the suffixes Prometheus adds."""
    counters = {"ovnmeta_reconcile_passes", "ovnmeta_reconcile_failures",
                "ovnmeta_haproxy_reloads", "ovnmeta_haproxy_reload_failures",
                "ovnmeta_direct_requests", "ovnmeta_direct_nova_errors",
                "ovnmeta_cache_hits", "ovnmeta_cache_misses", "ovnmeta_cache_evictions"}
    names = metrics.request_metric_names()
    names |= {n + "_total" if n in counters else n for n in STATE_METRICS}
    names |= {name + "_total" for name, _ in HAPROXY_FIELDS.values()}
    return names
