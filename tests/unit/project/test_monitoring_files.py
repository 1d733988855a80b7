"""The shipped monitoring files: the dashboard and alerts name only exported metrics, the
alert rules pass promtool, and the systemd unit verifies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ovnmeta.agent import statemetrics


ROOT = Path(__file__).resolve().parents[3]


METRIC = re.compile(r"\b(ovnmeta_[a-z0-9_]+)")


def _expressions() -> list[str]:
    dash = json.loads((ROOT / "etc/grafana/ovnmeta-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dash["templating"]["list"] if "query" in v]
    rules = yaml.safe_load((ROOT / "etc/prometheus/ovnmeta-alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs


def test_dashboard_and_alerts_only_name_exported_metrics() -> None:
    named = {m for e in _expressions() for m in METRIC.findall(e)}
    assert named, "no ovnmeta metric named at all"
    assert named - statemetrics.exported_names() == set()
    # ...and the dashboard covers the headline families.
    for family in ("ovnmeta_requests_total", "ovnmeta_nova_errors_total",
                   "ovnmeta_haproxy_denied_requests_total", "ovnmeta_sb_connected"):
        assert family in named


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian: prometheus)")
def test_alert_rules_pass_promtool() -> None:
    proc = subprocess.run(["promtool", "check", "rules",
                           str(ROOT / "etc/prometheus/ovnmeta-alerts.yml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze (systemd)")
def test_unit_verifies(tmp_path) -> None:
    # The unit as shipped, pointed at this checkout's agent (verify wants the binary).
    unit = (ROOT / "etc/systemd/ovnmeta-agent.service").read_text()
    agent = Path(sys.executable).parent / "ovnmeta-agent"
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    path = tmp_path / "ovnmeta-agent.service"
    path.write_text(unit.replace("/usr/local/bin/ovnmeta-agent", str(agent)))
    proc = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
