"""The SLA clocks: how much of each target a record has used, replayed from its history.

Every clock counts business time on the SLA's calendar over one window (first response,
resolution, agent work time, requester wait time) or over cycles (next response, periodic
and pausable update, time to own), less its pauses:

- A clock starts at `created_at` (or, for an SLA with `on_target_change: restart`, when the
  record came under that SLA; or, for a target with a `start_when`, at the first instant
  of the record's history at which it holds, not before).
- The first response clock stops at `first_response_at`; the resolution clock stops when
  the record is solved (in one of the policy's closed statuses; at `solved_at`, or when it
  entered that status if the helpdesk gives no `solved_at`). A record solved without any
  first response stops its first response clock at the solve too. A target's `stop_when`
  stops it like a solve, from the first instant it holds for good.
- Time in one of the target's pause statuses does not count, nor time while its
  `pause_when` holds. Neither does time a record spent solved (or stopped by `stop_when`)
  before it was reopened: the clock resumes from the reopening.
- The pause statuses of first response, resolution, next response, pausable update and
  time to own are the SLA's `pause_statuses`. The others are their definitions in
  Zendesk's sense: periodic update counts through every status; agent work time (time in
  new and open) pauses in pending and hold besides the SLA's pause statuses; requester
  wait time (time in new, open and hold) pauses only in pending.
- Only what had happened by `now` counts: a stop or a status change after `now` has not
  happened yet (backtests and explain with an earlier --now see the clock as it was then).
- Cycles: next response runs from a customer message that follows a public agent reply
  (the first of several unanswered ones) to the next public agent reply (the customer's
  messages before any reply are the first response clock's); periodic and pausable update
  from each public agent reply to the next; time to own from the moment the record entered
  a group (its creation, for the group it was created in), or lost its assignee, until an
  assignee is set or it moves to another group. Any cycle stops at the solve, and one
  begun while the record was solved for good is none. The variables are the current
  (latest started) cycle's; every cycle is in `cycles`.
- A clock whose data the helpdesk does not give (no conversation, no assignment history,
  or none saying when the record entered its current group), one with no cycle yet, and
  one whose `start_when` has not held have no target: never breached, never guessed
  (`note` says which).
- `due_at` is the instant the target is used up given the pauses so far: for a breached
  clock, when it breached; for a running one, when it will if it runs on from now (for a
  paused one: if it resumed now); None for a clock that stopped within its target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sla_sync.connector.model import Record, StatusChange
from sla_sync.rules.calendar import Calendar

#: The targets sla-sync kept first; backtests and the breach audit count these.
TARGETS = ("first_response", "resolution")
#: The targets that run in cycles.
CYCLE_TARGETS = ("next_response", "periodic_update", "pausable_update", "time_to_own")
#: Every target a policy may set, each with a clock of its own.
ALL_TARGETS = (*TARGETS, *CYCLE_TARGETS, "agent_work_time", "requester_wait_time")
#: Statuses in which a target never counts, whatever the SLA's pause statuses.
OWN_PAUSES: dict[str, tuple[str, ...]] = {"agent_work_time": ("pending", "hold"),
                                          "requester_wait_time": ("pending",)}
#: Targets that the SLA's pause statuses do not pause: their statuses are their definition.
THROUGH_PAUSES = ("periodic_update", "requester_wait_time")
#: What a record whose SLA has no such target sees as minutes left.
NO_TARGET_MINUTES_LEFT = 10**9
#: The reason of a pause or stop that comes from the record's status.
STATUS = "status"


def pause_statuses_of(target: str, sla_pauses: Collection[str]) -> frozenset[str]:
    """The statuses that pause `target` under an SLA pausing in `sla_pauses`."""
    own = frozenset(OWN_PAUSES.get(target, ()))
    return own if target in THROUGH_PAUSES else own | frozenset(sla_pauses)


@dataclass(frozen=True)
class Pause:
    status: str
    start: datetime
    end: datetime | None  # None: still paused
    business_seconds: float
    #: Why, when not the status: a pause_when, a stop before a reopening ("" otherwise).
    reason: str = ""


@dataclass(frozen=True)
class Cycle:
    """One cycle of a cyclic clock: from `started_at` to `stopped_at` (None: running)."""

    started_at: datetime
    stopped_at: datetime | None
    elapsed_seconds: float
    breached: bool
    #: What stopped it ("replied", "solved", "owned by ana", ...; "" while running).
    ended: str = field(default="", compare=False)
    #: When its target was (or will be) used up; None for one stopped within it.
    due_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Clock:
    target: str
    target_seconds: int | None  # None: the SLA sets no such target
    calendar: Calendar
    started_at: datetime
    stopped_at: datetime | None
    elapsed_seconds: float  # business seconds counted
    pauses: tuple[Pause, ...]
    paused: bool
    due_at: datetime | None
    #: A cyclic clock's cycles so far, oldest first (the fields above are the last's).
    cycles: tuple[Cycle, ...] = ()
    #: Why a clock that could not run has no target ("" otherwise).
    note: str = ""
    #: Why it started when it did, and why it stopped ("" while running).
    start_reason: str = ""
    stop_reason: str = ""
    #: The calendar time counted (pauses not counted, working hours or not), in seconds.
    wall_seconds: float = 0.0

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    @property
    def minutes_left(self) -> float:
        if self.target_seconds is None:
            return NO_TARGET_MINUTES_LEFT
        return (self.target_seconds - self.elapsed_seconds) / 60

    @property
    def elapsed_pct(self) -> float:
        if self.target_seconds is None:
            return 0.0
        return 100.0 * self.elapsed_seconds / self.target_seconds

    @property
    def breached(self) -> bool:
        return self.target_seconds is not None and self.elapsed_seconds > self.target_seconds

    @property
    def met(self) -> bool:
        return (self.target_seconds is not None and not self.running
                and self.elapsed_seconds <= self.target_seconds)


class Gate(NamedTuple):
    """What a target's own conditions say from `at` on (until the next Gate): why it has
    started ("" not yet), why it is paused and why it is stopped ("" when not)."""

    at: datetime
    started: str
    pause: str
    stop: str


class Period(NamedTuple):
    """One stretch of the record's history as a clock sees it, from `at` to the next:
    why time here is not counted and why the clock is stopped here ("" when not; STATUS
    when the status says so)."""

    at: datetime
    status: str
    pause: str
    stop: str


T = TypeVar("T")
_new_tuple = tuple.__new__
_new = object.__new__


def frozen(cls: type[T], **fields: Any) -> T:
    """An instance of a frozen dataclass, every field given, built without its generated
    __init__: that one sets each field through object.__setattr__, a third of what a clock
    costs. The instance is the same (equality, hash, repr)."""
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance


def timeline_until(record: Record, now: datetime) -> list[StatusChange]:
    """The record's statuses that had happened by `now`: what every clock replays."""
    return [change for change in record.status_timeline() if change.at <= now]


