"""Request Tracker as an oracle for business time: RT's own SLA code (`RT::SLA` on
Business::Hours, through tools/rt-sla-oracle) and `rules.calendar` must agree on deadlines.

A few hundred queries (calendar, start, business minutes), generated with a fixed seed,
go to the oracle in one subprocess call; each RT deadline is compared with
`add_business_seconds(start, minutes * 60)` on the same calendar built by `check_calendar`.

Comparison: exact instants, after one normalisation (chosen over comparing business time).
Business::Hours counts whole business seconds and its deadline is the start of the first
business second after the N-th, so RT's deadline is always an instant at which the
calendar is open; sla-sync's deadline is the instant the N-th second ends, which is a
closing instant when the time runs out exactly at closing (README: "due at closing time").
So the RT deadline we expect is sla-sync's deadline when the calendar is open then, and
otherwise the next opening after it. Comparing business time instead
(`business_seconds(start, rt_deadline) == minutes * 60`) would accept RT's answer anywhere
in the closed stretch after the deadline (17:00, 23:00 and the next 09:00 all measure the
same), so an off-by-a-night error on either side would go unnoticed; the normalisation
pins the deadline to the second. The business time our calendar measures up to RT's
deadline is still printed with every mismatch, to tell a convention from a miscount.

Normalised too, as a Business::Hours convention rather than a bug: a working-interval
boundary whose wall time does not exist (inside the spring-forward gap). sla-sync reads it
as the instant of the change (README, "Calendars"); Business::Hours (Time::Local) reads it
as that wall time at the offset before the change, an hour later: the "night" calendar
opens at 02:30 on Sundays, which on 8 March in New York is 03:00 EDT for sla-sync and
03:30 EDT for RT. Queries whose span reaches such a boundary are checked against RT's
reading instead (`agrees_in_rts_convention`: RT's deadline is the one instant at which the
calendar is open and exactly the business time has passed, both as RT reads the calendar),
so they still prove the rest of the arithmetic, and a disagreement beyond that convention
still fails.

Kept away from by construction (Business::Hours limitations that would show as
disagreements, not exercised here): a holiday removes the 86,400 s from local midnight, one
second more inclusive, so on a clock-change day it covers 23 or 25 hours of real time and
on a calendar open at midnight it also removes the next day's first second; the holiday
calendar opens at 08:30 and has no working time near midnight, the night calendar has no
holidays. Business::Hours also gives
up when a deadline is more than 30 days away; the minutes are kept well below that.

Without RT's Perl libraries (Debian's request-tracker5, which brings Business::Hours) the
test skips, except under CI=true, where it fails: CI must never pass without having run it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT
from sla_sync.rules.calendar import WEEKDAYS, WeeklyCalendar, check_calendar

ORACLE = ROOT / "tools" / "rt-sla-oracle"
RT_LIB = Path(os.environ.get("SLA_SYNC_RT_LIB", "/usr/share/request-tracker5/lib"))
SEED = 20260329
QUERIES_PER_CALENDAR = 90
BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"
NINE_TO_FIVE = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}

CALENDARS: dict[str, dict[str, Any]] = {
    "berlin": {"timezone": BERLIN, "week": NINE_TO_FIVE},
    "new_york": {"timezone": NEW_YORK, "week": NINE_TO_FIVE},
    # Different hours every day, a lunch break, a short Friday and a Saturday morning.
    "varied": {"timezone": BERLIN, "week": {
        "mon": ["08:00-16:00"], "tue": ["10:00-18:30"], "wed": ["07:30-12:00", "13:00-19:00"],
        "thu": ["09:00-17:00"], "fri": ["09:00-13:00"], "sat": ["10:00-14:00"]}},
    # One-off and yearly holidays: Fridays before a weekend (2 Jan, Good Friday, 3 July, the
    # Fridays before both clock changes, the day after Thanksgiving, Christmas), Mondays,
    # a Thursday-Friday pair and New Year's Eve every year.
    "holidays": {"timezone": NEW_YORK, "week": {
        day: ["08:30-17:30"] for day in ("mon", "tue", "wed", "thu", "fri")}, "holidays": [
        "2026-01-01", "2026-01-02", "2026-01-19", "2026-03-06", "2026-04-03", "2026-05-25",
        "2026-07-03", "2026-09-07", "2026-10-30", "2026-11-26", "2026-11-27", "2026-12-24",
        "12-25", "12-31", "2027-01-01"]},
    # Working time around midnight and across both clock changes (02:00 in New York); on
    # the spring-forward Sunday the break ends at 02:30, which does not exist.
    "night": {"timezone": NEW_YORK, "week": {
        "mon": ["00:00-06:00", "22:00-24:00"], "tue": ["00:00-06:00", "22:00-24:00"],
        "wed": ["00:00-06:00", "22:00-24:00"], "thu": ["00:00-06:00", "22:00-24:00"],
        "fri": ["00:00-06:00"], "sat": ["20:00-24:00"],
        "sun": ["00:00-01:00", "02:30-07:00"]}},
}

# Days with a clock change (Sunday) in 2026, by timezone.
CLOCK_CHANGES = {BERLIN: [date(2026, 3, 29), date(2026, 10, 25)],
                 NEW_YORK: [date(2026, 3, 8), date(2026, 11, 1)]}
MINUTE = 60


# -- running the oracle --------------------------------------------------------------------

def unavailable(reason: str, hint: str = " (install Debian's request-tracker5, or set "
                "SLA_SYNC_RT_LIB to RT's lib folder)") -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"RT's SLA oracle cannot run under CI: {reason}{hint}", pytrace=False)
    pytest.skip(f"RT's SLA oracle cannot run: {reason}{hint}")


def rt_hours(week: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Our week as Business::Hours takes it: one Start-End span a day (keys "0" = Sunday to
    "6"), the gaps between our intervals as Breaks; 24:00 is written 00:00, which
    Business::Hours reads as midnight at the end of the day (End <= Start ends a day later)."""
    hours: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(WEEKDAYS):
        spans = [span.split("-") for span in week.get(name, [])]
        if not spans:
            continue
        day: dict[str, Any] = {"Name": name, "Start": spans[0][0],
                               "End": "00:00" if spans[-1][1] == "24:00" else spans[-1][1]}
        if len(spans) > 1:
            day["Breaks"] = [{"Start": spans[i][1], "End": spans[i + 1][0]}
                             for i in range(len(spans) - 1)]
        hours[str((index + 1) % 7)] = day
    return hours


