"""Demo people, agents and assets: what seed_demo and simulate_agents share."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import Group, User

from agents import catalogue
from agents.models import Agent, Asset, Policy
from agents.services import agent_register, asset_save, policy_shadow_start
from approvals.models import Team
from soc_console import roles

DEMO_PASSWORD = "soc-demo"  # noqa: S105 demo accounts on a local console

USERS = [
    ("analyst", [roles.ANALYST], "Alex Analyst"),
    ("analyst2", [roles.ANALYST], "Bea Analyst"),
    ("senior", [roles.ANALYST, roles.SENIOR], "Sol Senior"),
    ("manager", [roles.MANAGER], "Max Manager"),
    ("admin", [roles.ADMIN], "Ada Admin"),
]

AGENTS = {
    "triage-bot": dict(
        description="Triages SIEM alerts; blocks noisy sources and opens tickets.",
        grants={
            "enrich_alert": 4,
            "create_ticket": 3,
            "close_duplicate": 3,
            "block_ip": 3,
            "isolate_host": 2,
            "kill_process": 2,
            "update_firewall_policy": 2,
        },
        auto_threshold=0.9,
        review_threshold=0.5,
        purpose="Alert triage for the perimeter and workstation fleet.",
        required_evidence=["alert"],
    ),
    "phish-hunter": dict(
        description="Hunts phishing campaigns in the mail gateway and identity logs.",
        grants={
            "quarantine_email": 3,
            "disable_user": 2,
            "reset_password": 2,
            "revoke_sessions": 2,
            "create_ticket": 3,
        },
        auto_threshold=0.92,
        review_threshold=0.55,
        purpose="Contain credential phishing.",
    ),
    "edr-responder": dict(
        description="Acts on EDR detections on workstations and servers.",
        grants={"isolate_host": 2, "kill_process": 3, "block_ip": 2, "create_ticket": 1},
        auto_threshold=0.9,
        review_threshold=0.5,
        purpose="Endpoint containment; never touches critical servers alone.",
        scope_tiers=["low", "medium", "high", "critical"],
    ),
    "intern-bot": dict(
        description="A new agent on probation: advisory only.",
        grants={"block_ip": 1, "isolate_host": 1, "disable_user": 1},
        auto_threshold=0.95,
        review_threshold=0.6,
        purpose="Learning; its proposals are recommendations only.",
    ),
}

# kind, identifier, criticality, group, owner, aliases (other names the asset is known by)
ASSETS = [
    (
        "host",
        "dc01.corp.example",
        "critical",
        "domain-controllers",
        "it-infra",
        ["10.0.0.11", "ldap.corp.example"],
    ),
    (
        "host",
        "pay-db01.corp.example",
        "critical",
        "payments",
        "payments-team",
        ["10.30.0.21", "payments-db.corp.example"],
    ),
    ("host", "web-prod03.corp.example", "high", "web", "web-team", ["www.corp.example"]),
    ("host", "build07.corp.example", "medium", "ci", "devex", []),
    ("host", "ws-0142.corp.example", "low", "workstations", "jdoe", []),
    ("host", "ws-0217.corp.example", "low", "workstations", "asmith", []),
    ("host", "ws-0311.corp.example", "medium", "workstations", "cfo-office", []),
    ("ip", "10.0.0.10", "critical", "core-network", "netops", []),
    ("ip", "10.20.1.15", "high", "dmz", "netops", []),
    ("ip", "192.168.50.23", "low", "guest-wifi", "netops", []),
    ("ip", "10.30.0.0/24", "critical", "payments", "netops", []),
    (
        "user",
        "ceo@corp.example",
        "critical",
        "executives",
        "hr",
        ["chief.executive@corp.example", "CORP\\ceo"],
    ),
    (
        "user",
        "svc-backup@corp.example",
        "high",
        "service-accounts",
        "it-infra",
        ["CORP\\svc-backup"],
    ),
    ("user", "jdoe@corp.example", "low", "staff", "hr", []),
    ("user", "asmith@corp.example", "medium", "staff", "hr", []),
    ("mailbox", "finance@corp.example", "high", "shared-mailboxes", "finance", ["ap@corp.example"]),
]


def ensure_users() -> list[User]:
    people = []
    for username, role_names, full_name in USERS:
        user, created = User.objects.get_or_create(
            username=username,
            defaults={
                "email": f"{username}@corp.example",
                "first_name": full_name.split()[0],
                "last_name": full_name.split()[1],
            },
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            # The manager signs in to the admin for teams and their attention checks.
            user.is_staff = username in ("admin", "manager")
            user.is_superuser = username == "admin"
            user.save()
        for name in role_names:
            user.groups.add(Group.objects.get_or_create(name=name)[0])
        people.append(user)
    for name in roles.ALL:
        Group.objects.get_or_create(name=name)
    return people


# The demo's team: attention checks on, one per this many decisions (history and live).
TEAM = "SOC shift"
TEAM_CHECK_EVERY = 15


def ensure_team() -> Team:
    """The analysts' team, with attention checks on, so the fatigue report has catch rates."""
    team, _ = Team.objects.get_or_create(
        name=TEAM, defaults={"attention_checks": True, "check_every": TEAM_CHECK_EVERY}
    )
    team.members.add(*User.objects.filter(username__in=["analyst", "analyst2", "senior"]))
    return team


