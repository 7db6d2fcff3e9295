"""Attention checks: a synthetic proposal that a careful analyst would reject.

A check is modelled on a real proposal the queue has shown (its agent, action, confidence and
wording), so that it looks like any card, and then given exactly one flaw a careful reader
sees: the rationale names another host, the evidence contradicts the action, or the target is
the wrong kind for the action. The explanation says what the card got wrong, in the words an
analyst who approved it is shown.

Pure: no database. approvals.services.attention picks the model proposal and records the check.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from agents import catalogue

from .models import PROPOSED_FIELDS, CheckFlaw

# For a target of one kind, a plausible target of another: what a "wrong kind" check puts on
# the card. Each is a name the demo inventory and the simulated agents also use.
WRONG_KIND = {
    "host": ("user", ["jdoe@corp.example", "asmith@corp.example", "user42@corp.example"]),
    "ip": ("host", ["ws-0217.corp.example", "build07.corp.example", "ws-1311.corp.example"]),
    "user": ("ip", ["203.0.113.45", "198.18.7.20", "10.20.1.31"]),
    "mailbox": ("host", ["ws-0142.corp.example", "ws-0311.corp.example"]),
    "ticket": ("ip", ["203.0.113.77", "198.18.40.2"]),
}
KIND_WORDS = {
    "host": "a host",
    "ip": "an IP address",
    "user": "a user account",
    "mailbox": "a message",
    "ticket": "a ticket",
}
# Other names of the same kind, for a rationale that describes somewhere else.
# What the wrong one is called in an explanation.
NOUNS = {"host": "host", "ip": "address", "user": "account"}
OTHER_OF_KIND = {
    "host": ["ws-0217.corp.example", "ws-0142.corp.example", "build07.corp.example"],
    "ip": ["203.0.113.201", "198.18.22.9", "10.20.1.27"],
    "user": ["asmith@corp.example", "jdoe@corp.example", "user17@corp.example"],
}
# What a contradicting piece of evidence says: the case was closed as harmless.
BENIGN_NOTES = [
    "closed as a false positive after triage: approved penetration test",
    "verdict benign: activity matches the scheduled backup job",
    "closed, no threat: the sender is an approved vendor",
]


@dataclass(frozen=True)
class Model:
    """The real proposal a check is modelled on, as its card showed it: its agent's name and
    the PROPOSED_FIELDS."""

    agent: str
    action: str
    target: str
    params: dict[str, Any]
    confidence: float
    rationale: str
    evidence: list[dict[str, Any]]
    severity: str

    @classmethod
    def of(cls, proposal: Any) -> Model:
        """A proposal's card: its agent's name and, by the same names, the card's fields."""
        return cls(
            agent=proposal.agent.slug, **{name: getattr(proposal, name) for name in PROPOSED_FIELDS}
        )

    def card(self) -> dict[str, Any]:
        """The card's fields by name, as a proposal's row holds them (all but the agent)."""
        return {name: getattr(self, name) for name in PROPOSED_FIELDS}


@dataclass(frozen=True)
class Composed(Model):
    """A check ready to record: the card's fields, its flaw and the explanation."""

    flaw: CheckFlaw
    explanation: str


def flaws_for(action: str) -> list[CheckFlaw]:
    """The flaws a check of this action can carry (another host needs a kind that has one)."""
    kind = catalogue.ACTIONS[action].target_kind
    found = [CheckFlaw.EVIDENCE_CONTRADICTS, CheckFlaw.WRONG_KIND]
    if kind in OTHER_OF_KIND:
        found.append(CheckFlaw.OTHER_HOST)
    return found


def compose(model: Model, rng: random.Random, flaw: CheckFlaw | None = None) -> Composed:
    """A check modelled on `model` with one flaw (`flaw`, or one chosen at random)."""
    kind = catalogue.ACTIONS[model.action]
    flaw = flaw or rng.choice(flaws_for(model.action))
    target, rationale, evidence = model.target, model.rationale, list(model.evidence)
    if flaw == CheckFlaw.OTHER_HOST:
        other = rng.choice([t for t in OTHER_OF_KIND[kind.target_kind] if t != model.target])
        rationale = f"{model.rationale.rstrip('.')}; seen on {other}."
        explanation = (
            f"The rationale describes activity on {other}, but the card acts on {target}: "
            f"approving it would have acted on the wrong {NOUNS[kind.target_kind]}."
        )
    elif flaw == CheckFlaw.EVIDENCE_CONTRADICTS:
        note = rng.choice(BENIGN_NOTES)
        ref = evidence[0]["ref"] if evidence and evidence[0].get("ref") else "SIEM-48213"
        evidence = [{"kind": "alert", "ref": ref, "note": note}]
        explanation = (
            f"Its evidence says the alert was {note.split(':')[0]}: nothing on the card "
            f"supports {kind.label.lower()}."
        )
    else:
        other_kind, names = WRONG_KIND[kind.target_kind]
        target = rng.choice(names)
        explanation = (
            f"{kind.label} acts on {KIND_WORDS[kind.target_kind]}, but the target {target} is "
            f"{KIND_WORDS[other_kind]}: the action could not have meant it."
        )
    changed = replace(model, target=target, rationale=rationale, evidence=evidence)
    return Composed(agent=model.agent, **changed.card(), flaw=flaw, explanation=explanation)


def stopped_text(explanation: str) -> str:
    """What an analyst who approved a check reads: short, and not a reprimand."""
    return (
        f"Stopped: this card was an attention check, and nothing was run. {explanation} "
        "Checks like this help the team see when the queue gets tiring; no harm was done."
    )


def caught_text() -> str:
    return "Well spotted: that card was an attention check. Nothing was run."
