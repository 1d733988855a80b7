"""Two minutes of scripts/soak.py: churn under probing leaves nothing behind and fails no
request to a live VM, with the agent's memory sampled and traced (longer runs are in the
docs/hardening.md)."""

from __future__ import annotations

import json

from ovnmeta_testing import soak


def test_two_minutes_of_churn(sandbox) -> None:
    result = soak.run(sandbox, minutes=2, warmup=20, sample_every=30, trace=True)
    print(json.dumps(result))
    # The time series and the agent's own account of its Python memory (tracemalloc).
    assert len(result["samples"]) >= 4 and all(s["rss_kib"] > 0 for s in result["samples"])
    assert result["traced_kib_start"] > 0 and result["traced_kib_end"] > 0
    assert result["agent_running"] and result["tracebacks"] == 0
    assert sum(result["operations"].values()) > 10
    assert result["failed_to_live_vms"] == 0 and result["wrong"] == 0
    assert not any(result["left"].values()), result["left"]
    # A leak of one fd per operation would show; steady state moves by a few.
    assert result["fds_end"] - result["fds_start"] < 20
