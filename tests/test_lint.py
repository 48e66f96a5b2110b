"""`sla-sync lint`: findings over a valid policy, each proven."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import ROOT, act, cond, make_policy, record_dict, rule, write_project
from sla_sync.rules.lint import (
    ERROR,
    WARNING,
    All,
    Leaf,
    Reasoner,
    default_facts,
    evaluate,
    formula,
    lint,
    negate,
)
from sla_sync.sync import main

TAG = act("add_tag", tag="t")


def sla(name: str, when: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "targets": {"first_response": "1h"}, **extra}
    if when is not None:
        out["when"] = when
    return out


def findings(slas: list[dict[str, Any]] | None = None, rules: list[dict[str, Any]] | None = None,
             **kwargs: Any) -> list[str]:
    return [str(f) for f in lint(make_policy(slas, rules), **kwargs)]


def only_rules(*rules: dict[str, Any]) -> list[str]:
    return findings(None, list(rules))


# -- no false alarms ---------------------------------------------------------------------------

@pytest.mark.parametrize("policy_file", sorted((ROOT / "policies").glob("*.json")),
                         ids=lambda p: p.name)
def test_the_shipped_policies_have_no_findings(policy_file: Path) -> None:
    result = CliRunner().invoke(main, ["lint", str(policy_file)])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_a_clean_policy_with_narrow_slas_before_broad_ones_has_no_findings() -> None:
    slas = [sla("gold-urgent", {"all": [cond("tier", "equal_to", "gold"),
                                        cond("priority", "is_one_of", ["urgent"])]}),
            sla("gold", cond("tier", "equal_to", "gold")),
            sla("late", cond("hours_since_created", "greater_than_or_equal_to", 5)),
            sla("later", cond("hours_since_created", "greater_than", 5)),  # 5 itself is late
            sla("rest")]
    assert findings(slas, [rule("r", cond("sla", "equal_to", "gold"), TAG)]) == [
        "warning: slas[3]: shadowed by slas[2] 'late': every record it matches, slas[2] "
        "matches first"]


# -- SLAs --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("earlier", "later"), [
    pytest.param(cond("tier", "equal_to", "gold"),
                 {"all": [cond("tier", "equal_to", "gold"), cond("priority", "equal_to", "high")]},
                 id="all narrows equal_to"),
    pytest.param(cond("tier", "is_one_of", ["vip", "gold"]), cond("tier", "equal_to", "vip"),
                 id="is_one_of covers"),
    pytest.param({"any": [cond("tier", "equal_to", "vip"), cond("tier", "equal_to", "gold")]},
                 cond("tier", "is_one_of", ["gold", "vip"]), id="any covers"),
    pytest.param(cond("hours_since_created", "greater_than", 5),
                 cond("hours_since_created", "greater_than_or_equal_to", 10), id="ranges"),
    pytest.param(cond("tier", "starts_with", "vi"), cond("tier", "equal_to", "vip"),
                 id="another operator run on the one value left"),
    pytest.param(cond("tier", "not_equal_to", "gold"), cond("tier", "is_empty"),
                 id="not_equal_to and is_empty"),
    pytest.param(cond("tags", "contains", "VIP"), {"all": [cond("tags", "contains", "vip"),
                                                           cond("kind", "equal_to", "lead")]},
                 id="tags case-insensitive"),
])
def test_an_sla_implied_by_an_earlier_one_is_shadowed(earlier: dict[str, Any],
                                                      later: dict[str, Any]) -> None:
    assert findings([sla("a", earlier), sla("b", later), sla("rest")]) == [
        "warning: slas[1]: shadowed by slas[0] 'a': every record it matches, slas[0] "
        "matches first"]


@pytest.mark.parametrize(("earlier", "later"), [
    pytest.param(cond("hours_since_created", "greater_than", 5),
                 cond("hours_since_created", "greater_than_or_equal_to", 5), id="5 is not > 5"),
    pytest.param(cond("tier", "starts_with", "vi"), cond("tier", "ends_with", "ip"),
                 id="operators with infinitely many values: no claim"),
    pytest.param(cond("tier", "is_one_of", ["vip", "gold"]),
                 {"any": [cond("tier", "equal_to", "vip"), cond("tier", "equal_to", "silver")]},
                 id="one value not covered"),
    pytest.param(cond("tags", "contains_all", ["a", "b"]), cond("tags", "contains", "a"),
                 id="tags"),
])
def test_an_sla_that_can_match_a_record_the_earlier_one_does_not_is_not_shadowed(
        earlier: dict[str, Any], later: dict[str, Any]) -> None:
    assert findings([sla("a", earlier), sla("b", later), sla("rest")]) == []


def test_an_sla_covered_only_by_several_earlier_ones_is_unreachable() -> None:
    slas = [sla("low", cond("priority", "equal_to", "low")),
            sla("not-low", cond("priority", "not_equal_to", "low")),
            sla("gold", cond("tier", "equal_to", "gold"))]
    assert findings(slas) == ["warning: slas[2]: unreachable: every record it matches, an "
                              "earlier SLA (slas[0], slas[1]) matches first"]


def test_a_fallback_after_an_sla_that_matches_everything_is_shadowed() -> None:
    slas = [sla("all", {"any": [cond("priority", "equal_to", "low"),
                                cond("priority", "not_equal_to", "low")]}), sla("rest")]
    assert findings(slas) == ["warning: slas[1]: shadowed by slas[0] 'all': every record it "
                              "matches, slas[0] matches first"]


def test_an_sla_whose_when_cannot_hold_is_an_error() -> None:
    when = {"all": [cond("kind", "not_equal_to", "ticket"), cond("kind", "not_equal_to", "lead")]}
    assert findings([sla("x", when), sla("rest")]) == [
        "error: slas[0].when: no record can match: slas[0].when.all[0] (not kind equal_to "
        "'ticket') and slas[0].when.all[1] (not kind equal_to 'lead') cannot both hold"
        .replace("not kind equal_to", "kind not_equal_to")]


# -- rules -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("conditions", "why"), [
    pytest.param([cond("tier", "equal_to", "vip"), cond("tier", "equal_to", "gold")],
                 "all[0] (tier equal_to 'vip') and rules[0].conditions.all[1] (tier equal_to "
                 "'gold') cannot both hold", id="two values"),
    pytest.param([cond("hours_since_created", "greater_than", 10),
                  cond("hours_since_created", "less_than_or_equal_to", 10)],
                 "cannot both hold", id="ranges that do not overlap"),
    pytest.param([cond("first_response_elapsed_pct", "greater_than", 120),
                  cond("first_response_breached", "is_false")],
                 "cannot both hold (first_response_breached is true exactly when "
                 "first_response_elapsed_pct is above 100 and first_response_minutes_left "
                 "below 0)", id="breached false above 100%"),
    pytest.param([cond("resolution_minutes_left", "less_than", -5),
                  cond("resolution_met", "is_true")], "cannot both hold",
                 id="met but minutes below zero"),
    pytest.param([cond("in_business_hours", "is_true"), cond("in_business_hours", "is_false")],
                 "cannot both hold", id="a boolean both ways"),
    pytest.param([cond("kind", "equal_to", "case")],
                 "all[0]: kind equal_to 'case' (kind is ticket or lead)", id="no such kind"),
    pytest.param([cond("sla", "equal_to", "gold"), cond("tier", "equal_to", "vip")],
                 "(sla equal_to 'gold') and rules[0].conditions.all[1] (tier equal_to 'vip') "
                 "cannot both hold (a record is under SLA 'gold' only when its when holds)",
                 id="the SLA it names excludes it"),
])
def test_conditions_that_cannot_hold_together_are_an_error(conditions: list[dict[str, Any]],
                                                           why: str) -> None:
    slas = [sla("gold", cond("tier", "equal_to", "gold")), sla("rest")]
    out = findings(slas, [rule("r", {"all": conditions}, TAG)])
    assert len(out) == 1 and out[0].startswith("error: rules[0].conditions: can never hold: ")
    assert why in out[0]


def test_a_rule_naming_an_sla_nothing_defines_is_an_error() -> None:
    slas = [sla("vip", cond("tier", "equal_to", "vip")), sla("rest")]
    assert findings(slas, [rule("r", {"all": [cond("sla", "equal_to", "vipp")]}, TAG)]) == [
        "error: rules[0].conditions.all[0].value: no SLA 'vipp' (did you mean 'vip'?) "
        "(SLAs: vip, rest)"]


def test_a_tag_or_group_nothing_produces_is_reported_only_as_a_near_miss() -> None:
    out = only_rules(
        rule("warn", cond("first_response_elapsed_pct", "greater_than", 75),
             act("add_tag", tag="sla_warning"), act("assign_group", group="tier2")),
        rule("typo", cond("tags", "contains", "sla_warnnig"), act("add_note", text="x")),
        rule("human", cond("tags", "contains", "customer_angry"), act("add_note", text="x")),
        rule("group", cond("group", "equal_to", "tier-2"), act("add_note", text="y")),
        rule("undo", cond("kind", "equal_to", "lead"), act("remove_tag", tag="sla_warnin")))
    assert out == [
        "warning: rules[1].conditions.value: no rule adds tag 'sla_warnnig'; did you mean "
        "'sla_warning', which rules[0] adds?",
        "warning: rules[3].conditions.value: no rule assigns group 'tier-2'; did you mean "
        "'tier2', which rules[0] assigns?",
        "warning: rules[4].actions[0].params.tag: no rule adds tag 'sla_warnin'; did you mean "
        "'sla_warning', which rules[0] adds?"]


def test_rules_that_re_trigger_each_other_in_a_loop_are_an_error() -> None:
    out = only_rules(rule("raise", cond("priority", "equal_to", "low"),
                          act("set_priority", priority="normal")),
                     rule("lower", cond("priority", "equal_to", "normal"),
                          act("set_priority", priority="low")))
    assert out == ["error: rules[0]: 'raise' and rules[1] 'lower' re-trigger each other in a "
                   "loop: rules[0] sets priority 'normal', rules[1] sets priority 'low', and "
                   "each write makes the other rule fire again (e.g. a record with priority "
                   "'low')"]


def priority_round(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """low -> normal -> high -> low, one rule a step; `extra` conditions join each rule's."""
    steps = [("up", "low", "normal"), ("top", "normal", "high"), ("reset", "high", "low")]
    return [rule(name, {"all": [cond("priority", "equal_to", when), *extra[i:i + 1]]},
                 act("set_priority", priority=to))
            for i, (name, when, to) in enumerate(steps)]


