"""The evaluation's shortcuts answer as the plain computation does.

On generated records (the bench's desk mix: tiers, pauses, reopenings, three business-hours
calendars with public holidays) under the bench's policy and under one that sets every
target, at instants on and off working hours:

- the clocks of targets that did not run are built only when asked for (rules.engine
  Clocks), and then are exactly the clock of a target that is not set, from the record's
  start; every target is there, in ALL_TARGETS order;
- the clock facts (copied for idle clocks, worked out inline for the others) are exactly
  what Clock's properties say, in the same order.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest

from conftest import bench_script
from sla_sync.connector.model import Record
from sla_sync.rules.clock import ALL_TARGETS, Clock, no_target
from sla_sync.rules.engine import Clocks, clock_facts, evaluate
from sla_sync.rules.policy import Policy, check_policy

NOW = datetime.fromisoformat("2026-03-02T12:00:00+00:00")
INSTANTS = (NOW, NOW - timedelta(days=3, hours=5, minutes=7, seconds=11),
            NOW + timedelta(days=2, hours=9, microseconds=250_001))


def bench_policy() -> dict[str, Any]:
    return bench_script("bench_desk").bench_policy()  # type: ignore[no-any-return]


def every_target_policy() -> dict[str, Any]:
    """The bench's policy with every target set on two SLAs (one with its own start, pause
    and stop conditions), and a rule reading a target no SLA sets."""
    policy = copy.deepcopy(bench_policy())
    more = {"next_response": "2h", "periodic_update": "1bd", "agent_work_time": "6h",
            "requester_wait_time": "1d", "time_to_own": "30m"}
    for sla in policy["slas"]:
        if sla["name"] in ("vip", "gold"):
            sla["targets"].update(more)
        if sla["name"] == "gold":
            sla["clocks"] = {"resolution": {
                "start_when": {"name": "status", "operator": "not_equal_to", "value": "new"},
                "pause_when": {"name": "group", "operator": "equal_to", "value": "tier2"}}}
    policy["rules"].append({
        "name": "reads-an-unset-target",
        "conditions": {"name": "pausable_update_business_minutes_elapsed",
                       "operator": "greater_than", "value": 5},
        "actions": [{"name": "add_tag", "params": {"tag": "seen"}}]})
    return policy


@pytest.fixture(scope="module")
def records() -> list[Record]:
    generate = bench_script("bench_desk").generate
    return [Record.from_dict(r) for r in generate(scale=2, seed=11)["records"]]


def property_facts(clocks: dict[str, Clock]) -> dict[str, Any]:
    """The clock variables as Clock's properties give them."""
    facts: dict[str, Any] = {}
    for target, clock in clocks.items():
        facts.update({
            f"{target}_minutes_left": clock.minutes_left,
            f"{target}_elapsed_pct": clock.elapsed_pct, f"{target}_breached": clock.breached,
            f"{target}_met": clock.met, f"{target}_paused": clock.paused,
            f"{target}_business_minutes_elapsed": clock.elapsed_seconds / 60,
            f"{target}_due_at_epoch": clock.due_at.timestamp() if clock.due_at else 0})
    return facts


@pytest.mark.parametrize("make", [bench_policy, every_target_policy])
def test_idle_clocks_and_clock_facts_are_what_the_plain_computation_gives(
        records: list[Record], make: Any) -> None:
    policy: Policy = check_policy(make(), "shortcuts")
    ran = idle = 0
    for now in INSTANTS:
        for record in records:
            evaluation = evaluate(record, policy, now)
            clocks = evaluation.clocks
            assert isinstance(clocks, Clocks)
            assert list(clocks) == list(ALL_TARGETS) and len(clocks) == len(ALL_TARGETS)
            plain = {target: clocks[target] for target in ALL_TARGETS}
            start = plain["first_response"].started_at  # it has no start_when here
            for target, clock in plain.items():
                if target in clocks.ran:
                    ran += 1
                    continue
                idle += 1
                assert clock == no_target(target, evaluation.calendar, start)
            expected = property_facts(plain)
            facts = {k: v for k, v in evaluation.facts.items() if k in expected}
            assert list(facts.items()) == list(expected.items())
            assert list(clock_facts(plain).items()) == list(expected.items())
            assert dict(clocks) == plain and clocks == plain
    assert ran and idle
