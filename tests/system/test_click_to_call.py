"""Click-to-call through the web API of a running server, with pjsua2 phones: the member of
staff's phone rings first, shown whom it will reach, and once answered the number rings; the two
then hear each other's tone through the relay, and the record says how the call came about."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.system.audio import write_tone
from tests.system.peers import LOOPBACK, Softphone, free_port, wait_until
from tests.system.server import SentralServer, tcp_accepts
from tests.system.test_call_media import A_TONE, B_TONE, assert_hears, hearing, listen, media_range
from tests.system.test_calls import DOMAIN, phone_for, records
from tests.system.test_web import Web

RINGBACK_HZ = 425.0  # the ringing tone Sentral plays (sentral.media.sounds.synthesize_ringback)


@pytest.fixture
def web(tmp_path: Path, sounds: Path) -> Iterator[Web]:
    """A server as a clinic runs it (media anchored) with --web, staff 1001-1003 and a token."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    first, last = media_range()
    port = free_port()
    server = SentralServer(
        f"sqlite:///{workdir / 'sentral.db'}",
        workdir,
        extra_args=(
            "--web", f"{LOOPBACK}:{port}", "--sounds", str(sounds), "--media-ports", f"{first}-{last}",
            "--drain-timeout", "2", "--no-answer-timeout", "6",
        ),
    )  # fmt: skip
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        *(("user", "add", ext, "--name", f"Staff {ext}", "--password", f"secret-{ext}") for ext in ("1001", "1002", "1003")),
    )  # fmt: skip
    token = server.cli("token", "add", "platform", "--clinic", DOMAIN).stdout.strip()
    server.start()
    try:
        wait_until(lambda: tcp_accepts(LOOPBACK, port), 10, "the web listener")
        yield Web(server, f"http://{LOOPBACK}:{port}", {DOMAIN: token})
    finally:
        server.stop()


def click(web: Web, extension: str, number: str) -> tuple[int, dict[str, object]]:
    status, _, body = web.request(
        "POST", f"/api/staff/{extension}/call", token=web.tokens[DOMAIN], json={"number": number}
    )
    return status, body


def shown(incoming: dict[str, object]) -> str:
    """Who a ringing phone shows as calling: the INVITE's From."""
    headers = incoming["headers"]
    assert isinstance(headers, dict)
    return str(headers.get("from", ""))


def test_the_staff_phone_rings_first_then_the_number_and_they_hear_each_other(
    web: Web, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    alice = phone_for(softphone_factory, web.server, "1001")
    bob = phone_for(softphone_factory, web.server, "1002")
    status, body = click(web, "1001", "1002")
    assert status == 202 and body["extension"] == "1001" and body["number"] == "1002", body
    # 1001's phone rings first, shown whom it will reach; 1002's does not ring yet.
    first = alice.wait_incoming("1001")
    assert '"Staff 1002" <sip:1002@' in shown(first), first
    with pytest.raises(AssertionError):
        bob.wait_incoming("1002", timeout=0.5)
    alice.answer(first["call"])
    alice.wait_call_state(first["call"], "CONFIRMED")
    # Answered: now 1002 rings, shown as 1001, and 1001 hears the ringing tone meanwhile.
    second = bob.wait_incoming("1002")
    assert '"Staff 1001" <sip:1001@' in shown(second), second
    ringing = tmp_path / "ringing.wav"
    alice.record(first["call"], ringing)
    time.sleep(2.0)
    assert alice.stop_media(first["call"]) == [str(ringing)]
    share, table = hearing(ringing, RINGBACK_HZ, (A_TONE, B_TONE))
    assert share >= 0.2, f"1001 heard no ringing tone while 1002 rang: {table}"
    bob.answer(second["call"])
    bob.wait_call_state(second["call"], "CONFIRMED")
    [live] = web.get("/api/calls")["calls"]
    assert (live["caller"], live["callee"], live["call_id"]) == ("1001", "1002", body["call"])
    tones = {"a": write_tone(tmp_path / "a.wav", A_TONE), "b": write_tone(tmp_path / "b.wav", B_TONE)}
    a_heard, b_heard = listen(alice, first["call"], bob, second["call"], tones, tmp_path, "click")
    assert_hears(a_heard, "1001", B_TONE, A_TONE)
    assert_hears(b_heard, "1002", A_TONE, B_TONE)
    bob.hangup(second["call"])
    alice.wait_call_state(first["call"], "DISCONNECTED")
    [record] = records(web.server, 1)
    assert (record["caller"], record["callee"], record["disposition"]) == ("1001", "1002", "answered")
    [transfer] = record["transfers"]
    assert (transfer["kind"], transfer["by"], transfer["target"], transfer["outcome"]) == (
        "click-to-call", "1001", "1002", "answered"
    )  # fmt: skip


def test_what_cannot_be_placed_gets_a_sentence_and_nothing_rings(
    web: Web, softphone_factory: Callable[..., Softphone]
) -> None:
    alice = phone_for(softphone_factory, web.server, "1001")
    status, body = click(web, "1001", "4711")
    assert status == 404 and "4711" in str(body["error"]), body
    status, body = click(web, "1003", "1001")  # 1003 has no phone registered
    assert status == 409 and "no phone registered" in str(body["error"]), body
    status, body = click(web, "1001", "")
    assert status == 400 and "number" in str(body["error"]), body
    status, body = click(web, "1009", "1001")
    assert status == 404 and "1009" in str(body["error"]), body
    with pytest.raises(AssertionError):
        alice.wait_incoming("1001", timeout=0.5)
    assert web.get("/api/calls")["calls"] == []
