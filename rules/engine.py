"""Evaluation: (Record, Policy, now) -> the matched SLA, its clocks, and what each rule asks.

Pure: no I/O and no clock reads. The SLA is the first whose `when` holds (an SLA without
`when` matches every record) among those whose version (`valid_from`, `applies_to`)
applies to the record. Every rule whose conditions hold fires; the conditions are
business-rules conditions, checked through `rules.conditions` (compiled once per policy,
answering as business-rules does), and business-rules calls the actions, which only
collect intents.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from business_rules import engine as br_engine

from sla_sync.connector.model import Record
from sla_sync.rules.actions import ActionCollector, Intent
from sla_sync.rules.calendar import ALWAYS, BUILT_IN, Calendar
from sla_sync.rules.clock import (
    ALL_TARGETS,
    NO_TARGET_MINUTES_LEFT,
    TARGETS,
    Clock,
    Period,
    final_stop,
    frozen,
    no_target,
    pause_statuses_of,
    periods_until,
    run_clock,
)
from sla_sync.rules.conditions import Asked, Check, Compiler
from sla_sync.rules.durations import Target
from sla_sync.rules.extensions import NONE, extensions_of
from sla_sync.rules.gates import replay
from sla_sync.rules.load import Load
from sla_sync.rules.mark import SlaMark
from sla_sync.rules.ola import OlaState, ola_facts, run_olas
from sla_sync.rules.overrides import scale_for
from sla_sync.rules.policy import ClockRules, Policy, Rule, Sla
from sla_sync.rules.variables import RecordVariables, custom_facts


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
    sla_mark: SlaMark | None
    calendar: Calendar
    clocks: Mapping[str, Clock]
    facts: Mapping[str, Any]
    outcomes: tuple[RuleOutcome, ...]
    #: The team targets (OLAs) that apply, with their clocks (rules.ola).
    olas: tuple[OlaState, ...] = ()

    def variables(self) -> RecordVariables:
        return RecordVariables(self.facts)


def record_facts(record: Record, now: datetime,
                 fields: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`fields`: the policy's declared custom fields (custom.NAME -> type)."""
    facts = {
        "kind": record.kind, "status": record.status, "priority": record.priority,
        "tier": record.tier, "channel": record.channel, "source": record.source,
        "group": record.group, "assignee": record.assignee, "subject": record.subject,
        "tags": list(record.tags), "escalation_level": record.escalation_level,
        "hours_since_created": (now - record.created_at).total_seconds() / 3600,
        "hours_since_updated": (now - record.updated_at).total_seconds() / 3600,
    }
    if fields:
        facts.update(custom_facts(record.custom, fields))
    return facts


NO_LOAD = Load()  # outside a sync (test, backtest): every load variable reads 0
_NO_LOAD_FACTS = NO_LOAD.facts("")  # the same for every group
_NO_OLA_FACTS = ola_facts(())  # what the OLA variables read when no OLA applies

_CLOCK_FACT_NAMES = {target: tuple(f"{target}_{suffix}" for suffix in (
    "minutes_left", "elapsed_pct", "breached", "met", "paused", "business_minutes_elapsed",
    "due_at_epoch")) for target in ALL_TARGETS}


#: The facts of a clock without a target that never ran (most targets of most SLAs): the
#: same for every record, so copied rather than worked out (see Clock's properties).
_IDLE_FACTS = {target: dict(zip(names, (NO_TARGET_MINUTES_LEFT, 0.0, False, False, False,
                                        0.0, 0), strict=True))
               for target, names in _CLOCK_FACT_NAMES.items()}
#: Every target's idle facts, in ALL_TARGETS order: a record's clock facts start as these.
_ALL_IDLE = {name: value for facts in _IDLE_FACTS.values() for name, value in facts.items()}


