"""Evaluation: SLA matching, the variables rules see, which rules fire, notes, explain's failure."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import act, at, cond, iso, make_policy, make_record, rule
from sla_sync.rules.actions import Intent
from sla_sync.rules.engine import Failure, evaluate, first_failure
from sla_sync.rules.variables import VARIABLES

NOW = at("2026-03-02 12:00")
SLAS = [
    {"name": "vip", "when": cond("tier", "equal_to", "vip"),
     "targets": {"first_response": "30m"}},
    {"name": "urgent", "when": cond("priority", "is_one_of", ["urgent", "high"]),
     "targets": {"first_response": "2h"}},
    {"name": "standard", "targets": {"first_response": "8h"}},
]


def note_for(template: str, now: str = "2026-03-02 12:00", **fields: Any) -> str:
    policy = make_policy(rules=[rule("n", {"all": [cond("kind", "equal_to", "ticket")]},
                                     act("add_note", text=template))])
    outcome = evaluate(make_record(**fields), policy, at(now)).outcomes[0]
    return outcome.intents[0].params["text"]


# -- SLA matching -----------------------------------------------------------------------------

def test_first_sla_whose_when_holds_wins():
    evaluation = evaluate(make_record(tier="vip", priority="urgent"), make_policy(SLAS), NOW)
    assert evaluation.sla is not None and evaluation.sla.name == "vip"
    assert evaluation.facts["sla"] == "vip"


def test_later_sla_matches_when_earlier_whens_fail():
    evaluation = evaluate(make_record(priority="high"), make_policy(SLAS), NOW)
    assert evaluation.facts["sla"] == "urgent"


def test_sla_without_when_is_the_fallback():
    evaluation = evaluate(make_record(tier="standard", priority="low"), make_policy(SLAS), NOW)
    assert evaluation.facts["sla"] == "standard"
    assert evaluation.clocks["first_response"].target_seconds == 8 * 3600


def test_no_matching_sla_leaves_sla_empty_and_clocks_without_target():
    policy = make_policy(SLAS[:1])
    facts = evaluate(make_record(tier="gold"), policy, NOW).facts
    assert facts["sla"] == ""
    for target in ("first_response", "resolution"):
        assert facts[f"{target}_minutes_left"] == 10**9
        assert facts[f"{target}_elapsed_pct"] == 0.0
        assert facts[f"{target}_breached"] is False
        assert facts[f"{target}_met"] is False


# -- variables --------------------------------------------------------------------------------

def test_facts_cover_exactly_the_documented_variables():
    assert set(evaluate(make_record(), make_policy(), NOW).facts) == set(VARIABLES)


def test_record_variables_read_the_record():
    record = make_record(kind="lead", status="pending", priority="high", tier="gold",
                         channel="web", source="campaign", group="sales", assignee="alice",
                         subject="Demo request", tags=["Hot", "q2"], escalation_level=2)
    facts = evaluate(record, make_policy(), NOW).facts
    assert {name: facts[name] for name in (
        "kind", "status", "priority", "tier", "channel", "source", "group", "assignee",
        "subject", "tags", "escalation_level")} == {
        "kind": "lead", "status": "pending", "priority": "high", "tier": "gold",
        "channel": "web", "source": "campaign", "group": "sales", "assignee": "alice",
        "subject": "Demo request", "tags": ["Hot", "q2"], "escalation_level": 2}


def test_hours_since_created_and_updated_are_measured_to_now():
    record = make_record(created_at=iso("2026-03-02 09:00"), updated_at=iso("2026-03-02 10:30"))
    facts = evaluate(record, make_policy(), NOW).facts
    assert (facts["hours_since_created"], facts["hours_since_updated"]) == (3.0, 1.5)


# -- firing -----------------------------------------------------------------------------------

def test_every_rule_whose_conditions_hold_fires():
    policy = make_policy(rules=[
        rule("tag-gold", {"all": [cond("tier", "equal_to", "gold")]}, act("add_tag", tag="gold")),
        rule("tag-lead", {"all": [cond("kind", "equal_to", "lead")]}, act("add_tag", tag="lead")),
        rule("raise", {"all": [cond("first_response_breached", "is_true")]},
             act("set_priority", priority="high"), act("assign_group", group="tier2")),
    ])
    outcomes = evaluate(make_record(tier="gold"), policy, NOW).outcomes
    assert [(o.rule.name, o.fired) for o in outcomes] == [
        ("tag-gold", True), ("tag-lead", False), ("raise", True)]
    assert outcomes[1].intents == ()
    assert outcomes[2].intents == (Intent("set_priority", {"priority": "high"}),
                                   Intent("assign_group", {"group": "tier2"}))


def case(name: str, operator: str, value: Any, fields: dict[str, Any], fires: bool):
    return pytest.param(cond(name, operator, value), fields, fires,
                        id=f"{name}-{operator}-{'fires' if fires else 'silent'}")


@pytest.mark.parametrize(("condition", "fields", "fires"), [
    case("status", "not_equal_to", "solved", {"status": "open"}, True),
    case("status", "not_equal_to", "open", {"status": "open"}, False),
    case("channel", "is_one_of", ["chat", "phone"], {"channel": "phone"}, True),
    case("channel", "is_one_of", ["chat", "phone"], {"channel": "email"}, False),
    case("status", "is_not_one_of", ["solved", "closed"], {"status": "open"}, True),
    case("status", "is_not_one_of", ["solved", "closed"], {"status": "closed"}, False),
    case("assignee", "is_empty", None, {"assignee": ""}, True),
    case("assignee", "is_empty", None, {"assignee": "alice"}, False),
    case("escalation_level", "not_equal_to", 0, {"escalation_level": 1}, True),
    case("escalation_level", "not_equal_to", 1, {"escalation_level": 1}, False),
    case("tags", "contains", "vip", {"tags": ["VIP"]}, True),
    case("tags", "contains", "VIP", {"tags": ["vipish"]}, False),
    case("tags", "does_not_contain", "Spam", {"tags": ["spam"]}, False),
    case("tags", "does_not_contain", "spam", {"tags": ["ham"]}, True),
])
def test_added_operator_decides_whether_a_rule_fires(condition, fields, fires):
    policy = make_policy(rules=[rule("r", {"all": [condition]}, act("add_tag", tag="x"))])
    assert evaluate(make_record(**fields), policy, NOW).outcomes[0].fired is fires


# -- notes ------------------------------------------------------------------------------------

def test_note_placeholders_are_filled_from_record_sla_and_clocks():
    text = note_for("{id} ({sla}, {priority}): {first_response_minutes_left} min left, "
                    "{first_response_elapsed_pct}% used", now="2026-03-02 09:20:30", id="T-7",
                    priority="high")
    assert text == "T-7 (standard, high): 39.5 min left, 34.2% used"


def test_whole_numbers_in_notes_show_without_decimals():
    text = note_for("{first_response_minutes_left}/{resolution_elapsed_pct}",
                    now="2026-03-02 09:48")
    assert text == "12/10"


def test_flags_in_notes_show_yes_or_no():
    assert note_for("{first_response_breached} {first_response_met}") == "yes no"


def test_escalation_note_is_rendered():
    policy = make_policy(rules=[rule("esc", {"all": [cond("first_response_breached", "is_true")]},
                                     act("escalate", level=1, note="{id} breached {sla}"))])
    outcome = evaluate(make_record(), policy, NOW).outcomes[0]
    assert outcome.intents == (Intent("escalate", {"level": 1, "note": "T-1 breached standard"}),)


def test_minutes_left_just_past_zero_renders_without_negative_zero():
    assert note_for("{first_response_minutes_left}", now="2026-03-02 10:00:02") == "0"


# -- first_failure ----------------------------------------------------------------------------

def variables_for(record_fields: dict[str, Any], conditions: dict[str, Any]):
    policy = make_policy(rules=[rule("r", conditions, act("add_tag", tag="x"))])
    evaluation = evaluate(make_record(**record_fields), policy, NOW)
    return policy.rules[0].conditions, evaluation.variables()


def test_first_failure_is_none_when_the_conditions_hold():
    conditions, variables = variables_for({"tier": "gold"}, {"all": [
        cond("tier", "equal_to", "gold"), cond("kind", "equal_to", "ticket")]})
    assert first_failure(conditions, variables, "rules[0].conditions") is None


def test_first_failure_names_the_first_failing_leaf_and_its_actual_value():
    conditions, variables = variables_for({"tier": "gold", "priority": "normal"}, {"all": [
        cond("tier", "equal_to", "gold"), cond("priority", "equal_to", "high"),
        cond("kind", "equal_to", "lead")]})
    failure = first_failure(conditions, variables, "rules[0].conditions")
    assert failure == Failure("rules[0].conditions.all[1]",
                              {"name": "priority", "operator": "equal_to", "value": "high"},
                              "normal")


def test_failed_any_group_is_reported_at_the_group_with_every_actual_value():
    conditions, variables = variables_for({"tier": "gold", "channel": "email"}, {"all": [
        cond("kind", "equal_to", "ticket"),
        {"any": [cond("tier", "equal_to", "vip"), cond("channel", "equal_to", "phone")]}]})
    failure = first_failure(conditions, variables, "rules[0].conditions")
    assert failure is not None
    assert failure.path == "rules[0].conditions.all[1].any"
    assert failure.condition == conditions["all"][1]
    assert failure.actual == ["gold", "email"]


def test_any_group_with_one_holding_condition_does_not_fail():
    conditions, variables = variables_for({"tier": "gold"}, {"any": [
        cond("tier", "equal_to", "vip"), cond("tier", "equal_to", "gold")]})
    assert first_failure(conditions, variables, "rules[0].conditions") is None


def test_the_copied_facts_of_an_idle_clock_are_what_its_properties_say():
    """clock_facts copies the facts of a clock without a target that never ran: they must be
    exactly those its properties give, for every target."""
    from sla_sync.rules.calendar import BUILT_IN
    from sla_sync.rules.clock import ALL_TARGETS, no_target
    from sla_sync.rules.engine import _IDLE_FACTS, clock_facts

    for target in ALL_TARGETS:
        clock = no_target(target, BUILT_IN["24x7"], NOW)
        expected = {f"{target}_{name}": value for name, value in (
            ("minutes_left", clock.minutes_left), ("elapsed_pct", clock.elapsed_pct),
            ("breached", clock.breached), ("met", clock.met), ("paused", clock.paused),
            ("business_minutes_elapsed", clock.elapsed_seconds / 60), ("due_at_epoch", 0))}
        assert clock_facts({target: clock}) == expected == _IDLE_FACTS[target]
