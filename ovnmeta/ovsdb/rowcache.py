"""Values read from one OVSDB table's rows, kept per row as the IDL reports changes.

Reading an IDL row's columns converts datums on every access; rereading every row of a
table after each change made that the agents' main cost while provisioning. Each changed
row is read once instead, in the IDL's notify() hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ovs.db import idl


class RowCache:
    def __init__(self, table: str, read: Callable[[idl.Row], Any]) -> None:
        self.table = table
        self._read = read
        self._values: dict = {}   # row uuid → read(row)

    def notify(self, event: str, row: idl.Row) -> None:
        """Call from the Idl's notify(): python-ovs calls it per changed row in run()."""
        if row._table.name != self.table:
            return
        if event == idl.ROW_DELETE:
            self._values.pop(row.uuid, None)
        else:
            self._values[row.uuid] = self._read(row)

    def values(self, tables: dict) -> list:
        """Every row's value; everything is read again after a resync that notified
        nothing (the rows and the cache then disagree)."""
        return list(self.items(tables).values())

    def items(self, tables: dict) -> dict:
        """Row uuid → value, as values(). A row's value is the same object until the row
        changes, so a caller can tell the changed rows by identity. Do not modify."""
        rows = tables[self.table].rows
        if self._values.keys() != rows.keys():
            self._values = {uuid: self._read(row) for uuid, row in rows.items()}
        return self._values
