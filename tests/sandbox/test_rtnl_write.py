"""A metadata network's host steps over bare netlink (ovnmeta.host.rtnl_write, through
ovnmeta.host.links) on a real namespace, read back by iproute2 and ethtool, which share no
code with them: the pair, the inner end's MAC, MTU and state, addresses of both families,
permanent neighbours, TX checksumming; then the steps again over what is there, and the
errors that are not ignored."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess

import pytest

from ovnmeta.core.model import METADATA_V4, METADATA_V6, NetworkSpec
from ovnmeta.host import links

SPEC = NetworkSpec(
    network_id="00000000-0000-4000-8000-00000000abcd", namespace="omtest-write",
    outer="omtest-wr-o", inner="omtest-wr-i", iface_id="lp-write", mac="fa:16:3e:12:34:56",
    addresses=frozenset({"10.88.0.2/24", METADATA_V4, "fd00:88::2/64", METADATA_V6}),
    mtu=1442, vm_ports=1,
    neighbours=frozenset({("10.88.0.10", "fa:16:3e:00:00:0a"),
                          ("fd00:88::10", "fa:16:3e:00:00:0b")}))


def _ip(*args: str, ns: str | None = SPEC.namespace):
    argv = ["ip", "-j", *(["-n", ns] if ns else []), *args]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def _gone() -> None:
    subprocess.run(["ip", "netns", "delete", SPEC.namespace], capture_output=True)
    subprocess.run(["ip", "link", "delete", SPEC.outer], capture_output=True)


@pytest.fixture
def made():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    _gone()
    try:
        with links.batch():   # as a pass applies a new network's steps
            links.create_namespace(SPEC)
            links.create_veth(SPEC)
            links.configure_inner(SPEC, csum_off=True)
            for address in sorted(SPEC.addresses):
                links.add_address(SPEC, address)
            links.add_neighbours(SPEC, tuple(sorted(SPEC.neighbours)))
            links.set_outer_up(SPEC)
        yield SPEC
    finally:
        _gone()


def _inner() -> dict:
    (link,) = _ip("addr", "show", "dev", SPEC.inner)
    return link


def _addresses() -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in _inner()["addr_info"]
            if a.get("scope") != "link" or a["local"] == "fe80::a9fe:a9fe"}


def test_a_new_network_as_iproute2_and_ethtool_see_it(made) -> None:
    link = _inner()
    assert link["address"] == SPEC.mac and link["mtu"] == SPEC.mtu
    assert "UP" in link["flags"]
    assert _addresses() == set(SPEC.addresses)
    neighbours = {(n["dst"], n["lladdr"]) for n in _ip("neigh", "show", "dev", SPEC.inner)
                  if "PERMANENT" in n.get("state", [])}
    assert neighbours == set(SPEC.neighbours)
    (outer,) = _ip("link", "show", "dev", SPEC.outer, ns=None)
    assert "UP" in outer["flags"] and outer["link_netnsid"] is not None
    (lo,) = _ip("link", "show", "dev", "lo")
    assert "UP" in lo["flags"]
    features = subprocess.run(["ip", "netns", "exec", SPEC.namespace, "ethtool", "-k",
                               SPEC.inner], capture_output=True, text=True, check=True).stdout
    assert "tx-checksumming: off" in features
    state, foreign = links.read_inner(SPEC.namespace, SPEC.inner)
    assert state.mac == SPEC.mac and not state.tx_csum and foreign == ()


def test_the_steps_again_over_what_is_there(made) -> None:
    subprocess.run(["ip", "-n", SPEC.namespace, "link", "set", SPEC.inner, "down",
                    "address", "fa:16:3e:99:99:99", "mtu", "1300"], check=True)
    subprocess.run(["ip", "-n", SPEC.namespace, "neigh", "replace", "10.88.0.10", "lladdr",
                    "fa:16:3e:77:77:77", "dev", SPEC.inner, "nud", "stale"], check=True)
    with links.batch():
        links.configure_inner(SPEC, csum_off=True)
        # The down above flushed the IPv6 addresses (keep_addr_on_down is 0); the IPv4
        # ones are there already: fine.
        for address in sorted(SPEC.addresses):
            links.add_address(SPEC, address)
        links.add_neighbours(SPEC, tuple(sorted(SPEC.neighbours)))
        links.del_address(SPEC, "fd00:88::2/64")
        links.del_address(SPEC, "fd00:88::2/64")              # gone already: fine
        links.delete_neighbours(SPEC, ("fd00:88::10", "fd00:88::10"))
    link = _inner()
    assert link["address"] == SPEC.mac and link["mtu"] == SPEC.mtu and "UP" in link["flags"]
    assert _addresses() == set(SPEC.addresses) - {"fd00:88::2/64"}
    assert {(n["dst"], n["lladdr"], tuple(n["state"]))
            for n in _ip("neigh", "show", "dev", SPEC.inner)} == {
        ("10.88.0.10", "fa:16:3e:00:00:0a", ("PERMANENT",))}
    links.create_veth(SPEC)          # a pair made again replaces both ends
    assert _inner()["address"] == SPEC.mac and "UP" not in _inner()["flags"]
    links.delete_links(SPEC.namespace, (SPEC.inner, "omtest-none"))
    assert [link["ifname"] for link in _ip("link", "show")] == ["lo"]
    with pytest.raises(IndexError, match=SPEC.outer):
        links.set_outer_up(SPEC)     # its peer went with the inner end
    with links.batch():
        links.create_veth(SPEC)
        links.create_veth(SPEC)      # the same pair again within a batch: made afresh
    assert [link["ifname"] for link in _ip("link", "show")] == ["lo", SPEC.inner]
    with pytest.raises(OSError) as refused:   # the kernel's answer, raised as it came
        links.create_veth(dataclasses.replace(SPEC, outer="omtest-name-too-long"))
    assert refused.value.errno == errno.ERANGE   # IFLA_IFNAME longer than IFNAMSIZ
