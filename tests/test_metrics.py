"""SLA metrics on small hand-written data sets, every expected number worked out by hand.

The arithmetic is in the comments next to each expected value; nothing expected here is
computed by the code under test.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from conftest import at, iso, make_policy, make_record
from sla_sync.connector.model import Record
from sla_sync.rules.metrics import histogram, measure_record, percentile, queue, report, trend

UTC_ = "UTC"
BERLIN = "Europe/Berlin"


def rec(rid: str, tier: str, channel: str, group: str, source: str, kind: str, created: str,
        first_response: str | None, solved: str | None, history: str, esc: int,
        tz: str = UTC_) -> Record:
    """One record from a table row. Times are "MM-DD HH:MM" in 2026 (wall time in `tz`);
    history is "MM-DD HH:MM status; ..."; the status is the last history entry's (or new)."""
    def t(text: str) -> str:
        return iso(f"2026-{text}", tz)

    entries = [e.strip().rsplit(" ", 1) for e in history.split(";") if e.strip()]
    status_history = [{"at": t(when), "status": status} for when, status in entries]
    return make_record(
        id=rid, tier=tier, channel=channel, group=group, source=source, kind=kind,
        created_at=t(created), updated_at=status_history[-1]["at"] if entries else t(created),
        first_response_at=t(first_response) if first_response else None,
        solved_at=t(solved) if solved else None, status_history=status_history,
        status=entries[-1][1] if entries else "new", escalation_level=esc)


# -- the main data set (24x7, all times UTC) ---------------------------------------------------
#
# SLAs, first match wins, all pausing in `pending`:
#   leads    (kind = lead)   first_response 2h, no resolution target
#   gold     (tier = gold)   first_response 30m, resolution 4h
#   standard (fallback)      first_response 1h,  resolution 8h
#
# Window [Sun 03-01 00:00, Fri 03-06 00:00), now = Thu 03-05 00:00.

MAIN_POLICY = make_policy([
    {"name": "leads", "when": {"name": "kind", "operator": "equal_to", "value": "lead"},
     "targets": {"first_response": "2h"}, "pause_statuses": ["pending"]},
    {"name": "gold", "when": {"name": "tier", "operator": "equal_to", "value": "gold"},
     "targets": {"first_response": "30m", "resolution": "4h"}, "pause_statuses": ["pending"]},
    {"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"},
     "pause_statuses": ["pending"]},
])
SINCE, UNTIL, NOW = at("2026-03-01 00:00"), at("2026-03-06 00:00"), at("2026-03-05 00:00")

# fmt: off
#        id    tier        channel  group      src         kind      created        first resp     solved         status history                                                                   esc  # noqa: E501
T1 = rec("T1", "gold",     "email", "support", "",         "ticket", "03-02 09:00", "03-02 09:20", "03-02 11:00", "03-02 09:20 open; 03-02 11:00 solved",                                          0)  # noqa: E501
T2 = rec("T2", "standard", "chat",  "support", "",         "ticket", "03-02 10:00", "03-02 11:30", "03-02 16:00", "03-02 11:30 open; 03-02 12:00 pending; 03-02 14:00 open; 03-02 15:00 on-hold; 03-02 16:00 solved", 1)  # noqa: E501
T3 = rec("T3", "gold",     "phone", "billing", "",         "ticket", "03-03 08:00", "03-03 08:10", "03-03 14:00", "03-03 08:10 open; 03-03 08:30 pending; 03-03 12:30 open; 03-03 14:00 solved",  0)  # noqa: E501
T4 = rec("T4", "standard", "email", "billing", "",         "ticket", "03-03 09:00", None,          "03-03 09:45", "03-03 09:45 solved",                                                            0)  # noqa: E501
T5 = rec("T5", "standard", "web",   "support", "",         "ticket", "03-03 10:00", "03-03 10:30", "03-03 11:00", "03-03 10:30 open; 03-03 11:00 solved; 03-03 13:00 open",                      2)  # noqa: E501
T6 = rec("T6", "gold",     "chat",  "support", "",         "ticket", "03-04 22:00", "03-04 22:10", None,          "03-04 22:10 open",                                                              0)  # noqa: E501
T7 = rec("T7", "",         "web",   "sales",   "webinar",  "lead",   "03-01 00:00", "03-01 03:00", None,          "03-01 01:00 pending; 03-01 02:00 open",                                         0)  # noqa: E501
T8 = rec("T8", "",         "phone", "sales",   "referral", "lead",   "03-04 09:00", None,          None,          "",                                                                              1)  # noqa: E501
X1 = rec("X1", "gold",     "email", "support", "",         "ticket", "02-28 23:59", "03-01 00:10", None,          "03-01 00:10 open",                                                              1)  # noqa: E501
X2 = rec("X2", "gold",     "email", "support", "",         "ticket", "03-06 00:00", None,          None,          "",                                                                              1)  # noqa: E501
# fmt: on
#
# Per record (minutes; "cal" = calendar, "clk" = SLA clock, pending excluded):
#   T1 gold      FR cal 20 clk 20 <= 30 met  | solved: res cal 120 clk 120 <= 240 met
#                handling new 09:00-09:20 (20) + open 09:20-11:00 (100) = 120
#   T2 standard  FR cal 90 clk 90 > 60 BREACHED | res cal 10:00-16:00 = 360, pending 12-14 = 120
#                -> clk 240 <= 480 met (on-hold is no pause status: it counts)
#                handling new 90 + open 11:30-12:00 30 + open 14:00-15:00 60 = 180
#   T3 gold      FR cal 10 clk 10 met | res cal 08:00-14:00 = 360, pending 08:30-12:30 = 240
#                -> clk 120 <= 240 met (without the pause 360 > 240 would breach)
#                handling new 10 + open 20 + open 12:30-14:00 90 = 120
#   T4 standard  solved 09:45 without first response: not in first_response_time, but its FR
#                clock stopped at the solve (45 <= 60): FR met | res cal 45 clk 45 met
#                handling new 45
#   T5 standard  FR 30 <= 60 met | reopened 13:00, still open: not in resolution_time; res
#                clock running 10:00-11:00 (60) + Tue 13:00 -> Thu 00:00 (35h = 2100) = 2160
#                > 480 BREACHED (the solved spell 11-13 does not count); not solved: no handling
#   T6 gold      FR 10 met | res running 22:00 -> 00:00 = 120 < 240: not counted
#   T7 lead      created exactly at `since` (in the window); FR cal 180, pending 01-02 -> clk
#                120 = the 2h target: met (breach is strictly over); no resolution target
#   T8 lead      no FR; FR running 09:00 -> 00:00 = 900 > 120 BREACHED; no resolution target
#   X1, X2       created before `since` / exactly at `until`: outside the window
MAIN = [T1, T2, T3, T4, T5, T6, T7, T8, X1, X2]


