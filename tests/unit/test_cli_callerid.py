"""Caller ID at the CLI: `sentral adapter`, `contact`, `lookup`, `clinic set --lookup-budget`,
`number set --ask-id` and the caller columns of `cdr --json`."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from sentral.config.cdr import CallRecord, CdrStore
from sentral.config.db import make_engine
from sentral.config.directory import load_directory
from tests.unit.test_cli import ok, run, run_installed
from tests.unit.test_cli_outside import refused

CLINIC = "clinic.local"


@pytest.fixture
def db(db_url: str) -> str:
    """The demo clinic: staff at 1001-1004."""
    ok(db_url, "init", "--demo")
    return db_url


@pytest.fixture
def journal(tmp_path: Path) -> str:
    """A patient database of the clinic's own, its numbers typed as people do."""
    path = tmp_path / "journal.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE patients (id TEXT, name TEXT, phone TEXT)")
        connection.executemany(
            "INSERT INTO patients VALUES (?, ?, ?)",
            [("P1", "Ola Nordmann", "+47 912 34 567"), ("P2", "Kari Nordmann", "004791234568")],
        )
    connection.close()
    return f"sqlite:///{path}"


QUERY = (
    "SELECT name, 'patient', id FROM patients "
    "WHERE replace(phone, ' ', '') IN (:number, :digits, :zero_zero, :national)"
)


def test_adapters_are_added_listed_shown_moved_and_removed(db: str, journal: str) -> None:
    assert ok(db, "adapter", "add", "own", "--kind", "contacts") == (
        "Added contacts adapter own to clinic.local, asked first.\n"
    )
    secret_url = "postgresql+psycopg://journal:pa55word@db.example/journal"
    ok(db, "adapter", "add", "Journal", "--kind", "sql", "--url", secret_url, "--query-number", QUERY, "--position", "1")
    listed = ok(db, "adapter", "list")
    assert re.search(r"^clinic.local\s+1\s+journal\s+sql\s+postgresql\+psycopg://journal:\*\*\*@db.example/journal$", listed, re.M)
    assert re.search(r"^clinic.local\s+2\s+own\s+contacts\s+Sentral's contacts$", listed, re.M)
    as_json = json.loads(ok(db, "adapter", "list", "--json"))
    assert [(a["name"], a["position"]) for a in as_json] == [("journal", 1), ("own", 2)]
    shown = ok(db, "adapter", "show", "journal", "--json")
    for output in (listed, json.dumps(as_json), shown, ok(db, "adapter", "show", "journal")):
        assert "pa55word" not in output
    assert json.loads(shown)["query_number"] == QUERY
    ok(db, "adapter", "set", "journal", "--url", journal, "--position", "2")
    assert [a["name"] for a in json.loads(ok(db, "adapter", "list", "--json"))] == ["own", "journal"]
    assert ok(db, "adapter", "remove", "own") == "Removed adapter own from clinic.local.\n"
    engine = make_engine(db)
    try:
        entries = load_directory(engine).adapters[CLINIC]
    finally:
        engine.dispose()
    assert [(e.name, e.position, e.url) for e in entries] == [("journal", 1, journal)]


def test_adapter_mistakes_are_one_sentence_and_change_nothing(db: str) -> None:
    ok(db, "adapter", "add", "own", "--kind", "contacts")
    refused(db, "adapter", "add", "own", "--kind", "contacts", says="already has an adapter own")
    refused(db, "adapter", "add", "x", "--kind", "magic", says="No adapter kind 'magic' is installed")
    refused(db, "adapter", "add", "list", "--kind", "csv", says="needs --file PATH")
    refused(db, "adapter", "add", "db", "--kind", "sql", "--url", "sqlite://", says="needs --query-number SQL")
    refused(db, "adapter", "add", "db", "--kind", "sql", "--url", "nosuch://x", "--query-id", "x", says="SQLAlchemy URL")
    refused(db, "adapter", "add", "fh", "--kind", "fhir", "--url", "ftp://x", says="base URL")
    refused(db, "adapter", "show", "nope", says="no adapter nope")
    refused(db, "adapter", "set", "own", "--position", "0", says="--position must be 1")
    refused(db, "adapter", "remove", "nope", "--clinic", "nowhere.example", says="no clinic nowhere.example")
    assert run(db, "adapter", "set", "own").exit_code == 2


