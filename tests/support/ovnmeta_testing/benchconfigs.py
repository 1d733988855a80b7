"""The benchmarks' fixed server configs, kept as files in benchconf/ (str.format templates):
the ceiling's haproxy and the constant "nova" nginx of scripts/bench_proxy.py, which
scripts/bench_haproxy_rules.py measures too."""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).parent / "benchconf"


def _render(name: str, values: dict[str, object]) -> str:
    lines = (DIR / name).read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#")).format(**values)


def ceiling_haproxy(**values: object) -> str:
    """port, nbthread, namespace, instance, project, signature, nova_port."""
    return _render("ceiling.haproxy.cfg", values)


def constant_nginx(**values: object) -> str:
    """dir, port, body (escaped for a single-quoted nginx string)."""
    return _render("constant.nginx.conf", values)
