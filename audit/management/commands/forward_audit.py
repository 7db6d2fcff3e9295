from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from audit.forward import Forwarder
from audit.siem import DeliveryError, Destination, destinations

logger = logging.getLogger("audit.forward")


class Command(BaseCommand):
    help = (
        "Forward every audit event, at least once and in order, to each AUDIT_FORWARD_URL "
        "(syslog+tcp://, syslog+tls://, https:// HTTP Event Collector), resuming after each "
        "destination's cursor. Runs until stopped (SIGTERM or SIGINT); with --once, forwards "
        "what is there and exits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Forward every event recorded so far to each destination, then exit (non-zero "
            "when a destination failed).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ca_file = settings.AUDIT_FORWARD_CA_FILE
        if ca_file and not os.path.isfile(ca_file):
            raise CommandError(f"AUDIT_FORWARD_CA_FILE: {ca_file} is not a readable file")
        targets = destinations()
        if options["once"]:
            self._once(targets)
            return
        stop = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        if not targets:
            # Idle rather than exit: process managers (honcho, compose) treat an exit as a
            # failure, and there is nothing to do until the setting names a destination.
            logger.info("AUDIT_FORWARD_URL is not set: no audit event is forwarded")
            stop.wait()
            return
        logger.info(
            "forwarding the audit trail to %s", ", ".join(target.name for target in targets)
        )
        # One thread per destination: one that is down or slow never holds back another.
        threads = [
            threading.Thread(
                target=self._forward, args=(Forwarder(target), stop), name=f"forward-{n}"
            )
            for n, target in enumerate(targets)
        ]
        for thread in threads:
            thread.start()
        while not stop.wait(1.0):
            if not any(thread.is_alive() for thread in threads):
                break
        stop.set()
        for thread in threads:
            thread.join()

    @staticmethod
    def _forward(forwarder: Forwarder, stop: threading.Event) -> None:
        try:
            forwarder.run(stop)
        finally:
            connection.close()  # this thread's own

    def _once(self, targets: list[Destination]) -> None:
        failed = []
        for target in targets:
            forwarder = Forwarder(target)
            try:
                forwarder.drain()
            except (DeliveryError, OSError) as exc:
                failed.append(f"{target.name}: {exc}")
            finally:
                forwarder.release()
            self.stdout.write(f"{target.name}: delivered up to #{forwarder.cursor}")
        if failed:
            raise CommandError("audit events not forwarded: " + "; ".join(failed))
