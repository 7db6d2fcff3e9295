"""CELERY_BROKER_URL may be Redis or RabbitMQ: with RabbitMQ the queues are quorum queues on a
topic exchange (so that countdowns use RabbitMQ's delayed delivery), Redis keeps its own
transport options, anything else stops start-up, and /healthz checks whichever it is."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from kombu.transport.native_delayed_delivery import calculate_routing_key

from approvals import enqueue
from tests.processes import free_port

SHOW = """
import json
from django.conf import settings as s
from soc_console.celery import app
c = app.conf
queues = [
    [q.name, q.exchange.name, q.exchange.type, q.routing_key, q.queue_arguments]
    for q in (c.task_queues or [])
]
print(json.dumps({
    "queues": queues,
    "default_exchange_type": c.task_default_exchange_type,
    "detect_quorum": c.worker_detect_quorum_queues,
    "acks_late": c.task_acks_late,
    "prefetch": c.worker_prefetch_multiplier,
    "transport": c.broker_transport_options,
}))
"""


def _settings(broker: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "soc_console.settings",
        "CELERY_BROKER_URL": broker,
        "CELERY_QUEUE": "soc-x",
    }
    return subprocess.run(
        [sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_rabbitmq_broker_gets_quorum_queues_late_acks_and_one_message_per_process() -> None:
    shown = _settings("amqp://soc:secret@mq.example:5672/soc")
    assert shown.returncode == 0, shown.stderr
    conf = json.loads(shown.stdout)
    quorum = {"x-queue-type": "quorum"}
    assert conf["queues"] == [
        ["soc-x", "soc-x", "topic", "soc-x", quorum],
        ["soc-x-callbacks", "soc-x", "topic", "soc-x-callbacks", quorum],
        ["soc-x-reports", "soc-x", "topic", "soc-x-reports", quorum],
    ]
    assert conf["default_exchange_type"] == "topic"
    assert conf["detect_quorum"] is True
    assert (conf["acks_late"], conf["prefetch"]) == (True, 1)
    assert conf["transport"] == {}


def test_a_redis_broker_keeps_its_queues_and_visibility_timeout() -> None:
    shown = _settings("redis://127.0.0.1:6379/5")
    assert shown.returncode == 0, shown.stderr
    conf = json.loads(shown.stdout)
    assert conf["queues"] == []
    assert conf["default_exchange_type"] == "direct"
    assert conf["transport"]["visibility_timeout"] == 600


def test_any_other_broker_stops_start_up_naming_the_setting() -> None:
    refused = _settings("sqs://queue.example")
    assert refused.returncode != 0
    assert "CELERY_BROKER_URL must be a redis:// or amqp:// URL, not sqs://" in refused.stderr


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.django_db
def test_healthz_checks_a_rabbitmq_broker(settings) -> None:
    settings.BROKER_IS_RABBITMQ = True
    settings.CELERY_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    down = Client().get("/healthz")
    assert down.status_code == 503
    assert down.json()["broker"].startswith("degraded: ")
    if not _rabbitmq_answers():
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
    assert Client().get("/healthz").json()["broker"] == "ok"


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    wait=st.one_of(
        st.none(),
        st.floats(min_value=-3600, max_value=3600, allow_nan=False),
        st.floats(min_value=-2, max_value=2, allow_nan=False),
    )
)
def test_rabbitmq_accepts_a_tasks_countdown_and_delivers_it_no_sooner_than_due(
    wait: float | None,
) -> None:
    countdown = enqueue.whole_seconds_countdown(wait)
    if wait is None or wait <= 0:
        assert countdown is None  # due already: sent to run now
        return
    # What Celery does with it for a quorum queue: it must not refuse it, and the whole
    # seconds it keeps must neither deliver the task early nor more than a second late.
    assert isinstance(countdown, int)
    assert countdown >= wait and countdown - wait <= 1
    calculate_routing_key(int(countdown), "soc")
