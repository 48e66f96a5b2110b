"""Policy checks: every problem named by its JSON path, all of them in one pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from business_rules.engine import check_conditions_recursively
from click.testing import CliRunner

from conftest import ROOT, act, cond, make_policy, make_record, rule
from sla_sync.rules.durations import Target, parse_duration, parse_target
from sla_sync.rules.engine import record_facts
from sla_sync.rules.policy import PolicyError, Problem, check_policy, load_policy
from sla_sync.rules.variables import RecordVariables
from sla_sync.sync import main

SLAS = [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}]
TIER_IS_VIP = cond("tier", "equal_to", "vip")
TAG = act("add_tag", tag="x")
ALLOWED = ("(allowed: {id}, {sla}, {priority}, {subject}, {assignee}, {group}, {tier}, "
           "{status}, {url}, and {T_X} for T in first_response, resolution, "
           "next_response, periodic_update, pausable_update, time_to_own, agent_work_time, "
           "requester_wait_time "
           "and X in minutes_left, elapsed_pct, breached, met, paused, "
           "business_minutes_elapsed, due_at_epoch, due_at)")


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyError) as info:
        check_policy(data, "test-policy")
    return [str(p) for p in info.value.problems]


def rule_problems(conditions: dict[str, Any], *actions: dict[str, Any]) -> list[str]:
    return problems({"slas": SLAS, "rules": [rule("r", conditions, *(actions or [TAG]))]})


def sla_problems(*slas: dict[str, Any], **extra: Any) -> list[str]:
    return problems({"slas": list(slas), **extra})


# -- conditions -----------------------------------------------------------------------------

def test_unknown_variable_suggests_the_closest_name():
    assert rule_problems(cond("teir", "equal_to", "vip")) == [
        "rules[0].conditions.name: unknown variable 'teir' (did you mean 'tier'?)"]


def test_unknown_operator_suggests_the_closest_operator():
    assert rule_problems(cond("tier", "equals", "vip")) == [
        "rules[0].conditions.operator: operator 'equals' does not apply to 'tier', "
        "a string variable (did you mean 'equal_to'?)"]


def test_numeric_operator_on_a_string_variable_lists_the_operators_that_fit():
    assert rule_problems(cond("tier", "greater_than", 3)) == [
        "rules[0].conditions.operator: operator 'greater_than' does not apply to 'tier', "
        "a string variable (for tier: contains, ends_with, equal_to, equal_to_case_insensitive, "
        "is_empty, is_not_one_of, is_one_of, matches_regex, non_empty, not_equal_to, "
        "starts_with)"]


@pytest.mark.parametrize(("leaf", "message"), [
    (cond("escalation_level", "greater_than", "2"),
     "expected a number for 'escalation_level', got a string"),
    (cond("tier", "equal_to", 3), "expected a string for 'tier' equal_to, got a number"),
    (cond("tier", "is_one_of", "gold"), "expected a list of strings for 'is_one_of', got a string"),
    (cond("tier", "is_one_of", []), "empty list: 'is_one_of' needs at least one value"),
    ({"name": "tier", "operator": "equal_to"},
     "missing: operator 'equal_to' compares with a value"),
], ids=["string-for-number", "number-for-string", "non-list-one-of", "empty-list",
        "missing-value"])
def test_condition_value_problems_are_named_by_the_value_path(leaf, message):
    assert rule_problems(leaf) == [f"rules[0].conditions.value: {message}"]


@pytest.mark.parametrize("group", ["all", "any"])
def test_empty_group_is_refused(group):
    assert rule_problems({group: []}) == [
        f"rules[0].conditions.{group}: empty '{group}': give at least one condition"]


def test_all_mixed_with_other_keys_is_refused():
    assert rule_problems({"all": [TIER_IS_VIP], "name": "tier"}) == [
        "rules[0].conditions: 'all' must be the only key of its object (found all, name)"]


def test_nested_condition_problems_carry_the_full_path():
    tree = {"all": [TIER_IS_VIP, {"any": [cond("priority", "equal_to", "high"),
                                          cond("prio", "equal_to", "high")]}]}
    assert rule_problems(tree) == [
        "rules[0].conditions.all[1].any[1].name: unknown variable 'prio' "
        "(did you mean 'priority'?)"]


# -- actions --------------------------------------------------------------------------------

def test_unknown_action_suggests_the_closest_action():
    assert rule_problems(TIER_IS_VIP, act("escalat", level=1)) == [
        "rules[0].actions[0].name: unknown action 'escalat' (did you mean 'escalate'?)"]


def test_unknown_parameter_is_refused_and_missing_required_one_reported():
    assert rule_problems(TIER_IS_VIP, act("escalate", lvl=1)) == [
        "rules[0].actions[0].params.level: missing: escalate needs 'level'",
        "rules[0].actions[0].params.lvl: unknown parameter of escalate (did you mean 'level'?) "
        "(known: level, group, assignee, note)"]


@pytest.mark.parametrize(("level", "shown"), [(0, "0"), ("1", "'1'")])
def test_escalate_level_must_be_a_whole_number_from_one(level, shown):
    assert rule_problems(TIER_IS_VIP, act("escalate", level=level)) == [
        f"rules[0].actions[0].params.level: expected a whole number >= 1, got {shown}"]


def test_rule_without_actions_is_refused():
    assert problems({"slas": SLAS, "rules": [rule("r", TIER_IS_VIP)]}) == [
        "rules[0].actions: empty: a rule needs at least one action"]


@pytest.mark.parametrize("text", ["{id.__class__}", "{id!r}", "{x:>10}", "{nope}"])
def test_note_placeholder_other_than_a_plain_known_name_is_refused(text):
    assert rule_problems(TIER_IS_VIP, act("add_note", text=f"see {text}")) == [
        f"rules[0].actions[0].params.text: unknown placeholder {text} {ALLOWED}"]


@pytest.mark.parametrize(("text", "reason"), [
    ("due {id", "expected '}' before end of string"),
    ("due } soon", "Single '}' encountered in format string"),
])
def test_unbalanced_brace_in_a_note_is_refused(text, reason):
    assert rule_problems(TIER_IS_VIP, act("escalate", level=1, note=text)) == [
        f"rules[0].actions[0].params.note: malformed template ({reason}); "
        "write {{ and }} for braces"]


def test_note_with_known_placeholders_and_escaped_braces_is_accepted():
    text = "{{SLA}} {sla}: {first_response_minutes_left} min left on {id}"
    policy = make_policy(rules=[rule("r", TIER_IS_VIP, act("add_note", text=text))])
    assert policy.rules[0].actions == ({"name": "add_note", "params": {"text": text}},)


# -- SLAs, durations, calendars -------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("1h30m", 5400), ("2d", 172800)])
def test_durations_are_read_as_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("3x", "'3x' is not a duration (write e.g. 90s, 30m, 4h, 2d, 2bd or 1h30m)"),
    ("-5m", "'-5m' is not a duration (write e.g. 90s, 30m, 4h, 2d, 2bd or 1h30m)"),
    ("0m", "'0m' is not a positive duration"),
    ("", "'' is not a duration (write e.g. 90s, 30m, 4h, 2d, 2bd or 1h30m)"),
])
def test_bad_duration_is_named_by_its_target_path(text, message):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message
    assert sla_problems({"name": "s", "targets": {"resolution": text}}) == [
        f"slas[0].targets.resolution: {message}"]


def test_unknown_target_name_is_refused_with_suggestion():
    assert sla_problems({"name": "s", "targets": {"first_respons": "1h"}}) == [
        "slas[0].targets.first_respons: unknown target (did you mean 'first_response'?) "
        "(known: first_response, resolution, next_response, periodic_update, pausable_update, "
        "time_to_own, agent_work_time, requester_wait_time)"]


def test_duplicate_sla_names_are_refused():
    assert sla_problems({"name": "a", "when": TIER_IS_VIP, "targets": {"resolution": "1h"}},
                        {"name": "a", "targets": {"resolution": "2h"}}) == [
        "slas[1].name: duplicate SLA name 'a' (also at index 0)"]


def test_duplicate_rule_names_are_refused():
    assert problems({"slas": SLAS, "rules": [rule("r", TIER_IS_VIP, TAG),
                                             rule("r", TIER_IS_VIP, TAG)]}) == [
        "rules[1].name: duplicate rule name 'r' (also at index 0)"]


@pytest.mark.parametrize("variable", ["first_response_breached", "sla"])
def test_clock_variables_are_refused_in_an_sla_when(variable):
    operator = "is_true" if variable.endswith("breached") else "non_empty"
    assert sla_problems({"name": "s", "when": cond(variable, operator),
                         "targets": {"resolution": "1h"}}) == [
        f"slas[0].when.name: {variable!r} cannot be used here: "
        "an SLA is chosen before its clocks run"]


def test_unknown_calendar_suggests_the_built_in_one():
    assert sla_problems({"name": "s", "calendar": "24x8", "targets": {"resolution": "1h"}}) == [
        "slas[0].calendar: unknown calendar '24x8' (did you mean '24x7'?) (defined: 24x7)"]


def test_a_calendar_with_no_working_time_is_refused():
    office = {"timezone": "Europe/Berlin", "week": {}, "holidays": []}
    assert sla_problems(*SLAS, calendars={"office": office}) == [
        "calendars.office.week: no working time on any day"]


def test_unknown_top_level_key_suggests_the_closest_key():
    assert problems({"slas": SLAS, "rule": []}) == ["rule: unknown key (did you mean 'rules'?)"]


def test_every_mistake_in_a_policy_is_reported_in_one_pass():
    data = {
        "rule": [],
        "slas": [{"name": "s", "targets": {"resolution": "3x"}}],
        "rules": [rule("r", cond("teir", "equal_to", "vip"), act("escalat", level=1))],
    }
    with pytest.raises(PolicyError) as info:
        check_policy(data, "team.json")
    assert str(info.value) == (
        "team.json: invalid policy (4 problems):\n"
        "  rule: unknown key (did you mean 'rules'?)\n"
        "  slas[0].targets.resolution: '3x' is not a duration "
        "(write e.g. 90s, 30m, 4h, 2d, 2bd or 1h30m)\n"
        "  rules[0].conditions.name: unknown variable 'teir' (did you mean 'tier'?)\n"
        "  rules[0].actions[0].name: unknown action 'escalat' (did you mean 'escalate'?)")


# -- warnings and derived facts -------------------------------------------------------------

def test_sla_after_a_fallback_is_a_warning_not_an_error():
    policy = make_policy(slas=[*SLAS, {"name": "vip", "when": TIER_IS_VIP,
                                       "targets": {"resolution": "1h"}}])
    assert policy.warnings == (Problem(
        "slas[1]", "never matches: slas[0] ('standard') has no 'when' and matches every record"),)
    assert [s.name for s in policy.slas] == ["standard", "vip"]


def test_sla_without_targets_is_a_warning():
    policy = make_policy(slas=[{"name": "none"}])
    assert policy.warnings == (Problem("slas[0]", "no targets: this SLA's clocks never breach"),)


def test_wall_clock_horizon_is_the_largest_hours_since_threshold():
    policy = make_policy(rules=[rule("r", {"all": [
        cond("hours_since_created", "greater_than", 48),
        cond("hours_since_updated", "less_than", 72.5),
        cond("escalation_level", "greater_than", 100),
    ]}, TAG)])
    assert policy.wall_clock_horizon_hours == 72.5


def test_wall_clock_horizon_is_none_without_hours_since_conditions():
    assert make_policy(rules=[rule("r", TIER_IS_VIP, TAG)]).wall_clock_horizon_hours is None


def test_shipped_tiered_support_policy_is_valid():
    policy = load_policy(ROOT / "policies" / "tiered-support.json")
    assert (len(policy.slas), len(policy.rules), policy.warnings) == (5, 8, ())
    assert policy.slas[0].targets == {"first_response": Target(900),
                                      "resolution": Target(259200)}


@pytest.mark.parametrize(("tier", "priority", "sla", "first_response", "resolution"), [
    ("vip", "urgent", "vip", "30m", "4h"), ("vip", "high", "vip", "30m", "4h"),
    ("vip", "normal", "vip", "2h", "12h"), ("vip", "low", "vip", "2h", "12h"),
    ("gold", "urgent", "gold", "1h", "1bd"), ("gold", "high", "gold", "1h", "1bd"),
    ("gold", "normal", "gold", "4h", "2bd"),
    ("standard", "urgent", "standard", "4h", "2bd"), ("standard", "high", "standard", "4h", "2bd"),
    ("standard", "normal", "standard", "1bd", "5bd"), ("", "low", "standard", "1bd", "5bd"),
])
def test_the_shipped_matrix_gives_each_tier_and_priority_its_targets(
        tier: str, priority: str, sla: str, first_response: str, resolution: str) -> None:
    """The shipped policy's targets by priority (issue 14's matrix) are those of the eight
    SLAs it replaced (vip-urgent, gold-urgent and standard-urgent for urgent or high)."""
    policy = load_policy(ROOT / "policies" / "tiered-support.json")
    record = make_record(tier=tier, priority=priority)
    chosen = next(s for s in policy.slas if s.when is None or check_conditions_recursively(
        s.when, RecordVariables(record_facts(record, record.created_at, policy.fields))))
    assert chosen.name == sla
    assert dict(chosen.targets_for(record)) == {"first_response": parse_target(first_response),
                                                "resolution": parse_target(resolution)}


def test_invalid_json_is_reported_with_line_and_column(tmp_path: Path):
    path = tmp_path / "policy.json"
    path.write_text('{\n  "slas": [,]\n}')
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert [str(p) for p in info.value.problems] == [
        "$: invalid JSON at line 2, column 12: Expecting value"]


# -- sla-sync validate ----------------------------------------------------------------------

def validate(tmp_path: Path, data: dict[str, Any]):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data))
    return path, CliRunner().invoke(main, ["validate", str(path)])


def test_validate_accepts_a_good_policy_and_prints_its_warnings(tmp_path: Path):
    path, result = validate(tmp_path, {"slas": [{"name": "none"}]})
    assert result.exit_code == 0
    assert result.stdout == ("warning: slas[0]: no targets: this SLA's clocks never breach\n"
                             f"{path}: valid (1 SLAs, 0 rules)\n")
    assert result.stderr == ""


def test_validate_prints_one_line_per_problem_on_stderr_and_exits_2(tmp_path: Path):
    path, result = validate(tmp_path, {"rule": [], "slas": [
        {"name": "s", "targets": {"resolution": "0m"}}]})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (f"{path}: invalid policy\n"
                             "rule: unknown key (did you mean 'rules'?)\n"
                             "slas[0].targets.resolution: '0m' is not a positive duration\n")
