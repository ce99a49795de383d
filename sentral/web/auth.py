"""Who may see what: staff sign-in, sessions, CSRF and API tokens.

Theory of operation. Staff sign in with their extension and SIP password (``POST /api/session``);
the password is checked against the digest HA1 the directory already holds (``H(ext:domain:pw)``),
so there is no second password store. A signed-in member of staff gets a session cookie
(``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS) and a CSRF token, which every unsafe
request made with that cookie must carry in ``X-CSRF-Token``: SameSite keeps other sites' forms
out in current browsers, the token in older ones. Sessions live in memory: a restart signs
everyone out, which a page answers by showing the sign-in again.

A clinic platform uses an API token instead (``Authorization: Bearer ...``, made with
``sentral token add``); only its hash is stored, and it is looked up in a worker thread, with
answers kept for ``TOKEN_CACHE`` seconds so that a busy platform does not query the database at
every request while a removed token still stops working within a second or so.

Either way the request's ``Principal`` names one clinic, and every handler answers for that clinic
only. Failed sign-ins and unknown tokens are logged as ``auth_failed`` on the security log, as SIP
digest failures are (the line fail2ban's filter matches), and counted by a ``Guard`` of their own
with the server's limits (``--auth-failures`` a minute, ``--block-seconds``): a blocked address
gets 429 until its block ends. Passwords and tokens never reach a log line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from sentral.config.tokens import TokenEntry, TokenStore
from sentral.pbx.guard import Guard, GuardAction, GuardPolicy, SecurityEventKind
from sentral.pbx.sip.auth import compute_ha1
from sentral.web.service import ApiError, Handler, documented, json_body

if TYPE_CHECKING:
    from sentral.app import Server

security_log = structlog.get_logger("sentral.security")
log = structlog.get_logger("sentral.web")

SESSION_COOKIE = "sentral_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_IDLE = 8 * 3600.0
"""A session not used for this long ends (a working day)."""
SESSION_MAX = 24 * 3600.0
"""No session lasts longer than this."""
TOKEN_CACHE = 1.0
"""How long a token lookup's answer is kept, in seconds."""
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PRINCIPAL_KEY = "principal"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request speaks for: a clinic, and the member of staff signed in or the token's name."""

    domain: str
    extension: str | None
    token: str | None


@dataclass(slots=True)
class Session:
    """A signed-in member of staff."""

    principal: Principal
    csrf: str
    started: float
    used: float


@dataclass(slots=True)
class _CachedToken:
    entry: TokenEntry | None
    until: float


def principal_of(request: web.Request) -> Principal:
    """The request's principal; 401 with a sentence when it has none."""
    principal: Principal | None = request.get(PRINCIPAL_KEY)
    if principal is None:
        raise ApiError(
            401,
            "sign in first (POST /api/session) or send an API token (Authorization: Bearer ...)",
            {"WWW-Authenticate": 'Bearer realm="sentral"'},
        )
    return principal


def staff_of(request: web.Request) -> Principal:
    """The principal of a request that must come from a signed-in member of staff (403 otherwise)."""
    principal = principal_of(request)
    if principal.extension is None:
        raise ApiError(403, "this needs a signed-in member of staff, not an API token")
    return principal


