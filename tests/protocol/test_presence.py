"""The presence hub on a fake clock through a fake port: busy-lamp and presence subscriptions.

Tests play the watching phone: they build its SUBSCRIBEs as bytes, answer the NOTIFYs the hub
sends, and read the documents back with an XML parser. Call control and the registrar are
played through the hub's inputs (``line``, ``registration``). The last tests run the endpoint
itself on fake transports, for the digest challenge and the routing of NOTIFY answers.
"""

from __future__ import annotations

import concurrent.futures
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import pytest

from sentral.config.directory import ClinicEntry, Directory, Forwards, ParkLotEntry, StaffEntry
from sentral.config.settings import Listen
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.guard import Guard
from sentral.pbx.location import Location
from sentral.pbx.presence import (
    FORWARD_KEY,
    Direction,
    Lamp,
    LineState,
    Phase,
    PresenceHub,
    PresenceLimits,
)
from sentral.pbx.registrar import Registrar, RegistrarPolicy
from sentral.pbx.sip.auth import DigestAuthority, compute_ha1, compute_response
from sentral.pbx.sip.dialog_info import DialogIds
from sentral.pbx.sip.message import Request, Response, make_response, parse_message
from sentral.pbx.sip.transaction import (
    ClientTransaction,
    RequestReceived,
    ServerTransaction,
    TransactionLayer,
)
from sentral.pbx.transport import Origin, Target

DOMAIN = "clinic.test"
CLINIC = ClinicEntry(DOMAIN, "Clinic", ("MD5",))
LISTEN = Listen("udp", "127.0.0.1", 5060)
DI = "{urn:ietf:params:xml:ns:dialog-info}"
PIDF = "{urn:ietf:params:xml:ns:pidf}"


def staff(ext: str, *, phone_on: bool = True) -> StaffEntry:
    ha1 = compute_ha1("MD5", ext, DOMAIN, f"secret-{ext}")
    return StaffEntry(DOMAIN, ext, f"Staff {ext}", (), ha1, "", phone_on)


def directory(version: int = 1, *, off: tuple[str, ...] = (), gone: tuple[str, ...] = ()) -> Directory:
    people = {
        (DOMAIN, ext): staff(ext, phone_on=ext not in off)
        for ext in ("1001", "1002", "1003")
        if ext not in gone
    }
    clinics = {DOMAIN: CLINIC, "other.test": ClinicEntry("other.test", "Other", ("MD5",))}
    return Directory(version, MappingProxyType(clinics), MappingProxyType(people))


@dataclass
class FakePort:
    """Records what the hub sends; client transactions are real ones of a private layer."""

    layer: TransactionLayer = field(default_factory=TransactionLayer)
    responses: list[Response] = field(default_factory=list)
    requests: list[tuple[Request, Target, ClientTransaction]] = field(default_factory=list)

    def respond(self, tx: ServerTransaction, response: Response) -> None:
        self.responses.append(response)

    def send_request(self, request: Request, target: Target) -> ClientTransaction:
        tx, _ = self.layer.send_request(request, (target.host, target.port), False, 0.0)
        self.requests.append((request, target, tx))
        return tx

    def local_address(self, target: Target) -> tuple[str, int]:
        return ("127.0.0.1", 5060)


