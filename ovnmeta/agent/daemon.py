"""`ovnmeta-agent`: wires the SB and OVS views, the reconciler and haproxy together.

Stopping the agent leaves namespaces and haproxy in place, so a restart drops no request;
the next agent adopts them on its first pass.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from oslo_config import cfg

from ovnmeta.agent import (control, handoff, listener, readiness, sdnotify, statemetrics,
                           workerfeed)
from ovnmeta.host import heap
from ovnmeta.haproxy.maps import MapSync
from ovnmeta.haproxy.novawatch import NovaWatch
from ovnmeta.ovsdb import sbview
from ovnmeta.proxy import eventloop, handler, metrics
from ovnmeta.haproxy.manager import HaproxyManager
from ovnmeta.haproxy.runtime import stats_command
from ovnmeta.haproxy.settings import (CLIENT_PEM, READY_SOCKET, Cache, Direct, RateLimit,
                                      Settings, Timeouts, direct_tls_refusal)
from ovnmeta.core.model import NovaEndpoint
from ovnmeta.core.responsecache import ResponseCache
from ovnmeta.proxy.nova import NovaClient, TlsSettingsError, ssl_context
from ovnmeta.ovsdb.ovs import ChassisConfig, LocalOvs
from ovnmeta.proxy.peers import PeerPolicy
from ovnmeta.core.desired import VM_PORT_TYPES
from ovnmeta.agent.reconcile import Reconciler
from ovnmeta.agent.workers import WorkerPool, Zygote

LOG = logging.getLogger("ovnmeta.agent.daemon")
RETRY_REMINDER = 60.0  # seconds between repeats of an unchanged startup failure
KEEPER_CHECK = 5  # seconds between checks that the socket keeper is alive
HEADLINE_EVERY = 5   # seconds between samples of the counters `ovnmeta status` shows...
HEADLINE_WINDOW = 2  # ...and its rates span this many intervals (10 s)
FEED_INTERVAL = 0.02  # seconds between syncs of haproxy's maps while they are not current
MAPS_RECHECK = 1.0    # seconds between checks that haproxy's worker still holds our maps
T = TypeVar("T")


def retry(what: str, fn: Callable[[], T], stop: threading.Event, delay: float = 2.0,
          tick: Callable[[], None] = lambda: None) -> T:
    """Call fn until it works: a daemon waits for its dependencies rather than dying.
    `tick` runs before each try (the systemd watchdog: waiting is not hanging)."""
    last, logged_at = "", 0.0
    while True:
        tick()
        try:
            return fn()
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        # Logged outside the except block: oslo.log would append the exception again.
        # The same failure again is not news: once, then a reminder every minute.
        now = time.monotonic()
        if error != last or now - logged_at >= RETRY_REMINDER:
            LOG.error("%s failed: %s; retrying every %.0fs", what, error, delay)
            last, logged_at = error, now
        else:
            LOG.debug("%s failed again: %s", what, error)
        if stop.wait(delay):
            raise SystemExit(0)


def rate_limit(conf: cfg.ConfigOpts) -> RateLimit | None:
    rl = conf.metadata_rate_limiting
    if not rl.rate_limit_enabled:
        return None
    return RateLimit(ip_versions=tuple(sorted({int(v) for v in rl.ip_versions})),
                     base_window_duration=rl.base_window_duration,
                     base_query_rate_limit=rl.base_query_rate_limit,
                     burst_window_duration=rl.burst_window_duration,
                     burst_query_rate_limit=rl.burst_query_rate_limit)


def direct(conf: cfg.ConfigOpts, ready_socket: str) -> Direct | None:
    """The direct path's settings, or None (and why, once) when it cannot be used."""
    if not conf.haproxy.direct_path:
        return None
    nova = NovaEndpoint.from_conf(conf)
    refusal = direct_tls_refusal(nova)
    try:   # the files haproxy would load: a broken one must not keep haproxy from loading
        ssl_context(nova)
    except TlsSettingsError as exc:
        refusal = str(exc)
    if refusal:   # the agent's nova client names a broken file as an error itself
        LOG.warning("[haproxy] direct_path is off: %s; every request goes through the agent",
                    refusal)
        return None
    return Direct.for_nova(ready_socket, nova, str(Path(ready_socket).parent / CLIENT_PEM),
                           conf.haproxy.nova_maxconn, conf.haproxy.nova_vm_maxconn,
                           cache=Cache.from_conf(conf.metadata_cache))


