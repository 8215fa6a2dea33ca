"""Jinja2 templates (autoescaped: every user value is escaped) and the one ``render`` pages call.

Every page gets the services' health for the status bar, and a banner for each service that
failed during this request or is known to be down.

Characters that change how text around them is shown, or show nothing at all (bidi overrides
and isolates, direction marks, zero-width and other invisible characters), could make one
name pass for another. ``reveal`` shows each one as a visible ``⟨U+202E⟩`` in the page's text.
It works on the rendered page rather than on each value so that no place that shows user
text can miss it, while attribute values (a search box's text, a link) keep theirs unchanged.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from cairn import __version__
from cairn.segments import path_segment
from cairn.wording import scalar
from ui import format as fmt
from ui import lineage
from ui.backend import Backend, ServiceDown
from ui.visitor import signed_in

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# Pages are dynamic: a cache asks again before it shows one. Browsers still show a page from
# their cache on Back without asking, so pages read with a visitor's own key are not stored at
# all: after "Sign out", Back must not bring back what that key could read.
NO_CACHE = {"cache-control": "no-cache"}
NO_STORE = {"cache-control": "no-store"}


# What a copy-ready curl line adds when reads need a key: the variable the CLI and the clients
# read, never the visitor's key itself (a page must not print it).
CURL_KEY = '-H "authorization: Bearer $CAIRN_API_KEY" '


def curl_key(request: Request) -> str:
    """The curl option that sends a key, when this UI's reads need one; else nothing."""
    backend: Backend = request.app.state.backend
    return CURL_KEY if backend.keys_needed else ""


def page_cache(request: Request) -> dict[str, str]:
    """The cache header of a page: not stored when reads need each visitor's key."""
    backend: Backend = request.app.state.backend
    return NO_STORE if backend.keys_needed else NO_CACHE


@cache
def static_version() -> str:
    """A fingerprint of the static files, so browsers may cache them for long."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.glob("*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _finalize(value: Any) -> Any:
    """Control characters never reach the page (a NUL in a URL is still shown, as nothing)."""
    if isinstance(value, Markup):
        return Markup(_CONTROL.sub("", value)) if _CONTROL.search(value) else value
    if isinstance(value, str) and _CONTROL.search(value):
        return _CONTROL.sub("", value)
    return value


# Bidi embeddings, overrides and isolates, direction marks (LRM, RLM, ALM), zero-width and
# invisible characters (soft hyphen, joiners, word joiner, invisible operators, BOM, fillers)
# and the invisible tag characters.
INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\U000e0000-\U000e007f]"
)
_TAG = re.compile(r"(<[^>]*>)")


def _code(char: str) -> str:
    return f"\u27e8U+{ord(char):04X}\u27e9"


def _shown(match: re.Match[str], element: str = "span") -> str:
    char = match.group(0)
    name = unicodedata.name(char, "invisible character").lower()
    return f'<{element} class="cc" title="{name}">{_code(char)}</{element}>'


def _shown_in_svg(match: re.Match[str]) -> str:
    return _shown(match, "tspan")  # SVG text shows no HTML elements


def reveal(html: str) -> str:
    """``html`` with every invisible or direction-changing character in its text made visible.

    Tags are left alone: user values in them are escaped (no raw ``>``), so splitting on tags
    finds every text run. A ``<title>`` shows text only, so there the code goes in bare.
    """
    if not INVISIBLE.search(html):
        return html
    out: list[str] = []
    in_title = in_svg = False
    for part in _TAG.split(html):
        if part.startswith("<"):
            name = part[1:].split(None, 1)[0].rstrip("/>").lower() if len(part) > 2 else ""
            if name in ("title", "/title"):
                in_title = name == "title"
            elif name in ("svg", "/svg"):
                in_svg = name == "svg"
            out.append(part)
        elif in_title:
            out.append(INVISIBLE.sub(lambda m: _code(m.group(0)), part))
        else:
            out.append(INVISIBLE.sub(_shown_in_svg if in_svg else _shown, part))
    return "".join(out)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        finalize=_finalize,
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(
        highlight=fmt.highlight,
        snippet=fmt.snippet,
        size=fmt.size,
        when=fmt.when,
        ago=fmt.ago,
        number=fmt.number,
        counted=fmt.counted,
        location=fmt.location,
        scalar=scalar,
        # One path segment: Jinja's urlencode leaves "/" as it is, and a browser resolves a
        # name's "/../" (or a name ".." itself) before it asks, landing on another page.
        segment=lambda value: path_segment(str(value)),
    )
    env.globals.update(
        cairn_version=__version__,
        static_version=static_version(),
        node_w=lineage.NODE_W,
        node_h=lineage.NODE_H,
    )
    return env


def note_down(request: Request, error: ServiceDown) -> None:
    """Remembers that a service failed during this request, for the banner."""
    failures: list[ServiceDown] = getattr(request.state, "down", [])
    if all(f.service != error.service for f in failures):
        failures.append(error)
    request.state.down = failures


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    env: jinja2.Environment = request.app.state.templates
    backend: Backend = request.app.state.backend
    health = backend.health()
    failures: list[ServiceDown] = getattr(request.state, "down", [])
    failed = {f.service for f in failures}
    banners = [
        {"label": f.label, "url": f.url, "reason": f.reason, "service": f.service} for f in failures
    ]
    banners += [
        {"label": h.label, "url": h.url, "reason": h.detail, "service": h.name}
        for h in health
        if h.ok is False and h.name not in failed
    ]
    html = env.get_template(template).render(
        {
            "request": request,
            "path": request.url.path,
            "health": health,
            "banners": banners,
            "signed_in": signed_in(request),
            **context,
        }
    )
    return HTMLResponse(
        reveal(html), status_code=status_code, headers={**page_cache(request), **(headers or {})}
    )
