"""SLA metrics: the six numbers, per segment and over time, and the queue of open records.

Pure: records, a policy and `now` in; plain JSON-ready data out (the renderers in
sync_report.py format it). Definitions, over records created in [since, until):

- first_response_time: created_at to first_response_at, for records that have one by
  `now`; in calendar minutes, and in SLA-clock minutes (business time on the SLA's
  calendar, pauses excluded).
- resolution_time: created_at to the solve, for records solved by `now`, the same way.
- agent_work_time and requester_wait_time: for solved records, the time in the statuses
  each counts (rules/clock.py: new and open; new, open and hold), in calendar minutes and
  in SLA-clock minutes (business time, the target's own pauses excluded), whether or not
  the SLA sets them as targets.
- compliance_rate per target: met / (met + extended + breached). A clock counts once it has stopped
  or breached; one still running inside its target does not count. A cyclic clock (next
  response, periodic and pausable update, time to own) counts every cycle. First response
  and resolution are always counted, every other target where some SLA of the policy
  sets it (`targets` lists them).
- breach_rate per target: breached / (met + extended + breached), with the breach count;
  and per day, week or month of creation (UTC) as a trend.
- extended_rate per target: extended / (met + extended + breached): clocks (or cycles)
  met with an agent's extension (rules.extensions) on that target, which count neither as
  met nor as breached; an extended clock that still ran out counts as breached.
- average_handling_time: for solved records, the mean time people logged working on them
  (`worked_seconds`, where the helpdesk records it: `source` "worked_time"); in a segment
  where no solved record has it, the mean time in work statuses (`source`
  "work_statuses"). Where only some have it, those are averaged (`count` says how many).
- time_in_work_statuses: for solved records, the mean calendar minutes spent in work
  statuses (default new and open) between creation and the solve: how long a record sat
  in the queue's hands, waiting included, not how long anyone worked on it.
A breakdown by group or assignee counts a breached clock (or cycle) under the group and
assignee that held the record when it breached (from the record's assignment history where
the helpdesk gives one, else as far as the record and sla-sync's audit tell: see
rules/breaches.py); every other figure under the record's values now. A breakdown by
team_at_breach does the same with the team, and counts the OLAs' breaches there too.
- OLA compliance and breach rates, per OLA and target (rules/ola.py): as for the SLA's
  targets, over the clocks of the OLAs that apply to each record.
- escalation_rate: records sla-sync escalated / records, from sla-sync's own audit (a
  rule's `escalate` that raised the level): each escalation before or after the record's
  first breach (the earliest instant a clock of it ran out of target), and per rule.
- people_escalation_rate: records escalated by someone else / records: a level above the
  one sla-sync's audit last left (a raise found in an audit row's `before`, or the record's
  level now). Without an audit (`--from FILE`) every escalation counts here.
Every figure says how many records it rests on; where nothing counts the value is None.
Percentiles use the nearest-rank method.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sla_sync.connector.model import Record, format_instant, parse_instant
from sla_sync.rules.clock import ALL_TARGETS, CYCLE_TARGETS, TARGETS, Clock
from sla_sync.rules.engine import SlaMark, record_facts, sla_and_clocks
from sla_sync.rules.extensions import extensions_of
from sla_sync.rules.gates import history_states
from sla_sync.rules.ola import OlaState, run_olas
from sla_sync.rules.policy import Policy

#: The team that held a record when a clock of it breached (rules.ola: an SLA's or an OLA's).
TEAM_AT_BREACH = "team_at_breach"
SEGMENT_FIELDS = ("tier", "channel", "group", "source", "kind", "sla", "priority", "assignee",
                  TEAM_AT_BREACH)
#: Fields a breached clock is counted under as they were at its breach (rules.breaches).
HOLDERS = ("group", "assignee", TEAM_AT_BREACH)
#: An OLA's target, as a report counts it: (OLA name, target).
OlaTarget = tuple[str, str]
DEFAULT_WORK_STATUSES = ("new", "open")
EVERY = ("day", "week", "month")
#: The targets measured as time spent in statuses (Zendesk's agent work and requester
#: wait time), for solved records.
TIME_IN = ("agent_work_time", "requester_wait_time")


@dataclass(frozen=True)
class Measured:
    """What the metrics need from one record, worked out once."""

    record: Record
    sla: str
    clocks: Mapping[str, Clock]
    handling_minutes: float | None  # None: not solved
    #: sla-sync's escalations of the record: (rule, "before_breach" or "after_breach")
    escalations: tuple[tuple[str, str], ...] = ()
    people_escalated: bool = False
    audit: tuple[Mapping[str, Any], ...] = ()  # the record's audit rows, oldest first
    #: The targets an agent's extension moved (rules.extensions): met, they count "extended".
    extended: frozenset[str] = frozenset()
    #: The OLAs that apply to the record, with their clocks.
    olas: tuple[OlaState, ...] = ()

    @property
    def first_breach(self) -> datetime | None:
        """The earliest instant one of the record's clocks (or cycles) ran out of target."""
        return min((due for target in self.clocks for outcome, due in self.outcomes(target)
                    if outcome == "breached" and due is not None), default=None)

    def segment(self, name: str) -> str:
        if name == TEAM_AT_BREACH:
            return self.record.group
        return self.sla if name == "sla" else str(getattr(self.record, name))

    def team_at(self, when: datetime) -> tuple[str, str]:
        """(group, and "history", "audit" or "record": what it rests on): the team that
        held the record at `when`, from its assignment history where the helpdesk gives
        one, else as held_at("group") tells."""
        if self.record.assignment_history is not None:
            return history_states(self.record, when)[-1][2], "history"
        return self.held_at("group", when)

    def held_at(self, name: str, when: datetime) -> tuple[str, str]:
        """(value, "history", "audit" or "record"): who held the record in `name` (group,
        assignee) at `when`: from the record's assignment history where the helpdesk gives
        one (anyone's changes, sla-sync's and people's); else the value now, taken back
        through sla-sync's own later changes of it."""
        if name == TEAM_AT_BREACH:
            return self.team_at(when)
        if self.record.assignment_history:
            _, _, group, assignee = history_states(self.record, when)[-1]
            return (group if name == "group" else assignee), "history"
        for row in self.audit:
            if row["field"] == name and parse_instant(row["at"], "audit.at") > when:
                return str(row["before"] or ""), "audit"
        return str(getattr(self.record, name)), "record"

    def segment_for(self, fields: Sequence[str], due: datetime | None) -> tuple[str, ...]:
        """The segment an outcome counts in: a breach (`due`: when it breached) under the
        group and assignee that held the record then, anything else as the record is."""
        return tuple(self.held_at(f, due)[0] if due is not None and f in HOLDERS
                     else self.segment(f) for f in fields)

    def outcome(self, target: str) -> str | None:
        """'met', 'breached', or None (no target, or still running within it); of a
        cyclic clock, its current cycle's."""
        clock = self.clocks[target]
        if clock.breached:
            return "breached"
        return self._met(target) if clock.met else None

    def _met(self, target: str) -> str:
        return "extended" if target in self.extended else "met"

    def outcomes(self, target: str) -> list[tuple[str, datetime | None]]:
        """(outcome, when it breached) of every cycle of a cyclic clock that met or
        breached, or of the one clock of another target; [] when none counts."""
        met = self._met(target)
        return [(met if outcome == "met" else outcome, at)
                for outcome, at in clock_outcomes(self.clocks[target])]

    def ola_outcomes(self, ola: str, target: str) -> list[tuple[str, datetime | None]]:
        """outcomes() of an OLA's clock; [] where that OLA does not apply (an agent's
        extension moves the SLA's clocks, not the team's)."""
        return [o for state in self.olas if state.ola.name == ola and target in state.clocks
                for o in clock_outcomes(state.clocks[target])]

    def time_to(self, target: str) -> tuple[float, float] | None:
        """(calendar minutes, clock minutes) from creation to this target's stop."""
        clock = self.clocks[target]
        stop = clock.stopped_at
        if stop is None:
            return None
        if target == "first_response" and stop != self.record.first_response_at:
            return None  # solved without a first response
        return ((stop - self.record.created_at).total_seconds() / 60,
                clock.elapsed_seconds / 60)

    def time_in(self, target: str) -> tuple[float, float] | None:
        """Agent work or requester wait time of a solved record: (calendar minutes, clock
        minutes) in the statuses it counts."""
        clock = self.clocks[target]
        if clock.stopped_at is None or clock.note:
            return None
        return clock.wall_seconds / 60, clock.elapsed_seconds / 60