class Clocks(Mapping[str, Clock]):
    """A record's clocks by target, every target of ALL_TARGETS, in that order. The clocks
    that did not run (the SLA sets no such target and no rule reads it) differ only in
    their start: each is built the first time it is asked for, so an evaluation that only
    reads their facts (copied, clock_facts) never builds them."""

    __slots__ = ("ran", "_idle", "_built", "_calendar", "_start")

    def __init__(self, ran: dict[str, Clock], idle: frozenset[str], calendar: Calendar,
                 start: datetime):
        self.ran = ran  # the clocks that ran (with a target or without), by target
        self._idle = idle
        self._built: dict[str, Clock] | None = None  # the idle ones asked for so far
        self._calendar = calendar
        self._start = start

    def __getitem__(self, target: str) -> Clock:
        found = self.ran.get(target)
        if found is not None:
            return found
        if target not in self._idle:
            raise KeyError(target)
        if self._built is None:
            self._built = {}
        built = self._built.get(target)
        if built is None:
            built = self._built[target] = no_target(target, self._calendar, self._start)
        return built

    def __iter__(self) -> Iterator[str]:
        return (target for target in ALL_TARGETS if target in self.ran or target in self._idle)

    def __len__(self) -> int:
        return len(self.ran) + len(self._idle)

    def __repr__(self) -> str:
        return f"Clocks({dict(self)!r})"


def clocks_that_ran(clocks: Mapping[str, Clock]) -> Iterable[Clock]:
    """The clocks that ran: every one but the idle clocks of a Clocks (stopped at their
    start, without a target: nothing about them moves with time)."""
    return clocks.ran.values() if isinstance(clocks, Clocks) else clocks.values()


def clock_facts(clocks: Mapping[str, Clock]) -> dict[str, Any]:
    """The variables of the clocks (their values are what Clock's properties say)."""
    facts: dict[str, Any] = {}
    add_clock_facts(facts, clocks)
    return facts


def add_clock_facts(facts: dict[str, Any], clocks: Mapping[str, Clock]) -> None:
    """clock_facts(clocks) added to `facts` (as facts.update(clock_facts(clocks)) would,
    without the dict in between)."""
    if isinstance(clocks, Clocks):
        # Each target's idle facts, in order; the clocks that ran overwrite theirs in place.
        facts.update(_ALL_IDLE)
        clocks = clocks.ran
    for target, clock in clocks.items():
        seconds, elapsed = clock.target_seconds, clock.elapsed_seconds
        if seconds is None and not elapsed and not clock.paused \
                and clock.due_at is None and target in _IDLE_FACTS:
            facts.update(_IDLE_FACTS[target])
            continue
        names = _CLOCK_FACT_NAMES.get(target) or tuple(f"{target}_{suffix}" for suffix in (
            "minutes_left", "elapsed_pct", "breached", "met", "paused",
            "business_minutes_elapsed", "due_at_epoch"))
        left: float
        if seconds is None:
            left, pct, breached, met = NO_TARGET_MINUTES_LEFT, 0.0, False, False
        else:  # minutes_left, elapsed_pct, breached and met, as the properties work them out
            left, pct = (seconds - elapsed) / 60, 100.0 * elapsed / seconds
            breached = elapsed > seconds
            met = clock.stopped_at is not None and not breached
        due = clock.due_at
        facts[names[0]] = left
        facts[names[1]] = pct
        facts[names[2]] = breached
        facts[names[3]] = met
        facts[names[4]] = clock.paused
        facts[names[5]] = elapsed / 60
        facts[names[6]] = due.timestamp() if due else 0


def note_values(record: Record, facts: Mapping[str, Any],
                clocks: Mapping[str, Clock], calendar: Calendar) -> dict[str, Any]:
    """What note placeholders show: the facts, the id, the record's link, and due times in
    the calendar's timezone."""
    values = {**facts, "id": record.id, "url": record.url}
    zone = ZoneInfo(calendar.timezone)
    for target, clock in clocks.items():
        values[f"{target}_due_at"] = (
            clock.due_at.astimezone(zone).isoformat(timespec="minutes") if clock.due_at else "")
    return values


