"""Say which [ovn] SSL option is wrong when an ssl: SB remote cannot be reached.

python-ovs reports a failed handshake as a bare errno ("Operation not permitted"), which
tells an operator nothing. Only after such a failure, this repeats the handshake with
Python's ssl module and turns the outcome into one sentence that names the option to fix.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

# After our handshake, how long to wait for the server to reject our certificate (TLS 1.3
# sends that alert after the client considers the handshake done).
REJECT_WAIT = 1.0


@dataclass(frozen=True)
class SslFiles:
    private_key: str
    certificate: str
    ca_cert: str

    @classmethod
    def from_conf(cls, ovn_conf) -> SslFiles:
        return cls(ovn_conf.ovn_sb_private_key, ovn_conf.ovn_sb_certificate,
                   ovn_conf.ovn_sb_ca_cert)


def _host_port(remote: str) -> tuple[str, int]:
    _, rest = remote.split(":", 1)
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def context(files: SslFiles) -> tuple[ssl.SSLContext | None, str | None]:
    """A client context from the files, or the sentence that says which one is unusable."""
    for option, path in (("ovn_sb_private_key", files.private_key),
                         ("ovn_sb_certificate", files.certificate),
                         ("ovn_sb_ca_cert", files.ca_cert)):
        if not path:
            return None, f"[ovn] {option} is not set, and ssl: SB remotes need it"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # ovsdb-server certificates name no host; the CA is the check
    try:
        ctx.load_verify_locations(files.ca_cert)
    except (OSError, ssl.SSLError) as exc:
        return None, f"[ovn] ovn_sb_ca_cert = {files.ca_cert} cannot be used: {exc}"
    try:
        ctx.load_cert_chain(files.certificate, files.private_key)
    except (OSError, ssl.SSLError) as exc:
        return None, (f"[ovn] ovn_sb_certificate = {files.certificate} with "
                      f"ovn_sb_private_key = {files.private_key} cannot be used: {exc}")
    return ctx, None


def diagnose(remote: str, files: SslFiles, timeout: float = 5.0) -> str | None:
    """Why an ssl: remote fails, naming the option to fix; None if SSL is not the cause.

    The sentence does not name the remote: the same cause at every remote reads once.
    """
    if not remote.startswith("ssl:"):
        return None
    ctx, problem = context(files)
    if problem:
        return problem
    try:
        host, port = _host_port(remote)
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw) as tls:
                tls.settimeout(REJECT_WAIT)
                try:
                    tls.recv(1)
                except TimeoutError:
                    return None  # the server kept us: SSL is fine
    except ssl.SSLCertVerificationError as exc:
        return (f"its certificate is not verified by [ovn] ovn_sb_ca_cert = "
                f"{files.ca_cert}: {exc.verify_message}")
    except ssl.SSLError as exc:
        return (f"it refused our certificate, [ovn] ovn_sb_certificate = "
                f"{files.certificate}: {exc.reason or exc}")
    except (OSError, ValueError):
        return None  # not an SSL problem: the caller's error says what it is
    return None
