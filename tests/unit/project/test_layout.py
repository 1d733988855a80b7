"""The package's shape, as issue 38 set it: unit tests mirror the package, test files have
unique names (pytest imports them by basename), and no module grows past 400 lines."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "ovnmeta"
UNIT = ROOT / "tests" / "unit"
LAYERS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
OTHER = {"project": "the repository's files", "scripts": "the benchmarks' plumbing"}
MAX_LINES = 400


def test_each_unit_test_file_is_named_after_a_module_of_its_layer() -> None:
    misplaced = []
    for path in sorted(UNIT.rglob("test_*.py")):
        folder = path.parent.relative_to(UNIT).as_posix()
        if folder in OTHER:
            continue
        modules = {m.stem for m in (PACKAGE / folder).glob("*.py")} if folder in LAYERS else set()
        subject = path.stem.removeprefix("test_")
        if not any(subject == m or subject.startswith(m + "_") for m in modules):
            misplaced.append(path.relative_to(ROOT).as_posix())
    assert not misplaced, f"not tests/unit/<layer>/test_<module>[_aspect].py: {misplaced}"


def test_no_two_test_files_share_a_name() -> None:
    seen: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        assert path.name not in seen, (path, seen[path.name])
        seen[path.name] = path


def test_no_module_is_over_400_lines() -> None:
    long = {p.relative_to(ROOT).as_posix(): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
