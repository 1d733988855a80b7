"""Every configuration option of ovnmeta, in one place.

Names follow neutron_ovn_metadata_agent.ini wherever the meaning is the same, so an
operator can point ovnmeta at the config file they already have.
"""

from __future__ import annotations

from oslo_config import cfg, types

from ovnmeta import __version__
from ovnmeta.agent import compat, logs
from ovnmeta.core import registration

# neutron's options, with neutron's types, ranges and defaults; help is ovnmeta's.
SERVER_REGEX = r"^(tcp|ssl|unix):.+"

DEFAULT_OPTS = [
    cfg.StrOpt("state_path", default="/var/lib/neutron",
               help="Directory of the agent's state: the metadata socket, haproxy configs "
                    "(haproxy/), the control socket. neutron's default, so that the socket "
                    "is where neutron's haproxies already send requests."),
    cfg.StrOpt("lock_path", default="/run/lock/ovnmeta-agent.lock",
               help="Host-wide lock that keeps a second agent off this host (namespaces are "
                    "per host, whatever the state_path); the file names the holder's PID."),
    cfg.StrOpt("metadata_proxy_shared_secret", default="", secret=True,
               help="Secret shared with nova's metadata API; signs X-Instance-ID."),
    cfg.ListOpt("nova_metadata_host", default=["127.0.0.1"],
                item_type=types.HostAddress(),
                help="Nova metadata API host (IP or DNS name). ovnmeta also takes a comma "
                     "separated list: a request fails over to the next host when one "
                     "cannot be reached."),
    cfg.PortOpt("nova_metadata_port", default=8775, help="Nova metadata API port."),
    cfg.StrOpt("nova_metadata_protocol", default="http", choices=["http", "https"],
               help="Protocol used to reach the nova metadata API."),
    cfg.BoolOpt("nova_metadata_insecure", default=False,
                help="Do not verify nova's certificate when using https."),
    cfg.StrOpt("auth_ca_cert", help="CA bundle that signs nova's https certificate."),
    cfg.StrOpt("nova_client_cert", default="", help="Client certificate for nova (https)."),
    cfg.StrOpt("nova_client_priv_key", default="", help="Key of nova_client_cert."),
    cfg.StrOpt("metadata_proxy_socket", default="$state_path/metadata_proxy",
               help="Unix socket on which the agent serves haproxy's requests."),
    cfg.StrOpt("metadata_proxy_socket_mode", default="deduce",
               choices=["deduce", "user", "group", "all"],
               help="Permissions of the socket: 'user' 0o644, 'group' 0o664, 'all' 0o666; "
                    "'deduce' picks from metadata_proxy_user/group."),
    cfg.StrOpt("metadata_proxy_user", default="",
               help="Owner of the socket and user haproxy runs as (empty: the agent's)."),
    cfg.StrOpt("metadata_proxy_group", default="",
               help="Group of the socket and group haproxy runs as (empty: the agent's)."),
    cfg.IntOpt("metadata_workers", default=0, min=0,
               help="Processes serving the metadata socket. 0 (neutron's value for ML2/OVN) "
                    "or 1: the agent serves it alone; N > 1: the agent plus N - 1 workers, "
                    "each with its own SB view."),
    cfg.IntOpt("metadata_backlog", default=4096, min=1,
               help="Listen backlog of the metadata socket."),
    cfg.BoolOpt("helpers_outlive_container", default=True,
                help="In a container: start haproxy and the socket keeper in a cgroup of "
                     "their own beside the container's (needs the host's cgroup namespace, "
                     "--cgroupns host), so that they outlive a restart or an image update "
                     "of the agent's container and no request is lost meanwhile. They are "
                     "then outside the container's resource limits. False: they stop with "
                     "the container. Not used outside a container (systemd: "
                     "KillMode=process)."),
]

