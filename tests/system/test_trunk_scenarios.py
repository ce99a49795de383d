"""The carrier scenarios of the trunk tests, proven against SIPp and a digest client written here.

tests/system/test_trunks.py plays the carrier with SIPp scenarios and an RTP peer of its own;
when one of those tests fails, this file says whether the harness or the server is wrong. Each
carrier scenario meets the carrier's-caller scenario on loopback (as Sentral would sit between
them), on the loopback addresses the trunk tests use, and what each side logged is checked; the
registrar is answered by a small client here that speaks MD5 and SHA-256 digests. The answering
and the announcing carrier are also called through Sentral as an extension, which proves the RTP
peer and the phone's recordings against the relay as it is.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

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
    Carrier,
    caller_keys,
    digest_params,
    digest_valid,
    read_log,
    start_carrier,
)
from tests.system.peers import LOOPBACK, Sipp, Softphone, free_port, wait_until, write_users_csv
from tests.system.rtp_peer import RtpPeer
from tests.system.server import SentralServer
from tests.system.test_call_media import assert_hears, media_range
from tests.system.test_calls import dial, phone_for, register_sipp_uas, start_clinic

NUMBER = "+4722334455"
SIPP_REGISTER = Path(__file__).parent / "scenarios" / "register_auth.xml"
CALLER_TONE, CARRIER_TONE = 440.0, 1000.0


def caller_row(carrier: str, ruri_user: str, scheme: str = "sip") -> tuple[str, ...]:
    ruri = f"tel:{ruri_user}" if scheme == "tel" else f"sip:{ruri_user}@{carrier}"
    return (ruri, f"sip:{NUMBER}@carrier.test", "91234567", "X-Carrier: plain")


def test_a_call_the_carrier_answers_carries_audio_both_ways(sipp: Sipp, tmp_path: Path) -> None:
    with RtpPeer(CARRIER_IP) as far, RtpPeer(SECOND_CARRIER_IP) as near:
        carrier = start_carrier(sipp, ANSWER, tmp_path / "carrier.log", rtp=far, calls=1, timeout=30)
        users = write_users_csv(tmp_path / "caller.csv", [caller_row(carrier.address, NUMBER)])
        log = tmp_path / "caller.log"
        caller = sipp.start(
            carrier.address, CALLER, local_ip=SECOND_CARRIER_IP, users=users, calls=1, timeout=30,
            extra=[*caller_keys(near, SECOND_CARRIER_IP), "-trace_logs", "-log_file", str(log)],
        )  # fmt: skip
        wait_until(lambda: "answered" in read_log(log), 5, "the caller to be answered")
        [answered] = read_log(log)["answered"]
        assert answered == [CARRIER_IP, str(far.port)]
        [invite] = carrier.invites()
        assert (invite.user, invite.sdp_ip, invite.sdp_port) == (NUMBER, SECOND_CARRIER_IP, near.port)
        assert invite.asserted == "" and invite.privacy == ""
        near.send_to(CARRIER_IP, far.port)
        near.talk(CALLER_TONE)
        wait_until(lambda: far.source is not None, 2, "the caller's audio at the carrier")
        far.talk(CARRIER_TONE)
        time.sleep(2.0)
        assert_hears(far.write_wav(tmp_path / "carrier-heard.wav"), "carrier", CALLER_TONE, CARRIER_TONE)
        assert_hears(near.write_wav(tmp_path / "caller-heard.wav"), "caller", CARRIER_TONE, CALLER_TONE)
        result, served = caller.wait(), carrier.process.wait(5)
    assert result.successful == 1 and result.failed == 0, result
    assert served.successful == 1 and served.failed == 0, served
    assert read_log(log)["bye"] == [["caller"]]


@pytest.mark.parametrize(("scenario", "final"), [(FAIL_503, "503"), (RING_503, "503"), (EARLY_486, "486")])
def test_a_carrier_that_fails_is_acknowledged(sipp: Sipp, tmp_path: Path, scenario: Path, final: str) -> None:
    with RtpPeer(CARRIER_IP) as far, RtpPeer(SECOND_CARRIER_IP) as near:
        carrier = start_carrier(sipp, scenario, tmp_path / "carrier.log", rtp=far, calls=1, pause_ms=2000)
        users = write_users_csv(tmp_path / "caller.csv", [caller_row(carrier.address, NUMBER)])
        log = tmp_path / "caller.log"
        caller = sipp.start(
            carrier.address, CALLER, local_ip=SECOND_CARRIER_IP, users=users, calls=1, timeout=15,
            extra=[*caller_keys(near, SECOND_CARRIER_IP), "-trace_logs", "-log_file", str(log)],
        )  # fmt: skip
        wait_until(lambda: bool(carrier.invites()), 5, "the carrier to log the INVITE")
        [invite] = carrier.invites()
        if scenario == EARLY_486:
            # The announcement goes where the INVITE's SDP said, before any packet came back.
            far.send_to(invite.sdp_ip, invite.sdp_port)
            far.talk(CARRIER_TONE)
        result, served = caller.wait(), carrier.process.wait(5)
        heard = near.write_wav(tmp_path / "early.wav")
    assert result.successful == 1 and result.failed == 0, result
    assert served.successful == 1 and served.failed == 0, served
    logged = read_log(log)
    assert logged["final"] == [[final]] and "answered" not in logged
    if scenario == EARLY_486:
        assert logged["early"] == [[CARRIER_IP, str(far.port)]]
        assert_hears(heard, "caller in early media", CARRIER_TONE, CALLER_TONE)


def test_a_silent_carrier_logs_the_invite_and_sends_nothing(sipp: Sipp, tmp_path: Path) -> None:
    carrier = start_carrier(sipp, SILENT, tmp_path / "carrier.log", calls=1, pause_ms=3000)
    users = write_users_csv(tmp_path / "caller.csv", [caller_row(carrier.address, NUMBER)])
    log = tmp_path / "caller.log"
    result = sipp.run(
        carrier.address, CALLER, local_ip=SECOND_CARRIER_IP, users=users, calls=1, timeout=2,
        extra=[*caller_keys(None, SECOND_CARRIER_IP), "-trace_logs", "-log_file", str(log)],
    )  # fmt: skip
    assert result.successful == 0, result
    assert "final" not in read_log(log) and "early" not in read_log(log)
    assert [i.user for i in carrier.invites()] == [NUMBER]
    carrier.stop()


def test_every_way_of_writing_the_number_reaches_the_carrier_log(sipp: Sipp, tmp_path: Path) -> None:
    forms = [("sip", "+4722334455"), ("sip", "4722334455"), ("sip", "22334455"), ("tel", "+4722334455")]
    carrier = start_carrier(sipp, FAIL_503, tmp_path / "carrier.log", calls=len(forms))
    rows = [caller_row(carrier.address, user, scheme) for scheme, user in forms]
    rows[0] = (*rows[0][:3], f"P-Called-Party-ID: <sip:{NUMBER}@carrier.test>")
    users = write_users_csv(tmp_path / "caller.csv", rows)
    result = sipp.run(
        carrier.address, CALLER, local_ip=SECOND_CARRIER_IP, users=users, calls=len(forms), timeout=15,
        extra=caller_keys(None, SECOND_CARRIER_IP),
    )  # fmt: skip
    assert result.successful == len(forms) and result.failed == 0, result
    assert [i.user for i in carrier.invites()] == [user for _, user in forms]
    assert all(i.from_.startswith("<sip:91234567@") for i in carrier.invites())
    carrier.process.wait(5)


# -- the registrar --------------------------------------------------------------------------------


def register(sock: socket.socket, registrar: tuple[str, int], cseq: int, call_id: str, auth: str = "") -> str:
    """Send one REGISTER and return the final response's text."""
    host, port = sock.getsockname()
    lines = [
        f"REGISTER sip:{registrar[0]}:{registrar[1]} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport",
        "Max-Forwards: 70",
        f"From: <sip:trunkuser@{registrar[0]}>;tag=t{call_id[:6]}",
        f"To: <sip:trunkuser@{registrar[0]}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:trunkuser@{host}:{port}>",
        "Expires: 3600",
        *([f"Authorization: {auth}"] if auth else []),
        "Content-Length: 0",
    ]
    sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), registrar)
    while True:
        text = sock.recv(65536).decode()
        if not text.startswith("SIP/2.0 1"):
            return text


