"""The agent refuses, in one line, a host it cannot work on: no privileges, /run/netns not
shared with the host, a directory it cannot write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ovnmeta.host import preflight

HOST = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
45 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
46 45 0:4 net:[4026532176] /run/netns/ovnmeta-a rw shared:2 - nsfs nsfs rw
"""
PLAIN_DIR = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
PRIVATE_VOLUME = """\
500 400 0:50 / / rw - overlay overlay rw
510 500 254:0 /run/netns /run/netns rw,relatime - ext4 /dev/vda rw
"""
SLAVE_VOLUME = PRIVATE_VOLUME.replace("rw,relatime -", "rw,relatime master:1 -")
SHARED_VOLUME = PRIVATE_VOLUME.replace("rw,relatime -", "rw,relatime shared:7 -")


def test_mountinfo_gives_points_and_propagation():
    mounts = preflight.parse_mountinfo(HOST)
    assert [m.point for m in mounts] == ["/", "/run/netns", "/run/netns/ovnmeta-a"]
    assert preflight.mount_of("/run/netns", mounts).propagation == {"shared:1"}
    assert preflight.mount_of("/run/netnsx", mounts).point == "/"


@pytest.mark.parametrize("text, container, ok", [
    (HOST, False, True), (HOST, True, True),
    (PLAIN_DIR, False, True),            # a host where no namespace was made yet
    (PLAIN_DIR, True, False),            # a container without the host's /run/netns
    (PRIVATE_VOLUME, True, False), (SLAVE_VOLUME, True, False), (SHARED_VOLUME, True, True),
    (PRIVATE_VOLUME, False, True),       # a host: one mount namespace for everything
])
def test_netns_must_be_shared_with_the_host(text, container, ok):
    problem = preflight.netns_problem(preflight.parse_mountinfo(text), container)
    assert (problem is None) == ok
    if not ok:
        assert "/run/netns" in problem and "shared" in problem and "\n" not in problem


def test_slave_propagation_is_named():
    problem = preflight.netns_problem(preflight.parse_mountinfo(SLAVE_VOLUME), True)
    assert "as a slave" in problem


def test_capabilities():
    assert preflight.missing_caps("000001ffffffffff") == []
    assert preflight.missing_caps("0000000000000000") == ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
    assert preflight.missing_caps(f"{1 << 12:016x}") == ["CAP_SYS_ADMIN"]


def test_a_directory_that_cannot_be_written_is_refused(tmp_path):
    preflight.writable_dir(tmp_path / "new" / "dir", "state_path")   # made if missing
    assert (tmp_path / "new" / "dir").is_dir()
    with pytest.raises(preflight.PreflightError, match=r"cannot write in /proc/x \(state_path\)"):
        preflight.writable_dir(Path("/proc/x"), "state_path")


def _agent(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "ovnmeta-agent"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


def test_the_agent_refuses_a_config_it_cannot_read(tmp_path):
    for path in (tmp_path / "missing.ini", tmp_path):   # missing; a directory
        out = _agent("--config-file", str(path))
        assert out.returncode == 2, out
        assert "Traceback" not in out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert line.startswith("ovnmeta-agent: ") and str(path) in line


def test_the_agent_refuses_a_socket_directory_it_cannot_write(tmp_path):
    ini = tmp_path / "a.ini"
    ini.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\n"
                   "metadata_proxy_socket = /proc/ovnmeta/metadata_proxy\n"
                   f"log_file = {tmp_path / 'agent.log'}\n")
    out = _agent("--config-file", str(ini))
    assert out.returncode == 2
    assert out.stderr.strip() == ("ovnmeta-agent: cannot write in /proc/ovnmeta (the directory "
                                  "of metadata_proxy_socket): No such file or directory")
    assert not (tmp_path / "metadata_proxy").exists() and not list(tmp_path.glob("*.lock"))


def test_version_is_printed_by_both_commands():
    from ovnmeta import __version__
    assert _agent("--version").stdout.strip() == __version__
    cli = Path(sys.executable).parent / "ovnmeta"
    out = subprocess.run([str(cli), "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"ovnmeta {__version__}"


def test_the_agent_refuses_to_run_without_its_capabilities(tmp_path):
    import os
    import shutil
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv (util-linux) to drop a capability")
    ini = tmp_path / "a.ini"
    ini.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\n")
    exe = Path(sys.executable).parent / "ovnmeta-agent"
    out = subprocess.run(["setpriv", "--bounding-set", "-sys_admin", "--", str(exe),
                          "--config-file", str(ini)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "lacks CAP_SYS_ADMIN and" not in out.stdout and "lacks CAP_SYS_ADMIN:" in out.stdout
    assert not (tmp_path / "metadata_proxy").exists()


def test_the_agent_refuses_a_log_it_cannot_open_and_makes_a_missing_log_dir(tmp_path):
    ini = tmp_path / "a.ini"
    ini.write_text("[DEFAULT]\nlog_file = /proc/ovnmeta/agent.log\n")
    out = _agent("--config-file", str(ini))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("ovnmeta-agent: cannot open the log: ")
    ini.write_text(f"[DEFAULT]\nlog_dir = {tmp_path / 'logs' / 'neutron'}\n"
                   "metadata_proxy_socket = /proc/ovnmeta/metadata_proxy\n")
    assert _agent("--config-file", str(ini)).returncode == 2   # stopped by the socket dir
    assert (tmp_path / "logs" / "neutron" / "ovnmeta-agent.log").exists()
