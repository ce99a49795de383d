"""Real SIP peers for system tests: pjsua2 softphones (one process each) and SIPp runs.

A test drives a `Softphone` with commands and waits for the events a user of that phone would notice
(registered, ringing, answered, hung up). A `Sipp` run returns the last row of SIPp's statistics file
with the counters a test asserts on. Everything here is bounded: every wait has a timeout, every
process is killed at the end of its test, and failures carry the peer's own log tail.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"

_handed_out: set[int] = set()

# With tests run in parallel (pytest-xdist), each worker hands out ports from a block of its own,
# below the kernel's ephemeral range (where the phones' own sockets land) and above the relay's
# default range: two workers never hand out the same port, which two free ephemeral ports, each
# bound and let go, could be. Every fourth port only: SIPp's media port -mp P binds P to P+3
# (audio and video, RTP and RTCP), which must be nobody else's.
_WORKER_PORTS = 5000
_PORT_STEP = 4
_WORKER_FIRST = 21000
_EPHEMERAL_FIRST = 32768


def _worker_ports() -> Iterator[int] | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    first = _WORKER_FIRST + int(worker[2:]) * _WORKER_PORTS
    if first + _WORKER_PORTS > _EPHEMERAL_FIRST:
        return None
    return itertools.cycle(range(first, first + _WORKER_PORTS, _PORT_STEP))


_worker_cursor = _worker_ports()


def _bindable(family: socket.AddressFamily, host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(family, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A port that is free for both UDP and TCP on host right now, never the same one twice per run."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if _worker_cursor is not None:
        for _ in range(_WORKER_PORTS // _PORT_STEP):
            port = next(_worker_cursor)
            if port not in _handed_out and _bindable(family, host, port):
                _handed_out.add(port)
                return port
        # The block is used up: a free ephemeral port, as without workers.
    for _ in range(200):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if port in _handed_out:
                continue
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no port free for both UDP and TCP on {host}")


def udp_port_in_use(port: int, host: str = LOOPBACK, kind: int = socket.SOCK_DGRAM) -> bool:
    """True when some process has bound this UDP port (with ``kind`` SOCK_STREAM: this TCP port),
    used to see that a peer is listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll condition until true, or fail with what was awaited; for states that send no event."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def tail(path: Path | None, lines: int = 40) -> str:
    """The last lines of a log file, or a note that there is none."""
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(empty log)"


def write_users_csv(path: Path, users: Iterable[tuple[str, ...]], order: str = "SEQUENTIAL") -> Path:
    """Write a SIPp injection file: `order` line, then ``extension;password;domain[;more]`` rows."""
    rows = list(users)
    if not rows:
        raise ValueError("a SIPp users file needs at least one row")
    with path.open("w", newline="") as fh:
        fh.write(order + "\n")
        for row in rows:
            fh.write(";".join(row) + "\n")
    return path


# -- pjsua2 softphone -----------------------------------------------------------------------------


class SoftphoneError(AssertionError):
    """The softphone refused a command, timed out or died; the message carries its log."""


