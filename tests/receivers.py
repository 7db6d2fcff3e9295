"""Receivers on 127.0.0.1 for the tests and the benchmark.

- Receiver: an agent's callback endpoint: answers each POST with the next status of a script
  (200 when it runs out) and records every request, with when it came.
- TricklingReceiver: a hostile callback receiver: it reads the POST, then answers one byte at a
  time, a byte every `interval` seconds, for as long as the sender stays (up to `hold`
  seconds). Each connection's start and end are recorded, so a test can tell how long a
  delivery held on.
- SyslogReceiver and HecReceiver: a SIEM's syslog listener (TCP or TLS) and HTTP Event
  Collector, for the audit forwarding; each can be stopped and started again on its port.
"""

from __future__ import annotations

import ipaddress
import json
import re
import select
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseRequestHandler, ThreadingTCPServer
from types import TracebackType
from typing import Any

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Hold:
    started: float
    ended: float | None = None
    bytes_sent: int = 0

    @property
    def seconds(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started


class Receiver:
    def __init__(self) -> None:
        self.url = ""
        self.answers: list[int] = []
        self.received: list[dict[str, Any]] = []
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Receiver:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                state.received.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "at": time.monotonic(),
                    }
                )
                status = state.answers.pop(0) if state.answers else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class TricklingReceiver:
    interval: float = 4.0
    hold: float = 120.0
    holds: list[Hold] = field(default_factory=list)
    url: str = ""
    _server: ThreadingTCPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> TricklingReceiver:
        receiver = self

        class Handler(BaseRequestHandler):
            def handle(self) -> None:
                hold = Hold(started=time.monotonic())
                with receiver._lock:
                    receiver.holds.append(hold)
                try:
                    receiver._trickle(self.request, hold)
                finally:
                    hold.ended = time.monotonic()

        ThreadingTCPServer.allow_reuse_address = True
        ThreadingTCPServer.daemon_threads = True
        self._server = ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.request_queue_size = 256
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _trickle(self, sock: socket.socket, hold: Hold) -> None:
        sock.settimeout(5)
        received = b""
        while b"\r\n\r\n" not in received:  # the headers; the small body follows in the buffer
            chunk = sock.recv(65536)
            if not chunk:
                return
            received += chunk
        deadline = hold.started + self.hold
        for byte in ANSWER:
            if time.monotonic() > deadline:
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            hold.bytes_sent += 1
            # Wait for the next byte's turn, noticing at once when the sender hangs up.
            next_byte_at = time.monotonic() + self.interval
            while (left := next_byte_at - time.monotonic()) > 0:
                readable, _, _ = select.select([sock], [], [], left)
                if readable:
                    try:
                        if not sock.recv(65536):
                            return
                    except OSError:
                        return

    def longest_hold(self) -> float:
        with self._lock:
            return max((hold.seconds for hold in self.holds), default=0.0)

    def finished(self) -> list[Hold]:
        with self._lock:
            return [hold for hold in self.holds if hold.ended is not None]


# --- SIEM receivers for the audit forwarding tests --------------------------------------------


def self_signed_certificate(directory: Path, name: str = "siem") -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1 and localhost (PEM files), usable as
    the receiver's certificate and as the sender's CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test receiver")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}-cert.pem"
    key_path = directory / f"{name}-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


@dataclass(frozen=True)
class Delivery:
    """One audit event as a receiver got it: on which connection (or POST), and its place."""

    connection: int
    seq: int
    hash: str
    record: dict[str, Any]
    raw: bytes = b""


