"""Recognising neutron's running agents, and whether they still provision metadata."""

from ovnmeta.host import foreign, osloargs


def test_agent_name_from_program_or_script() -> None:
    assert foreign.agent_name(["/usr/bin/neutron-ovn-metadata-agent"]) == \
        foreign.METADATA_AGENT
    assert foreign.agent_name(["/usr/bin/python3", "/usr/bin/neutron-ovn-agent",
                               "--config-file", "x"]) == foreign.OVN_AGENT
    assert foreign.agent_name(["haproxy", "-f", "neutron-ovn-agent"]) is None
    assert foreign.agent_name(["ovnmeta-agent"]) is None
    assert foreign.agent_name([]) is None


def test_agent_behind_its_process_title() -> None:
    """neutron sets "<agent> (<original command line>)" as its process title."""
    raw = (b"neutron-ovn-agent (/usr/bin/python3 /usr/bin/neutron-ovn-agent --config-file "
           b"/etc/neutron/neutron.conf --config-file /etc/neutron/ovn_agent.ini)\0\0\0")
    argv = foreign.command_line(raw)
    assert foreign.agent_name(argv) == foreign.OVN_AGENT
    assert osloargs.config_files(argv) == ["/etc/neutron/neutron.conf",
                                          "/etc/neutron/ovn_agent.ini"]
    master = (b"neutron-ovn-agent: master process [/usr/bin/neutron-ovn-agent --config-file "
              b"/etc/neutron/ovn_agent.ini]\0")
    argv = foreign.command_line(master)
    assert foreign.agent_name(argv) == foreign.OVN_AGENT
    assert osloargs.config_files(argv) == ["/etc/neutron/ovn_agent.ini"]
    worker = b"neutron-ovn-agent: ServiceWrapper worker(0)" + b"\0" * 40
    assert foreign.agent_name(foreign.command_line(worker)) == foreign.OVN_AGENT
    plain = b"/usr/bin/python3\0/usr/bin/neutron-ovn-metadata-agent\0--config-file\0a b.ini\0"
    assert foreign.command_line(plain)[1:] == ["/usr/bin/neutron-ovn-metadata-agent",
                                               "--config-file", "a b.ini"]


def test_ovn_agent_serves_metadata_only_with_the_extension(tmp_path) -> None:
    neutron = tmp_path / "neutron.conf"
    neutron.write_text("[DEFAULT]\ndebug = true\n")
    agent_ini = tmp_path / "ovn_agent.ini"
    agent_ini.write_text("[agent]\nextensions = qos_hwol, metadata\n")
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "99-no-metadata.conf").write_text("[agent]\nextensions=qos_hwol\n")
    argv = ["neutron-ovn-agent", "--config-file", str(neutron),
            f"--config-file={agent_ini}"]
    assert osloargs.config_files(argv) == [str(neutron), str(agent_ini)]
    assert foreign.agent_extensions(osloargs.config_files(argv)) == ("qos_hwol", "metadata")
    assert foreign.NeutronAgent(1, foreign.OVN_AGENT, ("qos_hwol", "metadata")).serves_metadata
    # The last file that sets it wins, as with oslo.config.
    later = osloargs.config_files(argv + ["--config-dir", str(conf_d)])
    assert foreign.agent_extensions(later) == ("qos_hwol",)
    assert not foreign.NeutronAgent(1, foreign.OVN_AGENT, ("qos_hwol",)).serves_metadata
    # A file that cannot be read: assume it still serves metadata.
    assert foreign.agent_extensions([str(tmp_path / "missing.ini")]) is None
    assert foreign.NeutronAgent(1, foreign.OVN_AGENT, None).serves_metadata
    assert foreign.NeutronAgent(1, foreign.METADATA_AGENT, ()).serves_metadata
