"""A PostgreSQL server of a test's own, which the test may stop and start again.

The shared test cluster serves every other storage test, so an outage test must not stop it.
``PrivatePostgres`` makes a throwaway cluster with Debian's server binaries (``initdb`` and
``pg_ctl`` under /usr/lib/postgresql/VERSION/bin), run as the ``postgres`` user since PostgreSQL
refuses to run as root, listening on a free loopback port with trust authentication, and removes
it afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.system.peers import LOOPBACK, free_port


def _server_binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


class PrivatePostgres:
    """A cluster in a temporary directory: ``start``, ``stop`` (fast shutdown, as an operator's
    restart does), ``url`` for Sentral, and ``remove``."""

    def __init__(self) -> None:
        bindir = _server_binaries()
        if bindir is None or os.geteuid() != 0:
            why = "needs Debian's postgresql server binaries and root (to run them as postgres)"
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
        self.bindir = bindir
        self.user = pwd.getpwnam("postgres")
        self.root = Path(tempfile.mkdtemp(prefix="sentral-pg-"))
        os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_postgres(
            str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses={LOOPBACK} -c fsync=off"
        self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)
