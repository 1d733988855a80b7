"""The direct path: haproxy sends a VM's GET straight to nova, signed from a map.

Per network, the agent keeps a haproxy map: client address → "instance|project|signature",
made from the same index the socket path answers from (bound here and plugged on this host).
haproxy uses the maps only while the agent's `ready` check passes (the maps match its view)
and a nova server is up. A miss, a POST, or either check failing sends the request through
the agent, which stays the authority. A stale hit is the thing to avoid, never a miss: so
removals are pushed before additions, and what a haproxy worker this agent has not pushed
to yet holds (a reload's, or the last agent's) is read back and corrected, not trusted.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

from ovnmeta.haproxy.runtime import worker_pid
from ovnmeta.haproxy.settings import map_name, map_path
from ovnmeta.core.portindex import PortIndex
from ovnmeta.core.signing import sign_instance_id, signature_valid

LOG = logging.getLogger(__name__)

Maps = dict[str, dict[str, str]]   # network id → {client address: value}
# What may go into a header unquoted; an id with anything else is served by the agent.
SAFE_ID = re.compile(r"[A-Za-z0-9._:-]*\Z")
BATCH = 8000          # bytes of ';'-joined commands per stats-socket connection
RELOAD_WATCH = 5.0    # seconds to look for the new worker after a reload


def desired(index: PortIndex, plugged: Collection[str] | None, secret: str) -> Maps:
    """The maps for an index: only what the socket path would answer the same way."""
    out: Maps = {}
    for network, address, inst in index.entries():
        if not inst.answerable(plugged):
            continue
        if not SAFE_ID.match(inst.instance_id) or not SAFE_ID.match(inst.project_id):
            continue
        out.setdefault(network, {})[address] = "|".join(
            (inst.instance_id, inst.project_id, sign_instance_id(secret, inst.instance_id)))
    return out


def file_text(entries: dict[str, str]) -> str:
    return "".join(f"{key} {value}\n" for key, value in sorted(entries.items()))


def changes(path: str, old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Runtime commands taking one map from old to new, removals first."""
    return ([f"del map {path} {k}" for k in sorted(old.keys() - new.keys())] +
            [f"set map {path} {k} {new[k]}" for k in sorted(old.keys() & new.keys())
             if old[k] != new[k]] +
            [f"add map {path} {k} {new[k]}" for k in sorted(new.keys() - old.keys())])


def replacement(path: str, new: dict[str, str]) -> list[str]:
    """Runtime commands making one map exactly new, whatever it held."""
    return [f"clear map {path}"] + [f"add map {path} {k} {v}" for k, v in sorted(new.items())]


def batches(commands: list[str], limit: int = BATCH) -> list[str]:
    out: list[str] = []
    for cmd in commands:
        if out and len(out[-1]) + len(cmd) + 1 <= limit:
            out[-1] += ";" + cmd
        else:
            out.append(cmd)
    return out


# Answers that are not failures: a map whose frontend haproxy has not loaded yet (its file
# is read when it does), and a key already gone.
BENIGN = ("Unknown map identifier", "Key not found")


def parse_show_map(answer: str) -> dict[str, str] | None:
    """`show map <file>` → {key: value}; None when haproxy has no such map loaded."""
    if answer.startswith("Unknown map identifier"):
        return None
    out = {}
    for line in answer.splitlines():
        fields = line.split(" ", 2)   # "<ref> <key> <value>"
        if len(fields) == 3 and fields[0].startswith("0x"):
            out[_canonical(fields[1])] = fields[2]
    return out


def _canonical(key: str) -> str:
    """An address key as haproxy prints it back (IPv6 compressed, lower case)."""
    try:
        return str(ipaddress.ip_address(key))
    except ValueError:
        return key


def remove_files(directory: Path) -> None:
    """Every map file: `ovnmeta cleanup` and a stopping shared haproxy."""
    shutil.rmtree(directory, ignore_errors=True)


