"""A hostile VM: malformed, oversized, slow and pipelined requests, through haproxy from the
VM's namespace and straight at the agent's socket, while other VMs are probed.

Used by scripts/hostile.py (100,000 requests and a flood with rate limiting off and on)
and, smaller, by tests/sandbox/test_hostile.py. Every request is built here from a seeded
RNG, so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ovnmeta.host.namespace import entered
from ovnmeta_testing import cpu
from ovnmeta_testing.memory import rss_kib

PATH = "/openstack/latest/meta_data.json"

# One connection's worth of bytes, and how many requests they count as.
Attack = tuple[str, bytes, int]


def _get(path: str = PATH, headers: str = "", close: bool = True) -> bytes:
    """A GET; `close` asks the server to hang up after answering, so a client knows the
    answers are complete without waiting."""
    headers += "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n{headers}\r\n".encode()


def _spoof(rng: random.Random, ips: list[str], network: str) -> str:
    return (f"X-Forwarded-For: {rng.choice(ips)}\r\n"
            f"X-OVN-Network-ID: {network}\r\n")


def attacks(rng: random.Random, victim_ips: list[str], victim_network: str
            ) -> list[Callable[[], Attack]]:
    """Generators of one attack each; every one is tried in turn."""
    spoof = lambda: _spoof(rng, victim_ips, victim_network)  # noqa: E731
    return [
        lambda: ("garbage", rng.randbytes(rng.randint(1, 4096)), 1),
        lambda: ("bad request line", rng.choice([
            b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\x01 / HTTP/1.1\r\n\r\n",
            b"GET /" + b"\xff" * 64 + b" HTTP/1.1\r\n\r\n", b"G E T / HTTP/1.1\r\n\r\n",
            b" / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET http://[::1 HTTP/1.1\r\n\r\n"]), 1),
        lambda: ("bad headers", _get(headers=rng.choice([
            "NoColon\r\n", "Bad Name: x\r\n", "X: a\x00b\r\n", " folded: x\r\n",
            "Content-Length: 5\r\nContent-Length: 7\r\n", "Content-Length: -1\r\n",
            "Content-Length: 99999999999999999999999\r\n",
            "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
            "Host: a\r\nHost: b\r\n", "Expect: 100-continue\r\nContent-Length: 10\r\n"])), 1),
        lambda: ("oversized", rng.choice([
            _get(headers=f"X-Big: {'a' * rng.randint(9_000, 120_000)}\r\n"),
            _get(path=PATH + "?" + "b" * rng.randint(9_000, 70_000)),
            _get(headers="".join(f"X-H{i}: {i}\r\n" for i in range(rng.randint(100, 400)))),
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            "Content-Length: 2000000\r\n\r\n".encode()
            + b"c" * 2_000_000]), 1),
        lambda: ("spoofed", _get(headers=spoof()), 1),
        lambda: ("methods", rng.choice([
            f"{m} {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3"
            "\r\n\r\nabc"
            for m in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
                      "PROPFIND", "BREW")]).encode(), 1),
        lambda: ("pipelined", b"".join(
            _get(headers=spoof() if i % 2 else "", close=i == 19) for i in range(20)), 20),
        lambda: ("half", _get()[:rng.randint(1, 30)], 1),
    ]


@dataclass
class Tally:
    sent: int = 0
    kinds: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    identities: Counter = field(default_factory=Counter)   # uuids in 200 answers

    def as_dict(self) -> dict:
        return {"requests": self.sent, "kinds": dict(self.kinds),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
                "identities": dict(self.identities)}


UNPARSED: list[str] = []  # 200 answers without an identity (listings), for the report


def _statuses(data: bytes) -> list[tuple[int, str]]:
    """(status, uuid) of each HTTP answer in a byte stream (pipelined answers included)."""
    out = []
    for part in data.split(b"HTTP/1.")[1:]:
        try:
            status = int(part[2:5])
        except ValueError:
            continue
        uuid = ""
        if status == 200:
            body = part.partition(b"\r\n\r\n")[2]
            try:
                uuid = json.loads(body[:body.rindex(b"}") + 1]).get("uuid", "")
            except ValueError:  # not JSON: a listing such as the EC2 versions, no identity
                if len(UNPARSED) < 5:
                    UNPARSED.append(part[:600].decode("latin-1"))
        out.append((status, uuid))
    return out


def _open(family: int, ns: str | None) -> socket.socket:
    if not ns:
        return socket.socket(family, socket.SOCK_STREAM)
    with entered(ns):
        return socket.socket(family, socket.SOCK_STREAM)


IDLE = 0.5  # no more bytes for this long after an answer began: the server is done


async def _one(attack: Attack, address, family: int, ns: str | None, tally: Tally,
               timeout: float) -> None:
    kind, payload, count = attack
    sock = _open(family, ns)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    data = b""
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, address)
            await loop.sock_sendall(sock, payload)
            if kind == "half":
                return  # and hang up mid-request
            # No half-close: haproxy would pass it on, and a keep-alive server may answer
            # it by closing. Read until the server closes, or stops sending.
            while True:
                wait = IDLE if data else timeout
                try:
                    chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), wait)
                except TimeoutError:
                    if data:
                        break
                    raise
                if not chunk:
                    break
                data += chunk
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()
        tally.sent += count
        tally.kinds[kind] += count
    if kind == "half":
        return
    answers = _statuses(data)
    tally.statuses.update(s for s, _ in answers)
    tally.statuses[0] += max(0, count - len(answers))
    tally.identities.update(u for s, u in answers if s == 200 and u)


async def _slowloris(address, family: int, ns: str | None, tally: Tally) -> None:
    """A request that never ends: one header byte a second until the server gives up
    (counted in `closed_by_server`) or the barrage ends."""
    sock = _open(family, ns)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    tally.sent += 1
    tally.kinds["slowloris"] += 1
    try:
        await loop.sock_connect(sock, address)
        await loop.sock_sendall(sock, _get()[:-2])
        while True:
            await asyncio.sleep(1.0)
            await loop.sock_sendall(sock, b"X")
    except OSError:
        tally.statuses["closed_by_server"] += 1
    finally:
        sock.close()


async def _barrage(requests: int, address, family: int, ns: str | None, tally: Tally,
                   victim_ips: list[str], victim_network: str, seed: int,
                   concurrency: int, slow: int, timeout: float) -> None:
    rng = random.Random(seed)
    makers = attacks(rng, victim_ips, victim_network)
    slow_tasks = [asyncio.create_task(_slowloris(address, family, ns, tally))
                  for _ in range(slow)]
    sem = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task] = set()
    i = 0
    while tally.sent + sum(1 for _ in pending) < requests:
        await sem.acquire()
        attack = makers[i % len(makers)]()
        i += 1
        task = asyncio.create_task(_one(attack, address, family, ns, tally, timeout))
        pending.add(task)
        task.add_done_callback(lambda t: (pending.discard(t), sem.release()))
    await asyncio.gather(*pending)
    for task in slow_tasks:
        task.cancel()
    await asyncio.gather(*slow_tasks, return_exceptions=True)


def through_haproxy(vm_netns: str, requests: int, victim_ips: list[str], victim_network: str,
                    seed: int = 1, concurrency: int = 32, slow: int = 100,
                    timeout: float = 10.0) -> Tally:
    """From inside a VM's namespace to 169.254.169.254:80."""
    tally = Tally()
    asyncio.run(_barrage(requests, ("169.254.169.254", 80), socket.AF_INET, vm_netns, tally,
                         victim_ips, victim_network, seed, concurrency, slow, timeout))
    return tally


