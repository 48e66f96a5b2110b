"""Calendars: when the SLA clock runs, and business-time arithmetic exact to the second.

A calendar answers `business_seconds(start, end)` and `add_business_seconds(start, s)`,
both in real (UTC) seconds that fall inside its working intervals, and `is_open(instant)`.

- `24x7` is built in: every second counts.
- A weekly calendar has an IANA timezone, working intervals per weekday in wall-clock time
  (`"09:00-12:30"`, `"13:30-18:00"`, `"22:00-24:00"`), and holidays: one-off dates
  (`"2026-12-24"`), yearly dates (`"12-25"`) and public holidays by country and subdivision
  (`{"country": "DE", "subdiv": "BE"}`, through the `holidays` package). A holiday has no
  working time at all.

Wall-clock intervals are turned into UTC instants day by day, so a 09:00-17:00 day is
8 hours on the day the clocks change too; an interval that spans a clock change lasts the
real time between its ends (00:00-24:00 is 23 hours on the spring-forward day). Each
boundary is the first instant the wall clock reads that time: a time inside the
spring-forward gap is the instant of the change, a time that occurs twice is its first
occurrence.

Intervals are half-open, so a deadline reached exactly at closing time is due at closing
time (Request Tracker moves it to the next opening; tests/test_rt_oracle.py compares both).

Costs grow with the number of days spanned, never with minutes: each day's intervals and
totals are computed once and cached.
"""

from __future__ import annotations

import difflib
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

ALWAYS = "24x7"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: How far add_business_seconds looks for working time before giving up.
MAX_DAYS = 3660
#: How many recent answers (business_seconds, local dates, is_open) a calendar keeps:
#: enough for one record's clocks (a few spans each) and the sync's `now`, not a cache of
#: the desk.
SPAN_MEMO = 64
_INTERVAL = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")
_ONE_OFF = re.compile(r"\d{4}-\d\d-\d\d")
_YEARLY = re.compile(r"\d\d-\d\d")

Interval = tuple[datetime, datetime]
#: Where a calendar gets a region's public holidays: (country, subdiv, year) -> dates.
#: `public_holidays` (the package's answer), or rules/holiday_store.py's kept answers.
Holidays = Callable[[str, str | None, int], frozenset[date]]


class Calendar(Protocol):
    name: str
    timezone: str

    @property
    def working_day_seconds(self) -> float:
        """The length of one business day (`bd`): the calendar's average working day."""
        ...

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Business time between two instants (0 when end <= start)."""
        ...

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant at which `seconds` of business time have passed since `start`."""
        ...

    def is_open(self, instant: datetime) -> bool:
        """Is `instant` inside working time?"""
        ...


class TwentyFourSeven:
    """Every second counts."""

    name = ALWAYS
    timezone = "UTC"
    working_day_seconds = 86400.0

    def business_seconds(self, start: datetime, end: datetime) -> float:
        return max(0.0, (end - start).total_seconds())

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        return start + timedelta(seconds=max(0.0, seconds))

    def is_open(self, instant: datetime) -> bool:
        return True