def clock_outcomes(clock: Clock) -> list[tuple[str, datetime | None]]:
    """(outcome, when it breached) of every cycle of a cyclic clock that met or breached,
    or of any other clock once it met or breached; [] when none counts."""
    if clock.target_seconds is None:
        return []
    if clock.target not in CYCLE_TARGETS:
        if clock.breached:
            return [("breached", clock.due_at)]
        return [("met", None)] if clock.met else []
    return [("breached", cycle.due_at) if cycle.breached else ("met", None)
            for cycle in clock.cycles if cycle.breached or cycle.stopped_at is not None]


def measure_record(record: Record, policy: Policy, now: datetime,
                   previous: SlaMark | None = None,
                   work_statuses: Iterable[str] = DEFAULT_WORK_STATUSES,
                   audit: Sequence[Mapping[str, Any]] | None = ()) -> Measured:
    """`audit`: the record's audit rows, oldest first (None: no audit is known)."""
    sla, _, _, clocks = sla_and_clocks(record, policy, now, previous, every=True)
    # The resolution clock stops at the solve whether or not the SLA sets a target.
    solved = clocks["resolution"].stopped_at
    handling = None
    if solved is not None:
        handling = _minutes_in(record, frozenset(work_statuses), solved)
    extended = extensions_of(record).targets() & set(sla.targets_for(record)) if sla \
        else frozenset()
    olas = run_olas(record, policy, now, record_facts(record, now, policy.fields))
    measured = Measured(record, sla.name if sla else "", clocks, handling,
                        extended=frozenset(extended), olas=olas)
    if audit is None:
        return replace(measured, people_escalated=record.escalation_level >= 1)
    escalations, people = _escalations(record, audit, measured.first_breach)
    return replace(measured, escalations=escalations, people_escalated=people,
                   audit=tuple(audit))