def test_three_rules_that_re_trigger_each_other_in_a_loop_are_an_error() -> None:
    out = only_rules(*priority_round())
    loops = [line for line in out if "loop" in line]
    assert loops == [
        "error: rules[0]: 'up', rules[1] 'top' and rules[2] 'reset' re-trigger each other in "
        "a loop: rules[0] sets priority 'normal', rules[1] sets priority 'high', rules[2] sets "
        "priority 'low', and each write makes the next rule fire again, round to the first "
        "(e.g. a record with priority 'low')"]
    # each pair on its own only undoes the other (no pair loops)
    assert len(out) == 4 and all("undo each other" in line for line in out if line not in loops)


def test_a_loop_through_four_rules_and_tags_is_found() -> None:
    # a -> b -> c -> d -> a: each rule swaps the tag it reads for the next one
    names = "abcd"
    rules = [rule(f"swap-{x}", cond("tags", "contains", x), act("remove_tag", tag=x),
                  act("add_tag", tag=names[(i + 1) % 4])) for i, x in enumerate(names)]
    loops = [line for line in only_rules(*rules) if "loop" in line]
    assert len(loops) == 1 and loops[0].startswith(
        "error: rules[0]: 'swap-a', rules[1] 'swap-b', rules[2] 'swap-c' and rules[3] "
        "'swap-d' re-trigger each other in a loop")