class Phone:
    """A watching phone: one subscription dialog, its SUBSCRIBEs and its answers to NOTIFYs."""

    def __init__(self, world: World, ext: str = "1001", port: int = 4001, call_id: str = "blf@phone") -> None:
        self.world = world
        self.ext = ext
        self.origin = Origin("udp", "192.0.2.10", port, LISTEN)
        self.call_id = call_id
        self.cseq = 0
        self.our_tag: str | None = None  # the To tag the hub gave the dialog
        self.seen = 0  # NOTIFYs of this phone already looked at

    def subscribe(
        self,
        target: str = "1002",
        *,
        event: str = "dialog",
        expires: int | None = 3600,
        accept: str | None = None,
        now: float = 0.0,
        host: str = DOMAIN,
    ) -> Response:
        self.cseq += 1
        lines = [
            f"SUBSCRIBE sip:{target}@{host} SIP/2.0",
            f"Via: SIP/2.0/UDP 192.0.2.10:{self.origin.port};branch=z9hG4bK-{self.call_id}-{self.cseq};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.ext}@{DOMAIN}>;tag=w{self.ext}",
            f"To: <sip:{target}@{host}>" + (f";tag={self.our_tag}" if self.our_tag else ""),
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} SUBSCRIBE",
            f"Contact: <sip:{self.ext}@192.0.2.10:{self.origin.port}>",
            f"Event: {event}",
        ]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if accept is not None:
            lines.append(f"Accept: {accept}")
        request = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
        assert isinstance(request, Request)
        request.validate()
        [event_] = self.world.layer.receive(request, (self.origin.host, self.origin.port), False, now)
        assert isinstance(event_, RequestReceived)
        before = len(self.world.port.responses)
        if self.our_tag:
            self.world.hub.on_request(event_.tx, request, self.origin, now)
        else:
            self.world.hub.on_subscribe(event_.tx, request, self.origin, CLINIC, self.ext, now)
        [response] = self.world.port.responses[before:]
        if response.status == 200 and not self.our_tag:
            self.our_tag = response.to_tag
        return response

    def notifies(self) -> list[tuple[Request, ClientTransaction]]:
        """The NOTIFYs sent to this phone since the last call."""
        mine = [
            (r, tx)
            for r, target, tx in self.world.port.requests
            if r.call_id == self.call_id and r.method == "NOTIFY"
        ]
        new, self.seen = mine[self.seen :], len(mine)
        return new

    def notified(self) -> Request:
        """The one NOTIFY sent since the last look; it is not answered yet."""
        [(notify, _)] = self.notifies()
        self.last = notify
        return notify

    def answer(self, notify: Request, status: int = 200, now: float = 0.0) -> None:
        tx = next(tx for r, _, tx in self.world.port.requests if r is notify)
        assert self.world.hub.on_response(tx, make_response(notify, status), now)

    def take(self, now: float = 0.0) -> Request:
        """The one NOTIFY since the last look, answered 200 at once."""
        notify = self.notified()
        self.answer(notify, now=now)
        return notify


class World:
    def __init__(self, limits: PresenceLimits | None = None) -> None:
        self.port = FakePort()
        self.layer = TransactionLayer()
        self.directory = directory()
        self.bound: set[tuple[str, str]] = set()
        self.hub = PresenceHub(
            self.port, lambda: self.directory, lambda aor: aor in self.bound, limits=limits
        )

    def call(self, ext: str, phase: Phase, *, key: str = "k1", direction: Direction = Direction.RECIPIENT,
             acute: bool = False, now: float = 0.0) -> None:  # fmt: skip
        self.hub.line(DOMAIN, ext, key, phase, direction, acute, now)


def dialogs(
    notify: Request, entity: str = "1002"
) -> tuple[ET.Element, list[tuple[str, str | None, str | None]]]:
    assert notify.content_type == "application/dialog-info+xml"
    root = ET.fromstring(notify.body)
    assert root.tag == f"{DI}dialog-info"
    assert root.get("state") == "full" and root.get("entity") == f"sip:{entity}@{DOMAIN}"
    found = [
        (d.get("id", ""), d.get("direction"), d.findtext(f"{DI}state")) for d in root.findall(f"{DI}dialog")
    ]
    return root, found


def presence(notify: Request) -> tuple[str | None, str | None]:
    assert notify.content_type == "application/pidf+xml"
    root = ET.fromstring(notify.body)
    assert root.tag == f"{PIDF}presence"
    [item] = root.findall(f"{PIDF}tuple")
    return item.findtext(f"{PIDF}status/{PIDF}basic"), item.findtext(f"{PIDF}note")


@pytest.fixture
def world() -> World:
    return World()


# -- subscribing to a busy-lamp field ------------------------------------------------------------


def test_a_blf_subscription_is_accepted_and_told_the_line_is_idle(world: World) -> None:
    phone = Phone(world)
    ok = phone.subscribe(expires=1800)
    assert ok.status == 200
    assert ok.header("expires") == "1800"
    assert ok.to_tag and ok.header("contact") == "<sip:sentral@127.0.0.1:5060>"
    [(notify, target, _)] = world.port.requests
    assert (target.host, target.port) == ("192.0.2.10", 4001)  # back where the SUBSCRIBE came from
    assert str(notify.uri) == "sip:1001@192.0.2.10:4001"
    assert notify.call_id == "blf@phone" and notify.cseq.seq == 1
    assert notify.from_.tag == ok.to_tag and str(notify.from_.uri) == f"sip:1002@{DOMAIN}"
    assert notify.to.tag == "w1001"
    assert notify.header("event") == "dialog"
    assert notify.header("subscription-state") == "active;expires=1800"
    assert notify.header("contact") == "<sip:sentral@127.0.0.1:5060>"
    root, found = dialogs(notify)
    assert root.get("version") == "0" and found == []
    assert len(world.hub) == 1


