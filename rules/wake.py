"""A record's result and its wake-up time: the next instant at which time alone can change
what an evaluation of the unchanged record says.

Between two evaluations of the same record version, with the ledger and the SLA mark the
first one left, only `now` moves. It enters the facts through the `hours_since_*` variables,
the running clocks (minutes left, elapsed percent, breached, business minutes elapsed, due
at while paused; the OLAs' too, whose worst clock the `ola_*` variables read),
`in_business_hours` and the instants of the record that still lie ahead (a status change,
a response or a solve stamped after `now` has not happened yet). Every
condition compares one of them with a constant, so its truth value can only change where
that fact reaches the constant. `Wakes.of` is the first such instant over every condition
of the policy (SLA `when`s included), a second early: never later than a change, often
earlier. None: no condition can change on its own, the record sleeps until it changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sla_sync.rules.calendar import TwentyFourSeven
from sla_sync.rules.clock import ALL_TARGETS, Clock, frozen
from sla_sync.rules.engine import Evaluation, SlaMark, clocks_that_ran
from sla_sync.rules.ola import ola_clocks
from sla_sync.rules.overrides import boundaries
from sla_sync.rules.planner import WRITE, Plan, Step
from sla_sync.rules.policy import Policy, Sla
from sla_sync.rules.variables import OLA_FAMILY

#: Changes the digest of every policy when what `Wakes` knows changes.
WAKE_VERSION = 3
#: The clocks whose variables conditions compare: each target's, and the OLAs' together.
FAMILIES = (*ALL_TARGETS, OLA_FAMILY)
EARLY = timedelta(seconds=1)  # float sums of business seconds are not exact
EARLY_SECONDS = EARLY.total_seconds()
CALENDAR_DAYS = 400  # how far ahead a business-hours boundary is looked for


@dataclass(frozen=True)
class Result:
    """What one evaluation of one record leaves: the rules it (de)activated, the steps it
    writes, the notifications it sends, the SLA mark when it changed, and when to evaluate
    the record again if it does not change (None: never)."""

    record_id: str
    activated: frozenset[str]
    deactivated: frozenset[str]
    writes: tuple[Step, ...]
    notifications: tuple[tuple[str, str, str], ...]
    sla_mark: SlaMark | None
    wake_at: datetime | None

    @property
    def quiet(self) -> bool:
        """Nothing for the ledger: no (de)activation, notification or new SLA mark."""
        return not (self.activated or self.deactivated or self.notifications
                    or self.sla_mark is not None)


def leaves(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        for key in ("all", "any"):
            for child in node.get(key, ()):
                yield from leaves(child)
        if "name" in node:
            yield node


def policy_digest(policy: Policy) -> str:
    """What the evaluation depends on, hashed: two policies with one digest evaluate alike."""
    def calendar(value: Any) -> Any:
        fields = {**getattr(value, "__dict__", {}), "name": value.name,
                  "timezone": value.timezone}
        return {k: sorted(map(str, v)) if isinstance(v, frozenset | tuple) else str(v)
                for k, v in sorted(fields.items()) if not k.startswith("_") and k != "tz"}

    def targets(s: Sla) -> dict[str, Any]:
        return {"name": s.name, "when": s.when,
                "targets": {k: repr(v) for k, v in sorted(s.targets.items())},
                "targets_by": None if s.targets_by is None else [
                    s.targets_by.field, {value: {k: repr(v) for k, v in sorted(t.items())}
                                         for value, t in sorted(s.targets_by.values.items())}],
                "pause": sorted(s.pause_statuses), "field": s.calendar.record_field,
                "calendars": [calendar(s.calendar.default)] + [
                    [k, calendar(v)] for k, v in sorted(s.calendar.by_value.items())]}

    data = {
        "version": WAKE_VERSION,
        "closed": sorted(policy.closed_statuses),
        "fields": sorted(policy.fields.items()),
        "slas": [{"name": s.name, "when": s.when, "targets": {k: repr(v) for k, v in
                                                              sorted(s.targets.items())},
                  "targets_by": None if s.targets_by is None else [
                      s.targets_by.field, {value: {k: repr(v) for k, v in sorted(t.items())}
                                           for value, t in sorted(s.targets_by.values.items())}],
                  "clocks": {t: [r.start_when, r.pause_when, r.stop_when]
                             for t, r in sorted(s.clocks.items())},
                  "pause": sorted(s.pause_statuses), "change": s.on_target_change,
                  **({"version": [str(s.valid_from), s.applies_to]} if s.valid_from else {}),
                  "field": s.calendar.record_field,
                  "calendars": [calendar(s.calendar.default)] + [
                      [k, calendar(v)] for k, v in sorted(s.calendar.by_value.items())]}
                 for s in policy.slas],
        "rules": [{"name": r.name, "conditions": r.conditions, "actions": list(r.actions)}
                  for r in policy.rules],
    }
    if policy.overrides:  # (absent otherwise, as OLAs below)
        data["overrides"] = [o.describe() for o in policy.overrides] + [
            {"name": r.name, "conditions": r.conditions, "actions": list(r.actions)}
            for r in policy.override_rules]
    if policy.olas:  # (absent otherwise: the digests of policies without OLAs stay)
        data["olas"] = [targets(ola) for ola in policy.olas]
    try:  # the file itself too: whatever the objects above do not show
        data["file"] = hashlib.sha256(Path(policy.source).read_bytes()).hexdigest()
    except (OSError, ValueError):
        pass
    text = json.dumps(data, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Wakes:
    """The thresholds of one policy, read once; `of(evaluation)` is a record's wake-up."""

    def __init__(self, policy: Policy):
        self.hours: dict[str, set[float]] = {"hours_since_created": set(),
                                             "hours_since_updated": set()}
        # target -> thresholds as business seconds elapsed
        self.elapsed: dict[str, set[tuple[str, float]]] = {t: set() for t in FAMILIES}
        self.due: dict[str, set[float]] = {t: set() for t in FAMILIES}
        self.business_hours = False
        # a version that becomes valid for the records open then may change which SLA a
        # record is under (one for new records only cannot: they do not exist yet)
        self.versions = sorted({s.valid_from for s in policy.slas
                                if s.valid_from and s.applies_to == "open"})
        conditions = [s.when for s in policy.slas if s.when] + [r.conditions
                                                                for r in policy.every_rule()]
        # an override's rules start and stop holding at its ends, for every record
        self.boundaries = boundaries(policy.overrides)
        for node in conditions:
            for leaf in leaves(node):
                self._read(leaf["name"], leaf.get("value"))
        # The same, as `of` walks them: the hours since (created or not, hours, the
        # timedelta when it has one) ...
        self._hours = tuple((name == "hours_since_created", hours, _hours(hours))
                            for name, values in self.hours.items() for hours in values)
        # ... and per family the elapsed thresholds (kind, value, 60 * value), in the sets'
        # order, all of them and those of business minutes elapsed (a clock without target)
        self._thresholds = {family: tuple((kind, value, 60 * value) for kind, value in found)
                            for family, found in self.elapsed.items()}
        self._minutes = {family: tuple(t for t in found if t[0] == "business_minutes_elapsed")
                         for family, found in self._thresholds.items()}

    def _read(self, name: str, value: Any) -> None:
        if name == "in_business_hours":
            self.business_hours = True
        elif name in self.hours and _number(value):
            self.hours[name].add(float(value))
        for target in FAMILIES:
            suffix = name.removeprefix(f"{target}_")
            if suffix == name:
                continue
            if suffix == "breached":
                self.elapsed[target].add(("elapsed_pct", 100.0))
            elif suffix in ("minutes_left", "elapsed_pct", "business_minutes_elapsed") \
                    and _number(value):
                self.elapsed[target].add((suffix, float(value)))
            elif suffix == "due_at_epoch" and _number(value):
                self.due[target].add(float(value))

    def of(self, evaluation: Evaluation) -> datetime | None:
        now = evaluation.now
        record = evaluation.record
        instants = (record.created_at, record.updated_at, record.solved_at,
                    record.first_response_at)
        found = [at for at in instants if at is not None and at > now]
        # at `now` itself too: a pause that starts at `now` is one only just after it
        found += [c.at for c in record.status_timeline() if c.at >= now]
        # a message stamped after now starts or stops a reply or update cycle when it
        # comes; an assignment one of time to own (and either may change what a target's
        # own conditions say)
        if record.messages:
            found += [m.at for m in record.messages if m.at > now]
        found += [at for at in self.versions if at > now]
        if record.assignment_history:
            found += [a.at for a in record.assignment_history if a.at >= now]
        found += [at for at in self.boundaries if at > now]
        if self._hours:
            early = now - EARLY
            for since_created, hours, delta in self._hours:
                base = record.created_at if since_created else record.updated_at
                at = base + (timedelta(hours=hours) if delta is None else delta)
                if at >= early:
                    found.append(at)
        for clock in clocks_that_ran(evaluation.clocks):  # an idle clock never moves
            if clock.running:  # every fact of a stopped clock stays put
                self._clock(found, clock, now, clock.target)
        # the OLA variables are the worst of the OLAs' clocks: a threshold is crossed when
        # the first clock crosses it
        if evaluation.olas:
            for clock in ola_clocks(evaluation.olas):
                if clock.running:
                    self._clock(found, clock, now, OLA_FAMILY)
        if self.business_hours:
            edge = _boundary(evaluation.calendar, now)
            found += [edge] if edge is not None else []
        if not found:
            return None
        return max(now, min(found) - EARLY)

    def _clock(self, found: list[datetime], clock: Clock, now: datetime, family: str) -> None:
        """Adds to `found` when the facts of a running clock next move; `family`: whose
        thresholds apply."""
        if clock.target_seconds is None:
            # without a target only the business minutes elapsed move (where it runs)
            if not clock.paused:
                self._elapsed(found, clock, now, 0.0, self._minutes[family])
            return
        target = float(clock.target_seconds)
        due = self.due[family]
        if due and clock.paused:
            found.append(now)  # a paused clock's due instant moves with now
        elif due and clock.due_at is not None and any(
                abs(clock.due_at.timestamp() - v) < 2 for v in due):
            found.append(now)  # recomputed due instants may differ by rounding
        if not clock.paused:
            self._elapsed(found, clock, now, target, self._thresholds[family])

    @staticmethod
    def _elapsed(found: list[datetime], clock: Clock, now: datetime, target: float,
                 thresholds: tuple[tuple[str, float, float], ...]) -> None:
        """Adds to `found` when a running clock's elapsed time reaches each threshold ahead
        of it: (kind, value, 60 * value)."""
        if not thresholds:
            return
        elapsed = clock.elapsed_seconds
        behind = elapsed - EARLY_SECONDS
        for kind, value, sixty in thresholds:
            seconds = (target - sixty if kind == "minutes_left"
                       else target * value / 100 if kind == "elapsed_pct" else sixty)
            if seconds < behind:
                continue  # behind: elapsed time only grows
            try:
                found.append(clock.calendar.add_business_seconds(
                    now, max(0.0, seconds - elapsed)))
            except ValueError:
                found.append(now)


