"""A hostile VM (a small run of scripts/hostile.py): malformed, oversized, slow and
pipelined requests through haproxy and at the socket, then floods, crash nothing, leak no
identity, and fail no request of the VMs next to it."""

from __future__ import annotations

import json


def test_hostile_vm_harms_no_one(sandbox, tmp_path) -> None:
    from ovnmeta_testing import hostile
    r = hostile.run(sandbox, tmp_path, requests=4000, flood_seconds=3, baseline_seconds=3,
                    slow=20)
    print(json.dumps(r))
    assert r["agent_same_pid"] and r["tracebacks"] == 0
    assert r["attacker_identity_ok"]
    for phase in r["attacks"].values():
        assert phase["requests"] >= 2000
        # Every kind of attack was answered with an error, not a crash.
        assert set(phase["statuses"]) - {"0", "closed_by_server"}
    assert r["victim_failed_total"] == 0
    limited = r["flood"]["rate_limit_on"]["attacker"]
    assert limited["non_2xx"] > 0 and r["flood"]["rate_limit_off"]["attacker"]["non_2xx"] == 0
