"""The planner: one ChangeSet per record from the rules that fired, once per activation."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import act, at, cond, iso, make_policy, make_record, rule
from sla_sync.connector.model import ChangeSet
from sla_sync.rules.planner import (
    MAX_PASSES,
    NOT_HIGHER,
    OVERRIDDEN,
    SATISFIED,
    SUPERSEDED,
    VOID,
    WRITE,
    Plan,
    Step,
    change_of,
    judge,
    plan,
    unchanged,
)

NOW = at("2026-03-02 12:00")
BASE = at("2026-03-02 09:00")
GOLD = {"all": [cond("tier", "equal_to", "gold")]}


def plan_for(*rules: dict[str, Any], active: frozenset[str] = frozenset(),
             **fields: Any) -> Plan:
    return plan(make_record(**fields), make_policy(rules=list(rules)), NOW, active)


def change(**fields: Any) -> ChangeSet:
    return ChangeSet("T-1", base_updated_at=BASE, **fields)


# -- each action ------------------------------------------------------------------------------

@pytest.mark.parametrize(("action", "expected"), [
    pytest.param(act("set_priority", priority="high"), change(fields={"priority": "high"}),
                 id="set_priority"),
    pytest.param(act("assign", assignee="alice"), change(fields={"assignee": "alice"}),
                 id="assign"),
    pytest.param(act("assign_group", group="billing"), change(fields={"group": "billing"}),
                 id="assign_group"),
    pytest.param(act("add_tag", tag="gold"), change(add_tags=("gold",)), id="add_tag"),
    pytest.param(act("add_note", text="Gold ticket {id}"), change(notes=("Gold ticket T-1",)),
                 id="add_note"),
])
def test_action_writes_its_slot(action, expected):
    p = plan_for(rule("r", GOLD, action), tier="gold")
    assert p.change == expected
    assert [s.outcome for s in p.steps] == [WRITE]


def test_remove_tag_removes_a_present_tag():
    p = plan_for(rule("r", GOLD, act("remove_tag", tag="new")), tier="gold", tags=["new", "x"])
    assert p.change == change(remove_tags=("new",))


def test_escalate_sets_level_group_assignee_and_note():
    p = plan_for(rule("esc", GOLD, act("escalate", level=2, group="tier2", assignee="bob",
                                       note="Escalated {id}")), tier="gold")
    assert p.change == change(fields={"group": "tier2", "assignee": "bob"},
                              notes=("Escalated T-1",), escalation_level=2)


def test_change_is_based_on_the_records_updated_at():
    p = plan_for(rule("r", GOLD, act("add_tag", tag="g")), tier="gold",
                 updated_at=iso("2026-03-02 11:15"))
    assert p.change.base_updated_at == at("2026-03-02 11:15")


def test_what_the_record_already_satisfies_is_dropped():
    p = plan_for(rule("r", GOLD, act("set_priority", priority="high"), act("add_tag", tag="g"),
                      act("remove_tag", tag="stale"), act("assign_group", group="support")),
                 tier="gold", priority="high", tags=["g"], group="support")
    assert p.change.is_empty()
    assert [s.outcome for s in p.steps] == [SATISFIED] * 4
    assert p.activated == frozenset({"r"})


def test_identical_notes_from_two_rules_are_written_once():
    p = plan_for(rule("a", GOLD, act("add_note", text="Gold {id}")),
                 rule("b", GOLD, act("add_note", text="Gold {id}")), tier="gold")
    assert p.change == change(notes=("Gold T-1",))
    assert p.steps[1] == Step("b", "add_note", "note", None, "Gold T-1", SATISFIED,
                              "the same note is already planned")


# -- conflicts --------------------------------------------------------------------------------

def test_later_rule_in_the_policy_wins_the_same_field():
    p = plan_for(rule("a", GOLD, act("set_priority", priority="high")),
                 rule("b", GOLD, act("set_priority", priority="urgent")), tier="gold")
    assert p.change == change(fields={"priority": "urgent"})
    assert p.steps[0] == Step("a", "set_priority", "priority", "normal", "high", OVERRIDDEN,
                              "by rule 'b', later in the policy")


def test_later_rule_wins_between_add_and_remove_of_the_same_tag():
    p = plan_for(rule("a", GOLD, act("add_tag", tag="vip")),
                 rule("b", GOLD, act("remove_tag", tag="vip")), tier="gold", tags=["vip"])
    assert p.change == change(remove_tags=("vip",))
    assert [(s.rule, s.outcome) for s in p.steps] == [("a", OVERRIDDEN), ("b", WRITE)]


def test_escalation_never_lowers_the_level():
    p = plan_for(rule("esc", GOLD, act("escalate", level=1, group="tier1")),
                 tier="gold", escalation_level=2)
    assert p.change.is_empty()
    assert {(s.slot, s.outcome, s.detail) for s in p.steps} == {
        ("escalation_level", NOT_HIGHER, "already at level 2"),
        ("group", NOT_HIGHER, "already at level 2")}


def test_higher_escalation_wins_and_the_superseded_group_does_not_apply():
    p = plan_for(rule("high", GOLD, act("escalate", level=3, group="tier3")),
                 rule("low", GOLD, act("escalate", level=2, group="tier2", note="low")),
                 tier="gold")
    assert p.change == change(fields={"group": "tier3"}, escalation_level=3)
    superseded = [s for s in p.steps if s.rule == "low"]
    assert {s.slot for s in superseded} == {"escalation_level", "group", "note"}
    assert {(s.outcome, s.detail) for s in superseded} == {
        (SUPERSEDED, "escalation to level 3 by rule 'high'")}


# -- once per activation ----------------------------------------------------------------------

def test_active_rule_does_not_fire_again_after_a_person_removed_its_tag():
    p = plan_for(rule("r", GOLD, act("add_tag", tag="gold")),
                 active=frozenset({"r"}), tier="gold", tags=[])
    assert p.change.is_empty()
    assert p.steps == ()
    assert p.active_after == frozenset({"r"})


def test_rule_whose_conditions_are_false_is_deactivated():
    p = plan_for(rule("r", GOLD, act("add_tag", tag="gold")),
                 active=frozenset({"r"}), tier="standard")
    assert p.active_after == frozenset()
    assert p.deactivated == frozenset({"r"})


def test_deactivated_rule_fires_again_once_true_again():
    policy = make_policy(rules=[rule("r", GOLD, act("add_tag", tag="gold"))])
    off = plan(make_record(tier="standard"), policy, NOW, {"r"})
    again = plan(make_record(tier="gold"), policy, at("2026-03-02 13:00"), off.active_after)
    assert again.change == change(add_tags=("gold",))
    assert again.activated == frozenset({"r"})


# -- cascades ---------------------------------------------------------------------------------

CASCADE = [
    rule("vip-priority", {"all": [cond("tags", "contains", "vip")]},
         act("set_priority", priority="high")),
    rule("gold-is-vip", GOLD, act("add_tag", tag="vip")),
]


def test_rule_made_true_by_another_rules_action_fires_in_the_same_plan():
    p = plan_for(*CASCADE, tier="gold")
    assert p.change == change(fields={"priority": "high"}, add_tags=("vip",))
    assert p.fired == ("vip-priority", "gold-is-vip")  # policy order
    assert (p.passes, p.settled) == (3, True)
    assert p.active_after == frozenset({"gold-is-vip", "vip-priority"})


def test_replanning_the_applied_record_with_active_after_plans_nothing():
    policy = make_policy(rules=CASCADE)
    first = plan(make_record(tier="gold"), policy, NOW)
    applied = first.change.applied_to(first.record, NOW)
    second = plan(applied, policy, at("2026-03-02 12:05"), first.active_after)
    assert second.change.is_empty()
    assert second.fired == ()
    assert second.active_after == first.active_after


def test_rules_that_undo_each_other_settle_on_the_later_rule_in_the_policy():
    p = plan_for(rule("add", {"all": [cond("tags", "does_not_contain", "x")]},
                      act("add_tag", tag="x")),
                 rule("remove", {"all": [cond("tags", "contains", "x")]},
                      act("remove_tag", tag="x")))
    assert p.change.is_empty()
    assert p.settled and p.passes < MAX_PASSES
    assert [(s.rule, s.outcome) for s in p.steps] == [("add", OVERRIDDEN), ("remove", SATISFIED)]


# -- bugs -------------------------------------------------------------------------------------

def test_a_rule_true_only_on_an_overridden_change_sends_and_notes_nothing():
    """urgent <-> high: `calm` fires on `raise`'s change (pass 2) and overrides it, so the
    record stays high; its note and notification would announce a write that never happens."""
    p = plan_for(rule("raise", {"all": [cond("priority", "equal_to", "high")]},
                      act("set_priority", priority="urgent")),
                 rule("calm", {"all": [cond("priority", "equal_to", "urgent")]},
                      act("set_priority", priority="high"), act("add_note", text="calmed"),
                      act("notify", webhook="ops", text="urgent ticket calmed")),
                 priority="high")
    assert p.change.is_empty() and p.notifications == () and not p.acts
    assert [(s.rule, s.slot, s.outcome) for s in p.steps] == [
        ("raise", "priority", OVERRIDDEN), ("calm", "priority", SATISFIED),
        ("calm", "note", VOID), ("calm", "notify:ops", VOID)]
    assert p.active_after == frozenset({"raise"})


def test_a_chained_rule_that_still_holds_keeps_its_note_and_notification():
    p = plan_for(rule("raise", {"all": [cond("priority", "equal_to", "high")]},
                      act("set_priority", priority="urgent")),
                 rule("page", {"all": [cond("priority", "equal_to", "urgent")]},
                      act("add_note", text="paged"), act("notify", webhook="ops", text="urgent")),
                 priority="high")
    assert p.change == change(fields={"priority": "urgent"}, notes=("paged",))
    assert p.notifications == (("page", "ops", "urgent"),)


def test_a_rule_true_on_the_record_as_read_keeps_its_note_though_its_change_undoes_it():
    """Fired in the first pass, on the record itself: its note is real even though its own
    tag makes its conditions false afterwards."""
    p = plan_for(rule("once", {"all": [cond("tags", "does_not_contain", "seen")]},
                      act("add_tag", tag="seen"), act("add_note", text="first look")))
    assert p.change == change(add_tags=("seen",), notes=("first look",))


def test_later_rule_in_the_policy_wins_even_when_it_fired_in_an_earlier_pass():
    p = plan_for(rule("vip-urgent", {"all": [cond("tags", "contains", "vip")]},
                      act("set_priority", priority="urgent")),
                 rule("gold-vip-high", GOLD, act("add_tag", tag="vip"),
                      act("set_priority", priority="high")), tier="gold")
    assert p.change == change(fields={"priority": "high"}, add_tags=("vip",))


def test_satisfied_rule_on_hours_since_updated_stays_active_on_unchanged_record():
    policy = make_policy(rules=[rule("stale", {"all": [
        cond("hours_since_updated", "greater_than", 24)]}, act("add_tag", tag="stale"))])
    record = make_record(tags=["stale"])
    first = plan(record, policy, at("2026-03-04 09:00"))
    assert first.change.is_empty()
    assert first.active_after == frozenset({"stale"})


# -- tags compare case-insensitively ---------------------------------------------------------

def test_adding_a_tag_present_in_another_case_is_already_satisfied():
    p = plan_for(rule("r", GOLD, act("add_tag", tag="vip")), tier="gold", tags=["VIP"])
    assert p.change.is_empty()
    assert [s.outcome for s in p.steps] == [SATISFIED]


def test_removing_a_tag_removes_it_in_the_case_the_record_has_it():
    p = plan_for(rule("r", {"all": [cond("tags", "contains", "urgent")]},
                      act("remove_tag", tag="urgent")), tags=["Urgent", "api"])
    assert p.change == change(remove_tags=("Urgent",))
    assert p.change.applied_to(p.record, NOW).tags == ("api",)


def test_add_and_remove_of_one_tag_in_two_cases_conflict_and_the_later_rule_wins():
    p = plan_for(rule("add", GOLD, act("add_tag", tag="VIP")),
                 rule("remove", GOLD, act("remove_tag", tag="vip")), tier="gold")
    assert p.change.is_empty()
    assert [(s.rule, s.outcome) for s in p.steps] == [("add", OVERRIDDEN),
                                                       ("remove", SATISFIED)]


# -- the merge's phases on their own ----------------------------------------------------------

def test_judge_lets_the_last_operation_on_a_slot_win_and_plans_appends_once():
    record = make_record(priority="normal")
    steps = judge(record, [("a", "set_priority", "priority", "high", ""),
                           ("b", "set_priority", "priority", "normal", ""),
                           ("a", "notify", "notify:ops", "hi", ""),
                           ("b", "notify", "notify:ops", "hi", ""),
                           ("b", "add_note", "note", "seen", "")])
    assert [(s.rule, s.slot, s.outcome) for s in steps] == [
        ("a", "priority", OVERRIDDEN), ("b", "priority", SATISFIED),
        ("a", "notify:ops", WRITE), ("b", "notify:ops", SATISFIED), ("b", "note", WRITE)]
    assert steps[0].detail == "by rule 'b', later in the policy"


def test_change_of_carries_out_only_the_steps_to_write():
    record = make_record(tags=["Urgent"], assignee="bob")
    steps = [Step("a", "assign", "assignee", "bob", "alice", WRITE),
             Step("b", "set_priority", "priority", "normal", "high", OVERRIDDEN),
             Step("c", "remove_tag", "tag:urgent", "present", "absent", WRITE),
             Step("d", "add_note", "note", None, "late", VOID),
             Step("e", "notify", "notify:ops", None, "hi", WRITE),
             Step("f", "escalate", "escalation_level", 0, 2, WRITE)]
    assert change_of(record, steps) == change(fields={"assignee": "alice"},
                                              remove_tags=("Urgent",), escalation_level=2)


@pytest.mark.parametrize("fields", [
    {}, {"id": "L-9", "kind": "lead"}, {"updated_at": "2026-03-02T11:59:59.250000+05:30"},
    {"id": "x" * 255, "tags": ["a"], "escalation_level": 3}])
def test_the_empty_change_is_the_one_the_constructor_gives(fields: dict[str, Any]) -> None:
    record = make_record(**fields)
    built = ChangeSet(record.id, base_updated_at=record.updated_at)
    fast = unchanged(record)
    assert fast == built and repr(fast) == repr(built) and fast.to_dict() == built.to_dict()
    assert fast.is_empty() and vars(fast) == vars(built)
    assert fast.applied_to(record, at("2026-03-02 12:00")) == built.applied_to(
        record, at("2026-03-02 12:00"))
    with pytest.raises(TypeError) as fast_raised:
        hash(fast)
    with pytest.raises(TypeError) as built_raised:
        hash(built)
    assert str(fast_raised.value) == str(built_raised.value)
    # what change_of gives for steps that write nothing: the same empty change
    assert change_of(record, []) == built
