"""What a compute node installs: the agent and its CLI, none of the test support."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                    "--outdir", str(out), str(ROOT)], check=True, capture_output=True)
    (path,) = out.glob("ovnmeta-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_ships_no_sandbox_double_or_demo(wheel):
    names = wheel.namelist()
    modules = [n for n in names if n.endswith(".py")]
    assert "ovnmeta/agent/launch.py" in modules and "ovnmeta/ops/cli.py" in modules
    assert [n for n in modules if not n.startswith("ovnmeta/")] == []
    support = [p.name for p in (ROOT / "tests" / "support" / "ovnmeta_testing").glob("*.py")
               if p.name != "__init__.py"]
    assert "sandbox.py" in support and "novaserver.py" in support and "demo.py" in support
    shipped = {Path(n).name for n in modules}
    assert shipped.isdisjoint(support)
    assert not any("testing" in n or "demo" in n for n in names)


def test_the_wheel_has_the_two_commands_and_the_templates(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    scripts = wheel.read(entry_points).decode().split("[console_scripts]")[1].split("[")[0]
    assert sorted(line.split(" = ")[0] for line in scripts.split("\n") if line.strip()) == [
        "ovnmeta", "ovnmeta-agent"]
    assert any(n.endswith("share/ovnmeta/templates/haproxy.cfg.j2") for n in wheel.namelist())
    assert "ovnmeta/agent/neutron_options.json" in wheel.namelist()


def _requirements() -> list:
    import tomllib
    from packaging.requirements import Requirement
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in meta["dependencies"]]


def _canon(name: str) -> str:
    from packaging.utils import canonicalize_name
    return canonicalize_name(name)


# Debian 12's python3-* versions: the oldest end, on which scripts/test_oldest.sh runs the suite.
DEBIAN_12 = {"ovsdbapp": "2.1.0", "ovs": "3.1.0", "pyroute2": "0.7.2", "jinja2": "3.1.2",
             "oslo.config": "9.0.0", "oslo.log": "5.0.1", "httptools": "0.1.1",
             "uvloop": "0.17.0", "prometheus_client": "0.16.0"}


def _pins(path: Path, sep: str) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split(sep)
            out[_canon(name)] = version.strip()
    return out


def test_every_dependency_is_a_range_holding_debian_12_openstack_and_the_tested_set():
    reqs = _requirements()
    assert {_canon(r.name) for r in reqs} == {_canon(n) for n in DEBIAN_12}
    upper = _pins(ROOT / "tests" / "data" / "upper-constraints.excerpt.txt", "===")
    tested = _pins(ROOT / "constraints.txt", "==")
    for req in reqs:
        name = _canon(req.name)
        assert not any(s.operator in ("==", "===") for s in req.specifier), req
        assert req.specifier.contains(DEBIAN_12[req.name]), (req, "Debian 12")
        assert req.specifier.contains(tested[name]), (req, "constraints.txt")
        if name in upper:
            assert req.specifier.contains(upper[name]), (req, "upper-constraints")


def test_the_version_is_set_once_and_the_debian_changelog_names_it(wheel):
    from ovnmeta import __version__
    assert f"ovnmeta-{__version__}.dist-info/METADATA" in wheel.namelist()
    first = (ROOT / "debian" / "changelog").read_text().splitlines()[0]
    assert first.startswith(f"ovnmeta ({__version__}")
    assert "version =" not in (ROOT / "pyproject.toml").read_text().split("[project]")[1] \
        .split("[")[0]


def test_release_check_builds_passes_twine_and_installs_under_upper_constraints(tmp_path):
    """scripts/check_release.sh with the upper-constraints lines of ovnmeta's dependencies
    (the whole file is not in this repository; docs/install.md has the run with it)."""
    uc = ROOT / "tests" / "data" / "upper-constraints.excerpt.txt"
    out = subprocess.run(["bash", str(ROOT / "scripts" / "check_release.sh"), str(uc),
                          str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("PASSED") == 2
    assert "0 moved" in out.stdout and "ovsdbapp 2.19.0  (pinned by upper-constraints)" \
        in out.stdout
    from ovnmeta import __version__
    assert (tmp_path / f"ovnmeta-{__version__}.tar.gz").exists()