def test_a_chain_that_does_not_come_back_is_no_loop() -> None:
    chain = priority_round()
    chain[2] = rule("reset", cond("priority", "equal_to", "high"),
                    act("set_priority", priority="urgent"))
    assert not [line for line in only_rules(*chain) if "loop" in line]


def test_a_round_that_cannot_happen_to_one_record_is_no_loop() -> None:
    # the first step is for gold customers only, the last for vip ones: no record goes round
    rules = priority_round(cond("tier", "equal_to", "gold"), cond("channel", "equal_to", "web"),
                           cond("tier", "equal_to", "vip"))
    assert not [line for line in only_rules(*rules) if "loop" in line]


def test_rules_that_undo_each_other_when_both_fire_are_a_warning() -> None:
    out = only_rules(rule("gold", cond("tier", "equal_to", "gold"), act("add_tag", tag="x")),
                     rule("web", cond("channel", "equal_to", "web"), act("remove_tag", tag="X")))
    assert out == ["warning: rules[0]: 'gold' and rules[1] 'web' undo each other: rules[0] adds "
                   "tag 'x', rules[1] removes tag 'x'; when both fire the later, rules[1], wins "
                   "(e.g. a record with tier 'gold', channel 'web')"]


def test_a_rule_whose_write_makes_another_undo_it_is_a_warning() -> None:
    out = only_rules(rule("gold", cond("tier", "equal_to", "gold"),
                          act("set_priority", priority="high")),
                     rule("cap", cond("priority", "equal_to", "high"),
                          act("set_priority", priority="normal")))
    assert out == ["warning: rules[0]: 'gold' and rules[1] 'cap' undo each other: rules[0] sets "
                   "priority 'high', rules[1] sets priority 'normal'; rules[0]'s write makes "
                   "rules[1] fire, which undoes it (e.g. a record with tier 'gold', priority "
                   "'other')"]