def periods_of(timeline: Sequence[StatusChange], pause_statuses: Collection[str],
               closed_statuses: Collection[str], gates: Sequence[Gate] = ()) -> list[Period]:
    """The statuses and a target's gates as one list of periods (a change of neither
    starts no period)."""
    if not gates:  # Period(...) each, built as the tuple it is (its __new__ is Python's)
        return [_new_tuple(Period, (c.at, c.status, STATUS if c.status in pause_statuses else "",
                                    STATUS if c.status in closed_statuses else ""))
                for c in timeline]
    out: list[Period] = []
    instants = sorted({c.at for c in timeline} | {g.at for g in gates})
    status_at, gate_at = 0, -1
    for instant in instants:
        while status_at + 1 < len(timeline) and timeline[status_at + 1].at <= instant:
            status_at += 1
        while gate_at + 1 < len(gates) and gates[gate_at + 1].at <= instant:
            gate_at += 1
        status = timeline[status_at].status if timeline else ""
        gate = gates[gate_at] if gate_at >= 0 else None
        pause = STATUS if status in pause_statuses else gate.pause if gate else ""
        stop = STATUS if status in closed_statuses else gate.stop if gate else ""
        if not out or out[-1][1:] != (status, pause, stop):
            out.append(Period(instant, status, pause, stop))
    return out


