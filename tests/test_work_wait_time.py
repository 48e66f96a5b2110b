"""Agent work time and requester wait time in Zendesk's sense, worked out by hand: time in
new and open, and in new, open and hold, in business time (Berlin, Mon-Fri 09:00-17:00),
through a reopening; as targets and as the report's metrics."""

from __future__ import annotations

from typing import Any

from conftest import at, iso, make_policy, make_record
from sla_sync.connector.model import Record
from sla_sync.rules.engine import evaluate
from sla_sync.rules.explain import explain
from sla_sync.rules.metrics import report
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import Policy

BERLIN = "Europe/Berlin"
OFFICE = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
HOUR = 3600


def b(text: str) -> Any:
    return at(text, tz=BERLIN)


def policy(**targets: str) -> Policy:
    return make_policy([{"name": "office", "calendar": "berlin",
                         "pause_statuses": ["pending", "hold"],
                         "targets": targets or {"agent_work_time": "4h30m",
                                                "requester_wait_time": "8h",
                                                "resolution": "1bd"}}],
                       calendars={"berlin": {"timezone": BERLIN, "week": OFFICE}})


# 2026-03-09 is a Monday.
HISTORY = [("2026-03-09 10:00", "open"), ("2026-03-09 11:00", "pending"),
           ("2026-03-09 12:00", "open"), ("2026-03-09 13:00", "hold"),
           ("2026-03-09 15:00", "open"), ("2026-03-09 16:00", "solved"),
           ("2026-03-10 10:00", "open"), ("2026-03-10 11:00", "solved")]


def ticket(**fields: Any) -> Record:
    return make_record(**{
        "id": "T-1", "created_at": iso("2026-03-09 09:00", BERLIN),
        "updated_at": iso("2026-03-10 11:00", BERLIN), "status": "solved",
        "solved_at": iso("2026-03-10 11:00", BERLIN),
        "status_history": [{"at": iso(when, BERLIN), "status": s} for when, s in HISTORY],
        **fields})


def test_agent_work_time_is_time_in_new_and_open():
    clock = evaluate(ticket(), policy(), b("2026-03-10 12:00")).clocks["agent_work_time"]
    # new 09-10, open 10-11, open 12-13, open 15-16, reopened Tue 10-11
    assert clock.elapsed_seconds == 5 * HOUR
    assert [(p.status, p.business_seconds / HOUR) for p in clock.pauses] == [
        ("pending", 1.0), ("hold", 2.0), ("solved", 2.0)]  # Mon 16-17, Tue 09-10
    # 4h used by Monday 16:00; the last 30 minutes on Tuesday
    assert (clock.breached, clock.due_at) == (True, b("2026-03-10 10:30"))


def test_requester_wait_time_counts_hold_though_the_sla_pauses_in_it():
    clocks = evaluate(ticket(), policy(), b("2026-03-10 12:00")).clocks
    # new and open as above, and hold 13-15: 7h of 8h
    assert clocks["requester_wait_time"].elapsed_seconds == 7 * HOUR
    assert clocks["requester_wait_time"].met
    assert [p.status for p in clocks["requester_wait_time"].pauses] == ["pending", "solved"]
    # the resolution clock pauses in the SLA's pause statuses: hold does not count there
    assert clocks["resolution"].elapsed_seconds == 5 * HOUR


def test_an_open_record_runs_both_clocks_from_now():
    record = ticket(status="hold", solved_at=None, status_history=[
        {"at": iso(when, BERLIN), "status": s} for when, s in HISTORY[:4]])
    facts = evaluate(record, policy(), b("2026-03-09 14:00")).facts
    # agent work time is paused on hold; requester wait time runs: 3h + 1h of hold
    assert (facts["agent_work_time_paused"], facts["agent_work_time_minutes_left"]) == (
        True, 90)
    assert (facts["requester_wait_time_paused"],
            facts["requester_wait_time_business_minutes_elapsed"]) == (False, 240)


def test_explain_shows_both_clocks():
    text = explain(plan(ticket(), policy(), b("2026-03-10 12:00")), policy())
    assert ("  agent work time: target 4h30m, elapsed 5h (111%), left -30m; stopped at "
            "2026-03-10T11:00:00+01:00 (2026-03-10T10:00:00+00:00) (solved); BREACHED") in text
    assert ("  requester wait time: target 8h, elapsed 7h (88%), left 1h; stopped at "
            "2026-03-10T11:00:00+01:00 (2026-03-10T10:00:00+00:00) (solved); met") in text


def test_the_report_gives_both_as_metrics_in_calendar_and_clock_minutes():
    overnight = make_record(id="T-2", created_at=iso("2026-03-09 16:00", BERLIN),
                            updated_at=iso("2026-03-10 10:00", BERLIN), status="solved",
                            solved_at=iso("2026-03-10 10:00", BERLIN))
    # no target set: still measured
    data = report([ticket(), overnight], policy(resolution="1bd"), b("2026-03-10 12:00"),
                  b("2026-03-01 00:00"), b("2026-04-01 00:00"))
    whole = data["segments"][0]
    # T-1: 5h in new/open, all inside office hours; T-2: 18h of calendar time, 2h of it
    # business time (Mon 16-17, Tue 09-10)
    assert whole["agent_work_time"] == {"count": 2, "mean_minutes": 690.0, "p50_minutes": 300.0,
                                        "p90_minutes": 1080.0, "mean_clock_minutes": 210.0}
    assert whole["requester_wait_time"]["mean_minutes"] == (420 + 1080) / 2
    assert "agent_work_time" not in whole["compliance_rate"]  # not a target of the policy
    with_targets = report([ticket(), overnight], policy(), b("2026-03-10 12:00"),
                          b("2026-03-01 00:00"), b("2026-04-01 00:00"))["segments"][0]
    assert with_targets["breach_rate"]["agent_work_time"] == {"rate": 0.5, "count": 1, "of": 2}
