"""Call forwarding in call control, on a fake clock: always, busy, no answer, and never a loop."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from sentral.config.directory import Directory, Forwards
from sentral.config.store import BindingRow
from sentral.pbx.call import CallControl, CallSettings
from sentral.pbx.features import standard as standard_features
from sentral.routing.dialplan import DialPlan
from tests.protocol.test_call import DIRECTORY, SDP_B, World

PORTS = {"1002": 5002, "1003": 5003, "1004": 5004}


def row(ext: str) -> BindingRow:
    port = PORTS[ext]
    return BindingRow(
        "clinic.test", ext, f"k{port}", f"sip:{ext}@127.0.0.1:{port}", 9e9, "reg", 1, "udp", "127.0.0.1",
        port, "udp:127.0.0.1:5060", 0.0,
    )  # fmt: skip


def directory(**forwards: Forwards) -> Directory:
    people = dict(DIRECTORY.staff)
    people[("clinic.test", "1004")] = replace(people[("clinic.test", "1003")], extension="1004", name="Dan")
    for ext, its in forwards.items():
        key = ("clinic.test", ext.removeprefix("x"))
        people[key] = replace(people[key], forwards=its)
    return replace(DIRECTORY, staff=MappingProxyType(people))


class Clinic(World):
    """The call-control world with 1002-1004 registered and forwards of our choosing."""

    def __init__(self, **forwards: Forwards) -> None:
        super().__init__()
        self.directory = directory(**forwards)
        self.cc = CallControl(
            self.port,
            DialPlan(),
            lambda: self.directory,
            lambda aor: [row(aor[1])] if aor[1] in PORTS else [],
            settings=CallSettings(no_answer=60.0),
            features=standard_features,
        )

    def rung(self) -> list[str]:
        """The extensions rung so far, in order (one INVITE each)."""
        ports = {port: ext for ext, port in PORTS.items()}
        return [ports[target.port] for request, target, _ in self.port.requests if request.method == "INVITE"]

    def respond(self, ext: str, status: int, now: float) -> None:
        request, _, tx = next(
            r for r in self.port.requests if r[0].method == "INVITE" and r[1].port == PORTS[ext]
        )
        sdp = SDP_B if status == 200 else b""
        self.cc.on_response(tx, self.answer(request, status, tag=f"t{ext}", sdp=sdp, port=PORTS[ext]), now)

    def tick(self, now: float) -> None:
        self.cc.on_timer(now)


def test_always_rings_the_forward_at_once_as_if_dialled_and_the_record_says_so() -> None:
    world = Clinic(x1002=Forwards(always="1003"))
    world.invite("1002")
    assert world.rung() == ["1003"]
    invite = world.port.sent("INVITE", PORTS["1003"])[0][0]
    assert "1001" in invite.header("from")  # the caller, unchanged
    world.respond("1003", 200, 1.0)
    world.cc.hang_up_all(5.0)
    [report] = world.port.reports
    assert (report.callee, report.answered_by) == ("1002", "1003")
    assert report.forwarded == (("1002", "always", "1003"),)


def test_a_chain_of_forwards_is_followed_and_one_back_into_it_is_ignored() -> None:
    world = Clinic(
        x1002=Forwards(always="1003"), x1003=Forwards(always="1004"), x1004=Forwards(always="1002")
    )
    world.invite("1002")
    assert world.rung() == ["1004"]  # 1004's forward leads back to 1002: it rings itself
    world.cc.hang_up_all(1.0)
    assert world.port.reports[0].forwarded == (("1002", "always", "1003"), ("1003", "always", "1004"))


def test_a_forward_to_the_caller_is_ignored() -> None:
    world = Clinic(x1002=Forwards(always="1001"))
    world.invite("1002")
    assert world.rung() == ["1002"]


def test_a_forward_to_a_number_gone_is_ignored() -> None:
    world = Clinic(x1002=Forwards(always="1009", busy="1009", no_answer="1009", after=2))
    world.invite("1002")
    assert world.rung() == ["1002"]
    world.respond("1002", 486, 1.0)
    assert world.a_response(486)


def test_busy_goes_on_when_the_phone_answers_busy() -> None:
    world = Clinic(x1002=Forwards(busy="1003"))
    world.invite("1002")
    world.respond("1002", 486, 1.0)
    assert world.rung() == ["1002", "1003"]
    assert 486 not in world.port.statuses(world.a_tx)
    world.cc.hang_up_all(2.0)
    assert world.port.reports[0].forwarded == (("1002", "busy", "1003"),)


def test_busy_goes_on_at_once_when_the_extension_is_already_talking() -> None:
    world = Clinic(x1002=Forwards(busy="1003"))
    world.cc.busy[("clinic.test", "1002")] = 1
    world.invite("1002")
    assert world.rung() == ["1003"]


def test_a_decline_is_not_busy() -> None:
    world = Clinic(x1002=Forwards(busy="1003"))
    world.invite("1002")
    world.respond("1002", 603, 1.0)
    assert world.rung() == ["1002"]
    assert world.a_response(603)


def test_no_answer_cancels_the_phones_after_the_time_and_goes_on() -> None:
    world = Clinic(x1002=Forwards(no_answer="1003", after=2))
    world.invite("1002", now=0.0)
    world.respond("1002", 180, 0.1)
    world.tick(1.9)
    assert world.rung() == ["1002"] and not world.port.cancels
    assert world.cc.next_deadline() == 2.0
    world.tick(2.0)
    assert len(world.port.cancels) == 1
    assert world.rung() == ["1002", "1003"]
    world.respond("1003", 200, 3.0)
    world.cc.hang_up_all(4.0)
    assert world.port.reports[0].forwarded == (("1002", "noanswer", "1003"),)


def test_no_answer_waits_longer_than_the_core_timeout_when_told() -> None:
    world = Clinic(x1002=Forwards(no_answer="1003", after=90))
    world.invite("1002", now=0.0)
    world.tick(60.0)
    assert world.rung() == ["1002"] and not world.port.cancels
    world.tick(90.0)
    assert world.rung() == ["1002", "1003"]


def test_two_colleagues_covering_each_other_do_not_loop() -> None:
    world = Clinic(x1002=Forwards(no_answer="1003", after=2), x1003=Forwards(no_answer="1002", after=2))
    world.invite("1002", now=0.0)
    world.tick(2.0)
    world.tick(4.0)
    assert world.rung() == ["1002", "1003"]  # 1003 rings on until the core's own timeout
    world.tick(62.0)
    assert world.a_response(480)
