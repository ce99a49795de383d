"""Trunk registration and health on a fake clock through a fake port.

Tests play the carrier: a registrar that challenges with our own ``DigestAuthority`` (so the
answers are checked by real verification, not by reading them back) and answers OPTIONS, or
stays silent. Responses are fed to ``Trunks`` as ``Response`` objects; timeouts as Timer F would
report them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import pytest
from structlog.testing import capture_logs

from sentral.config.directory import ClinicEntry, Directory, TrunkEntry
from sentral.config.store import TrunkState
from sentral.pbx.sip.auth import DigestAuthority, Verdict, compute_ha1, parse_credentials
from sentral.pbx.sip.message import Request, Response, make_response, parse_message
from sentral.pbx.sip.transaction import ClientTransaction, TransactionLayer
from sentral.pbx.transport import Origin, Target
from sentral.pbx.trunks import KEEPALIVE, LineState, TrunkLine, Trunks
from tests.protocol.test_presence import LISTEN, endpoint_for

DOMAIN = "clinic.test"
CARRIER = "192.0.2.10"
REALM = "carrier.example"
USER = "4722334455"
PASSWORD = "trunk-secret-9"
LOCAL = ("198.51.100.5", 5060)


def trunk(name: str = "carrier", **changes: object) -> TrunkEntry:
    entry = TrunkEntry(
        domain=DOMAIN,
        name=name,
        host=CARRIER,
        port=5060,
        transport="udp",
        priority=10,
        register=True,
        username=USER,
        password=PASSWORD,
        realm=None,
    )
    return replace(entry, **changes)  # type: ignore[arg-type]


def directory(*entries: TrunkEntry) -> Directory:
    by_domain: dict[str, list[TrunkEntry]] = {}
    for entry in entries:
        by_domain.setdefault(entry.domain, []).append(entry)
    return Directory(
        1,
        MappingProxyType({DOMAIN: ClinicEntry(DOMAIN, "Clinic", ("MD5",))}),
        MappingProxyType({}),
        trunks=MappingProxyType(
            {d: tuple(sorted(e, key=lambda t: (t.priority, t.name))) for d, e in by_domain.items()}
        ),
    )


@dataclass
class FakePort:
    """Records what the trunks send; client transactions are real ones of a private layer."""

    layer: TransactionLayer = field(default_factory=TransactionLayer)
    sent: list[tuple[Request, Target, ClientTransaction]] = field(default_factory=list)

    def send_request(self, request: Request, target: Target) -> ClientTransaction:
        tx, _ = self.layer.send_request(request, (target.host, target.port), False, 0.0)
        self.sent.append((request, target, tx))
        return tx

    def local_address(self, target: Target) -> tuple[str, int]:
        return LOCAL


class World:
    """Trunks, their fake port, the directory they follow, and a carrier's digest authority."""

    def __init__(self, *entries: TrunkEntry, now: float = 1000.0) -> None:
        self.port = FakePort()
        self.dir = directory(*entries)
        self.trunks = Trunks(self.port, lambda: self.dir)
        self.carrier = DigestAuthority(b"the carrier's secret, 32 bytes!!")
        self.now = now
        self.seen = 0
        self.trunks.reconfigure(now)
        self.fire()  # as the endpoint does: its timer runs at the deadline reconfigure set

    def set(self, *entries: TrunkEntry) -> None:
        self.dir = directory(*entries)
        self.trunks.reconfigure(self.now)
        self.fire()

    def tick(self, to: float) -> None:
        """Advance the clock to ``to``, firing the trunks' timer whenever it is due."""
        while True:
            deadline = self.trunks.next_deadline()
            if deadline is None or deadline > to:
                break
            self.now = max(self.now, deadline)
            self.trunks.on_timer(self.now)
        self.now = to

    def fire(self) -> None:
        """Run the timer at the current time."""
        self.trunks.on_timer(self.now)

    def new(self, method: str | None = None) -> list[tuple[Request, Target, ClientTransaction]]:
        """What was sent since the last look (of ``method`` only, if given; the rest is dropped)."""
        fresh = self.port.sent[self.seen :]
        self.seen = len(self.port.sent)
        return [item for item in fresh if method is None or item[0].method == method]

    def one(self, method: str) -> tuple[Request, Target, ClientTransaction]:
        found = self.new(method)
        assert len(found) == 1, [r.method for r, _, _ in found]
        return found[0]

    def answer(
        self,
        sent: tuple[Request, Target, ClientTransaction],
        status: int,
        headers: list[tuple[str, str]] | None = None,
    ) -> bool:
        request, _, tx = sent
        response = make_response(request, status, to_tag="carrier", headers=headers or [])
        return self.trunks.on_response(tx, response, self.now)

    def challenge(
        self,
        sent: tuple[Request, Target, ClientTransaction],
        status: int = 401,
        *,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        stale: bool = False,
        values: tuple[str, ...] | None = None,
    ) -> tuple[str, ...]:
        header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        if values is None:
            values = self.carrier.challenge(REALM, self.now, algorithms=algorithms, stale=stale)
        self.answer(sent, status, [(header, value) for value in values])
        return values

    def verify(self, request: Request, header: str = "Authorization") -> Verdict:
        value = request.header(header)
        assert value is not None, f"no {header}"
        creds = parse_credentials(value)
        return self.carrier.verify(
            "REGISTER", creds, compute_ha1(creds.algorithm, USER, REALM, PASSWORD), self.now
        )

    def register(self, expires: int = 120) -> tuple[Request, Target, ClientTransaction]:
        """Take a REGISTER through a 401 to a 200 granting ``expires``."""
        self.challenge(self.one("REGISTER"))
        sent = self.one("REGISTER")
        assert self.verify(sent[0]) is Verdict.OK
        self.answer(sent, 200, [("Contact", f"<sip:{USER}@{LOCAL[0]}:{LOCAL[1]}>;expires={expires}")])
        return sent

    def line(self, name: str = "carrier") -> TrunkLine:
        found = self.trunks.line(DOMAIN, name)
        assert found is not None
        return found


