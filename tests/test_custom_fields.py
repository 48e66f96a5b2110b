"""Conditions on custom fields declared in the policy, and the record placeholders of notes
({subject}, {assignee}, {group}, {tier}, {status}, {url})."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from business_rules import engine as br_engine
from click.testing import CliRunner

from conftest import act, at, cond, make_policy, make_record, rule
from sla_sync.connector.model import Record
from sla_sync.rules.engine import evaluate, record_facts
from sla_sync.rules.lint import lint
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import PolicyError, check_policy
from sla_sync.rules.schema import json_schema
from sla_sync.rules.variables import RecordVariables
from sla_sync.rules.wake import policy_digest
from sla_sync.sync import main

NOW = at("2026-03-02 12:00")
FIELDS = {"custom.region": "string", "custom.arr": "numeric", "custom.churn_risk": "boolean"}
TAG = act("add_tag", tag="x")


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        check_policy(data)
    return [str(p) for p in caught.value.problems]


def test_a_condition_on_an_undeclared_custom_field_names_its_path() -> None:
    assert problems({"fields": {"custom.region": "string"}, "rules": [
        rule("r", {"all": [cond("tier", "equal_to", "vip"),
                           cond("custom.regoin", "equal_to", "emea")]}, TAG)]}) == [
        'rules[0].conditions.all[1].name: custom field \'custom.regoin\' is not declared: '
        'declare it under "fields" with its type, e.g. "fields": {"custom.regoin": "string"}']
    # in an SLA's when too
    assert problems({"slas": [{"name": "emea", "when": cond("custom.region", "equal_to", "x")}]}
                    )[0].startswith("slas[0].when.name: custom field 'custom.region' is not "
                                    "declared")


@pytest.mark.parametrize("fields, message", [
    ({"region": "string"}, "fields.region: expected custom.NAME (a record's custom field), "
                           "got 'region'"),
    ({"custom.": "string"}, "fields.custom.: expected custom.NAME"),
    ({"custom.arr": "number"}, "fields.custom.arr: expected one of string, numeric, boolean, "
                               "got 'number' (did you mean 'numeric'?)"),
    (["custom.arr"], "fields: expected an object"),
])
def test_the_fields_declaration_is_checked(fields: Any, message: str) -> None:
    assert problems({"fields": fields})[0].startswith(message)


def test_an_operator_and_value_must_fit_the_declared_type() -> None:
    found = problems({"fields": FIELDS, "rules": [
        rule("a", cond("custom.arr", "equal_to", "big"), TAG),
        rule("b", cond("custom.region", "greater_than", 3), TAG),
        rule("c", cond("custom.churn_risk", "equal_to", True), TAG)]})
    assert found[0] == "rules[0].conditions.value: expected a number for 'custom.arr', got a string"
    assert found[1].startswith("rules[1].conditions.operator: operator 'greater_than' does not "
                               "apply to 'custom.region', a string variable")
    assert found[2].startswith("rules[2].conditions.operator: operator 'equal_to' does not "
                               "apply to 'custom.churn_risk', a boolean variable")


def custom_policy() -> Any:
    return make_policy(
        fields=FIELDS,
        slas=[{"name": "emea", "when": cond("custom.region", "equal_to", "emea"),
               "targets": {"first_response": "1h"}},
              {"name": "standard", "targets": {"first_response": "8h"}}],
        rules=[rule("big-account", cond("custom.arr", "greater_than_or_equal_to", 10000),
                    act("set_priority", priority="high")),
               rule("not-emea", cond("custom.region", "not_equal_to", "emea"),
                    act("add_tag", tag="elsewhere")),
               rule("not-listed", cond("custom.region", "is_not_one_of", ["apac"]),
                    act("add_tag", tag="unlisted")),
               rule("risky", cond("custom.churn_risk", "is_true"),
                    act("add_tag", tag="churn"))])


def fired(custom: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    p = plan(make_record(created_at="2026-03-02T11:00:00+00:00",
                         updated_at="2026-03-02T11:00:00+00:00", custom=custom),
             custom_policy(), NOW)
    assert p.evaluation.sla is not None
    return p.evaluation.sla.name, p.fired


@pytest.mark.parametrize("custom, expected", [
    ({"region": "emea", "arr": 25000, "churn_risk": True},
     ("emea", ("big-account", "not-listed", "risky"))),
    ({"region": "amer", "arr": 9999.5}, ("standard", ("not-emea", "not-listed"))),
    # text holding a number is that number (HubSpot sends every property as text)
    ({"region": "amer", "arr": " 10000 "}, ("standard", ("big-account", "not-emea",
                                                         "not-listed"))),
    # absent: every condition on the field is false, not_equal_to and is_not_one_of too
    ({}, ("standard", ())),
    # of another type: as absent (a list for a string, text for a number, 1 for a boolean)
    ({"region": ["emea"], "arr": "lots", "churn_risk": 1}, ("standard", ())),
    ({"region": None, "arr": True}, ("standard", ())),
    # a number for a string field reads as its text
    ({"region": 7}, ("standard", ("not-emea", "not-listed"))),
])
def test_conditions_on_custom_fields(custom: dict[str, Any],
                                     expected: tuple[str, tuple[str, ...]]) -> None:
    assert fired(custom) == expected


@pytest.mark.parametrize("custom", [
    {"region": "emea", "arr": 25000, "churn_risk": True}, {}, {"arr": "lots", "region": 3},
    {"region": "amer", "arr": 10000.0000001}])
def test_the_compiled_checks_answer_as_business_rules_does(custom: dict[str, Any]) -> None:
    policy = custom_policy()
    record = make_record(custom=custom)
    ev = evaluate(record, policy, NOW)
    variables = RecordVariables(record_facts(record, NOW, policy.fields))
    for outcome in ev.outcomes:
        assert outcome.fired == br_engine.check_conditions_recursively(
            outcome.rule.conditions, variables), outcome.rule.name


def test_explain_names_the_custom_value_that_failed(tmp_path: Path) -> None:
    helpdesk = tmp_path / "helpdesk.json"
    helpdesk.write_text(json.dumps({"records": [
        {"id": "T-1", "kind": "ticket", "created_at": "2026-03-02T11:00:00+00:00",
         "updated_at": "2026-03-02T11:00:00+00:00", "custom": {"arr": 500}}]}))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"fields": {"custom.arr": "numeric"}, "rules": [
        rule("big-account", cond("custom.arr", "greater_than", 1000), TAG)]}))
    (tmp_path / "config.yaml").write_text(f"connector: {{type: file, path: {helpdesk}}}\n"
                                          f"policy: {policy}\nstate: {tmp_path / 's.db'}\n")
    result = CliRunner().invoke(main, ["explain", "T-1", "--config",
                                       str(tmp_path / "config.yaml"), "--now",
                                       "2026-03-02T12:00:00+00:00"])
    assert result.exit_code == 0, result.output
    assert "custom.arr" in result.output and "500" in result.output


def test_the_digest_follows_the_declared_types() -> None:
    rules = [rule("r", cond("custom.region", "equal_to", "7"), TAG)]
    as_text = make_policy(rules=rules, fields={"custom.region": "string"})
    assert policy_digest(as_text) == policy_digest(
        make_policy(rules=rules, fields={"custom.region": "string"}))
    other = make_policy(rules=[rule("r", cond("custom.region", "equal_to", "7"), TAG)],
                        fields={"custom.region": "string", "custom.arr": "numeric"})
    assert policy_digest(as_text) != policy_digest(other)


# -- lint and schema ---------------------------------------------------------------------------

def test_lint_reasons_about_custom_fields() -> None:
    found = [str(f) for f in lint(make_policy(fields=FIELDS, rules=[
        rule("r", {"all": [cond("custom.arr", "greater_than", 10),
                           cond("custom.arr", "less_than", 5)]}, TAG)]))]
    assert found == ["error: rules[0].conditions: can never hold: rules[0].conditions.all[0] "
                     "(custom.arr greater_than 10) and rules[0].conditions.all[1] (custom.arr "
                     "less_than 5) cannot both hold"]


def test_lint_knows_a_record_may_lack_a_custom_field() -> None:
    # slas[2] is reached by records without a region (both conditions are false for them)
    policy = make_policy(fields=FIELDS, slas=[
        {"name": "emea", "when": cond("custom.region", "equal_to", "emea")},
        {"name": "other", "when": cond("custom.region", "not_equal_to", "emea")},
        {"name": "none"}])
    assert [str(f) for f in lint(policy) if "slas[2]" in f.path and "target" not in f.message] \
        == []


def test_the_schema_takes_declared_fields_and_conditions_on_them() -> None:
    validator = jsonschema.Draft202012Validator(json_schema())
    good = {"fields": FIELDS, "rules": [
        rule("r", {"all": [cond("custom.arr", "greater_than", 10),
                           cond("custom.region", "is_one_of", ["emea"]),
                           cond("custom.churn_risk", "is_true")]}, TAG)]}
    assert list(validator.iter_errors(good)) == []
    check_policy(good)
    assert list(validator.iter_errors({"fields": {"custom.arr": "number"}}))
    assert list(validator.iter_errors({"fields": {"region": "string"}}))


# -- policy tests ------------------------------------------------------------------------------

def test_a_policy_test_case_sets_custom_fields_and_checks_them(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({
        "fields": {"custom.arr": "numeric"},
        "rules": [rule("big", cond("custom.arr", "greater_than", 1000), TAG)]}))
    (tmp_path / "p.test.yaml").write_text(
        "policy: p.json\n"
        "cases:\n"
        "  - name: a big account, then a small one\n"
        "    record: {id: T-1, kind: ticket, created_at: '2026-03-02T09:00:00+00:00',\n"
        "             custom: {arr: 5000}}\n"
        "    timeline:\n"
        "      - {at: '2026-03-02T10:00:00+00:00', set: {custom: {arr: 10}}}\n"
        "    expect:\n"
        "      - now: '2026-03-02T09:30:00+00:00'\n"
        "        variables: {custom.arr: 5000}\n"
        "        fires: [big]\n"
        "      - now: '2026-03-02T10:30:00+00:00'\n"
        "        variables: {custom.arr: 10}\n"
        "        active: []\n")
    result = CliRunner().invoke(main, ["test", str(tmp_path)])
    assert result.output.splitlines()[-1] == "1 passed, 0 failed", result.output
    (tmp_path / "p.test.yaml").write_text(
        (tmp_path / "p.test.yaml").read_text().replace("{custom.arr: 10}", "{custom.ar: 10}"))
    result = CliRunner().invoke(main, ["test", str(tmp_path)])
    assert result.exit_code == 2
    assert "cases[0].expect[1].variables.custom.ar: unknown variable (did you mean " \
           "'custom.arr'?)" in result.output


# -- placeholders ------------------------------------------------------------------------------

def test_notes_show_the_records_subject_assignee_group_tier_status_and_url() -> None:
    text = "{id} {subject} | {assignee} | {group} | {tier} | {status} | {url}"
    policy = make_policy(rules=[rule("n", cond("kind", "equal_to", "ticket"),
                                     act("add_note", text=text))])
    record = Record.from_dict({
        "id": "T-9", "kind": "ticket", "subject": "Printer {on} fire", "assignee": "ana",
        "group": "support", "tier": "vip", "status": "open",
        "created_at": "2026-03-02T11:00:00+00:00", "updated_at": "2026-03-02T11:00:00+00:00",
        "url": "https://desk.example.com/tickets/9"})
    assert plan(record, policy, NOW).change.notes == (
        "T-9 Printer {on} fire | ana | support | vip | open | https://desk.example.com/tickets/9",)
    # a record without a link shows nothing
    plain = Record.from_dict({**record.to_dict(), "url": ""})
    assert plan(plain, policy, NOW).change.notes[0].endswith("| open | ")


@pytest.mark.parametrize("text, shown", [
    ("{subject.__class__}", "{subject.__class__}"), ("{subject!r}", "{subject!r}"),
    ("{subject:>10}", "{subject:>10}"), ("{subject[0]}", "{subject[0]}"),
    ("{url.__globals__}", "{url.__globals__}"), ("{custom.region}", "{custom.region}")])
def test_attribute_access_and_format_tricks_are_refused_with_the_path(text: str,
                                                                      shown: str) -> None:
    found = problems({"rules": [rule("n", cond("kind", "equal_to", "ticket"),
                                     act("notify", webhook="ops", text=f"x {text}"))]})
    assert found[0].startswith(f"rules[0].actions[0].params.text: unknown placeholder {shown} "
                               "(allowed: {id}, {sla}, {priority}, {subject}, {assignee}, "
                               "{group}, {tier}, {status}, {url}, and {T_X}")


def test_a_records_url_survives_the_state_file_round_trip() -> None:
    record = make_record(url="https://acme.zendesk.com/agent/tickets/1")
    assert Record.from_dict(record.to_dict()) == record
    assert "url" not in make_record().to_dict()  # files without links stay as they were