def main_report(**kwargs: Any) -> dict[str, Any]:
    return report(MAIN, MAIN_POLICY, NOW, SINCE, UNTIL, **kwargs)


def whole(data: dict[str, Any]) -> dict[str, Any]:
    return data["segments"][0]


def breach(rate: float | None, count: int, of: int) -> dict[str, Any]:
    return {"rate": rate, "count": count, "of": of}


NOTHING = breach(None, 0, 0)
NO_TIMES = {"count": 0, "mean_minutes": None, "p50_minutes": None, "p90_minutes": None,
            "mean_clock_minutes": None}


# -- the window -----------------------------------------------------------------------------------

def test_window_is_half_open_since_included_until_excluded():
    data = main_report()
    assert (data["since"], data["until"], data["now"]) == (
        "2026-03-01T00:00:00+00:00", "2026-03-06T00:00:00+00:00", "2026-03-05T00:00:00+00:00")
    assert whole(data)["records"] == 8  # T1..T8; X1 (23:59 the day before), X2 (= until) out
    # T7 sits exactly on `since`; X1 one minute before; X2 exactly on `until`
    assert whole(report([T7, X1, X2], MAIN_POLICY, NOW, SINCE, UNTIL))["records"] == 1


# -- first response and resolution times -----------------------------------------------------

def test_first_response_time_over_the_window():
    # FR cal minutes: T1 20, T2 90, T3 10, T5 30, T6 10, T7 180 (T4, T8: no first response)
    #   sorted 10 10 20 30 90 180; mean 340/6 = 56.67
    #   p50 rank ceil(0.5*6)=3 -> 20; p90 rank ceil(0.9*6)=ceil(5.4)=6 -> 180
    # clock: the same except T7 180 - 60 pending = 120 -> (20+90+10+30+10+120)/6 = 280/6 = 46.67
    assert whole(main_report())["first_response_time"] == {
        "count": 6, "mean_minutes": 56.67, "p50_minutes": 20.0, "p90_minutes": 180.0,
        "mean_clock_minutes": 46.67}


def test_resolution_time_over_the_window():
    # solved: T1 120, T2 360, T3 360, T4 45 (T5 reopened, T6-T8 open)
    #   mean 885/4 = 221.25; sorted 45 120 360 360: p50 rank 2 -> 120, p90 rank ceil(3.6)=4 -> 360
    # clock (pending excluded): T1 120, T2 240, T3 120, T4 45 -> 525/4 = 131.25
    assert whole(main_report())["resolution_time"] == {
        "count": 4, "mean_minutes": 221.25, "p50_minutes": 120.0, "p90_minutes": 360.0,
        "mean_clock_minutes": 131.25}


def test_solved_without_first_response_is_left_out_of_first_response_time():
    seg = whole(report([T4], MAIN_POLICY, NOW, SINCE, UNTIL))
    assert seg["first_response_time"] == NO_TIMES
    assert seg["resolution_time"]["count"] == 1  # 09:00 -> 09:45 = 45
    assert seg["resolution_time"]["mean_minutes"] == 45.0
    # its FR clock stopped at the solve (45 <= 60): it counts as met for compliance
    assert seg["breach_rate"]["first_response"] == breach(0.0, 0, 1)


