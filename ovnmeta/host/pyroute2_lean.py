"""pyroute2's modules without its package `__init__`, which imports all 165 of them (IPDB,
NDB, nl80211, WireGuard, ...: 9.6 MiB of the agent's RSS) when the agent's netlink code
(ovnmeta.host.nsfirewall, for nftables) needs 110 (4.9 MiB with what they import).

`register()` puts the package in `sys.modules` without running its `__init__`, so importing
`pyroute2.iproute` loads only that and what it imports. Asking the package for a name its
`__init__` defines (`from pyroute2 import IPRoute`, from code that is not ours) runs the
`__init__` then, once: nothing that works with pyroute2 stops working.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading

PACKAGE = "pyroute2"
_lock = threading.RLock()   # __init__ may ask the package for names while it runs


def register() -> bool:
    """Register the package lean; False if it was imported already (in full) or is not
    installed (the import that follows then fails with its own error)."""
    with _lock:
        if PACKAGE in sys.modules:
            return False
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.loader is None:
            return False
        package = importlib.util.module_from_spec(spec)
        loaded = False

        def __getattr__(name: str):
            nonlocal loaded
            # `from pyroute2 import config` (pyroute2's own modules do this): a submodule.
            if not name.startswith("__") and \
                    importlib.util.find_spec(f"{PACKAGE}.{name}") is not None:
                return importlib.import_module(f"{PACKAGE}.{name}")
            # A name only `__init__` defines: run it now, once.
            with _lock:
                if not loaded:
                    loaded = True
                    spec.loader.exec_module(package)
            if name in package.__dict__:
                return package.__dict__[name]
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")

        package.__getattr__ = __getattr__
        sys.modules[PACKAGE] = package
        # The first thing its __init__ does, and what a library should: a NullHandler on
        # the "pyroute2" logger (no stray warnings on stderr where logging is not set up).
        importlib.import_module(f"{PACKAGE}.config.log")
        return True


def is_lean() -> bool:
    """Whether pyroute2's `__init__` has not run (only what was imported is loaded)."""
    package = sys.modules.get(PACKAGE)
    return package is not None and "IPRoute" not in package.__dict__
