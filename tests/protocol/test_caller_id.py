"""Caller ID on the call path, on a fake clock: a call from outside waits for the clinic's records
no longer than the budget, a late answer still reaches the live call and the record, and the
national-ID prompt (valid, invalid, silence) routes the call on."""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass, field
from enum import Enum

import pytest
from structlog.testing import capture_logs

from sentral.media.dtmf import Digit
from sentral.pbx.call import Call, Caller, CallerIdentity, CallState
from sentral.pbx.caller_id import CallerId, Chain
from sentral.pbx.features.national_id import PROMPT, RETRY, SILENCE, TRIES, valid_national_id
from sentral.pbx.sip.message import Request
from sentral.pbx.sip.transaction import CancelReceived, RequestReceived
from sentral.pbx.transport import Origin
from tests.protocol.clinic import DOMAIN, LISTEN, Clinic
from tests.protocol.clinic import PROMPT as PROMPT_LASTS
from tests.protocol.test_call import SDP_A, head_of, parse

PATIENT = "+4791234567"
CARRIER = 5070
BUDGET = 0.150
# A valid Norwegian fødselsnummer (python-stdnum's example), the D-number of the same person,
# and one with a wrong check digit.
FNR = "15108695088"
D_NUMBER = "55108695071"
WRONG = "15108695077"


class Kind(Enum):
    PATIENT = "patient"


@dataclass(frozen=True, slots=True)
class Match:
    name: str
    kind: Kind
    reference: str
    source: str


KARI = Match("Kari Nordmann", Kind.PATIENT, "patient/42", "journal")


@dataclass
class FakeChain:
    """A lookup chain whose answers the test gives, when it likes: each lookup waits on a future."""

    numbers: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    pending: list[asyncio.Future[Match | None]] = field(default_factory=list)

    async def by_number(self, e164: str) -> Match | None:
        self.numbers.append(e164)
        return await self._wait()

    async def by_national_id(self, national_id: str) -> Match | None:
        self.ids.append(national_id)
        return await self._wait()

    async def _wait(self) -> Match | None:
        future: asyncio.Future[Match | None] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return await future

    def answer(self, match: Match | None) -> None:
        self.pending.pop(0).set_result(match)


@dataclass
class Lookups:
    chains: dict[str, Chain]

    def chain(self, domain: str) -> Chain | None:
        return self.chains.get(domain)

    def budget(self, domain: str) -> float:
        return BUDGET


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def call_in(c: Clinic, now: float = 0.0, number: str = "1002", hold: float | None = BUDGET) -> Call:
    """A call from the patient's number through the carrier to ``number``, its routing held for
    ``hold`` seconds (None: not held)."""
    c.n += 1
    request = parse(
        f"INVITE sip:{number}@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{CARRIER};branch=z9hG4bK-{c.n}-in;rport\r\nMax-Forwards: 70\r\n"
        f"From: <sip:{PATIENT}@carrier.test>;tag=in{c.n}\r\nTo: <sip:{number}@{DOMAIN}>\r\n"
        f"Call-ID: in-{c.n}@carrier\r\nCSeq: 1 INVITE\r\nContact: <sip:{PATIENT}@127.0.0.1:{CARRIER}>\r\n"
        "Content-Type: application/sdp\r\n",
        SDP_A,
    )
    [event, *_] = c.layer.receive(request, ("127.0.0.1", CARRIER), False, now)
    assert isinstance(event, RequestReceived)
    caller = Caller(c.clinic, PATIENT, "", outside=True, trunk="carrier")
    call = c.cc.on_invite(
        event.tx,
        request,
        Origin("udp", "127.0.0.1", CARRIER, LISTEN),
        caller,
        now,
        hold_until=None if hold is None else now + hold,
    )
    assert call is not None
    return call


def from_of(invite: Request) -> str:
    return invite.header("from") or ""