def test_reopened_record_counts_in_resolution_time_only_once_solved_again():
    seg = whole(report([T5], MAIN_POLICY, NOW, SINCE, UNTIL))
    assert seg["resolution_time"] == NO_TIMES
    assert seg["average_handling_time"] == {"count": 0, "mean_minutes": None, "source": None}
    assert seg["time_in_work_statuses"] == {"count": 0, "mean_minutes": None}
    solved_again = rec("T5", "standard", "web", "support", "", "ticket", "03-03 10:00",
                       "03-03 10:30", "03-04 10:00",
                       "03-03 10:30 open; 03-03 11:00 solved; 03-03 13:00 open; "
                       "03-04 10:00 solved", 2)
    # cal Tue 10:00 -> Wed 10:00 = 1440; clock 1440 - solved spell 11:00-13:00 (120) = 1320
    assert whole(report([solved_again], MAIN_POLICY, NOW, SINCE, UNTIL))["resolution_time"] == {
        "count": 1, "mean_minutes": 1440.0, "p50_minutes": 1440.0, "p90_minutes": 1440.0,
        "mean_clock_minutes": 1320.0}


# -- compliance and breach rates ---------------------------------------------------------------

def test_compliance_and_breach_rate_over_the_window():
    seg = whole(main_report())
    # FR: met T1 T3 T4 T5 T6 T7 (6), breached T2 T8 (2) -> 2/8 = 0.25, compliance 0.75
    # res: met T1 T2 T3 T4 (4), breached T5 (1); T6 running within, T7/T8 no target -> 1/5
    assert seg["breach_rate"] == {"first_response": breach(0.25, 2, 8),
                                  "resolution": breach(0.2, 1, 5)}
    assert seg["compliance_rate"] == {"first_response": 0.75, "resolution": 0.8}


def test_running_clock_inside_its_target_is_not_counted():
    seg = whole(report([T6], MAIN_POLICY, NOW, SINCE, UNTIL))
    assert seg["breach_rate"]["resolution"] == NOTHING  # 120 of 240 used, still running
    assert seg["compliance_rate"] == {"first_response": 1.0, "resolution": None}


def test_running_breached_clock_counts_as_breached():
    seg = whole(report([T8], MAIN_POLICY, NOW, SINCE, UNTIL))
    assert seg["breach_rate"]["first_response"] == breach(1.0, 1, 1)  # 900 > 120, no reply
    assert seg["compliance_rate"]["first_response"] == 0.0


def test_clock_using_exactly_its_target_is_met():
    seg = whole(report([T7], MAIN_POLICY, NOW, SINCE, UNTIL))
    assert seg["breach_rate"]["first_response"] == breach(0.0, 0, 1)  # 120 clock min = 2h


# -- handling time and escalations ---------------------------------------------------------------

def test_time_in_work_statuses_counts_new_and_open_of_solved_records():
    # T1 120, T2 180 (pending and on-hold left out), T3 120, T4 45 -> 465/4 = 116.25
    seg = whole(main_report())
    assert seg["time_in_work_statuses"] == {"count": 4, "mean_minutes": 116.25}
    # no record logs worked time: the average handling time says it is this figure
    assert seg["average_handling_time"] == {"count": 4, "mean_minutes": 116.25,
                                            "source": "work_statuses"}


def test_time_in_work_statuses_with_custom_work_statuses():
    data = main_report(work_statuses=("open", "pending"))
    assert data["work_statuses"] == ["open", "pending"]
    # T1 open 100; T2 open 30 + pending 120 + open 60 = 210; T3 open 20 + pending 240
    # + open 90 = 350; T4 0 (new, then solved) -> 660/4 = 165
    assert whole(data)["time_in_work_statuses"] == {"count": 4, "mean_minutes": 165.0}


def test_average_handling_time_from_worked_time_where_recorded():
    # T1 logged 12 min (720 s) of work in its 120 min in new/open; T3 30 min (1800 s);
    # T5 logged 600 s but is not solved (reopened): left out; T2, T4 log nothing
    worked = {"T1": 720, "T3": 1800, "T5": 600}
    records = [replace(r, worked_seconds=worked[r.id]) if r.id in worked else r for r in MAIN]
    seg = whole(report(records, MAIN_POLICY, NOW, SINCE, UNTIL))
    # solved with worked time: T1 12, T3 30 -> 42/2 = 21 min
    assert seg["average_handling_time"] == {"count": 2, "mean_minutes": 21.0,
                                            "source": "worked_time"}
    assert seg["time_in_work_statuses"] == {"count": 4, "mean_minutes": 116.25}  # unchanged
    # by group: billing (T3 worked 30; T4 none) uses worked time; support (T1 12, T2 none,
    # T5 open, T6 open) too; sales (T7, T8: nothing solved): nothing
    by_group = {s["by"]["group"]: s["average_handling_time"]
                for s in report(records, MAIN_POLICY, NOW, SINCE, UNTIL,
                                by=[("group",)])["segments"][1:]}
    assert by_group == {
        "billing": {"count": 1, "mean_minutes": 30.0, "source": "worked_time"},
        "sales": {"count": 0, "mean_minutes": None, "source": None},
        "support": {"count": 1, "mean_minutes": 12.0, "source": "worked_time"}}
    # by tier: standard (T2, T4 solved, no worked time) falls back to time in work
    # statuses: T2 180, T4 45 -> 112.5
    by_tier = {s["by"]["tier"]: s["average_handling_time"]
               for s in report(records, MAIN_POLICY, NOW, SINCE, UNTIL,
                               by=[("tier",)])["segments"][1:]}
    assert by_tier["standard"] == {"count": 2, "mean_minutes": 112.5, "source": "work_statuses"}
    assert by_tier["gold"] == {"count": 2, "mean_minutes": 21.0, "source": "worked_time"}


