"""The event feed (``/api/events``) through the real server, with real WebSocket clients.

pjsua2 softphones and SIPp make calls and register; the clients read what the feed says about
them: the calls' events in order with rising sequence numbers, presence, resuming with ``since``,
reload when the number is too old, one clinic's events only, and a client that never reads being
dropped while another keeps receiving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.system.peers import LOOPBACK, Sipp, Softphone, free_port, wait_until, write_users_csv
from tests.system.server import SentralServer
from tests.system.webclient import Event, FeedClient, StalledFeedClient, add_token

DOMAIN = "clinic.test"
OTHER = "other.test"
SCENARIOS = Path(__file__).parent / "scenarios"
STAFF = ("1001", "1002", "1003")


class WebClinic:
    """A running server with ``--web``, its feed's URL and an API token per clinic."""

    def __init__(self, server: SentralServer, web_port: int) -> None:
        self.server = server
        self.web_port = web_port
        self.feed_url = f"http://{LOOPBACK}:{web_port}/api/events"
        self.tokens = {
            DOMAIN: add_token(server, "switchboard", DOMAIN),
            OTHER: add_token(server, "other", OTHER),
        }

    def feed(self, clinic: str = DOMAIN, since: int | None = None) -> FeedClient:
        return FeedClient(self.feed_url, token=self.tokens[clinic], since=since)


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[WebClinic]:
    """clinic.test (MD5 digest, for SIPp) with staff 1001..1003, and other.test with 3001."""
    workdir = tmp_path / "server"
    web_port = free_port()
    server = SentralServer(
        f"sqlite:///{workdir / 'sentral.db'}", workdir, extra_args=("--web", f"{LOOPBACK}:{web_port}")
    )
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        ("clinic", "set", DOMAIN, "--digest", "md5"),
        *(("user", "add", ext, "--name", f"Staff {ext}", "--password", f"secret-{ext}") for ext in STAFF),
        ("clinic", "add", OTHER),
        ("user", "add", "3001", "--domain", OTHER, "--name", "Other 3001", "--password", "secret-3001"),
    )
    server.start()
    try:
        yield WebClinic(server, web_port)
    finally:
        server.stop()


def phone(
    factory: Callable[..., Softphone], clinic: WebClinic, name: str, extension: str, domain: str = DOMAIN
) -> Softphone:
    softphone = factory(name)
    softphone.add_account(extension, extension, f"secret-{extension}", domain, clinic.server.address)
    softphone.wait_registered(extension)
    return softphone


def of_call(call: str) -> Callable[[Event], bool]:
    return lambda event: event.get("call") == call and event["type"].startswith("call.")


def presence(extension: str, status: str) -> Callable[[Event], bool]:
    return lambda event: (
        event["type"] == "presence" and event["extension"] == extension and event["status"] == status
    )


def a_call(alice: Softphone, bob: Softphone) -> None:
    """1001 calls 1002, 1002 answers, 1001 hangs up."""
    out = alice.call("1001", f"sip:1002@{DOMAIN}")
    incoming = bob.wait_incoming("1002")
    bob.answer(incoming["call"])
    alice.wait_call_state(out, "CONFIRMED")
    alice.hangup(out)
    bob.wait_call_state(incoming["call"], "DISCONNECTED")