def _escalations(record: Record, audit: Sequence[Mapping[str, Any]],
                 breach: datetime | None) -> tuple[tuple[tuple[str, str], ...], bool]:
    """sla-sync's escalations of a record, each before or after its first breach, and
    whether anyone else raised its level: a level above the one sla-sync's last write
    (or a revert) left, seen in a later row's `before` or in the record now."""
    left = 0  # a record is created unescalated
    people = False
    made: list[tuple[str, str]] = []
    for row in audit:
        if row["field"] != "escalation_level":
            continue
        before, after = int(row["before"] or 0), int(row["after"] or 0)
        people = people or before > left
        left = after
        if row.get("kind", "sync") == "sync" and after > before:
            at = parse_instant(row["at"], "audit.at")
            made.append((row["rule"], "after_breach" if breach is not None and at >= breach
                         else "before_breach"))
    return tuple(made), people or record.escalation_level > left


def _minutes_in(record: Record, statuses: frozenset[str], until: datetime) -> float:
    total = timedelta()
    timeline = record.status_timeline()
    for index, change in enumerate(timeline):
        if change.at >= until:
            break
        end = timeline[index + 1].at if index + 1 < len(timeline) else until
        if change.status in statuses:
            total += min(end, until) - change.at
    return total.total_seconds() / 60


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _round(value: float | None, places: int = 2) -> float | None:
    return None if value is None else round(value, places)


