"""Mid-call features through the real server, between SIPp phones on loopback.

A SIPp caller authenticates and calls a SIPp callee registered to Sentral; both run scenarios of
their own (tests/system/scenarios/features_*.xml) and write what they received (o= and m= lines,
INFO bodies, Session-Expires values, SIPp's clock) to a log file each. A test asserts on those
lines, which is what each phone saw, and on the call record (`sentral cdr --json`).

Covered: UPDATE with SDP passed across (RFC 3311), INFO carrying DTMF (application/dtmf-relay)
passed across both ways, an INVITE without SDP (the offer in the 2xx, the answer in the ACK), and
Sentral's own session timers (RFC 4028): its refresh on each leg and the teardown of a call
whose refresher stops refreshing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.system.peers import Sipp, SippProcess, SippResult, free_port, write_users_csv
from tests.system.server import SentralServer
from tests.system.test_calls import DOMAIN, SCENARIOS, records, register_sipp_uas, start_clinic

CALLER, CALLEE = "1001", "1002"
ORIGIN = re.compile(r"^o=(\S+) (\d+) (\d+) IN IP4 (\S+)$")


@dataclass(frozen=True, slots=True)
class Origin:
    """An SDP o= line: who made the session description, its session id and version."""

    username: str
    session: str
    version: int
    address: str


def origin(line: str) -> Origin:
    found = ORIGIN.match(line)
    assert found, f"not an o= line: {line!r}"
    return Origin(found[1], found[2], int(found[3]), found[4])


Log = dict[str, list[list[str]]]


def sipp_log(path: Path) -> Log:
    """The lines a scenario logged (``kind|field|field``: header values hold semicolons), by kind."""
    lines: Log = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            kind, *fields = line.split("|")
            lines.setdefault(kind, []).append(fields)
    return lines


def one(log: Log, kind: str, fields: int, seen: object) -> list[str]:
    """The fields of the one line of ``kind`` a scenario logged; fails showing ``seen`` otherwise."""
    lines = log.get(kind, [])
    assert len(lines) == 1 and len(lines[0]) == fields, (
        f"expected one {kind!r} line of {fields} fields\n{seen}"
    )
    return lines[0]


def seconds_between(earlier: str, later: str) -> float:
    """The time between two of SIPp's [clock_tick] values (ms) logged by one SIPp process."""
    return (int(later) - int(earlier)) / 1000


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[SentralServer]:
    """A running server with clinic.test offering MD5 (SIPp speaks no other) and staff 1001..1003.

    Media passes straight between the phones here (``--direct-media``): these tests follow the
    SDP each side sent to the other, ports included; anchored media has tests of its own."""
    server = start_clinic(tmp_path, "--drain-timeout", "3", "--direct-media", digest="md5")
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Call:
    """One SIPp caller and one SIPp callee, each with its own log file."""

    caller: SippResult
    callee: SippResult
    caller_log: Log
    callee_log: Log

    def __str__(self) -> str:
        return (
            f"-- caller:\n{self.caller}\n-- caller log: {self.caller_log}\n"
            f"-- callee:\n{self.callee}\n-- callee log: {self.callee_log}"
        )


def call_between_sipps(
    clinic: SentralServer, sipp: Sipp, tmp_path: Path, name: str, *, timeout: float = 20.0
) -> Call:
    """Register a SIPp callee as 1002, start it with ``features_NAME_uas.xml``, let 1001 call it
    with ``features_NAME_uac.xml``, and wait for both to finish."""
    uas_port = free_port()
    register_sipp_uas(sipp, clinic, tmp_path, CALLEE, uas_port)
    users = write_users_csv(tmp_path / f"{name}-caller.csv", [(CALLER, f"secret-{CALLER}", DOMAIN, CALLEE)])
    caller_log, callee_log = tmp_path / f"{name}-caller.log", tmp_path / f"{name}-callee.log"
    with sipp.running(
        None,
        SCENARIOS / f"features_{name}_uas.xml",
        local_port=uas_port,
        calls=1,
        timeout=timeout + 5,
        extra=["-trace_logs", "-log_file", str(callee_log)],
    ) as uas:
        uas.wait_listening()
        caller = sipp.run(
            clinic.address,
            SCENARIOS / f"features_{name}_uac.xml",
            users=users,
            calls=1,
            timeout=timeout,
            auth_uri=DOMAIN,
            extra=["-trace_logs", "-log_file", str(caller_log)],
        )
        callee = uas.wait(5.0)  # it ends by itself once its one call is over
    return Call(caller, callee, sipp_log(caller_log), sipp_log(callee_log))


