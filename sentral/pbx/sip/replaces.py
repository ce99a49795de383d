"""The Replaces header (RFC 3891): which dialog a new INVITE takes the place of.

Theory of operation
-------------------
An INVITE with ``Replaces: CALL-ID;to-tag=T;from-tag=F`` asks the UA holding that dialog to swap
it for the new one: an attended transfer completes that way (the transfer target receives it, or
the transferer asks for it in a REFER's ``Refer-To: <sip:...?Replaces=...>``), and a busy-lamp key
picks up a ringing colleague's call with it. The tags are seen from the recipient's side: the
to-tag is the recipient's own (local) tag of the dialog, the from-tag the other UA's (remote) tag
(RFC 3891 §3). ``early-only`` asks that a confirmed dialog not be replaced (486 then).

``parse_replaces`` reads the header value; ``replaces_of_uri`` reads one embedded, escaped, in a
URI's headers (a Refer-To). Both raise SipError(400) for a value that is not one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.grammar import parse_params
from sentral.pbx.sip.uri import Uri, unescape


@dataclass(frozen=True, slots=True)
class Replaces:
    """A dialog to replace, with its tags as the recipient of the Replaces sees them."""

    call_id: str
    to_tag: str  # the recipient's own tag
    from_tag: str  # the other side's tag
    early_only: bool = False

    def __str__(self) -> str:
        early = ";early-only" if self.early_only else ""
        return f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}{early}"


def parse_replaces(text: str) -> Replaces:
    """Parse a Replaces header value; SipError(400) when it is not one."""
    call_id, sep, rest = text.strip().partition(";")
    call_id = call_id.strip()
    if not call_id or not sep or any(c.isspace() for c in call_id):
        raise SipError(400, "Bad Replaces header")
    try:
        params = dict((key.lower(), value) for key, value in parse_params(";" + rest))
    except SipError:
        raise SipError(400, "Bad Replaces header") from None
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not to_tag or not from_tag:
        raise SipError(400, "Replaces needs to-tag and from-tag")
    return Replaces(call_id, to_tag, from_tag, "early-only" in params)


def replaces_of_uri(uri: Uri) -> Replaces | None:
    """The Replaces a URI carries in its headers (``?Replaces=...``, escaped), or None."""
    values = [value for name, value in uri.headers if unescape(name).lower() == "replaces"]
    if not values:
        return None
    if len(values) > 1:
        raise SipError(400, "Two Replaces in one URI")
    return parse_replaces(unescape(values[0]))


__all__ = ["Replaces", "parse_replaces", "replaces_of_uri"]
