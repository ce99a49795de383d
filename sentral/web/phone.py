"""The browser phone: a signed-in member of staff's page as one of their phones.

Theory of operation. The page opens a WebSocket on ``/api/browser-phone`` and sends a WebRTC
offer (its microphone, all ICE candidates gathered); Sentral answers it with an aiortc peer whose
audio is joined to plain RTP (``sentral.media.webrtc.AudioBridge``). For the call core the browser is then
a phone like any other: a small SIP user agent of Sentral's own registers the member's extension
over loopback UDP with a contact of its own (digest, answered with the HA1 the directory holds:
no password is kept), so the browser rings with the member's other phones, is shown in presence,
follows the reject rule and is anchored by the relay as a desk phone is. What the page asks
(dial, pick up, decline, hang up, hold, transfer, a key) becomes SIP; what SIP says (ringing,
connected, ended) becomes a message to the page.

Messages, JSON objects with a ``type``. From the page: ``offer`` {sdp}, ``dial`` {number},
``pick-up``, ``decline``, ``hang-up``, ``hold``, ``resume``, ``transfer`` {number} (blind) and
``dtmf`` {key} (sent as SIP INFO). To the page: ``sdp`` {sdp} (the answer), ``registered``
{extension}, ``incoming`` {from, name}, ``ringing``, ``connected``, ``held``, ``ended`` {reason}
and ``error`` {error}. One call at a time: a second call while one is up gets 486 Busy Here, and
the member's other phones still ring for it.

The user agent speaks RFC 3261 as far as a phone on loopback needs: requests are retransmitted
on T1 doubling, a 2xx to an INVITE it answered is repeated until the ACK, retransmitted requests
get the last response again, CANCEL ends a ringing call with 487, and a re-INVITE (hold, the relay
moving) is answered with the same media.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import WSMsgType, web

from sentral.pbx.sip import entropy
from sentral.pbx.sip.auth import authorization, choose_challenge
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request, Response, make_response, parse_message
from sentral.pbx.sip.sdp import parse_sdp
from sentral.pbx.sip.transaction import hostport
from sentral.web import BROWSER_PHONE_AGENT
from sentral.web.auth import staff_of
from sentral.web.service import SERVER_KEY, ApiError, documented

if TYPE_CHECKING:
    from sentral.app import Server
    from sentral.media.webrtc import AudioBridge

log = structlog.get_logger("sentral.web")

PHONE_PATH = "/api/browser-phone"
REGISTER_EXPIRES = 120  # seconds asked for; refreshed at half of what is granted
T1 = 0.5
T2 = 4.0
TRANSACTION_TIMEOUT = 32.0  # 64 * T1
MAX_MESSAGE = 65536  # a WebRTC offer with every candidate fits well within this
USER_AGENT = BROWSER_PHONE_AGENT


class PhoneUnavailable(Exception):
    """The browser phone cannot run on this server (no UDP listener, aiortc missing)."""


def _loopback_for(host: str) -> str:
    """Where Sentral's own user agent reaches a listener on ``host``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "127.0.0.1"
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return host


def sip_address(server: Server) -> tuple[str, int]:
    """The UDP listener the browser phones' user agents talk to."""
    for listen in server.transports.bound:
        if listen.transport == "udp":
            return _loopback_for(listen.host), listen.port
    raise PhoneUnavailable("the browser phone needs a UDP SIP listener (serve --listen udp:...)")


def _audio(sdp: bytes) -> tuple[str, int, int] | None:
    """The first audio stream of ``sdp`` Sentral's relay can talk G.711 on: host, port, law."""
    parsed = parse_sdp(sdp)
    for media in parsed.media:
        if media.media != "audio" or media.rejected:
            continue
        connection = parsed.media_connection(media)
        if connection is None:
            continue
        for fmt in media.formats:
            if fmt in ("0", "8"):
                return connection.address, media.port, int(fmt)
    return None