def audit_row(rule: str, when: str, before: Any, after: Any, field: str = "escalation_level",
              kind: str = "sync") -> dict[str, Any]:
    return {"at": iso(f"2026-{when}"), "rule": rule, "action": "escalate", "field": field,
            "before": before, "after": after, "kind": kind}


# sla-sync's audit of the main data set (levels now: T1 0, T2 1, T3 0, T5 2, T8 1)
AUDIT = {
    # warned and escalated 09:25, then a revert put the level back to 0; never breached
    "T1": [audit_row("warn-escalate", "03-02 09:25", 0, 1),
           audit_row("warn-escalate", "03-03 08:00", 1, 0, kind="revert")],
    # FR due 11:00 (created 10:00, 1h): escalated at 10:50, before the breach; a tag row
    # is no escalation
    "T2": [audit_row("warn-escalate", "03-02 10:50", 0, 1),
           audit_row("breach-tag", "03-02 11:01", "absent", "present", field="tag:late")],
    # someone had raised it to 1 before sla-sync raised it to 2 (its `before` is 1); no breach
    "T3": [audit_row("breach-escalate", "03-03 09:00", 1, 2)],
    # resolution due Tue 20:00 (60 min before the solve 11:00, 420 more from the reopening
    # at 13:00): escalated exactly at 20:00 -> after the breach; its level is 2 now, above
    # the 1 sla-sync left -> a person raised it
    "T5": [audit_row("breach-escalate", "03-03 20:00", 0, 1)],
    # T8 (level 1) has no audit row: a person escalated it; X1 is outside the window
    "X1": [audit_row("breach-escalate", "03-01 01:00", 0, 1)],
}


def test_escalation_rate_counts_sla_syncs_own_escalations_from_its_audit():
    seg = whole(main_report(audit=AUDIT))
    # escalated by sla-sync: T1, T2, T3, T5 -> 4 of 8 = 0.5; four escalations: before the
    # first breach T1 (none), T2 (10:50 < 11:00), T3 (none); after: T5 (20:00 >= 20:00)
    assert seg["escalation_rate"] == {
        "rate": 0.5, "count": 4, "of": 8, "escalations": 4, "before_breach": 3,
        "after_breach": 1,
        "by_rule": {"breach-escalate": {"before_breach": 1, "after_breach": 1},
                    "warn-escalate": {"before_breach": 2, "after_breach": 0}}}
    # people: T3 (1 before sla-sync's row), T5 (2 > 1 left), T8 (1 > 0) -> 3/8; T2 is at
    # the 1 sla-sync left, T1 at the 0 its revert left
    assert seg["people_escalation_rate"] == {"rate": 0.375, "count": 3, "of": 8}


def test_without_an_audit_every_escalation_is_peoples():
    data = main_report()
    assert data["audit"] is False
    seg = whole(data)
    # escalation_level >= 1: T2 (1), T5 (2), T8 (1) of 8 -> 0.375 (X1, X2 outside the window)
    assert seg["people_escalation_rate"] == {"rate": 0.375, "count": 3, "of": 8}
    assert seg["escalation_rate"] == {"rate": 0.0, "count": 0, "of": 8, "escalations": 0,
                                      "before_breach": 0, "after_breach": 0, "by_rule": {}}
    assert main_report(audit={})["audit"] is True


# -- segments --------------------------------------------------------------------------------------

def test_first_segment_is_the_whole_window():
    data = main_report()
    assert [s["by"] for s in data["segments"]] == [{}]
    assert whole(main_report(by=[("tier",)])) == whole(data)


def test_segments_by_tier_one_per_value_sorted_empty_kept():
    segments = main_report(by=[("tier",)])["segments"][1:]
    assert [(s["by"], s["records"]) for s in segments] == [
        ({"tier": ""}, 2), ({"tier": "gold"}, 3), ({"tier": "standard"}, 3)]
    gold, standard = segments[1], segments[2]
    # gold T1 T3 T6: FR 20 10 10 -> sorted 10 10 20, mean 13.33, p50 rank 2 -> 10, p90 rank 3 -> 20
    assert gold["first_response_time"] == {
        "count": 3, "mean_minutes": 13.33, "p50_minutes": 10.0, "p90_minutes": 20.0,
        "mean_clock_minutes": 13.33}
    # standard T2 T4 T5: FR T2 breached of 3; res T5 breached of 3 (T2, T4 met)
    assert standard["breach_rate"] == {"first_response": breach(0.3333, 1, 3),
                                       "resolution": breach(0.3333, 1, 3)}
    assert standard["compliance_rate"] == {"first_response": 0.6667, "resolution": 0.6667}


