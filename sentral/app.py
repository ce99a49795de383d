"""Wiring: the one place that builds the running system from its configuration."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import structlog

from sentral.config.db import make_engine, schema_is_current
from sentral.config.directory import Directory, directory_version, load_directory
from sentral.config.settings import ServeConfig
from sentral.config.store import BindingStore, ConfigStore
from sentral.config.writer import BindingWriter
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.guard import Guard, GuardPolicy, parse_networks
from sentral.pbx.location import Location
from sentral.pbx.registrar import Registrar, RegistrarPolicy
from sentral.pbx.sip.auth import DigestAuthority
from sentral.pbx.sip.transaction import TransactionLayer
from sentral.pbx.transport import Origin, Transports, make_server_ssl_context

log = structlog.get_logger("sentral")

DIRECTORY_POLL = 0.5


class Server:
    """The running system: storage, the SIP core, transports and their background work."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.engine = make_engine(config.db_url)
        self.store = BindingStore(self.engine)
        self.location = Location()
        self.writer = BindingWriter(self.store)
        self.guard = Guard(
            GuardPolicy(
                rate=config.flood_rate,
                burst=config.flood_rate * 2,
                auth_failures=config.auth_failures,
                block_seconds=config.block_seconds,
                trusted=parse_networks(config.trusted),
            )
        )
        self._directory: Directory | None = None
        ssl_context = make_server_ssl_context(config.cert, config.key) if config.cert and config.key else None
        self.layer = TransactionLayer()
        self.transports = Transports(self._on_message, ssl_context=ssl_context)
        self.endpoint: Endpoint | None = None
        self._stop = asyncio.Event()
        self._interrupts = 0

    def directory(self) -> Directory:
        """The current configuration snapshot."""
        assert self._directory is not None
        return self._directory

    def _on_message(self, data: bytes, origin: Origin) -> None:
        assert self.endpoint is not None
        self.endpoint.on_message(data, origin)

    async def run(self) -> int:
        """Serve until stopped; the exit code."""
        loop = asyncio.get_running_loop()
        if not await asyncio.to_thread(schema_is_current, self.engine):
            log.error("schema_outdated", hint="run `sentral init` first")
            return 1
        # The nonce key outlives restarts, so phones holding a nonce are not failed after one.
        secret = await asyncio.to_thread(ConfigStore(self.engine).server_secret, "digest-nonce")
        registrar = Registrar(DigestAuthority(secret), self.location, RegistrarPolicy())
        endpoint = self.endpoint = Endpoint(
            self.transports,
            self.layer,
            registrar,
            self.location,
            self.writer,
            self.guard,
            self.directory,
            sip_trace=self.config.sip_trace,
        )
        endpoint.attach(loop)
        self._directory = await asyncio.to_thread(load_directory, self.engine)
        rows = await asyncio.to_thread(self.store.load_active, time.time())
        self.location.apply(rows, [])
        self.writer.start()
        try:
            await self.transports.start(self.config.listens)
        except OSError as exc:
            log.error("cannot_listen", error=str(exc), hint="is another server using the port?")
            await self.writer.close()
            return 1
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        log.info(
            "serving",
            listen=[str(listen) for listen in self.transports.bound],
            clinics=sorted(self.directory().clinics),
            bindings=len(self.location),
        )
        tasks = [
            asyncio.create_task(self._follow_directory(), name="directory-follower"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
        ]
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.transports.close()
            await self.writer.close()
            self.engine.dispose()
        log.info("stopped")
        return 0

    def _on_signal(self, signum: int) -> None:
        self._interrupts += 1
        if signum == signal.SIGINT and self._interrupts > 1:
            os._exit(130)
        log.info("stopping", signal=signal.Signals(signum).name)
        self._stop.set()

    async def _follow_directory(self) -> None:
        """Reload staff and clinics within half a second of a change made with the CLI."""
        while True:
            await asyncio.sleep(DIRECTORY_POLL)
            try:
                version = await asyncio.to_thread(directory_version, self.engine)
                if version != self.directory().version:
                    self._directory = await asyncio.to_thread(load_directory, self.engine)
                    log.info("directory_reloaded", version=version)
            except Exception as exc:
                log.warning("directory_reload_failed", error=str(exc))

    async def _housekeeping(self) -> None:
        """Once a second: lift expired blocks, and drop expired bindings from memory and storage."""
        while True:
            await asyncio.sleep(1.0)
            self.guard.poll(time.monotonic())
            if self.endpoint is not None:
                self.endpoint.log_security()
            gone = self.location.expire(time.time())
            if not gone:
                continue
            for row in gone:
                log.info("binding_expired", extension=row.extension, domain=row.domain)
            try:
                await self.writer.write([], [row.identity for row in gone])
            except Exception as exc:
                log.warning("binding_purge_failed", error=str(exc))


def serve(config: ServeConfig) -> int:
    """Run the softswitch until SIGTERM or SIGINT; return the process exit code."""
    runner_factory = _loop_factory()
    with asyncio.Runner(loop_factory=runner_factory) as runner:
        return runner.run(Server(config).run())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed: its datagram and timer paths are leaner."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


__all__ = ["Server", "serve"]