def _direction(sdp: bytes) -> str:
    """The direction our answer takes to an offer in ``sdp`` (RFC 3264 §6.1)."""
    parsed = parse_sdp(sdp)
    for media in parsed.media:
        if media.media == "audio" and not media.rejected:
            offered = parsed.media_direction(media).value
            return {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(
                offered, "sendrecv"
            )
    return "sendrecv"


@dataclass(slots=True)
class _Client:
    """A request of ours waiting for its final response."""

    request: Request
    data: bytes
    done: asyncio.Future[Response]
    on_provisional: Callable[[Response], None] | None
    started: float
    interval: float = T1
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _Call:
    """The one call of a browser phone: its dialog and where it stands."""

    call_id: str
    local_tag: str
    incoming: bool
    state: str  # "ringing" (incoming, not answered), "calling" (outgoing), "answering", "up", "ended"
    remote_uri: str = ""  # the From (incoming) or To (outgoing) as written
    local_uri: str = ""
    remote_tag: str = ""
    target: str = ""  # the peer's Contact: the Request-URI of requests inside the dialog
    local_cseq: int = 1
    invite: Request | None = None  # incoming: the INVITE being answered; outgoing: the one sent
    last_response: bytes = b""
    ok_timer: asyncio.TimerHandle | None = None
    sdp_version: int = 1
    changing: bool = False  # a re-INVITE or REFER of ours awaits its answer


class BrowserPhone(asyncio.DatagramProtocol):
    """One page's phone: its SIP user agent, its WebRTC peer and its WebSocket."""

    def __init__(
        self,
        server: Server,
        domain: str,
        extension: str,
        send_page: Callable[[dict[str, Any]], None],
        bridge: AudioBridge,
    ) -> None:
        self.server = server
        self.domain = domain
        self.extension = extension
        self.send_page = send_page
        self.bridge = bridge
        self.sentral = sip_address(server)
        self.local: tuple[str, int] = ("", 0)
        self.transport: asyncio.DatagramTransport | None = None
        self.registered = False
        self.call: _Call | None = None
        self._clients: dict[str, _Client] = {}
        self._register_call_id = f"{entropy.token_hex(12)}@browser"
        self._register_cseq = 0
        self._register_tag = entropy.token_hex(6)
        self._refresh: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._nc = 0

    # -- the socket --------------------------------------------------------------------------

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.sentral[0], 0))
        self.transport = transport
        self.local = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if (addr[0], addr[1]) != self.sentral:
            return  # only Sentral talks to this socket
        try:
            message = parse_message(data)
            message.validate()
        except SipError:
            return
        if isinstance(message, Response):
            self._on_response(message)
        else:
            self._on_request(message)

    def _send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.sendto(data, self.sentral)

    @property
    def contact(self) -> str:
        return f"<sip:{self.extension}@{hostport(*self.local)};transport=udp>"

    @property
    def aor(self) -> str:
        return f"sip:{self.extension}@{self.domain}"

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/UDP {hostport(*self.local)};branch={branch};rport"

    def _spawn(self, coro: Any) -> None:
        _keep(self._tasks, coro)

    # -- requests of ours --------------------------------------------------------------------

    def _request(
        self, request: Request, on_provisional: Callable[[Response], None] | None = None
    ) -> asyncio.Future[Response]:
        """Send ``request`` and retransmit it until a response comes (a final one for an INVITE)."""
        loop = asyncio.get_running_loop()
        branch = request.branch or ""
        client = _Client(request, request.to_bytes(), loop.create_future(), on_provisional, loop.time())
        self._clients[branch] = client
        self._send(client.data)
        client.timer = loop.call_later(client.interval, self._retransmit, branch)
        return client.done

    def _retransmit(self, branch: str) -> None:
        client = self._clients.get(branch)
        if client is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - client.started >= TRANSACTION_TIMEOUT:
            del self._clients[branch]
            if not client.done.done():
                client.done.set_exception(TimeoutError(f"{client.request.method} got no answer"))
            return
        self._send(client.data)
        client.interval = min(client.interval * 2, T2)
        client.timer = loop.call_later(client.interval, self._retransmit, branch)

    def _on_response(self, response: Response) -> None:
        branch = response.top_via.branch or ""
        client = self._clients.get(branch)
        if client is None:
            # A 2xx to an INVITE of ours repeated: our ACK was lost; send it again.
            call = self.call
            if (
                response.status < 300
                and response.cseq.method == "INVITE"
                and call is not None
                and call.call_id == response.call_id
                and call.state == "up"
            ):
                self._ack_2xx(call, response)
            return
        if response.status < 200:
            if client.timer is not None and client.request.method == "INVITE":
                client.timer.cancel()  # a provisional answer stops an INVITE's retransmission
                client.timer = None
            if client.on_provisional is not None:
                client.on_provisional(response)
            return
        if client.timer is not None:
            client.timer.cancel()
        del self._clients[branch]
        if not client.done.done():
            client.done.set_result(response)

    def _credentials(self, request: Request, response: Response) -> tuple[str, str] | None:
        """The Authorization or Proxy-Authorization answering ``response``'s challenge."""
        proxy = response.status == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        challenge = choose_challenge(response.header_values(name))
        if challenge is None:
            return None
        staff = self.server.directory().staff_for(self.domain, self.extension)
        if staff is None:
            return None
        ha1 = staff.ha1(challenge.algorithm)
        self._nc += 1
        value = authorization(
            challenge, request.method, request.uri_text, self.extension, "",
            cnonce=entropy.token_hex(8), nc=self._nc, ha1=ha1,
        )  # fmt: skip
        return ("Proxy-Authorization" if proxy else "Authorization", value)

    async def _authenticated(
        self, build: Callable[[int, tuple[str, str] | None], Request],
        cseq: int, on_provisional: Callable[[Response], None] | None = None,
        wanted: Callable[[], bool] = lambda: True,
    ) -> tuple[Response, int]:  # fmt: skip
        """Send ``build(cseq, None)``; once more with credentials when challenged (and still
        ``wanted``). The final response and the CSeq used last."""
        request = build(cseq, None)
        response = await self._request(request, on_provisional)
        if response.status in (401, 407):
            if request.method == "INVITE":
                self._ack_failure(request, response)
            credentials = self._credentials(request, response)
            if credentials is None or not wanted():
                return response, cseq
            cseq += 1
            request = build(cseq, credentials)
            response = await self._request(request, on_provisional)
        return response, cseq

    @staticmethod
    def _in_invite_transaction(invite: Request, method: str, to: str) -> Request:
        """An ACK or CANCEL of ``invite``: its Request-URI, Via, From, Call-ID and CSeq number
        (RFC 3261 §9.1, §17.1.1.3)."""
        return Request.build(
            method, invite.uri_text,
            [
                ("Via", invite.header("via") or ""),
                ("Max-Forwards", "70"),
                ("From", invite.header("from") or ""),
                ("To", to),
                ("Call-ID", invite.call_id),
                ("CSeq", f"{invite.cseq.seq} {method}"),
            ],
        )  # fmt: skip

    def _ack_failure(self, invite: Request, response: Response) -> None:
        """The ACK of a non-2xx final response, in the INVITE's transaction, with the response's To."""
        self._send(self._in_invite_transaction(invite, "ACK", response.header("to") or "").to_bytes())

    def _ack_2xx(self, call: _Call, response: Response) -> None:
        """The ACK of a 2xx: a transaction of its own, to the peer's Contact (§13.2.2.4)."""
        contacts = response.contacts
        if contacts:
            call.target = str(contacts[0].uri)
        ack = Request.build(
            "ACK", call.target or f"sip:{hostport(*self.sentral)}",
            [
                ("Via", self._via(_branch())),
                ("Max-Forwards", "70"),
                ("From", f"{call.local_uri};tag={call.local_tag}"),
                ("To", response.header("to") or ""),
                ("Call-ID", call.call_id),
                ("CSeq", f"{response.cseq.seq} ACK"),
            ],
        )  # fmt: skip
        self._send(ack.to_bytes())

    # -- registration ------------------------------------------------------------------------

    def _register_request(self, expires: int) -> Callable[[int, tuple[str, str] | None], Request]:
        def build(cseq: int, credentials: tuple[str, str] | None) -> Request:
            headers = [
                ("Via", self._via(_branch())),
                ("Max-Forwards", "70"),
                ("From", f"<{self.aor}>;tag={self._register_tag}"),
                ("To", f"<{self.aor}>"),
                ("Call-ID", self._register_call_id),
                ("CSeq", f"{cseq} REGISTER"),
                ("Contact", self.contact),
                ("Expires", str(expires)),
                ("User-Agent", USER_AGENT),
            ]
            if credentials is not None:
                headers.append(credentials)
            return Request.build("REGISTER", f"sip:{self.domain}", headers)

        return build

    async def register(self, expires: int = REGISTER_EXPIRES) -> int:
        """Register (``expires`` 0: unregister); the status of the final answer."""
        self._register_cseq += 1
        response, self._register_cseq = await self._authenticated(
            self._register_request(expires), self._register_cseq
        )
        if response.status >= 300 or expires == 0:
            self.registered = False
            return response.status
        granted = response.expires or expires
        for contact in response.contacts:
            value = contact.param("expires")
            if value is not None and value.isdigit() and f"{hostport(*self.local)}" in str(contact.uri):
                granted = int(value)
        self.registered = True
        loop = asyncio.get_running_loop()
        if self._refresh is not None:
            self._refresh.cancel()
        self._refresh = loop.call_later(max(granted / 2, 5), lambda: self._spawn(self.try_register()))
        return response.status

    async def try_register(self) -> int:
        """Register, or refresh the registration: the status, 408 for no answer; a failure is
        logged."""
        try:
            status = await self.register()
        except TimeoutError:
            status = 408
        if status >= 300:
            log.warning("browser_phone_register_failed", extension=self.extension, status=status)
        return status

    # -- calls out ---------------------------------------------------------------------------

    def _offer(self, call: _Call, direction: str = "sendrecv", laws: tuple[int, ...] = (0, 8)) -> bytes:
        """Our SDP: the bridge's RTP port, G.711 in ``laws``, ``direction``."""
        host = self.bridge.host
        family = "IP6" if ":" in host else "IP4"
        call.sdp_version += 1
        session = int(call.local_tag, 16) % 10**9
        rtpmaps = "".join(f"a=rtpmap:{law} {'PCMU' if law == 0 else 'PCMA'}/8000\r\n" for law in laws)
        return (
            f"v=0\r\no=sentral-browser {session} {call.sdp_version} IN {family} {host}\r\ns=-\r\n"
            f"c=IN {family} {host}\r\nt=0 0\r\nm=audio {self.bridge.port} RTP/AVP {' '.join(map(str, laws))}\r\n"
            f"{rtpmaps}a=ptime:20\r\na={direction}\r\n"
        ).encode()

    def _answer(self, call: _Call, offer: bytes) -> bytes:
        """Our answer to ``offer``: the law it offered first, the direction that fits."""
        found = _audio(offer)
        if found is None:
            raise SipError(488, "Not Acceptable Here")
        host, port, law = found
        self.bridge.connect(host, port, law)
        return self._offer(call, _direction(offer), (law,))

    def dial(self, number: str) -> None:
        if self.call is not None:
            self.send_page({"type": "error", "error": "hang up the call in progress first"})
            return
        number = number.strip()
        if not _dialable(number):
            self.send_page({"type": "error", "error": "dial an extension or a number"})
            return
        call = self.call = _Call(f"{entropy.token_hex(12)}@browser", entropy.token_hex(6), False, "calling")
        call.local_uri = f"<{self.aor}>"
        call.remote_uri = f"<sip:{number}@{self.domain}>"
        call.target = f"sip:{number}@{self.domain}"
        self._spawn(self._place(call))

    async def _place(self, call: _Call) -> None:
        build = self._inviting(call, self._offer(call))

        def provisional(response: Response) -> None:
            if response.status in (180, 183) and call.state == "calling":
                self.send_page({"type": "ringing"})

        try:
            response, call.local_cseq = await self._authenticated(
                build, 1, provisional, wanted=lambda: call.state != "ended"
            )
        except TimeoutError:
            if call.state != "ended":
                self._ended(call, "no answer from the server")
            return
        if response.status >= 300:
            assert call.invite is not None
            if response.status not in (401, 407):  # a challenge was ACKed where it came
                self._ack_failure(call.invite, response)
            if call.state != "ended":  # hung up meanwhile: the page was told then
                self._ended(call, f"{response.status} {response.reason}")
            return
        call.remote_tag = response.to_tag or ""
        self._ack_2xx(call, response)
        if call.state == "ended":  # hung up while it was being answered: end it now
            self._bye(call)
            return
        found = _audio(response.body) if response.body else None
        if found is None:
            self._bye(call)
            self._ended(call, "the other side offered no audio")
            return
        self.bridge.connect(*found)
        call.state = "up"
        self.send_page({"type": "connected"})

    # -- calls in ----------------------------------------------------------------------------

    def _on_request(self, request: Request) -> None:
        method = request.method
        call = self.call
        if method == "INVITE" and request.to_tag is None:
            self._incoming(request)
        elif call is None or request.call_id != call.call_id:
            if method != "ACK":
                self._respond(request, 481 if method in ("BYE", "INVITE", "CANCEL") else 200)
        elif method == "INVITE":
            self._reinvite(call, request)
        elif method == "ACK":
            if call.ok_timer is not None:
                call.ok_timer.cancel()
                call.ok_timer = None
            if call.state == "answering":
                call.state = "up"
                self.send_page({"type": "connected"})
        elif method == "CANCEL":
            self._respond(request, 200)
            if call.state == "ringing" and call.invite is not None:
                call.last_response = self._respond(call.invite, 487, to_tag=call.local_tag)
                self._ended(call, "cancelled")
        elif method == "BYE":
            self._respond(request, 200)
            self._ended(call, "hung up")
        elif method in ("OPTIONS", "NOTIFY", "INFO", "UPDATE"):
            self._respond(request, 200)
        else:
            self._respond(request, 501)

    def _respond(
        self, request: Request, status: int, *, to_tag: str | None = None,
        headers: tuple[tuple[str, str], ...] = (), body: bytes = b"",
    ) -> bytes:  # fmt: skip
        response = make_response(request, status, to_tag=to_tag, headers=headers, body=body)
        data = response.to_bytes()
        self._send(data)
        return data

    def _incoming(self, invite: Request) -> None:
        call = self.call
        if call is not None and call.invite is not None and call.invite.branch == invite.branch:
            if call.last_response:
                self._send(call.last_response)  # a retransmission: the last answer again
            return
        if call is not None or not self.registered:
            self._respond(invite, 486, to_tag=entropy.token_hex(6))
            return
        call = self.call = _Call(invite.call_id, entropy.token_hex(6), True, "ringing", invite=invite)
        call.remote_uri = invite.header("from") or ""
        call.remote_tag = invite.from_tag or ""
        call.local_uri = invite.header("to") or ""
        contacts = invite.contacts
        call.target = str(contacts[0].uri) if contacts else ""
        call.last_response = self._respond(
            invite, 180, to_tag=call.local_tag, headers=(("Contact", self.contact),)
        )
        caller = invite.from_
        self.send_page({"type": "incoming", "from": caller.uri.user or "", "name": caller.display or ""})

    def pick_up(self) -> None:
        call = self.call
        if call is None or call.state != "ringing" or call.invite is None:
            self.send_page({"type": "error", "error": "no call is ringing"})
            return
        try:
            body = self._answer(call, call.invite.body) if call.invite.body else self._offer(call)
        except SipError as error:
            call.last_response = self._respond(call.invite, error.status, to_tag=call.local_tag)
            self._ended(call, "no audio in common")
            return
        call.state = "answering"
        self._answer_ok(call, call.invite, body)

    def _answer_ok(self, call: _Call, invite: Request, body: bytes) -> None:
        """200 OK with ``body``, repeated on T1 doubling until the ACK comes (§13.3.1.4)."""
        data = self._respond(
            invite, 200, to_tag=call.local_tag,
            headers=(("Contact", self.contact), ("Content-Type", "application/sdp")), body=body,
        )  # fmt: skip
        call.last_response = data
        loop = asyncio.get_running_loop()
        started = loop.time()

        def again(interval: float) -> None:
            if loop.time() - started >= TRANSACTION_TIMEOUT:
                call.ok_timer = None
                if call.state == "answering":  # never acknowledged: the call is not up
                    self._bye(call)
                    self._ended(call, "the answer was never acknowledged")
                return
            self._send(data)
            call.ok_timer = loop.call_later(min(interval * 2, T2), again, min(interval * 2, T2))

        if call.ok_timer is not None:
            call.ok_timer.cancel()
        call.ok_timer = loop.call_later(T1, again, T1)

    def _reinvite(self, call: _Call, invite: Request) -> None:
        if call.invite is not None and call.invite.branch == invite.branch:
            self._send(call.last_response)
            return
        if call.state not in ("up", "answering") or call.changing:
            self._respond(invite, 491)  # ours is under way: glare (RFC 3261 §14.2)
            return
        try:
            body = self._answer(call, invite.body) if invite.body else self._offer(call)
        except SipError as error:
            self._respond(invite, error.status)
            return
        call.invite = invite
        self._answer_ok(call, invite, body)

    def decline(self) -> None:
        call = self.call
        if call is None or call.state != "ringing" or call.invite is None:
            return
        call.last_response = self._respond(call.invite, 603, to_tag=call.local_tag)
        self._ended(call, "declined")

    # -- ending ------------------------------------------------------------------------------

    def hang_up(self) -> None:
        call = self.call
        if call is None:
            return
        if call.state == "ringing":
            self.decline()
        elif call.state == "calling":
            call.state = "ended"
            self._cancel(call)
            self.call = None
            self.bridge.disconnect()
            self.send_page({"type": "ended", "reason": "hung up"})
        else:
            self._bye(call)
            self._ended(call, "hung up")

    def _cancel(self, call: _Call) -> None:
        invite = call.invite
        if invite is None:
            return
        cancel = self._in_invite_transaction(invite, "CANCEL", invite.header("to") or "")
        self._spawn(self._quietly(self._request(cancel)))

    def _dialog_request(
        self, call: _Call, method: str, cseq: int, extra: list[tuple[str, str]], body: bytes = b""
    ) -> Request:
        """A request inside ``call``'s dialog (RFC 3261 §12.2.1.1)."""
        from_ = f"{call.local_uri};tag={call.local_tag}"
        # Incoming, the caller's From (its tag in it) is the To; outgoing, the answer's tag is added
        # once there is one (none on the first INVITE).
        tagged = not call.incoming and call.remote_tag
        to = f"{call.remote_uri};tag={call.remote_tag}" if tagged else call.remote_uri
        headers = [
            ("Via", self._via(_branch())),
            ("Max-Forwards", "70"),
            ("From", from_),
            ("To", to),
            ("Call-ID", call.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("User-Agent", USER_AGENT),
            *extra,
        ]
        return Request.build(method, call.target or f"sip:{hostport(*self.sentral)}", headers, body)

    def _inviting(self, call: _Call, body: bytes) -> Callable[[int, tuple[str, str] | None], Request]:
        """What builds ``call``'s INVITE (the first or a re-INVITE) with ``body``, for
        ``_authenticated``; the INVITE built last is kept as ``call.invite``."""

        def build(cseq: int, credentials: tuple[str, str] | None) -> Request:
            extra = [("Contact", self.contact), ("Content-Type", "application/sdp")]
            call.invite = self._dialog_request(
                call, "INVITE", cseq, extra + ([credentials] if credentials else []), body
            )
            return call.invite

        return build

    def _bye(self, call: _Call) -> None:
        call.local_cseq += 1
        bye = self._dialog_request(call, "BYE", call.local_cseq, [])
        self._spawn(self._quietly(self._request(bye)))

    # -- hold and transfer -------------------------------------------------------------------

    def _up(self, what: str) -> _Call | None:
        call = self.call
        if call is None or call.state != "up":
            self.send_page({"type": "error", "error": f"there is no call to {what}"})
            return None
        if call.changing:
            self.send_page({"type": "error", "error": "wait until the last change to the call is done"})
            return None
        return call

    def hold(self, on: bool) -> None:
        """Hold the call (the other side hears music) or take it off hold: a re-INVITE."""
        call = self._up("hold" if on else "resume")
        if call is not None:
            call.changing = True
            self._spawn(self._hold(call, on))

    async def _hold(self, call: _Call, on: bool) -> None:
        build = self._inviting(call, self._offer(call, "sendonly" if on else "sendrecv"))

        response, failure = await self._change(call, build)
        if failure:
            if response is not None and call.invite is not None:
                self._ack_failure(call.invite, response)
            self.send_page(
                {"type": "error", "error": f"the call could not be {'held' if on else 'resumed'} ({failure})"}
            )
            return
        if response is None:
            return
        self._ack_2xx(call, response)
        found = _audio(response.body) if response.body else None
        if found is not None:
            self.bridge.connect(*found)
        self.send_page({"type": "held" if on else "connected"})

    async def _change(
        self, call: _Call, build: Callable[[int, tuple[str, str] | None], Request]
    ) -> tuple[Response | None, str]:
        """Send a re-INVITE or REFER of ours inside ``call``: the final answer and, when it failed,
        what failed (no answer, or the status); no answer and no failure when the call ended
        meanwhile."""
        try:
            response, call.local_cseq = await self._authenticated(build, call.local_cseq + 1)
        except TimeoutError:
            response = None
        finally:
            call.changing = False
        if call.state != "up":
            return None, ""
        if response is None:
            return None, "no answer"
        return response, f"{response.status} {response.reason}" if response.status >= 300 else ""

    def dtmf(self, key: str) -> None:
        """A key pressed on the page's keypad: SIP INFO with application/dtmf-relay, which Sentral
        passes on to the other side as it does a desk phone's."""
        if len(key) != 1 or key not in "0123456789*#ABCD":
            self.send_page({"type": "error", "error": "a key is one of 0-9, *, # and A-D"})
            return
        call = self.call
        if call is None or call.state != "up":
            self.send_page({"type": "error", "error": "there is no call to send a key to"})
            return
        call.local_cseq += 1
        info = self._dialog_request(
            call, "INFO", call.local_cseq, [("Content-Type", "application/dtmf-relay")],
            f"Signal={key}\r\nDuration=160\r\n".encode(),
        )  # fmt: skip
        self._spawn(self._quietly(self._request(info)))

    def transfer(self, number: str) -> None:
        """A blind transfer (REFER, RFC 3515): the other side is put through to ``number`` and
        this phone leaves the call."""
        number = number.strip()
        if not _dialable(number):
            self.send_page({"type": "error", "error": "transfer to an extension or a number"})
            return
        call = self._up("transfer")
        if call is not None:
            call.changing = True
            self._spawn(self._transfer(call, number))

    async def _transfer(self, call: _Call, number: str) -> None:
        def build(cseq: int, credentials: tuple[str, str] | None) -> Request:
            extra = [
                ("Refer-To", f"<sip:{number}@{self.domain}>"),
                ("Referred-By", f"<{self.aor}>"),
                ("Contact", self.contact),
            ]
            return self._dialog_request(call, "REFER", cseq, extra + ([credentials] if credentials else []))

        response, failure = await self._change(call, build)
        if failure:
            self.send_page({"type": "error", "error": f"the transfer was refused ({failure})"})
            return
        if response is None:
            return
        self._bye(call)
        self._ended(call, f"transferred to {number}")

    @staticmethod
    async def _quietly(done: asyncio.Future[Response]) -> None:
        with contextlib.suppress(TimeoutError):
            await done

    def _ended(self, call: _Call, reason: str) -> None:
        call.state = "ended"
        if call.ok_timer is not None:
            call.ok_timer.cancel()
            call.ok_timer = None
        if self.call is call:
            self.call = None
        self.bridge.disconnect()
        self.send_page({"type": "ended", "reason": reason})

    async def close(self) -> None:
        """The page went away: end its call, unregister, let go of the socket."""
        self.hang_up()
        if self._refresh is not None:
            self._refresh.cancel()
        if self._register_cseq:  # registered, or a REGISTER was under way: the binding goes
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    await self.register(0)
        for client in self._clients.values():
            if client.timer is not None:
                client.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self.transport is not None:
            self.transport.close()


def _branch() -> str:
    return f"z9hG4bK{entropy.token_hex(10)}"


def _keep(tasks: set[asyncio.Task[Any]], coro: Any) -> None:
    """Run ``coro`` as a task held in ``tasks`` until it is done (the loop keeps only weak ones)."""
    task = asyncio.get_running_loop().create_task(coro, name="browser-phone")
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _dialable(number: str) -> bool:
    """Whether ``number`` can stand as the user part of a SIP URI as a person types it."""
    return 0 < len(number) <= 64 and all(c.isalnum() or c in "+*#-._" for c in number)


# -- the WebSocket -----------------------------------------------------------------------------


@documented(
    {
        "summary": "The page as one of the signed-in member's phones (WebSocket, WebRTC audio)",
        "description": (
            "Send {type: offer, sdp} with the page's WebRTC offer (candidates gathered); the answer "
            "comes as {type: sdp}. Then dial, pick-up, decline, hang-up, hold, resume, transfer "
            "and dtmf; the phone reports registered, incoming, ringing, connected, held and ended."
        ),
        "responses": {
            "101": {"description": "WebSocket; each text message is one JSON object with a type"},
            "401": {"description": "not signed in"},
            "403": {"description": "an API token, not a member of staff"},
            "503": {"description": "the browser phone cannot run on this server"},
        },
    }
)
async def phone_socket(request: web.Request) -> web.StreamResponse:
    """The browser phone (WebSocket)."""
    principal = staff_of(request)
    assert principal.extension is not None
    server: Server = request.app[SERVER_KEY]
    try:
        sip_address(server)
        import aiortc  # noqa: F401
    except PhoneUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    except ImportError:
        raise ApiError(503, "the browser phone needs aiortc, which is not installed") from None
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_MESSAGE)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "this is a WebSocket: connect with a WebSocket client (Upgrade: websocket)")
    await ws.prepare(request)
    page = _Page(server, ws, principal.domain, principal.extension)
    try:
        await page.serve()
    finally:
        await page.close()
    return ws


