"""The live switchboard page at ``/``: plain HTML, JavaScript and CSS from ``static/``, no build step.

The page signs in through ``/api/session``, reads the state from the REST API, and follows the
event feed (``/api/events``) from then on; what it shows is described in ``static/app.js``. Its
files are served as they are in the package, with a content security policy that allows scripts,
styles and connections to this server only.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).with_name("static")
# Files the page is made of, and their content types: nothing else under static/ is served.
FILES = {
    "app.js": "text/javascript",
    "switchboard.css": "text/css",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def switchboard(request: web.Request) -> web.Response:
    """The switchboard page."""
    return _file("index.html", "text/html")


async def asset(request: web.Request) -> web.Response:
    """A file of the switchboard page."""
    name = request.match_info["name"]
    content_type = FILES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    return _file(name, content_type)


def _file(name: str, content_type: str) -> web.Response:
    return web.Response(
        body=(STATIC / name).read_bytes(),
        content_type=content_type,
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


def page_routes() -> list[web.RouteDef]:
    """The page and its files."""
    return [web.get("/", switchboard), web.get("/static/{name}", asset)]


__all__ = ["page_routes"]
