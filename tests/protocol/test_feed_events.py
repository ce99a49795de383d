"""The event source of the web's feed, on call control and the presence hub fed bytes with a fake clock.

What a client of ``/api/events`` is told comes from here: a call's events in order, presence
gathered per flush, sequence numbers a client resumes from, and a watch that costs the engine
nothing while detached.
"""

from __future__ import annotations

from typing import Any

from sentral.pbx.call import CallerIdentity
from sentral.pbx.presence import Direction, Phase, PresenceHub
from sentral.web.events import EventSource
from sentral.web.feed import text_frame
from tests.protocol import test_call
from tests.protocol.test_call import SDP_B
from tests.protocol.test_presence import DOMAIN
from tests.protocol.test_presence import FakePort as PresencePort
from tests.protocol.test_presence import directory as presence_directory


class Feed:
    """Call control (test_call's world) and a presence hub, watched by one event source."""

    def __init__(self, history: int = 100) -> None:
        self.calls = test_call.World()
        self.bound: set[tuple[str, str]] = set()
        self.directory = presence_directory()
        self.hub = PresenceHub(PresencePort(), lambda: self.directory, lambda aor: aor in self.bound)
        self.source = EventSource(
            self.calls.cc, self.hub, lambda: self.directory, wall_offset=1000.0, history=history
        )
        self.source.attach()

    def events(self, after: int | None = None) -> list[dict[str, Any]]:
        self.source.flush()
        found = self.source.since(self.source.floor if after is None else after)
        assert found is not None
        return [{"seq": event.seq, **event.body} for event in found]

    def call(self) -> None:
        """1001 calls 1002: ringing at 1.0, answered at 2.0."""
        w = self.calls
        w.invite()
        b_req, b_tx = w.b_invite()
        w.cc.on_response(b_tx, w.answer(b_req, 180, tag="btag"), 1.0)
        w.cc.on_response(b_tx, w.answer(b_req, 200, tag="btag", sdp=SDP_B), 2.0)


def test_a_call_is_told_started_ringing_answered_in_order_with_rising_numbers() -> None:
    feed = Feed()
    feed.call()
    events = feed.events()
    assert [e["type"] for e in events] == ["call.started", "call.ringing", "call.answered"]
    assert [e["seq"] for e in events] == list(range(feed.source.floor + 1, feed.source.floor + 4))
    answered = events[-1]
    assert answered["caller"] == "1001" and answered["callee"] == "1002"
    assert answered["answered"] == 1002.0 and answered["at"] == 1002.0  # engine time + wall offset
    # What does not change what the feed shows (a re-look at the same call) is not told again.
    feed.calls.cc.tell_lines(feed.calls.cc.calls[answered["call"]], 3.0)
    assert len(feed.events()) == 3


def test_a_caller_the_records_name_after_the_start_is_told_once_with_their_reference() -> None:
    feed = Feed()
    feed.call()
    call_id = feed.events()[-1]["call"]
    identity = CallerIdentity("Kari Nordmann", "patient", "Patient/kari", "journal")
    feed.calls.cc.identify(call_id, identity, 2.5)
    feed.calls.cc.identify(call_id, identity, 2.6)  # the same again tells nothing new
    [told] = feed.events()[3:]
    assert told["type"] == "call.identified"
    assert (told["caller_name"], told["caller_kind"], told["caller_reference"]) == (
        "Kari Nordmann", "patient", "Patient/kari"
    )  # fmt: skip
    feed.calls.cc.hang_up_all(3.0)
    [ended] = feed.events()[4:]
    assert (ended["type"], ended["caller_reference"]) == ("call.ended", "Patient/kari")


def test_a_client_resumes_from_its_number_or_is_told_to_reload() -> None:
    feed = Feed(history=4)
    source = feed.source
    start = source.seq
    assert source.since(start) == []
    feed.call()
    assert [e.seq for e in source.since(start) or []] == [start + 1, start + 2, start + 3]
    assert [e.seq for e in source.since(start + 2) or []] == [start + 3]
    assert source.since(start + 4) is None  # from the future (another server's numbers)
    assert source.since(start - 1) is None  # from before the source was attached
    # Two more events: the history of four no longer holds the first.
    feed.hub.registration(DOMAIN, "1003", True, 4.0)
    feed.bound.add((DOMAIN, "1003"))
    feed.hub.registration(DOMAIN, "1003", True, 4.0)
    feed.calls.cc.hang_up_all(5.0)
    source.flush()
    assert source.seq == start + 5
    assert source.since(start) is None
    assert [e.seq for e in source.since(start + 1) or []] == [start + 2, start + 3, start + 4, start + 5]


def test_a_detached_source_costs_the_engine_one_test_and_resuming_across_it_means_reload() -> None:
    feed = Feed()
    source = feed.source
    before = source.seq
    source.detach()
    assert feed.calls.cc.watch is None and feed.hub.watch is None
    feed.call()
    assert source.seq == before and not source.history
    source.attach()
    assert source.since(before) is None  # it missed the call
    assert source.since(source.seq) == []
    # The call answered while nobody listened is known: its end is told, nothing before it.
    feed.calls.cc.hang_up_all(6.0)
    assert [e["type"] for e in feed.events()] == ["call.ended"]


def test_presence_is_gathered_per_flush_and_told_when_it_differs() -> None:
    feed = Feed()
    feed.bound.add((DOMAIN, "1002"))
    feed.hub.registration(DOMAIN, "1002", True, 0.0)
    [registered] = feed.events()
    assert (registered["type"], registered["extension"], registered["status"]) == (
        "presence",
        "1002",
        "available",
    )
    # Rings, answers and hangs up before the feed's task looks: nothing to tell.
    for phase in (Phase.EARLY, Phase.CONFIRMED, Phase.TERMINATED):
        feed.hub.line(DOMAIN, "1002", "k1", phase, Direction.RECIPIENT, False, 1.0)
    after = feed.source.seq
    feed.source.flush()
    assert feed.source.seq == after
    feed.hub.line(DOMAIN, "1002", "k2", Phase.CONFIRMED, Direction.RECIPIENT, False, 2.0)
    assert [e["status"] for e in feed.events(after)] == ["in-call"]
    # A phone logged off (a directory change): red.
    feed.hub.line(DOMAIN, "1002", "k2", Phase.TERMINATED, Direction.RECIPIENT, False, 3.0)
    feed.directory = presence_directory(2, off=("1002",))
    feed.hub.directory_changed(3.0)
    assert [e["status"] for e in feed.events(after + 1)] == ["off"]


def test_a_text_frame_is_what_rfc_6455_says_a_server_sends() -> None:
    assert text_frame("hi") == b"\x81\x02hi"
    assert text_frame("x" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert text_frame("x" * 70000)[:10] == b"\x81\x7f" + (70000).to_bytes(8, "big")
    assert text_frame("é") == b"\x81\x02\xc3\xa9"
