"""Random tokens for tags, branches, Call-IDs and nonces, read from the operating system in blocks.

RFC 3261 asks for tags and Call-IDs that are cryptographically random, and a branch and a nonce
must not be guessable either, so every token comes from ``os.urandom``. A call uses about ten of
them; asking the kernel for each one cost a system call apiece on the event loop's thread. The
bytes are read 4 KiB at a time instead, each byte is handed out once, and a forked child starts
with an empty pool so that it never repeats its parent's tokens.
"""

from __future__ import annotations

import os

BLOCK = 4096


class _Pool:
    def __init__(self) -> None:
        self.data = b""
        self.at = 0

    def take(self, n: int) -> bytes:
        start = self.at
        end = start + n
        if end > len(self.data):
            self.data = os.urandom(max(BLOCK, n))
            start, end = 0, n
        self.at = end
        return self.data[start:end]


_pool = _Pool()


def _forget() -> None:
    _pool.data = b""
    _pool.at = 0


os.register_at_fork(after_in_child=_forget)


def token_bytes(n: int) -> bytes:
    """``n`` random bytes."""
    return _pool.take(n)


def token_hex(n: int) -> str:
    """``n`` random bytes as ``2 * n`` hexadecimal digits."""
    return _pool.take(n).hex()


def randbits(k: int) -> int:
    """A random integer of ``k`` bits (``0 <= result < 2**k``)."""
    return int.from_bytes(_pool.take((k + 7) // 8), "big") >> (-k % 8)
