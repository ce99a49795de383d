"""Outside lines through the real server: trunks to a carrier played by SIPp, phones played by pjsua2.

The clinic has two trunks trusted by address, "first" (priority 1, the carrier on 127.0.0.2) and
"second" (priority 2, on 127.0.0.3), a main number, one public number that rings the reception
group (700, whose member is 1002), and staff 1001 allowed to dial abroad. Everything is set up
with the CLI an operator uses (`trunk add`, `number add`, `holiday add`, `clinic set`,
`clinic countries allow|deny`, `user set --dial/--number`), and each test asserts what a user
sees: the number the carrier was asked to call (exactly, in E.164), the caller ID it got, what a
refused phone heard and the status it got, which trunk took the call, who rang and whose number
they saw, what a caller outside opening hours heard.

Prompts are the clinic's own recordings here, tones (`country_closed` 2600 Hz, `clinic_closed`
2000 Hz), so that a recording shows which prompt played. The carrier's audio is an `RtpPeer`
(tests/system/rtp_peer.py) that records what reaches the carrier and talks back; the carrier
scenarios themselves are proven against SIPp in test_trunk_scenarios.py.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.system.audio import write_tone
from tests.system.carrier import (
    ANSWER,
    CALLER,
    CARRIER_IP,
    EARLY_486,
    FAIL_503,
    REGISTRAR,
    RING_503,
    SECOND_CARRIER_IP,
    SILENT,
    STRANGER_IP,
    Carrier,
    caller_keys,
    digest_params,
    digest_valid,
    read_log,
    start_carrier,
    uri_user,
)
from tests.system.peers import LOOPBACK, Sipp, SippProcess, Softphone, free_port, wait_until, write_users_csv
from tests.system.rtp_peer import RtpPeer
from tests.system.server import SentralServer
from tests.system.test_call_media import amplitude, assert_hears, media_range
from tests.system.test_calls import records
from tests.system.test_media import windows

DOMAIN = "clinic.test"
MAIN_NUMBER = "+4722334400"
OWN_NUMBER = "+4722334411"  # 1002's public number of their own
PUBLIC = "+4722334455"  # rings the reception group
GROUP = "700"
PATIENT = "91234567"  # a Norwegian mobile, as dialled at home
PATIENT_E164 = "+4791234567"
SWEDEN = "0046812345678"  # a Stockholm number dialled with 00, once Sweden is open
SWEDEN_E164 = "+46812345678"
GERMANY = "00493012345678"  # a Berlin number: Germany stays closed
COUNTRY_CLOSED_TONE = 2600.0
CLINIC_CLOSED_TONE = 2000.0
PHONE_TONE, CARRIER_TONE = 440.0, 1000.0
TRUNK_USER = "trunkuser"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Clinic:
    """The running server with its trunks' ports, and the carriers a test started."""

    server: SentralServer
    sipp: Sipp
    tmp: Path
    relay: tuple[int, int]
    trunk_ports: dict[str, int]
    factory: Callable[..., Softphone]
    carriers: list[Carrier] = field(default_factory=list)
    peers: list[RtpPeer] = field(default_factory=list)

    def carrier(self, scenario: Path, trunk: str = "first", **kwargs: Any) -> Carrier:
        """Start a carrier scenario where trunk ``first`` or ``second`` points."""
        ip = CARRIER_IP if trunk == "first" else SECOND_CARRIER_IP
        log = self.tmp / f"carrier-{trunk}-{len(self.carriers)}.log"
        started = start_carrier(self.sipp, scenario, log, ip=ip, port=self.trunk_ports[trunk], **kwargs)
        self.carriers.append(started)
        return started

    def rtp(self, host: str) -> RtpPeer:
        peer = RtpPeer(host)
        self.peers.append(peer)
        return peer

    def phone(self, ext: str) -> Softphone:
        phone = self.factory(f"phone{ext}")
        phone.add_account(ext, ext, f"secret-{ext}", DOMAIN, self.server.address, display=f"Staff {ext}")
        phone.wait_registered(ext)
        return phone

    def trunk_states(self) -> dict[str, str]:
        """`sentral trunk list --json`: each trunk's state by name."""
        rows = self.server.cli_json("trunk", "list")
        return {row["name"]: row["state"] for row in rows}

    def wait_trunk(self, name: str, state: str, timeout: float) -> None:
        wait_until(lambda: self.trunk_states().get(name) == state, timeout, f"trunk {name} {state}", 0.3)


