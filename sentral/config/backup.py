"""Backups of an SQLite database, taken while the server runs, and putting one back.

Theory of operation. The server keeps its SQLite database in WAL mode: committed changes may live
in ``NAME-wal`` for a while before a checkpoint moves them into the main file, so a file copy of
the database taken while the server writes can miss them or tear a page. ``backup_sqlite``
instead reads through SQLite's online backup API on a read-only connection: the copy is one read
transaction, a consistent snapshot that never waits for the server and never holds it up. The copy
is written to a temporary file beside the destination, switched to a self-contained rollback
journal, checked, fsynced and only then renamed into place, so a crash or a full disk never
leaves a half-written backup under the name asked for.

``restore_sqlite`` puts a backup in place of a database that no process has open. Every
connection to a WAL database, the server's idle pooled ones included, holds a shared lock on it
while open; an exclusive lock can be taken only when there is none, which makes it the sound test
for "no server is running on this file". The lock is held across the swap, the old database's WAL
is first folded into its main file (so the copy kept as ``NAME.before-restore`` is whole), and
the new file is renamed over the old one in a single step. PostgreSQL has ``pg_dump`` and
``pg_restore`` for all this; ``pg_dump_command`` says how to call them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sentral.config.db import MIGRATIONS, StoreError

SQLITE_HEADER = b"SQLite format 3\x00"
KEPT_SUFFIX = ".before-restore"
# How long the backup's read may wait for a lock an SQLite writer holds while it checkpoints.
READ_TIMEOUT_S = 5.0


class BackupError(StoreError):
    """A backup or a restore that cannot be done, worded as one sentence the operator can act on."""


@dataclass(frozen=True, slots=True)
class Backup:
    """A backup written: where, its size, and the schema version it carries (None if none)."""

    path: Path
    size: int
    revision: str | None


@dataclass(frozen=True, slots=True)
class Restored:
    """A restore done: the schema version put back, whether it is the newest, and what was kept."""

    revision: str
    current: bool
    kept: Path | None


def schema_revisions() -> list[str]:
    """The migration versions this Sentral knows, oldest first."""
    script = ScriptDirectory(str(MIGRATIONS))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def pg_dump_command(url: str, file: str = "sentral.dump") -> str:
    """The ``pg_dump`` command that backs up the PostgreSQL database at ``url`` (password hidden)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"pg_dump --format=custom --file={file} DATABASE"
    plain = parsed.set(drivername="postgresql").difference_update_query(["options"])
    return f"pg_dump --format=custom --file={file} '{plain.render_as_string(hide_password=True)}'"


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=READ_TIMEOUT_S)


def _revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return str(row[0]) if row is not None else None


