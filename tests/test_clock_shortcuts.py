"""The evaluation's shortcuts answer as the plain computation does.

On generated records (the bench's desk mix: tiers, pauses, reopenings, three business-hours
calendars with public holidays) under the bench's policy and under one that sets every
target, at instants on and off working hours:

- the clocks of targets that did not run are built only when asked for (rules.engine
  Clocks), and then are exactly the clock of a target that is not set, from the record's
  start; every target is there, in ALL_TARGETS order;
- the clock facts (copied for idle clocks, worked out inline for the others) are exactly
  what Clock's properties say, in the same order;
- the periods worked out in one pass over the status timeline are those of the timeline
  up to `now`.

And a weekly calendar's business time from running totals (rules.calendar's _Flat) is
the walk over the days, bit for bit, on random calendars, zones and spans, and where a
clock goes back across midnight.
"""

from __future__ import annotations

import copy
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import bench_script
from sla_sync.connector.model import Record
from sla_sync.rules.calendar import WeeklyCalendar
from sla_sync.rules.clock import (
    ALL_TARGETS,
    Clock,
    no_target,
    periods_of,
    periods_until,
    timeline_until,
)
from sla_sync.rules.engine import Clocks, clock_facts, evaluate
from sla_sync.rules.policy import Policy, check_policy
from test_calendar_properties import TIMEZONES, day_intervals, instants

NOW = datetime.fromisoformat("2026-03-02T12:00:00+00:00")
INSTANTS = (NOW, NOW - timedelta(days=3, hours=5, minutes=7, seconds=11),
            NOW + timedelta(days=2, hours=9, microseconds=250_001))


def bench_policy() -> dict[str, Any]:
    return bench_script("bench_desk").bench_policy()  # type: ignore[no-any-return]


def every_target_policy() -> dict[str, Any]:
    """The bench's policy with every target set on two SLAs (one with its own start, pause
    and stop conditions), and a rule reading a target no SLA sets."""
    policy = copy.deepcopy(bench_policy())
    more = {"next_response": "2h", "periodic_update": "1bd", "agent_work_time": "6h",
            "requester_wait_time": "1d", "time_to_own": "30m"}
    for sla in policy["slas"]:
        if sla["name"] in ("vip", "gold"):
            sla["targets"].update(more)
        if sla["name"] == "gold":
            sla["clocks"] = {"resolution": {
                "start_when": {"name": "status", "operator": "not_equal_to", "value": "new"},
                "pause_when": {"name": "group", "operator": "equal_to", "value": "tier2"}}}
    policy["rules"].append({
        "name": "reads-an-unset-target",
        "conditions": {"name": "pausable_update_business_minutes_elapsed",
                       "operator": "greater_than", "value": 5},
        "actions": [{"name": "add_tag", "params": {"tag": "seen"}}]})
    return policy


@pytest.fixture(scope="module")
def records() -> list[Record]:
    generate = bench_script("bench_desk").generate
    return [Record.from_dict(r) for r in generate(scale=2, seed=11)["records"]]


def property_facts(clocks: dict[str, Clock]) -> dict[str, Any]:
    """The clock variables as Clock's properties give them."""
    facts: dict[str, Any] = {}
    for target, clock in clocks.items():
        facts.update({
            f"{target}_minutes_left": clock.minutes_left,
            f"{target}_elapsed_pct": clock.elapsed_pct, f"{target}_breached": clock.breached,
            f"{target}_met": clock.met, f"{target}_paused": clock.paused,
            f"{target}_business_minutes_elapsed": clock.elapsed_seconds / 60,
            f"{target}_due_at_epoch": clock.due_at.timestamp() if clock.due_at else 0})
    return facts


