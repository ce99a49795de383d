"""Dialogs (RFC 3261 §12) for a back-to-back user agent.

Theory of operation: a B2BUA is the UAS of the call leg towards the caller and the UAC of the leg
towards the callee, so it holds one ``Dialog`` per leg. ``Dialog.as_uas`` builds the caller's
dialog from the INVITE received and the 1xx-with-tag or 2xx sent back; ``Dialog.as_uac`` builds
the callee's dialog from the INVITE sent and a 1xx-with-tag or 2xx received. A forking proxy
behind the callee may answer one INVITE from several endpoints, each with its own To tag: each
tag is its own early dialog, and ``ForkedDialogs`` keeps them apart until one confirms.

A dialog holds exactly the state §12 names: Call-ID, local and remote tag, local and remote URI,
local CSeq counter, highest remote CSeq seen, remote target (the peer's Contact), the route set
(Record-Route as received on the UAS side, reversed on the UAC side) and the secure flag. It
builds every request sent inside it (``request``, ``ack_for``), checks every request received
inside it (``receive_request``), and moves Early -> Confirmed -> Terminated on the responses
that go by (``receive_response`` for responses received, ``response_sent`` for responses sent).

Dialogs build and check messages; transactions carry them. Nothing here retransmits, picks a
Via branch or knows a socket: the caller hands in the Via it wants on each request, and reads
``next_hop`` to know where the request goes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.headers import NameAddr, header_key, parse_name_addr
from sentral.pbx.sip.message import Field, Message, Request, Response
from sentral.pbx.sip.uri import Uri

MAX_FORWARDS = 70
_MAX_FORWARDS_TEXT = str(MAX_FORWARDS)
# RFC 3261 §8.1.1.5: a CSeq number is below 2**31, so the counter stops short of it.
MAX_CSEQ = 2**31 - 1
# Requests whose Contact replaces the remote target (RFC 3261 §12.2, RFC 3311, RFC 6665 §4.1).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


class DialogState(Enum):
    """RFC 3261 §12: a dialog is early until a 2xx, confirmed after it, terminated at the end."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogKey(NamedTuple):
    """The dialog ID seen from our side: Call-ID, local tag, remote tag (a missing tag is "")."""

    call_id: str
    local_tag: str
    remote_tag: str


class DialogError(Exception):
    """A request the dialog cannot build in its present state (a caller's mistake, not input)."""


def dialog_key(msg: Message, *, uas: bool) -> DialogKey:
    """The key of the dialog ``msg`` belongs to.

    ``uas`` is True when the To side of ``msg`` is us: a request we received or a response we
    send. It is False for a request we send or a response we received. A missing tag is kept as
    "" so that a request from an RFC 2543 peer still finds its dialog.
    """
    from_tag = msg.from_tag or ""
    to_tag = msg.to_tag or ""
    if uas:
        return DialogKey(msg.call_id, to_tag, from_tag)
    return DialogKey(msg.call_id, from_tag, to_tag)


def _single_contact(msg: Message, *, required: bool) -> Uri | None:
    """The one Contact URI of a dialog-forming or target-refresh message (RFC 3261 §8.1.1.8)."""
    contacts = msg.contacts
    if not contacts:
        if required:
            raise SipError(400, "Missing Contact")
        return None
    if len(contacts) > 1:
        raise SipError(400, "More than one Contact")
    return contacts[0].uri


