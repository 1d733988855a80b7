"""haproxy's runtime API: one command on a stats socket or master CLI, and its answers
parsed."""

from __future__ import annotations

import socket

from ovnmeta.core import naming

def stats_command(path: str, command: str, timeout: float = 1.0) -> str:
    """One command on a haproxy stats socket or master CLI; its whole answer. Our side is
    shut once the command is sent: the master CLI answers only then."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def worker_pid(info: str) -> int | None:
    """The serving process's pid from `show info`."""
    for line in info.splitlines():
        if line.startswith("Pid:"):
            try:
                return int(line.split(":", 1)[1])
            except ValueError:
                return None
    return None


def stat_rows(csv: str) -> list[dict[str, str]]:
    """`show stat` CSV → one {field: value} per proxy or server line."""
    lines = csv.splitlines()
    if not lines or not lines[0].startswith("# "):
        return []
    fields = lines[0][2:].split(",")
    return [dict(zip(fields, line.split(","))) for line in lines[1:]]


def parse_frontend_stats(csv: str) -> dict[str, dict[str, int]]:
    """`show stat` CSV → {network id: {field: value}} for our frontends."""
    out: dict[str, dict[str, int]] = {}
    for values in stat_rows(csv):
        net = naming.network_from_frontend(values.get("pxname", ""))
        if net is None or values.get("svname") != "FRONTEND":
            continue
        out[net] = {k: int(v) for k, v in values.items() if v.isdigit()}
    return out
