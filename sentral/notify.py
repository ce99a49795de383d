"""Telling systemd how the service is doing: the sd_notify protocol, without libsystemd.

Theory of operation. A unit of ``Type=notify`` starts the server with ``$NOTIFY_SOCKET`` naming a
Unix datagram socket (a path, or an abstract name written with a leading ``@``). Each message is
one datagram of ``KEY=value`` lines: ``READY=1`` once the listeners are bound (systemd holds back
units ordered after Sentral until then, and counts a start that never gets there as failed),
``RELOADING=1`` and ``READY=1`` again around a ``SIGHUP`` reload, ``STOPPING=1`` when a drain
begins, ``STATUS=`` a line for ``systemctl status``. With ``WatchdogSec=`` the unit also sets
``$WATCHDOG_USEC``; the server then sends ``WATCHDOG=1`` from its event loop at half that
interval, so a loop stuck for longer gets the service restarted. ``$WATCHDOG_PID``, when set,
must be this process, or the watchdog is someone else's. Without ``$NOTIFY_SOCKET`` every call
does nothing: the same server runs in a terminal.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends sd_notify messages to the socket ``$NOTIFY_SOCKET`` names, if any."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None
        self.watchdog: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog = int(usec) / 1e6
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one message of ``KEY=value`` lines; False if there is nobody to tell or it failed."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> bool:
        """The service is up: listeners bound, start-up done."""
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> bool:
        """A reload began; ``ready`` ends it."""
        return self.send("RELOADING=1", "STATUS=reloading")

    def stopping(self, status: str) -> bool:
        """The service is on its way down."""
        return self.send("STOPPING=1", f"STATUS={status}")

    def ping(self) -> bool:
        """Keep the watchdog from restarting the service."""
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


__all__ = ["Notifier"]
