"""Prometheus metrics of the data path, and the endpoint that serves them.

Request-path metrics are prometheus_client counters and histograms. With metadata_workers
> 1 every process writes them to PROMETHEUS_MULTIPROC_DIR (set by `launch` before this
module is imported) and the endpoint sums them across processes. The state only the main
process knows is the agent's (agent/statemetrics.py), added to the registry here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection, Iterable

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               ProcessCollector, generate_latest, multiprocess)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ovnmeta.proxy.httpserver import Request, Response, Server, text

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

_CHILDREN: dict[tuple, object] = {}  # labels() looks up under a lock: once per series


def _child(metric, *labels: str):
    key = (metric, *labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child


CACHE_STALE = Counter("ovnmeta_cache_stale_answers",
                      "Answers the host's cache gave because nova failed (5xx, refused, "
                      "timed out).")


def cache_stale() -> None:
    CACHE_STALE.inc()


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


def registry(state: Collector | None) -> CollectorRegistry:
    """What the endpoint exposes: every process's request metrics, plus the agent's state
    (agent/statemetrics.py)."""
    reg = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        reg.register(RetainedNetworks(os.environ[MULTIPROC_ENV]))
    else:
        for metric in (REQUESTS, REQUEST_SECONDS, NOVA_SECONDS, NOVA_ERRORS, INDEX_MISSES,
                       CACHE_STALE):
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


def request_metric_names() -> set[str]:
    """The data path's metric names as a scrape shows them, with Prometheus' suffixes."""
    names = set()
    for metric in (REQUESTS, NOVA_ERRORS, INDEX_MISSES, CACHE_STALE):
        names |= {metric._name + "_total", metric._name + "_created"}
    for metric in (REQUEST_SECONDS, NOVA_SECONDS):
        names |= {metric._name + s for s in ("_bucket", "_sum", "_count", "_created")}
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
