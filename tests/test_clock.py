"""The SLA clocks: what counts toward a target, when a clock stops, and what it reports."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime

from conftest import at, iso, make_policy, make_record
from sla_sync.connector.model import Record
from sla_sync.rules.calendar import ALWAYS, BUILT_IN
from sla_sync.rules.clock import NO_TARGET_MINUTES_LEFT, Clock, Pause, run_clock
from sla_sync.rules.engine import evaluate

HOUR = 3600
PAUSES = frozenset({"pending", "hold"})
CLOSED = frozenset({"solved", "closed"})


def clock(record: Record, now: datetime, target: str = "resolution",
          target_seconds: int | None = 8 * HOUR, pauses: frozenset[str] = PAUSES) -> Clock:
    return run_clock(record, target, target_seconds, BUILT_IN[ALWAYS], pauses, CLOSED, now)


def history(*entries: tuple[str, str]) -> list[dict[str, str]]:
    return [{"at": iso(when), "status": status} for when, status in entries]


# -- what counts ------------------------------------------------------------------------------

def test_running_clock_counts_every_second_since_creation_on_24x7():
    c = clock(make_record(), at("2026-03-02 11:30"))
    assert (c.running, c.paused, c.stopped_at) == (True, False, None)
    assert c.started_at == at("2026-03-02 09:00")
    assert c.elapsed_seconds == 2.5 * HOUR
    assert c.minutes_left == 330.0


def test_pending_time_does_not_count_toward_resolution():
    record = make_record(status="open", status_history=history(
        ("2026-03-02 10:00", "pending"), ("2026-03-02 11:00", "open")))
    c = clock(record, at("2026-03-02 12:00"))
    assert c.elapsed_seconds == 2 * HOUR
    assert c.pauses == (Pause("pending", at("2026-03-02 10:00"), at("2026-03-02 11:00"), HOUR),)
    assert c.paused is False


def test_several_pause_intervals_are_all_subtracted():
    record = make_record(status="open", status_history=history(
        ("2026-03-02 10:00", "pending"), ("2026-03-02 10:30", "open"),
        ("2026-03-02 11:00", "hold"), ("2026-03-02 12:00", "open")))
    c = clock(record, at("2026-03-02 13:00"))
    assert [(p.status, p.business_seconds) for p in c.pauses] == [
        ("pending", 1800.0), ("hold", 3600.0)]
    assert c.elapsed_seconds == 2.5 * HOUR


def test_pause_open_at_now_marks_the_clock_paused_and_freezes_elapsed():
    record = make_record(status="pending", status_history=history(
        ("2026-03-02 09:00", "open"), ("2026-03-02 10:00", "pending")))
    at_noon = clock(record, at("2026-03-02 12:00"))
    next_day = clock(record, at("2026-03-03 12:00"))
    assert at_noon.paused is True and next_day.paused is True
    assert at_noon.elapsed_seconds == next_day.elapsed_seconds == HOUR
    assert next_day.pauses[-1].end is None
    assert next_day.due_at == at("2026-03-03 19:00")  # if it resumed now: 7h left


def test_backtest_sees_a_pause_that_ended_after_now_as_still_open():
    record = make_record(status="open", status_history=history(
        ("2026-03-02 10:00", "pending"), ("2026-03-02 11:00", "open")))
    c = clock(record, at("2026-03-02 10:30"))
    assert c.paused is True
    assert c.elapsed_seconds == HOUR


def test_pause_that_started_before_the_stop_counts_only_up_to_the_stop():
    record = make_record(status="open", first_response_at=iso("2026-03-02 10:00"),
                         status_history=history(("2026-03-02 09:30", "pending"),
                                                ("2026-03-02 11:00", "open")))
    c = clock(record, at("2026-03-02 12:00"), target="first_response", target_seconds=HOUR)
    assert c.pauses == (Pause("pending", at("2026-03-02 09:30"), at("2026-03-02 10:00"), 1800.0),)
    assert c.elapsed_seconds == 1800
    assert c.paused is False


def test_status_before_the_first_history_entry_is_new():
    record = make_record(status="open", status_history=history(("2026-03-02 10:00", "open")))
    c = clock(record, at("2026-03-02 12:00"), pauses=frozenset({"new"}))
    assert c.elapsed_seconds == 2 * HOUR


def test_time_before_a_move_to_pending_counts():
    record = make_record(status="pending", status_history=history(("2026-03-02 10:00", "pending")))
    c = clock(record, at("2026-03-02 12:00"))
    assert c.elapsed_seconds == HOUR
    assert c.paused is True


def test_record_without_history_has_had_its_status_since_creation():
    c = clock(make_record(status="pending"), at("2026-03-02 12:00"))
    assert c.elapsed_seconds == 0
    assert c.paused is True
    assert c.pauses == (Pause("pending", at("2026-03-02 09:00"), None, 3 * HOUR),)


def test_current_status_missing_from_history_holds_from_updated_at():
    record = make_record(status="pending", updated_at=iso("2026-03-02 10:00"),
                         status_history=history(("2026-03-02 09:30", "open")))
    c = clock(record, at("2026-03-02 11:00"))
    assert c.elapsed_seconds == HOUR
    assert c.paused is True


# -- stopping ---------------------------------------------------------------------------------

def test_first_response_clock_stops_at_first_response_at():
    record = make_record(first_response_at=iso("2026-03-02 09:40"))
    c = clock(record, at("2026-03-02 12:00"), target="first_response", target_seconds=HOUR)
    assert c.stopped_at == at("2026-03-02 09:40")
    assert c.elapsed_seconds == 40 * 60
    assert c.running is False


def test_first_response_does_not_stop_the_resolution_clock():
    record = make_record(first_response_at=iso("2026-03-02 09:40"))
    c = clock(record, at("2026-03-02 12:00"))
    assert c.running is True
    assert c.elapsed_seconds == 3 * HOUR


def test_resolution_clock_stops_at_solved_at():
    record = make_record(status="solved", first_response_at=iso("2026-03-02 09:10"),
                         solved_at=iso("2026-03-02 13:00"))
    c = clock(record, at("2026-03-03 09:00"))
    assert c.stopped_at == at("2026-03-02 13:00")
    assert c.elapsed_seconds == 4 * HOUR


def test_record_solved_without_first_response_stops_first_response_clock_at_the_solve():
    record = make_record(status="solved", solved_at=iso("2026-03-02 09:45"))
    c = clock(record, at("2026-03-02 12:00"), target="first_response", target_seconds=HOUR)
    assert c.stopped_at == at("2026-03-02 09:45")
    assert c.elapsed_seconds == 45 * 60
    assert c.met is True


def test_stop_after_now_is_ignored_in_a_backtest():
    record = make_record(first_response_at=iso("2026-03-02 10:30"))
    c = clock(record, at("2026-03-02 10:00"), target="first_response", target_seconds=HOUR)
    assert c.running is True
    assert c.elapsed_seconds == HOUR
    assert c.met is False


# -- verdicts ---------------------------------------------------------------------------------

def test_minutes_left_is_negative_once_a_running_clock_is_breached():
    c = clock(make_record(), at("2026-03-02 10:45"), target_seconds=HOUR)
    assert c.minutes_left == -45.0
    assert (c.breached, c.met) == (True, False)


def test_elapsed_pct_is_the_share_of_the_target_used():
    c = clock(make_record(), at("2026-03-02 11:00"))
    assert c.elapsed_pct == 25.0


def test_clock_stopped_exactly_at_the_target_is_met_not_breached():
    record = make_record(first_response_at=iso("2026-03-02 10:00"))
    c = clock(record, at("2026-03-02 12:00"), target="first_response", target_seconds=HOUR)
    assert (c.met, c.breached, c.minutes_left) == (True, False, 0.0)


def test_clock_stopped_after_the_target_is_breached_not_met():
    record = make_record(first_response_at=iso("2026-03-02 10:15"))
    c = clock(record, at("2026-03-02 12:00"), target="first_response", target_seconds=HOUR)
    assert (c.met, c.breached, c.minutes_left) == (False, True, -15.0)


def test_running_clock_within_target_is_neither_met_nor_breached():
    c = clock(make_record(), at("2026-03-02 09:30"), target_seconds=HOUR)
    assert (c.met, c.breached) == (False, False)


def test_clock_without_target_reports_no_target_values():
    record = make_record(status="solved", solved_at=iso("2026-03-05 09:00"))
    c = clock(record, at("2026-03-06 09:00"), target_seconds=None)
    assert c.minutes_left == NO_TARGET_MINUTES_LEFT == 10**9
    assert c.elapsed_pct == 0.0
    assert (c.breached, c.met) == (False, False)


def test_due_at_of_a_running_clock_is_now_plus_the_time_left():
    record = make_record(status="open", status_history=history(
        ("2026-03-02 09:05", "pending"), ("2026-03-02 09:15", "open")))
    now = at("2026-03-02 09:30")
    assert clock(record, now, target_seconds=HOUR).due_at == at("2026-03-02 10:10")


def test_due_at_is_none_once_stopped_within_target_and_the_breach_instant_once_breached():
    now = at("2026-03-02 12:00")
    stopped = clock(make_record(status="solved", solved_at=iso("2026-03-02 10:00")), now)
    breached = clock(make_record(), now, target_seconds=HOUR)
    assert stopped.due_at is None
    assert breached.due_at == at("2026-03-02 10:00")


# -- through the engine -----------------------------------------------------------------------

def test_evaluate_runs_both_clocks_with_the_slas_targets_and_pauses():
    policy = make_policy([{"name": "std", "targets": {"first_response": "1h", "resolution": "8h"},
                           "pause_statuses": ["pending"]}])
    record = make_record(status="open", first_response_at=iso("2026-03-02 09:30"),
                         status_history=history(("2026-03-02 10:00", "pending"),
                                                ("2026-03-02 11:00", "open")))
    facts = evaluate(record, policy, at("2026-03-02 13:00")).facts
    assert facts["first_response_minutes_left"] == 30.0
    assert facts["first_response_met"] is True
    assert facts["resolution_minutes_left"] == 300.0
    assert facts["resolution_elapsed_pct"] == 37.5
    assert facts["resolution_breached"] is False


def test_a_clock_built_by_run_clock_is_the_dataclass_with_every_field():
    record = make_record(created_at=iso("2026-03-02 09:00"))
    clock = run_clock(record, "resolution", 3600, BUILT_IN[ALWAYS], ("pending",),
                      ("solved",), at("2026-03-02 12:00"))
    names = [f.name for f in fields(Clock)]
    assert list(vars(clock)) == names
    rebuilt = Clock(**{name: getattr(clock, name) for name in names})
    assert (rebuilt, hash(rebuilt), repr(rebuilt)) == (clock, hash(clock), repr(clock))
