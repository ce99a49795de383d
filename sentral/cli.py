"""The operator's CLI: set up the database, manage clinics, staff, groups, functions, roles, park
lots, trunks, public numbers and closed days, log staff in and out and phones on and off, show
presence, registrations and calls, serve.

Every command is scriptable: listings take ``--json`` (a JSON array of objects), and a mistake
ends with one sentence on stderr saying what to fix and exit code 1 (usage errors exit 2), never a
traceback. Changes are committed through ``ConfigStore``, which bumps the directory version, so a
running server picks them up within a second.

``group`` and ``function`` are one set of commands built twice by ``_group_commands``: the two
kinds differ only in a few options (a function may go without a number and has roles that give
it) and in whether a new member starts logged in. ``presence`` and ``role members`` read what the
running server leaves in the database: registrations and the line states it publishes; ``trunk
list`` and ``trunk show`` read the trunk states it publishes the same way.

Phone numbers are taken as the operator writes them (national in the clinic's country, with + or
00) and stored in E.164; routing reads them (``sentral.routing.outside``) and the opening hours
(``sentral.routing.hours``), so the CLI refuses exactly what the server could not follow. A trunk's
password is never printed: listings say whether one is set.
"""

from __future__ import annotations

import asyncio
import csv
import ipaddress
import json
import re
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import astuple, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO, assert_never, cast

import click
import phonenumbers
from phonenumbers import UNKNOWN_REGION
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from sentral.adapters import AdapterError, CallerLookup, Match, build_adapter
from sentral.config.backup import KEPT_SUFFIX, BackupError, backup_sqlite, pg_dump_command, restore_sqlite
from sentral.config.callerid import (
    AdapterSettings,
    CallerIdStore,
    check_settings,
    normalize_adapter_name,
    validate_contact_kind,
    validate_contact_name,
)
from sentral.config.cdr import (
    LIVE_MAX_AGE,
    CallRecord,
    CdrStore,
    LegRecord,
    LiveCall,
    LiveCallStore,
    TransferRecord,
)
from sentral.config.db import (
    StoreError,
    database_url,
    describe_url,
    first_line,
    make_engine,
    migrate,
    newest_revision,
    schema_is_current,
    schema_revisions,
    sqlite_path,
)
from sentral.config.directory import (
    NO_FORWARDS,
    AdapterEntry,
    ClinicEntry,
    ContactEntry,
    DialPermission,
    ForwardKind,
    Forwards,
    GroupEntry,
    GroupKind,
    MemberEntry,
    NumberFormat,
    ParkLotEntry,
    PublicNumberEntry,
    StaffEntry,
    TrunkEntry,
    load_directory,
)
from sentral.config.file import (
    DATABASE_KEY,
    DEFAULT_CONFIG,
    ENV_CONFIG,
    ConfigFile,
    ConfigFileError,
    Mistake,
    config_path,
    database,
    default_map,
    environment_database,
    option_keys,
    read_config,
)
from sentral.config.settings import (
    SERVE_DEFAULTS,
    Listen,
    ListenSpecError,
    MediaSpecError,
    Reread,
    ServeConfig,
    default_sounds,
    parse_listen,
    parse_media_address,
    parse_port_range,
)
from sentral.config.spool import ENV_SPOOL, SpoolDepth, default_spool_dir, spool_depth
from sentral.config.store import (
    DEFAULT_PARK_TIMEOUT,
    DEFAULT_TRUNK_PRIORITY,
    LINE_MAX_AGE,
    LOOKUP_BUDGET_MS,
    TRUNK_MAX_AGE,
    BindingRow,
    BindingStore,
    ConfigStore,
    GroupSettings,
    LineState,
    LineStateStore,
    LineStatus,
    NewStaff,
    ParkSettings,
    PublicNumberSettings,
    TrunkSettings,
    TrunkState,
    TrunkStateStore,
    default_port,
    normalize_country,
    normalize_domain,
    normalize_park_name,
    normalize_trunk_name,
    parse_day,
    parse_dial,
    parse_digest_algorithms,
    parse_host_port,
    parse_number_format,
    parse_phone_digest,
    parse_slots,
    parse_strategy,
    parse_transport,
    phone_digest_name,
    validate_extension,
    validate_name,
    validate_password,
)
from sentral.logs import LEVELS, TARGETS, LogFormat, LogTarget, configure
from sentral.media.sounds import LANGUAGES
from sentral.routing.hours import OpeningHours
from sentral.routing.outside import country_code, normalise

DEFAULT_DOMAIN = "clinic.local"
# Where `make run` serves the demo (its SIP_PORT may say another port: it passes init --server).
DEMO_SERVER = "127.0.0.1:5060"
DEMO_CLINIC_NAME = "Fjordheim legesenter"


@dataclass(frozen=True, slots=True)
class DemoStaff:
    """A member of staff that ``sentral init --demo`` creates."""

    extension: str
    name: str
    roles: tuple[str, ...]


DEMO_STAFF = (
    DemoStaff("1001", "Ingrid Solberg", ("doctor",)),
    DemoStaff("1002", "Magnus Haugen", ("doctor",)),
    DemoStaff("1003", "Silje Nilsen", ("nurse",)),
    DemoStaff("1004", "Kari Johansen", ("medical-secretary",)),
)


class OperatorError(click.ClickException):
    """A mistake the operator can fix: printed as one sentence on stderr, exit code 1."""

    def show(self, file: Any = None) -> None:
        """Print ``sentral: <sentence>`` on stderr."""
        click.echo(f"sentral: {self.format_message()}", err=True)


@dataclass(frozen=True, slots=True)
class Target:
    """The database the command works on, as given by --db, $SENTRAL_DB or the default."""

    url: str

    @property
    def where(self) -> str:
        """The database as the operator named it, without a password."""
        return describe_url(self.url)


@contextmanager
def _translated(target: Target) -> Iterator[None]:
    """Turn storage failures into operator sentences."""
    try:
        yield
    except StoreError as exc:
        raise OperatorError(str(exc)) from exc
    except DBAPIError as exc:
        raise OperatorError(f"the database at {target.where} refused the operation: {first_line(exc)}") from exc


def _open(target: Target, *, creating: bool = False) -> Engine:
    """Connect to the target database; unless ``creating``, it must hold the current schema."""
    path = sqlite_path(target.url)
    if path is not None:
        parent = Path(path).parent
        if not parent.is_dir():
            raise OperatorError(
                f"cannot open the database at {path}: the directory {parent} does not exist; create it first"
            )
        if not creating and not Path(path).exists():
            raise OperatorError(
                f"there is no database at {path}; create it with `sentral init` or point --db at an existing one"
            )
    try:
        engine = make_engine(target.url)
    except StoreError as exc:
        raise OperatorError(str(exc)) from exc
    try:
        engine.connect().close()
        current = creating or schema_is_current(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise OperatorError(f"cannot open the database at {target.where}: {first_line(exc)}") from exc
    if not current:
        engine.dispose()
        raise OperatorError(
            f"the database at {target.where} is not set up for this version of sentral; run `sentral init` first"
        )
    click.get_current_context().call_on_close(engine.dispose)
    return engine


def _emit_json(items: Sequence[dict[str, Any]]) -> None:
    click.echo(json.dumps(list(items), indent=2, ensure_ascii=False))


def _emit_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    empty: str,
    notes: Sequence[Sequence[str]] | None = None,
) -> None:
    """Print aligned columns; ``notes[i]``, if given, are indented lines printed under row ``i``."""
    if not rows:
        click.echo(empty)
        return
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    click.echo("  ".join(cell.ljust(width) for cell, width in zip(headers, widths, strict=True)).rstrip())
    for index, row in enumerate(rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        for note in notes[index] if notes is not None else ():
            click.echo(f"    {note}")


def _source(row: BindingRow) -> str:
    host = f"[{row.source_host}]" if ":" in row.source_host else row.source_host
    return f"{host}:{row.source_port}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    metavar="URL|PATH",
    help="Database: an SQLite file path or a SQLAlchemy URL (postgresql+psycopg://...). "
    "Default: $SENTRAL_DB, else ./sentral.db.",
)
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """Sentral, a SIP softswitch for clinics."""
    ctx.obj = Target(database_url(db or _configured_database(ctx)))


pass_target = click.make_pass_decorator(Target)


@cli.command()
@click.option(
    "--domain",
    metavar="DOMAIN",
    help=f"SIP domain of the clinic a new database starts with (default {DEFAULT_DOMAIN}). "
    "On an existing database: a clinic it must already serve.",
)
@click.option("--demo", is_flag=True, help="In a new database, also add demo staff 1001-1004 and print their passwords.")
@click.option(
    "--server",
    default=DEMO_SERVER,
    show_default=True,
    callback=lambda _ctx, _param, value: _server_address(value),
    metavar="HOST:PORT",
    help="Where phones reach the server (what `serve --listen` is given), for the demo's phone instructions.",
)
@pass_target
def init(target: Target, domain: str | None, demo: bool, server: str) -> None:
    """Create the database with its first clinic, or bring an existing database up to date.

    Safe to run again: on a database set up before, init only runs the schema migrations it lacks.
    It adds no clinic there (`sentral clinic add DOMAIN` does) and changes no staff or passwords.
    """
    engine = _open(target, creating=True)
    with _translated(target):
        before = schema_revisions(engine)
        migrate(engine)
        store = ConfigStore(engine)
        if before:
            _upgraded(target, store, before, domain or (DEFAULT_DOMAIN if demo else None))
            if demo:
                click.echo(
                    "The demo staff's passwords were shown when they were created "
                    "(set a new one with `sentral user passwd 1001 --password ...`)."
                )
                click.echo(_phone_instructions(normalize_domain(domain or DEFAULT_DOMAIN), server))
            return
        clinic = store.create_clinic(domain or DEFAULT_DOMAIN, DEMO_CLINIC_NAME if demo else None)
        click.echo(f"Created clinic {clinic.domain} in {target.where}.")
        if not demo:
            return
        created: list[tuple[DemoStaff, str]] = []
        for member in DEMO_STAFF:
            password = secrets.token_urlsafe(9)
            store.add_staff(clinic.domain, member.extension, member.name, password, member.roles)
            created.append((member, password))
    click.echo("\nDemo staff (the passwords are shown only now):")
    _emit_table(
        ("EXTENSION", "NAME", "ROLES", "PASSWORD"),
        [(m.extension, m.name, ",".join(m.roles), pw) for m, pw in created],
        "",
    )
    click.echo(_phone_instructions(clinic.domain, server))


def _upgraded(target: Target, store: ConfigStore, before: Sequence[str], domain: str | None) -> None:
    """Say what ``init`` did to a database that existed: which schema it has now, and its clinics.

    A ``domain`` the operator asked for must be one of them: init adds no clinic to an existing database.
    """
    newest = newest_revision()
    if tuple(before) == (newest,):
        click.echo(f"The database at {target.where} is up to date (schema {newest}); nothing changed.")
    else:
        click.echo(f"Upgraded the database at {target.where} from schema {', '.join(before)} to {newest}.")
    domains = [entry.domain for entry in store.clinics()]
    if domain is not None and normalize_domain(domain) not in domains:
        wanted = normalize_domain(domain)
        raise OperatorError(
            f"the database at {target.where} exists already and init adds no clinic to it; "
            f"add {wanted} with `sentral clinic add {wanted}`"
        )
    if domains:
        click.echo(f"Clinics: {', '.join(domains)} (add another with `sentral clinic add DOMAIN`).")
    else:
        click.echo("It has no clinic; add one with `sentral clinic add DOMAIN`.")


def _server_address(value: str) -> str:
    """``HOST:PORT`` (``[v6]:PORT``) as given, or a usage error that says what to write."""
    host, _, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")  # an IPv6 address, as in a SIP URI
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or (":" in host and not bracketed):
        raise click.BadParameter(f"{value!r} is not HOST:PORT; write it like 127.0.0.1:5060 or [::1]:5060")
    return value


def _phone_instructions(domain: str, server: str) -> str:
    """How to set up a softphone for the demo clinic on ``server`` (HOST:PORT)."""
    return (
        "\nTo register a softphone (Linphone, Zoiper, MicroSIP, ...):\n"
        f"  SIP domain / realm: {domain}\n"
        "  username:           the extension, e.g. 1001\n"
        "  password:           as printed when the extension was created\n"
        f"  outbound proxy:     sip:{server};lr (transport UDP or TCP)\n"
        f"The domain {domain} is not in DNS, so the softphone must send everything to the server:\n"
        "set the server as its outbound proxy (the setting may be called \"outbound proxy\", \"proxy\"\n"
        f"or \"SIP proxy\"), as sip:{server};lr, or as {server} where it takes no URI.\n"
        "Then call another extension, e.g. 1002."
    )


# -- clinics -------------------------------------------------------------------------------------


@cli.group()
def clinic() -> None:
    """Manage clinics (SIP domains)."""


@clinic.command("add")
@click.argument("domain")
@click.option("--name", help="Display name; defaults to the domain.")
@pass_target
def clinic_add(target: Target, domain: str, name: str | None) -> None:
    """Add a clinic serving DOMAIN."""
    engine = _open(target)
    with _translated(target):
        entry = ConfigStore(engine).create_clinic(domain, name)
    click.echo(f"Added clinic {entry.domain} ({entry.name}).")


@clinic.command("remove")
@click.argument("domain")
@click.option(
    "--force",
    is_flag=True,
    help="Also remove its staff, groups, functions, park lots, role numbers, trunks and public numbers.",
)
@pass_target
def clinic_remove(target: Target, domain: str, force: bool) -> None:
    """Remove the clinic DOMAIN and its registrations; its call records stay.

    Refused while the clinic still has staff, groups, functions, park lots, role numbers, trunks or
    public numbers, unless --force, which removes them too.
    """
    with _translated(target):
        canonical = normalize_domain(domain)
        removed = ConfigStore(_open(target)).remove_clinic(canonical, force=force)
    with_it = f" with {removed.described}" if removed.items else ""
    click.echo(f"Removed clinic {canonical}{with_it}.")


@clinic.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_target
def clinic_list(target: Target, as_json: bool) -> None:
    """List clinics."""
    engine = _open(target)
    with _translated(target):
        clinics = ConfigStore(engine).clinics()
    if as_json:
        _emit_json(
            [
                {
                    "domain": c.domain,
                    "name": c.name,
                    "digest_algorithms": list(c.digest_algorithms),
                    "country": c.country,
                    "main_number": c.main_number,
                    "timezone": c.timezone,
                    "open_countries": sorted(c.open_countries),
                    "lookup_budget_ms": round(c.lookup_budget * 1000),
                }
                for c in clinics
            ]
        )
        return
    _emit_table(
        ("DOMAIN", "NAME", "DIGEST"),
        [(c.domain, c.name, ",".join(c.digest_algorithms)) for c in clinics],
        "No clinics yet; add one with `sentral clinic add DOMAIN`.",
    )


@clinic.command("set")
@click.argument("domain")
@click.option(
    "--digest",
    metavar="sha256,md5|md5|sha256",
    help="Digest algorithms to challenge with, in order (older desk phones only do md5).",
)
@click.option("--country", metavar="CC", help="The country national numbers are read in, such as NO or SE.")
@click.option(
    "--main-number", metavar="NUMBER", help="The caller ID of outside calls by staff without a number of their own."
)
@click.option("--timezone", metavar="ZONE", help="The time zone of opening hours, such as Europe/Oslo.")
@click.option(
    "--lookup-budget",
    type=click.IntRange(LOOKUP_BUDGET_MS[0], LOOKUP_BUDGET_MS[1]),
    metavar="MS",
    help="How long the caller-ID lookup may hold ringing back, in milliseconds (default 150).",
)
@pass_target
def clinic_set(
    target: Target,
    domain: str,
    digest: str | None,
    country: str | None,
    main_number: str | None,
    timezone: str | None,
    lookup_budget: int | None,
) -> None:
    """Change the settings of the clinic DOMAIN; options left out keep their value."""
    if digest is None and country is None and main_number is None and timezone is None and lookup_budget is None:
        raise click.UsageError(
            "say what to change, such as --country NO --main-number 22334455; see `sentral clinic set --help`"
        )
    engine = _open(target)
    with _translated(target):
        store = ConfigStore(engine)
        canonical = store.resolve_domain(domain)
        if digest is not None:
            entry = store.set_digest_algorithms(canonical, parse_digest_algorithms(digest))
            click.echo(f"Clinic {entry.domain} now challenges with {', '.join(entry.digest_algorithms)}.")
        if lookup_budget is not None:
            entry = store.set_clinic_outside(canonical, lookup_budget_ms=lookup_budget)
            click.echo(
                f"Clinic {entry.domain} rings after at most {round(entry.lookup_budget * 1000)} ms of caller-ID lookup."
            )
        if country is None and main_number is None and timezone is None:
            return
        region = normalize_country(country) if country is not None else _region_of(store, canonical)
        e164 = _phone_number(main_number, region, "main number") if main_number is not None else None
        entry = store.set_clinic_outside(canonical, country=region, main_number=e164, timezone=timezone)
    where = entry.timezone or "the server's time zone"
    click.echo(
        f"Clinic {entry.domain} is in {entry.country} (+{country_code(entry.country)}), calls out as "
        f"{entry.main_number or 'no main number'}, and keeps opening hours in {where}."
    )


