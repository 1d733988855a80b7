"""A neutron_ovn_metadata_agent.ini with every option of neutron 29 set loads unchanged,
each option parsed to the value neutron itself parses (tests/data, generated from neutron by
scripts/gen_neutron_compat.py)."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest
from oslo_config import cfg

from ovnmeta.agent import config

DATA = Path(__file__).resolve().parents[2] / "data"
INI = DATA / "neutron_ovn_metadata_agent.ini"
# Where ovnmeta differs on purpose (README, "What differs from neutron").
DIFFERS = {
    # One host in neutron; a fail-over list here, of which neutron's value is the one item.
    "DEFAULT.nova_metadata_host": lambda neutron, ours: ours == [neutron],
}


def ini_options() -> list[tuple[str, str]]:
    parser = configparser.RawConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(INI)
    pairs = [("DEFAULT", k) for k in parser.defaults()]
    for section in parser.sections():
        pairs += [(section, k) for k in parser[section] if k not in parser.defaults()]
    return pairs


@pytest.fixture(scope="module")
def conf() -> cfg.ConfigOpts:
    return config.load(["--config-file", str(INI)], prog="test")


def test_every_option_of_the_neutron_ini_is_known(conf) -> None:
    """oslo.config silently ignores unknown options: check each one is registered."""
    options = ini_options()
    assert len(options) > 150
    unknown = []
    for section, name in options:
        node = conf if section == "DEFAULT" else getattr(conf, section)
        try:
            getattr(node, name)
        except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
            unknown.append(f"[{section}] {name}")
    assert not unknown


def test_each_value_is_what_neutron_parses(conf) -> None:
    expected = json.loads((DATA / "neutron_ovn_metadata_agent.expected.json").read_text())
    wrong = {}
    for key, want in expected.items():
        section, name = key.split(".", 1)
        node = conf if section == "DEFAULT" else getattr(conf, section)
        got = json.loads(json.dumps(getattr(node, name), default=str))
        same = DIFFERS[key](want, got) if key in DIFFERS else got == want
        if not same:
            wrong[key] = (want, got)
    assert not wrong


def test_neutron_meanings_that_matter(conf) -> None:
    assert conf.metadata_workers == 0          # ML2/OVN's value: serve in-process
    assert conf.debug is True                  # oslo.log's option
    assert conf.metadata_proxy_socket == "/var/lib/neutron/metadata_proxy"
    assert conf.metadata_rate_limiting.ip_versions == [6]
    assert conf.metadata_haproxy.timeout_connect == 30


@pytest.mark.parametrize("line, option", [
    ("[DEFAULT]\nmetadata_workers = -1\n", "metadata_workers"),
    ("[agent]\ncheck_child_processes_action = explode\n", "check_child_processes_action"),
    ("[ovn]\novn_nb_connection = http://x\n", "ovn_nb_connection"),
    ("[metadata_rate_limiting]\nip_versions = 5\n", "ip_versions"),
    ("[metadata_haproxy]\ntimeout_server = 0\n", "timeout_server"),
])
def test_a_value_neutron_refuses_is_refused_naming_the_option(tmp_path, line, option) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text(line)
    with pytest.raises(cfg.Error) as err:
        config.load(["--config-file", str(ini)], prog="test")
    assert option in str(err.value)
