"""The SLA clock: how much of a target a record has used, replayed from its history.

- A clock starts at `created_at` (or, for an SLA with `on_target_change: restart`, when the
  record came under that SLA) and counts business time on the SLA's calendar.
- The first response clock stops at `first_response_at`; the resolution clock stops when
  the record is solved (in one of the policy's closed statuses; at `solved_at`, or when it
  entered that status if the helpdesk gives no `solved_at`). A record solved without any
  first response stops its first response clock at the solve too.
- Time in one of the SLA's pause statuses does not count. Neither does time a record spent
  solved before it was reopened: the clock resumes from the reopening.
- Only what had happened by `now` counts: a stop or a status change after `now` has not
  happened yet (backtests and explain with an earlier --now see the clock as it was then).
- The next response clock runs in cycles read from the record's conversation (`messages`):
  a cycle starts at a customer message that follows a public agent reply (the first of
  several unanswered ones) and stops at the next public agent reply, or at the solve.
  The customer's messages before any agent reply are the first response clock's. The
  variables are the current (latest started) cycle's; every cycle is in `cycles`. With
  no conversation (the helpdesk does not give one), or before any cycle has started, the
  clock has no target: never breached, never guessed (`note` says which).
- `due_at` is the instant the target is used up given the pauses so far: for a breached
  clock, when it breached; for a running one, when it will if it runs on from now (for a
  paused one: if it resumed now); None for a clock that stopped within its target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sla_sync.connector.model import Record, StatusChange
from sla_sync.rules.calendar import Calendar

#: The targets metrics and reports count so far.
TARGETS = ("first_response", "resolution")
#: Every target a policy may set, each with a clock of its own.
ALL_TARGETS = (*TARGETS, "next_response")
#: What a record whose SLA has no such target sees as minutes left.
NO_TARGET_MINUTES_LEFT = 10**9


@dataclass(frozen=True)
class Pause:
    status: str
    start: datetime
    end: datetime | None  # None: still paused
    business_seconds: float


@dataclass(frozen=True)
class Cycle:
    """One next response cycle: from `started_at` to `stopped_at` (None: still waiting)."""

    started_at: datetime
    stopped_at: datetime | None
    elapsed_seconds: float
    breached: bool


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
    #: next_response: every cycle so far, oldest first (the fields above are the last's).
    cycles: tuple[Cycle, ...] = ()
    #: Why a clock that could not run has no target ("" otherwise).
    note: str = ""

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


T = TypeVar("T")


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


def run_clock(record: Record, target: str, target_seconds: int | None, calendar: Calendar,
              pause_statuses: Collection[str], closed_statuses: Collection[str],
              now: datetime, start: datetime | None = None,
              timeline: list[StatusChange] | None = None) -> Clock:
    """`timeline`: timeline_until(record, now), when the caller has it already."""
    start = record.created_at if start is None else max(start, record.created_at)
    if timeline is None:
        timeline = timeline_until(record, now)
    if target == "next_response":
        return _next_response(record, target_seconds, calendar, pause_statuses,
                              closed_statuses, now, start, timeline)
    stop = _stop(record, target, timeline, closed_statuses, now)
    return _count(target, target_seconds, calendar, pause_statuses, closed_statuses, now,
                  start, stop, timeline)


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


def _next_response(record: Record, target_seconds: int | None, calendar: Calendar,
                   pause_statuses: Collection[str], closed_statuses: Collection[str],
                   now: datetime, start: datetime,
                   timeline: list[StatusChange]) -> Clock:
    """The current cycle's clock, with every cycle in `cycles`."""
    solved = _stop(record, "resolution", timeline, closed_statuses, now)
    clocks = []
    for begin, reply in reply_cycles(record, now) if target_seconds is not None else ():
        stop = reply
        if solved is not None and solved >= begin and (stop is None or solved < stop):
            stop = solved  # solved without a reply: nothing left to answer
        clocks.append(_count("next_response", target_seconds, calendar, pause_statuses,
                             closed_statuses, now, max(begin, start), stop, timeline))
    if target_seconds is None or record.messages is None or not clocks:
        note = ("" if target_seconds is None
                else "unavailable: the helpdesk gives no conversation" if record.messages is None
                else "no customer message awaiting a reply since an agent's")
        return frozen(Clock, target="next_response", target_seconds=None, calendar=calendar,
                      started_at=start, stopped_at=start, elapsed_seconds=0.0, pauses=(),
                      paused=False, due_at=None, cycles=(), note=note)
    cycles = tuple(Cycle(c.started_at, c.stopped_at, c.elapsed_seconds, c.breached)
                   for c in clocks)
    return dataclasses.replace(clocks[-1], cycles=cycles)


def _count(target: str, target_seconds: int | None, calendar: Calendar,
           pause_statuses: Collection[str], closed_statuses: Collection[str], now: datetime,
           start: datetime, stop: datetime | None, timeline: list[StatusChange]) -> Clock:
    """The business time from `start` to `stop` (None: now), pauses not counted."""
    end = max(start, stop if stop is not None else now)

    pauses: list[Pause] = []
    counted: list[tuple[datetime, datetime]] = []
    cursor = start
    for index, change in enumerate(timeline):
        left_at = timeline[index + 1].at if index + 1 < len(timeline) else None
        # A closed period counts as a pause only when the record was reopened after it; the
        # last one is where the clock stopped.
        reopened = change.status in closed_statuses and left_at is not None
        if change.status not in pause_statuses and not reopened:
            continue
        lo = max(change.at, start)
        hi = end if left_at is None else min(left_at, end)
        if lo >= end or hi <= lo:
            continue
        still = stop is None and (left_at is None or left_at > end)
        pauses.append(Pause(change.status, lo, None if still else hi,
                            calendar.business_seconds(lo, hi)))
        if lo > cursor:
            counted.append((cursor, lo))
        cursor = max(cursor, hi)
    if end > cursor:
        counted.append((cursor, end))
    spans = [calendar.business_seconds(lo, hi) for lo, hi in counted]
    elapsed = sum(spans)
    paused = stop is None and bool(pauses) and pauses[-1].end is None
    due = None
    if target_seconds is not None and (stop is None or elapsed > target_seconds):
        due = _due(calendar, counted, spans, target_seconds, now)
    return frozen(Clock, target=target, target_seconds=target_seconds, calendar=calendar,
                  started_at=start, stopped_at=stop, elapsed_seconds=elapsed,
                  pauses=tuple(pauses), paused=paused, due_at=due, cycles=(), note="")


def _stop(record: Record, target: str, timeline: list[StatusChange],
          closed_statuses: Collection[str], now: datetime) -> datetime | None:
    solved = None
    if timeline and timeline[-1].status in closed_statuses:
        entered = timeline[-1].at
        for change in reversed(timeline):
            if change.status not in closed_statuses:
                break
            entered = change.at
        solved = record.solved_at
        if solved is None or solved > now or any(
                solved < change.at < entered and change.status not in closed_statuses
                for change in timeline):
            # None, in the future, or left over from a solve before a reopening: the record
            # was solved (again) when it last entered a closed status.
            solved = entered
    if target != "first_response":
        return solved
    responded = record.first_response_at
    if responded is not None and responded <= now and (solved is None or responded <= solved):
        return responded
    return solved


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
