"""The python-ovs internals the OVSDB views rely on, pinned: python-ovs has no public API for
them, so an upgrade that renames one fails here rather than in a running agent."""

from __future__ import annotations

import uuid

import ovs.db.idl
import pytest

from ovnmeta.ovsdb import rowcache, sbview

SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"   # from the ovn-common package
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"   # openvswitch-common


@pytest.fixture
def idl() -> ovs.db.idl.Idl:
    helper = ovs.db.idl.SchemaHelper(SB_SCHEMA)
    helper.register_all()
    made = ovs.db.idl.Idl("unix:/nonexistent/sb.sock", helper, leader_only=False)
    yield made
    made.close()


def test_the_session_is_reached_for_backoff_and_connection_state(idl) -> None:
    # sbview: idl._session.reconnect.set_backoff(), idl._session.is_connected()
    idl._session.reconnect.set_backoff(sbview.RECONNECT_MIN_MS, sbview.RECONNECT_MAX_MS)
    assert idl._session.is_connected() is False


def test_a_tables_condition_state_says_when_a_condition_is_acknowledged(idl) -> None:
    # sbview's "loaded": no table has a condition still new or requested.
    state = idl.tables["Port_Binding"]._condition_state
    assert state.new is None and state.requested is None
    idl.cond_change("Port_Binding", [["chassis", "==", ["uuid", str(uuid.uuid4())]]])
    assert state.new is not None


def test_a_rows_raw_data_and_table_are_reached(idl) -> None:
    # sbview._uuids reads row._data (references to rows not monitored here); rowcache checks
    # row._table.name.
    table = idl.tables["Port_Binding"]
    ref = uuid.uuid4()
    datum = ovs.db.data.Datum.from_json(table.columns["chassis"].type, ["uuid", str(ref)])
    row = ovs.db.idl.Row(idl, table, uuid.uuid4(), {"chassis": datum})
    assert row._table.name == "Port_Binding"
    assert sbview._uuids(row, "chassis") == [str(ref)]
    assert sbview._uuids(row, "additional_chassis") == []
    cache = rowcache.RowCache("Port_Binding", lambda r: r.uuid)
    cache.notify(ovs.db.idl.ROW_CREATE, row)
    assert cache._values == {row.uuid: row.uuid}


def test_the_ovs_view_parses_an_update_without_yielding_at_each_row(monkeypatch) -> None:
    # python-ovs calls Idl.cooperative_yield() before each row of an update; ovsdbapp's
    # OvsdbIdl sleeps there, which in a thread waits for the GIL at every row.
    from ovsdbapp.backend.ovs_idl import connection
    from ovnmeta.ovsdb import ovs as ovsview

    sleeps = []
    monkeypatch.setattr(connection.time, "sleep", sleeps.append)
    rows = {str(uuid.uuid4()): {"insert": {"name": f"tap{i}", "external_ids": [
        "map", [["iface-id", f"port-{i}"]]]}} for i in range(300)}
    for cls, yields in ((connection.OvsdbIdl, 300), (ovsview._OvsIdl, 0)):
        helper = ovs.db.idl.SchemaHelper(OVS_SCHEMA)   # an Idl takes its helper's schema
        helper.register_columns("Interface", list(ovsview.INTERFACE_COLUMNS))
        made = cls("unix:/nonexistent/db.sock", helper) if cls is connection.OvsdbIdl \
            else cls("unix:/nonexistent/db.sock", helper, on_change=lambda: None)
        sleeps.clear()
        made._Idl__parse_update({"Interface": rows}, ovs.db.idl.OVSDB_UPDATE2)
        assert len(made.tables["Interface"].rows) == 300
        assert len(sleeps) == yields, cls
        made.close()


def test_the_sb_view_rebuilds_only_the_networks_whose_rows_changed() -> None:
    """Rows reach the view through python-ovs's update parsing (notify), as from an SB."""
    changes: list = []
    view = sbview.SbView("unix:/nonexistent/sb.sock", "c1", changes.append)
    helper = ovs.db.idl.SchemaHelper(SB_SCHEMA)
    for table, columns in sbview.COLUMNS.items():
        helper.register_columns(table, columns)
    made = sbview._SbIdl("unix:/nonexistent/sb.sock", helper, view, 0)
    me, dp1, dp2 = (str(uuid.uuid4()) for _ in range(3))
    vm1, lp1, vm2, lp2 = (str(uuid.uuid4()) for _ in range(4))

    def binding(name: str, dp: str, type_: str = "", mac: str = "fa:16:3e:00:00:01 10.0.0.5"):
        return {"insert": {"logical_port": name, "type": type_, "datapath": ["uuid", dp],
                           "chassis": ["uuid", me] if not type_ else ["set", []],
                           "mac": mac}}

    def update(tables: dict) -> None:
        made._Idl__parse_update(tables, ovs.db.idl.OVSDB_UPDATE2)
        view._rebuild(made, frozenset())

    update({"Chassis": {me: {"insert": {"name": "c1"}}},
            "Datapath_Binding": {dp: {"insert": {"external_ids": ["map", [["name", name]]]}}
                                 for dp, name in ((dp1, "neutron-n1"), (dp2, "neutron-n2"))},
            "Port_Binding": {vm1: binding("vm1", dp1), lp1: binding("lp1", dp1, "localport"),
                             vm2: binding("vm2", dp2), lp2: binding("lp2", dp2, "localport")}})
    assert changes == [{"n1", "n2"}]
    first = {p.logical_port: p for p in view.snapshot().ports}
    assert set(first) == {"vm1", "lp1", "vm2", "lp2"}

    # update2's "modify" of a set column is a diff: this adds a second entry.
    update({"Port_Binding": {vm2: {"modify": {"mac": "fa:16:3e:00:00:02 10.0.0.6"}}}})
    assert changes[-1] == {"n2"}
    second = {p.logical_port: p for p in view.snapshot().ports}
    assert "fa:16:3e:00:00:02 10.0.0.6" in second["vm2"].mac
    assert second["vm1"] is first["vm1"] and second["lp1"] is first["lp1"]

    update({"Port_Binding": {vm1: {"delete": None}}})
    assert changes[-1] == {"n1"}
    assert {p.logical_port for p in view.snapshot().ports} == {"lp1", "vm2", "lp2"}

    count = len(changes)
    update({})                                   # nothing changed: nobody is told
    assert len(changes) == count
    made.close()