@clinic.group("countries")
def clinic_countries() -> None:
    """Open or close outbound calls to countries (the clinic's own is open unless denied)."""


def _calling_code(text: str) -> int:
    """A country as the operator names it, by calling code (46, +46) or ISO code (SE), as its calling code."""
    spelled = text.strip().removeprefix("+")
    if spelled.isdigit():
        code = int(spelled)
        if 1 <= code <= 999 and phonenumbers.region_code_for_country_code(code) != UNKNOWN_REGION:
            return code
    elif len(spelled) == 2 and spelled.isalpha():
        with suppress(ValueError):
            return country_code(spelled)
    raise OperatorError(f"country {text!r} is not known; give a calling code such as 46 or a country such as SE")


def _country_json(code: int, is_open: bool, own: bool) -> dict[str, Any]:
    return {
        "code": code,
        "region": phonenumbers.region_code_for_country_code(code),
        "open": is_open,
        "own": own,
    }


def _countries_command(is_open: bool) -> click.Command:
    verb = "allow" if is_open else "deny"

    @click.command(verb)
    @click.argument("domain")
    @click.argument("codes", nargs=-1, required=True, metavar="CODE...")
    @pass_target
    def command(target: Target, domain: str, codes: tuple[str, ...]) -> None:
        with _translated(target):
            wanted = [_calling_code(code) for code in codes]
            store = ConfigStore(_open(target))
            entry = store.set_countries_open(store.resolve_domain(domain), wanted, is_open)
        opened = ", ".join(f"+{code}" for code in sorted(entry.open_countries)) or "none"
        click.echo(f"Clinic {entry.domain} calls out to: {opened}.")

    command.help = (
        f"{'Open' if is_open else 'Close'} outbound calls from clinic DOMAIN to the countries CODE... "
        "(calling codes such as 46, or countries such as SE)."
    )
    return command


clinic_countries.add_command(_countries_command(True))
clinic_countries.add_command(_countries_command(False))


@clinic_countries.command("list")
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_target
def clinic_countries_list(target: Target, domain: str, as_json: bool) -> None:
    """List the countries clinic DOMAIN's staff may call, and those closed by hand."""
    with _translated(target):
        store = ConfigStore(_open(target))
        canonical = store.resolve_domain(domain)
        entry = store.clinic(canonical)
        choices = store.country_choices(canonical)
    assert entry is not None
    own = country_code(entry.country)
    codes = sorted({own, *choices})
    rows = [_country_json(code, code in entry.open_countries, code == own) for code in codes]
    if as_json:
        _emit_json(rows)
        return
    _emit_table(
        ("CODE", "COUNTRY", "OPEN"),
        [(f"+{r['code']}", r["region"] + (" (own)" if r["own"] else ""), _yes(r["open"])) for r in rows],
        "",
    )


# -- staff ---------------------------------------------------------------------------------------


@cli.group()
def user() -> None:
    """Manage staff: extensions, names, passwords and roles."""


domain_option = click.option(
    "--domain", help="The clinic; may be left out when there is only one.", metavar="DOMAIN"
)


def password_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--password`` and ``--password-stdin``; with neither, the password is asked for at the terminal."""
    function = click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from the first line of standard input, as a script pipes it in.",
    )(function)
    return click.option(
        "--password",
        metavar="PASSWORD",
        help="At least 8 characters. Left out, it is asked for at the terminal.",
    )(function)


def _password(password: str | None, from_stdin: bool) -> str:
    """The password given with --password, piped in with --password-stdin, or typed at the terminal."""
    if password is not None and from_stdin:
        raise click.UsageError("give either --password or --password-stdin, not both")
    if password is not None:
        return password
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise OperatorError("--password-stdin read no password; pipe the password in as the first line")
        return line
    # A script has no terminal to type at: say how to give the password rather than wait or abort.
    if not sys.stdin.isatty():
        raise OperatorError(
            "there is no terminal to type the password at; give it with --password PASSWORD "
            "or pipe it in with --password-stdin"
        )
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@click.argument("extension")
@click.option("--name", required=True, help="Full name, e.g. 'Kari Nordmann'.")
@password_options
@click.option("--role", "roles", multiple=True, metavar="ROLE", help="A role such as doctor; repeatable.")
@domain_option
@pass_target
def user_add(
    target: Target,
    extension: str,
    name: str,
    password: str | None,
    password_stdin: bool,
    roles: tuple[str, ...],
    domain: str | None,
) -> None:
    """Add a member of staff at EXTENSION."""
    with _translated(target):
        # Check what the operator typed before looking at the database, so the first complaint is about it.
        validate_name(name, validate_extension(extension))
        password = validate_password(_password(password, password_stdin))
        store = ConfigStore(_open(target))
        entry = store.add_staff(store.resolve_domain(domain), extension, name, password, roles)
    roles_text = f" with roles {', '.join(entry.roles)}" if entry.roles else ""
    click.echo(f"Added {entry.extension}@{entry.domain} ({entry.name}){roles_text}.")


@user.command("import")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"), metavar="FILE.csv")
@domain_option
@pass_target
def user_import(target: Target, csv_file: TextIO, domain: str | None) -> None:
    """Add every member of staff listed in FILE.csv, all or none.

    The file has a header line naming the columns extension, name and password, and optionally
    roles (several separated by spaces or semicolons). '-' reads standard input.
    """
    with _translated(target):
        people = _read_staff_csv(csv_file)
        store = ConfigStore(_open(target))
        added = store.add_staff_many(store.resolve_domain(domain), people)
    click.echo(f"Added {len(added)} members of staff.")


def _read_staff_csv(handle: TextIO) -> list[NewStaff]:
    name = getattr(handle, "name", "the file")
    reader = csv.DictReader(handle)
    columns = {c.strip().lower() for c in (reader.fieldnames or [])}
    missing = {"extension", "name", "password"} - columns
    if missing:
        raise StoreError(
            f"{name}: the first line must name the columns extension, name, password (and optionally roles); "
            f"missing {', '.join(sorted(missing))}"
        )
    people: list[NewStaff] = []
    for line, row in enumerate(reader, start=2):
        values = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        try:
            extension = validate_extension(values["extension"])
            validate_name(values["name"], extension)
            validate_password(values["password"])
        except StoreError as exc:
            raise StoreError(f"{name}, line {line}: {exc}") from exc
        roles = tuple(r for r in re.split(r"[;\s]+", values.get("roles", "")) if r)
        people.append(NewStaff(extension, values["name"], values["password"], roles))
    if not people:
        raise StoreError(f"{name}: no staff listed below the header line")
    return people


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--domain", help="Only this clinic; default: every clinic.", metavar="DOMAIN")
@pass_target
def user_list(target: Target, as_json: bool, domain: str | None) -> None:
    """List staff with their roles and the functions they are members of."""
    engine = _open(target)
    with _translated(target):
        store = ConfigStore(engine)
        resolved = store.resolve_domain(domain) if domain is not None else None
        staff = store.staff(resolved)
        functions = _functions_by_member(store, {entry.domain for entry in staff})
        clinics = {entry.domain: entry for entry in store.clinics()}
    if as_json:
        _emit_json(
            [
                {
                    "domain": s.domain,
                    "extension": s.extension,
                    "name": s.name,
                    "roles": list(s.roles),
                    "phone_on": s.phone_on,
                    "direct_media": s.direct_media,
                    **_digest_json(s, clinics),
                    "functions": [
                        {"name": name, "logged_in": logged_in}
                        for name, logged_in in functions.get((s.domain, s.extension), ())
                    ],
                    "forwards": _forwards_json(s.forwards),
                    "dial": s.dial.value,
                    "public_number": s.public_number,
                }
                for s in staff
            ]
        )
        return
    _emit_table(
        ("EXTENSION", "DOMAIN", "NAME", "ROLES", "FUNCTIONS", "FORWARDS"),
        [
            (
                s.extension,
                s.domain,
                s.name,
                ",".join(s.roles),
                ", ".join(
                    f"{name} (logged in)" if logged_in else name
                    for name, logged_in in functions.get((s.domain, s.extension), ())
                ),
                forwards_text(s.forwards),
            )
            for s in staff
        ],
        "No staff yet; add someone with `sentral user add EXT --name NAME`.",
    )


def _forwards_json(forwards: Forwards) -> dict[str, Any]:
    """A member of staff's forwards for listings: each kind's number or null, and the no-answer time."""
    return {
        **{kind.value: forwards.target(kind) for kind in ForwardKind},
        "after": int(forwards.after),
    }


def forwards_text(forwards: Forwards) -> str:
    """A member of staff's forwards in words: "always 1003, noanswer 1004 after 20 s"; "" for none."""
    parts = []
    for kind in ForwardKind:
        number = forwards.target(kind)
        if number is not None:
            after = f" after {int(forwards.after)} s" if kind is ForwardKind.NO_ANSWER else ""
            parts.append(f"{kind.value} {number}{after}")
    return ", ".join(parts)


def _digest_json(staff: StaffEntry, clinics: Mapping[str, ClinicEntry]) -> dict[str, Any]:
    """A phone's digest choice and the algorithms it is challenged with, for listings."""
    clinic = clinics[staff.domain]
    return {
        "digest": phone_digest_name(staff.digest_algorithms),
        "digest_algorithms": list(staff.digest_algorithms or clinic.digest_algorithms),
    }


