"""What the haproxy configs are made of: frontends, neutron's [metadata_haproxy] and
[metadata_rate_limiting] options, the direct path's settings, and where its files live."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ovnmeta.core.model import NovaEndpoint

MAPS_DIR = "maps"
READY_SOCKET = "ready.sock"   # the agent's readiness socket, checked by the shared haproxy
CLIENT_PEM = "nova-client.pem"   # nova_client_cert and its key in one file, for haproxy


@dataclass(frozen=True)
class RateLimit:
    """neutron's [metadata_rate_limiting]: 429 once a VM passes either window's limit."""
    ip_versions: tuple[int, ...] = (4,)
    base_window_duration: int = 10
    base_query_rate_limit: int = 10
    burst_window_duration: int = 10
    burst_query_rate_limit: int = 10


@dataclass(frozen=True)
class Timeouts:
    """neutron's [metadata_haproxy] options, in seconds."""
    connect: int = 30
    client: int = 32
    server: int = 32
    http_request: int = 30
    http_keep_alive: int = 30

    @classmethod
    def from_conf(cls, group) -> Timeouts:
        return cls(group.timeout_connect, group.timeout_client, group.timeout_server,
                   group.timeout_http_request, group.timeout_http_keep_alive)


@dataclass(frozen=True)
class NovaTls:
    """haproxy's TLS to an https nova, with neutron's meanings: nova_metadata_insecure,
    auth_ca_cert (empty: the system's CA store), nova_client_cert and nova_client_priv_key
    (haproxy wants both in one file, `client_pem`, which the manager writes)."""
    insecure: bool = False
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    client_pem: str = ""

    def server_options(self, host: str) -> str:
        """The options of the server line for `host`. haproxy checks a certificate's DNS
        names (SNI + verifyhost), not its IP addresses: for an IP the chain alone is
        checked, against auth_ca_cert (`direct_tls_refusal` keeps the system store out)."""
        opts = ["ssl"]
        if self.insecure:
            opts += ["verify none"]
        else:
            opts += ["verify required", f"ca-file {self.ca_file or '@system-ca'}"]
            if not is_ip(host):
                opts += [f"sni str({host})", f"verifyhost {host}"]
        if self.client_pem:
            opts += [f"crt {self.client_pem}"]
        return " " + " ".join(opts)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def direct_tls_refusal(nova: NovaEndpoint) -> str:
    """Why haproxy must not speak to this https nova itself (empty: it may)."""
    if nova.protocol == "https" and not nova.insecure and not nova.ca_cert and any(
            is_ip(h) for h in nova.hosts):
        return ("nova_metadata_host is an IP address and auth_ca_cert is not set: haproxy "
                "cannot check an IP against the certificate, and any certificate the "
                "system trusts would pass")
    return ""


@dataclass(frozen=True)
class Cache:
    """haproxy's cache: the fresh tier of [metadata_cache] on the direct path. It keys by
    Host and URI, and the frontend sets Host to the instance its map names; the agent says
    how long each answer may be kept (Cache-Control: max-age, never past `max_age`)."""
    total_mb: int            # its shared memory, taken as used
    max_object_bytes: int
    max_age: int             # seconds: the TTL

    @classmethod
    def from_conf(cls, group) -> Cache | None:
        """None when the cache is off. A TTL under a second (haproxy counts whole seconds)
        still sends misses to the agent, which then marks every answer no-store."""
        if not group.enabled:
            return None
        # The fresh tier holds what VMs read within one TTL: a quarter of the agent's bound
        # (16 MiB by default, some 500 VMs' boot reads) and at least 1 MiB.
        total_mb = max(1, group.max_bytes // 4 // 2**20)
        return cls(total_mb, max(1024, min(group.max_entry_bytes, total_mb * 2**20 // 2)),
                   max(1, int(group.ttl)))


@dataclass(frozen=True)
class Direct:
    """The direct path to nova (ovnmeta.haproxy.maps): where haproxy finds the maps, the
    agent's readiness check, and nova."""
    ready_socket: str
    servers: tuple[str, ...]     # haproxy server addresses of nova's hosts, TLS options after
    host_header: str
    timeout_ms: int
    tls: NovaTls | None = None
    maxconn: int = 16            # requests at nova at once; the rest queue, fairest first
    vm_maxconn: int = 4          # one VM's share; past it, the busy lane's slots (0: none)
    cache: Cache | None = None   # then known VMs' GETs go to haproxy's cache, misses to the agent

    def describe(self) -> str:
        """What haproxy does with a known VM's GET, for the agent's log."""
        if self.cache:
            return ("haproxy answers known VMs' repeated GETs from its cache (fresh for "
                    f"{self.cache.max_age} s); the rest goes through the agent")
        return "haproxy sends known VMs' GETs straight to nova at " + ", ".join(self.servers)

    @classmethod
    def for_nova(cls, ready_socket: str, nova: NovaEndpoint, client_pem: str = "",
                 maxconn: int = 16, vm_maxconn: int = 4, cache: Cache | None = None
                 ) -> Direct:
        tls = None
        if nova.protocol == "https":
            tls = NovaTls(nova.insecure, nova.ca_cert or "", nova.client_cert,
                          nova.client_key, client_pem if nova.client_cert else "")

        def server(host: str) -> str:
            address = f"ipv6@{host}:{nova.port}" if ":" in host else f"{host}:{nova.port}"
            return address + (tls.server_options(host) if tls else "")
        return cls(ready_socket, tuple(server(h) for h in nova.hosts),
                   nova.authority(nova.hosts[0]), max(1, int(nova.timeout * 1000)), tls,
                   maxconn, vm_maxconn, cache)


# haproxy's own answers on the direct path, in the words the agent uses for the same cases.
ERROR_FILES = {
    503: (502, "Bad Gateway", "Bad gateway: the nova metadata API cannot be reached"),
    502: (502, "Bad Gateway", "Bad gateway: the nova metadata API cannot be reached"),
    504: (504, "Gateway Timeout",
          "Gateway timeout: the nova metadata API did not answer in time"),
}


def error_file_text(status: int, reason: str, body: str) -> str:
    body += "\n"
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\n"
            f"Connection: close\r\n\r\n{body}")


@dataclass(frozen=True)
class Settings:
    socket: str
    maxconn: int = 1024          # per frontend
    global_maxconn: int = 8192   # per process: haproxy needs about twice this in fds
    threads: int = 1             # nbthread; 0: haproxy's default, one per CPU
    timeouts: Timeouts = Timeouts()
    user: str = ""
    group: str = ""
    log_target: str = ""
    rate_limit: RateLimit | None = None
    direct: Direct | None = None


def map_name(network_id: str) -> str:
    return f"{network_id}.map"


def map_path(directory: Path | str, network_id: str) -> str:
    """A network's map file (ovnmeta.haproxy.maps keeps its content)."""
    return f"{directory}/{map_name(network_id)}"


def shared_stats_socket(directory: Path | str) -> str:
    """The shared haproxy's stats socket in the agent's haproxy directory."""
    return str(Path(directory) / "shared.stats")


def error_file(directory: Path | str, code: int) -> Path:
    """Where the direct path's answer for haproxy's own `code` is kept."""
    return Path(directory) / f"nova-{code}.http"
