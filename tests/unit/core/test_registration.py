"""Which agent row neutron-server keeps seeing for this host, and what ovnmeta writes."""

import pytest

from ovnmeta.core import registration as reg


@pytest.mark.parametrize("system_id, metadata_id, ovn_agent_id", [
    # A UUID system-id is used as it is; any other goes through the agent's own namespace.
    # neutron's derivations (uuid5 of the chassis with 'metadata_agent' / 'ovn_agent').
    ("6a3c1a5e-1b2f-4c4e-9d7e-0b1f8e2d3c4a", "023357c6-e85d-5177-badd-b1c289eda070",
     "8a722106-a890-5d89-83f5-74cf8b36d9b2"),
    ("compute-1", "ef4b08c7-4be3-5738-a4fa-e02d697fb653",
     "6982ce0a-4652-53fd-bf3e-cb0cf31c8197"),
])
def test_agent_ids_are_neutrons(system_id, metadata_id, ovn_agent_id) -> None:
    assert reg.metadata_agent_id(system_id) == metadata_id
    assert reg.ovn_agent_id(system_id) == ovn_agent_id


OVN_AGENT_ROW = {reg.OVN_AGENT_ID_KEY: "6982ce0a-4652-53fd-bf3e-cb0cf31c8197",
                 reg.OVN_AGENT_SB_CFG_KEY: "7"}


def test_auto_keeps_the_ovn_agents_row_when_it_ran_metadata_only() -> None:
    chosen = reg.choose("auto", ["metadata"], OVN_AGENT_ROW)
    assert chosen.mode == reg.OVN_AGENT and reg.OVN_AGENT_ID_KEY in chosen.reason
    assert chosen.wanted("compute-1", 9, "br-int") == {
        reg.OVN_AGENT_ID_KEY: "6982ce0a-4652-53fd-bf3e-cb0cf31c8197",
        reg.OVN_AGENT_SB_CFG_KEY: "9", reg.BRIDGE_KEY: "br-int"}
    assert set(chosen.removes) == {reg.METADATA_ID_KEY, reg.METADATA_SB_CFG_KEY}


def test_auto_stays_beside_an_ovn_agent_that_runs_other_extensions() -> None:
    for extensions in (["qos_hwol"], ["metadata", "ovn-bgp"]):
        chosen = reg.choose("auto", extensions, OVN_AGENT_ROW)
        assert chosen.mode == reg.BESIDE_OVN_AGENT
        assert chosen.removes == ()
        assert set(chosen.wanted("compute-1", 9, "br-int")) == {
            reg.METADATA_ID_KEY, reg.METADATA_SB_CFG_KEY, reg.BRIDGE_KEY}


def test_auto_is_the_metadata_agent_on_a_host_the_metadata_agent_ran() -> None:
    chosen = reg.choose("auto", [], {reg.METADATA_ID_KEY: "x"})
    assert chosen.mode == reg.METADATA_AGENT
    assert chosen.wanted("compute-1", 3, "br-int")[reg.METADATA_ID_KEY] == \
        "ef4b08c7-4be3-5738-a4fa-e02d697fb653"
    # Stale OVN agent keys would list a dead "OVN Neutron agent" and hide this row.
    assert set(chosen.removes) == set(reg.OVN_AGENT_KEYS)
    assert reg.METADATA_DESC_KEY not in chosen.removes


def test_configured_mode_wins_over_detection() -> None:
    assert reg.choose("metadata-agent", ["qos_hwol"], OVN_AGENT_ROW).mode == reg.METADATA_AGENT
    assert reg.choose("ovn-agent", [], {}).mode == reg.OVN_AGENT
