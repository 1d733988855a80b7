"""What making one metadata network costs the host, step by step, with N networks present.

The agent's share of provisioning starts with these netlink steps (namespace, veth pair,
inner end, addresses, neighbours, outer end up) and the read-back a pass makes of a
namespace. No OVN is involved: the pairs are not plugged anywhere. Run as root:

    .venv/bin/python scripts/bench_netns.py [--present 200] [--new 20]

Prints JSON and a table; figures are measurements of this machine, not assertions.
Namespaces are named ovnmeta-<uuid> with uuids that no neutron network has (abc0…) and
are all deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable

from ovnmeta.core import naming
from ovnmeta.core.model import METADATA_V4, NetworkSpec
from ovnmeta.host import links, nsfirewall


def spec(i: int) -> NetworkSpec:
    net = str(uuid.UUID(int=(0xabc0 << 112) + i))
    subnet = f"10.{i // 250}.{i % 250}"
    return NetworkSpec(
        network_id=net, namespace=naming.namespace(net), outer=naming.outer_device(net),
        inner=naming.inner_device(net), iface_id=f"bench-lp{i}",
        mac=f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}",
        addresses=frozenset({f"{subnet}.2/24", METADATA_V4}), mtu=1442, vm_ports=1,
        neighbours=frozenset({(f"{subnet}.10", "fa:16:3e:11:22:33")}))


def make(s: NetworkSpec, timings: dict[str, list[float]] | None = None) -> None:
    """The steps a pass applies to a new network (on a netdev bridge: TX checksum off)."""
    steps: list[tuple[str, Callable[[], None]]] = [
        ("namespace", lambda: links.create_namespace(s)),
        ("veth pair", lambda: links.create_veth(s)),
        ("inner end", lambda: links.configure_inner(s, True))]
    steps += [("address", (lambda a: lambda: links.add_address(s, a))(a))
              for a in sorted(s.addresses)]
    steps += [("neighbours", lambda: links.add_neighbours(s, tuple(sorted(s.neighbours)))),
              ("outer up", lambda: links.set_outer_up(s))]
    started, cpu = time.perf_counter(), time.thread_time()
    with links.batch():
        for name, step in steps:
            t = time.perf_counter()
            step()
            if timings is not None:
                timings.setdefault(name, []).append((time.perf_counter() - t) * 1000)
    if timings is not None:
        timings.setdefault("all steps", []).append((time.perf_counter() - started) * 1000)
        # This thread's CPU for them (Python and its syscalls; the namespace's unshare()
        # runs in a thread of its own): the rest of the wall time is that thread, the
        # kernel's work elsewhere and waiting for a core.
        timings.setdefault("all steps, CPU", []).append((time.thread_time() - cpu) * 1000)
        t = time.perf_counter()
        with links.batch():   # what a pass's inspection of one network reads
            links.read_inner(s.namespace, s.inner, True)
            links.read_outer(s.outer)
            nsfirewall.read_firewall(s.namespace)
        timings.setdefault("read back", []).append((time.perf_counter() - t) * 1000)


def run(present: int, new: int) -> dict:
    specs = [spec(i) for i in range(present + new)]
    timings: dict[str, list[float]] = {}
    try:
        for s in specs[:present]:
            make(s)
        for s in specs[present:]:
            make(s, timings)
    finally:
        for s in specs:
            links.delete(s.network_id)
    return {"present": present, "new": new,
            "ms": {k: {"p50": round(statistics.median(v), 2), "max": round(max(v), 2)}
                   for k, v in timings.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--present", type=int, default=200)
    parser.add_argument("--new", type=int, default=20)
    args = parser.parse_args()
    result = run(args.present, args.new)
    print(json.dumps(result, indent=1))
    print(f"one new network's host steps with {result['present']} present "
          f"({result['new']} networks):")
    print(f"{'step':>12} {'p50 ms':>8} {'max ms':>8}")
    for name, v in result["ms"].items():
        print(f"{name:>12} {v['p50']:>8.2f} {v['max']:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
