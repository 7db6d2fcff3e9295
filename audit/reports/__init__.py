"""The managers' reports: approval latency, approval fatigue, agent trust, threshold what-if.

Reads only, selectors style: each report function takes the filters and returns plain data
(figures, tables, a chart description and a finding in words). Views render it; CSV exports
reuse the same rows. One module per report (latency's figures apart, in `latency_figures`),
each with one implementation that runs through the ORM on PostgreSQL and on SQLite alike
(`query` says how); `base` holds what they share.
"""

from __future__ import annotations

from ..sql import percentile_cont as percentile
from .autonomy import Advice, TrustRow
from .base import (
    AUTO,
    BAD,
    DECIDED,
    DECISIONS,
    DECISIONS_ON,
    DEFAULT_DAYS,
    DEFINITIONS,
    ESCALATED,
    EXPIRED,
    GOOD,
    NEUTRAL,
    PEAK,
    PENDING,
    PROPOSALS,
    SENT,
    SHIFT,
    SLA_BREACHES,
    SLA_JUDGED,
    WARNING,
    WITHDRAWN,
    Chart,
    Figure,
    Filters,
    Point,
    Report,
    Table,
    duration,
    local,
    marked,
    period_text,
)
from .fatigue import SHIFTS, FatigueRow, fatigue, fatigue_rows
from .latency import latency
from .latency_figures import Sla
from .queue import QueueDepth, queue_depth
from .trust import trust, trust_rows
from .whatif import WhatIf, whatif, whatif_curve, whatif_rows

REPORTS = {
    "latency": latency,
    "fatigue": fatigue,
    "trust": trust,
    "whatif": whatif,
}

__all__ = [
    "AUTO",
    "BAD",
    "DECIDED",
    "DECISIONS",
    "DECISIONS_ON",
    "DEFAULT_DAYS",
    "DEFINITIONS",
    "ESCALATED",
    "EXPIRED",
    "GOOD",
    "NEUTRAL",
    "PEAK",
    "PENDING",
    "PROPOSALS",
    "REPORTS",
    "SENT",
    "SHIFT",
    "SHIFTS",
    "SLA_BREACHES",
    "SLA_JUDGED",
    "WARNING",
    "WITHDRAWN",
    "Advice",
    "Chart",
    "FatigueRow",
    "Figure",
    "Filters",
    "Point",
    "QueueDepth",
    "Report",
    "Sla",
    "Table",
    "TrustRow",
    "WhatIf",
    "duration",
    "fatigue",
    "fatigue_rows",
    "latency",
    "local",
    "marked",
    "percentile",
    "period_text",
    "queue_depth",
    "trust",
    "trust_rows",
    "whatif",
    "whatif_curve",
    "whatif_rows",
]
