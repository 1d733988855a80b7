"""The real neutron-server (neutron 29, ML2/OVN) on a real MariaDB, writing the sandbox's NB.

Its venv (`.venv-neutron`, made by scripts/install.sh) is kept apart from the product's.
MariaDB runs from Debian's `mariadb-server` in a private data directory on a unix socket
(no TCP); neutron-server runs with noauth and `transport_url = fake://` (no keystone, no
RabbitMQ), as one API worker. Both are stopped by PID.

`NeutronAPI` is a small client for its REST API; `as_network` and `as_port` turn what it
returns into the records the fake VMs are built from.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ovnmeta.host import procs
from ovnmeta_testing import neutron
from ovnmeta_testing.sandbox import Sandbox, free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
NEUTRON_VENV = Path(os.environ.get("OVNMETA_NEUTRON_VENV", REPO / ".venv-neutron"))
WSGI_RUNNER = Path(__file__).with_name("neutron_wsgi.py")
PROJECT = "0d5e1b0d2b8c4c0c9a3e7b7b6f1d2e3b"


class NeutronError(RuntimeError):
    """neutron's API refused a request; the message has its status and fault."""


def available() -> str:
    """Why neutron-server cannot run here ('' when it can)."""
    if not (NEUTRON_VENV / "bin" / "neutron-db-manage").exists():
        return f"no neutron venv at {NEUTRON_VENV} (scripts/install.sh makes it)"
    if not shutil.which("mariadbd", path="/usr/sbin:/usr/bin"):
        return "no mariadbd (Debian's mariadb-server)"
    return ""


class MariaDB:
    """mariadbd in `root`, on `root/mysql.sock` only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.datadir = root / "data"
        self.socket = root / "mysql.sock"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> "MariaDB":
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.datadir / "mysql").exists():
            subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
                            "--user=root", "--auth-root-authentication-method=normal",
                            "--skip-test-db"], check=True, capture_output=True, timeout=120)
        self.proc = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.datadir}",
             f"--socket={self.socket}", "--skip-networking", "--user=root",
             f"--pid-file={self.root}/mysql.pid", f"--log-error={self.root}/mysql.err"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.sql("select 1", check=False).returncode == 0, timeout=timeout,
                   what=f"MariaDB on {self.socket}")
        return self

    def sql(self, statement: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["mariadb", "--no-defaults", "-S", str(self.socket), "-uroot",
                               "-e", statement], capture_output=True, text=True, check=check,
                              timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            procs.terminate(self.proc.pid)
            self.proc.wait(timeout=30)


class NeutronServer:
    """neutron's API with ML2/OVN against the sandbox, its database in `db`."""

    def __init__(self, root: Path, box: Sandbox, db: MariaDB, database: str = "neutron") -> None:
        self.root, self.box, self.db, self.database = root, box, db, database
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "neutron-server.log"

    def _write_config(self) -> Path:
        etc = self.root / "etc"
        (self.root / "state" / "lock").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        etc.mkdir(exist_ok=True)
        (etc / "neutron.conf").write_text(
            "[DEFAULT]\n"
            "core_plugin = ml2\nservice_plugins = ovn-router\n"
            "auth_strategy = noauth\ntransport_url = fake://\n"
            f"api_paste_config = {NEUTRON_VENV}/etc/neutron/api-paste.ini\n"
            f"state_path = {self.root}/state\nlog_file = {self.log_path}\n"
            "[database]\n"
            f"connection = mysql+pymysql://root@/{self.database}?unix_socket={self.db.socket}\n"
            f"[oslo_concurrency]\nlock_path = {self.root}/state/lock\n")
        (etc / "ml2_conf.ini").write_text(
            "[ml2]\nmechanism_drivers = ovn\ntype_drivers = local,flat,vlan,geneve\n"
            "tenant_network_types = geneve\nextension_drivers = port_security\n"
            "overlay_ip_version = 4\n"
            "[ml2_type_geneve]\nvni_ranges = 1:65536\nmax_header_size = 38\n"
            "[ml2_type_flat]\nflat_networks = *\n"
            "[ovn]\n"
            f"ovn_nb_connection = {self.box.nb_connection}\n"
            f"ovn_sb_connection = {self.box.sb_admin_connection}\n"
            "ovn_metadata_enabled = true\n")
        return etc

    def start(self, timeout: float = 90) -> "NeutronServer":
        etc = self._write_config()
        self.db.sql(f"drop database if exists {self.database}; create database {self.database}")
        env = dict(os.environ, ASGI_WORKERS="1", TMPDIR=str(self.root / "tmp"),
                   OS_NEUTRON_CONFIG_DIR=str(etc),
                   OS_NEUTRON_CONFIG_FILES="neutron.conf;ml2_conf.ini")
        subprocess.run([str(NEUTRON_VENV / "bin" / "neutron-db-manage"),
                        "--config-file", str(etc / "neutron.conf"),
                        "--config-file", str(etc / "ml2_conf.ini"), "upgrade", "heads"],
                       check=True, capture_output=True, timeout=300, env=env)
        self.proc = subprocess.Popen(
            # -P: the runner's folder must not shadow neutron (it holds our neutron.py).
            [str(NEUTRON_VENV / "bin" / "python"), "-P", str(WSGI_RUNNER), str(self.port)],
            env=env, stdout=open(self.root / "wsgi.out", "w"), stderr=subprocess.STDOUT)
        api = self.api()

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"neutron-server exited: {self.log_tail()}")
            try:
                return api.get("/v2.0/networks") is not None
            except OSError:
                return False
        wait_until(up, timeout=timeout, interval=0.3, what="neutron's API answering")
        return self

    def api(self, project: str = PROJECT) -> "NeutronAPI":
        return NeutronAPI(self.url, project)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return (self.root / "wsgi.out").read_text()

    def errors(self) -> list[str]:
        """neutron-server's own ERROR lines (what it refused or failed to do)."""
        try:
            return [line for line in self.log_path.read_text().splitlines() if " ERROR " in line]
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            procs.terminate(self.proc.pid)
            self.proc.wait(timeout=30)