def config_args(conf: cfg.ConfigOpts) -> list[str]:
    """The command-line config options this process was started with, for its workers."""
    args = [a for f in conf.config_file for a in ("--config-file", f)]
    return args + [a for d in (conf.config_dir and [conf.config_dir] or [])
                   for a in ("--config-dir", d)]


class Agent:
    def __init__(self, conf: cfg.ConfigOpts, sock: socket.socket) -> None:
        self.conf = conf
        self.sock = sock      # the metadata socket, already listening (ovnmeta.agent.listener)
        self.state_dir = Path(conf.state_path)
        self.stop = threading.Event()
        self.reconciler: Reconciler | None = None
        self.sb: sbview.SbView | None = None
        self.ovs: LocalOvs | None = None
        self.chassis: ChassisConfig | None = None
        self.workers: WorkerPool | None = None
        self.zygote: Zygote | None = None   # forks the workers; made by launch, before threads
        self.maps: MapSync | None = None   # the direct path's maps in haproxy
        self.nova_watch: NovaWatch | None = None
        self.response_cache: ResponseCache | None = None   # nova's answers ([metadata_cache])
        self.headline = metrics.Headline(
            metrics.headline_registry(), window=HEADLINE_WINDOW,
            direct=lambda: self.nova_watch.requests if self.nova_watch else 0)
        self.notifier = sdnotify.Notifier.from_environment()
        self.threads: list[threading.Thread] = []
        self._follower_wake: Callable[[], None] | None = None

    def _mark(self, networks: set[str] | None) -> None:
        if self.reconciler:
            self.reconciler.mark(networks)
        self._poke_follower()

    def _poke_follower(self) -> None:
        """Wake the view follower (from any thread): the view changed, or a pass ended."""
        poke = self._follower_wake
        if poke is not None:
            try:
                poke()
            except RuntimeError:   # the event loop has closed: the agent is stopping
                pass

    def _ovs_changed(self) -> None:
        """An interface came or went on this host (OVS IDL thread): the SB view follows the
        plugged ports, so a new VM's network is provisioned before its port is bound."""
        if self.sb:
            self.sb.watch_plugged(self.ovs.iface_ids())
        self._mark(set())

    def start(self) -> None:
        conf = self.conf
        self.ovs = LocalOvs(conf.ovs.ovsdb_connection, conf.ovs.ovsdb_timeout,
                            on_change=self._ovs_changed)
        retry(f"connecting to the local OVS DB at {conf.ovs.ovsdb_connection}",
              self.ovs.start, self.stop, tick=self.notifier.pet)
        chassis = retry("reading the chassis config from OVS", self.ovs.chassis_config,
                        self.stop, tick=self.notifier.pet)
        LOG.info("chassis %s, bridge %s (datapath %s)", chassis.system_id, chassis.bridge,
                 chassis.datapath_type or "system")
        self.sb = sbview.SbView.from_conf(conf, chassis.system_id, self._mark,
                                          bridge=chassis.bridge)
        self.sb.watch_plugged(self.ovs.iface_ids())
        haproxy_dir = self.state_dir / "haproxy"
        manager = HaproxyManager(
            conf.haproxy.mode, haproxy_dir,
            Settings(socket=conf.metadata_proxy_socket, maxconn=conf.haproxy.maxconn,
                     global_maxconn=conf.haproxy.global_maxconn, threads=conf.haproxy.threads,
                     timeouts=Timeouts.from_conf(conf.metadata_haproxy),
                     user=conf.metadata_proxy_user, group=conf.metadata_proxy_group,
                     log_target=conf.haproxy.log_target, rate_limit=rate_limit(conf),
                     direct=direct(conf, str(haproxy_dir / READY_SOCKET))),
            binary=conf.haproxy.haproxy_path, template_dir=conf.haproxy.templates_dir,
            bridges=conf.haproxy.bridges)
        self.chassis = chassis
        if manager.settings.direct:
            self.maps = MapSync(manager.maps_dir, manager.stats_socket(),
                                conf.metadata_proxy_shared_secret, stats_command)
            self.nova_watch = NovaWatch(manager.stats_socket(), stats_command)
        self.reconciler = Reconciler(self.sb, self.ovs, chassis, manager,
                                     resync_interval=conf.metadata.reconcile_interval,
                                     cidrs_key=conf.metadata.cidrs_key, maps=self.maps)
        retry(f"connecting to the SB DB at {','.join(conf.ovn.ovn_sb_connection)}", self.sb.start,
              self.stop, tick=self.notifier.pet)
        self._spawn("reconciler", self.reconciler.run, self.stop, self._after_pass)

    async def serve(self) -> None:
        """Serve the metadata socket until stopped; bound only once the SB view is loaded,
        so a restarting agent never answers 404 for a VM it has not learnt yet."""
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: (self.stop.set(), stopped.set(),
                                                  self._poke_follower()))
        while not self.sb.settled:
            if self.stop.is_set():
                return  # the keeper holds the socket: what waits goes to the next agent
            await asyncio.sleep(0.02)
        conf = self.conf
        if not conf.metadata_proxy_shared_secret:
            LOG.warning("metadata_proxy_shared_secret is empty: nova will refuse signed "
                        "requests unless it has no secret either")
        nova = NovaClient(NovaEndpoint.from_conf(conf))
        metadata = handler.MetadataProxy.from_conf(conf, self.sb.snapshot, nova,
                                                 plugged=self.ovs.iface_ids)
        self.response_cache = metadata.cache
        server = handler.make_server(metadata, PeerPolicy.for_haproxy(
            conf.metadata_proxy_user, conf.metadata_proxy_group))
        control_app = control.make_app(self.status, metadata.index)
        control_sock = listener.bind_socket(str(self.state_dir / control.CONTROL_SOCKET), 0o600,
                                            backlog=16)   # root only
        sock = self.sock
        LOG.info("serving metadata on %s (%s event loop)", conf.metadata_proxy_socket,
                 eventloop.name())
        if conf.metadata_workers > 1:
            self.workers = WorkerPool(conf.metadata_workers - 1, config_args(conf), sock,
                                      zygote=self.zygote)
            self.workers.start()
        servers = [handler.serve(server, sock, stopped, before_close=self._before_close,
                               backlog=conf.metadata_backlog),
                   control.serve(control_app, control_sock, stopped), self._watch(stopped),
                   heap.keep_trimmed(stopped)]
        hap = self.reconciler.haproxy
        if hap.settings.direct and self.maps:
            check = readiness.ReadinessCheck(self.maps, conf.metadata_proxy_socket, self.stop)
            ready_sock = check.socket(hap.settings.direct.ready_socket)
            servers.append(handler.serve(
                check.server(), ready_sock, stopped, backlog=readiness.BACKLOG,
                before_close=lambda: check.leave(ready_sock)))
            LOG.info("direct path on: %s", hap.settings.direct.describe())
        if self.workers or self.maps:
            servers.append(self._follow_view(metadata, stopped))
        if conf.metrics.listen:
            reg = metrics.registry(statemetrics.StateCollector(
                self.metrics_state, self.reconciler.haproxy.frontend_stats))
            servers.append(self._serve_metrics(reg, conf.metrics.listen, stopped))
        try:
            await asyncio.gather(*servers)
        finally:
            await nova.close()

    def _after_pass(self) -> None:
        self.notifier.pet()
        self._poke_follower()   # the pass may have told the maps of networks served
        metrics.retain_networks({p.network_id for p in self.sb.snapshot().ports})
        if self.reconciler.passes or self.reconciler.waiting_for:
            state = self.metrics_state()
            self.notifier.serving(state["networks_served"], state["vms_served"])

    async def _serve_metrics(self, reg, listen: str, stopped: asyncio.Event) -> None:
        """The metrics endpoint; one that cannot bind is logged, never fatal."""
        try:
            await metrics.serve(reg, listen, stopped)
        except OSError as exc:
            LOG.error("metrics endpoint [metrics] listen = %s: cannot listen: %s; serving "
                      "metadata without it", listen, exc)

    def metrics_state(self) -> dict:
        """What the metrics collector reads at scrape time."""
        rec = self.reconciler
        ready = [n for n in rec.status.networks.values() if n.ready]
        direct = self.direct_state()
        return {**({f"direct_{k}": v for k, v in direct.items()} if direct else {}),
                "networks_served": len(ready),
                "vms_served": sum(n.vm_ports for n in ready),
                "vms_bound": sum(1 for p in self.sb.snapshot().ports
                                 if p.bound_here and p.type in VM_PORT_TYPES),
                "networks_in_backoff": rec.backoff_count(),
                "reconcile_passes": rec.passes, "reconcile_failures": rec.failures,
                "reconcile_seconds": rec.status.duration,
                "sb_connected": self.sb.connected(), "sb_updated": self.sb.updated_at,
                "chassis_registered": self.sb.chassis_registered,
                "haproxy_reloads": rec.haproxy.reloads,
                "haproxy_reload_failures": rec.haproxy.reload_failures,
                **self._cache_state()}

    def _cache_state(self) -> dict:
        cache = self.response_cache
        if cache is None:
            return {}
        return {"cache_bytes": cache.size, "cache_entries": len(cache),
                "cache_hits": cache.hits, "cache_misses": cache.misses,
                "cache_evictions": cache.evictions}

    def direct_state(self) -> dict | None:
        """The direct path, for metrics and `ovnmeta status`; None when it is off."""
        if not self.maps or not self.nova_watch:
            return None
        return {"ready": self.maps.ready, "entries": self.maps.entries(),
                "requests": self.nova_watch.requests, "errors": dict(self.nova_watch.errors)}

    def _before_close(self) -> None:
        if self.workers:
            self.workers.stop()

    async def _follow_view(self, metadata: handler.MetadataProxy,
                           stopped: asyncio.Event) -> None:
        """When the SB view or the plugged ports change: stream them to the workers (and to
        a respawned worker), and bring haproxy's maps up to date. The views' threads and
        the reconciler only wake it (_poke_follower), and it runs in the event loop; an
        idle agent wakes it once a MAPS_RECHECK, not every FEED_INTERVAL."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        self._follower_wake = lambda: loop.call_soon_threadsafe(wake.set)
        last: tuple | None = None
        frame, version = b"", 0
        recheck = 0.0
        while not stopped.is_set():
            wake.clear()
            snap, plugged = self.sb.snapshot(), self.ovs.iface_ids()
            changed = last is None or snap is not last[0] or plugged != last[1]
            last = (snap, plugged)
            if self.workers:
                if changed:
                    frame, version = workerfeed.encode(snap, plugged), version + 1
                await self.workers.publish(frame, version)
            timeout = MAPS_RECHECK
            if self.maps:
                now = time.monotonic()
                due = now >= recheck
                if due:
                    recheck = now + MAPS_RECHECK
                    await loop.run_in_executor(None, self.nova_watch.check)
                if changed or due or self.maps.due or self.maps.watching \
                        or not self.maps.ready:
                    await loop.run_in_executor(None, self.maps.sync, metadata.index(),
                                               plugged)
                # Not current, or a reload's new worker awaited: look again soon.
                busy = self.maps.due or self.maps.watching or not self.maps.ready
                timeout = FEED_INTERVAL if busy else max(0.0, recheck - time.monotonic())
            if not wake.is_set():
                try:
                    await asyncio.wait_for(wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
        self._follower_wake = None

    async def _watch(self, stopped: asyncio.Event) -> None:
        """Respawn dead workers, and the socket keeper should it have died."""
        path = self.conf.metadata_proxy_socket
        ticks = 0
        while not stopped.is_set():
            if self.workers and self.workers.check():
                self._poke_follower()    # a new worker: the follower sends it the view
            if ticks % HEADLINE_EVERY == 0:
                self.headline.sample()
            if ticks % KEEPER_CHECK == 0 and not handoff.alive(path):
                LOG.warning("the socket keeper is gone; starting another")
                handoff.start(self.sock, path)
            ticks += 1
            try:
                await asyncio.wait_for(stopped.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    def status(self) -> dict:
        """Live state for `ovnmeta status`: the last reconcile pass plus the connections."""
        rec = self.reconciler.status
        return {
            "agent_pid": os.getpid(), "chassis": self.chassis.system_id,
            "bridge": self.chassis.bridge, "datapath_type": self.chassis.datapath_type,
            "sb_connection": ",".join(self.conf.ovn.ovn_sb_connection),
            "sb_connected": self.sb.connected(), "ovs_connected": self.ovs.connected(),
            "chassis_registered": self.sb.chassis_registered,
            "sb_rows": self.sb.monitored_rows, "last_reconcile": rec.time,
            "last_reconcile_seconds": rec.duration, "passes": self.reconciler.passes,
            "networks": {net: asdict(n) for net, n in rec.networks.items()},
            "problems": [asdict(p) for p in rec.problems], "haproxy": asdict(rec.haproxy),
            "waiting_for": [str(a) for a in self.reconciler.waiting_for or ()],
            "direct_path": self.direct_state(),
            "ofports": self.ovs.ofports(), "metadata_socket": self.conf.metadata_proxy_socket,
            "metadata_workers": [os.getpid()] + (self.workers.pids() if self.workers else []),
            "traffic": self.headline.summary(),
            "sb_last_update_age": (round(time.time() - self.sb.updated_at, 1)
                                   if self.sb.updated_at else None),
        }

    def _spawn(self, name: str, target: Callable, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.stop.set()
        if self.reconciler:
            self.reconciler.mark(set())
        for thread in self.threads:
            thread.join(timeout=10)
        for view in (self.sb, self.ovs):
            if view:
                view.stop()
        if self.zygote and not self.workers:
            self.zygote.stop()     # stopped before it forked any worker