def test_the_lamp_follows_a_call_early_confirmed_and_terminated(world: World) -> None:
    phone = Phone(world)
    phone.subscribe()
    phone.take()
    world.call("1002", Phase.EARLY, key="c0ffee")
    root, found = dialogs(phone.take())
    assert root.get("version") == "1"
    assert found == [("c0ffee", "recipient", "early")]
    assert world.hub.lamp(DOMAIN, "1002") is Lamp.RINGING
    world.call("1002", Phase.CONFIRMED, key="c0ffee")
    root, found = dialogs(phone.take())
    assert root.get("version") == "2" and found == [("c0ffee", "recipient", "confirmed")]
    assert world.hub.lamp(DOMAIN, "1002") is Lamp.BUSY
    world.call("1002", Phase.TERMINATED, key="c0ffee")
    root, found = dialogs(phone.take())
    assert root.get("version") == "3" and found == [("c0ffee", "recipient", "terminated")]
    assert world.hub.lamp(DOMAIN, "1002") is Lamp.IDLE
    # The ended call is gone from the state: a refresh tells an idle line.
    phone.subscribe()
    root, found = dialogs(phone.take())
    assert root.get("version") == "4" and found == []


def test_the_document_names_calls_by_our_key_only(world: World) -> None:
    phone = Phone(world)
    phone.subscribe()
    phone.take()
    world.call("1002", Phase.TRYING, key="call-42", direction=Direction.INITIATOR)
    notify = phone.take()
    [dialog] = ET.fromstring(notify.body).findall(f"{DI}dialog")
    assert dialog.attrib == {"id": "call-42", "direction": "initiator"}
    assert [child.tag for child in dialog] == [f"{DI}state"]  # no identities, no SIP Call-ID or tags


def test_a_ringing_dialog_names_the_ids_a_pickup_replaces_and_only_while_it_rings(world: World) -> None:
    phone = Phone(world)
    phone.subscribe()
    phone.take()
    ids = DialogIds("b-leg@sentral", "phone-tag", "our-tag")
    world.hub.line(DOMAIN, "1002", "call-42", Phase.EARLY, Direction.RECIPIENT, False, 0.0, dialog=ids)
    [dialog] = ET.fromstring(phone.take().body).findall(f"{DI}dialog")
    assert dialog.attrib == {
        "id": "call-42",
        "call-id": "b-leg@sentral",
        "local-tag": "phone-tag",
        "remote-tag": "our-tag",
        "direction": "recipient",
    }
    world.hub.line(DOMAIN, "1002", "call-42", Phase.CONFIRMED, Direction.RECIPIENT, False, 1.0, dialog=ids)
    [dialog] = ET.fromstring(phone.take().body).findall(f"{DI}dialog")
    assert dialog.attrib == {"id": "call-42", "direction": "recipient"}


def test_calls_of_other_extensions_and_repeated_states_send_nothing(world: World) -> None:
    phone = Phone(world)
    phone.subscribe()
    phone.take()
    world.call("1003", Phase.CONFIRMED)
    assert phone.notifies() == []
    world.call("1002", Phase.EARLY)
    phone.take()
    world.call("1002", Phase.EARLY)
    world.call("1002", Phase.TERMINATED, key="never-seen")
    assert phone.notifies() == []


def test_a_burst_of_changes_while_a_notify_is_unanswered_costs_one_notify(world: World) -> None:
    phone = Phone(world)
    phone.subscribe()
    first = phone.notified()  # left unanswered
    world.call("1002", Phase.TRYING)
    world.call("1002", Phase.EARLY)
    world.call("1002", Phase.CONFIRMED)
    world.call("1002", Phase.EARLY, key="k2")
    assert phone.notifies() == []
    phone.answer(first)
    root, found = dialogs(phone.notified())
    assert root.get("version") == "1"
    assert found == [("k1", "recipient", "confirmed"), ("k2", "recipient", "early")]


def test_every_subscription_counts_its_own_versions(world: World) -> None:
    desk, reception = Phone(world, "1001", call_id="a@phone"), Phone(world, "1003", 4003, call_id="b@phone")
    desk.subscribe()
    desk.take()
    world.call("1002", Phase.EARLY)
    desk.take()
    reception.subscribe()
    root, found = dialogs(reception.take())
    assert root.get("version") == "0" and found == [("k1", "recipient", "early")]


def test_an_event_id_is_kept_and_a_refresh_must_carry_it(world: World) -> None:
    phone = Phone(world)
    assert phone.subscribe(event="dialog;id=7").status == 200
    assert phone.take().header("event") == "dialog;id=7"
    assert phone.subscribe(event="dialog").status == 481
    assert phone.subscribe(event="dialog;id=7").status == 200


