"""A network new to the running shared haproxy is served by a bridge haproxy while the
shared one reloads, and the bridge goes once the shared one serves it. Real haproxy, real
namespaces; no OVN (the manager alone)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ovnmeta.core import naming
from ovnmeta.core.model import Frontend
from ovnmeta.haproxy.manager import BRIDGE_PREFIX, HaproxyManager
from ovnmeta.haproxy.settings import Settings
from ovnmeta.host import nssockets, procs

NAMES = ["omunit-br-a", "omunit-br-b", "omunit-br-c", "omunit-br-d", "omunit-br-e"]


@pytest.fixture
def namespaces():
    for n in NAMES:
        subprocess.run(["ip", "netns", "add", n], check=True)
        subprocess.run(["ip", "-n", n, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", n, "addr", "add", "169.254.169.254/32", "dev", "lo"],
                       check=True)
    yield NAMES
    for n in NAMES:
        subprocess.run(["ip", "netns", "del", n])


def _frontends(*names: str) -> list[Frontend]:
    return [Frontend(n, n, "lo", False) for n in names]


def _accepts(ns: str) -> bool:
    return nssockets.tcp_connect(ns, "169.254.169.254", 80, 0.5) is None


def _bridges(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{BRIDGE_PREFIX}*.cfg"))


def test_a_new_network_is_served_by_a_bridge_until_the_shared_haproxy_has_it(
        namespaces, tmp_path) -> None:
    a, b, c, d, e = namespaces
    manager = HaproxyManager("shared", tmp_path, Settings(socket=str(tmp_path / "sock")),
                             bridges=2)
    try:
        assert manager.sync(_frontends(a)) == {}
        assert not _bridges(tmp_path)           # nothing runs yet: no bridge for a start
        order: list[tuple] = []
        reload_shared = manager._converge

        def converge(*args, **kwargs):          # the shared haproxy's reload, watched
            order.append(("reload", [p.name for p in _bridges(tmp_path)], _accepts(b),
                          manager._bridge(b).pid()))
            return reload_shared(*args, **kwargs)
        manager._converge = converge
        assert manager.sync(_frontends(a, b), meanwhile=lambda: order.append(
            ("ovs ports",))) == {}
        # The OVS ports (beside the bridge's start), then the shared haproxy's reload, the
        # bridge listening by then.
        assert order[0] == ("ovs ports",)
        assert order[1][:3] == ("reload", [f"{BRIDGE_PREFIX}{naming.namespace(b)}.cfg"], True)
        bridge = order[1][3]
        assert bridge and bridge not in manager.pids().values()
        # Soft-stopped once the shared haproxy listens there too (this pass, or a later
        # one: passes come every second); its files go the pass after it has exited.
        deadline = time.monotonic() + 10
        while procs.running(bridge) and time.monotonic() < deadline:
            time.sleep(0.05)
            manager.sync(_frontends(a, b))
        assert not procs.running(bridge)
        assert _accepts(b) and _accepts(a)      # the shared haproxy serves both
        manager.sync(_frontends(a, b))
        assert not _bridges(tmp_path)
        # More new networks in a pass than `bridges` (a cold start, say): no bridge.
        manager.sync(_frontends(a, b, c, d, e))
        assert order[-1][1] == [] and all(_accepts(n) for n in namespaces)   # no bridge
    finally:
        manager.stop_all()
    assert not list(tmp_path.glob("*.cfg")) and not any(_accepts(n) for n in namespaces)
