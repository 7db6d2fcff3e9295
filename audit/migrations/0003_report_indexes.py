"""Covering indexes for the managers' reports (audit/reports.py), on PostgreSQL.

Every report reads one period of proposals, decisions or executions. With these indexes
PostgreSQL answers from the index alone (an index-only scan) without visiting the wide
proposal rows (rationale, evidence, params). They are plain SQL rather than model Meta
indexes because they belong to the reports, not to the approvals models, and because SQLite
has no INCLUDE columns (the SQLite report path reads through the ORM anyway).
"""

from __future__ import annotations

from django.db import migrations

INDEXES = {
    "proposal_report_cover": (
        "approvals_proposal (created_at) INCLUDE (agent_id, action, status, decided_at, "
        "confidence, criticality, required_approvals, escalated_at, expires_at)"
    ),
    "decision_report_cover": (
        "approvals_decision (created_at) INCLUDE (analyst_id, proposal_id, verdict, "
        "seconds_on_card)"
    ),
    "decision_report_analyst": (
        "approvals_decision (analyst_id, created_at) INCLUDE (proposal_id, verdict, "
        "seconds_on_card)"
    ),
    "execution_report_cover": (
        "approvals_execution (created_at) INCLUDE (proposal_id, status, started_at, "
        "finished_at)"
    ),
}


def forwards(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}")


def backwards(apps, schema_editor) -> None:  # noqa: ANN001
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_triggers"), ("approvals", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
