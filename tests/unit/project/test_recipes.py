"""The deployment recipes in deploy/: what can be checked without the tools' clusters.
The image, the package and kolla's run contract are tested for real in tests/sandbox
(test_container.py, test_deb.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ovnmeta import __version__

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
DISTRO_UNIT = """\
[Unit]
Description=OpenStack Neutron OVN Metadata Agent
[Service]
User=neutron
Type=simple
ExecStart=/usr/bin/neutron-ovn-metadata-agent --config-file=/etc/neutron/neutron.conf
[Install]
WantedBy=multi-user.target
"""


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze (systemd)")
@pytest.mark.parametrize("dropin", ["debian.conf", "rdo.conf", "osa"])
def test_the_drop_ins_verify_over_a_distribution_unit(tmp_path, dropin):
    agent = str(Path(sys.executable).parent / "ovnmeta-agent")
    if dropin == "osa":
        text = (DEPLOY / "systemd/neutron-ovn-metadata-agent.service.d/ovnmeta.conf.j2") \
            .read_text().replace("{{ ovnmeta_agent }}", agent) \
            .replace("{{ ovnmeta_config_args }}", "--config-file /etc/neutron/neutron.conf")
    else:
        text = (DEPLOY / "systemd" / dropin).read_text()
        text = text.replace("/usr/bin/ovnmeta-agent", agent) \
            .replace("/usr/local/bin/ovnmeta-agent", agent)
    assert "{{" not in text and "KillMode=process" in text and "User=root" in text
    (tmp_path / "neutron-ovn-metadata-agent.service").write_text(DISTRO_UNIT)
    (tmp_path / "neutron-ovn-metadata-agent.service.d").mkdir()
    (tmp_path / "neutron-ovn-metadata-agent.service.d" / "ovnmeta.conf").write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify",
                           str(tmp_path / "neutron-ovn-metadata-agent.service")],
                          capture_output=True, text=True,
                          env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=/")]
    assert exec_start.split()[0] == f"ExecStart={agent}"


def test_every_recipe_names_this_version():
    assert f'neutron_ovn_metadata_agent_tag: "{__version__}"' in \
        (DEPLOY / "kolla/globals.yml").read_text()
    helm = yaml.safe_load((DEPLOY / "openstack-helm/values-ovnmeta.yaml").read_text())
    assert helm["images"]["tags"]["neutron_metadata"].endswith(f":{__version__}")
    osa = yaml.safe_load((DEPLOY / "openstack-ansible/user_variables_ovnmeta.yml").read_text())
    assert osa["ovnmeta_wheel"].endswith(f"ovnmeta-{__version__}-py3-none-any.whl")


def test_helm_values_give_the_agent_root_and_the_hosts_namespaces():
    helm = yaml.safe_load((DEPLOY / "openstack-helm/values-ovnmeta.yaml").read_text())
    assert helm["network"]["share_namespaces"] is True
    assert helm["pod"]["security_context"]["neutron_ovn_metadata_agent"]["pod"] == {
        "runAsUser": 0}
    probes = helm["pod"]["probes"]["ovn_metadata_agent"]["ovn_metadata_agent"]
    assert probes["readiness"]["enabled"] and probes["liveness"]["enabled"]


def test_kolla_recipe_runs_the_same_agent_script_as_the_image():
    kolla = DEPLOY / "kolla/docker/ovnmeta-metadata-agent"
    assert (kolla / "neutron-ovn-metadata-agent").read_bytes() == \
        (ROOT / "container/neutron-ovn-metadata-agent").read_bytes()
    dockerfile = (kolla / "Dockerfile.j2").read_text()
    assert "neutron-base:{{ tag }}" in dockerfile and "ENV OVNMETA_CONTAINER=1" in dockerfile
    assert dockerfile.rstrip().endswith("USER root")


def test_the_openstack_ansible_playbook_parses_and_finds_its_template():
    (play,) = yaml.safe_load((DEPLOY / "openstack-ansible/ovnmeta.yml").read_text())
    templates = [t["ansible.builtin.template"]["src"] for t in play["tasks"]
                 if "ansible.builtin.template" in t]
    assert all((DEPLOY / "openstack-ansible" / src).resolve().exists() for src in templates)
