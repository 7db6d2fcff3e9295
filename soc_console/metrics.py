"""/metrics: Prometheus text format, the same answer from any web process on any node.

Several web processes serve the console and the workers run elsewhere, so a counter kept in
one process's memory would see a fraction of the events and start from zero at each restart.
Nothing here is counted in memory. Every figure comes from state shared by all processes:

- gauges (pending proposals, oldest pending age, executions waiting or needing a human, the
  stop, suspended agents) are read from the database at scrape time, with indexed queries on
  the small sets they count;
- counters and histograms (routing outcomes, decisions and time to decide, execution status
  changes, connector call latency, escalations, holds, breaker trips) are folded from the audit
  log, which records every one of those events in commit order (`seq`). The running totals and
  the last folded event live in Redis; each scrape folds only the events since, so its cost
  follows the traffic since the last scrape, not the size of the history. A fold is written
  back only if no other scrape wrote meanwhile (WATCH), and one whose last event is not in the
  database any more (another database, a test's rolled-back rows) starts again from the first;
- open consoles are counted per process in Redis (approvals/presence.py), queue depth is asked
  of the broker.

Access: with METRICS_TOKEN set, `Authorization: Bearer <token>`; without it, loopback only.
"""

from __future__ import annotations

import bisect
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Max, Min, Q
from django.db.models.fields.json import KT
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from agents import catalogue
from agents.models import Agent, EmergencyStop
from approvals import presence
from approvals.models import Execution, ExecutionStatus, Proposal, ProposalStatus
from approvals.priority import AGE_POINTS_PER_HOUR
from approvals.tasks import HEARTBEAT_KEY
from audit import forward
from audit.models import AuditEvent

logger = logging.getLogger(__name__)

# The classic text format, which every Prometheus version reads; the names here all fit it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Pending proposals by their priority now (risk × criticality × confidence, plus 4 points an
# hour of waiting; see approvals/priority.py): a high-risk action on a critical asset starts in
# "critical", anything starts moving up a band after a few hours unanswered.
PRIORITY_BANDS = (("critical", 16.0), ("high", 8.0), ("medium", 4.0), ("low", float("-inf")))
# Executions waiting, running or needing a human. Succeeded and rolled back only grow: their
# totals are soc_execution_transitions_total.
EXECUTION_GAUGE_STATUSES = (
    ExecutionStatus.QUEUED,
    ExecutionStatus.RUNNING,
    ExecutionStatus.HELD,
    ExecutionStatus.ROLLING_BACK,
    ExecutionStatus.FAILED,
    ExecutionStatus.ROLLBACK_FAILED,
)
DECISION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)
CONNECTOR_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DECISION_EVENTS = {
    "proposal.approval_recorded": "approve",
    "proposal.approved": "approve",
    "proposal.rejected": "reject",
}
FOLD_BATCH = 20_000  # audit events read per query
FOLD_SECONDS = 2.0  # a scrape folds for at most this long; a long backlog takes a few scrapes


# --- the audit fold -------------------------------------------------------------------------


def _new_totals() -> dict[str, Any]:
    return {
        "seq": 0,
        "hash": "",
        "routed": {},  # outcome -> n
        "decisions": {},  # "action verdict" -> [n per bucket..., n over the last, sum]
        "transitions": {},  # execution status -> n
        "connector": {},  # "connector outcome" -> as decisions
        "escalations": 0,
        "holds": {},  # why -> n
        "breaker_trips": 0,
        "undone": {},  # action -> approvals undone within their window
    }


def _observe(histograms: dict[str, list[float]], key: str, buckets: tuple, value: float) -> None:
    counts = histograms.setdefault(key, [0] * (len(buckets) + 1) + [0.0])
    counts[bisect.bisect_left(buckets, value)] += 1
    counts[-1] += value


