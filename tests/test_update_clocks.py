"""Periodic and pausable update, worked out by hand: the gap between public agent replies
in business time (Berlin, Mon-Fri 09:00-17:00, a one-off holiday), counted through pause
statuses (periodic) or not (pausable), a solve and a reopening, several cycles, the spring
DST change, explain and the report's figures."""

from __future__ import annotations

from typing import Any

from conftest import act, at, cond, iso, make_policy, make_record, rule
from sla_sync.connector.model import Record
from sla_sync.rules.clock import NO_TARGET_MINUTES_LEFT, Cycle
from sla_sync.rules.engine import evaluate
from sla_sync.rules.explain import explain
from sla_sync.rules.metrics import report
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import Policy
from sla_sync.rules.wake import Wakes

BERLIN = "Europe/Berlin"
OFFICE = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
HOUR = 3600


def b(text: str) -> Any:
    return at(text, tz=BERLIN)


def policy(rules: list[dict[str, Any]] | None = None, **targets: str) -> Policy:
    return make_policy([{"name": "office", "calendar": "berlin", "pause_statuses": ["pending"],
                         "targets": targets or {"periodic_update": "4h",
                                                "pausable_update": "4h"}}], rules,
                       calendars={"berlin": {"timezone": BERLIN, "week": OFFICE,
                                             "holidays": ["2026-03-05"]}})


def said(when: str, author: str, public: bool = True) -> dict[str, Any]:
    return {"at": iso(when, BERLIN), "author": author, "public": public}


# 2026-03-04 is a Wednesday, 03-05 a holiday, 03-06 a Friday, 03-09 the Monday after.
CONVERSATION = [
    said("2026-03-04 09:00", "customer"),
    said("2026-03-04 10:00", "agent"),  # the first update: cycle 1 starts
    said("2026-03-04 11:00", "agent", public=False),  # an internal note updates nobody
    said("2026-03-04 16:00", "agent"),  # cycle 1 stops, cycle 2 starts
    said("2026-03-06 10:00", "agent"),  # cycle 2 stops (Thursday is a holiday), 3 starts
    said("2026-03-09 09:30", "customer"),  # the customer reopens it
]
STATUSES = [
    ("2026-03-04 10:00", "open"), ("2026-03-04 12:00", "pending"),
    ("2026-03-04 13:00", "open"), ("2026-03-06 11:00", "solved"),
    ("2026-03-09 09:30", "open"), ("2026-03-09 10:00", "pending"),
    ("2026-03-09 10:30", "open")]
NOW = "2026-03-09 12:45"


def ticket(**fields: Any) -> Record:
    return make_record(**{
        "created_at": iso("2026-03-04 09:00", BERLIN),
        "updated_at": iso("2026-03-09 10:30", BERLIN), "status": "open",
        "solved_at": iso("2026-03-06 11:00", BERLIN),  # left over from the solve
        "messages": CONVERSATION,
        "status_history": [{"at": iso(when, BERLIN), "status": s} for when, s in STATUSES],
        **fields})


def test_periodic_update_counts_every_gap_through_pauses():
    clock = evaluate(ticket(), policy(), b(NOW)).clocks["periodic_update"]
    assert clock.cycles == (
        # Wed 10:00-16:00, the hour pending counted too: 6h of 4h
        Cycle(b("2026-03-04 10:00"), b("2026-03-04 16:00"), 6 * HOUR, True),
        # Wed 16:00-17:00 and Fri 09:00-10:00; the holiday between has no working time
        Cycle(b("2026-03-04 16:00"), b("2026-03-06 10:00"), 2 * HOUR, False),
        # Fri 10:00-11:00, solved until Monday's reopening at 09:30, then to 12:45
        Cycle(b("2026-03-06 10:00"), None, 4.25 * HOUR, True))
    assert [c.ended for c in clock.cycles] == ["updated", "updated", ""]
    assert clock.cycles[0].due_at == b("2026-03-04 14:00")
    assert clock.cycles[2].due_at == b("2026-03-09 12:30")


def test_pausable_update_leaves_the_pause_statuses_out():
    clock = evaluate(ticket(), policy(), b(NOW)).clocks["pausable_update"]
    # cycle 1: 10-12 and 13-16; cycle 3: Fri 10-11, Mon 09:30-10:00 and 10:30-12:45
    assert [(c.elapsed_seconds / HOUR, c.breached) for c in clock.cycles] == [
        (5.0, True), (2.0, False), (3.75, False)]
    assert clock.cycles[0].due_at == b("2026-03-04 15:00")


def test_the_variables_are_the_current_gaps():
    facts = evaluate(ticket(), policy(), b(NOW)).facts
    assert (facts["periodic_update_minutes_left"], facts["periodic_update_breached"]) == (
        -15, True)
    assert (facts["pausable_update_minutes_left"], facts["pausable_update_breached"],
            facts["pausable_update_paused"]) == (15, False, False)
    assert facts["pausable_update_due_at_epoch"] == b("2026-03-09 13:00").timestamp()


