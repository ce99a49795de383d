"""A pjsua2 softphone in its own process, driven with one JSON object per line on stdin/stdout.

Theory of operation: pjsua2 asserts (abort()) on misuse and keeps global state, so each softphone is
a separate process that a test starts, drives and throws away; a crash there fails one test instead
of taking pytest down. The process owns one pjsua2 endpoint, runs it single-threaded
(``threadCnt = 0``, ``mainThreadOnly``) and pumps ``libHandleEvents(10)`` between reads of stdin, so
every pjsua2 callback runs on this thread, inside that call.

Protocol, one JSON object per line:

- in:  ``{"id": 7, "cmd": "account_add", ...}``
- out: ``{"id": 7, "ok": true, ...}`` or ``{"id": 7, "ok": false, "error": "..."}``
- out: ``{"event": "reg_state", ...}`` whenever something happens on its own.

The first line out is ``{"event": "ready", "udp_port": P, "tcp_port": Q, "version": "..."}``.
Accounts and calls are named by strings: an account by the ``name`` given to ``account_add``, a call
by the ``call`` id ("c1", "c2", ...) returned by ``call`` or carried by ``incoming_call``.

pjsua2 and pjlib print to the C-level stdout; the process moves the protocol to a private copy of
that descriptor and points descriptor 1 at stderr, so nothing but protocol lines reaches the reader.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import select
import sys
import time
from collections.abc import Callable
from typing import Any

import pjsua2 as pj

INV_STATES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}

MEDIA_STATES = {
    pj.PJSUA_CALL_MEDIA_NONE: "none",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
    pj.PJSUA_CALL_MEDIA_ERROR: "error",
}

TRANSPORT_TYPES = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP}



def _header_lines(message: str) -> dict[str, str]:
    """The headers of a received SIP message, by lower-case name (the last one of a name wins)."""
    head = message.split("\r\n\r\n", 1)[0]
    found: dict[str, str] = {}
    for line in head.split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon:
            found[name.strip().lower()] = value.strip()
    return found

class CommandError(Exception):
    """A command the phone cannot carry out; answered with ``ok: false``."""


def describe(exc: BaseException) -> str:
    """One line for an exception, including pjsua2's own error reason."""
    if isinstance(exc, pj.Error):
        return f"{exc.title}: {exc.reason} (status {exc.status})"
    return f"{type(exc).__name__}: {exc}"


