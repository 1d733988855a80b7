"""haproxy process handling against a real haproxy (no namespaces needed)."""

from __future__ import annotations

import shutil
import time
import urllib.request

import pytest
from ovnmeta_testing.sandbox import alive, free_port, wait_until

from ovnmeta.core.model import Frontend
from ovnmeta.haproxy.manager import HaproxyManager
from ovnmeta.haproxy.process import Process, parse_master_proc
from ovnmeta.haproxy.render import frontends_only
from ovnmeta.haproxy.settings import Settings

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
    proc = Process("haproxy", tmp_path / "t.cfg", tmp_path / "t.pid", master_worker=True)
    proc.write(CFG.format(stats=tmp_path / "t.stats", port=free_port()))
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


def test_frontends_only_compares_everything_before_the_first_frontend() -> None:
    head = "global\n    maxconn 10\nbackend b\n    server s /x\n"
    assert frontends_only(head + "\nfrontend a\n", head + "\nfrontend a\n\nfrontend b\n")
    assert frontends_only(head + "\nfrontend a\n", head + "\nfrontend b\n")
    assert not frontends_only(head + "\nfrontend a\n",
                              head.replace("10", "11") + "\nfrontend a\n")
    assert not frontends_only("", head + "\nfrontend a\n")       # nothing installed yet
    assert not frontends_only(head, head + "\nfrontend a\n")     # none served before


# Frontends on loopback ports: the port rides in Frontend.namespace, and a namespace that is
# no port makes a frontend haproxy rejects.
TEMPLATE = """global
    stats socket {{ stats_socket }} mode 600 level admin expose-fd listeners
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
{% for f in frontends %}
frontend {{ f.name }}
    bind 127.0.0.1:{{ f.namespace }}
    http-request return status 200 content-type text/plain string {{ f.network_id }}
{% endfor %}"""


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
        return resp.read().decode()


def test_a_frontend_only_change_is_not_validated_first_and_a_bad_one_is_rolled_back(
        tmp_path, monkeypatch) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "haproxy.cfg.j2").write_text(TEMPLATE)
    manager = HaproxyManager("shared", tmp_path / "run", Settings(socket="/nonexistent"),
                             template_dir=str(templates))
    validated = []
    real_validate = Process.validate
    monkeypatch.setattr(Process, "validate",
                        lambda self, path: (validated.append(path), real_validate(self, path)))
    ports = [free_port(), free_port()]
    a, b = (Frontend(n, str(p), "x", False) for n, p in zip("ab", ports))
    try:
        assert manager.sync([a]) == {}
        assert validated                       # the first config is checked before it runs
        wait_until(lambda: _serves(ports[0], "a"), timeout=5, what="frontend a")
        validated.clear()
        meanwhile: list = []
        assert manager.sync([a, b], meanwhile=lambda: meanwhile.append(manager.reloads)) == {}
        assert len(meanwhile) == 1      # once, during the reload
        wait_until(lambda: _serves(ports[1], "b"), timeout=5, what="frontend b")
        # not `haproxy -c`: the master parses the new file itself
        assert validated == []
        good = (manager.dir / "shared.cfg").read_text()
        reloads = manager.reloads

        bad = Frontend("c", "not-a-port", "x", False)
        errors = manager.sync([a, b, bad])
        # the master's refusal, with the reason `haproxy -c` gives
        assert "could not load" in errors["*"] and "not-a-port" in errors["*"]
        assert (manager.dir / "shared.cfg").read_text() == good    # rolled back
        assert _get(ports[0]) == "a" and _get(ports[1]) == "b"    # the workers kept serving
        # Asked again, the same bad config is validated first: no reload at every pass.
        reloads = manager.reloads
        assert "not-a-port" in manager.sync([a, b, bad])["*"]
        assert manager.reloads == reloads
        assert (manager.dir / "shared.cfg").read_text() == good
        assert _get(ports[0]) == "a"
    finally:
        manager.stop_all()


