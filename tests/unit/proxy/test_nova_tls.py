"""The nova client's TLS (proxy/nova.py) against a real HTTPS server with its own CA."""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ovnmeta.core.model import NovaEndpoint
from ovnmeta.proxy.nova import NovaClient, NovaUnavailable, TlsSettingsError, ssl_context


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
            f"{name}.key", "-out", f"{name}.csr")
        (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return d


def _fetch(certs, endpoint_kwargs: dict, require_client_cert: bool = False):
    async def main():
        async def hello(request: web.Request) -> web.Response:
            return web.Response(text="ok")
        app = web.Application()
        app.router.add_get("/", hello)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certs / "server.pem", certs / "server.key")
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(certs / "ca.pem")
        server = TestServer(app, host="127.0.0.1")
        await server.start_server(ssl=ctx)
        client = NovaClient(NovaEndpoint(hosts=("127.0.0.1",), port=server.port,
                                         protocol="https", timeout=5, **endpoint_kwargs))
        try:
            return await client.forward("GET", "/", [], b"")
        finally:
            await client.close()
            await server.close()
    return asyncio.run(main())


def test_https_with_ca_and_client_certificate(certs) -> None:
    resp = _fetch(certs, {"ca_cert": str(certs / "ca.pem"),
                          "client_cert": str(certs / "client.pem"),
                          "client_key": str(certs / "client.key")}, require_client_cert=True)
    assert resp.status == 200 and resp.body == b"ok"


def test_https_rejects_an_unknown_ca_unless_insecure(certs, caplog) -> None:
    with pytest.raises(NovaUnavailable):
        _fetch(certs, {})
    # The log says which option to look at, not only that TLS failed.
    assert "does not verify against the system's CA store ([DEFAULT] auth_ca_cert is " \
           "not set)" in caplog.text
    assert _fetch(certs, {"insecure": True}).status == 200


def test_a_tls_file_that_cannot_be_used_is_named_and_every_request_answers_502(
        certs, tmp_path, caplog) -> None:
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    cases = [({"ca_cert": str(tmp_path / "missing.pem")}, "[DEFAULT] auth_ca_cert = "),
             ({"ca_cert": str(tmp_path / "garbage.pem")}, "[DEFAULT] auth_ca_cert = "),
             ({"ca_cert": str(certs / "ca.pem"), "client_cert": str(certs / "client.pem"),
               "client_key": str(certs / "server.key")}, "[DEFAULT] nova_client_cert = ")]
    for kwargs, option in cases:
        with pytest.raises(TlsSettingsError, match=re.escape(option)):
            ssl_context(NovaEndpoint(hosts=("h",), port=1, protocol="https", **kwargs))
        caplog.clear()
        with pytest.raises(NovaUnavailable, match=re.escape(option)):
            _fetch(certs, kwargs)
        assert option in caplog.text   # said at start, by the client
