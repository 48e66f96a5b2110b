"""Evaluation: (Record, Policy, now) -> the matched SLA, its clocks, and what each rule asks.

Pure: no I/O and no clock reads. The SLA is the first whose `when` holds (an SLA without
`when` matches every record). Every rule whose conditions hold fires; business-rules
evaluates the conditions and calls the actions, which only collect intents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from business_rules import engine as br_engine

from connector.model import Record
from rules.actions import ActionCollector, Intent
from rules.calendar import ALWAYS, BUILT_IN
from rules.clock import TARGETS, Clock, run_clock
from rules.policy import Policy, Rule, Sla
from rules.variables import RecordVariables


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    fired: bool
    intents: tuple[Intent, ...]


@dataclass(frozen=True)
class Evaluation:
    record: Record
    now: datetime
    sla: Sla | None
    clocks: Mapping[str, Clock]
    facts: Mapping[str, Any]
    outcomes: tuple[RuleOutcome, ...]

    def variables(self) -> RecordVariables:
        return RecordVariables(self.facts)


def record_facts(record: Record, now: datetime) -> dict[str, Any]:
    return {
        "kind": record.kind, "status": record.status, "priority": record.priority,
        "tier": record.tier, "channel": record.channel, "source": record.source,
        "group": record.group, "assignee": record.assignee, "subject": record.subject,
        "tags": list(record.tags), "escalation_level": record.escalation_level,
        "hours_since_created": (now - record.created_at).total_seconds() / 3600,
        "hours_since_updated": (now - record.updated_at).total_seconds() / 3600,
    }


def clock_facts(clocks: Mapping[str, Clock]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for target, clock in clocks.items():
        facts[f"{target}_minutes_left"] = clock.minutes_left
        facts[f"{target}_elapsed_pct"] = clock.elapsed_pct
        facts[f"{target}_breached"] = clock.breached
        facts[f"{target}_met"] = clock.met
    return facts


def match_sla(policy: Policy, variables: RecordVariables) -> Sla | None:
    for sla in policy.slas:
        if sla.when is None or br_engine.check_conditions_recursively(sla.when, variables):
            return sla
    return None


def run_clocks(record: Record, sla: Sla | None, now: datetime) -> dict[str, Clock]:
    calendar = sla.calendar if sla else BUILT_IN[ALWAYS]
    pauses = sla.pause_statuses if sla else frozenset()
    return {target: run_clock(record, target, sla.targets.get(target) if sla else None,
                              calendar, pauses, now)
            for target in TARGETS}


def evaluate(record: Record, policy: Policy, now: datetime) -> Evaluation:
    facts = record_facts(record, now)
    sla = match_sla(policy, RecordVariables(facts))
    clocks = run_clocks(record, sla, now)
    facts.update(clock_facts(clocks))
    facts["sla"] = sla.name if sla else ""
    variables = RecordVariables(facts)
    placeholders = {**facts, "id": record.id}
    outcomes = []
    for rule in policy.rules:
        collector = ActionCollector(placeholders)
        fired = br_engine.run(rule.as_engine_rule(), variables, collector)
        outcomes.append(RuleOutcome(rule, bool(fired), tuple(collector.intents)))
    return Evaluation(record=record, now=now, sla=sla, clocks=clocks, facts=facts,
                      outcomes=tuple(outcomes))


@dataclass(frozen=True)
class Failure:
    """The first condition that did not hold, for explain."""

    path: str
    condition: Mapping[str, Any]
    actual: Any


def first_failure(conditions: Mapping[str, Any], variables: RecordVariables,
                  path: str) -> Failure | None:
    """None when the conditions hold; otherwise the first leaf (or `any` group) that failed."""
    for key in ("all", "any"):
        if key in conditions:
            children = conditions[key]
            failures = []
            for index, child in enumerate(children):
                failure = first_failure(child, variables, f"{path}.{key}[{index}]")
                if key == "all" and failure is not None:
                    return failure
                if key == "any":
                    if failure is None:
                        return None
                    failures.append(failure)
            if key == "all":
                return None
            return Failure(f"{path}.any", conditions, [f.actual for f in failures])
    if br_engine.check_condition(conditions, variables):
        return None
    return Failure(path, conditions, variables.facts.get(conditions["name"]))
