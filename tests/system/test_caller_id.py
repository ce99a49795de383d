"""Caller ID from patient records through the real server: the carrier's caller (SIPp) calls the
clinic's public number, and the staff phone (pjsua2) shows who calls.

The clinic has one trunk trusted by address (the carrier on 127.0.0.2) and a public number that
rings 1002. Its records are what an operator configures with the CLI: a CSV patient list, a
SQLite database queried by number and by national ID, and, for the budget test, a database
server that takes the connection and never answers; and a FHIR R4 server on loopback (the one the
adapter's own tests use) answering the patient search with a Bundle. The server logs at DEBUG for the whole run, so that
the check that no national ID reached the log covers everything it could write.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.adapters.test_fhir import TOKEN, fhir_server
from tests.system.carrier import CALLER, CARRIER_IP, caller_keys, read_log
from tests.system.peers import Sipp, SippProcess, Softphone, free_port, wait_until, write_users_csv
from tests.system.rtp_peer import RtpPeer
from tests.system.server import SentralServer, tcp_accepts
from tests.system.test_call_media import media_range
from tests.system.test_calls import records
from tests.system.test_web import Web

DOMAIN = "clinic.test"
PUBLIC = "+4722334455"
PATIENT = "91234567"  # as the carrier writes it
PATIENT_E164 = "+4791234567"
STRANGER = "+4790000001"  # a number no record has
NAME = "Kari Nordmann"
# A valid fødselsnummer (python-stdnum's example) whose record is in the database, and one whose
# check digits are wrong.
FNR = "15108695088"
WRONG = "15108695077"
BUDGET_MS = 150
TELEPHONE_EVENT = 101  # the payload type trunk_caller_uac.xml offers for telephone-events


@dataclass
class Clinic:
    server: SentralServer
    sipp: Sipp
    tmp: Path
    trunk_port: int
    factory: Callable[..., Softphone]
    web: Web

    def phone(self) -> Softphone:
        phone = self.factory("phone1002")
        phone.add_account("1002", "1002", "secret-1002", DOMAIN, self.server.address, display="Staff 1002")
        phone.wait_registered("1002")
        return phone

    def call_in(self, number: str, name: str, rtp: RtpPeer | None = None) -> tuple[SippProcess, Path]:
        """The carrier's caller from ``number`` to the public number."""
        ruri = f"sip:{PUBLIC}@{self.server.address}"
        users = write_users_csv(self.tmp / f"{name}.csv", [(ruri, ruri, number, "X-Carrier: plain")])
        log = self.tmp / f"{name}.log"
        process = self.sipp.start(
            self.server.address, CALLER, local_ip=CARRIER_IP, local_port=self.trunk_port, users=users,
            calls=1, timeout=40, extra=[*caller_keys(rtp, CARRIER_IP), "-trace_logs", "-log_file", str(log), "-aa"],
        )  # fmt: skip
        return process, log


@pytest.fixture
def clinic(
    tmp_path: Path, sounds: Path, sipp: Sipp, softphone_factory: Callable[..., Softphone]
) -> Iterator[Clinic]:
    first, last = media_range()
    trunk_port = free_port(CARRIER_IP)
    workdir = tmp_path / "server"
    web_port = free_port()
    web_address = f"127.0.0.1:{web_port}"
    server = SentralServer(
        f"sqlite:///{workdir / 'sentral.db'}",
        workdir,
        extra_args=[
            "--sounds", str(sounds), "--media-ports", f"{first}-{last}", "--drain-timeout", "2",
            "--log-level", "debug", "--web", web_address,
        ],
    )  # fmt: skip
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        ("clinic", "set", DOMAIN, "--country", "NO", "--lookup-budget", str(BUDGET_MS)),
        ("user", "add", "1002", "--name", "Staff 1002", "--password", "secret-1002"),
        ("trunk", "add", "first", "--host", f"{CARRIER_IP}:{trunk_port}"),
        ("number", "add", PUBLIC, "--to", "1002"),
    )  # fmt: skip
    token = server.cli("token", "add", "platform", "--clinic", DOMAIN).stdout.strip()
    server.start()
    wait_until(lambda: tcp_accepts("127.0.0.1", web_port), 10, "the web listener")
    web = Web(server, f"http://{web_address}", {DOMAIN: token})
    found = Clinic(server, sipp, tmp_path, trunk_port, softphone_factory, web)
    try:
        yield found
    finally:
        server.stop()
        log = server.log_path.read_text(errors="replace")
        for national_id in (FNR, WRONG):
            assert national_id not in log, "a national ID reached the server's log"


