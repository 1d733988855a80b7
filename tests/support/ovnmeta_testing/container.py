"""ovnmeta's image run as kolla-ansible runs `neutron_ovn_metadata_agent`, with podman.

kolla's contract (kolla-ansible's neutron role): privileged, host network, host PID and
host cgroup namespace; `/run/netns` and `/run/openvswitch` shared; a named volume at
/var/lib/neutron/kolla holding state_path and the metadata socket; neutron.conf and
neutron_ovn_metadata_agent.ini in /etc/neutron; its fixed command line; and the health check
`healthcheck_port neutron-ovn-metadata-agent 6640` against OVS over TCP.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
KOLLA_COMMAND = ["neutron-ovn-metadata-agent", "--config-file", "/etc/neutron/neutron.conf",
                 "--config-file", "/etc/neutron/neutron_ovn_metadata_agent.ini"]
KOLLA_STATE = "/var/lib/neutron/kolla"
HEALTH_CMD = "healthcheck_port neutron-ovn-metadata-agent 6640"
OVS_TCP_REMOTE = "ptcp:6640:127.0.0.1"   # the OVS DB where kolla's ini and check look
# OpenStack-Helm's health-probe.py: a GET over the metadata socket that fails on >= 500.
HELM_PROBE = (b"GET / HTTP/1.1\r\nHost: 169.254.169.254\r\n"
              b"X-Forwarded-For: 169.254.169.254\r\n"
              b"X-Neutron-Router-ID: pod-health-probe-check-ignore-errors\r\n"
              b"Connection: close\r\n\r\n")


def podman_env() -> dict[str, str]:
    """podman's environment on this machine (scripts/podman_env.sh writes the conf)."""
    out = subprocess.run(["bash", "-c", f". {ROOT}/scripts/podman_env.sh && "
                                        "echo $CONTAINERS_CONF"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return {**os.environ, "CONTAINERS_CONF": out}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check,
                          timeout=timeout, env=podman_env())


def build_image(tag: str) -> int:
    """Build ovnmeta's image (scripts/build_image.sh); its size in bytes."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build_image.sh"), tag],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"build_image.sh failed:\n{out.stdout}\n{out.stderr}")
    return int(out.stdout.split()[1])


def kolla_configs(directory: Path, sb: str, nova_port: int, secret: str,
                  workers: int = 2, default_extra: str = "") -> Path:
    """neutron.conf and neutron_ovn_metadata_agent.ini as kolla-ansible renders them (the
    options that matter here, and some the agent only has to accept)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "neutron.conf").write_text(
        "[DEFAULT]\n"
        "debug = True\n"
        "log_dir = /var/log/kolla/neutron\n"
        "use_stderr = False\n"
        f"state_path = {KOLLA_STATE}\n"
        "host = ovnmeta-chassis-1\n"
        "api_paste_config = /etc/neutron/api-paste.ini\n"
        "interface_driver = openvswitch\n"
        "transport_url = rabbit://openstack:secret@127.0.0.1:5672//\n"
        "[oslo_concurrency]\n"
        "lock_path = /var/lib/neutron/tmp\n"
        "[agent]\n"
        "root_helper = sudo neutron-rootwrap /etc/neutron/rootwrap.conf\n"
        "[database]\n"
        "connection = mysql+pymysql://neutron:secret@127.0.0.1:3306/neutron\n"
        "[keystone_authtoken]\n"
        "www_authenticate_uri = http://127.0.0.1:5000\n"
        "auth_type = password\n")
    (directory / "neutron_ovn_metadata_agent.ini").write_text(
        "[DEFAULT]\n"
        "nova_metadata_host = 127.0.0.1\n"
        f"nova_metadata_port = {nova_port}\n"
        "nova_metadata_protocol = http\n"
        f"metadata_proxy_shared_secret = {secret}\n"
        f"metadata_proxy_socket = {KOLLA_STATE}/metadata_proxy\n"
        f"metadata_workers = {workers}\n"
        f"{default_extra}"
        "[ovs]\n"
        "ovsdb_connection = tcp:127.0.0.1:6640\n"
        "[ovn]\n"
        f"ovn_sb_connection = {sb}\n"
        "[metrics]\n"
        "listen =\n")
    return directory


