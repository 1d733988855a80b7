"""The README's demo: bring up the OVN sandbox and show what runs (`down` stops it)."""

from __future__ import annotations

import sys

from ovnmeta.testing.sandbox import Sandbox, SandboxError

DEMO_DIR = "/tmp/ovnmeta-demo"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    box = Sandbox(root=DEMO_DIR)
    try:
        if argv[:1] == ["down"]:
            box.down()
            print("demo stopped; nothing left running")
            return 0
        box.up()
    except SandboxError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    for daemon, pid in box.status().items():
        print(f"  {daemon:16} pid {pid}")
    print(f"chassis {box.chassis} registered in the SB at {box.sb_connection}")
    print("stop it with: bash scripts/demo.sh down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