def periods_until(changes: Sequence[StatusChange], now: datetime,
                  pause_statuses: Collection[str],
                  closed_statuses: Collection[str]) -> list[Period]:
    """periods_of(timeline_until(record, now), pause_statuses, closed_statuses) in one
    pass, from `changes`, the record's status_timeline()."""
    return [_new_tuple(Period, (c.at, c.status, STATUS if c.status in pause_statuses else "",
                                STATUS if c.status in closed_statuses else ""))
            for c in changes if c.at <= now]


def run_clock(record: Record, target: str, target_seconds: int | None, calendar: Calendar,
              pause_statuses: Collection[str], closed_statuses: Collection[str],
              now: datetime, start: datetime | None = None,
              timeline: list[StatusChange] | None = None, gates: Sequence[Gate] = (),
              start_reason: str = "created", periods: list[Period] | None = None,
              ended: tuple[datetime | None, str] | None = None) -> Clock:
    """`timeline`: timeline_until(record, now), and `periods` its periods for these pause
    statuses and gates, when the caller has them already (and `ended`, final_stop of
    them); `gates`: the target's own conditions replayed over the record's history
    (rules.gates)."""
    if start is None or start <= record.created_at:
        start = record.created_at
    if periods is None:
        if timeline is None:
            timeline = timeline_until(record, now)
        periods = periods_of(timeline, pause_statuses, closed_statuses, gates)
    if gates:
        began = next((g for g in gates if g.started and g.at <= now), None)
        if began is None:
            return no_target(target, calendar, start, "not started: its start_when has not "
                                                      "held")
        if began.at > start:
            start, start_reason = began.at, began.started
    final, final_reason = final_stop(record, periods, now) if ended is None else ended
    if target in CYCLE_TARGETS:
        return _cyclic(record, target, target_seconds, calendar, periods, now, start,
                       start_reason, final, final_reason)
    stop, stop_reason = final, final_reason
    responded = record.first_response_at
    if target == "first_response" and responded is not None and responded <= now and (
            final is None or responded <= final):
        stop, stop_reason = responded, "first response"
    return _count(target, target_seconds, calendar, periods, now, start, stop, start_reason,
                  stop_reason)


def no_target(target: str, calendar: Calendar, start: datetime, note: str = "") -> Clock:
    """The clock of a target that is not set, or cannot run (`note` says why)."""
    return frozen(Clock, target=target, target_seconds=None, calendar=calendar,
                  started_at=start, stopped_at=start, elapsed_seconds=0.0, pauses=(),
                  paused=False, due_at=None, cycles=(), note=note, start_reason="",
                  stop_reason="", wall_seconds=0.0)


Window = tuple[datetime, datetime | None, str]  # begin, end (None: open), what ended it


def reply_cycles(record: Record, now: datetime) -> list[tuple[datetime, datetime | None]]:
    """(start, public agent reply or None) of each next response cycle that had started
    by `now`; [] for a record without a conversation."""
    cycles: list[tuple[datetime, datetime | None]] = []
    replied = False  # a public agent reply since the last customer message
    waiting: datetime | None = None
    for message in record.messages or ():
        if message.at > now:
            break
        if message.author == "agent" and message.public:
            if waiting is not None:
                cycles.append((waiting, message.at))
                waiting = None
            replied = True
        elif message.author == "customer" and replied and waiting is None:
            waiting = message.at
    if waiting is not None:
        cycles.append((waiting, None))
    return cycles