@dataclass(slots=True, eq=False, init=False)
class Dialog:
    """One dialog's state (RFC 3261 §12.1). Mutable: it moves as requests and responses pass."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    local_seq: int | None
    remote_seq: int | None
    remote_target: Uri
    route_set: tuple[NameAddr, ...]
    secure: bool
    local_contact: NameAddr
    state: DialogState
    is_uac: bool
    # CSeq number of the latest INVITE we sent in this dialog: an ACK for a 2xx or a CANCEL
    # reuses it. For a UAS-side dialog it stays None until we send a re-INVITE.
    invite_seq: int | None
    # CSeq number of the INVITE that created the dialog, to tell its responses from those
    # of later re-INVITEs.
    initial_seq: int
    # From, To and Contact of the requests we send, formatted on first use (``_build``).
    _texts: tuple[str, str, str] | None = field(default=None, init=False, repr=False)

    def __init__(
        self,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: NameAddr,
        remote_uri: NameAddr,
        local_seq: int | None,
        remote_seq: int | None,
        remote_target: Uri,
        route_set: tuple[NameAddr, ...],
        secure: bool,
        local_contact: NameAddr,
        state: DialogState,
        is_uac: bool,
        invite_seq: int | None,
        initial_seq: int,
    ) -> None:
        # Spelled out: compiled, the __init__ @dataclass generates would run interpreted.
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.remote_target = remote_target
        self.route_set = route_set
        self.secure = secure
        self.local_contact = local_contact
        self.state = state
        self.is_uac = is_uac
        self.invite_seq = invite_seq
        self.initial_seq = initial_seq
        self._texts = None

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def as_uas(cls, invite: Request, response: Response, local_contact: NameAddr | str) -> Dialog:
        """The dialog we form as UAS by sending ``response`` (a 1xx with a To tag, or a 2xx).

        ``local_contact`` is the Contact we put in that response; re-INVITEs we send carry it.
        """
        if invite.method != "INVITE":
            raise ValueError("a dialog is formed by an INVITE")
        if not 101 <= response.status < 300:
            raise ValueError("only a 101..299 response forms a dialog")
        local_tag = response.to_tag
        if not local_tag:
            raise ValueError("a dialog-forming response needs a To tag")
        target = _single_contact(invite, required=True)
        assert target is not None
        contact = parse_name_addr(local_contact) if isinstance(local_contact, str) else local_contact
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_tag or "",
            local_uri=invite.to.with_tag(local_tag),
            remote_uri=invite.from_,
            local_seq=None,
            remote_seq=invite.cseq.seq,
            remote_target=target,
            # §12.1.1: the UAS keeps Record-Route in the order received.
            route_set=tuple(invite.name_addrs("record-route")),
            secure=invite.uri.scheme == "sips",
            local_contact=contact,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            is_uac=False,
            invite_seq=None,
            initial_seq=invite.cseq.seq,
        )

    @classmethod
    def as_uac(cls, invite: Request, response: Response) -> Dialog:
        """The dialog we form as UAC when ``response`` (a 1xx with a To tag, or a 2xx) arrives.

        A 2xx without a Contact is refused (SipError 400): without a remote target nothing could
        be sent in the dialog, not even the ACK. A 1xx without one is tolerated (some phones
        send 180 bare) and targets the Request-URI until the 2xx brings the real Contact.
        """
        if invite.method != "INVITE":
            raise ValueError("a dialog is formed by an INVITE")
        if not 101 <= response.status < 300:
            raise ValueError("only a 101..299 response forms a dialog")
        remote_tag = response.to_tag
        if not remote_tag:
            raise ValueError("a dialog-forming response needs a To tag")
        if response.call_id != invite.call_id or response.cseq.seq != invite.cseq.seq:
            raise ValueError("the response does not answer this INVITE")
        target = _single_contact(response, required=response.status >= 200)
        contact = _single_contact(invite, required=True)
        assert contact is not None
        return cls(
            call_id=invite.call_id,
            local_tag=invite.from_tag or "",
            remote_tag=remote_tag,
            local_uri=invite.from_,
            remote_uri=response.to,
            local_seq=invite.cseq.seq,
            remote_seq=None,
            remote_target=target if target is not None else invite.uri.without_headers(),
            # §12.1.2: the UAC reverses Record-Route, so the route nearest to it comes first.
            route_set=tuple(reversed(response.name_addrs("record-route"))),
            secure=invite.uri.scheme == "sips",
            local_contact=invite.contacts[0],
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
            is_uac=True,
            invite_seq=invite.cseq.seq,
            initial_seq=invite.cseq.seq,
        )

    # -- identity ----------------------------------------------------------------------------

    @property
    def key(self) -> DialogKey:
        """The dialog ID, as ``dialog_key`` computes it for messages of this dialog."""
        return DialogKey(self.call_id, self.local_tag, self.remote_tag)

    @property
    def next_hop(self) -> Uri:
        """Where requests in this dialog go: the first route, or the remote target."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    def _check_key(self, msg: Message, *, uas: bool) -> bool:
        # ``dialog_key(msg, uas=uas) == self.key`` without building the two keys.
        from_tag = msg.from_tag or ""
        to_tag = msg.to_tag or ""
        if msg.call_id != self.call_id:
            return False
        if uas:
            return to_tag == self.local_tag and from_tag == self.remote_tag
        return from_tag == self.local_tag and to_tag == self.remote_tag

    # -- requests we send --------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self.local_seq
        if seq is None:
            # §12.1.1 leaves the UAS's first number to it; starting low leaves the whole space.
            seq = 1
        elif seq >= MAX_CSEQ:
            # Wrapping would look like an old request to the peer, which must answer 500.
            raise DialogError("local CSeq space exhausted")
        else:
            seq += 1
        self.local_seq = seq
        return seq

    def _route(self) -> tuple[Uri, list[NameAddr]]:
        """The Request-URI and Route values of §12.2.1.1, loose or strict routing."""
        target = self.remote_target.without_headers()
        if not self.route_set:
            return target, []
        first = self.route_set[0]
        if first.uri.has_param("lr"):
            return target, list(self.route_set)
        # A strict router wants itself in the Request-URI; the remote target rides at the
        # end of the Route header so that the route still ends where the dialog does.
        return first.uri.without_headers(), [*self.route_set[1:], NameAddr(uri=target)]

    def request(
        self,
        method: str,
        *,
        via: str,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str | None = None,
    ) -> Request:
        """A request inside this dialog (RFC 3261 §12.2.1.1).

        The CSeq counter goes up by one, except for ACK and CANCEL, which reuse the number of
        the INVITE they belong to. Target refresh requests carry our Contact. ``via`` is the
        complete Via value, branch included. ``content_type`` is added when ``body`` is not
        empty. Sending BYE terminates the dialog.
        """
        method = method.upper()
        if self.state is DialogState.TERMINATED:
            raise DialogError("dialog terminated")
        if method == "BYE" and self.state is DialogState.EARLY and not self.is_uac:
            raise DialogError("the callee must not send BYE on an early dialog (RFC 3261 §15)")
        if method in ("ACK", "CANCEL"):
            if self.invite_seq is None:
                raise DialogError(f"no INVITE to {method.lower()} in this dialog")
            seq = self.invite_seq
        else:
            seq = self._next_seq()
            if method == "INVITE":
                self.invite_seq = seq
        req = self._build(method, seq, via=via, body=body, headers=headers, content_type=content_type)
        if method == "BYE":
            self.state = DialogState.TERMINATED
        return req

    def ack_for(
        self,
        response: Response,
        via: str,
        *,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str | None = None,
    ) -> Request:
        """The ACK for a 2xx to an INVITE of ours (RFC 3261 §13.2.2.4).

        It is end to end: a new transaction (``via`` carries a fresh branch) with the CSeq
        number of the INVITE and the method ACK. Feed the 2xx to ``receive_response`` first,
        so that the route set and target it brings are the ones used.
        """
        if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
            raise ValueError("only a 2xx to an INVITE is acknowledged end to end")
        if not self._check_key(response, uas=False):
            raise ValueError("the response belongs to another dialog")
        return self._build(
            "ACK", response.cseq.seq, via=via, body=body, headers=headers, content_type=content_type
        )

    def _build(
        self,
        method: str,
        seq: int,
        *,
        via: str,
        body: bytes,
        headers: Iterable[tuple[str, str]],
        content_type: str | None,
    ) -> Request:
        uri, routes = self._route()
        texts = self._texts
        if texts is None:
            # From, To and Contact never change in a dialog: formatted once, on its first request.
            to = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
            texts = self._texts = (
                str(self.local_uri.with_tag(self.local_tag)),
                str(to),
                str(self.local_contact),
            )
        fields: list[Field] = [("via", "Via", via), ("max-forwards", "Max-Forwards", _MAX_FORWARDS_TEXT)]
        fields.extend([("route", "Route", str(route)) for route in routes])
        fields.append(("from", "From", texts[0]))
        fields.append(("to", "To", texts[1]))
        fields.append(("call-id", "Call-ID", self.call_id))
        fields.append(("cseq", "CSeq", f"{seq} {method}"))
        if method in TARGET_REFRESH:
            fields.append(("contact", "Contact", texts[2]))
        fields.extend([(header_key(name), name, value) for name, value in headers])
        if body and content_type:
            fields.append(("content-type", "Content-Type", content_type))
        return Request(method, uri, fields, body)

    # -- requests we receive -----------------------------------------------------------------

    def receive_request(self, request: Request) -> None:
        """Check a request received in this dialog and update the dialog (RFC 3261 §12.2.2).

        Raises SipError 481 when the dialog is gone or the request is not of it, 500 when its
        CSeq is not above the highest one seen (ACK and CANCEL reuse their INVITE's number and
        are exempt), 400 for a target refresh with several Contacts. A target refresh with a
        Contact moves the remote target; a BYE terminates the dialog.
        """
        if not self._check_key(request, uas=True):
            raise SipError(481, "Dialog Does Not Exist")
        if self.state is DialogState.TERMINATED:
            raise SipError(481, "Dialog Terminated")
        method = request.method
        if method in ("ACK", "CANCEL"):
            return
        seq = request.cseq.seq
        if self.remote_seq is not None and seq <= self.remote_seq:
            raise SipError(500, "CSeq Out of Order")
        if method in TARGET_REFRESH:
            target = _single_contact(request, required=False)
            if target is not None:
                self.remote_target = target
        self.remote_seq = seq
        if method == "BYE":
            self.state = DialogState.TERMINATED

    # -- responses ---------------------------------------------------------------------------

    def receive_response(self, response: Response) -> None:
        """Update the dialog from a response to a request we sent in it (RFC 3261 §12.2.1.2).

        A 2xx to the INVITE that formed an early dialog confirms it; on the UAC side the route
        set is recomputed from that 2xx and its Contact (required: SipError 400) becomes the
        remote target. A 2xx to a target refresh moves the remote target. A final error to the
        initial INVITE ends the early dialog; 481 and 408 end any dialog.
        """
        if not self._check_key(response, uas=False):
            raise ValueError("the response belongs to another dialog")
        status = response.status
        method = response.cseq.method
        initial = method == "INVITE" and response.cseq.seq == self.initial_seq and self.is_uac
        if status < 200:
            return
        if status >= 300:
            if status in (408, 481) or (initial and self.state is DialogState.EARLY):
                self.state = DialogState.TERMINATED
            return
        if self.state is DialogState.TERMINATED:
            return
        if initial and self.state is DialogState.EARLY:
            target = _single_contact(response, required=True)
            assert target is not None
            self.remote_target = target
            self.route_set = tuple(reversed(response.name_addrs("record-route")))
            self.state = DialogState.CONFIRMED
            return
        if method in TARGET_REFRESH:
            target = _single_contact(response, required=method == "INVITE")
            if target is not None:
                self.remote_target = target

    def response_sent(self, response: Response) -> None:
        """Update a UAS-side dialog from a response we send to the INVITE that formed it."""
        if self.is_uac or response.cseq.method != "INVITE" or response.cseq.seq != self.initial_seq:
            return
        if self.state is not DialogState.EARLY:
            return
        if 200 <= response.status < 300:
            self.state = DialogState.CONFIRMED
        elif response.status >= 300:
            self.state = DialogState.TERMINATED

    def terminate(self) -> None:
        """End the dialog (a transaction timed out, the call was torn down out of band)."""
        self.state = DialogState.TERMINATED


