"""Dialog state documents (RFC 4235 ``application/dialog-info+xml``): what a busy-lamp key reads.

Theory of operation: a notifier for the ``dialog`` event package describes the dialogs of one
entity (an address of record) in a ``<dialog-info>`` document. Each document is numbered: its
``version`` starts at 0 and goes up by one with every document sent on the same subscription, so
a subscriber can tell a lost or reordered one. We always send full state (``state="full"``): one
``<dialog>`` per dialog the entity is in, with its ``<state>``, and none at all when the entity
is idle. A phone lights the key from the states: early (ringing) blinks, confirmed is steady.

Only what a lamp needs is written: the dialog's ``id`` (an opaque key the caller chooses, so that
no Call-ID or tag of another leg leaves the server), its ``direction`` and its state. The
optional ``<local>`` and ``<remote>`` identities are left out on purpose: they would show every
colleague's lamp who is on the line, and the remote party is often a patient.

A ringing dialog also carries its ``call-id``, ``local-tag`` and ``remote-tag`` (``DialogIds``,
RFC 4235 §4.1.1): those of the server's own dialog with the watched phone, the local tag being the
phone's and the remote tag the server's. A busy-lamp key picks the call up with an INVITE carrying
``Replaces: CALL-ID;to-tag=REMOTE-TAG;from-tag=LOCAL-TAG``. They name nothing of the caller's leg.

The text is built directly, with every value escaped: the structure is fixed and small, and
this is on the path of every call's state change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from xml.sax.saxutils import escape, quoteattr

CONTENT_TYPE = "application/dialog-info+xml"
NAMESPACE = "urn:ietf:params:xml:ns:dialog-info"


class DialogInfoState(Enum):
    """The dialog states of RFC 4235 §3.7.1 (a dialog's own view, early before any answer)."""

    TRYING = "trying"
    PROCEEDING = "proceeding"
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogDirection(Enum):
    """Whether the entity placed the call (initiator) or is being called (recipient)."""

    INITIATOR = "initiator"
    RECIPIENT = "recipient"


@dataclass(frozen=True, slots=True)
class DialogIds:
    """A dialog's identifiers as the watched entity sees it (RFC 4235 §4.1.1): ``local_tag`` is its
    phone's tag, ``remote_tag`` the other end's (the server's)."""

    call_id: str
    local_tag: str
    remote_tag: str


@dataclass(frozen=True, slots=True)
class DialogEntry:
    """One ``<dialog>`` element: ``id`` is unique within the document; ``ids``, when given, are
    written as its ``call-id``, ``local-tag`` and ``remote-tag``."""

    id: str
    state: DialogInfoState
    direction: DialogDirection | None = None
    ids: DialogIds | None = None


def dialog_info(entity: str, version: int, dialogs: Iterable[DialogEntry]) -> bytes:
    """A full-state dialog-info document for ``entity`` (a SIP URI), numbered ``version``."""
    if version < 0:
        raise ValueError("a dialog-info version is a non-negative integer")
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<dialog-info xmlns="{NAMESPACE}" version="{version}" state="full" entity={quoteattr(entity)}>\n',
    ]
    for dialog in dialogs:
        direction = f" direction={quoteattr(dialog.direction.value)}" if dialog.direction is not None else ""
        ids = dialog.ids
        if ids is not None:
            direction = (
                f" call-id={quoteattr(ids.call_id)} local-tag={quoteattr(ids.local_tag)}"
                f" remote-tag={quoteattr(ids.remote_tag)}{direction}"
            )
        parts.append(f"  <dialog id={quoteattr(dialog.id)}{direction}>\n")
        parts.append(f"    <state>{escape(dialog.state.value)}</state>\n")
        parts.append("  </dialog>\n")
    parts.append("</dialog-info>\n")
    return "".join(parts).encode("utf-8")


__all__ = [
    "CONTENT_TYPE",
    "NAMESPACE",
    "DialogDirection",
    "DialogEntry",
    "DialogIds",
    "DialogInfoState",
    "dialog_info",
]