@pytest.mark.parametrize("make", [bench_policy, every_target_policy])
def test_idle_clocks_and_clock_facts_are_what_the_plain_computation_gives(
        records: list[Record], make: Any) -> None:
    policy: Policy = check_policy(make(), "shortcuts")
    ran = idle = 0
    for now in INSTANTS:
        for record in records:
            evaluation = evaluate(record, policy, now)
            clocks = evaluation.clocks
            assert isinstance(clocks, Clocks)
            assert list(clocks) == list(ALL_TARGETS) and len(clocks) == len(ALL_TARGETS)
            plain = {target: clocks[target] for target in ALL_TARGETS}
            start = plain["first_response"].started_at  # it has no start_when here
            for target, clock in plain.items():
                if target in clocks.ran:
                    ran += 1
                    continue
                idle += 1
                assert clock == no_target(target, evaluation.calendar, start)
            expected = property_facts(plain)
            facts = {k: v for k, v in evaluation.facts.items() if k in expected}
            assert list(facts.items()) == list(expected.items())
            assert list(clock_facts(plain).items()) == list(expected.items())
            assert dict(clocks) == plain and clocks == plain
    assert ran and idle


def test_periods_in_one_pass_are_the_periods_of_the_timeline(records: list[Record]) -> None:
    """periods_until (rules.engine's path without gates) gives periods_of's periods of
    timeline_until: the same tuples, of the same type, for any pause statuses."""
    closed = ("solved", "closed")
    seen = 0
    for now in (*INSTANTS, datetime(2026, 2, 20, tzinfo=UTC)):
        for record in records:
            for pauses in (frozenset(), frozenset({"pending", "hold"}), frozenset({"open"})):
                plain = periods_of(timeline_until(record, now), pauses, closed)
                fast = periods_until(record.status_timeline(), now, pauses, closed)
                assert fast == plain and [type(p) for p in fast] == [type(p) for p in plain]
                seen += len(fast) < len(record.status_timeline())
    assert seen  # some records had statuses after `now`


# -- business time through running totals ------------------------------------------------

#: Zones whose clocks change at midnight (Santiago, Havana, Asuncion, Beirut), by half an
#: hour (Lord Howe), or off the hour (Chatham), besides the properties' own.
ZONES = (*TIMEZONES, "America/Santiago", "America/Havana", "America/Asuncion", "Asia/Beirut")


@st.composite
def calendars(draw: Any) -> WeeklyCalendar:
    timezone = draw(st.sampled_from(ZONES))
    week = {day: draw(day_intervals(timezone)) for day in range(7)}
    if not any(week.values()):
        week[draw(st.integers(0, 6))] = [(0, 24 * 60)]
    one_off = draw(st.lists(st.dates(date(2025, 1, 1), date(2028, 12, 31)), max_size=4))
    return WeeklyCalendar("random", timezone, week, one_off, [(12, 25)])


#: Instants in any offset, to the microsecond, near a clock change or anywhere in 2025-2028.
moments = st.builds(lambda instant, micro, zone: (instant + timedelta(microseconds=micro))
                    .astimezone(ZoneInfo(zone)), instants, st.integers(-999_999, 999_999),
                    st.sampled_from(ZONES))


MICROS_A_DAY = 86_400_000_000
#: Spans around one instant: (start, length) in microseconds from it; starts up to 70 days
#: either side (past the window's first bounds and margin), lengths up to ten days.
spans_around = st.lists(st.tuples(
    st.builds(lambda days, micros: days * MICROS_A_DAY + micros, st.integers(-70, 70),
              st.integers(0, MICROS_A_DAY)),
    st.builds(lambda days, micros: days * MICROS_A_DAY + micros, st.integers(-1, 9),
              st.integers(0, MICROS_A_DAY)),
    st.sampled_from(ZONES)), min_size=1, max_size=16)


@given(calendars(), moments, spans_around)
@settings(max_examples=300, deadline=None)
@example(WeeklyCalendar("x", "Europe/Berlin", {0: [(8 * 60, 18 * 60)]}),
         datetime(2025, 1, 1, tzinfo=UTC), [(0, 1400 * MICROS_A_DAY, "UTC"),
                                            (-600 * MICROS_A_DAY, MICROS_A_DAY, "UTC")])