# -- registration ------------------------------------------------------------------------------


def test_registers_with_digest_and_the_request_says_who_and_where() -> None:
    world = World(trunk())
    line = world.line()
    assert line.state is LineState.REGISTERING
    assert not line.usable(world.now)
    request, target, _ = world.one("REGISTER")
    assert (target.transport, target.host, target.port) == ("udp", CARRIER, 5060)
    assert request.uri_text == f"sip:{CARRIER}"
    assert str(request.to.uri) == f"sip:{USER}@{CARRIER}"
    assert str(request.from_.uri) == f"sip:{USER}@{CARRIER}"
    assert request.from_tag
    assert request.header("Contact") == f"<sip:{USER}@{LOCAL[0]}:{LOCAL[1]}>"
    assert request.expires == 3600
    assert request.header("Authorization") is None

    world.challenge((request, target, _))
    second = world.one("REGISTER")
    assert world.verify(second[0]) is Verdict.OK
    assert parse_credentials(second[0].header("Authorization") or "").algorithm == "SHA-256"
    assert second[0].call_id == request.call_id
    assert second[0].cseq.seq == request.cseq.seq + 1
    assert PASSWORD not in bytes(second[0]).decode()

    with capture_logs() as logs:
        world.answer(second, 200, [("Contact", f"<sip:{USER}@{LOCAL[0]}:{LOCAL[1]}>;expires=120")])
    assert line.state is LineState.REGISTERED
    assert line.last_status == 200
    assert line.usable(world.now)
    assert [e["event"] for e in logs] == ["trunk_registered"]


def test_md5_only_carrier_gets_md5() -> None:
    world = World(trunk())
    world.challenge(world.one("REGISTER"), algorithms=("MD5",))
    sent = world.one("REGISTER")
    assert parse_credentials(sent[0].header("Authorization") or "").algorithm == "MD5"
    assert world.verify(sent[0]) is Verdict.OK


