"""Compiled conditions answer exactly as business-rules does, on random conditions and facts
and on the demo desk, and leave to business-rules what it would reject."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from business_rules import engine as br_engine

from conftest import ROOT, at
from sla_sync.connector.model import Record
from sla_sync.rules.actions import ActionCollector
from sla_sync.rules.conditions import Asked, Compiler
from sla_sync.rules.engine import evaluate, note_values
from sla_sync.rules.policy import load_policy
from sla_sync.rules.variables import VARIABLES, RecordVariables, operators

THRESHOLDS = [0, 1, 75, 100, 150, -30, 2.5, 10**9]
TEXTS = ["open", "solved", "closed", "vip", "gold", "", "Open"]


def number_near(rng: random.Random) -> Any:
    """Numbers at, just inside and just outside business-rules' 0.000001 tolerance."""
    base = rng.choice(THRESHOLDS)
    step = rng.choice([0, 1e-9, 5e-7, 1e-6, 2e-6, 1e-4, 1e-3, 2e-3, 0.5, 40])
    value = base + rng.choice([-1, 1]) * step
    return value if rng.random() < 0.8 else int(value)


def fact_value(kind_name: str, rng: random.Random) -> Any:
    if kind_name == "Number":
        return number_near(rng) if rng.random() < 0.9 else float(rng.choice(THRESHOLDS))
    if kind_name == "Flag":
        return rng.random() < 0.5
    if kind_name == "TagSet":
        return rng.sample(["vip", "VIP", "billing", "sla_breach"], rng.randint(0, 3))
    return rng.choice(TEXTS)


def operand(kind_name: str, input_type: str, rng: random.Random) -> Any:
    if input_type == "numeric":
        return rng.choice(THRESHOLDS)
    if input_type == "select_multiple":
        return rng.sample(TEXTS if kind_name == "Text" else ["vip", "billing", "x"], 2)
    if input_type == "none":
        return None
    if kind_name == "TagSet":
        return rng.choice(["vip", "Billing", "x"])
    return rng.choice(TEXTS + [".*en$"])


def leaf(rng: random.Random) -> dict[str, Any]:
    name = rng.choice(sorted(VARIABLES))
    kind = VARIABLES[name][0]
    ops = operators(kind)
    operator = rng.choice(sorted(ops))
    return {"name": name, "operator": operator,
            "value": operand(kind.__name__, ops[operator], rng)}


def tree(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth >= 3 or rng.random() < 0.4:
        return leaf(rng)
    return {rng.choice(["all", "any"]): [tree(rng, depth + 1)
                                         for _ in range(rng.randint(1, 4))]}


def facts_for(rng: random.Random) -> dict[str, Any]:
    return {name: fact_value(kind.__name__, rng) for name, (kind, _) in VARIABLES.items()}


def test_random_conditions_answer_as_business_rules_does():
    rng = random.Random(20261202)
    compiler = Compiler()
    checked = 0
    for _ in range(400):
        conditions = tree(rng)
        check = compiler.compile(conditions)
        assert check is not None, conditions
        for _ in range(10):
            variables = RecordVariables(facts_for(rng))
            expected = br_engine.check_conditions_recursively(conditions, variables)
            assert bool(check(Asked(variables))) == bool(expected), (conditions,
                                                                     variables.facts)
            checked += 1
    assert checked == 4000


@pytest.mark.parametrize("value", [75 - 1e-7, 75 - 2e-6, 75 + 5e-7, 75.0, 74.999, 75.001])
def test_numbers_at_the_tolerance_are_left_to_business_rules_decimals(value: float):
    for operator in ("equal_to", "greater_than", "greater_than_or_equal_to", "less_than",
                     "less_than_or_equal_to", "not_equal_to"):
        condition = {"name": "first_response_elapsed_pct", "operator": operator, "value": 75}
        variables = RecordVariables({"first_response_elapsed_pct": value})
        check = Compiler().compile(condition)
        assert check is not None
        assert check(Asked(variables)) == br_engine.check_condition(condition, variables), (
            operator, value)


@pytest.mark.parametrize("conditions", [
    {"all": []},
    {"any": [{"name": "nope", "operator": "equal_to", "value": 1}]},
    {"name": "status", "operator": "no_such_operator", "value": "x"},
    {"name": "status", "operator": "equal_to"},
    {"all": [{"name": "status", "operator": "equal_to", "value": "x"}], "extra": 1},
], ids=["empty-all", "unknown-variable", "unknown-operator", "no-value", "extra-key"])
def test_what_business_rules_rejects_is_left_to_it(conditions: dict[str, Any]):
    assert Compiler().compile(conditions) is None


def test_every_rule_on_the_demo_desk_fires_as_business_rules_run_would():
    policy = load_policy(ROOT / "policies/tiered-support.json")
    raw = json.loads((ROOT / "examples/helpdesk.json").read_text())["records"]
    records = [Record.from_dict(r) for r in raw]
    fired = 0
    for now in (at("2026-03-02 12:00"), at("2026-03-02 16:30"), at("2026-03-04 09:00")):
        for record in records:
            evaluation = evaluate(record, policy, now)
            variables = evaluation.variables()
            chosen = next((sla for sla in policy.slas if sla.when is None
                           or br_engine.check_conditions_recursively(sla.when, variables)), None)
            assert evaluation.sla == chosen
            values = note_values(record, evaluation.facts, evaluation.clocks,
                                 evaluation.calendar)
            for outcome in evaluation.outcomes:
                collector = ActionCollector(values)
                expected = br_engine.run(outcome.rule.as_engine_rule(), variables, collector)
                assert (outcome.fired, outcome.intents) == (expected, tuple(collector.intents))
                fired += outcome.fired
    assert fired > 100, "the demo desk should make many rules fire"