@dataclass(frozen=True)
class Compiled:
    """A policy's SLA `when`s and rule conditions as checks (None: left to business-rules)."""

    policy: Policy  # held, so that the id it is cached by stays its own
    whens: tuple[Check | None, ...]
    #: each rule, its check, its business-rules form, its outcome when not fired, its
    #: `during`
    rules: tuple[tuple[Rule, Check | None, dict[str, Any], RuleOutcome,
                       tuple[datetime, datetime] | None], ...]
    #: (SLA index, target) -> its clock conditions compiled, by key
    gates: Mapping[tuple[int, str], Mapping[str, Check | None]]
    #: The targets whose variables some rule reads (their clocks run without a target too).
    read: frozenset[str]
    #: (SLA index, id of its targets for a record, every) -> which clocks run (_Run)
    runs: dict[tuple[int, int, bool], _Run] = field(default_factory=dict)


@dataclass(frozen=True)
class _Run:
    """Which clocks run under one SLA's targets: (target, its goal, pause statuses, own
    conditions) each; the idle targets; and the targets, held so that their id stays
    theirs."""

    clocks: tuple[tuple[str, Target | None, frozenset[str], ClockRules | None], ...]
    idle: frozenset[str]
    targets: Mapping[str, Target]
    #: (target, id of a calendar) -> the calendar (held: the id stays its own) and the
    #: target's seconds on it, unscaled and not extended
    _seconds: dict[tuple[str, int], tuple[Calendar, int]] = field(default_factory=dict)

    def seconds(self, target: str, goal: Target, calendar: Calendar) -> int:
        """round(goal.seconds_on(calendar) * 1.0), as run_clocks works it out unscaled and
        not extended: the same for every record on that calendar."""
        found = self._seconds.get((target, id(calendar)))
        if found is None or found[0] is not calendar:
            if len(self._seconds) >= 64:  # calendars are the policy's: a few
                self._seconds.clear()
            found = self._seconds[target, id(calendar)] = (
                calendar, round(goal.seconds_on(calendar) * 1.0))
        return found[1]


_NO_TARGETS: Mapping[str, Target] = {}


def _run_of(found: Compiled, sla: Sla | None, targets: Mapping[str, Target],
            every: bool) -> _Run:
    """A target the SLA does not set runs (without a target) only where it is first
    response or resolution, a rule reads its variables, or `every` asks for all."""
    key = (-1 if sla is None else sla.index, id(targets), every)
    run = found.runs.get(key)
    if run is None or run.targets is not targets:
        clocks = []
        idle = []
        for target in ALL_TARGETS:
            goal = targets.get(target)
            if goal is None and not every and target not in TARGETS \
                    and target not in found.read:
                idle.append(target)
                continue
            clocks.append((target, goal,
                           pause_statuses_of(target, sla.pause_statuses if sla else ()),
                           sla.clocks.get(target) if sla is not None else None))
        run = found.runs[key] = _Run(tuple(clocks), frozenset(idle), targets)
    return run


_COMPILED: dict[int, Compiled] = {}


def compiled(policy: Policy) -> Compiled:
    found = _COMPILED.get(id(policy))
    if found is not None and found.policy is policy:
        return found
    if len(_COMPILED) >= 64:  # a long `--every` run reloads its policy now and then
        _COMPILED.clear()
    compiler = Compiler()
    found = Compiled(
        policy,
        tuple(None if sla.when is None else compiler.compile(sla.when) for sla in policy.slas),
        tuple((rule, compiler.compile(rule.conditions), rule.as_engine_rule(),
               RuleOutcome(rule, False, ()), rule.during) for rule in policy.every_rule()),
        {(sla.index, target): {key: compiler.compile(condition) for key in
                               ("start_when", "pause_when", "stop_when")
                               if (condition := getattr(rules, key)) is not None}
         for sla in policy.slas for target, rules in sla.clocks.items()},
        frozenset(target for rule in policy.every_rule() for name in _names(rule.conditions)
                  for target in ALL_TARGETS if name.startswith(f"{target}_")))
    _COMPILED[id(policy)] = found
    return found


