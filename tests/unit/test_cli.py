"""The operator CLI, driven through its real entry point (click's runner and a subprocess)."""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from alembic import command
from alembic.config import Config
from click.testing import CliRunner, Result
from sqlalchemy import select

from sentral.cli import cli
from sentral.config.cdr import CallRecord, CdrStore, LegRecord, LiveCall, LiveCallStore, TransferRecord
from sentral.config.db import MIGRATIONS, database_url, describe_url, make_engine, newest_revision
from sentral.config.directory import directory_version, load_directory
from sentral.config.models import Staff
from sentral.config.settings import Listen, ServeConfig
from sentral.config.store import BindingRow, BindingStore
from sentral.logs import configure, sip_trace_text, unfiltered_logger
from sentral.pbx.sip.auth import compute_ha1


def run(db: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--db", db, *args], input=input, prog_name="sentral")


def ok(db: str, *args: str) -> str:
    result = run(db, *args)
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def fails(db: str, *args: str, code: int = 1) -> str:
    """Run a command that must fail; return its stderr, checked to be a sentence, not a traceback."""
    result = run(db, *args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.stderr


@pytest.fixture
def db(db_url: str) -> str:
    """A database set up by `sentral init` with the default clinic."""
    ok(db_url, "init")
    return db_url


def sqlite_db(tmp_path: Path) -> str:
    return str(tmp_path / "sentral.db")


# -- init ----------------------------------------------------------------------------------------


def test_init_demo_creates_staff_whose_printed_passwords_work_and_is_idempotent(db_url: str) -> None:
    first = ok(db_url, "init", "--demo")
    passwords = dict(re.findall(r"^(100[1-4])\s.*\s(\S+)$", first, re.MULTILINE))
    assert sorted(passwords) == ["1001", "1002", "1003", "1004"]
    assert "127.0.0.1:5060" in first
    assert "clinic.local" in first
    engine = make_engine(db_url)
    try:
        directory = load_directory(engine)
        for extension, password in passwords.items():
            staff = directory.staff_for("clinic.local", extension)
            assert staff is not None
            assert staff.ha1_sha256 == compute_ha1("SHA-256", extension, "clinic.local", password)
            assert staff.ha1_md5 == compute_ha1("MD5", extension, "clinic.local", password)
        roles = {entry.roles[0] for entry in directory.staff.values()}
        assert roles == {"doctor", "nurse", "medical-secretary"}
        version = directory_version(engine)
        with engine.connect() as connection:
            before = connection.execute(select(Staff.__table__).order_by(Staff.id)).all()

        second = ok(db_url, "init", "--demo")
        assert not any(password in second for password in passwords.values())
        assert "is up to date" in second and "passwords were shown when they were created" in second
        assert "clinic.local" in second  # the softphone settings, printed again
        assert directory_version(engine) == version
        with engine.connect() as connection:
            assert connection.execute(select(Staff.__table__).order_by(Staff.id)).all() == before
        assert [c["domain"] for c in json.loads(ok(db_url, "clinic", "list", "--json"))] == ["clinic.local"]
    finally:
        engine.dispose()


def test_init_demo_tells_how_to_reach_the_server_it_is_given_through_an_outbound_proxy(db: str) -> None:
    # `make run` passes its SIP_PORT: the instructions must name that port, and say that the
    # domain, which is not in DNS, needs the server as the softphone's outbound proxy.
    printed = ok(db, "init", "--demo", "--server", "127.0.0.1:5099")
    assert "sip:127.0.0.1:5099;lr" in printed
    assert "outbound proxy" in printed and "not in DNS" in printed
    assert "5060" not in printed
    assert "sip:127.0.0.1:5060;lr" in ok(db, "init", "--demo")  # what `make run` serves by default
    assert "sip:[::1]:5070;lr" in ok(db, "init", "--demo", "--server", "[::1]:5070")


@pytest.mark.parametrize("server", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:sip", "::1:5060", ":5060"])
def test_init_refuses_a_server_address_without_a_port_with_a_usage_error(db: str, server: str) -> None:
    assert "HOST:PORT" in fails(db, "init", "--demo", "--server", server, code=2)



def test_init_on_an_existing_database_only_upgrades_it_and_adds_no_clinic(db_url: str) -> None:
    ok(db_url, "init", "--domain", "clinic.example.no")
    ok(db_url, "user", "add", "1001", "--name", "Kari Nordmann", "--password", "fjord-secret-1")
    again = ok(db_url, "init")
    assert "is up to date" in again and "Clinics: clinic.example.no" in again
    assert [c["domain"] for c in json.loads(ok(db_url, "clinic", "list", "--json"))] == ["clinic.example.no"]
    # Still the only clinic: commands need no --domain.
    ok(db_url, "user", "add", "1002", "--name", "Per Hansen", "--password", "fjord-secret-2")
    # Naming the clinic it serves is fine (provisioning scripts run init every time) ...
    assert "Clinics: clinic.example.no" in ok(db_url, "init", "--domain", "Clinic.Example.NO")
    # ... another one is not added behind the operator's back; adding is `clinic add`.
    err = fails(db_url, "init", "--domain", "nord.example")
    assert err.endswith("init adds no clinic to it; add nord.example with `sentral clinic add nord.example`\n")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    fails(db_url, "init", "--demo")  # the demo clinic is not there either
    assert [c["domain"] for c in json.loads(ok(db_url, "clinic", "list", "--json"))] == ["clinic.example.no"]
    ok(db_url, "clinic", "add", "nord.example")
    assert "Clinics: clinic.example.no, nord.example" in ok(db_url, "init", "--domain", "nord.example")


def downgrade(db: str, revision: str) -> None:
    """Take the schema back to ``revision``, as a database made by an older sentral has it."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    engine = make_engine(database_url(db))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        engine.dispose()


def test_init_upgrades_an_older_schema_and_says_so(db_url: str) -> None:
    ok(db_url, "init", "--domain", "clinic.example.no")
    downgrade(db_url, "0004")
    assert "run `sentral init` first" in fails(db_url, "user", "list")
    out = ok(db_url, "init")
    assert f"Upgraded the database at {describe_url(db_url)} from schema 0004 to " in out
    assert [c["domain"] for c in json.loads(ok(db_url, "clinic", "list", "--json"))] == ["clinic.example.no"]


def test_commands_other_than_init_need_an_initialised_database(tmp_path: Path) -> None:
    db = sqlite_db(tmp_path)
    assert "there is no database at" in fails(db, "user", "list")
    assert not Path(db).exists()
    Path(db).touch()
    assert "run `sentral init` first" in fails(db, "user", "list")


def test_a_database_in_a_missing_directory_is_a_sentence(tmp_path: Path) -> None:
    err = fails(str(tmp_path / "missing" / "sentral.db"), "init")
    assert err.startswith(f"sentral: cannot open the database at {tmp_path / 'missing' / 'sentral.db'}")


def test_an_unreachable_database_url_is_a_sentence() -> None:
    err = fails("postgresql+psycopg://sentral:secret-pw@127.0.0.1:1/sentral", "user", "list")
    assert err.startswith("sentral: cannot open the database at postgresql+psycopg://sentral:***@127.0.0.1:1/")
    assert "secret-pw" not in err


def test_db_defaults_to_the_environment_then_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SENTRAL_DB", raising=False)
    assert database_url(None) == database_url(str(tmp_path / "sentral.db"))
    monkeypatch.setenv("SENTRAL_DB", "postgresql+psycopg://h/db")
    assert database_url(None) == "postgresql+psycopg://h/db"
    assert database_url("other.db").endswith(str(tmp_path / "other.db"))


# -- clinics -------------------------------------------------------------------------------------


def test_clinic_add_list_and_set_digest(db: str) -> None:
    assert "Added clinic nord.example (Nord legekontor)" in ok(db, "clinic", "add", "nord.example", "--name", "Nord legekontor")
    ok(db, "clinic", "set", "nord.example", "--digest", "md5")
    clinics = json.loads(ok(db, "clinic", "list", "--json"))
    outside = {"country": "NO", "main_number": None, "timezone": None, "open_countries": [47], "lookup_budget_ms": 150}
    assert clinics == [
        {"domain": "clinic.local", "name": "clinic.local", "digest_algorithms": ["SHA-256", "MD5"], **outside},
        {"domain": "nord.example", "name": "Nord legekontor", "digest_algorithms": ["MD5"], **outside},
    ]
    table = ok(db, "clinic", "list")
    assert re.search(r"^nord\.example\s+Nord legekontor\s+MD5$", table, re.MULTILINE)
    assert "choose sha256,md5 or md5 or sha256" in fails(db, "clinic", "set", "nord.example", "--digest", "sha1")
    assert "already exists" in fails(db, "clinic", "add", "nord.example")
    assert "known clinics: clinic.local, nord.example" in fails(db, "clinic", "set", "sor.example", "--digest", "md5")


def test_clinic_remove_refuses_while_it_holds_anything_unless_forced(db: str, request: pytest.FixtureRequest) -> None:
    ok(db, "clinic", "add", "nord.example")
    ok(db, "user", "add", "1001", "--name", "Per Hansen", "--password", "long-enough", "--domain", "nord.example")
    ok(db, "user", "add", "1002", "--name", "Kari Dahl", "--password", "long-enough", "--domain", "nord.example",
       "--role", "doctor")  # fmt: skip
    ok(db, "group", "add", "lab", "--number", "200", "--member", "1001", "--domain", "nord.example")
    ok(db, "function", "add", "reception", "--number", "300", "--domain", "nord.example")
    ok(db, "park", "add", "desk", "--number", "700", "--slots", "701-705", "--domain", "nord.example")
    ok(db, "role", "set", "doctor", "--number", "400", "--domain", "nord.example")
    now = time.time()
    engine = make_engine(db)
    request.addfinalizer(engine.dispose)
    bindings = BindingStore(engine)
    bindings.apply([binding_row("nord.example", "1001", now), binding_row("clinic.local", "1001", now)], [])

    assert fails(db, "clinic", "remove", "nord.example") == (
        "sentral: clinic nord.example still has 2 members of staff, 1 group, 1 function, 1 park lot and "
        "1 role number; remove them first, or give --force to remove them with the clinic\n"
    )
    assert [c["domain"] for c in json.loads(ok(db, "clinic", "list", "--json"))] == ["clinic.local", "nord.example"]
    out = ok(db, "clinic", "remove", "nord.example", "--force")
    assert out == (
        "Removed clinic nord.example with 2 members of staff, 1 group, 1 function, 1 park lot and 1 role number.\n"
    )
    assert [c["domain"] for c in json.loads(ok(db, "clinic", "list", "--json"))] == ["clinic.local"]
    assert [(r.domain, r.extension) for r in bindings.list(now)] == [("clinic.local", "1001")]
    # The one clinic left needs no --domain again.
    ok(db, "user", "add", "1001", "--name", "Per Hansen", "--password", "long-enough")
    ok(db, "clinic", "add", "nord.example")
    assert ok(db, "clinic", "remove", "Nord.Example") == "Removed clinic nord.example.\n"
    assert "there is no clinic nord.example; known clinics: clinic.local" in fails(db, "clinic", "remove", "nord.example")
    assert "is not a valid domain" in fails(db, "clinic", "remove", "no such")


def binding_row(domain: str, extension: str, now: float) -> BindingRow:
    return BindingRow(
        domain=domain, extension=extension, key=f"sip:{extension}@192.0.2.1", contact=f"sip:{extension}@192.0.2.1",
        expires_at=now + 600, call_id="c", cseq=1, transport="udp", source_host="192.0.2.1", source_port=5060,
        local_listen="udp:127.0.0.1:5060", updated_at=now,
    )  # fmt: skip


# -- users ---------------------------------------------------------------------------------------


NO_FORWARDS = {"always": None, "busy": None, "noanswer": None, "after": 20}


def test_user_add_list_passwd_remove(db: str) -> None:
    out = ok(db, "user", "add", "1001", "--name", "Ingrid Solberg", "--password", "fjord-secret-1", "--role", "doctor")
    assert out.strip() == "Added 1001@clinic.local (Ingrid Solberg) with roles doctor."
    ok(db, "user", "add", "1003", "--name", "Silje Nilsen", "--password", "fjord-secret-3")
    assert json.loads(ok(db, "user", "list", "--json")) == [
        {"domain": "clinic.local", "extension": "1001", "name": "Ingrid Solberg", "roles": ["doctor"],
         "phone_on": True, "direct_media": False, "digest": "clinic", "digest_algorithms": ["SHA-256", "MD5"],
         "functions": [], "forwards": NO_FORWARDS, "dial": "national", "public_number": None},
        {"domain": "clinic.local", "extension": "1003", "name": "Silje Nilsen", "roles": [],
         "phone_on": True, "direct_media": False, "digest": "clinic", "digest_algorithms": ["SHA-256", "MD5"],
         "functions": [], "forwards": NO_FORWARDS, "dial": "national", "public_number": None},
    ]  # fmt: skip
    assert re.search(r"^1001\s+clinic\.local\s+Ingrid Solberg\s+doctor$", ok(db, "user", "list"), re.MULTILINE)

    ok(db, "user", "passwd", "1001", "--password", "fjord-secret-2")
    engine = make_engine(db)
    try:
        staff = load_directory(engine).staff_for("clinic.local", "1001")
        assert staff is not None
        assert staff.ha1_sha256 == compute_ha1("SHA-256", "1001", "clinic.local", "fjord-secret-2")
    finally:
        engine.dispose()

    assert "holds: medical-secretary." in ok(db, "user", "roles", "1001", "--add", "medical-secretary", "--remove", "doctor")
    assert ok(db, "user", "remove", "1001").strip() == "Removed 1001@clinic.local."
    assert [u["extension"] for u in json.loads(ok(db, "user", "list", "--json"))] == ["1003"]
    assert "there is no extension 1001 in clinic.local" in fails(db, "user", "remove", "1001")


def ha1_md5_of(db: str, extension: str) -> str:
    engine = make_engine(db)
    try:
        staff = load_directory(engine).staff_for("clinic.local", extension)
        assert staff is not None
        return staff.ha1_md5
    finally:
        engine.dispose()


def test_user_add_password_can_be_typed_at_a_terminal(db: str) -> None:
    controller, terminal = os.openpty()
    # A session of its own: the command has no other terminal than this one to ask at.
    with subprocess.Popen(
        [*installed_command(), "--db", db, "user", "add", "1005", "--name", "Ola Nordmann"],
        stdin=terminal, stdout=terminal, stderr=terminal, env=installed_env(), start_new_session=True,
    ) as proc:  # fmt: skip
        os.close(terminal)
        try:
            shown = read_until(controller, b"Password: ")
            os.write(controller, b"prompted-pw\n")
            shown += read_until(controller, b"confirmation: ")
            os.write(controller, b"prompted-pw\n")
            shown += read_until(controller, b"\n", after=b"Added")
            assert proc.wait(timeout=30) == 0, shown
        finally:
            proc.kill()
            os.close(controller)
    assert b"prompted-pw" not in shown  # not echoed
    assert ha1_md5_of(db, "1005") == compute_ha1("MD5", "1005", "clinic.local", "prompted-pw")


def read_until(fd: int, end: bytes, *, after: bytes = b"", timeout: float = 30.0) -> bytes:
    """What the terminal ``fd`` shows up to ``end`` (past ``after``), waiting at most ``timeout`` seconds."""
    shown = b""
    deadline = time.monotonic() + timeout
    watch = selectors.DefaultSelector()
    watch.register(fd, selectors.EVENT_READ)
    while not shown.endswith(end) or after not in shown:
        ready = watch.select(max(0.0, deadline - time.monotonic()))
        assert ready, f"the terminal showed {shown!r}, waiting for {end!r}"
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the command exited and the terminal closed
            break
        if not chunk:
            break
        shown += chunk
    watch.close()
    return shown


def test_a_password_with_no_terminal_to_ask_at_is_a_sentence(db: str) -> None:
    ok(db, "user", "add", "1001", "--name", "Ingrid Solberg", "--password", "fjord-secret-1")
    env = installed_env()
    for args in (("user", "add", "1005", "--name", "Ola Nordmann"), ("user", "passwd", "1001")):
        result = subprocess.run(
            [*installed_command(), "--db", db, *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert result.returncode == 1
        assert result.stderr == (
            "sentral: there is no terminal to type the password at; give it with --password PASSWORD "
            "or pipe it in with --password-stdin\n"
        )
    assert [u["extension"] for u in json.loads(ok(db, "user", "list", "--json"))] == ["1001"]
    assert ha1_md5_of(db, "1001") == compute_ha1("MD5", "1001", "clinic.local", "fjord-secret-1")


def test_a_script_pipes_the_password_in_with_password_stdin(db: str) -> None:
    piped = subprocess.run(
        [*installed_command(), "--db", db, "user", "add", "1005", "--name", "Ola Nordmann", "--password-stdin"],
        input="piped-secret-1\n", capture_output=True, text=True, timeout=60, env=installed_env(),
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert ha1_md5_of(db, "1005") == compute_ha1("MD5", "1005", "clinic.local", "piped-secret-1")
    result = run(db, "user", "passwd", "1005", "--password-stdin", input="piped-secret-2\r\nignored\n")
    assert result.exit_code == 0, result.stderr
    assert ha1_md5_of(db, "1005") == compute_ha1("MD5", "1005", "clinic.local", "piped-secret-2")
    empty = run(db, "user", "passwd", "1005", "--password-stdin", input="")
    assert (empty.exit_code, empty.stderr) == (
        1, "sentral: --password-stdin read no password; pipe the password in as the first line\n"
    )  # fmt: skip
    short = run(db, "user", "passwd", "1005", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.stderr
    both = run(db, "user", "passwd", "1005", "--password", "long-enough", "--password-stdin", input="x\n")
    assert both.exit_code == 2 and "give either --password or --password-stdin, not both" in both.stderr


def test_a_phone_gets_a_digest_choice_of_its_own(db: str) -> None:
    ok(db, "user", "add", "1001", "--name", "Ingrid Solberg", "--password", "fjord-secret-1")
    ok(db, "user", "add", "1002", "--name", "Magnus Haugen", "--password", "fjord-secret-2")
    assert ok(db, "user", "set", "1001", "--digest", "md5") == "1001@clinic.local is now challenged with MD5.\n"
    ok(db, "clinic", "set", "clinic.local", "--digest", "md5")
    assert ok(db, "user", "set", "1002", "--digest", "SHA256") == "1002@clinic.local is now challenged with SHA-256.\n"
    listed = {u["extension"]: (u["digest"], u["digest_algorithms"]) for u in json.loads(ok(db, "user", "list", "--json"))}
    assert listed == {"1001": ("md5", ["MD5"]), "1002": ("sha256", ["SHA-256"])}
    shown = json.loads(ok(db, "user", "show", "1002", "--json"))
    assert (shown["name"], shown["digest"], shown["digest_algorithms"]) == ("Magnus Haugen", "sha256", ["SHA-256"])
    assert re.search(r"^  digest:\s+sha256 \(SHA-256\)$", ok(db, "user", "show", "1002"), re.MULTILINE)
    assert ok(db, "user", "set", "1002", "--digest", "both") == (
        "1002@clinic.local is now challenged with SHA-256, MD5.\n"
    )
    assert ok(db, "user", "set", "1002", "--digest", "clinic") == (
        "1002@clinic.local now follows the clinic: challenged with MD5.\n"
    )
    assert re.search(r"^  digest:\s+the clinic's \(MD5\)$", ok(db, "user", "show", "1002"), re.MULTILINE)
    engine = make_engine(db)
    try:
        directory = load_directory(engine)
        clinic = directory.clinics["clinic.local"]
        assert directory.digest_algorithms(clinic, "1001") == ("MD5",)
        assert directory.digest_algorithms(clinic, "1002") == ("MD5",)
    finally:
        engine.dispose()
    assert fails(db, "user", "set", "1001", "--digest", "sha1") == (
        "sentral: digest 'sha1': choose sha256, md5, both (sha256 then md5) or clinic (the clinic's)\n"
    )
    assert "there is no extension 1003 in clinic.local" in fails(db, "user", "set", "1003", "--digest", "md5")
    assert "there is no extension 1003 in clinic.local" in fails(db, "user", "show", "1003")
    assert "say what to change" in fails(db, "user", "set", "1001", code=2)


def test_existing_staff_follow_the_clinic_after_the_upgrade_that_brings_phone_digests(db_url: str) -> None:
    ok(db_url, "init", "--domain", "clinic.example.no")
    ok(db_url, "user", "add", "1001", "--name", "Ingrid Solberg", "--password", "fjord-secret-1")
    downgrade(db_url, "0005")
    assert f"from schema 0005 to {newest_revision()}" in ok(db_url, "init")
    [staff] = json.loads(ok(db_url, "user", "list", "--json"))
    assert (staff["digest"], staff["digest_algorithms"]) == ("clinic", ["SHA-256", "MD5"])
    ok(db_url, "user", "set", "1001", "--digest", "md5")
    downgrade(db_url, "0005")  # and back down, losing only the choice
    ok(db_url, "init")
    assert json.loads(ok(db_url, "user", "list", "--json"))[0]["digest"] == "clinic"


def test_user_mistakes_are_sentences(db: str) -> None:
    ok(db, "user", "add", "1001", "--name", "Ingrid Solberg", "--password", "fjord-secret-1")
    assert fails(db, "user", "add", "1001", "--name", "Magnus Haugen", "--password", "fjord-secret-2") == (
        "sentral: extension 1001 already exists in clinic.local; choose another number or remove it first\n"
    )
    assert "must be 2 to 10 digits" in fails(db, "user", "add", "1", "--name", "X", "--password", "long-enough")
    assert "must be 2 to 10 digits" in fails(db, "user", "add", "abc", "--name", "X", "--password", "long-enough")
    assert "give extension 1002 a name" in fails(db, "user", "add", "1002", "--name", " ", "--password", "long-enough")
    assert "at least 8 characters" in fails(db, "user", "add", "1002", "--name", "X", "--password", "short")
    assert "at least 8 characters" in fails(db, "user", "passwd", "1001", "--password", "short")
    err = fails(db, "user", "add", "1002", "--name", "X", "--password", "long-enough", "--domain", "sor.example")
    assert err == "sentral: there is no clinic sor.example; known clinics: clinic.local\n"
    fails(db, "user", "add", "1002", "--password", "long-enough", code=2)


def test_domain_is_required_once_there_are_several_clinics(db: str) -> None:
    ok(db, "clinic", "add", "nord.example")
    err = fails(db, "user", "add", "1001", "--name", "Per Hansen", "--password", "long-enough")
    assert "several clinics (clinic.local, nord.example); say which one with --domain" in err
    ok(db, "user", "add", "1001", "--name", "Per Hansen", "--password", "long-enough", "--domain", "nord.example")
    ok(db, "user", "add", "1001", "--name", "Kari Johansen", "--password", "long-enough", "--domain", "clinic.local")
    listed = json.loads(ok(db, "user", "list", "--json", "--domain", "nord.example"))
    assert [(u["domain"], u["name"]) for u in listed] == [("nord.example", "Per Hansen")]
    assert len(json.loads(ok(db, "user", "list", "--json"))) == 2


# -- registrations -------------------------------------------------------------------------------


def test_registrations_lists_unexpired_bindings(db: str) -> None:
    now = time.time()
    engine = make_engine(db)
    try:
        rows = [
                BindingRow("clinic.local", "1001", "k1", "<sip:1001@192.0.2.10:5062>", now + 300, "c1", 1,
                           "udp", "192.0.2.10", 5062, "udp:0.0.0.0:5060", now, user_agent="Yealink T46U"),
                BindingRow("clinic.local", "1002", "k2", "<sip:1002@[2001:db8::2]:5060;transport=tcp>", now + 60,
                           "c2", 1, "tcp", "2001:db8::2", 49152, "tcp:0.0.0.0:5060", now),
                BindingRow("clinic.local", "1003", "k3", "<sip:1003@192.0.2.12>", now - 5, "c3", 1,
                           "udp", "192.0.2.12", 5060, "udp:0.0.0.0:5060", now),
        ]  # fmt: skip
        BindingStore(engine).apply(rows, [])
    finally:
        engine.dispose()
    listed = json.loads(ok(db, "registrations", "--json"))
    assert [r["aor"] for r in listed] == ["1001@clinic.local", "1002@clinic.local"]
    assert listed[0]["contact"] == "<sip:1001@192.0.2.10:5062>"
    assert listed[0]["transport"] == "udp"
    assert listed[0]["source"] == "192.0.2.10:5062"
    assert listed[0]["user_agent"] == "Yealink T46U"
    assert 295 <= listed[0]["expires_in"] <= 300
    assert listed[1]["source"] == "[2001:db8::2]:49152"
    table = ok(db, "registrations")
    assert re.search(r"^1002@clinic\.local\s+\S+\s+tcp\s+\[2001:db8::2\]:49152\s+\d+s$", table, re.MULTILINE)
    assert "1003@" not in table


def test_registrations_on_an_empty_server(db: str) -> None:
    assert json.loads(ok(db, "registrations", "--json")) == []
    assert ok(db, "registrations").strip() == "No registrations."


# -- serve ---------------------------------------------------------------------------------------


def test_serve_hands_the_parsed_configuration_over_and_exits_with_its_code(
    db: str, served: list[ServeConfig], tmp_path: Path
) -> None:
    result = run(db, "serve")
    assert result.exit_code == 3, result.output
    assert served[-1].listens == (Listen("udp", "0.0.0.0", 5060), Listen("tcp", "0.0.0.0", 5060))
    assert served[-1].db_url == db
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("certificate")
    key.write_text("key")
    result = run(db, "serve", "--listen", "udp:127.0.0.1:5070", "--listen", "tls:[::1]", "--cert", str(cert),
                 "--key", str(key), "--sip-trace", "--log-format", "json")  # fmt: skip
    assert result.exit_code == 3, result.output
    config = served[-1]
    assert config.listens == (Listen("udp", "127.0.0.1", 5070), Listen("tls", "::1", 5061))
    assert (config.cert, config.key, config.sip_trace, config.log_format) == (str(cert), str(key), True, "json")


def test_serve_refuses_bad_listens_and_missing_tls_files(db: str, served: list[ServeConfig], tmp_path: Path) -> None:
    assert "start with udp:, tcp: or tls:" in fails(db, "serve", "--listen", "sctp:0.0.0.0:5060", code=2)
    assert "the port must be a number" in fails(db, "serve", "--listen", "udp:0.0.0.0:99999", code=2)
    assert "a tls listen needs --cert FILE and --key FILE" in fails(db, "serve", "--listen", "tls:0.0.0.0", code=2)
    missing = str(tmp_path / "nope.pem")
    err = fails(db, "serve", "--listen", "tls:0.0.0.0", "--cert", missing, "--key", missing)
    assert err == f"sentral: cannot read the TLS certificate {missing}: No such file or directory\n"
    assert served == []


def test_serve_refuses_a_database_without_the_current_schema(
    tmp_path: Path, served: list[ServeConfig]
) -> None:
    db = sqlite_db(tmp_path)
    Path(db).touch()
    assert "run `sentral init` first" in fails(db, "serve")
    assert served == []


# -- logs ----------------------------------------------------------------------------------------


def test_json_logs_carry_the_bound_call_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure("json", "info")
    try:
        with structlog.contextvars.bound_contextvars(call_id="a84b4c76e66710", leg="b", clinic="clinic.local"):
            structlog.get_logger().info("leg answered")
        structlog.get_logger().debug("hidden below the level")
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        structlog.reset_defaults()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert (event["event"], event["level"], event["call_id"], event["leg"], event["clinic"]) == (
        "leg answered", "info", "a84b4c76e66710", "b", "clinic.local"
    )  # fmt: skip


def test_what_the_operator_asked_for_by_name_shows_at_any_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure("json", "critical")
    message = (
        b"INVITE sip:1002@clinic.local SIP/2.0\r\n"
        b'Proxy-Authorization: Digest username="1001", realm="clinic.local", nonce="n1", '
        b'response="6629fae49393a05397450978507c4ef1", algorithm=MD5\r\n'
        b'Authorization: Digest username="1001",response=0f1e2d3c\r\n\r\n'
    )
    try:
        structlog.get_logger().debug("hidden below the level")
        unfiltered_logger("sentral.sip_trace").debug("sip_in", message=sip_trace_text(message))
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        structlog.reset_defaults()
    [line] = lines
    event = json.loads(line)
    assert (event["event"], event["level"]) == ("sip_in", "debug")
    assert event["message"].count('response="(hidden)"') == 2
    assert "6629fae4" not in line and "0f1e2d3c" not in line
    assert 'nonce="n1"' in event["message"]


# -- the installed command -----------------------------------------------------------------------


def installed_command() -> list[str]:
    """The console script the package installs; `python -m sentral` where it is not on disk."""
    script = Path(sys.executable).with_name("sentral")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sentral"]


def installed_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SENTRAL_DB"}


def run_installed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*installed_command(), *args], capture_output=True, text=True, timeout=60, env=installed_env()
    )


def test_the_command_exits_cleanly_on_success_and_on_mistakes(db_url: str, tmp_path: Path) -> None:
    first = run_installed("--db", db_url, "init", "--demo")
    assert first.returncode == 0, first.stderr
    again = run_installed("--db", db_url, "init", "--demo")
    assert again.returncode == 0, again.stderr
    duplicate = run_installed("--db", db_url, "user", "add", "1001", "--name", "X", "--password", "long-enough")
    assert duplicate.returncode == 1
    assert duplicate.stderr == (
        "sentral: extension 1001 already exists in clinic.local; choose another number or remove it first\n"
    )
    listed = run_installed("--db", db_url, "user", "list", "--json")
    assert [u["extension"] for u in json.loads(listed.stdout)] == ["1001", "1002", "1003", "1004"]
    for args, code in [
        (("--db", str(tmp_path / "missing" / "x.db"), "init"), 1),
        (("--db", "postgresql+psycopg://nobody@127.0.0.1:1/none", "registrations"), 1),
        (("--db", db_url, "serve", "--listen", "udp:[::1"), 2),
    ]:
        result = run_installed(*args)
        assert result.returncode == code, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.strip()


def test_user_import_adds_everyone_from_a_csv(db: str, tmp_path: Path) -> None:
    sheet = tmp_path / "staff.csv"
    sheet.write_text(
        "Extension,Name,Password,Roles\n"
        "1101,Kari Nordmann,secret-1101,doctor\n"
        "1102,Ola Nordmann,secret-1102,nurse;medical-secretary\n"
        "1103,Per Hansen,secret-1103,\n",
        encoding="utf-8",
    )
    assert "Added 3 members of staff" in ok(db, "user", "import", str(sheet))
    listed = {u["extension"]: u for u in json.loads(ok(db, "user", "list", "--json"))}
    assert set(listed) == {"1101", "1102", "1103"}
    assert sorted(listed["1102"]["roles"]) == ["medical-secretary", "nurse"]
    engine = make_engine(db)
    try:
        entry = load_directory(engine).staff_for("clinic.local", "1101")
        assert entry is not None
        assert entry.ha1_md5 == compute_ha1("MD5", "1101", "clinic.local", "secret-1101")
    finally:
        engine.dispose()


def test_user_import_is_all_or_nothing_and_names_the_bad_line(db: str, tmp_path: Path) -> None:
    sheet = tmp_path / "staff.csv"
    sheet.write_text("extension,name,password\n1201,A B,secret-1201\n1202,C D,short\n", encoding="utf-8")
    message = fails(db, "user", "import", str(sheet))
    assert "line 3" in message and "8 characters" in message
    ok(db, "user", "add", "1301", "--name", "Taken", "--password", "secret-1301")
    sheet.write_text("extension,name,password\n1302,E F,secret-1302\n1301,G H,secret-1301\n", encoding="utf-8")
    assert "1301 already exists" in fails(db, "user", "import", str(sheet))
    extensions = {u["extension"] for u in json.loads(ok(db, "user", "list", "--json"))}
    assert extensions == {"1301"}


def test_user_import_needs_the_named_columns(db: str, tmp_path: Path) -> None:
    sheet = tmp_path / "staff.csv"
    sheet.write_text("1401,No Header,secret-1401\n", encoding="utf-8")
    assert "must name the columns" in fails(db, "user", "import", str(sheet))


# -- calls and call records ----------------------------------------------------------------------


def _live(call_id: str, state: str, started_at: float, answered_at: float | None = None) -> LiveCall:
    return LiveCall(call_id=call_id, domain="clinic.local", caller="+4791234567", callee="1001", state=state,
                    started_at=started_at, answered_at=answered_at, legs=2)  # fmt: skip


def test_calls_lists_the_calls_of_servers_that_published_lately(db: str) -> None:
    now = time.time()
    engine = make_engine(db)
    try:
        calls = LiveCallStore(engine)
        calls.publish(
            "sip-1",
            [_live("c-talking", "answered", now - 125, now - 65), _live("c-ringing", "ringing", now - 12)],
        )
        # A server that died a minute ago: its rows are still there but must not be shown.
        calls.publish("sip-2", [_live("c-dead", "answered", now - 600, now - 590)], now=now - 60)
    finally:
        engine.dispose()
    listed = json.loads(ok(db, "calls", "--json"))
    assert [c["call_id"] for c in listed] == ["c-talking", "c-ringing"]
    talking, ringing = listed
    assert (talking["caller"], talking["callee"], talking["legs"]) == ("+4791234567", "1001", 2)
    assert talking["state"] == "answered"
    assert talking["server_id"] == "sip-1" and talking["domain"] == "clinic.local"
    assert 65 <= talking["duration"] < 70 and 125 <= talking["elapsed"] < 130
    assert talking["started_at_epoch"] == now - 125
    assert talking["started_at"].endswith("Z") and talking["started_at"].startswith(
        datetime.fromtimestamp(now - 125, UTC).strftime("%Y-%m-%dT%H:%M")
    )
    assert ringing["answered_at"] is None and ringing["duration"] == 0 and 12 <= ringing["elapsed"] < 17
    table = ok(db, "calls").splitlines()
    assert table[0].split() == ["CALL", "ID", "FROM", "TO", "STATE", "DURATION"]
    assert re.fullmatch(r"c-talking\s+\+4791234567\s+1001\s+answered\s+1:0[5-9]", table[1])
    assert re.fullmatch(r"c-ringing\s+\+4791234567\s+1001\s+ringing\s+0:1[2-6]", table[2])
    assert len(table) == 3


def test_calls_show_the_transfers_of_a_call_so_far(db: str) -> None:
    now = time.time()
    moving = replace(
        _live("c-moving", "answered", now - 90, now - 80),
        transfers=(
            TransferRecord(at=now - 40, by="1001", kind="blind", target="1003", outcome="returned"),
            TransferRecord(at=now - 5, by="1001", kind="attended", target="1004", outcome=""),
        ),
    )
    engine = make_engine(db)
    try:
        LiveCallStore(engine).publish("sip-1", [moving, _live("c-plain", "ringing", now - 2)])
    finally:
        engine.dispose()
    talking, ringing = json.loads(ok(db, "calls", "--json"))
    assert talking["transfers"] == [
        {"at": _utc(now - 40), "at_epoch": now - 40, "by": "1001", "kind": "blind", "target": "1003",
         "outcome": "returned"},
        {"at": _utc(now - 5), "at_epoch": now - 5, "by": "1001", "kind": "attended", "target": "1004",
         "outcome": None},
    ]  # fmt: skip
    assert ringing["transfers"] == []
    table = ok(db, "calls").splitlines()
    assert table[2:4] == [
        "    transferred by 1001 (blind) to 1003: returned",
        "    transferred by 1001 (attended) to 1004: under way",
    ]
    assert table[4].startswith("c-plain") and len(table) == 5


def _utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_calls_when_nothing_is_in_progress(db: str) -> None:
    assert ok(db, "calls").strip() == "No calls in progress."
    assert json.loads(ok(db, "calls", "--json")) == []


T0 = 1_740_816_000.0  # 2025-03-01T08:00:00Z


def _record(call_id: str, started_at: float, answered: bool = True) -> CallRecord:
    legs = (
        LegRecord(leg=0, role="caller", target="+4791234567", started_at=started_at,
                  answered_at=started_at + 5 if answered else None, ended_at=started_at + 65,
                  outcome="answered" if answered else "no_answer", status=200 if answered else 480),
        LegRecord(leg=1, role="callee", target="sip:1001@192.0.2.10:5062", started_at=started_at + 0.5,
                  ringing_at=started_at + 0.75, answered_at=started_at + 5 if answered else None,
                  ended_at=started_at + 65, outcome="answered" if answered else "no_answer", status=200 if answered else None),
    )  # fmt: skip
    return CallRecord(
        call_id=call_id, domain="clinic.local", caller="+4791234567", caller_name="Kari Nordmann" if answered else None,
        callee="22", callee_extension="1001", started_at=started_at, ringing_at=started_at + 0.75,
        answered_at=started_at + 5 if answered else None, ended_at=started_at + 65,
        disposition="answered" if answered else "no_answer", hangup_by="caller" if answered else "system",
        hangup_reason="BYE" if answered else "no answer timeout", status_to_caller=200 if answered else 480, legs=legs,
    )  # fmt: skip


def _store_records(db: str, records: list[CallRecord]) -> None:
    engine = make_engine(db)
    try:
        CdrStore(engine).write(records)
    finally:
        engine.dispose()


@pytest.fixture
def oslo_time() -> Iterator[None]:
    """Run in Norwegian local time, so that local and UTC times differ."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "CET-1CEST,M3.5.0,M10.5.0/3"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_cdr_lists_records_newest_last_with_every_field_and_the_legs(db: str, oslo_time: None) -> None:
    _store_records(db, [_record("c2", T0 + 3600, answered=False), _record("c1", T0)])
    listed = json.loads(ok(db, "cdr", "--json"))
    assert [r["call_id"] for r in listed] == ["c1", "c2"]
    first, second = listed
    assert first == {
        "call_id": "c1", "domain": "clinic.local", "caller": "+4791234567", "caller_name": "Kari Nordmann",
        "caller_kind": None, "caller_reference": None, "caller_source": None,
        "callee": "22", "callee_extension": "1001",
        "started_at": "2025-03-01T08:00:00.000Z", "started_at_epoch": T0,
        "ringing_at": "2025-03-01T08:00:00.750Z", "ringing_at_epoch": T0 + 0.75,
        "answered_at": "2025-03-01T08:00:05.000Z", "answered_at_epoch": T0 + 5,
        "ended_at": "2025-03-01T08:01:05.000Z", "ended_at_epoch": T0 + 65,
        "duration": 60.0, "disposition": "answered", "hangup_by": "caller", "hangup_reason": "BYE",
        "status_to_caller": 200, "forwarded": [],
        "legs": [
            {"leg": 0, "role": "caller", "target": "+4791234567",
             "started_at": "2025-03-01T08:00:00.000Z", "started_at_epoch": T0, "ringing_at": None,
             "ringing_at_epoch": None, "answered_at": "2025-03-01T08:00:05.000Z", "answered_at_epoch": T0 + 5,
             "ended_at": "2025-03-01T08:01:05.000Z", "ended_at_epoch": T0 + 65, "outcome": "answered", "status": 200},
            {"leg": 1, "role": "callee", "target": "sip:1001@192.0.2.10:5062",
             "started_at": "2025-03-01T08:00:00.500Z", "started_at_epoch": T0 + 0.5,
             "ringing_at": "2025-03-01T08:00:00.750Z", "ringing_at_epoch": T0 + 0.75,
             "answered_at": "2025-03-01T08:00:05.000Z", "answered_at_epoch": T0 + 5,
             "ended_at": "2025-03-01T08:01:05.000Z", "ended_at_epoch": T0 + 65, "outcome": "answered", "status": 200},
        ],
        "transfers": [],
    }  # fmt: skip
    assert (second["answered_at"], second["duration"], second["caller_name"]) == (None, 0, None)
    assert [leg["status"] for leg in second["legs"]] == [480, None]
    table = ok(db, "cdr").splitlines()
    assert table[0].split() == ["STARTED", "CALL", "ID", "FROM", "TO", "RESULT", "DURATION", "HANGUP"]
    # The table shows local time: 08:00 UTC is 09:00 in Oslo in March.
    assert re.fullmatch(
        r"2025-03-01 09:00:00\s+c1\s+\+4791234567 \(Kari Nordmann\)\s+22 -> 1001\s+answered\s+1:00\s+caller: BYE",
        table[1],
    )
    assert re.fullmatch(
        r"2025-03-01 10:00:00\s+c2\s+\+4791234567\s+22 -> 1001\s+no_answer\s+-\s+system: no answer timeout",
        table[2],
    )


def test_cdr_shows_who_transferred_a_call_to_whom_and_how_it_ended(db: str, oslo_time: None) -> None:
    moved = replace(
        _record("c1", T0),
        transfers=(
            TransferRecord(at=T0 + 20, by="1001", kind="blind", target="1003", outcome="returned"),
            TransferRecord(at=T0 + 30.25, by="1001", kind="semi-attended", target="1004", outcome="answered"),
        ),
    )
    _store_records(db, [moved, _record("c2", T0 + 3600)])
    first, second = json.loads(ok(db, "cdr", "--json"))
    assert first["transfers"] == [
        {"at": "2025-03-01T08:00:20.000Z", "at_epoch": T0 + 20, "by": "1001", "kind": "blind", "target": "1003",
         "outcome": "returned"},
        {"at": "2025-03-01T08:00:30.250Z", "at_epoch": T0 + 30.25, "by": "1001", "kind": "semi-attended",
         "target": "1004", "outcome": "answered"},
    ]  # fmt: skip
    assert second["transfers"] == []
    table = ok(db, "cdr").splitlines()
    assert table[0].split() == ["STARTED", "CALL", "ID", "FROM", "TO", "RESULT", "DURATION", "HANGUP"]
    assert table[1].startswith("2025-03-01 09:00:00  c1 ")
    assert table[2:4] == [
        "    transferred by 1001 (blind) to 1003: returned",
        "    transferred by 1001 (semi-attended) to 1004: answered",
    ]
    # The columns stay aligned across the lines between them.
    assert table[4].startswith("2025-03-01 10:00:00  c2 ") and len(table) == 5
    assert table[4].index("22 -> 1001") == table[1].index("22 -> 1001")


def test_cdr_since_takes_iso_8601_dates_and_times(db: str, oslo_time: None) -> None:
    # 07:00, 08:00, 09:00 and 23:30 UTC on 1 March; 00:30 on 2 March in Oslo is 23:30 UTC on 1 March.
    _store_records(db, [_record("c0700", T0 - 3600), _record("c0800", T0), _record("c0900", T0 + 3600),
                        _record("c2330", T0 + 15.5 * 3600)])  # fmt: skip

    def since(value: str, *more: str) -> list[str]:
        return [r["call_id"] for r in json.loads(ok(db, "cdr", "--since", value, "--json", *more))]

    assert since("2025-03-01T08:00:00Z") == ["c0800", "c0900", "c2330"]
    assert since("2025-03-01T08:00:00.001+00:00") == ["c0900", "c2330"]
    assert since("2025-03-01T09:00+01:00") == ["c0800", "c0900", "c2330"]
    # Without an offset it is local time: 09:00 in Oslo is 08:00 UTC.
    assert since("2025-03-01T09:00") == ["c0800", "c0900", "c2330"]
    assert since("2025-03-01 10:00:00") == ["c0900", "c2330"]
    # A date is local midnight: 2 March begins at 23:00 UTC on 1 March.
    assert since("2025-03-02") == ["c2330"]
    assert since("2025-03-01") == ["c0700", "c0800", "c0900", "c2330"]
    assert since("2025-03-01", "--limit", "2") == ["c0900", "c2330"]
    assert "No call records since then." in ok(db, "cdr", "--since", "2025-03-03")
    assert json.loads(ok(db, "cdr", "--since", "2025-03-03", "--json")) == []


def test_cdr_shows_the_newest_hundred_unless_told_otherwise(db: str) -> None:
    _store_records(db, [_record(f"c{i:03d}", T0 + i) for i in range(105)])
    listed = [r["call_id"] for r in json.loads(ok(db, "cdr", "--json"))]
    assert listed == [f"c{i:03d}" for i in range(5, 105)]
    assert len(json.loads(ok(db, "cdr", "--json", "--limit", "0"))) == 105
    newest = json.loads(ok(db, "cdr", "--json", "--limit", "3"))
    assert [r["call_id"] for r in newest] == ["c102", "c103", "c104"]
    assert len(ok(db, "cdr", "--limit", "3").splitlines()) == 4


def test_cdr_on_an_empty_server(db: str) -> None:
    assert ok(db, "cdr").strip() == "No call records."
    assert json.loads(ok(db, "cdr", "--json")) == []


def test_cdr_refuses_a_bad_since_or_limit_with_a_usage_error(db: str) -> None:
    for value in ("yesterday", "2025-13-01", "01.03.2025", ""):
        message = fails(db, "cdr", "--since", value, code=2)
        assert "is not an ISO 8601 date or time" in message
        assert "2025-03-01T08:30:00+01:00" in message
    assert "--limit" in fails(db, "cdr", "--limit", "-1", code=2)