class MapSync:
    """The one owner of the direct path's maps: it writes and deletes their files and keeps
    what the running haproxy holds equal to the agent's view.

    Files first, so a worker started by a reload reads current maps; runtime commands next,
    so the running worker needs no reload; then `show map` reads back what haproxy holds and
    any difference is replaced (level-triggered, as the reconciler is). The reconciler says
    which networks haproxy serves (`prepare` before it writes a config naming their maps,
    `served` after each sync). `ready` is what the agent's check answers.
    """

    def __init__(self, directory: Path, stats_socket: str, secret: str,
                 command: Callable[[str, str], str]) -> None:
        self.dir = Path(directory)
        self.stats_socket = stats_socket
        self.secret = secret
        self._command = command
        self._lock = threading.Lock()
        self._configured: frozenset[str] = frozenset()   # networks haproxy has loaded
        self._written: Maps = {}
        self._pushed: Maps = {}
        self._pid: int | None = None       # the worker holding _pushed
        self._watch_until = 0.0
        self._watch_from: int | None = None  # the worker a reload is replacing
        self._want: Maps = {}
        self._made_from: tuple = (None, None)
        self._verify: set[str] = set()     # networks to read back at the next sync
        self.due = False                   # something changed that the next sync must push
        self.ready = False
        self._told = False                 # the reconciler said what haproxy serves

    # -- told by the reconciler ------------------------------------------------
    def prepare(self, networks: Collection[str]) -> None:
        """Before haproxy loads a config naming these networks' maps: their files exist
        (haproxy refuses a config naming a missing map), with the content known so far."""
        # Networks whose frontends haproxy is about to drop (all of them when it is about to
        # stop): no more pushes for them, so a sync meanwhile does not find haproxy gone.
        leaving = self._configured - set(networks)
        if leaving:
            with self._lock:
                self._configured = self._configured - leaving
        # Only the reconciler's thread deletes files (served()): what exists now stays, so a
        # pass with nothing missing never waits for a sync holding the lock.
        try:
            present = set(os.listdir(self.dir))
        except FileNotFoundError:
            present = set()
        missing = [n for n in networks if map_name(n) not in present]
        if not missing:
            return
        with self._lock:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            for network in missing:
                self._write(network, self._want.get(network, {}))

    def served(self, networks: Collection[str], reloaded: bool) -> None:
        """After a sync of haproxy: these networks' frontends are loaded (a reload means a
        new worker, which gets every map again), and no other network's map file is kept."""
        served = frozenset(networks)
        try:
            names = os.listdir(self.dir)   # not glob(): a Path for each of 200 files a pass
        except FileNotFoundError:
            names = []
        stale = [self.dir / n for n in names if n.endswith(".map") and n[:-4] not in served]
        # _configured is written only here and in prepare(), in the reconciler's thread: read
        # without the lock, so an unchanged pass never waits for a sync reading haproxy's maps
        # back.
        changed = served != self._configured or not self._told
        self._told = True
        if not (changed or stale or reloaded):
            return
        with self._lock:
            self._configured = served
            for path in stale:
                path.unlink(missing_ok=True)
                self._written.pop(path.stem, None)
            if reloaded:
                self._watch_until = time.monotonic() + RELOAD_WATCH
                self._watch_from = self._pid
            self.due = self.due or changed or reloaded

    def files_signed_here(self) -> bool:
        """Whether the map files, which the running haproxy loaded or was pushed to match,
        carry this agent's signatures: a restart with another metadata_proxy_shared_secret
        must not vouch for the last agent's maps while they are corrected."""
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(".map"))
        except FileNotFoundError:
            return True
        for name in names:
            try:
                text = (self.dir / name).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                fields = line.partition(" ")[2].split("|")
                if len(fields) == 3:
                    return signature_valid(self.secret, fields[0], fields[2])
        return True

    @property
    def watching(self) -> bool:
        return time.monotonic() < self._watch_until

    def entries(self) -> int:
        return sum(len(m) for m in self._pushed.values())

    # -- the agent's view follower ----------------------------------------------
    def sync(self, index: PortIndex, plugged: Collection[str] | None) -> bool:
        """Converge haproxy's maps on the index. Returns `ready`."""
        with self._lock:
            self.due = False
            last_index, last_plugged = self._made_from   # views are immutable: identity
            if index is not last_index or plugged is not last_plugged:
                self._want = desired(index, plugged, self.secret)
                self._made_from = (index, plugged)
            want = self._want
            if not self._configured:
                # No network served (or not told yet): haproxy holds no maps of ours, or was
                # stopped on purpose. Not a failure to warn of; the next network's haproxy is
                # read afresh.
                self.ready = False
                self._pid = None
                return False
            try:
                self._write_files(want)
                # Before the first pass nothing says which maps haproxy uses: not current.
                self.ready = self._told and self._push(want) and self._read_back(want)
            except OSError as exc:
                if self.ready:
                    LOG.warning("direct path off until haproxy's maps can be updated: %s", exc)
                self.ready = False
                self._pid = None
            return self.ready

    def _write(self, network: str, entries: dict[str, str]) -> None:
        path = Path(map_path(self.dir, network))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(file_text(entries))
        tmp.replace(path)
        self._written[network] = entries

    def _write_files(self, want: Maps) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for network in self._configured:
            entries = want.get(network, {})
            written = self._written.get(network)
            if written is entries:
                continue   # unchanged since written (a deleted file's record is dropped)
            if written != entries or not Path(map_path(self.dir, network)).exists():
                self._write(network, entries)
            else:
                self._written[network] = entries

    def _push(self, want: Maps) -> bool:
        pid = worker_pid(self._command(self.stats_socket, "show info"))
        if pid is None:
            return False
        networks = set(self._configured)
        if self.watching and pid != self._watch_from:
            self._watch_until = 0.0           # the new worker is there: pushed below
        if pid != self._pid:
            # A worker this agent has not pushed to (a reload's, or one the last agent
            # filled): trust nothing it holds, read it. Only differences are pushed, so
            # what is right stays in use meanwhile (a `clear map` would make misses).
            if self._pid is not None:
                LOG.info("haproxy worker %d replaced %d: reading back all %d maps", pid,
                         self._pid, len(networks))
            cmds = []
            for net in sorted(networks):
                held = self._held(net)
                step = changes(map_path(self.dir, net), held or {},
                               {_canonical(k): v for k, v in want.get(net, {}).items()})
                if step:
                    cmds += step
                    self._verify.add(net)
            pushed: Maps = {}
        else:
            cmds = []
            for net in sorted(networks):
                step = changes(map_path(self.dir, net), self._pushed.get(net, {}),
                               want.get(net, {}))
                if step:
                    cmds += step
                    self._verify.add(net)
            pushed = self._pushed
        failed = []
        for batch in batches(cmds):
            answer = self._command(self.stats_socket, batch)
            failed += [line for line in answer.splitlines()
                       if line.strip() and not line.startswith(BENIGN)]
        if failed:
            LOG.warning("haproxy refused map updates (%s); pushing all maps again",
                        "; ".join(failed[:3]))
            self._pid = None
            return False
        self._pushed = {**{n: m for n, m in pushed.items() if n in networks},
                        **{net: dict(want.get(net, {})) for net in networks}}
        self._pid = pid
        return True

    def _held(self, network: str) -> dict[str, str] | None:
        """What the running haproxy holds in a network's map (None: no such map loaded)."""
        return parse_show_map(self._command(self.stats_socket,
                                            f"show map {map_path(self.dir, network)}"))

    def _read_back(self, want: Maps) -> bool:
        """What haproxy holds for the maps just changed, compared with what was pushed; a
        difference is replaced at once, and the path waits for the next sync if it stays."""
        verify, self._verify = self._verify & self._configured, set()
        wrong = []
        for net in sorted(verify):
            held = self._held(net)
            expected = {_canonical(k): v for k, v in want.get(net, {}).items()}
            if held is not None and held != expected:
                wrong.append(net)
        if not wrong:
            return True
        LOG.warning("haproxy's maps differ from the agent's for %d network(s) (%s); "
                    "replacing them", len(wrong), ", ".join(wrong[:3]))
        for batch in batches([c for net in wrong
                              for c in replacement(map_path(self.dir, net),
                                                   want.get(net, {}))]):
            self._command(self.stats_socket, batch)
        self._verify |= set(wrong)   # read back again at the next sync
        self.due = True
        return False
