"""Policy checks of calendars, calendar_by, on_target_change and business-day targets: every
problem named by its full JSON path."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import iso, record_dict, write_project
from sla_sync.rules.calendar import WeeklyCalendar
from sla_sync.rules.durations import Target
from sla_sync.rules.policy import PolicyError, check_policy
from sla_sync.sync import main

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
OFFICE = {"timezone": "Europe/Berlin", "week": {day: ["09:00-17:00"] for day in WEEKDAYS},
          "holidays": []}
NEWYORK = {"timezone": "America/New_York", "week": {day: ["09:00-17:00"] for day in WEEKDAYS}}
ON_BERLIN = {"name": "standard", "calendar": "berlin", "targets": {"resolution": "8h"}}
NOT_A_DATE = ('is not a date: write "YYYY-MM-DD" (once), "MM-DD" (every year) or '
              '{"country": "DE", "subdiv": "BE"}')


def calendar(**changes: Any) -> dict[str, Any]:
    return {**OFFICE, **changes}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyError) as info:
        check_policy(data, "p")
    return [str(problem) for problem in info.value.problems]


def calendar_problems(**changes: Any) -> list[str]:
    return problems({"calendars": {"berlin": calendar(**changes)}, "slas": [ON_BERLIN]})


def sla_problems(sla: dict[str, Any]) -> list[str]:
    return problems({"calendars": {"berlin": OFFICE}, "slas": [sla]})


# -- the calendar itself ------------------------------------------------------------------------

def test_a_valid_calendar_is_built_and_used_by_its_sla():
    policy = check_policy({"calendars": {"berlin": OFFICE}, "slas": [ON_BERLIN]}, "p")
    chosen = policy.slas[0].calendar.default
    assert isinstance(chosen, WeeklyCalendar)
    assert (chosen.name, chosen.timezone, chosen.working_day_seconds) == (
        "berlin", "Europe/Berlin", 28800.0)


def test_unknown_timezone_suggests_the_closest_one():
    assert calendar_problems(timezone="Europe/Berln") == [
        "calendars.berlin.timezone: unknown timezone 'Europe/Berln' "
        "(did you mean 'Europe/Berlin'?)"]


def test_an_interval_that_ends_before_it_starts_is_refused():
    assert calendar_problems(week={"mon": ["18:00-09:00"]}) == [
        "calendars.berlin.week.mon[0]: '18:00-09:00' ends before it starts; an interval cannot "
        "cross midnight: split it into '..-24:00' and '00:00-..' on the next day"]


def test_overlapping_intervals_name_the_later_one():
    assert calendar_problems(week={"mon": ["12:00-17:00", "09:00-13:00"]}) == [
        "calendars.berlin.week.mon[0]: overlaps calendars.berlin.week.mon[1]"]


def test_every_overlapping_interval_is_reported():
    assert calendar_problems(week={"mon": ["09:00-17:00", "10:00-11:00", "12:00-13:00"]}) == [
        "calendars.berlin.week.mon[1]: overlaps calendars.berlin.week.mon[0]",
        "calendars.berlin.week.mon[2]: overlaps calendars.berlin.week.mon[0]"]


@pytest.mark.parametrize("week", [{}, {"mon": [], "sat": []}])
def test_a_week_without_working_time_is_refused(week: dict[str, Any]):
    assert calendar_problems(week=week) == ["calendars.berlin.week: no working time on any day"]


def test_each_bad_holiday_is_named_by_its_index():
    found = calendar_problems(holidays=["2026-12-24", "2026-02-30", {"country": "XX"}, "12-25",
                                        "Christmas"])
    assert found[0] == f"calendars.berlin.holidays[1]: '2026-02-30' {NOT_A_DATE}"
    assert found[1].startswith("calendars.berlin.holidays[2].country: ") and "XX" in found[1]
    assert found[2] == f"calendars.berlin.holidays[4]: 'Christmas' {NOT_A_DATE}"
    assert len(found) == 3


def test_the_built_in_24x7_cannot_be_redefined():
    assert problems({"calendars": {"24x7": OFFICE}, "slas": [ON_BERLIN | {"calendar": "24x7"}]}) \
        == ["calendars.24x7: '24x7' is built in and cannot be redefined"]


# -- SLAs naming calendars ----------------------------------------------------------------------

def test_an_sla_naming_an_unknown_calendar_lists_the_defined_ones():
    assert sla_problems(ON_BERLIN | {"calendar": "berln"}) == [
        "slas[0].calendar: unknown calendar 'berln' (did you mean 'berlin'?) "
        "(defined: 24x7, berlin)"]


def test_an_sla_naming_a_broken_calendar_gets_only_the_calendars_own_problem():
    assert calendar_problems(timezone="Nowhere/Special") == [
        "calendars.berlin.timezone: unknown timezone 'Nowhere/Special'"]


def test_a_calendar_name_that_is_not_a_string_is_a_problem_not_a_crash():
    found = sla_problems(ON_BERLIN | {"calendar": ["berlin"]})
    assert [line.split(": ")[0] for line in found] == ["slas[0].calendar"]


def test_calendar_and_calendar_by_together_are_refused():
    by = {"field": "group", "calendars": {"support": "berlin"}, "default": "berlin"}
    assert sla_problems(ON_BERLIN | {"calendar_by": by}) == [
        "slas[0].calendar: give either 'calendar' or 'calendar_by', not both"]


def test_calendar_by_names_a_bad_field_an_unknown_calendar_and_a_missing_default():
    by = {"field": "colour", "calendars": {"blue": "paris"}}
    found = sla_problems({"name": "s", "calendar_by": by, "targets": {"resolution": "8h"}})
    assert found[0] == ("slas[0].calendar_by.field: expected one of group, tier, channel, "
                        "source, kind, priority, assignee or custom.NAME, got 'colour'")
    assert found[1].startswith("slas[0].calendar_by.default: ")
    assert found[1].endswith("(defined: 24x7, berlin)")
    assert found[2] == ("slas[0].calendar_by.calendars.blue: unknown calendar 'paris' "
                        "(defined: 24x7, berlin)")
    assert len(found) == 3


def test_calendar_by_accepts_a_custom_field_and_maps_values_to_calendars():
    by = {"field": "custom.region", "calendars": {"us": "newyork"}, "default": "berlin"}
    policy = check_policy({"calendars": {"berlin": OFFICE, "newyork": NEWYORK},
                           "slas": [{"name": "s", "calendar_by": by}]}, "p")
    choice = policy.slas[0].calendar
    assert choice.record_field == "custom.region"
    assert choice.default.name == "berlin"
    assert {value: cal.name for value, cal in choice.by_value.items()} == {"us": "newyork"}


def test_on_target_change_must_be_keep_or_restart():
    assert sla_problems(ON_BERLIN | {"on_target_change": "reset"}) == [
        "slas[0].on_target_change: expected one of keep, restart, got 'reset'"]


def test_on_target_change_defaults_to_keep():
    policy = check_policy({"calendars": {"berlin": OFFICE}, "slas": [ON_BERLIN]}, "p")
    assert policy.slas[0].on_target_change == "keep"


def test_business_day_targets_are_stored_as_seconds_plus_business_days():
    policy = check_policy({"calendars": {"berlin": OFFICE}, "slas": [
        ON_BERLIN | {"targets": {"first_response": "2bd", "resolution": "1bd4h"}}]}, "p")
    assert policy.slas[0].targets == {"first_response": Target(0, 2.0),
                                      "resolution": Target(14400, 1.0)}


# -- the command line ---------------------------------------------------------------------------

BROKEN = {"calendars": {"berlin": calendar(timezone="Europe/Berln", week={"mon": ["18:00-09:00"]},
                                           holidays=["2026-02-30"])},
          "slas": [ON_BERLIN]}
BROKEN_LINES = [
    "calendars.berlin.timezone: unknown timezone 'Europe/Berln' (did you mean 'Europe/Berlin'?)",
    "calendars.berlin.week.mon[0]: '18:00-09:00' ends before it starts; an interval cannot "
    "cross midnight: split it into '..-24:00' and '00:00-..' on the next day",
    f"calendars.berlin.holidays[0]: '2026-02-30' {NOT_A_DATE}",
]


def write_setup(tmp_path: Path, policy: dict[str, Any]) -> Path:
    return write_project(tmp_path, [record_dict()], policy)


def test_a_broken_calendar_stops_the_run_before_any_read_or_write(tmp_path: Path):
    config = write_setup(tmp_path, BROKEN)
    before = hashlib.sha256((tmp_path / "helpdesk.json").read_bytes()).hexdigest()
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--now",
                                       iso("2026-03-02 10:00")])
    assert result.exit_code == 2
    for line in BROKEN_LINES:
        assert f"  {line}\n" in result.stderr
    assert hashlib.sha256((tmp_path / "helpdesk.json").read_bytes()).hexdigest() == before
    assert not (tmp_path / "state.db").exists()


def test_validate_prints_each_calendar_problem_on_its_own_line(tmp_path: Path):
    write_setup(tmp_path, BROKEN)
    policy_file = tmp_path / "policy.json"
    result = CliRunner().invoke(main, ["validate", str(policy_file)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"{policy_file}: invalid policy", *BROKEN_LINES]


@pytest.mark.parametrize(("region", "where"), [
    ({"country": "__class__"}, "country"), ({"country": "HolidayBase"}, "country"),
    ({"country": "country_holidays"}, "country"), ({"country": "de"}, "country"),
    ({"country": "DE", "subdiv": "__init__"}, "subdiv"),
])
def test_only_the_shape_of_a_country_or_subdivision_code_reaches_the_holidays_package(
        region: dict[str, str], where: str):
    # The holidays package finds countries by attribute name, so a name that is not a code
    # (a dunder, a class of the package) once got through or ended in a traceback.
    found = calendar_problems(holidays=[region])
    assert len(found) == 1 and found[0].startswith(f"calendars.berlin.holidays[0].{where}: ")