def test_segment_where_nothing_counts_still_appears_with_none():
    empty_tier = main_report(by=[("tier",)])["segments"][1]  # T7, T8: leads, no res target
    assert empty_tier["by"] == {"tier": ""} and empty_tier["records"] == 2
    assert empty_tier["resolution_time"] == NO_TIMES
    assert empty_tier["compliance_rate"]["resolution"] is None
    assert empty_tier["breach_rate"]["resolution"] == NOTHING
    assert empty_tier["average_handling_time"] == {"count": 0, "mean_minutes": None,
                                                   "source": None}
    # FR: T7 met, T8 breached -> 1/2; escalated (by a person, no audit): T8 -> 1/2
    assert empty_tier["breach_rate"]["first_response"] == breach(0.5, 1, 2)
    assert empty_tier["people_escalation_rate"] == {"rate": 0.5, "count": 1, "of": 2}


def test_segments_by_a_combination_of_fields():
    segments = main_report(by=[("kind", "source")])["segments"][1:]
    assert [(s["by"], s["records"]) for s in segments] == [
        ({"kind": "lead", "source": "referral"}, 1),  # T8
        ({"kind": "lead", "source": "webinar"}, 1),   # T7
        ({"kind": "ticket", "source": ""}, 6)]        # T1..T6


def test_segments_by_matched_sla_name():
    segments = main_report(by=[("sla",)])["segments"][1:]
    assert [(s["by"], s["records"]) for s in segments] == [
        ({"sla": "gold"}, 3), ({"sla": "leads"}, 2), ({"sla": "standard"}, 3)]


def test_several_breakdowns_follow_each_other():
    segments = main_report(by=[("group",), ("channel",)])["segments"]
    assert [s["by"] for s in segments] == [
        {},
        {"group": "billing"}, {"group": "sales"}, {"group": "support"},  # T3 T4 | T7 T8 | rest
        {"channel": "chat"}, {"channel": "email"}, {"channel": "phone"}, {"channel": "web"}]
    assert [s["records"] for s in segments] == [8, 2, 2, 4, 2, 2, 2, 2]


# T2's first response breached at 11:00 while frontline (ann) held it; sla-sync moved it to
# support and unassigned it at 11:05
MOVED = {**AUDIT, "T2": [*AUDIT["T2"],
                         audit_row("route", "03-02 11:05", "frontline", "support", field="group"),
                         audit_row("route", "03-02 11:05", "ann", "", field="assignee")]}


def test_a_breach_counts_under_the_group_that_held_the_record_then():
    segments = {s["by"]["group"]: s for s in
                main_report(by=[("group",)], audit=MOVED)["segments"][1:]}
    assert list(segments) == ["billing", "frontline", "sales", "support"]
    # frontline holds no record now, only T2's first-response breach: 1/1
    assert segments["frontline"]["records"] == 0
    assert segments["frontline"]["breach_rate"] == {"first_response": breach(1.0, 1, 1),
                                                    "resolution": NOTHING}
    # support: records T1 T2 T5 T6; FR outcomes T1 T5 T6 met (T2's breach is frontline's);
    # res: T1 met, T2 met (not breached: counted where it is now), T5 breached -> 1/3
    support = segments["support"]
    assert support["records"] == 4
    assert support["breach_rate"] == {"first_response": breach(0.0, 0, 3),
                                      "resolution": breach(0.3333, 1, 3)}
    # its times are those of the records now in support: FR T1 20, T2 90, T5 30, T6 10
    assert support["first_response_time"]["count"] == 4
    # without the audit, T2's breach stays in support: FR 1 of 4
    plain = {s["by"]["group"]: s for s in main_report(by=[("group",)])["segments"][1:]}
    assert "frontline" not in plain
    assert plain["support"]["breach_rate"]["first_response"] == breach(0.25, 1, 4)


def test_by_assignee_counts_breaches_under_the_agent_then():
    segments = main_report(by=[("assignee",)], audit=MOVED)["segments"][1:]
    assert [(s["by"], s["records"]) for s in segments] == [({"assignee": ""}, 8),
                                                          ({"assignee": "ann"}, 0)]
    unassigned, ann = segments
    assert ann["breach_rate"]["first_response"] == breach(1.0, 1, 1)  # T2's
    # unassigned: FR T1 T3 T4 T5 T6 T7 met, T8 breached -> 1/7
    assert unassigned["breach_rate"]["first_response"] == breach(0.1429, 1, 7)


def test_record_under_no_sla_is_in_the_empty_sla_segment():
    policy = make_policy([{"name": "gold", "targets": {"first_response": "30m"},
                           "when": {"name": "tier", "operator": "equal_to", "value": "gold"}}])
    segments = report([T1, T2], policy, NOW, SINCE, UNTIL, by=[("sla",)])["segments"][1:]
    assert [(s["by"], s["records"]) for s in segments] == [({"sla": ""}, 1), ({"sla": "gold"}, 1)]
    # T2 (no SLA) has no targets: nothing counts for it
    assert segments[0]["breach_rate"] == {"first_response": NOTHING, "resolution": NOTHING}


