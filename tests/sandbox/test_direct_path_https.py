"""https nova on the direct path: haproxy speaks TLS to nova with neutron's options
(auth_ca_cert, nova_client_cert, nova_client_priv_key) to a nova double that demands a client
certificate; certificates are made here. A wrong CA gives one error that names the option,
and the agent still answers every request."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from ovnmeta.haproxy.process import parse_master_proc
from ovnmeta.haproxy.runtime import stats_command
from ovnmeta.haproxy.settings import CLIENT_PEM
from ovnmeta_testing.agentproc import STARTING
from ovnmeta_testing.sandbox import wait_until
from ovnmeta_testing.sbmodes import Cloud

from tests.sandbox.test_direct_path import agent_requests, metrics_port, served_direct
from tests.sandbox.test_metrics import fetch, scrape


def make_pki(d: Path) -> Path:
    """A CA, nova's certificate for localhost (name and address), a client certificate,
    and a second CA that signed neither."""
    d.mkdir()

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            f"/CN={ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    for name, san in (("nova", "DNS:localhost,IP:127.0.0.1,IP:::1"), ("client", "DNS:agent")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
            f"{name}.key", "-out", f"{name}.csr")
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return d


def test_https_nova_is_reached_direct_and_a_wrong_ca_is_named_once(sandbox, tmp_path) -> None:
    pki = make_pki(tmp_path / "pki")
    cloud = Cloud(sandbox, tmp_path, nova_tls=[
        "--tls-cert", str(pki / "nova.pem"), "--tls-key", str(pki / "nova.key"),
        "--tls-client-ca", str(pki / "ca.pem")])
    tls = ("nova_metadata_host = localhost\nnova_metadata_protocol = https\n"
           f"auth_ca_cert = {pki / 'ca.pem'}\nnova_client_cert = {pki / 'client.pem'}\n"
           f"nova_client_priv_key = {pki / 'client.key'}\n")
    cloud.agent.config.write_text(cloud.agent.config.read_text().replace(
        "[DEFAULT]\n", "[DEFAULT]\n" + tls, 1))
    port = metrics_port(cloud)
    try:
        # haproxy itself verifies nova and shows the client certificate nova demands.
        net, vm = served_direct(cloud, port, timeout=15)
        before = scrape(port)
        assert fetch(vm, 10) == [200] * 10
        assert agent_requests(scrape(port), net.id) == agent_requests(before, net.id)
        haproxy_dir = cloud.agent.state_dir / "haproxy"
        config = (haproxy_dir / "shared.cfg").read_text()
        assert f"verify required ca-file {pki / 'ca.pem'} sni str(localhost)" in config
        assert stat.S_IMODE((haproxy_dir / CLIENT_PEM).stat().st_mode) == 0o600

        # A CA that did not sign nova's certificate: nothing reaches nova, the agent says
        # why once, naming the option, and every request still gets an answer.
        reloads = master_reloads(haproxy_dir)
        assert reloads >= 0
        cloud.agent.stop()
        cloud.agent.config.write_text(cloud.agent.config.read_text().replace(
            f"auth_ca_cert = {pki / 'ca.pem'}", f"auth_ca_cert = {pki / 'other-ca.pem'}"))
        cloud.agent.start()
        # Until haproxy has reloaded, its old worker (the right CA) still answers; a 502
        # alone does not say it has: the new agent's own path (the new CA) answers 502 too.
        wait_until(lambda: master_reloads(haproxy_dir) > reloads and fetch(vm, 1) == [502],
                   timeout=30, what="the new CA in use")
        assert fetch(vm, 10) == [502] * 10
        named = [line for line in run_log(cloud).splitlines()
                 if " ERROR " in line and "auth_ca_cert" in line]
        assert len(named) == 1, named
        assert "does not verify against [DEFAULT] auth_ca_cert = " \
               f"{pki / 'other-ca.pem'}" in named[0]
        assert "Traceback" not in run_log(cloud)
    finally:
        print(cloud.close())


def master_reloads(haproxy_dir: Path) -> int:
    """How many times the shared haproxy's master has loaded a config (its CLI); -1 while
    its CLI does not answer (it re-executes itself at a reload)."""
    try:
        state = parse_master_proc(stats_command(str(haproxy_dir / "shared.master"),
                                                "show proc"))
    except OSError:
        return -1
    return state[0] if state else -1


def run_log(cloud: Cloud) -> str:
    return cloud.agent.log().split(STARTING)[-1]
