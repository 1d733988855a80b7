"""`ovnmeta-agent`: the per-chassis daemon's entry point."""

from __future__ import annotations

import sys

from ovnmeta import config


def main(argv: list[str] | None = None) -> int:
    conf = config.load(sys.argv[1:] if argv is None else argv, prog="ovnmeta-agent")
    print(f"ovnmeta-agent: SB {conf.ovn.ovn_sb_connection}, OVS {conf.ovs.ovsdb_connection}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
