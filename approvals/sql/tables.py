"""The tables approvals' statements name, from the models' `_meta`."""

from __future__ import annotations

from agents.models import Agent, EmergencyStop, Grant, Policy
from audit.models import AuditEvent

from ..models import AttentionCheck, ConnectorCall, ConnectorState, Execution, Proposal

EXECUTION = Execution._meta.db_table
PROPOSAL = Proposal._meta.db_table
AGENT = Agent._meta.db_table
STOP = EmergencyStop._meta.db_table
POLICY = Policy._meta.db_table
GRANT = Grant._meta.db_table
LEDGER = ConnectorCall._meta.db_table
CONNECTOR_STATE = ConnectorState._meta.db_table
ATTENTION_CHECK = AttentionCheck._meta.db_table
AUDIT_EVENT = AuditEvent._meta.db_table
