"""The csv adapter: numbers typed any way, a header, bad rows, and reloading when the file changes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sentral.adapters import CallerKind, Match
from sentral.adapters.csv_file import CsvAdapter
from sentral.config.directory import AdapterEntry


def write(path: Path, body: str, mtime: int) -> None:
    path.write_text(body, encoding="utf-8")
    os.utime(path, ns=(mtime, mtime))


def test_rows_are_read_in_any_format_and_reloaded_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "patients.csv"
    write(
        path,
        "name,number,kind,reference\n"
        "Ola Nordmann,+47 912 34 501,patient,P1\n"
        "Apotek 1,004722334455,contact\n"
        "Kari Nordmann,912-34-502\n"
        "Not A Number,call me\n"
        "\n"
        "Bad Kind,91234503,wizard\n",
        1_000_000_000,
    )
    csv = CsvAdapter(AdapterEntry("clinic.test", "list", "csv", 1, file=str(path)))
    csv.recheck = 0.0

    async def run() -> list[Match | None]:
        found = [await csv.by_number(number) for number in ("+4791234501", "+4722334455", "+4791234502", "+4791234503")]
        write(path, "Ola Nordmann Jr,91234501,,P9\n", 2_000_000_000)
        found.append(await csv.by_number("+4791234501"))
        found.append(await csv.by_number("+4722334455"))
        path.unlink()  # a missing file keeps the last list
        found.append(await csv.by_number("+4791234501"))
        found.append(await csv.by_national_id("15076500565"))
        return found

    found = asyncio.run(run())
    assert found == [
        Match("Ola Nordmann", CallerKind.PATIENT, "P1", "list"),
        Match("Apotek 1", CallerKind.CONTACT, "", "list"),
        Match("Kari Nordmann", CallerKind.PATIENT, "", "list"),
        None,
        Match("Ola Nordmann Jr", CallerKind.PATIENT, "P9", "list"),
        None,
        Match("Ola Nordmann Jr", CallerKind.PATIENT, "P9", "list"),
        None,
    ]
