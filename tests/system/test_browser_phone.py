"""The browser phone with a WebRTC peer made of aiortc (as a browser's stack is) and pjsua2 desk
phones, through a server as a clinic runs it (media anchored): the page registers as one of the
member's phones, rings with their desk phone, answers, calls out, and audio crosses both ways
(Opus on the browser's side, G.711 on the desk phone's)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sentral.web import BROWSER_PHONE_AGENT
from tests.system.audio import write_tone
from tests.system.browserclient import BrowserClient
from tests.system.peers import Softphone, wait_until
from tests.system.test_call_media import A_TONE, B_TONE, ELSEWHERE, LISTEN_SECONDS, hearing
from tests.system.test_calls import DOMAIN, phone_for
from tests.system.test_click_to_call import web
from tests.system.test_media import assert_music
from tests.system.test_switchboard_page import chromium
from tests.system.test_web import Web

__all__ = ["chromium", "web"]  # the fixtures, used here by name


@pytest.fixture
def browser(web: Web) -> Iterator[BrowserClient]:
    """1001's browser phone, registered, sending A_TONE."""
    with BrowserClient(web.url, DOMAIN, "1001", "secret-1001", tone_hz=A_TONE) as client:
        # The browser offers Opus first and G.711 too: G.711 is chosen, and nothing is transcoded.
        assert answered_codec(client.wait("sdp")["sdp"]) == "PCMU/8000"
        assert client.wait("registered")["extension"] == "1001"
        yield client


def answered_codec(answer: str) -> str:
    """The codec an SDP answer put first on its audio line, as its rtpmap names it."""
    first = answer.split("m=audio ", 1)[1].split("\r\n", 1)[0].split()[2]
    rtpmap = f"a=rtpmap:{first} "
    return answer.split(rtpmap, 1)[1].split("\r\n", 1)[0]


def contacts_of(web: Web, extension: str) -> list[str]:
    rows = web.server.cli_json("registrations")
    return [row["contact"] for row in rows if row["extension"] == extension]


def exchange_tones(
    browser: BrowserClient, desk: Softphone, call: str, tmp_path: Path, label: str
) -> tuple[Path, Path]:
    """The desk phone plays B_TONE and records while the browser records: both recordings."""
    desk.play(call, write_tone(tmp_path / f"{label}-b.wav", B_TONE), loop=True)
    desk_heard = tmp_path / f"{label}-desk-heard.wav"
    desk.record(call, desk_heard)
    browser_heard = browser.record(LISTEN_SECONDS, tmp_path / f"{label}-browser-heard.wav")
    assert desk.stop_media(call) == [str(desk_heard)]
    return browser_heard, desk_heard


def assert_tones_cross(browser_heard: Path, desk_heard: Path) -> None:
    share, table = hearing(browser_heard, B_TONE, (A_TONE, *ELSEWHERE))
    assert share >= 0.6, (
        f"the browser heard the desk phone's tone in only {share:.0%} of the windows: {table}"
    )
    share, table = hearing(desk_heard, A_TONE, (B_TONE, *ELSEWHERE))
    assert share >= 0.6, (
        f"the desk phone heard the browser's tone in only {share:.0%} of the windows: {table}"
    )