# -- trend ---------------------------------------------------------------------------------------

def test_daily_trend_with_empty_buckets():
    data = main_report()
    assert data["trend"]["every"] == "day"
    assert data["trend"]["buckets"] == [
        # Sun: T7 (FR met; no res target)
        {"start": "2026-03-01T00:00:00+00:00", "records": 1,
         "first_response": breach(0.0, 0, 1), "resolution": NOTHING},
        # Mon: T1 (FR met, res met), T2 (FR breached, res met)
        {"start": "2026-03-02T00:00:00+00:00", "records": 2,
         "first_response": breach(0.5, 1, 2), "resolution": breach(0.0, 0, 2)},
        # Tue: T3, T4, T5 FR all met; res T3 met, T4 met, T5 breached -> 1/3
        {"start": "2026-03-03T00:00:00+00:00", "records": 3,
         "first_response": breach(0.0, 0, 3), "resolution": breach(0.3333, 1, 3)},
        # Wed: T6 (FR met, res running within), T8 (FR breached, no res target)
        {"start": "2026-03-04T00:00:00+00:00", "records": 2,
         "first_response": breach(0.5, 1, 2), "resolution": NOTHING},
        # Thu: nothing created; Fri 03-06 is `until`, not a bucket
        {"start": "2026-03-05T00:00:00+00:00", "records": 0,
         "first_response": NOTHING, "resolution": NOTHING},
    ]


def test_daily_trend_buckets_are_utc_days():
    # Tue 00:30 Berlin = Mon 23:30 UTC: in Monday's bucket
    late = rec("L1", "", "web", "support", "", "ticket", "03-03 00:30", None, None, "", 0,
               tz=BERLIN)
    measured = [measure_record(late, MAIN_POLICY, NOW)]
    rows = trend(measured, at("2026-03-02 00:00"), at("2026-03-04 00:00"), "day")
    assert [(r["start"], r["records"]) for r in rows] == [
        ("2026-03-02T00:00:00+00:00", 1), ("2026-03-03T00:00:00+00:00", 0)]


def test_weekly_trend_buckets_start_on_monday():
    # since Mon 02-16: buckets Mon 02-16 (empty), Mon 02-23 (T7, created Sun 03-01),
    # Mon 03-02 (T1-T6, T8); until Fri 03-06
    data = report(MAIN, MAIN_POLICY, NOW, at("2026-02-16 00:00"), UNTIL, every="week")
    assert data["trend"]["every"] == "week"
    assert data["trend"]["buckets"] == [
        {"start": "2026-02-16T00:00:00+00:00", "records": 0,
         "first_response": NOTHING, "resolution": NOTHING},
        # T7 and X1 (Sat 02-28 23:59, inside this wider window): FR T7 met, X1 11 min met;
        # res X1 running since Sat 23:59 (> 4 days) of 4h breached, T7 no target -> 1/1
        {"start": "2026-02-23T00:00:00+00:00", "records": 2,
         "first_response": breach(0.0, 0, 2), "resolution": breach(1.0, 1, 1)},
        # FR: T2, T8 breached of 7 -> 0.2857; res: T5 breached of T1-T5 -> 1/5
        {"start": "2026-03-02T00:00:00+00:00", "records": 7,
         "first_response": breach(0.2857, 2, 7), "resolution": breach(0.2, 1, 5)},
    ]


def test_monthly_trend_buckets_are_utc_months():
    data = report(MAIN, MAIN_POLICY, NOW, at("2026-02-10 00:00"), at("2026-04-01 00:00"),
                  every="month")
    assert data["trend"]["buckets"] == [
        # X1 (Sat 02-28 23:59): FR 11 min met; res running > 4 days of 4h: breached
        {"start": "2026-02-01T00:00:00+00:00", "records": 1,
         "first_response": breach(0.0, 0, 1), "resolution": breach(1.0, 1, 1)},
        # T1-T8 as over the main window, and X2 (created 03-06, after `now`: its clocks have
        # not started, nothing counts): FR T2, T8 of 8; res T5 of 5
        {"start": "2026-03-01T00:00:00+00:00", "records": 9,
         "first_response": breach(0.25, 2, 8), "resolution": breach(0.2, 1, 5)},
    ]


def test_weekly_trend_first_bucket_is_the_monday_before_since():
    # since Sun 03-01 -> first bucket Mon 02-23 (T7 alone: X1 is before since)
    rows = main_report(every="week")["trend"]["buckets"]
    assert [(r["start"], r["records"]) for r in rows] == [
        ("2026-02-23T00:00:00+00:00", 1), ("2026-03-02T00:00:00+00:00", 7)]


# -- first response distribution ---------------------------------------------------------------

EDGES = (15, 30, 60, 120, 240, 480, 1440, None)