class NeutronAPI:
    """The few calls of neutron's v2.0 API the tests need, as an admin of `project`."""

    def __init__(self, url: str, project: str) -> None:
        self.url, self.project = url, project

    def _call(self, method: str, path: str, body: dict | None = None) -> dict | None:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "X-Project-Id": self.project, "X-User-Id": "ovnmeta-tests", "X-Roles": "admin",
            "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise NeutronError(f"{method} {path}: {exc.code} {exc.read().decode()[:500]}") \
                from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> dict | None:
        return self._call("GET", path)

    def _create(self, kind: str, **attrs) -> dict:
        return self._call("POST", f"/v2.0/{kind}s", {kind: {"project_id": self.project,
                                                            **attrs}})[kind]

    def create_network(self, name: str, **attrs) -> dict:
        return self._create("network", name=name, **attrs)

    def create_subnet(self, network_id: str, cidr: str, **attrs) -> dict:
        version = ipaddress.ip_network(cidr).version
        if version == 6:
            attrs.setdefault("ipv6_ra_mode", "slaac")
            attrs.setdefault("ipv6_address_mode", "slaac")
        return self._create("subnet", network_id=network_id, cidr=cidr, ip_version=version,
                            **attrs)

    def create_port(self, network_id: str, **attrs) -> dict:
        return self._create("port", network_id=network_id, **attrs)

    def update_port(self, port_id: str, **attrs) -> dict:
        return self._call("PUT", f"/v2.0/ports/{port_id}", {"port": attrs})["port"]

    def delete_port(self, port_id: str) -> None:
        self._call("DELETE", f"/v2.0/ports/{port_id}")

    def delete_network(self, network_id: str) -> None:
        self._call("DELETE", f"/v2.0/networks/{network_id}")

    def ports(self, **filters: str) -> list[dict]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return self.get(f"/v2.0/ports?{query}")["ports"]

    def network(self, network_id: str) -> dict:
        return self.get(f"/v2.0/networks/{network_id}")["network"]

    def subnets(self, network_id: str) -> list[dict]:
        return self.get(f"/v2.0/subnets?network_id={network_id}")["subnets"]

    def agents(self) -> list[dict]:
        return self.get("/v2.0/agents")["agents"]

    def metadata_port(self, network_id: str, timeout: float = 20) -> dict:
        """The network's distributed port, made by neutron when a DHCP-enabled subnet
        (or the network) is created."""
        return wait_until(
            lambda: next(iter(self.ports(network_id=network_id,
                                         device_owner="network:distributed")), None),
            timeout=timeout, what=f"metadata port of network {network_id}")


