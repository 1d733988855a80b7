"""ovn-trace, the operator's own tool, run with the agent's SB connection options, and the
packets `ovnmeta trace` asks it about: a VM's first packet to the metadata address."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from ovnmeta.core.linklocal import link_local_of
from ovnmeta.core.model import METADATA_IP
from ovnmeta.ops.tracereport import Broken


class OvnTrace:
    def __init__(self, remote: str, key: str = "", cert: str = "", ca: str = "") -> None:
        self.remote = remote
        self.ssl = [a for flag, v in (("-p", key), ("-c", cert), ("-C", ca)) if v
                    for a in (flag, v)]

    def __call__(self, datapath: str, flow: str) -> str:
        argv = ["ovn-trace", f"--db={self.remote}", *self.ssl, "--minimal",
                "--no-friendly-names", datapath, flow]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise Broken(f"ovn-trace failed: {proc.stderr.strip()}",
                         "check [ovn] ovn_sb_connection and that the SB is reachable")
        return proc.stdout


def metadata_flows(vm_port: str, vm_mac: str, vm_ips: Sequence[str], localport_mac: str
                   ) -> list[tuple[str, str]]:
    """The VM's first packet to the metadata address: IPv4, and IPv6 link-local when the
    network has IPv6 (what cloud-init on an IPv6-only guest sends), as (family, flow)."""
    match = (f'inport == "{vm_port}" && eth.src == {vm_mac} && eth.dst == {localport_mac} && ')
    tail = " && ip.ttl == 64 && tcp && tcp.dst == 80"
    flows = []
    v4 = [ip for ip in vm_ips if ":" not in ip]
    if v4:
        flows.append(("IPv4", match + f"ip4.src == {v4[0]} && ip4.dst == {METADATA_IP}" + tail))
    if any(":" in ip for ip in vm_ips):
        flows.append(("IPv6", match + f"ip6.src == {link_local_of(vm_mac)} && "
                      "ip6.dst == fe80::a9fe:a9fe" + tail))
    return flows
