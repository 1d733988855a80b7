"""The README's demo: real OVN, two networks with two VMs each, every VM fetching its own
metadata through 169.254.169.254. `down` (or a second run) stops it all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ovnmeta_testing import neutron
from ovnmeta_testing.agentproc import AgentProcess, wait_until
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.sandbox import Sandbox, SandboxError, alive
from ovnmeta_testing.vm import FakeVM

ROOT = Path("/tmp/ovnmeta-demo")
CONFIG = Path(__file__).resolve().parents[3] / "etc" / "ovnmeta-demo.ini"
SECRET = "demo-shared-secret"   # matches etc/ovnmeta-demo.ini
NOVA_PORT = 18775
STATE = ROOT / "demo.json"


def _box() -> Sandbox:
    return Sandbox(root=ROOT / "ovn", chassis="demo-chassis")


def up() -> int:
    if STATE.exists():
        print("the demo is already running: showing it again (stop it with "
              "`bash scripts/demo.sh down`)")
        return show(json.loads(STATE.read_text()))
    box = _box()
    print(f"starting OVN (NB, SB, northd, ovs-vswitchd, ovn-controller) in {box.root} ...")
    box.up()
    vms: list[FakeVM] = []
    for cidr in ("10.0.0.0/24", "10.0.0.0/24"):   # same subnet twice: ids, not IPs, separate
        net = neutron.create_network(box, cidrs=(cidr,))
        for _ in range(2):
            port = neutron.create_vm_port(box, net)
            vms.append(FakeVM(box, net, port).start())
    instances = {}
    for n, vm in enumerate(vms, 1):
        name = f"demo-vm{n}"
        instances[vm.port.device_id] = {
            "project_id": vm.port.project_id, "hostname": name,
            "public_keys": {"demo": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{n:02d} {name}"},
            "user_data": f"#cloud-config\nhostname: {name}\nruncmd: [echo hello from {name}]\n",
            "network_data": neutron.network_data(vm.network, vm.port)}
    (ROOT / "agent").mkdir(parents=True, exist_ok=True)
    nova = NovaProcess(instances, SECRET, ROOT, port=NOVA_PORT).start()
    agent = AgentProcess(box, state_dir=ROOT / "agent")
    agent.config = CONFIG
    agent.start()
    state = {"nova_pid": nova.proc.pid, "agent_pid": agent.proc.pid,
             "vms": [{"netns": vm.netns, "dev": vm.host_dev, "network": vm.network.id,
                      "ip": vm.port.ip, "instance": vm.port.device_id} for vm in vms]}
    STATE.write_text(json.dumps(state, indent=1))
    print(f"nova-compatible metadata API on 127.0.0.1:{NOVA_PORT} (pid {nova.proc.pid}); "
          f"ovnmeta-agent pid {agent.proc.pid}, log {agent.log_path}")
    for vm in vms:
        vm.wait_bound()
    return show(state)


def _curl(netns: str, path: str) -> tuple[int, str]:
    out = subprocess.run(["ip", "netns", "exec", netns, "curl", "-s", "-m", "5", "-w",
                          "\n%{http_code}", f"http://169.254.169.254{path}"],
                         capture_output=True, text=True).stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def show(state: dict) -> int:
    ok = True
    for vm in state["vms"]:
        netns = vm["netns"]
        try:
            status, body = wait_until(
                lambda: (r := _curl(netns, "/openstack/latest/meta_data.json"))[0] == 200 and r,
                timeout=30, interval=0.2, what=f"metadata for {netns}")
        except SandboxError as exc:
            print(f"\n{netns}: FAILED: {exc}")
            ok = False
            continue
        meta = json.loads(body)
        user_data = _curl(netns, "/openstack/latest/user_data")[1]
        net_data = json.loads(_curl(netns, "/openstack/latest/network_data.json")[1])
        print(f"\nVM {netns}  ip {vm['ip']}  network {vm['network']}")
        own = "its own" if meta["uuid"] == vm["instance"] else "WRONG INSTANCE"
        ok = ok and meta["uuid"] == vm["instance"]
        print(f"  instance  {meta['uuid']}  ({own})")
        print(f"  hostname  {meta['hostname']}")
        print(f"  ssh keys  {', '.join(meta['public_keys'].values())}")
        print("  network   " + ", ".join(f"{n['ip_address']}/{n['netmask']} on {n['link']}"
                                          for n in net_data["networks"]))
        print("  user data " + user_data.strip().replace("\n", "\n            "))
    print("\nstop it with: bash scripts/demo.sh down")
    return 0 if ok else 1


def down() -> int:
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    for key in ("agent_pid", "nova_pid"):
        pid = state.get(key)
        if pid and alive(pid):
            subprocess.run(["kill", str(pid)])
            wait_until(lambda: not alive(pid), timeout=15, what=f"{key} {pid} to stop")
    if (ROOT / "agent").exists():
        subprocess.run([str(Path(sys.executable).parent / "ovnmeta"), "--config-file",
                        str(CONFIG), "cleanup"], check=False)
    box = _box()
    for vm in state.get("vms", []):
        subprocess.run(["ip", "netns", "del", vm["netns"]], capture_output=True)
        if box.pid("ovsdb-server"):
            box.vsctl("--if-exists", "del-port", vm["dev"])
    box.down()
    subprocess.run(["rm", "-rf", str(ROOT)])
    print("demo stopped; nothing left running")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return down() if argv[:1] == ["down"] else up()
    except (SandboxError, RuntimeError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
