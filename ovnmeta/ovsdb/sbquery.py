"""One-shot reads of the Southbound DB for `ovnmeta trace`: the rows it needs, through the
agent's own connection code (ovsdbapp's IDL, the [ovn] SSL files, sbssl's diagnosis of a
failing ssl: remote), as plain dicts. Unlike the agent's view it is not limited to this
chassis: the VM being traced may be bound anywhere."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import ovs.db.idl
from ovsdbapp.backend.ovs_idl import connection

from ovnmeta.ovsdb import sbssl
from ovnmeta.ovsdb.sbview import fetch_schema_helper, set_ssl

COLUMNS = {
    "Port_Binding": ["logical_port", "type", "mac", "external_ids", "chassis", "datapath"],
    "Chassis": ["name", "hostname"],
    "Chassis_Private": ["name"],   # to tell an evicted chassis from one never registered
    "Datapath_Binding": ["external_ids"],
}


def _value(value):
    """A column's value with references as uuid strings and optional columns as lists."""
    if isinstance(value, ovs.db.idl.Row):
        return str(value.uuid)
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


class SbQuery:
    def __init__(self, conf) -> None:
        set_ssl(conf.ovn.ovn_sb_private_key, conf.ovn.ovn_sb_certificate,
                conf.ovn.ovn_sb_ca_cert)
        self.remote = ",".join(conf.ovn.ovn_sb_connection)
        self.ssl_files = sbssl.SslFiles.from_conf(conf.ovn)
        self.timeout = conf.ovn.ovsdb_connection_timeout
        self._conn: connection.Connection | None = None

    def start(self) -> None:
        """Connect and load the tables (raises SbUnreachable naming the cause)."""
        helper = fetch_schema_helper(self.remote, self.ssl_files)
        for table, columns in COLUMNS.items():
            helper.register_columns(table, columns)
        self._conn = connection.Connection(
            ovs.db.idl.Idl(self.remote, helper, leader_only=False), self.timeout)
        self._conn.start()

    def stop(self) -> None:
        if self._conn:
            self._conn.stop(timeout=5)
            self._conn = None

    def find(self, table: str, where: Callable[[dict], bool] = lambda row: True,
             **equals) -> list[dict]:
        """Rows whose columns equal `equals` and for which `where` holds."""
        assert self._conn is not None, "start() first"
        items = (_item(table, row) for row in list(self._conn.idl.tables[table].rows.values()))
        return [item for item in items
                if all(item.get(k) == v for k, v in equals.items()) and where(item)]

    def get(self, table: str, uuid: str) -> dict | None:
        """One row by its uuid, looked up, not searched for."""
        assert self._conn is not None, "start() first"
        try:
            row = self._conn.idl.tables[table].rows.get(UUID(uuid))
        except ValueError:   # not a uuid at all
            return None
        return _item(table, row) if row is not None else None


def _item(table: str, row: ovs.db.idl.Row) -> dict:
    return {"_uuid": str(row.uuid), **{c: _value(getattr(row, c)) for c in COLUMNS[table]}}
