"""One haproxy process, found by its config file: start, seamless reload through the
master CLI, soft stop. Survives the agent: a new agent finds it by pidfile or in /proc."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ovnmeta.haproxy.runtime import stats_command
from ovnmeta.host import outlive, procs

LOG = logging.getLogger(__name__)

MASTER_READY_TIMEOUT = 5.0   # a started master answers its CLI (10 ms here)...
RELOAD_TIMEOUT = 10.0        # ...and a reload ends (50-150 ms at 200 frontends here)
RESIGNAL_AFTER = 1.0         # a SIGUSR2 not acted on by then is sent again


def _alive(pid: int, cfg: Path) -> bool:
    """A live haproxy running our config file (guards against a reused PID)."""
    if not procs.running(pid):
        return False
    try:
        # open(), not Path: every pass reads this, and pathlib interns each new pid's name
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
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
    name = str(cfg).encode()
    found = [(p.pid, p.parent) for p in procs.live() if name in p.cmdline.split(b"\0")]
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


_texts: dict[str, tuple[tuple[int, ...], str]] = {}


def _stat_key(path: Path) -> tuple[int, ...]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def read_config(cfg: Path) -> str:
    """A config file's text (FileNotFoundError when there is none), read again only once
    the file changed: a pass looks at the shared config three or four times, 300 KB at 200
    frontends. Every write replaces the file, so a new text comes with a new inode."""
    try:
        key = _stat_key(cfg)
    except FileNotFoundError:
        _texts.pop(str(cfg), None)   # a bridge's or a network's config is gone for good
        raise
    known = _texts.get(str(cfg))
    if known and known[0] == key:
        return known[1]
    text = cfg.read_text()
    _texts[str(cfg)] = (key, text)
    return text


class Process:
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
            if read_config(self.cfg) == text:
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
        _texts[str(self.cfg)] = (_stat_key(self.cfg), text)
        return True

    def start(self, replace: int | None = None) -> None:
        argv = [self.binary, "-D", "-p", str(self.pidfile), "-f", str(self.cfg)]
        if self.master_worker:
            argv[1:1] = ["-W", "-S", f"{self.master_cli},mode,600"]
        if replace:
            argv += ["-sf", str(replace)]
        argv, env = outlive.helper_argv(argv)
        proc = subprocess.run(argv, capture_output=True, text=True, start_new_session=True,
                              env=env)
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

    def reload(self, meanwhile: Callable[[], None] = lambda: None) -> None:
        """Reload and return once the master has loaded the new file; a config the master
        could not load (it keeps its workers then) raises ReloadRejected. `meanwhile` runs
        while the master loads it (right after the signal), or after a start."""
        pid = self.pid()
        if pid is None:
            self.start()
            meanwhile()
        elif self.master_worker:
            self._signal_reload(pid, meanwhile)
        else:
            self.start(replace=pid)
            meanwhile()

    def _signal_reload(self, pid: int, meanwhile: Callable[[], None] = lambda: None
                       ) -> None:
        if not self.master_cli.exists():
            # Removed by hand: the master cannot be asked, only told (as before we asked).
            LOG.warning("haproxy master %d has no CLI socket at %s: reloading it without "
                        "checking that the reload took", pid, self.master_cli)
            os.kill(pid, signal.SIGUSR2)
            meanwhile()
            return
        before, _ = self._master_state(MASTER_READY_TIMEOUT)
        os.kill(pid, signal.SIGUSR2)  # the master re-reads the file, workers hand over
        meanwhile()
        started = last_signal = time.monotonic()
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

    def signal(self, sig: int) -> None:
        """Send `sig` to the process, if it runs (SIGUSR1: soft stop, without waiting)."""
        pid = self.pid()
        if pid:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self, graceful: bool = False) -> None:
        """Kill the process and remove its files."""
        self.kill(timeout=10.0 if graceful else 5.0, graceful=graceful)
        self.remove_files()

    def remove_files(self) -> None:
        """Its files, for a process known to be gone (stop() would look for it again: a
        scan of /proc when the pidfile names a process that has ended)."""
        for path in (self.cfg, self.pidfile, self.cfg.with_suffix(".master"),
                     self.cfg.with_suffix(".stats")):
            path.unlink(missing_ok=True)
        _texts.pop(str(self.cfg), None)
