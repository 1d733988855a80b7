"""Prometheus metrics: what the data path counts, and what the agent's state says at scrape.

Request-path metrics are prometheus_client counters and histograms. With metadata_workers
> 1 every process writes them to PROMETHEUS_MULTIPROC_DIR (set by `launch` before this
module is imported) and the endpoint sums them across processes. State the main process
alone knows (networks served, reconcile passes, the SB connection, haproxy's own counters)
is read when Prometheus scrapes, by a collector over the agent's status.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection, Iterable
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               ProcessCollector, generate_latest, multiprocess)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ovnmeta.proxy.httpserver import Request, Response, Server, text

try:
    __version__ = version("ovnmeta")
except PackageNotFoundError:  # running from a source tree
    __version__ = "unknown"

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("ovnmeta_requests", "Metadata requests answered, by network and status.",
                   ["network", "status"])
REQUEST_SECONDS = Histogram("ovnmeta_request_duration_seconds",
                            "Time to answer a metadata request, nova included.",
                            buckets=LATENCY_BUCKETS)
NOVA_SECONDS = Histogram("ovnmeta_nova_request_duration_seconds",
                         "Time nova's metadata API took to answer, by host.", ["host"],
                         buckets=LATENCY_BUCKETS)
NOVA_ERRORS = Counter("ovnmeta_nova_errors",
                      "Failed requests to nova, by host and kind (refused, timeout, reset, "
                      "invalid, 5xx, 403 bad secret, ...).", ["host", "kind"])
INDEX_MISSES = Counter("ovnmeta_index_misses",
                       "Requests from an address no VM port here has (answered 404).",
                       ["network"])

# Read from the agent's status at scrape time (main process only).
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
}


_CHILDREN: dict[tuple, object] = {}  # labels() looks up under a lock: once per series


def _child(metric, *labels: str):
    key = (metric, *labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child


def observe_request(network: str, status: int, seconds: float) -> None:
    _child(REQUESTS, network or "none", str(status)).inc()
    REQUEST_SECONDS.observe(seconds)


def observe_nova(host: str, seconds: float) -> None:
    _child(NOVA_SECONDS, host).observe(seconds)


def nova_error(host: str, kind: str) -> None:
    NOVA_ERRORS.labels(host, kind).inc()


def index_miss(network: str) -> None:
    _child(INDEX_MISSES, network).inc()


PER_NETWORK = (REQUESTS, INDEX_MISSES)
KEPT_LABELS = frozenset({"unknown", "none"})
# The networks whose series a scrape shows; None until the first pass says which.
_retained: frozenset[str] | None = None


def retain_networks(networks: Collection[str]) -> int:
    """Drop the per-network series of networks no longer here, so a cloud that creates and
    deletes networks for months does not grow the agent's memory and every scrape with
    them. Returns how many series went from this process. With workers the values stay in
    the files, which prometheus_client cannot shrink: `RetainedNetworks` leaves them out
    of the scrape instead."""
    global _retained
    keep = KEPT_LABELS | set(networks)
    _retained = frozenset(keep)
    dropped = 0
    for key in list(_CHILDREN):
        metric, network, *rest = key
        if metric in PER_NETWORK and network not in keep:
            _CHILDREN.pop(key, None)
            try:
                metric.remove(network, *rest)
            except KeyError:
                pass
            dropped += 1
    return dropped


class RetainedNetworks(Collector):
    """Every process's request metrics (prometheus_client's multiprocess files) without the
    series of networks no longer here. The files cannot forget a series; the scrape reads
    them through the agent's view, as `retain_networks` was last told it."""

    _NAMES = frozenset(m._name for m in PER_NETWORK)

    def __init__(self, path: str) -> None:
        self._files = multiprocess.MultiProcessCollector(None, path)

    def collect(self) -> Iterable[Metric]:
        keep = _retained
        for family in self._files.collect():
            if keep is not None and family.name in self._NAMES:
                family.samples = [s for s in family.samples
                                  if s.labels.get("network") in keep]
            yield family


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


def _one(kind, name: str, value: float) -> Metric:
    family = kind(name, STATE_METRICS[name])
    family.add_metric([], value)
    return family