def test_first_response_distribution_of_the_data_set():
    # FR cal: T3 10, T6 10 | T1 20, T5 30 (on the edge) | - | T2 90 | T7 180 | - | - | -
    assert main_report()["first_response_distribution"] == [
        {"upto_minutes": e, "count": c} for e, c in zip(EDGES, (2, 2, 0, 1, 1, 0, 0, 0),
                                                        strict=True)]


def test_first_response_distribution_edges_and_open_last_bin():
    replies = {"H1": "2026-03-02 09:15", "H2": "2026-03-02 09:15:30", "H3": "2026-03-02 10:00",
               "H4": "2026-03-02 10:01", "H5": "2026-03-03 09:00", "H6": "2026-03-03 09:01"}
    # minutes after 09:00: 15 | 15.5 | 60 | 61 | 1440 | 1441
    measured = [measure_record(make_record(id=rid, first_response_at=iso(reply)), MAIN_POLICY,
                               NOW) for rid, reply in replies.items()]
    # 15 -> <=15; 15.5 -> <=30; 60 -> <=60; 61 -> <=120; 1440 -> <=1440; 1441 -> open bin
    assert histogram(measured) == [
        {"upto_minutes": e, "count": c} for e, c in zip(EDGES, (1, 1, 1, 1, 0, 0, 1, 1),
                                                        strict=True)]


# -- percentile ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "p50", "p90"), [
    ([7.0], 7.0, 7.0),                        # n=1: ranks ceil(0.5)=1, ceil(0.9)=1
    ([30.0, 10.0], 10.0, 30.0),               # n=2: ranks 1 and ceil(1.8)=2 (unsorted input)
    ([10, 3, 7, 1, 9, 2, 8, 4, 6, 5], 5, 9),  # 1..10: ranks 5 and 9
])
def test_percentile_nearest_rank(values: list[float], p50: float, p90: float):
    assert (percentile(values, 50), percentile(values, 90)) == (p50, p90)


# -- a business-hours calendar: Berlin 09:00-17:00 Monday to Friday -----------------------------

OFFICE = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
OFFICE_POLICY = make_policy(
    [{"name": "office", "calendar": "berlin", "pause_statuses": ["pending"],
      "targets": {"first_response": "1h", "resolution": "2bd"}}],
    calendars={"berlin": {"timezone": BERLIN, "week": OFFICE}})

# fmt: off
# Berlin wall times (UTC+1 all March before the 29th)
#        id    tier        channel  group      src kind      created        first resp     solved         status history                                                                      esc  # noqa: E501
B1 = rec("B1", "standard", "email", "support", "", "ticket", "03-06 16:00", "03-09 10:00", "03-10 11:00", "03-09 10:00 open; 03-10 11:00 solved",                                             0, BERLIN)  # noqa: E501
B2 = rec("B2", "standard", "email", "support", "", "ticket", "03-09 09:00", "03-09 09:30", "03-09 15:00", "03-09 09:30 open; 03-09 11:00 pending; 03-09 13:00 open; 03-09 15:00 solved", 0, BERLIN)  # noqa: E501
B3 = rec("B3", "standard", "email", "support", "", "ticket", "03-07 12:00", "03-09 09:15", None,          "03-09 09:15 open",                                                                 0, BERLIN)  # noqa: E501
# fmt: on
#   B1 Fri 16:00 -> Mon 10:00: cal 2d18h = 66h = 3960; clock Fri 16-17 (60) + Mon 9-10 (60) = 120
#      solved Tue 11:00: cal 4d19h = 91h = 5460; clock 60 + Mon 480 + Tue 9-11 120 = 660
#   B2 Mon 09:00 -> 09:30: 30 / 30; solved 15:00: cal 360, clock 360 - pending 11-13 = 240
#   B3 Sat 12:00 -> Mon 09:15: cal 36h + 9h15 = 45h15 = 2715; clock 15 (weekend closed)
OFFICE_NOW = at("2026-03-11 12:00", tz=BERLIN)  # Wed


def office_report() -> dict[str, Any]:
    return report([B1, B2, B3], OFFICE_POLICY, OFFICE_NOW, at("2026-03-01 00:00"),
                  at("2026-03-16 00:00"))


def test_business_hours_first_response_time():
    # cal 3960, 30, 2715 -> mean 6705/3 = 2235; sorted 30 2715 3960: p50 rank 2, p90 rank 3
    # clock 120 + 30 + 15 = 165 / 3 = 55
    assert whole(office_report())["first_response_time"] == {
        "count": 3, "mean_minutes": 2235.0, "p50_minutes": 2715.0, "p90_minutes": 3960.0,
        "mean_clock_minutes": 55.0}


def test_business_hours_resolution_time():
    # cal 5460, 360 -> mean 2910; p50 rank 1 -> 360; p90 rank 2 -> 5460; clock (660+240)/2 = 450
    assert whole(office_report())["resolution_time"] == {
        "count": 2, "mean_minutes": 2910.0, "p50_minutes": 360.0, "p90_minutes": 5460.0,
        "mean_clock_minutes": 450.0}


