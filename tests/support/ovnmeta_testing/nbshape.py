"""The shape of what a CMS wrote to the NB for one network: which rows, types, keys, and the
values the agent reads, with ids, MACs and addresses replaced by placeholders.

Two writers of one scene (neutron-server, and the tests' imitation in `neutron.py`) give equal
shapes when they agree; `tests/data/neutron29_nb.json` is neutron-server's, recorded.
"""

from __future__ import annotations

import json
import re

from ovnmeta_testing.sandbox import Sandbox

# Values that matter to the agent, or tell how neutron writes them; other keys: presence only.
VALUES = {"neutron:device_owner", "neutron:network_name", "neutron:cidrs", "neutron:mtu",
          "neutron:vnic_type", "requested-chassis", "network_name", "neutron:device_id",
          "classless_static_route", "mtu"}
ROLES = {"localport": "metadata", "": "vm", "external": "external", "localnet": "localnet"}


def _cell(value):
    """OVSDB JSON to Python: maps to dicts, sets to lists, uuids to strings."""
    if isinstance(value, list) and len(value) == 2 and value[0] in ("map", "set", "uuid"):
        kind, inner = value
        if kind == "map":
            return {k: _cell(v) for k, v in inner}
        if kind == "set":
            return [_cell(v) for v in inner]
        return inner
    return value


def _set(value) -> list:
    """A set column: OVSDB JSON writes a one-element set as the bare element."""
    return value if isinstance(value, list) else [value]


def rows(box: Sandbox, table: str) -> list[dict]:
    out = json.loads(box.nbctl("--format=json", "--data=json", "list", table))
    return [dict(zip(out["headings"], map(_cell, row))) for row in out["data"]]


class _Placeholders:
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names   # literal -> placeholder, longest first

    def __call__(self, text: str) -> str:
        for literal, name in sorted(self.names.items(), key=lambda kv: -len(kv[0])):
            if literal:
                text = text.replace(literal, name)
        text = re.sub(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", "<mac>", text)
        text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>",
                      text)
        text = re.sub(r"[0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12}", "<uuid_>",
                      text)
        text = re.sub(r"\b\d+\.\d+\.\d+\.\d+\b", "<ip4>", text)
        return re.sub(r"\b[0-9a-f]{1,4}(:[0-9a-f]{0,4}){2,7}\b", "<ip6>", text)


def _pairs(mapping: dict, norm: _Placeholders, values: set[str] = VALUES) -> dict:
    return {k: (norm(str(v)) if k in values else "…") for k, v in sorted(mapping.items())}


def shape(box: Sandbox, network_id: str, host: str = "") -> dict:
    """The network's switch, its ports by role (the first of each), their HA chassis group
    and DHCP options, normalized."""
    switch_name = f"neutron-{network_id}"
    norm = _Placeholders({network_id: "<network>", box.chassis: "<chassis>",
                          host: "<host>"})
    switch = next(s for s in rows(box, "Logical_Switch") if s["name"] == switch_name)
    lsps = {p["_uuid"]: p for p in rows(box, "Logical_Switch_Port")}
    groups = {g["_uuid"]: g for g in rows(box, "HA_Chassis_Group")}
    chassis = {c["_uuid"]: c for c in rows(box, "HA_Chassis")}
    dhcp = {d["_uuid"]: d for d in rows(box, "DHCP_Options")}
    port_groups = rows(box, "Port_Group")
    # The switch's neutron:network_name is the name the user gave: presence only.
    out: dict = {"switch": {"external_ids": _pairs(switch["external_ids"], norm,
                                                   VALUES - {"neutron:network_name"}),
                            "other_config": sorted(switch["other_config"])},
                 "ports": {}}
    for uuid in _set(switch["ports"]):
        port = lsps[uuid]
        role = ROLES.get(port["type"], port["type"])
        if role in out["ports"]:
            continue
        entry = {"type": port["type"],
                 "name": norm(port["name"]),
                 "external_ids": _pairs(port["external_ids"], norm),
                 "options": _pairs(port["options"], norm),
                 "addresses": [norm(a) for a in _set(port["addresses"])],
                 "port_security": bool(port["port_security"]),
                 "port_groups": sorted(norm(g["name"]) for g in port_groups
                                       if uuid in _set(g["ports"]))}
        group = _set(port["ha_chassis_group"])
        if group:
            g = groups[group[0]]
            entry["ha_chassis_group"] = {
                "name": norm(g["name"]),
                "priorities": sorted(chassis[c]["priority"] for c in _set(g["ha_chassis"]))}
        v4 = _set(port["dhcpv4_options"])
        if v4:
            d = dhcp[v4[0]]
            entry["dhcpv4_options"] = _pairs(d["options"], norm)
        out["ports"][role] = entry
    return out
