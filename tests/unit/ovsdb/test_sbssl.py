"""sbssl names the [ovn] option at fault, against a real TLS server on loopback."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading

import pytest

from ovnmeta.ovsdb import sbssl


def _ca(d, name: str):
    key, crt = d / f"{name}-ca.key", d / f"{name}-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name} CA", "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    return key, crt


def _leaf(d, ca, name: str):
    key, csr, crt = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                    "-keyout", key, "-out", csr], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0],
                    "-CAcreateserial", "-days", "2", "-out", crt],
                   check=True, capture_output=True)
    return key, crt


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    good, bad = _ca(d, "good"), _ca(d, "bad")
    return {"ca": good[1], "other_ca": bad[1], "server": _leaf(d, good, "server"),
            "client": _leaf(d, good, "client"), "stranger": _leaf(d, bad, "stranger")}


@pytest.fixture(scope="module")
def server(pki):
    """An ovsdb-server-like TLS listener: requires a client certificate from the good CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server"][1], pki["server"][0])
    ctx.load_verify_locations(pki["ca"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(2)
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield f"ssl:127.0.0.1:{port}"
    listener.close()


def files(pki, ca="ca", client="client") -> sbssl.SslFiles:
    key, crt = pki[client]
    return sbssl.SslFiles(str(key), str(crt), str(pki[ca]))


def test_right_files_are_not_blamed(pki, server) -> None:
    assert sbssl.diagnose(server, files(pki)) is None


def test_wrong_ca_names_ovn_sb_ca_cert(pki, server) -> None:
    why = sbssl.diagnose(server, files(pki, ca="other_ca"))
    assert why and f"ovn_sb_ca_cert = {pki['other_ca']}" in why and "not verified" in why


def test_certificate_the_server_does_not_trust_names_ovn_sb_certificate(pki, server) -> None:
    why = sbssl.diagnose(server, files(pki, client="stranger"))
    assert why and "refused our certificate" in why and "ovn_sb_certificate" in why


def test_unreadable_or_unset_files_are_named(pki, server, tmp_path) -> None:
    key, crt = pki["client"]
    missing = str(tmp_path / "nope.pem")
    assert "ovn_sb_ca_cert = " + missing in sbssl.diagnose(
        server, sbssl.SslFiles(str(key), str(crt), missing))
    assert "ovn_sb_private_key is not set" in sbssl.diagnose(
        server, sbssl.SslFiles("", str(crt), str(pki["ca"])))
    # A key that does not match the certificate.
    wrong_key = pki["stranger"][0]
    assert "ovn_sb_private_key" in sbssl.diagnose(
        server, sbssl.SslFiles(str(wrong_key), str(crt), str(pki["ca"])))


def test_not_ssl_is_not_diagnosed(pki) -> None:
    assert sbssl.diagnose("tcp:127.0.0.1:1", files(pki)) is None
    assert sbssl.diagnose("ssl:127.0.0.1:1", files(pki)) is None  # refused: not SSL's fault