class WeeklyCalendar:
    def __init__(self, name: str, timezone: str, week: Mapping[int, Iterable[tuple[int, int]]],
                 one_off: Iterable[date] = (), yearly: Iterable[tuple[int, int]] = (),
                 regions: Iterable[tuple[str, str | None]] = (),
                 holidays: Holidays | None = None):
        self.name = name
        self.timezone = timezone
        self.tz = ZoneInfo(timezone)
        # weekday (0 = Monday) -> sorted, non-overlapping (start, end) minutes of the day
        self.week = {day: tuple(sorted(week.get(day, ()))) for day in range(7)}
        self.one_off = frozenset(one_off)
        self.yearly = frozenset(yearly)
        self.regions = tuple(regions)
        self._holidays = holidays or public_holidays
        self._days: dict[date, tuple[Interval, ...]] = {}
        self._totals: dict[date, timedelta] = {}
        self._public: dict[int, frozenset[date]] = {}
        # (start, end) -> business seconds, of recent calls: a record's two clocks and its
        # due time ask for the same spans. Cleared when full, so it stays small.
        self._spans: dict[tuple[datetime, datetime], float] = {}
        # The same for local dates and is_open: every record of a sync asks about its `now`.
        self._dates: dict[datetime, date] = {}
        self._open: dict[datetime, bool] = {}
        self._flat = _Flat()
        working = [sum(end - start for start, end in spans) for spans in self.week.values()]
        self.working_day_seconds = 60.0 * sum(working) / max(1, sum(1 for w in working if w))

    # -- days ---------------------------------------------------------------------------

    def is_holiday(self, day: date) -> bool:
        if day in self.one_off or (day.month, day.day) in self.yearly:
            return True
        if not self.regions:
            return False
        if day.year not in self._public:
            self._public[day.year] = frozenset(
                d for country, subdiv in self.regions
                for d in self._holidays(country, subdiv, day.year))
        return day in self._public[day.year]

    def intervals(self, day: date) -> tuple[Interval, ...]:
        """The working intervals of one local date, as UTC instants."""
        found = self._days.get(day)
        if found is None:
            spans: list[Interval] = []
            if not self.is_holiday(day):
                for start, end in self.week[day.weekday()]:
                    lo, hi = self._instant(day, start), self._instant(day, end)
                    if spans:  # wall times around a clock change never overlap in real time
                        lo = max(lo, spans[-1][1])
                    if hi > lo:
                        spans.append((lo, hi))
            found = tuple(spans)
            self._days[day] = found
        return found

    def _total(self, day: date) -> timedelta:
        found = self._totals.get(day)
        if found is None:
            found = sum((end - start for start, end in self.intervals(day)), timedelta())
            self._totals[day] = found
        return found

    def _instant(self, day: date, minute: int) -> datetime:
        """The first instant at which the local wall clock reads this time on this day.

        A time that occurs twice (clocks going back) is its first occurrence; a time that
        does not exist (clocks going forward) is the instant of the change."""
        if minute == 24 * 60:
            day, minute = day + timedelta(days=1), 0
        wall = datetime.combine(day, time(minute // 60, minute % 60))
        instant = wall.replace(tzinfo=self.tz).astimezone(UTC)
        if instant.astimezone(self.tz).replace(tzinfo=None) == wall:
            return instant
        # In the gap: search the change between the readings with the offsets after and
        # before it (whole seconds; tz transitions fall on whole seconds).
        lo = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)  # wall clock still before
        hi = instant  # wall clock already past
        while hi - lo > timedelta(seconds=1):
            mid = lo + (hi - lo) // 2
            mid = mid.replace(microsecond=0)
            if mid.astimezone(self.tz).replace(tzinfo=None) >= wall:
                hi = mid
            else:
                lo = mid
        return hi

    def _local_date(self, instant: datetime) -> date:
        found = self._dates.get(instant)
        if found is None:
            if len(self._dates) >= SPAN_MEMO:
                self._dates.clear()
            found = self._dates[instant] = instant.astimezone(self.tz).date()
        return found

    # -- arithmetic ------------------------------------------------------------------------

    def business_seconds(self, start: datetime, end: datetime) -> float:
        if end <= start:
            return 0.0
        lo, hi = _micros(start), _micros(end)
        flat = self._flat
        if not (flat.low <= lo and hi < flat.high) and not flat.cover(self, start, end):
            return self._walked(start, end)
        return (flat.running(hi) - flat.running(lo)) / 1_000_000

    def _walked(self, start: datetime, end: datetime) -> float:
        """business_seconds day by day (where the running totals cannot answer)."""
        found = self._spans.get((start, end))
        if found is None:
            if len(self._spans) >= SPAN_MEMO:
                self._spans.clear()
            found = self._spans[start, end] = self._business_seconds(start, end)
        return found

    def _business_seconds(self, start: datetime, end: datetime) -> float:
        first, last = self._local_date(start), self._local_date(end)
        total = timedelta()
        day = first
        while day <= last:
            if first < day < last:
                total += self._total(day)
            else:
                for lo, hi in self.intervals(day):
                    lo, hi = max(lo, start), min(hi, end)
                    if hi > lo:
                        total += hi - lo
            day += timedelta(days=1)
        return total.total_seconds()

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        remaining = timedelta(seconds=seconds)
        if remaining <= timedelta():
            return start
        found = self._flat.add(self, start, remaining // _MICROSECOND)
        return found if found is not None else self._walked_add(start, remaining)

    def _walked_add(self, start: datetime, remaining: timedelta) -> datetime:
        """add_business_seconds day by day (where the running totals cannot answer)."""
        day = self._local_date(start)
        for _ in range(MAX_DAYS):
            if remaining > self._total(day) and self.intervals(day) \
                    and self.intervals(day)[0][0] >= start:
                remaining -= self._total(day)  # the whole day fits: skip it at once
            else:
                for lo, hi in self.intervals(day):
                    if hi <= start:
                        continue
                    lo = max(lo, start)
                    if remaining <= hi - lo:
                        return lo + remaining
                    remaining -= hi - lo
            day += timedelta(days=1)
        raise ValueError(f"calendar {self.name!r}: no working time within {MAX_DAYS} days "
                         f"of {start.isoformat()}")

    def is_open(self, instant: datetime) -> bool:
        found = self._open.get(instant)
        if found is None:
            if len(self._open) >= SPAN_MEMO:
                self._open.clear()
            found = self._open[instant] = any(
                lo <= instant < hi for lo, hi in self.intervals(self._local_date(instant)))
        return found


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
MICROS_A_DAY = 86_400_000_000


def _micros(instant: datetime) -> int:
    """Microseconds since the epoch, exactly."""
    return (instant - _EPOCH) // _MICROSECOND


class _Flat:
    """A weekly calendar's working intervals over a window of local dates, in microseconds
    since the epoch, with the working time before each: business time between two instants
    of the window is a difference of two running totals (a bisection each), not a walk
    over the days between, and the instant N working microseconds after one is found in
    the interval whose running total at its end first reaches its own plus N (another
    bisection).

    That difference is what the day-by-day walk adds up (the same intervals clipped to
    the same span, in whole microseconds) wherever local dates never run backwards, so
    that every interval of a date lies between that date's first and last instant. A
    clock going back across midnight would break that: each date added is checked, and a
    calendar where one fails (or whose intervals overlap) is walked day by day for good."""

    #: The most dates a window holds; a span it cannot take in is walked day by day.
    MOST = 1500

    def __init__(self) -> None:
        self.first = self.last = 0  # the window's local date ordinals: first <= d < last
        self.low = self.high = 0  # the instants (microseconds) it answers for: [low, high)
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.before: list[int] = []  # working microseconds of the window before each
        self.through: list[int] = []  # ... and up to each one's end
        self.broken = False
        self.checked: dict[int, bool] = {}  # date ordinal -> _dates_run_forward

    def running(self, instant: int) -> int:
        """Working microseconds from the window's start to `instant` (inside it)."""
        index = bisect_right(self.starts, instant) - 1
        if index < 0:
            return 0
        end = self.ends[index]
        return self.before[index] + (instant if instant < end else end) - self.starts[index]

    def add(self, calendar: WeeklyCalendar, start: datetime, need: int) -> datetime | None:
        """The instant at which `need` (> 0) working microseconds have passed since `start`,
        as the walk over the days finds it: in the first interval whose running total at its
        end reaches start's plus `need`. None when the window cannot take in the span."""
        at = _micros(start)
        # Working time never runs faster than the wall clock: the answer is at least `need`
        # after start, and at least the shortfall after the window's end, so the window
        # grows by that much (no further than the walk would go); by twice as much where a
        # step found no working time at all.
        reach, total = need, -1
        while True:
            if reach > self.MOST * MICROS_A_DAY:
                return None
            if not (self.low <= at and at + reach < self.high) \
                    and not self.cover(calendar, start, start + timedelta(microseconds=reach)):
                return None
            target = self.running(at) + need
            if self.through and self.through[-1] >= target:
                break
            grown = self.through[-1] if self.through else 0
            reach = max(reach, self.high - at) + target - grown if grown > total \
                else 2 * reach + MICROS_A_DAY
            total = grown
        index = bisect_left(self.through, target)
        if self.starts[index] < at:  # inside the interval start is in: start moved on
            return start + timedelta(microseconds=need)
        return _EPOCH + timedelta(microseconds=self.starts[index] + target - self.before[index])

    def cover(self, calendar: WeeklyCalendar, start: datetime, end: datetime) -> bool:
        """Make the window hold the local dates from start's to end's, if it can (it only
        grows, to the dates spans need and no further); whether it does."""
        if self.broken:
            return False
        need_first = calendar._local_date(start).toordinal()
        need_last = calendar._local_date(end).toordinal() + 1
        if self.last > self.first:
            need_first, need_last = min(self.first, need_first), max(self.last, need_last)
        if need_last - need_first > self.MOST or need_last > date.max.toordinal():
            return False
        if not self._build(calendar, need_first, need_last):
            self.broken = True
            return False
        return self.low <= _micros(start) and _micros(end) < self.high

    def _build(self, calendar: WeeklyCalendar, first: int, last: int) -> bool:
        starts: list[int] = []
        ends: list[int] = []
        before: list[int] = []
        through: list[int] = []
        total = 0
        for ordinal in range(first, last):
            day = date.fromordinal(ordinal)
            forward = self.checked.get(ordinal)
            if forward is None:
                forward = self.checked[ordinal] = _dates_run_forward(calendar, day)
            if not forward:
                return False
            for lo, hi in calendar.intervals(day):
                start, end = _micros(lo), _micros(hi)
                if ends and start < ends[-1]:
                    return False
                starts.append(start)
                ends.append(end)
                before.append(total)
                total += end - start
                through.append(total)
        self.first, self.last, self.starts, self.ends, self.before, self.through = first, \
            last, starts, ends, before, through
        # the instants whose local date is in the window (every date's checked stretch)
        self.low = _micros(calendar._instant(date.fromordinal(first), 0))
        self.high = _micros(calendar._instant(date.fromordinal(last - 1), 24 * 60))
        return True


def _dates_run_forward(calendar: WeeklyCalendar, day: date) -> bool:
    """Whether every instant from the first at which the wall clock reads `day` 00:00 to
    the first at which it reads the next date's 00:00 has `day` as its local date (no clock
    goes back across midnight), and the date's intervals lie in that stretch."""
    zone = calendar.tz
    begin, end = calendar._instant(day, 0), calendar._instant(day, 24 * 60)
    last = end - _MICROSECOND
    if end <= begin or begin.astimezone(zone).date() != day or last.astimezone(zone).date() != day:
        return False
    if begin.astimezone(zone).utcoffset() != last.astimezone(zone).utcoffset():
        # a change of offset within the date: just after it, still `day`?
        lo, hi = begin, last  # offset of lo is the first one, of hi the other
        offset = begin.astimezone(zone).utcoffset()
        while hi - lo > _MICROSECOND:
            mid = lo + (hi - lo) // 2
            if mid.astimezone(zone).utcoffset() == offset:
                lo = mid
            else:
                hi = mid
        if hi.astimezone(zone).date() != day:
            return False
    return all(begin <= lo and hi <= end for lo, hi in calendar.intervals(day))


BUILT_IN: dict[str, Calendar] = {ALWAYS: TwentyFourSeven()}


@lru_cache(maxsize=256)
def public_holidays(country: str, subdiv: str | None, year: int) -> frozenset[date]:
    import holidays  # imported on first use: it is large and most policies never need it

    return frozenset(holidays.country_holidays(country, subdiv=subdiv, years=year))


# -- checking a calendar spec ---------------------------------------------------------------

def check_calendar(name: str, spec: Any, holidays: Holidays | None = None,
                   ) -> tuple[WeeklyCalendar | None, list[tuple[str, str]]]:
    """Build a calendar from its policy spec; else None and (sub-path, message) problems,
    sub-paths relative to the calendar (".week.mon[1]"). `holidays` gives public holidays
    (default: `public_holidays`)."""
    holidays = holidays or public_holidays
    problems: list[tuple[str, str]] = []
    if not isinstance(spec, dict):
        return None, [("", "expected an object with timezone, week and holidays")]
    for key in spec:
        if key not in ("timezone", "week", "holidays"):
            hint = difflib.get_close_matches(key, ["timezone", "week", "holidays"], n=1)
            problems.append((f".{key}", "unknown key"
                             + (f" (did you mean {hint[0]!r}?)" if hint else "")))
    timezone = spec.get("timezone")
    if not isinstance(timezone, str) or not timezone:
        problems.append((".timezone", "missing: an IANA timezone such as 'Europe/Berlin'"))
    else:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, e.g. "Europe"
            hint = difflib.get_close_matches(timezone, sorted(available_timezones()), n=1)
            problems.append((".timezone", f"unknown timezone {timezone!r}"
                             + (f" (did you mean {hint[0]!r}?)" if hint else "")))
    week = _check_week(name, spec.get("week"), problems)
    one_off, yearly, regions = _check_holidays(spec.get("holidays", []), problems,
                                               holidays)
    if problems:
        return None, problems
    assert isinstance(timezone, str)
    return WeeklyCalendar(name, timezone, week, one_off, yearly, regions, holidays), []


def _check_week(name: str, value: Any,
                problems: list[tuple[str, str]]) -> dict[int, list[tuple[int, int]]]:
    week: dict[int, list[tuple[int, int]]] = {}
    if not isinstance(value, dict):
        problems.append((".week", "missing: working intervals by weekday, e.g. "
                                  "{\"mon\": [\"09:00-17:00\"]}"))
        return week
    for key, spans in value.items():
        if key not in WEEKDAYS:
            hint = difflib.get_close_matches(str(key), WEEKDAYS, n=1)
            problems.append((f".week.{key}", f"unknown weekday (use {', '.join(WEEKDAYS)})"
                             + (f"; did you mean {hint[0]!r}?" if hint else "")))
            continue
        if not isinstance(spans, list):
            problems.append((f".week.{key}", "expected a list of intervals like \"09:00-17:00\""))
            continue
        parsed: list[tuple[int, int, int]] = []
        for index, text in enumerate(spans):
            path = f".week.{key}[{index}]"
            match = _INTERVAL.fullmatch(text) if isinstance(text, str) else None
            if match is None:
                problems.append((path, f"{text!r} is not an interval like \"09:00-17:00\""))
                continue
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
                problems.append((path, f"{text!r}: not a time of day (00:00 to 24:00)"))
                continue
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if end <= start:
                problems.append((path, f"{text!r} ends before it starts; an interval cannot "
                                       "cross midnight: split it into '..-24:00' and '00:00-..' "
                                       "on the next day"))
                continue
            parsed.append((start, end, index))
        parsed.sort()
        reach, reach_index = -1, -1  # the latest end so far, and whose it is
        for start, end, index in parsed:
            if start < reach:
                problems.append((f".week.{key}[{index}]",
                                 f"overlaps calendars.{name}.week.{key}[{reach_index}]"))
            if end > reach:
                reach, reach_index = end, index
        week[WEEKDAYS.index(key)] = _joined([(s, e) for s, e, _ in parsed])
    if not problems and not any(week.values()):
        problems.append((".week", "no working time on any day"))
    return week


def _joined(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent intervals as one ("09:00-12:00", "12:00-17:00" -> 09:00-17:00)."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if out and out[-1][1] >= start:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _check_holidays(value: Any, problems: list[tuple[str, str]], holidays: Holidays,
                    ) -> tuple[set[date], set[tuple[int, int]], list[tuple[str, str | None]]]:
    one_off: set[date] = set()
    yearly: set[tuple[int, int]] = set()
    regions: list[tuple[str, str | None]] = []
    if not isinstance(value, list):
        problems.append((".holidays", "expected a list of dates and {\"country\": ...} objects"))
        return one_off, yearly, regions
    for index, item in enumerate(value):
        path = f".holidays[{index}]"
        if isinstance(item, str) and _ONE_OFF.fullmatch(item):
            try:
                one_off.add(date.fromisoformat(item))
                continue
            except ValueError:
                pass
        elif isinstance(item, str) and _YEARLY.fullmatch(item):
            try:
                date.fromisoformat(f"2000-{item}")  # a leap year: 02-29 is a valid yearly date
                yearly.add((int(item[:2]), int(item[3:])))
                continue
            except ValueError:
                pass
        elif isinstance(item, dict):
            regions_problem = _check_region(item, holidays)
            if regions_problem:
                problems.append((path + regions_problem[0], regions_problem[1]))
            else:
                regions.append((item["country"], item.get("subdiv")))
            continue
        problems.append((path, f"{item!r} is not a date: write \"YYYY-MM-DD\" (once), "
                               "\"MM-DD\" (every year) or {\"country\": \"DE\", \"subdiv\": "
                               "\"BE\"}"))
    return one_off, yearly, regions


def _check_region(item: dict[str, Any], holidays: Holidays) -> tuple[str, str] | None:
    unknown = [key for key in item if key not in ("country", "subdiv")]
    if unknown:
        return f".{unknown[0]}", "unknown key (known: country, subdiv)"
    country, subdiv = item.get("country"), item.get("subdiv")
    if not isinstance(country, str):
        return ".country", "missing: an ISO 3166 country code such as 'DE'"
    # The codes go to the holidays package, which looks countries up by attribute: only a
    # code's shape may reach it (a name like "__class__" or "HolidayBase" would be found).
    if not _COUNTRY.fullmatch(country):
        return ".country", f"{country[:20]!r} is not an ISO 3166 country code such as 'DE'"
    if subdiv is not None and not (isinstance(subdiv, str) and _SUBDIV.fullmatch(subdiv)):
        return ".subdiv", "expected a subdivision code such as 'BE'"
    try:
        holidays(country, subdiv, 2026)
    except NotImplementedError as exc:
        return (".subdiv" if "subdivision" in str(exc) else ".country"), str(exc)
    except Exception as exc:  # noqa: BLE001 (the package's own refusal, whatever its type)
        return ".country", f"the holidays package refused {country!r}: {type(exc).__name__}"
    return None


_COUNTRY = re.compile(r"[A-Z]{2,3}")
_SUBDIV = re.compile(r"[A-Za-z0-9]{1,6}(-[A-Za-z0-9]{1,6})?")