def test_a_call_and_presence_arrive_in_order_with_rising_numbers(
    clinic: WebClinic, softphone_factory: Callable[..., Softphone]
) -> None:
    feed = clinic.feed()
    alice = phone(softphone_factory, clinic, "alice", "1001")
    bob = phone(softphone_factory, clinic, "bob", "1002")
    # Registering turns a colleague from off to available.
    feed.wait_for(presence("1002", "available"), what="1002 available")
    a_call(alice, bob)
    ended = feed.wait_for(lambda e: e["type"] == "call.ended", what="call.ended")
    call = ended["call"]
    kinds = [e["type"] for e in feed.events if of_call(call)(e)]
    assert kinds == ["call.started", "call.ringing", "call.answered", "call.ended"], kinds
    assert ended["caller"] == "1001" and ended["callee"] == "1002" and ended["hangup_by"] == "caller"
    answered = next(e for e in feed.events if e["type"] == "call.answered")
    assert answered["lines"] == {"1001": "confirmed", "1002": "confirmed"}
    after = feed.events.index(ended)
    feed.wait_for(presence("1001", "available"), what="1001 available after the call", after=after)
    feed.wait_for(presence("1002", "available"), what="1002 available after the call", after=after)
    seqs = [e["seq"] for e in feed.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    # Bob's presence went ringing, in a call, available, in that order.
    bob_states = [e["status"] for e in feed.events if e["type"] == "presence" and e["extension"] == "1002"]
    assert bob_states == ["available", "ringing", "in-call", "available"], bob_states
    feed.close()


def test_a_client_resumes_with_since_and_is_told_to_reload_when_too_old(
    clinic: WebClinic, softphone_factory: Callable[..., Softphone]
) -> None:
    first = clinic.feed()
    alice = phone(softphone_factory, clinic, "alice", "1001")
    bob = phone(softphone_factory, clinic, "bob", "1002")
    last = first.wait_for(presence("1002", "available"))["seq"]
    first.close()
    # A second client keeps the feed going while the first is away.
    keeper = clinic.feed()
    a_call(alice, bob)
    keeper.wait_for(lambda e: e["type"] == "call.ended")
    missed = [e for e in keeper.events if e["seq"] > last]
    resumed = clinic.feed(since=last)
    ended = resumed.wait_for(lambda e: e["type"] == "call.ended")
    got = resumed.events[: resumed.events.index(ended) + 1]
    assert [e["seq"] for e in got] == [e["seq"] for e in missed[: len(got)]]
    assert got[0]["seq"] == last + 1 or got[0]["seq"] > last
    assert all(e["type"] != "reload" for e in got)
    # A number from long ago (or before a restart) is not known: reload.
    stale = clinic.feed(since=1)
    assert stale.wait_for(lambda e: True)["type"] == "reload"
    # So is one from the future.
    future = clinic.feed(since=ended["seq"] + 1000)
    assert future.wait_for(lambda e: True)["type"] == "reload"
    for client in (keeper, resumed, stale, future):
        client.close()


def test_a_client_sees_its_own_clinic_only(
    clinic: WebClinic, softphone_factory: Callable[..., Softphone]
) -> None:
    ours = clinic.feed(DOMAIN)
    theirs = clinic.feed(OTHER)
    alice = phone(softphone_factory, clinic, "alice", "1001")
    bob = phone(softphone_factory, clinic, "bob", "1002")
    a_call(alice, bob)
    ours.wait_for(lambda e: e["type"] == "call.ended")
    phone(softphone_factory, clinic, "other", "3001", OTHER)
    theirs.wait_for(presence("3001", "available"), what="3001 available in its own clinic's feed")
    assert not [e for e in theirs.events if e.get("extension") in STAFF or e["type"].startswith("call.")], (
        theirs.events
    )
    ours.wait_for(presence("1002", "available"))
    assert not [e for e in ours.events if e.get("extension") == "3001"], ours.events
    ours.close()
    theirs.close()


def test_the_feed_needs_a_session_or_a_token(clinic: WebClinic) -> None:
    with pytest.raises(AssertionError, match="401"):
        FeedClient(clinic.feed_url)
    with pytest.raises(AssertionError, match="401"):
        FeedClient(clinic.feed_url, token="sntl_not-a-token")


def test_a_client_that_never_reads_is_dropped_while_another_keeps_receiving(
    clinic: WebClinic, sipp: Sipp, tmp_path: Path
) -> None:
    server = clinic.server
    stalled = StalledFeedClient(LOOPBACK, clinic.web_port, clinic.tokens[DOMAIN])
    reader = clinic.feed()
    # The callee is a SIPp uas registered as 1002; the caller a SIPp uac authenticating as 1001.
    uas_port = free_port()
    users = write_users_csv(tmp_path / "register.csv", [("1002", "secret-1002", DOMAIN)])
    registered = sipp.run(
        server.address,
        SCENARIOS / "register_auth.xml",
        users=users,
        calls=1,
        local_port=uas_port,
        auth_uri=DOMAIN,
    )
    assert registered.successful == 1, registered
    callers = write_users_csv(tmp_path / "callers.csv", [("1001", "secret-1001", DOMAIN, "1002")])
    with sipp.running(None, "uas", local_port=uas_port, timeout=120) as uas:
        uas.wait_listening()
        run = sipp.start(
            server.address, SCENARIOS / "call_auth_uac.xml", users=callers, calls=600, rate=60,
            limit=100, auth_uri=DOMAIN, timeout=60,
        )  # fmt: skip
        try:
            # Nothing is read from the stalled client until the server says it dropped it.
            wait_until(
                lambda: "feed_client_dropped" in server.log_path.read_text(),
                50.0,
                "the stalled client dropped",
                interval=0.2,
            )
            assert stalled.cut_off(10.0), "the stalled client's connection is still open"
            # The reader still gets the calls after the other was dropped.
            before = len([e for e in reader.events if e["type"] == "call.ended"])
            reader.wait_for(lambda e: e["type"] == "call.ended", timeout=5.0, after=len(reader.events))
            result = run.wait()
        finally:
            run.stop()
    ended = [e for e in reader.events if e["type"] == "call.ended"]
    assert len(ended) > before and len(ended) >= result.successful, (len(ended), result)
    seqs = [e["seq"] for e in reader.events]
    assert seqs == sorted(seqs)
    assert not reader.closed.is_set()
    reader.close()
    stalled.close()


def test_a_parked_call_is_told_parked_and_retrieved(
    clinic: WebClinic, softphone_factory: Callable[..., Softphone]
) -> None:
    server = clinic.server
    server.cli("park", "add", "main", "--number", "700", "--slots", "701-705", "--domain", DOMAIN)
    server.wait_loaded()
    feed = clinic.feed()
    alice = phone(softphone_factory, clinic, "alice", "1001")
    bob = phone(softphone_factory, clinic, "bob", "1002")
    out = alice.call("1001", f"sip:1002@{DOMAIN}")
    incoming = bob.wait_incoming("1002")
    bob.answer(incoming["call"])
    alice.wait_call_state(out, "CONFIRMED")
    # Bob parks Alice the way a park key does: a blind transfer to the park number.
    bob.xfer(incoming["call"], f"sip:700@{DOMAIN}")
    parked = feed.wait_for(lambda e: e["type"] == "park.parked", what="park.parked")
    assert (parked["slot"], parked["caller"]) == ("701", "1001")
    carol = phone(softphone_factory, clinic, "carol", "1003")
    taken = carol.call("1003", f"sip:701@{DOMAIN}")
    carol.wait_call_state(taken, "CONFIRMED")
    retrieved = feed.wait_for(lambda e: e["type"] == "park.retrieved", what="park.retrieved")
    assert (retrieved["call"], retrieved["slot"], retrieved["ended"]) == (parked["call"], "701", False)
    assert feed.events.index(parked) < feed.events.index(retrieved)
    carol.hangup(taken)
    ended = feed.wait_for(
        lambda e: e["type"] == "call.ended" and e["call"] == parked["call"], what="the parked call's end"
    )
    assert feed.events.index(retrieved) < feed.events.index(ended)
    feed.close()