def ensure_agents() -> list[Agent]:
    agents = []
    for slug, spec in AGENTS.items():
        existing = Agent.objects.filter(slug=slug).first()
        if existing is None:
            spec = dict(spec)
            existing, _ = agent_register(
                slug=slug, by="seed_demo", description=spec.pop("description"), **spec
            )
        agents.append(existing)
    return agents


# The agent whose candidate policy runs in shadow in the demo: isolate_host alone, every
# automatic action from 0.7 rather than 0.9, and closing duplicates back to an analyst. Its
# record (approvals/demo/people.py) is nearly spotless from 0.8 up and wrong about one time in
# five between 0.7 and 0.8, so the score has harm avoided, agreement and extra load to show,
# and three worst cases at every hour of the week the history can end (bench/demo_story.py).
SHADOW_AGENT = "triage-bot"
SHADOW_CHANGES = dict(grants={"isolate_host": 3, "close_duplicate": 2}, auto_threshold=0.7)
SHADOW_DAYS = 10


def ensure_shadow(*, since: datetime) -> Policy | None:
    """Put the demo's candidate policy in shadow (unless one is), dated `since`, so that the
    generated history from then on carries its judgements."""
    agent = Agent.objects.filter(slug=SHADOW_AGENT).first()
    if agent is None or agent.shadow_policy is not None:
        return None
    shadow = policy_shadow_start(agent=agent, by="manager", **SHADOW_CHANGES)
    # Demo history is written as if it had happened: the shadow started before it.
    Policy.objects.filter(pk=shadow.pk).update(created_at=since)
    shadow.created_at = since
    return shadow


def ensure_assets() -> None:
    for kind, identifier, criticality, group, owner, aliases in ASSETS:
        if not Asset.objects.filter(kind=kind, identifier=identifier).exists():
            asset_save(
                asset=Asset(
                    kind=kind,
                    identifier=identifier,
                    criticality=criticality,
                    group=group,
                    owner=owner,
                ),
                by="seed_demo",
                aliases=aliases,
            )


@dataclass(frozen=True)
class Scenario:
    action: str
    target: str
    rationale: str
    evidence_kind: str
    params: dict


@dataclass(frozen=True)
class _Targets:
    """One draw of each kind of target, shared by every agent's scenarios."""

    alert: str
    ip: str
    host: str
    user: str

    @classmethod
    def draw(cls, rng: random.Random) -> _Targets:
        alert = f"SIEM-{rng.randint(1000, 99999)}"
        ip = (
            f"203.0.113.{rng.randint(1, 254)}"
            if rng.random() < 0.8
            else f"10.20.1.{rng.randint(2, 40)}"
        )
        host = rng.choice(
            [
                "ws-0142.corp.example",
                "ws-0217.corp.example",
                "ws-0311.corp.example",
                "build07.corp.example",
                "web-prod03.corp.example",
                "dc01.corp.example",
                f"ws-{rng.randint(1000, 1999)}.corp.example",
            ]
        )
        user = rng.choice(
            [
                "jdoe@corp.example",
                "asmith@corp.example",
                "svc-backup@corp.example",
                "ceo@corp.example",
                f"user{rng.randint(10, 99)}@corp.example",
            ]
        )
        return cls(alert, ip, host, user)


