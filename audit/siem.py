"""Where the audit trail is forwarded (AUDIT_FORWARD_URL) and the protocols that carry it there.

Each destination gets a Sender; audit/forward.py decides what to send and when, and moves the
destination's cursor past what its Sender says the destination accepted. What "accepted" means
depends on the protocol:

- HTTP Event Collector (https://): the collector answered 200 to the POST that carried them.
- Syslog over TCP or TLS: plain syslog has no acknowledgement. A batch counts as accepted when
  the receiver's TCP stack has acknowledged every byte of it (the socket's unacknowledged
  output is empty) and the connection is still open SETTLE_SECONDS after it was written. A
  receiver that stops or crashes with events in its socket buffer resets the connection, and
  those events are sent again; what a receiver read and then lost, it lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import ssl
import struct
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

from .anchor import rfc5424
from .canonical import encode
from .models import AuditEvent

# Syslog: how long a batch's connection must stay open after the batch was written before it
# counts as delivered (see the module's docstring).
SETTLE_SECONDS = 1.0
HEC_PATH = "/services/collector/event"


class DeliveryError(Exception):
    """The destination refused the events, or the connection to it failed."""


@dataclass(frozen=True)
class Destination:
    url: str

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def name(self) -> str:
        """The destination as the cursor and /metrics name it: the URL without credentials."""
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def destinations() -> list[Destination]:
    return [Destination(url) for url in settings.AUDIT_FORWARD_URL]


def _tls_context() -> ssl.SSLContext:
    ca_file = settings.AUDIT_FORWARD_CA_FILE or None
    return ssl.create_default_context(cafile=ca_file)


# --- senders --------------------------------------------------------------------------------


class Sender(Protocol):
    def send(self, events: Sequence[AuditEvent]) -> None:
        """Write the events in order; raises DeliveryError (or OSError) when they were not."""

    def delivered_until(self) -> float:
        """The monotonic time up to which everything written counts as delivered."""

    def close(self) -> None: ...


def syslog_frame(event: AuditEvent) -> bytes:
    """An event as RFC 5424, octet-counted (RFC 6587): `LENGTH SP MESSAGE`, so that a message
    cut short by a broken connection is seen as incomplete and never as another event."""
    message = rfc5424(msgid="audit-event", at=event.at, message=encode(event.siem_record()))
    return b"%d %s" % (len(message), message)


def _unacknowledged_bytes(sock: socket.socket) -> int:
    """Bytes written to the socket that the peer's TCP stack has not acknowledged (Linux's
    SIOCOUTQ); 0 where the system cannot tell."""
    try:
        answer = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, AttributeError):
        return 0
    return int(struct.unpack("i", answer)[0])


class SyslogSender:
    def __init__(
        self, destination: Destination, *, timeout: float, settle: float = SETTLE_SECONDS
    ) -> None:
        parts = urlsplit(destination.url)
        self.timeout = timeout
        self.settle = settle
        sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        try:
            if destination.scheme == "syslog+tls":
                sock = _tls_context().wrap_socket(sock, server_hostname=parts.hostname)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.acknowledged_at = time.monotonic()

    def send(self, events: Sequence[AuditEvent]) -> None:
        self.sock.sendall(b"".join(syslog_frame(event) for event in events))

    def _still_open(self) -> bool:
        """False once the receiver closed or reset the connection. A syslog receiver sends
        nothing, so anything readable is its end of the connection (or TLS housekeeping)."""
        self.sock.setblocking(False)
        try:
            while True:
                if not self.sock.recv(4096):
                    return False
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True
        except OSError:
            return False
        finally:
            self.sock.settimeout(self.timeout)

    def delivered_until(self) -> float:
        now = time.monotonic()
        if not self._still_open():
            raise DeliveryError("the receiver closed the connection")
        if _unacknowledged_bytes(self.sock) == 0:
            self.acknowledged_at = now
        return min(self.acknowledged_at, now - self.settle)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def hec_event(event: AuditEvent) -> dict[str, object]:
    """An event as the HTTP Event Collector takes it; the event itself is its SIEM record."""
    return {
        "time": round(event.at.timestamp(), 6),
        "host": socket.gethostname(),
        "source": "soc-console",
        "sourcetype": "soc:audit",
        "event": event.siem_record(),
    }


class HecSender:
    """Splunk's HTTP Event Collector protocol: events as JSON objects, one after another, in
    one POST; `Authorization: Splunk <token>`; 200 means the collector took them all."""

    def __init__(self, destination: Destination, *, timeout: float) -> None:
        parts = urlsplit(destination.url)
        path = parts.path if parts.path not in ("", "/") else HEC_PATH
        self.url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self.client = httpx.Client(
            timeout=timeout,
            verify=_tls_context() if parts.scheme == "https" else True,
            headers={
                "Authorization": f"Splunk {settings.AUDIT_FORWARD_TOKEN}",
                "Content-Type": "application/json",
            },
        )

    def send(self, events: Sequence[AuditEvent]) -> None:
        body = "\n".join(encode(hec_event(event)) for event in events)
        try:
            response = self.client.post(self.url, content=body.encode("ascii"))
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")

    def delivered_until(self) -> float:
        return float("inf")  # send() returned only once the collector took them

    def close(self) -> None:
        self.client.close()


def open_sender(destination: Destination, *, timeout: float, settle: float) -> Sender:
    if destination.scheme.startswith("syslog+"):
        return SyslogSender(destination, timeout=timeout, settle=settle)
    return HecSender(destination, timeout=timeout)
