"""Small pieces of the RFC 3261 §25 grammar that URIs and header fields share.

Theory of operation: header values are kept as text until someone asks for them. These helpers
cut that text apart only as far as the caller needs: a list at its top-level commas, a value at
its parameters, a quoted string at its closing quote. Each runs a fast path (``str.split`` when
no quote or angle bracket is present) before falling back to a character scan, because the
common message has no quotes outside display names.
"""

from __future__ import annotations

import re

from sentral.pbx.sip.errors import SipError

TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
WS = " \t"
TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")

Params = tuple[tuple[str, str | None], ...]
# Parameter names seen in almost every message, already in canonical form: no need to re-check.
_COMMON_PARAMS = frozenset(
    ["branch", "rport", "received", "tag", "transport", "lr", "expires", "q", "maddr", "ttl", "user", "method", "reg-id", "ob"]
)


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 token."""
    return TOKEN_RE.match(text) is not None


def split_commas(value: str) -> list[str]:
    """Split a header value at top-level commas (not inside quotes or angle brackets)."""
    if '"' not in value:
        if "<" not in value:
            return [part.strip() for part in value.split(",") if part.strip()]
        return _split_commas_unquoted(value)
    parts: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == "," and not in_angle:
            part = value[start:i].strip()
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    if in_quote:
        raise SipError(400, "Unterminated quoted string")
    if in_angle:
        raise SipError(400, "Unterminated angle bracket")
    part = value[start:].strip()
    if part:
        parts.append(part)
    return parts


def _split_commas_unquoted(value: str) -> list[str]:
    # Without quotes, whether a position is inside angle brackets depends only on the last "<" or
    # ">" before it; so the value is cut at every comma and the pieces that fall inside brackets
    # are joined back, with str.split and rfind doing the scanning in C.
    if "," not in value:
        if value.rfind("<") > value.rfind(">"):
            raise SipError(400, "Unterminated angle bracket")
        part = value.strip()
        return [part] if part else []
    parts: list[str] = []
    pending: list[str] = []
    in_angle = False
    for piece in value.split(","):
        pending.append(piece)
        opened = piece.rfind("<")
        closed = piece.rfind(">")
        if opened > closed:
            in_angle = True
        elif closed > opened:
            in_angle = False
        if not in_angle:
            part = (pending[0] if len(pending) == 1 else ",".join(pending)).strip()
            if part:
                parts.append(part)
            pending = []
    if in_angle:
        raise SipError(400, "Unterminated angle bracket")
    return parts


def read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted string opening at ``text[start]``; return its unescaped content and the
    index just past the closing quote."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise SipError(400, "Unterminated quoted string")


def quote(text: str) -> str:
    """Quote ``text`` as a quoted-string, escaping backslashes and quotes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str) -> Params:
    """Parse ``;name=value;flag`` (the leading semicolon optional) into (name, value) pairs.

    Names are lower-cased (parameter names are case-insensitive); values keep their case and,
    when quoted, keep their quotes so that they serialize back as they came.
    """
    if not text:
        return ()
    if '"' not in text:
        out: list[tuple[str, str | None]] = []
        for raw in text.split(";"):
            name, eq, val = raw.partition("=")
            if name in _COMMON_PARAMS:
                out.append((name, val.strip() if eq else None))
                continue
            name = name.strip().lower()
            if TOKEN_RE.match(name) is None:
                if name or eq:
                    raise SipError(400, "Bad parameter name")
                if raw.strip():
                    raise SipError(400, "Empty parameter name")
                continue
            out.append((name, val.strip() if eq else None))
        return tuple(out)
    return _parse_params_quoted(text)


def _parse_params_quoted(text: str) -> Params:
    out: list[tuple[str, str | None]] = []
    i = 0
    n = len(text)
    while i < n:
        while i < n and (text[i] in WS or text[i] == ";"):
            i += 1
        if i >= n:
            break
        j = i
        while j < n and text[j] not in "=;" + WS:
            j += 1
        name = text[i:j].lower()
        if not is_token(name):
            raise SipError(400, "Bad parameter name")
        while j < n and text[j] in WS:
            j += 1
        if j < n and text[j] == "=":
            j += 1
            while j < n and text[j] in WS:
                j += 1
            if j < n and text[j] == '"':
                _, end = read_quoted(text, j)
                val = text[j:end]
                j = end
            else:
                k = j
                while k < n and text[k] != ";":
                    k += 1
                val = text[j:k].strip()
                j = k
            out.append((name, val))
        else:
            out.append((name, None))
        while j < n and text[j] in WS:
            j += 1
        if j < n and text[j] != ";":
            raise SipError(400, "Junk after parameter")
        i = j
    return tuple(out)


def param(params: Params, name: str) -> str | None:
    """The value of parameter ``name`` (already lower-case), or None if absent or valueless."""
    for key, value in params:
        if key == name:
            return value
    return None


def has_param(params: Params, name: str) -> bool:
    """True if parameter ``name`` is present, with or without a value."""
    # A list comprehension rather than any(): no generator to create on this hot path.
    return name in [key for key, _ in params]


def format_params(params: Params) -> str:
    """Serialize parameters with their leading semicolons."""
    return "".join([f";{k}={v}" if v is not None else f";{k}" for k, v in params])


def unquote(value: str) -> str:
    """The content of a parameter value that may be a quoted string."""
    if value.startswith('"'):
        return read_quoted(value, 0)[0]
    return value