def test_running_totals_give_what_the_walk_over_the_days_gives(
        cal: WeeklyCalendar, base: datetime, spans: list[tuple[int, int, str]]) -> None:
    """One calendar asked many spans near each other and far apart (its window of running
    totals grows, or a span it cannot take in is walked): every answer is the walk's, to
    the last bit."""
    for offset, length, zone in spans:
        start = (base + timedelta(microseconds=offset)).astimezone(ZoneInfo(zone))
        end = start + timedelta(microseconds=length)
        expected = cal._business_seconds(start, end) if end > start else 0.0
        assert cal.business_seconds(start, end) == expected, (start, end)


def st_johns_2010() -> WeeklyCalendar:
    """Half-hour intervals either side of midnight where clocks went back across it."""
    return WeeklyCalendar("x", "America/St_Johns", {d: [(0, 30), (22 * 60, 24 * 60)]
                                                    for d in range(7)})


def spread_calendar(zone: str) -> WeeklyCalendar:
    """Intervals of many shapes (a lunch break, a whole day, late evening, early morning),
    a one-off and a yearly holiday."""
    return WeeklyCalendar("x", zone, {0: [(8 * 60, 12 * 60 + 30), (13 * 60, 18 * 60)],
                                      2: [(0, 24 * 60)], 4: [(22 * 60, 24 * 60)],
                                      5: [(0, 90)]}, [date(2026, 3, 17)], [(12, 25)])


def test_a_clock_going_back_across_midnight_is_walked_day_by_day() -> None:
    """St. John's went back from 00:01 to 23:01 of the day before until 2011: there a local
    date's intervals are not all within its own stretch of time, the running totals would
    count some twice (24 of 3,000 random spans here without the check), so the calendar
    is walked."""
    cal = st_johns_2010()
    rng = random.Random(1)
    base = datetime(2010, 11, 1, tzinfo=UTC)
    for _ in range(3000):
        start = base + timedelta(seconds=rng.randrange(14 * 86400))
        end = start + timedelta(seconds=rng.randrange(3 * 86400))
        assert cal.business_seconds(start, end) == (
            cal._business_seconds(start, end) if end > start else 0.0)
    assert cal._flat.broken


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                                  "America/Santiago", "Asia/Singapore"])
def test_running_totals_on_many_spans_near_each_other(zone: str) -> None:
    """Seeded spans of up to ten days that start within 90 days of each other, at any
    microsecond, in several offsets: the window's edges and its growth are crossed often."""
    cal = spread_calendar(zone)
    rng = random.Random(zone)
    base = datetime(2026, 3, 2, 12, tzinfo=UTC)
    zones = [ZoneInfo(name) for name in ZONES]
    for _ in range(4000):
        start = (base + timedelta(microseconds=rng.randrange(-90 * MICROS_A_DAY,
                                                             90 * MICROS_A_DAY)))
        end = start + timedelta(microseconds=rng.randrange(-MICROS_A_DAY, 10 * MICROS_A_DAY))
        start, end = start.astimezone(rng.choice(zones)), end.astimezone(rng.choice(zones))
        assert cal.business_seconds(start, end) == (
            cal._business_seconds(start, end) if end > start else 0.0), (start, end)