def test_a_held_call_rings_with_the_number_when_the_budget_has_passed() -> None:
    c = Clinic()
    call = call_in(c)
    assert c.invites("1002") == []
    assert c.cc.next_deadline() == pytest.approx(BUDGET)
    c.tick(BUDGET - 0.001)
    assert c.invites("1002") == []
    c.tick(BUDGET)
    [(invite, _)] = c.invites("1002")
    assert from_of(invite).startswith(f"<sip:{PATIENT}@{DOMAIN}>")
    assert invite.header("p-asserted-identity") is None
    assert call.routing is None


def test_an_answer_within_the_budget_names_the_caller_in_from_and_p_asserted_identity() -> None:
    c = Clinic()
    call = call_in(c)
    c.cc.identify(call.id, CallerIdentity("Kari Nordmann", "patient", "patient/42", "journal"), 0.05)
    c.cc.release(call.id, 0.05)
    [(invite, _)] = c.invites("1002")
    assert from_of(invite).startswith(f'"Kari Nordmann" <sip:{PATIENT}@{DOMAIN}>')
    assert invite.header("p-asserted-identity") == f'"Kari Nordmann" <sip:{PATIENT}@{DOMAIN}>'
    c.tick(BUDGET)  # the budget passing later changes nothing
    assert len(c.invites("1002")) == 1


def test_a_late_answer_reaches_the_live_call_and_the_record() -> None:
    c = Clinic()
    call = call_in(c)
    c.tick(BUDGET)
    assert len(c.invites("1002")) == 1
    c.cc.identify(call.id, CallerIdentity("Kari Nordmann", "patient", "patient/42", "journal"), 0.4)
    [live] = c.cc.live()
    assert (live.caller, live.caller_name, live.caller_kind, live.caller_reference, live.caller_source) == (
        PATIENT, "Kari Nordmann", "patient", "patient/42", "journal"
    )  # fmt: skip
    c.cc.hang_up(call, "test", 5.0)
    [report] = c.port.reports
    assert (report.caller, report.caller_name, report.caller_kind, report.caller_reference) == (
        PATIENT, "Kari Nordmann", "patient", "patient/42"
    )  # fmt: skip
    assert report.caller_source == "journal"


def test_a_call_not_held_is_routed_at_once_and_a_staff_caller_keeps_the_staff_name() -> None:
    c = Clinic()
    call_in(c, hold=None)
    assert len(c.invites("1002")) == 1
    c.dial("1001", "1003")
    [(invite, _)] = c.invites("1003")
    assert from_of(invite).startswith('"1001" <sip:1001@')
    assert invite.header("p-asserted-identity") is None


def test_a_caller_who_gives_up_while_held_ends_the_call_and_a_later_answer_changes_nothing() -> None:
    c = Clinic()
    call = call_in(c)
    cancel = parse(head_of(call.invite, "CANCEL"))
    [event, *_] = c.layer.receive(cancel, ("127.0.0.1", CARRIER), False, 0.05)
    assert isinstance(event, CancelReceived)
    c.cc.on_cancel(event.tx, cancel, event.invite_tx, 0.05)
    assert c.port.statuses(event.invite_tx)[-1] == 487
    c.tick(BUDGET)
    assert c.invites("1002") == []
    c.cc.identify(call.id, CallerIdentity("Kari Nordmann", "patient", "patient/42", "journal"), 0.4)
    c.cc.release(call.id, 0.4)
    assert c.invites("1002") == []
    [report] = c.port.reports
    assert (report.cause, report.caller_name, report.caller_kind) == ("CANCEL", "", "")


# -- the lookup task, with a fake chain ------------------------------------------------------------


