"""Who a generated history is about, as the database holds them: the demo agents with their
live policies (and the policies in shadow that judge beside them), the people, and the team
whose decisions attention checks test."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User

from agents.models import Agent, Policy
from approvals.models import CHECKS_AGENT, Team

from .people import RECORDS, STYLES


@dataclass
class Cast:
    agents: dict[str, Agent]
    policies: dict[str, Policy]
    levels: dict[str, dict[str, int]]
    # A policy in shadow judges the proposals made after it started.
    shadows: dict[str, Policy]
    shadow_levels: dict[str, dict[str, int]]
    users: dict[str, int]  # username -> user id
    agent_slugs: list[str]
    agent_weights: list[float]
    # Attention checks, for the first team that has them on (seed_demo makes one).
    team: Team | None
    members: set[str]
    checks_agent: Agent | None

    @classmethod
    def load(cls) -> Cast:
        agents = {a.slug: a for a in Agent.objects.filter(slug__in=RECORDS)}
        policies: dict[str, Policy] = {}
        levels: dict[str, dict[str, int]] = {}
        shadows: dict[str, Policy] = {}
        shadow_levels: dict[str, dict[str, int]] = {}
        for slug, agent in agents.items():
            policy = agent.current_policy
            if policy is None:
                continue
            policies[slug] = policy
            levels[slug] = {g.action: g.level for g in policy.grants.all()}
            shadow = agent.shadow_policy
            if shadow is not None:
                shadows[slug] = shadow
                shadow_levels[slug] = {g.action: g.level for g in shadow.grants.all()}
        users = {u.username: u.pk for u in User.objects.filter(username__in=STYLES)}
        missing = set(STYLES) - set(users)
        if missing or not policies:
            raise RuntimeError(
                "history needs the demo users and agents: run seed_demo (missing: "
                f"{', '.join(sorted(missing)) or 'agents'})"
            )
        slugs = [s for s in RECORDS if s in policies]
        team = Team.objects.filter(attention_checks=True).order_by("pk").first()
        return cls(
            agents=agents,
            policies=policies,
            levels=levels,
            shadows=shadows,
            shadow_levels=shadow_levels,
            users=users,
            agent_slugs=slugs,
            agent_weights=[RECORDS[s].weight for s in slugs],
            team=team,
            members=set(team.members.values_list("username", flat=True)) if team else set(),
            checks_agent=(
                Agent.objects.get_or_create(
                    slug=CHECKS_AGENT, defaults={"name": "Attention checks"}
                )[0]
                if team
                else None
            ),
        )
