"""Team targets (OLAs): the clocks of every OLA that applies to a record, each counting only
the time the record spent with that team.

An OLA's `when` is asked the way a target's own conditions are (rules.gates): at the
record's creation and at each change of its status, group or assignee that had happened by
`now`, with the status, group and assignee as they were then (the group and assignee from
the assignment history) and every other variable as it is now. Where it holds, the record
was with the team; an OLA applies to a record once its `when` has held. Besides the SLA,
every OLA that applies runs a clock (rules.clock) per target it sets, on its own calendar
and pause statuses: started when the record first came to the team, paused while it was
with another team, so that only the team's own time counts; stopped as any clock is (a
first response, a solve; one that stopped before the record came to the team is not owed:
it has no target). A record whose helpdesk gives no assignment history (None)
cannot say when it was with a team: its OLAs' clocks are unavailable, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from business_rules import engine as br_engine

from sla_sync.connector.model import Record
from sla_sync.rules.calendar import Calendar
from sla_sync.rules.clock import (
    NO_TARGET_MINUTES_LEFT,
    Clock,
    Gate,
    no_target,
    pause_statuses_of,
    run_clock,
    timeline_until,
)
from sla_sync.rules.conditions import Asked, Check, Compiler
from sla_sync.rules.gates import history_states
from sla_sync.rules.policy import Ola, Policy
from sla_sync.rules.variables import RecordVariables

UNAVAILABLE = "unavailable: the helpdesk gives no assignment history"
#: A clock that stopped (a first response, a solve) before the record came to the team.
NOT_OWED = "not owed: it stopped before the record came to the team"
#: Why an OLA clock does not count: the record is with another team.
AWAY = "with another team"


@dataclass(frozen=True)
class OlaState:
    """One OLA that applies to a record: its calendar, the periods the record was with the
    team (end None: still with it), its clocks by target, and why they cannot run ("")."""

    ola: Ola
    calendar: Calendar
    periods: tuple[tuple[datetime, datetime | None], ...]
    clocks: Mapping[str, Clock]
    note: str = ""


_CHECKS: dict[int, tuple[Policy, tuple[Check | None, ...]]] = {}


def _checks(policy: Policy) -> tuple[Check | None, ...]:
    """The OLAs' `when`s compiled once per policy (None: left to business-rules)."""
    found = _CHECKS.get(id(policy))
    if found is not None and found[0] is policy:
        return found[1]
    if len(_CHECKS) >= 64:
        _CHECKS.clear()
    compiler = Compiler()
    checks = tuple(None if ola.when is None else compiler.compile(ola.when)
                   for ola in policy.olas)
    _CHECKS[id(policy)] = (policy, checks)
    return checks


def team_gates(record: Record, now: datetime, facts: Mapping[str, Any], ola: Ola,
               check: Check | None) -> tuple[Gate, ...]:
    """The OLA's `when` over the record's history as clock gates: started from the first
    state where it holds, paused wherever it does not."""
    gates: list[Gate] = []
    started = ""
    away = f"{AWAY} ({ola.path}.when does not hold)"
    for at, status, group, assignee in history_states(record, now):
        if ola.when is None:
            holds = True
        else:
            variables = RecordVariables({**facts, "status": status, "group": group,
                                         "assignee": assignee})
            holds = bool(check(Asked(variables)) if check is not None else
                         br_engine.check_conditions_recursively(ola.when, variables))
        if holds and not started:
            started = f"came to the team ({ola.path}.when holds)"
        gate = Gate(at, started, "" if holds else away, "")
        if not gates or gates[-1][1:] != gate[1:]:
            gates.append(gate)
    return tuple(gates)


def team_periods(gates: Sequence[Gate]) -> tuple[tuple[datetime, datetime | None], ...]:
    """The stretches of the record's history where the OLA's `when` held."""
    periods: list[tuple[datetime, datetime | None]] = []
    begun: datetime | None = None
    for gate in gates:
        with_team = bool(gate.started) and not gate.pause
        if with_team and begun is None:
            begun = gate.at
        elif not with_team and begun is not None:
            periods.append((begun, gate.at))
            begun = None
    if begun is not None:
        periods.append((begun, None))
    return tuple(periods)


def run_olas(record: Record, policy: Policy, now: datetime,
             facts: Mapping[str, Any]) -> tuple[OlaState, ...]:
    """Every OLA that applies to the record by `now`, with its clocks; `facts`: the
    record's own facts (rules.engine.record_facts)."""
    if not policy.olas:
        return ()
    timeline = timeline_until(record, now)
    states = []
    for ola, check in zip(policy.olas, _checks(policy), strict=True):
        gates = team_gates(record, now, facts, ola, check)
        if not any(gate.started for gate in gates):
            continue
        calendar = ola.calendar.pick(record)
        targets = ola.targets_for(record)
        if record.assignment_history is None:
            states.append(OlaState(ola, calendar, (), {
                target: no_target(target, calendar, record.created_at, UNAVAILABLE)
                for target in targets}, UNAVAILABLE))
            continue
        clocks = {}
        for target, goal in targets.items():
            clock = run_clock(record, target, goal.seconds_on(calendar), calendar,
                              pause_statuses_of(target, ola.pause_statuses),
                              policy.closed_statuses, now, None, timeline, gates)
            if clock.stopped_at is not None and clock.stopped_at <= clock.started_at \
                    and not clock.cycles and clock.target_seconds is not None:
                clock = no_target(target, calendar, clock.started_at, NOT_OWED)
            clocks[target] = clock
        states.append(OlaState(ola, calendar, team_periods(gates), clocks))
    return tuple(states)


def ola_clocks(states: Sequence[OlaState]) -> list[Clock]:
    """The clocks of the OLAs that apply that have a target."""
    return [clock for state in states for clock in state.clocks.values()
            if clock.target_seconds is not None]


def ola_facts(states: Sequence[OlaState]) -> dict[str, Any]:
    """The OLA variables (rules.variables.OLA_VARIABLES): the worst of the clocks."""
    clocks = ola_clocks(states)
    return {"ola_breached": any(c.breached for c in clocks),
            "ola_elapsed_pct": max((c.elapsed_pct for c in clocks), default=0.0),
            "ola_minutes_left": min((c.minutes_left for c in clocks),
                                    default=NO_TARGET_MINUTES_LEFT)}
