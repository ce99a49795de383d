"""Wiring: the one place that builds the running system from its configuration.

Shutdown. SIGTERM starts a drain: new INVITEs are answered 503 with Retry-After, calls in progress
go on for up to ``drain_timeout`` seconds, then the rest are hung up (BYE, or CANCEL and 480 for
those still ringing); the server waits briefly for those requests to be answered, flushes every
call record to storage and exits 0. A second SIGINT exits at once.

Media. Unless serving with direct media, every call's media is anchored at the RTP relay
(``MediaAnchor`` behind ``AnchoredMedia``): the relay's sockets live on this event loop, next to
the SIP ones. Its address is ``--media-address``, else the first SIP listen address; bound to a
wildcard address, each phone is told the address it reaches Sentral at. The relay is tried once at
start-up, so that an address the host does not have stops the server with a sentence instead of
failing every call. Dead media is looked for every few seconds (``_watch_media``), not per packet:
an answered call whose phones have sent nothing for ``--dead-media`` seconds (longer on hold) is
hung up. DTMF the relay hears goes to call control, which hands it on without logging it.

Call records. Call control hands each finished call's report to ``_record``, which turns it into
a ``CallRecord`` (wall-clock times) and queues it on the CDR writer's group commit. While the
database cannot be reached, both writers spool to ``--spool`` (``sentral.config.spool``) and
replay it when the database is back; at start, binding changes still in the spool are laid over
the bindings loaded from the database. The live calls
are published at most once a second, and only when they changed (with a keep-alive touch in
between, so that `sentral calls` keeps believing a quiet server).

Trunks. Once the listeners are bound, the endpoint's trunks start registering with their
carriers, and follow the directory from then on. Trunk host names are resolved here, on the
loop's resolver threads and each within ``TRUNK_RESOLVE_TIMEOUT``, never in the call path; a
carrier whose name does not resolve leaves its trunk failed and nothing else waiting. The trunks'
states are published like the live calls; at a stop the registered trunks are deregistered, with
a short wait for the carriers' answers, before the listeners close.

Garbage collection. Under load the process holds a large, slowly changing heap (every transaction
lingers for Timer J/K/H, 32 s, with its messages), while each message makes hundreds of container
objects that die within one turn of the loop. CPython's defaults (a young collection every 700
allocations, a full one whenever a quarter of the old generation is new) then spend a third of
the loop's time tracing the same live objects again. ``tune_gc`` runs once start-up is done:
it collects, freezes what start-up made (modules, configuration, bindings) out of every later
collection, and raises the thresholds so that short-lived objects die young and full
collections are rare. Reference cycles are still collected, only less often.

Every object that outlives a young collection is traced once more in the middle generation,
however often that runs, so the middle threshold sets how long the pauses are, not how much is
traced: at 1,000 calls a second, collecting the middle generation every 20th young collection
paused the loop for half a second at a time (long enough for UDP to queue up past the overload
mark), every 2nd for about a tenth. The old generation's threshold counts middle collections, so
it is raised alike to keep full collections as rare as before.

Those thresholds count allocations less deallocations, and under steady load the calls that end
free about as much as the new ones make: the count hardly moves, automatic collections come
seldom, and when one comes the young generation holds everything made since the last, hundreds
of thousands of objects (300 to 500 ms pauses at 1,000 calls a second). So the collector is also
paced by the clock (``CollectorPacer``, from the once-a-second housekeeping), and the whole heap
is collected every ``FULL_COLLECTION_EVERY`` seconds. A call makes no reference cycles (its
objects are freed as their last reference goes): under load the young collections found nothing,
every second, and each still traced the second's survivors (the transactions that linger for
Timer J), 12 to 46 ms at 800 calls a second, a pause of the loop and 3 % of its time. So a tick
collects the young and middle generations only while collections find something; once one finds
nothing, the next ``SAMPLE_EVERY`` - 1 ticks freeze them instead (``gc.freeze``: a list splice,
no tracing), and the tick after collects again to look. Frozen objects are freed by their
reference counts as ever; only a cycle among them waits for the full collection, which unfreezes
everything, collects and freezes again.

The C heap. glibc serves an allocation of 128 KiB or more with a mapping of its own and returns
it to the system when it is freed; but by default each such free raises that threshold to the
size freed. The tables of transactions and dialogs (some 300 KiB each at 150 calls a second) are
reallocated every few seconds as entries come and go, so after the first such free they were cut
from the heap instead, between long-lived objects, and the raised trim threshold (twice the
other) kept the heap's free top from going back. The holes grew the heap for minutes (by 4 MiB
in four minutes at 100 calls a second, its free part from 2 to 6 MiB, while a server with both
thresholds fixed from its start kept its heap within 1 MiB). ``tune_malloc`` fixes both at
glibc's defaults once start-up is over.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import functools
import gc
import os
import signal
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, assert_never

import structlog

from sentral.adapters import CallerLookup
from sentral.config.cdr import PARKED, CdrStore, CdrWriter, LiveCall, LiveCallStore
from sentral.config.db import StoreError, first_line, make_engine, schema_is_current
from sentral.config.directory import Directory, GroupKind, directory_version, load_directory
from sentral.config.settings import Reread, ServeConfig, media_address
from sentral.config.spool import BINDING_SPOOL, CDR_SPOOL, default_spool_dir
from sentral.config.store import (
    BindingStore,
    ConfigStore,
    LineState,
    LineStateStore,
    LineStatus,
    TrunkState,
    TrunkStateStore,
)
from sentral.config.writer import BindingWriter
from sentral.logs import set_level
from sentral.media.anchor import MediaAnchor
from sentral.media.dtmf import Digit
from sentral.media.latch import PortPool, PortsExhausted
from sentral.media.sounds import SoundLibrary
from sentral.metrics import CallTally, MetricsService, parse_metrics_address
from sentral.notify import Notifier
from sentral.pbx.anchoring import AnchoredMedia
from sentral.pbx.call import Call, CallReport, CallSettings, MediaPolicy
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.guard import Guard, GuardPolicy, parse_networks
from sentral.pbx.location import Location
from sentral.pbx.presence import Lamp
from sentral.pbx.records import call_record, transfer_records
from sentral.pbx.registrar import Registrar, RegistrarPolicy
from sentral.pbx.sip.auth import DigestAuthority
from sentral.pbx.sip.transaction import TransactionLayer
from sentral.pbx.transport import ListenError, Origin, TlsFileError, Transports, make_server_ssl_context
from sentral.routing.dialplan import Feature, FeatureCode
from sentral.web import BROWSER_PHONE_AGENT

if TYPE_CHECKING:
    from sentral.web.service import WebService

log = structlog.get_logger("sentral")
T = TypeVar("T")

DIRECTORY_POLL = 0.5
LIVE_PUBLISH = 1.0
LIVE_TOUCH = 2.0
# After the drain, how long the BYEs and CANCELs sent to the remaining calls may take to be answered.
HANGUP_GRACE = 2.0
# Collector thresholds once serving: young generation, middle, old (see the module docstring).
GC_THRESHOLDS = (50_000, 2, 1000)
# How often the whole heap is collected, in seconds (see the module docstring).
FULL_COLLECTION_EVERY = 900.0
# While young collections find nothing, one tick in this many collects; the others freeze.
SAMPLE_EVERY = 10
# How often dead media is looked for, at most (a short --dead-media makes it more often).
MEDIA_CHECK = 5.0
TRUNK_RESOLVE = 1.0  # how often trunk host names due for resolving are looked for
TRUNK_RESOLVE_TIMEOUT = 5.0  # a carrier's DNS gets this long before its name counts as unresolved
TRUNK_LEAVE_WAIT = 2.0  # how long a stopping server waits for its trunks' deregistrations


class Server:
    """The running system: storage, the SIP core, transports and their background work."""

    def __init__(self, config: ServeConfig, reread: Callable[[], Reread] | None = None) -> None:
        self.config = config
        # SIGHUP's reading of the config file (None: serving without one).
        self.reread = reread
        self.engine = make_engine(config.db_url)
        self.store = BindingStore(self.engine)
        self.location = Location()
        spool = Path(config.spool_dir) if config.spool_dir else default_spool_dir(config.db_url)
        self.spool_dir = spool
        self.writer = BindingWriter(
            self.store, spool=spool / BINDING_SPOOL, on_spool=functools.partial(self._spool_event, "registrations")
        )
        self.guard = Guard(guard_policy(config))
        self._directory: Directory | None = None
        self.layer = TransactionLayer()
        # The TLS context is made in run(), where a certificate that cannot be used stops the server
        # with a sentence.
        self.transports = Transports(self._on_message, on_backlog=self._on_backlog)
        self._overloaded_at = 0.0
        self._shed_before = 0
        self.collector = CollectorPacer(time.monotonic())
        self.endpoint: Endpoint | None = None
        # The clinics' caller-ID lookup chains, built once the directory is loaded.
        self.lookup: CallerLookup | None = None
        self.anchor: MediaAnchor | None = None
        if not config.direct_media:
            self.anchor = MediaAnchor(
                media_address(config.listens, config.media_address),
                PortPool(*config.media_ports),
                sounds=SoundLibrary([d for d in (config.clinic_sounds, config.sounds) if d]),
                language=config.language,
                on_dtmf=self._on_dtmf,
            )
        self.cdr_writer = CdrWriter(
            CdrStore(self.engine), spool=spool / CDR_SPOOL, on_spool=functools.partial(self._spool_event, "call records")
        )
        self.live_store = LiveCallStore(self.engine)
        self.line_store = LineStateStore(self.engine)
        self.trunk_store = TrunkStateStore(self.engine)
        self.server_id = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._records: set[asyncio.Future[None]] = set()
        self.tally = CallTally()
        self.serving = False  # listeners bound and start-up done: what health calls ready
        self.metrics: MetricsService | None = None
        self.web: WebService | None = None
        self.notifier = Notifier()
        self._stop = asyncio.Event()
        self._drain = asyncio.Event()
        self._interrupts = 0
        # Monotonic call-control times become epoch seconds with this offset.
        self._wall_offset = time.time() - time.monotonic()

    def directory(self) -> Directory:
        """The current configuration snapshot."""
        assert self._directory is not None
        return self._directory

    def _on_message(self, data: bytes, origin: Origin) -> None:
        assert self.endpoint is not None
        self.endpoint.on_message(data, origin)

    def _on_backlog(self, overloaded: bool, queued: int) -> None:
        """The transports' queue crossed a mark: refuse new calls until it is short again."""
        endpoint = self.endpoint
        if endpoint is None:
            return
        endpoint.shedding = overloaded
        now = time.monotonic()
        if overloaded:
            self._overloaded_at = now
            self._shed_before = endpoint.shed
            log.warning(
                "overloaded", queued_bytes=queued, action="new calls get 503 until the queue is short"
            )
        else:
            log.warning(
                "overload_over",
                seconds=round(now - self._overloaded_at, 3),
                calls_refused=endpoint.shed - self._shed_before,
            )

    async def run(self) -> int:
        """Serve until stopped; the exit code."""
        loop = asyncio.get_running_loop()
        config = self.config
        if config.cert and config.key:
            try:
                self.transports.ssl_context = make_server_ssl_context(config.cert, config.key)
            except TlsFileError as exc:
                log.error("cannot_use_tls_file", error=str(exc))
                return 1
        if not await asyncio.to_thread(schema_is_current, self.engine):
            log.error("schema_outdated", hint="run `sentral init` first")
            return 1
        # The nonce key outlives restarts, so phones holding a nonce are not failed after one.
        secret = await asyncio.to_thread(ConfigStore(self.engine).server_secret, "digest-nonce")
        registrar = Registrar(DigestAuthority(secret), self.location, RegistrarPolicy())
        media: MediaPolicy | None = None
        if self.anchor is not None:
            try:
                self.anchor.relay.open().close()
            except (OSError, PortsExhausted) as exc:
                log.error(
                    "cannot_open_media_port",
                    address=self.anchor.address,
                    error=str(exc),
                    hint="give an address of this host with --media-address, or another --media-ports",
                )
                return 1
            media = AnchoredMedia(self.anchor, direct_media=self._direct_media)
        endpoint = self.endpoint = Endpoint(
            self.transports,
            self.layer,
            registrar,
            self.location,
            self.writer,
            self.guard,
            self.directory,
            sip_trace=self.config.sip_trace,
            call_settings=CallSettings(
                no_answer=self.config.no_answer_timeout,
                session_interval=self.config.session_interval,
                transfer_recall=self.config.transfer_recall,
                international_calls=self.config.international_calls,
                international_calls_per_staff=self.config.international_calls_per_staff,
                language=self.config.language,
            ),
            on_record=self._record,
            on_feature=self._feature,
            media=media,
        )
        endpoint.attach(loop)
        self._directory = await asyncio.to_thread(load_directory, self.engine)
        self.lookup = CallerLookup(self._directory)
        endpoint.look_up_callers(self.lookup)
        rows = await asyncio.to_thread(self.store.load_active, time.time())
        self.location.apply(rows, [])
        try:
            # Registrations acknowledged while the database was down are newer than what it holds.
            spooled, gone = self.writer.spooled_changes()
            self.location.apply(spooled, gone)
            await self._drop_browser_phones()
            self.writer.start()
            self.cdr_writer.start()
        except StoreError as exc:
            log.error("cannot_open_spool", error=str(exc), hint="give a writable directory with --spool")
            await self.writer.close()
            await self.cdr_writer.close()
            return 1
        if self.writer.spooled or self.cdr_writer.spooled:
            log.warning(
                "spool_waiting",
                spool=str(self.spool_dir),
                call_records=self.cdr_writer.spooled,
                binding_changes=self.writer.spooled,
            )
        tune_gc()
        tune_malloc()
        try:
            # Messages go straight to the endpoint, without a hop through this (interpreted) class.
            self.transports.handler = endpoint.on_message
            await self.transports.start(self.config.listens)
        except ListenError as exc:
            if exc.in_use:
                log.error("cannot_listen", error=str(exc), hint="is another server using the port?")
            else:
                log.error("cannot_listen", error=str(exc))
            await self.writer.close()
            await self.cdr_writer.close()
            return 1
        if self.config.metrics:
            host, port = parse_metrics_address(self.config.metrics)
            self.metrics = MetricsService(self, host, port)
            try:
                await self.metrics.start()
            except OSError as exc:
                log.error("cannot_listen", metrics=self.config.metrics, error=exc.strerror or str(exc))
                await self.transports.close()
                await self.writer.close()
                await self.cdr_writer.close()
                return 1
        if config.web and not await self._start_web():
            if self.metrics is not None:
                await self.metrics.close()
            await self.transports.close()
            await self.writer.close()
            await self.cdr_writer.close()
            return 1
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.serving = True
        log.info(
            "serving",
            listen=[str(listen) for listen in self.transports.bound],
            clinics=sorted(self.directory().clinics),
            bindings=len(self.location),
            metrics=self.metrics.bound if self.metrics is not None else None,
            web=self.web.bound if self.web is not None else None,
        )
        self.notifier.ready(
            f"serving {len(self.directory().clinics)} clinics on {', '.join(str(b) for b in self.transports.bound)}"
        )
        tasks = [
            asyncio.create_task(self._follow_directory(), name="directory-follower"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
            asyncio.create_task(self._publish_live_calls(), name="live-calls"),
            asyncio.create_task(self._resolve_trunk_hosts(), name="trunk-hosts"),
        ]
        tasks.append(asyncio.create_task(self._publish_trunk_states(self.trunk_store), name="trunk-states"))
        # Trunks start registering once the listeners are bound, so the carrier's answers have
        # somewhere to arrive.
        endpoint.trunks_changed()
        if self.anchor is not None:
            tasks.append(asyncio.create_task(self._watch_media(), name="dead-media"))
        if self.notifier.watchdog is not None:
            tasks.append(asyncio.create_task(self._keep_watchdog(self.notifier.watchdog), name="watchdog"))
        try:
            await self._stop.wait()
            if self._drain.is_set():
                await self._drain_calls()
        finally:
            self.serving = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if endpoint.caller_id is not None:
                await endpoint.caller_id.close()
            if self.lookup is not None:
                await self.lookup.close()
            if self.web is not None:
                await self.web.close()
            if self.metrics is not None:
                await self.metrics.close()
            await self._leave_trunks()
            await self.transports.close()
            if self.anchor is not None:
                self.anchor.relay.close()
            await self._flush_records()
            await self.writer.close()
            await self.cdr_writer.close()
            try:
                await asyncio.to_thread(self.live_store.clear, self.server_id)
                await asyncio.to_thread(self.line_store.clear)
                await asyncio.to_thread(self.trunk_store.clear)
            except Exception as exc:
                log.warning("live_calls_not_cleared", error=str(exc))
            self.engine.dispose()
        self.notifier.close()
        log.info("stopped")
        return 0

    async def _start_web(self) -> bool:
        """Start the web service on this loop; False (with the reason logged) when it cannot."""
        # aiohttp is imported only when the web service is asked for.
        from sentral.web.service import WebService, parse_web_address

        config = self.config
        assert config.web is not None
        host, port = parse_web_address(config.web)
        context = None
        if config.web_cert and config.web_key:
            try:
                context = make_server_ssl_context(config.web_cert, config.web_key)
            except TlsFileError as exc:
                log.error("cannot_use_tls_file", error=str(exc))
                return False
        self.web = WebService(self, host, port, ssl_context=context, guard_policy=guard_policy(config))
        try:
            await self.web.start()
        except OSError as exc:
            log.error("cannot_listen", web=config.web, error=exc.strerror or str(exc))
            self.web = None
            return False
        return True

    def _on_signal(self, signum: int) -> None:
        self._interrupts += 1
        if signum == signal.SIGINT and self._interrupts > 1:
            os._exit(130)
        log.info("stopping", signal=signal.Signals(signum).name)
        self.notifier.stopping("draining calls" if signum == signal.SIGTERM else "stopping")
        if signum == signal.SIGTERM:
            self._drain.set()
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: read the config file again and apply what can change while serving, and read the
        TLS certificate and key again.

        Calls and registrations are untouched. What the file may change at once: the log level and
        SIP trace, the guard's limits and trusted networks, the call timers (no answer, session
        interval, transfer recall), dead-media times, the drain timeout, and which certificate and
        key files are used. Any other option changed in the file is named in the log as taking a
        restart. A file that cannot be used leaves everything as it was and says why; so does a
        certificate that cannot be loaded. (Staff, groups and clinics need no reload: CLI changes
        apply within a second.)
        """
        self.notifier.reloading()
        reloaded: list[str] = []
        if self.reread is not None:
            try:
                found = self.reread()
            except (StoreError, ValueError) as exc:
                log.error("config_not_reloaded", error=str(exc), action="the settings in use stay")
            else:
                reloaded.extend(self._apply(found.updates))
                if found.restart:
                    log.warning("restart_needed", options=list(found.restart))
        config = self.config
        context = self.transports.ssl_context
        if context is not None and config.cert and config.key:
            try:
                make_server_ssl_context(config.cert, config.key)  # the files as a whole, with a sentence
                context.load_cert_chain(config.cert, config.key)  # the listeners' own context
                reloaded.append("tls")
            except (TlsFileError, OSError, ssl.SSLError) as exc:
                log.error("tls_not_reloaded", error=str(exc), action="the certificate in use stays")
        web = self.web
        if web is not None and web.ssl_context is not None and config.web_cert and config.web_key:
            try:
                make_server_ssl_context(config.web_cert, config.web_key)
                web.ssl_context.load_cert_chain(config.web_cert, config.web_key)
                reloaded.append("web-tls")
            except (TlsFileError, OSError, ssl.SSLError) as exc:
                log.error("tls_not_reloaded", web=True, error=str(exc), action="the certificate in use stays")
        log.info("reloaded", what=reloaded)
        self.notifier.ready(f"serving, reloaded {', '.join(reloaded) or 'nothing'}")

    def _apply(self, updates: dict[str, Any]) -> list[str]:
        """Put the settings SIGHUP read into force; what changed, as ``name=value``."""
        if not updates:
            return []
        old, config = self.config, dataclasses.replace(self.config, **updates)
        self.config = config
        if config.log_level != old.log_level:
            set_level(config.log_level)
        if guard_policy(config) != guard_policy(old):
            self.guard.reconfigure(guard_policy(config))
            if self.web is not None:
                self.web.reconfigure(guard_policy(config))
        endpoint = self.endpoint
        if endpoint is not None:
            endpoint.sip_trace = config.sip_trace
            endpoint.calls.settings = dataclasses.replace(
                endpoint.calls.settings,
                no_answer=config.no_answer_timeout,
                session_interval=config.session_interval,
                transfer_recall=config.transfer_recall,
                international_calls=config.international_calls,
                international_calls_per_staff=config.international_calls_per_staff,
            )
        # Dead-media times and the drain timeout are read from self.config when they are used.
        return [f"{name.replace('_', '-')}={value}" for name, value in sorted(updates.items()) if name not in ("cert", "key", "web_cert", "web_key")]

    async def _keep_watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog from the event loop, at half its interval: a stuck loop stops pinging."""
        while True:
            self.notifier.ping()
            await asyncio.sleep(interval / 2)

    async def _drop_browser_phones(self) -> None:
        """Browser phones registered with the process before this one are gone with it: their
        bindings would ring nothing until they expire."""
        stale = [row.identity for row in self.location.all() if row.user_agent == BROWSER_PHONE_AGENT]
        if not stale:
            return
        try:
            await asyncio.to_thread(self.store.apply, [], stale)
        except StoreError as exc:
            log.warning("browser_phones_not_dropped", error=str(exc))
            return
        self.location.apply([], stale)
        log.info("browser_phones_dropped", bindings=len(stale))

    async def _drain_calls(self) -> None:
        """Refuse new calls, let those in progress finish within the drain timeout, end the rest."""
        endpoint = self.endpoint
        if endpoint is None:
            return
        endpoint.draining = True
        calls = endpoint.calls
        deadline = time.monotonic() + self.config.drain_timeout
        if len(calls):
            log.info("draining", calls=len(calls), timeout=self.config.drain_timeout)
        while len(calls) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if len(calls):
            log.info("drain_timeout", calls=len(calls))
            endpoint.hang_up_all()
        # Let the last BYEs and CANCELs be answered (or retransmitted) before the sockets close;
        # transactions that have their answer only linger to absorb its retransmissions.
        grace = time.monotonic() + HANGUP_GRACE
        while self.layer.clients_awaiting_final and time.monotonic() < grace:
            await asyncio.sleep(0.05)

    # -- media ---------------------------------------------------------------------------------------

    def _on_dtmf(self, call_id: str, leg_id: str, digit: Digit) -> None:
        if self.endpoint is not None:
            self.endpoint.digit(call_id, leg_id, digit)

    async def _watch_media(self) -> None:
        """Every few seconds, hang up answered calls whose media has died, and close the relay's
        resting sockets that no call took (a quiet server would otherwise keep them)."""
        while True:
            config = self.config  # SIGHUP may change the times
            interval = min(MEDIA_CHECK, max(0.5, config.dead_media / 3))
            await asyncio.sleep(interval)
            if self.anchor is not None:
                self.anchor.relay.retire(time.monotonic())
            endpoint = self.endpoint
            if endpoint is None:
                continue
            ended = endpoint.calls.check_media(time.monotonic(), config.dead_media, config.dead_media_on_hold)
            if ended:
                log.info("dead_media_hung_up", calls=ended)

    # -- call records and live calls ---------------------------------------------------------------

    def _spool_event(self, what: str, event: str, count: int, error: BaseException | None) -> None:
        """A writer began to spool, replayed its spool, or dropped a spooled item (writer thread)."""
        text = first_line(error) if error is not None else None
        if event == "spooling":
            log.warning(
                "database_unreachable",
                writes=what,
                action="spooling them until it answers",
                spool=str(self.spool_dir),
                error=text,
            )
        elif event == "drained":
            log.info("spool_replayed", writes=what, items=count, spool=str(self.spool_dir))
        else:
            log.error("spooled_item_refused", writes=what, error=text)

    def _record(self, report: CallReport) -> asyncio.Future[None]:
        self.tally.count(report.status, report.started, report.answered)
        future = self.cdr_writer.submit([call_record(report, self._wall_offset)])
        self._records.add(future)
        future.add_done_callback(self._recorded)
        return future

    def _recorded(self, future: asyncio.Future[None]) -> None:
        self._records.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.error("cdr_write_failed", error=str(error))

    async def _flush_records(self) -> None:
        if self._records:
            await asyncio.gather(*self._records, return_exceptions=True)

    async def _publish_live_calls(self) -> None:
        """At most once a second, publish the live calls and the lines (for `sentral presence`) if
        they changed; touch them otherwise."""
        published = lines_published = -1
        touched = lines_touched = 0.0
        calls_trouble = Trouble("live_calls_not_published", "live_calls_published_again")
        lines_trouble = Trouble("line_states_not_published", "line_states_published_again")
        while True:
            await asyncio.sleep(LIVE_PUBLISH)
            endpoint = self.endpoint
            if endpoint is None:
                continue
            calls = endpoint.calls
            now = time.monotonic()
            try:
                if calls.version != published:
                    # Marked published only once it was: a failed publication is retried.
                    version = calls.version
                    # Transfers so far come from the calls themselves; few calls have any.
                    transferred = {call.id: call.transfers for call in calls.calls.values() if call.transfers}
                    snapshot = [
                        LiveCall(
                            call_id=live.call_id,
                            domain=live.clinic,
                            caller=live.caller,
                            callee=live.callee,
                            state=f"{PARKED}{live.parked}" if live.parked else live.state,
                            started_at=live.started + self._wall_offset,
                            answered_at=None if live.answered is None else live.answered + self._wall_offset,
                            legs=live.legs,
                            transfers=transfer_records(transferred.get(live.call_id, ()), self._wall_offset),
                            caller_name=live.caller_name or None,
                            caller_kind=live.caller_kind or None,
                            caller_reference=live.caller_reference or None,
                            caller_source=live.caller_source or None,
                        )
                        for live in calls.live()
                    ]
                    await asyncio.to_thread(self.live_store.publish, self.server_id, snapshot)
                    published = version
                    touched = now
                elif now - touched >= LIVE_TOUCH:
                    await asyncio.to_thread(self.live_store.touch, self.server_id)
                    touched = now
                calls_trouble.succeeded()
            except Exception as exc:
                calls_trouble.failed(exc)
            hub = endpoint.presence
            try:
                if hub.version != lines_published:
                    version = hub.version
                    lines = [
                        LineState(line.domain, line.extension, LineStatus(line.state.value), line.acute)
                        for line in hub.lines()
                        if line.state is not Lamp.IDLE
                    ]
                    await asyncio.to_thread(self.line_store.replace, lines)
                    lines_published = version
                    lines_touched = now
                elif now - lines_touched >= LIVE_TOUCH:
                    await asyncio.to_thread(self.line_store.touch)
                    lines_touched = now
                lines_trouble.succeeded()
            except Exception as exc:
                lines_trouble.failed(exc)

    async def _publish_trunk_states(self, store: TrunkStateStore) -> None:
        """At most once a second, publish the trunks' states (for `sentral trunk list`) if they
        changed; touch them otherwise."""
        published: list[TrunkState] | None = None
        touched = 0.0
        trouble = Trouble("trunk_states_not_published", "trunk_states_published_again")
        while True:
            await asyncio.sleep(LIVE_PUBLISH)
            endpoint = self.endpoint
            if endpoint is None:
                continue
            now = time.monotonic()
            try:
                states = endpoint.trunks.states()
                if states != published:
                    await asyncio.to_thread(store.publish, states)
                    published = states
                    touched = now
                elif now - touched >= LIVE_TOUCH:
                    await asyncio.to_thread(store.touch)
                    touched = now
                trouble.succeeded()
            except Exception as exc:
                trouble.failed(exc)

    async def _resolve_trunk_hosts(self) -> None:
        """Resolve the host names of trunks off the event loop, each within a time limit, so that
        a carrier whose DNS is slow or gone delays nothing else."""
        while True:
            await asyncio.sleep(TRUNK_RESOLVE)
            endpoint = self.endpoint
            if endpoint is None:
                continue
            names = endpoint.trunks.names_to_resolve(time.monotonic())
            if not names:
                continue
            results = await asyncio.gather(*(resolve_host(name, TRUNK_RESOLVE_TIMEOUT) for name in names))
            for name, addresses in zip(names, results, strict=True):
                for address in addresses or ():
                    # A TLS carrier's certificate names its host, not the address it resolved to.
                    self.transports.server_names[address] = name
                endpoint.trunk_resolved(name, addresses)

    async def _leave_trunks(self) -> None:
        """Deregister the trunks and give the carriers a moment to answer."""
        endpoint = self.endpoint
        if endpoint is None:
            return
        endpoint.stop_trunks()
        deadline = time.monotonic() + TRUNK_LEAVE_WAIT
        while endpoint.trunks.leaving and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _follow_directory(self) -> None:
        """Reload staff and clinics within half a second of a change made with the CLI."""
        trouble = Trouble("directory_reload_failed", "directory_reload_recovered")
        while True:
            await asyncio.sleep(DIRECTORY_POLL)
            try:
                version = await asyncio.to_thread(directory_version, self.engine)
                if version != self.directory().version:
                    self._directory_changed(await asyncio.to_thread(load_directory, self.engine))
                    if self.lookup is not None:
                        await self.lookup.close_retired()
                trouble.succeeded()
            except Exception as exc:
                trouble.failed(exc)

    def _directory_changed(self, directory: Directory) -> None:
        """Put a freshly loaded directory in force, and tell the engine what may have changed."""
        self._directory = directory
        log.info("directory_reloaded", version=directory.version)
        if self.lookup is not None:
            self.lookup.update(directory)
        if self.endpoint is not None:
            self.endpoint.calls.lots.sync(directory)
            self.endpoint.members_changed()
            self.endpoint.presence.directory_changed(time.monotonic())
            self.endpoint.trunks_changed()

    async def change(self, apply: Callable[[ConfigStore], T]) -> T:
        """Make a configuration change (``apply``) in a worker thread and put it in force at once,
        as the CLI's changes are within half a second; what ``apply`` returned."""

        def work() -> tuple[T, Directory]:
            result = apply(ConfigStore(self.engine))
            return result, load_directory(self.engine)

        result, directory = await asyncio.to_thread(work)
        if directory.version > self.directory().version:
            self._directory_changed(directory)
        return result

    def _direct_media(self, domain: str, extension: str) -> bool:
        """Whether the phone of ``extension`` may send media straight to another (the directory's word)."""
        staff = self.directory().staff_for(domain, extension)
        return staff is not None and staff.direct_media

    def _feature(self, call: Call, feature: Feature) -> asyncio.Future[str]:
        """Carry out a feature code in a worker thread; the future holds what it did."""
        caller = call.caller
        return asyncio.get_running_loop().run_in_executor(
            None, self._carry_out_feature, caller.clinic.domain, caller.extension, feature
        )

    def _carry_out_feature(self, domain: str, extension: str, feature: Feature) -> str:
        """Log in or out, or set or clear a forward, as ``feature`` says (in a worker thread), then
        reload the directory so the change holds for the next call at once; what was done, for the
        call's record."""
        store = ConfigStore(self.engine)
        match feature.code:
            case FeatureCode.TOGGLE_FUNCTIONS | FeatureCode.TOGGLE_GROUPS:
                kind = GroupKind.FUNCTION if feature.code is FeatureCode.TOGGLE_FUNCTIONS else GroupKind.GROUP
                toggle = store.toggle_logged_in(domain, extension, kind)
                verb = "logged in to" if toggle.logged_in else "logged out of"
                text = f"{verb} {', '.join(toggle.changed) or f'every {kind.value}'}"
            case FeatureCode.TOGGLE_PHONE:
                staff = self.directory().staff_for(domain, extension)
                on = staff is not None and not staff.phone_on
                store.set_phone(domain, extension, on)
                text = "phone logged on" if on else "phone logged off"
            case FeatureCode.TOGGLE_ONE:
                group = feature.group
                member = next((m for m in group.members if m.extension == extension), None) if group else None
                if group is None or member is None:
                    raise StoreError("not a member of that group or function")
                if member.logged_in:
                    store.logout(domain, extension, group.name)
                    text = f"logged out of {group.name}"
                else:
                    store.login(domain, extension, group.name)
                    text = f"logged in to {group.name}"
            case FeatureCode.FORWARD:
                if feature.forward is None or feature.number is None:
                    raise StoreError("a forwarding code names its kind and number")
                store.set_forward(domain, extension, feature.forward, feature.number, feature.after)
                text = f"forwarded {feature.forward.value} to {feature.number}"
            case FeatureCode.CLEAR_FORWARD:
                store.clear_forward(domain, extension, feature.forward)
                text = f"forwarding {feature.forward.value} off" if feature.forward else "forwarding off"
            case _:
                assert_never(feature.code)
        self._directory = load_directory(self.engine)
        return text

    async def _housekeeping(self) -> None:
        """Once a second: collect garbage, lift expired blocks, and drop expired bindings from
        memory and storage."""
        while True:
            await asyncio.sleep(1.0)
            self.collector.tick(time.monotonic())
            self.guard.poll(time.monotonic())
            if self.web is not None:
                self.web.poll(time.monotonic())
            if self.endpoint is not None:
                self.endpoint.log_security()
            gone = self.location.expire(time.time())
            if not gone:
                continue
            if self.endpoint is not None:
                self.endpoint.bindings_expired(gone)
            try:
                await self.writer.write([], [row.identity for row in gone])
            except Exception as exc:
                log.warning("binding_purge_failed", error=str(exc))


