"""haproxy: config rendering (pure) and the processes that serve the namespaces.

`shared` runs one master-worker haproxy whose frontends bind inside every namespace and
reloads it seamlessly; `per-network` runs one process per network. Both survive an agent
restart: the next agent adopts them by pidfile.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2

from ovnmeta import naming, netns, procs
from ovnmeta.model import NetworkSpec
from ovnmeta.nova import NovaEndpoint

LOG = logging.getLogger(__name__)
MASTER_READY_TIMEOUT = 5.0   # a started master answers its CLI (10 ms here)...
RELOAD_TIMEOUT = 10.0        # ...and a reload ends (50-150 ms at 200 frontends here)
RESIGNAL_AFTER = 1.0         # a SIGUSR2 not acted on by then is sent again
MAPS_DIR = "maps"
READY_SOCKET = "ready.sock"   # the agent's readiness socket, checked by the shared haproxy
BUNDLED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
INSTALLED_TEMPLATES = Path(os.sys.prefix) / "share" / "ovnmeta" / "templates"


@dataclass(frozen=True)
class Frontend:
    network_id: str
    namespace: str
    inner: str
    ipv6: bool

    @property
    def name(self) -> str:
        return naming.frontend(self.network_id)

    @classmethod
    def for_spec(cls, spec: NetworkSpec) -> Frontend:
        return cls(spec.network_id, spec.namespace, spec.inner, spec.ipv6)


@dataclass(frozen=True)
class RateLimit:
    """neutron's [metadata_rate_limiting]: 429 once a VM passes either window's limit."""
    ip_versions: tuple[int, ...] = (4,)
    base_window_duration: int = 10
    base_query_rate_limit: int = 10
    burst_window_duration: int = 10
    burst_query_rate_limit: int = 10


@dataclass(frozen=True)
class Timeouts:
    """neutron's [metadata_haproxy] options, in seconds."""
    connect: int = 30
    client: int = 32
    server: int = 32
    http_request: int = 30
    http_keep_alive: int = 30

    @classmethod
    def from_conf(cls, group) -> Timeouts:
        return cls(group.timeout_connect, group.timeout_client, group.timeout_server,
                   group.timeout_http_request, group.timeout_http_keep_alive)


@dataclass(frozen=True)
class Direct:
    """The direct path to nova (ovnmeta.directpath): where haproxy finds the maps, the
    agent's readiness check, and nova."""
    ready_socket: str
    servers: tuple[str, ...]     # haproxy server addresses of nova's hosts
    host_header: str
    timeout_ms: int

    @classmethod
    def for_nova(cls, ready_socket: str, nova: NovaEndpoint) -> Direct:
        def address(host: str) -> str:
            return f"ipv6@{host}:{nova.port}" if ":" in host else f"{host}:{nova.port}"
        return cls(ready_socket, tuple(address(h) for h in nova.hosts),
                   nova.authority(nova.hosts[0]), max(1, int(nova.timeout * 1000)))


# haproxy's own answers on the direct path, in the words the agent uses for the same cases.
ERROR_FILES = {
    503: (502, "Bad Gateway", "Bad gateway: the nova metadata API cannot be reached"),
    502: (502, "Bad Gateway", "Bad gateway: the nova metadata API cannot be reached"),
    504: (504, "Gateway Timeout",
          "Gateway timeout: the nova metadata API did not answer in time"),
}


def error_file_text(status: int, reason: str, body: str) -> str:
    body += "\n"
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\n"
            f"Connection: close\r\n\r\n{body}")


@dataclass(frozen=True)
class Settings:
    socket: str
    maxconn: int = 1024          # per frontend
    global_maxconn: int = 8192   # per process: haproxy needs about twice this in fds
    timeouts: Timeouts = Timeouts()
    user: str = ""
    group: str = ""
    log_target: str = ""
    rate_limit: RateLimit | None = None
    direct: Direct | None = None


def templates_dir(configured: str = "") -> Path:
    for candidate in (configured, BUNDLED_TEMPLATES, INSTALLED_TEMPLATES):
        if candidate and (Path(candidate) / "haproxy.cfg.j2").exists():
            return Path(candidate)
    raise FileNotFoundError("haproxy templates not found; set [haproxy] templates_dir")


def renderer(directory: Path) -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(directory)),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True)
    return env.get_template("haproxy.cfg.j2")


