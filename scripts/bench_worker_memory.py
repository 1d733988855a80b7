"""Where a metadata worker's memory goes, with no OVN: the zygote and workers made by the
agent's own code (ovnmeta.agent.workers), a nova double, requests on the metadata socket;
then each process's PSS and private memory, and the first worker's pages that are no
longer shared with the agent, by the kind of Python object found on them.

Why pages stop being shared: CPython 3.11 writes to an object whenever it takes a reference
to it (the refcount) and to a code object while it specialises its bytecode, so a page a
forked worker shares with the agent stays shared only while neither process touches any
object on it. The agent process here loads its modules as the agent does (after the fork,
or before it with --fork-after imports) but runs no reconciler: `scripts/bench_proxy.py
--workers N` measures a real agent. Run as root (page frame numbers need it):

    .venv/bin/python scripts/bench_worker_memory.py [--workers 1] [--requests 600]
        [--fork-after launch|imports] [--agent-modules MOD,MOD]

What a worker costs is the total PSS with it less the total with `--workers 0` (the agent
process alone, which then serves nothing and is sent no request).

Prints JSON and a table; figures are measurements of this machine, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import importlib
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import time
import types
from pathlib import Path

from ovnmeta.agent import config, workerfeed
from ovnmeta.core.model import PortRecord, SbSnapshot
from ovnmeta_testing.memory import rollup_kib
from ovnmeta_testing.novaproc import NovaProcess

PAGE = os.sysconf("SC_PAGE_SIZE")
SECRET = "bench-secret"
NETWORK, VM_IP, INSTANCE = "net-1", "10.0.0.5", "11111111-2222-3333-4444-555555555555"


def _view() -> bytes:
    vm = PortRecord("vm-port", "", NETWORK, (f"fa:16:3e:00:00:05 {VM_IP}",),
                    (("neutron:device_id", INSTANCE), ("neutron:project_id", "p"),
                     ("neutron:device_owner", "compute:nova")), True)
    localport = PortRecord("md-port", "localport", NETWORK, ("fa:16:3e:00:00:02 10.0.0.2",),
                           (("neutron:device_owner", "network:distributed"),), False)
    return workerfeed.encode(SbSnapshot(chassis="here", ports=(vm, localport)),
                             frozenset({"vm-port"}))


def _get(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(f"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n"
                       f"X-Forwarded-For: {VM_IP}\r\nX-OVN-Network-ID: {NETWORK}\r\n"
                       "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    return data.startswith(b"HTTP/1.1 200")


def _memory(pid: int) -> dict:
    r = rollup_kib(pid)
    return {"pid": pid, "pss_mib": round(r.get("Pss", 0) / 1024, 1),
            "private_mib": round((r.get("Private_Clean", 0) + r.get("Private_Dirty", 0))
                                 / 1024, 1)}


def _frames(pid: int, start: int, end: int) -> list[int | None]:
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        data = f.read((end - start) // PAGE * 8)
    return [v & ((1 << 55) - 1) if v >> 63 else None
            for v in struct.unpack(f"{len(data) // 8}Q", data)]


def unshared_pages(agent: int, worker: int) -> set[int]:
    """The worker's present heap pages whose frame the agent does not map at that address."""
    pages = set()
    for line in Path(f"/proc/{worker}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[5] != "[heap]":
            continue            # files and stacks: only the heap and anonymous mappings
        start, end = (int(x, 16) for x in fields[0].split("-"))
        theirs = _frames(worker, start, end)
        try:
            ours = _frames(agent, start, end)
        except OSError:
            ours = [None] * len(theirs)
        pages.update(start + i * PAGE for i, (w, a) in enumerate(zip(theirs, ours))
                     if w is not None and w != a)
    return pages


def _kind(obj: object) -> str:
    if isinstance(obj, types.CodeType):
        where = obj.co_filename
        if "site-packages/" in where:
            return "code: " + where.split("site-packages/", 1)[1].split("/", 1)[0]
        return "code: ovnmeta" if "/ovnmeta/" in where else "code: stdlib"
    return type(obj).__name__


def by_kind(pages: set[int]) -> list[tuple[str, int]]:
    """KiB of `pages` by the kind of object most common on each (this process's objects,
    which the worker's copies mirror). Walking them writes to them: call it last."""
    gc.unfreeze()
    seen: dict[int, object] = {}
    todo = gc.get_objects() + list(sys.modules.values())
    while todo:
        obj = todo.pop()
        if id(obj) not in seen:
            seen[id(obj)] = obj
            todo.extend(gc.get_referents(obj))
    on_page: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for address, obj in seen.items():
        if address // PAGE * PAGE in pages:
            on_page[address // PAGE * PAGE][_kind(obj)] += 1
    kib: collections.Counter = collections.Counter()
    for page in pages:
        kib[on_page[page].most_common(1)[0][0] if page in on_page else "(none found)"] += \
            PAGE // 1024
    return kib.most_common()


AGENT_MODULES = "ovnmeta.agent.daemon"   # what only the agent loads (ovsdbapp, pyroute2, ...)


def _load(modules: str) -> None:
    for name in filter(None, modules.split(",")):
        importlib.import_module(name.strip())


def run(workers: int, requests: int, fork_after: str, top: int,
        agent_modules: str = AGENT_MODULES) -> dict:
    from ovnmeta.agent.workers import WorkerPool, Zygote
    work = Path(tempfile.mkdtemp(prefix="omt-wmem-"))
    nova = NovaProcess({INSTANCE: {"hostname": "vm", "project_id": "p"}}, SECRET,
                       work).start()
    pool = None
    try:
        ini = work / "agent.ini"
        ini.write_text(f"[DEFAULT]\nmetadata_proxy_socket = {work}/sock\n"
                       f"state_path = {work}\nmetadata_workers = {workers + 1}\n"
                       f"nova_metadata_host = 127.0.0.1\nnova_metadata_port = {nova.port}\n"
                       f"metadata_proxy_shared_secret = {SECRET}\n")
        conf = config.load(["--config-file", str(ini)], prog="ovnmeta-agent")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(work / "sock"))
        sock.listen(128)
        if fork_after == "imports":
            _load(agent_modules)
        if workers:
            zygote = Zygote(conf, sock)
            zygote.start()
        _load(agent_modules)     # after the fork, as launch loads them (a no-op if loaded)
        answered = 0
        if workers:
            pool = WorkerPool(workers, [], sock, zygote)
            pool.start()
            asyncio.run(pool.publish(_view(), 1))
            answered = sum(_get(str(work / "sock")) for _ in range(requests))
        time.sleep(6)           # past the workers' first heap trim (5 s)
        pids = pool.pids() if pool else []
        result = {"workers": workers, "fork_after": fork_after, "agent_modules": agent_modules,
                  "requests": requests if workers else 0,
                  "answered": answered, "agent": _memory(os.getpid()),
                  "worker_processes": [_memory(p) for p in pids]}
        result["total_pss_mib"] = round(result["agent"]["pss_mib"] + sum(
            w["pss_mib"] for w in result["worker_processes"]), 1)
        pages = unshared_pages(os.getpid(), pids[0]) if pids else set()
        result["first_worker_unshared_mib"] = round(len(pages) * PAGE / 2**20, 1)
        result["unshared_by_kind_kib"] = by_kind(pages)[:top]
        return result
    finally:
        if pool is not None:
            pool.stop()
        nova.stop()
        shutil.rmtree(work, ignore_errors=True)


def table(r: dict) -> str:
    lines = [f"\n{r['workers']} worker(s), zygote forked after {r['fork_after']}, the agent "
             f"importing {r['agent_modules'] or 'nothing more'}; "
             f"{r['answered']} of {r['requests']} requests answered 200",
             f"{'process':<10} {'pid':>7} {'PSS MiB':>8} {'private MiB':>12}",
             f"{'agent':<10} {r['agent']['pid']:>7} {r['agent']['pss_mib']:>8} "
             f"{r['agent']['private_mib']:>12}"]
    for i, w in enumerate(r["worker_processes"]):
        lines.append(f"{'worker ' + str(i):<10} {w['pid']:>7} {w['pss_mib']:>8} "
                     f"{w['private_mib']:>12}")
    lines.append(f"{'total':<10} {'':>7} {r['total_pss_mib']:>8}")
    if not r["worker_processes"]:
        return "\n".join(lines)
    lines.append(f"\nthe first worker's pages no longer shared with the agent: "
                 f"{r['first_worker_unshared_mib']} MiB, by what is on them (KiB):")
    lines += [f"  {kib:>7}  {kind}" for kind, kib in r["unshared_by_kind_kib"]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1,
                        help="extra processes (metadata_workers - 1); 0: the agent alone")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--fork-after", choices=["launch", "imports"], default="launch",
                        help="launch: as the agent does, before its own modules load; "
                             "imports: after them")
    parser.add_argument("--agent-modules", default=AGENT_MODULES,
                        help="what the agent process imports besides what the zygote has, "
                             "comma-separated (empty: nothing): what importing one module "
                             "after the fork costs the first worker")
    parser.add_argument("--top", type=int, default=12, help="kinds of object listed")
    args = parser.parse_args()
    if args.workers < 0:
        parser.error("--workers must be 0 or more")
    result = run(args.workers, args.requests, args.fork_after, args.top, args.agent_modules)
    print(json.dumps(result, indent=1))
    print(table(result))
    return 0 if result["answered"] == result["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
