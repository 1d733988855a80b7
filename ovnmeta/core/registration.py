"""How neutron-server lists this host's metadata service: which Chassis_Private keys the
agent keeps, and which of another agent's it removes. Pure; chosen once, at start.

neutron-server shows a host's "OVN Neutron agent" (neutron-ovn-agent, whose `metadata`
extension replaced the metadata agent) when `neutron:ovn-neutron-agent-id` is set, and its
"OVN Metadata agent" otherwise; each is alive while its sb-cfg key follows SB_Global.nb_cfg.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

BRIDGE_KEY = "neutron:ovn-bridge"
METADATA_ID_KEY = "neutron:ovn-metadata-id"
METADATA_SB_CFG_KEY = "neutron:ovn-metadata-sb-cfg"
METADATA_DESC_KEY = "neutron:description-metadata"
OVN_AGENT_ID_KEY = "neutron:ovn-neutron-agent-id"
OVN_AGENT_SB_CFG_KEY = "neutron:ovn-neutron-agent-sb-cfg"
OVN_AGENT_DESC_KEY = "neutron:description-neutron-agent"
METADATA_KEYS = (METADATA_ID_KEY, METADATA_SB_CFG_KEY)
OVN_AGENT_KEYS = (OVN_AGENT_ID_KEY, OVN_AGENT_SB_CFG_KEY, OVN_AGENT_DESC_KEY)

# neutron's namespaces for a chassis name (OVS system-id) that is not a UUID: the metadata
# agent's (OVN_METADATA_UUID_NAMESPACE) and neutron-ovn-agent's (OVN_MONITOR_UUID_NAMESPACE).
METADATA_CHASSIS_NAMESPACE = uuid.UUID("d34bf9f6-da32-4871-9af8-15a4626b41ab")
OVN_AGENT_CHASSIS_NAMESPACE = uuid.UUID("fd7e0970-7164-11ed-80f0-00000003158a")

AUTO = "auto"
METADATA_AGENT = "metadata-agent"      # the host had neutron-ovn-metadata-agent
OVN_AGENT = "ovn-agent"                # the host had neutron-ovn-agent, metadata only
BESIDE_OVN_AGENT = "beside-ovn-agent"  # neutron-ovn-agent keeps running other extensions
MODES = (AUTO, METADATA_AGENT, OVN_AGENT, BESIDE_OVN_AGENT)


def _agent_id(system_id: str, chassis_namespace: uuid.UUID, name: str) -> str:
    try:
        chassis = uuid.UUID(system_id)
    except ValueError:
        chassis = uuid.uuid5(chassis_namespace, system_id)
    return str(uuid.uuid5(chassis, name))


def metadata_agent_id(system_id: str) -> str:
    """neutron-ovn-metadata-agent's id for this chassis: ovnmeta becomes the same row."""
    return _agent_id(system_id, METADATA_CHASSIS_NAMESPACE, "metadata_agent")


def ovn_agent_id(system_id: str) -> str:
    """neutron-ovn-agent's id for this chassis."""
    return _agent_id(system_id, OVN_AGENT_CHASSIS_NAMESPACE, "ovn_agent")


@dataclass(frozen=True)
class Registration:
    mode: str
    reason: str

    def wanted(self, system_id: str, nb_cfg: int, bridge: str) -> dict[str, str]:
        """The keys to keep in Chassis_Private, with their values now."""
        if self.mode == OVN_AGENT:
            return {OVN_AGENT_ID_KEY: ovn_agent_id(system_id),
                    OVN_AGENT_SB_CFG_KEY: str(nb_cfg), BRIDGE_KEY: bridge}
        return {METADATA_ID_KEY: metadata_agent_id(system_id),
                METADATA_SB_CFG_KEY: str(nb_cfg), BRIDGE_KEY: bridge}

    @property
    def removes(self) -> tuple[str, ...]:
        """Another agent's keys that would make neutron-server list a second, dead agent
        for this host. Descriptions are the operator's and stay, except the OVN agent's
        once that agent is gone. Beside a running neutron-ovn-agent: nothing of its own."""
        if self.mode == OVN_AGENT:
            return METADATA_KEYS
        if self.mode == METADATA_AGENT:
            return OVN_AGENT_KEYS
        return ()


def choose(configured: str, extensions: list[str] | tuple[str, ...],
           external_ids: Mapping[str, str]) -> Registration:
    """The registration for `[metadata] register_as`; `auto` reads the loaded config's
    `[agent] extensions` (neutron-ovn-agent's) and this chassis's Chassis_Private keys."""
    if configured != AUTO:
        return Registration(configured, "[metadata] register_as")
    others = sorted(set(extensions) - {"metadata"})
    if others:
        return Registration(BESIDE_OVN_AGENT, f"[agent] extensions lists {', '.join(others)}: "
                            "neutron-ovn-agent keeps running on this host")
    if external_ids.get(OVN_AGENT_ID_KEY):
        return Registration(OVN_AGENT, f"Chassis_Private has {OVN_AGENT_ID_KEY}: this host "
                            "ran neutron-ovn-agent with the metadata extension")
    return Registration(METADATA_AGENT, f"Chassis_Private has no {OVN_AGENT_ID_KEY}")
