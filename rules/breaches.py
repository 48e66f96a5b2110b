"""The breach audit: one row per breached SLA clock (and OLA clock), for a monthly review.

Pure, like rules/metrics.py (whose `Measured` it reads): records, a policy, `now` and the
state file's audit in; JSON-ready rows out. Each row: the record, its SLA and target, when
the target ran out (its due time, which is when the clock breached), when the clock
stopped (None: still running), the time over in calendar and in SLA-clock minutes, the
team and assignee that held the record when it breached, and what sla-sync did about the
record (its audit rows).

Who held a record at its breach is known as far as the data goes. Where the helpdesk
gives the record's assignment history (every connector but Freshdesk, see
docs/connectors), a row's `group` and `assignee` are read from it (`held_by: "history"`):
exact, whoever made the changes. Otherwise the helpdesk gives the team and assignee now
and sla-sync's audit every change sla-sync made itself (with the value before it), so
they are the values now taken back through sla-sync's own later reassignments (`held_by:
"audit"` when one was undone that way, `"record"` when the value now stood); a person's
reassignment after the breach is in neither, and that attribution is approximate.
`team_at_breach` is the team the history says held it at the breach (else `group`). A
breached OLA clock's row names its `ola`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sla_sync.connector.model import Record, format_instant, parse_instant
from sla_sync.rules.clock import ALL_TARGETS, TARGETS, Clock
from sla_sync.rules.engine import SlaMark
from sla_sync.rules.metrics import Measured, bucket_start, measure_record
from sla_sync.rules.policy import Policy


def _did(measured: Measured, breached: datetime) -> list[dict[str, Any]]:
    """sla-sync's audit rows of the record, each with its minutes from the breach."""
    return [{"at": row["at"], "rule": row["rule"], "action": row["action"],
             "field": row["field"], "after": row["after"], "kind": row.get("kind", "sync"),
             "minutes_from_breach": round(
                 (parse_instant(row["at"], "audit.at") - breached).total_seconds() / 60, 1)}
            for row in measured.audit]


def _row(measured: Measured, now: datetime, clock: Clock, due: datetime,
         stopped: datetime | None, elapsed: float, ola: str | None) -> dict[str, Any]:
    """One breached clock (or cycle) of one record: `due`, when it breached."""
    assert clock.target_seconds is not None
    end = stopped or now
    group, group_from = measured.held_at("group", due)
    assignee, assignee_from = measured.held_at("assignee", due)
    record = measured.record
    return {
        "id": record.id, "subject": record.subject, "url": record.url,
        "sla": measured.sla, "target": clock.target,
        "target_minutes": round(clock.target_seconds / 60, 2),
        "calendar": clock.calendar.name, "created_at": format_instant(record.created_at),
        "due_at": format_instant(due), "breached_at": format_instant(due),
        "stopped_at": format_instant(stopped) if stopped else None,
        "time_over_minutes": round((end - due).total_seconds() / 60, 2),
        "clock_over_minutes": round((elapsed - clock.target_seconds) / 60, 2),
        "group": group, "assignee": assignee,
        "held_by": "history" if "history" in (group_from, assignee_from) else
                   "audit" if "audit" in (group_from, assignee_from) else "record",
        "ola": ola, "team_at_breach": measured.team_at(due)[0],
        "sla_sync_did": _did(measured, due)}


def breach_rows(measured: Measured, now: datetime) -> list[dict[str, Any]]:
    """One row per breached clock of one record: its SLA's first response and resolution,
    and every breached clock (or cycle) of the OLAs that apply (`ola`: the OLA's name;
    None for the SLA's)."""
    rows = []
    for target in TARGETS:
        clock = measured.clocks[target]
        if not clock.breached or clock.due_at is None or clock.target_seconds is None:
            continue
        rows.append(_row(measured, now, clock, clock.due_at, clock.stopped_at,
                         clock.elapsed_seconds, None))
    for state in measured.olas:
        for clock in state.clocks.values():
            if clock.target_seconds is None:
                continue
            if clock.cycles:
                rows += [_row(measured, now, clock, c.due_at, c.stopped_at, c.elapsed_seconds,
                              state.ola.name) for c in clock.cycles
                         if c.breached and c.due_at is not None]
            elif clock.breached and clock.due_at is not None:
                rows.append(_row(measured, now, clock, clock.due_at, clock.stopped_at,
                                 clock.elapsed_seconds, state.ola.name))
    return rows


def breaches(records: Iterable[Record], policy: Policy, now: datetime, since: datetime,
             until: datetime, every: str = "month",
             marks: Mapping[str, SlaMark] | None = None,
             audit: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
             ) -> dict[str, Any]:
    """Every clock that breached in [since, until), by breach time then record id and
    target (first response first), each with its `period` (the day, week or month of the
    breach, UTC)."""
    marks = marks or {}
    rows = []
    for record in records:
        if record.created_at >= until:
            continue
        measured = measure_record(record, policy, now, marks.get(record.id),
                                  audit=None if audit is None else audit.get(record.id, ()))
        for row in breach_rows(measured, now):
            breached = parse_instant(row["breached_at"], "breached_at")
            if since <= breached < until:
                row["period"] = format_instant(bucket_start(breached, every))
                rows.append(row)
    rows.sort(key=lambda r: (r["breached_at"], r["id"], r["ola"] is not None, r["ola"] or "",
                             ALL_TARGETS.index(r["target"])))
    return {"since": format_instant(since), "until": format_instant(until),
            "now": format_instant(now), "every": every, "audit": audit is not None,
            "breaches": rows}
