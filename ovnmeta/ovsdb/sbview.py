"""The agent's view of the Southbound DB: only the rows this chassis needs, as plain records.

Conditional monitoring keeps the IDL to this chassis's Chassis rows, the ports bound here and
the ports and datapaths of their networks; a cloud of any size costs what this host serves.
Nothing outside this module and its one writer (ovnmeta.ovsdb.liveness) touches an IDL row.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import ovs.db.idl
import ovs.poller
import ovs.stream
from ovsdbapp.backend.ovs_idl import connection, idlutils

from ovnmeta.core import naming, registration
from ovnmeta.ovsdb import sbssl
from ovnmeta.ovsdb.liveness import LivenessReporter
from ovnmeta.core.desired import is_here
from ovnmeta.ovsdb.rowcache import RowCache
from ovnmeta.core.model import PortRecord, SbSnapshot

LOG = logging.getLogger(__name__)

COLUMNS = {
    "Chassis": ["name", "hostname"],
    "Chassis_Private": ["name", "chassis", "external_ids"],
    "SB_Global": ["nb_cfg"],
    "Datapath_Binding": ["external_ids"],
    "Port_Binding": ["logical_port", "type", "datapath", "chassis", "additional_chassis",
                     "mac", "external_ids", "options"],
}
NOTHING = [False]
RECONNECT_MIN_MS, RECONNECT_MAX_MS = 500, 2000



def _uuids(row: ovs.db.idl.Row, column: str) -> list[str]:
    """Referenced row uuids, even when the referenced row is not monitored here."""
    datum = row._data.get(column)
    if datum is None:
        return []
    return [str(atom.value) for atom in datum.values]


class Binding(NamedTuple):
    """One Port_Binding row, read once when it changes (the IDL's rows are not kept)."""
    datapaths: list[str]
    chassis: list[str]
    additional_chassis: list[str]
    type: str
    logical_port: str
    mac: tuple[str, ...]
    external_ids: tuple[tuple[str, str], ...]
    requested_chassis: str


class _Seen(NamedTuple):
    """A binding as the last rebuild saw it: reused while the row, where it is and its
    network are unchanged, so that an unchanged network keeps its records."""
    binding: Binding
    here: bool
    network_id: str
    record: PortRecord


def _binding(row: ovs.db.idl.Row) -> Binding:
    options = getattr(row, "options", {})
    return Binding(_uuids(row, "datapath"), _uuids(row, "chassis"),
                   _uuids(row, "additional_chassis"), row.type, row.logical_port,
                   tuple(row.mac), tuple(sorted(row.external_ids.items())),
                   options.get("requested-chassis", ""))


def set_ssl(private_key: str, certificate: str, ca_cert: str) -> None:
    if private_key:
        ovs.stream.Stream.ssl_set_private_key_file(private_key)
    if certificate:
        ovs.stream.Stream.ssl_set_certificate_file(certificate)
    if ca_cert:
        ovs.stream.Stream.ssl_set_ca_cert_file(ca_cert)


class _Collect(logging.Filter):
    """Keeps ovsdbapp's per-remote errors for our one message instead of logging them."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return False


class SbUnreachable(RuntimeError):
    """No SB remote gave us its schema; the message says why, per remote."""


def fetch_schema_helper(remote: str, ssl_files: sbssl.SslFiles | None):
    """The SB schema from the first remote that answers, or one error naming the cause."""
    collect = _Collect()
    logger = logging.getLogger(idlutils.__name__)
    logger.addFilter(collect)
    try:
        return idlutils.get_schema_helper(remote, "OVN_Southbound")
    except Exception as exc:
        by_reason: dict[str, list[str]] = {}
        for one in idlutils.parse_connection(remote):
            reason = sbssl.diagnose(one, ssl_files) if ssl_files else None
            if reason:
                by_reason.setdefault(reason, []).append(one)
        reasons = [f"SSL to {', '.join(remotes)} failed: {reason}"
                   for reason, remotes in by_reason.items()]
        raise SbUnreachable("; ".join(reasons or dict.fromkeys(collect.messages))
                            or str(exc)) from None
    finally:
        logger.removeFilter(collect)


class _SbIdl(ovs.db.idl.Idl):
    """Rebuilds the view after every run() that changed something, in the IDL thread."""

    def __init__(self, remote: str, helper: ovs.db.idl.SchemaHelper, view: SbView,
                 probe_interval: int) -> None:
        super().__init__(remote, helper, probe_interval=probe_interval, leader_only=False)
        self._view = view
        self._seen = -1
        self._plugged_seen: frozenset[str] = frozenset()
        self.bindings = RowCache("Port_Binding", _binding)
        self.datapaths = RowCache("Datapath_Binding",
                                  lambda row: naming.network_id(dict(row.external_ids)))
        # Written by other threads (SbView.watch_plugged) to wake this one's poll.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def notify(self, event, row, updates=None) -> None:
        self.bindings.notify(event, row)
        self.datapaths.notify(event, row)

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass  # a wake-up is pending already, or the IDL is closed

    def wait(self, poller) -> None:
        super().wait(poller)
        poller.fd_wait(self._wake_r, ovs.poller.POLLIN)

    def run(self) -> bool:
        try:
            os.read(self._wake_r, 4096)
        except (BlockingIOError, OSError):
            pass
        changed = super().run()
        plugged = self._view.plugged_ports()
        if self.change_seqno != self._seen or not self._view.settled \
                or plugged != self._plugged_seen:
            self._seen, self._plugged_seen = self.change_seqno, plugged
            self._view._rebuild(self, plugged)
        return changed

    def close(self) -> None:
        super().close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


class SbView:
    def __init__(self, remote: str, chassis: str,
                 on_change: Callable[[set[str] | None], None],
                 timeout: int = 180, probe_interval: int = 60000,
                 bridge: str | None = None, ssl_files: sbssl.SslFiles | None = None,
                 register_as: str = registration.AUTO,
                 extensions: tuple[str, ...] = ()) -> None:
        self.remote = remote
        self.ssl_files = ssl_files
        self.chassis = chassis
        self.bridge = bridge   # None: a worker's view, which reports nothing to neutron
        self._on_change = on_change
        self._timeout = timeout
        self._probe_interval = probe_interval
        self._lock = threading.Lock()
        self._snapshot = SbSnapshot(chassis=chassis)
        self._chassis_uuid: str | None = None
        self._datapaths: frozenset[str] = frozenset()
        self._plugged: frozenset[str] = frozenset()     # from the local OVS, any thread
        self._watched: frozenset[str] = frozenset()     # what the conditions ask for
        self._by_network: dict[str, frozenset[PortRecord]] = {}
        # Port_Binding uuid → (its cached binding, here, network, record): a rebuild makes
        # records and sets only for the rows and networks that changed.
        self._records: dict[str, _Seen] = {}
        # True once this chassis's rows are fully loaded: before that an empty view means
        # "not known yet", not "nothing to serve".
        self.settled = False
        self.updated_at = 0.0   # wall clock of the last change the SB sent us
        # Whether the SB has this chassis's Chassis row (None: not known yet). Without it
        # (ovn-controller not registered, or evicted by `chassis-del` while Chassis_Private
        # stays, LP #2148316) nothing can be bound here.
        self.chassis_registered: bool | None = None
        # None: a worker's view, which reports nothing to neutron.
        self.liveness = LivenessReporter(chassis, bridge, register_as, extensions) \
            if bridge is not None else None
        self._idl: _SbIdl | None = None
        self._conn: connection.Connection | None = None

    @classmethod
    def from_conf(cls, conf, chassis: str, on_change: Callable[[set[str] | None], None],
                  bridge: str | None = None) -> SbView:
        """From the [ovn] options; sets the process-wide SSL files for ssl: remotes."""
        set_ssl(conf.ovn.ovn_sb_private_key, conf.ovn.ovn_sb_certificate,
                conf.ovn.ovn_sb_ca_cert)
        return cls(",".join(conf.ovn.ovn_sb_connection), chassis, on_change,
                   timeout=conf.ovn.ovsdb_connection_timeout,
                   probe_interval=conf.ovn.ovsdb_probe_interval, bridge=bridge,
                   ssl_files=sbssl.SslFiles.from_conf(conf.ovn),
                   register_as=conf.metadata.register_as,
                   extensions=tuple(conf.agent.extensions))

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        """Connect (blocking until the first dump or the timeout) and start the IDL thread."""
        helper = fetch_schema_helper(self.remote, self.ssl_files)
        for table, columns in COLUMNS.items():
            present = [c for c in columns if c in helper.schema_json["tables"][table]["columns"]]
            helper.register_columns(table, present)
        idl = _SbIdl(self.remote, helper, self, self._probe_interval)
        # python-ovs backs off up to 8 s between reconnects; an SB that comes back is
        # picked up within RECONNECT_MAX_MS instead.
        idl._session.reconnect.set_backoff(RECONNECT_MIN_MS, RECONNECT_MAX_MS)
        idl.cond_change("Chassis", [["name", "==", self.chassis]])
        idl.cond_change("Chassis_Private", [["name", "==", self.chassis]])
        idl.cond_change("Port_Binding", NOTHING)
        idl.cond_change("Datapath_Binding", NOTHING)
        self._idl = idl
        self._conn = connection.Connection(idl, self._timeout)
        try:
            self._conn.start()
        except Exception:
            idl.close()  # the caller retries with a fresh IDL; this one's socket must go
            raise
        if self._conn.thread is not None:
            self._conn.thread.name = "sb-idl"   # for py-spy and the idle benchmark

    def stop(self) -> None:
        if self._conn:
            self._conn.stop(timeout=5)

    def watch_plugged(self, logical_ports: frozenset[str]) -> None:
        """The iface-ids plugged on this host's OVS (any thread): their Port_Binding rows are
        monitored, and a VM port among them counts as here before ovn-controller binds it."""
        with self._lock:
            if logical_ports == self._plugged:
                return
            self._plugged = frozenset(logical_ports)
        idl = self._idl
        if idl is not None:
            idl.wake()

    def plugged_ports(self) -> frozenset[str]:
        with self._lock:
            return self._plugged

    # -- reads (any thread) ---------------------------------------------------
    def snapshot(self) -> SbSnapshot:
        with self._lock:
            return self._snapshot

    def connected(self) -> bool:
        idl = self._idl
        return bool(idl and idl._session.is_connected())

    @property
    def monitored_rows(self) -> dict[str, int]:
        """Rows held per table: what conditional monitoring costs us."""
        idl = self._idl
        return {t: len(idl.tables[t].rows) for t in COLUMNS} if idl else {}

    # -- IDL thread -----------------------------------------------------------
    def _rebuild(self, idl: _SbIdl, plugged: frozenset[str]) -> None:
        self.updated_at = time.time()
        mine = [r for r in idl.tables["Chassis"].rows.values() if r.name == self.chassis]
        chassis_uuid = str(mine[0].uuid) if mine else None
        self._note_registration(idl, bool(mine))
        names = frozenset({self.chassis} | {getattr(r, "hostname", "") for r in mine}) - {""}
        networks = {str(uuid): net for uuid, net in idl.datapaths.items(idl.tables).items()}
        local_dps: set[str] = set()
        previous, records = self._records, dict[str, _Seen]()
        touched: set[str] = set()   # networks one of whose rows changed, came or went
        by_network: dict[str, list[PortRecord]] = {}
        for uuid, b in idl.bindings.items(idl.tables).items():
            if not b.datapaths:
                continue
            here = is_here(chassis_uuid, names, b.chassis, b.additional_chassis, b.type,
                           b.logical_port, b.requested_chassis, plugged)
            if here:
                local_dps.add(b.datapaths[0])
            if not here and b.type != "localport":
                continue
            net_id = networks.get(b.datapaths[0])
            if net_id is None:
                continue  # its datapath row arrives with the next condition change
            old = previous.get(uuid)
            if old is not None and old.binding is b and old.here == here \
                    and old.network_id == net_id:
                record = old.record
                records[uuid] = old
            else:
                record = PortRecord(logical_port=b.logical_port, type=b.type,
                                    network_id=net_id, mac=b.mac, external_ids=b.external_ids,
                                    bound_here=here)
                records[uuid] = _Seen(b, here, net_id, record)
                touched.add(net_id)
                if old is not None:
                    touched.add(old.network_id)
            by_network.setdefault(net_id, []).append(record)
        touched |= {old.network_id for uuid, old in previous.items() if uuid not in records}
        self._records = records

        self._update_conditions(idl, chassis_uuid, frozenset(local_dps), plugged)
        frozen = {n: self._by_network[n] if n not in touched and n in self._by_network
                  else frozenset(p) for n, p in by_network.items()}
        dirty = {n for n in touched if frozen.get(n) != self._by_network.get(n)}
        self._by_network = frozen
        with self._lock:
            self._snapshot = SbSnapshot(
                chassis=self.chassis,
                ports=tuple(p for ports in frozen.values() for p in ports))
        if self.liveness:
            self.liveness.report(idl)
        if dirty:
            LOG.debug("SB view: %d network(s) changed", len(dirty))
            self._on_change(dirty)
        if not self.settled and chassis_uuid is not None and not any(
                idl.tables[t]._condition_state.new is not None
                or idl.tables[t]._condition_state.requested is not None for t in COLUMNS):
            self.settled = True
            LOG.info("SB view loaded: %s", self.monitored_rows)
            self._on_change(None)

    def _note_registration(self, idl: _SbIdl, registered: bool) -> None:
        """Logs once when this chassis's Chassis row goes or comes back. Only once the SB's
        first dump is in (SB_Global has its row): before that, no row means nothing yet."""
        if not idl.tables["SB_Global"].rows or registered == self.chassis_registered:
            return
        if not registered:
            private = any(r.name == self.chassis
                          for r in idl.tables["Chassis_Private"].rows.values())
            LOG.warning("chassis %s has no Chassis row in the SB (its Chassis_Private row is "
                        "%s): ovn-controller here is not registered, or the chassis was "
                        "deleted; no port can be bound to this host until ovn-controller "
                        "registers it again", self.chassis, "there" if private else "gone too")
        elif self.chassis_registered is False:
            LOG.info("chassis %s is registered in the SB again", self.chassis)
        self.chassis_registered = registered

    def _update_conditions(self, idl: _SbIdl, chassis_uuid: str | None,
                           datapaths: frozenset[str], plugged: frozenset[str]) -> None:
        if (chassis_uuid, datapaths, plugged) == (self._chassis_uuid, self._datapaths,
                                                  self._watched):
            return
        if chassis_uuid != self._chassis_uuid:
            LOG.info("chassis %s is SB row %s", self.chassis, chassis_uuid)
        self._chassis_uuid, self._datapaths, self._watched = chassis_uuid, datapaths, plugged
        pb: list = NOTHING
        if chassis_uuid:
            pb = [["chassis", "==", ["uuid", chassis_uuid]]]
            if "additional_chassis" in idl.tables["Port_Binding"].columns:
                pb.append(["additional_chassis", "includes", ["uuid", chassis_uuid]])
            pb += [["datapath", "==", ["uuid", dp]] for dp in sorted(datapaths)]
            # The rows of ports plugged here, before ovn-controller binds them (is_here).
            pb += [["logical_port", "==", lp] for lp in sorted(plugged)]
        dp_cond = [["_uuid", "==", ["uuid", dp]] for dp in sorted(datapaths)] or NOTHING
        LOG.debug("SB conditions: %d datapaths, %d plugged ports", len(datapaths),
                  len(plugged))
        # Called from run() in the IDL thread: wait() then wakes at once to send them.
        idl.cond_change("Port_Binding", pb)
        idl.cond_change("Datapath_Binding", dp_cond)
