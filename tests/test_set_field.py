"""The set_field action: a custom field written with the record's SLA state (issue 14 item 7),
through `sla-sync run` on the file helpdesk; a rerun on unchanged data writes nothing."""

from __future__ import annotations

import json
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
from sla_sync.connector.model import ChangeSet
from sla_sync.rules.planner import SATISFIED, WRITE, plan
from sla_sync.rules.policy import PolicyError, check_policy
from sla_sync.sync_run import is_applied

DUE = act("set_field", field="custom.fr_due", value="{first_response_due_at}")
POLICY: dict[str, Any] = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [rule("show-due", cond("status", "equal_to", "open"), DUE)],
}


def records(path: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in json.loads(path.read_text())["records"]}


def test_a_run_writes_the_due_time_into_custom_and_a_rerun_writes_nothing(
        tmp_path: Path) -> None:
    config = write_project(tmp_path, [record_dict(id="A", custom={"region": "emea"}),
                                      record_dict(id="B", status="pending")], POLICY)
    now = iso("2026-03-02 09:10")
    first = cli("run", "--config", str(config), "--now", now, "--json")
    assert first.exit_code == 0, first.stderr
    *changed, _ = [json.loads(line) for line in first.stdout.splitlines()]
    assert [c["change"] for c in changed] == [
        {"set": {"custom.fr_due": "2026-03-02T10:00+00:00"}}]
    held = records(tmp_path / "helpdesk.json")
    # created 09:00, first response 1h on 24x7: due 10:00; the other custom keys stay
    assert held["A"]["custom"] == {"region": "emea", "fr_due": "2026-03-02T10:00+00:00"}
    assert held["B"]["custom"] == {}
    audit = cli("audit", "--config", str(config), "--json")
    assert audit.exit_code == 0, audit.stderr
    rows = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(r["record"], r["field"], r["before"], r["after"]) for r in rows] == [
        ("A", "custom.fr_due", None, "2026-03-02T10:00+00:00")]
    again = cli("run", "--config", str(config), "--now", iso("2026-03-02 09:20"), "--full",
                "--json")
    assert again.exit_code == 0, again.stderr
    assert len(again.stdout.splitlines()) == 1  # the summary alone
    assert json.loads(again.stdout)["writes"] == 0


def test_a_field_that_holds_the_value_already_is_not_written() -> None:
    policy = make_policy(rules=POLICY["rules"])
    record = make_record(custom={"fr_due": "2026-03-02T10:00+00:00"})
    done = plan(record, policy, at("2026-03-02 09:10"))
    assert done.change.is_empty()
    assert [(s.slot, s.outcome) for s in done.steps] == [("custom.fr_due", SATISFIED)]
    stale = plan(make_record(custom={"fr_due": "yesterday"}), policy, at("2026-03-02 09:10"))
    assert [(s.slot, s.before, s.after, s.outcome) for s in stale.steps] == [
        ("custom.fr_due", "yesterday", "2026-03-02T10:00+00:00", WRITE)]
    assert dict(stale.change.fields) == {"custom.fr_due": "2026-03-02T10:00+00:00"}


def test_the_due_time_shows_in_the_calendars_timezone_and_the_later_rule_wins() -> None:
    policy = make_policy(
        slas=[{"name": "berlin", "calendar": "berlin",
               "targets": {"first_response": "2h"}}],
        calendars={"berlin": {"timezone": "Europe/Berlin",
                              "week": {d: ["00:00-24:00"] for d in
                                        ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}},
        rules=[rule("a", cond("status", "equal_to", "open"),
                    act("set_field", field="custom.sla", value="first")),
               rule("b", cond("status", "equal_to", "open"), DUE,
                    act("set_field", field="custom.sla", value="{sla}: {priority}"))])
    done = plan(make_record(), policy, at("2026-03-02 09:10"))
    assert dict(done.change.fields) == {"custom.fr_due": "2026-03-02T12:00+01:00",
                                        "custom.sla": "berlin: normal"}
    assert [s.outcome for s in done.steps if s.slot == "custom.sla"] == ["overridden", WRITE]


@pytest.mark.parametrize("params, message", [
    ({"field": "priority", "value": "x"}, "rules[0].actions[0].params.field: expected "
                                          "custom.NAME"),
    ({"field": "custom.", "value": "x"}, "rules[0].actions[0].params.field: expected "
                                         "custom.NAME"),
    ({"field": "custom.due", "value": "{nope}"}, "rules[0].actions[0].params.value: unknown "
                                                 "placeholder {nope}"),
    ({"field": "custom.due"}, "rules[0].actions[0].params.value: missing: set_field needs "
                              "'value'"),
])
def test_a_bad_set_field_names_its_path(params: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        check_policy({"rules": [rule("r", cond("status", "equal_to", "open"),
                                     {"name": "set_field", "params": params})]})
    assert str(caught.value.problems[0]).startswith(message)


def test_a_custom_write_shows_as_applied_only_when_the_record_holds_it() -> None:
    change = ChangeSet("T-1", fields={"custom.fr_due": "x"})
    assert is_applied(change, make_record(custom={"fr_due": "x"}))
    assert not is_applied(change, make_record(custom={"fr_due": "y"}))
    assert not is_applied(change, make_record())
    with pytest.raises(ValueError):
        ChangeSet("T-1", fields={"custom.": "x"})
    written = change.applied_to(make_record(custom={"a": 1}), at("2026-03-02 09:10"))
    assert written.custom == {"a": 1, "fr_due": "x"}


def test_revert_puts_the_custom_field_back(tmp_path: Path) -> None:
    config = write_project(tmp_path, [record_dict(id="A", custom={"fr_due": "old"})], POLICY)
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 09:10")).exit_code == 0
    assert records(tmp_path / "helpdesk.json")["A"]["custom"]["fr_due"] == \
        "2026-03-02T10:00+00:00"
    result = cli("revert", "1", "--config", str(config))
    assert result.exit_code == 0, result.stderr
    assert records(tmp_path / "helpdesk.json")["A"]["custom"]["fr_due"] == "old"


def test_a_cyclic_targets_due_time_is_a_placeholder_too() -> None:
    policy = make_policy(
        slas=[{"name": "standard", "targets": {"first_response": "1h",
                                               "next_response": "2h"}}],
        rules=[rule("due", cond("status", "equal_to", "open"),
                    act("set_field", field="custom.reply_due",
                        value="{next_response_due_at} {next_response_due_at_epoch}"))])
    # the agent answered 09:30, the customer wrote again 10:00: next reply due 12:00
    record = make_record(messages=[
        {"at": iso("2026-03-02 09:00"), "author": "customer", "public": True},
        {"at": iso("2026-03-02 09:30"), "author": "agent", "public": True},
        {"at": iso("2026-03-02 10:00"), "author": "customer", "public": True}])
    done = plan(record, policy, at("2026-03-02 10:10"))
    assert dict(done.change.fields) == {
        "custom.reply_due": f"2026-03-02T12:00+00:00 {int(at('2026-03-02 12:00').timestamp())}"}
