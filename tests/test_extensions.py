"""Extensions (issue 14 item 6): an agent grants one record extra time, by a tag, the
custom field or `sla-sync extend`; the due time moves where the engine picks the record's
target, a rerun extends nothing twice, the audit says who and why, and reports count a
clock met with an extension as extended. Due times worked by hand in the comments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import (
    act,
    at,
    cli,
    cond,
    iso,
    make_policy,
    make_record,
    record_dict,
    rule,
    write_project,
)
from sla_sync.rules.engine import evaluate
from sla_sync.rules.explain import explain
from sla_sync.rules.extensions import extensions_of
from sla_sync.rules.planner import plan

LATE = rule("late", cond("resolution_breached", "is_true"), act("escalate", level=1))
POLICY: dict[str, Any] = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [LATE],
}
OFFICE = {"timezone": "UTC", "week": {d: ["09:00-17:00"] for d in
                                      ("mon", "tue", "wed", "thu", "fri")}}


def records(path: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in json.loads(path.read_text())["records"]}


def test_a_tag_moves_the_due_time_on_a_24x7_calendar() -> None:
    policy = make_policy(rules=[LATE])
    # created Mon 09:00, resolution 8h: due 17:00; +2h: 19:00; first response 10:00 -> 12:00
    plain = evaluate(make_record(), policy, at("2026-03-02 18:00"))
    assert plain.clocks["resolution"].due_at == at("2026-03-02 17:00")
    assert plain.clocks["resolution"].breached
    extended = evaluate(make_record(tags=["sla_extend_2h"]), policy, at("2026-03-02 18:00"))
    assert extended.clocks["resolution"].due_at == at("2026-03-02 19:00")
    assert extended.clocks["first_response"].due_at == at("2026-03-02 12:00")
    assert not extended.clocks["resolution"].breached
    assert extended.facts["resolution_minutes_left"] == 60
    # two different grants add up; a target-only one moves that target alone
    both = evaluate(make_record(tags=["sla_extend_2h", "SLA_EXTEND_resolution_30m"]), policy,
                    at("2026-03-02 18:00"))
    assert both.clocks["resolution"].due_at == at("2026-03-02 19:30")
    assert both.clocks["first_response"].due_at == at("2026-03-02 12:00")


def test_an_extension_counts_business_time_through_the_weekend() -> None:
    policy = make_policy(slas=[{"name": "office", "calendar": "office",
                                "targets": {"resolution": "8h"}}], calendars={"office": OFFICE})
    fri = dict(created_at=iso("2026-03-06 15:00"), updated_at=iso("2026-03-06 15:00"))
    # Fri 15:00-17:00 is 2h, Mon 09:00-15:00 the other 6h: due Mon 15:00
    assert evaluate(make_record(**fri), policy, at("2026-03-06 16:00")).clocks[
        "resolution"].due_at == at("2026-03-09 15:00")
    # +3h: Fri 2h, Mon 8h, Tue 09:00-10:00: due Tue 10:00
    assert evaluate(make_record(**fri, tags=["sla_extend_resolution_3h"]), policy,
                    at("2026-03-06 16:00")).clocks["resolution"].due_at == \
        at("2026-03-10 10:00")
    # +1bd (a working day of this calendar, 8h): Fri 2h, Mon 8h, Tue 6h: due Tue 15:00
    assert evaluate(make_record(**fri, custom={"sla_extend": "resolution 1bd"}), policy,
                    at("2026-03-06 16:00")).clocks["resolution"].due_at == \
        at("2026-03-10 15:00")


def test_what_cannot_be_read_is_ignored_and_explain_says_so() -> None:
    policy = make_policy(rules=[LATE])
    record = make_record(tags=["sla_extend_2h", "sla_extend_nope_1h", "sla_extend_soon"],
                         custom={"sla_extend": "2h"})  # the same grant as the tag: once
    found = extensions_of(record)
    assert [(e.targets, e.text) for e in found.granted] == [
        (("first_response", "resolution"), "2h")]
    assert found.ignored == (
        "tag sla_extend_nope_1h: unknown target 'nope' (known: first_response, resolution, "
        "next_response, periodic_update, pausable_update, time_to_own, agent_work_time, "
        "requester_wait_time)",
        "tag sla_extend_soon: expected DURATION or TARGET_DURATION (e.g. 2h, resolution_4h)")
    text = explain(plan(record, policy, at("2026-03-02 18:00")), policy)
    assert "  extension: tag sla_extend_2h: +2h on first_response, resolution" in text
    assert "  extension: ignored: tag sla_extend_soon: expected DURATION" in text


def test_the_extend_command_writes_once_and_the_next_run_sees_the_due_time_moved(
        tmp_path: Path) -> None:
    config = write_project(tmp_path, [record_dict(id="A"), record_dict(id="B")], POLICY)
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 12:00")).exit_code == 0
    granted = cli("extend", "A", "2h", "--reason", "waiting on the vendor", "--by", "alice",
                  "--config", str(config))
    assert granted.exit_code == 0, granted.stderr
    assert "record 'A': sla_extend_2h written" in granted.stdout
    held = records(tmp_path / "helpdesk.json")["A"]
    assert held["tags"] == ["sla_extend_2h"]
    assert held["notes"][-1]["text"] == ("SLA extension: +2h on first response and "
                                         "resolution, granted by alice: waiting on the vendor")
    again = cli("extend", "A", "2h", "--reason", "again", "--config", str(config))
    assert again.exit_code == 0
    assert "already carries sla_extend_2h: nothing written" in again.stdout
    assert len(records(tmp_path / "helpdesk.json")["A"]["notes"]) == 1
    audit = [json.loads(line) for line in
             cli("audit", "--config", str(config), "--json").stdout.splitlines()]
    assert [(r["record"], r["rule"], r["action"], r["field"], r["after"]) for r in audit] == [
        ("A", "extend by alice", "extend", "tag:sla_extend_2h", "present"),
        ("A", "extend by alice", "extend", "note", held["notes"][-1]["text"])]
    # 18:00: B ran out at 17:00 and is escalated; A is due at 19:00
    late = cli("run", "--config", str(config), "--now", iso("2026-03-02 18:00"))
    assert late.exit_code == 0, late.stderr
    now = records(tmp_path / "helpdesk.json")
    assert (now["A"]["escalation_level"], now["B"]["escalation_level"]) == (0, 1)
    rerun = cli("run", "--config", str(config), "--now", iso("2026-03-02 18:30"), "--full",
                "--json")
    assert json.loads(rerun.stdout.splitlines()[-1])["writes"] == 0
    # 19:30: A's extended time ran out too
    cli("run", "--config", str(config), "--now", iso("2026-03-02 19:30"))
    assert records(tmp_path / "helpdesk.json")["A"]["escalation_level"] == 1


def test_the_extend_command_refuses_bad_input_without_a_traceback(tmp_path: Path) -> None:
    config = write_project(tmp_path, [record_dict(id="A")], POLICY)
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 12:00")).exit_code == 0
    bad = cli("extend", "A", "soon", "--reason", "x", "--config", str(config))
    assert bad.exit_code == 2 and "DURATION: 'soon' is not a duration" in bad.stderr
    target = cli("extend", "A", "2h", "--target", "nope", "--reason", "x", "--config",
                 str(config))
    assert target.exit_code == 2 and "--target: unknown target 'nope'" in target.stderr
    missing = cli("extend", "Z", "2h", "--reason", "x", "--config", str(config))
    assert missing.exit_code == 3 and "record 'Z': the helpdesk has no such record" in \
        missing.stderr
    assert records(tmp_path / "helpdesk.json")["A"]["tags"] == []


def test_a_report_counts_a_clock_met_with_an_extension_as_extended(tmp_path: Path) -> None:
    solved = dict(status="solved", solved_at=iso("2026-03-02 18:00"),
                  first_response_at=iso("2026-03-02 09:30"),
                  status_history=[{"at": iso("2026-03-02 18:00"), "status": "solved"}],
                  updated_at=iso("2026-03-02 18:00"))
    config = write_project(tmp_path, [
        record_dict(id="A", tags=["sla_extend_resolution_2h"], **solved),  # 18:00 < 19:00
        record_dict(id="B", **solved),  # breached at 17:00
        record_dict(id="C", **{**solved, "solved_at": iso("2026-03-02 16:00"),
                               "status_history": [{"at": iso("2026-03-02 16:00"),
                                                   "status": "solved"}]})], POLICY)
    assert cli("run", "--config", str(config), "--now", iso("2026-03-03 12:00")).exit_code == 0
    result = cli("report", "--config", str(config), "--now", iso("2026-03-03 12:00"),
                 "--since", "2026-03-01", "--format", "json")
    assert result.exit_code == 0, result.stderr
    overall = json.loads(result.stdout)["segments"][0]
    assert overall["extended_rate"]["resolution"] == {"rate": 0.3333, "count": 1, "of": 3}
    assert overall["breach_rate"]["resolution"]["count"] == 1
    assert overall["compliance_rate"]["resolution"] == 0.3333  # C alone met on its terms
    assert overall["extended_rate"]["first_response"]["count"] == 0  # not extended
    table = cli("report", "--config", str(config), "--now", iso("2026-03-03 12:00"),
                "--since", "2026-03-01").stdout
    assert "extended (met with an agent's extension, not counted as met): resolution 1" \
        in table


def test_a_backtest_keeps_an_extension_as_part_of_the_history(tmp_path: Path) -> None:
    from sla_sync.sync_author import _history
    config = write_project(tmp_path, [record_dict(id="A")], POLICY)
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 12:00")).exit_code == 0
    assert cli("extend", "A", "2h", "--reason", "vendor", "--by", "alice", "--config",
               str(config)).exit_code == 0
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 18:00")).exit_code == 0
    # the backtest undoes sla-sync's own writes (none here but the extension), not the
    # agent's extension
    records, audit = _history(str(config), None)
    assert [r.tags for r in records] == [("sla_extend_2h",)]
    assert audit == {}


def test_an_extend_run_is_not_reverted_and_says_how_to_withdraw_it(tmp_path: Path) -> None:
    config = write_project(tmp_path, [record_dict(id="A")], POLICY)
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 12:00")).exit_code == 0
    granted = cli("extend", "A", "1h", "--reason", "x", "--config", str(config))
    assert "(run 2)" in granted.stdout
    refused = cli("revert", "2", "--config", str(config))
    assert refused.exit_code == 2
    assert "run 2 granted an extension (sla-sync extend), not a sync: withdraw it by " \
        "removing its tag from the record" in refused.stderr


def test_an_extension_across_the_dst_change_counts_local_working_time() -> None:
    berlin = {**OFFICE, "timezone": "Europe/Berlin"}
    policy = make_policy(slas=[{"name": "office", "calendar": "office",
                                "targets": {"resolution": "8h"}}], calendars={"office": berlin})
    # Fri 27 Mar 15:00 CET (14:00 UTC); clocks go forward Sun 29 Mar. Fri 2h, Mon 6h: due
    # Mon 30 Mar 15:00 CEST = 13:00 UTC; +1bd (8h of this calendar): Tue 15:00 CEST
    fri = dict(created_at=iso("2026-03-27 15:00", "Europe/Berlin"),
               updated_at=iso("2026-03-27 15:00", "Europe/Berlin"))
    now = at("2026-03-27 16:00", "Europe/Berlin")
    assert evaluate(make_record(**fri), policy, now).clocks["resolution"].due_at == \
        at("2026-03-30 13:00")
    assert evaluate(make_record(**fri, tags=["sla_extend_1bd"]), policy, now).clocks[
        "resolution"].due_at == at("2026-03-31 13:00")
