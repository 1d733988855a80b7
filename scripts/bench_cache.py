"""The host's cache of nova's answers ([metadata_cache]) through the real path: VMs in
namespaces → OVN → haproxy → (haproxy's cache) → agent → the nova double, a real process.

`--networks N` makes N networks with one VM each. Phases, in order:

1. **Boot storm**, with the cache off and then on (a fresh agent each time): every VM
   reads what cloud-init 22.4's OpenStack datasource reads (ovnmeta_testing.cloudinit_reads,
   one keep-alive connection, one path after another), all VMs at once as far as
   `--parallel` readers allow; then all again, as a reboot. Counts the requests the VMs
   made against those nova received (the double counts only VMs' requests, not haproxy's
   health checks).
2. **Memory**, cache on: the agent's cache bytes and entries (its metrics), haproxy's cache
   hits, and the PSS of the agent and of haproxy.
3. **A change in nova**: one VM's user data changes; seconds until the VM reads it.
4. **nova outage** (`--outage` seconds, 300 by default): nova is stopped; every
   `--interval` seconds (30) every VM reads its set again. A read fails when its status or
   its body differs from the last answer nova gave before the outage. A VM new to the host
   (its network too) arrives during the outage and reads its set: each answer's status and
   time. Then nova starts again: seconds until a VM's read is fresh (not stale) again.

Prints JSON and a table; asserts nothing.

    .venv/bin/python scripts/bench_cache.py [--networks 50] [--outage 300] [--interval 30]
                                            [--ttl 15] [--parallel 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ovnmeta.host import procs
from ovnmeta_testing import cloudinit_reads, neutron
from ovnmeta_testing.agentproc import AgentProcess, agent_processes, wait_until
from ovnmeta_testing.memory import pss_kib
from ovnmeta_testing.novaproc import NovaProcess
from ovnmeta_testing.sandbox import Sandbox, free_port
from ovnmeta_testing.vm import FakeVM, one_per_network

BENCH_DIR = Path("/tmp/ovnmeta-bench-sandbox")
SECRET = "bench-secret"
READER = Path(cloudinit_reads.__file__)
PATHS = cloudinit_reads.PATHS
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKeyForOvnmetaCacheBenchmark bench"


def instance(vm: FakeVM, n: int) -> dict:
    return {"project_id": vm.port.project_id, "hostname": f"vm-{n}",
            "user_data": "#cloud-config\n" + f"# vm {n}\n" * 60,
            "public_keys": {"bench": KEY},
            "network_data": neutron.network_data(vm.network, vm.port)}


def reads(vm: FakeVM) -> list[list]:
    out = vm.exec(sys.executable, str(READER), check=False, timeout=60 * 5)
    try:
        return json.loads(out.stdout)
    except ValueError:
        return [[0, "", "", 0.0] for _ in PATHS]


def storm(vms: list[FakeVM], parallel: int) -> tuple[list[list[list]], float]:
    """Every VM's reads, `parallel` VMs at a time; and the seconds it took."""
    started = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        answers = list(pool.map(reads, vms))
    return answers, round(time.monotonic() - started, 2)


def agent_for(box: Sandbox, nova: NovaProcess, cache: bool, ttl: float, metrics_port: int
              ) -> AgentProcess:
    agent = AgentProcess(box, extra=f"metadata_proxy_shared_secret = {SECRET}\n"
                                    f"nova_metadata_port = {nova.port}\ndebug = false\n"
                                    "[metadata_cache]\n"
                                    f"enabled = {cache}\nttl = {ttl}\n")
    agent.config.write_text(agent.config.read_text().replace(
        "[metrics]\nlisten =\n", f"[metrics]\nlisten = 127.0.0.1:{metrics_port}\n"))
    return agent


def served(vms: list[FakeVM]) -> None:
    url = "http://169.254.169.254/openstack/latest/meta_data.json"   # not one of PATHS
    for v in vms:
        wait_until(lambda: v.exec("curl", "-sf", "-o", "/dev/null", url,
                                  check=False).returncode == 0,
                   timeout=120, what=f"the agent serving {v.netns}")


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ovnmeta_cache_") and " " in line and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def pss_mib(agent: AgentProcess) -> dict[str, float]:
    haproxy = agent.haproxy_pids()
    haproxy += [c for p in list(haproxy) for c in procs.children(p)]
    return {"agent": round(pss_kib(agent_processes(agent)) / 1024, 1),
            "haproxy": round(pss_kib(haproxy) / 1024, 1)}