class Phone:
    """The endpoint, its accounts and calls, and the command table."""

    def __init__(self, out: Callable[[dict[str, Any]], None], log_file: str | None, max_calls: int) -> None:
        self.out = out
        self.accounts: dict[str, PhoneAccount] = {}
        self.calls: dict[str, PhoneCall] = {}
        self.finished_calls: list[PhoneCall] = []
        self.call_seq = 0
        self.running = True
        # Recordings whose WAV file pjmedia is still closing: (call id, path, deadline).
        self.closing_recordings: list[tuple[str, str, float]] = []
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = max_calls
        cfg.uaConfig.userAgent = "Sentral test softphone (pjsua2)"
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.level = 4 if log_file else 0
        if log_file:
            cfg.logConfig.filename = log_file
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0  # echo cancelling would alter the audio a test measures
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()
        self.transports: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        for name, kind in TRANSPORT_TYPES.items():
            tcfg = pj.TransportConfig()
            tcfg.boundAddress = "127.0.0.1"
            tcfg.port = 0
            tid = self.ep.transportCreate(kind, tcfg)
            self.transports[name] = tid
            self.ports[name] = int(self.ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
        self.ep.libStart()
        self.commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ping": self.cmd_ping,
            "account_add": self.cmd_account_add,
            "account_remove": self.cmd_account_remove,
            "account_info": self.cmd_account_info,
            "register": self.cmd_register,
            "unregister": self.cmd_unregister,
            "call": self.cmd_call,
            "answer": self.cmd_answer,
            "hangup": self.cmd_hangup,
            "hold": self.cmd_hold,
            "unhold": self.cmd_unhold,
            "dtmf": self.cmd_dtmf,
            "xfer": self.cmd_xfer,
            "xfer_replaces": self.cmd_xfer_replaces,
            "play": self.cmd_play,
            "record": self.cmd_record,
            "stop_media": self.cmd_stop_media,
            "call_info": self.cmd_call_info,
            "calls": self.cmd_calls,
            "quit": self.cmd_quit,
        }

    # -- plumbing ---------------------------------------------------------------------------------

    def emit(self, event: str, **fields: Any) -> None:
        self.out({"event": event, **fields})

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = {"id": request.get("id")}
        cmd = request.get("cmd")
        handler = self.commands.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            return {**reply, "ok": False, "error": f"unknown command {cmd!r}; known: {sorted(self.commands)}"}
        try:
            result = handler(request)
        except Exception as exc:  # the process boundary: a failed command must not end the phone
            return {**reply, "ok": False, "error": describe(exc)}
        return {**reply, "ok": True, **result}

    def account(self, request: dict[str, Any]) -> PhoneAccount:
        name = request.get("account")
        if name not in self.accounts:
            raise CommandError(f"no account {name!r}; accounts: {sorted(self.accounts)}")
        return self.accounts[name]

    def call(self, request: dict[str, Any]) -> PhoneCall:
        cid = request.get("call")
        if cid not in self.calls:
            raise CommandError(f"no live call {cid!r}; calls: {sorted(self.calls)}")
        return self.calls[cid]

    def new_call_id(self) -> str:
        self.call_seq += 1
        return f"c{self.call_seq}"

    def reap(self) -> None:
        """Drop calls that ended; their pjsua2 objects must not be freed inside their own callback."""
        if self.finished_calls:
            for call in self.finished_calls:
                call.release_media()
            self.finished_calls.clear()
        if self.closing_recordings:
            self.check_recordings()

    def check_recordings(self) -> None:
        """Report ``record_done`` once pjmedia has finished a recording's WAV header.

        The conference bridge removes a recorder port asynchronously, so the file is complete a few
        milliseconds after the recorder is released, not at once.
        """
        now = time.monotonic()
        still: list[tuple[str, str, float]] = []
        for cid, path, deadline in self.closing_recordings:
            complete = wav_complete(path)
            if complete or now > deadline:
                self.emit("record_done", call=cid, wav=path, complete=complete)
            else:
                still.append((cid, path, deadline))
        self.closing_recordings = still

    def shutdown(self, graceful: bool) -> None:
        """Hang up and unregister (when graceful), then destroy the library.

        pjsua's own graceful destroy always sleeps about a second for unregistrations it cannot
        see; waiting for them here and destroying without network is as clean and quicker.
        """
        if graceful:
            self.ep.hangupAllCalls()
            deadline = time.monotonic() + 1.0
            while self.calls and time.monotonic() < deadline:
                self.ep.libHandleEvents(10)
            self.unregister_all(deadline=time.monotonic() + 2.0)
        for call in self.calls.values():
            call.release_media()
        self.calls.clear()
        self.finished_calls.clear()
        for acc in self.accounts.values():
            acc.close()
        self.accounts.clear()
        gc.collect()
        self.ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)

    def unregister_all(self, deadline: float) -> None:
        """Send every registered account's unregistration and wait for the answers."""
        pending = []
        for acc in self.accounts.values():
            if _still_registered(acc):
                with contextlib.suppress(pj.Error):
                    acc.setRegistration(False)
                    pending.append(acc)
        while pending and time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
            pending = [acc for acc in pending if _still_registered(acc)]

    # -- commands ---------------------------------------------------------------------------------

    def cmd_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"udp_port": self.ports["udp"], "tcp_port": self.ports["tcp"]}

    def cmd_account_add(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request["name"])
        if name in self.accounts:
            raise CommandError(f"account {name!r} exists already")
        extension = str(request["extension"])
        domain = str(request.get("domain", "127.0.0.1"))
        transport = str(request.get("transport", "udp"))
        if transport not in TRANSPORT_TYPES:
            raise CommandError(f"transport must be one of {sorted(TRANSPORT_TYPES)}, not {transport!r}")
        server = request.get("server")
        register = bool(request.get("register", True))
        display = str(request.get("display", name))

        acfg = pj.AccountConfig()
        acfg.idUri = f'"{display}" <sip:{extension}@{domain}>'
        if server:
            proxy = f"sip:{server};lr" + (";transport=tcp" if transport == "tcp" else "")
            acfg.sipConfig.proxies.append(proxy)
            acfg.regConfig.registrarUri = f"sip:{domain}"
        elif register:
            raise CommandError("register needs a server")
        acfg.regConfig.registerOnAdd = register
        acfg.regConfig.timeoutSec = int(request.get("reg_timeout", 300))
        # A failed registration stays failed unless the test asks for retries; a silent retry
        # would blur what the test observed.
        acfg.regConfig.retryIntervalSec = int(request.get("reg_retry", 0))
        acfg.sipConfig.transportId = self.transports[transport]
        password = request.get("password")
        if password is not None:
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", extension, 0, str(password)))
        # On loopback there is no NAT; rewriting the Contact or Via could only add surprise requests.
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        acfg.natConfig.sdpNatRewriteUse = 0
        acfg.natConfig.sipOutboundUse = 0
        acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        # pjsua counts up from a fixed 4000 by default; parallel phones would all probe the same ports.
        acfg.mediaConfig.transportConfig.port = random.randrange(20000, 50000, 2)

        acc = PhoneAccount(self, name, int(request.get("ring", 180)), request.get("auto_answer"))
        acc.create(acfg, True)
        self.accounts[name] = acc
        return {"account": name, "uri": f"sip:{extension}@{domain}"}

    def cmd_account_remove(self, request: dict[str, Any]) -> dict[str, Any]:
        acc = self.account(request)
        acc.close()
        del self.accounts[acc.name]
        return {}

    def cmd_account_info(self, request: dict[str, Any]) -> dict[str, Any]:
        info = self.account(request).getInfo()
        return {
            "uri": info.uri,
            "code": int(info.regStatus),
            "reason": info.regStatusText,
            "active": bool(info.regIsActive),
            "expires": int(info.regExpiresSec),
        }

    def cmd_register(self, request: dict[str, Any]) -> dict[str, Any]:
        self.account(request).setRegistration(True)
        return {}

    def cmd_unregister(self, request: dict[str, Any]) -> dict[str, Any]:
        self.account(request).setRegistration(False)
        return {}

    def cmd_call(self, request: dict[str, Any]) -> dict[str, Any]:
        acc = self.account(request)
        call = PhoneCall(self, acc, self.new_call_id())
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        add_headers(prm, request.get("headers"))
        call.makeCall(str(request["uri"]), prm)
        self.calls[call.cid] = call
        return {"call": call.cid}

    def cmd_answer(self, request: dict[str, Any]) -> dict[str, Any]:
        call = self.call(request)
        prm = pj.CallOpParam(True)
        prm.statusCode = int(request.get("code", 200))
        if "reason" in request:
            prm.reason = str(request["reason"])
        add_headers(prm, request.get("headers"))
        call.answer(prm)
        return {}

    def cmd_hangup(self, request: dict[str, Any]) -> dict[str, Any]:
        call = self.call(request)
        prm = pj.CallOpParam(True)
        if "code" in request:
            prm.statusCode = int(request["code"])
        call.hangup(prm)
        return {}

    def cmd_hold(self, request: dict[str, Any]) -> dict[str, Any]:
        self.call(request).setHold(pj.CallOpParam(True))
        return {}

    def cmd_unhold(self, request: dict[str, Any]) -> dict[str, Any]:
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        self.call(request).reinvite(prm)
        return {}

    def cmd_xfer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Blind-transfer the call to ``uri`` (REFER); ``transfer_status`` events follow."""
        self.call(request).xfer(str(request["uri"]), pj.CallOpParam(True))
        return {}

    def cmd_xfer_replaces(self, request: dict[str, Any]) -> dict[str, Any]:
        """Attended transfer: REFER on the call to the party of call ``dest``, its Refer-To carrying
        Replaces of the ``dest`` dialog (pjsua2's xferReplaces); ``transfer_status`` events follow."""
        dest = request.get("dest")
        if dest not in self.calls:
            raise CommandError(f"no live call {dest!r} to transfer to; calls: {sorted(self.calls)}")
        self.call(request).xferReplaces(self.calls[dest], pj.CallOpParam(True))
        return {}

    def cmd_dtmf(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send digits as RFC 4733 telephone-events (``method: "rfc4733"``) or SIP INFO (``"info"``)."""
        call = self.call(request)
        prm = pj.CallSendDtmfParam()
        method = request.get("method", "rfc4733")
        methods = {"rfc4733": pj.PJSUA_DTMF_METHOD_RFC2833, "info": pj.PJSUA_DTMF_METHOD_SIP_INFO}
        if method not in methods:
            raise CommandError(f"dtmf method must be one of {sorted(methods)}")
        prm.method = methods[method]
        prm.digits = str(request["digits"])
        call.sendDtmf(prm)
        return {}

    def cmd_play(self, request: dict[str, Any]) -> dict[str, Any]:
        """Play a WAV file (16-bit mono PCM) into the call; ``play_done`` follows at its end.

        With ``loop`` it repeats until stop_media, reporting ``play_done`` at each end.
        """
        call = self.call(request)
        player = CallPlayer(self, call.cid)
        player.createPlayer(str(request["wav"]), 0 if request.get("loop") else pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(call.audio())
        call.players.append(player)
        return {}

    def cmd_record(self, request: dict[str, Any]) -> dict[str, Any]:
        """Record what the call hears into a WAV file; the file is complete after stop_media or hangup."""
        call = self.call(request)
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(str(request["wav"]))
        call.audio().startTransmit(recorder)
        call.recorders.append((recorder, str(request["wav"])))
        return {}

    def cmd_stop_media(self, request: dict[str, Any]) -> dict[str, Any]:
        """Stop players and recorders; replies once the recordings are complete WAV files."""
        call = self.call(request)
        paths = call.release_media()
        deadline = time.monotonic() + 3.0
        while any(cid == call.cid for cid, _, _ in self.closing_recordings) and time.monotonic() < deadline:
            self.ep.libHandleEvents(5)
            self.check_recordings()
        return {"recordings": paths, "complete": all(wav_complete(path) for path in paths)}

    def cmd_call_info(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.call(request).describe()

    def cmd_calls(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"calls": [call.describe() for call in self.calls.values()]}

    def cmd_quit(self, request: dict[str, Any]) -> dict[str, Any]:
        self.running = False
        return {}


def _still_registered(acc: Any) -> bool:
    try:
        return bool(acc.getInfo().regIsActive)
    except pj.Error:
        return False


def add_headers(prm: Any, headers: Any) -> None:
    """Add extra SIP headers given as {"Name": "value"} to a CallOpParam."""
    for hname, hvalue in dict(headers or {}).items():
        header = pj.SipHeader()
        header.hName = str(hname)
        header.hValue = str(hvalue)
        prm.txOption.headers.append(header)


class PhoneAccount(pj.Account):  # type: ignore[misc]
    """One extension: registration events and incoming calls."""

    def __init__(self, phone: Phone, name: str, ring: int, auto_answer: Any) -> None:
        super().__init__()
        self.phone = phone
        self.name = name
        self.ring = ring
        self.auto_answer = int(auto_answer) if auto_answer else None

    def onRegStarted(self, prm: Any) -> None:
        guard(self.phone, lambda: self.phone.emit("reg_started", account=self.name, renew=bool(prm.renew)))

    def onRegState(self, prm: Any) -> None:
        def report() -> None:
            info = self.getInfo()
            self.phone.emit(
                "reg_state",
                account=self.name,
                code=int(prm.code),
                reason=str(prm.reason),
                expires=int(prm.expiration),
                active=bool(info.regIsActive),
            )

        guard(self.phone, report)

    def onIncomingCall(self, prm: Any) -> None:
        def accept() -> None:
            call = PhoneCall(self.phone, self, self.phone.new_call_id(), prm.callId)
            self.phone.calls[call.cid] = call
            info = call.getInfo()
            self.phone.emit(
                "incoming_call",
                account=self.name,
                call=call.cid,
                remote_uri=info.remoteUri,
                local_uri=info.localUri,
                sip_call_id=info.callIdString,
                headers=_header_lines(str(prm.rdata.wholeMsg)),
            )
            op = pj.CallOpParam(True)
            op.statusCode = self.auto_answer or self.ring
            if op.statusCode:
                call.answer(op)

        guard(self.phone, accept)

    def close(self) -> None:
        """Delete the account; pjsua2 unregisters it first when it is registered."""
        with contextlib.suppress(pj.Error):
            self.shutdown()


class PhoneCall(pj.Call):  # type: ignore[misc]
    """One call leg with the players and recorders attached to it."""

    def __init__(self, phone: Phone, acc: PhoneAccount, cid: str, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.phone = phone
        self.acc = acc
        self.cid = cid
        self.players: list[Any] = []
        self.recorders: list[tuple[Any, str]] = []

    def audio(self) -> Any:
        try:
            return self.getAudioMedia(-1)
        except pj.Error as exc:
            raise CommandError(f"call {self.cid} has no active audio yet") from exc

    def release_media(self) -> list[str]:
        """Drop players and recorders; returns the recordings, now being closed by pjmedia."""
        self.players.clear()
        paths = [path for _, path in self.recorders]
        self.recorders.clear()
        deadline = time.monotonic() + 3.0
        self.phone.closing_recordings.extend((self.cid, path, deadline) for path in paths)
        return paths

    def describe(self) -> dict[str, Any]:
        info = self.getInfo()
        return {
            "call": self.cid,
            "account": self.acc.name,
            "state": INV_STATES.get(info.state, str(info.state)),
            "code": int(info.lastStatusCode),
            "reason": info.lastReason,
            "remote_uri": info.remoteUri,
            "local_uri": info.localUri,
            "sip_call_id": info.callIdString,
            "connected_seconds": info.connectDuration.sec,
        }

    def onCallState(self, prm: Any) -> None:
        def report() -> None:
            info = self.describe()
            self.phone.emit("call_state", **info)
            if info["state"] == "DISCONNECTED" and self.phone.calls.get(self.cid) is self:
                del self.phone.calls[self.cid]
                self.phone.finished_calls.append(self)

        guard(self.phone, report)

    def onCallMediaState(self, prm: Any) -> None:
        def report() -> None:
            info = self.getInfo()  # keep it alive: its media vector points into it
            for media in info.media:
                if media.type == pj.PJMEDIA_TYPE_AUDIO:
                    self.phone.emit("media_state", call=self.cid, status=MEDIA_STATES.get(media.status, "?"))

        guard(self.phone, report)

    def onCallTransferStatus(self, prm: Any) -> None:
        guard(
            self.phone,
            lambda: self.phone.emit(
                "transfer_status", call=self.cid, code=int(prm.statusCode), final=bool(prm.finalNotify)
            ),
        )

    def onDtmfDigit(self, prm: Any) -> None:
        # How the key came: "rfc4733" (telephone-events in the RTP) or "info" (a SIP INFO).
        method = "rfc4733" if prm.method == pj.PJSUA_DTMF_METHOD_RFC2833 else "info"
        guard(self.phone, lambda: self.phone.emit("dtmf", call=self.cid, digit=str(prm.digit), method=method))


class CallPlayer(pj.AudioMediaPlayer):  # type: ignore[misc]
    """A WAV player that reports the end of its file as a ``play_done`` event."""

    def __init__(self, phone: Phone, cid: str) -> None:
        super().__init__()
        self.phone = phone
        self.cid = cid

    def onEof2(self) -> None:
        guard(self.phone, lambda: self.phone.emit("play_done", call=self.cid))


def wav_complete(path: str) -> bool:
    """True once a WAV file's RIFF size field matches its length (pjmedia writes it at close)."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(12)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return False
    return len(header) == 12 and header[8:12] == b"WAVE" and int.from_bytes(header[4:8], "little") == size - 8


def guard(phone: Phone, body: Callable[[], None]) -> None:
    """Run a callback body; an exception escaping into pjsua2's C++ would abort the process."""
    try:
        body()
    except Exception as exc:
        phone.emit("error", error=describe(exc))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", help="write pjsua2's own log to this file")
    parser.add_argument("--max-calls", type=int, default=32)
    args = parser.parse_args()

    # Keep the protocol on a private descriptor and send anything C code prints to stderr.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    proto = os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8")

    def out(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        phone = Phone(out, args.log, args.max_calls)
    except pj.Error as exc:
        out({"event": "fatal", "error": describe(exc)})
        return 1
    out(
        {"event": "ready", "udp_port": phone.ports["udp"], "tcp_port": phone.ports["tcp"], "pid": os.getpid()}
    )

    stdin_fd = sys.stdin.fileno()
    pending = b""
    graceful = True
    while phone.running:
        readable, _, _ = select.select([stdin_fd], [], [], 0)
        if readable:
            chunk = os.read(stdin_fd, 65536)
            if not chunk:
                # The driver went away: leave without waiting on the network.
                graceful = False
                break
            pending += chunk
            while b"\n" in pending and phone.running:
                line, pending = pending.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("a command is a JSON object")
                except ValueError as exc:
                    out({"id": None, "ok": False, "error": f"bad command line: {exc}"})
                    continue
                out(phone.handle(request))
        phone.ep.libHandleEvents(10)
        phone.reap()
    phone.shutdown(graceful)
    out({"event": "bye"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