@pytest.fixture
def clinic(
    tmp_path: Path, sounds: Path, sipp: Sipp, softphone_factory: Callable[..., Softphone]
) -> Iterator[Clinic]:
    own = tmp_path / "clinic-sounds" / "nb"
    own.mkdir(parents=True)
    write_tone(own / "country_closed.wav", COUNTRY_CLOSED_TONE, seconds=1.5)
    write_tone(own / "clinic_closed.wav", CLINIC_CLOSED_TONE, seconds=1.5)
    first, last = media_range()
    trunk_ports = {"first": free_port(CARRIER_IP), "second": free_port(SECOND_CARRIER_IP)}
    workdir = tmp_path / "server"
    server = SentralServer(
        f"sqlite:///{workdir / 'sentral.db'}",
        workdir,
        extra_args=[
            "--sounds", str(sounds), "--clinic-sounds", str(own.parent),
            "--media-ports", f"{first}-{last}", "--drain-timeout", "2",
        ],
    )  # fmt: skip
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        ("clinic", "set", DOMAIN, "--country", "NO", "--main-number", MAIN_NUMBER),
        *(("user", "add", ext, "--name", f"Staff {ext}", "--password", f"secret-{ext}") for ext in ("1001", "1002")),
        ("user", "set", "1001", "--dial", "international"),
        ("user", "set", "1002", "--dial", "national", "--number", OWN_NUMBER),
        ("group", "add", "reception", "--number", GROUP, "--member", "1002"),
        ("trunk", "add", "first", "--host", f"{CARRIER_IP}:{trunk_ports['first']}", "--priority", "1",
         "--username", TRUNK_USER, "--password", "pw-first"),
        ("trunk", "add", "second", "--host", f"{SECOND_CARRIER_IP}:{trunk_ports['second']}", "--priority", "2"),
        ("number", "add", PUBLIC, "--to", GROUP),
    )  # fmt: skip
    server.start()
    found = Clinic(server, sipp, tmp_path, (first, last), trunk_ports, softphone_factory)
    try:
        yield found
    finally:
        for carrier in found.carriers:
            carrier.stop()
        for peer in found.peers:
            peer.close()
        server.stop()


def dial(number: str) -> str:
    return f"sip:{number}@{DOMAIN}"


def call_out(phone: Softphone, number: str, ext: str = "1001") -> str:
    """Dial an outside number and wait until the carrier's callee has answered."""
    call = phone.call(ext, dial(number))
    phone.wait_call_state(call, "CONFIRMED", timeout=10)
    return call


def hang_up(phone: Softphone, call: str) -> None:
    phone.hangup(call)
    phone.wait_call_state(call, "DISCONNECTED")


def assert_prompt(path: Path, hz: float, who: str) -> None:
    """The recording holds a prompt's tone, loud in at least half a second of quarter-second windows."""
    rate, parts = windows(path)
    levels = [round(amplitude(w, hz, rate)) for w in parts]
    assert sum(level > 1000 for level in levels) >= 2, f"{who} did not hear the {hz:g} Hz prompt: {levels}"


# -- outbound ---------------------------------------------------------------------------------------