def answer(challenge: str, password: str, uri: str) -> str:
    """A Digest Authorization for a 401's WWW-Authenticate (qop auth), MD5 or SHA-256."""
    found = re.search(r"^WWW-Authenticate: (.*)$", challenge, re.M | re.I)
    assert found, challenge
    p = digest_params(found[1].strip())
    algorithm = p.get("algorithm", "MD5")
    hash_ = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm.upper()]

    def h(text: str) -> str:
        return hash_(text.encode()).hexdigest()

    cnonce = secrets.token_hex(8)
    ha1, ha2 = h(f"trunkuser:{p['realm']}:{password}"), h(f"REGISTER:{uri}")
    response = h(f"{ha1}:{p['nonce']}:00000001:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="trunkuser", realm="{p["realm"]}", nonce="{p["nonce"]}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}, qop=auth, nc=00000001, cnonce="{cnonce}"'
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_the_registrar_challenges_twice_and_logs_digests_that_check(
    sipp: Sipp, tmp_path: Path, algorithm: str
) -> None:
    keys = {"realm": "carrier.test", "algorithm": algorithm, "expires": "4"}
    carrier = start_carrier(sipp, REGISTRAR, tmp_path / "registrar.log", calls=1, keys=keys)
    registrar = (carrier.ip, carrier.port)
    uri = f"sip:{carrier.ip}:{carrier.port}"
    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.settimeout(3)
        cseq = 1
        for _round in (1, 2):
            challenge = register(sock, registrar, cseq, call_id)
            assert challenge.startswith("SIP/2.0 401"), challenge
            assert f"algorithm={algorithm}" in challenge and 'realm="carrier.test"' in challenge
            ok = register(sock, registrar, cseq + 1, call_id, answer(challenge, "pw-1", uri))
            assert ok.startswith("SIP/2.0 200"), ok
            assert re.search(r"^Expires: 4\r?$", ok, re.M) and ";expires=4" in ok, ok
            cseq += 2
    served = carrier.process.wait(5)
    assert served.successful == 1 and served.failed == 0, served
    lines = read_log(tmp_path / "registrar.log")["register"]
    assert [line[:2] for line in lines] == [
        ["1", "challenged"],
        ["1", "answered"],
        ["2", "challenged"],
        ["2", "answered"],
    ]
    for _, _, authorization, nonce in (line for line in lines if line[1] == "answered"):
        assert digest_params(authorization)["nonce"] == nonce
        assert digest_valid(authorization, "REGISTER", "pw-1")
        assert not digest_valid(authorization, "REGISTER", "pw-2")


