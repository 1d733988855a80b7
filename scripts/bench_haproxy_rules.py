"""What ovnmeta's haproxy rules cost per request, without OVN: haproxy's CPU time per
request for the agent's rendered config and for variants of it with one kind of rule
taken out, against the ceiling's config (static signed headers, as in bench_proxy.py).

bench_proxy.py measures the whole VM → OVN → haproxy → nova path, where OVS's userspace
datapath and the machine's load move req/s by 2× between runs. Here wrk runs in a namespace
of its own straight at haproxy (`bind … namespace`, as the agent binds), "nova" and the
agent's readiness check are nginx answering `return 200`, and what is compared is the CPU
haproxy spent per request, which the rest of the machine moves little. Each variant's
haproxy is started, warmed up for a second, measured, then stopped; variants alternate
within each round.

Run as root: .venv/bin/python scripts/bench_haproxy_rules.py [--frontends 200]
[--duration 5] [--rounds 2]. Prints JSON and a table; asserts nothing. No OVN; it creates
namespaces named omhr-<n> and deletes them.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ovnmeta_testing import benchconfigs, cpu

from ovnmeta.core.model import Frontend
from ovnmeta.core.signing import sign_instance_id
from ovnmeta.haproxy import render as rendering
from ovnmeta.haproxy.settings import (ERROR_FILES, MAPS_DIR, Direct, Settings, error_file,
                                      error_file_text, map_path)
from ovnmeta.host import procs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_proxy  # noqa: E402  (its wrk parser, nginx backend and ceiling config)

NS_PREFIX = "omhr-"
ADDRESS = "169.254.169.254"   # wrk's source address too: the namespace's only address
PATH = bench_proxy.PATH
SECRET = "bench-secret"
INSTANCE = "3f0a2c8e-1111-4c1e-9e55-8a0c2b7d9e01"
PROJECT = "9d4b7f2a1c3e4d5f8a6b0c1d2e3f4a5b"
CEILING_PORT = 8080


def network_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def make_namespaces(count: int) -> list[str]:
    names = [f"{NS_PREFIX}{i}" for i in range(count)]
    for ns in names:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{ADDRESS}/32", "dev", "lo"],
                       check=True)
    return names


def delete_namespaces() -> None:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        if line.startswith(NS_PREFIX):
            subprocess.run(["ip", "netns", "delete", line.split()[0]], check=False)


# Variants: a name, what to render, and what to take out of the text. Each takes out one
# kind of rule, so the difference to "agent" is what that kind costs.
def _drop(pattern: str) -> Callable[[str], str]:
    regex = re.compile(pattern)
    return lambda text: "\n".join(line for line in text.split("\n")
                                  if not regex.search(line))


VARIANTS: list[tuple[str, dict, Callable[[str], str]]] = [
    ("agent (as rendered)", {}, lambda t: t),
    ("no busy lane (nova_vm_maxconn = 0)", {"vm_maxconn": 0}, lambda t: t),
    ("no fair shares or lane (no track-sc0, set-priority-class)", {"vm_maxconn": 0},
     _drop(r"track-sc0 var|set-priority-class")),
    ("no http-buffer-request", {}, _drop(r"option http-buffer-request")),
    ("no answer tracking (http-response)", {}, _drop(r"^\s+http-response ")),
    ("no del-header (client's identity headers kept)", {}, _drop(r"del-header")),
    # Retrying on an empty response makes haproxy keep a copy of every request.
    ("no L7 retries (retry-on conn-failure only)", {},
     lambda t: t.replace("retry-on conn-failure empty-response", "retry-on conn-failure")),
]


def agent_config(work: Path, frontends: list[Frontend], nova: str, direct_args: dict,
                 threads: int) -> str:
    direct = Direct(ready_socket=nova, servers=(nova,), host_header=nova, timeout_ms=10000,
                    **{"maxconn": 16, "vm_maxconn": 4, **direct_args})
    settings = Settings(socket=str(work / "no-agent.sock"), threads=threads, direct=direct)
    template = rendering.renderer(rendering.templates_dir())
    # render() keeps each frontend's text keyed by all its inputs, settings included.
    return rendering.render(template, frontends, settings,
                            stats_socket=str(work / "stats.sock"), state_dir=work)


def write_state(work: Path, frontends: list[Frontend]) -> None:
    """The map of each network (the wrk namespace's one VM, at ADDRESS) and the error
    files, as the agent writes them."""
    maps_dir = work / MAPS_DIR
    maps_dir.mkdir(exist_ok=True)
    value = f"{INSTANCE}|{PROJECT}|{sign_instance_id(SECRET, INSTANCE)}"
    for f in frontends:
        Path(map_path(maps_dir, f.network_id)).write_text(f"{ADDRESS} {value}\n")
    for code, (status, reason, body) in ERROR_FILES.items():
        error_file(work, code).write_text(error_file_text(status, reason, body))


def start_haproxy(cfg: Path, text: str) -> int:
    cfg.write_text(text)
    check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], capture_output=True,
                           text=True)
    if check.returncode:
        raise RuntimeError(f"haproxy rejected {cfg}: {check.stderr or check.stdout}")
    return bench_proxy.start_haproxy(cfg, text)


class Client:
    """wrk in the first namespace, as bench_proxy's VM runs it."""
    def __init__(self, ns: str) -> None:
        self.ns = ns

    def exec(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns, *argv], capture_output=True,
                              text=True, timeout=timeout, check=True)


