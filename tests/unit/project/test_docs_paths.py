"""Every file the README and docs/ name exists: a renamed module or script shows up here,
not in an operator's failed command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Where a path in the docs may be relative to: the checkout, the package, the test support.
BASES = [ROOT, ROOT / "ovnmeta", ROOT / "tests" / "support", ROOT / "tests"]
TOP = ("ovnmeta/", "ovnmeta_testing/", "scripts/", "tests/", "docs/", "etc/", "templates/",
       "deploy/", "container/", "debian/", "agent/", "core/", "host/", "haproxy/", "ovsdb/",
       "proxy/", "ops/", ".ci/")
CODE = re.compile(r"`([^`\s]+)`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def named_paths(text: str) -> set[str]:
    """Paths in code spans that start with one of the checkout's folders, and relative
    link targets. Placeholders (<net>, globs, $VARS) are not paths to check."""
    found = set()
    for token in CODE.findall(text):
        token = token.rstrip(".,:;")
        if token.startswith(TOP) and not any(c in token for c in "<>*${}|"):
            found.add(token.split(":")[0])   # file:line
    for target in LINK.findall(text):
        if "://" not in target and not target.startswith("mailto:"):
            found.add(target)
    return found


def exists(path: str, doc: Path) -> bool:
    bases = [doc.parent, *BASES]
    return any((base / path).exists() for base in bases)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    missing = sorted(p for p in named_paths(doc.read_text()) if not exists(p, doc))
    assert missing == [], f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_the_check_finds_a_missing_path(tmp_path: Path) -> None:
    doc = tmp_path / "page.md"
    doc.write_text("Run `scripts/no_such_script.sh`, see [it](gone.md) and `ovnmeta/agent/x.py`;"
                   " `<state_path>/haproxy/*.cfg` is a placeholder.\n")
    assert sorted(p for p in named_paths(doc.read_text()) if not exists(p, doc)) == [
        "gone.md", "ovnmeta/agent/x.py", "scripts/no_such_script.sh"]


SCRIPT_FLAGS = re.compile(r"scripts/([\w-]+\.py)([^\n`]*)")
# `ovnmeta <command>` in a code span, or starting an indented (code block) line, after any
# --config-file arguments (also continued on the next line).
OVNMETA_COMMAND = re.compile(r"(?:`|^ {4,}(?:[\w.-]*/)*)ovnmeta (?:--config-file \S+ (?:\\\n\s*)?)*"
                             r"([a-z]+)\b", re.M)


def named_commands(text: str) -> tuple[set[tuple[str, str]], set[str]]:
    """(script, --flag) pairs the docs give a script, and `ovnmeta <command>` subcommands."""
    flags = {(script, flag) for script, rest in SCRIPT_FLAGS.findall(text)
             for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest)}
    return flags, set(OVNMETA_COMMAND.findall(text))


def _script_text(script: str) -> str:
    """The script and the test-support modules it is a command line for."""
    text = (ROOT / "scripts" / script).read_text()
    if script == "bench_sb_scale.py":   # its options are read by ovnmeta_testing.sbscale
        text += "".join(p.read_text() for p in
                        (ROOT / "tests/support/ovnmeta_testing/sbscale").glob("*.py"))
    return text


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_command_a_doc_gives_exists(doc: Path) -> None:
    from ovnmeta.ops.cli import build_parser
    subcommands = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    flags, commands = named_commands(doc.read_text())
    wrong = sorted(f"scripts/{s} {f}" for s, f in flags
                   if (ROOT / "scripts" / s).exists() and f'"{f}"' not in _script_text(s))
    wrong += sorted(f"ovnmeta {c}" for c in commands - subcommands)
    assert wrong == [], f"{doc.relative_to(ROOT)} gives commands that do not exist: {wrong}"


def test_the_check_finds_a_wrong_flag_and_subcommand() -> None:
    flags, commands = named_commands(
        "    .venv/bin/python scripts/bench_proxy.py --networks 50 --no-such-flag\n"
        "    ovnmeta --config-file /etc/x.ini frobnicate\n"
        "ovnmeta holds the socket; `ovnmeta status` and `ovnmeta-agent --help`.\n")
    assert flags == {("bench_proxy.py", "--networks"), ("bench_proxy.py", "--no-such-flag")}
    assert commands == {"frobnicate", "status"}
    assert '"--no-such-flag"' not in _script_text("bench_proxy.py")