def boot_storm(box: Sandbox, vms: list[FakeVM], nova: NovaProcess, cache: bool, ttl: float,
               parallel: int, metrics_port: int) -> tuple[dict, AgentProcess]:
    agent = agent_for(box, nova, cache, ttl, metrics_port)
    agent.start()
    served(vms)
    before = nova.requests()
    boot, boot_s = storm(vms, parallel)
    middle = nova.requests()
    reboot, reboot_s = storm(vms, parallel)
    after = nova.requests()
    made = len(vms) * len(PATHS)
    result = {
        "cache": cache, "vm_requests_per_round": made,
        "nova_requests": {"boot": middle - before, "reboot": after - middle},
        "nova_per_instance_path": round((after - before) / made, 2),
        "seconds": {"boot": boot_s, "reboot": reboot_s},
        "failed_reads": sum(1 for answers in (boot, reboot) for vm in answers for a in vm
                            if a[0] != 200),
        "ms_max": max(a[3] for answers in (boot, reboot) for vm in answers for a in vm),
        "pss_mib": pss_mib(agent),
    }
    return result, agent


def outage(vms: list[FakeVM], last: list[list[list]], nova: NovaProcess, box: Sandbox,
           seconds: float, interval: float, parallel: int, arrived: list[FakeVM]) -> dict:
    """`arrived` gets the VM new to the host, for the caller to destroy."""
    nova.stop()
    started = time.monotonic()
    rounds, failed, stale, slowest = 0, 0, 0, 0.0
    new_vm: dict = {}
    while time.monotonic() - started < seconds:
        round_started = time.monotonic()
        answers, _ = storm(vms, parallel)
        rounds += 1
        for got, want in zip(answers, last):
            for a, b in zip(got, want):
                failed += (a[0], a[1]) != (b[0], b[1])
                stale += a[2] == "stale"
                slowest = max(slowest, a[3])
        if not new_vm:   # after the first round: a VM new to this host, nova still down
            net = neutron.create_network(box, cidrs=("10.254.0.0/24",))
            vm = FakeVM(box, net, neutron.create_vm_port(box, net))
            arrived.append(vm)
            vm.start()
            wait_until(lambda: vm.exec("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                       f"http://169.254.169.254{PATHS[1]}",
                                       check=False).stdout.strip() not in ("", "000"),
                       timeout=120, what="the new VM's network served")
            got = reads(vm)
            new_vm = {"statuses": sorted({a[0] for a in got}),
                      "ms_max": max(a[3] for a in got), "ms_mean": round(
                          sum(a[3] for a in got) / len(got), 1)}
        time.sleep(max(0.0, interval - (time.monotonic() - round_started)))
    down = time.monotonic() - started
    nova.start()
    back = time.monotonic()
    wait_until(lambda: fresh(vms[0]), timeout=120, interval=0.1,
               what="a fresh answer after nova came back")
    return {"seconds": round(down, 1), "rounds": rounds,
            "reads": rounds * len(vms) * len(PATHS), "failed_reads": failed,
            "stale_reads": stale, "ms_max": slowest, "new_vm": new_vm,
            "fresh_after_restart_s": round(time.monotonic() - back, 2)}


def fresh(vm: FakeVM) -> bool:
    """The VM's user data read from nova's answer, not stale."""
    [(status, _, how, _)] = json.loads(vm.exec(sys.executable, str(READER), PATHS[2]).stdout)
    return status == 200 and how != "stale"


def change(vm: FakeVM, nova: NovaProcess) -> float:
    """Seconds until the VM reads user data changed in nova (the TTL at most)."""
    data = dict(nova.instances[vm.port.device_id], user_data="#cloud-config\n# changed\n")
    path = PATHS[2]
    nova.add_instance(vm.port.device_id, data)
    started = time.monotonic()
    wait_until(lambda: "changed" in vm.exec("curl", "-s", f"http://169.254.169.254{path}",
                                            check=False).stdout,
               timeout=120, interval=0.1, what="the changed user data")
    return round(time.monotonic() - started, 2)


