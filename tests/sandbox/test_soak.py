"""Two minutes of scripts/soak.py: churn under probing leaves nothing behind and fails no
request to a live VM (30 minutes of it are in the README)."""

from __future__ import annotations

import json

from ovnmeta_testing import soak


def test_two_minutes_of_churn(sandbox) -> None:
    result = soak.run(sandbox, minutes=2, warmup=20)
    print(json.dumps(result))
    assert result["agent_running"] and result["tracebacks"] == 0
    assert sum(result["operations"].values()) > 10
    assert result["failed_to_live_vms"] == 0 and result["wrong"] == 0
    assert not any(result["left"].values()), result["left"]
    # A leak of one fd per operation would show; steady state moves by a few.
    assert result["fds_end"] - result["fds_start"] < 20