def test_proxy_challenge_is_answered_with_proxy_authorization() -> None:
    world = World(trunk())
    world.challenge(world.one("REGISTER"), 407)
    sent = world.one("REGISTER")
    assert sent[0].header("Authorization") is None
    assert world.verify(sent[0], "Proxy-Authorization") is Verdict.OK


def test_refreshes_at_half_the_granted_time_before_it_runs_out() -> None:
    world = World(trunk())
    first = world.register(expires=120)
    assert world.trunks.next_deadline() == pytest.approx(world.now + 60)
    world.new()
    world.tick(world.now + 59)
    assert world.new("REGISTER") == []
    world.tick(world.now + 1)
    refresh = world.one("REGISTER")
    assert refresh[0].call_id == first[0].call_id
    assert refresh[0].from_tag == first[0].from_tag
    assert refresh[0].cseq.seq > first[0].cseq.seq
    # Granted in the Expires header when the Contact carries no time of its own.
    world.challenge(refresh)
    sent = world.one("REGISTER")
    world.answer(sent, 200, [("Expires", "600")])
    world.new()
    world.tick(world.now + 299)
    assert world.new("REGISTER") == []
    world.tick(world.now + 1)
    assert len(world.new("REGISTER")) == 1
    assert world.line().state is LineState.REGISTERED


def test_wrong_password_fails_with_the_status_and_retries_with_backoff() -> None:
    world = World(trunk(password="not-the-password"))
    values = world.challenge(world.one("REGISTER"))
    sent = world.one("REGISTER")
    assert world.verify(sent[0]) is Verdict.FAILED
    # The carrier refuses the answer by challenging again with the same nonce.
    with capture_logs() as logs:
        world.challenge(sent, values=values)
    line = world.line()
    assert line.state is LineState.FAILED
    assert line.last_status == 401
    assert not line.usable(world.now)
    assert world.new("REGISTER") == []
    failed = [e for e in logs if e["event"] == "trunk_registration_failed"]
    assert len(failed) == 1 and failed[0]["status"] == 401 and failed[0]["log_level"] == "warning"
    assert "not-the-password" not in repr(logs)

    # 30 s, then 60, 120, ... up to 10 minutes between attempts.
    waits = []
    for _ in range(7):
        start = world.now
        deadline = world.now
        while True:
            world.tick(world.now + 1)
            found = world.new("REGISTER")
            if found:
                deadline = world.now
                break
        waits.append(round(deadline - start))
        world.answer(found[0], 403)
        assert line.state is LineState.FAILED and line.last_status == 403
    assert waits == [30, 60, 120, 240, 480, 600, 600]


def test_a_stale_nonce_is_answered_again() -> None:
    world = World(trunk())
    values = world.challenge(world.one("REGISTER"))
    sent = world.one("REGISTER")
    stale = tuple(value + ", stale=true" for value in values)
    world.challenge(sent, values=stale)
    again = world.one("REGISTER")
    assert world.line().state is LineState.REGISTERING
    assert again[0].header("Authorization") is not None


def test_a_new_nonce_is_answered_but_not_forever() -> None:
    world = World(trunk(password="wrong"))
    sent = world.one("REGISTER")
    for _ in range(3):
        world.challenge(sent)
        sent = world.one("REGISTER")
    world.challenge(sent)
    assert world.new("REGISTER") == []
    assert world.line().state is LineState.FAILED
    assert world.line().last_status == 401


@pytest.mark.parametrize("status", [403, 404, 503])
def test_final_errors_fail_with_their_status(status: int) -> None:
    world = World(trunk())
    world.answer(world.one("REGISTER"), status)
    assert world.line().state is LineState.FAILED
    assert world.line().last_status == status


def test_no_answer_fails_and_is_retried() -> None:
    world = World(trunk())
    _, _, tx = world.one("REGISTER")
    assert world.trunks.on_timeout(tx, world.now)
    line = world.line()
    assert line.state is LineState.FAILED
    assert line.last_status is None
    world.tick(world.now + 30)
    assert len(world.new("REGISTER")) == 1


