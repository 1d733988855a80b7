"""Options keep neutron's names and the shipped sample matches the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from oslo_config import cfg

from ovnmeta.agent import config

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "etc" / "ovnmeta-agent.ini.sample"


def test_sample_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "sample.ini"
    subprocess.run([sys.executable, "-m", "oslo_config.generator", "--config-file",
                    str(ROOT / "etc/oslo-config-generator/ovnmeta-agent.conf"),
                    "--output-file", str(out)], check=True, cwd=ROOT)
    assert out.read_text() == SAMPLE.read_text(), (
        "etc/ovnmeta-agent.ini.sample is stale: run oslo-config-generator --config-file "
        "etc/oslo-config-generator/ovnmeta-agent.conf")


def test_sample_parses_with_defaults() -> None:
    conf = config.load(["--config-file", str(SAMPLE)], prog="test")
    assert conf.ovn.ovn_sb_connection == ["tcp:127.0.0.1:6642"]
    assert conf.haproxy.mode == "shared"


def test_neutron_config_is_accepted(tmp_path: Path) -> None:
    ini = tmp_path / "neutron_ovn_metadata_agent.ini"
    ini.write_text(
        "[DEFAULT]\n"
        "nova_metadata_host = 192.0.2.10\n"
        "nova_metadata_port = 8775\n"
        "nova_metadata_protocol = https\n"
        "metadata_proxy_shared_secret = s3cret\n"
        "metadata_workers = 2\n"
        "metadata_proxy_socket = /run/x/metadata_proxy\n"
        "[ovs]\novsdb_connection = tcp:127.0.0.1:6640\n"
        "[ovn]\novn_sb_connection = ssl:192.0.2.1:6642,ssl:192.0.2.2:6642\n"
    )
    conf = config.load(["--config-file", str(ini)], prog="test")
    assert conf.nova_metadata_host == ["192.0.2.10"]
    assert conf.nova_metadata_protocol == "https"
    assert conf.metadata_proxy_shared_secret == "s3cret"
    assert conf.metadata_workers == 2
    assert conf.ovs.ovsdb_connection == "tcp:127.0.0.1:6640"
    assert conf.ovn.ovn_sb_connection == ["ssl:192.0.2.1:6642", "ssl:192.0.2.2:6642"]


def test_secret_is_marked_secret() -> None:
    opt = next(o for o in config.DEFAULT_OPTS if o.name == "metadata_proxy_shared_secret")
    assert opt.secret


def test_entry_points_answer_help() -> None:
    for prog in ("ovnmeta-agent", "ovnmeta"):
        exe = Path(sys.executable).parent / prog
        proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "usage:" in proc.stdout


def test_bad_value_is_reported_at_load_with_the_option_name(tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text("[DEFAULT]\nnova_metadata_protocol = ftp\n")
    with pytest.raises(cfg.Error) as err:
        config.load(["--config-file", str(ini)], prog="test")
    assert "nova_metadata_protocol" in str(err.value)
    exe = Path(sys.executable).parent / "ovnmeta-agent"
    proc = subprocess.run([str(exe), "--config-file", str(ini)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "configuration error" in proc.stderr and "nova_metadata_protocol" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_nova_is_waited_for_as_long_as_haproxy_waits_unless_set(tmp_path: Path) -> None:
    """LP #2154609: slow vendordata. Unset, the nova timeout is [metadata_haproxy]
    timeout_server (neutron's 32 s, or the operator's); set, it is what it says."""
    from ovnmeta.core.model import NovaEndpoint
    ini = tmp_path / "a.ini"
    ini.write_text("")
    assert NovaEndpoint.from_conf(config.load(["--config-file", str(ini)], "t")).timeout == 32
    ini.write_text("[metadata_haproxy]\ntimeout_server = 90\n")
    assert NovaEndpoint.from_conf(config.load(["--config-file", str(ini)], "t")).timeout == 90
    ini.write_text("[metadata_haproxy]\ntimeout_server = 90\n[metadata]\n"
                   "nova_metadata_timeout = 5\n")
    assert NovaEndpoint.from_conf(config.load(["--config-file", str(ini)], "t")).timeout == 5