def _serves(port: int, body: str) -> bool:
    try:
        return _get(port) == body
    except OSError:
        return False


def _started_master(tmp_path) -> tuple[Process, int]:
    """A running master-worker haproxy, its new config written (one more frontend, on the
    port returned) but not loaded yet."""
    proc = Process("haproxy", tmp_path / "t.cfg", tmp_path / "t.pid", master_worker=True)
    ports = [free_port(), free_port()]
    proc.write(CFG.format(stats=tmp_path / "t.stats", port=ports[0]))
    proc.start()
    proc.write(CFG.format(stats=tmp_path / "t.stats", port=ports[0]) +
               "frontend g\n    bind 127.0.0.1:%d\n    http-request return status 200\n"
               % ports[1])
    return proc, ports[1]


def test_a_reload_right_after_the_start_is_not_lost(tmp_path) -> None:
    """haproxy 2.6 drops a SIGUSR2 that comes before its master CLI answers."""
    proc, port = _started_master(tmp_path)
    try:
        proc.reload()    # returns once the master has loaded the file
        wait_until(lambda: _serves(port, ""), timeout=2, what="the reloaded frontend")
    finally:
        proc.stop()


def test_parse_master_proc() -> None:
    text = ("#<PID>          <type>          <reloads>       <uptime>        <version>\n"
            "3612            master          3 [failed: 1]   0d00h10m06s     2.6.12\n"
            "# workers\n3631            worker          1               0d00h10m05s     2.6.12\n")
    assert parse_master_proc(text) == (3, 1)
    assert parse_master_proc(text.replace("3 [failed: 1]", "0")) == (0, 0)
    assert parse_master_proc("") is None


def test_a_master_whose_cli_socket_was_removed_is_still_reloaded(tmp_path) -> None:
    proc, port = _started_master(tmp_path)
    try:
        proc.master_cli.unlink()
        started = time.monotonic()
        proc.reload()
        assert time.monotonic() - started < 1     # no wait for a CLI that is gone
        wait_until(lambda: _serves(port, ""), timeout=5, what="the reloaded frontend")
    finally:
        proc.stop()


def test_work_run_beside_the_bridges_hands_its_error_to_join() -> None:
    import threading

    import pytest

    from ovnmeta.haproxy.manager import _Background
    ran: list[str] = []
    _Background(lambda: ran.append(threading.current_thread().name)).join()
    assert ran == ["ovnmeta-meanwhile"]

    def fail() -> None:
        raise RuntimeError("OVS said no")
    with pytest.raises(RuntimeError, match="OVS said no"):
        _Background(fail).join()


def test_a_config_is_read_again_only_once_it_changed(tmp_path) -> None:
    from ovnmeta.haproxy.process import read_config
    cfg = tmp_path / "x.cfg"
    proc = Process("haproxy", cfg, tmp_path / "x.pid", True)
    with pytest.raises(FileNotFoundError):
        read_config(cfg)
    assert proc.write("first\n", validate=False)
    first = read_config(cfg)
    assert first == "first\n" and read_config(cfg) is first     # not read again
    assert not proc.write("first\n", validate=False)              # unchanged
    other = tmp_path / "y"
    other.write_text("by hand, same size\n"[:len("first\n")])
    other.replace(cfg)                                            # replaced behind our back
    assert read_config(cfg) == "by han"
    cfg.write_text("edited in place, longer\n")                   # or edited in place
    assert read_config(cfg) == "edited in place, longer\n"
    cfg.unlink()
    with pytest.raises(FileNotFoundError):
        read_config(cfg)
    # What it remembers goes with the file: bridges' configs come and go for months.
    from ovnmeta.haproxy import process
    assert str(cfg) not in process._texts
    proc.write("again\n", validate=False)
    assert str(cfg) in process._texts
    proc.remove_files()
    assert str(cfg) not in process._texts and not cfg.exists()