# -- refresh, unsubscribe, expiry ----------------------------------------------------------------


def test_a_refresh_moves_the_expiry_and_gets_a_notify(world: World) -> None:
    phone = Phone(world)
    phone.subscribe(expires=600, now=0.0)
    phone.take()
    assert world.hub.next_deadline() == 600.0
    ok = phone.subscribe(expires=900, now=500.0)
    assert ok.status == 200 and ok.header("expires") == "900"
    assert phone.take().header("subscription-state") == "active;expires=900"
    world.hub.on_timer(600.0)
    assert phone.notifies() == [] and len(world.hub) == 1
    assert world.hub.next_deadline() == 1400.0


def test_a_refresh_is_capped_and_defaulted(world: World) -> None:
    phone = Phone(world)
    assert phone.subscribe(expires=None).header("expires") == "3600"
    assert phone.subscribe(expires=86400).header("expires") == "3600"


def test_unsubscribe_gets_a_final_notify_and_ends_the_subscription(world: World) -> None:
    phone = Phone(world)
    phone.subscribe()
    phone.take()
    ok = phone.subscribe(expires=0, now=10.0)
    assert ok.status == 200 and ok.header("expires") == "0"
    final = phone.take()
    assert final.header("subscription-state") == "terminated;reason=timeout"
    assert dialogs(final)[1] == []
    assert len(world.hub) == 0 and world.hub.next_deadline() is None
    world.call("1002", Phase.EARLY)
    assert phone.notifies() == []
    assert phone.subscribe().status == 481


def test_a_subscription_not_refreshed_expires_with_a_final_notify(world: World) -> None:
    phone = Phone(world)
    phone.subscribe(expires=120)
    phone.take()
    deadline = world.hub.next_deadline()
    assert deadline == 120.0
    world.hub.on_timer(119.9)
    assert phone.notifies() == []
    world.hub.on_timer(deadline)
    assert phone.take().header("subscription-state") == "terminated;reason=timeout"
    assert len(world.hub) == 0 and world.hub.next_deadline() is None


def test_unsubscribing_with_a_notify_unanswered_sends_the_final_one_after_it(world: World) -> None:
    phone = Phone(world)
    phone.subscribe()
    first = phone.notified()
    phone.subscribe(expires=0)
    assert phone.notifies() == []
    phone.answer(first)
    assert phone.notified().header("subscription-state") == "terminated;reason=timeout"


def test_expires_zero_on_a_new_subscription_fetches_the_state_once(world: World) -> None:
    world.call("1002", Phase.CONFIRMED)
    phone = Phone(world)
    ok = phone.subscribe(expires=0)
    assert ok.status == 200 and ok.header("expires") == "0"
    notify = phone.take()
    assert notify.header("subscription-state") == "terminated;reason=timeout"
    assert dialogs(notify)[1] == [("k1", "recipient", "confirmed")]
    assert len(world.hub) == 0


# -- refusals ------------------------------------------------------------------------------------


def test_an_unknown_package_gets_489_with_allow_events(world: World) -> None:
    response = Phone(world).subscribe(event="message-summary")
    assert response.status == 489
    assert response.header_values("allow-events") == ["dialog", "presence"]
    assert world.port.requests == [] and len(world.hub) == 0


def test_an_unknown_extension_gets_404(world: World) -> None:
    assert Phone(world).subscribe("4711").status == 404
    assert world.port.requests == []


def test_another_clinics_extension_gets_403(world: World) -> None:
    assert Phone(world).subscribe("1002", host="other.test").status == 403


def test_too_brief_an_expiry_gets_423_with_min_expires(world: World) -> None:
    response = Phone(world).subscribe(expires=30)
    assert response.status == 423 and response.header("min-expires") == "60"
    assert world.port.requests == []


@pytest.mark.parametrize(
    ("event", "accept", "status"),
    [
        ("dialog", "application/sdp", 406),
        ("presence", "application/dialog-info+xml", 406),
        ("dialog", "application/*", 200),
        ("presence", "application/pidf+xml, application/cpim-pidf+xml", 200),
    ],
)
def test_an_accept_without_the_packages_body_type_gets_406(
    world: World, event: str, accept: str, status: int
) -> None:
    response = Phone(world).subscribe(event=event, accept=accept)
    assert response.status == status
    if status == 406:
        assert response.header("accept") in ("application/dialog-info+xml", "application/pidf+xml")


def test_refresh_of_an_unknown_subscription_gets_481(world: World) -> None:
    phone = Phone(world)
    phone.our_tag = "made-up"
    assert phone.subscribe().status == 481