def _times(rows: list[tuple[float, float]]) -> dict[str, Any]:
    if not rows:
        return {"count": 0, "mean_minutes": None, "p50_minutes": None, "p90_minutes": None,
                "mean_clock_minutes": None}
    calendar = [r[0] for r in rows]
    return {"count": len(rows), "mean_minutes": _round(sum(calendar) / len(rows)),
            "p50_minutes": _round(percentile(calendar, 50)),
            "p90_minutes": _round(percentile(calendar, 90)),
            "mean_clock_minutes": _round(sum(r[1] for r in rows) / len(rows))}


def _mean(minutes: Sequence[float]) -> dict[str, Any]:
    return {"count": len(minutes),
            "mean_minutes": _round(sum(minutes) / len(minutes)) if minutes else None}


def _rate(hits: int, of: int) -> dict[str, Any]:
    return {"rate": _round(hits / of, 4) if of else None, "count": hits, "of": of}


def reported_targets(policy: Policy) -> tuple[str, ...]:
    """The targets a report counts: first response and resolution, and every other one
    some SLA of the policy sets."""
    set_somewhere = {t for sla in policy.slas for t in sla.all_targets()}
    return tuple(t for t in ALL_TARGETS if t in TARGETS or t in set_somewhere)


def reported_olas(policy: Policy) -> tuple[OlaTarget, ...]:
    """Every (OLA, target) some OLA of the policy sets, in policy and target order."""
    return tuple((ola.name, t) for ola in policy.olas for t in ALL_TARGETS
                 if t in ola.all_targets())


def segment(measured: Sequence[Measured], by: Mapping[str, str],
            counted: Mapping[Any, Sequence[str]] | None = None,
            targets: Sequence[str] = TARGETS,
            olas: Sequence[OlaTarget] = ()) -> dict[str, Any]:
    """The metrics over some records; `counted`: per target (and per OLA target), the
    outcomes that count here, where they are not those of `measured` (a breach counts under
    who held it then); `targets`: the targets whose compliance and breach rates are
    counted; `olas`: the OLA targets whose rates are (ola_compliance_rate and
    ola_breach_rate, by OLA then target; absent without any)."""
    out: dict[str, Any] = {"by": dict(by), "records": len(measured)}
    for target, key in (("first_response", "first_response_time"),
                        ("resolution", "resolution_time")):
        out[key] = _times([t for m in measured if (t := m.time_to(target)) is not None])
    for target in TIME_IN:
        out[target] = _times([t for m in measured if (t := m.time_in(target)) is not None])
    compliance: dict[str, Any] = {}
    breaches: dict[str, Any] = {}
    extended: dict[str, Any] = {}
    for target in targets:
        outcomes = ([o for m in measured for o, _ in m.outcomes(target)] if counted is None
                    else list(counted[target]))
        breached = outcomes.count("breached")
        breaches[target] = _rate(breached, len(outcomes))
        # a clock met only with an agent's extension is not met on the SLA's terms
        compliance[target] = _round(outcomes.count("met") / len(outcomes), 4) \
            if outcomes else None
        extended[target] = _rate(outcomes.count("extended"), len(outcomes))
    out["compliance_rate"] = compliance
    out["breach_rate"] = breaches
    out["extended_rate"] = extended
    if olas:
        ola_compliance: dict[str, dict[str, Any]] = {}
        ola_breaches: dict[str, dict[str, Any]] = {}
        for ola, target in olas:
            outcomes = ([o for m in measured for o, _ in m.ola_outcomes(ola, target)]
                        if counted is None else list(counted[ola, target]))
            breached = outcomes.count("breached")
            ola_breaches.setdefault(ola, {})[target] = _rate(breached, len(outcomes))
            ola_compliance.setdefault(ola, {})[target] = (
                _round(1 - breached / len(outcomes), 4) if outcomes else None)
        out["ola_compliance_rate"] = ola_compliance
        out["ola_breach_rate"] = ola_breaches
    in_statuses = [m.handling_minutes for m in measured if m.handling_minutes is not None]
    worked = [m.record.worked_seconds / 60 for m in measured
              if m.handling_minutes is not None and m.record.worked_seconds is not None]
    out["average_handling_time"] = {
        **_mean(worked or in_statuses),
        "source": ("worked_time" if worked else "work_statuses") if in_statuses else None}
    out["time_in_work_statuses"] = _mean(in_statuses)
    out["escalation_rate"] = _escalation_rate(measured)
    out["people_escalation_rate"] = _rate(sum(m.people_escalated for m in measured),
                                          len(measured))
    return out


