from __future__ import annotations

import uuid
from datetime import UTC, datetime

from audit.log import canonical


def test_canonical_content_is_the_same_whatever_form_the_database_returns_a_uuid_in() -> None:
    proposal_id = uuid.uuid4()
    at = datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC)
    forms = {
        canonical(
            seq=1,
            at=at,
            actor_type="agent",
            actor="a",
            event_type="e",
            proposal_id=value,
            data={"x": 1},
        )
        for value in (proposal_id, str(proposal_id), proposal_id.hex)
    }
    assert len(forms) == 1
