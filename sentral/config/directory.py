"""The directory: an immutable in-memory snapshot of clinics and staff for the call path.

The call path never reads the database. The server loads a ``Directory`` at start, then polls
``directory_version`` (one cheap query) and loads a fresh snapshot when the number moved; lookups
in between are dictionary reads on frozen objects, safe to share between tasks and threads.

The version is read before the rows. A change committed after that read bumps the counter past the
version recorded in the snapshot, so the next poll sees it and reloads even if part of the change
was already visible. On PostgreSQL the snapshot is additionally read in one REPEATABLE READ
transaction so it is self-consistent; SQLite transactions are snapshots already.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy import Engine, select

from sentral.config.models import Clinic, DirectoryVersion, Role, Staff, StaffRole


@dataclass(frozen=True, slots=True)
class ClinicEntry:
    """A clinic as the call path sees it; ``digest_algorithms`` in challenge order."""

    domain: str
    name: str
    digest_algorithms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StaffEntry:
    """A member of staff as the call path sees it, with the HA1 hashes digest auth checks against."""

    domain: str
    extension: str
    name: str
    roles: tuple[str, ...]
    ha1_md5: str
    ha1_sha256: str

    def ha1(self, algorithm: str) -> str:
        """The HA1 for ``algorithm`` ("MD5" or "SHA-256")."""
        if algorithm == "MD5":
            return self.ha1_md5
        if algorithm == "SHA-256":
            return self.ha1_sha256
        raise KeyError(algorithm)


@dataclass(frozen=True, slots=True)
class Directory:
    """Clinics by domain and staff by (domain, extension), as of ``version``."""

    version: int
    clinics: Mapping[str, ClinicEntry]
    staff: Mapping[tuple[str, str], StaffEntry]

    def staff_for(self, domain: str, extension: str) -> StaffEntry | None:
        """The staff member at ``extension`` in clinic ``domain``, if any."""
        return self.staff.get((domain.lower(), extension))

    def clinic(self, domain: str) -> ClinicEntry | None:
        """The clinic serving ``domain``, if any."""
        return self.clinics.get(domain.lower())


def directory_version(engine: Engine) -> int:
    """The current configuration version; changes whenever the directory does."""
    with engine.connect() as connection:
        return int(connection.execute(select(DirectoryVersion.version)).scalar_one())


def load_directory(engine: Engine) -> Directory:
    """Read clinics, staff and their roles into a frozen ``Directory``."""
    connection = engine.connect()
    if engine.dialect.name == "postgresql":
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
    with connection, connection.begin():
        version = int(connection.execute(select(DirectoryVersion.version)).scalar_one())
        clinic_rows = connection.execute(select(Clinic.id, Clinic.domain, Clinic.name, Clinic.digest_algorithms))
        domains: dict[int, str] = {}
        clinics: dict[str, ClinicEntry] = {}
        for clinic_id, domain, name, algorithms in clinic_rows:
            domains[clinic_id] = domain
            clinics[domain] = ClinicEntry(domain, name, parse_stored_algorithms(algorithms))
        roles: dict[int, list[str]] = {}
        role_rows = connection.execute(
            select(StaffRole.staff_id, Role.name).join(Role, Role.id == StaffRole.role_id).order_by(Role.name)
        )
        for staff_id, role_name in role_rows:
            roles.setdefault(staff_id, []).append(role_name)
        staff: dict[tuple[str, str], StaffEntry] = {}
        staff_rows = connection.execute(
            select(Staff.id, Staff.clinic_id, Staff.extension, Staff.name, Staff.ha1_md5, Staff.ha1_sha256)
        )
        for staff_id, clinic_id, extension, name, ha1_md5, ha1_sha256 in staff_rows:
            domain = domains[clinic_id]
            staff[(domain, extension)] = StaffEntry(
                domain, extension, name, tuple(roles.get(staff_id, ())), ha1_md5, ha1_sha256
            )
    return Directory(version, MappingProxyType(clinics), MappingProxyType(staff))


def parse_stored_algorithms(text: str) -> tuple[str, ...]:
    """Split the stored comma-separated algorithm list ("SHA-256,MD5") into a tuple."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


__all__ = [
    "ClinicEntry",
    "Directory",
    "StaffEntry",
    "directory_version",
    "load_directory",
    "parse_stored_algorithms",
]
