"""Regenerate ovnmeta's record of neutron's OVN metadata agent options (not run by CI).

Run with a Python that has neutron installed (`pip install neutron==29.0.0` in a scratch
virtualenv). It registers the options exactly as neutron-ovn-metadata-agent's main() does,
then writes:

- `ovnmeta/neutron_options.json`: every option of the groups an operator's
  neutron_ovn_metadata_agent.ini may set — name, type, range, choices, default — so ovnmeta
  accepts them with neutron's types (`ovnmeta.agent.compat`);
- `tests/data/neutron_ovn_metadata_agent.ini`: an ini that sets every one of them;
- `tests/data/neutron_ovn_metadata_agent.expected.json`: the values neutron parses from it,
  which ovnmeta must parse identically (tests/unit/agent/test_config_neutron_ini.py).

    /tmp/nvenv/bin/python scripts/gen_neutron_compat.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("DEFAULT", "AGENT", "agent", "ovs", "OVS", "ovn", "ovn_nb_global",
          "metadata_rate_limiting", "metadata_haproxy")
# Registered by oslo.config itself on every ConfigOpts.
SKIP = {("DEFAULT", "config_source"), ("DEFAULT", "shell_completion")}
# Values that say something in the sample ini (the rest keep neutron's defaults).
OVERRIDES = {
    ("DEFAULT", "state_path"): "/var/lib/neutron",
    ("DEFAULT", "metadata_workers"): "0",
    ("DEFAULT", "metadata_proxy_shared_secret"): "s3cret",
    ("DEFAULT", "nova_metadata_host"): "192.0.2.10",
    ("DEFAULT", "debug"): "true",
    ("DEFAULT", "host"): "compute-1",
    ("ovn", "ovn_sb_connection"): "tcp:192.0.2.1:6642,tcp:192.0.2.2:6642",
    ("ovs", "ovsdb_connection"): "unix:/run/openvswitch/db.sock",
    ("metadata_rate_limiting", "ip_versions"): "6",
}


def register_like_neutron():
    from oslo_config import cfg
    from neutron.agent.ovn.metadata import agent  # noqa: F401 (its imports register opts)
    from neutron.common import config
    from neutron.conf.agent.metadata import config as meta
    from neutron.conf.agent.ovn.metadata import config as ovn_meta
    from neutron.conf.plugins.ml2.drivers.ovn import ovn_conf
    config.register_common_config_options()
    ovn_conf.register_opts()
    ovn_meta.register_meta_conf_opts(meta.SHARED_OPTS)
    ovn_meta.register_meta_conf_opts(meta.UNIX_DOMAIN_METADATA_PROXY_OPTS)
    ovn_meta.register_meta_conf_opts(meta.METADATA_PROXY_HANDLER_OPTS)
    ovn_meta.register_meta_conf_opts(meta.METADATA_RATE_LIMITING_OPTS,
                                     group=meta.RATE_LIMITING_GROUP)
    ovn_meta.register_meta_conf_opts(meta.METADATA_HAPROXY_OPTS, group=meta.HAPROXY_GROUP)
    ovn_meta.register_meta_conf_opts(ovn_meta.OVS_OPTS, group="ovs")
    return cfg.CONF


def type_spec(t) -> dict:
    from oslo_config import types
    spec: dict = {"type": type(t).__name__}
    for attr in ("min", "max", "regex", "choices", "ignore_case"):
        value = getattr(t, attr, None)
        if value is None or (attr in ("choices", "ignore_case") and not value):
            continue
        if attr == "regex":
            value = value.pattern
        if attr == "choices":
            value = list(value.keys()) if isinstance(value, dict) else list(value)
        spec[attr] = value
    if isinstance(t, types.List):
        spec["item"] = type_spec(t.item_type)
    if isinstance(t, types.Dict):
        spec["value"] = type_spec(t.value_type)
    return spec


def ini_value(opt) -> str:
    """The option's default as an ini value, or a valid value when it has none."""
    from oslo_config import types
    default, t = opt.default, opt.type
    if default is None:
        if isinstance(t, types.Boolean):
            return "false"
        if isinstance(t, (types.Integer, types.Float)):
            return str(t.min if t.min is not None else 3)
        if isinstance(t, types.List):
            return "a,b"
        if isinstance(t, types.Dict):
            return "k1:v1,k2:v2"
        if isinstance(t, types.HostAddress):
            return "192.0.2.3"
        if getattr(t, "choices", None):
            return next(c for c in t.choices if c)
        return f"/etc/neutron/{opt.dest}"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list):
        return ",".join(str(v) for v in default)
    if isinstance(default, dict):
        return ",".join(f"{k}:{v}" for k, v in default.items())
    return str(default)


def main() -> int:
    conf = register_like_neutron()
    options: dict[str, list[dict]] = {}
    lines: list[str] = []
    for group in GROUPS:
        opts = conf._opts if group == "DEFAULT" else conf._groups[group]._opts
        section = group if group == "DEFAULT" else group.lower()
        rows = options.setdefault(section, [])
        if not any(line == f"[{section}]" for line in lines):
            lines.append(f"[{section}]")
        for name, info in sorted(opts.items()):
            opt = info["opt"]
            if (group, name) in SKIP or opt.positional:
                continue
            default = opt.default
            try:
                json.dumps(default)
            except TypeError:
                default = str(default)
            rows.append({"name": name, "neutron_group": group, "opt": type(opt).__name__,
                         **type_spec(opt.type),
                         "default": default, "secret": opt.secret,
                         "deprecated": [[d.group, d.name] for d in opt.deprecated_opts]})
            value = OVERRIDES.get((section, name), ini_value(opt))
            lines.append(f"{name} = {value}")
    # Sections may repeat (AGENT/agent, ovs/OVS): write each once, in order.
    merged: dict[str, list[str]] = {}
    current = ""
    for line in lines:
        if line.startswith("["):
            current = line
            merged.setdefault(current, [])
        else:
            merged[current].append(line)
    ini = "".join(f"{s}\n" + "".join(f"{v}\n" for v in vals) + "\n"
                  for s, vals in merged.items())
    header = ("# Every option of neutron 29.0.0's OVN metadata agent in the groups an operator's\n"
              "# neutron_ovn_metadata_agent.ini may set, each one set. Generated by\n"
              "# scripts/gen_neutron_compat.py; loaded by tests/unit/agent/test_config_neutron_ini.py.\n")
    data = ROOT / "tests" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "neutron_ovn_metadata_agent.ini").write_text(header + ini)

    # What neutron itself parses from that ini.
    with tempfile.NamedTemporaryFile("w", suffix=".ini") as f:
        f.write(ini)
        f.flush()
        conf([ "--config-file", f.name], project="neutron")
        expected = {}
        for section, rows in options.items():
            for row in rows:
                group = row.pop("neutron_group")
                node = conf if group == "DEFAULT" else getattr(conf, group)
                value = getattr(node, row["name"])
                expected[f"{section}.{row['name']}"] = value
    (data / "neutron_ovn_metadata_agent.expected.json").write_text(
        json.dumps(expected, indent=1, sort_keys=True, default=str) + "\n")
    (ROOT / "ovnmeta" / "neutron_options.json").write_text(
        json.dumps({"neutron": "29.0.0", "groups": options}, indent=1) + "\n")
    print(f"{sum(len(r) for r in options.values())} options in {len(options)} groups")
    return 0


if __name__ == "__main__":
    sys.exit(main())