def registry(state: StateCollector | None) -> CollectorRegistry:
    """What the endpoint exposes: every process's request metrics, plus the state."""
    reg = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        reg.register(RetainedNetworks(os.environ[MULTIPROC_ENV]))
    else:
        for metric in (REQUESTS, REQUEST_SECONDS, NOVA_SECONDS, NOVA_ERRORS, INDEX_MISSES):
            reg.register(metric)
    ProcessCollector(registry=reg)   # the main process: memory, fds, CPU
    if state is not None:
        reg.register(state)
    return reg


def headline_registry() -> CollectorRegistry:
    """What Headline reads, and no more: collecting a labelled counter costs about 7 µs a
    series (3 ms a second for the request counts of 200 networks), so the per-network
    misses and the process's own figures stay out."""
    reg = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        reg.register(RetainedNetworks(os.environ[MULTIPROC_ENV]))
    else:
        for metric in (REQUESTS, REQUEST_SECONDS, NOVA_SECONDS):
            reg.register(metric)
    return reg


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(reg: CollectorRegistry, listen: str, stop: asyncio.Event) -> None:
    """GET /metrics on `listen` until stopped; scrapes run in a thread, off the data path's
    event loop (haproxy's stats sockets are read then)."""
    async def scrape(request: Request) -> Response:
        if request.path != "/metrics":
            return text(404, "Not found: metrics are at /metrics")
        body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, reg)
        return Response(200, [("Content-Type", CONTENT_TYPE_LATEST)], body)

    server = Server(scrape)
    await server.listen_tcp(*parse_listen(listen))
    try:
        await stop.wait()
    finally:
        await server.close(grace=2)


def exported_names() -> set[str]:
    """Every metric name a scrape can show, with the suffixes Prometheus adds."""
    names = set()
    for metric in (REQUESTS, NOVA_ERRORS, INDEX_MISSES):
        names |= {metric._name + "_total", metric._name + "_created"}
    for metric in (REQUEST_SECONDS, NOVA_SECONDS):
        names |= {metric._name + s for s in ("_bucket", "_sum", "_count", "_created")}
    counters = {"ovnmeta_reconcile_passes", "ovnmeta_reconcile_failures",
                "ovnmeta_haproxy_reloads", "ovnmeta_haproxy_reload_failures",
                "ovnmeta_direct_requests", "ovnmeta_direct_nova_errors"}
    names |= {n + "_total" if n in counters else n for n in STATE_METRICS}
    names |= {name + "_total" for name, _ in HAPROXY_FIELDS.values()}
    return names


class Headline:
    """The few numbers `ovnmeta status` shows, from the same counters, over a short window."""

    def __init__(self, reg: CollectorRegistry, window: int = 10,
                 direct: Callable[[], float] = lambda: 0.0) -> None:
        self._reg = reg
        self._direct = direct   # requests haproxy sent straight to nova
        self._samples: list[tuple[float, float, float, float, float]] = []
        self._window = window

    def _totals(self) -> tuple[float, float, float, float]:
        requests = errors = nova_sum = nova_count = 0.0
        for family in self._reg.collect():
            for sample in family.samples:
                # Requests from the unlabelled histogram: per-network series go with their
                # network (retain_networks), which must not read as negative traffic.
                if sample.name == "ovnmeta_request_duration_seconds_count":
                    requests += sample.value
                elif sample.name == "ovnmeta_requests_total":
                    if sample.labels.get("status", "").startswith("5"):
                        errors += sample.value
                elif sample.name == "ovnmeta_nova_request_duration_seconds_sum":
                    nova_sum += sample.value
                elif sample.name == "ovnmeta_nova_request_duration_seconds_count":
                    nova_count += sample.value
        return requests + self._direct(), errors, nova_sum, nova_count

    def sample(self) -> None:
        self._samples = [*self._samples[-self._window:], (time.monotonic(), *self._totals())]

    def summary(self) -> dict:
        if not self._samples:
            return {}
        (t0, r0, e0, s0, c0), (t1, r1, e1, s1, c1) = self._samples[0], self._samples[-1]
        span = t1 - t0
        return {"requests_total": int(r1), "errors_total": int(e1),
                "requests_per_second": round((r1 - r0) / span, 1) if span else 0.0,
                "errors_per_second": round(max(0.0, e1 - e0) / span, 2) if span else 0.0,
                "nova_latency_ms": round((s1 - s0) / (c1 - c0) * 1000, 2) if c1 > c0 else None,
                "window_seconds": round(span, 1)}
