"""A refused request is one warning line in the log, without a traceback: an analyst opening a
manager's page is the client's doing, not a fault. A 500 keeps its traceback."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from django.test import Client

from soc_console import logs

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/reports/", "/audit/", "/reports/latency.csv"])
def test_an_analysts_403_is_one_warning_line_without_a_traceback(
    client: Client, analyst, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    client.force_login(analyst)
    with caplog.at_level(logging.INFO, logger="django.request"):
        assert client.get(url).status_code == 403
    refused = [r for r in caplog.records if r.name == "django.request"]
    assert len(refused) == 1
    record = refused[0]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"Forbidden (Permission denied): {url}"
    assert record.exc_info is None and not record.exc_text
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line and "Traceback" not in line
    assert json.loads(line)["status"] == 403
    assert "exception" not in json.loads(line)


def test_a_500_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise RuntimeError("a fault in the console")
    except RuntimeError:
        failure = sys.exc_info()
    with caplog.at_level(logging.INFO, logger="django.request"):
        logging.getLogger("django.request").error(
            "Internal Server Error: %s", "/reports/", exc_info=failure, extra={"status_code": 500}
        )
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info is not None
    assert "RuntimeError: a fault in the console" in logs.JsonFormatter().format(record)