def _escalation_rate(measured: Sequence[Measured]) -> dict[str, Any]:
    out = _rate(sum(bool(m.escalations) for m in measured), len(measured))
    by_rule: dict[str, dict[str, int]] = {}
    for m in measured:
        for rule, when in m.escalations:
            counts = by_rule.setdefault(rule, {"before_breach": 0, "after_breach": 0})
            counts[when] += 1
    out["escalations"] = sum(len(m.escalations) for m in measured)
    for when in ("before_breach", "after_breach"):
        out[when] = sum(counts[when] for counts in by_rule.values())
    out["by_rule"] = dict(sorted(by_rule.items()))
    return out


def bucket_start(instant: datetime, every: str) -> datetime:
    """The UTC day, week (from Monday) or month an instant falls in."""
    day = instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if every == "month":
        return day.replace(day=1)
    return day - timedelta(days=day.weekday()) if every == "week" else day


def next_bucket(start: datetime, every: str) -> datetime:
    if every == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start + timedelta(days=7 if every == "week" else 1)


def trend(measured: Sequence[Measured], since: datetime, until: datetime,
          every: str, targets: Sequence[str] = TARGETS) -> list[dict[str, Any]]:
    """Breach rate per target for each day, week or month (UTC, weeks from Monday) of
    creation, empty buckets included."""
    buckets: dict[datetime, list[Measured]] = {}
    start = bucket_start(since, every)
    while start < until:
        buckets[start] = []
        start = next_bucket(start, every)
    for m in measured:
        buckets.setdefault(bucket_start(m.record.created_at, every), []).append(m)
    rows = []
    for start, items in sorted(buckets.items()):
        row: dict[str, Any] = {"start": format_instant(start), "records": len(items)}
        for target in targets:
            outcomes = [o for m in items for o, _ in m.outcomes(target)]
            row[target] = _rate(outcomes.count("breached"), len(outcomes))
        rows.append(row)
    return rows


#: Upper edges (minutes) of the first-response distribution's bins; the last is open.
HISTOGRAM_EDGES = (15, 30, 60, 120, 240, 480, 1440)


def histogram(measured: Sequence[Measured]) -> list[dict[str, Any]]:
    """First response times (calendar minutes) in bins: up to 15 min, 30, 1h ... over 1 day."""
    counts = [0] * (len(HISTOGRAM_EDGES) + 1)
    for m in measured:
        times = m.time_to("first_response")
        if times is not None:
            counts[next((i for i, edge in enumerate(HISTOGRAM_EDGES) if times[0] <= edge),
                        len(HISTOGRAM_EDGES))] += 1
    return [{"upto_minutes": edge, "count": count}
            for edge, count in zip((*HISTOGRAM_EDGES, None), counts, strict=True)]