def at_socket(path: str, requests: int, victim_ips: list[str], victim_network: str,
              seed: int = 2, concurrency: int = 32, slow: int = 100,
              timeout: float = 10.0) -> Tally:
    """Straight at the agent's unix socket, as a local process (root) could."""
    tally = Tally()
    asyncio.run(_barrage(requests, path, socket.AF_UNIX, None, tally, victim_ips,
                         victim_network, seed, concurrency, slow, timeout))
    return tally


# -- the experiment: a hostile VM next to two victims ------------------------------------

def _latency(target, since: float, until: float) -> dict:
    times = sorted(p.seconds for p in target.probes
                   if since <= p.started < until and p.status == 200)
    failed = sum(1 for p in target.probes if since <= p.started < until and p.status != 200)
    if not times:
        return {"probes": failed, "failed": failed}
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]  # noqa: E731
    return {"probes": len(times) + failed, "failed": failed,
            "p50_ms": round(pick(0.5) * 1000, 2), "p99_ms": round(pick(0.99) * 1000, 2)}


def _wrk(vm, seconds: int, connections: int) -> dict:
    # wrk never ends while a connection cannot be established: -k kills it then.
    proc = vm.exec("timeout", "-k", "5", "-s", "INT", str(seconds + 15), "wrk", "-t1", f"-c{connections}",
                   f"-d{seconds}s", "--latency", f"http://169.254.169.254{PATH}",
                   timeout=seconds + 30, check=False)
    out = proc.stdout
    figures: dict = {"exit": proc.returncode}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            figures["req_per_s"] = float(words[1])
        elif "requests in" in line:
            figures["requests"] = int(words[0])
        elif line.startswith("  Non-2xx or 3xx responses:"):
            figures["non_2xx"] = int(words[-1])
        elif line.strip().startswith("99%"):
            figures["p99"] = words[1]
    figures.setdefault("non_2xx", 0)
    return figures