def test_contacts_are_added_imported_all_or_nothing_shown_and_removed(db: str, tmp_path: Path) -> None:
    ok(db, "contact", "add", "--name", "Apotek 1", "--number", "22 33 44 55")
    good = tmp_path / "good.csv"
    good.write_text("name,number,kind\nOla Nordmann,912 34 567,patient\nNAV Fjordheim,0047 5555 6666\n")
    assert ok(db, "contact", "import", str(good)) == "Imported 2 contacts into clinic.local.\n"
    bad = tmp_path / "bad.csv"
    bad.write_text("Kari,91234568\nPer,call me\n")
    refused(db, "contact", "import", str(bad), says="line 2: the number 'call me' is not a phone number")
    taken = tmp_path / "taken.csv"
    taken.write_text("Kari,91234568\napotek 1,91234569\n")
    refused(db, "contact", "import", str(taken), says="already has a contact 'Apotek 1'; remove it first")
    refused(db, "contact", "import", str(tmp_path / "missing.csv"), says="cannot read")
    refused(db, "contact", "add", "--name", "X", "--number", "22334466", "--kind", "wizard", says="must be one of")
    listed = json.loads(ok(db, "contact", "list", "--json"))
    assert listed == [
        {"domain": CLINIC, "name": "Apotek 1", "number": "+4722334455", "kind": "contact"},
        {"domain": CLINIC, "name": "NAV Fjordheim", "number": "+4755556666", "kind": "contact"},
        {"domain": CLINIC, "name": "Ola Nordmann", "number": "+4791234567", "kind": "patient"},
    ]
    assert re.search(r"^  number:\s+\+4791234567$", ok(db, "contact", "show", "ola nordmann"), re.M)
    assert json.loads(ok(db, "contact", "show", "NAV Fjordheim", "--json"))["kind"] == "contact"
    ok(db, "contact", "remove", "Apotek 1")
    assert [c["name"] for c in json.loads(ok(db, "contact", "list", "--json"))] == ["NAV Fjordheim", "Ola Nordmann"]


def test_lookup_runs_the_chain_and_says_who_matched_and_how_fast(db: str, journal: str, tmp_path: Path) -> None:
    refused(db, "lookup", "91234567", says="has no caller-ID adapters")
    ok(db, "contact", "add", "--name", "Apotek 1", "--number", "22334455")
    ok(db, "adapter", "add", "own", "--kind", "contacts")
    ok(db, "adapter", "add", "journal", "--kind", "sql", "--url", journal, "--query-number", QUERY)
    found = json.loads(ok(db, "lookup", "912 34 567", "--json"))
    assert found["number"] == "+4791234567" and found["budget_ms"] == 150 and found["ms"] >= 0
    assert found["match"] == {"name": "Ola Nordmann", "kind": "patient", "reference": "P1", "adapter": "journal"}
    assert json.loads(ok(db, "lookup", "+4791234568", "--json"))["match"]["name"] == "Kari Nordmann"
    assert json.loads(ok(db, "lookup", "22334455", "--json"))["match"]["adapter"] == "own"
    assert json.loads(ok(db, "lookup", "+4799999999", "--json"))["match"] is None
    said = ok(db, "lookup", "91234567")
    # A machine busy enough to take longer than the budget is told so in the same sentence.
    assert re.fullmatch(
        r"\+4791234567: Ola Nordmann \(patient, P1\) from adapter journal in [0-9.]+ ms"
        r"(, past the clinic's budget of 150 ms)?\.\n",
        said,
    ), said
    refused(db, "lookup", "call me", says="is not a phone number")


def test_a_failing_adapter_is_reported_on_stderr_and_the_rest_still_answer(db: str, tmp_path: Path) -> None:
    ok(db, "contact", "add", "--name", "Apotek 1", "--number", "22334455")
    ok(db, "adapter", "add", "broken", "--kind", "sql", "--url", f"sqlite:///{tmp_path}/none.db", "--query-number",
       "SELECT name FROM nowhere WHERE phone = :number")  # fmt: skip
    ok(db, "adapter", "add", "own", "--kind", "contacts")
    # The installed command, so that its logging is configured as in real use (once per process).
    result = run_installed("--db", db, "lookup", "22334455", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["match"]["name"] == "Apotek 1"
    assert "lookup_failed" in result.stderr and "adapter=broken" in result.stderr
    assert "22334455" not in result.stderr


def test_lookup_budget_and_the_national_id_prompt_are_set(db: str) -> None:
    said = ok(db, "clinic", "set", CLINIC, "--lookup-budget", "250")
    assert said == "Clinic clinic.local rings after at most 250 ms of caller-ID lookup.\n"
    assert json.loads(ok(db, "clinic", "list", "--json"))[0]["lookup_budget_ms"] == 250
    assert run(db, "clinic", "set", CLINIC, "--lookup-budget", "9000").exit_code == 2
    ok(db, "number", "add", "22334400", "--to", "1001")
    assert "asked for their national ID number" in ok(db, "number", "set", "22334400", "--ask-id")
    assert json.loads(ok(db, "number", "show", "22334400", "--json"))["ask_id"] is True
    ok(db, "number", "set", "22334400", "--no-ask-id")
    assert json.loads(ok(db, "number", "list", "--json"))[0]["ask_id"] is False


def test_cdr_json_carries_who_the_lookup_found(db: str) -> None:
    record = CallRecord(
        call_id="c1", domain=CLINIC, caller="+4791234567", callee="+4722334400", started_at=1000.0,
        ended_at=1010.0, disposition="answered", hangup_reason="BYE", status_to_caller=200,
        caller_name="Ola Nordmann", caller_kind="patient", caller_reference="P1", caller_source="journal",
    )  # fmt: skip
    engine = make_engine(db)
    try:
        CdrStore(engine).write([record])
    finally:
        engine.dispose()
    (shown,) = json.loads(ok(db, "cdr", "--json"))
    assert (shown["caller_name"], shown["caller_kind"], shown["caller_reference"], shown["caller_source"]) == (
        "Ola Nordmann", "patient", "P1", "journal",
    )  # fmt: skip