class KollaContainer:
    """One `neutron_ovn_metadata_agent` container and its named volume."""

    def __init__(self, image: str, configs: Path, logs: Path,
                 name: str = "ovnmeta_test_neutron_ovn_metadata_agent",
                 volume: str = "ovnmeta_test_neutron_metadata_socket") -> None:
        self.image, self.configs, self.logs = image, configs, logs
        self.name, self.volume = name, volume
        logs.mkdir(parents=True, exist_ok=True)

    def mounts(self) -> list[str]:
        Path("/run/openvswitch").mkdir(parents=True, exist_ok=True)
        return ["-v", "/run/netns:/run/netns:shared",
                "-v", "/run/openvswitch:/run/openvswitch:shared",
                "-v", f"{self.volume}:{KOLLA_STATE}/",
                "-v", f"{self.configs}:/etc/neutron:ro",
                "-v", f"{self.logs}:/var/log/kolla"]

    def run(self, image: str | None = None, extra: tuple[str, ...] = ()) -> None:
        self.image = image or self.image
        podman("run", "-d", "--name", self.name, "--privileged", "--network", "host",
               "--pid", "host", "--cgroupns", "host", *self.mounts(),
               "--health-cmd", HEALTH_CMD, *extra, self.image, *KOLLA_COMMAND)

    def stop(self, timeout: int = 10) -> None:
        podman("stop", "-t", str(timeout), self.name, check=False)

    def remove(self) -> None:
        podman("rm", "-f", self.name, check=False)

    def restart(self, timeout: int = 10) -> None:
        podman("restart", "-t", str(timeout), self.name)

    def running(self) -> bool:
        out = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return out.stdout.strip() == "true"

    def health(self) -> tuple[bool, str]:
        """kolla's health check, run by podman in the container: (passed, what it said)."""
        out = podman("healthcheck", "run", self.name, check=False)
        said = (out.stdout + out.stderr).strip()
        if self.running():   # what the check printed is in the health log
            state = json.loads(podman("inspect", "--format", "{{json .State}}",
                                      self.name).stdout)
            log = (state.get("Health") or state.get("Healthcheck") or {}).get("Log") or []
            if log:
                said = log[-1].get("Output", "").strip() or said
        return out.returncode == 0, said

    def ovnmeta(self, *args: str) -> subprocess.CompletedProcess:
        """`ovnmeta` run in the container with kolla's config files."""
        return podman("exec", self.name, "ovnmeta", "--config-file", "/etc/neutron/neutron.conf",
                      "--config-file", "/etc/neutron/neutron_ovn_metadata_agent.ini", *args,
                      check=False)

    def volume_path(self) -> Path:
        out = podman("volume", "inspect", "--format", "{{.Mountpoint}}", self.volume)
        return Path(out.stdout.strip())

    def helm_probe(self, timeout: float = 5.0) -> int:
        """OpenStack-Helm's probe request over the metadata socket: the HTTP status."""
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.volume_path() / "metadata_proxy"))
            sock.sendall(HELM_PROBE)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        finally:
            sock.close()
        return int(data.split(b" ", 2)[1])

    def agent_log(self) -> str:
        path = self.logs / "neutron" / "neutron-ovn-metadata-agent.log"
        return path.read_text() if path.exists() else ""

    def serving_count(self) -> int:
        return self.agent_log().count("serving metadata on")

    def wait_serving(self, count: int, timeout: float = 60) -> float:
        """Seconds until the agent's log says 'serving metadata' for the count-th time."""
        start = time.monotonic()
        while self.serving_count() < count:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{self.name}: no 'serving metadata' #{count} in "
                                   f"{timeout:g} s:\n{self.agent_log()[-3000:]}\n"
                                   f"{podman('logs', self.name, check=False).stderr[-2000:]}")
            time.sleep(0.1)
        return time.monotonic() - start

    def cleanup(self) -> None:
        """Stop it, remove what its agent built (ovnmeta cleanup, from the same image and
        mounts), then the container and the volume."""
        self.stop()
        self.remove()
        podman("run", "--rm", "--privileged", "--network", "host", "--pid", "host",
               "--cgroupns", "host", *self.mounts(), self.image, "ovnmeta",
               "--config-file", "/etc/neutron/neutron.conf", "--config-file",
               "/etc/neutron/neutron_ovn_metadata_agent.ini", "cleanup", check=False,
               timeout=120)
        podman("volume", "rm", "-f", self.volume, check=False)

    def inspect(self) -> dict:
        return json.loads(podman("inspect", self.name).stdout)[0]
