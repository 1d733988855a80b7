"""The rendered configs are ones haproxy itself accepts, with the namespaces they bind in."""

import subprocess

from ovnmeta.core.model import Frontend, NovaEndpoint
from ovnmeta.haproxy.render import BUNDLED_TEMPLATES, render, renderer
from ovnmeta.haproxy.settings import ERROR_FILES, Direct, RateLimit, Settings, error_file_text

TEMPLATE = renderer(BUNDLED_TEMPLATES)
SETTINGS = Settings(socket="/run/ovnmeta/metadata_proxy")


def frontends(*ids: str) -> list[Frontend]:
    return [Frontend(i, f"ovnmeta-{i}", f"omt{i}i", False) for i in ids]


def test_rendered_config_is_accepted_by_haproxy(tmp_path) -> None:
    names = ["omunit-a", "omunit-b"]
    fronts = [Frontend(n, n, "lo", True) for n in names]
    for n in names:
        subprocess.run(["ip", "netns", "add", n], check=True)
    try:
        cfg = tmp_path / "h.cfg"
        (tmp_path / "maps").mkdir()
        for n in names:
            (tmp_path / "maps" / f"{n}.map").write_text("10.0.0.5 i|p|s\nfe80::1 i|p|s\n")
        for code, (status, reason, body) in ERROR_FILES.items():
            (tmp_path / f"nova-{code}.http").write_text(error_file_text(status, reason, body))
        direct = Direct.for_nova(str(tmp_path / "ready.sock"), NovaEndpoint(
            hosts=("127.0.0.1", "::1", "nova.invalid"), port=8775, timeout=2.5))
        for settings in (SETTINGS, Settings(socket="/s", log_target="127.0.0.1:514",
                                            user="nobody", group="nogroup",
                                            rate_limit=RateLimit(ip_versions=(4, 6))),
                         Settings(socket="/s", direct=direct, threads=0),   # busy lane too
                         Settings(socket="/s", direct=direct,
                                  rate_limit=RateLimit(ip_versions=(4, 6)))):
            cfg.write_text(render(TEMPLATE, fronts, settings, state_dir=tmp_path))
            proc = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True,
                                  text=True)
            assert proc.returncode == 0, proc.stderr
        cfg.write_text(render(TEMPLATE, fronts + frontends("missing"), SETTINGS))
        proc = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
        assert proc.returncode != 0
        assert "ovnmeta-missing" in proc.stderr
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "del", n])
