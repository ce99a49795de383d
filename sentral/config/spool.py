"""The spool: a local journal that holds durable writes while the database cannot take them.

Theory of operation. A call's record must be stored before the BYE that ended it is answered, and
a registration's binding before its 200 OK; when the database is down (PostgreSQL restarting, the
network to it cut, SQLite's disk unavailable) both used to fail, and the record or binding was lost.
Instead, the group-commit writer (``sentral.config.writer``) appends what it could not commit to
a spool file on local disk and returns only after ``fsync``: the change is then as durable as a
commit, and the phone gets its answer. While anything is spooled, every later change is appended
behind it, so that the database later sees the changes in the order they were made; once the
database answers again the writer replays the whole spool in one transaction and only then empties
the file.

The file is JSON, one line per item, each line written whole and followed by a newline. A crash in
the middle of an append leaves a torn last line; that item was never acknowledged (``fsync`` had not
returned), so opening the spool cuts it off. A crash after the replay committed but before the file
was emptied replays the same items again: each writer's replay is idempotent (call records already
stored are skipped by call id; binding changes re-applied in order leave the same state), which is
what makes every item land exactly once.

Spooled records hold phone numbers: the file and its directory are readable by the server's user
alone. ``SpoolFile.peek`` counts a spool without opening it for writing, for ``sentral calls``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from sentral.config.db import StoreError, sqlite_path

Item = TypeVar("Item")

ENV_SPOOL = "SENTRAL_SPOOL"
DEFAULT_SPOOL = "sentral-spool"
CDR_SPOOL = "call-records.spool"
BINDING_SPOOL = "bindings.spool"


def default_spool_dir(db_url: str) -> Path:
    """Where the spool lives unless told: beside an SQLite file, else ``$SENTRAL_SPOOL`` or ./sentral-spool."""
    env = os.environ.get(ENV_SPOOL)
    if env:
        return Path(env).expanduser().absolute()
    path = sqlite_path(db_url)
    if path is not None:
        return Path(path + "-spool")
    return Path(DEFAULT_SPOOL).absolute()


class SpoolFile(Generic[Item]):
    """One append-only journal of items, opened by one writer; see the module docstring.

    ``encode`` turns an item into JSON-able values and ``decode`` turns them back.
    """

    def __init__(self, path: Path, encode: Callable[[Item], Any], decode: Callable[[Any], Item]) -> None:
        self.path = path
        self._encode = encode
        self._decode = decode
        self._file: Any = None
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def open(self) -> None:
        """Open (creating it if need be) and cut off a torn last line; raises ``StoreError``."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "r+b")
            data = self._file.read()
            whole = data.rfind(b"\n") + 1
            if whole < len(data):
                self._file.truncate(whole)
                os.fsync(self._file.fileno())
            self._file.seek(whole)
            self._count = data.count(b"\n", 0, whole)
        except OSError as exc:
            raise StoreError(f"the spool {self.path} cannot be opened: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Close the file; what it holds stays for the next start."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, items: Sequence[Item]) -> None:
        """Write ``items`` behind what the spool holds and return once they are on disk."""
        if self._file is None:
            self.open()
        data = b"".join(
            json.dumps(self._encode(item), separators=(",", ":")).encode() + b"\n" for item in items
        )
        start = self._file.tell()
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            # A half-written append must not stay in front of the next one.
            with contextlib.suppress(OSError):
                self._file.truncate(start)
                self._file.seek(start)
            raise StoreError(f"the spool {self.path} cannot be written: {exc.strerror or exc}") from None
        self._count += len(items)

    def items(self) -> list[Item]:
        """Everything spooled, oldest first."""
        if self._file is None:
            self.open()
        self._file.seek(0)
        data = self._file.read()
        return [self._decode(json.loads(line)) for line in data.splitlines() if line]

    def clear(self) -> None:
        """Empty the spool once its items are stored elsewhere."""
        if self._file is None:
            return
        self._file.truncate(0)
        self._file.seek(0)
        os.fsync(self._file.fileno())
        self._count = 0

    @staticmethod
    def peek(path: Path) -> int:
        """How many whole items the spool file at ``path`` holds (0 when there is none)."""
        try:
            with path.open("rb") as file:
                return file.read().count(b"\n")
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"the spool {path} cannot be read: {exc.strerror or exc}") from None


@dataclass(frozen=True, slots=True)
class SpoolDepth:
    """What waits in a server's spool for the database."""

    directory: Path
    call_records: int
    binding_changes: int

    @property
    def empty(self) -> bool:
        """Nothing waits."""
        return not self.call_records and not self.binding_changes

    def sentence(self) -> str:
        """The spool's state as an operator reads it."""
        return (
            f"{self.call_records} call records and {self.binding_changes} registration changes wait in "
            f"the spool {self.directory} for the database"
        )


def spool_depth(directory: Path) -> SpoolDepth:
    """Count what waits in the spool files of ``directory``."""
    return SpoolDepth(
        directory,
        SpoolFile.peek(directory / CDR_SPOOL),
        SpoolFile.peek(directory / BINDING_SPOOL),
    )


__all__ = [
    "BINDING_SPOOL",
    "CDR_SPOOL",
    "DEFAULT_SPOOL",
    "ENV_SPOOL",
    "SpoolDepth",
    "SpoolFile",
    "default_spool_dir",
    "spool_depth",
]
