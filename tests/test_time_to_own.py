"""Time to own, worked out by hand: from the moment the record entered its group (its
creation, for the group it was created in), or lost its assignee, until an assignee is set;
in business time (Berlin, Mon-Fri 09:00-17:00) over a weekend, with a pause status, a move
to another group, and what a record without an assignment history sees."""

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


def policy() -> Policy:
    return make_policy([{"name": "office", "calendar": "berlin", "pause_statuses": ["pending"],
                         "targets": {"time_to_own": "2h"}}],
                       calendars={"berlin": {"timezone": BERLIN, "week": OFFICE}})


def held(when: str, group: str, assignee: str = "") -> dict[str, Any]:
    return {"at": iso(when, BERLIN), "group": group, "assignee": assignee}


# 2026-03-06 is a Friday, 03-09 the Monday after.
OWNERS = [
    held("2026-03-06 16:00", "triage"),  # created unassigned in triage
    held("2026-03-09 09:30", "billing"),  # moved on, still nobody's
    held("2026-03-09 12:00", "billing", "ana"),  # ana takes it
    held("2026-03-10 09:00", "billing"),  # and gives it back
]
PENDING = [{"at": iso(when, BERLIN), "status": status} for when, status in (
    ("2026-03-09 10:00", "pending"), ("2026-03-09 11:00", "open"))]


def ticket(**fields: Any) -> Record:
    return make_record(**{"created_at": iso("2026-03-06 16:00", BERLIN),
                          "updated_at": iso("2026-03-10 09:00", BERLIN), "status": "open",
                          "group": "billing", "assignee": "", "assignment_history": OWNERS,
                          "status_history": PENDING, **fields})


def test_every_stay_unowned_is_a_cycle():
    clock = evaluate(ticket(), policy(), b("2026-03-10 11:30")).clocks["time_to_own"]
    assert clock.cycles == (
        # triage: Fri 16:00-17:00 and Mon 09:00-09:30
        Cycle(b("2026-03-06 16:00"), b("2026-03-09 09:30"), 1.5 * HOUR, False),
        # billing: 09:30-10:00, pending until 11:00, then 11:00-12:00
        Cycle(b("2026-03-09 09:30"), b("2026-03-09 12:00"), 1.5 * HOUR, False),
        # unowned again since Tuesday 09:00: 2h30m at 11:30, due at 11:00
        Cycle(b("2026-03-10 09:00"), None, 2.5 * HOUR, True))
    assert [c.ended for c in clock.cycles] == ["moved to group billing", "owned by ana", ""]
    assert clock.due_at == b("2026-03-10 11:00")


def test_the_variables_are_the_current_stays():
    facts = evaluate(ticket(), policy(), b("2026-03-09 13:00")).facts
    assert (facts["time_to_own_met"], facts["time_to_own_minutes_left"]) == (True, 30)
    facts = evaluate(ticket(), policy(), b("2026-03-09 10:30")).facts  # pending
    assert (facts["time_to_own_paused"], facts["time_to_own_minutes_left"]) == (True, 90)


def test_a_record_created_with_an_assignee_is_owned_at_once():
    record = ticket(assignee="ana", assignment_history=[], status_history=[])
    clock = evaluate(record, policy(), b("2026-03-09 13:00")).clocks["time_to_own"]
    assert clock.cycles == (Cycle(b("2026-03-06 16:00"), b("2026-03-06 16:00"), 0.0, False),)
    assert clock.met and clock.cycles[0].ended == "owned by ana"


def test_an_empty_history_means_the_values_now_held_since_creation():
    record = ticket(assignment_history=[], status_history=[])
    clock = evaluate(record, policy(), b("2026-03-09 10:00")).clocks["time_to_own"]
    # unowned in billing since Friday 16:00: 1h + 1h = 2h, not yet over
    assert clock.cycles == (Cycle(b("2026-03-06 16:00"), None, 2 * HOUR, False),)


