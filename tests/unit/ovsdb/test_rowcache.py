"""RowCache: values per row from notify(), and a full reread when the IDL's rows and the
cache disagree (a resync that notified nothing)."""

from types import SimpleNamespace

from ovs.db import idl

from ovnmeta.ovsdb.rowcache import RowCache


def row(table: str, uuid: str, name: str):
    return SimpleNamespace(_table=SimpleNamespace(name=table), uuid=uuid, name=name)


def test_rows_are_read_once_per_change_and_reread_after_a_silent_resync() -> None:
    reads = []
    cache = RowCache("Interface", lambda r: reads.append(r.uuid) or r.name)
    a, b = row("Interface", "u1", "a"), row("Interface", "u2", "b")
    tables = {"Interface": SimpleNamespace(rows={"u1": a, "u2": b})}
    cache.notify(idl.ROW_CREATE, a)
    cache.notify(idl.ROW_CREATE, b)
    cache.notify(idl.ROW_CREATE, row("Port", "p1", "other table"))
    assert sorted(cache.values(tables)) == ["a", "b"] and reads == ["u1", "u2"]
    a.name = "a2"
    cache.notify(idl.ROW_UPDATE, a)
    assert sorted(cache.values(tables)) == ["a2", "b"] and reads == ["u1", "u2", "u1"]
    del tables["Interface"].rows["u2"]
    cache.notify(idl.ROW_DELETE, b)
    assert cache.values(tables) == ["a2"]
    # Rows replaced without a notice: everything is read again.
    tables["Interface"].rows = {"u3": row("Interface", "u3", "c")}
    assert cache.values(tables) == ["c"]