class _Page:
    """One page's WebSocket: its messages in order, its WebRTC peer and its phone."""

    def __init__(self, server: Server, ws: web.WebSocketResponse, domain: str, extension: str) -> None:
        from sentral.media.webrtc import AudioBridge

        self.server = server
        self.ws = ws
        self.domain = domain
        self.extension = extension
        self.bridge = AudioBridge()
        self.phone: BrowserPhone | None = None
        self.peer: Any = None
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writer = asyncio.create_task(self._write(), name="browser-phone-page")

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for the page; messages go out in the order they were queued."""
        self._outbox.put_nowait(json.dumps(message))

    def error(self, sentence: str) -> None:
        self.send({"type": "error", "error": sentence})

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return  # the page is gone; the reader ends the session

    async def serve(self) -> None:
        await self.bridge.open(sip_address(self.server)[0])
        self.phone = BrowserPhone(self.server, self.domain, self.extension, self.send, self.bridge)
        await self.phone.open()
        async for message in self.ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                body = json.loads(message.data)
            except ValueError:
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("type"), str):
                self.error("send JSON objects with a type")
                continue
            await self._handle(self.phone, body["type"], body)

    async def _handle(self, phone: BrowserPhone, kind: str, body: dict[str, Any]) -> None:
        if kind == "offer":
            await self._offer(phone, body.get("sdp"))
        elif self.peer is None:
            self.error("send the page's offer first")
        elif kind == "dial":
            phone.dial(str(body.get("number", "")))
        elif kind == "pick-up":
            phone.pick_up()
        elif kind == "decline":
            phone.decline()
        elif kind == "hang-up":
            phone.hang_up()
        elif kind in ("hold", "resume"):
            phone.hold(kind == "hold")
        elif kind == "transfer":
            phone.transfer(str(body.get("number", "")))
        elif kind == "dtmf":
            phone.dtmf(str(body.get("key", "")))
        else:
            self.error(f"unknown message type {kind[:40]!r}")

    async def _offer(self, phone: BrowserPhone, sdp: object) -> None:
        """Answer the page's WebRTC offer, then register the phone."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        from sentral.media.webrtc import answered_law

        if self.peer is not None:
            self.error("this phone is connected already")
            return
        if not isinstance(sdp, str) or not sdp:
            self.error("an offer carries the page's SDP in sdp")
            return
        peer = self.peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer.addTrack(self.bridge.track)
        # G.711 first: every browser offers it, and the relay speaks it, so nothing is transcoded.
        # A browser that offers neither law gets Opus, transcoded here.
        codecs = RTCRtpSender.getCapabilities("audio").codecs
        g711 = [c for c in codecs if c.mimeType in ("audio/PCMU", "audio/PCMA")]
        for transceiver in peer.getTransceivers():
            transceiver.setCodecPreferences(g711 + [c for c in codecs if c not in g711])

        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self.bridge.consume(track)

        def on_state() -> None:
            if peer.connectionState == "failed":
                self.error("the browser's audio could not connect to the server (ICE failed)")
                self._spawn(self.ws.close())

        peer.on("track", on_track)
        peer.on("connectionstatechange", on_state)
        try:
            await peer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await peer.setLocalDescription(await peer.createAnswer())
        except Exception as exc:  # what a library makes of SDP it cannot take: the page's mistake
            log.debug("browser_phone_offer_refused", extension=self.extension, error=str(exc))
            self.error("the offer cannot be answered: send an audio offer from RTCPeerConnection")
            self.peer = None
            await peer.close()
            return
        self.bridge.speak_to_browser(answered_law(peer.localDescription.sdp))
        self.send({"type": "sdp", "sdp": peer.localDescription.sdp})
        # Registering takes a round trip or two: the page's next messages are read meanwhile.
        self._spawn(self._register(phone))

    def _spawn(self, coro: Any) -> None:
        _keep(self._tasks, coro)

    async def _register(self, phone: BrowserPhone) -> None:
        status = await phone.try_register()
        if status < 300:
            log.info("browser_phone_registered", extension=self.extension, clinic=self.domain)
            self.send({"type": "registered", "extension": self.extension})
        else:
            self.error(f"the phone could not register ({status})")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.phone is not None:
            await self.phone.close()
            log.info("browser_phone_closed", extension=self.extension, clinic=self.domain)
        if self.peer is not None:
            await self.peer.close()
        await self.bridge.close()
        self._outbox.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer


def phone_routes() -> list[web.RouteDef]:
    return [web.get(PHONE_PATH, phone_socket)]


__all__ = ["BrowserPhone", "PhoneUnavailable", "phone_routes", "sip_address"]
