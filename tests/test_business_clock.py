"""The SLA clock on a business-hours calendar (Berlin, 09:00-17:00 Monday to Friday), through
evaluate and plan with real policies, and end to end through the CLI."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import (
    act,
    at,
    cond,
    iso,
    make_policy,
    make_record,
    record_dict,
    rule,
    write_project,
)
from sla_sync.connector.model import Record
from sla_sync.rules.engine import Evaluation, SlaMark, evaluate
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import Policy
from sla_sync.sync import main

BERLIN = "Europe/Berlin"
WORKDAYS = ("mon", "tue", "wed", "thu", "fri")
OFFICE = {day: ["09:00-17:00"] for day in WORKDAYS}
WITH_LUNCH = {day: ["09:00-12:00", "13:00-17:00"] for day in WORKDAYS}
NEWYORK = {"timezone": "America/New_York", "week": OFFICE}


def b(text: str) -> datetime:
    """A Berlin wall time as aware UTC."""
    return at(text, tz=BERLIN)


def calendars(week: dict[str, list[str]] = OFFICE, holidays: list[Any] | None = None,
              ) -> dict[str, Any]:
    return {"berlin": {"timezone": BERLIN, "week": week, "holidays": holidays or []},
            "newyork": NEWYORK}


def office_policy(targets: dict[str, str], week: dict[str, list[str]] = OFFICE,
                  holidays: list[Any] | None = None, rules: list[dict[str, Any]] | None = None,
                  **sla: Any) -> Policy:
    return make_policy([{"name": "office", "calendar": "berlin", "targets": targets,
                         "pause_statuses": ["pending"], **sla}], rules,
                       calendars=calendars(week, holidays))


def ticket(created: str, **fields: Any) -> Record:
    """A ticket created at a Berlin wall time (also its updated_at unless given)."""
    return make_record(**{"created_at": iso(created, BERLIN), "updated_at": iso(created, BERLIN),
                          **fields})


def history(*entries: tuple[str, str]) -> list[dict[str, str]]:
    return [{"at": iso(when, BERLIN), "status": status} for when, status in entries]


def facts(record: Record, policy: Policy, now: str, target: str = "first_response",
          ) -> dict[str, Any]:
    found = evaluate(record, policy, b(now)).facts
    return {key.removeprefix(f"{target}_"): value for key, value in found.items()
            if key.startswith(f"{target}_")} | {"in_business_hours": found["in_business_hours"]}


TWO_HOURS = office_policy({"first_response": "2h", "resolution": "8h"})
FRIDAY_AT_3 = ticket("2026-03-06 15:00")  # 2h of first response used up at Friday 17:00


# -- business minutes ----------------------------------------------------------------------------

@pytest.mark.parametrize("now", ["2026-03-06 17:00", "2026-03-07 12:00", "2026-03-08 23:59",
                                 "2026-03-09 09:00"])
def test_a_target_used_up_at_fridays_close_has_no_minutes_left_all_weekend(now: str):
    seen = facts(FRIDAY_AT_3, TWO_HOURS, now)
    assert (seen["minutes_left"], seen["breached"]) == (0.0, False)
    assert (seen["elapsed_pct"], seen["business_minutes_elapsed"]) == (100.0, 120.0)


def test_the_clock_breaches_one_minute_after_mondays_opening():
    seen = facts(FRIDAY_AT_3, TWO_HOURS, "2026-03-09 09:01")
    assert (seen["minutes_left"], seen["breached"]) == (-1.0, True)
    assert seen["business_minutes_elapsed"] == 121.0


@pytest.mark.parametrize(("now", "open_"), [
    ("2026-03-06 16:59", True), ("2026-03-06 17:00", False), ("2026-03-07 12:00", False),
    ("2026-03-09 08:59", False), ("2026-03-09 09:00", True)])
def test_in_business_hours_follows_the_calendar(now: str, open_: bool):
    assert facts(FRIDAY_AT_3, TWO_HOURS, now)["in_business_hours"] is open_


def test_the_lunch_break_does_not_count():
    policy = office_policy({"first_response": "4h"}, week=WITH_LUNCH)
    seen = facts(ticket("2026-03-02 11:00"), policy, "2026-03-02 14:00")
    assert (seen["business_minutes_elapsed"], seen["elapsed_pct"]) == (120.0, 50.0)
    assert facts(ticket("2026-03-02 11:00"), policy, "2026-03-02 12:30")["in_business_hours"] \
        is False


def test_public_holidays_have_no_working_time():
    # Good Friday (2026-04-03) and Easter Monday (2026-04-06) are holidays in Berlin.
    policy = office_policy({"first_response": "2h"}, holidays=[{"country": "DE", "subdiv": "BE"}])
    clock = evaluate(ticket("2026-04-02 16:00"), policy, b("2026-04-06 12:00")).clocks[
        "first_response"]
    assert clock.elapsed_seconds == 3600.0
    assert clock.due_at == b("2026-04-07 10:00")


def test_a_one_off_holiday_date_has_no_working_time():
    policy = office_policy({"first_response": "2h"}, holidays=["2026-03-09"])
    clock = evaluate(FRIDAY_AT_3, policy, b("2026-03-09 12:00")).clocks["first_response"]
    assert (clock.elapsed_seconds, clock.breached) == (7200.0, False)


# -- pauses --------------------------------------------------------------------------------------

def test_time_in_a_pause_status_does_not_count():
    record = ticket("2026-03-02 09:00", status="open", status_history=history(
        ("2026-03-02 10:00", "pending"), ("2026-03-02 11:30", "open")))
    clock = evaluate(record, TWO_HOURS, b("2026-03-02 12:00")).clocks["resolution"]
    assert clock.elapsed_seconds == 90 * 60
    assert [(p.status, p.business_seconds) for p in clock.pauses] == [("pending", 5400.0)]


def test_a_pause_spanning_a_weekend_takes_out_only_its_business_time():
    record = ticket("2026-03-06 10:00", status="open", status_history=history(
        ("2026-03-06 15:00", "pending"), ("2026-03-09 11:00", "open")))
    clock = evaluate(record, TWO_HOURS, b("2026-03-09 12:00")).clocks["resolution"]
    assert clock.pauses[0].business_seconds == 4 * 3600.0  # Fri 15-17, Mon 09-11
    assert (clock.elapsed_seconds, clock.minutes_left) == (6 * 3600.0, 120.0)
    assert clock.due_at == b("2026-03-09 14:00")


@pytest.mark.parametrize("now", ["2026-03-07 12:00", "2026-03-09 10:30"])
def test_a_paused_clock_is_frozen_and_reports_paused(now: str):
    record = ticket("2026-03-06 10:00", status="pending",
                    status_history=history(("2026-03-06 15:00", "pending")))
    seen = facts(record, office_policy({"first_response": "8h"}), now)
    assert (seen["paused"], seen["business_minutes_elapsed"], seen["minutes_left"]) == (
        True, 300.0, 180.0)


def test_a_paused_clock_is_due_as_if_it_resumed_now():
    record = ticket("2026-03-06 10:00", status="pending",
                    status_history=history(("2026-03-06 15:00", "pending")))
    policy = office_policy({"first_response": "8h"})
    assert evaluate(record, policy, b("2026-03-09 10:30")).clocks["first_response"].due_at \
        == b("2026-03-09 13:30")
    assert evaluate(record, policy, b("2026-03-07 12:00")).clocks["first_response"].due_at \
        == b("2026-03-09 12:00")


# -- due_at ----------------------------------------------------------------------------------------

def test_a_running_clock_is_due_at_the_business_instant_its_target_runs_out():
    seen = facts(ticket("2026-03-06 16:00"), TWO_HOURS, "2026-03-06 16:30")
    assert seen["due_at_epoch"] == b("2026-03-09 10:00").timestamp()


@pytest.mark.parametrize("now", ["2026-03-02 15:00", "2026-03-03 12:00"])
def test_a_breached_clock_is_due_at_the_instant_it_breached(now: str):
    clock = evaluate(ticket("2026-03-02 09:00"), TWO_HOURS, b(now)).clocks["first_response"]
    assert clock.breached and clock.due_at == b("2026-03-02 11:00")


def test_a_clock_without_a_target_has_no_due_time():
    seen = facts(ticket("2026-03-02 09:00"), office_policy({"resolution": "8h"}),
                 "2026-03-02 10:00")
    assert (seen["due_at_epoch"], seen["minutes_left"], seen["breached"]) == (0, 10**9, False)


def test_due_at_in_a_note_shows_the_calendars_local_time():
    policy = office_policy({"first_response": "2h"}, rules=[rule(
        "note-due", cond("first_response_breached", "is_false"),
        act("add_note", text="{id} due {first_response_due_at}"))])
    outcome = evaluate(ticket("2026-03-06 16:00"), policy, b("2026-03-06 16:30")).outcomes[0]
    assert outcome.intents[0].params["text"] == "T-1 due 2026-03-09T10:00+01:00"


@pytest.mark.parametrize("now", ["2026-03-07 12:00", "2026-03-08 20:00"])
def test_due_at_stays_at_fridays_close_over_the_weekend(now: str):
    clock = evaluate(FRIDAY_AT_3, TWO_HOURS, b(now)).clocks["first_response"]
    assert clock.due_at == b("2026-03-06 17:00")


# -- solved and reopened ------------------------------------------------------------------------

def test_the_resolution_clock_stops_at_solved_at_while_solved():
    record = ticket("2026-03-02 09:00", status="solved", solved_at=iso("2026-03-02 13:00", BERLIN),
                    status_history=history(("2026-03-02 13:05", "solved")))
    clock = evaluate(record, TWO_HOURS, b("2026-03-03 12:00")).clocks["resolution"]
    assert (clock.stopped_at, clock.elapsed_seconds) == (b("2026-03-02 13:00"), 4 * 3600.0)
    assert (clock.met, clock.due_at) == (True, None)


@pytest.mark.parametrize("solved_at", [None, iso("2026-03-02 13:00", BERLIN)])
def test_a_reopened_ticket_resumes_counting_from_the_reopening(solved_at: str | None):
    record = ticket("2026-03-02 09:00", status="open", solved_at=solved_at,
                    status_history=history(("2026-03-02 13:00", "solved"),
                                           ("2026-03-03 15:00", "open")))
    clock = evaluate(record, TWO_HOURS, b("2026-03-04 10:00")).clocks["resolution"]
    assert clock.running
    assert clock.elapsed_seconds == 7 * 3600.0  # Mon 09-13, Tue 15-17, Wed 09-10
    assert clock.due_at == b("2026-03-04 11:00")


def test_a_closed_ticket_without_solved_at_stops_when_it_entered_the_closed_statuses():
    record = ticket("2026-03-02 09:00", status="closed", status_history=history(
        ("2026-03-02 10:00", "open"), ("2026-03-02 14:00", "solved"),
        ("2026-03-02 16:00", "closed")))
    clock = evaluate(record, TWO_HOURS, b("2026-03-03 12:00")).clocks["resolution"]
    assert (clock.stopped_at, clock.elapsed_seconds) == (b("2026-03-02 14:00"), 5 * 3600.0)


# -- the SLA changes -----------------------------------------------------------------------------

def priority_policy(on_change: str = "keep", rules: list[dict[str, Any]] | None = None) -> Policy:
    return make_policy([
        {"name": "urgent", "when": cond("priority", "equal_to", "urgent"), "calendar": "berlin",
         "targets": {"resolution": "2h"}, "on_target_change": on_change},
        {"name": "normal", "calendar": "berlin", "targets": {"resolution": "8h"}},
    ], rules, calendars=calendars())


RAISED_AT_NOON = ticket("2026-03-02 09:00", priority="urgent",
                        updated_at=iso("2026-03-02 12:00", BERLIN))
WAS_NORMAL = SlaMark("normal", b("2026-03-02 09:00"))


def resolution(ev: Evaluation) -> tuple[str, datetime, float]:
    clock = ev.clocks["resolution"]
    return ev.facts["sla"], clock.started_at, clock.elapsed_seconds / 60


def test_by_default_a_new_sla_keeps_the_elapsed_time_and_applies_its_own_target():
    ev = evaluate(RAISED_AT_NOON, priority_policy(), b("2026-03-02 12:00"), WAS_NORMAL)
    assert resolution(ev) == ("urgent", b("2026-03-02 09:00"), 180.0)
    assert (ev.facts["resolution_breached"], ev.facts["resolution_minutes_left"]) == (True, -60.0)


def test_a_restart_sla_counts_from_when_the_record_came_under_it():
    ev = evaluate(RAISED_AT_NOON, priority_policy("restart"), b("2026-03-02 13:00"), WAS_NORMAL)
    assert ev.sla_mark == SlaMark("urgent", b("2026-03-02 12:00"))
    assert resolution(ev) == ("urgent", b("2026-03-02 12:00"), 60.0)
    assert ev.clocks["resolution"].due_at == b("2026-03-02 14:00")


def test_a_restart_sla_keeps_its_mark_while_the_record_stays_under_it():
    edited = ticket("2026-03-02 09:00", priority="urgent",
                    updated_at=iso("2026-03-02 14:00", BERLIN))
    mark = SlaMark("urgent", b("2026-03-02 12:00"))
    ev = evaluate(edited, priority_policy("restart"), b("2026-03-02 15:00"), mark)
    assert ev.sla_mark == mark
    assert resolution(ev) == ("urgent", b("2026-03-02 12:00"), 180.0)
    assert ev.facts["resolution_breached"] is True


def test_a_restart_sla_seen_first_counts_from_creation():
    ev = evaluate(RAISED_AT_NOON, priority_policy("restart"), b("2026-03-02 13:00"))
    assert ev.sla_mark == SlaMark("urgent", b("2026-03-02 09:00"))
    assert resolution(ev) == ("urgent", b("2026-03-02 09:00"), 240.0)


def test_a_planned_priority_change_restarts_the_clock_in_the_final_evaluation():
    policy = priority_policy("restart", [rule("vip-is-urgent", cond("tags", "contains", "vip"),
                                              act("set_priority", priority="urgent"))])
    p = plan(ticket("2026-03-02 09:00", tags=["vip"]), policy, b("2026-03-02 12:00"),
             previous=WAS_NORMAL)
    assert p.change.fields == {"priority": "urgent"}
    assert p.evaluation.sla_mark == WAS_NORMAL
    assert p.final.sla_mark == SlaMark("urgent", b("2026-03-02 12:00"))
    assert resolution(p.final) == ("urgent", b("2026-03-02 12:00"), 0.0)


# -- business days and calendar_by ------------------------------------------------------------

@pytest.mark.parametrize(("target", "week", "created", "seconds", "due"), [
    ("1bd", OFFICE, "2026-03-02 16:00", 8 * 3600, "2026-03-03 16:00"),
    ("1d", OFFICE, "2026-03-02 16:00", 24 * 3600, "2026-03-05 16:00"),
    ("1bd", WITH_LUNCH, "2026-03-02 11:00", 7 * 3600, "2026-03-03 11:00"),
    ("1bd4h", OFFICE, "2026-03-02 09:00", 12 * 3600, "2026-03-03 13:00"),
])
def test_business_days_are_the_calendars_working_day(target: str, week: dict[str, list[str]],
                                                     created: str, seconds: int, due: str):
    clock = evaluate(ticket(created), office_policy({"resolution": target}, week=week),
                     b(created)).clocks["resolution"]
    assert (clock.target_seconds, clock.due_at) == (seconds, b(due))


def picked_policy(field: str) -> Policy:
    by = {"field": field, "calendars": {"support-us": "newyork", "us": "newyork"},
          "default": "berlin"}
    return make_policy([{"name": "s", "calendar_by": by, "targets": {"first_response": "2h"}}],
                       calendars=calendars())


@pytest.mark.parametrize(("fields", "calendar", "due"), [
    ({"group": "support-us"}, "newyork", "2026-03-02 18:00"),
    ({"group": "support"}, "berlin", "2026-03-03 10:00"),
])
def test_calendar_by_group_picks_new_york_for_support_us_and_berlin_otherwise(
        fields: dict[str, str], calendar: str, due: str):
    record = make_record(created_at=iso("2026-03-02 16:00"), **fields)  # 11:00 NY, 17:00 Berlin
    ev = evaluate(record, picked_policy("group"), at("2026-03-02 16:30"))
    assert ev.calendar.name == calendar
    assert ev.clocks["first_response"].due_at == at(due)


@pytest.mark.parametrize(("custom", "calendar"), [({"region": "us"}, "newyork"), ({}, "berlin")])
def test_calendar_by_reads_a_custom_field(custom: dict[str, str], calendar: str):
    record = make_record(created_at=iso("2026-03-02 16:00"), custom=custom)
    assert evaluate(record, picked_policy("custom.region"), at("2026-03-02 16:30")).calendar.name \
        == calendar


# -- end to end ----------------------------------------------------------------------------------

E2E_POLICY = {
    "calendars": {"berlin": {"timezone": BERLIN, "week": OFFICE}},
    "slas": [
        {"name": "urgent", "when": cond("priority", "equal_to", "urgent"), "calendar": "berlin",
         "on_target_change": "restart", "targets": {"first_response": "2h"}},
        {"name": "normal", "calendar": "berlin", "targets": {"first_response": "8h"}},
    ],
    "rules": [rule("breach", cond("first_response_breached", "is_true"),
                   act("add_tag", tag="sla_breach"))],
}


@pytest.fixture
def raised_on_friday(tmp_path: Path) -> Path:
    """A ticket created Friday 09:00 Berlin, synced at 12:00, raised to urgent at 16:00 and
    synced again at 16:30; returns the config."""
    created = iso("2026-03-06 09:00", BERLIN)
    config = write_project(tmp_path, [record_dict(created_at=created, updated_at=created)],
                           E2E_POLICY)
    assert sync(config, "2026-03-06 12:00").exit_code == 0
    data = json.loads((tmp_path / "helpdesk.json").read_text())
    data["records"][0].update(priority="urgent", updated_at=iso("2026-03-06 16:00", BERLIN))
    (tmp_path / "helpdesk.json").write_text(json.dumps(data))
    return config


def sync(config: Path, now: str) -> Any:
    return CliRunner().invoke(main, ["run", "--config", str(config), "--now", iso(now, BERLIN)],
                              catch_exceptions=False)


def marks(config: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(config.parent / "state.db") as db:
        return db.execute("SELECT record_id, sla, since FROM sla_marks").fetchall()


def tags(config: Path) -> list[str]:
    return json.loads((config.parent / "helpdesk.json").read_text())["records"][0]["tags"]


def test_a_restart_sla_counts_from_the_priority_change_across_syncs(raised_on_friday: Path):
    config = raised_on_friday
    assert marks(config) == [("T-1", "normal", "2026-03-06T08:00:00+00:00")]
    assert sync(config, "2026-03-06 16:30").exit_code == 0
    assert marks(config) == [("T-1", "urgent", "2026-03-06T15:00:00+00:00")]
    assert tags(config) == []  # 30 business minutes of 2h, not 7h30 since creation
    assert sync(config, "2026-03-09 09:59").exit_code == 0
    assert tags(config) == []
    assert sync(config, "2026-03-09 10:01").exit_code == 0
    assert tags(config) == ["sla_breach"]


def test_explain_shows_the_calendar_business_minutes_due_time_and_sla_mark(
        raised_on_friday: Path):
    config = raised_on_friday
    sync(config, "2026-03-06 16:30")
    result = CliRunner().invoke(main, ["explain", "T-1", "--config", str(config), "--now",
                                       iso("2026-03-06 16:30", BERLIN)], catch_exceptions=False)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for line in [
        "  calendar berlin (Europe/Berlin); now is inside its working time",
        "  under this SLA since 2026-03-06T15:00:00+00:00: its clocks count from then",
        "  first response: target 2h, elapsed 30m (25%), left 1h30m; running; within target",
        "    calendar berlin (Europe/Berlin); started "
        "2026-03-06T16:00:00+01:00 (2026-03-06T15:00:00+00:00) (came under SLA 'urgent')",
        "    business minutes counted: 30",
        "    due 2026-03-09T10:00:00+01:00 (2026-03-09T09:00:00+00:00)",
    ]:
        assert line in lines