@user.command("show")
@click.argument("extension")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@domain_option
@pass_target
def user_show(target: Target, extension: str, as_json: bool, domain: str | None) -> None:
    """Show the member of staff at EXTENSION: name, roles, phone and digest settings, functions,
    forwards."""
    with _translated(target):
        validate_extension(extension)
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        entry = store.staff_member(resolved, extension)
        clinics = {c.domain: c for c in store.clinics()}
        functions = _functions_by_member(store, {resolved}).get((resolved, extension), [])
    digest = _digest_json(entry, clinics)
    if as_json:
        data = {
            "domain": entry.domain,
            "extension": entry.extension,
            "name": entry.name,
            "roles": list(entry.roles),
            "phone_on": entry.phone_on,
            "direct_media": entry.direct_media,
            **digest,
            "functions": [{"name": name, "logged_in": logged_in} for name, logged_in in functions],
            "forwards": _forwards_json(entry.forwards),
            "dial": entry.dial.value,
            "public_number": entry.public_number,
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    offered = ", ".join(digest["digest_algorithms"])
    chosen = f"the clinic's ({offered})" if digest["digest"] == "clinic" else f"{digest['digest']} ({offered})"
    settings = [
        ("name", entry.name),
        ("roles", ", ".join(entry.roles) or "-"),
        ("phone", "on" if entry.phone_on else "off"),
        ("direct media", _yes(entry.direct_media)),
        ("digest", chosen),
        ("functions", ", ".join(f"{n} (logged in)" if li else n for n, li in functions) or "-"),
        ("forwards", forwards_text(entry.forwards) or "-"),
        ("dial", entry.dial.value),
        ("number", entry.public_number or "the clinic's"),
    ]
    click.echo(f"Extension {entry.extension}@{entry.domain}")
    for label, value in settings:
        click.echo(f"  {label + ':':<14}{value}")


FORWARD_KINDS = {kind.value: kind for kind in ForwardKind}


@user.command("set")
@click.argument("extension")
@click.option(
    "--digest",
    metavar="sha256|md5|both|clinic",
    help="Digest algorithms this phone is challenged with: sha256, md5, both (sha256 then md5), "
    "or clinic (the clinic's, the default). For phones that cannot follow the clinic's choice.",
)
@click.option(
    "--forward",
    nargs=2,
    metavar="always|busy|noanswer NUMBER",
    help="Forward calls to an extension, group, function or role number of the clinic: always, when "
    "busy, or when nobody answers (after 20 s, or --after).",
)
@click.option(
    "--after",
    type=int,
    metavar="SEC",
    help="With --forward noanswer: seconds of ringing before the call goes on (1 to 180).",
)
@click.option(
    "--no-forward",
    "no_forward",
    is_flag=False,
    flag_value="all",
    metavar="[always|busy|noanswer]",
    help="Clear that forward; without a kind, every forward.",
)
@click.option(
    "--dial",
    metavar="internal|national|international",
    help="Which outside numbers they may dial (national by default).",
)
@click.option(
    "--number", "public_number", metavar="NUMBER", help="Their own public number: their caller ID on outside calls."
)
@click.option("--no-number", is_flag=True, help="Call out with the clinic's main number again.")
@domain_option
@pass_target
def user_set(
    target: Target,
    extension: str,
    digest: str | None,
    forward: tuple[str, str] | None,
    after: int | None,
    no_forward: str | None,
    dial: str | None,
    public_number: str | None,
    no_number: bool,
    domain: str | None,
) -> None:
    """Change the settings of the phone at EXTENSION; options left out keep their value."""
    outside = dial is not None or public_number is not None or no_number
    if digest is None and forward is None and no_forward is None and not outside:
        raise click.UsageError(
            "say what to change, such as --digest md5 or --forward busy 1002; see `sentral user set --help`"
        )
    if public_number is not None and no_number:
        raise OperatorError("give either --number or --no-number, not both")
    if after is not None and (forward is None or forward[0].lower() != ForwardKind.NO_ANSWER.value):
        raise OperatorError("--after goes with a no-answer forward: --forward noanswer NUMBER --after SEC")
    if forward is not None and no_forward is not None:
        raise OperatorError("give either --forward or --no-forward, not both")
    forward_kind = _forward_kind(forward[0]) if forward is not None else None
    clear_kind = None if no_forward in (None, "all") else _forward_kind(no_forward or "")
    with _translated(target):
        validate_extension(extension)
        algorithms = parse_phone_digest(digest) if digest is not None else None
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        if outside:
            permission = parse_dial(dial) if dial is not None else None
            own = _phone_number(public_number, _region_of(store, resolved), "number") if public_number else None
            entry = store.set_dial(resolved, extension, permission, own, clear_number=no_number)
            click.echo(
                f"{entry.extension}@{entry.domain} may dial {_dial_text(entry.dial)} and calls out as "
                f"{entry.public_number or 'the clinic'}."
            )
        if forward is not None and forward_kind is not None:
            entry = store.set_forward(resolved, extension, forward_kind, forward[1], after)
            click.echo(f"{entry.extension}@{entry.domain} forwards {forwards_text(entry.forwards)}.")
        if no_forward is not None:
            entry = store.clear_forward(resolved, extension, clear_kind)
            left = forwards_text(entry.forwards)
            click.echo(f"{entry.extension}@{entry.domain} " + (f"forwards {left}." if left else "forwards nothing."))
        if algorithms is None:
            return
        entry = store.set_phone_digest(resolved, extension, algorithms)
        clinic = store.clinic(resolved)
    assert clinic is not None
    offered = ", ".join(entry.digest_algorithms or clinic.digest_algorithms)
    if entry.digest_algorithms:
        click.echo(f"{entry.extension}@{entry.domain} is now challenged with {offered}.")
    else:
        click.echo(f"{entry.extension}@{entry.domain} now follows the clinic: challenged with {offered}.")


def _dial_text(dial: DialPermission) -> str:
    """What a dial permission lets someone call, in words."""
    match dial:
        case DialPermission.INTERNAL:
            return "internal numbers only"
        case DialPermission.NATIONAL:
            return "national numbers"
        case DialPermission.INTERNATIONAL:
            return "national and open international numbers"
        case _:
            assert_never(dial)


def _forward_kind(text: str) -> ForwardKind:
    """The forward kind an operator typed, or an ``OperatorError`` that lists them."""
    kind = FORWARD_KINDS.get(text.strip().lower())
    if kind is None:
        raise OperatorError(f"forward {text!r}: choose always, busy or noanswer")
    return kind


def _functions_by_member(store: ConfigStore, domains: set[str]) -> dict[tuple[str, str], list[tuple[str, bool]]]:
    """(domain, extension) -> the functions they are members of, by name, and whether logged in to each."""
    found: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    for domain in sorted(domains):
        for group in store.groups(domain, GroupKind.FUNCTION):
            for member in group.members:
                found.setdefault((domain, member.extension), []).append((group.name, member.logged_in))
    return found


@user.command("remove")
@click.argument("extension")
@domain_option
@pass_target
def user_remove(target: Target, extension: str, domain: str | None) -> None:
    """Remove the member of staff at EXTENSION, with their registrations."""
    with _translated(target):
        validate_extension(extension)
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        store.remove_staff(resolved, extension)
    click.echo(f"Removed {extension}@{resolved}.")


@user.command("passwd")
@click.argument("extension")
@password_options
@domain_option
@pass_target
def user_passwd(
    target: Target, extension: str, password: str | None, password_stdin: bool, domain: str | None
) -> None:
    """Set a new password for EXTENSION."""
    with _translated(target):
        validate_extension(extension)
        password = validate_password(_password(password, password_stdin))
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        store.change_password(resolved, extension, password)
    click.echo(f"Changed the password of {extension}@{resolved}.")


@user.command("roles")
@click.argument("extension")
@click.option("--add", "add", multiple=True, metavar="ROLE", help="Role to give; repeatable.")
@click.option("--remove", "remove", multiple=True, metavar="ROLE", help="Role to take away; repeatable.")
@domain_option
@pass_target
def user_roles(
    target: Target, extension: str, add: tuple[str, ...], remove: tuple[str, ...], domain: str | None
) -> None:
    """Give or take away roles of EXTENSION and print the roles it then holds."""
    if not add and not remove:
        raise click.UsageError("say which roles to change with --add ROLE or --remove ROLE")
    engine = _open(target)
    with _translated(target):
        store = ConfigStore(engine)
        resolved = store.resolve_domain(domain)
        held: tuple[str, ...] = ()
        if add:
            held = store.add_roles(resolved, extension, add)
        if remove:
            held = store.remove_roles(resolved, extension, remove)
    click.echo(f"{extension}@{resolved} holds: {', '.join(held) or 'no roles'}.")


# -- groups and functions ------------------------------------------------------------------------

_KIND_HELP = {
    GroupKind.GROUP: "Manage ring groups: teams colleagues and callers reach on one number.",
    GroupKind.FUNCTION: "Manage functions: duties such as reception that staff log in to and out of.",
}

_STRATEGY_HELP = (
    "How members ring: ringall (everyone at once; the default), linear (in order), rrmemory (in turn, "
    "after whoever rang last), leastrecent, fewestcalls or random (one at a time)."
)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _decorate(*decorators: Decorator) -> Decorator:
    """Apply several click decorators as one, the first outermost, as if stacked in that order."""

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _settings_options(kind: GroupKind, *, changing: bool) -> Decorator:
    """The options that set how a group or function rings, for ``add`` or (all optional) ``set``."""
    noun = kind.value
    options: list[Decorator] = [
        click.option(
            "--number",
            metavar="NUM",
            required=kind is GroupKind.GROUP and not changing,
            help=f"The number that calls the {noun}: 2 to 10 digits, not used by anything else in the clinic.",
        ),
        click.option("--acute-number", metavar="NUM", help=f"A second number of the {noun}, for urgent calls."),
        click.option("--strategy", metavar="STRATEGY", help=_STRATEGY_HELP),
        click.option(
            "--ring-timeout", type=int, metavar="SEC", help="Seconds the call rings before the overflow (default 60)."
        ),
        click.option(
            "--member-timeout",
            type=int,
            metavar="SEC",
            help="Seconds each member rings when they ring one at a time (default 20).",
        ),
        click.option(
            "--overflow",
            metavar="DEST",
            help="Where an unanswered call goes: busy, or a number of the clinic. Default: the caller hears 480.",
        ),
        click.option(
            "--ring-busy/--skip-busy",
            default=None,
            help="Ring members who are already in a call, or skip them (the default).",
        ),
        click.option(
            "--max-wait", type=int, metavar="SEC", help="Seconds a caller may wait in the queue (default 300)."
        ),
        click.option(
            "--announce-position",
            "announce_every",
            type=int,
            metavar="SEC",
            help="Tell a waiting caller their place in the queue every SEC seconds (10 or more; 0, the default: never).",
        ),
    ]
    if changing:
        options.append(click.option("--no-acute-number", is_flag=True, help="Take the acute number away."))
        options.append(click.option("--no-overflow", is_flag=True, help="Callers hear 480 when nobody answers."))
        if kind is GroupKind.FUNCTION:
            options.append(click.option("--no-number", is_flag=True, help="Take the number away."))
    return _decorate(*options)


def _settings(base: GroupSettings, options: dict[str, Any]) -> GroupSettings:
    """``base`` with the settings the operator gave on the command line."""
    changes: dict[str, Any] = {}
    for field in ("number", "acute_number", "overflow"):
        given = options.get(field)
        if options.get(f"no_{field}"):
            if given is not None:
                flag = field.replace("_", "-")
                raise click.UsageError(f"give either --{flag} or --no-{flag}, not both")
            changes[field] = None
        elif given is not None:
            changes[field] = given
    if options.get("strategy") is not None:
        changes["strategy"] = parse_strategy(options["strategy"])
    for field in ("ring_timeout", "member_timeout", "ring_busy", "max_wait", "announce_every"):
        if options.get(field) is not None:
            changes[field] = options[field]
    return replace(base, **changes)


def _given(option: str, value: Any) -> bool:
    """Whether the operator gave ``option``: a ``--no-...`` flag when set, any other option when not None."""
    return bool(value) if option.startswith("no_") else value is not None


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _seconds_text(value: float) -> str:
    return f"{int(value)}s"


def _overflow_text(overflow: str | None) -> str:
    return "480 (nobody answers)" if overflow is None else overflow


def _member_json(position: int, member: MemberEntry, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        "position": position,
        "extension": member.extension,
        "name": names.get(member.extension),
        "logged_in": member.logged_in,
        "via_role": member.via_role,
    }


def _group_json(group: GroupEntry, names: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "domain": group.domain,
        "name": group.name,
        "kind": group.kind.value,
        "number": group.number,
        "acute_number": group.acute_number,
        "strategy": group.strategy.value,
        "member_timeout": int(group.member_timeout),
        "ring_timeout": int(group.ring_timeout),
        "overflow": group.overflow,
        "ring_busy": group.ring_busy,
        "max_wait": int(group.max_wait),
        "announce_position": int(group.announce_every),
        "members": [_member_json(i, member, names) for i, member in enumerate(group.members, start=1)],
    }
    if group.kind is GroupKind.FUNCTION:
        data["roles"] = list(group.roles)
    return data


def _staff_names(store: ConfigStore, domain: str) -> dict[str, str]:
    return {entry.extension: entry.name for entry in store.staff(domain)}


def _group_commands(kind: GroupKind) -> click.Group:
    """``sentral group ...`` or ``sentral function ...``: the same commands for either kind."""
    noun = kind.value
    is_function = kind is GroupKind.FUNCTION
    add_roles: Decorator = _decorate()
    set_roles: Decorator = _decorate()
    if is_function:
        add_roles = click.option(
            "--role", "roles", multiple=True, metavar="ROLE", help="Everyone holding ROLE is a member; repeatable."
        )
        set_roles = click.option(
            "--role",
            "roles",
            multiple=True,
            metavar="ROLE",
            help="Roles that give the function; repeatable; replaces the roles linked so far.",
        )

    @click.group(name=noun, help=_KIND_HELP[kind])
    def commands() -> None:
        pass

    @commands.command("add")
    @click.argument("name")
    @_settings_options(kind, changing=False)
    @click.option("--member", "members", multiple=True, metavar="EXT", help="A member, in ring order; repeatable.")
    @add_roles
    @domain_option
    @pass_target
    def add(
        target: Target,
        /,
        name: str,
        members: tuple[str, ...],
        domain: str | None,
        roles: tuple[str, ...] = (),
        **options: Any,
    ) -> None:
        with _translated(target):
            settings = _settings(GroupSettings(), options)
            store = ConfigStore(_open(target))
            group = store.add_group(store.resolve_domain(domain), name, kind, settings, members, roles)
        number = f" on number {group.number}" if group.number else ""
        count = len(group.members)
        people = f"{count} member" + ("" if count == 1 else "s")
        linked = f"; roles: {', '.join(group.roles)}" if group.roles else ""
        click.echo(f"Added {noun} {group.name}@{group.domain}{number} with {people}{linked}.")

    add.help = f"Add the {noun} NAME (letters, digits and hyphens, such as reception)."

    @commands.command("set")
    @click.argument("name")
    @_settings_options(kind, changing=True)
    @set_roles
    @domain_option
    @pass_target
    def set_(
        target: Target, /, name: str, domain: str | None, roles: tuple[str, ...] = (), **options: Any
    ) -> None:
        if not roles and not any(_given(option, value) for option, value in options.items()):
            raise click.UsageError(f"say what to change, such as --ring-timeout 30; see `sentral {noun} set --help`")
        with _translated(target):
            store = ConfigStore(_open(target))
            resolved = store.resolve_domain(domain)
            group = store.group(resolved, name, kind)
            settings = _settings(GroupSettings.of(group), options)
            if settings != GroupSettings.of(group):
                group = store.change_group(resolved, group.name, kind, settings)
            if roles:
                group = store.set_function_roles(resolved, group.name, roles)
        click.echo(f"Changed {noun} {group.name}@{group.domain}; see `sentral {noun} show {group.name}`.")

    set_.help = f"Change how the {noun} NAME rings; options left out keep their value."

    @commands.command("list")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
    @domain_option
    @pass_target
    def list_(target: Target, as_json: bool, domain: str | None) -> None:
        engine = _open(target)
        with _translated(target):
            store = ConfigStore(engine)
            resolved = store.resolve_domain(domain)
            groups = store.groups(resolved, kind)
            names = _staff_names(store, resolved)
        if as_json:
            _emit_json([_group_json(group, names) for group in groups])
            return
        headers = ["NAME", "NUMBER", "ACUTE", "STRATEGY", "LOGGED IN", "OVERFLOW"]
        if is_function:
            headers.append("ROLES")
        rows = []
        for group in groups:
            logged_in = sum(member.logged_in for member in group.members)
            row = [
                group.name,
                group.number or "-",
                group.acute_number or "-",
                group.strategy.value,
                f"{logged_in}/{len(group.members)}",
                _overflow_text(group.overflow),
            ]
            if is_function:
                row.append(",".join(group.roles) or "-")
            rows.append(row)
        _emit_table(headers, rows, f"No {noun}s yet; add one with `sentral {noun} add NAME`.")

    list_.help = f"List the {noun}s of the clinic with their numbers and how many members are logged in."

    @commands.command("show")
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
    @domain_option
    @pass_target
    def show(target: Target, name: str, as_json: bool, domain: str | None) -> None:
        engine = _open(target)
        with _translated(target):
            store = ConfigStore(engine)
            resolved = store.resolve_domain(domain)
            group = store.group(resolved, name, kind)
            names = _staff_names(store, resolved)
        if as_json:
            click.echo(json.dumps(_group_json(group, names), indent=2, ensure_ascii=False))
            return
        settings = [
            ("number", group.number or "-"),
            ("acute number", group.acute_number or "-"),
            ("strategy", group.strategy.value),
            ("ring timeout", _seconds_text(group.ring_timeout)),
            ("member timeout", _seconds_text(group.member_timeout)),
            ("overflow", _overflow_text(group.overflow)),
            ("ring busy members", _yes(group.ring_busy)),
            ("longest wait", _seconds_text(group.max_wait)),
            ("announce position", _seconds_text(group.announce_every) if group.announce_every else "never"),
        ]
        if is_function:
            settings.append(("roles", ", ".join(group.roles) or "-"))
        click.echo(f"{noun.capitalize()} {group.name}@{group.domain}")
        for label, value in settings:
            click.echo(f"  {label + ':':<19}{value}")
        click.echo("")
        _emit_table(
            ("POSITION", "EXTENSION", "NAME", "LOGGED IN", "VIA ROLE"),
            [
                (
                    str(i),
                    member.extension,
                    names.get(member.extension, ""),
                    _yes(member.logged_in),
                    member.via_role or "-",
                )
                for i, member in enumerate(group.members, start=1)
            ],
            f"No members yet; add one with `sentral {noun} member add {group.name} EXT`.",
        )

    show.help = f"Show the settings and members of the {noun} NAME, in ring order."

    @commands.command("remove")
    @click.argument("name")
    @domain_option
    @pass_target
    def remove(target: Target, name: str, domain: str | None) -> None:
        with _translated(target):
            store = ConfigStore(_open(target))
            resolved = store.resolve_domain(domain)
            group = store.group(resolved, name, kind)
            store.remove_group(resolved, group.name, kind)
        click.echo(f"Removed {noun} {group.name}@{resolved}.")

    remove.help = f"Remove the {noun} NAME and its memberships."

    @commands.group("member")
    def member() -> None:
        pass

    member.help = f"Add members to a {noun} or take them out."

    @member.command("add")
    @click.argument("name")
    @click.argument("extension")
    @domain_option
    @pass_target
    def member_add(target: Target, name: str, extension: str, domain: str | None) -> None:
        with _translated(target):
            validate_extension(extension)
            store = ConfigStore(_open(target))
            group = store.add_member(store.resolve_domain(domain), name, extension, kind)
        position = next(i for i, m in enumerate(group.members, start=1) if m.extension == extension)
        state = (
            "logged in"
            if group.members[position - 1].logged_in
            else f"logged out until they log in with `sentral login {extension} {group.name}`"
        )
        click.echo(f"{extension} is member {position} of {noun} {group.name}@{group.domain}, {state}.")

    member_add.help = f"Add EXTENSION at the end of the ring order of the {noun} NAME."

    @member.command("remove")
    @click.argument("name")
    @click.argument("extension")
    @domain_option
    @pass_target
    def member_remove(target: Target, name: str, extension: str, domain: str | None) -> None:
        with _translated(target):
            validate_extension(extension)
            store = ConfigStore(_open(target))
            group = store.remove_member(store.resolve_domain(domain), name, extension, kind)
        click.echo(f"Removed {extension} from {noun} {group.name}@{group.domain}.")

    member_remove.help = f"Take EXTENSION out of the {noun} NAME; the others keep their order."

    if is_function:

        @commands.group("role")
        def role_links() -> None:
            """Link roles to a function: everyone holding a linked role is a member of it."""

        @role_links.command("add")
        @click.argument("name")
        @click.argument("role")
        @domain_option
        @pass_target
        def role_add(target: Target, name: str, role: str, domain: str | None) -> None:
            """Make everyone holding ROLE a member of the function NAME (logged out until they log in)."""
            with _translated(target):
                store = ConfigStore(_open(target))
                group = store.link_role(store.resolve_domain(domain), name, role)
            role_name = role.strip().lower()
            count = sum(1 for m in group.members if m.via_role == role_name)
            click.echo(f"Role {role_name} now gives function {group.name}@{group.domain} ({count} through it).")

        @role_links.command("remove")
        @click.argument("name")
        @click.argument("role")
        @domain_option
        @pass_target
        def role_remove(target: Target, name: str, role: str, domain: str | None) -> None:
            """Stop ROLE giving the function NAME; members added by hand stay."""
            with _translated(target):
                store = ConfigStore(_open(target))
                group = store.unlink_role(store.resolve_domain(domain), name, role)
            click.echo(f"Role {role.strip().lower()} no longer gives function {group.name}@{group.domain}.")

    return commands


cli.add_command(_group_commands(GroupKind.GROUP))
cli.add_command(_group_commands(GroupKind.FUNCTION))


# -- roles ---------------------------------------------------------------------------------------


@cli.group()
def role() -> None:
    """Manage roles: their numbers, and who holds them (give roles with `sentral user roles`)."""


@role.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@domain_option
@pass_target
def role_list(target: Target, as_json: bool, domain: str | None) -> None:
    """List the roles of the clinic with their numbers and how many hold them."""
    engine = _open(target)
    with _translated(target):
        store = ConfigStore(engine)
        roles = store.roles(store.resolve_domain(domain))
    if as_json:
        _emit_json(
            [
                {
                    "domain": r.domain,
                    "name": r.name,
                    "number": r.number,
                    "holders": r.holders,
                    "functions": list(r.functions),
                }
                for r in roles
            ]
        )
        return
    _emit_table(
        ("ROLE", "NUMBER", "HOLDERS", "FUNCTIONS"),
        [(r.name, r.number or "-", str(r.holders), ",".join(r.functions) or "-") for r in roles],
        "No roles yet; give someone a role with `sentral user roles EXT --add ROLE`.",
    )


@role.command("set")
@click.argument("role_name", metavar="ROLE")
@click.option("--number", metavar="NUM", help="A number that rings everyone holding the role whose phone is on.")
@click.option("--no-number", is_flag=True, help="Take the number away.")
@domain_option
@pass_target
def role_set(target: Target, role_name: str, number: str | None, no_number: bool, domain: str | None) -> None:
    """Give ROLE a number of its own, or take it away."""
    if (number is None) == (not no_number):
        raise click.UsageError("give either --number NUM or --no-number")
    with _translated(target):
        store = ConfigStore(_open(target))
        entry = store.set_role_number(store.resolve_domain(domain), role_name, number)
    if entry.number is None:
        click.echo(f"Role {entry.name}@{entry.domain} has no number now.")
    else:
        click.echo(f"Role {entry.name}@{entry.domain} now has number {entry.number}.")


@role.command("members")
@click.argument("role_name", metavar="ROLE")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@domain_option
@pass_target
def role_members(target: Target, role_name: str, as_json: bool, domain: str | None) -> None:
    """List everyone holding ROLE: phone on or off, registered or not, and what their line is doing."""
    engine = _open(target)
    with _translated(target):
        store = ConfigStore(engine)
        resolved = store.resolve_domain(domain)
        holders = {entry.extension for entry in store.holders(resolved, role_name)}
        people = [person for person in _presence(engine, resolved) if person.extension in holders]
    if as_json:
        _emit_json([person.json() for person in people])
        return
    _emit_table(
        ("EXTENSION", "NAME", "PHONE", "REGISTERED", "LINE"),
        [(p.extension, p.name, p.phone, _yes(p.registered), p.line_text) for p in people],
        f"Nobody holds the role {role_name.strip().lower()}.",
    )


# -- park lots -----------------------------------------------------------------------------------


@cli.group()
def park() -> None:
    """Manage park lots: a number that parks a call on the first free slot, and slots anyone dials to
    take the call parked there."""


def _park_json(lot: ParkLotEntry) -> dict[str, Any]:
    return {
        "domain": lot.domain,
        "name": lot.name,
        "number": lot.number,
        "first_slot": lot.first_slot,
        "last_slot": lot.last_slot,
        "slots": list(lot.slots),
        "timeout": int(lot.timeout),
    }


def _park_summary(lot: ParkLotEntry) -> str:
    count = len(lot.slots)
    return f"slots {lot.first_slot}-{lot.last_slot} ({count} slot{'' if count == 1 else 's'})"


def _parked_calls(engine: Engine, lot: ParkLotEntry) -> Mapping[str, str]:
    """Slot -> the call parked there, as the running servers publish their live calls."""
    parked: dict[str, str] = {}
    for call in LiveCallStore(engine).list(LIVE_MAX_AGE, now=time.time()):
        slot = call.parked_slot
        if slot is not None and call.domain == lot.domain and lot.has_slot(slot):
            parked[slot] = call.call_id
    return parked


@park.command("add")
@click.argument("name")
@click.option(
    "--number",
    required=True,
    metavar="NUM",
    help="The park number: a call transferred to it waits on the first free slot.",
)
@click.option(
    "--slots",
    required=True,
    metavar="FIRST-LAST",
    help="The slots, such as 701-720 (at most 100); dialling one takes the call parked there.",
)
@click.option(
    "--timeout",
    type=int,
    default=DEFAULT_PARK_TIMEOUT,
    show_default=True,
    metavar="SEC",
    help="Seconds a call stays parked before it rings the parker again.",
)
@domain_option
@pass_target
def park_add(target: Target, name: str, number: str, slots: str, timeout: int, domain: str | None) -> None:
    """Add the park lot NAME (letters, digits and hyphens, such as main)."""
    with _translated(target):
        # Check what the operator typed before looking at the database, so the first complaint is about it.
        first, last = parse_slots(slots)
        settings = ParkSettings(number, first, last, timeout).checked(normalize_park_name(name))
        store = ConfigStore(_open(target))
        lot = store.add_park_lot(store.resolve_domain(domain), name, settings)
    click.echo(
        f"Added park lot {lot.name}@{lot.domain} on number {lot.number} with {_park_summary(lot)}; "
        f"a parked call rings its parker again after {_seconds_text(lot.timeout)}."
    )


@park.command("set")
@click.argument("name")
@click.option("--number", metavar="NUM", help="A new park number.")
@click.option("--slots", metavar="FIRST-LAST", help="A new range of slots, such as 701-720 (at most 100).")
@click.option(
    "--timeout", type=int, metavar="SEC", help="Seconds a call stays parked before it rings the parker again."
)
@domain_option
@pass_target
def park_set(
    target: Target, name: str, number: str | None, slots: str | None, timeout: int | None, domain: str | None
) -> None:
    """Change the park number, slots or timeout of the park lot NAME; options left out keep their value.

    Calls parked at the time keep their slot and the time they ring back.
    """
    if number is None and slots is None and timeout is None:
        raise click.UsageError("say what to change, such as --timeout 60; see `sentral park set --help`")
    with _translated(target):
        changes: dict[str, Any] = {}
        if slots is not None:
            changes["first_slot"], changes["last_slot"] = parse_slots(slots)
        if number is not None:
            changes["number"] = number
        if timeout is not None:
            changes["timeout"] = timeout
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        lot = store.park_lot(resolved, name)
        settings = replace(ParkSettings.of(lot), **changes)
        if settings != ParkSettings.of(lot):
            lot = store.change_park_lot(resolved, lot.name, settings)
    click.echo(
        f"Park lot {lot.name}@{lot.domain} has number {lot.number} and {_park_summary(lot)}; "
        f"a parked call rings its parker again after {_seconds_text(lot.timeout)}."
    )


@park.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@domain_option
@pass_target
def park_list(target: Target, as_json: bool, domain: str | None) -> None:
    """List the park lots of the clinic with their numbers, slots and timeouts."""
    engine = _open(target)
    with _translated(target):
        store = ConfigStore(engine)
        lots = store.park_lots(store.resolve_domain(domain))
    if as_json:
        _emit_json([_park_json(lot) for lot in lots])
        return
    _emit_table(
        ("NAME", "NUMBER", "SLOTS", "TIMEOUT"),
        [
            (lot.name, lot.number, f"{lot.first_slot}-{lot.last_slot}", _seconds_text(lot.timeout))
            for lot in lots
        ],
        "No park lots yet; add one with `sentral park add NAME --number 700 --slots 701-720`.",
    )


@park.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@domain_option
@pass_target
def park_show(target: Target, name: str, as_json: bool, domain: str | None) -> None:
    """Show the park number, slots and timeout of the park lot NAME."""
    engine = _open(target)
    with _translated(target):
        store = ConfigStore(engine)
        lot = store.park_lot(store.resolve_domain(domain), name)
        parked = _parked_calls(engine, lot)
    if as_json:
        data = _park_json(lot) | {"parked": dict(parked)}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(f"Park lot {lot.name}@{lot.domain}")
    for label, value in (
        ("park number", lot.number),
        ("slots", _park_summary(lot).removeprefix("slots ")),
        ("recall after", _seconds_text(lot.timeout)),
    ):
        click.echo(f"  {label + ':':<14}{value}")
    click.echo("")
    _emit_table(("SLOT", "CALL"), [(slot, parked.get(slot, "-")) for slot in lot.slots], "")


@park.command("remove")
@click.argument("name")
@domain_option
@pass_target
def park_remove(target: Target, name: str, domain: str | None) -> None:
    """Remove the park lot NAME; its park number and slots are free again."""
    with _translated(target):
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        lot = store.park_lot(resolved, name)
        store.remove_park_lot(resolved, lot.name)
    click.echo(f"Removed park lot {lot.name}@{resolved}.")


# -- outside lines: trunks, public numbers, closed days --------------------------------------------

clinic_option = click.option(
    "--clinic", "--domain", "domain", help="The clinic; may be left out when there is only one.", metavar="DOMAIN"
)
listing_clinic_option = click.option(
    "--clinic", "--domain", "domain", help="Only this clinic; default: every clinic.", metavar="DOMAIN"
)


def _phone_number(text: str, region: str, what: str) -> str:
    """``text`` as the operator wrote it (22334455, +4722334455, 004722334455) in E.164."""
    found = normalise(text, region)
    if found is None:
        raise OperatorError(
            f"{what} {text!r} is not a phone number; write it as a national number of {region} or with its "
            "country code, such as +4722334455"
        )
    return found


def _region_of(store: ConfigStore, domain: str) -> str:
    """The country the clinic ``domain`` reads national numbers in."""
    clinic_entry = store.clinic(domain)
    assert clinic_entry is not None  # resolved by the caller
    return clinic_entry.country


@cli.group()
def trunk() -> None:
    """Manage trunks to carriers: where outside calls go out and come in."""


def _trunk_options(*, changing: bool) -> Decorator:
    """The options of `trunk add` and `trunk set` (for set, all optional and without defaults)."""
    return _decorate(
        click.option(
            "--host",
            required=not changing,
            metavar="HOST[:PORT]",
            help="The carrier's SIP server: a host name or address, with its port unless 5060 (5061 for tls).",
        ),
        click.option(
            "--transport", default=None if changing else "udp", metavar="udp|tcp|tls", help="How to reach it."
        ),
        click.option("--username", metavar="USER", help="The username the carrier gave the clinic."),
        click.option("--password", metavar="PASSWORD", help="Its password; stored, never printed."),
        click.option(
            "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
        ),
        click.option(
            "--register/--no-register",
            default=None if changing else False,
            help="Register with the carrier (needs --username and --password); else trusted by address.",
        ),
        click.option(
            "--priority",
            type=int,
            default=None if changing else DEFAULT_TRUNK_PRIORITY,
            show_default=not changing,
            help="Lower goes first; a call fails over to the next trunk.",
        ),
        click.option(
            "--format",
            "number_format",
            metavar="e164|digits|national|00",
            help="How the carrier wants numbers written (default e164: +4722334455).",
        ),
        click.option(
            "--address",
            "addresses",
            multiple=True,
            metavar="IP/CIDR",
            help="Another address inbound calls may come from; repeatable"
            + ("; replaces the list." if changing else "."),
        ),
        click.option("--realm", metavar="REALM", help="The carrier's digest realm, if it must be fixed."),
        click.option("--enable/--disable", "enabled", default=None if changing else True, help="Use the trunk or not."),
        clinic_option,
    )


def _trunk_password(password: str | None, from_stdin: bool) -> str | None:
    """The password given with --password or piped in with --password-stdin, or None."""
    if password is not None and from_stdin:
        raise click.UsageError("give either --password or --password-stdin, not both")
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise OperatorError("--password-stdin read no password; pipe the password in as the first line")
        return line
    return password


def _trunk_state_text(state: TrunkState | None) -> str:
    """registered, down, failed (403 Forbidden) ...; unknown when no running server published one."""
    if state is None:
        return "unknown"
    if state.last_status is not None and state.state in ("failed", "down"):
        return f"{state.state} ({' '.join(str(part) for part in (state.last_status, state.detail) if part)})"
    return state.state


def _trunk_json(entry: TrunkEntry, state: TrunkState | None) -> dict[str, Any]:
    """A trunk for listings; the password only as whether one is set."""
    return {
        "domain": entry.domain,
        "name": entry.name,
        "host": entry.host,
        "port": entry.port,
        "transport": entry.transport,
        "priority": entry.priority,
        "register": entry.register,
        "username": entry.username,
        "password_set": entry.password is not None,
        "realm": entry.realm,
        "format": entry.number_format.value,
        "addresses": list(entry.addresses),
        "enabled": entry.enabled,
        "state": state.state if state is not None else "unknown",
        "last_status": state.last_status if state is not None else None,
        "detail": state.detail if state is not None else None,
        "calls": state.calls if state is not None else None,
    }


def _host_text(entry: TrunkEntry) -> str:
    host = f"[{entry.host}]" if ":" in entry.host else entry.host
    return f"{host}:{entry.port}"


def _trunk_states(engine: Engine) -> dict[tuple[str, str], TrunkState]:
    """What the running servers published about their trunks lately, by (domain, name)."""
    return {
        (state.domain, state.name): state
        for state in TrunkStateStore(engine).list(max_age=TRUNK_MAX_AGE, now=time.time())
    }


def _trunk_summary(entry: TrunkEntry) -> str:
    how = f"registers as {entry.username}" if entry.register else "trusted by address"
    off = "" if entry.enabled else "; disabled"
    return f"{_host_text(entry)} over {entry.transport}, priority {entry.priority}, {how}{off}"


@trunk.command("add")
@click.argument("name")
@_trunk_options(changing=False)
@pass_target
def trunk_add(
    target: Target,
    name: str,
    host: str,
    transport: str,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    register: bool,
    priority: int,
    number_format: str | None,
    addresses: tuple[str, ...],
    realm: str | None,
    enabled: bool,
    domain: str | None,
) -> None:
    """Add the trunk NAME (letters, digits and hyphens, such as telenor) to a carrier."""
    with _translated(target):
        trunk_name = normalize_trunk_name(name)
        host_name, port = parse_host_port(host)
        settings = TrunkSettings(
            host=host_name,
            port=port,
            transport=parse_transport(transport),
            priority=priority,
            register=register,
            username=username,
            password=_trunk_password(password, password_stdin),
            realm=realm,
            number_format=parse_number_format(number_format) if number_format is not None else NumberFormat.E164,
            addresses=addresses,
            enabled=enabled,
        ).checked(trunk_name)
        store = ConfigStore(_open(target))
        entry = store.add_trunk(store.resolve_domain(domain), trunk_name, settings)
    click.echo(f"Added trunk {entry.name}@{entry.domain}: {_trunk_summary(entry)}.")


@trunk.command("set")
@click.argument("name")
@_trunk_options(changing=True)
@click.option("--no-address", "no_address", is_flag=True, help="Forget the extra inbound addresses.")
@pass_target
def trunk_set(
    target: Target,
    name: str,
    host: str | None,
    transport: str | None,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    register: bool | None,
    priority: int | None,
    number_format: str | None,
    addresses: tuple[str, ...],
    realm: str | None,
    enabled: bool | None,
    domain: str | None,
    no_address: bool,
) -> None:
    """Change the trunk NAME; options left out keep their value."""
    secret = _trunk_password(password, password_stdin)
    given = (host, transport, username, secret, register, priority, number_format, realm, enabled)
    if all(value is None for value in given) and not addresses and not no_address:
        raise click.UsageError("say what to change, such as --priority 20; see `sentral trunk set --help`")
    if addresses and no_address:
        raise OperatorError("give either --address or --no-address, not both")
    with _translated(target):
        changes: dict[str, Any] = {}
        if host is not None:
            changes["host"], port = parse_host_port(host)
            changes["port"] = port
        if transport is not None:
            changes["transport"] = parse_transport(transport)
            if host is None or changes["port"] is None:
                changes["port"] = None  # the new transport's default, unless a port came with --host
        given_values: dict[str, Any] = {
            "username": username,
            "password": secret,
            "register": register,
            "priority": priority,
            "realm": realm,
            "enabled": enabled,
        }
        changes.update({key: value for key, value in given_values.items() if value is not None})
        if number_format is not None:
            changes["number_format"] = parse_number_format(number_format)
        if addresses or no_address:
            changes["addresses"] = addresses
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        entry = store.trunk(resolved, name)
        if transport is not None and host is None and entry.port != default_port(entry.transport):
            changes["port"] = entry.port  # a port the operator chose stays
        entry = store.change_trunk(resolved, entry.name, replace(TrunkSettings.of(entry), **changes))
    click.echo(f"Trunk {entry.name}@{entry.domain}: {_trunk_summary(entry)}.")


@trunk.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@listing_clinic_option
@pass_target
def trunk_list(target: Target, as_json: bool, domain: str | None) -> None:
    """List trunks with their state as the running server last published it, and calls in progress."""
    engine = _open(target)
    with _translated(target):
        store = ConfigStore(engine)
        trunks = store.trunks(store.resolve_domain(domain) if domain is not None else None)
        states = _trunk_states(engine)
    if as_json:
        _emit_json([_trunk_json(entry, states.get((entry.domain, entry.name))) for entry in trunks])
        return
    rows = []
    for entry in trunks:
        state = states.get((entry.domain, entry.name))
        rows.append(
            (
                entry.name,
                entry.domain,
                _host_text(entry),
                entry.transport,
                str(entry.priority),
                _yes(entry.register),
                _yes(entry.enabled),
                _trunk_state_text(state),
                str(state.calls) if state is not None else "-",
            )
        )
    _emit_table(
        ("NAME", "DOMAIN", "HOST", "TRANSPORT", "PRIORITY", "REGISTER", "ENABLED", "STATE", "CALLS"),
        rows,
        "No trunks yet; add one with `sentral trunk add NAME --host HOST`.",
    )


@trunk.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@clinic_option
@pass_target
def trunk_show(target: Target, name: str, as_json: bool, domain: str | None) -> None:
    """Show the settings and state of the trunk NAME (never its password)."""
    engine = _open(target)
    with _translated(target):
        store = ConfigStore(engine)
        entry = store.trunk(store.resolve_domain(domain), name)
        state = _trunk_states(engine).get((entry.domain, entry.name))
    if as_json:
        click.echo(json.dumps(_trunk_json(entry, state), indent=2, ensure_ascii=False))
        return
    click.echo(f"Trunk {entry.name}@{entry.domain}")
    for label, value in (
        ("host", _host_text(entry)),
        ("transport", entry.transport),
        ("priority", str(entry.priority)),
        ("register", _yes(entry.register)),
        ("username", entry.username or "-"),
        ("password", "(set)" if entry.password is not None else "-"),
        ("realm", entry.realm or "-"),
        ("format", entry.number_format.value),
        ("addresses", ", ".join(entry.addresses) or "-"),
        ("enabled", _yes(entry.enabled)),
        ("state", _trunk_state_text(state)),
        ("calls", str(state.calls) if state is not None else "-"),
    ):
        click.echo(f"  {label + ':':<14}{value}")


@trunk.command("remove")
@click.argument("name")
@clinic_option
@pass_target
def trunk_remove(target: Target, name: str, domain: str | None) -> None:
    """Remove the trunk NAME; calls in progress on it go on."""
    with _translated(target):
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        removed = store.remove_trunk(resolved, name)
    click.echo(f"Removed trunk {removed}@{resolved}.")


@cli.group()
def number() -> None:
    """Manage public numbers: where calls to the clinic's numbers go, and when it is open."""


def _hours_text(hours: str | None) -> str:
    return hours if hours is not None else "always open"


def _checked_hours(text: str | None) -> str | None:
    """The opening hours as typed, once they read; None (always open) for an empty spec."""
    if text is None or not text.strip():
        return None
    try:
        OpeningHours.parse(text)
    except ValueError as exc:
        raise OperatorError(f"--hours {text!r}: {exc}") from exc
    return " ".join(text.split())


def _closed_to(store: ConfigStore, domain: str, text: str) -> str:
    """A number of the clinic as it is, or an outside number in E.164."""
    wanted = text.strip()
    if store.number_owner(domain, wanted) is not None:
        return wanted
    found = normalise(wanted, _region_of(store, domain))
    if found is None:
        raise OperatorError(
            f"--closed-to {text!r} is neither a number of {domain} nor a phone number, such as +4722334455"
        )
    return found


def _public_e164(store: ConfigStore, text: str, domain: str | None) -> str:
    """A public number the operator wrote, in E.164: read in the clinic's country when it is national."""
    spelled = text.strip()
    if domain is None and spelled.startswith(("+", "00")):
        region = "NO"  # an international form reads the same in any country
    else:
        region = _region_of(store, store.resolve_domain(domain))
    return _phone_number(spelled, region, "number")


def _number_json(entry: PublicNumberEntry) -> dict[str, Any]:
    return {
        "domain": entry.domain,
        "number": entry.number,
        "to": entry.destination,
        "hours": entry.hours,
        "closed_to": entry.closed_to,
        "ask_id": entry.ask_id,
    }


def _number_summary(entry: PublicNumberEntry) -> str:
    closed = f", else to {entry.closed_to}" if entry.closed_to is not None else ", else the closed message"
    closed = closed if entry.hours is not None else ""
    asking = "; unknown callers are asked for their national ID number" if entry.ask_id else ""
    return f"goes to {entry.destination}, {_hours_text(entry.hours)}{closed}{asking}"


@number.command("add")
@click.argument("number_text", metavar="NUMBER")
@click.option(
    "--to",
    "destination",
    required=True,
    metavar="DESTINATION",
    help="An extension, group, function, acute, role or park number of the clinic, or announcement:NAME.",
)
@click.option("--hours", metavar="SPEC", help="Opening hours, such as 'mon-fri 08:00-16:00; sat 09:00-12:00'.")
@click.option(
    "--closed-to",
    metavar="NUMBER",
    help="Where calls go outside opening hours: a number of the clinic or an outside number. "
    "Left out, callers hear that the clinic is closed.",
)
@clinic_option
@pass_target
def number_add(
    target: Target, number_text: str, destination: str, hours: str | None, closed_to: str | None, domain: str | None
) -> None:
    """Give the clinic the public NUMBER (written nationally, with + or with 00)."""
    with _translated(target):
        spec = _checked_hours(hours)
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        e164 = _phone_number(number_text, _region_of(store, resolved), "number")
        closed = _closed_to(store, resolved, closed_to) if closed_to is not None else None
        entry = store.add_public_number(resolved, e164, PublicNumberSettings(destination, spec, closed))
    click.echo(f"Added public number {entry.number} to {entry.domain}: {_number_summary(entry)}.")


@number.command("set")
@click.argument("number_text", metavar="NUMBER")
@click.option("--to", "destination", metavar="DESTINATION", help="Where its calls go.")
@click.option("--hours", metavar="SPEC", help="New opening hours.")
@click.option("--no-hours", is_flag=True, help="Always open.")
@click.option("--closed-to", metavar="NUMBER", help="Where calls go outside opening hours.")
@click.option("--no-closed-to", is_flag=True, help="Outside opening hours, callers hear that the clinic is closed.")
@click.option(
    "--ask-id/--no-ask-id",
    default=None,
    help="Ask a caller whose number matched nobody to key their national ID number (or stop asking).",
)
@clinic_option
@pass_target
def number_set(
    target: Target,
    number_text: str,
    destination: str | None,
    hours: str | None,
    no_hours: bool,
    closed_to: str | None,
    no_closed_to: bool,
    ask_id: bool | None,
    domain: str | None,
) -> None:
    """Change where the public NUMBER leads and when; options left out keep their value."""
    nothing = destination is None and hours is None and closed_to is None and ask_id is None
    if nothing and not no_hours and not no_closed_to:
        raise click.UsageError("say what to change, such as --to 200; see `sentral number set --help`")
    if (hours is not None and no_hours) or (closed_to is not None and no_closed_to):
        raise OperatorError("give either a value or its --no- option, not both")
    with _translated(target):
        spec = _checked_hours(hours)
        store = ConfigStore(_open(target))
        entry = store.public_number(_public_e164(store, number_text, domain))
        changes: dict[str, Any] = {}
        if destination is not None:
            changes["destination"] = destination
        if hours is not None or no_hours:
            changes["hours"] = spec
        if closed_to is not None:
            changes["closed_to"] = _closed_to(store, entry.domain, closed_to)
        if no_closed_to:
            changes["closed_to"] = None
        if ask_id is not None:
            changes["ask_id"] = ask_id
        entry = store.change_public_number(entry.number, replace(PublicNumberSettings.of(entry), **changes))
    click.echo(f"Public number {entry.number} of {entry.domain} {_number_summary(entry)}.")


@number.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@listing_clinic_option
@pass_target
def number_list(target: Target, as_json: bool, domain: str | None) -> None:
    """List public numbers: where each leads, its opening hours, and where it leads when closed."""
    with _translated(target):
        store = ConfigStore(_open(target))
        entries = store.public_numbers(store.resolve_domain(domain) if domain is not None else None)
    if as_json:
        _emit_json([_number_json(entry) for entry in entries])
        return
    _emit_table(
        ("NUMBER", "DOMAIN", "TO", "HOURS", "CLOSED-TO"),
        [
            (e.number, e.domain, e.destination, _hours_text(e.hours), e.closed_to or "-")
            for e in entries
        ],
        "No public numbers yet; add one with `sentral number add NUMBER --to DESTINATION`.",
    )


@number.command("show")
@click.argument("number_text", metavar="NUMBER")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@clinic_option
@pass_target
def number_show(target: Target, number_text: str, as_json: bool, domain: str | None) -> None:
    """Show where the public NUMBER leads and when."""
    with _translated(target):
        store = ConfigStore(_open(target))
        entry = store.public_number(_public_e164(store, number_text, domain))
    if as_json:
        click.echo(json.dumps(_number_json(entry), indent=2, ensure_ascii=False))
        return
    click.echo(f"Public number {entry.number}@{entry.domain}")
    closed = entry.closed_to or "the closed message"
    asking = "yes" if entry.ask_id else "no"
    for label, value in (
        ("to", entry.destination),
        ("hours", _hours_text(entry.hours)),
        ("closed to", closed),
        ("ask for ID", asking),
    ):
        click.echo(f"  {label + ':':<14}{value}")


@number.command("remove")
@click.argument("number_text", metavar="NUMBER")
@clinic_option
@pass_target
def number_remove(target: Target, number_text: str, domain: str | None) -> None:
    """Remove the public NUMBER; its calls are refused from then on."""
    with _translated(target):
        store = ConfigStore(_open(target))
        entry = store.remove_public_number(_public_e164(store, number_text, domain))
    click.echo(f"Removed public number {entry.number} from {entry.domain}.")


@cli.group()
def holiday() -> None:
    """Manage a clinic's extra closed days; its country's public holidays are closed anyway."""


@holiday.command("add")
@click.argument("day_text", metavar="DATE")
@click.option("--name", default="Closed", show_default=True, metavar="TEXT", help="What the day is.")
@clinic_option
@pass_target
def holiday_add(target: Target, day_text: str, name: str, domain: str | None) -> None:
    """Close the clinic all day on DATE (YYYY-MM-DD): its public numbers follow their closed rule."""
    with _translated(target):
        day = parse_day(day_text)
        store = ConfigStore(_open(target))
        entry = store.add_holiday(store.resolve_domain(domain), day, name)
    click.echo(f"{entry.domain} is closed on {entry.day.isoformat()} ({entry.name}).")


@holiday.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@clinic_option
@pass_target
def holiday_list(target: Target, as_json: bool, domain: str | None) -> None:
    """List the clinic's extra closed days."""
    with _translated(target):
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        entries = store.holidays(resolved)
        country = _region_of(store, resolved)
    if as_json:
        _emit_json([{"domain": e.domain, "date": e.day.isoformat(), "name": e.name} for e in entries])
        return
    _emit_table(
        ("DATE", "NAME"),
        [(e.day.isoformat(), e.name) for e in entries],
        f"No extra closed days in {resolved}; the public holidays of {country} are closed anyway.",
    )


@holiday.command("remove")
@click.argument("day_text", metavar="DATE")
@clinic_option
@pass_target
def holiday_remove(target: Target, day_text: str, domain: str | None) -> None:
    """Open the clinic on DATE again, as its opening hours say."""
    with _translated(target):
        day = parse_day(day_text)
        store = ConfigStore(_open(target))
        resolved = store.resolve_domain(domain)
        store.remove_holiday(resolved, day)
    click.echo(f"{resolved} is no longer closed on {day.isoformat()}.")


# -- caller ID: adapters, contacts, lookups -------------------------------------------------------


@cli.group()
def adapter() -> None:
    """Manage caller-ID adapters: where a clinic looks callers up, in chain order (first match wins)."""


def _shown_url(url: str | None) -> str | None:
    """An adapter's URL with any password masked."""
    if url is None:
        return None
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _adapter_json(entry: AdapterEntry) -> dict[str, Any]:
    return {
        "domain": entry.domain,
        "name": entry.name,
        "kind": entry.kind,
        "position": entry.position,
        "url": _shown_url(entry.url),
        "query_number": entry.query_number,
        "query_id": entry.query_id,
        "file": entry.file,
        "token_file": entry.token_file,
    }


def _adapter_where(entry: AdapterEntry) -> str:
    if entry.kind == "contacts":
        return "Sentral's contacts"
    return _shown_url(entry.url) or entry.file or "-"


def _checked_adapter(entry: AdapterEntry) -> None:
    """Refuse an adapter that cannot be built (unknown kind, unusable URL) before it is stored."""
    try:
        built = build_adapter(entry)
    except AdapterError as exc:
        raise OperatorError(str(exc).rstrip(".")) from exc
    asyncio.run(built.close())


def _adapter_options(*, changing: bool) -> Decorator:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option(
                "--kind",
                required=not changing,
                metavar="sql|csv|fhir|contacts",
                help="What the adapter reads (or a kind a clinic platform's package installs).",
            ),
            click.option("--url", metavar="URL", help="sql: a SQLAlchemy database URL; fhir: the server's base URL."),
            click.option(
                "--query-number",
                metavar="SQL",
                help="sql: the query by number, returning name[, kind, reference]; it gets :number, :digits, "
                ":zero_zero, :national, :national_spaced and :international_spaced.",
            ),
            click.option("--query-id", metavar="SQL", help="sql: the query by national ID, given :national_id."),
            click.option("--file", metavar="PATH", help="csv: the file of name,number[,kind,reference] rows."),
            click.option("--token-file", metavar="PATH", help="fhir: a file holding the bearer token."),
            click.option(
                "--position", type=int, metavar="N", help="Where in the chain: 1 is asked first (default: last)."
            ),
            clinic_option,
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@adapter.command("add")
@click.argument("name")
@_adapter_options(changing=False)
@pass_target
def adapter_add(
    target: Target,
    name: str,
    kind: str,
    url: str | None,
    query_number: str | None,
    query_id: str | None,
    file: str | None,
    token_file: str | None,
    position: int | None,
    domain: str | None,
) -> None:
    """Add the caller-ID adapter NAME to a clinic's chain."""
    with _translated(target):
        engine = _open(target)
        resolved = ConfigStore(engine).resolve_domain(domain)
        name = normalize_adapter_name(name)
        settings = check_settings(name, AdapterSettings(kind, url, query_number, query_id, file, token_file))
        _checked_adapter(AdapterEntry(resolved, name, settings.kind, 0, *astuple(settings)[1:]))
        entry = CallerIdStore(engine).add_adapter(resolved, name, settings, position)
    click.echo(f"Added {entry.kind} adapter {entry.name} to {entry.domain}, asked {_ordinal(entry.position)}.")


@adapter.command("set")
@click.argument("name")
@_adapter_options(changing=True)
@pass_target
def adapter_set(
    target: Target,
    name: str,
    kind: str | None,
    url: str | None,
    query_number: str | None,
    query_id: str | None,
    file: str | None,
    token_file: str | None,
    position: int | None,
    domain: str | None,
) -> None:
    """Change the adapter NAME; options left out keep their value, '' clears one."""
    given = {
        "kind": kind, "url": url, "query_number": query_number, "query_id": query_id, "file": file,
        "token_file": token_file,
    }  # fmt: skip
    changes = {key: value for key, value in given.items() if value is not None}
    if not changes and position is None:
        raise click.UsageError("say what to change, such as --position 1; see `sentral adapter set --help`")
    with _translated(target):
        engine = _open(target)
        store = CallerIdStore(engine)
        entry = store.adapter(ConfigStore(engine).resolve_domain(domain), name)
        settings = check_settings(entry.name, replace(AdapterSettings.of(entry), **changes))
        _checked_adapter(AdapterEntry(entry.domain, entry.name, settings.kind, 0, *astuple(settings)[1:]))
        entry = store.change_adapter(entry.domain, entry.name, settings, position)
    click.echo(f"Adapter {entry.name} of {entry.domain} ({entry.kind}) is asked {_ordinal(entry.position)}.")


def _ordinal(position: int) -> str:
    return "first" if position == 1 else f"as number {position}"


@adapter.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@listing_clinic_option
@pass_target
def adapter_list(target: Target, as_json: bool, domain: str | None) -> None:
    """List caller-ID adapters in chain order."""
    with _translated(target):
        engine = _open(target)
        resolved = ConfigStore(engine).resolve_domain(domain) if domain is not None else None
        entries = CallerIdStore(engine).adapters(resolved)
    if as_json:
        _emit_json([_adapter_json(entry) for entry in entries])
        return
    _emit_table(
        ("DOMAIN", "#", "NAME", "KIND", "WHERE"),
        [(e.domain, str(e.position), e.name, e.kind, _adapter_where(e)) for e in entries],
        "No caller-ID adapters yet; add one with `sentral adapter add NAME --kind contacts`.",
    )


@adapter.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@clinic_option
@pass_target
def adapter_show(target: Target, name: str, as_json: bool, domain: str | None) -> None:
    """Show the adapter NAME's settings (a password in its URL masked)."""
    with _translated(target):
        engine = _open(target)
        entry = CallerIdStore(engine).adapter(ConfigStore(engine).resolve_domain(domain), name)
    shown = _adapter_json(entry)
    if as_json:
        click.echo(json.dumps(shown, indent=2, ensure_ascii=False))
        return
    click.echo(f"Adapter {entry.name}@{entry.domain}")
    for key, value in shown.items():
        if key not in ("domain", "name") and value is not None:
            click.echo(f"  {key.replace('_', ' ') + ':':<14}{value}")


@adapter.command("remove")
@click.argument("name")
@clinic_option
@pass_target
def adapter_remove(target: Target, name: str, domain: str | None) -> None:
    """Take the adapter NAME out of the clinic's chain."""
    with _translated(target):
        engine = _open(target)
        entry = CallerIdStore(engine).remove_adapter(ConfigStore(engine).resolve_domain(domain), name)
    click.echo(f"Removed adapter {entry.name} from {entry.domain}.")


@cli.group()
def contact() -> None:
    """Manage a clinic's own contacts: names for the numbers of people and offices that call."""


def _contact_json(entry: ContactEntry) -> dict[str, Any]:
    return {"domain": entry.domain, "name": entry.name, "number": entry.number, "kind": entry.kind}


@contact.command("add")
@click.option("--name", required=True, metavar="NAME", help="What the phones show, such as 'Apotek 1'.")
@click.option("--number", "number_text", required=True, metavar="NUMBER", help="Written nationally, with + or with 00.")
@click.option(
    "--kind", default="contact", show_default=True, metavar="patient|contact|staff", help="Who they are."
)
@clinic_option
@pass_target
def contact_add(target: Target, name: str, number_text: str, kind: str, domain: str | None) -> None:
    """Add a contact: the phones show NAME when NUMBER calls."""
    with _translated(target):
        engine = _open(target)
        config = ConfigStore(engine)
        resolved = config.resolve_domain(domain)
        e164 = _phone_number(number_text, _region_of(config, resolved), "--number")
        (entry,) = CallerIdStore(engine).add_contacts(resolved, [(name, e164, kind)])
    click.echo(f"Added contact {entry.name} ({entry.kind}, {entry.number}) to {entry.domain}.")


@contact.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@listing_clinic_option
@pass_target
def contact_list(target: Target, as_json: bool, domain: str | None) -> None:
    """List contacts by name."""
    with _translated(target):
        engine = _open(target)
        resolved = ConfigStore(engine).resolve_domain(domain) if domain is not None else None
        entries = CallerIdStore(engine).contacts(resolved)
    if as_json:
        _emit_json([_contact_json(entry) for entry in entries])
        return
    _emit_table(
        ("DOMAIN", "NAME", "NUMBER", "KIND"),
        [(e.domain, e.name, e.number, e.kind) for e in entries],
        "No contacts yet; add one with `sentral contact add --name NAME --number NUMBER`.",
    )


@contact.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@clinic_option
@pass_target
def contact_show(target: Target, name: str, as_json: bool, domain: str | None) -> None:
    """Show the contact NAME."""
    with _translated(target):
        engine = _open(target)
        entry = CallerIdStore(engine).contact(ConfigStore(engine).resolve_domain(domain), name)
    if as_json:
        click.echo(json.dumps(_contact_json(entry), indent=2, ensure_ascii=False))
        return
    click.echo(f"Contact {entry.name}@{entry.domain}")
    click.echo(f"  {'number:':<14}{entry.number}")
    click.echo(f"  {'kind:':<14}{entry.kind}")


@contact.command("remove")
@click.argument("name")
@clinic_option
@pass_target
def contact_remove(target: Target, name: str, domain: str | None) -> None:
    """Remove the contact NAME."""
    with _translated(target):
        engine = _open(target)
        entry = CallerIdStore(engine).remove_contact(ConfigStore(engine).resolve_domain(domain), name)
    click.echo(f"Removed contact {entry.name} from {entry.domain}.")


@contact.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@clinic_option
@pass_target
def contact_import(target: Target, path: Path, domain: str | None) -> None:
    """Add the contacts in the CSV file PATH (name,number[,kind] rows; a name,number header is skipped),
    all of them or, on any mistake, none."""
    with _translated(target):
        engine = _open(target)
        config = ConfigStore(engine)
        resolved = config.resolve_domain(domain)
        region = _region_of(config, resolved)
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.reader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise OperatorError(f"cannot read {path}: {exc}") from exc
        found: list[tuple[str, str, str]] = []
        for line, row in enumerate(rows, start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells) or (line == 1 and [c.lower() for c in cells[:2]] == ["name", "number"]):
                continue
            if len(cells) < 2 or len(cells) > 3:
                raise OperatorError(f"{path} line {line}: give name,number or name,number,kind; nothing was imported")
            try:
                e164 = _phone_number(cells[1], region, "the number")
                kind = validate_contact_kind(cells[2] if len(cells) == 3 and cells[2] else "contact")
                found.append((validate_contact_name(cells[0]), e164, kind))
            except (OperatorError, StoreError) as exc:
                message = exc.format_message() if isinstance(exc, OperatorError) else str(exc)
                raise OperatorError(f"{path} line {line}: {message}; nothing was imported") from exc
        if not found:
            raise OperatorError(f"{path} holds no contacts; write one name,number[,kind] per line")
        try:
            added = CallerIdStore(engine).add_contacts(resolved, found)
        except StoreError as exc:
            raise OperatorError(f"{exc}; nothing was imported") from exc
    click.echo(f"Imported {len(added)} contacts into {resolved}.")


@cli.command("lookup")
@click.argument("number_text", metavar="NUMBER")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@clinic_option
@pass_target
def lookup_command(target: Target, number_text: str, as_json: bool, domain: str | None) -> None:
    """Look NUMBER up through the clinic's caller-ID chain, as a call from it would be."""
    with _translated(target):
        engine = _open(target)
        config = ConfigStore(engine)
        resolved = config.resolve_domain(domain)
        e164 = _phone_number(number_text, _region_of(config, resolved), "number")
        directory = load_directory(engine)
    if not directory.adapters.get(resolved):
        raise OperatorError(
            f"{resolved} has no caller-ID adapters; add one with `sentral adapter add NAME --kind contacts`"
        )
    # An adapter that fails is reported on stderr, as the server would log it; the answer stays on stdout.
    configure("console", "warning", "stderr")

    async def run() -> tuple[Match | None, float, float]:
        lookup = CallerLookup(directory, ttl=0)
        chain = lookup.chain(resolved)
        assert chain is not None
        started = time.perf_counter()
        try:
            found = await chain.by_number(e164)
        finally:
            await lookup.close()
        return found, (time.perf_counter() - started) * 1000, lookup.budget(resolved) * 1000

    match, ms, budget = asyncio.run(run())
    if as_json:
        found = None if match is None else {
            "name": match.name, "kind": match.kind.value, "reference": match.reference, "adapter": match.source,
        }  # fmt: skip
        payload = {"number": e164, "domain": resolved, "match": found, "ms": round(ms, 2), "budget_ms": round(budget)}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    late = f", past the clinic's budget of {round(budget)} ms" if ms > budget else ""
    if match is None:
        click.echo(f"{e164}: nobody found in {ms:.1f} ms{late}.")
        return
    reference = f", {match.reference}" if match.reference else ""
    click.echo(f"{e164}: {match.name} ({match.kind.value}{reference}) from adapter {match.source} in {ms:.1f} ms{late}.")


# -- logging in and out, phones and presence -----------------------------------------------------


def _login_command(logged_in: bool) -> click.Command:
    verb = "login" if logged_in else "logout"

    @click.command(verb)
    @click.argument("extension")
    @click.argument("name")
    @domain_option
    @pass_target
    def command(target: Target, extension: str, name: str, domain: str | None) -> None:
        with _translated(target):
            validate_extension(extension)
            store = ConfigStore(_open(target))
            resolved = store.resolve_domain(domain)
            change = store.login if logged_in else store.logout
            changed = change(resolved, extension, name)
            group = store.group(resolved, name)
        where = f"{'in to' if logged_in else 'out of'} {group.kind.value} {group.name}"
        state = "is now" if changed else "was already"
        click.echo(f"{extension}@{resolved} {state} logged {where}.")

    command.help = (
        f"Log EXTENSION {'in to' if logged_in else 'out of'} the group or function NAME "
        f"({'calls to it ring them' if logged_in else 'calls to it no longer ring them'})."
    )
    return command


cli.add_command(_login_command(True))
cli.add_command(_login_command(False))


@cli.group()
def phone() -> None:
    """Log a phone on or off: a phone that is off receives no calls, not even direct ones."""


def _phone_command(on: bool) -> click.Command:
    word = "on" if on else "off"

    @click.command(word)
    @click.argument("extension")
    @domain_option
    @pass_target
    def command(target: Target, extension: str, domain: str | None) -> None:
        with _translated(target):
            validate_extension(extension)
            store = ConfigStore(_open(target))
            resolved = store.resolve_domain(domain)
            changed = store.set_phone(resolved, extension, on)
        click.echo(f"The phone of {extension}@{resolved} {'is now' if changed else 'was already'} {word}.")

    command.help = f"Log the phone of EXTENSION {word}."
    return command


phone.add_command(_phone_command(True))
phone.add_command(_phone_command(False))


@cli.group("direct-media")
def direct_media_group() -> None:
    """Let phones send media straight to each other instead of through Sentral's relay.

    Media goes direct only between two phones that both have it on; any other call keeps its media
    at the relay. Without the relay Sentral cannot play music on hold or prompts to the phone, nor
    park its calls, nor tell when its media has died. Calls in progress keep their media path.
    """


def _direct_media_command(on: bool) -> click.Command:
    word = "on" if on else "off"

    @click.command(word)
    @click.argument("extension")
    @domain_option
    @pass_target
    def command(target: Target, extension: str, domain: str | None) -> None:
        with _translated(target):
            validate_extension(extension)
            store = ConfigStore(_open(target))
            resolved = store.resolve_domain(domain)
            changed = store.set_direct_media(resolved, extension, on)
        state = "sends media straight to phones with direct media" if on else "has its media relayed"
        click.echo(f"The phone of {extension}@{resolved} {'now' if changed else 'already'} {state}.")

    command.help = f"Turn direct media {word} for the phone of EXTENSION."
    return command


direct_media_group.add_command(_direct_media_command(True))
direct_media_group.add_command(_direct_media_command(False))


@dataclass(frozen=True, slots=True)
class Presence:
    """One member of staff as ``sentral presence`` shows them."""

    domain: str
    extension: str
    name: str
    phone_on: bool
    registered: bool
    line: LineState | None  # None: idle
    groups: tuple[str, ...]  # logged in to
    functions: tuple[str, ...]  # logged in to
    forwards: Forwards = NO_FORWARDS

    @property
    def phone(self) -> str:
        """``on`` or ``off``."""
        return "on" if self.phone_on else "off"

    @property
    def line_text(self) -> str:
        """idle, ringing or busy, with (acute) for a call on an acute number."""
        if self.line is None:
            return LineStatus.IDLE.value
        return f"{self.line.state.value} (acute)" if self.line.acute else self.line.state.value

    def json(self) -> dict[str, Any]:
        """The JSON object of ``--json``."""
        return {
            "domain": self.domain,
            "extension": self.extension,
            "name": self.name,
            "phone_on": self.phone_on,
            "registered": self.registered,
            "line": self.line.state.value if self.line is not None else LineStatus.IDLE.value,
            "acute": self.line.acute if self.line is not None else False,
            "groups": list(self.groups),
            "functions": list(self.functions),
            "forwarded_to": self.forwards.always,
            "forwards": _forwards_json(self.forwards),
        }

    @property
    def forward_text(self) -> str:
        """Where their calls go: "forwarded to 1003" when always, else their conditional forwards."""
        if self.forwards.always is not None:
            return f"forwarded to {self.forwards.always}"
        return forwards_text(self.forwards) or "-"


def _presence(engine: Engine, domain: str | None) -> list[Presence]:
    """Everyone of clinic ``domain`` (every clinic if None), by domain and extension."""
    now = time.time()
    directory = load_directory(engine)
    bindings = BindingStore(engine)
    registered = {d: bindings.registered(d, now) for d in directory.clinics if domain in (None, d)}
    # Lines a stopped server left behind are not shown: it stopped publishing or touching them.
    lines = {
        (line.domain, line.extension): line
        for line in LineStateStore(engine).list(domain, max_age=LINE_MAX_AGE, now=now)
    }
    people: list[Presence] = []
    for (staff_domain, extension), entry in directory.staff.items():
        if domain is not None and staff_domain != domain:
            continue
        logged_in = [
            group
            for group in directory.memberships(staff_domain, extension)
            if any(member.extension == extension and member.logged_in for member in group.members)
        ]
        people.append(
            Presence(
                domain=staff_domain,
                extension=extension,
                name=entry.name,
                phone_on=entry.phone_on,
                registered=extension in registered.get(staff_domain, set()),
                line=lines.get((staff_domain, extension)),
                groups=tuple(g.name for g in logged_in if g.kind is GroupKind.GROUP),
                functions=tuple(g.name for g in logged_in if g.kind is GroupKind.FUNCTION),
                forwards=entry.forwards,
            )
        )
    return sorted(people, key=lambda person: (person.domain, len(person.extension), person.extension))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--domain", help="Only this clinic; default: every clinic.", metavar="DOMAIN")
@pass_target
def presence(target: Target, as_json: bool, domain: str | None) -> None:
    """Show every member of staff: phone on or off, registered, what their line is doing, the
    groups and functions they are logged in to, and where their calls are forwarded."""
    engine = _open(target)
    with _translated(target):
        resolved = ConfigStore(engine).resolve_domain(domain) if domain is not None else None
        people = _presence(engine, resolved)
    if as_json:
        _emit_json([person.json() for person in people])
        return
    _emit_table(
        ("EXTENSION", "DOMAIN", "NAME", "PHONE", "REGISTERED", "LINE", "GROUPS", "FUNCTIONS", "FORWARDS"),
        [
            (
                p.extension,
                p.domain,
                p.name,
                p.phone,
                _yes(p.registered),
                p.line_text,
                ",".join(p.groups) or "-",
                ",".join(p.functions) or "-",
                p.forward_text,
            )
            for p in people
        ],
        "No staff yet; add someone with `sentral user add EXT --name NAME`.",
    )


# -- registrations -------------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_target
def registrations(target: Target, as_json: bool) -> None:
    """List the registered contacts that have not expired."""
    engine = _open(target)
    now = time.time()
    with _translated(target):
        rows = BindingStore(engine).list(now)
    if as_json:
        _emit_json(
            [
                {
                    "aor": f"{row.extension}@{row.domain}",
                    "domain": row.domain,
                    "extension": row.extension,
                    "contact": row.contact,
                    "transport": row.transport,
                    "source": _source(row),
                    "expires_in": max(0, round(row.expires_at - now)),
                    "user_agent": row.user_agent,
                }
                for row in rows
            ]
        )
        return
    _emit_table(
        ("AOR", "CONTACT", "TRANSPORT", "SOURCE", "EXPIRES IN"),
        [
            (
                f"{row.extension}@{row.domain}",
                row.contact,
                row.transport,
                _source(row),
                f"{max(0, round(row.expires_at - now))}s",
            )
            for row in rows
        ],
        "No registrations.",
    )


# -- calls and call records ----------------------------------------------------------------------

# Without --since, `sentral cdr` shows this many of the newest records rather than the whole history.
DEFAULT_CDR_LIMIT = 100


class _Moment(click.ParamType[float]):
    """An ISO 8601 date or date-time, as epoch seconds; one without an offset is local time."""

    name = "ISO8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            # A naive datetime's timestamp() reads it as local time, which is what the operator means.
            return datetime.fromisoformat(str(value).strip()).timestamp()
        except (ValueError, OverflowError, OSError):
            self.fail(
                f"{value!r} is not an ISO 8601 date or time; write it like 2025-03-01, 2025-03-01T08:30 "
                "or 2025-03-01T08:30:00+01:00",
                param,
                ctx,
            )


def _utc(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _local(moment: float) -> str:
    return datetime.fromtimestamp(moment).strftime("%Y-%m-%d %H:%M:%S")


def _clock(seconds: float) -> str:
    """0:42, 12:03 or 1:02:03."""
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _times(**moments: float | None) -> dict[str, Any]:
    """Each time as an ISO 8601 UTC string under its name and as epoch seconds under NAME_epoch."""
    fields: dict[str, Any] = {}
    for name, moment in moments.items():
        fields[name] = _utc(moment)
        fields[f"{name}_epoch"] = moment
    return fields


def _live_json(call: LiveCall, now: float) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "server_id": call.server_id,
        "domain": call.domain,
        "caller": call.caller,
        "caller_name": call.caller_name,
        "caller_kind": call.caller_kind,
        "caller_reference": call.caller_reference,
        "caller_source": call.caller_source,
        "callee": call.callee,
        "state": "parked" if call.parked_slot is not None else call.state,
        "parked": call.parked_slot,
        "legs": call.legs,
        "transfers": [_transfer_json(transfer) for transfer in call.transfers],
        **_times(started_at=call.started_at, answered_at=call.answered_at, updated_at=call.updated_at),
        "duration": round(call.duration(now), 3),
        "elapsed": round(max(0.0, now - call.started_at), 3),
    }


def _spool_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--spool",
        "spool_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=ENV_SPOOL,
        default=None,
        help="Where call records and registrations wait while the database is down "
        "[default: beside an SQLite database (its name with -spool), else ./sentral-spool; also $SENTRAL_SPOOL].",
    )(function)