def test_rules_writing_the_same_field_under_exclusive_conditions_are_fine() -> None:
    assert only_rules(
        rule("warn", {"all": [cond("first_response_elapsed_pct", "greater_than", 75),
                              cond("first_response_breached", "is_false")]},
             act("add_tag", tag="warning")),
        rule("breach", cond("first_response_breached", "is_true"),
             act("remove_tag", tag="warning"))) == []


def test_a_warning_whose_threshold_lies_after_the_breach_is_reported() -> None:
    assert only_rules(rule("resolution-warning",
                           cond("resolution_elapsed_pct", "greater_than_or_equal_to", 110),
                           act("add_tag", tag="late"))) == [
        "warning: rules[0]: warns about resolution only after its breach: its threshold "
        "implies resolution_breached (elapsed_pct above 100)"]


# -- with the config ---------------------------------------------------------------------------

def test_webhooks_and_priorities_the_config_does_not_know_are_errors() -> None:
    rules = [rule("r", cond("first_response_breached", "is_true"),
                  act("notify", webhook="oncal", text="x"),
                  act("set_priority", priority="critical"))]
    out = findings(None, rules, webhooks=["oncall"],
                   writable_priority=lambda p: p in ("low", "normal", "high", "urgent"))
    assert out == [
        "error: rules[0].actions[0].params.webhook: webhook 'oncal' is not defined under "
        "`webhooks:` in the config (did you mean 'oncall'?)",
        "error: rules[0].actions[1].params.priority: the connector cannot write priority "
        "'critical'"]


def test_lint_config_reads_the_connectors_own_priority_map(tmp_path: Path) -> None:
    policy = {"slas": [sla("rest")], "rules": [
        rule("r", cond("tier", "equal_to", "vip"), act("set_priority", priority="critical"))]}
    (tmp_path / "p.json").write_text(json.dumps(policy))
    config = tmp_path / "c.yaml"
    config.write_text("connector: {type: rt, url: 'http://127.0.0.1:9', token: t}\n"
                      "policy: p.json\nstate: s.db\n")
    result = CliRunner().invoke(main, ["lint", str(tmp_path / "p.json"), "--config", str(config)])
    assert result.exit_code == 1
    assert result.stdout == ("error: rules[0].actions[0].params.priority: the connector cannot "
                             "write priority 'critical'\n")
    config.write_text("connector: {type: rt, url: 'http://127.0.0.1:9', token: t, "
                      "priority_map: {critical: 90}}\npolicy: p.json\nstate: s.db\n")
    result = CliRunner().invoke(main, ["lint", str(tmp_path / "p.json"), "--config", str(config)])
    assert (result.exit_code, result.stdout) == (0, "")


# -- the command -------------------------------------------------------------------------------

def test_lint_exits_1_on_an_error_0_on_warnings_alone_and_prints_json(tmp_path: Path) -> None:
    warn_only = {"slas": [sla("a", cond("tier", "equal_to", "gold")),
                          sla("b", cond("tier", "equal_to", "gold")), sla("rest")]}
    (tmp_path / "w.json").write_text(json.dumps(warn_only))
    result = CliRunner().invoke(main, ["lint", str(tmp_path / "w.json")])
    assert result.exit_code == 0 and result.stdout.startswith("warning: slas[1]: shadowed")
    broken = {**warn_only, "rules": [rule("r", {"all": [cond("kind", "equal_to", "case")]},
                                          TAG)]}
    (tmp_path / "e.json").write_text(json.dumps(broken))
    result = CliRunner().invoke(main, ["lint", str(tmp_path / "e.json"), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert (data["errors"], data["warnings"]) == (1, 1)
    assert [f["severity"] for f in data["findings"]] == [WARNING, ERROR]
    assert data["findings"][1]["path"] == "rules[0].conditions"


def test_lint_of_an_invalid_policy_exits_2_with_the_checkers_problems(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"slas": [{"name": "x", "calendar": "nope"}]}))
    result = CliRunner().invoke(main, ["lint", str(tmp_path / "p.json")])
    assert result.exit_code == 2
    assert "slas[0].calendar: unknown calendar 'nope'" in result.output