def update_windows(record: Record, now: datetime) -> list[Window]:
    """Periodic and pausable update: from each public agent reply to the next."""
    replies = [m.at for m in record.messages or () if m.at <= now
               and m.author == "agent" and m.public]
    windows: list[Window] = [(a, b, "updated") for a, b in zip(replies, replies[1:],
                                                                strict=False)]
    return windows + ([(replies[-1], None, "")] if replies else [])


def ownership_windows(record: Record, now: datetime) -> list[Window]:
    """Time to own: from each entry into a group (or loss of the assignee) until an
    assignee is set or the group changes. An entry into a group is known from a change of
    group, or from creation when an entry at `created_at` (or an empty history: the values
    now are those of creation) says the group; a record created in a group no entry names
    may have been in its first named group since creation, so that stay has no cycle
    beginning at its entry."""
    history = record.assignment_history or ()
    created = record.created_at
    at_creation = [a for a in history if a.at <= created]
    group: str | None = None  # None: not told
    owner = ""
    if not history:
        group, owner = record.group, record.assignee
    elif at_creation:
        group, owner = at_creation[-1].group, at_creation[-1].assignee
    windows: list[Window] = []
    waiting = created if group is not None and not owner else None  # unowned since
    if group is not None and owner:
        windows.append((created, created, f"owned by {owner}"))
    for change in history:
        if not created < change.at <= now:
            continue
        if change.group != group:
            if waiting is not None:
                windows.append((waiting, change.at, f"moved to group {change.group or '(none)'}"))
            waiting = None
            if group is not None and change.assignee:
                windows.append((change.at, change.at, f"owned by {change.assignee}"))
            elif group is not None:
                waiting = change.at
            group = change.group
        elif change.assignee and waiting is not None:
            windows.append((waiting, change.at, f"owned by {change.assignee}"))
            waiting = None
        elif not change.assignee and owner:
            waiting = change.at  # the assignee was taken off: unowned again
        owner = change.assignee
    if waiting is not None:
        windows.append((waiting, None, ""))
    return windows


def _windows(record: Record, target: str, now: datetime) -> tuple[list[Window], str]:
    """The cycles' windows of a cyclic target, and why there are none."""
    if target == "time_to_own":
        if record.assignment_history is None:
            return [], "unavailable: the helpdesk gives no assignment history"
        return ownership_windows(record, now), ("unavailable: the helpdesk does not say when "
                                                "the record entered its group")
    if record.messages is None:
        return [], "unavailable: the helpdesk gives no conversation"
    if target == "next_response":
        return ([(a, b, "replied" if b else "") for a, b in reply_cycles(record, now)],
                "no customer message awaiting a reply since an agent's")
    return update_windows(record, now), "no public agent reply yet"


def _cyclic(record: Record, target: str, target_seconds: int | None, calendar: Calendar,
            periods: list[Period], now: datetime, start: datetime, start_reason: str,
            final: datetime | None, final_reason: str) -> Clock:
    """The current cycle's clock, with every cycle in `cycles`."""
    if target_seconds is None:
        return no_target(target, calendar, start)
    windows, why_none = _windows(record, target, now)
    clocks = []
    for begin, end, ended in windows:
        lo = max(begin, start)
        stop, reason = end, ended
        if final is not None:
            if lo >= final:
                continue  # begun once the record was solved for good: nothing is owed
            if stop is None or final < stop:
                stop, reason = final, final_reason
        if stop is not None and stop < lo:
            continue  # over before the clock started
        clocks.append(_count(target, target_seconds, calendar, periods, now, lo, stop,
                             start_reason if lo == start else "", reason))
    if not clocks:
        return no_target(target, calendar, start, why_none)
    cycles = tuple(Cycle(c.started_at, c.stopped_at, c.elapsed_seconds, c.breached,
                         c.stop_reason, c.due_at) for c in clocks)
    return dataclasses.replace(clocks[-1], cycles=cycles)


