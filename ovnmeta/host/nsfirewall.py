"""nftables tables in a namespace: ovnmeta makes none, so any is another agent's (neutron's
iptables-nft CHECKSUM rule on a netdev bridge), read to report and deleted at a takeover.

Reads are bare netlink (rtnl_read); deleting goes through pyroute2's nftables, the one use
of pyroute2 left in the agent, loaded lean (ovnmeta.host.pyroute2_lean).
"""

from __future__ import annotations

import errno

from ovnmeta.host import pyroute2_lean

pyroute2_lean.register()   # before the first pyroute2 import: only what follows is loaded
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.nftables.main import NFTables  # noqa: E402

from ovnmeta.host import rtnl_read  # noqa: E402
from ovnmeta.host.namespace import entered, open_in  # noqa: E402

NFPROTO_UNSPEC = 0


def _nftables(ns: str) -> NFTables:
    with entered(ns):
        return NFTables(nfgen_family=NFPROTO_UNSPEC)


def read_firewall(ns: str) -> tuple[str, ...]:
    """nftables tables in a namespace, as "family:name" (iptables-nft makes them): ovnmeta
    makes none, so any is another agent's (neutron's CHECKSUM rule on a netdev bridge)."""
    try:
        sock = open_in(ns, rtnl_read.NETLINK_NETFILTER)
    except OSError:
        return ()
    try:
        return tuple(sorted(rtnl_read.nftables_tables(sock)))
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
            return ()   # a kernel without nf_tables: no table can be there
        raise
    finally:
        sock.close()


def delete_firewall(ns: str, tables: tuple[str, ...]) -> None:
    nft = _nftables(ns)
    try:
        for table in tables:
            family, name = table.split(":", 1)
            try:
                nft.table("del", name=name, family=int(family))
            except NetlinkError as exc:
                if exc.code != errno.ENOENT:
                    raise
    finally:
        nft.close()
