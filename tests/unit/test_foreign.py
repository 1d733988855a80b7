"""Which files of a foreign process the takeover may delete, and haproxy command lines."""

from ovnmeta.host import foreign
from ovnmeta.core.model import ForeignProcess
from ovnmeta.host.netns import _proc_net_key

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
    assert _proc_net_key("169.254.169.254", 80) == "FEA9FEA9:0050"
    assert _proc_net_key("127.0.0.1", 8080) == "0100007F:1F90"
