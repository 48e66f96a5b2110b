"""Properties of business-time arithmetic over random weekly calendars, timezones and instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sla_sync.rules.calendar import TwentyFourSeven, WeeklyCalendar

SETTINGS = settings(max_examples=200, deadline=None)
SECOND = timedelta(seconds=1)
TIMEZONES = ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe",
             "America/St_Johns", "UTC", "Pacific/Chatham")


@st.composite
def day_intervals(draw, timezone: str) -> list[tuple[int, int]]:
    """0-3 non-overlapping (start, end) minutes from sorted distinct boundaries in 0..1440
    (boundaries inside a spring-forward gap included)."""
    bounds = sorted(draw(st.sets(st.integers(0, 1440), max_size=6)))
    return list(zip(bounds[0::2], bounds[1::2], strict=False))


@st.composite
def weekly_calendars(draw) -> WeeklyCalendar:
    timezone = draw(st.sampled_from(TIMEZONES))
    week = {day: draw(day_intervals(timezone)) for day in range(7)}
    if not any(week.values()):
        week[draw(st.integers(0, 6))] = [(9 * 60, 17 * 60)]
    one_off = draw(st.lists(st.dates(date(2025, 1, 1), date(2028, 12, 31)), max_size=4))
    yearly = draw(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 28)), max_size=3))
    return WeeklyCalendar("random", timezone, week, one_off, yearly)


def weekly_minutes(cal: WeeklyCalendar) -> int:
    return sum(end - start for spans in cal.week.values() for start, end in spans)


def clock_changes() -> list[datetime]:
    """Noon UTC on each day some zone in TIMEZONES changes its offset, 2025-2028."""
    days = [datetime(2025, 1, 1, 12, tzinfo=UTC) + timedelta(days=n) for n in range(4 * 366)]
    zones = [ZoneInfo(name) for name in TIMEZONES]
    return sorted({day for day in days for zone in zones
                   if day.astimezone(zone).utcoffset() != (day - timedelta(days=1))
                   .astimezone(zone).utcoffset()})


# Whole seconds, uniform over 2025-2028 or within three days of a clock change.
instants = st.one_of(
    st.datetimes(datetime(2025, 1, 1), datetime(2028, 12, 31), timezones=st.just(UTC))
    .map(lambda moment: moment.replace(microsecond=0)),
    st.builds(lambda change, offset: change + timedelta(seconds=offset),
              st.sampled_from(clock_changes()), st.integers(-3 * 86400, 3 * 86400)))
minutes = st.integers(0, 20_000)


def local_midnight(cal: WeeklyCalendar, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(cal.timezone)).astimezone(UTC)


# -- weekly calendars ---------------------------------------------------------------------------

@SETTINGS
@given(weekly_calendars(), instants, minutes)
def test_measuring_what_was_added_gives_it_back_exactly(cal, start, n):
    n = min(n, 100 * weekly_minutes(cal))  # stay well inside the MAX_DAYS search window
    assert cal.business_seconds(start, cal.add_business_seconds(start, n * 60)) == n * 60


@SETTINGS
@given(weekly_calendars(), instants, minutes)
def test_added_deadline_is_never_before_the_start_and_ends_in_working_time(cal, start, n):
    n = min(n, 100 * weekly_minutes(cal))
    due = cal.add_business_seconds(start, n * 60)
    assert due >= start
    if n > 0:
        assert cal.is_open(due - SECOND)


@SETTINGS
@given(weekly_calendars(), instants, instants, instants)
def test_business_time_is_additive_across_any_split_point(cal, x, y, z):
    a, m, b = sorted((x, y, z))
    assert cal.business_seconds(a, b) == cal.business_seconds(a, m) + cal.business_seconds(m, b)


@SETTINGS
@given(weekly_calendars(), instants, instants)
def test_business_time_lies_between_zero_and_elapsed_time(cal, a, b):
    measured = cal.business_seconds(a, b)
    assert 0 <= measured <= max(0.0, (b - a).total_seconds())
    if b <= a:
        assert measured == 0


@SETTINGS
@given(weekly_calendars(), instants)
def test_is_open_agrees_with_business_time_over_the_next_second(cal, instant):
    assert cal.is_open(instant) == (cal.business_seconds(instant, instant + SECOND) == 1)


@SETTINGS
@given(st.sampled_from(TIMEZONES).flatmap(
           lambda tz: st.tuples(st.just(tz), day_intervals(tz).filter(bool))),
       st.dates(date(2025, 1, 1), date(2028, 12, 24)))
def test_no_business_time_across_closed_days_and_holidays(zone_and_monday, day):
    # Only Monday has hours; the Monday after the measured week is a holiday.
    timezone, monday = zone_and_monday
    tuesday = day + timedelta(days=(1 - day.weekday()) % 7)
    cal = WeeklyCalendar("mondays", timezone, {0: monday}, [tuesday + timedelta(days=6)])
    start = local_midnight(cal, tuesday)
    assert cal.business_seconds(start, local_midnight(cal, tuesday + timedelta(days=5))
                                + timedelta(hours=23, minutes=59)) == 0
    assert cal.business_seconds(start, local_midnight(cal, tuesday + timedelta(days=7))) == 0


# -- 24x7 ---------------------------------------------------------------------------------------

@SETTINGS
@given(instants, instants, instants, minutes)
def test_24x7_counts_every_second(x, y, z, n):
    cal = TwentyFourSeven()
    a, m, b = sorted((x, y, z))
    due = cal.add_business_seconds(a, n * 60)
    assert cal.business_seconds(a, due) == n * 60 == (due - a).total_seconds()
    assert cal.business_seconds(a, b) == cal.business_seconds(a, m) + cal.business_seconds(m, b)
    assert cal.business_seconds(a, b) == (b - a).total_seconds()
    assert cal.business_seconds(b, a) == 0
    assert cal.is_open(due - SECOND)


# -- clock-change gaps ------------------------------------------------------------------------

@SETTINGS
# Sun 29 March 2026, 01:00-02:30 and 03:00-04:00 Berlin: 01:00 CET to 04:00 CEST is 2 hours.
@example(cal=WeeklyCalendar("gap", "Europe/Berlin", {6: [(60, 150), (180, 240)]}),
         a=datetime(2026, 3, 29, 0, tzinfo=UTC), b=datetime(2026, 3, 29, 2, tzinfo=UTC))
@given(cal=weekly_calendars(), a=instants, b=instants)
def test_business_time_never_exceeds_elapsed_time_even_with_ends_in_a_clock_gap(cal, a, b):
    assert 0 <= cal.business_seconds(a, b) <= max(0.0, (b - a).total_seconds())
