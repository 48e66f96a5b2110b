"""Business-hours calendars: worked examples exact to the second, and checking a spec."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from conftest import at
from sla_sync.rules.calendar import ALWAYS, BUILT_IN, WeeklyCalendar, check_calendar
from sla_sync.rules.durations import parse_target

HOUR, MINUTE = 3600, 60
BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"
NINE_TO_FIVE = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
ALL_DAY = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def calendar(timezone: str = BERLIN, week: dict[str, Any] | None = None,
             holidays: list[Any] | None = None) -> WeeklyCalendar:
    spec: dict[str, Any] = {"timezone": timezone, "week": NINE_TO_FIVE if week is None else week}
    if holidays is not None:
        spec["holidays"] = holidays
    cal, problems = check_calendar("test", spec)
    assert problems == []
    assert cal is not None
    return cal


def problems_of(spec: dict[str, Any]) -> list[tuple[str, str]]:
    cal, problems = check_calendar("test", spec)
    assert cal is None
    return problems


# -- clock changes ----------------------------------------------------------------------------

# (timezone, Friday before the change, Monday after it)
CHANGES = [(BERLIN, "2026-03-27", "2026-03-30"), (BERLIN, "2026-10-23", "2026-10-26"),
           (NEW_YORK, "2026-03-06", "2026-03-09"), (NEW_YORK, "2026-10-30", "2026-11-02")]


@pytest.mark.parametrize(("tz", "friday", "monday"), CHANGES)
def test_working_day_is_eight_hours_on_the_monday_after_a_clock_change(tz, friday, monday):
    cal = calendar(tz)
    assert cal.business_seconds(at(f"{monday} 00:00", tz), at(f"{monday} 23:59", tz)) == 8 * HOUR


@pytest.mark.parametrize(("tz", "friday", "monday"), CHANGES)
def test_business_time_across_the_weekend_of_a_clock_change(tz, friday, monday):
    cal = calendar(tz)
    assert cal.business_seconds(at(f"{friday} 16:00", tz), at(f"{monday} 10:00", tz)) == 2 * HOUR


@pytest.mark.parametrize(("tz", "friday", "monday"), CHANGES)
def test_adding_across_a_clock_change_lands_at_the_local_wall_time(tz, friday, monday):
    cal = calendar(tz)  # 1 hour on Friday, 2 on Monday
    assert cal.add_business_seconds(at(f"{friday} 16:00", tz), 3 * HOUR) \
        == at(f"{monday} 11:00", tz)


@pytest.mark.parametrize(("tz", "sunday", "hours"), [
    (BERLIN, "2026-03-29", 23), (BERLIN, "2026-10-25", 25),
    (NEW_YORK, "2026-03-08", 23), (NEW_YORK, "2026-11-01", 25)])
def test_all_day_calendar_counts_real_time_on_the_day_of_a_clock_change(tz, sunday, hours):
    cal = calendar(tz, ALL_DAY)
    day = date.fromisoformat(sunday)
    next_day = date.fromordinal(day.toordinal() + 1).isoformat()
    assert cal.business_seconds(at(f"{sunday} 00:00", tz), at(f"{next_day} 00:00", tz)) \
        == hours * HOUR
    assert cal.add_business_seconds(at(f"{sunday} 00:00", tz), hours * HOUR) \
        == at(f"{next_day} 00:00", tz)


def test_all_day_calendar_counts_the_short_day_in_the_middle_of_a_span():
    cal = calendar(BERLIN, ALL_DAY)
    assert cal.business_seconds(at("2026-03-28 00:00", BERLIN), at("2026-03-31 00:00", BERLIN)) \
        == (24 + 23 + 24) * HOUR


def test_interval_ending_inside_the_spring_forward_gap_counts_no_time_twice():
    # 01:00-02:30 and 03:00-04:00 on 29 March: 02:30 does not exist and is read as the change
    # (03:00 CEST), so the intervals cover 01:00 CET .. 04:00 CEST: 2 hours of real time.
    cal = calendar(BERLIN, {"sun": ["01:00-02:30", "03:00-04:00"]})
    start, end = at("2026-03-29 00:00", BERLIN), at("2026-03-30 00:00", BERLIN)
    assert cal.business_seconds(start, end) == 2 * HOUR


def test_interval_starting_inside_the_spring_forward_gap_is_empty_not_negative():
    # 02:30-03:00 on 29 March does not exist: 02:30 is read as the change, 03:00 CEST, so the
    # interval is empty.
    cal = calendar(BERLIN, {"sun": ["02:30-03:00", "05:00-06:00"]})
    start, noon, end = (at("2026-03-28 00:00", BERLIN), at("2026-03-29 12:00", BERLIN),
                        at("2026-03-31 00:00", BERLIN))
    assert cal.business_seconds(start, end) == HOUR
    assert cal.business_seconds(start, noon) + cal.business_seconds(noon, end) == HOUR
    assert cal.add_business_seconds(start, 30 * MINUTE) == at("2026-03-29 05:30", BERLIN)


# -- breaks, holidays, out of hours -------------------------------------------------------------

LUNCH = {"mon": ["09:00-12:30", "13:30-18:00"]}


def test_lunch_break_does_not_count():
    cal = calendar(BERLIN, LUNCH)
    assert cal.business_seconds(at("2026-03-02 12:00", BERLIN), at("2026-03-02 14:00", BERLIN)) \
        == HOUR


def test_adding_across_a_lunch_break_resumes_after_it():
    cal = calendar(BERLIN, LUNCH)
    assert cal.add_business_seconds(at("2026-03-02 12:00", BERLIN), 45 * MINUTE) \
        == at("2026-03-02 13:45", BERLIN)


# (holidays, Thursday before a Friday holiday, Monday after it)
FRIDAY_HOLIDAYS = [(["2026-04-03"], "2026-04-02", "2026-04-06"),  # Good Friday, one-off
                   ([{"country": "DE", "subdiv": "BE"}], "2026-04-30", "2026-05-04"),  # 1 May
                   (["12-25"], "2026-12-24", "2026-12-28")]


@pytest.mark.parametrize(("holidays", "thursday", "monday"), FRIDAY_HOLIDAYS)
def test_friday_holiday_has_no_working_time(holidays, thursday, monday):
    cal = calendar(BERLIN, holidays=holidays)
    assert cal.business_seconds(at(f"{thursday} 16:00", BERLIN), at(f"{monday} 10:00", BERLIN)) \
        == 2 * HOUR


@pytest.mark.parametrize(("holidays", "thursday", "monday"), FRIDAY_HOLIDAYS)
def test_adding_skips_a_friday_holiday_and_the_weekend(holidays, thursday, monday):
    cal = calendar(BERLIN, holidays=holidays)
    assert cal.add_business_seconds(at(f"{thursday} 16:00", BERLIN), 2 * HOUR) \
        == at(f"{monday} 10:00", BERLIN)


def test_yearly_holiday_applies_every_year():
    cal = calendar(BERLIN, holidays=["12-25"])
    assert [cal.is_holiday(date(y, 12, 25)) for y in (2026, 2027)] == [True, True]
    assert cal.is_holiday(date(2026, 12, 24)) is False


def test_public_holidays_come_from_country_and_subdivision():
    cal = calendar(BERLIN, holidays=[{"country": "DE", "subdiv": "BE"}])
    assert cal.is_holiday(date(2026, 4, 3)) is True  # Good Friday
    assert cal.is_holiday(date(2026, 3, 8)) is True  # Women's Day: Berlin only
    assert cal.is_holiday(date(2026, 4, 2)) is False
    assert calendar(BERLIN, holidays=[{"country": "DE", "subdiv": "BY"}]) \
        .is_holiday(date(2026, 3, 8)) is False


@pytest.mark.parametrize("created", ["2026-03-07 11:00", "2026-03-06 20:00"])
def test_ticket_created_out_of_hours_starts_counting_at_the_next_opening(created):
    cal = calendar(BERLIN)
    assert cal.business_seconds(at(created, BERLIN), at("2026-03-09 09:30", BERLIN)) == 30 * MINUTE
    assert cal.add_business_seconds(at(created, BERLIN), HOUR) == at("2026-03-09 10:00", BERLIN)


@pytest.mark.parametrize(("when", "open_"), [
    ("2026-03-02 09:00:00", True), ("2026-03-02 12:29:59", True), ("2026-03-02 12:30:00", False),
    ("2026-03-02 13:00:00", False), ("2026-03-02 13:30:00", True), ("2026-03-02 18:00:00", False),
    ("2026-03-03 10:00:00", False)])  # Tuesday: no hours
def test_is_open_on_half_open_intervals(when, open_):
    assert calendar(BERLIN, LUNCH).is_open(at(when, BERLIN)) is open_


def test_is_open_is_false_all_day_on_a_holiday():
    cal = calendar(BERLIN, holidays=["2026-04-03"])
    assert cal.is_open(at("2026-04-03 10:00", BERLIN)) is False
    assert cal.is_open(at("2026-04-02 10:00", BERLIN)) is True


def test_deadline_reached_exactly_at_closing_is_due_at_closing():
    cal = calendar(BERLIN)
    assert cal.add_business_seconds(at("2026-03-02 15:30", BERLIN), 90 * MINUTE) \
        == at("2026-03-02 17:00", BERLIN)
    assert cal.add_business_seconds(at("2026-03-02 09:00", BERLIN), 8 * HOUR) \
        == at("2026-03-02 17:00", BERLIN)


def test_adding_zero_returns_the_start_even_out_of_hours():
    assert calendar().add_business_seconds(at("2026-03-07 11:00", BERLIN), 0) \
        == at("2026-03-07 11:00", BERLIN)


def test_business_time_is_zero_when_end_is_not_after_start():
    cal = calendar()
    assert cal.business_seconds(at("2026-03-02 12:00", BERLIN), at("2026-03-02 10:00", BERLIN)) == 0
    assert cal.business_seconds(at("2026-03-02 12:00", BERLIN), at("2026-03-02 12:00", BERLIN)) == 0


# -- intervals and business days ----------------------------------------------------------------

def test_interval_ending_at_24_00_runs_to_midnight():
    cal = calendar(BERLIN, {"sat": ["22:00-24:00"], "sun": ["00:00-01:00"]})
    assert cal.business_seconds(at("2026-03-07 23:00", BERLIN), at("2026-03-08 00:30", BERLIN)) \
        == 90 * MINUTE
    assert cal.add_business_seconds(at("2026-03-07 22:30", BERLIN), 90 * MINUTE) \
        == at("2026-03-08 00:00", BERLIN)
    assert cal.is_open(at("2026-03-07 23:59:59", BERLIN)) is True
    assert cal.is_open(at("2026-03-08 01:00", BERLIN)) is False


def test_adjacent_intervals_are_joined():
    cal = calendar(BERLIN, {"mon": ["09:00-12:00", "12:00-17:00"]})
    assert cal.week[0] == ((9 * 60, 17 * 60),)
    assert cal.is_open(at("2026-03-02 12:00", BERLIN)) is True


def test_working_day_is_the_average_of_days_with_hours():
    assert calendar().working_day_seconds == 8 * HOUR
    assert calendar(BERLIN, {"mon": ["09:00-12:30", "13:30-18:00"], "fri": ["09:00-13:00"]}) \
        .working_day_seconds == 6 * HOUR


def test_one_business_day_from_monday_16_00_is_due_tuesday_16_00():
    cal = calendar()
    assert parse_target("1bd").seconds_on(cal) == 8 * HOUR
    assert cal.add_business_seconds(at("2026-03-02 16:00", BERLIN),
                                    parse_target("1bd").seconds_on(cal)) \
        == at("2026-03-03 16:00", BERLIN)


def test_one_day_is_24_business_hours_and_due_thursday_16_00():
    cal = calendar()
    assert parse_target("1d").seconds_on(cal) == 24 * HOUR
    assert cal.add_business_seconds(at("2026-03-02 16:00", BERLIN),
                                    parse_target("1d").seconds_on(cal)) \
        == at("2026-03-05 16:00", BERLIN)


def test_business_day_on_24x7_is_24_hours():
    assert parse_target("1bd").seconds_on(BUILT_IN[ALWAYS]) == 24 * HOUR


# -- cost grows with days, not minutes ----------------------------------------------------------

def test_business_time_over_a_year_computes_each_day_once():
    cal = calendar()
    start, end = at("2026-01-01 00:00", BERLIN), at("2027-01-01 00:00", BERLIN)
    assert cal.business_seconds(start, end) == 261 * 8 * HOUR  # 2026 has 261 weekdays
    assert len(cal._days) <= 366
    assert cal.business_seconds(start, end) == 261 * 8 * HOUR
    assert len(cal._days) <= 366  # the second call is served from the cache


def test_adding_a_year_of_business_time_computes_each_day_once():
    cal = calendar()
    assert cal.add_business_seconds(at("2026-01-01 00:00", BERLIN), 261 * 8 * HOUR) \
        == at("2026-12-31 17:00", BERLIN)
    assert len(cal._days) <= 366


# -- checking a spec ----------------------------------------------------------------------------

NOT_A_DATE = ("is not a date: write \"YYYY-MM-DD\" (once), \"MM-DD\" (every year) or "
              "{\"country\": \"DE\", \"subdiv\": \"BE\"}")


def test_unknown_timezone_suggests_the_nearest():
    assert problems_of({"timezone": "Europe/Berln", "week": NINE_TO_FIVE}) == [
        (".timezone", "unknown timezone 'Europe/Berln' (did you mean 'Europe/Berlin'?)")]


@pytest.mark.parametrize(("spans", "expected"), [
    (["18:00-09:00"], [(".week.mon[0]", "'18:00-09:00' ends before it starts; an interval "
                        "cannot cross midnight: split it into '..-24:00' and '00:00-..' on "
                        "the next day")]),
    (["9:00-17:00"], [(".week.mon[0]", "'9:00-17:00' is not an interval like \"09:00-17:00\"")]),
    (["25:00-26:00"], [(".week.mon[0]", "'25:00-26:00': not a time of day (00:00 to 24:00)")]),
    (["09:00-12:00", "11:00-13:00"], [(".week.mon[1]", "overlaps calendars.test.week.mon[0]")]),
    (["09:00-17:00", "10:00-11:00", "12:00-13:00"], [
        (".week.mon[1]", "overlaps calendars.test.week.mon[0]"),
        (".week.mon[2]", "overlaps calendars.test.week.mon[0]")]),
])
def test_bad_interval_is_reported_at_its_index(spans, expected):
    assert problems_of({"timezone": BERLIN, "week": {"mon": spans}}) == expected


def test_unknown_weekday_suggests_the_nearest():
    assert problems_of({"timezone": BERLIN, "week": {"thur": ["09:00-17:00"]}}) == [
        (".week.thur", "unknown weekday (use mon, tue, wed, thu, fri, sat, sun); "
                       "did you mean 'thu'?")]


@pytest.mark.parametrize("week", [{}, {"mon": []}])
def test_week_without_working_time_is_rejected(week):
    assert problems_of({"timezone": BERLIN, "week": week}) == [
        (".week", "no working time on any day")]


def test_holiday_that_is_not_a_date_is_rejected():
    assert problems_of({"timezone": BERLIN, "week": NINE_TO_FIVE,
                        "holidays": ["2026-02-30", "13-01", 42, "02-29"]}) == [
        (".holidays[0]", f"'2026-02-30' {NOT_A_DATE}"),
        (".holidays[1]", f"'13-01' {NOT_A_DATE}"),
        (".holidays[2]", f"42 {NOT_A_DATE}")]


def test_unknown_country_and_subdivision_are_rejected():
    assert problems_of({"timezone": BERLIN, "week": NINE_TO_FIVE, "holidays": [
        {"country": "XX"}, {"country": "DE", "subdiv": "XX"}]}) == [
        (".holidays[0].country", "Country XX not available"),
        (".holidays[1].subdiv", "Entity `DE` does not have subdivision XX")]


def test_unknown_keys_are_rejected_with_a_suggestion():
    assert problems_of({"timezone": BERLIN, "week": NINE_TO_FIVE, "holiday": [],
                        "holidays": [{"country": "DE", "region": "BE"}]}) == [
        (".holiday", "unknown key (did you mean 'holidays'?)"),
        (".holidays[0].region", "unknown key (known: country, subdiv)")]


def test_timezone_naming_a_region_not_a_zone_is_a_problem_not_a_crash():
    problems = problems_of({"timezone": "Europe", "week": NINE_TO_FIVE})
    assert [path for path, _ in problems] == [".timezone"]
    assert problems[0][1].startswith("unknown timezone 'Europe'")