@dataclass(slots=True)
class Sessions:
    """Sessions by their cookie value."""

    by_id: dict[str, Session] = field(default_factory=dict)

    def open(self, principal: Principal, now: float) -> tuple[str, Session]:
        """A new session for ``principal``: its cookie value and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(32), now, now)
        self.by_id[session_id] = session
        return session_id, session

    def get(self, session_id: str, now: float) -> Session | None:
        """The live session of ``session_id``; an ended one is forgotten."""
        session = self.by_id.get(session_id)
        if session is None:
            return None
        if now - session.used > SESSION_IDLE or now - session.started > SESSION_MAX:
            del self.by_id[session_id]
            return None
        session.used = now
        return session

    def close(self, session_id: str) -> None:
        """Sign out."""
        self.by_id.pop(session_id, None)

    def sweep(self, now: float) -> None:
        """Forget the sessions that have ended."""
        ended = [
            key
            for key, session in self.by_id.items()
            if now - session.used > SESSION_IDLE or now - session.started > SESSION_MAX
        ]
        for key in ended:
            del self.by_id[key]


class Authenticator:
    """Sign-in, sessions and tokens for one web service."""

    def __init__(self, server: Server, *, secure: bool, guard_policy: GuardPolicy | None = None) -> None:
        self.server = server
        self.secure = secure
        self.sessions = Sessions()
        self.guard = Guard(guard_policy)
        self.tokens = TokenStore(server.engine)
        self._token_cache: dict[str, _CachedToken] = {}

    # -- the middleware -----------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Find the request's principal; refuse unsafe cookie requests without the CSRF token."""
        request[PRINCIPAL_KEY] = None
        authorization = request.headers.get("Authorization")
        if authorization is not None and authorization[:6].lower() == "basic ":
            pass  # a desk phone's credentials: the routes that take them check them (``basic_staff``)
        elif authorization is not None:
            request[PRINCIPAL_KEY] = await self._bearer(request, authorization)
        else:
            session_id = request.cookies.get(SESSION_COOKIE)
            session = self.sessions.get(session_id, time.monotonic()) if session_id else None
            if session is not None and not self._still_staff(session.principal):
                assert session_id is not None
                self.sessions.close(session_id)
                session = None
            if session is not None:
                if request.method in UNSAFE_METHODS and not hmac.compare_digest(
                    request.headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()
                ):
                    raise ApiError(
                        403, f"this request needs the {CSRF_HEADER} header with the token sign-in gave"
                    )
                request[PRINCIPAL_KEY] = session.principal
        return await handler(request)

    async def _bearer(self, request: web.Request, authorization: str) -> Principal:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "the Authorization header must be 'Bearer TOKEN'")
        host = request.remote or "?"
        now = time.monotonic()
        if self.guard.check(host, now) is GuardAction.BLOCK:
            raise ApiError(429, "too many failed attempts from your address; try again later")
        entry = await self._token(token, now)
        if entry is None:
            self._failed(request, None, "unknown API token")
            raise ApiError(401, "that API token is not known; make one with `sentral token add NAME`")
        return Principal(entry.domain, None, entry.name)

    async def _token(self, token: str, now: float) -> TokenEntry | None:
        cached = self._token_cache.get(token)
        if cached is not None and now < cached.until:
            return cached.entry
        entry = await asyncio.to_thread(self.tokens.find, token)
        if len(self._token_cache) > 1000:
            self._token_cache.clear()  # unknown tokens must not grow it without bound
        self._token_cache[token] = _CachedToken(entry, now + TOKEN_CACHE)
        return entry

    def _still_staff(self, principal: Principal) -> bool:
        """A session ends when its member of staff is removed."""
        assert principal.extension is not None
        return self.server.directory().staff_for(principal.domain, principal.extension) is not None

    # -- sign-in -------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """``/api/session``: sign in, who am I, sign out."""
        return [
            web.post("/api/session", self.sign_in),
            web.get("/api/session", self.who),
            web.delete("/api/session", self.sign_out),
        ]

    @documented(
        {
            "summary": "Sign in with extension and SIP password",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["extension", "password"],
                            "properties": {
                                "extension": {"type": "string"},
                                "password": {"type": "string"},
                                "domain": {"type": "string", "description": "the clinic; optional with one clinic"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "signed in; the session cookie is set, csrf_token returned"},
                "401": {"description": "wrong extension or password"},
                "429": {"description": "too many failed sign-ins from this address"},
            },
        }
    )
    async def sign_in(self, request: web.Request) -> web.Response:
        """Sign in with extension and SIP password."""
        host = request.remote or "?"
        now = time.monotonic()
        if self.guard.check(host, now) is GuardAction.BLOCK:
            raise ApiError(429, "too many failed sign-ins from your address; try again later")
        body = await json_body(request)
        extension, password, domain = body.get("extension"), body.get("password"), body.get("domain")
        if not isinstance(extension, str) or not extension.strip():
            raise ApiError(400, "give your extension as a string, e.g. {\"extension\": \"1001\", ...}")
        if not isinstance(password, str) or not password:
            raise ApiError(400, "give your SIP password as a string in \"password\"")
        if domain is not None and not isinstance(domain, str):
            raise ApiError(400, "\"domain\" must be a string naming the clinic")
        extension = extension.strip()
        directory = self.server.directory()
        if domain is None:
            if len(directory.clinics) != 1:
                raise ApiError(400, "this server has several clinics: give \"domain\" too")
            domain = next(iter(directory.clinics))
        domain = domain.strip().lower()
        staff = directory.staff_for(domain, extension)
        if staff is None or not _password_matches(staff.ha1_sha256, staff.ha1_md5, extension, domain, password):
            self._failed(request, extension, "unknown extension" if staff is None else "wrong password")
            raise ApiError(401, "wrong extension or password")
        principal = Principal(domain, extension, None)
        session_id, session = self.sessions.open(principal, now)
        log.info("web_signed_in", domain=domain, extension=extension, remote=host)
        response = web.json_response(_session_json(principal, session.csrf))
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            httponly=True,
            secure=self.secure,
            samesite="Strict",
            path="/",
        )
        return response

    @documented(
        {
            "summary": "Who the request speaks for (and the session's CSRF token)",
            "responses": {"200": {"description": "domain, extension, token name, csrf_token"}},
        }
    )
    async def who(self, request: web.Request) -> web.Response:
        """Who the request speaks for."""
        principal = principal_of(request)
        csrf = None
        session_id = request.cookies.get(SESSION_COOKIE)
        if principal.extension is not None and session_id:
            session = self.sessions.get(session_id, time.monotonic())
            csrf = session.csrf if session is not None else None
        return web.json_response(_session_json(principal, csrf))

    @documented({"summary": "Sign out", "responses": {"200": {"description": "signed out"}}})
    async def sign_out(self, request: web.Request) -> web.Response:
        """Sign out."""
        principal_of(request)
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            self.sessions.close(session_id)
        response = web.json_response({"signed_out": True})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    def basic_staff(self, request: web.Request) -> Principal | None:
        """The member of staff whose extension (``1001`` or ``1001@clinic``) and SIP password the
        request's HTTP Basic credentials give, as desk phones send them; None without credentials.

        Wrong credentials are a failed sign-in (logged, counted by the guard) and raise 401.
        """
        authorization = request.headers.get("Authorization", "")
        if authorization[:6].lower() != "basic ":
            return None
        host = request.remote or "?"
        if self.guard.check(host, time.monotonic()) is GuardAction.BLOCK:
            raise ApiError(429, "too many failed sign-ins from your address; try again later")
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "the Basic credentials do not decode") from None
        user, _, password = decoded.partition(":")
        extension, _, domain = user.strip().partition("@")
        directory = self.server.directory()
        if not domain and len(directory.clinics) == 1:
            domain = next(iter(directory.clinics))
        domain = domain.strip().lower()
        staff = directory.staff_for(domain, extension) if domain else None
        if staff is None or not _password_matches(staff.ha1_sha256, staff.ha1_md5, extension, domain, password):
            self._failed(request, extension, "unknown extension" if staff is None else "wrong password")
            raise ApiError(401, "wrong extension or password")
        return Principal(domain, extension, None)

    def _failed(self, request: web.Request, user: str | None, reason: str) -> None:
        """A failed sign-in or unknown token: the security log's auth_failed line, and the guard."""
        host = request.remote or "?"
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        security_log.warning(
            "auth_failed",
            remote=host,
            port=peer[1] if isinstance(peer, tuple) and len(peer) > 1 else None,
            transport="https" if self.secure else "http",
            method="sign-in" if user is not None else "api-token",
            user=user,
            reason=reason,
        )
        self.guard.auth_failed(host, time.monotonic(), reason=f"web {reason}")
        self._log_guard_events()

    def _log_guard_events(self) -> None:
        for event in self.guard.events():
            if event.kind is SecurityEventKind.AUTH_FAILURE:
                continue  # logged as auth_failed already
            security_log.warning(f"security_{event.kind.value}", remote=event.host, reason=event.reason, count=event.count)

    def poll(self, now: float) -> None:
        """Once a second: lift ended blocks and forget ended sessions."""
        self.guard.poll(now)
        self._log_guard_events()
        self.sessions.sweep(now)


def _password_matches(ha1_sha256: str, ha1_md5: str, extension: str, domain: str, password: str) -> bool:
    """Whether ``password`` is the one the stored HA1 was made from (SHA-256 when stored)."""
    if ha1_sha256:
        return hmac.compare_digest(compute_ha1("SHA-256", extension, domain, password), ha1_sha256)
    return bool(ha1_md5) and hmac.compare_digest(compute_ha1("MD5", extension, domain, password), ha1_md5)


def _session_json(principal: Principal, csrf: str | None) -> dict[str, Any]:
    return {
        "domain": principal.domain,
        "extension": principal.extension,
        "token": principal.token,
        "csrf_token": csrf,
    }


__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Authenticator",
    "Principal",
    "Session",
    "Sessions",
    "principal_of",
    "staff_of",
]
