"""An HTTP server that answers with the request headers it received, as JSON.

Stands in for nova when a test cares about exactly what reaches nova through haproxy and
the agent.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from ovnmeta_testing.sandbox import wait_until

if TYPE_CHECKING:
    from ovnmeta_testing.vm import FakeVM


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps({"path": self.path,
                           "headers": [[k.lower(), v] for k, v in self.headers.items()]})
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # haproxy resets the connections it is done with (checks, idle keep-alive ones of an
        # exiting worker): not an error of the test, so no traceback in its output.
        if not isinstance(sys.exc_info()[1], ConnectionResetError):
            super().handle_error(request, client_address)


class EchoServer:
    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "EchoServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def fetch(vm: FakeVM, *headers: str, url: str = "http://169.254.169.254/latest/meta-data/",
          timeout: float = 2) -> dict | None:
    """The echo server's view of a request sent from the VM, or None when it fails."""
    argv = ["curl", "-sf", "-m", str(timeout)]
    for h in headers:
        argv += ["-H", h]
    proc = vm.exec(*argv, url, check=False, timeout=timeout + 5)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)


def instance(vm: FakeVM) -> str | None:
    """The instance id the VM's request reached nova with, or None."""
    seen = fetch(vm)
    return dict(seen["headers"]).get("x-instance-id") if seen else None


def wait_served(vm: FakeVM, timeout: float = 15) -> dict:
    return wait_until(lambda: fetch(vm, timeout=1), timeout=timeout,
                      what=f"metadata reachable from {vm.netns}")