class _Receiver:
    """What both receivers share: start and stop on the same port, and what they got."""

    def __init__(self) -> None:
        self.port = 0
        self.deliveries: list[Delivery] = []
        self.connections = 0
        self._lock = threading.Lock()

    def _keep(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)

    def _next_connection(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def got(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def seqs(self) -> set[int]:
        return {delivery.seq for delivery in self.got()}


def assert_delivered_in_order(deliveries: list[Delivery], chain: list[tuple[int, str]]) -> None:
    """Every event of the chain arrived; each connection carried increasing seqs; an event
    that arrived twice is the same event (seq and hash)."""
    expected = dict(chain)
    assert {d.seq for d in deliveries} == set(expected)
    for delivery in deliveries:
        assert delivery.hash == expected[delivery.seq], delivery.seq
    by_connection: dict[int, list[int]] = {}
    for delivery in deliveries:
        by_connection.setdefault(delivery.connection, []).append(delivery.seq)
    for seqs in by_connection.values():
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)), seqs
        # ... and without a gap: a connection resumes after the cursor, in order.
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), seqs


SYSLOG_EVENT = re.compile(
    rb"^<110>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+) soc-console (\d+) "
    rb"audit-event - (\{.*\})$",
    re.DOTALL,
)


class SyslogReceiver(_Receiver):
    """A SIEM's syslog listener on TCP (or TLS), reading RFC 6587 octet-counted frames.

    `stop()` behaves like a receiver that crashes: it stops listening and resets every
    connection, so that whatever sat unread in its socket buffers is lost, as it would be.
    A frame cut short by the reset is never counted. A frame that is not an audit event
    (`bad`) fails the test that reads it.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.tls = tls
        self.bad: list[bytes] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"syslog+{'tls' if self.tls else 'tcp'}://127.0.0.1:{self.port}"

    def __enter__(self) -> SyslogReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SyslogReceiver:
        self._stop = threading.Event()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept, listener, self._stop)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            self._spawn(self._read, conn, stop, self._next_connection())

    def _read(self, conn: socket.socket, stop: threading.Event, number: int) -> None:
        # Closing with SO_LINGER 0 sends a reset and discards unread bytes: a crash.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            if self.tls is not None:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(0.1)
            buffer = b""
            while not stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except (TimeoutError, ssl.SSLWantReadError):
                    continue
                if not chunk:
                    return
                buffer = self._frames(buffer + chunk, number)
        except OSError:
            return
        finally:
            conn.close()

    def _frames(self, buffer: bytes, number: int) -> bytes:
        while True:
            length, space, rest = buffer.partition(b" ")
            if not space or not length.isdigit() or len(rest) < int(length):
                return buffer
            message, buffer = rest[: int(length)], rest[int(length) :]
            match = SYSLOG_EVENT.match(message)
            if match is None:
                self.bad.append(message)
                continue
            record = json.loads(match.group(4))
            self._keep(Delivery(number, record["seq"], record["hash"], record, message))


class HecReceiver(_Receiver):
    """An HTTP Event Collector: POST /services/collector/event with `Authorization: Splunk
    <token>`, JSON events one after another; 200 when it took them. `answer` other than 200
    refuses every POST (nothing is kept); `stop()` stops listening."""

    def __init__(self, *, token: str, tls: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.token = token
        self.tls = tls
        self.answer = 200
        self.refused: list[tuple[int, str]] = []  # (status, why) of each refused POST
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> HecReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> HecReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, why = receiver._judge(self.path, self.headers.get("Authorization"))
                if status == 200:
                    number = receiver._next_connection()
                    decoder = json.JSONDecoder()
                    text, at = body.decode("ascii"), 0
                    while at < len(text):
                        while at < len(text) and text[at].isspace():
                            at += 1
                        if at == len(text):
                            break
                        event, at = decoder.raw_decode(text, at)
                        record = event["event"]
                        receiver._keep(Delivery(number, record["seq"], record["hash"], event))
                else:
                    with receiver._lock:
                        receiver.refused.append((status, why))
                answer = json.dumps({"text": why, "code": 0 if status == 200 else 9}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
        return self

    def _judge(self, path: str, authorization: str | None) -> tuple[int, str]:
        if path != "/services/collector/event":
            return 404, f"no such endpoint {path}"
        if authorization != f"Splunk {self.token}":
            return 401, "Invalid token"
        if self.answer != 200:
            return self.answer, "Server is busy"
        return 200, "Success"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
