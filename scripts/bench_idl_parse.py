"""How long the OVS view's IDL takes to take in one update of N Interface rows, with and
without another thread running Python meanwhile (as a reconcile pass does), for ovsdbapp's
OvsdbIdl (which sleeps in cooperative_yield() before each row, for eventlet) and the agent's
_OvsIdl (which does not). No OVS is involved: the update is handed to python-ovs's parser as
the server would send it. Run:

    .venv/bin/python scripts/bench_idl_parse.py [--rows 400] [--rounds 5]

Prints JSON and a table; figures are measurements of this machine, not assertions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid

import ovs.db.idl
from ovsdbapp.backend.ovs_idl import connection

from ovnmeta.ovsdb import ovs as ovsview

OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def _idl(cls: type) -> ovs.db.idl.Idl:
    helper = ovs.db.idl.SchemaHelper(OVS_SCHEMA)
    helper.register_columns("Interface", list(ovsview.INTERFACE_COLUMNS))
    if cls is ovsview._OvsIdl:
        return cls("unix:/nonexistent/db.sock", helper, on_change=lambda: None)
    return cls("unix:/nonexistent/db.sock", helper)


def _update(rows: int) -> dict:
    return {"Interface": {str(uuid.uuid4()): {"insert": {
        "name": f"tap{i}", "external_ids": ["map", [["iface-id", str(uuid.uuid4())]]]}}
        for i in range(rows)}}


def parse_ms(cls: type, rows: int, busy: bool) -> float:
    """Milliseconds to parse one update of `rows` new rows."""
    idl, update = _idl(cls), _update(rows)
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1
    other = threading.Thread(target=spin, daemon=True)
    if busy:
        other.start()
        time.sleep(0.01)
    try:
        started = time.perf_counter()
        idl._Idl__parse_update(update, ovs.db.idl.OVSDB_UPDATE2)
        return (time.perf_counter() - started) * 1000
    finally:
        stop.set()
        if busy:
            other.join()
        idl.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = []
    for busy in (False, True):
        for name, cls in (("ovsdbapp OvsdbIdl", connection.OvsdbIdl),
                          ("ovnmeta _OvsIdl", ovsview._OvsIdl)):
            runs = [parse_ms(cls, args.rows, busy) for _ in range(args.rounds)]
            results.append({"idl": name, "busy_thread": busy, "rows": args.rows,
                            "ms": [round(r, 1) for r in runs],
                            "p50_ms": round(statistics.median(runs), 1)})
    print(json.dumps(results, indent=1))
    print(f"\n| IDL | another thread busy | {args.rows} rows, p50 ms | rounds, ms |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['idl']} | {'yes' if r['busy_thread'] else 'no'} | {r['p50_ms']} | "
              f"{', '.join(map(str, r['ms']))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