def render(template: jinja2.Template, frontends: list[Frontend], settings: Settings,
           stats_socket: str = "", state_dir: Path | str = "") -> str:
    """The config text; with settings.direct, `state_dir` holds the maps and error files."""
    ordered = sorted(frontends, key=lambda f: f.network_id)
    values = dict(settings.__dict__)
    if len(frontends) == 1:  # a per-network process needs no more than its frontend
        values["global_maxconn"] = min(settings.global_maxconn, settings.maxconn)
    maps = {f.network_id: map_path(Path(state_dir) / MAPS_DIR, f.network_id)
            for f in ordered}
    errors = {code: str(error_file(state_dir, code)) for code in ERROR_FILES}
    return template.render(frontends=ordered, stats_socket=stats_socket, maps=maps,
                           error_files=errors, **values)


def _alive(pid: int, cfg: Path) -> bool:
    """A live haproxy running our config file (guards against a reused PID)."""
    if not procs.running(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:   # gone meanwhile (ENOENT, or ESRCH while being reaped)
        return False
    return str(cfg).encode() in cmdline


def _read_pid(pidfile: Path) -> int | None:
    try:
        # Master-worker pidfiles hold the master first.
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _find_master(cfg: Path) -> int | None:
    """The oldest live haproxy whose command line names cfg (workers are its children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _alive(int(entry), cfg):
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, IndexError):
                continue
            found.append((int(entry), int(stat[1])))  # (pid, parent pid)
    pids = {pid for pid, _ in found}
    masters = [pid for pid, parent in found if parent not in pids]
    return min(masters) if masters else None


class HaproxyError(RuntimeError):
    pass


class ReloadRejected(HaproxyError):
    """The master could not load the new config and kept its workers."""


def parse_master_proc(text: str) -> tuple[int, int] | None:
    """The master CLI's `show proc` → (reloads, failed reloads) of the master."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "master" and fields[2].isdigit():
            failed = 0
            if len(fields) >= 5 and fields[3] == "[failed:":
                failed = int(fields[4].rstrip("]")) if fields[4].rstrip("]").isdigit() else 0
            return int(fields[2]), failed
    return None


def frontends_only(old: str, new: str) -> bool:
    """The two configs differ in their frontends at most: everything before the first
    frontend (global, defaults, backends) is the same text."""
    marker = "\nfrontend "
    return marker in old and old.split(marker, 1)[0] == new.split(marker, 1)[0]


class _Process:
    """One haproxy process described by a config file and a pidfile."""

    def __init__(self, binary: str, cfg: Path, pidfile: Path, master_worker: bool) -> None:
        self.binary, self.cfg, self.pidfile = binary, cfg, pidfile
        self.master_worker = master_worker

    def pid(self) -> int | None:
        """The running process for our config: from the pidfile, else found in /proc.

        haproxy rewrites its pidfile when it reloads; read at that moment the file is empty,
        and trusting it would start a second haproxy for the same frontends.
        """
        pid = _read_pid(self.pidfile)
        if pid and _alive(pid, self.cfg):
            return pid
        return _find_master(self.cfg) if self.cfg.exists() else None

    def validate(self, path: Path) -> None:
        # Not -q: haproxy 2.6 then keeps the reason to itself.
        proc = subprocess.run([self.binary, "-c", "-f", str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            out = proc.stderr + proc.stdout
            alerts = [line.split(":", 1)[1].strip() if "]" in line.split(":", 1)[0] else line
                      for line in out.splitlines() if "[ALERT]" in line]
            raise HaproxyError(f"haproxy rejected {path}: "
                               f"{'; '.join(alerts) or out.strip() or proc.returncode}")

    def write(self, text: str, validate: bool = True) -> bool:
        """Install a config, validated first unless told otherwise; False when it is
        unchanged."""
        try:
            if self.cfg.read_text() == text:
                return False
        except FileNotFoundError:
            pass
        tmp = self.cfg.with_suffix(".new")
        tmp.write_text(text)
        if validate:
            try:
                self.validate(tmp)
            except HaproxyError:
                tmp.unlink()
                raise
        tmp.replace(self.cfg)
        return True

    def start(self, replace: int | None = None) -> None:
        argv = [self.binary, "-D", "-p", str(self.pidfile), "-f", str(self.cfg)]
        if self.master_worker:
            argv[1:1] = ["-W", "-S", f"{self.master_cli},mode,600"]
        if replace:
            argv += ["-sf", str(replace)]
        proc = subprocess.run(argv, capture_output=True, text=True, start_new_session=True)
        if proc.returncode != 0:
            raise HaproxyError(f"haproxy failed to start with {self.cfg}: "
                               f"{proc.stderr.strip()}")
        if self.master_worker:
            # A SIGUSR2 that reaches the master before its CLI answers is lost (haproxy 2.6,
            # seen here): the next reload waits for it.
            self._master_state(MASTER_READY_TIMEOUT)

    @property
    def master_cli(self) -> Path:
        return self.cfg.with_suffix(".master")

    def _master_state_now(self) -> tuple[int, int] | None:
        """(reloads, failed reloads) from the master CLI; None while it does not answer
        (re-executing: its CLI is back in a moment)."""
        try:
            return parse_master_proc(stats_command(str(self.master_cli), "show proc"))
        except OSError:
            return None

    def _master_state(self, timeout: float) -> tuple[int, int]:
        """(reloads, failed reloads) from the master CLI, waiting up to `timeout` for it."""
        deadline = time.monotonic() + timeout
        while True:
            state = self._master_state_now()
            if state is not None:
                return state
            if time.monotonic() > deadline:
                raise HaproxyError(f"the haproxy master of {self.cfg} does not answer on "
                                   f"{self.master_cli}")
            time.sleep(0.005)

    def reload(self) -> None:
        """Reload and return once the master has loaded the new file; a config the master
        could not load (it keeps its workers then) raises ReloadRejected."""
        pid = self.pid()
        if pid is None:
            self.start()
        elif self.master_worker:
            self._signal_reload(pid)
        else:
            self.start(replace=pid)

    def _signal_reload(self, pid: int) -> None:
        if not self.master_cli.exists():
            # Removed by hand: the master cannot be asked, only told (as before we asked).
            LOG.warning("haproxy master %d has no CLI socket at %s: reloading it without "
                        "checking that the reload took", pid, self.master_cli)
            os.kill(pid, signal.SIGUSR2)
            return
        before, _ = self._master_state(MASTER_READY_TIMEOUT)
        started = last_signal = time.monotonic()
        os.kill(pid, signal.SIGUSR2)  # the master re-reads the file, workers hand over
        while True:
            time.sleep(0.005)
            state = self._master_state_now()
            now = time.monotonic()
            if state is not None and state[0] > before:
                if state[1]:
                    raise ReloadRejected(f"haproxy could not load {self.cfg}; it keeps "
                                         "serving the previous config")
                return
            if now - started > RELOAD_TIMEOUT:
                raise HaproxyError(f"haproxy did not reload {self.cfg} within "
                                   f"{RELOAD_TIMEOUT:g} s")
            if state is not None and now - last_signal > RESIGNAL_AFTER:
                LOG.warning("haproxy master %d did not act on SIGUSR2; sending it again", pid)
                os.kill(pid, signal.SIGUSR2)
                last_signal = now

    def kill(self, timeout: float = 5.0, graceful: bool = False) -> None:
        """Stop the process; `graceful` is haproxy's soft stop (SIGUSR1): it closes its
        listeners and finishes the requests it has, for when another haproxy listens beside
        it."""
        pid = self.pid()
        if pid:
            # Identity was checked by pid(); from here wait for the process itself to end
            # (its command line empties while it exits, before it is really gone).
            procs.terminate(pid, timeout, sig=signal.SIGUSR1 if graceful else signal.SIGTERM)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self, graceful: bool = False) -> None:
        """Kill the process and remove its files."""
        self.kill(timeout=10.0 if graceful else 5.0, graceful=graceful)
        for path in (self.cfg, self.pidfile, self.cfg.with_suffix(".master"),
                     self.cfg.with_suffix(".stats")):
            path.unlink(missing_ok=True)


def stats_command(path: str, command: str, timeout: float = 1.0) -> str:
    """One command on a haproxy stats socket or master CLI; its whole answer. Our side is
    shut once the command is sent: the master CLI answers only then."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def stat_rows(csv: str) -> list[dict[str, str]]:
    """`show stat` CSV → one {field: value} per proxy or server line."""
    lines = csv.splitlines()
    if not lines or not lines[0].startswith("# "):
        return []
    fields = lines[0][2:].split(",")
    return [dict(zip(fields, line.split(","))) for line in lines[1:]]


def map_path(directory: Path | str, network_id: str) -> str:
    """A network's map file (ovnmeta.directpath keeps its content)."""
    return f"{directory}/{network_id}.map"


def shared_stats_socket(directory: Path | str) -> str:
    """The shared haproxy's stats socket in the agent's haproxy directory."""
    return str(Path(directory) / "shared.stats")


def error_file(directory: Path | str, code: int) -> Path:
    """Where the direct path's answer for haproxy's own `code` is kept."""
    return Path(directory) / f"nova-{code}.http"


def parse_frontend_stats(csv: str) -> dict[str, dict[str, int]]:
    """`show stat` CSV → {network id: {field: value}} for our frontends."""
    out: dict[str, dict[str, int]] = {}
    for values in stat_rows(csv):
        net = naming.network_from_frontend(values.get("pxname", ""))
        if net is None or values.get("svname") != "FRONTEND":
            continue
        out[net] = {k: int(v) for k, v in values.items() if v.isdigit()}
    return out


class HaproxyManager:
    """Keeps the haproxy processes matching a set of frontends, in either mode."""

    def __init__(self, mode: str, state_dir: Path, settings: Settings, binary: str = "haproxy",
                 template_dir: str = "") -> None:
        self.mode = mode
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
            for code, (status, reason, body) in ERROR_FILES.items():
                path = error_file(self.dir, code)
                text = error_file_text(status, reason, body)
                if not path.exists() or path.read_text() != text:
                    path.write_text(text)
        self._last_errors: dict[str, str] = {}
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

    def _shared(self) -> _Process:
        # Its stats socket is shared_stats_socket(self.dir): the config's suffix swapped.
        return _Process(self.binary, self.dir / "shared.cfg", self.dir / "shared.pid", True)

    def _per_network(self, net_id: str) -> _Process:
        return _Process(self.binary, self.dir / f"{naming.namespace(net_id)}.cfg",
                        self.dir / f"{naming.namespace(net_id)}.pid", False)

    def _per_network_ids(self) -> set[str]:
        return {net for p in self.dir.glob(f"{naming.NAMESPACE_PREFIX}*.cfg")
                if (net := naming.network_from_namespace(p.stem))}

    def sync(self, frontends: list[Frontend], recreated: set[str] = frozenset()
             ) -> dict[str, str]:
        """Converge; returns errors by network id ('*' for the shared process).

        `recreated` names networks whose namespace is new: a listener bound in the old one
        (deleted by hand, say) must be rebound even though the config text is unchanged.
        """
        # Switching modes: the new processes listen beside the old ones (SO_REUSEPORT)
        # before those are soft-stopped, so the switch refuses no connection.
        if self.mode == "shared":
            errors = self._sync_shared(frontends, recreated)
            old = [self._per_network(net) for net in sorted(self._per_network_ids())]
        else:
            errors = self._sync_per_network(frontends, recreated)
            old = [self._shared()] if self._shared().cfg.exists() else []
        if old and not errors:
            LOG.info("haproxy mode %s: retiring %d process(es) of the other mode", self.mode,
                     len(old))
            for f in frontends:
                netns.migrate_queued_connections(f.namespace)
            for proc in old:
                proc.stop(graceful=True)
        return errors

    def _sync_shared(self, frontends: list[Frontend], recreated: set[str]) -> dict[str, str]:
        proc = self._shared()
        if not frontends:
            if proc.pid() or proc.cfg.exists():
                LOG.info("no metadata networks left: stopping the shared haproxy")
                proc.stop()
            return {}
        if self.settings.direct:
            self._ensure_maps({f.network_id for f in frontends})
        error = self._converge(proc, frontends, recreated, "shared haproxy", "*")
        if self.settings.direct and not error:
            self._remove_maps(keep={f.network_id for f in frontends})
        return {"*": error} if error else {}

    def _ensure_maps(self, networks: set[str]) -> None:
        """haproxy refuses a config naming a missing map: an empty one is a miss for every
        VM, which the agent answers, until the agent's MapSync fills it."""
        self.maps_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for net in networks:
            path = Path(map_path(self.maps_dir, net))
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))

    def _remove_maps(self, keep: set[str]) -> None:
        for path in self.maps_dir.glob("*.map"):
            if path.stem not in keep:
                path.unlink(missing_ok=True)

    def _sync_per_network(self, frontends: list[Frontend], recreated: set[str]
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

    def _converge(self, proc: _Process, frontends: list[Frontend], recreated: set[str],
                  label: str, key: str) -> str:
        """Make one process serve exactly these frontends; '' or the error."""
        try:
            served = proc.cfg.read_text()
        except FileNotFoundError:
            served = ""
        # A reload hands the old listening sockets to the new worker, and those are still
        # bound in the deleted namespace: only a restart rebinds them.
        rebind = sorted(n for n in recreated if f"frontend {naming.frontend(n)}\n" in served)
        stats = str(proc.cfg.with_suffix(".stats"))
        try:
            text = render(self.template, frontends, self.settings, stats_socket=stats,
                          state_dir=self.dir)
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
                    proc.reload()
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

    def _restore(self, proc: _Process, previous: str, key: str) -> str:
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
            text = self._shared().cfg.read_text()
        except FileNotFoundError:
            return set()
        return {net for line in text.splitlines() if line.startswith("frontend ")
                if (net := naming.network_from_frontend(line.split()[1]))}

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
        self._shared().stop()
        for net in self._per_network_ids():
            self._per_network(net).stop()
        shutil.rmtree(self.maps_dir, ignore_errors=True)
        (self.dir / READY_SOCKET).unlink(missing_ok=True)
        for code in ERROR_FILES:
            error_file(self.dir, code).unlink(missing_ok=True)