def apart(attack: Callable[[], Tally]) -> Tally:
    """The attack in a process of its own, as an attacking VM is: in the prober's process
    its Python would hold the prober's GIL and add its own delays to the victims'. Forked,
    so the attack needs no pickling; its tally comes back through a pipe."""
    ctx = multiprocessing.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)

    def child() -> None:
        writer.send((attack(), UNPARSED))
    proc = ctx.Process(target=child)
    proc.start()
    writer.close()
    try:
        tally, unparsed = reader.recv()
        UNPARSED[:] = unparsed
        return tally
    finally:
        proc.join()


def _cpu_shares(box, cloud) -> cpu.CpuShares:
    return cpu.CpuShares({"agent": [cloud.agent.proc.pid],
                          "haproxy": cloud.agent.haproxy_pids(),
                          "nova": [cloud.nova.proc.pid],
                          "ovs-vswitchd": [box.pid("ovs-vswitchd") or 0],
                          "ovn-controller": [box.pid("ovn-controller") or 0]})


def run(box, workdir, requests: int, flood_seconds: int = 10, baseline_seconds: float = 10,
        slow: int = 100, agent_log: Path | None = None, haproxy_options: str = "") -> dict:
    """Baseline, then the barrage through haproxy and at the socket, then a flood with rate
    limiting off and on; victims probed throughout. Returns every figure; the agent's log
    goes to `agent_log` when given."""
    from ovnmeta_testing.sbmodes import Cloud
    cloud = Cloud(box, workdir)
    cloud.agent.config.write_text(cloud.agent.config.read_text().replace(
        "[haproxy]\n", f"[haproxy]\n{haproxy_options}", 1))
    result: dict = {"requests_asked": requests, "haproxy_options": haproxy_options}
    try:
        cloud.agent.start()
        shared, other = cloud.network(), cloud.network()
        attacker = cloud.vm(shared, probe=False)
        victim_same, victim_other = cloud.vm(shared), cloud.vm(other)
        victims = {"victim_same_network": cloud.targets[victim_same.netns],
                   "victim_other_network": cloud.targets[victim_other.netns]}
        ips = [ip.split("/")[0] for ip in victim_same.port.ips]
        cloud.prober.start()
        shares = _cpu_shares(box, cloud)
        time.sleep(baseline_seconds)
        result["baseline_cpu_ms_per_s"] = shares.result()
        t_base = time.monotonic()
        result["baseline"] = {n: _latency(t, t_base - baseline_seconds, t_base)
                              for n, t in victims.items()}
        agent_pid = cloud.agent.proc.pid
        result["rss_kib_before"] = rss_kib(agent_pid)
        phases = {}
        for name, attack in (
                ("through_haproxy", lambda: through_haproxy(
                    attacker.netns, requests // 2, ips, shared.id, slow=slow)),
                ("at_socket", lambda: at_socket(
                    cloud.agent.socket, requests // 2, ips, shared.id, slow=slow))):
            start = time.monotonic()
            tally = apart(attack)
            end = time.monotonic()
            phases[name] = {"seconds": round(end - start, 1), **tally.as_dict(),
                            "victims": {n: _latency(t, start, end)
                                        for n, t in victims.items()}}
        result["attacks"] = phases
        result["unparsed_200_samples"] = list(UNPARSED)
        result["attacker_identity_ok"] = set(
            phases["through_haproxy"]["identities"]) <= {attacker.port.device_id}
        time.sleep(5)
        result["rss_kib_after"] = rss_kib(agent_pid)
        # The barrage leaves tens of thousands of TIME_WAIT sockets on the 169.254.169.254:80
        # side of the attacker's address: a new connection whose port collides with one waits
        # for it (up to a minute). That is the attacker's cost, but it would skew the flood.
        started = time.monotonic()
        while time.monotonic() - started < 120:
            code = attacker.exec("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                 "--connect-timeout", "0.5", "-m", "5",
                                 f"http://169.254.169.254{PATH}", check=False).stdout
            if code == "200":
                break
        result["attacker_reconnected_after_s"] = round(time.monotonic() - started, 1)
        if requests > 10_000:  # a small barrage leaves too few to matter
            time.sleep(max(0.0, 65 - (time.monotonic() - started)))
        result["agent_same_pid"] = cloud.agent.running() and cloud.agent.proc.pid == agent_pid
        result["tracebacks"] = cloud.agent.log().count("Traceback")

        floods = {}
        for limited in (False, True):
            if limited:
                result["nova_alive_before_restart"] = cloud.nova.proc.poll() is None
                cloud.agent.stop()
                cloud.agent.config.write_text(
                    cloud.agent.config.read_text()
                    + "[metadata_rate_limiting]\nrate_limit_enabled = true\n"
                      # Above the victims' 20 probes a second, far below a flood.
                      "base_window_duration = 10\nbase_query_rate_limit = 400\n"
                      "burst_window_duration = 1\nburst_query_rate_limit = 40\n")
                cloud.agent.start()
                time.sleep(3)
            shares = _cpu_shares(box, cloud)
            start = time.monotonic()
            flood = _wrk(attacker, flood_seconds, 20)
            end = time.monotonic()
            flood["cpu_ms_per_s"] = shares.result()
            if "requests" not in flood:  # wrk could not connect: what does a single curl get?
                flood["curl_after"] = attacker.exec(
                    "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                    f"http://169.254.169.254{PATH}", check=False).stdout
            floods["rate_limit_on" if limited else "rate_limit_off"] = {
                "attacker": flood,
                "victims": {n: _latency(t, start, end) for n, t in victims.items()}}
        result["flood"] = floods
        cloud.prober.stop()
        result["victim_failed_total"] = sum(len(t.failed()) for t in victims.values())
        log = cloud.agent.log()
        result["tracebacks"] = log.count("Traceback")
        if result["tracebacks"]:
            at = log.index("Traceback")
            result["first_traceback"] = log[max(0, at - 300):at + 3000]
        return result
    finally:
        nova_log = cloud.nova.log_path.read_text() if cloud.nova.log_path.exists() else ""
        log = cloud.close()
        if agent_log is not None:
            agent_log.write_text(log)
            agent_log.with_suffix(".nova.log").write_text(nova_log)
