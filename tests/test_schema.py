"""`sla-sync schema`: the JSON Schema and export_rule_data, generated from the checker's
definitions, agree with the checker."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema  # a test dependency (pyproject's test extras)
import pytest
from click.testing import CliRunner

from conftest import ROOT
from sla_sync.rules.actions import action_specs
from sla_sync.rules.policy import PolicyError, check_policy
from sla_sync.rules.schema import DRAFT, json_schema, rule_data
from sla_sync.rules.variables import VARIABLES, operators
from sla_sync.sync import main

SHIPPED = json.loads((ROOT / "policies" / "tiered-support.json").read_text())


def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_the_generated_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json_schema()
    assert schema["$schema"] == DRAFT
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_shipped_policy_validates_and_may_name_the_schema() -> None:
    policy = {"$schema": "./policy.schema.json", **SHIPPED}
    assert list(validator().iter_errors(policy)) == []
    assert len(check_policy(policy).rules) == len(SHIPPED["rules"])  # the checker accepts it


def edited(path: list[Any], value: Any) -> dict[str, Any]:
    """The shipped policy with one value replaced (or a key added)."""
    policy = copy.deepcopy(SHIPPED)
    node = policy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return policy


BROKEN = [
    pytest.param(["rules", 0, "actions", 0, "name"], "escalat", id="unknown action"),
    pytest.param(["rules", 0, "conditions", "all", 1, "operator"], "greater_than",
                 id="operator not of the variable's type"),
    pytest.param(["rules", 1, "conditions", "all", 0, "value"], "75", id="a string for a number"),
    pytest.param(["rules", 0, "conditions", "all", 0, "value"], ["ticket"],
                 id="a list for equal_to"),
    pytest.param(["rules", 0, "conditions", "all", 3, "value"], [], id="an empty is_one_of"),
    pytest.param(["rules", 5, "actions", 0, "params", "level"], 101,
                 id="escalate above the highest level"),
    pytest.param(["rules", 1, "conditions", "all", 0, "value"], 1e16,
                 id="a number out of range"),
    pytest.param(["rules", 0, "conditions"], None, id="no conditions"),
    pytest.param(["rules", 0, "conditions", "all"], [], id="an empty all"),
    pytest.param(["rules", 5, "actions", 0, "params", "level"], 0, id="escalate to level 0"),
    pytest.param(["rules", 0, "actions", 0, "params", "colour"], "red", id="unknown parameter"),
    pytest.param(["rules", 0, "actions"], [], id="no actions"),
    pytest.param(["slas", 0, "targets", "first_response"], "15 minutes", id="bad duration"),
    pytest.param(["slas", 0, "targets", "first_respons"], "15m", id="unknown target"),
    pytest.param(["slas", 1, "when"], {"name": "first_response_breached", "operator": "is_true"},
                 id="a clock variable in an SLA's when"),
    pytest.param(["slas", 1, "on_target_change"], "reset", id="unknown on_target_change"),
    pytest.param(["slas", 4, "calendar_by"], {"field": "group", "calendars": {"a": "24x7"},
                                              "default": "24x7"},
                 id="calendar and calendar_by"),
    pytest.param(["calendars", "berlin-office", "week", "mon"], ["8:00-12:30"],
                 id="an interval without two-digit hours"),
    pytest.param(["calendars", "berlin-office", "week", "monday"], ["08:00-12:30"],
                 id="unknown weekday"),
    pytest.param(["calendars", "berlin-office", "holidays"], ["24.12."], id="a holiday format"),
    pytest.param(["calendars", "24x7"], {"timezone": "UTC", "week": {}}, id="redefining 24x7"),
    pytest.param(["slas", 0, "name"], " ", id="a blank name"),
    pytest.param(["colour"], "red", id="unknown top-level key"),
]


@pytest.mark.parametrize(("path", "value"), BROKEN)
def test_a_broken_policy_fails_both_the_schema_and_the_checker(path: list[Any],
                                                               value: Any) -> None:
    policy = edited(path, value)
    assert list(validator().iter_errors(policy)), "the schema accepted it"
    with pytest.raises(PolicyError):
        check_policy(policy)


@pytest.mark.parametrize(("path", "value"), [
    pytest.param(["rules", 1, "conditions", "all", 1], {"name": "first_response_breached",
                                                        "operator": "is_false", "value": None},
                 id="a null value for an operator taking none"),
    pytest.param(["rules", 1, "conditions", "all", 1, "value"], True,
                 id="a value on an operator taking none, as business-rules authors write"),
    pytest.param(["rules", 0, "name"], None, id="a rule without a name"),
    pytest.param(["rules", 0, "conditions", "all", 0],
                 {"name": "subject", "operator": "matches_regex", "value": "^(re|fwd):"},
                 id="a regular expression"),
    pytest.param(["slas", 4, "calendar_by"], {"field": "custom.region",
                                              "calendars": {"us": "24x7"},
                                              "default": "berlin-office"},
                 id="calendar_by a custom field"),
    pytest.param(["calendars", "berlin-office", "holidays"],
                 ["2026-12-24", "12-31", {"country": "DE"}], id="every holiday form"),
    pytest.param(["slas", 0, "targets", "resolution"], "1bd4h30m", id="a combined duration"),
])
def test_a_valid_variation_passes_both(path: list[Any], value: Any) -> None:
    policy = edited(path, value)
    if value is None and path[-1] == "name":
        del policy["rules"][0]["name"]
    if path[:3] == ["slas", 4, "calendar_by"]:
        del policy["slas"][4]["calendar"]
    assert list(validator().iter_errors(policy)) == []
    check_policy(policy)


def test_the_schema_offers_every_variable_operator_and_action_the_checker_knows() -> None:
    text = json.dumps(json_schema())
    for name, (kind, _) in VARIABLES.items():
        assert f'"{name}"' in text
        for operator in operators(kind):
            assert f'"{operator}"' in text
    actions = [alt["properties"]["name"]["const"]
               for alt in json_schema()["$defs"]["action"]["oneOf"]]
    assert sorted(actions) == sorted(action_specs())


def test_business_rules_export_lists_sla_syncs_own_operators() -> None:
    data = rule_data()
    assert sorted(v["name"] for v in data["variables"]) == sorted(VARIABLES)
    string_ops = {op["name"] for op in data["variable_type_operators"]["string"]}
    assert {"is_one_of", "is_not_one_of", "not_equal_to", "is_empty", "equal_to"} <= string_ops
    tag_ops = {op["name"] for op in data["variable_type_operators"]["select_multiple"]}
    assert {"contains", "does_not_contain", "contains_all"} <= tag_ops
    assert sorted(a["name"] for a in data["actions"]) == sorted(action_specs())


def test_the_schema_command_prints_either_form() -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0 and json.loads(result.output) == json_schema()
    result = CliRunner().invoke(main, ["schema", "--format", "business-rules"])
    assert result.exit_code == 0 and json.loads(result.output) == rule_data()