def test_business_hours_breaches_use_clock_minutes():
    seg = whole(office_report())
    # FR 1h: B1 120 breached, B2 30 met, B3 15 met -> 1/3
    # res 2bd = 2 x 480 = 960: B1 660 met, B2 240 met, B3 running Mon 09:15-17:00 465 + Tue 480
    #   + Wed 09:00-12:00 180 = 1125 > 960 breached -> 1/3
    assert seg["breach_rate"] == {"first_response": breach(0.3333, 1, 3),
                                  "resolution": breach(0.3333, 1, 3)}


def test_handling_time_is_in_calendar_minutes_even_on_business_hours():
    # B1: new Fri 16:00 -> Mon 10:00 3960 + open Mon 10:00 -> Tue 11:00 1500 = 5460
    # B2: new 30 + open 90 + open 120 = 240 -> (5460 + 240) / 2 = 2850
    assert whole(office_report())["time_in_work_statuses"] == {"count": 2, "mean_minutes": 2850.0}


# -- the queue -----------------------------------------------------------------------------------

QUEUE_POLICY = make_policy([
    {"name": "bare", "when": {"name": "kind", "operator": "equal_to", "value": "lead"},
     "targets": {}},
    {"name": "gold", "when": {"name": "tier", "operator": "equal_to", "value": "gold"},
     "targets": {"first_response": "30m", "resolution": "4h"}, "pause_statuses": ["pending"]},
    {"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"},
     "pause_statuses": ["pending"]},
])
QUEUE_NOW = at("2026-03-02 12:00")

# fmt: off
#       id    tier        channel  group      src kind      created        first resp     solved         status history                        esc  # noqa: E501
Q = [
    rec("Q9", "gold",     "chat",  "support", "", "ticket", "03-02 11:50", None,          None,          "",                                   0),  # noqa: E501
    rec("Q4", "standard", "email", "support", "", "ticket", "03-02 11:30", "03-02 11:35", None,          "03-02 11:35 pending",                0),  # noqa: E501
    rec("Q2", "standard", "email", "support", "", "ticket", "03-02 10:30", None,          None,          "",                                   0),  # noqa: E501
    rec("Q5", "standard", "email", "support", "", "ticket", "03-02 10:00", "03-02 10:05", "03-02 11:00", "03-02 10:05 open; 03-02 11:00 solved", 0),  # noqa: E501
    rec("Q3", "gold",     "chat",  "support", "", "ticket", "03-02 11:50", None,          None,          "",                                   0),  # noqa: E501
    rec("Q6", "standard", "email", "support", "", "ticket", "03-02 08:00", None,          None,          "03-02 08:30 closed",                 0),  # noqa: E501
    rec("Q7", "",         "web",   "sales",   "", "lead",   "03-02 08:00", None,          None,          "",                                   0),  # noqa: E501
    rec("Q1", "standard", "email", "support", "", "ticket", "03-02 10:00", None,          None,          "",                                   0),  # noqa: E501
]
# fmt: on
# at 12:00: Q1 FR 120 of 60 -> -60 (breached) | Q2 FR 90 of 60 -> -30 (breached)
#   Q3, Q9 gold FR 10 of 30 -> 20 each, id breaks the tie | Q4 FR stopped 11:35; res 11:30-11:35
#   counted, pending since -> 480 - 5 = 475 left, paused
#   Q5 solved, Q6 closed: closed statuses, left out | Q7 lead: SLA 'bare' has no targets


def test_queue_orders_by_minutes_left_breached_first_id_breaks_ties():
    rows = queue(Q, QUEUE_POLICY, QUEUE_NOW)
    assert [(r["id"], r["target"], r["minutes_left"], r["breached"]) for r in rows] == [
        ("Q1", "first_response", -60.0, True),
        ("Q2", "first_response", -30.0, True),
        ("Q3", "first_response", 20.0, False),
        ("Q9", "first_response", 20.0, False),
        ("Q4", "resolution", 475.0, False),
    ]


def test_queue_leaves_out_closed_records_and_slas_without_targets():
    ids = {r["id"] for r in queue(Q, QUEUE_POLICY, QUEUE_NOW)}
    assert ids.isdisjoint({"Q5", "Q6", "Q7"})


def test_queue_row_shows_pause_and_due_time():
    rows = {r["id"]: r for r in queue(Q, QUEUE_POLICY, QUEUE_NOW)}
    assert (rows["Q4"]["paused"], rows["Q4"]["sla"], rows["Q4"]["status"]) == (
        True, "standard", "pending")
    assert rows["Q1"]["paused"] is False
    # Q1: 1h from 10:00 -> breached at 11:00; 120/60 = 200% used
    assert (rows["Q1"]["due_at"], rows["Q1"]["elapsed_pct"]) == ("2026-03-02T11:00:00+00:00", 200.0)
    # Q3: gold 30m from 11:50 -> due 12:20, 10/30 = 33.3%
    assert (rows["Q3"]["due_at"], rows["Q3"]["elapsed_pct"]) == ("2026-03-02T12:20:00+00:00", 33.3)