def ask_rt(queries: list[Query]) -> dict[str, Any]:
    if not (RT_LIB / "RT" / "SLA.pm").is_file():
        unavailable(f"RT's Perl libraries are not installed ({RT_LIB}/RT/SLA.pm not found)")
    if shutil.which("perl") is None:
        unavailable("perl is not installed")
    request = {
        "calendars": {name: {"timezone": spec["timezone"], "hours": rt_hours(spec["week"]),
                             "holidays": spec.get("holidays", [])}
                      for name, spec in CALENDARS.items()},
        "queries": [{"calendar": q.calendar, "start": q.start, "business_minutes": q.minutes}
                    for q in queries],
    }
    done = subprocess.run([str(ORACLE)], input=json.dumps(request), capture_output=True,
                          text=True, timeout=600, check=False,
                          env={**os.environ, "SLA_SYNC_RT_LIB": str(RT_LIB)})
    if done.returncode == 3:
        unavailable(done.stderr.strip(), hint="")  # the oracle's message says what to do
    assert done.returncode == 0, f"tools/rt-sla-oracle failed ({done.returncode}):\n{done.stderr}"
    answer = json.loads(done.stdout)
    assert len(answer["results"]) == len(queries)
    return answer


# -- queries --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    calendar: str
    start: int  # epoch seconds
    minutes: int


def built(name: str) -> WeeklyCalendar:
    cal, problems = check_calendar(name, CALENDARS[name])
    assert cal is not None, problems
    return cal


CALS = {name: built(name) for name in CALENDARS}