def test_a_national_number_goes_out_in_e164_with_the_clinics_number_and_audio_crosses(
    clinic: Clinic, tmp_path: Path
) -> None:
    far = clinic.rtp(CARRIER_IP)
    carrier = clinic.carrier(ANSWER, rtp=far)
    phone = clinic.phone("1001")
    call = call_out(phone, PATIENT)
    [invite] = carrier.invites()
    assert invite.user == PATIENT_E164
    assert uri_user(invite.asserted) == MAIN_NUMBER and uri_user(invite.from_) == MAIN_NUMBER, invite
    assert invite.privacy == ""
    # Anchored: the carrier is told the relay's address, never the phone's.
    assert invite.sdp_ip == LOOPBACK and clinic.relay[0] <= invite.sdp_port <= clinic.relay[1], invite

    phone.wait_event("media_state", call=call, status="active")
    tone = write_tone(tmp_path / "phone.wav", PHONE_TONE)
    phone.play(call, tone, loop=True)
    wait_until(lambda: far.source is not None, 3, "the phone's audio at the carrier")
    far.talk(CARRIER_TONE)
    heard = tmp_path / "phone-heard.wav"
    phone.record(call, heard)
    time.sleep(2.5)
    assert phone.stop_media(call) == [str(heard)]
    assert_hears(heard, "the phone", CARRIER_TONE, PHONE_TONE)
    assert_hears(far.write_wav(tmp_path / "carrier-heard.wav"), "the carrier", PHONE_TONE, CARRIER_TONE)
    hang_up(phone, call)
    result = carrier.process.wait(5)
    assert result.successful == 1, result


def test_keys_cross_both_ways_as_telephone_events(clinic: Clinic, tmp_path: Path) -> None:
    far = clinic.rtp(CARRIER_IP)
    carrier = clinic.carrier(ANSWER, rtp=far)
    phone = clinic.phone("1001")
    call = call_out(phone, PATIENT)
    phone.wait_event("media_state", call=call, status="active")
    phone.play(call, write_tone(tmp_path / "phone.wav", PHONE_TONE), loop=True)
    wait_until(lambda: far.source is not None, 3, "the phone's audio at the carrier")
    phone.dtmf(call, "5#")
    wait_until(lambda: far.digits == ["5", "#"], 5, f"the keys at the carrier: {far.digits}")
    # The carrier sends with the payload type the offer it got names (RFC 3264 §5.1): the phone's.
    [[offered]] = read_log(carrier.log)["events"]
    far.press("7", payload_type=int(offered))
    event = phone.wait_event("dtmf", call=call, digit="7")
    assert event["method"] == "rfc4733", event
    hang_up(phone, call)
    assert carrier.process.wait(5).successful == 1


def test_a_trunk_over_tcp_is_connected_to_and_the_call_goes_out_on_it(clinic: Clinic) -> None:
    port = free_port(SECOND_CARRIER_IP)
    clinic.server.reconfigure("trunk", "remove", "first")
    clinic.server.reconfigure(
        "trunk", "set", "second", "--host", f"{SECOND_CARRIER_IP}:{port}", "--transport", "tcp"
    )
    log = clinic.tmp / "carrier-tcp.log"
    carrier = start_carrier(clinic.sipp, ANSWER, log, ip=SECOND_CARRIER_IP, port=port, transport="tcp")
    clinic.carriers.append(carrier)
    phone = clinic.phone("1001")
    hang_up(phone, call_out(phone, PATIENT))
    assert [i.user for i in carrier.invites()] == [PATIENT_E164]
    assert carrier.process.wait(5).successful == 1


def test_an_open_international_number_goes_out_and_a_closed_one_gets_403_and_the_prompt(
    clinic: Clinic, tmp_path: Path
) -> None:
    clinic.server.reconfigure("clinic", "countries", "allow", DOMAIN, "46")
    carrier = clinic.carrier(ANSWER)
    phone = clinic.phone("1001")
    call = call_out(phone, SWEDEN)
    hang_up(phone, call)
    assert [i.user for i in carrier.invites()] == [SWEDEN_E164]

    refused = phone.call("1001", dial(GERMANY))
    phone.wait_event("media_state", call=refused, status="active", timeout=5)
    heard = tmp_path / "refused.wav"
    phone.record(refused, heard)
    ended = phone.wait_call_state(refused, "DISCONNECTED", timeout=10)
    phone.wait_event("record_done", call=refused)
    assert ended["code"] == 403, ended
    assert_prompt(heard, COUNTRY_CLOSED_TONE, "the phone dialling Germany")
    assert [i.user for i in carrier.invites()] == [SWEDEN_E164], "the closed country reached the carrier"
    [row] = [row for row in records(clinic.server, 2) if row["status_to_caller"] == 403]
    assert "country" in row["hangup_reason"], row


