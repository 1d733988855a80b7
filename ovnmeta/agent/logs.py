"""Logging through oslo.log, as every OpenStack agent does: neutron's logging options
(log_file, log_dir, use_journal, use_syslog, use_json, default_log_levels, the
logging_*_format_string family, ...) work unchanged, and lines have the format OpenStack
log pipelines already parse."""

from __future__ import annotations

import logging
import os

from oslo_config import cfg
from oslo_log import _options, log

PROJECT = "ovnmeta"
# Libraries whose INFO lines say nothing an operator acts on (ovsdbapp logs every reconnect).
QUIET = ["ovsdbapp=WARN", "ovs=WARN", "pyroute2=WARN", "asyncio=WARN"]


def register(conf: cfg.ConfigOpts) -> None:
    """oslo.log's options, with ovnmeta's quiet libraries among the default levels."""
    log.register_options(conf)
    log.set_defaults(default_log_levels=log.get_default_log_levels() + QUIET)


def option_names() -> set[str]:
    """oslo.log's options (neutron registers the very same ones)."""
    return {opt.dest for _, opts in _options.list_opts() for opt in opts}


def setup(conf: cfg.ConfigOpts) -> None:
    """oslo.log's setup; log_dir is made if missing (kolla's start script makes it for
    neutron's agent, an image without that script does not). OSError when the log file
    cannot be opened: the caller says so in one line."""
    if conf.log_dir:
        os.makedirs(conf.log_dir, exist_ok=True)
    log.setup(conf, PROJECT)


def reapply_levels(conf: cfg.ConfigOpts) -> None:
    """default_log_levels again: importing pyroute2 resets its logger to NOTSET, so a
    process that sets up logging before that import (ovnmeta.agent.launch) applies them twice."""
    for pair in conf.default_log_levels:
        name, _, level = pair.partition("=")
        number = logging.getLevelName(level.strip().upper())
        if isinstance(number, int):  # oslo.log already warned about a level it lacks
            logging.getLogger(name.strip()).setLevel(number)