def test_update_with_sdp_reaches_the_callee_and_its_answer_comes_back(
    clinic: SentralServer, sipp: Sipp, tmp_path: Path
) -> None:
    """The caller sends UPDATE with a new offer (audio port 40100 -> 40102) in an answered call.
    The callee receives an UPDATE with that offer, under Sentral's o= line for the callee's leg
    (not the caller's own), and answers 200 with SDP (port 40202); the caller's 200 carries that
    answer under Sentral's o= line for the caller's leg, whose version went up by one since the
    answer to the INVITE, as RFC 3264 section 8 requires of a changed session."""
    call = call_between_sipps(clinic, sipp, tmp_path, "update")
    assert (call.caller.successful, call.caller.failed) == (1, 0), call
    assert (call.callee.successful, call.callee.failed) == (1, 0), call
    invite_o, invite_m = one(call.callee_log, "invite", 2, call)
    offer_o, offer_m, offer_type = one(call.callee_log, "update-offer", 3, call)
    answer_o, answer_m = one(call.caller_log, "answer", 2, call)
    update_o, update_m = one(call.caller_log, "update-answer", 2, call)
    assert invite_m.startswith("m=audio 40100 ") and offer_m.startswith("m=audio 40102 "), call
    assert offer_type == "application/sdp", call
    assert answer_m.startswith("m=audio 40200 ") and update_m.startswith("m=audio 40202 "), call
    b_first, b_update = origin(invite_o), origin(offer_o)
    a_first, a_update = origin(answer_o), origin(update_o)
    # Each leg has Sentral's own o= line: never the phone's ("caller", "callee"), one session id
    # per leg, kept for the life of the call, its version bumped when the session changed.
    assert {o.username for o in (b_first, b_update, a_first, a_update)} == {"sentral"}, call
    assert b_update.session == b_first.session and b_update.version == b_first.version + 1, call
    assert a_update.session == a_first.session and a_update.version == a_first.version + 1, call
    assert a_first.session != b_first.session, call
    [row] = records(clinic, 1)
    assert row["disposition"] == "answered" and row["hangup_by"] == "caller", row
    assert row["hangup_reason"] == "BYE", row
    assert [leg["outcome"] for leg in row["legs"]] == ["answered", "answered"], row


def test_info_with_dtmf_crosses_both_ways_and_is_answered(
    clinic: SentralServer, sipp: Sipp, tmp_path: Path
) -> None:
    """The caller presses 5: an INFO with ``Signal=5`` and ``Duration=160`` (application/dtmf-relay)
    reaches the callee with the same type and body, and the callee's 200 comes back to the caller
    (SIPp fails the call otherwise). Then the callee presses #: the same the other way round."""
    call = call_between_sipps(clinic, sipp, tmp_path, "info")
    assert (call.caller.successful, call.caller.failed) == (1, 0), call
    assert (call.callee.successful, call.callee.failed) == (1, 0), call
    # "Signal=5\r\nDuration=160\r\n" is 24 bytes and "Signal=#\r\nDuration=250\r\n" 24 as well: the
    # length shows that nothing was added to or cut from the body on the way.
    assert call.callee_log["info"] == [["application/dtmf-relay", "24", "Signal=5", "Duration=160"]], call
    assert call.caller_log["info"] == [["application/dtmf-relay", "24", "Signal=#", "Duration=250"]], call
    [row] = records(clinic, 1)
    assert row["disposition"] == "answered" and row["hangup_by"] == "caller", row
    assert row["hangup_reason"] == "BYE", row


def test_invite_without_sdp_gets_the_offer_in_the_200_and_the_answer_in_the_ack(
    clinic: SentralServer, sipp: Sipp, tmp_path: Path
) -> None:
    """The caller's INVITE has no SDP, so the callee is asked without one either; the callee's 200
    carries the offer (port 40204) to the caller, and the caller's ACK carries the answer (port
    40104) to the callee: each under Sentral's o= line for its leg, one session id per leg."""
    call = call_between_sipps(clinic, sipp, tmp_path, "late_offer")
    assert (call.caller.successful, call.caller.failed) == (1, 0), call
    assert (call.callee.successful, call.callee.failed) == (1, 0), call
    assert call.callee_log["invite"] == [["0"]], call  # Content-Length: 0, no offer made up
    offer_o, offer_m = one(call.caller_log, "offer", 2, call)
    answer_o, answer_m, answer_type = one(call.callee_log, "ack", 3, call)
    assert offer_m.startswith("m=audio 40204 "), call
    assert answer_m.startswith("m=audio 40104 ") and answer_type == "application/sdp", call
    a_leg, b_leg = origin(offer_o), origin(answer_o)
    assert a_leg.username == b_leg.username == "sentral" and a_leg.session != b_leg.session, call
    [row] = records(clinic, 1)
    assert row["disposition"] == "answered" and row["hangup_by"] == "caller", row
    assert [leg["outcome"] for leg in row["legs"]] == ["answered", "answered"], row


