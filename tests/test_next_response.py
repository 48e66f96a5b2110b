"""The next response clock, worked out by hand: cycles read from the conversation, business
hours (Berlin, Mon-Fri 09:00-17:00), a weekend, a pause, and what a record without a
conversation sees."""

from __future__ import annotations

from typing import Any

from conftest import act, at, cond, iso, make_policy, make_record, rule
from sla_sync.connector.model import Record
from sla_sync.rules.clock import NO_TARGET_MINUTES_LEFT, Cycle
from sla_sync.rules.engine import evaluate
from sla_sync.rules.explain import explain
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import Policy
from sla_sync.rules.wake import Wakes

BERLIN = "Europe/Berlin"
OFFICE = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
HOUR = 3600


def b(text: str) -> Any:
    return at(text, tz=BERLIN)


def policy(rules: list[dict[str, Any]] | None = None) -> Policy:
    return make_policy([{"name": "office", "calendar": "berlin", "pause_statuses": ["pending"],
                         "targets": {"first_response": "4h", "next_response": "2h"}}], rules,
                       calendars={"berlin": {"timezone": BERLIN, "week": OFFICE}})


def said(when: str, author: str, public: bool = True) -> dict[str, Any]:
    return {"at": iso(when, BERLIN), "author": author, "public": public}


# 2026-03-04 is a Wednesday; 2026-03-09 the Monday after.
CONVERSATION = [
    said("2026-03-04 09:00", "customer"),  # the opening message: first response's
    said("2026-03-04 10:00", "agent"),  # first response
    said("2026-03-04 11:00", "customer"),  # cycle 1 starts
    said("2026-03-04 11:30", "customer"),  # still unanswered: the same cycle
    said("2026-03-04 11:45", "agent", public=False),  # an internal note answers nobody
    said("2026-03-04 12:30", "agent"),  # cycle 1 stops: 1h30 of 2h, met
    said("2026-03-06 16:00", "customer"),  # Friday: cycle 2 starts, 1h before the close
    said("2026-03-09 11:00", "agent"),  # Monday: cycle 2 stops (see PAUSE)
    said("2026-03-09 14:00", "customer"),  # cycle 3 starts, unanswered
]
#: Pending Monday 09:30-10:00: cycle 2 counts Fri 16:00-17:00 (1h), Mon 09:00-09:30 (30m)
#: and 10:00-11:00 (1h), 2h30 in all; its 2h ran out at Monday 10:30.
PAUSE = [{"at": iso(when, BERLIN), "status": status} for when, status in (
    ("2026-03-04 10:00", "open"), ("2026-03-09 09:30", "pending"), ("2026-03-09 10:00", "open"))]


def ticket(**fields: Any) -> Record:
    return make_record(**{"created_at": iso("2026-03-04 09:00", BERLIN),
                          "updated_at": iso("2026-03-09 14:00", BERLIN), "status": "open",
                          "messages": CONVERSATION, "status_history": PAUSE, **fields})


def next_response(record: Record, now: str) -> dict[str, Any]:
    found = evaluate(record, policy(), b(now)).facts
    return {key.removeprefix("next_response_"): value for key, value in found.items()
            if key.startswith("next_response_")}


def test_every_cycle_is_counted_in_business_time_through_the_weekend_and_the_pause():
    clock = evaluate(ticket(), policy(), b("2026-03-09 15:00")).clocks["next_response"]
    assert clock.cycles == (
        Cycle(b("2026-03-04 11:00"), b("2026-03-04 12:30"), 1.5 * HOUR, False),
        Cycle(b("2026-03-06 16:00"), b("2026-03-09 11:00"), 2.5 * HOUR, True),
        Cycle(b("2026-03-09 14:00"), None, 1 * HOUR, False))


def test_the_variables_are_the_current_cycles():
    facts = next_response(ticket(), "2026-03-09 15:00")
    assert (facts["minutes_left"], facts["elapsed_pct"], facts["breached"]) == (60, 50, False)
    assert facts["due_at_epoch"] == b("2026-03-09 16:00").timestamp()


def test_a_cycle_paused_now_keeps_its_elapsed_time():
    facts = next_response(ticket(), "2026-03-09 09:45")  # pending since 09:30
    assert (facts["minutes_left"], facts["breached"], facts["paused"]) == (30, False, True)


def test_a_cycle_breaches_when_its_target_runs_out_and_says_when():
    facts = next_response(ticket(), "2026-03-09 10:45")
    assert (facts["minutes_left"], facts["elapsed_pct"], facts["breached"]) == (
        -15, 112.5, True)
    assert facts["due_at_epoch"] == b("2026-03-09 10:30").timestamp()


