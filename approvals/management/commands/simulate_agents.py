from __future__ import annotations

import random
import time
from collections import deque
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q, QuerySet
from django.utils import timezone

from agents.client import AgentClient
from agents.models import Agent, ApiKey
from agents.services import apikey_issue, apikey_revoke
from approvals import demo
from approvals.models import Proposal, ProposalStatus

SIMULATOR_LABEL = "simulator"
# A simulator's key unused for this long belongs to a run that is no longer posting. (Its
# last use is written at most once a minute: agents/authentication.py.)
ABANDONED_AFTER = timedelta(minutes=10)


class Room:
    """How close one demo agent is to its circuit breaker (the live policy's limits): it
    posts while under LIMIT_SHARE of both, and not while suspended."""

    LIMIT_SHARE = 0.8
    RECHECK_SECONDS = 2.0  # how often the open count and the suspension are read again

    def __init__(self, agent: Agent) -> None:
        policy = agent.current_policy
        self.agent_id = agent.pk
        self.per_minute = (policy.max_proposals_per_minute if policy else 30) * self.LIMIT_SHARE
        self.max_open = (policy.max_pending if policy else 50) * self.LIMIT_SHARE
        self.sent: deque[float] = deque()
        self.checked_at = float("-inf")
        self.open = 0  # pending as last read, plus what it posted since
        self.suspended = False

    def has_room(self) -> bool:
        now = time.monotonic()
        while self.sent and self.sent[0] < now - 60:
            self.sent.popleft()
        if len(self.sent) >= self.per_minute:
            return False
        if now - self.checked_at >= self.RECHECK_SECONDS:
            self.checked_at = now
            self.open = Proposal.objects.filter(
                agent_id=self.agent_id, status=ProposalStatus.PENDING
            ).count()
            self.suspended = Agent.objects.filter(pk=self.agent_id, suspended=True).exists()
        return self.open < self.max_open and not self.suspended

    def posted(self) -> None:
        self.sent.append(time.monotonic())
        self.open += 1


def _abandoned_keys() -> QuerySet[ApiKey]:
    cutoff = timezone.now() - ABANDONED_AFTER
    return ApiKey.objects.filter(label=SIMULATOR_LABEL, revoked_at__isnull=True).filter(
        Q(last_used_at__lt=cutoff) | Q(last_used_at__isnull=True, created_at__lt=cutoff)
    )


class Command(BaseCommand):
    help = "Demo agents posting a realistic stream of proposals through the HTTP API."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=float, default=0.5, help="Proposals per second.")
        parser.add_argument(
            "--duration", type=float, default=0, help="Seconds to run; 0 runs until interrupted."
        )
        parser.add_argument("--base-url", default=settings.PUBLIC_URL)
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        rate = options["rate"]
        if rate <= 0:
            raise CommandError("--rate must be above 0")
        rng = random.Random(options["seed"])
        demo.ensure_agents()
        clients = {}
        issued_keys = []
        # Keys left by an earlier run that was killed: they are this command's, so retire them.
        # A run still going (the one `make run` started, say) uses its keys every few
        # seconds, and they are left alone.
        for stale in _abandoned_keys():
            apikey_revoke(key=stale, by="simulate_agents")
        room = {}
        for agent in Agent.objects.filter(slug__in=list(demo.AGENTS)):
            issued = apikey_issue(agent=agent, by="simulate_agents", label=SIMULATOR_LABEL)
            issued_keys.append(issued.key)
            clients[agent.slug] = AgentClient(options["base_url"], issued.raw)
            room[agent.slug] = Room(agent)
        deadline = time.monotonic() + options["duration"] if options["duration"] else None
        sent = 0
        outcomes: dict[str, int] = {}
        interval = 1.0 / rate
        next_at = time.monotonic()
        self.stdout.write(f"posting {rate}/s to {options['base_url']} as {', '.join(clients)}")
        try:
            while deadline is None or time.monotonic() < deadline:
                # Like a well-behaved agent, each stays within its circuit breaker's limits
                # (and posts nothing while suspended): a higher --rate spreads over the others,
                # or waits, rather than tripping the breaker and filling the queue with cards
                # nobody may approve.
                weights = dict(zip(clients, [5, 3, 3, 1], strict=False))
                free = [slug for slug in clients if room[slug].has_room()]
                if not free:
                    next_at += interval
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    continue
                slug = rng.choices(free, weights=[weights.get(slug, 1) for slug in free])[0]
                room[slug].posted()
                pick = demo.scenario(rng, slug)
                confidence = round(min(0.99, max(0.05, rng.betavariate(5, 2))), 2)
                try:
                    result = clients[slug].propose(
                        action=pick.action,
                        target=pick.target,
                        confidence=confidence,
                        rationale=pick.rationale,
                        params=pick.params,
                        evidence=[
                            {
                                "kind": pick.evidence_kind,
                                "ref": f"{pick.evidence_kind.upper()}-{rng.randint(1000, 99999)}",
                            }
                        ],
                        severity=rng.choice(["low", "medium", "high", "critical"]),
                    )
                    label = (result.proposal or {}).get("status") or f"http {result.status}"
                except Exception as exc:  # the server may be restarting; keep going
                    label = f"error {exc.__class__.__name__}"
                outcomes[label] = outcomes.get(label, 0) + 1
                sent += 1
                if sent % 20 == 0:
                    self.stdout.write(f"{sent} sent: {outcomes}")
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
        except KeyboardInterrupt:
            pass
        finally:
            for client in clients.values():
                client.close()
            for key in issued_keys:
                apikey_revoke(key=key, by="simulate_agents")
        self.stdout.write(f"done: {sent} sent: {outcomes}")