OVN_OPTS = [
    cfg.ListOpt("ovn_sb_connection", default=["tcp:127.0.0.1:6642"],
                item_type=types.String(regex=SERVER_REGEX),
                help="OVN Southbound DB remote(s), comma separated: tcp:IP:PORT, "
                     "ssl:IP:PORT or unix:PATH."),
    cfg.StrOpt("ovn_sb_private_key", default="", help="Private key for ssl: SB remotes."),
    cfg.StrOpt("ovn_sb_certificate", default="", help="Certificate for ssl: SB remotes."),
    cfg.StrOpt("ovn_sb_ca_cert", default="", help="CA certificate for ssl: SB remotes."),
    cfg.IntOpt("ovsdb_connection_timeout", default=180, min=1,
               help="Seconds to wait for an OVSDB command."),
    cfg.IntOpt("ovsdb_probe_interval", default=60000, min=0,
               help="Milliseconds between inactivity probes to the SB (0 disables)."),
]

OVS_OPTS = [
    cfg.StrOpt("ovsdb_connection", default="unix:/var/run/openvswitch/db.sock",
               regex=SERVER_REGEX,
               help="The local Open_vSwitch DB. (neutron's default names a source-install "
                    "path, /usr/local/var/run/...; this is where distributions put it.)"),
    cfg.IntOpt("ovsdb_timeout", default=10, min=1,
               help="Seconds to wait for a local OVSDB command."),
]

METADATA_OPTS = [
    cfg.StrOpt("instance_id_key", default="neutron:device_id",
               help="Port_Binding external_ids key holding the instance id."),
    cfg.StrOpt("project_id_key", default="neutron:project_id",
               help="Port_Binding external_ids key holding the project id."),
    cfg.StrOpt("cidrs_key", default="neutron:cidrs",
               help="Port_Binding external_ids key holding the port's CIDRs."),
    cfg.FloatOpt("nova_metadata_timeout", min=0.1,
                 help="Seconds to wait for nova before answering 504, on the direct path "
                      "and through the agent. Unset: [metadata_haproxy] timeout_server "
                      "(32 s), as long as neutron's haproxy waits: nova's dynamic "
                      "vendordata can take tens of seconds (LP #2154609)."),
    cfg.FloatOpt("reconcile_interval", default=60.0, min=1.0,
                 help="Seconds within which every network is looked at again even "
                      "without events: a few networks at every pass (each second), not "
                      "all at once."),
    cfg.StrOpt("register_as", default="auto", choices=list(registration.MODES),
               help="How neutron-server lists this host's metadata service. "
                    "'metadata-agent': as neutron-ovn-metadata-agent (removes "
                    "neutron-ovn-agent's keys); 'ovn-agent': as neutron-ovn-agent with the "
                    "metadata extension, the same agent row (removes the metadata agent's "
                    "keys); 'beside-ovn-agent': as the metadata agent, while "
                    "neutron-ovn-agent keeps running other extensions (never touches its "
                    "keys). 'auto', chosen at start: beside-ovn-agent when [agent] "
                    "extensions lists anything but metadata, else ovn-agent when "
                    "Chassis_Private has neutron:ovn-neutron-agent-id, else "
                    "metadata-agent. The log says which and why."),
]