class World:
    """Call control, the caller-ID lookups with a fake chain, and a fake clock."""

    def __init__(self, country: str = "NO") -> None:
        from dataclasses import replace

        from tests.protocol.test_call import CLINIC

        self.c = Clinic(clinic=replace(CLINIC, country=country))
        self.chain = FakeChain()
        self.clock = Clock()
        self.scheduled = 0
        self.ids = CallerId(self.c.cc, Lookups({DOMAIN: self.chain}), self._schedule, self.clock)

    def _schedule(self) -> None:
        self.scheduled += 1

    def call(self, ask_id: bool = False) -> Call:
        found = self.ids.chain(DOMAIN)
        assert found is not None
        chain, budget = found
        call = call_in(self.c, self.clock.now, hold=budget)
        self.ids.start(call, chain, PATIENT, ask_id=ask_id)
        return call

    def at(self, now: float) -> None:
        self.clock.now = now
        self.c.tick(now)

    def keys(self, call: Call, keys: str, start: float) -> float:
        for i, key in enumerate(keys):
            self.at(start + 0.3 * i)
            self.c.cc.digit(call.id, "a", Digit(key), self.clock.now)
        return start + 0.3 * len(keys)


async def turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_the_chain_answering_in_time_names_the_caller_at_once() -> None:
    async def scenario() -> None:
        w = World()
        call = w.call()
        await turn()
        assert w.chain.numbers == [PATIENT]
        w.clock.now = 0.02
        w.chain.answer(KARI)
        await turn()
        [(invite, _)] = w.c.invites("1002")
        assert from_of(invite).startswith('"Kari Nordmann" <sip:')
        assert call.caller.reference == "patient/42"
        assert len(w.ids) == 0

    asyncio.run(scenario())


def test_a_chain_that_hangs_does_not_hold_ringing_past_the_budget_and_its_late_answer_is_kept() -> None:
    async def scenario() -> None:
        w = World()
        call = w.call()
        await turn()
        w.at(BUDGET)
        [(invite, _)] = w.c.invites("1002")
        assert "Kari" not in from_of(invite)
        w.clock.now = 2.0
        w.chain.answer(KARI)
        await turn()
        assert len(w.c.invites("1002")) == 1  # rung once, with the number
        [live] = w.c.cc.live()
        assert live.caller_name == "Kari Nordmann"
        w.c.cc.hang_up(call, "test", 3.0)
        assert w.c.port.reports[0].caller_reference == "patient/42"

    asyncio.run(scenario())


def test_a_call_that_ends_stops_its_lookup_and_close_stops_them_all() -> None:
    async def scenario() -> None:
        w = World()
        first = w.call()
        w.call()
        await turn()
        assert len(w.ids) == 2
        w.ids.forget(first.id)
        await turn()
        assert len(w.ids) == 1
        await w.ids.close()
        assert len(w.ids) == 0
        assert all(future.cancelled() for future in w.chain.pending)

    asyncio.run(scenario())


# -- the national-ID prompt -----------------------------------------------------------------------


def test_national_ids_are_checked_for_the_clinics_country() -> None:
    assert valid_national_id(FNR, "NO") == FNR
    assert valid_national_id(D_NUMBER, "NO") == D_NUMBER
    assert valid_national_id(WRONG, "NO") is None
    assert valid_national_id(FNR[:10], "NO") is None
    assert valid_national_id("8112289874", "SE") == "8112289874"
    assert valid_national_id("198112289874", "SE") == "198112289874"
    assert valid_national_id("8112289875", "SE") is None
    assert valid_national_id("2110625629", "DK") == "2110625629"
    assert valid_national_id("131052308", "FI", datetime.date(2026, 1, 1)) == "131052-308T"
    assert valid_national_id(FNR, "SE") is None
    assert valid_national_id(FNR, "US") is None


def asked(w: World) -> Call:
    """A call whose number the records do not know, to a number that asks: the prompt plays."""
    call = w.call(ask_id=True)
    return call


