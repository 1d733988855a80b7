"""The socket bound before oslo.config loads: read as oslo.config reads, or not at all; and
a start that fails later hands the path back to the socket that held it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ovnmeta.agent import config, launch
from ovnmeta.agent.earlysocket import EarlySocket, read

VARIANTS = {
    "defaults": "[DEFAULT]\n",
    "state_path": "[DEFAULT]\nstate_path = {tmp}/state\n",
    "socket_from_state_path": "[DEFAULT]\nstate_path = {tmp}/s\n"
                              "metadata_proxy_socket = $state_path/m.sock\n",
    "braces": "[DEFAULT]\nstate_path = {tmp}/s\nmetadata_proxy_socket = ${{state_path}}/x\n",
    "everything": "[DEFAULT]\nstate_path = {tmp}\nlock_path = {tmp}/lock\n"
                  "metadata_proxy_socket = {tmp}/sock\nmetadata_proxy_socket_mode = group\n"
                  "metadata_proxy_user = root\nmetadata_proxy_group = root\n"
                  "metadata_backlog = 128\n# a comment\n[ovn]\nstate_path = /elsewhere\n",
    "neutron_style": "[DEFAULT]\ndebug = true\nstate_path=/var/lib/neutron\n"
                     "[agent]\nroot_helper = sudo neutron-rootwrap /etc/neutron/rootwrap.conf\n"
                     "[ovs]\novsdb_connection = tcp:127.0.0.1:6640\n",
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_reads_what_oslo_config_reads(tmp_path: Path, name: str) -> None:
    ini = tmp_path / "a.ini"
    ini.write_text(VARIANTS[name].format(tmp=tmp_path))
    later = tmp_path / "b.ini"   # a second file overrides the first, as in oslo.config
    later.write_text("[DEFAULT]\nmetadata_backlog = 77\n" if name == "everything" else "")
    argv = ["--config-file", str(ini), f"--config-file={later}"]
    early = read(argv, environ={})
    assert early is not None
    conf = config.load(argv, prog="ovnmeta-agent")
    assert early.matches(conf)
    assert early.metadata_proxy_socket == conf.metadata_proxy_socket
    if name == "everything":
        assert early.metadata_backlog == 77


@pytest.mark.parametrize("argv, text, environ", [
    (["--config-dir", "{tmp}"], "[DEFAULT]\n", {}),
    ([], "[DEFAULT]\n", {}),
    (["--config-file", "{ini}", "--help"], "[DEFAULT]\n", {}),
    (["--config-file", "{ini}"], "[DEFAULT]\n", {"OS_DEFAULT__STATE_PATH": "/x"}),
    (["--config-file", "{ini}"], "[DEFAULT]\nstate_path = '/quoted'\n", {}),
    (["--config-file", "{ini}"], "[DEFAULT]\nmetadata_proxy_socket = $other/x\n", {}),
    (["--config-file", "{ini}"], "[DEFAULT]\nmetadata_backlog = many\n", {}),
    (["--config-file", "{ini}"], "[DEFAULT]\nmetadata_proxy_socket_mode = odd\n", {}),
    (["--config-file", "{ini}"], "state_path = /no/section\n", {}),
    (["--config-file", "{tmp}/missing.ini"], "", {}),
], ids=["config-dir", "no-file", "help", "env", "quoted", "other-var", "backlog", "mode",
        "no-section", "missing"])
def test_anything_uncertain_is_left_to_oslo_config(tmp_path: Path, argv, text,
                                                   environ) -> None:
    ini = tmp_path / "a.ini"
    ini.write_text(text)
    argv = [a.format(tmp=tmp_path, ini=ini) for a in argv]
    assert read(argv, environ=environ) is None


def _listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(5)
    sock.settimeout(2)
    return sock


def _reaches(path: Path, server: socket.socket) -> bool:
    """A connection to path lands in server's backlog."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))
        server.setblocking(False)
        try:
            conn, _ = server.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


def _ini(tmp_path: Path, extra: str = "") -> Path:
    ini = tmp_path / "agent.ini"
    ini.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\nlock_path = {tmp_path}/lock\n{extra}")
    return ini


def test_takes_the_path_over_and_gives_it_back(tmp_path: Path) -> None:
    path = tmp_path / "metadata_proxy"
    neutron = _listener(path)   # neutron's agent's socket, listening with its backlog of 5
    argv = ["--config-file", str(_ini(tmp_path))]
    early = EarlySocket.take(argv)
    assert early is not None
    assert _reaches(path, early.sock) and not _reaches(path, neutron)
    assert EarlySocket.take(argv) is None   # the lock is held
    early.give_back()
    assert _reaches(path, neutron)
    assert not (tmp_path / "metadata_proxy.previous").exists()
    early.give_back()   # once only: the path stays neutron's
    assert _reaches(path, neutron)
    again = EarlySocket.take(argv)   # the lock was released
    assert again is not None
    again.keep()
    assert not (tmp_path / "metadata_proxy.previous").exists()
    again.give_back()   # after keep(), nothing is handed back
    assert _reaches(path, again.sock)


def test_a_start_failing_at_the_full_config_hands_the_socket_back(tmp_path: Path,
                                                                   capsys) -> None:
    path = tmp_path / "metadata_proxy"
    neutron = _listener(path)
    # Readable by the early reader, refused by oslo.config (an integer option).
    ini = _ini(tmp_path, "metadata_workers = several\n")
    assert launch.main(["--config-file", str(ini)]) == 2
    assert "metadata_workers" in capsys.readouterr().err
    assert _reaches(path, neutron)
    assert not (tmp_path / "metadata_proxy.previous").exists()
    taken = EarlySocket.take(["--config-file", str(ini)])   # the lock was released
    assert taken is not None
    taken.give_back()