def test_sentral_refreshes_each_leg_and_ends_a_call_whose_refresher_goes_quiet(
    tmp_path: Path, sipp: Sipp
) -> None:
    """Session timers (RFC 4028) with the smallest interval there is, 90 s (Min-SE's floor): two
    calls side by side to the same SIPp callee, which does not speak of timers in its 200.

    - 1001 does not support timers and allows UPDATE: Sentral refreshes the caller's leg with
      UPDATE and the callee's leg with re-INVITE (the callee does not allow UPDATE), each at half
      the interval (45 s), naming itself the refresher; the caller then hangs up.
    - 1003 asks to be the refresher of its leg and never refreshes: Sentral sends BYE to both
      sides at 90 - min(32, 90 / 3) = 60 s (section 10), with a Reason saying why, and the record
      says the system ended the call because the session timer expired. Its callee's leg is
      refreshed at 45 s all the same.

    The test takes a little over a minute: the 90 s floor is the RFC's, and 60 s is the least it
    allows before a silent refresher's call is ended."""
    clinic = start_clinic(tmp_path, "--session-interval", "90", "--drain-timeout", "3", digest="md5")
    try:
        uas_port = free_port()
        register_sipp_uas(sipp, clinic, tmp_path, CALLEE, uas_port)
        logs = {name: tmp_path / f"{name}.log" for name in ("refresh", "expire", "callee")}

        def caller(ext: str, name: str) -> SippProcess:
            users = write_users_csv(tmp_path / f"{name}.csv", [(ext, f"secret-{ext}", DOMAIN, CALLEE)])
            return sipp.start(
                clinic.address,
                SCENARIOS / f"features_{name}_uac.xml",
                users=users,
                calls=1,
                timeout=85,
                auth_uri=DOMAIN,
                extra=["-trace_logs", "-log_file", str(logs[name])],
            )

        with sipp.running(
            None,
            SCENARIOS / "features_timer_uas.xml",
            local_port=uas_port,
            calls=2,
            timeout=90,
            extra=["-trace_logs", "-log_file", str(logs["callee"])],
        ) as uas:
            uas.wait_listening()
            refreshed, expired = caller("1001", "refresh"), caller("1003", "expire")
            try:
                refreshed_result, expired_result = refreshed.wait(), expired.wait()
            finally:
                refreshed.stop()
                expired.stop()
            callee_result = uas.wait(5.0)
        refresh_log, expire_log, callee_log = (
            sipp_log(logs[name]) for name in ("refresh", "expire", "callee")
        )
        seen = (
            f"-- 1001:\n{refreshed_result}\n{refresh_log}\n-- 1003:\n{expired_result}\n{expire_log}\n"
            f"-- callee:\n{callee_result}\n{callee_log}"
        )
        assert (refreshed_result.successful, expired_result.successful, callee_result.successful) == (
            1,
            1,
            2,
        ), seen

        # 1001: Sentral is its leg's refresher and refreshes with UPDATE at half the interval.
        granted, answered_at = one(refresh_log, "answer", 2, seen)
        method, asked, refreshed_at = one(refresh_log, "refresh", 3, seen)
        assert granted == "90;refresher=uas" and (method, asked) == ("UPDATE", "90;refresher=uac"), seen
        assert 42 <= seconds_between(answered_at, refreshed_at) <= 50, seen

        # 1003: its own refresh never came; BYE well before the 90 s were out.
        granted, required, answered_at = one(expire_log, "answer", 3, seen)
        reason, bye_at = one(expire_log, "bye", 2, seen)
        assert granted == "90;refresher=uac" and required == "timer", seen
        assert "session timer expired" in reason, seen
        assert 57 <= seconds_between(answered_at, bye_at) <= 64, seen

        # The callee's legs: Sentral asked for 90 s and, the callee's 200 being silent on timers,
        # refreshed each with re-INVITE at half the interval.
        assert sorted(callee_log["invite"]) == [["1001", "sip:1001@", "90"], ["1003", "sip:1003@", "90"]], (
            seen
        )
        answered = {ext: at for ext, at in callee_log["answered"]}
        refreshes = {ext: (method, asked, at) for ext, method, asked, at in callee_log["refresh"]}
        byes = {ext: (reason, at) for ext, reason, at in callee_log["bye"]}
        assert sorted(refreshes) == sorted(byes) == ["1001", "1003"], seen
        for ext, (method, asked, at) in refreshes.items():
            assert (method, asked) == ("INVITE", "90;refresher=uac"), seen
            assert 42 <= seconds_between(answered[ext], at) <= 50, seen
        assert byes["1001"][0] == "" and "session timer expired" in byes["1003"][0], seen
        assert 57 <= seconds_between(answered["1003"], byes["1003"][1]) <= 64, seen

        rows = {row["caller"]: row for row in records(clinic, 2)}
        assert rows["1001"]["hangup_by"] == "caller" and rows["1001"]["hangup_reason"] == "BYE", rows
        expired_row = rows["1003"]
        assert expired_row["disposition"] == "answered" and expired_row["hangup_by"] == "system", rows
        assert expired_row["hangup_reason"] == "session timer expired", rows
        assert [leg["outcome"] for leg in expired_row["legs"]] == ["answered", "answered"], rows
    finally:
        clinic.stop()
