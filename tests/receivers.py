"""A hostile callback receiver on 127.0.0.1, for the tests and the benchmark: it reads the POST,
then answers one byte at a time, a byte every `interval` seconds, for as long as the sender
stays (up to `hold` seconds). Each connection's start and end are recorded, so a test can tell
how long a delivery held on."""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field
from socketserver import BaseRequestHandler, ThreadingTCPServer
from types import TracebackType

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Hold:
    started: float
    ended: float | None = None
    bytes_sent: int = 0

    @property
    def seconds(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started


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
