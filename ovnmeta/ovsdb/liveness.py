"""The agent's one write to the SB: its keys in this chassis's Chassis_Private row.

neutron-server lists an agent, alive, from those keys: its id, and SB_Global.nb_cfg echoed
back (the sb-cfg key), as neutron's agents write them. Called from the SB view's IDL thread
after each change it sends (ovnmeta.ovsdb.sbview), with the IDL whose rows it reads.
"""

from __future__ import annotations

import logging

import ovs.db.idl

from ovnmeta.core import registration

LOG = logging.getLogger("ovnmeta.ovsdb.sbview")


class LivenessReporter:
    def __init__(self, chassis: str, bridge: str, register_as: str = registration.AUTO,
                 extensions: tuple[str, ...] = ()) -> None:
        self.chassis, self.bridge = chassis, bridge
        self._register_as, self._extensions = register_as, extensions
        self.registration: registration.Registration | None = None
        self._reported: tuple[object, dict[str, str]] | None = None   # (row uuid, keys)

    def report(self, idl: ovs.db.idl.Idl) -> None:
        """Echo SB_Global.nb_cfg into our Chassis_Private row, as neutron's agents do: it is
        how `openstack network agent list` tells that the agent is alive."""
        globals_ = list(idl.tables["SB_Global"].rows.values())
        mine = [r for r in idl.tables["Chassis_Private"].rows.values()
                if r.name == self.chassis]
        if not globals_ or not mine:
            return
        row = mine[0]
        if self.registration is None:  # once, from the row as the agent found it
            self.registration = registration.choose(self._register_as, self._extensions,
                                                    row.external_ids)
            LOG.info("registering in Chassis_Private as %s (%s)", self.registration.mode,
                     self.registration.reason)
        want = self.registration.wanted(self.chassis, globals_[0].nb_cfg, self.bridge)
        stale = [k for k in self.registration.removes if k in row.external_ids]
        current = all(row.external_ids.get(k) == v for k, v in want.items()) and not stale
        # Sent to this very row already, its update not back yet: not again. A row destroyed
        # and made anew by ovn-controller is another row, written at once (LP #2119097).
        if current or ((row.uuid, want) == self._reported and not stale):
            return
        txn = ovs.db.idl.Transaction(idl)
        for key, value in want.items():
            row.setkey("external_ids", key, value)
        for key in stale:
            row.delkey("external_ids", key)
        # Completes over the next run()s; should it fail, the next change tries again.
        txn.commit()
        self._reported = (row.uuid, want)
