"""Runs the nova-compatible metadata server as a real process on a loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from ovnmeta_testing.novaserver import REQUESTS_PATH
from ovnmeta_testing.sandbox import free_port


class NovaProcess:
    def __init__(self, instances: dict[str, dict], secret: str, workdir: Path,
                 port: int | None = None, tls: list[str] = ()) -> None:
        self.secret = secret
        self.tls = list(tls)   # novaserver's --tls-* arguments: https, on localhost
        self.port = port or free_port()
        self.instances = dict(instances)
        self.instances_file = Path(workdir) / "instances.yaml"
        self.instances_file.write_text(yaml.safe_dump({"instances": instances}))
        self.log_path = Path(workdir) / "nova.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> "NovaProcess":
        exe = Path(sys.executable).parent / "ovnmeta-nova-metadata"
        self.proc = subprocess.Popen(
            [str(exe), "--instances", str(self.instances_file), "--secret", self.secret,
             "--port", str(self.port),
             *(["--host", "localhost", *self.tls] if self.tls else [])],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "a"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nova server exited: {self.log_path.read_text()}")
                time.sleep(0.05)
        raise RuntimeError("nova server did not start listening")

    def add_instance(self, instance_id: str, data: dict) -> None:
        """A new instance, or new data for one, known to the running server from its next
        request on."""
        self.instances[instance_id] = data
        tmp = self.instances_file.with_suffix(".new")
        tmp.write_text(yaml.safe_dump({"instances": self.instances}))
        tmp.replace(self.instances_file)

    def requests(self) -> int:
        """VMs' requests that reached this server since it started (not haproxy's health
        checks, which carry no X-Forwarded-For)."""
        url = f"http://127.0.0.1:{self.port}{REQUESTS_PATH}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.read())

    def peak_in_flight(self, instance_id: str) -> int:
        """The most of this instance's requests the server has had at once (its log says)."""
        marker = f"instance {instance_id}: "
        peaks = [int(line.split(marker, 1)[1].split()[0])
                 for line in self.log_path.read_text().splitlines() if marker in line]
        return max(peaks, default=0)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
