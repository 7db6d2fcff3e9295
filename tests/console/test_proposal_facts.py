"""The proposal page's facts read as a person reads them: parameters by name with their values
in JSON, never a Python dict; the target said once when the canonical one is the same."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests import factories

pytestmark = pytest.mark.django_db


def test_parameters_show_by_name_with_json_values(
    signed_in: Callable[[User], Client], analyst: User
) -> None:
    bot = factories.agent("edr-bot", grants={"block_ip": 2})
    proposal = factories.proposal(
        bot, action="block_ip", target="203.0.113.21", params={"duration_minutes": 60}
    )
    page = signed_in(analyst).get(f"/proposals/{proposal.id}/").content.decode()
    assert "<dt>Parameters</dt>" in page
    assert '<ul class="params"><li><code>duration_minutes</code>: <code>60</code></li></ul>' in page
    assert "{&#x27;duration_minutes&#x27;" not in page and "{'duration_minutes'" not in page


def test_a_target_whose_canonical_form_is_the_same_is_said_once(
    signed_in: Callable[[User], Client], analyst: User
) -> None:
    bot = factories.agent("edr-bot", grants={"block_ip": 2})
    proposal = factories.proposal(bot, action="block_ip", target="203.0.113.21")
    assert proposal.target_canonical == proposal.target
    page = signed_in(analyst).get(f"/proposals/{proposal.id}/").content.decode()
    assert "<dt>Target</dt><dd><code>203.0.113.21</code></dd>" in page
    assert "as submitted" not in page and "canonical <code>" not in page
    assert "<dt>Parameters</dt>" not in page  # none given, none shown
