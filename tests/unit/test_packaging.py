"""What a compute node installs: the agent and its CLI, none of the test support."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
