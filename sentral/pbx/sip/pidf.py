"""Presence documents (RFC 3863 PIDF, ``application/pidf+xml``) for the ``presence`` package.

Theory of operation: a presence document describes one presentity (``entity``, its SIP URI) as
a set of ``<tuple>`` elements, each with a ``<status>`` whose ``<basic>`` is ``open`` (able to
take a call or message) or ``closed``, optionally a ``<contact>`` and human-readable ``<note>``
elements (§4.1). A softswitch knows one thing per extension: whether a phone is there and
switched on, and what it is doing; so one tuple per extension, with a note saying which.

The text is built directly, with every value escaped, as for dialog-info documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from xml.sax.saxutils import escape, quoteattr

CONTENT_TYPE = "application/pidf+xml"
NAMESPACE = "urn:ietf:params:xml:ns:pidf"


class Basic(Enum):
    """RFC 3863 §4.1.4: can the presentity be reached through this tuple?"""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class PresenceTuple:
    """One ``<tuple>``; ``id`` must be an XML ID (start with a letter or underscore)."""

    id: str
    basic: Basic
    contact: str | None = None
    note: str | None = None


def pidf(entity: str, tuples: Iterable[PresenceTuple]) -> bytes:
    """A PIDF document for ``entity`` with ``tuples`` in order."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<presence xmlns="{NAMESPACE}" entity={quoteattr(entity)}>\n',
    ]
    for item in tuples:
        if not item.id or not (item.id[0].isalpha() or item.id[0] == "_"):
            raise ValueError(f"tuple id {item.id!r} is not an XML ID")
        parts.append(f"  <tuple id={quoteattr(item.id)}>\n")
        # §4.1.2: status first, then contact, then notes, in this order.
        parts.append(f"    <status><basic>{item.basic.value}</basic></status>\n")
        if item.contact is not None:
            parts.append(f"    <contact>{escape(item.contact)}</contact>\n")
        if item.note is not None:
            parts.append(f"    <note>{escape(item.note)}</note>\n")
        parts.append("  </tuple>\n")
    parts.append("</presence>\n")
    return "".join(parts).encode("utf-8")


__all__ = ["CONTENT_TYPE", "NAMESPACE", "Basic", "PresenceTuple", "pidf"]
