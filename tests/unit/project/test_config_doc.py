"""docs/configuration.md is generated from the options the agent registers: it is current,
and the generator notices when it is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gen_config_doc.py"
PAGE = ROOT / "docs" / "configuration.md"


def _check(page: Path = PAGE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--check", "--page", str(page)],
                          capture_output=True, text=True, timeout=60)


def test_the_configuration_page_matches_the_code() -> None:
    done = _check()
    assert done.returncode == 0, done.stderr
    text = PAGE.read_text()
    assert "| `metadata_proxy_shared_secret` | str | (empty) | **neutron**." in text
    assert "Secret: never logged." in text and "## [metadata_haproxy]" in text


def test_a_stale_page_is_named(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(PAGE.read_text().replace("`4096`", "`5`"))
    done = _check(stale)
    assert done.returncode == 1 and f"{stale} is stale" in done.stderr