def _spool_depth(target: Target, spool_dir: Path | None) -> SpoolDepth:
    directory = spool_dir.absolute() if spool_dir is not None else default_spool_dir(target.url)
    try:
        return spool_depth(directory)
    except StoreError as exc:
        raise OperatorError(str(exc)) from exc


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_spool_option
@pass_target
def calls(target: Target, as_json: bool, spool_dir: Path | None) -> None:
    """List the calls in progress on the running servers.

    DURATION is the talk time of an answered call and the time since the call began for the others.
    Call records and registrations waiting in the server's spool for the database are counted on
    stderr.
    """
    waiting = _spool_depth(target, spool_dir)
    try:
        engine = _open(target)
    except OperatorError as exc:
        if waiting.empty:
            raise
        raise OperatorError(f"{exc}; {waiting.sentence()}") from exc
    if not waiting.empty:
        click.echo(waiting.sentence(), err=True)
    now = time.time()
    with _translated(target):
        live = LiveCallStore(engine).list(LIVE_MAX_AGE, now=now)
    if as_json:
        _emit_json([_live_json(call, now) for call in live])
        return
    _emit_table(
        ("CALL ID", "FROM", "TO", "STATE", "DURATION"),
        [
            (
                call.call_id,
                call.caller,
                call.callee,
                f"parked on {call.parked_slot}" if call.parked_slot is not None else call.state,
                _clock(now - (call.answered_at if call.answered_at is not None else call.started_at)),
            )
            for call in live
        ],
        "No calls in progress.",
        [[_transfer_line(transfer) for transfer in call.transfers] for call in live],
    )