def patients_csv(path: Path) -> Path:
    path.write_text(f"name,number,kind,reference\n{NAME},912 34 567,patient,p-42\n", encoding="utf-8")
    return path


def patients_db(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE patients (id TEXT, name TEXT, phone TEXT, fnr TEXT)")
        db.execute("INSERT INTO patients VALUES ('p-42', ?, '+47 912 34 567', ?)", (NAME, FNR))
    return path


def answer_and_hang_up(phone: Softphone, call: str, process: SippProcess, talk: float = 0.5) -> None:
    phone.answer(call)
    phone.wait_call_state(call, "CONFIRMED")
    time.sleep(talk)
    phone.hangup(call)
    phone.wait_call_state(call, "DISCONNECTED")
    assert process.wait().successful == 1


def shows(incoming: dict[str, object], name: str) -> bool:
    headers = incoming["headers"]
    assert isinstance(headers, dict)
    return f'"{name}"' in headers.get("from", "") and f'"{name}"' in headers.get("p-asserted-identity", "")


def test_a_patient_calling_from_a_known_number_rings_the_phone_with_their_name(clinic: Clinic) -> None:
    clinic.server.reconfigure(
        "adapter", "add", "patients", "--kind", "csv", "--file", str(patients_csv(clinic.tmp / "patients.csv"))
    )
    phone = clinic.phone()
    process, _ = clinic.call_in(PATIENT, "known")
    incoming = phone.wait_incoming("1002")
    assert shows(incoming, NAME), incoming["headers"]
    assert PATIENT_E164 in str(incoming["remote_uri"])
    answer_and_hang_up(phone, str(incoming["call"]), process)
    [record] = records(clinic.server, 1)
    assert record["caller"] == PATIENT_E164
    assert record["caller_name"] == NAME


@contextmanager
def fhir_on_loopback() -> Iterator[tuple[str, list[object]]]:
    """The FHIR server, on an event loop of its own in a thread: its base URL and the requests seen."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fhir", daemon=True)
    thread.start()
    server = fhir_server()
    try:
        url, seen = asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(10)
        try:
            yield url, seen  # type: ignore[misc]
        finally:
            asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_patient_found_in_the_fhir_journal_rings_the_phone_with_their_name(clinic: Clinic) -> None:
    token = clinic.tmp / "fhir.token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    with fhir_on_loopback() as (url, seen):
        clinic.server.reconfigure(
            "adapter", "add", "journal", "--kind", "fhir", "--url", url, "--token-file", str(token)
        )
        phone = clinic.phone()
        process, _ = clinic.call_in("91234501", "fhir")  # the patient's record writes "+47 91 23 45 01"
        incoming = phone.wait_incoming("1002")
        assert shows(incoming, "Ola Nordmann"), incoming["headers"]
        # The clinic platform sees who calls, with the reference that opens the patient's record.
        [live] = clinic.web.get("/api/calls")["calls"]
        assert (live["caller_name"], live["caller_reference"]) == ("Ola Nordmann", "Patient/ola")
        answer_and_hang_up(phone, str(incoming["call"]), process)
        assert seen, "the FHIR server was never asked"
    [record] = records(clinic.server, 1)
    fields = ("caller", "caller_name", "caller_kind", "caller_reference", "caller_source")
    found = [record[field] for field in fields]
    assert found == ["+4791234501", "Ola Nordmann", "patient", "Patient/ola", "journal"]
    [published] = clinic.web.get("/api/records")["records"]
    assert [published[field] for field in fields] == found
    assert TOKEN not in clinic.server.log_path.read_text(errors="replace")


class Silent:
    """A TCP server that takes connections and never answers: a records system that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)  # never accepted: the kernel completes the handshake, nobody reads
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def test_an_adapter_that_hangs_does_not_delay_ringing_past_the_budget_and_its_late_answer_is_recorded(
    clinic: Clinic,
) -> None:
    silent = Silent()
    try:
        clinic.server.reconfigure(
            "adapter", "add", "journal", "--kind", "sql", "--url", f"postgresql+psycopg://sentral@127.0.0.1:{silent.port}/journal",
            "--query-number", "SELECT name FROM patients WHERE phone = :number",
        )  # fmt: skip
        clinic.server.reconfigure(
            "adapter", "add", "patients", "--kind", "csv", "--file", str(patients_csv(clinic.tmp / "patients.csv"))
        )
        phone = clinic.phone()
        process, _ = clinic.call_in(PATIENT, "hanging")
        incoming = phone.wait_incoming("1002")
        # The database holds the chain for the adapter's 2 s timeout; the phone rang with the number.
        assert not shows(incoming, NAME), incoming["headers"]
        call = str(incoming["call"])

        def named() -> bool:
            # The chain's answer (the CSV's match, once the hanging adapter gave up) comes late.
            return [row.get("caller_name") for row in clinic.server.cli_json("calls")] == [NAME]

        wait_until(named, 6, "the late answer in `sentral calls`", interval=0.3)
        answer_and_hang_up(phone, call, process)
        [record] = records(clinic.server, 1)
        rang = record["ringing_at_epoch"] - record["started_at_epoch"]
        assert rang < 1.0, f"the phone rang {rang:.2f} s after the call came in"
        assert record["caller_name"] == NAME  # the late answer reached the record
    finally:
        silent.close()