def test_the_solve_stops_a_stay():
    solved = ticket(status="solved", solved_at=iso("2026-03-10 10:00", BERLIN),
                    status_history=[*PENDING, {"at": iso("2026-03-10 10:00", BERLIN),
                                               "status": "solved"}])
    clock = evaluate(solved, policy(), b("2026-03-10 12:00")).clocks["time_to_own"]
    assert clock.cycles[-1] == Cycle(b("2026-03-10 09:00"), b("2026-03-10 10:00"), HOUR, False)
    assert clock.cycles[-1].ended == "solved"


def test_without_an_assignment_history_the_clock_is_unavailable_never_guessed():
    record = ticket(assignment_history=None)
    facts = evaluate(record, policy(), b("2026-03-10 11:30")).facts
    assert (facts["time_to_own_breached"], facts["time_to_own_met"],
            facts["time_to_own_minutes_left"]) == (False, False, NO_TARGET_MINUTES_LEFT)
    text = explain(plan(record, policy(), b("2026-03-10 11:30")), policy())
    assert "  time to own: unavailable: the helpdesk gives no assignment history" in text


def test_a_first_entry_after_creation_leaves_its_stay_unknown():
    # Nothing says where the record was before 09:30 Monday: it may have been in billing
    # since Friday, so the stay that ends with ana is not measured; the later one is.
    record = ticket(assignment_history=OWNERS[1:])
    before = evaluate(record, policy(), b("2026-03-09 13:00")).clocks["time_to_own"]
    assert before.target_seconds is None
    assert before.note == "unavailable: the helpdesk does not say when the record entered " \
                          "its group"
    after = evaluate(record, policy(), b("2026-03-10 11:30")).clocks["time_to_own"]
    assert after.cycles == (Cycle(b("2026-03-10 09:00"), None, 2.5 * HOUR, True),)


def test_explain_shows_every_stay():
    text = explain(plan(ticket(), policy(), b("2026-03-10 11:30")), policy())
    assert ("    cycle 1: 2026-03-06T16:00:00+01:00 (2026-03-06T15:00:00+00:00) -> "
            "2026-03-09T09:30:00+01:00 (2026-03-09T08:30:00+00:00) (moved to group billing): "
            "1h30m; within target") in text
    assert ("    cycle 2: 2026-03-09T09:30:00+01:00 (2026-03-09T08:30:00+00:00) -> "
            "2026-03-09T12:00:00+01:00 (2026-03-09T11:00:00+00:00) (owned by ana): 1h30m; "
            "within target") in text


def test_the_report_counts_every_stay_and_a_breach_under_the_group_then():
    data = report([ticket()], policy(), b("2026-03-10 11:30"), b("2026-03-01 00:00"),
                  b("2026-04-01 00:00"), by=[("group",)])
    whole, billing = data["segments"][0], data["segments"][1]
    assert whole["breach_rate"]["time_to_own"] == {"rate": 0.3333, "count": 1, "of": 3}
    assert billing["by"] == {"group": "billing"}
    assert billing["breach_rate"]["time_to_own"]["of"] == 3


def test_an_assignment_stamped_after_now_wakes_the_record_when_it_comes():
    owned = make_policy([{"name": "office", "calendar": "berlin",
                          "targets": {"time_to_own": "8h"}}],
                        [rule("owned", cond("time_to_own_met", "is_true"),
                              act("add_tag", tag="owned"))],
                        calendars={"berlin": {"timezone": BERLIN, "week": OFFICE}})
    # updated_at at Monday 09:00 although ana's entry says 12:00: the entry alone wakes it
    record = ticket(updated_at=iso("2026-03-09 09:00", BERLIN), status_history=[],
                    assignment_history=OWNERS[:3])
    evaluation = evaluate(record, owned, b("2026-03-09 10:00"))
    assert Wakes(owned).of(evaluation) == b("2026-03-09 11:59:59")