def match_sla(policy: Policy, variables: RecordVariables,
              asked: Asked | None = None, record: Record | None = None,
              now: datetime | None = None, found: Compiled | None = None) -> Sla | None:
    """`asked`: the record's answers so far, shared with its rules. A version of an SLA
    (`valid_from`) is skipped where it does not apply to `record` at `now` (Sla.
    version_refuses); without a record every version is taken to apply. `found`:
    compiled(policy), when the caller has it."""
    asked = asked or Asked(variables)
    whens = (found or compiled(policy)).whens
    for sla, check in zip(policy.slas, whens, strict=True):
        if sla.valid_from is not None and record is not None and now is not None \
                and sla.version_refuses(record, now, policy.closed_statuses):
            continue
        if sla.when is None:
            return sla
        if check(asked) if check is not None else br_engine.check_conditions_recursively(
                sla.when, variables):
            return sla
    return None


def mark_for(record: Record, sla: Sla | None, previous: SlaMark | None) -> SlaMark | None:
    """The record's SLA mark now: unchanged while the SLA stays the same; a record that came
    under another SLA did so in the version read (at its updated_at); a record seen for the
    first time has been under its SLA since creation."""
    if sla is None:
        return None
    if previous is None:
        return frozen(SlaMark, name=sla.name, since=record.created_at)
    if previous.name == sla.name:
        return previous
    return frozen(SlaMark, name=sla.name, since=record.updated_at)


def _names(conditions: Any) -> Iterator[str]:
    """The variable names a condition tree reads."""
    if isinstance(conditions, Mapping):
        for key in ("all", "any"):
            for child in conditions.get(key, ()):
                yield from _names(child)
        if isinstance(conditions.get("name"), str):
            yield conditions["name"]


def run_clocks(record: Record, policy: Policy, sla: Sla | None, mark: SlaMark | None,
               now: datetime, facts: Mapping[str, Any] | None = None,
               every: bool = False, found: Compiled | None = None) -> tuple[Calendar, Clocks]:
    """The record's clocks under `sla`. A target the SLA does not set runs (without a
    target) only where it is first response or resolution, a rule reads its variables, or
    `every` asks for all (reports measure them); the others are left without a target.
    A target the record's extensions (rules.extensions) extend gets their time added.
    `facts`: the record's own facts, when the caller has them (a target's conditions read
    them); `found`: compiled(policy), when the caller has it."""
    changes = record.status_timeline()  # the clocks replay the same statuses
    timeline = None  # timeline_until(record, now), where gates need it
    calendar = BUILT_IN[ALWAYS] if sla is None else sla.calendar.pick(record)
    start = None
    start_reason = "created"
    if sla is not None and mark is not None and sla.on_target_change == "restart" \
            and mark.since > record.created_at:
        start, start_reason = mark.since, f"came under SLA {sla.name!r}"
    targets = _NO_TARGETS if sla is None else sla.targets_for(record)
    # An agent's extension moves the due time where the target is chosen (rules.extensions)
    extensions = extensions_of(record) if targets else NONE
    # an override's targets_scale, for records created within its range
    scale = scale_for(policy.overrides, record.created_at)[0] if policy.overrides else 1.0
    found = found or compiled(policy)
    run = _run_of(found, sla, targets, every)
    # the clocks without gates of the same pause statuses replay the same periods
    shared: dict[frozenset[str], tuple[list[Period], tuple[datetime | None, str]]] = {}
    ran: dict[str, Clock] = {}
    for target, goal, pauses, rules in run.clocks:
        gates = () if rules is None else replay(
            record, now, facts or record_facts(record, now, policy.fields), rules,
            found.gates[sla.index, target])  # type: ignore[union-attr]
        periods = final = None
        if gates and timeline is None:
            timeline = [change for change in changes if change.at <= now]
        if not gates:
            found_periods = shared.get(pauses)
            if found_periods is None:
                periods = periods_until(changes, now, pauses, policy.closed_statuses)
                found_periods = shared[pauses] = periods, final_stop(record, periods, now)
            periods, final = found_periods
        seconds = None if goal is None else run.seconds(target, goal, calendar) \
            if scale == 1.0 and extensions is NONE else \
            round(goal.seconds_on(calendar) * scale) + extensions.seconds(target, calendar)
        ran[target] = run_clock(record, target, seconds, calendar, pauses,
                                policy.closed_statuses, now, start, timeline, gates,
                                start_reason, periods, final)
    return calendar, Clocks(ran, run.idle, calendar, start or record.created_at)


