"""pyroute2 loaded lean (ovnmeta.host.pyroute2_lean), in fresh interpreters: the agent's
netlink module loads a fraction of the package, and code that wants the whole package
still gets it."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
{before}
import ovnmeta.host.nsfirewall as nsfirewall
from ovnmeta.host import pyroute2_lean
lean = pyroute2_lean.is_lean()
loaded = sum(m.startswith("pyroute2") for m in sys.modules)
from pyroute2 import config                 # a submodule, as pyroute2's own code asks
still_lean = pyroute2_lean.is_lean()
from pyroute2 import NetlinkError, NDB      # names only the package's __init__ defines
print(json.dumps({{"lean": lean, "loaded": loaded, "still_lean": still_lean,
                  "same_class": NetlinkError is nsfirewall.NetlinkError, "ndb": NDB.__name__,
                  "all": sum(m.startswith("pyroute2") for m in sys.modules),
                  "config": config.__name__}}))
"""


def _probe(before: str = "") -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_agent_loads_part_of_pyroute2_and_others_can_still_have_all_of_it() -> None:
    r = _probe()
    assert r["lean"] and r["still_lean"] and r["config"] == "pyroute2.config"
    assert r["loaded"] < 0.75 * r["all"]       # 20 of 165 pyroute2 modules here
    assert r["same_class"] and r["ndb"] == "NDB"


def test_a_package_already_imported_in_full_is_left_alone() -> None:
    r = _probe(before="import pyroute2")
    assert not r["lean"] and r["loaded"] == r["all"] and r["same_class"]
