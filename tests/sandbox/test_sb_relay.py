"""ovn-controller and the agent reach a 3-member Raft SB through an ovsdb relay: a relay
killed and restarted under load fails no request, and the same agent serves a VM added
afterwards."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ovnmeta_testing.sbmodes import Cloud, swapped

ROOT = Path(os.environ.get("OVNMETA_TEST_SANDBOX_DIR", "/tmp/ovnmeta-test-sandbox") + "-relay")


@pytest.fixture(scope="module")
def relayed(sandbox):
    with swapped(sandbox, ROOT, sb_cluster=3, relay=True) as box:
        yield box


def test_relay_restart_under_load(relayed, tmp_path) -> None:
    assert "ovnsb_relay" in relayed.daemons
    cloud = Cloud(relayed, tmp_path)
    try:
        cloud.agent.start()
        net = cloud.network()
        cloud.vm(net), cloud.vm(cloud.network())
        pid = cloud.agent.proc.pid
        cloud.prober.start()
        time.sleep(1)
        relayed.kill("ovnsb_relay")
        time.sleep(1)  # as systemd's Restart= would
        relayed.start_relay()
        late = cloud.vm(net, probe=False)
        bound, served_after = cloud.time_to_serve(late)
        print(f"VM added after the relay restart: bound in {bound}s, "
              f"served {served_after}s later")
        time.sleep(1)
        cloud.prober.stop()
        assert cloud.failures() == {} and cloud.probes() > 50
        assert cloud.agent.running() and cloud.agent.proc.pid == pid
        assert served_after <= 2.0
        assert "Traceback" not in cloud.agent.log()
    finally:
        print(f"--- agent log ---\n{cloud.close()}")