def assert_added_as_walked(cal: WeeklyCalendar, start: datetime, seconds: float) -> bool:
    """add_business_seconds (from the running totals where it can) is the walk's instant,
    in the same offset (start's own, when the answer lies in start's interval); whether
    the running totals answered. A calendar with less working time in MAX_DAYS than asked
    (one minute a week, say) has no answer: both say so."""
    remaining = timedelta(seconds=seconds)
    try:
        found = cal.add_business_seconds(start, seconds)
    except ValueError as exc:
        assert "no working time within" in str(exc), exc
        with pytest.raises(ValueError, match="no working time within"):
            cal._walked_add(start, remaining)
        return False
    walked = cal._walked_add(start, remaining) if remaining > timedelta() else start
    assert found == walked and found.utcoffset() == walked.utcoffset(), (start, seconds)
    return remaining > timedelta() and \
        cal._flat.add(cal, start, remaining // timedelta(microseconds=1)) is not None


#: Working time to add, in seconds (fractions of a microsecond too): none, a little, up to
#: ten working days.
amounts = st.one_of(st.just(0.0), st.floats(-10.0, 0.0),
                    st.floats(1e-7, 10 * 86_400.0, allow_nan=False),
                    st.integers(1, 10 * 86_400).map(float))


@given(calendars(), moments, st.lists(st.tuples(
    st.builds(lambda days, micros: days * MICROS_A_DAY + micros, st.integers(-70, 70),
              st.integers(0, MICROS_A_DAY)), amounts, st.sampled_from(ZONES)),
    min_size=1, max_size=16))
@settings(max_examples=300, deadline=None)
@example(WeeklyCalendar("x", "Europe/Berlin", {0: [(8 * 60, 18 * 60)]}),
         datetime(2025, 1, 1, tzinfo=UTC), [(0, 4000 * 3600.0, "UTC"),
                                            (-600 * MICROS_A_DAY, 3600.0, "UTC")])
# One minute a week: 522 minutes need more than MAX_DAYS (found by hypothesis).
@example(WeeklyCalendar("x", "Europe/Berlin", {6: [(0, 1)]}),
         datetime(2025, 3, 9, 12, 33, 45, 1, tzinfo=UTC), [(0, 31321.0, "Europe/Berlin")])
def test_adding_from_running_totals_gives_what_the_walk_over_the_days_gives(
        cal: WeeklyCalendar, base: datetime, adds: list[tuple[int, float, str]]) -> None:
    """One calendar asked to add working time from instants near each other and far apart
    (its window grows, by no more than the walk goes, or a span it cannot take in is
    walked): every answer is the walk's, to the microsecond and in the same offset."""
    for offset, seconds, zone in adds:
        start = (base + timedelta(microseconds=offset)).astimezone(ZoneInfo(zone))
        assert_added_as_walked(cal, start, seconds)


def test_adding_where_a_clock_goes_back_across_midnight_is_walked_day_by_day() -> None:
    """The St. John's calendar of the test above: adding is walked there too."""
    cal = st_johns_2010()
    rng = random.Random(2)
    base = datetime(2010, 11, 1, tzinfo=UTC)
    for _ in range(2000):
        start = base + timedelta(seconds=rng.randrange(14 * 86400))
        assert_added_as_walked(cal, start, rng.randrange(1, 2 * 86400) + rng.random())
    assert cal._flat.broken


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                                  "America/Santiago", "Asia/Singapore"])
def test_adding_from_many_instants_near_each_other(zone: str) -> None:
    """Seeded additions of up to five working days from instants within 90 days of each
    other, at any microsecond, in several offsets, exact ends of intervals included."""
    cal = spread_calendar(zone)
    rng = random.Random(zone)
    base = datetime(2026, 3, 2, 12, tzinfo=UTC)
    zones = [ZoneInfo(name) for name in ZONES]
    answered = 0
    for n in range(4000):
        start = (base + timedelta(microseconds=rng.randrange(-90 * MICROS_A_DAY,
                                                             90 * MICROS_A_DAY)))
        seconds = rng.choice([rng.randrange(1, 5 * 86_400), rng.random() * 5 * 86_400,
                              4.5 * 3600, 30 * 60.0])  # to 12:30 from 08:00; 08:00-08:30
        if n % 7 == 0:  # at an interval's start or end exactly
            day = cal.intervals((base + timedelta(days=rng.randrange(-90, 90))).date())
            if day:
                start = rng.choice(rng.choice(day))
        answered += assert_added_as_walked(cal, start.astimezone(rng.choice(zones)), seconds)
    assert answered == 4000  # a window of about 190 dates: the running totals answer all
