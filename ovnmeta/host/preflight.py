"""What the agent needs of the host before it touches anything, each refused in one line.

A container started without privileges, without `/run/netns` shared with the host, or with a
read-only state volume would otherwise fail later and deeper: a traceback from a netlink
call, or worse, namespaces that live only in the container's mount namespace and vanish with
it at the next restart while their veths stay on br-int.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ovnmeta.host.namespace import NETNS_DIR

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


class PreflightError(RuntimeError):
    """One line an operator can act on."""


@dataclass(frozen=True)
class Mount:
    point: str
    propagation: frozenset[str]   # mountinfo's optional fields: shared:N, master:N, ...


def parse_mountinfo(text: str) -> list[Mount]:
    """/proc/self/mountinfo's mount points and propagation tags (proc(5)). Pure."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 7:
            continue
        optional = fields[6:fields.index("-")]
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        mounts.append(Mount(point, frozenset(optional)))
    return mounts


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """The mount `path` lies on: the last mounted of the longest matching mount points."""
    best: Mount | None = None
    for m in mounts:
        prefix = m.point.rstrip("/") + "/"
        if path == m.point or path.startswith(prefix):
            if best is None or len(m.point) >= len(best.point):
                best = m
    return best


def netns_problem(mounts: list[Mount], in_container: bool, netns_dir: str = NETNS_DIR
                  ) -> str | None:
    """Why namespaces made under netns_dir would not be seen outside this mount namespace
    (None: they would). Pure. Only in a container: on a host the agent, haproxy and
    ovn-controller share one mount namespace, whatever the propagation."""
    if not in_container:
        return None
    m = mount_of(netns_dir, mounts)
    shared = m is not None and any(tag.startswith("shared:") for tag in m.propagation)
    if m is not None and m.point == netns_dir and not shared:
        how = "as a slave" if any(t.startswith("master:") for t in m.propagation) \
            else "private"
        return (f"{netns_dir} is mounted {how}, not shared: namespaces this agent makes would "
                "vanish with its mount namespace; mount it with shared propagation (podman/"
                "docker '-v /run/netns:/run/netns:shared', Kubernetes mountPropagation: "
                "Bidirectional)")
    if m is None or m.point != netns_dir:
        return (f"{netns_dir} is not mounted from the host in this container: mount it with "
                "shared propagation ('-v /run/netns:/run/netns:shared', Kubernetes "
                "mountPropagation: Bidirectional)")
    return None


def missing_caps(cap_eff_hex: str) -> list[str]:
    """Capabilities the agent needs that an effective set (/proc status CapEff) lacks."""
    eff = int(cap_eff_hex, 16)
    return [name for bit, name in ((CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
                                   (CAP_NET_ADMIN, "CAP_NET_ADMIN")) if not eff >> bit & 1]


def _cap_eff(proc: Path) -> str:
    for line in (proc / "self" / "status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return line.split()[1]
    return "0"


def in_container(root: Path = Path("/"), env: dict[str, str] | None = None) -> bool:
    """Running in a container image: ovnmeta's own (OVNMETA_CONTAINER=1, set by its
    Containerfile and the kolla recipe), or any podman or CRI-O one. Not /.dockerenv alone:
    test machines that are docker containers themselves are the host of their sandbox."""
    env = os.environ if env is None else env
    return env.get("OVNMETA_CONTAINER") == "1" or bool(env.get("container")) or \
        (root / "run" / ".containerenv").exists()


def writable_dir(path: Path, what: str) -> None:
    """Create `path` if needed and prove a file can be made there (read-only mounts and
    permissions alike), or raise PreflightError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".ovnmeta-preflight-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PreflightError(f"cannot write in {path} ({what}): {exc.strerror}") from None


def check(socket_path: str, state_path: str, proc: Path = Path("/proc"),
          root: Path = Path("/")) -> None:
    """Raise PreflightError on the first thing that would stop the agent from working."""
    caps = missing_caps(_cap_eff(proc))
    if caps:
        raise PreflightError(
            f"this process lacks {' and '.join(caps)}: ovnmeta-agent makes namespaces and "
            "veths, so run it as root (a container: privileged)")
    mounts = parse_mountinfo((proc / "self" / "mountinfo").read_text())
    problem = netns_problem(mounts, in_container(root))
    if problem:
        raise PreflightError(problem)
    writable_dir(Path(socket_path).parent, "the directory of metadata_proxy_socket")
    writable_dir(Path(state_path), "state_path")
