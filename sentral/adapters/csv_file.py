"""The ``csv`` adapter: a small clinic's patient list as a CSV file.

Each row is ``name,number[,kind[,reference]]``; a first row whose number column does not read as a
phone number (a header such as ``name,number,kind,reference``) is skipped, as are blank rows and
rows whose number does not read as one (they are counted in a WARNING without their contents).
Numbers may be written any way (``read_stored``), national forms in the clinic's country. ``kind``
is patient, contact or staff (blank: patient). The first row for a number wins.

The file is re-read, off the event loop, when its modification time or size changes; the check is
a ``stat`` at most once a second. A file that is missing or unreadable keeps the last good list.
The CSV has no national IDs: ``by_national_id`` never matches.
"""

from __future__ import annotations

import asyncio
import csv
import os
import time
from types import MappingProxyType

import structlog

from sentral.adapters.caller import AdapterError, Match, parse_kind
from sentral.adapters.numbers import read_stored
from sentral.config.directory import AdapterEntry, Directory

log = structlog.get_logger("sentral.adapters")

RECHECK = 1.0  # seconds between looks at the file's modification time


def read_rows(path: str, region: str, source: str) -> tuple[dict[str, Match], int]:
    """The file's callers by E.164 number, and how many rows were skipped as unreadable."""
    found: dict[str, Match] = {}
    skipped = 0
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for index, row in enumerate(csv.reader(handle)):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            number = read_stored(cells[1], region) if len(cells) > 1 else None
            if number is None:
                if index > 0 or cells[0].lower() != "name":
                    skipped += 1
                continue
            try:
                kind = parse_kind(cells[2] if len(cells) > 2 else None)
            except ValueError:
                skipped += 1
                continue
            reference = cells[3] if len(cells) > 3 else ""
            found.setdefault(number, Match(cells[0], kind, reference, source))
    return found, skipped


class CsvAdapter:
    """Callers by number from a CSV file, re-read when it changes."""

    def __init__(self, entry: AdapterEntry) -> None:
        if not entry.file:
            raise AdapterError(f"The csv adapter {entry.name!r} needs a file: give --file PATH.")
        self.name = entry.name
        self.domain = entry.domain
        self.path = entry.file
        self.region = "NO"
        self._rows: MappingProxyType[str, Match] = MappingProxyType({})
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._checked = float("-inf")
        self.recheck = RECHECK
        self._lock = asyncio.Lock()

    def use_directory(self, directory: Directory) -> None:
        """Read national numbers in the clinic's country."""
        clinic = directory.clinic(self.domain)
        region = clinic.country if clinic is not None else "NO"
        if region != self.region:
            self.region = region
            self._seen = None  # the same digits may mean other numbers now

    async def by_number(self, e164: str) -> Match | None:
        """The file's row for ``e164``, if any."""
        await self._refresh()
        return self._rows.get(e164)

    async def by_national_id(self, national_id: str) -> Match | None:
        """Never a match: the file holds no national IDs."""
        return None

    async def close(self) -> None:
        """Nothing to release."""

    async def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck and self._seen is not None:
            return
        async with self._lock:
            self._checked = now
            try:
                stat = os.stat(self.path)
            except OSError as error:
                log.warning("csv_unreadable", adapter=self.name, error=type(error).__name__)
                return
            seen = (stat.st_mtime_ns, stat.st_size)
            if seen == self._seen:
                return
            try:
                rows, skipped = await asyncio.to_thread(read_rows, self.path, self.region, self.name)
            except (OSError, UnicodeDecodeError, csv.Error) as error:
                log.warning("csv_unreadable", adapter=self.name, error=type(error).__name__)
                return
            self._rows, self._seen = MappingProxyType(rows), seen
            log.info("csv_loaded", adapter=self.name, callers=len(rows), skipped=skipped)


def csv_adapter(entry: AdapterEntry) -> CsvAdapter:
    """The ``csv`` entry point."""
    return CsvAdapter(entry)


__all__ = ["CsvAdapter", "csv_adapter", "read_rows"]
