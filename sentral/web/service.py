"""The web service: aiohttp on the SIP engine's own event loop.

Theory of operation. ``serve --web HOST:PORT`` starts an ``aiohttp`` application inside
``Server.run`` with ``AppRunner``/``TCPSite``, on the same loop as the SIP transports, so that a
handler reads the running call model directly (``server.endpoint``) and a later web leg of a call
is a leg like any other. Nothing a handler does may block the loop: database reads and writes go
to a worker thread (``asyncio.to_thread``).

HTTPS needs ``--web-cert``/``--web-key``; plain HTTP is served only on a loopback address (a
reverse proxy on the same host, or tests), because session cookies and tokens would otherwise
cross the network in clear.

Every answer is JSON, errors included: ``{"error": "one sentence"}``. The error middleware maps
unknown routes to 404, wrong methods to 405 (with ``Allow``), bodies over ``MAX_BODY`` to 413 and
malformed JSON to 400, and turns anything unexpected into a 500 whose body says nothing of the
server's insides; the traceback goes to the log only. The auth middleware (``sentral.web.auth``)
puts the request's ``Principal`` (or None) in ``request["principal"]``.

Other modules mount their routes with ``WebService.add_routes``; every route is listed in the
OpenAPI document at ``/api/openapi.json``, described by the fragment given with ``documented`` or
``register_openapi`` (the handler's docstring is the summary when none is given).
"""

from __future__ import annotations

import ipaddress
import json
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from aiohttp import web

if TYPE_CHECKING:
    from sentral.app import Server
    from sentral.pbx.guard import GuardPolicy
    from sentral.web.auth import Authenticator

log = structlog.get_logger("sentral.web")

MAX_BODY = 64 * 1024
"""The largest request body taken, in bytes; larger ones get 413."""
API_TITLE = "Sentral web API"
API_VERSION = "1"

SERVER_KEY: web.AppKey[Server] = web.AppKey("server")
"""``request.app[SERVER_KEY]``: the running ``sentral.app.Server``."""
SERVICE_KEY: web.AppKey[WebService] = web.AppKey("service")
"""``request.app[SERVICE_KEY]``: the ``WebService`` itself."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Any])

_OPENAPI_ATTRIBUTE = "__sentral_openapi__"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class WebSpecError(ValueError):
    """A --web setting the operator has to correct."""


def parse_web_address(spec: str) -> tuple[str, int]:
    """HOST:PORT (``[v6]:PORT`` for IPv6) of the web listener; ``WebSpecError`` with a sentence."""
    host, sep, port_text = spec.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise WebSpecError(f"--web {spec!r}: give HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (plain HTTP is allowed there)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_web_settings(web_address: str, cert: str | None, key: str | None) -> tuple[str, int]:
    """The listener's host and port, refusing what cannot be served safely; ``WebSpecError``."""
    host, port = parse_web_address(web_address)
    if bool(cert) != bool(key):
        raise WebSpecError("HTTPS needs both --web-cert FILE and --web-key FILE")
    if not cert and not is_loopback(host):
        raise WebSpecError(
            f"--web {web_address}: plain HTTP is served on a loopback address only; "
            "give --web-cert and --web-key for HTTPS, or listen on 127.0.0.1"
        )
    return host, port


