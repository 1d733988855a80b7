"""Which files of a foreign process the takeover may delete, haproxy command lines, and the
record of what was sent to another agent's processes."""

import dataclasses
import logging
import signal
import subprocess
import time

from ovnmeta.host import foreign
from ovnmeta.core.model import ForeignProcess
from ovnmeta.host.nssockets import proc_net_key
from pathlib import Path

ROOT_CONTAINER = Path(__file__).resolve().parents[3] / "container"

NET = "4649d6ed-5218-4d31-a646-0f830ed04392"


def test_only_neutrons_layout_for_that_network_is_deleted() -> None:
    theirs = ForeignProcess(1, "haproxy", f"/var/lib/neutron/ovn-metadata-proxy/{NET}.conf",
                            f"/var/lib/neutron/external/pids/{NET}.pid.haproxy")
    assert foreign.neutron_files(theirs, NET) == [theirs.config, theirs.pidfile]
    other = ForeignProcess(2, "haproxy", "/etc/haproxy/haproxy.cfg", "/run/haproxy.pid")
    assert foreign.neutron_files(other, NET) == []
    another_net = ForeignProcess(3, "haproxy", theirs.config, theirs.pidfile)
    assert foreign.neutron_files(another_net, "0000") == []


def test_haproxy_config_and_its_pidfile_are_read_from_the_command_line(tmp_path) -> None:
    cfg = tmp_path / f"{NET}.conf"
    cfg.write_text("global\n    pidfile     /x/y.pid.haproxy\n    daemon\n")
    assert foreign._haproxy_files(["haproxy", "-f", str(cfg)]) == (str(cfg), "/x/y.pid.haproxy")
    assert foreign._haproxy_files(["haproxy", "-f", str(tmp_path / "gone")]) == (
        str(tmp_path / "gone"), "")


def test_proc_net_tcp_spelling_of_the_metadata_address() -> None:
    assert proc_net_key("169.254.169.254", 80) == "FEA9FEA9:0050"
    assert proc_net_key("127.0.0.1", 8080) == "0100007F:1F90"


def test_signals_are_recorded_followed_by_pid_and_forgotten_once_the_process_ends(
        tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    child = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while (found := foreign.describe(child.pid)).name != "sleep":   # exec'd yet?
            assert time.monotonic() < deadline
            time.sleep(0.01)
        signals = foreign.Signals()
        signals.send("n1", found, signal.SIGSTOP, now=5.0)   # stays alive, recorded
        alive, ended = signals.read("n1", [])                # its namespace is gone, say
        assert alive == (dataclasses.replace(found, signal=signal.SIGSTOP, signalled_at=5.0),)
        assert ended == () and signals.networks() == {"n1"} and signals.pending
        assert signals.read("n2", []) == ((), ())
        signals.send("n1", alive[0], signal.SIGKILL, now=6.0)
        child.wait(5)
        alive, ended = signals.read("n1", [])
        assert alive == () and ended[0].signal == signal.SIGKILL
        signals.forget("n1", ended[0])
        assert not signals.pending and "sleep pid %d has ended" % child.pid in caplog.text
    finally:
        child.kill()
        child.wait()


def test_ovnmetas_own_neutron_named_agent_is_not_taken_for_neutrons(tmp_path):
    import os
    from ovnmeta.host import foreign
    ours = tmp_path / "neutron-ovn-metadata-agent"
    ours.write_bytes((ROOT_CONTAINER / "neutron-ovn-metadata-agent").read_bytes())
    theirs = tmp_path / "bin" / "neutron-ovn-metadata-agent"
    theirs.parent.mkdir()
    theirs.write_text("#!/usr/bin/python3\nfrom neutron.cmd.eventlet.agents.ovn_metadata "
                      "import main\nmain()\n")
    pid = os.getpid()
    assert foreign.is_ovnmeta_shim(pid, ["/usr/bin/python3", str(ours), "--config-file", "x"])
    assert not foreign.is_ovnmeta_shim(pid, ["/usr/bin/python3", str(theirs)])
    assert not foreign.is_ovnmeta_shim(pid, ["/usr/bin/python3", "/nonexistent/"
                                             "neutron-ovn-metadata-agent"])