class ForkedDialogs:
    """The dialogs one outgoing INVITE forms: one per To tag, since a forking proxy may let
    several endpoints answer (RFC 3261 §12.1.2, §13.2.2.4)."""

    def __init__(self, invite: Request) -> None:
        self.invite = invite
        self._dialogs: dict[str, Dialog] = {}

    def receive(self, response: Response) -> Dialog | None:
        """Feed a response to the INVITE; return the dialog it belongs to, if it forms one.

        A 100 or a response without a To tag forms no dialog. A final error ends every early
        dialog. A 2xx from a tag not seen before forms a confirmed dialog directly: the
        caller must ACK it, and BYE it if another fork already won the call.
        """
        if response.cseq.method != "INVITE" or response.cseq.seq != self.invite.cseq.seq:
            raise ValueError("the response does not answer this INVITE")
        if response.status >= 300:
            for dialog in self._dialogs.values():
                if dialog.state is DialogState.EARLY:
                    dialog.terminate()
            return None
        tag = response.to_tag
        if response.status == 100 or not tag:
            return None
        known = self._dialogs.get(tag)
        if known is None:
            dialog = self._dialogs[tag] = Dialog.as_uac(self.invite, response)
            return dialog
        known.receive_response(response)
        return known

    def get(self, remote_tag: str) -> Dialog | None:
        """The dialog formed with the endpoint whose To tag is ``remote_tag``."""
        return self._dialogs.get(remote_tag)

    @property
    def dialogs(self) -> list[Dialog]:
        """Every dialog formed so far, in the order the forks answered."""
        return list(self._dialogs.values())

    @property
    def early(self) -> list[Dialog]:
        """The dialogs still early."""
        return [d for d in self._dialogs.values() if d.state is DialogState.EARLY]

    @property
    def confirmed(self) -> list[Dialog]:
        """The dialogs a 2xx confirmed."""
        return [d for d in self._dialogs.values() if d.state is DialogState.CONFIRMED]

    def settle(self) -> list[Dialog]:
        """End the early dialogs still waiting; call when the INVITE transaction is over (no more
        2xx can arrive, §13.2.2.4). Returns the dialogs ended."""
        ended = self.early
        for dialog in ended:
            dialog.terminate()
        return ended