HAPROXY_OPTS = [
    cfg.StrOpt("mode", default="shared", choices=["shared", "per-network"],
               help="'shared': one haproxy binding in every namespace; 'per-network': one "
                    "haproxy process per network (neutron's layout)."),
    cfg.StrOpt("haproxy_path", default="haproxy", help="The haproxy binary."),
    cfg.IntOpt("bridges", default=4, min=0,
               help="Shared mode: a network new to the shared haproxy is served first by a "
                    "haproxy of its own with that network alone (a bridge: it listens "
                    "10-20 ms after it starts, where the shared haproxy's reload takes "
                    "50-150 ms at 200 networks), soft-stopped once the shared one has "
                    "loaded it. At most this many bridges a pass; a pass with more new "
                    "networks (a cold start) only reloads. 0: no bridges."),
    cfg.StrOpt("templates_dir", default="",
               help="Directory of the haproxy jinja2 templates (empty: the bundled ones)."),
    cfg.StrOpt("log_target", default="",
               help="Where haproxy sends one line per request (its `log` address, e.g. "
                    "/dev/log or 127.0.0.1:514); empty: no haproxy logging."),
    cfg.IntOpt("maxconn", default=1024, min=1, help="haproxy maxconn per frontend."),
    cfg.IntOpt("global_maxconn", default=8192, min=1,
               help="haproxy maxconn per process: in shared mode, for all networks together. "
                    "haproxy needs about twice as many file descriptors."),
    cfg.IntOpt("threads", default=1, min=0,
               help="haproxy's threads per process (nbthread); 0: haproxy's default, one "
                    "per CPU. One thread serves thousands of metadata requests a second; "
                    "more, on a host whose CPUs are busy with VMs, spend their time "
                    "waiting for each other (measured: 3x the CPU per request on 2 "
                    "busy cores)."),
    cfg.BoolOpt("direct_path", default=True,
                help="haproxy sends a known VM's GET and HEAD straight to nova, signed from "
                     "per-network maps the agent keeps current, while the agent and nova "
                     "pass haproxy's checks. Misses, POSTs and anything else go through the "
                     "agent. Needs mode = shared (otherwise every request goes through the "
                     "agent); https nova uses the [DEFAULT] TLS options as the agent does."),
    cfg.IntOpt("nova_maxconn", default=16, min=1,
               help="Direct path: requests haproxy has at nova at once. Past it they wait "
                    "in haproxy (up to nova_metadata_timeout), a VM with fewer requests "
                    "in flight ahead of one with more, so a VM flooding nova delays its "
                    "own requests, not its neighbours'. Not used with "
                    "[metadata_rate_limiting], which caps each VM itself."),
    cfg.IntOpt("nova_vm_maxconn", default=4, min=0,
               help="Direct path: one VM's share of nova. Its requests past this many in "
                    "flight wait for a busy lane of this many slots (per nova server), "
                    "shared by every VM past its share, so a VM flooding nova has at most "
                    "that many requests there ahead of its neighbours'. Queued, never "
                    "refused. 0: no busy lane. Not used with [metadata_rate_limiting]."),
]

HAPROXY_TIMEOUT_OPTS = [  # neutron's [metadata_haproxy], names and defaults
    cfg.IntOpt("timeout_connect", default=30, min=1,
               help="Seconds haproxy waits to connect to the agent's socket."),
    cfg.IntOpt("timeout_client", default=32, min=1,
               help="Seconds of inactivity haproxy allows on the VM's side."),
    cfg.IntOpt("timeout_server", default=32, min=1,
               help="Seconds of inactivity haproxy allows on the agent's (nova's) side."),
    cfg.IntOpt("timeout_http_request", default=30, min=1,
               help="Seconds haproxy waits for a complete request from a VM."),
    cfg.IntOpt("timeout_http_keep_alive", default=30, min=1,
               help="Seconds haproxy keeps an idle keep-alive connection of a VM open."),
]

RATE_LIMIT_OPTS = [  # neutron's names, types and defaults
    cfg.BoolOpt("rate_limit_enabled", default=False,
                help="Limit the metadata requests a VM may make (429 beyond the limits)."),
    cfg.ListOpt("ip_versions", default=[4], item_type=types.Integer(choices=[4, 6]),
                help="Client address versions that are rate limited (4, 6 or both)."),
    cfg.IntOpt("base_window_duration", default=10, min=1,
               help="Seconds of the base window."),
    cfg.IntOpt("base_query_rate_limit", default=10, min=1,
               help="Requests a VM may make within the base window."),
    cfg.IntOpt("burst_window_duration", default=10, min=1,
               help="Seconds of the burst window."),
    cfg.IntOpt("burst_query_rate_limit", default=10, min=1,
               help="Requests a VM may make within the burst window."),
]

METRICS_OPTS = [
    cfg.StrOpt("listen", default="127.0.0.1:9812",
               regex=r"^$|^(\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):[0-9]{1,5}$",
               help="HOST:PORT ([IPv6]:PORT) where Prometheus scrapes /metrics; empty "
                    "disables the endpoint."),
]

