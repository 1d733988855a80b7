"""Every configuration option of ovnmeta, in one place.

Names follow neutron_ovn_metadata_agent.ini wherever the meaning is the same, so an
operator can point ovnmeta at the config file they already have.
"""

from __future__ import annotations

from oslo_config import cfg

DEFAULT_OPTS = [
    cfg.StrOpt("state_path", default="/var/lib/ovnmeta",
               help="Directory for the agent's lock, sockets and haproxy configs."),
    cfg.BoolOpt("debug", default=False, help="Log at DEBUG level."),
    cfg.StrOpt("lock_path", default="/run/lock/ovnmeta-agent.lock",
               help="Host-wide lock that keeps a second agent off this host (namespaces are "
                    "per host, whatever the state_path); the file names the holder's PID."),
    cfg.StrOpt("metadata_proxy_shared_secret", default="", secret=True,
               help="Secret shared with nova's metadata API; signs X-Instance-ID."),
    cfg.ListOpt("nova_metadata_host", default=["127.0.0.1"],
                help="Nova metadata API host(s). With several, a request fails over to the "
                     "next one when a host cannot be reached."),
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
    cfg.IntOpt("metadata_workers", default=1, min=1,
               help="Processes serving the metadata socket: the agent plus this many minus "
                    "one workers, each with its own SB view. One asyncio process serves "
                    "thousands of requests per second; add workers on busy hosts."),
    cfg.IntOpt("metadata_backlog", default=4096, min=1,
               help="Listen backlog of the metadata socket."),
]

OVN_OPTS = [
    cfg.StrOpt("ovn_sb_connection", default="tcp:127.0.0.1:6642",
               help="OVN Southbound DB remote(s), comma separated: tcp:IP:PORT, "
                    "ssl:IP:PORT or unix:PATH."),
    cfg.StrOpt("ovn_sb_private_key", default="", help="Private key for ssl: SB remotes."),
    cfg.StrOpt("ovn_sb_certificate", default="", help="Certificate for ssl: SB remotes."),
    cfg.StrOpt("ovn_sb_ca_cert", default="", help="CA certificate for ssl: SB remotes."),
    cfg.IntOpt("ovsdb_connection_timeout", default=180,
               help="Seconds to wait for an OVSDB command."),
    cfg.IntOpt("ovsdb_probe_interval", default=60000,
               help="Milliseconds between inactivity probes to the SB (0 disables)."),
]

OVS_OPTS = [
    cfg.StrOpt("ovsdb_connection", default="unix:/var/run/openvswitch/db.sock",
               help="The local Open_vSwitch DB."),
    cfg.IntOpt("ovsdb_timeout", default=10, help="Seconds to wait for a local OVSDB command."),
]

METADATA_OPTS = [
    cfg.StrOpt("instance_id_key", default="neutron:device_id",
               help="Port_Binding external_ids key holding the instance id."),
    cfg.StrOpt("project_id_key", default="neutron:project_id",
               help="Port_Binding external_ids key holding the project id."),
    cfg.StrOpt("cidrs_key", default="neutron:cidrs",
               help="Port_Binding external_ids key holding the port's CIDRs."),
    cfg.FloatOpt("nova_metadata_timeout", default=10.0, min=0.1,
                 help="Seconds to wait for nova before answering 504."),
    cfg.FloatOpt("reconcile_interval", default=60.0, min=1.0,
                 help="Seconds between full reconciliations even without events."),
]

HAPROXY_OPTS = [
    cfg.StrOpt("mode", default="shared", choices=["shared", "per-network"],
               help="'shared': one haproxy binding in every namespace; 'per-network': one "
                    "haproxy process inside each namespace."),
    cfg.StrOpt("haproxy_path", default="haproxy", help="The haproxy binary."),
    cfg.StrOpt("templates_dir", default="",
               help="Directory of the haproxy jinja2 templates (empty: the bundled ones)."),
    cfg.StrOpt("log_target", default="",
               help="Where haproxy sends one line per request (its `log` address, e.g. "
                    "/dev/log or 127.0.0.1:514); empty: no haproxy logging."),
    cfg.IntOpt("maxconn", default=1024, min=1, help="haproxy maxconn per frontend."),
    cfg.IntOpt("global_maxconn", default=8192, min=1,
               help="haproxy maxconn per process: in shared mode, for all networks together. "
                    "haproxy needs about twice as many file descriptors."),
    cfg.IntOpt("timeout_client", default=30, help="haproxy client timeout, seconds."),
    cfg.IntOpt("timeout_server", default=32, help="haproxy server timeout, seconds."),
]

RATE_LIMIT_OPTS = [  # neutron's names and defaults
    cfg.BoolOpt("rate_limit_enabled", default=False,
                help="Limit the metadata requests a VM may make (429 beyond the limits)."),
    cfg.ListOpt("ip_versions", default=["4"], item_type=cfg.types.String(choices=["4", "6"]),
                help="Client address versions that are rate limited."),
    cfg.IntOpt("base_window_duration", default=10, min=1,
               help="Seconds of the base window."),
    cfg.IntOpt("base_query_rate_limit", default=10, min=1,
               help="Requests a VM may make within the base window."),
    cfg.IntOpt("burst_window_duration", default=10, min=1,
               help="Seconds of the burst window."),
    cfg.IntOpt("burst_query_rate_limit", default=10, min=1,
               help="Requests a VM may make within the burst window."),
]

GROUPS: dict[str | None, list[cfg.Opt]] = {
    None: DEFAULT_OPTS,
    "ovn": OVN_OPTS,
    "ovs": OVS_OPTS,
    "metadata": METADATA_OPTS,
    "haproxy": HAPROXY_OPTS,
    "metadata_rate_limiting": RATE_LIMIT_OPTS,
}


def register(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    for group, opts in GROUPS.items():
        conf.register_opts(opts, group=group)
    return conf


def load(argv: list[str], prog: str) -> cfg.ConfigOpts:
    """Parse the command line and config files into a fresh ConfigOpts."""
    conf = register(cfg.ConfigOpts())
    conf(argv, project="ovnmeta", prog=prog)
    # oslo.config checks a value only when it is read: read them all now, so a broken
    # config stops the agent at start with the option's name, not later with a traceback.
    for group, opts in GROUPS.items():
        node = conf if group is None else getattr(conf, group)
        for opt in opts:
            getattr(node, opt.dest)
    return conf


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Entry point for oslo-config-generator."""
    return [(group or "DEFAULT", opts) for group, opts in GROUPS.items()]