def _add(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _fold_rows(totals: dict[str, Any], rows: list[tuple], proposals: dict[Any, tuple]) -> None:
    for _seq, _hash, event_type, actor_type, at, proposal_id, status, why, seconds in rows:
        if event_type == "proposal.submitted":
            _add(totals["routed"], status or "unknown")
        elif event_type in DECISION_EVENTS:
            action, created_at = proposals.get(proposal_id, ("unknown", None))
            if created_at is not None:
                waited = max((at - created_at).total_seconds(), 0.0)
                key = f"{action} {DECISION_EVENTS[event_type]}"
                _observe(totals["decisions"], key, DECISION_BUCKETS, waited)
        elif event_type == "proposal.approval_undone":
            action = proposals.get(proposal_id, ("unknown", None))[0]
            _add(totals.setdefault("undone", {}), action)
        elif event_type == "proposal.escalated":
            totals["escalations"] += 1
        elif event_type == "agent.suspended" and actor_type == "system":
            # The circuit breaker suspends an agent as the system; people suspend as themselves.
            totals["breaker_trips"] += 1
        elif event_type.startswith("execution."):
            if status:
                _add(totals["transitions"], status)
            if event_type == "execution.held":
                _add(totals["holds"], why or "unknown")
            if seconds is not None:
                action = proposals.get(proposal_id, ("unknown", None))[0]
                kind = catalogue.get(action)
                key = f"{kind.connector if kind else 'unknown'} {_call_outcome(event_type)}"
                _observe(totals["connector"], key, CONNECTOR_BUCKETS, float(seconds))


def _call_outcome(event_type: str) -> str:
    if event_type.endswith("succeeded"):
        return "succeeded"
    if event_type.endswith("retry_scheduled"):
        return "transient_error"
    return "failed"


def _event_rows(after: int) -> list[tuple]:
    # The few fields the fold reads, taken out of the JSON by the database.
    return list(
        AuditEvent.objects.filter(seq__gt=after)
        .order_by("seq")
        .annotate(
            status=KT("data__status"),
            why=KT("data__why"),
            seconds=KT("data__connector_seconds"),
        )
        .values_list(
            "seq",
            "hash",
            "event_type",
            "actor_type",
            "at",
            "proposal_id",
            "status",
            "why",
            "seconds",
        )[:FOLD_BATCH]
    )


def _proposals_of(rows: list[tuple]) -> dict[Any, tuple[str, datetime]]:
    wanted = {
        row[5]
        for row in rows
        if row[5] is not None
        and (
            row[2] in DECISION_EVENTS or row[2] == "proposal.approval_undone" or row[8] is not None
        )
    }
    if not wanted:
        return {}
    return {
        pk: (action, created_at)
        # An attention check's decision is not an analyst's wait on an agent: left unmatched,
        # it is not observed.
        for pk, action, created_at in Proposal.objects.filter(
            pk__in=wanted, synthetic=False
        ).values_list("pk", "action", "created_at")
    }


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def _fold_key() -> str:
    return f"{settings.CHANNEL_PREFIX}:metrics:audit-fold"


def audit_totals() -> dict[str, Any]:
    """The totals up to the latest audit event (or as far as FOLD_SECONDS got)."""
    client = _redis()
    key = _fold_key()
    try:
        with client.pipeline() as pipe:
            pipe.watch(key)
            raw = pipe.get(key)
            totals = json.loads(raw) if raw else _new_totals()
            if (
                totals["seq"]
                and not AuditEvent.objects.filter(seq=totals["seq"], hash=totals["hash"]).exists()
            ):
                totals = _new_totals()  # not this database's history
            start, deadline = totals["seq"], time.monotonic() + FOLD_SECONDS
            while True:
                rows = _event_rows(totals["seq"])
                if not rows:
                    break
                # JSON text out of the database: the call's seconds as a number.
                rows = [(*row[:8], None if row[8] is None else float(row[8])) for row in rows]
                _fold_rows(totals, rows, _proposals_of(rows))
                totals["seq"], totals["hash"] = rows[-1][0], rows[-1][1]
                if len(rows) < FOLD_BATCH or time.monotonic() > deadline:
                    break
            if totals["seq"] != start or raw is None:
                try:
                    pipe.multi()
                    pipe.set(key, json.dumps(totals))
                    pipe.execute()
                except redis.WatchError:
                    pass  # another scrape folded meanwhile; its totals are as good
            return totals
    finally:
        client.close()


# --- the collector --------------------------------------------------------------------------


def _histogram(
    name: str, documentation: str, labels: list[str], buckets: tuple, data: dict[str, list]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key, counts in sorted(data.items()):
        cumulative, running = [], 0
        for bound, count in zip([*buckets, float("inf")], counts[:-1], strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else str(bound), running))
        family.add_metric(key.split(" "), cumulative, sum_value=counts[-1])
    return family


def _counter(
    name: str, documentation: str, label: str, counts: dict[str, int]
) -> CounterMetricFamily:
    """A counter by one label: a sample a key of `counts`, in the keys' order."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


def _audit_metrics() -> Iterator[Metric]:
    totals = audit_totals()
    yield _counter(
        "soc_proposals_routed",
        "Proposals by routing outcome at submission.",
        "outcome",
        totals["routed"],
    )
    yield _histogram(
        "soc_decision_seconds",
        "Analysts' decisions: time from submission to each decision, by action and verdict.",
        ["action", "verdict"],
        DECISION_BUCKETS,
        totals["decisions"],
    )
    yield _counter(
        "soc_approvals_undone",
        "Approvals undone within their undo window (still counted in soc_decision_seconds).",
        "action",
        totals.get("undone", {}),
    )
    yield _counter(
        "soc_execution_transitions",
        "Executions entering each status (an attempt started, succeeded, failed, held, ...).",
        "status",
        totals["transitions"],
    )
    yield _histogram(
        "soc_connector_call_seconds",
        "Connector calls by connector and outcome: how long each call took.",
        ["connector", "outcome"],
        CONNECTOR_BUCKETS,
        totals["connector"],
    )
    yield CounterMetricFamily(
        "soc_escalations", "Pending proposals escalated to senior analysts.", totals["escalations"]
    )
    yield _counter(
        "soc_holds", "Executions held (emergency stop, agent suspended).", "why", totals["holds"]
    )
    # The circuit breaker records its suspensions as the system (agent.suspended): 0 until one.
    yield CounterMetricFamily(
        "soc_breaker_trips",
        "Agents suspended automatically by the breaker.",
        totals["breaker_trips"],
    )
    yield CounterMetricFamily(
        "soc_audit_events_folded", "Audit events these counters have read.", totals["seq"]
    )


def _database_metrics() -> Iterator[Metric]:
    now = timezone.now()
    age_points = AGE_POINTS_PER_HOUR * now.timestamp() / 3600.0
    # priority (stored) + age_points is the priority now (approvals/priority.py).
    # One pass over the pending proposals: each band's count and the oldest.
    floors = [floor - age_points for _name, floor in PRIORITY_BANDS]
    bands = {
        name: Count("pk", filter=Q(priority__gte=floors[n]) & ~Q(priority__gte=floors[n - 1]))
        if n
        else Count("pk", filter=Q(priority__gte=floors[n]))
        for n, (name, _floor) in enumerate(PRIORITY_BANDS)
    }
    counts = Proposal.objects.filter(status=ProposalStatus.PENDING).aggregate(
        oldest=Min("created_at"), **bands
    )
    family = GaugeMetricFamily(
        "soc_proposals_pending", "Pending proposals by priority band.", labels=["band"]
    )
    for name, _floor in PRIORITY_BANDS:
        family.add_metric([name], counts[name])
    yield family
    oldest = counts["oldest"]
    yield GaugeMetricFamily(
        "soc_proposals_pending_oldest_age_seconds",
        "Age of the oldest pending proposal (0 when none is pending).",
        value=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
    )
    by_status = dict(
        Execution.objects.filter(status__in=EXECUTION_GAUGE_STATUSES)
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    executions = GaugeMetricFamily(
        "soc_executions",
        "Executions waiting, running or needing a human, by status.",
        labels=["status"],
    )
    for status in EXECUTION_GAUGE_STATUSES:
        executions.add_metric([status.value], by_status.get(status.value, 0))
    yield executions
    stopped = EmergencyStop.objects.filter(id=1, engaged=True).exists()
    yield GaugeMetricFamily(
        "soc_emergency_stop_engaged", "1 while the emergency stop is engaged.", value=int(stopped)
    )
    yield GaugeMetricFamily(
        "soc_agents_suspended",
        "Agents suspended (by a person or the breaker).",
        value=Agent.objects.filter(suspended=True).count(),
    )
    head = AuditEvent.objects.aggregate(last=Max("seq"))["last"] or 0  # the seq index's end
    yield CounterMetricFamily("soc_audit_events", "Events in the audit log.", value=head)


def _forwarding() -> Iterator[Metric]:
    behind = forward.lag()
    events = GaugeMetricFamily(
        "soc_audit_forward_lag_events",
        "Audit events not yet delivered to each AUDIT_FORWARD_URL destination.",
        labels=["destination"],
    )
    seconds = GaugeMetricFamily(
        "soc_audit_forward_lag_seconds",
        "Age of the oldest audit event not yet delivered to each destination (0 when none).",
        labels=["destination"],
    )
    for lag in behind:
        events.add_metric([lag.destination], lag.events)
        seconds.add_metric([lag.destination], lag.seconds)
    yield events
    yield seconds


def _consoles() -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "soc_consoles_connected",
        "Consoles (websockets) open, over every web process.",
        value=presence.connected(),
    )


def celery_queues() -> list[str]:
    """The queues the workers consume: the default one and any that tasks are routed to."""
    queues = [settings.CELERY_TASK_DEFAULT_QUEUE]
    routes = getattr(settings, "CELERY_TASK_ROUTES", None) or {}
    if isinstance(routes, dict):
        for route in routes.values():
            name = route.get("queue") if isinstance(route, dict) else None
            if name and name not in queues:
                queues.append(name)
    return queues


def _queue_depth() -> Iterator[Metric]:
    from kombu import Connection
    from kombu.exceptions import ChannelError, OperationalError

    family = GaugeMetricFamily(
        "soc_celery_queue_messages",
        "Messages waiting in each Celery queue (not counting retries waiting out a delay).",
        labels=["queue"],
    )
    with Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=2,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    ) as connection:
        connection.ensure_connection(max_retries=1)
        for queue in celery_queues():
            with connection.channel() as channel:
                try:
                    waiting = channel.queue_declare(queue=queue, passive=True).message_count
                except (ChannelError, OperationalError):
                    waiting = 0  # not declared yet: nothing was ever sent to it
            family.add_metric([queue], waiting)
    yield family


def _heartbeat() -> Iterator[Metric]:
    beat = cache.get(HEARTBEAT_KEY)
    if beat is not None:
        yield GaugeMetricFamily(
            "soc_worker_heartbeat_age_seconds",
            "Seconds since a worker last answered beat's heartbeat.",
            value=max(time.time() - float(beat), 0.0),
        )


SECTIONS: dict[str, Callable[[], Iterable[Metric]]] = {
    "audit": _audit_metrics,
    "database": _database_metrics,
    "forwarding": _forwarding,
    "consoles": _consoles,
    "queue": _queue_depth,
    "heartbeat": _heartbeat,
}


class ConsoleCollector:
    """Everything on /metrics, gathered at scrape time; a part that fails is left out and
    named by soc_metrics_up, so that the rest still arrives."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "soc_metrics_up", "1 if this part of the scrape succeeded.", labels=["part"]
        )
        for name, section in SECTIONS.items():
            try:
                gathered = list(section())
            except Exception:
                logger.warning("metrics: %s not collected", name, exc_info=True)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from gathered
        yield up


# --- the view -------------------------------------------------------------------------------


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _refusal(request: HttpRequest) -> HttpResponse | None:
    token = settings.METRICS_TOKEN
    if not token:
        if _loopback(request.META.get("REMOTE_ADDR", "")):
            return None
        return HttpResponse(
            "metrics are served to loopback only unless METRICS_TOKEN is set\n",
            status=403,
            content_type="text/plain",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        response = HttpResponse(
            "Authorization: Bearer <METRICS_TOKEN> required\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HttpResponse("wrong metrics token\n", status=403, content_type="text/plain")
    return None


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConsoleCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE)