def test_the_emergency_number_goes_out_with_every_country_closed(clinic: Clinic) -> None:
    clinic.server.reconfigure("clinic", "countries", "deny", DOMAIN, "47")
    carrier = clinic.carrier(ANSWER)
    phone = clinic.phone("1001")
    refused = phone.call("1001", dial(PATIENT))
    assert phone.wait_call_state(refused, "DISCONNECTED", timeout=10)["code"] == 403
    call = call_out(phone, "113")
    hang_up(phone, call)
    assert [i.user for i in carrier.invites()] == ["113"]


def test_own_number_and_the_hide_number_code_reach_the_carrier(clinic: Clinic) -> None:
    carrier = clinic.carrier(ANSWER)
    phone = clinic.phone("1002")
    call = call_out(phone, f"*31*{PATIENT}", ext="1002")
    hang_up(phone, call)
    [invite] = carrier.invites()
    assert invite.user == PATIENT_E164
    assert uri_user(invite.asserted) == OWN_NUMBER, invite
    assert "id" in [part.strip() for part in invite.privacy.split(";")], invite


def test_a_503_from_the_first_trunk_fails_over_to_the_second(clinic: Clinic) -> None:
    first = clinic.carrier(RING_503)
    second = clinic.carrier(ANSWER, "second")
    phone = clinic.phone("1001")
    call = call_out(phone, PATIENT)
    hang_up(phone, call)
    assert [i.user for i in first.invites()] == [PATIENT_E164]
    assert [i.user for i in second.invites()] == [PATIENT_E164]


def test_a_first_trunk_that_does_not_answer_fails_over_to_the_second(clinic: Clinic) -> None:
    first = clinic.carrier(SILENT, pause_ms=20000, calls=1, answer_options=False)
    second = clinic.carrier(ANSWER, "second")
    phone = clinic.phone("1001")
    call = phone.call("1001", dial(PATIENT))
    # A carrier that says nothing at all is given a few seconds, far less than Timer B's 32.
    phone.wait_call_state(call, "CONFIRMED", timeout=15)
    hang_up(phone, call)
    assert [i.user for i in first.invites()] == [PATIENT_E164]
    assert [i.user for i in second.invites()] == [PATIENT_E164]


def test_a_trunk_that_keeps_failing_is_marked_down_skipped_and_comes_back(clinic: Clinic) -> None:
    # It fails every call at once and answers no keepalive, so nothing brings it back meanwhile.
    failing = clinic.carrier(FAIL_503, answer_options=False)
    second = clinic.carrier(ANSWER, "second")
    phone = clinic.phone("1001")
    for _ in range(3):
        hang_up(phone, call_out(phone, PATIENT))
    assert len(failing.invites()) == 3
    clinic.wait_trunk("first", "down", 3)
    hang_up(phone, call_out(phone, PATIENT))
    assert len(failing.invites()) == 3, "a trunk marked down was tried"
    assert len(second.invites()) == 4

    failing.stop()
    back = clinic.carrier(ANSWER)  # answers OPTIONS again (-aa)
    clinic.wait_trunk("first", "up", 40)  # keepalives go every 30 s
    hang_up(phone, call_out(phone, PATIENT))
    assert [i.user for i in back.invites()] == [PATIENT_E164]
    assert len(second.invites()) == 4