async def resolve_host(name: str, timeout: float) -> list[str] | None:
    """The addresses of host ``name``, looked up on the loop's resolver threads; None when it does
    not resolve within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(loop.getaddrinfo(name, None, type=socket.SOCK_DGRAM), timeout)
    except (OSError, TimeoutError, UnicodeError) as exc:
        log.debug("trunk_host_lookup_failed", host=name, error=str(exc) or type(exc).__name__)
        return None
    return [str(info[4][0]) for info in found] or None


class Trouble:
    """Logs a recurring background failure once when it starts and once when it ends, not at
    every retry: a database outage would otherwise write two warnings a second per poller."""

    def __init__(self, event: str, recovered: str) -> None:
        self.event = event
        self.recovered = recovered
        self.failures = 0
        self.since = 0.0

    def failed(self, error: BaseException) -> None:
        """One more failure; the first is logged as a warning, the rest at debug."""
        self.failures += 1
        text = first_line(error)
        if self.failures == 1:
            self.since = time.monotonic()
            log.warning(self.event, error=text, action="retrying quietly until it works")
        else:
            log.debug(self.event, error=text, failures=self.failures)

    def succeeded(self) -> None:
        """It worked: say so if it had been failing."""
        if self.failures:
            log.info(
                self.recovered,
                failures=self.failures,
                seconds=round(time.monotonic() - self.since, 1),
            )
            self.failures = 0


class CollectorPacer:
    """Paces the collector by the clock (see the module docstring): at each tick the young and
    middle generations are either collected or, while collections keep finding nothing, frozen;
    the whole heap every ``full_every`` seconds."""

    def __init__(self, now: float, full_every: float = FULL_COLLECTION_EVERY, sample_every: int = SAMPLE_EVERY) -> None:
        self.full_every = full_every
        self.sample_every = sample_every
        self._last_full = now
        self._freezes_left = 0

    def tick(self, now: float) -> int:
        """Collect or freeze what is due at ``now``: returns the oldest generation collected, or
        -1 for a tick that froze the young generations instead."""
        if now - self._last_full >= self.full_every:
            self._last_full = now
            started = time.perf_counter()
            gc.unfreeze()
            found = gc.collect(2)
            gc.freeze()
            log.debug("full_collection", ms=round((time.perf_counter() - started) * 1e3), unreachable=found)
            return 2
        if self._freezes_left > 0:
            self._freezes_left -= 1
            gc.freeze()
            return -1
        if gc.collect(1) == 0:
            self._freezes_left = self.sample_every - 1
        return 1


# glibc's thresholds for serving a large block with a mapping of its own and for giving the top of
# the heap back to the system: their defaults, held fixed (see the module docstring). mallopt's
# parameters M_TRIM_THRESHOLD and M_MMAP_THRESHOLD are -1 and -3 (malloc.h).
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 128 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Hold glibc's mmap and trim thresholds fixed at their defaults, so that large blocks freed
    go back to the system instead of leaving holes in the heap, and give back what start-up left
    free; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it; other C libraries' mallopt differ)
    except (OSError, AttributeError):
        return False
    # Start-up has usually raised both already (each large free raises them), so both are set.
    fixed = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    libc.malloc_trim(0)
    return fixed


def tune_gc() -> None:
    """Freeze what start-up left on the heap and raise the collector's thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def guard_policy(config: ServeConfig) -> GuardPolicy:
    """The guard's limits as ``config`` sets them."""
    return GuardPolicy(
        rate=config.flood_rate,
        burst=config.flood_rate * 2,
        auth_failures=config.auth_failures,
        block_seconds=config.block_seconds,
        trusted=parse_networks(config.trusted),
    )


def serve(config: ServeConfig, reread: Callable[[], Reread] | None = None) -> int:
    """Run the softswitch until SIGTERM or SIGINT; return the process exit code. ``reread`` reads
    the config file again on SIGHUP."""
    runner_factory = loop_factory()
    with asyncio.Runner(loop_factory=runner_factory) as runner:
        return runner.run(Server(config, reread).run())


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed: its datagram and timer paths are leaner."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


__all__ = ["CollectorPacer", "Server", "call_record", "loop_factory", "serve", "tune_gc", "tune_malloc"]
