"""The systemd notifier (agent/sdnotify.py) against a real datagram socket."""

from __future__ import annotations

import os
import socket

import pytest

from ovnmeta.agent import sdnotify


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def test_notifier_ready_once_status_on_change_and_watchdog(notify_socket, monkeypatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    n = sdnotify.Notifier.from_environment()
    assert "NOTIFY_SOCKET" not in os.environ  # haproxy and workers don't inherit it
    n.pet()
    assert notify_socket.recv(100) == b"WATCHDOG=1"
    n.pet()  # within the half interval: nothing
    n.serving(2, 3)
    assert notify_socket.recv(100) == b"READY=1\nSTATUS=serving 2 network(s), 3 VM port(s)"
    n.serving(2, 3)
    n.serving(1, 1)
    assert notify_socket.recv(100) == b"STATUS=serving 1 network(s), 1 VM port(s)"
    with pytest.raises(TimeoutError):
        notify_socket.recv(100)


def test_notifier_without_systemd_is_silent(monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = sdnotify.Notifier.from_environment()
    assert n.send("READY=1") is False
    n.serving(1, 1)
    n.pet()
