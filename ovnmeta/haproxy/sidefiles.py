"""The files the direct path's haproxy reads beside its config: the answers it gives when
nova fails, and nova's client certificate with its key. Written only when they change, so
a restart does not touch what a running haproxy has open."""

from __future__ import annotations

from pathlib import Path

from ovnmeta.haproxy.settings import CLIENT_PEM, ERROR_FILES, Direct, error_file, error_file_text


def write(state_dir: Path, direct: Direct) -> None:
    for code, (status, reason, body) in ERROR_FILES.items():
        path = error_file(state_dir, code)
        text = error_file_text(status, reason, body)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    tls = direct.tls
    if tls and tls.client_pem:
        write_client_pem(Path(tls.client_pem), tls.client_cert, tls.client_key)


def remove(state_dir: Path) -> None:
    for code in ERROR_FILES:
        error_file(state_dir, code).unlink(missing_ok=True)
    (state_dir / CLIENT_PEM).unlink(missing_ok=True)


def write_client_pem(path: Path, cert: str, key: str) -> None:
    """nova_client_cert and nova_client_priv_key as one file, haproxy's `crt`; readable by
    root alone, as the key is (haproxy reads it before it drops its privileges)."""
    text = Path(cert).read_text()
    if key and key != cert:
        text = text.rstrip("\n") + "\n" + Path(key).read_text()
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".new")
        tmp.touch(mode=0o600)
        tmp.chmod(0o600)
        tmp.write_text(text)
        tmp.replace(path)
