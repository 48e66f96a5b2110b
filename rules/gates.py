"""A target's own start, pause and stop conditions (an SLA's `clocks`), replayed over the
record's history.

The conditions are business-rules conditions over the record's own variables. They are
asked at the record's creation and at each change of its status, group or assignee that
had happened by `now`, with the variables as they were then: the status from the status
timeline, the group and assignee from the assignment history where the helpdesk gives one
(before its first entry, the first entry's values), every other variable as it is now
(the helpdesk gives no history of it). What each change leaves holds until the next one,
as a `rules.clock.Gate`: a clock starts at the first change at which `start_when` holds
(and stays started), is paused while `pause_when` holds and stopped while `stop_when` does
(a stop that is followed by a change where it no longer holds is, like a reopening, a
pause). A target without `start_when` starts as its clock always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from business_rules import engine as br_engine

from sla_sync.connector.model import Record
from sla_sync.rules.clock import Gate
from sla_sync.rules.conditions import Asked, Check
from sla_sync.rules.policy import CLOCK_CONDITIONS, ClockRules
from sla_sync.rules.variables import RecordVariables


def history_states(record: Record, now: datetime) -> list[tuple[datetime, str, str, str]]:
    """(at, status, group, assignee) at creation and at each change by `now`."""
    timeline = [c for c in record.status_timeline() if c.at <= now]
    history = record.assignment_history
    owners: list[tuple[datetime, str, str]] = []
    if history:
        first = [a for a in history if a.at <= record.created_at] or [history[0]]
        owners.append((record.created_at, first[-1].group, first[-1].assignee))
        owners += [(a.at, a.group, a.assignee) for a in history
                   if record.created_at < a.at <= now]
    else:
        owners.append((record.created_at, record.group, record.assignee))
    instants = sorted({record.created_at} | {c.at for c in timeline} | {o[0] for o in owners})
    states = []
    status_at = owner_at = 0
    for instant in instants:
        while status_at + 1 < len(timeline) and timeline[status_at + 1].at <= instant:
            status_at += 1
        while owner_at + 1 < len(owners) and owners[owner_at + 1][0] <= instant:
            owner_at += 1
        status = timeline[status_at].status if timeline else record.status
        states.append((instant, status, owners[owner_at][1], owners[owner_at][2]))
    return states


def replay(record: Record, now: datetime, facts: Mapping[str, Any], rules: ClockRules,
           checks: Mapping[str, Check | None]) -> tuple[Gate, ...]:
    """The gates of one target: `facts` are the record's facts now, `checks` its
    conditions compiled (None: left to business-rules)."""
    gates: list[Gate] = []
    started = "" if rules.start_when is not None else "created"
    for at, status, group, assignee in history_states(record, now):
        variables = RecordVariables({**facts, "status": status, "group": group,
                                     "assignee": assignee})
        asked = Asked(variables)
        holds = {}
        for key in CLOCK_CONDITIONS:
            condition = getattr(rules, key)
            if condition is None:
                holds[key] = False
                continue
            check = checks.get(key)
            holds[key] = bool(check(asked) if check is not None else
                              br_engine.check_conditions_recursively(condition, variables))
        if not started and holds["start_when"]:
            started = f"start_when holds ({rules.path}.start_when)"
        gate = Gate(at, started,
                    f"pause_when ({rules.path}.pause_when)" if holds["pause_when"] else "",
                    f"stop_when ({rules.path}.stop_when)" if holds["stop_when"] else "")
        if not gates or gates[-1][1:] != gate[1:]:
            gates.append(gate)
    return tuple(gates)
