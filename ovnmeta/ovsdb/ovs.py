"""The local Open_vSwitch DB through ovsdbapp: who this chassis is, and our ports on br-int."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.backend.ovs_idl import transaction as idl_transaction
from ovsdbapp.schema.open_vswitch import impl_idl

from ovnmeta.core.naming import DEVICE_PREFIX
from ovnmeta.ovsdb.rowcache import RowCache

LOG = logging.getLogger(__name__)
VM_MARK = "vm-uuid"   # set by nova's os-vif on a VM's interface


@dataclass(frozen=True)
class ChassisConfig:
    system_id: str
    bridge: str
    datapath_type: str

    @property
    def netdev(self) -> bool:
        return self.datapath_type == "netdev"


class _NoWaitTransaction(idl_transaction.Transaction):
    """Commits without waiting for vswitchd to apply the change (ovs-vsctl --no-wait).

    vswitchd attaches the ports while the reconciler moves on to haproxy; a port it could
    not open shows up as ofport -1 in the interface map.
    """

    def pre_commit(self, txn) -> None:
        txn.expected_ifaces = set()  # AddPortCommand records new interfaces here


INTERFACE_COLUMNS = ("name", "type", "external_ids", "ofport")


def _iface(row) -> tuple[str, str, bool, int | None]:
    ext = row.external_ids
    return (row.name, ext.get("iface-id", ""), VM_MARK in ext,
            row.ofport[0] if row.ofport else None)


class _OvsIdl(connection.OvsdbIdl):
    """Keeps a map of our interfaces' iface-ids, rebuilt in the IDL thread after changes."""

    def __init__(self, remote: str, helper, on_change: Callable[[], None]) -> None:
        super().__init__(remote, helper)
        self._on_change = on_change
        self._seen = -1
        self.plugged: dict[str, str] = {}
        self.ofports: dict[str, int | None] = {}
        self.others: dict[str, tuple[str, bool]] = {}
        self.iface_ids: frozenset[str] = frozenset()
        # (name, iface-id, is a VM's, ofport) per Interface row
        self._ifaces = RowCache("Interface", _iface)

    def notify(self, event, row, updates=None) -> None:
        self._ifaces.notify(event, row)

    def cooperative_yield(self) -> None:
        """No yield at each row of an update. ovsdbapp's time.sleep(0) here is for
        eventlet; in a thread it hands the GIL over at every row and waits to get it back:
        0.09 ms a row on an idle machine, 3 ms while another thread runs Python (a pass),
        so an update of a few hundred rows took seconds to reach the agent."""

    def run(self) -> bool:
        changed = super().run()
        if self.change_seqno != self._seen:
            self._seen = self.change_seqno
            ifaces = self._ifaces.values(self.tables)
            ours = [i for i in ifaces if i[0].startswith(DEVICE_PREFIX)]
            plugged = {name: iface_id for name, iface_id, _, _ in ours}
            # Replaced whole: readers never see a map half-built.
            self.ofports = {name: ofport for name, _, _, ofport in ours}
            others = {name: (iface_id, vm) for name, iface_id, vm, _ in ifaces
                      if not name.startswith(DEVICE_PREFIX)}
            self.iface_ids = frozenset(iface for iface, _ in others.values() if iface)
            if plugged != self.plugged or others != self.others:
                LOG.debug("OVS: %d of our ports, %d others", len(plugged), len(others))
                self.plugged, self.others = plugged, others
                self._on_change()
        return changed


class LocalOvs:
    def __init__(self, remote: str, timeout: int, on_change: Callable[[], None]) -> None:
        self.remote = remote
        self._timeout = timeout
        self._on_change = on_change
        self.api: impl_idl.OvsdbIdl | None = None

    def start(self) -> None:
        helper = idlutils.get_schema_helper(self.remote, "Open_vSwitch")
        for table in ("Open_vSwitch", "Bridge", "Port"):
            # Not `statistics`: vswitchd rewrites it every 5 s.
            columns = [c for c in helper.schema_json["tables"][table]["columns"]
                       if c != "statistics"]
            helper.register_columns(table, columns)
        # Of Interface only what the agent reads or writes: vswitchd keeps updating the rest
        # (statistics, link state, status, ...) for every interface of the host, and each
        # update would rebuild the maps above, in the IDL thread, holding the GIL.
        helper.register_columns("Interface", list(INTERFACE_COLUMNS))
        conn = connection.Connection(_OvsIdl(self.remote, helper, self._on_change), self._timeout)
        self.api = impl_idl.OvsdbIdl(conn, start=True)
        if conn.thread is not None:
            conn.thread.name = "ovs-idl"   # for py-spy and the idle benchmark

    def stop(self) -> None:
        if self.api:
            self.api.ovsdb_connection.stop(timeout=5)

    def connected(self) -> bool:
        return bool(self.api and self.api.idl._session.is_connected())

    def chassis_config(self) -> ChassisConfig:
        ext = self.api.db_get("Open_vSwitch", ".", "external_ids").execute(check_error=True)
        system_id = ext.get("system-id", "")
        if not system_id:
            raise RuntimeError("Open_vSwitch external_ids:system-id is not set: is this host "
                               "configured as an OVN chassis?")
        bridge = ext.get("ovn-bridge", "br-int")
        dp_type = ""
        if self.api.br_exists(bridge).execute(check_error=True):
            dp_type = self.api.db_get("Bridge", bridge, "datapath_type").execute(
                check_error=True) or ""
        return ChassisConfig(system_id=system_id, bridge=bridge, datapath_type=dp_type)

    def plugged(self) -> dict[str, str]:
        """Our devices that have an OVS interface, by name, with their iface-id ('' if none)."""
        return dict(self.api.idl.plugged)

    def iface_ids(self) -> frozenset[str]:
        """iface-ids of the interfaces plugged on this host, other than ours: the logical
        ports whose VM (or other device) is really here."""
        return self.api.idl.iface_ids

    def others(self) -> dict[str, tuple[str, bool]]:
        """Interfaces that are not ours: name -> (iface-id, is a VM's)."""
        return dict(self.api.idl.others)

    def plug(self, bridge: str, ports: list[tuple[str, str]],
             replaces: tuple[str, ...] = ()) -> None:
        """Add (device, iface-id) pairs to the bridge in one transaction: vswitchd then
        reconfigures once for the whole batch, not once per network. `replaces` are ports
        removed in the same transaction, so the iface-id never has two ports."""
        if not ports:
            return
        with _NoWaitTransaction(self.api, self.api.ovsdb_connection, self._timeout,
                                check_error=True) as txn:
            for device in replaces:
                txn.add(self.api.del_port(device, if_exists=True))
            for device, iface_id in ports:
                txn.add(self.api.add_port(bridge, device, may_exist=True))
                txn.add(self.api.db_set("Interface", device,
                                        ("external_ids", {"iface-id": iface_id})))

    def ofports(self) -> dict[str, int | None]:
        """OpenFlow port numbers of our interfaces: -1 means vswitchd could not open it."""
        return dict(self.api.idl.ofports)

    def unplug(self, devices: list[str]) -> None:
        if not devices:
            return
        with _NoWaitTransaction(self.api, self.api.ovsdb_connection, self._timeout,
                                check_error=True) as txn:
            for device in devices:
                txn.add(self.api.del_port(device, if_exists=True))