def test_challenge_we_cannot_answer_fails() -> None:
    world = World(trunk())
    world.challenge(world.one("REGISTER"), values=('Digest realm="x", nonce="n", algorithm=SHA-512-256',))
    assert world.line().state is LineState.FAILED
    assert world.new("REGISTER") == []


def test_interval_too_brief_asks_again_with_the_minimum() -> None:
    world = World(trunk())
    world.answer(world.one("REGISTER"), 423, [("Min-Expires", "7200")])
    assert world.one("REGISTER")[0].expires == 7200


def test_responses_to_others_are_not_ours() -> None:
    world = World(trunk())
    other = FakePort().send_request(
        Request.build("OPTIONS", "sip:x", [("Via", "SIP/2.0/UDP h;branch=z9hG4bKx")]), Target("udp", "h", 1)
    )
    assert not world.trunks.on_response(other, Response.build(200, None, []), world.now)
    assert not world.trunks.on_timeout(other, world.now)


# -- keepalive and health ----------------------------------------------------------------------


def trusted(name: str = "carrier", **changes: object) -> TrunkEntry:
    return trunk(name, register=False, username=None, password=None, **changes)


def test_options_every_30_s_and_three_failures_mark_it_down() -> None:
    world = World(trusted())
    line = world.line()
    assert line.state is LineState.UP and line.usable(world.now)
    options = world.one("OPTIONS")
    assert options[0].uri_text == f"sip:{CARRIER}:5060"
    world.answer(options, 200)
    world.tick(world.now + 29)
    assert world.new("OPTIONS") == []
    world.tick(world.now + 1)
    sent = world.one("OPTIONS")
    assert world.trunks.on_timeout(sent[2], world.now)
    world.tick(world.now + KEEPALIVE)
    world.answer(world.one("OPTIONS"), 503)
    assert line.state is LineState.UP
    world.tick(world.now + KEEPALIVE)
    with capture_logs() as logs:
        world.answer(world.one("OPTIONS"), 408)
    assert line.state is LineState.DOWN
    assert not line.usable(world.now)
    assert [(e["event"], e["log_level"]) for e in logs] == [("trunk_down", "warning")]
    # It keeps being asked, and any answer brings it back.
    world.tick(world.now + KEEPALIVE)
    with capture_logs() as logs:
        world.answer(world.one("OPTIONS"), 404)
    assert line.state is LineState.UP and line.usable(world.now)
    assert [(e["event"], e["log_level"]) for e in logs] == [("trunk_up", "info")]


def test_an_answer_between_failures_starts_the_count_again() -> None:
    world = World(trusted())
    line = world.line()
    for status in (503, 503, 200, 503, 503):
        world.answer(world.one("OPTIONS"), status)
        world.tick(world.now + KEEPALIVE)
    assert line.state is LineState.UP


def test_down_registered_trunk_comes_back_registered() -> None:
    world = World(trunk())
    first = next(tx for request, _, tx in world.port.sent if request.method == "OPTIONS")
    world.register(expires=3600)
    line = world.line()
    world.trunks.on_timeout(first, world.now)
    for _ in range(2):
        world.tick(world.now + KEEPALIVE)
        _, _, tx = world.one("OPTIONS")
        world.trunks.on_timeout(tx, world.now)
    assert line.state is LineState.DOWN
    world.tick(world.now + KEEPALIVE)
    world.answer(world.one("OPTIONS"), 200)
    assert line.state is LineState.REGISTERED


def test_calls_failing_mark_it_down_and_busy_is_no_failure() -> None:
    world = World(trusted())
    line = world.line()
    line.call_failed(503, world.now)
    line.call_failed(None, world.now)
    line.call_failed(486, world.now)  # the callee was busy: the carrier works
    line.call_failed(408, world.now)
    line.call_failed(500, world.now)
    assert line.state is LineState.UP
    line.call_failed(None, world.now)
    assert line.state is LineState.DOWN
    line.call_answered(world.now)
    assert line.state is LineState.UP


