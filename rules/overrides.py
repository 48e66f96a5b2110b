"""Date-ranged overrides of a policy, for planned peaks (a launch, a sale, a migration).

`"overrides": [{"name", "from", "until", "calendars" | "targets_scale" | "rules"}]`, the
instants ISO 8601 with an offset, `from` included and `until` not:

- `calendars`: {"office": "launch-hours"}: from `from` to `until` the calendar `office`
  counts as `launch-hours` does, wherever the policy uses it (SLAs and OLAs); before and
  after, as itself. A clock that spans the range counts each part on its own calendar
  (`Spliced`), so business time, due times, thresholds and `in_business_hours` all follow.
- `targets_scale`: the SLA targets of records created within the range, times this factor
  (0.5: half the time). A record keeps the targets it was created under: its promise does
  not move when the range ends. OLAs are not scaled.
- `rules`: rules that run only while the sync's `now` is within the range, after the
  policy's own (so on the same field, theirs win); named `OVERRIDE: RULE` in explain and
  the audit.

Overrides apply in the order listed; a later one's calendar replaces an earlier one's
where their ranges overlap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sla_sync.rules.calendar import Calendar, Interval


@dataclass(frozen=True)
class Override:
    name: str
    index: int
    start: datetime
    end: datetime
    calendars: tuple[tuple[str, str], ...] = ()  # (calendar replaced, its replacement)
    targets_scale: float | None = None
    rules: tuple[str, ...] = ()  # the names its rules have in the policy

    @property
    def path(self) -> str:
        return f"overrides[{self.index}]"

    def holds(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    def describe(self) -> str:
        parts = [f"calendar {a!r} counts as {b!r}" for a, b in self.calendars]
        if self.targets_scale is not None:
            parts.append(f"SLA targets x{self.targets_scale:g} for records created in it")
        if self.rules:
            parts.append("rules " + ", ".join(repr(r) for r in self.rules))
        return (f"override {self.name!r} ({self.start.isoformat()} to {self.end.isoformat()}): "
                + "; ".join(parts))


def scale_for(overrides: Sequence[Override], created_at: datetime) -> tuple[float, str]:
    """The factor for the SLA targets of a record created at `created_at` (the last
    override whose range holds it and that scales), and which override gave it ('' none)."""
    for override in reversed(overrides):
        if override.targets_scale is not None and override.holds(created_at):
            return override.targets_scale, override.name
    return 1.0, ""


def boundaries(overrides: Sequence[Override]) -> tuple[datetime, ...]:
    """Where an override with rules starts or ends: its rules' answers change there."""
    return tuple(sorted({at for o in overrides if o.rules for at in (o.start, o.end)}))


@dataclass
class Spliced:
    """`base`, except from `start` to `end` (`end` excluded), where `inside` counts."""

    name: str
    timezone: str
    working_day_seconds: float
    override: str  # what changed, for the policy's digest and explain
    _base: Any = field(repr=False)
    _inside: Any = field(repr=False)
    _start: datetime = field(repr=False)
    _end: datetime = field(repr=False)

    @classmethod
    def of(cls, base: Calendar, inside: Calendar, start: datetime, end: datetime,
           label: str) -> Spliced:
        return cls(base.name, base.timezone, base.working_day_seconds,
                   f"{getattr(base, 'override', '')}{label}: {inside.name} from "
                   f"{start.isoformat()} until {end.isoformat()};",
                   base, inside, start, end)

    def _pieces(self, start: datetime) -> Iterator[tuple[Any, datetime, datetime | None]]:
        """From `start` on: (calendar, from, until) pieces; the last has no end."""
        if start < self._start:
            yield self._base, start, self._start
        if start < self._end:
            yield self._inside, max(start, self._start), self._end
        yield self._base, max(start, self._end), None

    def business_seconds(self, start: datetime, end: datetime) -> float:
        total = 0.0
        for calendar, lo, hi in self._pieces(start):
            stop = end if hi is None else min(hi, end)
            if stop > lo:
                total += calendar.business_seconds(lo, stop)
            if hi is None or hi >= end:
                break
        return total

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        remaining = max(0.0, seconds)
        for calendar, lo, hi in self._pieces(start):
            if hi is None:
                return calendar.add_business_seconds(lo, remaining)
            available = calendar.business_seconds(lo, hi)
            if available >= remaining:
                return calendar.add_business_seconds(lo, remaining)
            remaining -= available
        raise AssertionError("the last piece has no end")

    def is_open(self, instant: datetime) -> bool:
        inside = self._start <= instant < self._end
        return (self._inside if inside else self._base).is_open(instant)

    def intervals(self, day: date) -> tuple[Interval, ...]:
        """The working intervals of one local date (in this calendar's timezone): the base's
        outside the range, the inside calendar's within it."""
        zone = ZoneInfo(self.timezone)
        lo = datetime.combine(day, time(), zone)
        hi = datetime.combine(day + timedelta(days=1), time(), zone)
        base = _spans(self._base, day, lo, hi)
        spans = [*_clip(base, lo, self._start), *_clip(base, self._end, hi),
                 *_clip(_spans(self._inside, day, lo, hi), self._start, self._end)]
        return tuple(_merge(sorted(spans)))


def _spans(calendar: Any, day: date, lo: datetime, hi: datetime) -> list[Interval]:
    """A calendar's working time between lo and hi (one local day of the splice's zone)."""
    intervals = getattr(calendar, "intervals", None)
    if intervals is None:  # always open
        return [(lo, hi)]
    found: list[Interval] = []
    for d in (day - timedelta(days=1), day, day + timedelta(days=1)):  # its own zone's days
        found += [(max(a, lo), min(b, hi)) for a, b in intervals(d) if b > lo and a < hi]
    return found


def _clip(spans: list[Interval], lo: datetime, hi: datetime) -> Iterator[Interval]:
    for a, b in spans:
        a, b = max(a, lo), min(b, hi)
        if b > a:
            yield a, b


def _merge(spans: list[Interval]) -> Iterator[Interval]:
    current: Interval | None = None
    for a, b in spans:
        if current is not None and a <= current[1]:
            current = (current[0], max(current[1], b))
            continue
        if current is not None:
            yield current
        current = (a, b)
    if current is not None:
        yield current