def test_early_media_from_the_carrier_reaches_the_phone(clinic: Clinic, tmp_path: Path) -> None:
    far = clinic.rtp(CARRIER_IP)
    carrier = clinic.carrier(EARLY_486, rtp=far, pause_ms=3000)
    second = clinic.carrier(ANSWER, "second")
    phone = clinic.phone("1001")
    call = phone.call("1001", dial(PATIENT))
    wait_until(lambda: bool(carrier.invites()), 5, "the INVITE at the carrier")
    [invite] = carrier.invites()
    far.send_to(invite.sdp_ip, invite.sdp_port)  # the announcement plays before any packet came
    far.talk(CARRIER_TONE)
    phone.wait_event("media_state", call=call, status="active", timeout=5)
    heard = tmp_path / "early.wav"
    phone.record(call, heard)
    ended = phone.wait_call_state(call, "DISCONNECTED", timeout=10)
    phone.wait_event("record_done", call=call)
    assert ended["code"] == 486, ended
    assert_hears(heard, "the phone in early media", CARRIER_TONE, PHONE_TONE)
    assert second.invites() == [], "a busy callee is no reason to try another trunk"


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_a_registering_trunk_registers_refreshes_and_shows_registered(clinic: Clinic, algorithm: str) -> None:
    port = free_port(CARRIER_IP)
    log = clinic.tmp / "registrar.log"
    registrar = start_carrier(
        clinic.sipp,
        REGISTRAR,
        log,
        port=port,
        keys={"realm": "carrier.test", "algorithm": algorithm, "expires": "4"},
    )
    clinic.carriers.append(registrar)
    clinic.server.reconfigure(
        "trunk", "add", "registered", "--host", f"{CARRIER_IP}:{port}", "--register",
        "--username", TRUNK_USER, "--password", "pw-registered", "--priority", "5",
    )  # fmt: skip
    clinic.wait_trunk("registered", "registered", 5)
    # Granted 4 s: the refresh comes in about 2 s, and answers a new challenge.
    wait_until(lambda: len(read_log(log).get("register", [])) >= 4, 8, "the refresh at the registrar", 0.2)
    answered = [line for line in read_log(log)["register"] if line[1] == "answered"]
    assert [line[0] for line in answered] == ["1", "2"]
    for _, _, authorization, nonce in answered:
        params = digest_params(authorization)
        assert params["username"] == TRUNK_USER and params["nonce"] == nonce
        assert params.get("algorithm", "MD5").upper() == algorithm
        assert digest_valid(authorization, "REGISTER", "pw-registered")
    clinic.wait_trunk("registered", "registered", 3)
    shown = clinic.server.cli("trunk", "show", "registered").stdout + json.dumps(
        clinic.server.cli_json("trunk", "list")
    )
    assert "pw-registered" not in shown and "pw-registered" not in clinic.server.log_tail(400)


# -- inbound ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Way:
    """How a carrier writes the called public number: the Request-URI's user (and scheme), the To
    URI (the Request-URI's own when None), and one more header line."""

    ruri_user: str
    scheme: str = "sip"
    to: str | None = None
    header: str = "X-Carrier: plain"


WAYS = {
    "plus": Way(PUBLIC),
    "digits": Way(PUBLIC[1:]),
    "national": Way(PUBLIC[3:]),
    "tel": Way(PUBLIC, scheme="tel"),
    # The Request-URI names the trunk's user; the number is in P-Called-Party-ID, or in To.
    "p-called-party-id": Way(
        TRUNK_USER,
        to=f"sip:{TRUNK_USER}@carrier.test",
        header=f"P-Called-Party-ID: <sip:{PUBLIC}@carrier.test>",
    ),
    "to": Way(TRUNK_USER, to=f"sip:{PUBLIC[3:]}@carrier.test"),
}


def call_in(
    clinic: Clinic,
    way: Way = WAYS["plus"],
    *,
    source: str = CARRIER_IP,
    rtp: RtpPeer | None = None,
    name: str = "caller",
) -> tuple[SippProcess, Path]:
    """Start the carrier's caller: an INVITE from ``source`` to the public number written ``way``,
    from the patient's number as the carrier writes it (national)."""
    target = clinic.server.address
    ruri = f"tel:{way.ruri_user}" if way.scheme == "tel" else f"sip:{way.ruri_user}@{target}"
    users = write_users_csv(clinic.tmp / f"{name}.csv", [(ruri, way.to or ruri, PATIENT, way.header)])
    log = clinic.tmp / f"{name}.log"
    # From the first trunk's own address and port, so that it is that trunk however it is matched.
    port = clinic.trunk_ports["first"] if source == CARRIER_IP else None
    process = clinic.sipp.start(
        target, CALLER, local_ip=source, local_port=port, users=users, calls=1, timeout=25,
        extra=[*caller_keys(rtp, source), "-trace_logs", "-log_file", str(log), "-aa"],
    )  # fmt: skip
    return process, log