def _leg_json(leg: LegRecord) -> dict[str, Any]:
    return {
        "leg": leg.leg,
        "role": leg.role,
        "target": leg.target,
        **_times(
            started_at=leg.started_at,
            ringing_at=leg.ringing_at,
            answered_at=leg.answered_at,
            ended_at=leg.ended_at,
        ),
        "outcome": leg.outcome,
        "status": leg.status,
    }


def _transfer_json(transfer: TransferRecord) -> dict[str, Any]:
    return {
        **_times(at=transfer.at),
        "by": transfer.by,
        "kind": transfer.kind,
        "target": transfer.target,
        "outcome": transfer.outcome or None,
    }


def _transfer_line(transfer: TransferRecord) -> str:
    """transferred by 1002 (blind) to 1003: answered"""
    outcome = transfer.outcome or "under way"
    return f"transferred by {transfer.by} ({transfer.kind}) to {transfer.target}: {outcome}"


def _record_json(record: CallRecord) -> dict[str, Any]:
    return {
        "call_id": record.call_id,
        "domain": record.domain,
        "caller": record.caller,
        "caller_name": record.caller_name,
        "caller_kind": record.caller_kind,
        "caller_reference": record.caller_reference,
        "caller_source": record.caller_source,
        "callee": record.callee,
        "callee_extension": record.callee_extension,
        **_times(
            started_at=record.started_at,
            ringing_at=record.ringing_at,
            answered_at=record.answered_at,
            ended_at=record.ended_at,
        ),
        "duration": round(record.duration, 3),
        "disposition": record.disposition,
        "hangup_by": record.hangup_by,
        "hangup_reason": record.hangup_reason,
        "status_to_caller": record.status_to_caller,
        "forwarded": [{"from": extension, "kind": kind, "to": number} for extension, kind, number in record.forwards],
        "legs": [_leg_json(leg) for leg in record.legs],
        "transfers": [_transfer_json(transfer) for transfer in record.transfers],
    }