def run(networks: int, seconds: float, interval: float, ttl: float, parallel: int) -> dict:
    box = Sandbox(root=BENCH_DIR)
    box.down()
    box.up()
    work = Path(tempfile.mkdtemp(prefix="ombench-"))
    vms: list[FakeVM] = []
    arrived: list[FakeVM] = []   # during the outage
    agent: AgentProcess | None = None
    nova: NovaProcess | None = None
    try:
        one_per_network(box, networks, vms)
        nova = NovaProcess({v.port.device_id: instance(v, n) for n, v in enumerate(vms)},
                           SECRET, work).start()
        metrics_port = free_port()
        results: dict = {"networks": networks, "paths_per_vm": len(PATHS), "ttl": ttl,
                         "parallel_readers": parallel, "storms": []}
        for cache in (False, True):
            result, agent = boot_storm(box, vms, nova, cache, ttl, parallel, metrics_port)
            results["storms"].append(result)
            if not cache:
                agent.cleanup()
                agent = None
        assert agent is not None
        storm(vms, parallel)   # a third round, past the TTL: the caches as they are in use
        results["memory"] = {"agent_cache": scrape(metrics_port),
                             "haproxy_cache_hits": agent.haproxy_cache_hits(),
                             "pss_mib": pss_mib(agent)}
        results["change_seen_after_s"] = change(vms[0], nova)
        last, _ = storm(vms, parallel)   # nova's answers just before the outage
        results["outage"] = outage(vms, last, nova, box, seconds, interval, parallel, arrived)
        return results
    finally:
        if agent is not None:
            agent.cleanup()
        if nova is not None:
            nova.stop()
        for v in vms + arrived:
            v.destroy()
        box.down()
        subprocess.run(["rm", "-rf", str(work)])


def table(r: dict) -> str:
    lines = [f"{r['networks']} networks, one VM each, {r['paths_per_vm']} paths per read "
             f"(cloud-init 22.4's OpenStack datasource), TTL {r['ttl']} s"]
    for s in r["storms"]:
        lines.append(
            f"cache {'on ' if s['cache'] else 'off'}: VMs asked {s['vm_requests_per_round']} "
            f"per round; nova got {s['nova_requests']['boot']} (boot) + "
            f"{s['nova_requests']['reboot']} (reboot) = {s['nova_per_instance_path']} per "
            f"instance and path; {s['seconds']['boot']} s + {s['seconds']['reboot']} s; "
            f"{s['failed_reads']} failed reads; PSS agent {s['pss_mib']['agent']} MiB, "
            f"haproxy {s['pss_mib']['haproxy']} MiB")
    m = r["memory"]
    lines.append(f"memory: cache {m['agent_cache'].get('ovnmeta_cache_bytes', 0) / 2**20:.2f} "
                 f"MiB in {int(m['agent_cache'].get('ovnmeta_cache_entries', 0))} entries; "
                 f"PSS agent {m['pss_mib']['agent']} MiB, haproxy {m['pss_mib']['haproxy']} "
                 f"MiB; haproxy cache hits {m['haproxy_cache_hits']}")
    lines.append(f"a change in nova served after {r['change_seen_after_s']} s")
    o = r["outage"]
    lines.append(f"outage {o['seconds']} s: {o['rounds']} rounds, {o['reads']} reads, "
                 f"{o['failed_reads']} failed, {o['stale_reads']} stale, slowest "
                 f"{o['ms_max']} ms; new VM: statuses {o['new_vm'].get('statuses')}, "
                 f"slowest {o['new_vm'].get('ms_max')} ms; fresh again "
                 f"{o['fresh_after_restart_s']} s after nova restarted")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", type=int, default=50)
    parser.add_argument("--outage", type=float, default=300.0, help="seconds nova is down")
    parser.add_argument("--interval", type=float, default=30.0,
                        help="seconds between the VMs' reads during the outage")
    parser.add_argument("--ttl", type=float, default=15.0, help="[metadata_cache] ttl")
    parser.add_argument("--parallel", type=int, default=8, help="VMs reading at once")
    args = parser.parse_args()
    results = run(args.networks, args.outage, args.interval, args.ttl, args.parallel)
    print(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