def test_a_browser_offering_only_opus_is_transcoded_and_they_hear_each_other(
    web: Web, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    desk = phone_for(softphone_factory, web.server, "1002")
    with BrowserClient(
        web.url, DOMAIN, "1001", "secret-1001", tone_hz=A_TONE, codecs=("audio/opus",)
    ) as opus:
        assert answered_codec(opus.wait("sdp")["sdp"]) == "opus/48000/2"
        opus.wait("registered")
        call = desk.call("1002", f"sip:1001@{DOMAIN}")
        opus.wait("incoming")
        opus.send("pick-up")
        opus.wait("connected")
        desk.wait_call_state(call, "CONFIRMED")
        desk.wait_event("media_state", call=call, status="active")
        assert_tones_cross(*exchange_tones(opus, desk, call, tmp_path, "opus"))
        desk.hangup(call)
        opus.wait("ended")


def test_a_desk_phone_calls_the_browser_and_they_hear_each_other(
    web: Web, browser: BrowserClient, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    desk = phone_for(softphone_factory, web.server, "1002")
    assert len(contacts_of(web, "1001")) == 1  # the browser is one of 1001's phones
    call = desk.call("1002", f"sip:1001@{DOMAIN}")
    incoming = browser.wait("incoming")
    assert (incoming["from"], incoming["name"]) == ("1002", "Staff 1002"), incoming
    desk.wait_event("call_state", call=call, state="EARLY")
    browser.send("pick-up")
    browser.wait("connected")
    desk.wait_call_state(call, "CONFIRMED")
    desk.wait_event("media_state", call=call, status="active")
    assert_tones_cross(*exchange_tones(browser, desk, call, tmp_path, "in"))
    [live] = web.get("/api/calls")["calls"]
    assert (live["caller"], live["callee"]) == ("1002", "1001"), live
    seen = len(browser.messages)
    desk.hangup(call)
    assert browser.wait("ended", after=seen)["reason"] == "hung up"
    wait_until(lambda: web.get("/api/calls")["calls"] == [], 5, "the call to end")


def test_the_browser_calls_a_desk_phone_and_hangs_up(
    web: Web, browser: BrowserClient, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    desk = phone_for(softphone_factory, web.server, "1002")
    browser.send("dial", number="1002")
    incoming = desk.wait_incoming("1002")
    browser.wait("ringing")
    desk.answer(incoming["call"])
    browser.wait("connected")
    desk.wait_call_state(incoming["call"], "CONFIRMED")
    desk.wait_event("media_state", call=incoming["call"], status="active")
    assert_tones_cross(*exchange_tones(browser, desk, incoming["call"], tmp_path, "out"))
    # Keys pressed on the page reach the desk phone.
    for key in "5#":
        browser.send("dtmf", key=key)
        desk.wait_event("dtmf", call=incoming["call"], digit=key)
    seen = len(browser.messages)
    browser.send("hang-up")
    assert browser.wait("ended", after=seen)["reason"] == "hung up"
    desk.wait_call_state(incoming["call"], "DISCONNECTED")


def test_the_browser_holds_resumes_and_transfers_blind(
    web: Web, browser: BrowserClient, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    desk = phone_for(softphone_factory, web.server, "1002")
    other = phone_for(softphone_factory, web.server, "1003")
    browser.send("dial", number="1002")
    call = desk.wait_incoming("1002")["call"]
    desk.answer(call)
    browser.wait("connected")
    desk.wait_event("media_state", call=call, status="active")
    # Held: the desk phone hears music, not the browser's tone.
    seen = len(browser.messages)
    browser.send("hold")
    browser.wait("held", after=seen)
    time.sleep(0.5)
    music = tmp_path / "held.wav"
    desk.record(call, music)
    time.sleep(LISTEN_SECONDS)
    assert desk.stop_media(call) == [str(music)]
    assert_music(music, "the held desk phone", (A_TONE,))
    # Resumed: the tones cross again.
    seen = len(browser.messages)
    browser.send("resume")
    browser.wait("connected", after=seen)
    time.sleep(0.5)
    assert_tones_cross(*exchange_tones(browser, desk, call, tmp_path, "resumed"))
    # Transferred to 1003: the browser leaves, 1003 rings showing 1002 and talks to it.
    seen = len(browser.messages)
    browser.send("transfer", number="1003")
    assert browser.wait("ended", after=seen)["reason"] == "transferred to 1003"
    incoming = other.wait_incoming("1003")
    assert "<sip:1002@" in str(incoming["headers"].get("from", "")), incoming
    other.answer(incoming["call"])
    other.wait_call_state(incoming["call"], "CONFIRMED")
    [live] = web.get("/api/calls")["calls"]
    assert {live["caller"], live["callee"]} == {"1002", "1003"}, live
    other.hangup(incoming["call"])
    desk.wait_call_state(call, "DISCONNECTED")


def test_a_call_the_browser_declines_ends_as_a_rejected_direct_call_and_a_closed_page_unregisters(
    web: Web, softphone_factory: Callable[..., Softphone]
) -> None:
    own_desk = phone_for(softphone_factory, web.server, "1001")
    caller = phone_for(softphone_factory, web.server, "1002")
    with BrowserClient(web.url, DOMAIN, "1001", "secret-1001", tone_hz=A_TONE) as browser:
        browser.wait("registered")
        assert len(contacts_of(web, "1001")) == 2
        call = caller.call("1002", f"sip:1001@{DOMAIN}")
        browser.wait("incoming")
        ringing = own_desk.wait_incoming("1001")  # both of 1001's phones ring
        browser.send("decline")
        assert browser.wait("ended")["reason"] == "declined"
        time.sleep(0.5)
        # The clinic's rule: a direct call rejected by a person ends; the caller hears it.
        caller.wait_call_state(call, "DISCONNECTED")
        own_desk.wait_call_state(ringing["call"], "DISCONNECTED")
    wait_until(lambda: len(contacts_of(web, "1001")) == 1, 5, "the browser phone to unregister")


def test_the_switchboard_page_is_a_phone_in_chromium(
    web: Web, chromium: str, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    """Debian's chromium, headless, its microphone a file holding A_TONE: the page's browser phone
    calls a pjsua2 desk phone, which hears the tone; the page's getStats shows audio arriving."""
    from playwright.sync_api import expect, sync_playwright

    desk = phone_for(softphone_factory, web.server, "1002")
    microphone = write_tone(tmp_path / "microphone.wav", A_TONE, seconds=4.0, rate=48000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(web.url + "/")
            page.fill("input[name=extension]", "1001")
            page.fill("input[name=password]", "secret-1001")
            page.click("#sign-in button[type=submit]")
            expect(page.locator("#browser-phone")).to_be_visible()
            page.click("#phone-start")
            expect(page.locator("#phone-status")).to_contain_text("ready", timeout=15000)
            assert len(contacts_of(web, "1001")) == 1
            page.fill("#phone-number", "1002")
            page.click("#phone-dial button[type=submit]")
            incoming = desk.wait_incoming("1002")
            desk.answer(incoming["call"])
            expect(page.locator("#phone-status")).to_have_text("in a call with 1002")
            desk.wait_event("media_state", call=incoming["call"], status="active")
            heard = tmp_path / "desk-heard.wav"
            desk.play(incoming["call"], write_tone(tmp_path / "desk.wav", B_TONE), loop=True)
            desk.record(incoming["call"], heard)
            first = received_audio(page)
            time.sleep(LISTEN_SECONDS)
            second = received_audio(page)
            assert desk.stop_media(incoming["call"]) == [str(heard)]
            share, table = hearing(heard, A_TONE, (B_TONE, *ELSEWHERE))
            assert share >= 0.6, (
                f"the desk phone heard the page's tone in only {share:.0%} of the windows: {table}"
            )
            # The page receives audio, and it is not silence: its energy keeps rising.
            assert second["packetsReceived"] - first["packetsReceived"] >= 100, (first, second)
            assert second["totalAudioEnergy"] > first["totalAudioEnergy"], (first, second)
            shot = tmp_path / "switchboard-browser-phone.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the switchboard with the browser phone in a call: {shot}")
            page.click("#phone-keypad button[data-key='7']")
            desk.wait_event("dtmf", call=incoming["call"], digit="7")
            page.click("#phone-hold")
            expect(page.locator("#phone-status")).to_have_text("1002 is on hold")
            expect(page.locator("#phone-hold")).to_have_text("Resume")
            page.click("#phone-hold")
            expect(page.locator("#phone-status")).to_have_text("in a call with 1002")
            page.click("#phone-hang-up")
            desk.wait_call_state(incoming["call"], "DISCONNECTED")
            expect(page.locator("#phone-status")).to_contain_text("call ended")
        finally:
            browser.close()
    wait_until(lambda: contacts_of(web, "1001") == [], 5, "the page's phone to unregister")


def received_audio(page: Any) -> dict[str, float]:
    """The page's inbound audio as getStats reports it: packets and total audio energy."""
    found: dict[str, float] = page.evaluate(
        """async () => {
            const stats = await phone.pc.getStats();
            for (const report of stats.values()) {
                if (report.type === "inbound-rtp" && report.kind === "audio") {
                    return {packetsReceived: report.packetsReceived, totalAudioEnergy: report.totalAudioEnergy || 0};
                }
            }
            return {packetsReceived: 0, totalAudioEnergy: 0};
        }"""
    )
    return found


def test_what_the_phone_cannot_take_gets_a_sentence(web: Web) -> None:
    """Who may not have a browser phone gets 401 or 403; a page that sends what makes no sense gets
    an error message and keeps its phone."""
    status, _, body = web.request("GET", "/api/browser-phone")
    assert status == 401 and "sign in" in body["error"], body
    status, _, body = web.request("GET", "/api/browser-phone", token=web.tokens[DOMAIN])
    assert status == 403 and "member of staff" in body["error"], body

    async def before_the_offer() -> list[dict[str, Any]]:
        answers = []
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            sign_in = {"extension": "1001", "domain": DOMAIN, "password": "secret-1001"}
            async with session.post(web.url + "/api/session", json=sign_in) as response:
                assert response.status == 200
            async with session.get(web.url + "/api/browser-phone") as response:
                assert response.status == 400 and "WebSocket" in (await response.json())["error"]
            async with session.ws_connect(web.url.replace("http", "ws", 1) + "/api/browser-phone") as ws:
                for text in (
                    "not json",
                    '["offer"]',
                    '{"type": "dial", "number": "1002"}',
                    '{"type": "offer"}',
                    '{"type": "offer", "sdp": "v=0\\r\\nnot an offer"}',
                ):
                    await ws.send_str(text)
                    answers.append(json.loads((await ws.receive(timeout=10)).data))
        return answers

    answers = asyncio.run(before_the_offer())
    assert [a["type"] for a in answers] == ["error"] * 5, answers
    assert [a["error"] for a in answers] == [
        "send JSON objects with a type",
        "send JSON objects with a type",
        "send the page's offer first",
        "an offer carries the page's SDP in sdp",
        "the offer cannot be answered: send an audio offer from RTCPeerConnection",
    ]
    assert contacts_of(web, "1001") == []  # nothing registered for a page that never offered
    with BrowserClient(web.url, DOMAIN, "1001", "secret-1001", tone_hz=A_TONE) as browser:
        browser.wait("registered")
        for message, sentence in (
            ({"type": "bogus"}, "unknown message type 'bogus'"),
            ({"type": "dial", "number": "<sip:1002@elsewhere>"}, "dial an extension or a number"),
            ({"type": "pick-up"}, "no call is ringing"),
            ({"type": "hold"}, "there is no call to hold"),
            ({"type": "transfer", "number": "1003"}, "there is no call to transfer"),
            ({"type": "dtmf", "key": "5"}, "there is no call to send a key to"),
            ({"type": "dtmf", "key": "55"}, "a key is one of 0-9, *, # and A-D"),
            ({"type": "offer", "sdp": "v=0"}, "this phone is connected already"),
        ):
            seen = len(browser.messages)
            kind = message.pop("type")
            browser.send(kind, **message)
            assert browser.wait("error", after=seen)["error"] == sentence
        assert len(contacts_of(web, "1001")) == 1  # still the member's phone


def test_a_server_that_died_drops_the_browser_phones_it_had_when_it_starts_again(
    web: Web, softphone_factory: Callable[..., Softphone]
) -> None:
    phone_for(softphone_factory, web.server, "1001")

    def agents() -> list[str]:
        rows = web.server.cli_json("registrations")
        return sorted(str(row["user_agent"]) for row in rows if row["extension"] == "1001")

    with BrowserClient(web.url, DOMAIN, "1001", "secret-1001", tone_hz=A_TONE) as browser:
        browser.wait("registered")
        desk_agent = [a for a in agents() if a != BROWSER_PHONE_AGENT]
        assert len(desk_agent) == 1 and BROWSER_PHONE_AGENT in agents(), agents()
        web.server.kill()  # the page's peer dies with it; its binding stays in the database
    assert BROWSER_PHONE_AGENT in agents()
    web.server.start()
    # Started again: the browser phone's binding is gone (nothing would answer it any more); the
    # desk phone's stays.
    assert agents() == desk_agent
    assert re.search(r"browser_phones_dropped .*bindings=1\b", web.server.log_tail(200)), (
        web.server.log_tail()
    )
