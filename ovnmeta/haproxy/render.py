"""haproxy's config text from the jinja2 templates in `templates/`. Pure."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2

from ovnmeta.core.memo import Generational
from ovnmeta.core.model import Frontend
from ovnmeta.haproxy.settings import ERROR_FILES, MAPS_DIR, Settings, error_file, map_path

BUNDLED_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
INSTALLED_TEMPLATES = Path(os.sys.prefix) / "share" / "ovnmeta" / "templates"


def templates_dir(configured: str = "") -> Path:
    for candidate in (configured, BUNDLED_TEMPLATES, INSTALLED_TEMPLATES):
        if candidate and (Path(candidate) / "haproxy.cfg.j2").exists():
            return Path(candidate)
    raise FileNotFoundError("haproxy templates not found; set [haproxy] templates_dir")


def renderer(directory: Path) -> jinja2.Template:
    # Templates are read once: the agent does not pick up edits without a restart, and a
    # render does not stat the files again.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(directory)),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, auto_reload=False)
    return env.get_template("haproxy.cfg.j2")


def _frontend_text(template: jinja2.Template, frontend: Frontend, settings: Settings,
                   map_file: str) -> str:
    return template.environment.get_template("frontend.cfg.j2").render(
        f=frontend, maps={frontend.network_id: map_file}, **settings.__dict__)


# One frontend's text, rendered once while it is configured: a network coming or going
# renders only its own (all of them took 7-30 ms at 200 networks, on the way to a listener).
_frontend = Generational(_frontend_text)


def render(template: jinja2.Template, frontends: list[Frontend], settings: Settings,
           stats_socket: str = "", state_dir: Path | str = "") -> str:
    """The config text; with settings.direct, `state_dir` holds the maps and error files."""
    ordered = sorted(frontends, key=lambda f: f.network_id)
    values = dict(settings.__dict__)
    if len(frontends) == 1:  # a per-network process needs no more than its frontend
        values["global_maxconn"] = min(settings.global_maxconn, settings.maxconn)
    maps_dir = str(Path(state_dir) / MAPS_DIR)
    maps = {f.network_id: map_path(maps_dir, f.network_id) for f in ordered}
    # Rendered only if the template asks (one in [haproxy] templates_dir may loop over
    # `frontends` itself).
    texts = (_frontend(template, f, settings, maps[f.network_id]) for f in ordered)
    errors = {code: str(error_file(state_dir, code)) for code in ERROR_FILES}
    return template.render(frontends=ordered, frontend_texts=texts, stats_socket=stats_socket,
                           maps=maps, error_files=errors, **values)



def frontends_only(old: str, new: str) -> bool:
    """The two configs differ in their frontends at most: everything before the first
    frontend (global, defaults, backends) is the same text."""
    marker = "\nfrontend "
    return marker in old and old.split(marker, 1)[0] == new.split(marker, 1)[0]