def test_a_gap_paused_now_is_paused_only_for_pausable_update():
    facts = evaluate(ticket(), policy(), b("2026-03-09 10:15")).facts
    assert facts["pausable_update_paused"] is True
    assert facts["periodic_update_paused"] is False


def test_the_solve_stops_the_gap_and_a_solved_record_owes_no_update():
    solved = ticket(status="solved", updated_at=iso("2026-03-06 11:00", BERLIN),
                    messages=CONVERSATION[:5], status_history=[
                        {"at": iso(w, BERLIN), "status": s} for w, s in STATUSES[:4]])
    clock = evaluate(solved, policy(), b(NOW)).clocks["periodic_update"]
    assert clock.cycles[-1] == Cycle(b("2026-03-06 10:00"), b("2026-03-06 11:00"), HOUR, False)
    assert clock.cycles[-1].ended == "solved" and clock.met
    # an agent's reply after the solve starts no gap while the record stays solved
    thanked = ticket(status="solved", messages=[*CONVERSATION[:5],
                                                said("2026-03-09 09:00", "agent")],
                     status_history=solved.to_dict()["status_history"])
    after = evaluate(thanked, policy(), b(NOW)).clocks["periodic_update"]
    assert after.cycles[-1].stopped_at == b("2026-03-06 11:00") and len(after.cycles) == 3


def test_without_a_conversation_the_update_clocks_are_unavailable():
    facts = evaluate(ticket(messages=None), policy(), b(NOW)).facts
    assert (facts["periodic_update_breached"], facts["periodic_update_met"],
            facts["periodic_update_minutes_left"]) == (False, False, NO_TARGET_MINUTES_LEFT)
    text = explain(plan(ticket(messages=None), policy(), b(NOW)), policy())
    assert "  periodic update: unavailable: the helpdesk gives no conversation" in text


def test_before_any_agent_reply_there_is_no_gap():
    record = ticket(messages=CONVERSATION[:1], status_history=[], status="new")
    clock = evaluate(record, policy(), b(NOW)).clocks["periodic_update"]
    assert (clock.cycles, clock.note) == ((), "no public agent reply yet")


def test_a_gap_over_the_spring_dst_change_comes_due_at_the_local_hour():
    # Europe/Berlin moves to summer time on Sunday 2026-03-29: Friday 16:30 CET + 1h of
    # business time is Monday 09:30 CEST, 07:30 UTC.
    record = make_record(created_at=iso("2026-03-27 09:00", BERLIN),
                         updated_at=iso("2026-03-30 09:45", BERLIN), messages=[
                             said("2026-03-27 09:00", "customer"),
                             said("2026-03-27 16:30", "agent"),
                             said("2026-03-30 09:45", "agent")])
    clock = evaluate(record, policy(periodic_update="1h"), b("2026-03-30 12:00")).clocks[
        "periodic_update"]
    first = clock.cycles[0]
    assert (first.elapsed_seconds, first.breached) == (1.25 * HOUR, True)
    assert first.due_at == b("2026-03-30 09:30") == at("2026-03-30 07:30")


def test_explain_shows_every_gap_and_the_reopening():
    text = explain(plan(ticket(), policy(), b(NOW)), policy())
    assert ("  periodic update: target 4h, elapsed 4h15m (106%), left -15m; running; BREACHED"
            in text)
    assert ("    paused (solved) 2026-03-06T11:00:00+01:00 (2026-03-06T10:00:00+00:00) -> "
            "2026-03-09T09:30:00+01:00 (2026-03-09T08:30:00+00:00): 6h30m of business time "
            "not counted") in text
    assert ("    cycle 1: 2026-03-04T10:00:00+01:00 (2026-03-04T09:00:00+00:00) -> "
            "2026-03-04T16:00:00+01:00 (2026-03-04T15:00:00+00:00) (updated): 6h; BREACHED"
            ) in text
    assert ("    cycle 3: 2026-03-06T10:00:00+01:00 (2026-03-06T09:00:00+00:00) -> waiting: "
            "4h15m; BREACHED") in text


def test_the_report_counts_every_gap():
    data = report([ticket()], policy(), b(NOW), b("2026-03-01 00:00"), b("2026-04-01 00:00"))
    whole = data["segments"][0]
    assert "periodic_update" in data["targets"] and "next_response" not in data["targets"]
    # periodic: two gaps breached, one met; pausable: one breached, one met, one running
    assert whole["breach_rate"]["periodic_update"] == {"rate": 0.6667, "count": 2, "of": 3}
    assert whole["compliance_rate"]["pausable_update"] == 0.5


def test_the_wake_up_is_when_the_current_gap_reaches_a_rules_threshold():
    warn = policy([rule("warn", cond("pausable_update_minutes_left", "less_than", 5),
                        act("add_tag", tag="update_due"))])
    evaluation = evaluate(ticket(), warn, b(NOW))
    # 15 minutes left at 12:45: under 5 after 12:55, woken a second early
    assert Wakes(warn).of(evaluation) == b("2026-03-09 12:54:59")
