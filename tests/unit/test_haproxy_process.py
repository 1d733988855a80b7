"""haproxy process handling against a real haproxy (no namespaces needed)."""

from __future__ import annotations

import shutil

import pytest

from ovnmeta.haproxy import _Process
from ovnmeta.testing.sandbox import _free_port, alive

pytestmark = pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy not installed")

CFG = """
global
    stats socket {stats} mode 600 level admin expose-fd listeners
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend f
    bind 127.0.0.1:{port}
    http-request return status 200
"""


def test_an_empty_pidfile_during_a_reload_does_not_hide_the_running_master(tmp_path) -> None:
    proc = _Process("haproxy", tmp_path / "t.cfg", tmp_path / "t.pid", master_worker=True)
    proc.write(CFG.format(stats=tmp_path / "t.stats", port=_free_port()))
    proc.start()
    try:
        master = proc.pid()
        assert master and alive(master)
        proc.pidfile.write_text("")        # what a reader sees while haproxy rewrites it
        assert proc.pid() == master
        proc.pidfile.unlink()
        assert proc.pid() == master
    finally:
        proc.stop()
    assert not alive(master)
    assert proc.pid() is None
