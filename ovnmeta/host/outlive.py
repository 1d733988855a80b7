"""Helpers that outlive the agent's container: haproxy and the socket keeper.

A restart that loses no request needs haproxy and the keeper to live on while the agent is
away. On a host, systemd's KillMode=process leaves them be. A container runtime does not:
stopping a container kills every process in its cgroup, host PID namespace or not (podman
and runc, seen here). kolla-ansible solves this for neutron's agent with side-car containers
started through a `haproxy` wrapper; ovnmeta's shared haproxy and keeper run in the host's
network namespace, where that wrapper cannot place them.

So, in a container that shares the host's cgroup namespace (kolla: `cgroupns_mode: host`),
the agent starts its helpers in a cgroup of their own, `ovnmeta-helpers`, beside the
container's rather than inside it: each cgroup hierarchy is mounted afresh (the container's
/sys/fs/cgroup shows only its own subtree), and a helper moves itself there before it execs.
They keep the container's mount namespace, so they see the same volumes after it is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger(__name__)

MOUNT_BASE = "/run/ovnmeta/cgroup"
CGROUP_NAME = "ovnmeta-helpers"

# /bin/sh, not Python: a bridge haproxy listens 10-20 ms after it starts, and sh adds ~1 ms.
# A hierarchy that refuses the move (checked once, in prepare()) does not stop the helper.
_MOVE = 'for f in $OVNMETA_CGROUP_PROCS; do echo $$ 2>/dev/null > "$f" || :; done; exec "$@"'


@dataclass(frozen=True)
class Hierarchy:
    """One line of /proc/self/cgroup: `id:controllers:path`."""
    hid: str
    controllers: str     # "" for cgroup2, "memory", "cpu,cpuacct", "name=systemd", ...
    path: str


def parse_proc_cgroup(text: str) -> list[Hierarchy]:
    out = []
    for line in text.splitlines():
        hid, controllers, path = line.split(":", 2)
        out.append(Hierarchy(hid, controllers, path))
    return out


def escapable(hierarchies: list[Hierarchy]) -> bool:
    """Whether this process sees the host's cgroup tree: inside a private cgroup namespace
    its own cgroup is `/`, and a fresh mount shows nothing above it."""
    return any(h.path != "/" for h in hierarchies)


@dataclass(frozen=True)
class HelperCgroup:
    procs: tuple[str, ...]      # a cgroup.procs file per hierarchy

    def wrap(self, argv: list[str]) -> tuple[list[str], dict[str, str]]:
        """argv run through /bin/sh, which moves itself to the helpers' cgroup and execs;
        and the environment entry that tells it where."""
        return ["/bin/sh", "-c", _MOVE, "sh", *argv], \
            {"OVNMETA_CGROUP_PROCS": " ".join(self.procs)}


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mount(kind: str, options: str, target: str) -> None:
    if _libc.mount(b"cgroup", target.encode(), kind.encode(), 0,
                   options.encode() if options else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount -t {kind} -o {options or '-'} on {target}: "
                           f"{os.strerror(err)}")


def _mounted(target: str) -> bool:
    try:
        return os.stat(target).st_dev != os.stat(os.path.dirname(target)).st_dev
    except OSError:
        return False


def prepare(proc_cgroup: str = "/proc/self/cgroup", base: str = MOUNT_BASE
            ) -> tuple[HelperCgroup | None, str]:
    """The helpers' cgroup, made ready; or None and why it cannot be."""
    hierarchies = parse_proc_cgroup(Path(proc_cgroup).read_text())
    if not escapable(hierarchies):
        return None, ("this container has a cgroup namespace of its own: haproxy and the "
                      "socket keeper will be stopped with it, and a restart of the container "
                      "drops requests; share the host's (podman/docker --cgroupns host, "
                      "kolla-ansible: on with neutron_agents_wrappers)")
    procs = []
    try:
        for h in hierarchies:
            if h.controllers == "" and h.hid == "0":
                kind, options = "cgroup2", ""
            else:
                kind = "cgroup"
                options = f"none,{h.controllers}" if h.controllers.startswith("name=") \
                    else h.controllers
            target = os.path.join(base, h.hid)
            os.makedirs(target, exist_ok=True)
            if not _mounted(target):
                _mount(kind, options, target)
            group = os.path.join(target, CGROUP_NAME)
            os.makedirs(group, exist_ok=True)
            procs.append(os.path.join(group, "cgroup.procs"))
    except OSError as exc:
        return None, (f"cannot make a cgroup for haproxy and the socket keeper outside this "
                      f"container ({exc}): they will be stopped with it, and a restart of the "
                      "container drops requests")
    group = HelperCgroup(tuple(procs))
    stayed = _trial(group, hierarchies)
    if len(stayed) == len(hierarchies):
        return None, ("no cgroup hierarchy let a helper leave this container's cgroup: "
                      "haproxy and the socket keeper will be stopped with it, and a restart of "
                      "the container drops requests")
    if stayed:
        LOG.warning("cgroup hierarchies %s keep the helpers in this container's cgroup; the "
                    "others let them out", ", ".join(h.controllers or "cgroup2" for h in stayed))
    return group, ""


def _trial(group: HelperCgroup, hierarchies: list[Hierarchy]) -> list[Hierarchy]:
    """The hierarchies in which a wrapped process is still in this container's cgroup."""
    import subprocess
    argv, extra = group.wrap(["cat", "/proc/self/cgroup"])
    out = subprocess.run(argv, env={**os.environ, **extra}, capture_output=True, text=True,
                         timeout=10).stdout
    moved = {h.hid: h.path for h in parse_proc_cgroup(out.strip())}
    return [h for h in hierarchies if moved.get(h.hid, h.path) == h.path]


_current: HelperCgroup | None = None


def use(group: HelperCgroup | None) -> None:
    """Set for this process: every helper started after this runs in `group`."""
    global _current
    _current = group


def helper_argv(argv: list[str]) -> tuple[list[str], dict[str, str] | None]:
    """The argv and environment to start a helper with (env None: inherit unchanged)."""
    if _current is None:
        return argv, None
    wrapped, extra = _current.wrap(argv)
    return wrapped, {**os.environ, **extra}