def test_a_valid_national_id_is_looked_up_and_the_call_rings_with_the_name() -> None:
    async def scenario() -> None:
        w = World()
        with capture_logs() as logs:
            call = asked(w)
            await turn()
            w.chain.answer(None)
            await turn()
            assert w.c.invites("1002") == []
            assert ("play", "a", PROMPT) in w.c.media.asked
            assert 183 in w.c.port.statuses()
            w.at(PROMPT_LASTS)  # the prompt has played: the keys' clock runs
            end = w.keys(call, FNR + "#", PROMPT_LASTS + 1)
            await turn()
            assert w.chain.ids == [FNR]
            assert w.c.invites("1002") == []
            w.clock.now = end + 0.05
            w.chain.answer(KARI)
            await turn()
            [(invite, _)] = w.c.invites("1002")
            assert from_of(invite).startswith('"Kari Nordmann" <sip:')
            w.c.cc.hang_up(call, "test", end + 5)
        [report] = w.c.port.reports
        assert report.caller_reference == "patient/42"
        assert FNR not in repr(report) and FNR not in repr(logs)

    asyncio.run(scenario())


def test_an_id_lookup_that_hangs_routes_the_call_on_at_the_budget() -> None:
    async def scenario() -> None:
        w = World()
        call = asked(w)
        await turn()
        w.chain.answer(None)
        await turn()
        end = w.keys(call, D_NUMBER + "#", 1.0)
        await turn()
        assert w.chain.ids == [D_NUMBER]
        w.at(end + BUDGET)
        [(invite, _)] = w.c.invites("1002")
        assert from_of(invite).startswith(f"<sip:{PATIENT}@")

    asyncio.run(scenario())


def test_invalid_numbers_get_the_retry_prompt_and_after_three_the_call_goes_on_as_unknown() -> None:
    async def scenario() -> None:
        w = World()
        with capture_logs() as logs:
            call = asked(w)
            await turn()
            w.chain.answer(None)
            await turn()
            start = 1.0
            for attempt in range(1, TRIES + 1):
                start = w.keys(call, WRONG + "#", start) + 3.0
                if attempt < TRIES:
                    assert w.c.media.asked.count(("play", "a", RETRY, PROMPT)) == attempt
                    assert w.c.invites("1002") == []
            await turn()
            assert w.chain.ids == []
            [(invite, _)] = w.c.invites("1002")
            assert from_of(invite).startswith(f"<sip:{PATIENT}@")
            assert call.state is CallState.RINGING
        assert WRONG not in repr(logs)

    asyncio.run(scenario())


def test_silence_after_the_prompt_sends_the_call_on_as_unknown() -> None:
    async def scenario() -> None:
        w = World()
        asked(w)
        await turn()
        w.chain.answer(None)
        await turn()
        w.at(PROMPT_LASTS)
        w.at(PROMPT_LASTS + SILENCE - 0.1)
        assert w.c.invites("1002") == []
        w.at(PROMPT_LASTS + SILENCE)
        assert len(w.c.invites("1002")) == 1

    asyncio.run(scenario())


def test_keys_by_info_in_the_early_dialog_reach_the_prompt() -> None:
    async def scenario() -> None:
        w = World()
        call = asked(w)
        await turn()
        w.chain.answer(None)
        await turn()
        early = next(r for _, r in w.c.port.responses if r.status == 183)
        invite = call.invite
        for i, key in enumerate(FNR + "#"):
            info = parse(
                f"INFO sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{CARRIER};branch=z9hG4bK-info{i}\r\nMax-Forwards: 70\r\n"
                f"From: {invite.header('from')}\r\nTo: <sip:1002@{DOMAIN}>;tag={early.to_tag}\r\n"
                f"Call-ID: {invite.call_id}\r\nCSeq: {2 + i} INFO\r\n"
                "Content-Type: application/dtmf-relay\r\n",
                f"Signal={key}\r\nDuration=160\r\n".encode(),
            )
            [event, *_] = w.c.layer.receive(info, ("127.0.0.1", CARRIER), False, 1.0 + i * 0.3)
            assert isinstance(event, RequestReceived)
            w.c.cc.on_request(event.tx, info, 1.0 + i * 0.3)
            assert w.c.port.statuses(event.tx) == [200]
        await turn()
        assert w.chain.ids == [FNR]

    asyncio.run(scenario())