def _cidrs(api: NeutronAPI, port: dict) -> tuple[str, ...]:
    prefix = {s["id"]: s["cidr"].split("/")[1] for s in api.subnets(port["network_id"])}
    return tuple(f"{ip['ip_address']}/{prefix[ip['subnet_id']]}" for ip in port["fixed_ips"])


def as_port(api: NeutronAPI, port: dict) -> neutron.Port:
    return neutron.Port(name=port["id"], network_id=port["network_id"],
                        mac=port["mac_address"], ips=_cidrs(api, port),
                        device_id=port["device_id"], project_id=port["project_id"])


def as_network(api: NeutronAPI, network_id: str) -> neutron.Network:
    """The network as the fake VMs need it: MTU, subnets and its metadata port."""
    net = api.network(network_id)
    md = as_port(api, api.metadata_port(network_id))
    return neutron.Network(id=network_id, cidrs=tuple(s["cidr"] for s in
                                                     api.subnets(network_id)),
                           metadata_port=md, mtu=net["mtu"])


@dataclass
class NeutronCloud:
    """neutron-server, its database and API, for one test module."""
    db: MariaDB
    server: NeutronServer
    api: NeutronAPI
    host: str    # the sandbox chassis's hostname: what nova passes as binding:host_id


def chassis_hostname(box: Sandbox) -> str:
    return box.sbctl("--bare", "--columns=hostname", "find", "Chassis",
                     f"name={box.chassis}").strip()


def wait_lsp(box: Sandbox, port_id: str, timeout: float = 20) -> None:
    """Until neutron's Logical_Switch_Port for `port_id` is in the NB (it writes after
    its DB transaction commits, so the API can answer first)."""
    wait_until(lambda: box.nbctl("--bare", "--columns=name", "find", "Logical_Switch_Port",
                                 f"name={port_id}").strip(), timeout=timeout,
               what=f"port {port_id} in the NB")


def start_cloud(root: Path, box: Sandbox) -> NeutronCloud:
    db = MariaDB(root / "mariadb").start()
    try:
        server = NeutronServer(root, box, db).start()
    except BaseException:
        db.stop()
        raise
    return NeutronCloud(db=db, server=server, api=server.api(), host=chassis_hostname(box))


def stop_cloud(cloud: NeutronCloud) -> None:
    try:
        cloud.server.stop()
    finally:
        cloud.db.stop()


def agent_ini(box: Sandbox, work: Path, nova_port: int, secret: str,
              venv: Path = NEUTRON_VENV, kind: str = "metadata-agent") -> Path:
    """The config neutron's own agent runs with here (neutron-ovn-metadata-agent, or
    neutron-ovn-agent with the metadata extension); ovnmeta takes over with the same file."""
    ini = work / ("ovn_agent.ini" if kind == "ovn-agent" else "neutron_ovn_metadata_agent.ini")
    ini.write_text(
        "[DEFAULT]\n"
        f"state_path = {work}\n"
        f"metadata_proxy_shared_secret = {secret}\n"
        "nova_metadata_host = 127.0.0.1\n"
        f"nova_metadata_port = {nova_port}\n"
        "debug = true\n"
        f"log_file = {work}/neutron.log\n"
        "[agent]\n"
        # As root: no sudo (its secure_path would hide the venv's privsep-helper).
        f"root_helper = env PATH={venv}/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        + ("extensions = metadata\n" if kind == "ovn-agent" else "") +
        "[ovs]\n"
        f"ovsdb_connection = {box.ovs_connection}\n"
        "[ovn]\n"
        f"ovn_sb_connection = {box.sb_connection}\n"
        f"ovn_nb_connection = {box.nb_connection}\n")
    return ini


def start_neutron_agent(ini: Path, venv: Path = NEUTRON_VENV,
                        kind: str = "metadata-agent") -> subprocess.Popen:
    """neutron's own agent, as its unit runs it, with the config agent_ini() wrote; in a
    session of its own (its haproxies outlive it, as with systemd's KillMode=process)."""
    program = "neutron-ovn-agent" if kind == "ovn-agent" else "neutron-ovn-metadata-agent"
    env = dict(os.environ, PATH=f"{venv}/bin:{os.environ['PATH']}")
    return subprocess.Popen([str(venv / "bin" / program), "--config-file", str(ini)],
                            env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 2)
