"""The Debian package, as an operator meets it: built here from debian/, installed with apt on
a clean Debian 12 system (a chroot over debootstrap's minbase), run by its unit's command
line against the sandbox until a VM gets its metadata, then cleaned up and purged, leaving
nothing behind."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from ovnmeta import __version__
from ovnmeta_testing.agentproc import wait_until
from ovnmeta_testing.debroot import DebianRoot
from ovnmeta_testing.novaproc import NovaProcess

ROOT = Path(__file__).resolve().parents[2]
SECRET = "deb-shared-secret"
# What apt and dpkg keep of any install and removal: not the package's.
BOOKKEEPING = re.compile(r"^/(var/lib/(apt|dpkg|systemd/deb-systemd-helper-(enabled|masked))|"
                         r"var/cache/(apt|debconf|ldconfig)|var/log/(apt|dpkg\.log|"
                         r"alternatives\.log)|etc/ld\.so\.cache|etc/resolv\.conf|tmp|proc|sys|"
                         r"dev|run/netns|var/lib/python3/debian_installed|"
                         r"var/cache/private|root)(/|$)")

USER_DB = re.compile(r"^/(etc/(passwd|group|shadow|gshadow|subuid|subgid)-?|etc/\.pwd\.lock|"
                     r"run/adduser)$")


def _new_users(root: DebianRoot) -> set[str]:
    names = lambda text: {line.split(":")[0] for line in text.splitlines() if line}  # noqa
    return names((root.root / "etc/passwd").read_text()) - \
        names((root.lower / "etc/passwd").read_text())


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    built = subprocess.run(["bash", str(ROOT / "scripts" / "build_deb.sh"), str(out)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    found = list(out.glob("ovnmeta_*_all.deb"))
    assert len(found) == 1, (found, built.stdout, built.stderr)
    path = found[0]
    print(f"{path.name}: {path.stat().st_size} bytes")
    return path


def _installed_deps(root: DebianRoot) -> set[str]:
    out = root.run("dpkg-query", "-W", "-f", "${Package} ${Status}\n").stdout
    return {line.split()[0] for line in out.splitlines() if "install ok installed" in line}


def test_apt_install_run_and_purge_on_a_clean_debian_12(deb, sandbox, ovs_tcp, make_network,
                                                         make_vm, tmp_path):
    net = make_network(cidrs=("10.0.0.0/24",))
    vm = make_vm(net)
    nova = NovaProcess({vm.port.device_id: {"hostname": vm.netns}}, SECRET, tmp_path).start()
    agent = None
    try:
        with DebianRoot() as root:
            before = _installed_deps(root)
            (root.root / "tmp" / deb.name).write_bytes(deb.read_bytes())
            root.run("apt-get", "update", "-q")
            root.run("apt-get", "install", "-y", "-q", "--no-install-recommends",
                     f"./tmp/{deb.name}", cwd=None)
            # What the package put in place, and what it did not touch.
            assert root.run("ovnmeta-agent", "--version").stdout.strip() == __version__
            assert root.run("ovnmeta", "--version").stdout.strip() == f"ovnmeta {__version__}"
            unit = (root.root / "lib/systemd/system/ovnmeta-agent.service").read_text()
            assert (root.root / "etc/ovnmeta/ovnmeta-agent.ini").exists()
            assert not (root.root / "etc/neutron").exists()
            assert not (root.root / "etc/systemd/system/multi-user.target.wants/"
                        "ovnmeta-agent.service").exists()   # neither enabled nor started

            # The operator's edits, then the unit's own command line.
            with open(root.root / "etc/ovnmeta/ovnmeta-agent.ini", "a") as ini:
                ini.write(f"\n[DEFAULT]\nmetadata_proxy_shared_secret = {SECRET}\n"
                          f"nova_metadata_port = {nova.port}\n"
                          "[ovn]\n"
                          f"ovn_sb_connection = {sandbox.sb_tcp_connection}\n"
                          "[ovs]\n"
                          "ovsdb_connection = tcp:127.0.0.1:6640\n"
                          "[metrics]\nlisten =\n")
            parser = configparser.ConfigParser(strict=False, interpolation=None)
            parser.read_string(unit)
            exec_start = shlex.split(parser.get("Service", "ExecStart"))
            assert exec_start[0] == "/usr/bin/ovnmeta-agent"
            log = tmp_path / "agent.log"
            agent = root.popen(*exec_start, log=log)
            started = time.monotonic()
            wait_until(lambda: _uuid(vm) == vm.port.device_id, timeout=30,
                       what=f"metadata for {vm.netns} from the installed agent")
            print(f"the installed agent served the VM {time.monotonic() - started:.1f} s "
                  "after it started")
            agent.terminate()
            agent.wait(30)
            agent = None

            # Decommission as docs/install.md says: cleanup, then purge.
            out = root.run("ovnmeta", "--config-file", "/etc/ovnmeta/ovnmeta-agent.ini",
                           "cleanup")
            assert "removed 1 namespace(s)" in out.stdout, out
            root.run("apt-get", "purge", "-y", "-q", "ovnmeta")
            # Not kept for apt's own Recommends (ca-certificates, pulled in by a dependency).
            root.run("apt-get", "autoremove", "--purge", "-y", "-q",
                     "-o", "APT::AutoRemove::RecommendsImportant=false")
            assert _installed_deps(root) == before
            # The user database is rewritten by haproxy's maintainer scripts (its system
            # user); no user of ours is left in it.
            assert _new_users(root) <= {"haproxy"}
            left = [p for p in root.changed() if not BOOKKEEPING.match(p)
                    and not USER_DB.match(p)]
            assert left == [], "\n".join(left)
            (root.root / "tmp" / deb.name).unlink()   # the operator's download
            assert not any("ovnmeta" in p for p in root.changed()), \
                [p for p in root.changed() if "ovnmeta" in p]
            assert subprocess.run(["pgrep", "-f", str(root.root)],
                                  capture_output=True).stdout == b""
    finally:
        if agent is not None:
            agent.kill()
        nova.stop()


def _uuid(vm) -> str:
    import json
    out = vm.exec("curl", "-s", "-m", "3", "http://169.254.169.254/openstack/latest/"
                  "meta_data.json", check=False, timeout=10).stdout
    try:
        return json.loads(out).get("uuid", "")
    except ValueError:
        return ""