def _hours(hours: float) -> timedelta | None:
    """timedelta(hours=hours), or None where it cannot be (`of` then raises as it did)."""
    try:
        return timedelta(hours=hours)
    except OverflowError:
        return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _boundary(calendar: Any, now: datetime) -> datetime | None:
    """The next instant after `now` at which the calendar opens or closes (None: it never
    does); `now` when the calendar cannot say (wake at once: earlier is always safe)."""
    if isinstance(calendar, TwentyFourSeven):
        return None
    intervals = getattr(calendar, "intervals", None)
    if intervals is None:
        return now
    day = now.astimezone(ZoneInfo(calendar.timezone)).date() - timedelta(days=1)
    for _ in range(CALENDAR_DAYS):
        for lo, hi in intervals(day):
            for edge in (lo, hi):
                if edge > now:
                    return edge
        day += timedelta(days=1)
    return now + timedelta(days=CALENDAR_DAYS - 2)


def result_of(p: Plan, previous: SlaMark | None, wakes: Wakes) -> Result:
    """The typed result of a plan. A plan that changes the record, or needed more than one
    pass, is due again at once: the next evaluation sees the record as written."""
    mark = p.final.sla_mark
    if p.acts or p.passes > 1 or not p.settled:
        wake: datetime | None = p.evaluation.now
    else:
        wake = wakes.of(p.evaluation)
    return frozen(Result, record_id=p.record.id, activated=p.activated,
                  deactivated=p.deactivated,
                  writes=tuple(s for s in p.steps if s.outcome == WRITE),
                  notifications=p.notifications,
                  sla_mark=mark if mark is not None and mark != previous else None,
                  wake_at=wake)
