"""The packets `ovnmeta trace` hands to ovn-trace (ops/ovntrace.py) and how its report
prints (ops/tracereport.py). The sandbox test (tests/sandbox/test_cli.py) runs the real
ovn-trace on them."""

from __future__ import annotations

import json

from ovnmeta.ops.ovntrace import metadata_flows
from ovnmeta.ops.tracereport import HOPS, Hop, TraceResult, render

VM_MAC, LP_MAC = "fa:16:3e:00:00:10", "fa:16:3e:00:00:02"


def test_an_ipv4_vm_sends_one_packet_from_its_first_address_to_169_254_169_254() -> None:
    [(family, flow)] = metadata_flows("vm-1", VM_MAC, ["10.0.0.10", "10.0.0.11"], LP_MAC)
    assert family == "IPv4"
    assert flow == ('inport == "vm-1" && eth.src == fa:16:3e:00:00:10 && '
                    "eth.dst == fa:16:3e:00:00:02 && ip4.src == 10.0.0.10 && "
                    "ip4.dst == 169.254.169.254 && ip.ttl == 64 && tcp && tcp.dst == 80")


def test_an_ipv6_vm_asks_fe80_a9fe_a9fe_from_its_eui64_link_local_address() -> None:
    flows = dict(metadata_flows("vm-1", VM_MAC, ["10.0.0.10", "fd00::10"], LP_MAC))
    assert set(flows) == {"IPv4", "IPv6"}
    assert "ip6.src == fe80::f816:3eff:fe00:10 && ip6.dst == fe80::a9fe:a9fe" in flows["IPv6"]
    assert metadata_flows("vm-1", VM_MAC, ["fd00::10"], LP_MAC)[0][0] == "IPv6"


def test_the_report_names_the_broken_hop_its_fix_and_how_many_were_not_checked() -> None:
    result = TraceResult("vm-1", [Hop(1, "VM port", ok=True, evidence="bound here"),
                                  Hop(2, "localport", evidence="no localport",
                                      fix="create the metadata port", detail="a\nb")])
    text = render(result)
    assert " ✓ 1. VM port: bound here" in text and " ✗ 2. localport: no localport" in text
    assert "      fix: create the metadata port\n      a\n      b" in text
    assert f"({HOPS - 2} later hop(s) not checked)" in text and not result.ok
    assert json.loads(result.to_json())["hops"][1]["fix"] == "create the metadata port"


def test_all_seven_hops_passing_is_ok() -> None:
    result = TraceResult("vm-1", [Hop(n, f"hop {n}", ok=True) for n in range(1, HOPS + 1)])
    assert result.ok and render(result).endswith("all hops pass")