def scenario(rng: random.Random, slug: str) -> Scenario:
    """A plausible proposal for the given demo agent."""
    # Every agent's scenarios are drawn, whichever agent asks, so that a seeded generator
    # gives the same sequence of proposals as it always has.
    targets = _Targets.draw(rng)
    choices = {
        "triage-bot": _triage_scenarios(rng, targets),
        "phish-hunter": _phishing_scenarios(rng, targets),
        "edr-responder": _endpoint_scenarios(rng, targets),
        "intern-bot": _intern_scenarios(targets),
    }
    return rng.choice(choices[slug])


def _triage_scenarios(rng: random.Random, targets: _Targets) -> list[Scenario]:
    return [
        Scenario(
            "block_ip",
            targets.ip,
            f"Source of {rng.randint(8, 400)} failed SSH logins in "
            f"{rng.randint(1, 10)} minutes; listed on {rng.randint(1, 3)} threat feeds.",
            "alert",
            {"duration_minutes": rng.choice([30, 60, 240])},
        ),
        Scenario(
            "create_ticket",
            targets.alert,
            "New correlated alert cluster needs an incident.",
            "alert",
            {"title": "Correlated brute force"},
        ),
        Scenario(
            "isolate_host",
            targets.host,
            "Beaconing every 60 s to a domain registered "
            "yesterday; parent process is an Office macro.",
            "alert",
            {},
        ),
        Scenario("enrich_alert", targets.alert, "Alert lacks reputation data.", "alert", {}),
    ]


def _phishing_scenarios(rng: random.Random, targets: _Targets) -> list[Scenario]:
    return [
        Scenario(
            "quarantine_email",
            f"<{rng.randint(10**6, 10**7)}@mail.example>",
            "Lookalike sender domain and a credential-harvesting link; 14 recipients.",
            "email",
            {},
        ),
        Scenario(
            "disable_user",
            targets.user,
            "Sign-in from two countries within 5 minutes after clicking a phishing link.",
            "signin",
            {},
        ),
        Scenario(
            "revoke_sessions",
            targets.user,
            "Session token replay detected from a new ASN.",
            "signin",
            {},
        ),
    ]


def _endpoint_scenarios(rng: random.Random, targets: _Targets) -> list[Scenario]:
    return [
        Scenario(
            "kill_process",
            targets.host,
            "Process injecting into lsass.exe.",
            "edr",
            {"process_name": "rundll32.exe", "pid": rng.randint(1000, 60000)},
        ),
        Scenario(
            "isolate_host",
            targets.host,
            "Ransomware canary file modified; mass renames.",
            "edr",
            {},
        ),
        Scenario("block_ip", targets.ip, "C2 address contacted by three hosts.", "edr", {}),
    ]


def _intern_scenarios(targets: _Targets) -> list[Scenario]:
    return [
        Scenario("block_ip", targets.ip, "Looks suspicious to me.", "alert", {}),
        Scenario("disable_user", targets.user, "Unusual working hours.", "signin", {}),
    ]


TARGETS = {
    "ip": lambda rng: rng.choice(
        [
            f"203.0.113.{rng.randint(1, 254)}",
            f"198.18.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            f"10.20.1.{rng.randint(2, 40)}",
        ]
    ),
    "host": lambda rng: rng.choice(
        [
            "ws-0142.corp.example",
            "ws-0217.corp.example",
            "ws-0311.corp.example",
            "build07.corp.example",
            "web-prod03.corp.example",
            f"ws-{rng.randint(1000, 1999)}.corp.example",
        ]
    ),
    "user": lambda rng: rng.choice(
        [
            "jdoe@corp.example",
            "asmith@corp.example",
            "svc-backup@corp.example",
            f"user{rng.randint(10, 99)}@corp.example",
        ]
    ),
    "mailbox": lambda rng: f"<{rng.randint(10**6, 10**7)}@mail.example>",
    "ticket": lambda rng: f"SIEM-{rng.randint(1000, 99999)}",
}


def scenario_for(rng: random.Random, slug: str, action: str) -> Scenario:
    """A plausible proposal of this action by this agent, its target valid for the action."""
    for _ in range(8):
        pick = scenario(rng, slug)
        if pick.action == action:
            return pick
    kind = catalogue.ACTIONS[action]
    return Scenario(
        action,
        TARGETS[kind.target_kind](rng),
        f"{kind.label}: pattern matched on correlated alerts.",
        "alert",
        {},
    )
