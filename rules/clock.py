"""The SLA clock: how much of a target a record has used, replayed from its history.

A clock starts at `created_at` and stops at `first_response_at` (first response) or
`solved_at` (resolution). A record solved without any first response stops its first
response clock at the solve. Time spent in one of the SLA's pause statuses does not count;
neither does time outside the SLA's calendar. A stop that lies after `now` has not happened
yet (backtests and explain with an earlier --now see the clock as it was then).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from connector.model import Record
from rules.calendar import Calendar

TARGETS = ("first_response", "resolution")
#: What a record whose SLA has no such target sees as minutes left.
NO_TARGET_MINUTES_LEFT = 10**9


@dataclass(frozen=True)
class Pause:
    status: str
    start: datetime
    end: datetime | None  # None: still paused
    business_seconds: float


@dataclass(frozen=True)
class Clock:
    target: str
    target_seconds: int | None  # None: the SLA sets no such target
    calendar: Calendar
    started_at: datetime
    stopped_at: datetime | None
    elapsed_seconds: float
    pauses: tuple[Pause, ...]
    paused: bool

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

    def due_at(self, now: datetime) -> datetime | None:
        """When the target runs out if the clock keeps running; None when that is not known
        (no target, stopped, paused, or already breached)."""
        if self.target_seconds is None or not self.running or self.paused:
            return None
        left = self.target_seconds - self.elapsed_seconds
        return self.calendar.add_business_seconds(now, left) if left >= 0 else None


def run_clock(record: Record, target: str, target_seconds: int | None, calendar: Calendar,
              pause_statuses: frozenset[str], now: datetime) -> Clock:
    start = record.created_at
    stop = record.first_response_at if target == "first_response" else None
    if stop is None or (record.solved_at is not None and record.solved_at < stop):
        stop = record.solved_at
    if stop is not None and stop > now:
        stop = None
    end = stop if stop is not None else now
    if end < start:
        end = start

    pauses = []
    timeline = record.status_timeline()
    for index, change in enumerate(timeline):
        if change.status not in pause_statuses:
            continue
        left_at = timeline[index + 1].at if index + 1 < len(timeline) else None
        lo = max(change.at, start)
        hi = end if left_at is None else min(left_at, end)
        if change.at >= end or hi <= lo:
            continue
        open_ended = left_at is None or left_at > end
        pauses.append(Pause(change.status, lo, None if open_ended and stop is None else hi,
                            calendar.business_seconds(lo, hi)))
    elapsed = calendar.business_seconds(start, end) - sum(p.business_seconds for p in pauses)
    paused = stop is None and bool(pauses) and pauses[-1].end is None
    return Clock(target=target, target_seconds=target_seconds, calendar=calendar,
                 started_at=start, stopped_at=stop, elapsed_seconds=max(0.0, elapsed),
                 pauses=tuple(pauses), paused=paused)
