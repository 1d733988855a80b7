"""`ovnmeta trace`: walk a VM's metadata path hop by hop and stop at the first broken one.

VM port → localport → ovn-trace → namespace and OVS port → haproxy → agent → nova. Each hop
reports what it saw and, when broken, the one thing to do about it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from ovnmeta.agent import control
from ovnmeta.core import naming
from ovnmeta.core.boundaries import Host
from ovnmeta.core.desired import (VM_PORT_TYPES, addresses_with_prefix, desired_networks,
                                  parse_mac_column)
from ovnmeta.core.model import (METADATA_IP, METADATA_V4, METADATA_V6, NetworkSpec, NovaEndpoint,
                                PortRecord, SbSnapshot)
from ovnmeta.core.signing import sign_instance_id
from ovnmeta.haproxy.runtime import stats_command
from ovnmeta.haproxy.settings import MAPS_DIR, map_path, shared_stats_socket
from ovnmeta.host.system import LinuxHost
from ovnmeta.ops.ovntrace import OvnTrace, metadata_flows
from ovnmeta.ops.tracereport import Broken, Hop, TraceResult
from ovnmeta.ovsdb.ovs import LocalOvs
from ovnmeta.ovsdb.sbquery import SbQuery
from ovnmeta.proxy.nova import NovaClient, NovaTimeout, NovaUnavailable


@dataclass
class VmRef:
    """How the operator named the VM: a logical port, an instance id, or IP + network."""
    name: str = ""
    ip: str = ""
    network: str = ""


class Tracer:
    def __init__(self, conf, host: Host | None = None) -> None:
        self.conf = conf
        self.host: Host = host or LinuxHost()
        self.sb = SbQuery(conf)
        self.ovn_trace = OvnTrace(",".join(conf.ovn.ovn_sb_connection),
                                  conf.ovn.ovn_sb_private_key, conf.ovn.ovn_sb_certificate,
                                  conf.ovn.ovn_sb_ca_cert)
        self.state_dir = Path(conf.state_path)
        # filled in as hops pass
        self.vm: dict = {}
        self.vm_mac = ""
        self.vm_ips: tuple[str, ...] = ()
        self.datapath: dict = {}
        self.network_id = ""
        self.spec: NetworkSpec | None = None   # what the agent would build (hop 2)
        self.instance_id = ""
        self.project_id = ""
        self._sysid: str | None = None
        self._ovs: LocalOvs | None = None

    @property
    def desired(self) -> NetworkSpec:
        """The network as the agent would build it: found by hop 2, read by the later hops
        (which run only when it passed)."""
        if self.spec is None:
            raise RuntimeError("hop 2 (the SB's view of the network) has not passed")
        return self.spec

    def run(self, ref: VmRef) -> TraceResult:
        result = TraceResult(vm=ref.name or f"{ref.ip} on {ref.network}")
        hops = [("VM port bound here", lambda: self.hop_port(ref)),
                ("metadata localport", self.hop_localport),
                ("ovn-trace VM -> localport", self.hop_ovn_trace),
                ("namespace and OVS port", self.hop_namespace),
                ("haproxy listening", self.hop_haproxy),
                ("agent socket and index", self.hop_agent),
                ("nova metadata API", self.hop_nova)]
        try:
            for number, (name, check) in enumerate(hops, 1):
                hop = Hop(number, name)
                result.hops.append(hop)
                try:
                    hop.evidence = check()
                    hop.ok = True
                except Broken as exc:
                    hop.evidence, hop.fix, hop.detail = exc.evidence, exc.fix, exc.detail
                    break
        finally:
            self.sb.stop()
            if self._ovs:
                self._ovs.stop()
        return result

    # 1
    def hop_port(self, ref: VmRef) -> str:
        try:
            self.sb.start()
        except Exception as exc:
            raise Broken(f"cannot read the SB: {exc}",
                         "check [ovn] ovn_sb_connection and its SSL options") from None
        rows = self._find_vm(ref)
        if not rows:
            raise Broken(f"no Port_Binding matches {ref.name or ref.ip}",
                         "check the VM's port in neutron (`openstack port list --server ...`)")
        if len(rows) > 1:
            raise Broken(f"{len(rows)} Port_Bindings match: "
                         + ", ".join(r["logical_port"] for r in rows),
                         "name the VM by logical port name, or give --network")
        self.vm = rows[0]
        chassis = self._chassis()
        if chassis is None:
            private = self.sb.find("Chassis_Private", name=self._system_id())
            raise Broken(f"this host's chassis {self._system_id()} has no Chassis row in the "
                         f"SB (its Chassis_Private row is {'there' if private else 'gone too'})"
                         ", so nothing can be bound here",
                         "ovn-controller on this host is not running or not registered, or "
                         "the chassis was deleted (`ovn-sbctl chassis-del`): restart "
                         "ovn-controller here and it registers again")
        bound = self.vm["chassis"]
        if not bound or (chassis and bound[0] != chassis["_uuid"]):
            row = self.sb.get("Chassis", bound[0]) if bound else None
            where = row["name"] if row else None
            raise Broken(f"{self.vm['type'] or 'VM'} port {self.vm['logical_port']} is bound "
                         f"to {where or 'no chassis'}, not to {self._system_id()}",
                         f"run `ovnmeta trace` on {where}" if where else
                         "OVN binds an external port to the active chassis of its HA chassis "
                         "group: check its ha_chassis_group (`ovn-nbctl list "
                         "HA_Chassis_Group`) and that chassis's ovn-controller"
                         if self.vm["type"] == "external" else
                         "the VM's interface is not plugged: check nova/os-vif and "
                         "ovn-controller on the VM's host")
        mac, ips = parse_mac_column(tuple(self.vm["mac"]))
        if not mac or not ips:
            raise Broken(f"port {self.vm['logical_port']} has no MAC/IP in its mac column "
                         f"{self.vm['mac']}", "give the neutron port a fixed IP")
        self.vm_mac, self.vm_ips = mac, ips
        ext = self.vm["external_ids"]
        self.instance_id = ext.get(self.conf.metadata.instance_id_key, "")
        self.project_id = ext.get(self.conf.metadata.project_id_key, "")
        self.datapath = self.sb.get("Datapath_Binding", self.vm["datapath"]) or {}
        self.network_id = naming.network_id(self.datapath.get("external_ids", {})) or ""
        return (f"{self.vm['logical_port']} on network {self.network_id}, bound to "
                f"{self._system_id()}, {mac} {' '.join(ips)}, instance {self.instance_id}")

    # 2
    def hop_localport(self) -> str:
        """The localport and namespace addresses the agent itself would choose, from the
        same code (core/desired.py) fed with this network's Port_Binding rows."""
        rows = self.sb.find("Port_Binding", datapath=self.vm["datapath"])
        ports = tuple(PortRecord(
            logical_port=r["logical_port"], type=r["type"], network_id=self.network_id,
            mac=tuple(r["mac"]), external_ids=tuple(sorted(r["external_ids"].items())),
            bound_here=r["logical_port"] == self.vm["logical_port"]) for r in rows)
        specs, problems = desired_networks(
            SbSnapshot(chassis=self._system_id(), ports=ports),
            cidrs_key=self.conf.metadata.cidrs_key)
        if self.network_id not in specs:
            reason = next((p.reason for p in problems if p.network_id == self.network_id),
                          f"network {self.network_id} is not one the agent serves")
            raise Broken(reason, "create the metadata port (neutron: a port with device_owner "
                         "network:distributed and an IP on each subnet; "
                         "`neutron-ovn-db-sync-util` repairs it)")
        self.spec = spec = specs[self.network_id]
        lp_ips = [a.split("/")[0] for a in spec.addresses
                  if a not in (METADATA_V4, METADATA_V6)]
        vm_nets = [ipaddress.ip_interface(a).network for a in addresses_with_prefix(
            tuple(self.vm_ips), self.vm["external_ids"].get(self.conf.metadata.cidrs_key, ""))]
        if not any(ipaddress.ip_address(ip) in net for ip in lp_ips for net in vm_nets):
            raise Broken(f"localport {spec.iface_id} has no IP on the VM's subnet(s) "
                         f"{', '.join(map(str, vm_nets))}",
                         "add the subnet to the metadata port (neutron does this per DHCP "
                         "subnet)")
        return f"{spec.iface_id} {spec.mac} {' '.join(sorted(lp_ips))}"

    # 3
    def hop_ovn_trace(self) -> str:
        switch = self.datapath.get("external_ids", {}).get("name", self.vm["datapath"])
        lp = self.desired.iface_id
        traced = []
        for family, flow in metadata_flows(self.vm["logical_port"], self.vm_mac, self.vm_ips,
                                           self.desired.mac):
            out = self.ovn_trace(switch, flow)
            if f'output("{lp}")' not in out:
                raise Broken(
                    f"the {family} packet does not reach {lp}: port security, ACLs or "
                    "addresses drop it",
                    "compare the VM port's port_security with its MAC/IPs (`ovn-nbctl "
                    f"lsp-get-port-security {self.vm['logical_port']}`) and its security "
                    "groups",
                    detail=f"ovn-trace --minimal {switch} {shlex.quote(flow)}\n{out.strip()}")
            traced.append(family)
        return f"the {' and '.join(traced)} packets are output to {lp}"

    # 4
    def hop_namespace(self) -> str:
        ns = naming.namespace(self.network_id)
        outer = naming.outer_device(self.network_id)
        ovs = self._local_ovs()
        plugged, ofports = ovs.plugged(), ovs.ofports()
        try:
            bridge = ovs.chassis_config().bridge
        except Exception as exc:
            raise Broken(f"cannot read the local OVS DB: {exc}",
                         "check [ovs] ovsdb_connection and ovsdb-server") from None
        lp = self.desired.iface_id
        if plugged.get(outer) != lp:
            seen = f"iface-id {plugged[outer]!r}" if outer in plugged else "no such port"
            raise Broken(f"OVS port {outer} on {bridge} with iface-id={lp}: {seen}",
                         "the agent plugs it within a second when running: check "
                         "`ovnmeta status` and the agent log")
        twins = sorted(name for name, (iface_id, _) in ovs.others().items() if iface_id == lp)
        if twins:
            raise Broken(f"iface-id={lp} is also on OVS port(s) {', '.join(twins)}: "
                         "ovn-controller binds the localport to one of them only",
                         "another agent's port (neutron's tap…0?): the agent replaces it "
                         "on its next pass, or `ovs-vsctl del-port` it")
        if ofports.get(outer) in (None, -1):
            raise Broken(f"vswitchd could not open {outer} (ofport {ofports.get(outer)})",
                         "see ovs-vswitchd.log for the interface error")
        if ns not in self.host.list_namespaces():
            raise Broken(f"namespace {ns} does not exist",
                         "start ovnmeta-agent; it creates the namespace on its next pass")
        expected = self.desired.addresses
        inner, others = self.host.read_inner(ns, naming.inner_device(self.network_id),
                                             with_csum=False)
        if others:
            raise Broken(f"{ns} holds device(s) ovnmeta did not make: {', '.join(others)}",
                         "another agent's veth (neutron's tap…1?) answers for the same "
                         "addresses; the agent replaces it on its next pass, or delete it")
        if inner is None:
            raise Broken(f"{naming.inner_device(self.network_id)} missing in {ns}",
                         "the agent recreates the pair: check its log for netlink errors")
        missing = expected - inner.addresses
        if missing or inner.mac != self.desired.mac:
            raise Broken(f"{ns} lacks {', '.join(sorted(missing)) or 'nothing'}; MAC "
                         f"{inner.mac} (localport {self.desired.mac})",
                         "the agent repairs this on its next full pass "
                         "(metadata.reconcile_interval); restart it to repair now")
        return (f"{outer} ofport {ofports[outer]} iface-id={lp}; {ns} has "
                f"{' '.join(sorted(inner.addresses))}")

    # 5
    def hop_haproxy(self) -> str:
        ns = naming.namespace(self.network_id)
        squatters = self.host.listeners(ns, METADATA_IP, 80)
        if squatters:
            who = ", ".join(f"{p.name} pid {p.pid}" + (f" (-f {p.config})" if p.config else "")
                            for p in squatters)
            raise Broken(f"{who} also listens on {METADATA_IP}:80 inside {ns}: connections "
                         "are shared between it and ovnmeta's haproxy",
                         "another agent's proxy (neutron's haproxy?): the running agent "
                         "stops it once its own listens; otherwise stop it by its PID")
        error = self.host.tcp_connect(ns, METADATA_IP, 80, timeout=2)
        if error:
            raise Broken(f"nothing accepts {METADATA_IP}:80 in {ns}: {error.strerror or error}",
                         "the agent respawns haproxy when it runs: check the agent log for "
                         "haproxy errors (`haproxy -c -f` of its config)")
        return f"{METADATA_IP}:80 accepts connections in {ns}"

    # 6
    def hop_agent(self) -> str:
        path = str(self.state_dir / control.CONTROL_SOCKET)
        ip = self.vm_ips[0]
        try:
            status, body = control.request(
                path, f"/lookup?network={self.network_id}&ip={ip}", timeout=3)
        except Exception as exc:  # refused, missing, timed out: all mean "no agent"
            raise Broken(f"the agent does not answer on {path}: {exc or type(exc).__name__}",
                         "start ovnmeta-agent (haproxy has no backend without it)") from None
        if status != 200:
            raise Broken(f"the agent cannot resolve {ip} on {self.network_id}: "
                         f"{body.get('error')}",
                         "the agent's SB view lacks the port: check its SB connection")
        if body["instance_id"] != self.instance_id:
            raise Broken(f"the agent resolves {ip} to {body['instance_id']}, the SB says "
                         f"{self.instance_id}", "restart the agent to reload its SB view")
        if not Path(self.conf.metadata_proxy_socket).exists():
            raise Broken(f"{self.conf.metadata_proxy_socket} is missing",
                         "restart the agent; haproxy connects to that path")
        return (f"agent resolves {ip} on {self.network_id} to instance {self.instance_id}; "
                f"{self._direct_path(ip)}")

    def _direct_path(self, ip: str) -> str:
        """What haproxy's map says of the VM: its GETs skip the agent when it has it."""
        hap = self.state_dir / "haproxy"
        path = map_path(hap / MAPS_DIR, self.network_id)
        if not Path(path).exists():
            return "direct path off: every request goes through the agent"
        try:
            answer = stats_command(shared_stats_socket(hap),
                                           f"get map {path} {ip}")
        except OSError as exc:
            return f"direct path: haproxy's stats socket does not answer ({exc})"
        value = re.search(r'value="([^"]*)"', answer)
        if "found=yes" not in answer or not value:
            return f"direct path: {ip} is not in haproxy's map, the agent answers it"
        mapped = value.group(1).split("|")[0]
        if mapped != self.instance_id:
            raise Broken(f"haproxy's map sends {ip} to nova as instance {mapped}; the SB says "
                         f"{self.instance_id}",
                         "restart the agent: it pushes every map again before haproxy "
                         "uses them (or set [haproxy] direct_path = false)")
        return "direct path: haproxy's map has it"

    # 7
    def hop_nova(self) -> str:
        c = self.conf
        endpoint = NovaEndpoint.from_conf(c)
        headers = [("X-Instance-ID", self.instance_id), ("X-Tenant-ID", self.project_id),
                   ("X-Instance-ID-Signature",
                    sign_instance_id(c.metadata_proxy_shared_secret, self.instance_id)),
                   ("X-Forwarded-For", self.vm_ips[0])]

        async def ask():
            client = NovaClient(endpoint)
            try:
                return await client.forward("GET", "/openstack/latest/meta_data.json",
                                            headers, b"")
            finally:
                await client.close()
        started = time.monotonic()
        where = f"{c.nova_metadata_protocol}://{','.join(c.nova_metadata_host)}:" \
                f"{c.nova_metadata_port}"
        try:
            resp = asyncio.run(ask())
        except NovaUnavailable as exc:
            raise Broken(f"nova at {where} cannot be reached: {exc}",
                         "start nova-api-metadata or fix nova_metadata_host/port") from None
        except NovaTimeout as exc:
            raise Broken(str(exc), "nova is overloaded or stuck: check nova-api-metadata")
        ms = (time.monotonic() - started) * 1000
        if resp.status == 403:
            raise Broken(f"nova answered 403 to a signed request ({ms:.0f} ms)",
                         "metadata_proxy_shared_secret differs from nova's "
                         "[neutron] metadata_proxy_shared_secret")
        if resp.status != 200:
            raise Broken(f"nova answered {resp.status} ({ms:.0f} ms): "
                         f"{resp.body[:200].decode(errors='replace')}",
                         "nova does not know this instance/project: check the VM in nova")
        return f"nova at {where} answered 200 in {ms:.0f} ms"

    # -- helpers ---------------------------------------------------------------------
    def _local_ovs(self) -> LocalOvs:
        """One connection to the local OVS DB for the whole trace."""
        if self._ovs is None:
            ovs = LocalOvs(self.conf.ovs.ovsdb_connection, self.conf.ovs.ovsdb_timeout,
                           lambda: None)
            try:
                ovs.start()
            except Exception as exc:
                raise Broken(f"cannot read the local OVS DB: {exc}",
                             "check [ovs] ovsdb_connection and ovsdb-server") from None
            self._ovs = ovs
        return self._ovs

    def _system_id(self) -> str:
        if self._sysid is None:
            ovs = self._local_ovs()
            try:
                self._sysid = ovs.chassis_config().system_id
            except Exception as exc:
                raise Broken(f"cannot read system-id from OVS: {exc}",
                             "check [ovs] ovsdb_connection") from None
        return self._sysid

    def _chassis(self) -> dict | None:
        rows = self.sb.find("Chassis", name=self._system_id())
        return rows[0] if rows else None

    def _find_vm(self, ref: VmRef) -> list[dict]:
        if ref.ip:
            if not ref.network:
                raise Broken("an IP needs --network", "add --network <network id>")
            dps = [d for d in self.sb.find("Datapath_Binding")
                   if naming.network_id(d["external_ids"]) == ref.network]
            rows = []
            for dp in dps:
                for row in self.sb.find("Port_Binding", datapath=dp["_uuid"]):
                    if row["type"] in VM_PORT_TYPES and \
                            ref.ip in parse_mac_column(tuple(row["mac"]))[1]:
                        rows.append(row)
            return rows
        rows = self.sb.find("Port_Binding", logical_port=ref.name)
        if rows:
            return rows
        key = self.conf.metadata.instance_id_key
        return self.sb.find("Port_Binding", where=lambda r: r["type"] in VM_PORT_TYPES
                            and r["external_ids"].get(key) == ref.name)
