"""`ovnmeta health`: one line and an exit status for probes, naming what is missing."""

from __future__ import annotations

from ovnmeta.ops import status

UP = {"agent_running": True, "agent_pid": 7, "sb_connected": True, "ovs_connected": True,
      "sb_connection": "tcp:10.0.0.1:6642",
      "networks": {"a": {"ready": True}, "b": {"ready": False}}}


def test_healthy_counts_ready_networks_and_does_not_fail_on_converging_ones():
    assert status.health(UP, "tcp:127.0.0.1:6640") == (
        True, "healthy: agent pid 7, SB and OVS connected, 1/2 network(s) ready")


def test_each_missing_connection_is_named():
    ok, line = status.health({**UP, "sb_connected": False, "ovs_connected": False},
                             "tcp:127.0.0.1:6640")
    assert not ok
    assert line == ("unhealthy: Southbound DB tcp:10.0.0.1:6642 not connected; local OVS DB "
                    "tcp:127.0.0.1:6640 not connected (agent pid 7)")


def test_an_agent_that_does_not_answer():
    ok, line = status.health({"agent_running": False, "agent_error": "no answer on /x: "
                              "[Errno 2] No such file or directory", "networks": {}}, "")
    assert not ok and line.startswith("unhealthy: agent not running (no answer on /x")
    assert not status.health({"agent_running": False, "networks": {}}, "")[0]
