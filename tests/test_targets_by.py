"""An SLA's targets by a record field (`targets_by`, issue 14 item 5), worked out by hand:
the row of the record's value over the SLA's own targets, a value not listed, a change of
priority mid-clock, the checker's paths, explain, and a sync through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import act, at, cli, cond, iso, make_policy, make_record, record_dict, rule
from sla_sync.rules.clock import NO_TARGET_MINUTES_LEFT
from sla_sync.rules.engine import evaluate
from sla_sync.rules.explain import explain, explain_data
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import PolicyError, check_policy
from sla_sync.rules.wake import policy_digest

SUPPORT = {"name": "support", "targets": {"first_response": "4h"},
           "targets_by": {"field": "priority", "values": {
               "urgent": {"first_response": "30m"},
               "high": {"first_response": "1h", "resolution": "8h"}}}}
CREATED = "2026-03-02 12:00"
NOW = at("2026-03-02 12:45")


def clocks_of(priority: str, now: Any = NOW, **fields: Any) -> dict[str, Any]:
    fields = {"created_at": iso(CREATED), "updated_at": iso(CREATED), **fields}
    ev = evaluate(make_record(priority=priority, **fields), make_policy([SUPPORT]), now)
    return ev.facts


def test_the_row_of_the_records_value_sets_its_targets() -> None:
    urgent = clocks_of("urgent")  # 30m from 12:00: breached at 12:30
    assert urgent["first_response_breached"] is True
    assert urgent["first_response_minutes_left"] == -15
    high = clocks_of("high")  # 1h: 15 minutes left; and a resolution target of its own
    assert high["first_response_breached"] is False
    assert high["first_response_minutes_left"] == 15
    assert high["resolution_minutes_left"] == 8 * 60 - 45


def test_a_value_not_listed_takes_the_slas_own_targets() -> None:
    normal = clocks_of("normal")  # 4h: 3h15 left; no resolution target anywhere for it
    assert normal["first_response_minutes_left"] == 195
    assert normal["resolution_minutes_left"] == NO_TARGET_MINUTES_LEFT
    assert normal["resolution_breached"] is False


def test_a_row_overrides_only_the_targets_it_names() -> None:
    policy = make_policy([{**SUPPORT, "targets": {"first_response": "4h", "resolution": "2d"}}])
    urgent = evaluate(make_record(priority="urgent", created_at=iso(CREATED),
                                  updated_at=iso(CREATED)), policy, NOW).facts
    assert urgent["first_response_minutes_left"] == -15  # the row's 30m
    assert urgent["resolution_minutes_left"] == 2 * 24 * 60 - 45  # the SLA's 2d


def test_a_priority_raised_mid_clock_keeps_the_elapsed_time_and_takes_the_rows_target() -> None:
    # Normal at 12:20 (20 of 240 minutes), raised to urgent at 12:40: by 12:45, 45 minutes
    # have run against the urgent row's 30m.
    before = clocks_of("normal", now=at("2026-03-02 12:20"))
    assert before["first_response_breached"] is False
    assert before["first_response_minutes_left"] == 220
    facts = clocks_of("urgent", updated_at=iso("2026-03-02 12:40"))
    assert facts["first_response_breached"] is True
    assert facts["first_response_elapsed_pct"] == 150


def test_a_custom_field_can_pick_the_row() -> None:
    policy = make_policy([{"name": "contract", "targets": {"first_response": "4h"},
                           "targets_by": {"field": "custom.plan",
                                          "values": {"premium": {"first_response": "1h"}}}}])
    premium = evaluate(make_record(created_at=iso(CREATED), updated_at=iso(CREATED),
                                   custom={"plan": "premium"}), policy, NOW).facts
    other = evaluate(make_record(created_at=iso(CREATED), updated_at=iso(CREATED),
                                 custom={"plan": "basic"}), policy, NOW).facts
    assert premium["first_response_minutes_left"] == 15
    assert other["first_response_minutes_left"] == 195


@pytest.mark.parametrize(("targets_by", "path", "message"), [
    ("priority", "slas[0].targets_by", "expected {\"field\""),
    ({"field": "colour", "values": {"x": {}}}, "slas[0].targets_by.field", "'colour'"),
    ({"field": "priority"}, "slas[0].targets_by.values", "field value -> its targets"),
    ({"field": "priority", "values": {}}, "slas[0].targets_by.values",
     "field value -> its targets"),
    ({"field": "priority", "values": {"urgent": {"first_response": "soon"}}},
     "slas[0].targets_by.values.urgent.first_response", "soon"),
    ({"field": "priority", "values": {"urgent": {"first_reply": "1h"}}},
     "slas[0].targets_by.values.urgent.first_reply", "unknown target"),
    ({"field": "kind", "values": {"leed": {"first_response": "1h"}}},
     "slas[0].targets_by.values.leed", "unknown kind 'leed'"),
    ({"field": "priority", "values": {"urgent": {"first_response": "1h"}}, "default": {}},
     "slas[0].targets_by.default", ""),
])
def test_a_broken_matrix_is_refused_naming_its_json_path(targets_by: Any, path: str,
                                                        message: str) -> None:
    with pytest.raises(PolicyError) as info:
        check_policy({"slas": [{"name": "s", "targets_by": targets_by}], "rules": []}, "p")
    found = [p for p in info.value.problems if p.path == path]
    assert found, f"no problem at {path}: {info.value.problems}"
    assert message in found[0].message


def test_a_matrix_without_targets_of_its_own_is_not_warned_about() -> None:
    policy = make_policy([{"name": "s", "targets_by": {
        "field": "priority", "values": {"urgent": {"first_response": "1h"}}}}])
    assert not [w for w in policy.warnings if "no targets" in w.message]


def test_a_changed_row_changes_the_policy_digest() -> None:
    """A changed row must make the next sync evaluate everything (the wake-up index's
    answers were worked out with the old targets)."""
    changed = {**SUPPORT, "targets_by": {"field": "priority", "values": {
        "urgent": {"first_response": "20m"},
        "high": {"first_response": "1h", "resolution": "8h"}}}}
    assert policy_digest(make_policy([SUPPORT])) != policy_digest(make_policy([changed]))
    assert policy_digest(make_policy([SUPPORT])) == policy_digest(make_policy([SUPPORT]))


def test_explain_names_the_row_that_applied() -> None:
    policy = make_policy([SUPPORT])
    urgent = plan(make_record(priority="urgent", created_at=iso(CREATED),
                              updated_at=iso(CREATED)), policy, NOW)
    normal = plan(make_record(priority="normal", created_at=iso(CREATED),
                              updated_at=iso(CREATED)), policy, NOW)
    assert "targets by priority = 'urgent': row 'urgent' over the SLA's targets" \
        in explain(urgent, policy)
    assert "targets by priority = 'normal': not listed: the SLA's own targets" \
        in explain(normal, policy)
    assert explain_data(urgent, policy)["sla"]["targets_by"] == {
        "field": "priority", "value": "urgent", "row": True}


def test_a_sync_escalates_by_the_matrix(tmp_path: Path) -> None:
    """Through `sla-sync run` on the file helpdesk: of two tickets created together, the
    urgent one is breached on its row's 30m and tagged; the normal one (4h) is not."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"slas": [SUPPORT], "rules": [rule(
        "breached", cond("first_response_breached", "is_true"),
        act("add_tag", tag="sla_breached"))]}))
    desk = tmp_path / "helpdesk.json"
    desk.write_text(json.dumps({"records": [
        record_dict(id=f"T-{p}", priority=p, created_at=iso(CREATED), updated_at=iso(CREATED))
        for p in ("urgent", "normal")]}))
    config = tmp_path / "config.yaml"
    config.write_text(f"connector: {{type: file, path: {desk}}}\npolicy: {policy}\n"
                      f"state: {tmp_path / 'state.db'}\nfirst_run: act\n")
    result = cli("run", "--config", str(config), "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output
    tags = {r["id"]: r["tags"] for r in json.loads(desk.read_text())["records"]}
    assert tags == {"T-urgent": ["sla_breached"], "T-normal": []}
    again = cli("run", "--config", str(config), "--now", NOW.isoformat())
    assert "writes 0" in again.output
