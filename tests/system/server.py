"""The real Sentral server as a child process on loopback, for system tests.

`SentralServer.start()` runs ``sentral --db URL serve`` on one UDP and one TCP port of 127.0.0.1 and
returns once the server answers a SIP OPTIONS over UDP (any final or provisional SIP response will
do) and accepts TCP connections. Its stdout and stderr go to a log file whose tail is put into every
failure message, so a test that fails shows what the server said.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from sqlalchemy import create_engine

from sentral.config.directory import directory_version
from tests.system.peers import LOOPBACK, REPO_ROOT, free_port, tail

_RELOADED = re.compile(r"directory_reloaded\s+version=(\d+)")


class ServerError(AssertionError):
    """The server did not start, did not stop, or a CLI call failed; the message has its log."""


def sentral_command() -> list[str]:
    """The sentral console script of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "sentral"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("sentral")
    if found:
        return [found]
    return [sys.executable, "-m", "sentral"]


def options_request(host: str, port: int, local_port: int) -> bytes:
    """A minimal, well-formed OPTIONS to the server itself."""
    branch = "z9hG4bK" + uuid.uuid4().hex
    tag = uuid.uuid4().hex[:10]
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{host}>;tag={tag}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@{host}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode()


def sip_options_ping(host: str, port: int, timeout: float = 0.25) -> str | None:
    """Send one OPTIONS over UDP; the status line of the response, or None if nothing came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(timeout)
        try:
            sock.sendto(options_request(host, port, sock.getsockname()[1]), (host, port))
            data = sock.recv(65536)
        except OSError:
            return None
    first = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return first if first.startswith("SIP/2.0 ") else None


def tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.25):
            return True
    except OSError:
        return False


class SentralServer:
    """``sentral serve`` on 127.0.0.1:port (UDP and TCP), with its CLI on the same database."""

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
        drop_env: Sequence[str] = (),
    ) -> None:
        """``command`` runs another installation's sentral; ``drop_env`` names variables the
        server and its CLI must not inherit."""
        self.db_url = db_url
        self.command = list(command) if command is not None else sentral_command()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.env = {key: value for key, value in {**os.environ, **(env or {})}.items() if key not in drop_env}
        self.log_path = workdir / "sentral-serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        """ "127.0.0.1:PORT", the form softphones and SIPp take as their server."""
        return f"{self.host}:{self.port}"

    def __enter__(self) -> SentralServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SentralServer({self.address}, pid={self.proc.pid if self.proc else None})"

    def serve_command(self) -> list[str]:
        return [
            *self.command,
            "--db", self.db_url,
            "serve",
            "--listen", f"udp:{self.host}:{self.port}",
            "--listen", f"tcp:{self.host}:{self.port}",
            *self.extra_args,
        ]  # fmt: skip

    def log_tail(self, lines: int = 60) -> str:
        if self._log is not None:
            self._log.flush()
        return tail(self.log_path, lines)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> SentralServer:
        """Start the server and wait until it answers SIP over UDP and accepts TCP."""
        if self.running():
            raise ServerError(f"{self!r} is already running")
        self.starts += 1
        self._log = self.log_path.open("ab")
        self._log.write(f"\n=== start {self.starts}: {' '.join(self.serve_command())}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.serve_command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self, timeout: float) -> str:
        """Poll with OPTIONS until a SIP response comes back; returns its status line."""
        deadline = time.monotonic() + timeout
        status: str | None = None
        while time.monotonic() < deadline:
            if not self.running():
                code = self.proc.returncode if self.proc else None
                raise ServerError(f"sentral serve exited with {code} while starting\n{self.log_tail()}")
            if status is None:
                status = sip_options_ping(self.host, self.port)
            if status is not None and tcp_accepts(self.host, self.port):
                return status
            if status is not None:
                time.sleep(0.05)
        what = "answer OPTIONS over UDP" if status is None else "accept TCP connections"
        raise ServerError(
            f"sentral serve on {self.address} did not {what} within {timeout:.0f}s\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; a server that does not exit in time is killed and the test fails."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired as exc:
                    self.kill()
                    raise ServerError(
                        f"sentral serve ignored SIGTERM for {timeout:.0f}s and was killed\n{self.log_tail()}"
                    ) from exc
            return self.proc.returncode
        finally:
            self._close_log()

    def kill(self) -> None:
        """SIGKILL the server's process group (a crash or power loss) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10.0)
        self._close_log()

    def restart(self, timeout: float = 20.0) -> SentralServer:
        """Stop (gracefully) and start again on the same ports and database."""
        self.stop()
        return self.start(timeout)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def cli(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``sentral --db URL ARGS``; with check, a non-zero exit fails with its output."""
        cmd = [*self.command, "--db", self.db_url, *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"$ {' '.join(cmd)}\ntook longer than {timeout:.0f}s") from exc
        if check and done.returncode != 0:
            raise ServerError(
                f"$ {' '.join(cmd)}\nexited {done.returncode}\n-- stdout:\n{done.stdout}\n-- stderr:\n{done.stderr}"
            )
        return done

    def cli_batch(self, *commands: Sequence[str], timeout: float = 60.0) -> None:
        """Run several ``sentral`` commands in one process (see cli_batch.py); the first failure
        fails with its output."""
        cmd = [sys.executable, "-m", "tests.system.cli_batch", "--db", self.db_url]
        listing = "\n".join(f"$ sentral {' '.join(args)}" for args in commands)
        try:
            done = subprocess.run(
                cmd,
                input=json.dumps([list(args) for args in commands]),
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env,
                cwd=REPO_ROOT,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"{listing}\ntook longer than {timeout:.0f}s") from exc
        if done.returncode != 0:
            raise ServerError(f"{listing}\n-- stdout:\n{done.stdout}\n-- stderr:\n{done.stderr}")

    def loaded_version(self) -> int | None:
        """The latest directory version the running server logged it reloaded, if any."""
        if self._log is not None:
            self._log.flush()
        if not self.log_path.exists():
            return None
        found = _RELOADED.findall(self.log_path.read_text(errors="replace"))
        return int(found[-1]) if found else None

    def reconfigure(self, *args: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
        """Run a CLI change, then wait until the running server has loaded it."""
        done = self.cli(*args)
        self.wait_loaded(timeout)
        return done

    def wait_loaded(self, timeout: float = 5.0) -> None:
        """Wait until the running server has loaded the configuration the database holds now: its
        log names a directory version at least the database's (it polls every half second)."""
        engine = create_engine(self.db_url)
        try:
            wanted = directory_version(engine)
        finally:
            engine.dispose()
        deadline = time.monotonic() + timeout
        while (self.loaded_version() or 0) < wanted:
            if time.monotonic() > deadline or not self.running():
                raise ServerError(
                    f"the server did not load directory version {wanted} within {timeout:.0f}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def cli_json(self, *args: str) -> Any:
        """Run a listing with --json and parse its output."""
        done = self.cli(*args, "--json")
        try:
            return json.loads(done.stdout)
        except ValueError as exc:
            raise ServerError(f"sentral {' '.join(args)} --json printed no JSON:\n{done.stdout}") from exc

    def registrations(self) -> list[dict[str, Any]]:
        """`sentral registrations --json`: extension, domain, contact, transport, source, expires_in."""
        rows = self.cli_json("registrations")
        if not isinstance(rows, list):
            raise ServerError(f"sentral registrations --json printed {type(rows).__name__}, not a list")
        return rows