def _quick_check(connection: sqlite3.Connection) -> str | None:
    """None when SQLite finds the database sound, else its first complaint."""
    first = connection.execute("PRAGMA quick_check").fetchone()
    return None if first is not None and first[0] == "ok" else str(first[0] if first else "no answer")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _temporary_beside(final: Path) -> Iterator[Path]:
    """A new empty file in ``final``'s directory (mode 0600), removed again unless renamed away."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def _copy(source: sqlite3.Connection, temporary: Path) -> str | None:
    """Copy ``source`` into ``temporary`` as a self-contained file on disk; return its schema version."""
    target = sqlite3.connect(temporary, isolation_level=None)
    try:
        # One step: the whole copy is a single read transaction on the source, a consistent snapshot.
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")
        problem = _quick_check(target)
        if problem is not None:
            raise BackupError(f"the copy failed SQLite's check ({problem}); nothing was written")
        revision = _revision(target)
    finally:
        target.close()
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    return revision


def _place(temporary: Path, final: Path, *, replace: bool) -> None:
    """Rename ``temporary`` to ``final`` in one step; without ``replace`` never over an existing file."""
    if replace:
        os.replace(temporary, final)
    else:
        # A hard link fails if the name exists: no window in which another file could be overwritten.
        try:
            os.link(temporary, final)
        except FileExistsError:
            raise BackupError(f"{final} already exists; give another name or --force to replace it") from None
    _fsync_directory(final.parent)


def _oserror(action: str, path: Path, exc: OSError) -> BackupError:
    return BackupError(f"cannot {action} {path}: {exc.strerror or exc}")


def backup_sqlite(database: Path, destination: Path, *, force: bool = False) -> Backup:
    """Write a consistent copy of the SQLite ``database`` to ``destination``, atomically."""
    if not database.is_file():
        raise BackupError(f"there is no database at {database}; point --db at the one the server uses")
    if destination.is_dir():
        raise BackupError(f"{destination} is a directory; give the backup's file name")
    if not destination.parent.is_dir():
        raise BackupError(f"the directory {destination.parent} does not exist; create it first")
    if destination.exists():
        if not force:
            raise BackupError(f"{destination} already exists; give another name or --force to replace it")
        if destination.samefile(database):
            raise BackupError(f"{destination} is the database itself; give the backup another name")
    try:
        with _temporary_beside(destination) as temporary:
            source = _read_only(database)
            try:
                revision = _copy(source, temporary)
            finally:
                source.close()
            size = temporary.stat().st_size
            _place(temporary, destination, replace=force)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {database}: {exc}") from None
    except OSError as exc:
        raise _oserror("write the backup", destination, exc) from None
    return Backup(destination, size, revision)


def check_backup(path: Path) -> str:
    """The schema version a backup carries; raises ``BackupError`` unless it is a sound Sentral database."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise _oserror("read", path, exc) from None
    if header != SQLITE_HEADER:
        raise BackupError(f"{path} is not an SQLite database; give a file made by `sentral backup`")
    try:
        connection = _read_only(path)
        try:
            revision = _revision(connection)
            problem = _quick_check(connection) if revision is not None else None
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read {path} as an SQLite database: {exc}") from None
    if revision is None:
        raise BackupError(f"{path} is an SQLite database but not a Sentral one (it has no Sentral schema)")
    if problem is not None:
        raise BackupError(f"{path} is damaged ({problem}); restore another backup")
    if revision not in schema_revisions():
        raise BackupError(
            f"{path} carries schema version {revision}, which this Sentral does not know: it was made by a "
            "newer version; install that version to restore it"
        )
    return revision


def _exclusive(database: Path) -> sqlite3.Connection:
    """Lock ``database`` against every other connection, with its WAL folded into the main file."""
    connection = sqlite3.connect(database, isolation_level=None, timeout=0)
    try:
        connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        connection.execute("BEGIN EXCLUSIVE")
        connection.execute("COMMIT")
        connection.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError as exc:
        connection.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise BackupError(
                f"the database {database} is in use (a running server or another sentral command has it "
                "open); stop the server before restoring"
            ) from None
        raise BackupError(f"cannot open the database {database}: {exc}") from None
    return connection


def restore_sqlite(backup: Path, database: Path, *, keep: bool = True) -> Restored:
    """Put ``backup`` in place of the SQLite ``database``, keeping the old one unless told not to."""
    revision = check_backup(backup)
    if not database.parent.is_dir():
        raise BackupError(f"the directory {database.parent} does not exist; create it first")
    if database.exists() and database.samefile(backup):
        raise BackupError(f"{backup} is the database itself; nothing to restore")
    kept = database.with_name(database.name + KEPT_SUFFIX) if keep and database.exists() else None
    if kept is not None and kept.exists():
        raise BackupError(f"{kept} is there from an earlier restore; move it away first, or give --no-keep")
    lock = _exclusive(database) if database.exists() else None
    try:
        with _temporary_beside(database) as temporary:
            source = _read_only(backup)
            try:
                _copy(source, temporary)
            finally:
                source.close()
            if lock is None:
                # A WAL or journal left beside a database that is gone belongs to that database.
                for stale in ("-wal", "-shm", "-journal"):
                    database.with_name(database.name + stale).unlink(missing_ok=True)
            if kept is not None:
                os.link(database, kept)
            os.replace(temporary, database)
            _fsync_directory(database.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot restore {backup}: {exc}") from None
    except OSError as exc:
        raise _oserror("restore into", database, exc) from None
    finally:
        if lock is not None:
            lock.close()
    return Restored(revision, revision == schema_revisions()[-1], kept)


__all__ = [
    "KEPT_SUFFIX",
    "Backup",
    "BackupError",
    "Restored",
    "backup_sqlite",
    "check_backup",
    "pg_dump_command",
    "restore_sqlite",
    "schema_revisions",
]