def _record_row(record: CallRecord) -> tuple[str, ...]:
    caller = f"{record.caller} ({record.caller_name})" if record.caller_name else record.caller
    callee = record.callee
    reached = record.callee
    for _, kind, number in record.forwards:
        callee += f" => {number} ({kind})"
        reached = number
    if record.callee_extension and record.callee_extension != reached:
        callee = f"{callee} -> {record.callee_extension}"
    hangup = f"{record.hangup_by}: {record.hangup_reason}" if record.hangup_by else record.hangup_reason
    duration = _clock(record.duration) if record.answered_at is not None else "-"
    return (_local(record.started_at), record.call_id, caller, callee, record.disposition, duration, hangup)


@cli.command()
@click.option(
    "--since",
    type=_Moment(),
    help="Only calls that started at or after this ISO 8601 date or time, e.g. 2025-03-01 or "
    "2025-03-01T08:30:00+01:00; without an offset it is local time.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    help=f"Only the newest N records; 0 for all. Default: {DEFAULT_CDR_LIMIT} without --since, all with it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array; times in UTC and epoch seconds.")
@pass_target
def cdr(target: Target, since: float | None, limit: int | None, as_json: bool) -> None:
    """List call records, newest last; the table shows local time.

    A transferred call has a line under it for each transfer: who transferred it, how, to what
    number, and how it ended (answered, returned to the transferer, or failed).
    """
    if limit is None:
        limit = 0 if since is not None else DEFAULT_CDR_LIMIT
    engine = _open(target)
    with _translated(target):
        records = CdrStore(engine).list(since, limit or None)
    if as_json:
        _emit_json([_record_json(record) for record in records])
        return
    _emit_table(
        ("STARTED", "CALL ID", "FROM", "TO", "RESULT", "DURATION", "HANGUP"),
        [_record_row(record) for record in records],
        "No call records." if since is None else "No call records since then.",
        [[_transfer_line(transfer) for transfer in record.transfers] for record in records],
    )


# -- API tokens ----------------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Manage the API tokens a clinic platform uses for the web API (serve --web)."""


@token.command("add")
@click.argument("name")
@clinic_option
@pass_target
def token_add(target: Target, name: str, domain: str | None) -> None:
    """Make a token called NAME for the clinic; it is printed this once, and only its hash is kept."""
    from sentral.config.tokens import TokenStore

    with _translated(target):
        engine = _open(target)
        resolved = ConfigStore(engine).resolve_domain(domain)
        entry, secret = TokenStore(engine).add(resolved, name)
    click.echo(secret)
    click.echo(
        f"Token {entry.name} for {entry.domain}: send it as 'Authorization: Bearer TOKEN'. "
        "It is not shown again.",
        err=True,
    )


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@listing_clinic_option
@pass_target
def token_list(target: Target, as_json: bool, domain: str | None) -> None:
    """List the API tokens (names and when they were made; never the tokens)."""
    from sentral.config.tokens import TokenStore

    with _translated(target):
        engine = _open(target)
        resolved = ConfigStore(engine).resolve_domain(domain) if domain is not None else None
        entries = TokenStore(engine).list(resolved)
    if as_json:
        _emit_json([{"domain": e.domain, "name": e.name, "created_at": _utc(e.created_at)} for e in entries])
        return
    _emit_table(
        ("CLINIC", "NAME", "CREATED"),
        [(e.domain, e.name, _local(e.created_at)) for e in entries],
        "No API tokens; make one with `sentral token add NAME`.",
    )


@token.command("remove")
@click.argument("name")
@clinic_option
@pass_target
def token_remove(target: Target, name: str, domain: str | None) -> None:
    """Remove the token NAME: it stops working within a second."""
    from sentral.config.tokens import TokenStore

    with _translated(target):
        engine = _open(target)
        resolved = ConfigStore(engine).resolve_domain(domain)
        TokenStore(engine).remove(resolved, name)
    click.echo(f"Removed token {name.strip()} of {resolved}.")


# -- the config file: how serve reads it -------------------------------------------------------

_CONFIG_FILE = "sentral.config_file"
_DATABASE_SOURCE = "sentral.database_source"


class ConfigMistakes(click.ClickException):
    """A config file with mistakes: one sentence each on stderr, exit code 1."""

    def __init__(self, path: Path, mistakes: Sequence[Mistake]) -> None:
        super().__init__("\n".join(mistake.sentence(path) for mistake in mistakes))
        self.path = path

    def show(self, file: Any = None) -> None:
        """Print ``sentral: <sentence>`` on stderr for each mistake."""
        for line in self.format_message().splitlines():
            click.echo(f"sentral: {line}", err=True)


def _read_config(path: Path) -> ConfigFile:
    try:
        return read_config(path)
    except ConfigFileError as exc:
        raise OperatorError(str(exc)) from exc


def _configured_database(ctx: click.Context) -> str | None:
    """The config file's ``db`` for commands that take no --config (serve and config read their own)."""
    if ctx.invoked_subcommand in ("serve", "config") or environment_database() is not None:
        return None
    path = config_path(None)
    if path is None:
        return None
    config = _read_config(path)
    if DATABASE_KEY in config.values and not isinstance(config.values[DATABASE_KEY], str):
        raise OperatorError(f"the config file {path} sets {DATABASE_KEY} to something that is not a path or URL")
    return database(config)


def _load_config_file(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Make the config file's settings the defaults of the command's options (before any is read)."""
    if ctx.resilient_parsing:
        return
    path = config_path(value)
    ctx.meta[_CONFIG_FILE] = path
    root = ctx.find_root()
    if root.params.get("db") is not None:
        ctx.meta[_DATABASE_SOURCE] = "command line"
    elif environment_database() is not None:
        ctx.meta[_DATABASE_SOURCE] = "environment"
    else:
        ctx.meta[_DATABASE_SOURCE] = "default"
    if path is None:
        return
    config = _read_config(path)
    mapping, mistakes = default_map(ctx, config)
    if mistakes:
        raise ConfigMistakes(path, mistakes)
    ctx.default_map = {**(ctx.default_map or {}), **mapping}
    configured = database(config)
    if configured is not None and ctx.meta[_DATABASE_SOURCE] == "default":
        ctx.obj = Target(database_url(configured))
        ctx.meta[_DATABASE_SOURCE] = "file"


def _config_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        type=click.Path(dir_okay=False),
        envvar=ENV_CONFIG,
        is_eager=True,
        expose_value=False,
        callback=_load_config_file,
        metavar="FILE",
        help=f"A TOML file of these options (listen = [...], no-answer-timeout = 30, db = ...); the command "
        f"line and environment win over it [default: ${ENV_CONFIG}, else {DEFAULT_CONFIG} when present].",
    )(function)


# -- serve ---------------------------------------------------------------------------------------


def _parse_listens(specs: Sequence[str]) -> tuple[Listen, ...]:
    listens: list[Listen] = []
    for spec in specs:
        try:
            listens.append(parse_listen(spec))
        except ListenSpecError as exc:
            raise click.UsageError(str(exc)) from exc
    return tuple(listens)


def _check_readable(path: str, what: str) -> None:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise OperatorError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


@cli.command()
@click.option(
    "--listen",
    "listen_specs",
    multiple=True,
    metavar="TRANSPORT:HOST:PORT",
    help="udp:HOST:PORT, tcp:[::1]:5060 or tls:HOST:5061; repeatable. Default: udp and tcp on 0.0.0.0:5060.",
)
@click.option("--cert", type=click.Path(dir_okay=False), help="TLS certificate chain (PEM), for tls listens.")
@click.option("--key", type=click.Path(dir_okay=False), help="TLS private key (PEM), for tls listens.")
@click.option(
    "--sip-trace",
    is_flag=True,
    help="Log every SIP message sent and received, at any --log-level (digest responses hidden).",
)
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console", show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="What is logged; with a config file, SIGHUP reads its log-level again unless given here.",
)
@click.option(
    "--log-target",
    type=click.Choice(TARGETS),
    default="stderr",
    show_default=True,
    help="Where the log goes: stderr, the systemd journal (with priorities), or syslog (/dev/log, facility daemon).",
)
@click.option(
    "--trust",
    "trusted",
    multiple=True,
    metavar="NETWORK",
    help="A network never throttled or blocked, e.g. 192.0.2.0/24; repeatable; replaces the default "
    "(loopback). 'none' trusts nothing.",
)
@click.option(
    "--flood-rate",
    type=click.FloatRange(min=1),
    default=SERVE_DEFAULTS.flood_rate,
    show_default=True,
    help="Requests a second one address may send before it is throttled.",
)
@click.option(
    "--auth-failures",
    type=click.IntRange(min=1),
    default=SERVE_DEFAULTS.auth_failures,
    show_default=True,
    help="Failed logins a minute from one address before it is blocked.",
)
@click.option(
    "--block-seconds",
    type=click.FloatRange(min=1),
    default=SERVE_DEFAULTS.block_seconds,
    show_default=True,
    help="How long a blocked address stays blocked.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=SERVE_DEFAULTS.drain_timeout,
    show_default=True,
    help="Seconds calls in progress may go on after SIGTERM (new calls get 503) before they are hung up.",
)
@click.option(
    "--no-answer-timeout",
    type=click.FloatRange(min=1),
    default=SERVE_DEFAULTS.no_answer_timeout,
    show_default=True,
    help="Seconds a call rings before the caller hears 480 (no answer).",
)
@click.option(
    "--session-interval",
    type=click.IntRange(min=90),
    default=SERVE_DEFAULTS.session_interval,
    show_default=True,
    help="Session timer interval (RFC 4028) asked for on every call leg, in seconds.",
)
@click.option(
    "--transfer-recall",
    type=click.FloatRange(min=1),
    default=SERVE_DEFAULTS.transfer_recall,
    show_default=True,
    help="Seconds a blind-transferred call rings its target before it rings the transferring phone again.",
)
@click.option(
    "--international-calls",
    type=click.IntRange(min=0),
    default=SERVE_DEFAULTS.international_calls,
    show_default=True,
    help="International calls a clinic may have in progress at once; more are refused (toll-fraud guard).",
)
@click.option(
    "--international-calls-per-staff",
    type=click.IntRange(min=0),
    default=SERVE_DEFAULTS.international_calls_per_staff,
    show_default=True,
    help="International calls one member of staff may have in progress at once.",
)
@click.option(
    "--direct-media",
    is_flag=True,
    help="Let phones send RTP straight to each other: no relay, no music on hold, prompts or dead-media checks.",
)
@click.option(
    "--media-address",
    metavar="ADDRESS",
    help="IP address of the RTP relay. Default: the SIP listen address (on 0.0.0.0, each phone is told the "
    "address it reaches).",
)
@click.option(
    "--media-ports",
    "media_ports_spec",
    metavar="FIRST-LAST",
    default=f"{SERVE_DEFAULTS.media_ports[0]}-{SERVE_DEFAULTS.media_ports[1]}",
    show_default=True,
    help="UDP port range of the RTP relay (two ports per phone in a call).",
)
@click.option(
    "--dead-media",
    type=click.FloatRange(min=1),
    default=SERVE_DEFAULTS.dead_media,
    show_default=True,
    help="Seconds without RTP from either phone after which an answered call is hung up.",
)
@click.option(
    "--dead-media-on-hold",
    type=click.FloatRange(min=1),
    default=SERVE_DEFAULTS.dead_media_on_hold,
    show_default=True,
    help="The same while a phone is on hold.",
)
@click.option(
    "--sounds",
    "sounds_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="SENTRAL_SOUNDS",
    default=default_sounds,
    show_default="the sounds an installed package carries, else ./sounds",
    help="Directory of music on hold and prompts, built with `make sounds` "
    "(python -m sentral.media.sounds build DIR); also $SENTRAL_SOUNDS.",
)
@click.option(
    "--clinic-sounds",
    "clinic_sounds",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Directory of the clinic's own recordings (8 kHz mono WAV, laid out like --sounds): any "
    "sound found there replaces the built one, and rebuilding the sounds never touches it.",
)
@click.option(
    "--language",
    type=click.Choice(LANGUAGES),
    default=SERVE_DEFAULTS.language,
    show_default=True,
    help="The language prompts are spoken in.",
)
@click.option(
    "--metrics",
    "metrics",
    default=None,
    metavar="HOST:PORT",
    help="Serve /metrics (Prometheus text format) and /health (JSON; 200 when ready, 503 when not) "
    "over HTTP on this address, e.g. 127.0.0.1:9060. Off by default.",
)
@click.option(
    "--web",
    "web",
    default=None,
    metavar="HOST:PORT",
    help="Serve the web API (sign-in, REST, /api/openapi.json) on this address, e.g. 127.0.0.1:8080; "
    "HTTPS with --web-cert/--web-key, plain HTTP on loopback only. Off by default.",
)
@click.option("--web-cert", type=click.Path(dir_okay=False), help="TLS certificate chain (PEM) for --web.")
@click.option("--web-key", type=click.Path(dir_okay=False), help="TLS private key (PEM) for --web.")
@_spool_option
@_config_option
@pass_target
def serve(
    target: Target,
    web: str | None,
    web_cert: str | None,
    web_key: str | None,
    metrics: str | None,
    spool_dir: Path | None,
    listen_specs: tuple[str, ...],
    cert: str | None,
    key: str | None,
    sip_trace: bool,
    log_format: str,
    log_level: str,
    log_target: str,
    trusted: tuple[str, ...],
    flood_rate: float,
    auth_failures: int,
    block_seconds: float,
    drain_timeout: float,
    no_answer_timeout: float,
    session_interval: int,
    transfer_recall: float,
    international_calls: int,
    international_calls_per_staff: int,
    direct_media: bool,
    media_address: str | None,
    media_ports_spec: str,
    dead_media: float,
    dead_media_on_hold: float,
    sounds_dir: Path,
    clinic_sounds: Path | None,
    language: str,
) -> NoReturn:
    """Run the softswitch until interrupted."""
    networks = _parse_trusted(trusted) if trusted else SERVE_DEFAULTS.trusted
    listens = _parse_listens(listen_specs) if listen_specs else SERVE_DEFAULTS.listens
    if any(listen.transport == "tls" for listen in listens):
        if not cert or not key:
            raise click.UsageError("a tls listen needs --cert FILE and --key FILE")
        _check_readable(cert, "TLS certificate")
        _check_readable(key, "TLS private key")
    try:
        media_ports = parse_port_range(media_ports_spec)
        media_address = parse_media_address(media_address) if media_address else None
    except MediaSpecError as exc:
        raise click.UsageError(str(exc)) from exc
    if not direct_media:
        if media_address:
            _check_media_address(media_address)
        _check_sounds(sounds_dir, clinic_sounds, language)
    if metrics is not None:
        from sentral.metrics import parse_metrics_address

        try:
            parse_metrics_address(metrics)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    if web is not None:
        _check_web_setting(web, {"web_cert": web_cert, "web_key": web_key})
    elif web_cert or web_key:
        raise click.UsageError("--web-cert and --web-key are for the web service: give --web HOST:PORT too")
    _open(target).dispose()
    # The server is imported only here, so that every other command stays light and starts fast.
    from sentral.app import serve as run_server

    ctx = click.get_current_context()
    configure(cast(LogFormat, log_format), log_level, cast(LogTarget, log_target))
    config_file = ctx.meta.get(_CONFIG_FILE)
    config = ServeConfig(
        log_level=log_level,
        log_target=log_target,
        config_file=str(config_file) if config_file is not None else None,
        db_url=target.url,
        listens=listens,
        cert=cert,
        key=key,
        sip_trace=sip_trace,
        log_format=log_format,
        flood_rate=flood_rate,
        auth_failures=auth_failures,
        block_seconds=block_seconds,
        trusted=networks,
        drain_timeout=drain_timeout,
        no_answer_timeout=no_answer_timeout,
        session_interval=session_interval,
        transfer_recall=transfer_recall,
        international_calls=international_calls,
        international_calls_per_staff=international_calls_per_staff,
        direct_media=direct_media,
        media_address=media_address,
        media_ports=media_ports,
        dead_media=dead_media,
        dead_media_on_hold=dead_media_on_hold,
        sounds=str(sounds_dir.resolve()),
        clinic_sounds=str(clinic_sounds.resolve()) if clinic_sounds is not None else None,
        language=language,
        spool_dir=str(spool_dir.absolute()) if spool_dir is not None else None,
        metrics=metrics,
        web=web,
        web_cert=web_cert,
        web_key=web_key,
    )
    reread = _config_rereader(ctx, Path(config_file)) if config_file is not None else None
    click.get_current_context().exit(run_server(config, reread=reread))


# What SIGHUP may change in a running server, by option, and the ServeConfig field it sets: each
# is read when it is used. Every other option (listeners, media, sounds, the database...) is set
# up once at the start: a new value in the file takes a restart, which the reload says.
_RELOADABLE = {
    "log_level": "log_level",
    "sip_trace": "sip_trace",
    "flood_rate": "flood_rate",
    "auth_failures": "auth_failures",
    "block_seconds": "block_seconds",
    "trusted": "trusted",
    "drain_timeout": "drain_timeout",
    "no_answer_timeout": "no_answer_timeout",
    "session_interval": "session_interval",
    "transfer_recall": "transfer_recall",
    "international_calls": "international_calls",
    "international_calls_per_staff": "international_calls_per_staff",
    "dead_media": "dead_media",
    "dead_media_on_hold": "dead_media_on_hold",
    "cert": "cert",
    "key": "key",
    "web_cert": "web_cert",
    "web_key": "web_key",
}


def _default_value(param: click.Option, ctx: click.Context) -> Any:
    """The value ``serve`` gets for ``param`` when nothing sets it: its default, converted by its
    type; None for an option without one (click's own marker for "unset" is not a value)."""
    value = param.process_value(ctx, param.get_default(ctx, call=True))
    return value if value is None or isinstance(value, (str, int, float, tuple, Path)) else None


def _config_rereader(ctx: click.Context, path: Path) -> Callable[[], Reread]:
    """What SIGHUP calls: the config file read again, as ``serve`` read it at the start. Options
    given on the command line or in the environment keep their value; for the others the file's
    new value (or, for a key taken out of the file, the built-in default) is compared with the one
    in force. ConfigFileError or ValueError (with the file's mistakes, one sentence each) when the
    file cannot be used: then nothing changes."""
    command = ctx.command
    fixed = {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name)
        in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    }
    started = dict(ctx.params)
    in_force = dict(ctx.params)

    def reread() -> Reread:
        fresh = click.Context(command, info_name=ctx.info_name)
        mapping, mistakes = default_map(fresh, read_config(path))
        if mistakes:
            raise ValueError("; ".join(mistake.sentence(path) for mistake in mistakes))
        updates: dict[str, Any] = {}
        changed: dict[str, Any] = {}
        restart: list[str] = []
        for param in command.params:
            name = param.name
            if name is None or name in fixed or not isinstance(param, click.Option):
                continue
            if name in mapping:
                value = param.type_cast_value(fresh, mapping[name])  # as click hands it to serve
            else:
                value = _default_value(param, fresh)
            if name in _RELOADABLE:
                if value != in_force.get(name):
                    if name == "trusted":
                        try:
                            updates["trusted"] = _parse_trusted(value) if value else SERVE_DEFAULTS.trusted
                        except click.UsageError as exc:
                            raise ValueError(f"{path}: {exc.message}") from exc
                    else:
                        updates[_RELOADABLE[name]] = value
                    changed[name] = value
            elif value != started.get(name) and name != "config":
                restart.append(param.opts[-1].lstrip("-"))
        in_force.update(changed)  # only once the whole file was taken
        return Reread(updates, tuple(restart))

    return reread


def _check_web_setting(value: Any, settings: Mapping[str, Any]) -> None:
    """Refuse a web address that cannot be served safely, or certificate files that cannot be read."""
    from sentral.web.service import WebSpecError, check_web_settings

    cert, key = settings.get("web_cert"), settings.get("web_key")
    try:
        check_web_settings(str(value), str(cert) if cert else None, str(key) if key else None)
    except WebSpecError as exc:
        raise click.UsageError(str(exc)) from exc
    if cert and key:
        _check_readable(str(cert), "web TLS certificate")
        _check_readable(str(key), "web TLS private key")


def _check_media_address(address: str) -> None:
    """Refuse an RTP relay address this host does not have."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError as exc:
        raise OperatorError(
            f"cannot use --media-address {address}: {exc.strerror or exc}; give an address of this host"
        ) from exc


def _check_sounds(directory: Path, clinic_sounds: Path | None, language: str) -> None:
    """Refuse to serve without the music and prompts calls will need."""
    from sentral.media.sounds import REQUIRED, SoundLibrary, missing

    dirs = [directory] if clinic_sounds is None else [clinic_sounds, directory]
    absent = missing(SoundLibrary(dirs), REQUIRED, language)
    if absent:
        raise OperatorError(
            f"the sounds directory {directory} lacks {', '.join(absent)}; build it with `make sounds` "
            f"or `python -m sentral.media.sounds build {directory}`, or serve with --direct-media"
        )


def _parse_trusted(values: tuple[str, ...]) -> tuple[str, ...]:
    if any(v.lower() == "none" for v in values):
        if len(values) > 1:
            raise click.UsageError("--trust none cannot be combined with networks")
        return ()
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise click.UsageError(f"--trust {value!r}: give a network such as 192.0.2.0/24 or an address") from exc
    return tuple(values)


# -- config file ---------------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Check and show the config file `sentral serve` reads."""


def _check_sounds_setting(value: Any, settings: Mapping[str, Any]) -> None:
    if not settings.get("direct_media", False):
        clinic_sounds = settings.get("clinic_sounds")
        _check_sounds(
            Path(str(value)),
            Path(str(clinic_sounds)) if clinic_sounds is not None else None,
            str(settings.get("language", SERVE_DEFAULTS.language)),
        )


def _check_media_address_setting(value: Any, _settings: Mapping[str, Any]) -> None:
    try:
        _check_media_address(parse_media_address(str(value)))
    except MediaSpecError as exc:
        raise click.UsageError(str(exc)) from exc


def _check_media_ports_setting(value: Any, _settings: Mapping[str, Any]) -> None:
    try:
        parse_port_range(str(value))
    except MediaSpecError as exc:
        raise click.UsageError(str(exc)) from exc


def _check_trusted_setting(value: Any) -> None:
    _parse_trusted(tuple(str(item) for item in value))


def _check_listen_setting(value: Any, settings: Mapping[str, Any]) -> None:
    listens = _parse_listens([str(spec) for spec in value])
    if any(listen.transport == "tls" for listen in listens) and not (settings.get("cert") and settings.get("key")):
        raise click.UsageError("a tls listen needs cert and key set too")


# The checks `serve` makes in its body rather than in an option's click type, by parameter name;
# click types (ranges, choices, paths that must exist) are checked for every option without this.
_SERVE_CHECKS: dict[str, Callable[[Any, Mapping[str, Any]], None]] = {
    "listen_specs": _check_listen_setting,
    "cert": lambda value, _settings: _check_readable(str(value), "TLS certificate"),
    "key": lambda value, _settings: _check_readable(str(value), "TLS private key"),
    "trusted": lambda value, _settings: _check_trusted_setting(value),
    "media_address": _check_media_address_setting,
    "media_ports_spec": _check_media_ports_setting,
    "sounds_dir": _check_sounds_setting,
    "web": _check_web_setting,
}


def _database_mistake(config: ConfigFile) -> Mistake | None:
    value = config.values.get(DATABASE_KEY)
    if not isinstance(value, str) or not value.strip():
        return None  # absent, or already found to be of the wrong type
    url = database_url(value.strip())
    try:
        make_engine(url).dispose()
    except StoreError as exc:
        return Mistake(DATABASE_KEY, config.line(DATABASE_KEY), str(exc))
    path = sqlite_path(url)
    if path is not None and not Path(path).parent.is_dir():
        return Mistake(DATABASE_KEY, config.line(DATABASE_KEY), f"the directory {Path(path).parent} does not exist")
    return None


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def config_check(ctx: click.Context, file: Path | None) -> None:
    """Check a config file (default: $SENTRAL_CONFIG, else /etc/sentral/sentral.toml).

    Every mistake is one line on stderr naming the key and its line, and the exit code is 1.
    """
    path = config_path(file)
    if path is None:
        raise OperatorError(f"there is no config file to check: give one, set ${ENV_CONFIG} or create {DEFAULT_CONFIG}")
    config = _read_config(path)
    serve_ctx = click.Context(serve, info_name="serve", parent=ctx)
    settings, mistakes = default_map(serve_ctx, config)
    keys = option_keys(serve)
    for key in config.values:
        option = keys.get(key, (None, False))[0]
        if option is None or option.name not in settings or option.name not in _SERVE_CHECKS:
            continue
        try:
            _SERVE_CHECKS[option.name](settings[option.name], settings)
        except click.ClickException as exc:
            mistakes.append(Mistake(key, config.line(key), exc.format_message()))
    database_mistake = _database_mistake(config)
    if database_mistake is not None:
        mistakes.append(database_mistake)
    if mistakes:
        mistakes.sort(key=lambda mistake: mistake.line if mistake.line is not None else 0)
        raise ConfigMistakes(path, mistakes)
    click.echo(f"{path} is valid.")


_SOURCES = {
    click.core.ParameterSource.COMMANDLINE: "command line",
    click.core.ParameterSource.ENVIRONMENT: "environment",
    click.core.ParameterSource.DEFAULT_MAP: "file",
    click.core.ParameterSource.DEFAULT: "default",
}


def _source_name(ctx: click.Context, name: str) -> str:
    source = ctx.get_parameter_source(name)
    return _SOURCES.get(source, "default") if source is not None else "default"


def _setting_json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_setting_json(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _setting_text(value: Any) -> str:
    if value is None or value == ():
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ", ".join(str(item) for item in value)
    return str(value)


@config_group.command(
    "show", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.argument("serve_args", nargs=-1, type=click.UNPROCESSED, metavar="[SERVE OPTIONS]")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool, serve_args: tuple[str, ...]) -> None:
    """Show the settings `sentral serve [SERVE OPTIONS]` would run with, and where each comes from.

    SOURCE is the command line, the environment, the config file or the built-in default; an
    empty listen or trust means serve's own default (udp and tcp on 0.0.0.0:5060; loopback).
    """
    with serve.make_context("serve", list(serve_args), parent=ctx) as serve_ctx:
        target = serve_ctx.find_object(Target)
        assert target is not None
        rows: list[tuple[str, Any, str]] = [
            ("config", serve_ctx.meta.get(_CONFIG_FILE), _source_name(serve_ctx, "config")),
            (DATABASE_KEY, target.where, serve_ctx.meta.get(_DATABASE_SOURCE, "default")),
        ]
        for param in serve.get_params(serve_ctx):
            if not isinstance(param, click.Option) or param.name is None or param.name == "help":
                continue
            long_name = next((name for name in param.opts if name.startswith("--")), None)
            if long_name is None or param.name not in serve_ctx.params:
                continue
            rows.append((long_name[2:], serve_ctx.params[param.name], _source_name(serve_ctx, param.name)))
    if as_json:
        _emit_json([{"key": key, "value": _setting_json(value), "source": source} for key, value, source in rows])
        return
    _emit_table(("KEY", "VALUE", "SOURCE"), [(key, _setting_text(value), source) for key, value, source in rows], "")


# -- backups -------------------------------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@_spool_option
@pass_target
def backup(target: Target, file: Path, force: bool, spool_dir: Path | None) -> None:
    """Write a consistent copy of the SQLite database to FILE, also while the server runs.

    The copy is taken through SQLite's online backup API and renamed into place once it is whole.
    For PostgreSQL use pg_dump (see README). Back up the spool directory too when it is not empty.
    """
    path = sqlite_path(target.url)
    if path is None:
        raise OperatorError(
            f"sentral backup copies SQLite databases; back up {target.where} with pg_dump, e.g. "
            f"{pg_dump_command(target.url)}"
        )
    try:
        made = backup_sqlite(Path(path), file.absolute(), force=force)
    except BackupError as exc:
        raise OperatorError(str(exc)) from exc
    schema = f", schema version {made.revision}" if made.revision else ""
    click.echo(f"Backed up {path} to {made.path} ({made.size} bytes{schema}).")
    waiting = _spool_depth(target, spool_dir)
    if not waiting.empty:
        click.echo(
            f"sentral: warning: {waiting.sentence()}; they are not in this backup: back up that "
            "directory too, or back up again once the server has stored them",
            err=True,
        )


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--no-keep", is_flag=True, help=f"Do not keep the replaced database as NAME{KEPT_SUFFIX}."
)
@pass_target
def restore(target: Target, file: Path, no_keep: bool) -> None:
    """Put the backup FILE in place of the SQLite database; the server must be stopped.

    The replaced database is kept beside it as NAME.before-restore unless --no-keep is given.
    """
    path = sqlite_path(target.url)
    if path is None:
        raise OperatorError(
            f"sentral restore puts back SQLite backups; restore {target.where} from a pg_dump file with "
            "pg_restore --clean --if-exists --dbname=URL FILE"
        )
    try:
        restored = restore_sqlite(file.absolute(), Path(path), keep=not no_keep)
    except BackupError as exc:
        raise OperatorError(str(exc)) from exc
    click.echo(f"Restored {path} from {file} (schema version {restored.revision}).")
    if restored.kept is not None:
        click.echo(f"The database it replaced is kept as {restored.kept}.")
    if not restored.current:
        click.echo(
            "Its schema is older than this version of sentral: run `sentral init --domain DOMAIN` (the "
            "clinic's domain) to upgrade it before serving."
        )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sentral")


__all__ = ["cli", "main"]
