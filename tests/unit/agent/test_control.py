"""The control socket's server and the CLI's client, over a real unix socket."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path

import pytest

from ovnmeta.agent import control
from ovnmeta.core.model import PortRecord
from ovnmeta.core.portindex import PortIndex


def _index() -> PortIndex:
    vm = PortRecord("vm", "", "net-1", ("fa:16:3e:00:00:05 10.0.0.5",),
                    (("neutron:device_id", "iid-5"), ("neutron:project_id", "p")), True)
    return PortIndex.build([vm])


@pytest.fixture
def control_sock(tmp_path: Path):
    """The control server on a real socket, in its own event loop thread."""
    path = str(tmp_path / control.CONTROL_SOCKET)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen(16)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    app = control.make_app(lambda: {"networks": {"net-1": {}}, "pid": os.getpid()}, _index)
    thread = threading.Thread(target=loop.run_until_complete,
                              args=(control.serve(app, sock, stop),))
    thread.start()
    yield path
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


def test_status_and_lookup_answer_json(control_sock: str) -> None:
    assert control.request(control_sock, "/status") == (
        200, {"networks": {"net-1": {}}, "pid": os.getpid()})
    code, body = control.request(control_sock, "/lookup?network=net-1&ip=10.0.0.5")
    assert code == 200 and body["instance_id"] == "iid-5"


def test_a_miss_a_bad_address_and_an_unknown_path_are_errors_with_a_reason(
        control_sock: str) -> None:
    code, body = control.request(control_sock, "/lookup?network=net-1&ip=10.0.0.6")
    assert code == 404 and "10.0.0.6" in body["error"]
    code, body = control.request(control_sock, "/lookup?network=net-1&ip=not-an-ip")
    assert code == 400 and body["error"]
    code, body = control.request(control_sock, "/nothing")
    assert code == 404 and "/nothing" in body["error"]
    code, body = control.request(control_sock, "/memory?top=x")
    assert code == 400 and "top" in body["error"]


def test_memory_says_how_to_trace(control_sock: str) -> None:
    code, body = control.request(control_sock, "/memory?top=3")
    assert code == 200 and body["tracing"] is False and "PYTHONTRACEMALLOC" in body["hint"]


def test_no_agent_is_an_os_error_for_the_cli(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        control.request(str(tmp_path / "absent.sock"), "/status", timeout=1)