def test_a_stopped_cycle_stays_met_or_breached_until_the_next_starts():
    assert next_response(ticket(), "2026-03-05 10:00")["met"] is True  # cycle 1
    after = next_response(ticket(), "2026-03-09 12:00")  # cycle 2, answered late
    assert (after["breached"], after["met"], after["minutes_left"]) == (True, False, -30)


def test_messages_after_now_have_not_happened_yet():
    clock = evaluate(ticket(), policy(), b("2026-03-04 11:15")).clocks["next_response"]
    assert clock.cycles == (Cycle(b("2026-03-04 11:00"), None, 0.25 * HOUR, False),)


def test_a_solve_stops_a_waiting_cycle():
    solved = ticket(status="solved", solved_at=iso("2026-03-09 15:00", BERLIN),
                    status_history=[*PAUSE, {"at": iso("2026-03-09 15:00", BERLIN),
                                             "status": "solved"}])
    clock = evaluate(solved, policy(), b("2026-03-10 12:00")).clocks["next_response"]
    assert clock.cycles[-1] == Cycle(b("2026-03-09 14:00"), b("2026-03-09 15:00"), HOUR, False)
    assert clock.met


def test_without_a_conversation_the_clock_is_unavailable_never_guessed():
    record = ticket(messages=None, first_response_at=iso("2026-03-04 10:00", BERLIN))
    facts = next_response(record, "2026-03-09 15:00")
    assert (facts["breached"], facts["met"], facts["minutes_left"], facts["elapsed_pct"]) == (
        False, False, NO_TARGET_MINUTES_LEFT, 0)
    text = explain(plan(record, policy(), b("2026-03-09 15:00")), policy())
    assert "next response: unavailable: the helpdesk gives no conversation" in text


def test_customer_messages_before_any_agent_reply_start_no_cycle():
    record = ticket(messages=CONVERSATION[:1])
    assert evaluate(record, policy(), b("2026-03-09 15:00")).clocks["next_response"].cycles == ()
    assert next_response(record, "2026-03-09 15:00")["breached"] is False


def test_explain_shows_every_cycle():
    text = explain(plan(ticket(), policy(), b("2026-03-09 15:00")), policy())
    assert ("    cycle 2: 2026-03-06T16:00:00+01:00 (2026-03-06T15:00:00+00:00) -> "
            "2026-03-09T11:00:00+01:00 (2026-03-09T10:00:00+00:00) (replied): 2h30m; BREACHED"
            ) in text
    assert ("    cycle 3: 2026-03-09T14:00:00+01:00 (2026-03-09T13:00:00+00:00) -> waiting: "
            "1h; within target") in text


def test_the_wake_up_is_when_the_current_cycle_reaches_a_rules_threshold():
    warn = policy([rule("warn", cond("next_response_minutes_left", "less_than", 30),
                        act("add_tag", tag="reply_soon"))])
    evaluation = evaluate(ticket(), warn, b("2026-03-09 15:00"))
    # 60 minutes left at 15:00: under 30 at 15:30, woken a second early.
    assert Wakes(warn).of(evaluation) == b("2026-03-09 15:29:59")


def test_a_message_stamped_after_now_wakes_the_record_when_it_comes():
    warn = policy([rule("warn", cond("next_response_breached", "is_true"),
                        act("add_tag", tag="late"))])
    evaluation = evaluate(ticket(), warn, b("2026-03-06 12:00"))  # Friday noon, no cycle
    assert Wakes(warn).of(evaluation) == b("2026-03-06 15:59:59")


def test_the_report_counts_every_cycle_not_one_outcome_per_record() -> None:
    """At Monday 15:00: cycle 1 met (1h30 of 2h), cycle 2 breached (2h30), cycle 3 waiting
    1h of 2h (in neither count); a ticket without a conversation adds no cycle."""
    from sla_sync.rules.metrics import report
    silent = make_record(id="T-2", created_at=iso("2026-03-04 09:00", BERLIN),
                         updated_at=iso("2026-03-04 09:00", BERLIN))
    data = report([ticket(), silent], policy(), b("2026-03-09 15:00"),
                  b("2026-03-01 00:00"), b("2026-03-10 00:00"))
    assert "next_response" in data["targets"]
    whole = data["segments"][0]
    assert whole["breach_rate"]["next_response"] == {"rate": 0.5, "count": 1, "of": 2}
    assert whole["compliance_rate"]["next_response"] == 0.5
    later = report([ticket()], policy(), b("2026-03-09 16:30"), b("2026-03-01 00:00"),
                   b("2026-03-10 00:00"))  # cycle 3 now 2h30 unanswered: breached too
    assert later["segments"][0]["breach_rate"]["next_response"] == {
        "rate": 0.6667, "count": 2, "of": 3}
