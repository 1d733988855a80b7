"""Logging for the agent and its workers: one format, and quiet libraries."""

from __future__ import annotations

import logging
import sys

NOISY = ("ovsdbapp", "ovs", "pyroute2", "asyncio")


def setup(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