def test_subscriptions_over_the_limits_get_503() -> None:
    world = World(PresenceLimits(per_subscriber=2, total=3))
    desk = Phone(world, "1001")
    for target in ("1002", "1003"):
        desk.call_id = f"blf-{target}"
        desk.our_tag = None
        assert desk.subscribe(target).status == 200
    desk.call_id, desk.our_tag = "blf-1001", None
    refused = desk.subscribe("1001")
    assert refused.status == 503 and refused.header("retry-after") == "60"
    other = Phone(world, "1003", call_id="other-1")
    assert other.subscribe("1001").status == 200
    other.call_id, other.our_tag = "other-2", None
    assert other.subscribe("1002").status == 503  # three in total
    assert len(world.hub) == 3


# -- answers to our NOTIFYs ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [481, 489, 500])
def test_an_error_answer_to_a_notify_ends_the_subscription(world: World, status: int) -> None:
    phone = Phone(world)
    phone.subscribe()
    phone.answer(phone.notified(), status)
    assert len(world.hub) == 0
    world.call("1002", Phase.EARLY)
    assert phone.notifies() == []
    assert phone.subscribe().status == 481


def test_a_notify_never_answered_ends_the_subscription(world: World) -> None:
    phone = Phone(world)
    phone.subscribe()
    notify = phone.notified()
    tx = next(tx for r, _, tx in world.port.requests if r is notify)
    assert world.hub.owns(tx)
    assert world.hub.on_timeout(tx, 32.0)  # Timer F
    assert len(world.hub) == 0 and not world.hub.owns(tx)
    world.call("1002", Phase.EARLY)
    assert phone.notifies() == []


def test_responses_to_other_transactions_are_not_the_hubs(world: World) -> None:
    bye = _bye()
    other, _ = world.port.layer.send_request(bye, ("192.0.2.1", 5060), False, 0.0)
    assert not world.hub.owns(other)
    assert not world.hub.on_response(other, make_response(bye, 200), 0.0)
    assert not world.hub.on_timeout(other, 0.0)


