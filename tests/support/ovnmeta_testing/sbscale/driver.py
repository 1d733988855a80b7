"""Running the agents and measuring the servers: worker processes (Workers), the servers'
CPU and bytes over a phase (Meter), and the writes ovn-controllers make (Writer)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import shutil
import subprocess
import time
from pathlib import Path

from ovnmeta_testing.sbscale.worker import SB_CFG_SUFFIX

WORKER = Path(__file__).with_name("worker.py")


DEBIAN_OVS = Path("/usr/lib/python3/dist-packages/ovs")


def c_json_overlay(python: str, workdir: Path) -> str | None:
    """A copy of `python`'s python-ovs with the C JSON parser of Debian's
    python3-openvswitch added (self-contained, libopenvswitch linked in), for PYTHONPATH.

    python-ovs from PyPI builds its C parser only where libopenvswitch's headers are (not
    packaged in Debian 12), and falls back to a parser in pure Python that is many times
    slower: 25 neutron agents loading 22,000 Port_Binding rows with it each took longer than
    the SB's 60 s inactivity probe, were cut off and started over. Distributions ship the C
    parser, so both kinds run with it here."""
    so = sorted(DEBIAN_OVS.glob("_json*.so"))
    if not so:
        return None
    src = subprocess.run([python, "-c", "import os, ovs; print(os.path.dirname(ovs.__file__))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    overlay = workdir / ("ovs-c-json-" + hashlib.sha1(python.encode()).hexdigest()[:8])
    if not (overlay / "ovs" / so[0].name).exists():
        shutil.rmtree(overlay, ignore_errors=True)
        shutil.copytree(src, overlay / "ovs")
        shutil.copy2(so[0], overlay / "ovs" / so[0].name)
    return str(overlay)


class Workers:
    """K agents of one kind in ceil(K / per_process) worker processes. `c_json`: with the C
    JSON parser of Debian's python-ovs (c_json_overlay), as distributions ship it."""

    def __init__(self, kind: str, python: str, specs: list[list[dict]], workdir: Path,
                 c_json: bool = True) -> None:
        self.procs: list[subprocess.Popen] = []
        env = dict(os.environ)
        path = c_json_overlay(python, workdir) if c_json else None
        if path:
            env["PYTHONPATH"] = path
        for n, agents in enumerate(specs):
            path = workdir / f"worker-{kind}-{n}.json"
            path.write_text(json.dumps({"kind": kind, "agents": agents}))
            self.procs.append(subprocess.Popen(
                [python, str(WORKER), str(path)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=open(workdir / f"worker-{kind}-{n}.log", "w"),
                text=True, env=env))
        self.ready = [self._read(p, "ready", 300) for p in self.procs]

    def _read(self, proc: subprocess.Popen, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {proc.pid} ended before {event!r} "
                                   f"(exit {proc.wait()}): see its log")
            msg = json.loads(line)
            if msg.get("event") == event:
                return msg
        raise RuntimeError(f"worker {proc.pid}: no {event!r} within {timeout:g} s")

    def send(self, cmd: str) -> None:
        for p in self.procs:
            p.stdin.write(cmd + "\n")
            p.stdin.flush()

    def collect(self, event: str, timeout: float = 600) -> list[dict]:
        return [self._read(p, event, timeout) for p in self.procs]

    def cpu(self) -> float:
        from ovnmeta_testing.cpu import cpu_seconds
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def close(self) -> None:
        for p in self.procs:
            try:
                p.stdin.write("quit\n")
                p.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Meter:
    """Server CPU, bytes sent to the agents, machine busy share, over one phase."""

    def __init__(self, cloud, workers: Workers | None = None) -> None:
        from ovnmeta_testing import cpu, sbcloud
        self.s, self.cpu, self.cloud, self.workers = sbcloud, cpu, cloud, workers
        self.t0 = time.monotonic()
        self.cpu0 = self._cpu()
        self.bytes0 = self._bytes()
        self.busy0 = cpu.machine_busy()
        self.wcpu0 = workers.cpu() if workers else 0.0

    def _cpu(self) -> dict[str, float]:
        return {n: self.cpu.cpu_seconds(self.cloud.pid(n)) for n in self.cloud.servers}

    def _bytes(self) -> dict[str, int]:
        return {n: self.s.bytes_sent([self.cloud.ports[n]]) for n in self.cloud.servers}

    def done(self, restarted: tuple[str, ...] = ()) -> dict:
        """The phase's figures. Servers `restarted` during the phase are new processes with
        new sockets: their CPU and bytes count from zero. Every agent socket is new after a
        reconnect, so bytes count from zero for all servers then."""
        cpu1, bytes1, busy1 = self._cpu(), self._bytes(), self.cpu.machine_busy()
        seconds = time.monotonic() - self.t0
        leader = self.cloud.leader() if self.cloud.relays else "sb"
        cpu = {n: cpu1[n] - (0 if n in restarted else self.cpu0[n]) for n in cpu1}
        sent = {n: bytes1[n] - (0 if restarted else self.bytes0[n]) for n in bytes1}
        db = [n for n in self.cloud.members]
        out = {"seconds": round(seconds, 2),
               "sb_cpu_s": round(sum(cpu[n] for n in db), 2),
               "leader_cpu_s": round(cpu.get(leader, 0.0), 2),
               "relays_cpu_s": round(sum(cpu[n] for n in self.cloud.relay_names), 2),
               "bytes_to_agents": sum(sent[n] for n in (self.cloud.relay_names or db)),
               "bytes_to_relays": sum(sent[n] for n in db) if self.cloud.relays else 0,
               "machine_busy": round((busy1[0] - self.busy0[0]) / max(1, busy1[1] - self.busy0[1]), 2)}
        if self.workers:
            out["agents_cpu_s"] = round(self.workers.cpu() - self.wcpu0, 2)
        return out


class Writer:
    """Writes as ovn-controllers would: Port_Binding chassis changes, straight to the SB."""

    def __init__(self, cloud) -> None:
        from ovnmeta_testing.sbcloud import Rpc
        self.cloud = cloud
        member = cloud.leader() if cloud.relays else "sb"
        self.rpc = Rpc(f"unix:{cloud.root}/{member}.sock")
        self.pbs = cloud.pb_uuids(self.rpc)
        self.names = cloud.names

    def set_chassis(self, port: str, chassis_uuid: str | None) -> None:
        row = {"chassis": ["uuid", chassis_uuid] if chassis_uuid else ["set", []],
               "up": bool(chassis_uuid)}
        self.rpc.transact("OVN_Southbound", {"op": "update", "table": "Port_Binding",
                                             "where": [["_uuid", "==",
                                                        ["uuid", self.pbs[port]]]],
                                             "row": row})

    def churn(self, rate: float, seconds: float, ports: list[int], rng: random.Random,
              anywhere: bool = True) -> int:
        """`rate` changes/s: unbind a port, next time bind it (to a random chassis, or back
        to its own when not `anywhere`)."""
        names, uuids = self.names["ports"], self.names["chassis_uuids"]
        done, pending = 0, None
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            if pending is None:
                i = rng.choice(ports)
                self.set_chassis(names[i], None)
                pending = i
            else:
                ch = rng.randrange(len(uuids)) if anywhere else self.names["port_chassis"][pending]
                self.set_chassis(names[pending], uuids[ch])
                if anywhere:
                    self.names["port_chassis"][pending] = ch
                pending = None
            done += 1
            next_at = start + done / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        if pending is not None:
            self.set_chassis(names[pending], uuids[self.names["port_chassis"][pending]])
        return done

    def liveness_round(self, chassis: list[str], timeout: float = 120) -> dict:
        """Bump SB_Global.nb_cfg as neutron-server's liveness check does (through NB and
        northd in a cloud; here northd is stopped, so straight into SB_Global), then wait
        until every agent's Chassis_Private sb-cfg key shows it."""
        from ovnmeta_testing.sbcloud import Rpc
        member = self.cloud.leader() if self.cloud.relays else "sb"
        mon = Rpc(f"unix:{self.cloud.root}/{member}.sock")
        first = mon.call("monitor", ["OVN_Southbound", "live", {"Chassis_Private": {
            "columns": ["name", "external_ids"]}}])
        current = self.rpc.transact("OVN_Southbound", {"op": "select", "table": "SB_Global",
                                                       "where": [], "columns": ["nb_cfg"]})
        target = current[0]["rows"][0]["nb_cfg"] + 1
        keys: dict[str, dict] = {}

        def absorb(update: dict) -> None:
            for uuid_, change in update.get("Chassis_Private", {}).items():
                new = change.get("new")
                if new is None:
                    continue
                ext = new.get("external_ids", ["map", []])
                keys[new.get("name") or keys.get(uuid_, {}).get("name", "")] = dict(ext[1])
        absorb(first)
        want = set(chassis)
        t0 = time.monotonic()
        self.rpc.transact("OVN_Southbound", {"op": "mutate", "table": "SB_Global", "where": [],
                                             "mutations": [["nb_cfg", "+=", 1]]})
        done = {}
        while len(done) < len(want) and time.monotonic() - t0 < timeout:
            mon.poll(0.05)
            for u in mon.updates:
                absorb(u)
            mon.updates.clear()
            for name in want - done.keys():
                ext = keys.get(name, {})
                if any(k.endswith(SB_CFG_SUFFIX) and v == str(target) for k, v in ext.items()):
                    done[name] = time.monotonic() - t0
        mon.close()
        return {"seconds": round(max(done.values()), 2) if done else None,
                "answered": len(done), "of": len(want),
                "median_s": round(sorted(done.values())[len(done) // 2], 2) if done else None}
