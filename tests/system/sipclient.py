"""A small raw SIP client for system tests that need exact bytes on the wire.

It speaks UDP, TCP or TLS over IPv4 or IPv6, sends REGISTER and OPTIONS, answers digest
challenges (MD5), and returns the raw responses, so tests can assert on what the server really
sent: which requests were acknowledged, which were dropped, what a keep-alive got back.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import uuid

DOMAIN = "clinic.test"


class SipClient:
    """One socket to the server; ``transport`` is udp, tcp or tls."""

    def __init__(self, host: str, port: int, transport: str = "udp", *, timeout: float = 2.0) -> None:
        self.server = (host, port)
        self.transport = transport
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        local = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        sock = socket.socket(family, kind)
        sock.settimeout(timeout)
        sock.bind((local, 0))
        if transport != "udp":
            sock.connect(self.server)
        if transport == "tls":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.local_host = local
        self.local_port = sock.getsockname()[1]
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def via_host(self) -> str:
        return f"[{self.local_host}]" if ":" in self.local_host else self.local_host

    def send(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def receive(self) -> bytes:
        """The next whole message (raises socket.timeout when nothing comes)."""
        if self.transport == "udp":
            data, _ = self.sock.recvfrom(65535)
            return data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end >= 0:
                length = re.search(rb"\r\nContent-Length:\s*(\d+)", self._buffer[:head_end], re.IGNORECASE)
                total = head_end + 4 + (int(length.group(1)) if length else 0)
                if len(self._buffer) >= total:
                    message, self._buffer = self._buffer[:total], self._buffer[total:]
                    return message
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self._buffer += chunk

    def request(self, method: str, ext: str, call_id: str, cseq: int, extra: str = "") -> str:
        """Send one request and return the final response (provisional ones are skipped)."""
        branch = "z9hG4bK" + uuid.uuid4().hex
        contact = f"Contact: <sip:{ext}@{self.via_host}:{self.local_port};transport={self.transport}>\r\n"
        message = (
            f"{method} sip:{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/{self.transport.upper()} {self.via_host}:{self.local_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{ext}@{DOMAIN}>;tag={call_id[:8]}\r\n"
            f"To: <sip:{ext}@{DOMAIN}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"{contact if method == 'REGISTER' else ''}"
            f"{'Expires: 3600' + chr(13) + chr(10) if method == 'REGISTER' else ''}"
            f"{extra}"
            "Content-Length: 0\r\n\r\n"
        )
        self.send(message.encode())
        while True:
            text = self.receive().decode()
            if f"Call-ID: {call_id}" in text and f"CSeq: {cseq} {method}" in text and not text.startswith("SIP/2.0 1"):
                return text

    def register(self, ext: str, password: str) -> str:
        """Register with digest auth; the final response to the authenticated REGISTER."""
        call_id = uuid.uuid4().hex
        challenge = self.request("REGISTER", ext, call_id, 1)
        nonce = re.search(r'nonce="([^"]+)"', challenge)
        if not challenge.startswith("SIP/2.0 401") or nonce is None:
            return challenge
        ha1 = hashlib.md5(f"{ext}:{DOMAIN}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:sip:{DOMAIN}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce.group(1)}:00000001:abc:auth:{ha2}".encode()).hexdigest()
        auth = (
            f'Authorization: Digest username="{ext}", realm="{DOMAIN}", nonce="{nonce.group(1)}", '
            f'uri="sip:{DOMAIN}", response="{response}", algorithm=MD5, cnonce="abc", qop=auth, '
            "nc=00000001\r\n"
        )
        return self.request("REGISTER", ext, call_id, 2, auth)

    def options(self) -> str:
        """An OPTIONS to the server; its final response."""
        return self.request("OPTIONS", "probe", uuid.uuid4().hex, 1)
