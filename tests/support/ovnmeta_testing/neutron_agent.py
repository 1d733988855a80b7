"""A stand-in for neutron's running agent during a swap: a process that the host sees as
`neutron-ovn-metadata-agent` (or `neutron-ovn-agent`), serving metadata_proxy_socket.

It does on the socket what neutron's agent does: unlinks the path and binds it at start,
answers haproxy's requests, and on SIGTERM exits without removing the path. Its answers are
the instance each client address belongs to, so a probe tells which agent was right.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ovnmeta.host import procs

SERVER = '''
import json, os, signal, socketserver, sys
from http.server import BaseHTTPRequestHandler
path, table = sys.argv[1], json.loads(sys.argv[2])

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        client = (self.headers.get_all("X-Forwarded-For") or [""])[-1].strip()
        uuid = table.get(client)
        body = json.dumps({"uuid": uuid} if uuid else {}).encode()
        self.send_response(200 if uuid else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 4096   # neutron's metadata_backlog default

    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("local", 0)

if os.path.exists(path):
    os.unlink(path)
server = Server(path, Handler)
os.chmod(path, 0o666)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
print("serving", flush=True)
server.serve_forever()
'''


class FakeNeutronAgent:
    def __init__(self, name: str, socket_path: str, table: dict[str, str], workdir: Path,
                 config: str = "") -> None:
        self.name, self.socket_path, self.table = name, socket_path, table
        self.workdir = Path(workdir)
        self.config = config
        self.proc: subprocess.Popen | None = None

    def start(self) -> FakeNeutronAgent:
        script = self.workdir / self.name   # the process's name, as /proc shows it
        script.write_text(SERVER)
        argv = [shutil.which("python3") or sys.executable, str(script), self.socket_path,
                json.dumps(self.table)]
        if self.config:
            ini = self.workdir / f"{self.name}.ini"
            ini.write_text(self.config)
            argv += ["--config-file", str(ini)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()
        return self

    def stop(self) -> None:
        """SIGTERM, as systemctl stop with KillMode=process sends."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def running(self) -> bool:
        return self.proc is not None and procs.running(self.proc.pid)

