"""The bare-socket reads (ovnmeta.host.rtnl_read) against pyroute2's own API and iproute2,
on a real namespace with a veth pair, addresses, a permanent neighbour, an nftables table
(iptables-nft), listening sockets, and enough links that a dump spans several reads (veth
pairs: this kernel has no dummy)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess

import pytest

from ovnmeta.host import links, nsfirewall, nssockets, rtnl_read
from ovnmeta.host.namespace import entered
from pyroute2.iproute.linux import IPRoute
from pyroute2.nftables.main import NFTables

NS = "omtest-rtnl"
OUTER, INNER = "omtest-rtnl-o", "omtest-rtnl-i"
PAIRS = 75   # 150 more links of 1-2 KiB each: a dump of them takes several recv()s
EXTRA = 2 * PAIRS


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


@pytest.fixture(scope="module")
def namespace():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    subprocess.run(["ip", "netns", "delete", NS], check=False, capture_output=True)
    subprocess.run(["ip", "link", "delete", OUTER], check=False, capture_output=True)
    _ip("netns", "add", NS)
    try:
        _ip("link", "add", OUTER, "type", "veth", "peer", "name", INNER)
        _ip("link", "set", INNER, "netns", NS)
        _ip("-n", NS, "link", "set", INNER, "address", "fa:16:3e:00:00:02", "mtu", "1442",
            "up")
        _ip("-n", NS, "addr", "add", "10.77.0.2/24", "dev", INNER)
        _ip("-n", NS, "addr", "add", "169.254.169.254/32", "dev", INNER)
        _ip("-n", NS, "addr", "add", "fd00:77::2/64", "dev", INNER, "nodad")
        _ip("-n", NS, "link", "set", "lo", "up")
        _ip("-n", NS, "neigh", "add", "10.77.0.10", "lladdr", "fa:16:3e:00:00:0a", "dev",
            INNER, "nud", "permanent")
        _ip("-n", NS, "neigh", "add", "10.77.0.12", "lladdr", "fa:16:3e:00:00:0c", "dev",
            INNER, "nud", "stale")
        _ip("-n", NS, "neigh", "add", "fd00:77::10", "lladdr", "fa:16:3e:00:00:0b", "dev",
            INNER, "nud", "permanent")
        with open(f"/tmp/{NS}.batch", "w") as f:
            f.writelines(f"link add omt-a{i} type veth peer name omt-b{i}\n"
                         for i in range(PAIRS))
        _ip("-n", NS, "-batch", f"/tmp/{NS}.batch")
        subprocess.run(["ip", "netns", "exec", NS, "iptables-nft", "-t", "mangle", "-A",
                        "POSTROUTING", "-p", "tcp", "-j", "CHECKSUM", "--checksum-fill"],
                       check=True)
        yield NS
    finally:
        subprocess.run(["ip", "netns", "delete", NS], check=False)
        subprocess.run(["ip", "link", "delete", OUTER], check=False, capture_output=True)
        os.unlink(f"/tmp/{NS}.batch") if os.path.exists(f"/tmp/{NS}.batch") else None


def _in(ns: str, protocol: int = rtnl_read.NETLINK_ROUTE):
    with entered(ns):
        return rtnl_read.open_socket(protocol)


def test_links_match_pyroute2_across_a_multipart_dump(namespace) -> None:
    sock = _in(namespace)
    with entered(namespace):
        ipr = IPRoute()
    try:
        ours = {(l.index, l.name, l.flags, l.address, l.mtu) for l in rtnl_read.links(sock)}
        theirs = {(l["index"], l.get_attr("IFLA_IFNAME"), l["flags"],
                   (l.get_attr("IFLA_ADDRESS") or "").lower(), l.get_attr("IFLA_MTU"))
                  for l in ipr.get_links()}
    finally:
        ipr.close()
        sock.close()
    assert len(ours) == EXTRA + 2          # lo and the veth end too
    assert ours == theirs
    assert (INNER, "fa:16:3e:00:00:02", 1442) in {(n, a, m) for _i, n, _f, a, m in ours}


def test_one_link_by_name_and_a_missing_one(namespace) -> None:
    sock = rtnl_read.open_socket()
    try:
        outer = rtnl_read.link(sock, OUTER)
        assert outer is not None and outer.name == OUTER and not outer.flags & 1
        assert rtnl_read.link(sock, "omtest-none") is None
    finally:
        sock.close()
    assert links.read_outer(OUTER) == (True, False)
    assert links.read_outer("omtest-none") == (False, False)


def test_addresses_and_neighbours_of_one_link_match_pyroute2(namespace) -> None:
    sock = _in(namespace)
    with entered(namespace):
        ipr = IPRoute()
    try:
        index = rtnl_read.link(sock, INNER).index
        addrs = {(a.address, a.prefixlen) for a in rtnl_read.addresses(sock, index)}
        neigh = {(n.dst, n.lladdr, n.state) for n in rtnl_read.neighbours(sock, index)}
        theirs_addrs = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                        for a in ipr.get_addr(index=index)}
        theirs_neigh = {(n.get_attr("NDA_DST"), (n.get_attr("NDA_LLADDR") or "").lower(),
                         n["state"]) for n in ipr.get_neighbours(ifindex=index)}
        assert rtnl_read.addresses(sock, 999999) == []
    finally:
        ipr.close()
        sock.close()
    assert addrs == theirs_addrs
    assert neigh == theirs_neigh
    assert {("10.77.0.2", 24), ("169.254.169.254", 32), ("fd00:77::2", 64)} <= addrs
    assert {("10.77.0.10", "fa:16:3e:00:00:0a", 0x80), ("10.77.0.12", "fa:16:3e:00:00:0c", 0x04),
            ("fd00:77::10", "fa:16:3e:00:00:0b", 0x80)} <= neigh


def test_read_inner_gives_the_link_state_and_other_links(namespace) -> None:
    state, foreign = links.read_inner(namespace, INNER)
    assert state.mac == "fa:16:3e:00:00:02" and state.mtu == 1442 and state.up
    assert {"10.77.0.2/24", "169.254.169.254/32"} <= state.addresses
    assert state.permanent == {("10.77.0.10", "fa:16:3e:00:00:0a"),
                               ("fd00:77::10", "fa:16:3e:00:00:0b")}
    assert state.neighbours == {("10.77.0.12", "fa:16:3e:00:00:0c")}   # resolved, not permanent
    assert len(foreign) == EXTRA and "lo" not in foreign and INNER not in foreign
    assert links.read_inner("omtest-rtnl-never-made", INNER) == (None, ())


def test_tx_checksumming_follows_ethtool(namespace) -> None:
    def ethtool_says() -> bool:
        # ethtool itself, not pyroute2's IoctlEthtool: its API differs between the pyroute2
        # releases pyproject.toml admits (0.7.2 has no get_offload_flags).
        out = subprocess.run(["ip", "netns", "exec", namespace, "ethtool", "-k", INNER],
                             check=True, capture_output=True, text=True).stdout
        (line,) = [x for x in out.splitlines() if x.startswith("tx-checksumming:")]
        return line.split()[1] == "on"

    for setting, expected in (("on", True), ("off", False), ("on", True)):
        subprocess.run(["ip", "netns", "exec", namespace, "ethtool", "-K", INNER, "tx",
                        setting], check=True, capture_output=True)
        assert links.read_inner(namespace, INNER)[0].tx_csum is expected
        assert links.read_inner(namespace, INNER, with_csum=False)[0].tx_csum is False
        assert ethtool_says() is expected


def test_nftables_tables_match_pyroute2(namespace) -> None:
    sock = _in(namespace, rtnl_read.NETLINK_NETFILTER)
    with entered(namespace):
        nft = NFTables(nfgen_family=0)
    try:
        ours = sorted(rtnl_read.nftables_tables(sock))
        theirs = sorted(f"{t['nfgen_family']}:{t.get_attr('NFTA_TABLE_NAME')}"
                        for t in nft.get_tables())
    finally:
        nft.close()
        sock.close()
    assert ours == theirs and "2:mangle" in ours
    assert nsfirewall.read_firewall(namespace) == tuple(ours)


def _listener(ns: str | None, address: str, port: int, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if ns is None:
        sock = socket.socket(family, socket.SOCK_STREAM)
    else:
        with entered(ns):
            sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    if listen:
        sock.listen()
    return sock


def test_tcp_listeners_are_the_namespaces_own_on_that_address_and_port(namespace,
                                                                     monkeypatch) -> None:
    inode = lambda s: os.fstat(s.fileno()).st_ino   # noqa: E731
    socks = {
        "v4": _listener(namespace, "169.254.169.254", 80),
        "v6": _listener(namespace, "fd00:77::2", 80),
        "other address": _listener(namespace, "10.77.0.2", 80),
        "other port": _listener(namespace, "169.254.169.254", 8080),
        "bound, not listening": _listener(namespace, "169.254.169.254", 81, listen=False),
        "loopback here": _listener(namespace, "127.0.0.1", 18080),
        "loopback in the root namespace": _listener(None, "127.0.0.1", 18080),
    }
    try:
        assert nssockets.listening_inodes(namespace, "169.254.169.254", 80) == {inode(socks["v4"])}
        assert nssockets.listening_inodes(namespace, "fd00:77::2", 80) == {inode(socks["v6"])}
        assert nssockets.listening_inodes(namespace, "169.254.169.254", 81) == set()
        assert nssockets.listening_inodes(namespace, "127.0.0.1", 18080) == {
            inode(socks["loopback here"])}
        assert nssockets.listening_inodes("omtest-no-such-ns", "169.254.169.254", 80) == set()
        # The same answer as the kernel's text table, read in the namespace.
        with entered(namespace):
            with open("/proc/thread-self/net/tcp") as f:
                text = f.read()
        assert f" {inode(socks['other port'])} " in text
        sock = _in(namespace, rtnl_read.NETLINK_SOCK_DIAG)
        try:
            assert rtnl_read.tcp_listeners(sock, "169.254.169.254", 8080) == {
                inode(socks["other port"])}
        finally:
            sock.close()
        # Without inet_diag (a kernel module a container may lack) the text table answers.
        for address in ("169.254.169.254", "fd00:77::2"):
            assert nssockets.listening_from_proc(namespace, address, 80) == \
                nssockets.listening_inodes(namespace, address, 80)

        def no_inet_diag(*_args):
            raise OSError(errno.ENOENT, "netlink: ENOENT")
        monkeypatch.setattr(rtnl_read, "tcp_listeners", no_inet_diag)
        assert nssockets.listening_inodes(namespace, "169.254.169.254", 80) == {inode(socks["v4"])}
    finally:
        for s in socks.values():
            s.close()