# -- soundness: every "cannot hold" is true of the real engine ----------------------------------

GRID = {
    "tier": ["", "vip", "gold", "silver"],
    "kind": ["ticket", "lead"],
    "hours_since_created": [0.0, 4.999999, 5.0, 5.0000005, 7.5, 10.0],
    "first_response_breached": [False, True],
    "tags": [[], ["a"], ["A", "b"]],
}
LEAVES = [cond("tier", "equal_to", "vip"), cond("tier", "is_one_of", ["vip", "gold"]),
          cond("tier", "starts_with", "g"), cond("tier", "is_empty"),
          cond("kind", "equal_to", "lead"),
          cond("hours_since_created", "greater_than", 5),
          cond("hours_since_created", "less_than_or_equal_to", 5),
          cond("hours_since_created", "equal_to", 7.5),
          cond("first_response_breached", "is_true"),
          cond("tags", "contains", "a"), cond("tags", "contains_all", ["a", "b"])]


def random_conditions(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth > 2 or rng.random() < 0.35:
        leaf = dict(rng.choice(LEAVES))
        if rng.random() < 0.3:  # the same test negated, where the operator has an opposite
            opposite = {"equal_to": "not_equal_to", "is_one_of": "is_not_one_of",
                        "contains": "does_not_contain", "is_true": "is_false",
                        "greater_than": "less_than_or_equal_to"}
            leaf["operator"] = opposite.get(leaf["operator"], leaf["operator"])
        return leaf
    return {rng.choice(["all", "any"]): [random_conditions(rng, depth + 1)
                                         for _ in range(rng.randint(1, 3))]}


def test_every_impossibility_claimed_is_true_of_every_record_on_a_grid() -> None:
    rng = random.Random(7)
    reasoner = Reasoner(make_policy())
    grid = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    claims = 0
    for _ in range(120):
        f = formula(make_policy(rules=[rule("r", random_conditions(rng), TAG)]).rules[0]
                    .conditions, "c")
        for candidate in (f, All((f, negate(f))), negate(f)):
            if reasoner.impossible(candidate):
                claims += 1
                for values in grid:
                    facts = {**default_facts(), **values}
                    assert not evaluate(candidate, facts), (candidate, values)
    assert claims > 120  # f and not-f is always impossible, and it must be found


def test_a_leaf_is_evaluated_by_business_rules_itself() -> None:
    leaf = Leaf("hours_since_created", "greater_than", 5)
    assert not leaf.holds({"hours_since_created": 5.0000005})  # within business-rules' epsilon
    assert leaf.holds({"hours_since_created": 5.00001})


def test_against_the_mirror_counts_each_slas_share_and_records_no_sla_matches(
        tmp_path: Path) -> None:
    records = [record_dict(id="T-1", tier="gold"), record_dict(id="T-2", tier="gold"),
               record_dict(id="T-3", tier="silver")]
    policy = {"slas": [sla("gold", cond("tier", "equal_to", "gold")),
                       sla("vip", cond("tier", "equal_to", "vip"))]}
    config = write_project(tmp_path, records, policy)
    assert CliRunner().invoke(main, ["run", "--config", str(config)]).exit_code == 0
    result = CliRunner().invoke(main, ["lint", str(tmp_path / "policy.json"), "--config",
                                       str(config), "--against-mirror", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mirror"] == {"records": 3, "by_sla": {"gold": 2, "vip": 0, "": 1}}
    assert [(f["path"], f["message"]) for f in data["findings"]] == [
        ("slas", "1 of 3 known records (33.3%) match no SLA: no clock runs for them"),
        ("slas[1]", "matches none of the 3 known records")]


def test_against_the_mirror_needs_a_config_and_a_state_file(tmp_path: Path) -> None:
    config = write_project(tmp_path, [], {"slas": [sla("rest")]})
    policy = str(tmp_path / "policy.json")
    result = CliRunner().invoke(main, ["lint", policy, "--against-mirror"])
    assert result.exit_code == 2 and "give --config FILE" in result.output
    result = CliRunner().invoke(main, ["lint", policy, "--config", str(config),
                                       "--against-mirror"])
    assert result.exit_code == 2 and "no state file yet" in result.output