def instant(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def local(cal: WeeklyCalendar, epoch_or_none: int | None) -> str:
    if epoch_or_none is None:
        return "none"
    moment = instant(epoch_or_none).astimezone(cal.tz)
    return f"{moment:%a %Y-%m-%d %H:%M:%S %Z} (epoch {epoch_or_none})"


def interesting_days(name: str) -> list[date]:
    """The clock-change weekends (Friday to Tuesday) and the days around holidays."""
    spec = CALENDARS[name]
    days = [change + timedelta(days=offset) for change in CLOCK_CHANGES[spec["timezone"]]
            for offset in range(-2, 3)]
    for text in spec.get("holidays", []):
        if len(text) == 10 and text.startswith("2026"):
            day = date.fromisoformat(text)
            days += [day - timedelta(days=1), day, day + timedelta(days=1)]
    return days


def boundaries(cal: WeeklyCalendar, day: date) -> list[int]:
    """Opening and closing minutes of the weekday's intervals (any weekday's when it has
    none, to also start at 09:00 on a Saturday or a holiday)."""
    spans = cal.week[day.weekday()] or next(s for s in cal.week.values() if s)
    return [minute for span in spans for minute in span]


def generate(name: str, rng: random.Random) -> Iterator[Query]:
    cal = CALS[name]
    special = interesting_days(name)
    for _ in range(QUERIES_PER_CALENDAR):
        day = (rng.choice(special) if rng.random() < 0.4
               else date(2026, 1, 1) + timedelta(days=rng.randrange(365)))
        shape = rng.random()
        if shape < 0.6:  # at, just before or just after an opening or closing time
            minute = rng.choice(boundaries(cal, day))
            offset = rng.choice([0, 0, 0, -1, 1, -60, 60, -3600, 3600, -59, 61])
            seconds = minute * 60 + offset
        elif shape < 0.7:
            seconds = 0
        else:
            seconds = rng.randrange(86400)
        wall = datetime.combine(day, time()) + timedelta(seconds=seconds)
        start = epoch(wall.replace(tzinfo=cal.tz))
        size = rng.random()
        if size < 0.3:
            minutes = rng.randint(1, 120)
        elif size < 0.55:  # whole working days: lands at a closing time from an opening
            minutes = int(cal.working_day_seconds // 60) * rng.randint(1, 5)
        elif size < 0.75:  # exactly up to a closing time a few days on
            minutes = up_to_a_closing(cal, start, rng)
        else:
            minutes = rng.randint(1, 4000)
        yield Query(name, start, max(1, minutes))


def up_to_a_closing(cal: WeeklyCalendar, start: int, rng: random.Random) -> int:
    """Business minutes from start to the end of a working interval a few days later."""
    day = instant(start).astimezone(cal.tz).date() + timedelta(days=rng.randint(0, 6))
    for _ in range(14):
        ends = [hi for _, hi in cal.intervals(day) if hi > instant(start)]
        if ends:
            return int(cal.business_seconds(instant(start), rng.choice(ends)) // 60)
        day += timedelta(days=1)
    return 1


def pinned(name: str) -> Iterator[Query]:
    """Across every clock change, whatever the seed: from Friday afternoon, Saturday,
    02:30 on the Sunday (missing or repeated) and Monday's opening, over the change."""
    cal = CALS[name]
    for change in CLOCK_CHANGES[cal.timezone]:
        for day, wall, minutes in ((-2, "16:30", (30, 90, 600)), (-1, "00:00", (1, 300)),
                                   (0, "02:30", (1, 61, 480)), (1, "09:00", (480, 1))):
            moment = datetime.combine(change + timedelta(days=day), time.fromisoformat(wall))
            start = epoch(moment.replace(tzinfo=cal.tz))
            yield from (Query(name, start, n) for n in minutes)


def queries() -> list[Query]:
    rng = random.Random(SEED)
    return [query for name in CALENDARS
            for query in (*pinned(name), *generate(name, rng))]


# -- comparing ------------------------------------------------------------------------------

def first_open_at_or_after(cal: WeeklyCalendar, moment: datetime) -> datetime:
    if cal.is_open(moment):
        return moment
    day = moment.astimezone(cal.tz).date() - timedelta(days=1)
    for _ in range(60):
        for lo, _hi in cal.intervals(day):
            if lo >= moment:
                return lo
        day += timedelta(days=1)
    raise AssertionError(f"{cal.name}: no opening within 60 days of {moment}")


def expected_rt(cal: WeeklyCalendar, query: Query) -> int:
    """sla-sync's deadline, normalised to RT's convention (module docstring)."""
    ours = cal.add_business_seconds(instant(query.start), query.minutes * MINUTE)
    return epoch(first_open_at_or_after(cal, ours))


@dataclass(frozen=True)
class GapBoundary:
    """A working-interval boundary whose wall time does not exist (spring-forward gap).
    sla-sync reads it as the instant of the change (`ours`); Business::Hours, through
    Time::Local, as that wall time at the offset before the change (`rt`), which is later
    by the size of the jump."""

    ours: datetime
    rt: datetime
    opening: bool


def change_instant(tz: ZoneInfo, day: date) -> datetime:
    """The instant the UTC offset changes on this local day (bisection, to the second)."""
    lo = epoch(datetime.combine(day, time()).replace(tzinfo=tz))
    hi = lo + 86400
    before = instant(lo).astimezone(tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if instant(mid).astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return instant(hi)


def gap_boundaries(cal: WeeklyCalendar) -> list[GapBoundary]:
    found = []
    for change in CLOCK_CHANGES[cal.timezone]:
        for start, end in cal.week[change.weekday()]:
            for minute, opening in ((start, True), (end, False)):
                wall = datetime.combine(change, time()) + timedelta(minutes=minute)
                # fold=0 in a gap takes the offset before the change, as Time::Local does.
                rt = wall.replace(tzinfo=cal.tz).astimezone(UTC)
                if rt.astimezone(cal.tz).replace(tzinfo=None) != wall:
                    found.append(GapBoundary(change_instant(cal.tz, change), rt, opening))
    return found


GAPS = {name: gap_boundaries(cal) for name, cal in CALS.items()}


def touches_a_gap(query: Query, deadlines: list[int | None]) -> bool:
    last = max(d for d in deadlines if d is not None)
    return any(query.start < epoch(gap.rt) and epoch(gap.ours) <= last
               for gap in GAPS[query.calendar])


def business_seconds_in_rts_convention(query: Query, end: int) -> float:
    """Business time from the query's start to `end` with the boundaries inside the gap
    read as Business::Hours reads them: an opening an hour later (less time), a closing an
    hour later (more time)."""
    cal, start = CALS[query.calendar], instant(query.start)
    total = cal.business_seconds(start, instant(end))
    for gap in GAPS[query.calendar]:
        lo, hi = max(gap.ours, start), min(gap.rt, instant(end))
        if hi > lo:
            total += -(hi - lo).total_seconds() if gap.opening else (hi - lo).total_seconds()
    return total


def open_in_rts_convention(query: Query, moment: int) -> bool:
    cal = CALS[query.calendar]
    for gap in GAPS[query.calendar]:
        if gap.ours <= instant(moment) < gap.rt:
            return not gap.opening
    return cal.is_open(instant(moment))


def agrees_in_rts_convention(query: Query, rt: int | None) -> bool:
    """RT's deadline is the one instant at which the calendar is open and exactly the
    query's business time has passed since its start (both as RT reads the calendar)."""
    return (rt is not None and open_in_rts_convention(query, rt)
            and business_seconds_in_rts_convention(query, rt) == query.minutes * MINUTE)


def describe(query: Query, rt: int | None, ours: int, expected: int) -> str:
    cal = CALS[query.calendar]
    measured = ("-" if rt is None
                else f"{cal.business_seconds(instant(query.start), instant(rt)):.0f} s")
    return (f"{query.calendar} ({cal.timezone}): start {local(cal, query.start)}, "
            f"{query.minutes} business minutes\n"
            f"    RT:       {local(cal, rt)}\n"
            f"    sla-sync: {local(cal, ours)}"
            + (f", i.e. {local(cal, expected)} in RT's convention" if expected != ours else "")
            + f"\n    business time start->RT on our calendar: {measured} "
            f"(want {query.minutes * MINUTE} s)")


@pytest.fixture(scope="module")
def compared() -> list[tuple[Query, int | None, int, int]]:
    """(query, RT's deadline, ours, ours in RT's convention) for every query."""
    all_queries = queries()
    answer = ask_rt(all_queries)
    rows = []
    for query, result in zip(all_queries, answer["results"], strict=True):
        cal = CALS[query.calendar]
        ours = epoch(cal.add_business_seconds(instant(query.start), query.minutes * MINUTE))
        rows.append((query, result["deadline"], ours, expected_rt(cal, query)))
    return rows


def test_the_queries_cover_what_they_should(compared):
    all_queries = [row[0] for row in compared]
    assert len(all_queries) >= 400
    assert {q.calendar for q in all_queries} == set(CALENDARS)
    # Deadlines that sla-sync puts exactly at a closing time, where the conventions differ.
    assert sum(1 for _, _, ours, expected in compared if ours != expected) >= 50
    # Spans over the boundary inside the spring-forward gap, checked in RT's reading.
    assert sum(1 for q, rt, ours, _ in compared if touches_a_gap(q, [rt, ours])) >= 5
    # Starts on every clock-change weekend, in each of its calendars.
    for name, cal in CALS.items():
        for change in CLOCK_CHANGES[cal.timezone]:
            weekend = {change - timedelta(days=n) for n in range(3)}
            assert any(instant(q.start).astimezone(cal.tz).date() in weekend
                       for q in all_queries if q.calendar == name), (name, change)


def test_rt_and_sla_sync_agree_on_every_deadline(compared):
    mismatches = []
    for query, rt, ours, expected in compared:
        if touches_a_gap(query, [rt, ours, expected]):
            if not agrees_in_rts_convention(query, rt):
                mismatches.append(describe(query, rt, ours, expected)
                                  + "\n    (checked with the gap boundaries read as RT does)")
        elif rt != expected:
            mismatches.append(describe(query, rt, ours, expected))
    assert not mismatches, (f"{len(mismatches)} of {len(compared)} deadlines differ between "
                            "RT and sla-sync:\n" + "\n".join(mismatches))
