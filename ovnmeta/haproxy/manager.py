"""Keeps haproxy matching the served networks, in either mode.

`shared` runs one master-worker haproxy whose frontends bind inside every namespace and
reloads it seamlessly; `per-network` runs one process per network. Both survive an agent
restart: the next agent adopts them by pidfile.

In shared mode a network new to the shared haproxy can be served first by a bridge: a
haproxy of its own with that network's frontend alone (no direct path: every request goes
through the agent), which listens 10-20 ms after it is started, where the shared one's
reload takes 50-150 ms at 200 networks. Once the shared haproxy has loaded the network the
bridge soft-stops, its queued connections handed over by the kernel (tcp_migrate_req).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

from ovnmeta.core import naming
from ovnmeta.core.boundaries import Host
from ovnmeta.core.model import METADATA_V4, Frontend
from ovnmeta.haproxy import maps, sidefiles
from ovnmeta.haproxy.process import HaproxyError, Process, ReloadRejected, read_config
from ovnmeta.haproxy.render import frontends_only, render, renderer, templates_dir
from ovnmeta.haproxy.runtime import parse_frontend_stats, stats_command
from ovnmeta.haproxy.settings import MAPS_DIR, READY_SOCKET, Settings, shared_stats_socket
from ovnmeta.host.system import LinuxHost

LOG = logging.getLogger(__name__)
BRIDGE_PREFIX = "bridge-"
BRIDGE_GRACE = 30.0   # seconds a soft-stopped bridge may take to finish its requests
BRIDGE_ADDRESS = METADATA_V4.split("/")[0]


class HaproxyManager:
    """Keeps the haproxy processes matching a set of frontends, in either mode."""

    def __init__(self, mode: str, state_dir: Path, settings: Settings, binary: str = "haproxy",
                 template_dir: str = "", bridges: int = 0, host: Host | None = None) -> None:
        self.mode = mode
        self.host: Host = host or LinuxHost()   # sockets in the namespaces
        self.bridges = bridges if mode == "shared" else 0   # most bridges a pass starts
        self._stopping: dict[str, tuple[int, float]] = {}    # bridge: its pid, since when
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.binary = binary
        self.template = renderer(templates_dir(template_dir))
        if settings.direct and mode != "shared":
            LOG.info("haproxy mode %s: no direct path to nova (it needs the shared haproxy); "
                     "every request goes through the agent", mode)
            self.settings = settings = replace(settings, direct=None)
        self.maps_dir = self.dir / MAPS_DIR
        if settings.direct:
            sidefiles.write(self.dir, settings.direct)
        self._last_errors: dict[str, str] = {}
        self._rendered: dict[Path, tuple[tuple, str]] = {}   # per config file: inputs, text
        self._parsed: tuple[str, frozenset[str]] = ("", frozenset())
        self._rejected = ""        # a config the master rejected: validated first now
        self._unloaded: set[str] = set()   # processes whose last reload did not complete
        self.reloads = 0           # starts, reloads and restarts, for the metrics
        self.reload_failures = 0

    def _error(self, key: str, message: str) -> None:
        """Log a failure once, not at every pass while it lasts."""
        if self._last_errors.get(key) != message:
            LOG.error("%s", message)
        else:
            LOG.debug("%s", message)
        self._last_errors[key] = message

    def _shared(self) -> Process:
        # Its stats socket is shared_stats_socket(self.dir): the config's suffix swapped.
        return Process(self.binary, self.dir / "shared.cfg", self.dir / "shared.pid", True)

    def _per_network(self, net_id: str) -> Process:
        return Process(self.binary, self.dir / f"{naming.namespace(net_id)}.cfg",
                        self.dir / f"{naming.namespace(net_id)}.pid", False)

    def _per_network_ids(self) -> set[str]:
        return {net for p in self.dir.glob(f"{naming.NAMESPACE_PREFIX}*.cfg")
                if (net := naming.network_from_namespace(p.stem))}

    def _bridge(self, net_id: str) -> Process:
        name = BRIDGE_PREFIX + naming.namespace(net_id)
        return Process(self.binary, self.dir / f"{name}.cfg", self.dir / f"{name}.pid", False)

    def _bridge_ids(self) -> set[str]:
        return {net for p in self.dir.glob(f"{BRIDGE_PREFIX}{naming.NAMESPACE_PREFIX}*.cfg")
                if (net := naming.network_from_namespace(p.stem[len(BRIDGE_PREFIX):]))}

    def _to_bridge(self, frontends: list[Frontend]) -> list[Frontend]:
        """The networks the running shared haproxy does not serve yet, when a pass brings
        no more than `bridges` of them (a cold start just loads them all)."""
        have = self.configured_networks() | self._bridge_ids()
        new = [f for f in frontends if f.network_id not in have]
        return new if len(new) <= self.bridges else []

    def _start_bridges(self, new: list[Frontend]) -> None:
        settings = replace(self.settings, direct=None)
        for f in new:
            proc = self._bridge(f.network_id)
            try:
                proc.write(render(self.template, [f], settings, state_dir=self.dir),
                           validate=False)   # the shared config's own frontend template
                self.host.migrate_queued_connections(f.namespace)   # for when it stops
                proc.start()
                LOG.info("network %s: a bridge haproxy (pid %s) serves it while the shared "
                         "one loads it", f.network_id, proc.pid())
            except (HaproxyError, OSError) as exc:
                LOG.warning("network %s: no bridge haproxy (%s); it is served once the "
                            "shared haproxy has loaded it", f.network_id, exc)
                proc.stop()

    def _retire_bridges(self, keep: set[str] = frozenset(),
                        handover: dict[str, str] | None = None) -> None:
        """Soft-stop the bridges of networks not in `keep`, without waiting for them (they
        finish the requests they hold); SIGTERM after BRIDGE_GRACE, the files once gone.
        A network in `handover` (id: namespace) is still served: its bridge stops only once
        the shared haproxy listens there too (its new worker binds after the reload
        returns), else at a later pass."""
        bridges = self._bridge_ids()
        for net in self._stopping.keys() - bridges:   # their files went with stop_all
            del self._stopping[net]
        retiring = bridges - keep
        if not retiring:
            return
        now = time.monotonic()
        shared = [p for p in (self._shared().pid(),) if p]
        for net in retiring:
            proc = self._bridge(net)
            pid = proc.pid()
            stopping = self._stopping.get(net)
            if pid is None:
                proc.remove_files()         # gone: its files
                self._stopping.pop(net, None)
            elif handover and net in handover and (stopping is None or stopping[0] != pid) \
                    and not self.host.listens(handover[net], BRIDGE_ADDRESS, 80, shared):
                LOG.debug("network %s: the shared haproxy does not listen there yet; its "
                          "bridge stays", net)
            elif stopping is None or stopping[0] != pid:
                LOG.info("network %s: the shared haproxy serves it; stopping its bridge", net)
                proc.signal(signal.SIGUSR1)   # soft stop: closes its listener at once
                self._stopping[net] = (pid, now)
            elif now - stopping[1] > BRIDGE_GRACE:
                LOG.warning("network %s: its bridge haproxy %d still runs %g s after its "
                            "soft stop; terminating it", net, pid, BRIDGE_GRACE)
                proc.signal(signal.SIGTERM)

    def sync(self, frontends: list[Frontend], recreated: Collection[str] = frozenset(),
             meanwhile: Callable[[], None] | None = None) -> dict[str, str]:
        """Converge; returns errors by network id ('*' for the shared process).

        `recreated` names networks whose namespace is new: a listener bound in the old one
        (deleted by hand, say) must be rebound even though the config text is unchanged.
        `meanwhile` runs once, while the shared haproxy loads a new config if it does,
        else before returning (the reconciler adds OVS ports then).
        """
        once = _Once(meanwhile)
        # Switching modes: the new processes listen beside the old ones (SO_REUSEPORT)
        # before those are soft-stopped, so the switch refuses no connection.
        try:
            if self.mode == "shared":
                errors = self._sync_shared(frontends, recreated, once)
                old = [self._per_network(net) for net in sorted(self._per_network_ids())]
            else:
                once()
                errors = self._sync_per_network(frontends, recreated)
                old = [self._shared()] if self._shared().cfg.exists() else []
                self._retire_bridges()      # a shared mode's, before a switch of modes
        finally:
            once()
        if old and not errors:
            LOG.info("haproxy mode %s: retiring %d process(es) of the other mode", self.mode,
                     len(old))
            for f in frontends:
                self.host.migrate_queued_connections(f.namespace)
            for proc in old:
                proc.stop(graceful=True)
        return errors

    def _sync_shared(self, frontends: list[Frontend], recreated: Collection[str],
                     meanwhile: Callable[[], None]) -> dict[str, str]:
        proc = self._shared()
        if not frontends:
            self._retire_bridges()
            if proc.pid() or proc.cfg.exists():
                LOG.info("no metadata networks left: stopping the shared haproxy")
                proc.stop()
            return {}
        if self.bridges and proc.pid() is not None:
            if new := self._to_bridge(frontends):
                # The OVS ports (OVN binds them in 150-350 ms; their transaction takes
                # 20-30 ms) while the bridges start (10-20 ms each), then the shared reload.
                plugging = _Background(meanwhile)
                try:
                    self._start_bridges(new)
                finally:
                    plugging.join()
        error = self._converge(proc, frontends, recreated, "shared haproxy", "*", meanwhile)
        # A bridge stays while the shared haproxy has not loaded its network.
        self._retire_bridges(keep={f.network_id for f in frontends} - self.configured_networks()
                             if error else set(),
                             handover={f.network_id: f.namespace for f in frontends})
        return {"*": error} if error else {}

    def _sync_per_network(self, frontends: list[Frontend], recreated: Collection[str]
                          ) -> dict[str, str]:
        errors: dict[str, str] = {}
        wanted = {f.network_id: f for f in frontends}
        for net in self._per_network_ids() - wanted.keys():
            LOG.info("network %s: stopping its haproxy", net)
            self._per_network(net).stop()
        for net, frontend in wanted.items():
            error = self._converge(self._per_network(net), [frontend], recreated,
                                   f"network {net}: haproxy", net)
            if error:
                errors[net] = error
        return errors

    def _converge(self, proc: Process, frontends: list[Frontend], recreated: Collection[str],
                  label: str, key: str, meanwhile: Callable[[], None] = lambda: None) -> str:
        """Make one process serve exactly these frontends; '' or the error."""
        try:
            served = read_config(proc.cfg)
        except FileNotFoundError:
            served = ""
        # A reload hands the old listening sockets to the new worker, and those are still
        # bound in the deleted namespace: only a restart rebinds them.
        rebind = sorted(n for n in recreated if f"frontend {naming.frontend(n)}\n" in served)
        stats = str(proc.cfg.with_suffix(".stats"))
        try:
            text = self._render(proc, frontends, stats)
            # A network coming or going changes only frontends, made by the template that
            # made the running ones: the master parses the new file itself, and should it
            # fail, keeps its workers and says so (ReloadRejected). `haproxy -c` is then
            # needed only for the reason, off the path to the new listener (it took
            # 40-150 ms at 200 frontends here).
            running = proc.pid() is not None
            trust_master = proc.master_worker and running and not rebind \
                and frontends_only(served, text) and text != self._rejected
            changed = proc.write(text, validate=not trust_master)
            changed |= key in self._unloaded
            if not running:
                LOG.info("%s: starting (%d frontends)", label, len(frontends))
                self.reloads += 1
                proc.start()
            elif rebind:
                LOG.warning("%s: restarting, namespace(s) of %s were recreated", label, rebind)
                self.reloads += 1
                proc.restart()
            elif changed:
                LOG.info("%s: reloading (%d frontends)", label, len(frontends))
                self.reloads += 1
                self._unloaded.add(key)     # until the master says it has loaded it
                try:
                    proc.reload(meanwhile)
                except ReloadRejected as exc:
                    self._rejected = text
                    raise HaproxyError(f"{exc}: {self._restore(proc, served, key)}") from None
                self._unloaded.discard(key)
        except (HaproxyError, OSError) as exc:
            self.reload_failures += 1
            self._error(key, f"{label}: {exc}")
            return str(exc)
        self._last_errors.pop(key, None)
        return ""

    def _render(self, proc: Process, frontends: list[Frontend], stats: str) -> str:
        """The config for these frontends; the last one per process is kept, as an idle
        pass asks for the same again every second (15 ms of jinja at 200 frontends)."""
        inputs = (tuple(frontends), stats)
        last = self._rendered.get(proc.cfg)
        if last and last[0] == inputs:
            return last[1]
        text = render(self.template, frontends, self.settings, stats_socket=stats,
                      state_dir=self.dir)
        self._rendered[proc.cfg] = (inputs, text)
        return text

    def _restore(self, proc: Process, previous: str, key: str) -> str:
        """After a rejected reload: the previous config back in the file (the master still
        runs it), reloaded so that file and workers agree again; returns why the new one
        was rejected, from `haproxy -c`."""
        try:
            proc.validate(proc.cfg)
            reason = "`haproxy -c` accepts it: see haproxy's log (a bind that failed?)"
        except HaproxyError as exc:
            reason = str(exc)
        if previous:
            proc.write(previous, validate=False)
            try:
                proc.reload()
                self._unloaded.discard(key)
            except HaproxyError as exc:
                reason += f"; reloading the previous config failed too: {exc}"
        return reason

    def configured_networks(self) -> set[str]:
        """Networks the installed config(s) have a frontend for."""
        if self.mode != "shared":
            return self._per_network_ids()
        try:
            text = read_config(self._shared().cfg)
        except FileNotFoundError:
            return set()
        if text is not self._parsed[0]:   # asked at every pass, parsed when it changed
            self._parsed = (text, frozenset(
                net for line in text.splitlines() if line.startswith("frontend ")
                if (net := naming.network_from_frontend(line.split()[1]))))
        return set(self._parsed[1])

    def frontend_stats(self, timeout: float = 1.0) -> dict[str, dict[str, int]]:
        """haproxy's own counters per network, from each process's stats socket."""
        procs_ = ([self._shared()] if self.mode == "shared" else
                  [self._per_network(net) for net in sorted(self._per_network_ids())])
        out: dict[str, dict[str, int]] = {}
        for proc in procs_:
            path = proc.cfg.with_suffix(".stats")
            try:
                csv = stats_command(str(path), "show stat -1 1 -1", timeout)
            except OSError:
                continue  # not running (yet): nothing to count
            out.update(parse_frontend_stats(csv))
        return out

    def pids(self) -> dict[str, int | None]:
        """Running processes: '*' for the shared one, else by network id."""
        if self.mode == "shared":
            return {"*": self._shared().pid()}
        return {net: self._per_network(net).pid() for net in self._per_network_ids()}

    def stats_socket(self) -> str:
        """The shared process's stats socket (admin level: the maps are updated there)."""
        return shared_stats_socket(self.dir)

    def stop_all(self) -> None:
        for net in self._bridge_ids():
            self._bridge(net).stop()
        self._shared().stop()
        for net in self._per_network_ids():
            self._per_network(net).stop()
        maps.remove_files(self.maps_dir)
        (self.dir / READY_SOCKET).unlink(missing_ok=True)
        sidefiles.remove(self.dir)


class _Background:
    """Runs a function in a thread of its own; join() waits and raises what it raised."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True,
                                        name="ovnmeta-meanwhile")
        self._thread.start()

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # handed to join()
            self._error = exc

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


class _Once:
    """A callable that runs its function the first time only."""

    def __init__(self, fn: Callable[[], None] | None) -> None:
        self._fn = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()
