from __future__ import annotations

import random
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.client import AgentClient
from agents.models import Agent, ApiKey
from agents.services import apikey_issue, apikey_revoke
from approvals import demo

SIMULATOR_LABEL = "simulator"


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
        for stale in ApiKey.objects.filter(label=SIMULATOR_LABEL, revoked_at__isnull=True):
            apikey_revoke(key=stale, by="simulate_agents")
        for agent in Agent.objects.filter(slug__in=list(demo.AGENTS)):
            issued = apikey_issue(agent=agent, by="simulate_agents", label=SIMULATOR_LABEL)
            issued_keys.append(issued.key)
            clients[agent.slug] = AgentClient(options["base_url"], issued.raw)
        deadline = time.monotonic() + options["duration"] if options["duration"] else None
        sent = 0
        outcomes: dict[str, int] = {}
        interval = 1.0 / rate
        next_at = time.monotonic()
        self.stdout.write(f"posting {rate}/s to {options['base_url']} as {', '.join(clients)}")
        try:
            while deadline is None or time.monotonic() < deadline:
                slug = rng.choices(list(clients), weights=[5, 3, 3, 1][: len(clients)])[0]
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
