"""Soak ovnmeta: networks and VMs created and deleted for N minutes under probing.

Run as root: .venv/bin/python scripts/soak.py --minutes 30
Prints JSON and a table: RSS and fd drift, leftovers once no VM remains (must be none),
failed requests to live VMs (must be none). Asserts nothing; tests/sandbox/test_soak.py
runs two minutes of it and does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ovnmeta_testing import soak
from ovnmeta_testing.sandbox import Sandbox

SOAK_DIR = Path("/tmp/ovnmeta-soak-sandbox")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-every", type=float, default=60,
                        help="seconds between RSS/fd samples of the agent")
    parser.add_argument("--trace", type=int, nargs="?", const=1, default=0, metavar="FRAMES",
                        help="run the agent under tracemalloc (PYTHONTRACEMALLOC=FRAMES, 1 "
                             "when not given) and report the allocations that grew, by line "
                             "or, with more frames, by stack")
    args = parser.parse_args()
    box = Sandbox(root=SOAK_DIR)
    box.down()
    box.up()
    try:
        result = soak.run(box, args.minutes, seed=args.seed, sample_every=args.sample_every,
                          trace=args.trace)
    finally:
        box.down()
    print(json.dumps(result, indent=1))
    left = sum(len(v) for v in result["left"].values())
    print("\n| minutes | operations | VMs probed | failed / probes to live VMs | wrong "
          "| RSS start → end | fds start → end | left behind |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {result['minutes']:g} | {sum(result['operations'].values())} | "
          f"{result['vms_probed']} | {result['failed_to_live_vms']} / {result['probes']} | "
          f"{result['wrong']} | {result['rss_kib_start'] / 1024:.1f} → "
          f"{result['rss_kib_end'] / 1024:.1f} MiB | {result['fds_start']} → "
          f"{result['fds_end']} | {left} |")
    print("\n| minute | networks | agent RSS MiB | fds |\n|---|---|---|---|")
    for sample in result["samples"]:
        print(f"| {sample['minute']:g} | {sample['networks']} | "
              f"{sample['rss_kib'] / 1024:.1f} | {sample['fds']} |")
    if result["settled"]:
        st = result["settled"]
        print(f"\nafter minute {st['after_minute']:g} ({st['samples']} samples): RSS "
              f"{st['rss_mib_min']}–{st['rss_mib_max']} MiB, fds {st['fds_min']}–"
              f"{st['fds_max']}, fewest fds in each {st['window_minutes']:g} minutes: "
              f"{', '.join(map(str, st['fds_fewest_per_window']))}")
    if args.trace:
        print(f"\ntraced Python memory: {result['traced_kib_start']} → "
              f"{result['traced_kib_end']} KiB; lines that grew:")
        for row in result["traced_grown"]:
            print(f"  {row['kib_start']:>8} → {row['kib_end']:>8} KiB  {row['where']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