def early_media(log: Path, timeout: float = 10.0) -> tuple[str, int]:
    """Where the relay sends the prompt from, once the caller got its 183."""
    found: list[list[str]] = []

    def early() -> bool:
        nonlocal found
        found = read_log(log).get("early", [])
        return bool(found)

    wait_until(early, timeout, "a 183 with the prompt", interval=0.1)
    ip, port = found[0]
    return ip, int(port)


def key(rtp: RtpPeer, keys: str) -> None:
    for pressed in keys:
        rtp.press(pressed, TELEPHONE_EVENT)
        time.sleep(0.25)


def asks_for_the_national_id(clinic: Clinic) -> None:
    """The records in an SQLite database searched by number and by national ID, and the public
    number asking a caller whose number matched nothing for the national ID."""
    db = patients_db(clinic.tmp / "records.db")
    clinic.server.reconfigure(
        "adapter", "add", "records", "--kind", "sql", "--url", f"sqlite:///{db}",
        "--query-number", "SELECT name, 'patient', id FROM patients WHERE replace(phone, ' ', '') = :number",
        "--query-id", "SELECT name, 'patient', id FROM patients WHERE fnr = :national_id",
    )  # fmt: skip
    clinic.server.reconfigure("number", "set", PUBLIC, "--ask-id")


def test_an_unknown_number_is_asked_for_the_national_id_and_rings_with_the_name_found(clinic: Clinic) -> None:
    asks_for_the_national_id(clinic)
    phone = clinic.phone()
    rtp = RtpPeer(CARRIER_IP)
    try:
        process, log = clinic.call_in(STRANGER, "asked", rtp=rtp)
        early_media(log)
        wait_until(lambda: rtp.source is not None, 5, "the prompt at the caller")
        key(rtp, WRONG + "#")  # an invalid number: the retry prompt, and nobody rings
        time.sleep(1.0)
        with pytest.raises(AssertionError):
            phone.wait_incoming("1002", timeout=0.5)
        key(rtp, FNR + "#")
        incoming = phone.wait_incoming("1002", timeout=10)
        assert shows(incoming, NAME), incoming["headers"]
        answer_and_hang_up(phone, str(incoming["call"]), process)
    finally:
        rtp.close()
    [record] = records(clinic.server, 1)
    assert record["caller"] == STRANGER
    assert record["caller_name"] == NAME
    assert FNR not in str(record) and WRONG not in str(record)


def test_a_caller_who_keys_nothing_rings_as_unknown_after_the_silence(clinic: Clinic) -> None:
    asks_for_the_national_id(clinic)
    phone = clinic.phone()
    process, log = clinic.call_in(STRANGER, "silent")
    early_media(log)
    started = time.monotonic()
    incoming = phone.wait_incoming("1002", timeout=20)
    assert time.monotonic() - started >= 8.0  # the prompt, then 10 s of silence
    assert not shows(incoming, NAME)
    answer_and_hang_up(phone, str(incoming["call"]), process)
