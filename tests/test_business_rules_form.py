"""Policies written in business-rules' own form: every condition carries a `value`, even for
operators that take none. business-rules reads `value` of every condition and calls a
no-input operator without it; sla-sync accepts such a value and ignores it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from business_rules.fields import FIELD_NO_INPUT

from conftest import ROOT, act, at, cond, iso, make_policy, make_record, rule
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import PolicyError, check_policy, load_policy
from sla_sync.rules.variables import VARIABLES, operators

FIXTURE = (ROOT / "tests" / "fixtures" / "policies"
           / "business_rules_form_no_input_operators_carry_value.json")
NOW = at("2026-03-02 12:00")

NO_INPUT = sorted({(name, op) for name, (kind, _) in VARIABLES.items()
                   for op, takes in operators(kind).items() if takes == FIELD_NO_INPUT})


def without_no_input_values(node: Any) -> Any:
    """The same policy with `value` dropped from every condition whose operator takes none."""
    if isinstance(node, list):
        return [without_no_input_values(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: without_no_input_values(value) for key, value in node.items()}
    if "operator" in out and (out.get("name"), out["operator"]) in NO_INPUT:
        out.pop("value", None)
    return out


RECORDS = [
    # vip, 2 h old, nobody answered: first response breached (30m), resolution at 50%
    make_record(id="V-1", tier="vip", created_at=iso("2026-03-02 10:00"),
                updated_at=iso("2026-03-02 10:00")),
    # standard, 5 h old, unassigned, unanswered: first response breached, resolution 62%
    make_record(id="S-1", created_at=iso("2026-03-02 07:00"), updated_at=iso("2026-03-02 07:00")),
    # standard, answered in time, assigned, now pending (paused)
    make_record(id="S-2", assignee="bob", created_at=iso("2026-03-02 09:00"),
                first_response_at=iso("2026-03-02 09:20"), updated_at=iso("2026-03-02 09:30"),
                status="pending",
                status_history=[{"at": iso("2026-03-02 09:00"), "status": "open"},
                                {"at": iso("2026-03-02 09:30"), "status": "pending"}]),
    # fresh: nothing holds
    make_record(id="S-3", created_at=iso("2026-03-02 11:55"), updated_at=iso("2026-03-02 11:55")),
]


def test_operators_without_input_are_the_ones_business_rules_calls_without_a_value():
    # The fixture covers every no-input operator sla-sync offers; if business-rules or
    # rules/variables.py adds one, this list (and the fixture) must follow.
    assert sorted({op for _, op in NO_INPUT}) == ["is_empty", "is_false", "is_true", "non_empty"]


def test_plain_business_rules_policy_validates_without_warnings():
    policy = load_policy(FIXTURE)
    assert (len(policy.slas), len(policy.rules), policy.warnings) == (2, 3, ())


def test_the_policy_with_values_plans_exactly_as_the_same_policy_without_them():
    data = json.loads(FIXTURE.read_text())
    stripped = without_no_input_values(data)
    assert stripped != data  # the fixture does carry values on no-input operators
    with_values, without = check_policy(data, "with"), check_policy(stripped, "without")
    fired = {}
    for record in RECORDS:
        a, b = plan(record, with_values, NOW), plan(record, without, NOW)
        assert (a.fired, a.change, a.notifications, a.active_after) == \
            (b.fired, b.change, b.notifications, b.active_after), record.id
        fired[record.id] = a.fired
    # and the comparison is not vacuous: the rules with no-input conditions do fire
    assert fired == {"V-1": ("breached-first-response",),
                     "S-1": ("breached-first-response", "unassigned-and-at-risk"),
                     "S-2": ("assigned-and-paused",),
                     "S-3": ()}


@pytest.mark.parametrize(("name", "op"), sorted({op: (name, op) for name, op in NO_INPUT}.values()))
@pytest.mark.parametrize("value", [True, False, "", "anything", None, 0, [], {"x": 1}])
def test_any_value_of_a_no_input_operator_is_accepted_and_not_passed_on(name, op, value):
    policy = make_policy(rules=[rule("r", {"all": [{"name": name, "operator": op,
                                                    "value": value}]}, act("add_tag", tag="x"))])
    assert policy.warnings == ()
    assert policy.rules[0].conditions == {"all": [{"name": name, "operator": op,
                                                   "value": None}]}


def test_a_no_input_operator_without_value_gets_the_value_key_business_rules_reads():
    policy = make_policy(rules=[rule("r", cond("first_response_breached", "is_true"),
                                     act("add_tag", tag="x"))])
    assert policy.rules[0].conditions == {"name": "first_response_breached",
                                          "operator": "is_true", "value": None}


@pytest.mark.parametrize(("leaf", "message"), [
    ({"name": "tier", "operator": "equal_to"},
     "missing: operator 'equal_to' compares with a value"),
    ({"name": "escalation_level", "operator": "greater_than", "value": True},
     "expected a number for 'escalation_level', got a boolean"),
    ({"name": "tier", "operator": "equal_to", "value": True},
     "expected a string for 'tier' equal_to, got a boolean"),
])
def test_operators_that_take_a_value_still_refuse_a_missing_or_mistyped_one(leaf, message):
    policy = {"slas": [], "rules": [rule("r", {"all": [leaf]}, act("add_tag", tag="x"))]}
    with pytest.raises(PolicyError) as info:
        check_policy(copy.deepcopy(policy))
    assert [str(p) for p in info.value.problems] == [f"rules[0].conditions.all[0].value: {message}"]


def test_readme_examples_show_values_on_no_input_operators():
    readme = (ROOT / "README.md").read_text()
    assert '"operator": "is_true", "value": true' in readme
    assert '"operator": "is_true"}' not in readme


def _unnamed(policy: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(policy)
    for spec in out["rules"]:
        spec.pop("name")
    return out


def test_rules_without_names_as_business_rules_writes_them_validate_and_fire():
    data = _unnamed(json.loads(FIXTURE.read_text()))
    policy = check_policy(data)
    names = [r.name for r in policy.rules]
    assert all(name.startswith("rule-") and len(name) == 13 for name in names)
    assert len(set(names)) == len(names)
    p = plan(RECORDS[0], policy, NOW, frozenset())
    assert p.fired and set(p.fired) <= set(names)
    assert p.change.escalation_level == 1


def test_an_unnamed_rule_keeps_its_name_when_rules_are_reordered_and_not_when_it_changes():
    data = _unnamed(json.loads(FIXTURE.read_text()))
    names = {json.dumps(spec, sort_keys=True): r.name
             for spec, r in zip(data["rules"], check_policy(data).rules, strict=True)}
    reordered = copy.deepcopy(data)
    reordered["rules"].reverse()
    again = {json.dumps(spec, sort_keys=True): r.name
             for spec, r in zip(reordered["rules"], check_policy(reordered).rules, strict=True)}
    assert again == names
    changed = copy.deepcopy(data)
    changed["rules"][1]["actions"][0]["params"]["tag"] = "at-risk-2"
    assert check_policy(changed).rules[1].name != check_policy(data).rules[1].name


def test_two_unnamed_rules_that_say_the_same_are_refused_by_path():
    data = _unnamed(json.loads(FIXTURE.read_text()))
    data["rules"].append(copy.deepcopy(data["rules"][0]))
    with pytest.raises(PolicyError) as info:
        check_policy(data)
    assert [str(p) for p in info.value.problems] == [
        "rules[3]: same conditions and actions as rules[0], and neither has a name; "
        "remove one of them"]