def _count(target: str, target_seconds: int | None, calendar: Calendar,
           periods: list[Period], now: datetime, start: datetime, stop: datetime | None,
           start_reason: str = "", stop_reason: str = "") -> Clock:
    """The business time from `start` to `stop` (None: now), pauses not counted."""
    end = stop if stop is not None else now
    if not end > start:  # max(start, end): of equals, the first
        end = start
    business_seconds = calendar.business_seconds
    pauses: list[Pause] = []
    counted: list[tuple[datetime, datetime]] = []
    cursor = start
    last = len(periods) - 1
    for index, period in enumerate(periods):
        at, status, pause, stopped = period
        if at >= end:
            break  # periods are in time order: none from here on is within the clock
        # A stopped period counts as a pause only when the record was reopened after it; the
        # last one is where the clock stopped.
        if not pause and not (stopped and index < last):
            continue
        left_at = periods[index + 1][0] if index < last else None
        lo = start if start > at else at  # max(at, start): of equals, the first
        hi = end if left_at is None or left_at > end else left_at
        if hi <= lo:
            continue
        still = stop is None and (left_at is None or left_at > end)
        why = pause or stopped
        paused_for = _new(Pause)  # frozen(Pause, ...), without the call
        paused_for.__dict__.update(status=status, start=lo, end=None if still else hi,
                                   business_seconds=business_seconds(lo, hi),
                                   reason="" if why == STATUS else why)
        pauses.append(paused_for)
        if lo > cursor:
            counted.append((cursor, lo))
        if hi > cursor:
            cursor = hi
    if end > cursor:
        counted.append((cursor, end))
    spans = [business_seconds(lo, hi) for lo, hi in counted]
    elapsed = sum(spans)
    paused = stop is None and bool(pauses) and pauses[-1].end is None
    due = None
    if target_seconds is not None and (stop is None or elapsed > target_seconds):
        due = _due(calendar, counted, spans, target_seconds, now)
    clock = _new(Clock)  # frozen(Clock, ...), without the call
    clock.__dict__.update(
        target=target, target_seconds=target_seconds, calendar=calendar, started_at=start,
        stopped_at=stop, elapsed_seconds=elapsed, pauses=tuple(pauses), paused=paused,
        due_at=due, cycles=(), note="", start_reason=start_reason,
        stop_reason=stop_reason if stop else "",
        wall_seconds=sum([(hi - lo).total_seconds() for lo, hi in counted]))
    return clock


def final_stop(record: Record, periods: list[Period],
                now: datetime) -> tuple[datetime | None, str]:
    """When the record last became solved (or stopped by a stop_when) and stayed so, and
    why; (None, "") for one that is not."""
    if not periods or not periods[-1].stop:
        return None, ""
    first = len(periods) - 1
    while first > 0 and periods[first - 1].stop:
        first -= 1
    entered, why = periods[first].at, periods[first].stop
    if why != STATUS:
        return entered, why
    solved = record.solved_at
    if solved is not None and solved <= now:
        for at, _, _, stop in periods:
            if solved < at < entered and stop != STATUS:
                solved = None  # left over from a solve before a reopening
                break
    if solved is None or solved > now:
        # None, in the future, or left over: the record was solved (again) when it last
        # entered a closed status.
        solved = entered
    return solved, periods[first].status


def _due(calendar: Calendar, counted: list[tuple[datetime, datetime]], spans: list[float],
         target: int, now: datetime) -> datetime:
    """The instant the target was used up inside the counted spans (`spans`: the business
    seconds of each), else (the clock runs on from now) the instant it will be."""
    remaining = float(target)
    for (lo, _), span in zip(counted, spans, strict=True):
        if remaining <= span:
            return calendar.add_business_seconds(lo, remaining)
        remaining -= span
    return calendar.add_business_seconds(now, remaining)