def test_an_answer_to_a_keepalive_sent_before_calls_marked_it_down_does_not_bring_it_back() -> None:
    world = World(trusted())
    line = world.line()
    early = world.one("OPTIONS")  # in flight while the calls fail
    for _ in range(3):
        line.call_failed(503, world.now + 1)
    assert line.state is LineState.DOWN
    world.answer(early, 200)
    assert line.state is LineState.DOWN
    world.tick(world.now + KEEPALIVE)
    world.answer(world.one("OPTIONS"), 200)
    assert line.state is LineState.UP


# -- the set of trunks ---------------------------------------------------------------------------


def test_lines_in_priority_order_and_states_for_publishing() -> None:
    world = World(trusted("b", priority=5), trusted("a", priority=5), trusted("first", priority=1))
    assert [line.entry.name for line in world.trunks.lines(DOMAIN)] == ["first", "a", "b"]
    assert world.trunks.lines("other.test") == []
    world.line("a").calls = 2
    assert world.trunks.states() == [
        TrunkState(DOMAIN, "first", "up", None, None, 0),
        TrunkState(DOMAIN, "a", "up", None, None, 2),
        TrunkState(DOMAIN, "b", "up", None, None, 0),
    ]


def test_for_source_knows_the_host_and_the_extra_addresses() -> None:
    world = World(
        trusted("one", addresses=("203.0.113.7", "10.20.0.0/16", "2001:db8::/32")),
        trusted("two", host="192.0.2.99"),
    )
    assert world.trunks.for_source(CARRIER) is world.line("one")
    assert world.trunks.for_source("203.0.113.7") is world.line("one")
    assert world.trunks.for_source("10.20.5.6") is world.line("one")
    assert world.trunks.for_source("2001:db8:0::1") is world.line("one")
    assert world.trunks.for_source("192.0.2.99") is world.line("two")
    assert world.trunks.for_source("10.21.0.1") is None
    assert world.trunks.for_source("not an address") is None


def test_a_host_name_is_resolved_off_the_timer_and_nothing_goes_out_before() -> None:
    world = World(trunk(host="sip.carrier.example"))
    line = world.line()
    assert world.new() == []
    assert world.trunks.next_deadline() is None
    assert world.trunks.names_to_resolve(world.now) == ["sip.carrier.example"]
    assert world.trunks.names_to_resolve(world.now) == []  # under way
    with capture_logs() as logs:
        world.trunks.resolved("sip.carrier.example", None, world.now)
    assert line.state is LineState.FAILED and line.detail == "host name does not resolve"
    assert not line.usable(world.now)
    assert [e["event"] for e in logs] == ["trunk_host_unresolved"]
    assert world.trunks.names_to_resolve(world.now + 29) == []
    assert world.trunks.names_to_resolve(world.now + 30) == ["sip.carrier.example"]
    world.trunks.resolved("sip.carrier.example", ["192.0.2.50", "192.0.2.51"], world.now)
    world.fire()
    request, target, _ = world.one("REGISTER")
    assert target.host == "192.0.2.50"
    assert request.uri_text == "sip:sip.carrier.example"
    assert str(request.to.uri) == f"sip:{USER}@sip.carrier.example"
    assert world.trunks.for_source("192.0.2.51") is line
    # A passing DNS failure keeps the addresses it had.
    world.trunks.resolved("sip.carrier.example", [], world.now)
    assert world.trunks.for_source("192.0.2.51") is line
    # An address asked about before the name resolved to it is the trunk's once it does.
    assert world.trunks.for_source("192.0.2.52") is None
    world.trunks.resolved("sip.carrier.example", ["192.0.2.52"], world.now)
    assert world.trunks.for_source("192.0.2.52") is line


