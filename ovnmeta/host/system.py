"""The host as the reconciler reads and changes it, behind one object: namespaces, veths,
addresses, neighbours and firewall tables (pyroute2, in `netns`), and the processes inside
our namespaces (`foreign`, `procs`). Unit tests hand the reconciler a fake of it."""

from __future__ import annotations

from ovnmeta.host import foreign, netns, procs
from ovnmeta.core.model import ForeignProcess


class LinuxHost:
    batch = staticmethod(netns.batch)
    list_namespaces = staticmethod(netns.list_namespaces)
    is_namespace = staticmethod(netns.is_namespace)
    read_inner = staticmethod(netns.read_inner)
    read_outer = staticmethod(netns.read_outer)
    read_firewall = staticmethod(netns.read_firewall)
    outer_devices = staticmethod(netns.outer_devices)
    create_namespace = staticmethod(netns.create_namespace)
    create_veth = staticmethod(netns.create_veth)
    configure_inner = staticmethod(netns.configure_inner)
    add_address = staticmethod(netns.add_address)
    del_address = staticmethod(netns.del_address)
    add_neighbours = staticmethod(netns.add_neighbours)
    delete_neighbours = staticmethod(netns.delete_neighbours)
    set_outer_up = staticmethod(netns.set_outer_up)
    delete_links = staticmethod(netns.delete_links)
    delete_firewall = staticmethod(netns.delete_firewall)
    delete = staticmethod(netns.delete)
    delete_outer = staticmethod(netns.delete_outer)
    migrate_queued_connections = staticmethod(netns.migrate_queued_connections)
    neutron_agents = staticmethod(foreign.neutron_agents)

    @staticmethod
    def processes_in(namespaces: set[str]) -> dict[str, list[ForeignProcess]]:
        """Processes inside these namespaces of ours, by namespace."""
        return foreign.in_namespaces({ns: f"{netns.NETNS_DIR}/{ns}" for ns in namespaces})

    @staticmethod
    def listens(namespace: str, address: str, port: int, pids: list[int]) -> bool:
        """One of these processes (or their children: haproxy's workers) holds a socket
        listening on address:port in the namespace."""
        inodes = netns.listening_inodes(namespace, address, port)
        if not inodes:
            return False
        pids = pids + [c for p in pids for c in procs.children(p)]
        return bool(inodes & procs.socket_inodes(pids))
