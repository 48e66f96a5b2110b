"""The breach audit (`report --breaches`) on the hand-written data set of test_metrics.py,
every expected number worked out by hand in the comments."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from conftest import act, at, cli, cond, iso, record_dict, rule, write_project
from sla_sync.rules.breaches import breaches
from sla_sync.sync_report import BREACH_COLUMNS
from test_metrics import AUDIT, MAIN, MAIN_POLICY, NOW, SINCE, UNTIL, audit_row

# Breached clocks of the main data set at NOW (Thu 03-05 00:00), all 24x7, no pause after
# the breach, so the calendar and the clock minutes over are equal:
#   X1 gold  res 4h from Sat 02-28 23:59 -> due Sun 03-01 03:59 (created before `since`,
#            breached inside the window: listed); running: over 03:59 -> Thu 00:00 =
#            3d 20h 01m = 5521
#   T2 std   FR 1h from Mon 10:00 -> due 11:00; answered 11:30: over 30
#   T5 std   res 8h: 10:00-11:00 (60), solved 11:00-13:00 (a pause: reopened), 420 more from
#            13:00 -> due Tue 20:00; running: over Tue 20:00 -> Thu 00:00 = 28h = 1680
#   T8 lead  FR 2h from Wed 09:00 -> due 11:00; running: over 13h = 780
#   X2 (created at `until`) is out; T6's resolution is running within its target


def rows(**kwargs: Any) -> list[dict[str, Any]]:
    return breaches(MAIN, MAIN_POLICY, NOW, SINCE, UNTIL, **kwargs)["breaches"]


def test_one_row_per_breached_clock_in_order_of_breach():
    assert [(r["id"], r["target"], r["sla"], r["target_minutes"], r["due_at"], r["breached_at"],
             r["stopped_at"], r["time_over_minutes"], r["clock_over_minutes"])
            for r in rows()] == [
        ("X1", "resolution", "gold", 240.0, iso("2026-03-01 03:59"), iso("2026-03-01 03:59"),
         None, 5521.0, 5521.0),
        ("T2", "first_response", "standard", 60.0, iso("2026-03-02 11:00"),
         iso("2026-03-02 11:00"), iso("2026-03-02 11:30"), 30.0, 30.0),
        ("T5", "resolution", "standard", 480.0, iso("2026-03-03 20:00"),
         iso("2026-03-03 20:00"), None, 1680.0, 1680.0),
        ("T8", "first_response", "leads", 120.0, iso("2026-03-04 11:00"),
         iso("2026-03-04 11:00"), None, 780.0, 780.0)]


def test_a_breach_outside_the_window_is_left_out():
    # [Mon 03-02 11:00, Wed 03-04 11:00): T2 (on since) and T5; X1 before, T8 on until
    found = breaches(MAIN, MAIN_POLICY, NOW, at("2026-03-02 11:00"), at("2026-03-04 11:00"))
    assert [r["id"] for r in found["breaches"]] == ["T2", "T5"]


def test_periods_by_month_and_by_week():
    assert {r["period"] for r in rows(every="month")} == {"2026-03-01T00:00:00+00:00"}
    # Sun 03-01 is in the week from Mon 02-23; the others in the week from Mon 03-02
    assert [r["period"][:10] for r in rows(every="week")] == [
        "2026-02-23", "2026-03-02", "2026-03-02", "2026-03-02"]


def test_team_and_assignee_at_breach_go_back_through_sla_syncs_later_reassignments():
    audit = {**AUDIT, "T2": [
        *AUDIT["T2"],
        # before the breach (11:00): the value now stands for it
        audit_row("assign", "03-02 10:30", "", "", field="assignee"),
        # after it: sla-sync moved it from frontline to support, its group now
        audit_row("breach-route", "03-02 11:05", "frontline", "support", field="group")]}
    found = {r["id"]: r for r in rows(audit=audit)}
    assert (found["T2"]["group"], found["T2"]["assignee"], found["T2"]["held_by"]) == (
        "frontline", "", "audit")
    assert (found["T5"]["group"], found["T5"]["held_by"]) == ("support", "record")


def test_what_sla_sync_did_with_minutes_from_the_breach():
    found = {r["id"]: r for r in rows(audit=AUDIT)}
    # T2: escalated 10:50, 10 min before the 11:00 breach; tagged 11:01, 1 min after
    assert [(d["rule"], d["action"], d["field"], d["after"], d["minutes_from_breach"])
            for d in found["T2"]["sla_sync_did"]] == [
        ("warn-escalate", "escalate", "escalation_level", 1, -10.0),
        ("breach-tag", "escalate", "tag:late", "present", 1.0)]
    assert found["T8"]["sla_sync_did"] == []  # no audit row


POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [rule("late", {"all": [cond("first_response_breached", "is_true")]},
                   act("escalate", level=1, group="tier2"))],
}


def test_the_cli_lists_breaches_as_table_json_and_csv(tmp_path: Path) -> None:
    # A created 09:00 (FR due 10:00), B 09:30 (due 10:30), C 10:00 (due 11:00), all support
    config = write_project(tmp_path, [
        record_dict(id="A", subject="Printer"),
        record_dict(id="B", created_at=iso("2026-03-02 09:30"),
                    updated_at=iso("2026-03-02 09:30")),
        record_dict(id="C", created_at=iso("2026-03-02 10:00"),
                    updated_at=iso("2026-03-02 10:00"))], POLICY)
    # 10:20: A breached 20 min ago -> late: level 1, moved to tier2
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20")).exit_code == 0
    now = iso("2026-03-02 10:40")
    # at 10:40: A over 40 min, B over 10 min (not yet written: no run since 10:20)
    result = cli("report", "--config", str(config), "--now", now, "--breaches", "--format",
                 "json", "--every", "month")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)["breaches"]
    assert [(r["id"], r["time_over_minutes"], r["group"], r["held_by"]) for r in found] == [
        ("A", 40.0, "support", "audit"), ("B", 10.0, "support", "record")]
    assert [(d["rule"], d["field"], d["after"], d["minutes_from_breach"])
            for d in found[0]["sla_sync_did"]] == [
        ("late", "escalation_level", 1, 20.0), ("late", "group", "tier2", 20.0)]
    table = cli("report", "--config", str(config), "--now", now, "--breaches", "--every",
                "month").stdout
    lines = table.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "month of 2026-03-01: 2 breached clock(s)" in lines
    a_row = next(i for i, line in enumerate(lines) if line.startswith("A "))
    assert lines[a_row].split() == ["A", "standard", "FR", "03-02", "10:00", "40m",
                                    "support/-*"]
    assert lines[a_row + 1] == " " * 10 + "sla-sync: escalate +20m"
    assert lines[a_row + 3] == " " * 10 + "sla-sync: nothing"  # B
    rows_ = list(csv.reader(io.StringIO(cli("report", "--config", str(config), "--now", now,
                                            "--breaches", "--format", "csv").stdout)))
    assert tuple(rows_[0]) == BREACH_COLUMNS
    a_csv = dict(zip(BREACH_COLUMNS, rows_[1], strict=True))
    assert (a_csv["id"], a_csv["time_over_minutes"], a_csv["stopped_at"]) == ("A", "40.0", "")
    assert a_csv["sla_sync_did"] == (f"{iso('2026-03-02 10:20')} late escalate "
                                     f"escalation_level=1 | {iso('2026-03-02 10:20')} late "
                                     "escalate group=tier2")


def test_breaches_refuse_a_breakdown_and_chart_formats(tmp_path: Path) -> None:
    config = write_project(tmp_path, [record_dict(id="A")], POLICY)
    for extra in (["--by", "tier"], ["--format", "html"]):
        result = cli("report", "--config", str(config), "--breaches", *extra)
        assert result.exit_code == 2
        assert "--breaches lists clocks: it takes --format table, json or csv" in result.stderr


def test_the_breach_list_shows_times_in_the_timezone_asked(tmp_path: Path) -> None:
    """A breached 10:00 UTC (FR due then): 11:00 in Berlin (CET) in the table, and the CSV's
    instants carry Berlin's offset; JSON keeps UTC instants."""
    config = write_project(tmp_path, [record_dict(id="A", subject="Printer")], POLICY)
    now = iso("2026-03-02 10:40")
    assert cli("run", "--config", str(config), "--now", now).exit_code == 0
    args = ("report", "--config", str(config), "--now", now, "--breaches", "--timezone",
            "Europe/Berlin")
    lines = cli(*args).stdout.splitlines()
    assert lines[1].endswith("; times in Europe/Berlin")
    a_row = next(line for line in lines if line.startswith("A "))
    assert a_row.split()[3:5] == ["03-02", "11:00"]
    rows_ = list(csv.reader(io.StringIO(cli(*args, "--format", "csv").stdout)))
    a_csv = dict(zip(BREACH_COLUMNS, rows_[1], strict=True))
    assert (a_csv["due_at"], a_csv["breached_at"]) == ("2026-03-02T11:00:00+01:00",) * 2
    assert a_csv["created_at"] == "2026-03-02T10:00:00+01:00"
    found = json.loads(cli(*args, "--format", "json").stdout)["breaches"]
    assert found[0]["breached_at"] == iso("2026-03-02 10:00")


def test_with_an_assignment_history_the_holder_at_the_breach_is_exact():
    """T2 breached its first response at 11:00 in frontline with ana; at 11:20 a person
    moved it to support and bo (no sla-sync audit row): the history says who held it."""
    from sla_sync.connector.model import Record
    moved = [Record.from_dict({**r.to_dict(), "group": "support", "assignee": "bo",
                               "assignment_history": [
                                   {"at": iso("2026-03-02 10:00"), "group": "frontline",
                                    "assignee": "ana"},
                                   {"at": iso("2026-03-02 11:20"), "group": "support",
                                    "assignee": "bo"}]})
             if r.id == "T2" else r for r in MAIN]
    found = {r["id"]: r for r in breaches(moved, MAIN_POLICY, NOW, SINCE,
                                          UNTIL)["breaches"]}
    assert (found["T2"]["group"], found["T2"]["assignee"], found["T2"]["held_by"],
            found["T2"]["team_at_breach"]) == ("frontline", "ana", "history", "frontline")
    assert found["T5"]["held_by"] == "record"  # no history: as before