def report(records: Iterable[Record], policy: Policy, now: datetime, since: datetime,
           until: datetime, by: Sequence[Sequence[str]] = (), every: str = "day",
           work_statuses: Iterable[str] = DEFAULT_WORK_STATUSES,
           marks: Mapping[str, SlaMark] | None = None,
           audit: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> dict[str, Any]:
    """The report's data: the whole window, then one segment per value (or combination of
    values) of each breakdown in `by`, then the trend. `audit`: the state file's audit rows
    by record, oldest first (None: no audit, as for a report from a file)."""
    if every not in EVERY:
        raise ValueError(f"every: expected one of {', '.join(EVERY)}, got {every!r}")
    marks = marks or {}
    work = tuple(work_statuses)
    measured = [measure_record(r, policy, now, marks.get(r.id), work,
                               None if audit is None else audit.get(r.id, ()))
                for r in records if since <= r.created_at < until]
    targets = reported_targets(policy)
    olas = reported_olas(policy)
    segments = [segment(measured, {}, targets=targets, olas=olas)]
    for fields in by:
        segments += _breakdown(measured, fields, targets, olas)
    return {"since": format_instant(since), "until": format_instant(until),
            "now": format_instant(now), "work_statuses": list(work),
            "audit": audit is not None, "targets": list(targets),
            **({"olas": [{"name": ola, "target": target} for ola, target in olas]}
               if olas else {}),
            "segments": segments,
            "trend": {"every": every, "buckets": trend(measured, since, until, every,
                                                        targets)},
            "first_response_distribution": histogram(measured)}


def _breakdown(measured: Sequence[Measured], fields: Sequence[str],
               targets: Sequence[str] = TARGETS,
               olas: Sequence[OlaTarget] = ()) -> list[dict[str, Any]]:
    """One segment per value (or combination) of `fields`: records by their values now,
    outcomes of breached clocks (the OLAs' too) by the holders at the breach."""
    groups: dict[tuple[str, ...], list[Measured]] = {}
    counted: dict[tuple[str, ...], dict[Any, list[str]]] = {}

    def empty() -> dict[Any, list[str]]:
        return {key: [] for key in (*targets, *olas)}

    for m in measured:
        key = tuple(m.segment(f) for f in fields)
        groups.setdefault(key, []).append(m)
        counted.setdefault(key, empty())
        found: list[tuple[Any, list[tuple[str, datetime | None]]]] = [
            (target, m.outcomes(target)) for target in targets]
        found += [(ola, m.ola_outcomes(*ola)) for ola in olas]
        for which, outcomes in found:
            for outcome, due in outcomes:
                counted.setdefault(m.segment_for(fields, due), empty())[which].append(outcome)
    return [segment(groups.get(values, []), dict(zip(fields, values, strict=True)),
                    counted[values], targets, olas) for values in sorted(counted)]


def escalation_totals(records: Iterable[Record], policy: Policy, now: datetime,
                      audit: Mapping[str, Sequence[Mapping[str, Any]]],
                      marks: Mapping[str, SlaMark] | None = None,
                      ) -> dict[tuple[str, str], int]:
    """Every escalation sla-sync's audit holds, whenever the record was created, by (rule,
    "before_breach" or "after_breach"): an exporter's counter."""
    marks = marks or {}
    totals: dict[tuple[str, str], int] = {}
    for record in records:
        rows = audit.get(record.id, ())
        if not any(row["field"] == "escalation_level" for row in rows):
            continue
        for made in measure_record(record, policy, now, marks.get(record.id),
                                   audit=rows).escalations:
            totals[made] = totals.get(made, 0) + 1
    return totals


def queue(records: Iterable[Record], policy: Policy, now: datetime,
          marks: Mapping[str, SlaMark] | None = None) -> list[dict[str, Any]]:
    """Open records with a running clock, nearest target first (breached ones, most overdue
    first, lead the list)."""
    marks = marks or {}
    rows: list[dict[str, Any]] = []
    for record in records:
        if record.status in policy.closed_statuses:
            continue
        sla, calendar, _, clocks = sla_and_clocks(record, policy, now, marks.get(record.id))
        running = [c for c in clocks.values() if c.running and c.target_seconds is not None]
        if not running:
            continue
        nearest = min(running, key=lambda c: c.minutes_left)
        rows.append({
            "id": record.id, "kind": record.kind, "subject": record.subject,
            "status": record.status, "priority": record.priority, "tier": record.tier,
            "channel": record.channel, "source": record.source, "group": record.group,
            "assignee": record.assignee, "url": record.url, "sla": sla.name if sla else "",
            "target": nearest.target, "minutes_left": nearest.minutes_left,
            "elapsed_pct": round(nearest.elapsed_pct, 1), "breached": nearest.breached,
            "paused": nearest.paused,
            "due_at": format_instant(nearest.due_at) if nearest.due_at else None,
            "calendar": calendar.name,
        })
    rows.sort(key=lambda row: (row["minutes_left"], row["id"]))
    for row in rows:
        row["minutes_left"] = round(row["minutes_left"], 1)
    return rows
