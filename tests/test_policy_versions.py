"""Policy versions (issue 14 item 8): an SLA's `valid_from` and `applies_to`; a record keeps
the version it started under unless the policy says `open`; explain says which applies.
Due times worked by hand in the comments (24x7 calendar, UTC)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

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
from sla_sync.rules.explain import explain, explain_data
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import PolicyError, check_policy
from sla_sync.rules.wake import Wakes, policy_digest

LATE = rule("late", cond("first_response_breached", "is_true"), act("escalate", level=1))


def versions(applies_to: str | None = None, valid_from: str = "2026-03-02T12:00:00+01:00",
             ) -> list[dict[str, Any]]:
    """v2 (first response 30m) from 11:00 UTC on; v1 (first response 1h) before."""
    new: dict[str, Any] = {"name": "standard", "valid_from": valid_from,
                           "targets": {"first_response": "30m"}}
    if applies_to:
        new["applies_to"] = applies_to
    return [new, {"name": "standard", "targets": {"first_response": "1h"}}]


def problems(slas: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        check_policy({"slas": slas})
    return [str(p) for p in caught.value.problems]


def test_the_checker_knows_the_keys_and_names_the_path() -> None:
    assert problems([{"name": "a", "valid_from": "2026-03-02T12:00:00"}]) == [
        "slas[0].valid_from: '2026-03-02T12:00:00' has no UTC offset (refusing to guess a "
        "timezone) (write e.g. 2026-04-01T00:00:00+02:00)"]
    assert problems([{"name": "a", "valid_from": "soon"}])[0].startswith(
        "slas[0].valid_from: 'soon' is not an ISO 8601 timestamp")
    assert problems([{"name": "a", "valid_from": "2026-03-02T12:00:00Z",
                      "applies_to": "all"}]) == [
        "slas[0].applies_to: expected one of new, open, got 'all'"]
    assert problems([{"name": "a", "applies_to": "open"}]) == [
        "slas[0].applies_to: only a version of an SLA has it: give valid_from too"]
    assert problems([{"name": "a", "valid_from": "2026-03-02T12:00:00Z"},
                     {"name": "a", "valid_from": "2026-03-02T12:00:00Z"}]) == [
        "slas[1].valid_from: another version of SLA 'a' is valid from the same instant "
        "(index 0)"]
    assert problems([{"name": "a"}, {"name": "a"}]) == [
        "slas[1].name: duplicate SLA name 'a' (also at index 0)"]
    # versions of one SLA share its name; the older one without `when` is no dead fallback
    policy = make_policy(slas=versions())
    assert [s.name for s in policy.slas] == ["standard", "standard"]
    assert [str(w) for w in policy.warnings] == []
    alone = make_policy(slas=versions()[:1])
    assert [str(w) for w in alone.warnings] == [
        "slas[0].valid_from: no older version of SLA 'standard' follows it: the records it "
        "does not apply to (created before 2026-03-02T11:00:00+00:00) fall to the next SLA "
        "that matches, or none"]


def test_a_record_keeps_the_version_it_started_under() -> None:
    policy = make_policy(slas=versions(), rules=[LATE])
    old = make_record(id="old")  # created 09:00, before the new version: 1h, due 10:00
    new = make_record(id="new", created_at=iso("2026-03-02 11:10"),
                      updated_at=iso("2026-03-02 11:10"))  # 30m: due 11:40
    now = at("2026-03-02 11:20")
    assert evaluate(old, policy, now).sla.index == 1  # type: ignore[union-attr]
    assert evaluate(old, policy, now).clocks["first_response"].due_at == at("2026-03-02 10:00")
    assert evaluate(new, policy, now).sla.index == 0  # type: ignore[union-attr]
    assert evaluate(new, policy, now).clocks["first_response"].due_at == at("2026-03-02 11:40")


def test_applies_to_open_moves_the_records_open_then() -> None:
    policy = make_policy(slas=versions("open"))
    now = at("2026-03-02 11:20")
    # open at 11:00: the new version's 30m from its creation at 09:00: due 09:30
    open_then = make_record(id="open")
    assert evaluate(open_then, policy, now).clocks["first_response"].due_at == \
        at("2026-03-02 09:30")
    # solved at 10:30, before the version: it keeps the old one
    solved = make_record(id="solved", status="solved", solved_at=iso("2026-03-02 10:30"),
                         status_history=[{"at": iso("2026-03-02 10:30"), "status": "solved"}])
    assert evaluate(solved, policy, now).sla.index == 1  # type: ignore[union-attr]
    # before the version's instant every record is under the old one
    assert evaluate(open_then, policy, at("2026-03-02 10:50")).sla.index == 1  # type: ignore[union-attr]


def test_a_version_to_come_is_a_wake_up_time_and_part_of_the_digest() -> None:
    policy = make_policy(slas=versions("open"), rules=[LATE])
    # 10:00: first response (1h) due 10:00 under v1 is not breached before it; at 11:00 v2
    # applies; the wake-up time comes no later than that
    record = make_record(created_at=iso("2026-03-02 10:00"), updated_at=iso("2026-03-02 10:00"))
    wake = Wakes(policy).of(evaluate(record, policy, at("2026-03-02 10:10")))
    assert wake is not None and wake <= at("2026-03-02 11:00")
    # a version for new records changes nothing for a record that exists already: its
    # first response clock's breach at 11:00 is the wake-up time, not the version's instant
    later = make_policy(slas=versions("new", "2026-03-02T11:30:00+01:00"), rules=[LATE])
    assert Wakes(later).of(evaluate(record, later, at("2026-03-02 10:10"))) == \
        at("2026-03-02 11:00") - timedelta(seconds=1)
    assert policy_digest(policy) != policy_digest(make_policy(
        slas=versions("open", "2026-03-02T13:00:00+01:00"), rules=[LATE]))


def test_explain_says_which_version_applies() -> None:
    policy = make_policy(slas=versions(), rules=[LATE])
    text = explain(plan(make_record(), policy, at("2026-03-02 11:20")), policy)
    assert ("  slas[0] 'standard': not matched: version valid from 2026-03-02T11:00:00+00:00 "
            "applies to records created from then on (applies_to new); this one was created "
            "2026-03-02T09:00:00+00:00") in text
    assert "  slas[1] 'standard': MATCHED (no 'when': matches every record)" in text
    later = make_record(created_at=iso("2026-03-02 11:10"), updated_at=iso("2026-03-02 11:10"))
    text = explain(plan(later, policy, at("2026-03-02 11:20")), policy)
    assert ("  slas[0] 'standard': MATCHED (no 'when': matches every record; version valid "
            "from 2026-03-02T11:00:00+00:00 (applies_to new) applies)") in text
    data = explain_data(plan(later, policy, at("2026-03-02 11:20")), policy)
    assert data["slas"] == [{"index": 0, "name": "standard", "matched": True, "why": "no when",
                             "version": {"valid_from": "2026-03-02T11:00:00+00:00",
                                         "applies_to": "new"}}]


def test_a_run_applies_each_record_its_own_version(tmp_path: Path) -> None:
    policy = {"slas": versions(valid_from="2026-03-02T09:30:00Z"), "rules": [LATE]}
    config = write_project(tmp_path, [
        record_dict(id="A"),  # 09:00, v1 (1h): due 10:00
        record_dict(id="B", created_at=iso("2026-03-02 09:45"),
                    updated_at=iso("2026-03-02 09:45"))], policy)  # v2 (30m): due 10:15
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 10:05")).exit_code == 0
    held = {r["id"]: r for r in json.loads((tmp_path / "helpdesk.json").read_text())["records"]}
    assert (held["A"]["escalation_level"], held["B"]["escalation_level"]) == (1, 0)
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20")).exit_code == 0
    held = {r["id"]: r for r in json.loads((tmp_path / "helpdesk.json").read_text())["records"]}
    assert held["B"]["escalation_level"] == 1
    shown = cli("explain", "B", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert shown.exit_code == 0, shown.stderr
    assert "version valid from 2026-03-02T09:30:00+00:00 (applies_to new) applies" in shown.stdout
