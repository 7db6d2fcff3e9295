from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from agents.models import Agent
from agents.services import policy_publish
from approvals import demo, services
from approvals.demo.demoted import seed_demotion
from approvals.demo.history import demo_end, seed_history


class Command(BaseCommand):
    help = "Demo users (analyst, analyst2, senior, manager, admin), agents, assets and history."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-empty", action="store_true", help="Do nothing when the demo users already exist."
        )
        parser.add_argument("--weeks", type=int, default=4, help="Weeks of decision history.")
        parser.add_argument("--pending", type=int, default=8, help="Pending proposals to leave.")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_empty"] and User.objects.filter(username="analyst").exists():
            self.stdout.write("demo data already present; skipping (drop --if-empty to add more)")
            return
        rng = random.Random(options["seed"])
        demo.ensure_users()
        agents = demo.ensure_agents()
        demo.ensure_assets()
        team = demo.ensure_team()
        history = 0
        # A bolder policy of one agent in shadow over the history's last days, on the same
        # hour grid as the history (see demo_end).
        end = demo_end(timezone.now())
        demo.ensure_shadow(since=end - timedelta(days=demo.SHADOW_DAYS))
        if options["weeks"] > 0:
            history = seed_history(weeks=options["weeks"], rng=rng, end=end)
        # An agent that lost its autonomy, with its audit event, for the agents page.
        demoted = seed_demotion(rng)
        _room_for(agents, options["pending"])
        for _ in range(options["pending"]):
            agent = rng.choice([a for a in agents if a.slug != "intern-bot"])
            pick = demo.scenario(rng, agent.slug)
            services.proposal_submit(
                agent=agent,
                api_key=None,
                action=pick.action,
                target=pick.target,
                params=pick.params,
                confidence=round(rng.uniform(0.55, 0.88), 2),
                rationale=pick.rationale,
                evidence=[{"kind": pick.evidence_kind, "ref": f"REF-{rng.randint(100, 999)}"}],
                severity=rng.choice(["medium", "high"]),
                idempotency_key=uuid.uuid4().hex,
                request_hash="seed",
            )
        self.stdout.write(
            f"demo ready: users {', '.join(u for u, _, _ in demo.USERS)} "
            f"(password {demo.DEMO_PASSWORD!r}), {len(agents)} agents, {len(demo.ASSETS)} assets, "
            f"{history} historical proposals, {options['pending']} pending; team "
            f"{team.name!r} with attention checks every {team.check_every} decisions"
            + (f"; {demoted.data['agent']} demoted on {demoted.data['action']}" if demoted else "")
        )


def _room_for(agents: list[Agent], pending: int) -> None:
    """A big --pending (a benchmark's full queue) must not trip the demo agents' circuit
    breakers: their limits are raised above it in a new, audited policy version."""
    for agent in agents:
        policy = agent.current_policy
        if policy and pending >= min(policy.max_pending, policy.max_proposals_per_minute):
            policy_publish(
                agent=agent,
                by="seed_demo",
                max_pending=pending + policy.max_pending,
                max_proposals_per_minute=pending + policy.max_proposals_per_minute,
            )