def _bye() -> Request:
    message = parse_message(
        b"BYE sip:x@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKbye\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(message, Request)
    return message


# -- presence ------------------------------------------------------------------------------------


def test_presence_is_open_only_while_registered_and_says_what_the_phone_does(world: World) -> None:
    phone = Phone(world)
    assert phone.subscribe(event="presence").status == 200
    notify = phone.take()
    assert notify.header("event") == "presence"
    assert presence(notify) == ("closed", "Logged off")
    world.hub.registration(DOMAIN, "1002", True, 1.0)
    assert presence(phone.take()) == ("open", "Available")
    world.hub.registration(DOMAIN, "1002", True, 2.0)  # a re-registration changes nothing
    assert phone.notifies() == []
    world.call("1002", Phase.EARLY)
    assert presence(phone.take()) == ("open", "Ringing")
    world.call("1002", Phase.CONFIRMED)
    assert presence(phone.take()) == ("open", "On the phone")
    world.call("1002", Phase.TERMINATED)
    assert presence(phone.take()) == ("open", "Available")
    world.hub.registration(DOMAIN, "1002", False, 3.0)
    assert presence(phone.take()) == ("closed", "Logged off")


def test_presence_says_where_the_calls_of_someone_forwarded_always_go(world: World) -> None:
    world.bound.add((DOMAIN, "1002"))
    phone = Phone(world)
    phone.subscribe(event="presence")
    assert presence(phone.take()) == ("open", "Available")
    forwarded = directory(2)
    people = dict(forwarded.staff)
    people[(DOMAIN, "1002")] = replace(people[(DOMAIN, "1002")], forwards=Forwards(always="1003"))
    world.directory = replace(forwarded, staff=MappingProxyType(people))
    world.hub.directory_changed(5.0)
    assert presence(phone.take()) == ("open", "Available, forwarded to 1003")
    world.call("1002", Phase.CONFIRMED)
    assert presence(phone.take()) == ("open", "On the phone, forwarded to 1003")
    world.directory = directory(3)
    world.hub.directory_changed(6.0)
    assert presence(phone.take()) == ("open", "On the phone")


def test_a_key_on_the_forwarding_code_is_lit_while_its_own_phone_forwards_every_call(world: World) -> None:
    phone = Phone(world)  # 1001's phone, a key on *21
    assert phone.subscribe(FORWARD_KEY).status == 200
    _, dark = dialogs(phone.take(), FORWARD_KEY)
    assert dark == []
    forwarded = directory(2)
    people = dict(forwarded.staff)
    people[(DOMAIN, "1001")] = replace(people[(DOMAIN, "1001")], forwards=Forwards(always="1003"))
    people[(DOMAIN, "1002")] = replace(people[(DOMAIN, "1002")], forwards=Forwards(busy="1003"))
    world.directory = replace(forwarded, staff=MappingProxyType(people))
    world.hub.directory_changed(5.0)
    _, lit = dialogs(phone.take(), FORWARD_KEY)
    assert [state for _, _, state in lit] == ["confirmed"]
    # Another phone's key on *21 shows its own forward: 1002 forwards only when busy.
    other = Phone(world, "1002", 5002, "blf2@phone")
    other.subscribe(FORWARD_KEY)
    assert dialogs(other.take(), FORWARD_KEY)[1] == []
    world.directory = directory(3)  # the forward cleared
    world.hub.directory_changed(6.0)
    assert dialogs(phone.take(), FORWARD_KEY)[1] == []
    assert all(line.extension != FORWARD_KEY for line in world.hub.lines())
    buddy = Phone(world, "1001", 4001, "buddy@phone")
    assert buddy.subscribe(FORWARD_KEY, event="presence").status == 404  # a busy-lamp key's alone


def test_presence_document_names_the_extension(world: World) -> None:
    world.bound.add((DOMAIN, "1002"))  # registered before the hub was told anything
    phone = Phone(world)
    phone.subscribe(event="presence")
    root = ET.fromstring(phone.take().body)
    assert root.get("entity") == f"sip:1002@{DOMAIN}"
    assert root.findtext(f"{PIDF}tuple/{PIDF}contact") == f"sip:1002@{DOMAIN}"
    assert root.findtext(f"{PIDF}tuple/{PIDF}status/{PIDF}basic") == "open"


def test_switching_a_phone_off_in_the_directory_closes_its_presence(world: World) -> None:
    world.bound.add((DOMAIN, "1002"))
    phone = Phone(world)
    phone.subscribe(event="presence")
    assert presence(phone.take()) == ("open", "Available")
    world.hub.directory_changed(5.0)  # the same version: nothing to do
    assert phone.notifies() == []
    world.directory = directory(2, off=("1002",))
    world.hub.directory_changed(5.0)
    assert presence(phone.take()) == ("closed", "Logged off")
    world.directory = directory(3)
    world.hub.directory_changed(6.0)
    assert presence(phone.take()) == ("open", "Available")


def test_removing_the_watched_extension_ends_the_subscription(world: World) -> None:
    phone = Phone(world)
    phone.subscribe()
    phone.take()
    world.directory = directory(2, gone=("1002",))
    world.hub.directory_changed(1.0)
    assert phone.take().header("subscription-state") == "terminated;reason=noresource"
    assert len(world.hub) == 0


def test_removing_the_subscriber_ends_its_subscriptions(world: World) -> None:
    phone = Phone(world)
    phone.subscribe()
    phone.take()
    world.directory = directory(2, gone=("1001",))
    world.hub.directory_changed(1.0)
    assert phone.take().header("subscription-state") == "terminated;reason=rejected"


# -- lines for the operator --------------------------------------------------------------------


def test_lines_show_every_extension_in_a_call_or_watched(world: World) -> None:
    assert world.hub.lines() == []
    world.call("1003", Phase.EARLY, key="a", acute=True)
    world.call("1001", Phase.EARLY, key="a", direction=Direction.INITIATOR, acute=True)
    Phone(world, "1001").subscribe("1002")
    version = world.hub.version
    assert world.hub.lines() == [
        LineState(DOMAIN, "1001", Lamp.BUSY, True),
        LineState(DOMAIN, "1002", Lamp.IDLE, False),
        LineState(DOMAIN, "1003", Lamp.RINGING, True),
    ]
    world.call("1003", Phase.CONFIRMED, key="a", acute=True)
    assert world.hub.version > version
    assert world.hub.lines()[2] == LineState(DOMAIN, "1003", Lamp.BUSY, True)
    world.call("1003", Phase.TERMINATED, key="a")
    world.call("1001", Phase.TERMINATED, key="a")
    assert world.hub.lines() == [LineState(DOMAIN, "1002", Lamp.IDLE, False)]


# -- through the endpoint ------------------------------------------------------------------------


class FakeTransports:
    def __init__(self) -> None:
        self.bound = [LISTEN]
        self.sent: list[tuple[bytes, Target]] = []

    def send(self, data: bytes, target: Target) -> bool:
        self.sent.append((data, target))
        return True

    def take(self) -> list[Request | Response]:
        out = [parse_message(data) for data, _ in self.sent]
        self.sent.clear()
        return out

    def last(self) -> Response:
        """The last message sent, which must be a response."""
        message = parse_message(self.sent[-1][0])
        assert isinstance(message, Response)
        return message


class InstantWriter:
    """Commits binding changes at once (the endpoint applies them from the future's callback)."""

    def submit(self, upserts: object, deletes: object) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        future.set_result(None)
        return future


def endpoint_for(people: Callable[[], Directory]) -> tuple[Endpoint, FakeTransports]:
    """An endpoint over fake transports and an instant binding writer, serving ``people``."""
    transports = FakeTransports()
    location = Location()
    endpoint = Endpoint(
        transports,  # type: ignore[arg-type]
        TransactionLayer(),
        Registrar(DigestAuthority(b"k" * 32), location, RegistrarPolicy()),
        location,
        InstantWriter(),  # type: ignore[arg-type]
        Guard(),
        people,
    )
    return endpoint, transports


@pytest.fixture
def endpoint() -> tuple[Endpoint, FakeTransports]:
    people = replace(directory(), clinics=MappingProxyType({DOMAIN: CLINIC}))
    return endpoint_for(lambda: people)


def raw_subscribe(cseq: int, method_auth: str = "", *, port: int = 4001, event: str = "dialog") -> bytes:
    return (
        f"SUBSCRIBE sip:1002@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:{port};branch=z9hG4bK-s{cseq};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:1001@{DOMAIN}>;tag=wa\r\nTo: <sip:1002@{DOMAIN}>\r\n"
        f"Call-ID: ep-blf@phone\r\nCSeq: {cseq} SUBSCRIBE\r\n"
        f"Contact: <sip:1001@192.0.2.10:{port}>\r\nEvent: {event}\r\nExpires: 600\r\n"
        f"{method_auth}Content-Length: 0\r\n\r\n"
    ).encode()


def proxy_authorization(challenge: Response, ext: str = "1001", password: str = "secret-1001") -> str:
    offer = challenge.header("proxy-authenticate") or ""
    nonce = re.search(r'nonce="([^"]+)"', offer)
    opaque = re.search(r'opaque="([^"]+)"', offer)
    assert nonce and opaque
    ha1 = compute_ha1("MD5", ext, DOMAIN, password)
    uri = f"sip:1002@{DOMAIN}"
    response = compute_response(
        "MD5", ha1, method="SUBSCRIBE", uri=uri, nonce=nonce.group(1), nc=1, cnonce="feed"
    )
    return (
        f'Proxy-Authorization: Digest username="{ext}", realm="{DOMAIN}", nonce="{nonce.group(1)}", '
        f'uri="{uri}", response="{response}", algorithm=MD5, cnonce="feed", qop=auth, nc=00000001, '
        f'opaque="{opaque.group(1)}"\r\n'
    )


def test_the_endpoint_challenges_a_subscribe_then_subscribes_and_routes_notify_answers(
    endpoint: tuple[Endpoint, FakeTransports],
) -> None:
    ep, transports = endpoint
    origin = Origin("udp", "192.0.2.10", 4001, LISTEN)
    ep.on_message(raw_subscribe(1), origin)
    [challenge] = transports.take()
    assert isinstance(challenge, Response) and challenge.status == 407
    assert "algorithm=MD5" in (challenge.header("proxy-authenticate") or "")
    assert len(ep.presence) == 0
    ep.on_message(raw_subscribe(2, proxy_authorization(challenge)), origin)
    ok, notify = transports.take()
    assert isinstance(ok, Response) and ok.status == 200 and ok.header("expires") == "600"
    assert isinstance(notify, Request) and notify.method == "NOTIFY"
    assert notify.header("subscription-state") == "active;expires=600"
    assert len(ep.presence) == 1
    # The phone answers the NOTIFY: the answer goes to the hub, not to call control.
    ep.on_message(make_response(notify, 200).to_bytes(), origin)
    ep.presence.line(DOMAIN, "1002", "k9", Phase.EARLY, Direction.RECIPIENT, False, 1.0)
    [early] = transports.take()
    assert isinstance(early, Request) and dialogs(early)[1] == [("k9", "recipient", "early")]
    ep.on_message(make_response(early, 481).to_bytes(), origin)
    assert len(ep.presence) == 0


def test_the_endpoint_refuses_a_wrong_password_and_counts_it(
    endpoint: tuple[Endpoint, FakeTransports],
) -> None:
    ep, transports = endpoint
    origin = Origin("udp", "192.0.2.10", 4001, LISTEN)
    ep.on_message(raw_subscribe(1), origin)
    [challenge] = transports.take()
    assert isinstance(challenge, Response)
    ep.on_message(raw_subscribe(2, proxy_authorization(challenge, password="guess")), origin)
    [again] = transports.take()
    assert isinstance(again, Response) and again.status == 407
    assert len(ep.presence) == 0


def test_a_registration_opens_presence_through_the_endpoint(
    endpoint: tuple[Endpoint, FakeTransports],
) -> None:
    ep, transports = endpoint
    watcher = Origin("udp", "192.0.2.10", 4001, LISTEN)
    ep.on_message(raw_subscribe(1, event="presence"), watcher)
    [challenge] = transports.take()
    assert isinstance(challenge, Response)
    ep.on_message(raw_subscribe(2, proxy_authorization(challenge), event="presence"), watcher)
    _, first = transports.take()
    assert isinstance(first, Request) and presence(first) == ("closed", "Logged off")
    ep.on_message(make_response(first, 200).to_bytes(), watcher)

    desk = Origin("udp", "192.0.2.20", 5002, LISTEN)
    register = (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5002;branch=z9hG4bK-r{{n}};rport\r\n"
        f"From: <sip:1002@{DOMAIN}>;tag=r\r\nTo: <sip:1002@{DOMAIN}>\r\nCall-ID: reg@desk\r\n"
        f"CSeq: {{n}} REGISTER\r\nContact: <sip:1002@192.0.2.20:5002>\r\nExpires: 600\r\n{{auth}}"
        "Content-Length: 0\r\n\r\n"
    )
    ep.on_message(register.format(n=1, auth="").encode(), desk)
    [unauthorized] = transports.take()
    assert isinstance(unauthorized, Response) and unauthorized.status == 401
    offer = unauthorized.header("www-authenticate") or ""
    nonce = re.search(r'nonce="([^"]+)"', offer)
    opaque = re.search(r'opaque="([^"]+)"', offer)
    assert nonce and opaque
    ha1 = compute_ha1("MD5", "1002", DOMAIN, "secret-1002")
    digest = compute_response(
        "MD5", ha1, method="REGISTER", uri=f"sip:{DOMAIN}", nonce=nonce.group(1), nc=1, cnonce="abc"
    )
    auth = (
        f'Authorization: Digest username="1002", realm="{DOMAIN}", nonce="{nonce.group(1)}", '
        f'uri="sip:{DOMAIN}", response="{digest}", algorithm=MD5, cnonce="abc", qop=auth, nc=00000001, '
        f'opaque="{opaque.group(1)}"\r\n'
    )
    ep.on_message(register.format(n=2, auth=auth).encode(), desk)
    registered, opened = transports.take()
    assert isinstance(registered, Response) and registered.status == 200
    assert isinstance(opened, Request) and presence(opened) == ("open", "Available")
    ep.on_message(make_response(opened, 200).to_bytes(), watcher)
    ep.bindings_expired(ep.location.expire(10**12))
    [closed] = transports.take()
    assert isinstance(closed, Request) and presence(closed) == ("closed", "Logged off")


# -- park slots ------------------------------------------------------------------------------------


def test_a_park_slot_can_be_watched_and_is_lit_while_a_call_is_parked_on_it(world: World) -> None:
    lot = ParkLotEntry(DOMAIN, "main", "700", "701", "702")
    world.directory = replace(
        world.directory,
        numbers=MappingProxyType({(DOMAIN, n): lot for n in ("700", *lot.slots)}),
        park_lots=MappingProxyType({(DOMAIN, "main"): lot}),
    )
    assert Phone(world, call_id="park-number").subscribe("700").status == 404  # not a slot
    phone = Phone(world)
    assert phone.subscribe("701").status == 200
    first = phone.take()
    assert ET.fromstring(first.body).findall(f"{DI}dialog") == []
    world.call("701", Phase.CONFIRMED, key="parked-call")
    found = [d.findtext(f"{DI}state") for d in ET.fromstring(phone.take().body).findall(f"{DI}dialog")]
    assert found == ["confirmed"] and world.hub.lamp(DOMAIN, "701") is Lamp.BUSY
    world.call("701", Phase.TERMINATED, key="parked-call")
    assert world.hub.lamp(DOMAIN, "701") is Lamp.IDLE
    phone.take()
    # The lot removed: the slot's watchers are told there is nothing to watch any more.
    world.directory = replace(directory(2), clinics=world.directory.clinics)
    world.hub.directory_changed(1.0)
    last = phone.notifies()[-1][0]
    assert (last.header("subscription-state") or "").startswith("terminated")
