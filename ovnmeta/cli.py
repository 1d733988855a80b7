"""`ovnmeta`: the operator's command line."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovnmeta", description="Operate the ovnmeta agent.")
    parser.add_argument("--config-file", action="append", default=[],
                        help="Agent config file(s), as given to ovnmeta-agent.")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