def measure(client: Client, pid: int, url: str, connections: int, seconds: int) -> dict:
    bench_proxy.wrk(client, url, connections, 1)      # warm-up, not counted
    before = cpu.process_ticks(pid, children=True)
    result = bench_proxy.wrk(client, url, connections, seconds)
    ticks = cpu.process_ticks(pid, children=True) - before
    result["haproxy_cpu_us_per_request"] = round(
        ticks / cpu.HZ / max(1.0, result["rps"] * seconds) * 1e6, 1)
    return result


def run(frontends_count: int, connections: int, seconds: int, rounds: int,
        threads: int = 1) -> dict:
    delete_namespaces()
    work = Path(tempfile.mkdtemp(prefix="omhr-"))
    nginx = None
    try:
        names = make_namespaces(frontends_count)
        frontends = [Frontend(network_id(i), ns, "lo", False) for i, ns in enumerate(names)]
        write_state(work, frontends)
        port = bench_proxy.free_port()   # noqa: SLF001
        nginx = bench_proxy.start_nginx(work, port, '{"uuid": "%s"}' % INSTANCE)
        nova = f"127.0.0.1:{port}"
        client = Client(names[0])
        configs = {name: drop(agent_config(work, frontends, nova, args, threads))
                   for name, args, drop in VARIANTS}
        configs["agent, 1 frontend"] = agent_config(work, frontends[:1], nova, {}, threads)
        configs["ceiling (static headers, bench_proxy.py's)"] = benchconfigs.ceiling_haproxy(
            port=CEILING_PORT, nbthread=f"nbthread {threads}" if threads else "",
            namespace=names[0], instance=INSTANCE, project=PROJECT,
            signature=sign_instance_id(SECRET, INSTANCE), nova_port=port)
        results: dict[str, list[dict]] = {name: [] for name in configs}
        for _ in range(rounds):
            for name, text in configs.items():
                url = (f"http://{ADDRESS}:{CEILING_PORT}{PATH}" if name.startswith("ceiling")
                       else f"http://{ADDRESS}{PATH}")
                pid = start_haproxy(work / "bench.cfg", text)
                try:
                    if not name.startswith("ceiling"):
                        _wait_direct(client, url)
                    results[name].append(measure(client, pid, url, connections, seconds))
                finally:
                    procs.terminate(pid)
        return {"frontends": frontends_count, "connections": connections, "seconds": seconds,
                "rounds": rounds, "haproxy_threads": threads,
                "haproxy_version": subprocess.run(["haproxy", "-v"], capture_output=True,
                                                  text=True).stdout.split("\n")[0],
                "variants": {name: {"rounds": r, **_summary(r)}
                             for name, r in results.items()}}
    finally:
        if nginx:
            procs.terminate(nginx)
        delete_namespaces()
        subprocess.run(["rm", "-rf", str(work)], check=False)


def _wait_direct(client: Client, url: str) -> None:
    """Until haproxy's checks have marked nova and the readiness check up: before that
    its requests go to the (absent) agent."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        got = subprocess.run(["ip", "netns", "exec", client.ns, "curl", "-s", "-o",
                              "/dev/null", "-w", "%{http_code}", url],
                             capture_output=True, text=True).stdout
        if got == "200":
            return
        time.sleep(0.2)
    raise RuntimeError(f"the direct path never answered 200 at {url}")


def _summary(rounds: list[dict]) -> dict:
    return {"mean_haproxy_cpu_us_per_request": round(statistics.mean(
                r["haproxy_cpu_us_per_request"] for r in rounds), 1),
            "mean_rps": round(statistics.mean(r["rps"] for r in rounds)),
            "non_2xx": sum(r["non_2xx"] for r in rounds)}


def table(results: dict) -> str:
    ceiling = next(v for k, v in results["variants"].items() if k.startswith("ceiling"))
    base = ceiling["mean_haproxy_cpu_us_per_request"]
    lines = [f"haproxy CPU per request, {results['frontends']} frontends, "
             f"wrk -t1 -c{results['connections']} -d{results['seconds']}s ×"
             f"{results['rounds']} rounds, {results['haproxy_version']}",
             f"{'variant':<60} {'µs/req per round':>24} {'mean':>6} {'vs ceiling':>10} "
             f"{'req/s (mean)':>12} {'non-2xx':>7}"]
    for name, v in results["variants"].items():
        each = ", ".join(str(r["haproxy_cpu_us_per_request"]) for r in v["rounds"])
        mean = v["mean_haproxy_cpu_us_per_request"]
        lines.append(f"{name:<60} {each:>24} {mean:>6} {mean - base:>+10.1f} "
                     f"{v['mean_rps']:>12} {v['non_2xx']:>7}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frontends", type=int, default=200)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--haproxy-threads", type=int, default=1)
    args = parser.parse_args()
    results = run(args.frontends, args.connections, args.duration, args.rounds,
                  args.haproxy_threads)
    print(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
