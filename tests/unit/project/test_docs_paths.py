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