def test_the_public_number_written_each_way_rings_the_group_with_the_caller_in_e164(clinic: Clinic) -> None:
    # One server for every way: a server of its own for each would double the time, and the ways
    # share no state (each call is answered and hung up before the next).
    phone = clinic.phone("1002")
    for way in WAYS:
        process, log = call_in(clinic, WAYS[way], name=f"caller-{way}")
        try:
            incoming = phone.wait_incoming("1002", timeout=5)
        except AssertionError as exc:
            process.stop()
            raise AssertionError(
                f"the number written the {way!r} way rang nobody: {process.wait(1)}"
            ) from exc
        assert PATIENT_E164 in incoming["remote_uri"], (way, incoming)
        phone.answer(incoming["call"])
        phone.wait_call_state(incoming["call"], "CONFIRMED")
        hang_up(phone, incoming["call"])
        result = process.wait()
        assert result.successful == 1, (way, result)
        assert read_log(log)["bye"] == [["clinic"]], way


def test_audio_crosses_both_ways_on_an_inbound_call(clinic: Clinic, tmp_path: Path) -> None:
    near = clinic.rtp(CARRIER_IP)
    phone = clinic.phone("1002")
    process, _ = call_in(clinic, rtp=near)
    incoming = phone.wait_incoming("1002")
    call = incoming["call"]
    phone.answer(call)
    phone.wait_call_state(call, "CONFIRMED")
    phone.wait_event("media_state", call=call, status="active")
    phone.play(call, write_tone(tmp_path / "phone.wav", PHONE_TONE), loop=True)
    wait_until(lambda: near.source is not None, 3, "the phone's audio at the carrier's caller")
    near.talk(CARRIER_TONE)
    heard = tmp_path / "phone-heard.wav"
    phone.record(call, heard)
    time.sleep(2.5)
    assert phone.stop_media(call) == [str(heard)]
    assert_hears(heard, "the phone", CARRIER_TONE, PHONE_TONE)
    assert_hears(near.write_wav(tmp_path / "caller-heard.wav"), "the caller", PHONE_TONE, CARRIER_TONE)
    hang_up(phone, call)
    assert process.wait().successful == 1


def assert_closed_message(clinic: Clinic, phone: Softphone, name: str) -> None:
    """A call to the public number now: the caller hears the closed message, nobody rings."""
    near = clinic.rtp(CARRIER_IP)
    process, log = call_in(clinic, rtp=near, name=name)
    result = process.wait()
    assert result.successful == 1, result
    assert_prompt(near.write_wav(clinic.tmp / f"{name}-heard.wav"), CLINIC_CLOSED_TONE, "the caller")
    logged = read_log(log)
    assert logged.get("bye") in (None, [["clinic"]]), logged  # Sentral ends it, not the caller


def test_outside_opening_hours_the_caller_hears_the_closed_message(clinic: Clinic) -> None:
    tomorrow = DAYS[(datetime.date.today().weekday() + 1) % 7]
    clinic.server.reconfigure("number", "set", PUBLIC, "--hours", f"{tomorrow} 08:00-16:00")
    phone = clinic.phone("1002")
    assert_closed_message(clinic, phone, "closed")
    assert phone.events("incoming_call") == [], "the group rang while the clinic was closed"


def test_on_a_holiday_the_caller_hears_the_closed_message(clinic: Clinic) -> None:
    clinic.server.reconfigure("number", "set", PUBLIC, "--hours", "mon-sun 00:00-24:00")
    phone = clinic.phone("1002")
    # Open today: the group rings, and the phone sends the caller away busy.
    process, _ = call_in(clinic, name="open")
    incoming = phone.wait_incoming("1002")
    phone.hangup(incoming["call"], code=486)
    assert process.wait().successful == 1
    clinic.server.reconfigure("holiday", "add", datetime.date.today().isoformat(), "--name", "Test day")
    assert_closed_message(clinic, phone, "holiday")
    assert len(phone.events("incoming_call")) == 1, "the group rang on a holiday"


def test_an_invite_to_the_public_number_from_no_trunk_gets_403(clinic: Clinic) -> None:
    phone = clinic.phone("1002")
    process, log = call_in(clinic, source=STRANGER_IP, name="stranger")
    result = process.wait()
    assert read_log(log).get("final") == [["403"]], result
    assert phone.events("incoming_call") == []
    lines = [line for line in clinic.server.log_tail(400).splitlines() if STRANGER_IP in line]
    assert any("warning" in line for line in lines), clinic.server.log_tail(60)