def test_sipps_own_md5_client_answers_the_registrars_challenge(sipp: Sipp, tmp_path: Path) -> None:
    keys = {"realm": "carrier.test", "algorithm": "MD5", "expires": "60"}
    carrier = start_carrier(sipp, REGISTRAR, tmp_path / "registrar.log", calls=1, keys=keys)
    users = write_users_csv(tmp_path / "users.csv", [("trunkuser", "pw-1", carrier.ip)])
    result = sipp.run(carrier.address, SIPP_REGISTER, users=users, calls=1, timeout=10)
    assert result.successful == 1 and result.failed == 0, result
    carrier.stop()
    [line] = [line for line in read_log(tmp_path / "registrar.log")["register"] if line[1] == "answered"]
    assert digest_valid(line[2], "REGISTER", "pw-1")


# -- the carrier scenarios behind Sentral, as a phone registered to it --------------------------------
#
# Before trunks, the same scenarios and RTP peer are called through Sentral as an extension: what
# the trunk tests do with the audio (a phone's tone to the carrier, the carrier's back, early media
# played before any packet came) is proven against the relay as it is.


@pytest.fixture
def relay_clinic(tmp_path: Path, sounds: Path) -> Iterator[tuple[SentralServer, tuple[int, int]]]:
    first, last = media_range()
    server = start_clinic(
        tmp_path,
        "--sounds",
        str(sounds),
        "--media-ports",
        f"{first}-{last}",
        "--drain-timeout",
        "2",
        digest="md5",
    )
    try:
        yield server, (first, last)
    finally:
        server.stop()


