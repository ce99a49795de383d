"""HTTP digest authentication for SIP (RFC 7616, RFC 8760, RFC 3261 §22)."""

from __future__ import annotations

import hashlib

ALGORITHMS: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password) in lower-case hex: what storage keeps instead of the password."""
    return hashlib.new(ALGORITHMS[algorithm], f"{username}:{realm}:{password}".encode()).hexdigest()
