"""Plain, immutable records the pure core works on: what the SB says and what the host has.

Nothing here refers to an IDL row, a socket or a netlink object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ovnmeta.core import naming

METADATA_IP = "169.254.169.254"
METADATA_V4 = f"{METADATA_IP}/32"
METADATA_V6 = "fe80::a9fe:a9fe/128"


@dataclass(frozen=True)
class PortRecord:
    """One Port_Binding row, reduced to what the agent uses."""
    logical_port: str
    type: str
    network_id: str
    mac: tuple[str, ...]                     # the raw `mac` column: "MAC IP IP ..." entries
    external_ids: tuple[tuple[str, str], ...]
    bound_here: bool

    def ext(self, key: str, default: str = "") -> str:
        return dict(self.external_ids).get(key, default)


@dataclass(frozen=True)
class SbSnapshot:
    """Everything the SB told us that matters to this chassis, at one instant."""
    chassis: str
    ports: tuple[PortRecord, ...] = ()


@dataclass(frozen=True)
class NetworkSpec:
    """The desired host state for one metadata network."""
    network_id: str
    namespace: str
    outer: str
    inner: str
    iface_id: str          # logical port name of the localport
    mac: str
    addresses: frozenset[str]  # "ip/prefix"
    mtu: int | None
    vm_ports: int
    # (IP, MAC) of the VM ports served here (bound, and plugged for a VIF), with their
    # EUI-64 link-local addresses on an IPv6 network: kept as permanent neighbour entries,
    # so the namespace never has to resolve a client. Its own requests can go unanswered:
    # OVN never forwards the localport's broadcast ARP to a baremetal node behind a localnet
    # port, and OVN 23.03's port security drops a VM's neighbour advertisement of its own
    # link-local address (the flow matches hop limit 225, never 255). Either left a client
    # unanswered for up to 30 s, until its own entry for us expired and it asked again.
    neighbours: frozenset[tuple[str, str]] = frozenset()
    # The IPs of every VM port the SB binds here: a learned entry for one of those at
    # another MAC is stale (a deleted VM's address given to a new VM).
    vm_ips: frozenset[str] = frozenset()
    # Odd values in the rows the spec came from, worked around (an operator should know,
    # once): an MTU that is none, a localport address with no recorded prefix, a VM port
    # with no usable MAC or IP.
    notes: frozenset[str] = frozenset()

    @property
    def ipv6(self) -> bool:
        return METADATA_V6 in self.addresses


@dataclass(frozen=True)
class LinkState:
    mac: str
    mtu: int
    up: bool
    addresses: frozenset[str] = frozenset()
    tx_csum: bool = False
    neighbours: frozenset[tuple[str, str]] = frozenset()  # resolved (IP, MAC) entries
    permanent: frozenset[tuple[str, str]] = frozenset()   # permanent (IP, MAC) entries


@dataclass(frozen=True)
class ActualNetwork:
    """What exists on the host for one network id (any part may be missing)."""
    network_id: str
    namespace: bool = False
    inner: LinkState | None = None
    outer_exists: bool = False
    outer_up: bool = False
    ovs_iface_id: str | None = None   # iface-id of the outer device on the bridge, if plugged
    # What another agent (neutron's, or an older ovnmeta) left for this network: devices
    # in the namespace other than ours and lo, OVS interfaces that are not ours but carry
    # the localport's iface-id or neutron's device name, and processes inside the namespace.
    foreign_links: tuple[str, ...] = ()
    foreign_ovs: tuple[str, ...] = ()
    foreign_procs: tuple[ForeignProcess, ...] = ()   # alive: in the namespace, or signalled
    ended: tuple[ForeignProcess, ...] = ()           # signalled by the agent, and gone since
    foreign_tables: tuple[str, ...] = ()   # nftables tables ("family:name"); ovnmeta has none
    served: bool = False              # our haproxy serves this network's frontend

    @property
    def foreign(self) -> bool:
        return bool(self.foreign_links or self.foreign_ovs or self.foreign_procs
                    or self.foreign_tables)


@dataclass(frozen=True)
class ForeignProcess:
    """A process living in one of our namespaces that we did not start."""
    pid: int
    name: str                         # its command name, e.g. haproxy
    config: str = ""                  # haproxy's -f file, when it has one
    pidfile: str = ""                 # the pidfile its config names
    signal: int = 0                   # the last signal the agent sent it (0: none)
    signalled_at: float = 0.0         # when (monotonic seconds)


@dataclass(frozen=True)
class NovaEndpoint:
    """Where nova's metadata API is and how to reach it (neutron's nova_* options)."""
    hosts: tuple[str, ...]
    port: int
    protocol: str = "http"
    ca_cert: str | None = None
    client_cert: str = ""
    client_key: str = ""
    insecure: bool = False
    timeout: float = 10.0

    @classmethod
    def from_conf(cls, conf: Any) -> NovaEndpoint:
        """From the agent's [DEFAULT] nova_* options (neutron's names)."""
        return cls(
            hosts=tuple(conf.nova_metadata_host), port=conf.nova_metadata_port,
            protocol=conf.nova_metadata_protocol, ca_cert=conf.auth_ca_cert,
            client_cert=conf.nova_client_cert, client_key=conf.nova_client_priv_key,
            insecure=conf.nova_metadata_insecure,
            timeout=conf.metadata.nova_metadata_timeout
            or float(conf.metadata_haproxy.timeout_server))

    def authority(self, host: str) -> str:
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    def url(self, host: str, path_qs: str) -> str:
        return f"{self.protocol}://{self.authority(host)}{path_qs}"


# neutron's agents that provision metadata namespaces: the old metadata agent, and its
# successor when it runs the `metadata` extension.
METADATA_AGENT, OVN_AGENT = "neutron-ovn-metadata-agent", "neutron-ovn-agent"


@dataclass(frozen=True)
class NeutronAgent:
    pid: int
    name: str
    extensions: tuple[str, ...] | None   # neutron-ovn-agent's [agent] extensions; None: unknown

    @property
    def serves_metadata(self) -> bool:
        """It still provisions metadata namespaces (one whose config cannot be read is
        assumed to)."""
        return self.name == METADATA_AGENT or self.extensions is None \
            or "metadata" in self.extensions

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"


@dataclass(frozen=True)
class Frontend:
    """One network as haproxy serves it: a frontend bound in its namespace."""
    network_id: str
    namespace: str
    inner: str
    ipv6: bool

    @property
    def name(self) -> str:
        return naming.frontend(self.network_id)

    @classmethod
    def for_spec(cls, spec: NetworkSpec) -> Frontend:
        return cls(spec.network_id, spec.namespace, spec.inner, spec.ipv6)