def carrier_as_extension(
    sipp: Sipp, server: SentralServer, tmp_path: Path, scenario: Path, far: RtpPeer, pause_ms: int = 1000
) -> Carrier:
    """A carrier scenario registered to Sentral as 1002 (from the loopback address the phones use)."""
    port = free_port()
    register_sipp_uas(sipp, server, tmp_path, "1002", port)
    log = tmp_path / "carrier.log"
    return start_carrier(sipp, scenario, log, ip=LOOPBACK, port=port, rtp=far, calls=1, pause_ms=pause_ms)


def test_behind_sentral_the_answering_carrier_and_its_peer_talk_both_ways(
    relay_clinic: tuple[SentralServer, tuple[int, int]],
    sipp: Sipp,
    softphone_factory: Callable[..., Softphone],
    tmp_path: Path,
) -> None:
    server, relay = relay_clinic
    with RtpPeer(LOOPBACK) as far:
        carrier = carrier_as_extension(sipp, server, tmp_path, ANSWER, far)
        phone = phone_for(softphone_factory, server, "1001")
        call = phone.call("1001", dial(server, "1002"))
        phone.wait_call_state(call, "CONFIRMED")
        phone.wait_event("media_state", call=call, status="active")
        [invite] = carrier.invites()
        assert invite.user == "1002" and invite.sdp_ip == LOOPBACK, invite
        assert relay[0] <= invite.sdp_port <= relay[1], invite
        phone.play(call, write_tone(tmp_path / "phone.wav", CALLER_TONE), loop=True)
        wait_until(lambda: far.source is not None, 3, "the phone's audio at the carrier")
        far.talk(CARRIER_TONE)
        heard = tmp_path / "phone-heard.wav"
        phone.record(call, heard)
        time.sleep(2.5)
        assert phone.stop_media(call) == [str(heard)]
        assert_hears(heard, "the phone", CARRIER_TONE, CALLER_TONE)
        assert_hears(far.write_wav(tmp_path / "carrier-heard.wav"), "the carrier", CALLER_TONE, CARRIER_TONE)
        phone.hangup(call)
        phone.wait_call_state(call, "DISCONNECTED")
        served = carrier.process.wait(5)
    assert served.successful == 1 and served.failed == 0, served


def test_behind_sentral_the_carriers_early_media_reaches_the_phone(
    relay_clinic: tuple[SentralServer, tuple[int, int]],
    sipp: Sipp,
    softphone_factory: Callable[..., Softphone],
    tmp_path: Path,
) -> None:
    server, _ = relay_clinic
    with RtpPeer(LOOPBACK) as far:
        carrier = carrier_as_extension(sipp, server, tmp_path, EARLY_486, far, pause_ms=3000)
        phone = phone_for(softphone_factory, server, "1001")
        call = phone.call("1001", dial(server, "1002"))
        wait_until(lambda: bool(carrier.invites()), 5, "the INVITE at the carrier")
        [invite] = carrier.invites()
        far.send_to(invite.sdp_ip, invite.sdp_port)
        far.talk(CARRIER_TONE)
        phone.wait_event("media_state", call=call, status="active", timeout=5)
        heard = tmp_path / "early.wav"
        phone.record(call, heard)
        ended = phone.wait_call_state(call, "DISCONNECTED", timeout=10)
        phone.wait_event("record_done", call=call)
        served = carrier.process.wait(5)
    assert ended["code"] == 486, ended
    assert_hears(heard, "the phone in early media", CARRIER_TONE, CALLER_TONE)
    assert served.successful == 1 and served.failed == 0, served