class ApiError(Exception):
    """An answer other than success, with the sentence that tells the client what to fix."""

    def __init__(self, status: int, sentence: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence
        self.headers = dict(headers or {})


def error_response(status: int, sentence: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """``{"error": sentence}`` with ``status``."""
    return web.json_response({"error": sentence}, status=status, headers=headers)


def documented(fragment: Mapping[str, Any]) -> Callable[[H], H]:
    """Attach an OpenAPI operation object to a handler, for ``WebService.add_routes``."""

    def attach(handler: H) -> H:
        setattr(handler, _OPENAPI_ATTRIBUTE, dict(fragment))
        return handler

    return attach


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object; ``ApiError`` 400 (or 413) with a sentence otherwise."""
    raw = await request.read()  # 413 from aiohttp past client_max_size
    if not raw:
        raise ApiError(400, "the request needs a JSON object as its body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object, e.g. {\"key\": \"value\"}")
    return body


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes ``{"error": sentence}`` with its status; never a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.sentence, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except Exception:
        log.exception("web_request_failed", method=request.method, route=_route_of(request))
        return error_response(500, "something went wrong inside Sentral; the log says what")


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers: dict[str, str] = {}
    match exc:
        case web.HTTPNotFound():
            sentence = f"there is nothing at {request.path}; see /api/openapi.json for what there is"
        case web.HTTPMethodNotAllowed():
            allowed = sorted(exc.allowed_methods)
            headers["Allow"] = ", ".join(allowed)
            sentence = f"{request.path} does not take {request.method}; it takes {', '.join(allowed)}"
        case web.HTTPRequestEntityTooLarge():
            sentence = f"the request body is too large: at most {MAX_BODY} bytes are taken"
        case _:
            sentence = exc.reason or f"HTTP {exc.status}"
    return error_response(exc.status, sentence, headers)


def _route_of(request: web.Request) -> str:
    """The route's pattern (``/api/staff/{ext}``), never the path with what the client put in it."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "?"


class WebService:
    """The aiohttp application and its listener, inside the running server."""

    def __init__(
        self,
        server: Server,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        guard_policy: GuardPolicy | None = None,
    ) -> None:
        from sentral.web.auth import Authenticator

        self.server = server
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._openapi: dict[str, dict[str, dict[str, Any]]] = {}
        self.auth: Authenticator = Authenticator(server, secure=ssl_context is not None, guard_policy=guard_policy)
        self.app = web.Application(
            middlewares=[error_middleware, self.auth.middleware], client_max_size=MAX_BODY
        )
        self.app[SERVER_KEY] = server
        self.app[SERVICE_KEY] = self
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.add_routes([web.get("/api/openapi.json", self._openapi_document)])
        self.add_routes(self.auth.routes())
        from sentral.web.api import api_routes
        from sentral.web.feed import mount_feed
        from sentral.web.pages import page_routes
        from sentral.web.phone import phone_routes
        from sentral.web.phonebook import phonebook_routes

        self.add_routes(api_routes())
        self.add_routes(phone_routes())
        self.feed = mount_feed(self)
        # The page and the desk phones' phone book are no part of the API: not in the OpenAPI document.
        self.app.router.add_routes(page_routes())
        self.app.router.add_routes(phonebook_routes())

    # -- routes --------------------------------------------------------------------------------

    def add_routes(self, routes: web.RouteTableDef | Iterable[web.AbstractRouteDef]) -> None:
        """Mount ``routes`` and list each in the OpenAPI document (before ``start``)."""
        for route in routes:
            self.app.router.add_routes([route])
            if isinstance(route, web.RouteDef) and route.method.lower() in _METHODS:
                fragment = getattr(route.handler, _OPENAPI_ATTRIBUTE, None)
                if fragment is None:
                    summary = (route.handler.__doc__ or "").strip().splitlines()
                    fragment = {"summary": summary[0] if summary else route.path}
                self.register_openapi(route.path, route.method, fragment)

    def register_openapi(self, path: str, method: str, spec_fragment: Mapping[str, Any]) -> None:
        """Describe ``method`` on ``path`` in the OpenAPI document (an operation object)."""
        operation = dict(spec_fragment)
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_parameters(path)
        ]
        if parameters and "parameters" not in operation:
            operation["parameters"] = parameters
        operation.setdefault("responses", {"200": {"description": "OK"}})
        self._openapi.setdefault(path, {})[method.lower()] = operation

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every route mounted."""
        return {
            "openapi": "3.1.0",
            "info": {"title": API_TITLE, "version": API_VERSION},
            "components": {
                "securitySchemes": {
                    "token": {"type": "http", "scheme": "bearer", "description": "`sentral token add NAME`"},
                    "session": {"type": "apiKey", "in": "cookie", "name": "sentral_session"},
                },
                "schemas": {
                    "Error": {
                        "type": "object",
                        "properties": {"error": {"type": "string"}},
                        "required": ["error"],
                    }
                },
            },
            "security": [{"token": []}, {"session": []}],
            "paths": {path: dict(sorted(ops.items())) for path, ops in sorted(self._openapi.items())},
        }

    async def _openapi_document(self, request: web.Request) -> web.Response:
        """This document."""
        return web.json_response(self.openapi())

    # -- running -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (``OSError`` when the address cannot be had)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=self.ssl_context, reuse_address=True
        )
        try:
            await self._site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise

    @property
    def bound(self) -> str:
        """scheme://HOST:PORT the listener got (the port is chosen when 0 was asked for)."""
        assert self._runner is not None
        scheme = "https" if self.ssl_context is not None else "http"
        for address in self._runner.addresses:
            host, port = address[0], address[1]
            host = f"[{host}]" if ":" in host else host
            return f"{scheme}://{host}:{port}"
        return f"{scheme}://{self.host}:{self.port}"

    def reconfigure(self, guard_policy: GuardPolicy) -> None:
        """New sign-in limits (SIGHUP)."""
        self.auth.guard.reconfigure(guard_policy)

    def poll(self, now: float) -> None:
        """Housekeeping, once a second: lift ended blocks, forget old sessions."""
        self.auth.poll(now)

    async def close(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _path_parameters(path: str) -> list[str]:
    names: list[str] = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            names.append(part[1:-1].split(":", 1)[0])
    return names


__all__ = [
    "MAX_BODY",
    "SERVER_KEY",
    "SERVICE_KEY",
    "ApiError",
    "WebService",
    "WebSpecError",
    "check_web_settings",
    "documented",
    "error_response",
    "is_loopback",
    "json_body",
    "parse_web_address",
]
