"""The operator's CLI: set up the database, manage clinics and staff, list registrations and calls, serve.

Every command is scriptable: listings take ``--json`` (a JSON array of objects), and a mistake
ends with one sentence on stderr saying what to fix and exit code 1 (usage errors exit 2), never a
traceback. Changes are committed through ``ConfigStore``, which bumps the directory version, so a
running server picks them up within a second.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO, cast

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from sentral.config.cdr import LIVE_MAX_AGE, CallRecord, CdrStore, LegRecord, LiveCall, LiveCallStore
from sentral.config.db import (
    StoreError,
    database_url,
    describe_url,
    make_engine,
    migrate,
    schema_is_current,
    sqlite_path,
)
from sentral.config.settings import SERVE_DEFAULTS, Listen, ListenSpecError, ServeConfig, parse_listen
from sentral.config.store import (
    BindingRow,
    BindingStore,
    ConfigStore,
    NewStaff,
    parse_digest_algorithms,
    validate_extension,
    validate_name,
    validate_password,
)
from sentral.logs import LEVELS, LogFormat, configure

DEFAULT_DOMAIN = "clinic.local"
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


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


@contextmanager
def _translated(target: Target) -> Iterator[None]:
    """Turn storage failures into operator sentences."""
    try:
        yield
    except StoreError as exc:
        raise OperatorError(str(exc)) from exc
    except DBAPIError as exc:
        raise OperatorError(f"the database at {target.where} refused the operation: {_first_line(exc)}") from exc


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
        raise OperatorError(f"cannot open the database at {target.where}: {_first_line(exc)}") from exc
    if not current:
        engine.dispose()
        raise OperatorError(
            f"the database at {target.where} is not set up for this version of sentral; run `sentral init` first"
        )
    click.get_current_context().call_on_close(engine.dispose)
    return engine


def _emit_json(items: Sequence[dict[str, Any]]) -> None:
    click.echo(json.dumps(list(items), indent=2, ensure_ascii=False))


def _emit_table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    for line in (headers, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


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
    ctx.obj = Target(database_url(db))


pass_target = click.make_pass_decorator(Target)


@cli.command()
@click.option("--domain", default=DEFAULT_DOMAIN, show_default=True, help="SIP domain of the clinic.")
@click.option("--demo", is_flag=True, help="Also add demo staff 1001-1004 and print their passwords.")
@pass_target
def init(target: Target, domain: str, demo: bool) -> None:
    """Create or upgrade the database schema and the clinic; safe to run again."""
    engine = _open(target, creating=True)
    with _translated(target):
        migrate(engine)
        store = ConfigStore(engine)
        clinic = store.clinic(domain)
        if clinic is None:
            clinic = store.create_clinic(domain, DEMO_CLINIC_NAME if demo else None)
            click.echo(f"Created clinic {clinic.domain} in {target.where}.")
        else:
            click.echo(f"Clinic {clinic.domain} is ready in {target.where}.")
        if not demo:
            return
        existing = {entry.extension for entry in store.staff(clinic.domain)}
        created: list[tuple[DemoStaff, str]] = []
        for member in DEMO_STAFF:
            if member.extension in existing:
                continue
            password = secrets.token_urlsafe(9)
            store.add_staff(clinic.domain, member.extension, member.name, password, member.roles)
            created.append((member, password))
    if created:
        click.echo("\nDemo staff (the passwords are shown only now):")
        _emit_table(
            ("EXTENSION", "NAME", "ROLES", "PASSWORD"),
            [(m.extension, m.name, ",".join(m.roles), pw) for m, pw in created],
            "",
        )
    else:
        click.echo(
            "Demo staff 1001-1004 already exist; their passwords were shown when they were created "
            "(set a new one with `sentral user passwd 1001 --password ...`)."
        )
    click.echo(
        "\nTo register a softphone (Linphone, Zoiper, MicroSIP, ...):\n"
        f"  SIP domain / realm: {clinic.domain}\n"
        "  server (proxy):     127.0.0.1:5060, transport UDP or TCP\n"
        "  username:           the extension, e.g. 1001\n"
        "  password:           as printed when the extension was created\n"
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
            [{"domain": c.domain, "name": c.name, "digest_algorithms": list(c.digest_algorithms)} for c in clinics]
        )
        return
    _emit_table(
        ("DOMAIN", "NAME", "DIGEST"),
        [(c.domain, c.name, ",".join(c.digest_algorithms)) for c in clinics],
        "No clinics yet; create one with `sentral init --domain DOMAIN`.",
    )


@clinic.command("set")
@click.argument("domain")
@click.option(
    "--digest",
    required=True,
    metavar="sha256,md5|md5|sha256",
    help="Digest algorithms to challenge with, in order (older desk phones only do md5).",
)
@pass_target
def clinic_set(target: Target, domain: str, digest: str) -> None:
    """Change the settings of the clinic DOMAIN."""
    engine = _open(target)
    with _translated(target):
        entry = ConfigStore(engine).set_digest_algorithms(domain, parse_digest_algorithms(digest))
    click.echo(f"Clinic {entry.domain} now challenges with {', '.join(entry.digest_algorithms)}.")


# -- staff ---------------------------------------------------------------------------------------


@cli.group()
def user() -> None:
    """Manage staff: extensions, names, passwords and roles."""


domain_option = click.option(
    "--domain", help="The clinic; may be left out when there is only one.", metavar="DOMAIN"
)


@user.command("add")
@click.argument("extension")
@click.option("--name", required=True, help="Full name, e.g. 'Kari Nordmann'.")
@click.option(
    "--password", prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters."
)
@click.option("--role", "roles", multiple=True, metavar="ROLE", help="A role such as doctor; repeatable.")
@domain_option
@pass_target
def user_add(
    target: Target, extension: str, name: str, password: str, roles: tuple[str, ...], domain: str | None
) -> None:
    """Add a member of staff at EXTENSION."""
    with _translated(target):
        # Check what the operator typed before looking at the database, so the first complaint is about it.
        validate_name(name, validate_extension(extension))
        validate_password(password)
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
    """List staff."""
    engine = _open(target)
    with _translated(target):
        store = ConfigStore(engine)
        staff = store.staff(store.resolve_domain(domain) if domain is not None else None)
    if as_json:
        _emit_json(
            [{"domain": s.domain, "extension": s.extension, "name": s.name, "roles": list(s.roles)} for s in staff]
        )
        return
    _emit_table(
        ("EXTENSION", "DOMAIN", "NAME", "ROLES"),
        [(s.extension, s.domain, s.name, ",".join(s.roles)) for s in staff],
        "No staff yet; add someone with `sentral user add EXT --name NAME`.",
    )


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
@click.option(
    "--password", prompt=True, hide_input=True, confirmation_prompt=True, help="At least 8 characters."
)
@domain_option
@pass_target
def user_passwd(target: Target, extension: str, password: str, domain: str | None) -> None:
    """Set a new password for EXTENSION."""
    with _translated(target):
        validate_extension(extension)
        validate_password(password)
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
        "callee": call.callee,
        "state": call.state,
        "legs": call.legs,
        **_times(started_at=call.started_at, answered_at=call.answered_at, updated_at=call.updated_at),
        "duration": round(call.duration(now), 3),
        "elapsed": round(max(0.0, now - call.started_at), 3),
    }


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_target
def calls(target: Target, as_json: bool) -> None:
    """List the calls in progress on the running servers.

    DURATION is the talk time of an answered call and the time since the call began for the others.
    """
    engine = _open(target)
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
                call.state,
                _clock(now - (call.answered_at if call.answered_at is not None else call.started_at)),
            )
            for call in live
        ],
        "No calls in progress.",
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


def _record_json(record: CallRecord) -> dict[str, Any]:
    return {
        "call_id": record.call_id,
        "domain": record.domain,
        "caller": record.caller,
        "caller_name": record.caller_name,
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
        "legs": [_leg_json(leg) for leg in record.legs],
    }


def _record_row(record: CallRecord) -> tuple[str, ...]:
    caller = f"{record.caller} ({record.caller_name})" if record.caller_name else record.caller
    callee = record.callee
    if record.callee_extension and record.callee_extension != record.callee:
        callee = f"{record.callee} -> {record.callee_extension}"
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
    """List call records, newest last; the table shows local time."""
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
    )


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
@click.option("--sip-trace", is_flag=True, help="Log every SIP message sent and received.")
@click.option("--log-format", type=click.Choice(["console", "json"]), default="console", show_default=True)
@click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), default="info", show_default=True)
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
@pass_target
def serve(
    target: Target,
    listen_specs: tuple[str, ...],
    cert: str | None,
    key: str | None,
    sip_trace: bool,
    log_format: str,
    log_level: str,
    trusted: tuple[str, ...],
    flood_rate: float,
    auth_failures: int,
    block_seconds: float,
    drain_timeout: float,
    no_answer_timeout: float,
    session_interval: int,
) -> NoReturn:
    """Run the softswitch until interrupted."""
    networks = _parse_trusted(trusted) if trusted else SERVE_DEFAULTS.trusted
    listens = _parse_listens(listen_specs) if listen_specs else SERVE_DEFAULTS.listens
    if any(listen.transport == "tls" for listen in listens):
        if not cert or not key:
            raise click.UsageError("a tls listen needs --cert FILE and --key FILE")
        _check_readable(cert, "TLS certificate")
        _check_readable(key, "TLS private key")
    _open(target).dispose()
    # The server is imported only here, so that every other command stays light and starts fast.
    from sentral.app import serve as run_server

    configure(cast(LogFormat, log_format), log_level)
    config = ServeConfig(
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
    )
    click.get_current_context().exit(run_server(config))


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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sentral")


__all__ = ["cli", "main"]