def test_trusted_trunk_with_a_name_that_does_not_resolve_is_down() -> None:
    world = World(trusted(host="nowhere.invalid"))
    world.trunks.resolved(world.trunks.names_to_resolve(world.now)[0], None, world.now)
    assert world.line().state is LineState.DOWN


def test_removing_a_registered_trunk_deregisters_it() -> None:
    world = World(trunk(), trusted("spare", host="192.0.2.20"))
    first = world.register()
    world.new()
    world.set(trusted("spare", host="192.0.2.20"))
    assert world.trunks.line(DOMAIN, "carrier") is None
    sent = world.one("REGISTER")
    assert sent[0].expires == 0
    assert sent[0].call_id == first[0].call_id
    # Its deregistration is answered through a challenge too.
    world.challenge(sent)
    again = world.one("REGISTER")
    assert again[0].expires == 0
    assert world.verify(again[0]) is Verdict.OK
    assert world.trunks.leaving == 1
    world.answer(again, 200)
    assert world.trunks.leaving == 0
    world.tick(world.now + 3600)
    assert all(target.host == "192.0.2.20" for _, target, _ in world.new())


def test_a_new_priority_keeps_the_registration_and_a_new_password_registers_again() -> None:
    world = World(trunk())
    world.register()
    world.new()
    world.set(trunk(priority=1))
    assert world.new() == []
    assert world.line().state is LineState.REGISTERED
    world.set(trunk(priority=1, password="new-secret"))
    unregister, register = world.new("REGISTER")
    assert unregister[0].expires == 0
    assert register[0].expires == 3600
    assert register[0].call_id != unregister[0].call_id
    assert world.line().state is LineState.REGISTERING


def test_disabled_trunk_sends_nothing_and_is_unregistered() -> None:
    world = World(trunk(enabled=False))
    world.tick(world.now + 3600)
    assert world.new() == []
    assert world.line().state is LineState.UNREGISTERED
    assert not world.line().usable(world.now)
    assert world.trunks.for_source(CARRIER) is None


def test_stop_deregisters_every_registered_trunk() -> None:
    world = World(trunk(), trusted("third", host="192.0.2.12"))
    world.register()
    world.new()
    world.trunks.stop(world.now)
    sent = world.new()
    assert [(request.method, request.expires, target.host) for request, target, _ in sent] == [
        ("REGISTER", 0, CARRIER)
    ]
    assert world.trunks.states() == []
    assert world.trunks.next_deadline() is None
    assert world.trunks.on_timeout(sent[0][2], world.now)
    assert world.trunks.leaving == 0


# -- through the endpoint ------------------------------------------------------------------------


def test_the_endpoint_sends_for_the_trunks_and_hands_them_their_answers() -> None:
    carrier = DigestAuthority(b"the carrier's secret, 32 bytes!!")
    trunks = directory(trunk())
    endpoint, transports = endpoint_for(lambda: trunks)

    async def scenario() -> list[Request]:
        endpoint.attach(asyncio.get_running_loop())
        endpoint.trunks_changed()
        await asyncio.sleep(0.05)  # the endpoint's timer runs the trunks' first deadline
        sent = [parse_message(data) for data, _ in transports.sent]
        register = next(m for m in sent if isinstance(m, Request) and m.method == "REGISTER")
        headers = [("WWW-Authenticate", value) for value in carrier.challenge(REALM, time.time())]
        response = make_response(register, 401, to_tag="carrier", headers=headers)
        transports.sent.clear()
        endpoint.on_message(response.to_bytes(), Origin("udp", CARRIER, 5060, LISTEN))
        return [m for m in (parse_message(data) for data, _ in transports.sent) if isinstance(m, Request)]

    again = asyncio.run(scenario())
    assert [request.method for request in again] == ["REGISTER"]
    creds = parse_credentials(again[0].header("Authorization") or "")
    assert carrier.verify(
        "REGISTER", creds, compute_ha1(creds.algorithm, USER, REALM, PASSWORD), time.time()
    ) is (Verdict.OK)