def sla_and_clocks(record: Record, policy: Policy, now: datetime,
                   previous: SlaMark | None = None, facts: Mapping[str, Any] | None = None,
                   asked: Asked | None = None, every: bool = False,
                   ) -> tuple[Sla | None, Calendar, SlaMark | None, Clocks]:
    """The record's SLA, its calendar, its SLA mark and its clocks (no rules run);
    `facts`: the record's own facts when the caller has them already; `every`: run every
    clock, targets or not (run_clocks)."""
    variables = asked.variables if asked else RecordVariables(
        facts or record_facts(record, now, policy.fields))
    sla = match_sla(policy, variables, asked, record, now)
    mark = mark_for(record, sla, previous)
    calendar, clocks = run_clocks(record, policy, sla, mark, now, variables.facts, every)
    return sla, calendar, mark, clocks


def evaluate(record: Record, policy: Policy, now: datetime,
             previous: SlaMark | None = None, load: Load | None = None) -> Evaluation:
    """`previous` is the SLA mark stored for the record by the last sync, if any; `load`
    the sync's figures for the load variables (none: all 0)."""
    found = compiled(policy)
    facts = record_facts(record, now, policy.fields)
    facts.update(_NO_LOAD_FACTS if load is None else load.facts(record.group))
    variables = RecordVariables(facts)
    # The record's own answers from the SLA match stay valid for its rules: the clock facts
    # are added to the same dict, and no record fact changes.
    asked = Asked(variables)
    sla = match_sla(policy, variables, asked, record, now, found)  # as sla_and_clocks
    mark = mark_for(record, sla, previous)
    calendar, clocks = run_clocks(record, policy, sla, mark, now, facts, found=found)
    olas = run_olas(record, policy, now, facts)
    add_clock_facts(facts, clocks)
    facts.update(ola_facts(olas) if olas else _NO_OLA_FACTS)
    facts["sla"] = sla.name if sla else ""
    facts["in_business_hours"] = calendar.is_open(now)
    placeholders = None
    outcomes = []
    for rule, check, engine_rule, not_fired, during in found.rules:
        if during is not None and not during[0] <= now < during[1]:
            outcomes.append(not_fired)  # an override's rule, outside its range
            continue
        if not (check(asked) if check is not None else
                br_engine.check_conditions_recursively(rule.conditions, variables)):
            outcomes.append(not_fired)
            continue
        if placeholders is None:
            placeholders = _Placeholders(record, facts, clocks, calendar)
        collector = ActionCollector(placeholders)
        br_engine.do_actions(engine_rule["actions"], collector)
        outcomes.append(RuleOutcome(rule, True, tuple(collector.intents)))
    return frozen(Evaluation, record=record, now=now, sla=sla, sla_mark=mark,
                  calendar=calendar, clocks=clocks, facts=facts, outcomes=tuple(outcomes),
                  olas=olas)


class _Placeholders(Mapping[str, Any]):
    """note_values, worked out only when a note is rendered."""

    def __init__(self, record: Record, facts: Mapping[str, Any], clocks: Mapping[str, Clock],
                 calendar: Calendar):
        self._args = (record, facts, clocks, calendar)
        self._values: dict[str, Any] | None = None

    def _all(self) -> dict[str, Any]:
        if self._values is None:
            self._values = note_values(*self._args)
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


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