class Softphone:
    """A pjsua2 softphone in a child process (tests/system/softphone.py), driven over JSON lines.

    Events are kept in arrival order. `wait_event` returns the earliest event not yet returned by an
    earlier wait that matches the given fields, so a test can wait for "registered" and later for
    "unregistered" without the first answer matching the second wait.
    """

    def __init__(self, name: str, workdir: Path, *, start_timeout: float = 15.0, pj_log: bool = True) -> None:
        self.name = name
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / f"{name}.stderr.log"
        self.pj_log_path = workdir / f"{name}.pjsua.log" if pj_log else None
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._replies: dict[int, dict[str, Any]] = {}
        self._eof = False
        cmd = [sys.executable, "-m", "tests.system.softphone"]
        if self.pj_log_path is not None:
            cmd += ["--log", str(self.pj_log_path)]
        self._stderr: IO[bytes] = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"softphone-{name}", daemon=True)
        self._reader.start()
        try:
            ready = self.wait_event("ready", timeout=start_timeout)
        except BaseException:
            self.close()
            raise
        self.udp_port: int = ready["udp_port"]
        self.tcp_port: int = ready["tcp_port"]

    def __enter__(self) -> Softphone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Softphone({self.name!r}, pid={self.proc.pid})"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = {"event": "garbage", "line": raw.decode(errors="replace")}
            with self._cond:
                if "event" in obj:
                    obj["at"] = time.monotonic()
                    self._events.append(obj)
                else:
                    self._replies[obj.get("id") or 0] = obj
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def diagnostics(self) -> str:
        """Recent events plus the tails of the process's stderr and pjsua2 log, for failure messages."""
        with self._cond:
            recent = [json.dumps({k: v for k, v in e.items() if k != "at"}) for e in self._events[-15:]]
        return (
            f"softphone {self.name!r} (exit code {self.proc.poll()})\n"
            f"-- recent events:\n" + "\n".join(recent) + "\n"
            f"-- stderr:\n{tail(self.stderr_path, 20)}\n"
            f"-- pjsua2 log:\n{tail(self.pj_log_path, 30)}"
        )

    def request(self, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        """Send one command and return its reply; a refusal raises SoftphoneError."""
        rid = next(self._ids)
        line = json.dumps({"id": rid, "cmd": cmd, **args}) + "\n"
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise SoftphoneError(f"cannot send {cmd!r}: {exc}\n{self.diagnostics()}") from exc
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._replies:
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "the process ended" if self._eof else f"no reply in {timeout:.1f}s"
                    raise SoftphoneError(f"{cmd!r}: {why}\n{self.diagnostics()}")
                self._cond.wait(remaining)
            reply = self._replies.pop(rid)
        if not reply.get("ok"):
            raise SoftphoneError(f"{cmd!r} {args} refused: {reply.get('error')}\n{self.diagnostics()}")
        return reply

    def events(self, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """Every event so far (consumed or not), optionally only those of one kind matching fields."""
        with self._cond:
            return [e for e in self._events if _matches(e, kind, match, None)]

    def wait_event(
        self,
        kind: str,
        timeout: float = 10.0,
        *,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> dict[str, Any]:
        """Wait for the earliest unconsumed event of this kind whose fields equal match (and where())."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index, event in enumerate(self._events):
                    if index not in self._taken and _matches(event, kind, match, where):
                        self._taken.add(index)
                        return event
                if kind != "fatal":
                    fatal = [e for e in self._events if e["event"] == "fatal"]
                    if fatal:
                        raise SoftphoneError(f"softphone failed to start: {fatal[0]}\n{self.diagnostics()}")
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "the process ended" if self._eof else f"timed out after {timeout:.1f}s"
                    raise SoftphoneError(f"waiting for {kind} {match}: {why}\n{self.diagnostics()}")
                self._cond.wait(remaining)

    # -- accounts ---------------------------------------------------------------------------------

    def add_account(
        self,
        name: str,
        extension: str,
        password: str | None,
        domain: str,
        server: str | None,
        *,
        transport: str = "udp",
        reg_timeout: int = 300,
        register: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        """Add an extension; with server "127.0.0.1:PORT" all its traffic goes through that proxy.

        extra: display (display name), reg_retry (seconds, 0 = never), ring (status sent on an
        incoming call, 180 by default, 0 for none), auto_answer (e.g. 200).
        """
        return self.request(
            "account_add",
            name=name,
            extension=extension,
            password=password,
            domain=domain,
            server=server,
            transport=transport,
            reg_timeout=reg_timeout,
            register=register,
            **extra,
        )

    def register(self, account: str) -> None:
        self.request("register", account=account)

    def unregister(self, account: str) -> None:
        self.request("unregister", account=account)

    def wait_registered(self, account: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the next registration outcome of an account and require it to be 200 and active."""
        event = self.wait_event("reg_state", timeout, account=account)
        if event["code"] != 200 or not event["active"]:
            raise SoftphoneError(f"{account} did not register: {event}\n{self.diagnostics()}")
        return event

    # -- calls ------------------------------------------------------------------------------------

    def call(self, account: str, uri: str, headers: dict[str, str] | None = None) -> str:
        """Dial a SIP URI from an account; returns the call id used by the other call commands."""
        return str(self.request("call", account=account, uri=uri, headers=headers or {})["call"])

    def answer(self, call: str, code: int = 200) -> None:
        self.request("answer", call=call, code=code)

    def hangup(self, call: str, code: int | None = None) -> None:
        args: dict[str, Any] = {} if code is None else {"code": code}
        self.request("hangup", call=call, **args)

    def hold(self, call: str) -> None:
        self.request("hold", call=call)

    def unhold(self, call: str) -> None:
        self.request("unhold", call=call)

    def xfer(self, call: str, uri: str) -> None:
        """Blind transfer (REFER) of ``call`` to ``uri``."""
        self.request("xfer", call=call, uri=uri)

    def xfer_replaces(self, call: str, dest: str) -> None:
        """Attended transfer (REFER with Replaces) of ``call``'s party to ``dest``'s."""
        self.request("xfer_replaces", call=call, dest=dest)

    def dtmf(self, call: str, digits: str, method: str = "rfc4733") -> None:
        self.request("dtmf", call=call, digits=digits, method=method)

    def play(self, call: str, wav: Path, loop: bool = False) -> None:
        self.request("play", call=call, wav=str(wav), loop=loop)

    def record(self, call: str, wav: Path) -> None:
        self.request("record", call=call, wav=str(wav))

    def stop_media(self, call: str) -> list[str]:
        """Stop playing and recording on a call; returns the recordings, complete WAV files by then."""
        reply = self.request("stop_media", call=call)
        if not reply["complete"]:
            raise SoftphoneError(f"recordings {reply['recordings']} were not closed\n{self.diagnostics()}")
        return list(reply["recordings"])

    def wait_incoming(self, account: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the next incoming call (on one account, or any); its "call" id answers it."""
        if account is None:
            return self.wait_event("incoming_call", timeout)
        return self.wait_event("incoming_call", timeout, account=account)

    def wait_call_state(self, call: str, state: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until a call reaches a state (CALLING, EARLY, CONFIRMED, DISCONNECTED ...)."""
        return self.wait_event("call_state", timeout, call=call, state=state)

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self, timeout: float = 8.0) -> int:
        """Quit gracefully (hang up, unregister), then kill if that takes longer than timeout."""
        if self.proc.poll() is None:
            with contextlib.suppress(SoftphoneError):
                self.request("quit", timeout=2.0)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        self._reader.join(2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """Kill the process group at once (a phone losing power)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5.0)


def _matches(
    event: dict[str, Any],
    kind: str | None,
    match: dict[str, Any],
    where: Callable[[dict[str, Any]], bool] | None,
) -> bool:
    if kind is not None and event.get("event") != kind:
        return False
    if any(event.get(k) != v for k, v in match.items()):
        return False
    return where is None or where(event)


# -- SIPp -----------------------------------------------------------------------------------------

BUILTIN_SCENARIOS = frozenset(
    {"uac", "uas", "regexp", "branchc", "branchs", "uac_pcap", "3pcc-C-A", "3pcc-C-B", "3pcc-A", "3pcc-B"}
)
TRANSPORT_FLAGS = {"udp": "u1", "tcp": "t1", "u1": "u1", "t1": "t1", "un": "un", "tn": "tn"}


@dataclass(frozen=True, slots=True)
class SippResult:
    """One finished SIPp run: exit code, the counters of its last statistics row, and its logs."""

    returncode: int
    stats: dict[str, str]
    command: tuple[str, ...]
    stderr_tail: str
    error_log_tail: str

    @property
    def successful(self) -> int:
        return self.counter("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self.counter("FailedCall(C)")

    @property
    def retransmissions(self) -> int:
        return self.counter("Retransmissions(C)")

    @property
    def elapsed(self) -> float:
        """ElapsedTime(C) in seconds."""
        return parse_sipp_duration(self.stats.get("ElapsedTime(C)", ""))

    def counter(self, column: str) -> int:
        value = self.stats.get(column)
        if value is None:
            raise AssertionError(f"SIPp statistics have no {column!r} column\n{self}")
        return int(value)

    def __str__(self) -> str:
        keys = ("SuccessfulCall(C)", "FailedCall(C)", "Retransmissions(C)", "ElapsedTime(C)")
        shown = {k: self.stats.get(k) for k in keys}
        return (
            f"sipp exited {self.returncode}: {shown}\n$ {' '.join(self.command)}\n"
            f"-- stderr:\n{self.stderr_tail}\n-- error log:\n{self.error_log_tail}"
        )


def parse_sipp_duration(text: str) -> float:
    """SIPp writes durations as HH:MM:SS (elapsed time) or HH:MM:SS:ffffff (response times); seconds."""
    parts = text.strip().split(":")
    if len(parts) not in (3, 4) or not all(p.isdigit() for p in parts):
        raise AssertionError(f"unexpected SIPp duration {text!r}")
    seconds = int(parts[0]) * 3600 + int(parts[1]) * 60 + int(parts[2])
    if len(parts) == 4:
        return seconds + int(parts[3]) / 10.0 ** len(parts[3])
    return float(seconds)


def read_last_stats_row(path: Path) -> dict[str, str]:
    """The last row of a SIPp -trace_stat file (semicolon-separated, header first) as a dict."""
    if not path.exists():
        return {}
    with path.open(newline="", errors="replace") as fh:
        rows = [row for row in csv.reader(fh, delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


@dataclass
class SippProcess:
    """A SIPp run in progress (e.g. a UAS waiting for calls); `wait()` turns it into a SippResult."""

    proc: subprocess.Popen[bytes]
    command: tuple[str, ...]
    stat_file: Path
    error_file: Path
    stderr_file: Path
    local_port: int
    hard_timeout: float
    started: float = field(default_factory=time.monotonic)
    local_ip: str = LOOPBACK

    def wait_listening(self, timeout: float = 5.0, kind: int = socket.SOCK_DGRAM) -> None:
        """Wait until SIPp has bound its UDP port (``kind`` SOCK_STREAM: its TCP port), or ended,
        which wait() then reports."""
        wait_until(
            lambda: self.proc.poll() is not None or udp_port_in_use(self.local_port, self.local_ip, kind),
            timeout,
            f"sipp to listen on port {self.local_ip}:{self.local_port}",
        )

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to end (killing it past its hard timeout) and collect its statistics."""
        limit = self.hard_timeout - (time.monotonic() - self.started) if timeout is None else timeout
        try:
            self.proc.wait(max(limit, 0.1))
        except subprocess.TimeoutExpired:
            self.stop()
        return SippResult(
            returncode=int(self.proc.returncode),
            stats=read_last_stats_row(self.stat_file),
            command=self.command,
            stderr_tail=tail(self.stderr_file, 15),
            error_log_tail=tail(self.error_file, 15),
        )

    def stop(self) -> None:
        """SIGTERM (SIPp writes its final statistics), then SIGKILL after two seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)


class Sipp:
    """Runs SIPp with bounded calls and time; every run gets its own files in workdir."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        found = binary or shutil.which("sipp")
        if found is None:
            raise FileNotFoundError("sipp is not installed (Debian package sip-tester)")
        self.binary = found
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._runs = itertools.count(1)

    def start(
        self,
        remote: str | None,
        scenario: str | Path,
        *,
        transport: str = "udp",
        users: Path | None = None,
        calls: int | None = None,
        rate: float | None = None,
        rate_period_ms: int | None = None,
        limit: int | None = None,
        timeout: float = 30.0,
        local_port: int | None = None,
        auth_uri: str | None = None,
        local_ip: str = LOOPBACK,
        extra: Iterable[str] = (),
    ) -> SippProcess:
        """Start SIPp in the background.

        scenario: a built-in name ("uac", "uas") or an XML file. remote: "127.0.0.1:PORT", None for
        a UAS. calls: -m; rate: -r (per rate_period_ms, -rp); limit: -l, concurrent calls.
        timeout: SIPp's own -timeout (seconds) after which it stops and exits non-zero; the
        process is killed a few seconds later if it has not. auth_uri: the digest uri SIPp
        answers challenges with ("clinic.test" gives uri="sip:clinic.test"); SIPp's default is
        the remote address. local_ip: the address SIPp binds (and puts in its messages); another
        loopback address such as 127.0.0.2 makes a peer that Sentral tells apart from the phones.
        """
        run = next(self._runs)
        name = Path(scenario).stem if str(scenario) not in BUILTIN_SCENARIOS else str(scenario)
        stem = self.workdir / f"sipp{run}-{name}"
        stat_file = stem.with_suffix(".stat.csv")
        error_file = stem.with_suffix(".errors.log")
        stderr_file = stem.with_suffix(".stderr.log")
        port = local_port or free_port(local_ip)
        if transport not in TRANSPORT_FLAGS:
            raise ValueError(f"transport must be one of {sorted(TRANSPORT_FLAGS)}")
        cmd = [self.binary]
        if remote:
            cmd.append(remote)
        if str(scenario) in BUILTIN_SCENARIOS:
            cmd += ["-sn", str(scenario)]
        else:
            path = Path(scenario).resolve()  # SIPp runs in workdir
            if not path.is_file():
                raise FileNotFoundError(f"SIPp scenario {path} does not exist")
            cmd += ["-sf", str(path)]
        cmd += ["-i", local_ip, "-p", str(port), "-mp", str(free_port(local_ip))]
        cmd += ["-t", TRANSPORT_FLAGS[transport]]
        if users is not None:
            cmd += ["-inf", str(Path(users).resolve())]
        if calls is not None:
            cmd += ["-m", str(calls)]
        if rate is not None:
            cmd += ["-r", f"{rate:g}"]
        if rate_period_ms is not None:
            cmd += ["-rp", str(rate_period_ms)]
        if limit is not None:
            cmd += ["-l", str(limit)]
        if auth_uri is not None:
            cmd += ["-auth_uri", auth_uri.removeprefix("sip:")]
        cmd += [
            "-timeout", f"{timeout:g}s", "-timeout_error",
            "-trace_stat", "-stf", str(stat_file), "-fd", "1",
            "-trace_err", "-error_file", str(error_file),
            "-nostdin",
            *extra,
        ]  # fmt: skip
        with stderr_file.open("wb") as err:
            proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        return SippProcess(
            proc=proc,
            command=tuple(cmd),
            stat_file=stat_file,
            error_file=error_file,
            stderr_file=stderr_file,
            local_port=port,
            hard_timeout=timeout + 10.0,
            local_ip=local_ip,
        )

    def run(self, remote: str | None, scenario: str | Path, **kwargs: Any) -> SippResult:
        """Start SIPp and wait for it to end; see start() for the arguments."""
        return self.start(remote, scenario, **kwargs).wait()

    @contextlib.contextmanager
    def running(self, remote: str | None, scenario: str | Path, **kwargs: Any) -> Iterator[SippProcess]:
        """Start SIPp for the body of a with-block and make sure it is gone afterwards."""
        process = self.start(remote, scenario, **kwargs)
        try:
            yield process
        finally:
            process.stop()