CACHE_OPTS = [
    cfg.BoolOpt("enabled", default=True,
                help="Keep nova's answers on this host, per instance: a repeated GET within "
                     "ttl is answered without asking nova (by haproxy's cache on the direct "
                     "path, by the agent otherwise), and when nova fails (5xx, refused, "
                     "timed out) the last good answer is served, marked X-OVNMeta-Cache: "
                     "stale. A request with nothing kept gets a prompt 503 while nova is "
                     "failing. Safe on by default: answers are keyed by the instance the "
                     "agent identified, never by what a VM sends; they are as fresh as "
                     "nova's own cache (ttl); the password is never kept. The trade-off: a "
                     "VM rebuilt while nova is down gets its old data until nova is back. "
                     "Off: every request goes to nova, as neutron's agent does. With "
                     "metadata_workers > 1 each process keeps the answers it was given."),
    cfg.FloatOpt("ttl", default=15.0, min=0.0,
                 help="Seconds an answer is served without asking nova: nova's "
                      "[api] metadata_cache_expiration. 0: always ask nova, keep answers "
                      "only for its failures."),
    cfg.FloatOpt("max_stale", default=86400.0, min=0.0,
                 help="Seconds the last good answer may stand in for a failing nova. A day "
                      "covers an outage or an upgrade of the API; older data is refused "
                      "rather than served."),
    cfg.IntOpt("max_bytes", default=64 * 1024 * 1024, min=0,
               help="Bytes of answers kept on this host, least recently used first, the "
                    "instance holding the most evicted first."),
    cfg.IntOpt("max_entry_bytes", default=1024 * 1024, min=0,
               help="A larger answer is passed through, never kept."),
    cfg.FloatOpt("stale_after", default=5.0, min=0.1,
                 help="Seconds to wait for nova, when an answer is kept, before that answer "
                      "is served instead (nova's, when it comes, is still kept). Under the "
                      "10 s cloud-init's OpenStack datasource waits for a read, so a hung "
                      "nova fails no read that has an answer kept."),
]

GROUPS: dict[str | None, list[cfg.Opt]] = {
    None: DEFAULT_OPTS,
    "ovn": OVN_OPTS,
    "ovs": OVS_OPTS,
    "metadata": METADATA_OPTS,
    "haproxy": HAPROXY_OPTS,
    "metadata_haproxy": HAPROXY_TIMEOUT_OPTS,
    "metadata_rate_limiting": RATE_LIMIT_OPTS,
    "metrics": METRICS_OPTS,
    "metadata_cache": CACHE_OPTS,
}
# Every other option of neutron's agent, accepted with its type and ignored.
_KNOWN = {g: {o.name for o in opts} for g, opts in GROUPS.items()}
_KNOWN[None] |= logs.option_names()
COMPAT: dict[str | None, list[cfg.Opt]] = compat.unused_opts(_KNOWN)


def register(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    for group, opts in GROUPS.items():
        conf.register_opts(opts, group=group)
    logs.register(conf)
    for group, opts in COMPAT.items():
        conf.register_opts(opts, group=group)
    return conf


def load(argv: list[str], prog: str) -> cfg.ConfigOpts:
    """Parse the command line and config files into a fresh ConfigOpts."""
    conf = register(cfg.ConfigOpts())
    conf(argv, project="ovnmeta", prog=prog, version=__version__)
    # oslo.config checks a value only when it is read: read them all now, so a broken
    # config stops the agent at start with the option's name, not later with a traceback.
    for group, opts in [*GROUPS.items(), *COMPAT.items()]:
        node = conf if group is None else getattr(conf, group)
        for opt in opts:
            getattr(node, opt.dest)
    return conf


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Entry point for oslo-config-generator: ovnmeta's own options (neutron's others are
    accepted but not documented in the sample)."""
    return [(group or "DEFAULT", opts) for group, opts in GROUPS.items()]
