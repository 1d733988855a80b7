"""The host as the reconciler, haproxy's manager and the operator commands read and change
it, behind one object (core.boundaries.Host): namespaces, veths,
addresses, neighbours (`namespace`, `links`), firewall tables (`nsfirewall`), sockets
(`nssockets`), and the processes inside our namespaces (`foreign`, `procs`). Unit tests
hand the reconciler a fake of it."""

from __future__ import annotations

from ovnmeta.core.model import ForeignProcess
from ovnmeta.host import foreign, links, namespace, nsfirewall, nssockets, procs


class LinuxHost:
    batch = staticmethod(links.batch)
    list_namespaces = staticmethod(namespace.list_namespaces)
    is_namespace = staticmethod(namespace.is_namespace)
    read_inner = staticmethod(links.read_inner)
    read_outer = staticmethod(links.read_outer)
    read_firewall = staticmethod(nsfirewall.read_firewall)
    outer_devices = staticmethod(links.outer_devices)
    create_namespace = staticmethod(links.create_namespace)
    create_veth = staticmethod(links.create_veth)
    configure_inner = staticmethod(links.configure_inner)
    add_address = staticmethod(links.add_address)
    del_address = staticmethod(links.del_address)
    add_neighbours = staticmethod(links.add_neighbours)
    delete_neighbours = staticmethod(links.delete_neighbours)
    set_outer_up = staticmethod(links.set_outer_up)
    delete_links = staticmethod(links.delete_links)
    delete_firewall = staticmethod(nsfirewall.delete_firewall)
    delete = staticmethod(links.delete)
    delete_outer = staticmethod(links.delete_outer)
    migrate_queued_connections = staticmethod(nssockets.migrate_queued_connections)
    neutron_agents = staticmethod(foreign.neutron_agents)
    tcp_connect = staticmethod(nssockets.tcp_connect)

    @staticmethod
    def processes_in(namespaces: set[str]) -> dict[str, list[ForeignProcess]]:
        """Processes inside these namespaces of ours, by namespace."""
        return foreign.in_namespaces({ns: f"{namespace.NETNS_DIR}/{ns}" for ns in namespaces})

    @staticmethod
    def listens(namespace: str, address: str, port: int, pids: list[int]) -> bool:
        """One of these processes (or their children: haproxy's workers) holds a socket
        listening on address:port in the namespace."""
        inodes = nssockets.listening_inodes(namespace, address, port)
        if not inodes:
            return False
        pids = pids + [c for p in pids for c in procs.children(p)]
        return bool(inodes & procs.socket_inodes(pids))

    @staticmethod
    def listeners(namespace: str, address: str, port: int) -> list[ForeignProcess]:
        """The processes in the namespace that hold a socket listening on address:port."""
        inodes = nssockets.listening_inodes(namespace, address, port)
        if not inodes:
            return []
        found = LinuxHost.processes_in({namespace}).get(namespace, [])
        return [p for p in found if procs.socket_inodes([p.pid]) & inodes]
