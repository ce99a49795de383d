"""Transports and the abuse guard, seen from the wire: TLS, IPv6, TCP framing, blocking."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.peers import free_port, wait_until
from tests.system.server import SentralServer, sentral_command
from tests.system.sipclient import DOMAIN, SipClient


def make_server(tmp_path: Path, *extra: str) -> SentralServer:
    workdir = tmp_path / "server"
    workdir.mkdir(exist_ok=True)
    server = SentralServer(f"sqlite:///{workdir / 'sentral.db'}", workdir, extra_args=extra)
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        ("clinic", "set", DOMAIN, "--digest", "md5"),
        ("user", "add", "1001", "--name", "Kari Nordmann", "--password", "secret-1001"),
    )
    return server


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=clinic.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[tuple[SentralServer, int]]:
    port = free_port()
    cert, key = certificate
    server = make_server(tmp_path, "--listen", f"tls:127.0.0.1:{port}", "--cert", str(cert), "--key", str(key))
    server.start()
    try:
        yield server, port
    finally:
        server.stop()


def serve_refused(server: SentralServer, *args: str) -> str:
    """Run ``sentral serve ARGS`` on the server's database, expecting it to refuse to start: its
    stderr, once it has exited 1 without a traceback."""
    command = [*sentral_command(), "--db", server.db_url, "serve", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, env=server.env)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"$ {' '.join(command)}\nstarted serving instead of refusing to") from exc
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_a_second_server_on_the_same_udp_port_refuses_to_start(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.start()
    try:
        for transport in ("udp", "tcp"):
            said = serve_refused(server, "--listen", f"{transport}:{server.address}")
            sentence = f"cannot listen on {transport}:{server.address}: the {transport.upper()} port"
            assert sentence in said, said
            assert "is in use" in said and "another server" in said, said
        host, port = server.address.split(":")
        with SipClient(host, int(port)) as client:  # the first server still has the traffic
            assert client.options().startswith("SIP/2.0 200")
    finally:
        server.stop()


def test_a_listen_host_that_does_not_resolve_is_named(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    said = serve_refused(server, "--listen", "udp:no-such-host.invalid:5060")
    sentence = "cannot listen on udp:no-such-host.invalid:5060: the host no-such-host.invalid does not resolve"
    assert sentence in said, said
    assert "another server" not in said, said


@pytest.mark.parametrize(
    ("cert_file", "key_file", "says"),
    [
        ("junk", "key", "the TLS certificate {junk} holds no PEM certificate"),
        ("key", "cert", "the TLS certificate {key} holds no PEM certificate"),
        ("cert", "junk", "the TLS private key {junk} holds no PEM private key"),
        ("cert", "other_key", "the TLS private key {other_key} does not belong to the certificate {cert}"),
        ("cert", "locked_key", "the TLS private key {locked_key} is protected by a passphrase"),
        ("cert", "missing", "cannot read the TLS private key {missing}: No such file or directory"),
    ],
)
def test_a_tls_certificate_or_key_that_cannot_be_used_is_named(
    tmp_path: Path, certificate: tuple[Path, Path], cert_file: str, key_file: str, says: str
) -> None:
    cert, key = certificate
    junk, other_key, locked_key = (tmp_path / f"{name}.pem" for name in ("junk", "other-key", "locked-key"))
    junk.write_text("not a certificate\n")
    subprocess.run(["openssl", "genrsa", "-out", str(other_key), "2048"], check=True, capture_output=True)
    subprocess.run(
        ["openssl", "genrsa", "-aes256", "-passout", "pass:secret", "-out", str(locked_key), "2048"],
        check=True,
        capture_output=True,
    )
    files = {
        "cert": cert, "key": key, "junk": junk, "other_key": other_key, "locked_key": locked_key,
        "missing": tmp_path / "missing.pem",
    }  # fmt: skip
    server = make_server(tmp_path)
    listen = f"tls:127.0.0.1:{free_port()}"
    said = serve_refused(
        server, "--listen", listen, "--cert", str(files[cert_file]), "--key", str(files[key_file])
    )
    assert says.format(**files) in said, said


def test_register_over_tls(tls_server: tuple[SentralServer, int]) -> None:
    server, port = tls_server
    with SipClient("127.0.0.1", port, "tls") as client:
        answer = client.register("1001", "secret-1001")
    assert answer.startswith("SIP/2.0 200"), answer
    [row] = server.registrations()
    assert row["transport"] == "tls"


def test_register_over_ipv6(tmp_path: Path) -> None:
    port = free_port()
    server = make_server(tmp_path, "--listen", f"udp:[::1]:{port}")
    server.start()
    try:
        with SipClient("::1", port, "udp") as client:
            answer = client.register("1001", "secret-1001")
        assert answer.startswith("SIP/2.0 200"), answer
        [row] = server.registrations()
        assert str(row["source"]).startswith("[::1]:")
        assert "[::1]" in str(row["contact"])
    finally:
        server.stop()


def test_tcp_keepalive_gets_a_pong_and_broken_framing_closes_the_connection(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.start()
    try:
        host, port = server.address.split(":")
        with socket.create_connection((host, int(port)), timeout=2) as conn:
            conn.sendall(b"\r\n\r\n")  # RFC 5626 ping
            assert conn.recv(16) == b"\r\n"
        with socket.create_connection((host, int(port)), timeout=2) as conn:
            conn.sendall(b"OPTIONS sip:clinic.test SIP/2.0\r\nContent-Length: banana\r\n\r\n")
            assert conn.recv(4096) == b""  # closed, no answer over a stream out of step
        with SipClient(host, int(port), "tcp") as client:  # the server is still fine
            assert client.options().startswith("SIP/2.0 200")
    finally:
        server.stop()


def test_malformed_requests_get_the_status_the_rfcs_prescribe(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.start()
    try:
        host, port = server.address.split(":")
        with SipClient(host, int(port)) as client:
            base = (
                "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n"
                "From: <sip:x@clinic.test>;tag=1\r\nTo: <sip:x@clinic.test>\r\nCall-ID: {branch}\r\n"
                "CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
            )
            cases = [
                ("OPTIONS sip:clinic.test SIP/7.0", "OPTIONS", "", "505"),
                ("FROBNICATE sip:clinic.test SIP/2.0", "FROBNICATE", "", "501"),
                ("OPTIONS mailto:x@clinic.test SIP/2.0", "OPTIONS", "", "416"),
                ("OPTIONS sip:clinic.test SIP/2.0", "OPTIONS", "Require: teleportation\r\n", "420"),
                ("OPTIONS sip:clinic.test SIP/2.0", "INVITE", "", "400"),  # CSeq method mismatch
            ]
            for n, (line, method, extra, status) in enumerate(cases):
                client.send((line + "\r\n" + base.format(port=client.local_port, branch=f"case{n}", method=method, extra=extra)).encode())
                answer = client.receive().decode()
                assert answer.split(" ")[1] == status, (line, answer)
                if status == "420":
                    assert "Unsupported: teleportation" in answer
            client.send(b"SIP/2.0 999 Nonsense\r\nContent-Length: 0\r\n\r\n")  # dropped silently
            assert client.options().startswith("SIP/2.0 200")
    finally:
        server.stop()


def test_repeated_auth_failures_block_the_source_and_the_block_expires(tmp_path: Path) -> None:
    server = make_server(tmp_path, "--trust", "none", "--auth-failures", "3", "--block-seconds", "3")
    server.start()
    try:
        host, port = server.address.split(":")
        with SipClient(host, int(port), timeout=1.0) as client:
            for _ in range(4):
                assert client.register("1001", "wrong-password").startswith("SIP/2.0 401")
            with pytest.raises(TimeoutError):
                client.options()  # blocked: dropped without an answer
        wait_until(lambda: "security_blocked" in server.log_tail(100), 5, "the block to be logged")
        blocked = [line for line in server.log_tail(100).splitlines() if "security_blocked" in line]
        assert "remote=127.0.0.1" in blocked[0]
        assert "wrong-password" not in server.log_path.read_text()
        time.sleep(3.5)
        with SipClient(host, int(port), timeout=2.0) as client:
            assert client.register("1001", "secret-1001").startswith("SIP/2.0 200")
    finally:
        server.stop()
