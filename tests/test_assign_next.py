"""assign_next(group, strategy): round robin and least loaded over a policy's `groups`,
skipping the agent a record is leaving, agents off shift and agents the helpdesk marks
unavailable; over several syncs through `sla-sync run` (the turn and the loads come from
the state file), explained, audited, and written once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import act, at, cli, cond, iso, make_policy, make_record, record_dict, rule
from sla_sync.rules.assignment import Pool
from sla_sync.rules.planner import NO_AGENT, WRITE, plan
from sla_sync.rules.policy import PolicyError, check_policy
from sla_sync.sync_state import StateStore

#: Berlin office hours; cy works mornings only.
CALENDARS = {
    "office": {"timezone": "Europe/Berlin", "week": {
        d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}},
    "mornings": {"timezone": "Europe/Berlin", "week": {
        d: ["08:00-12:00"] for d in ("mon", "tue", "wed", "thu", "fri")}},
}
GROUPS = {"tier2": {"agents": ["ana", "bo", {"name": "cy", "calendar": "mornings"}],
                    "calendar": "office"}}
MONDAY_10 = at("2026-03-02 10:00", tz="Europe/Berlin")  # everyone on shift
MONDAY_14 = at("2026-03-02 14:00", tz="Europe/Berlin")  # cy's morning is over


def breach_rule(strategy: str) -> dict[str, Any]:
    return rule("hand over", cond("tags", "contains", "handover"),
                act("assign_next", group="tier2", strategy=strategy))


def policy(strategy: str = "round_robin") -> Any:
    return make_policy(rules=[breach_rule(strategy)], calendars=CALENDARS, groups=GROUPS)


def handover(n: int, assignee: str = "") -> Any:
    return make_record(id=f"T-{n}", tags=["handover"], assignee=assignee, group="support")


def assigned(p: Any) -> str | None:
    return p.change.fields.get("assignee")


# -- the choice -------------------------------------------------------------------------------

def test_round_robin_takes_turns_and_the_turn_moves_only_for_what_is_written():
    pol = policy()
    pool = Pool(pol.groups)
    chosen = [assigned(plan(handover(n), pol, MONDAY_10, pool=pool)) for n in range(1, 5)]
    assert chosen == ["ana", "bo", "cy", "ana"]
    p = plan(handover(9), pol, MONDAY_10, pool=pool)
    assert [s.detail for s in p.steps if s.slot == "assignee"] == [
        "round robin in tier2: bo, next in turn"]
    assert p.change.fields == {"group": "tier2", "assignee": "bo"}
    # The same record asked again in the same sync (a re-plan): the same answer, no turn.
    again = plan(handover(9), pol, MONDAY_10, pool=pool)
    assert assigned(again) == "bo"
    assert assigned(plan(handover(10), pol, MONDAY_10, pool=pool)) == "cy"


def test_the_agent_the_record_is_leaving_and_agents_off_shift_are_skipped():
    pol = policy()
    pool = Pool(pol.groups)
    p = plan(handover(1, assignee="ana"), pol, MONDAY_14, pool=pool)
    assert assigned(p) == "bo"
    [step] = [s for s in p.steps if s.slot == "assignee"]
    assert step.before == "ana" and step.outcome == WRITE
    assert step.detail == ("round robin in tier2: bo, next in turn (never given one); skipped "
                           "ana: the agent the record is leaving; cy: off shift (calendar "
                           "'mornings' is closed)")
    # At 14:00 the turn goes ana, bo, ana ...: cy is never chosen.
    chosen = [assigned(plan(handover(n), pol, MONDAY_14, pool=pool)) for n in range(2, 6)]
    assert chosen == ["ana", "bo", "ana", "bo"]


def test_an_agent_the_helpdesk_marks_unavailable_is_skipped():
    pol = policy()
    pool = Pool(pol.groups, directory={"ana": {"available": "false"}, "bo": {"available": "true"}})
    chosen = [assigned(plan(handover(n), pol, MONDAY_10, pool=pool)) for n in range(1, 4)]
    assert chosen == ["bo", "cy", "bo"]


def test_nobody_to_take_it_moves_the_group_and_says_why():
    pol = policy()
    pool = Pool(pol.groups, directory={"ana": {"available": "false"}})
    saturday = at("2026-03-07 10:00", tz="Europe/Berlin")
    p = plan(handover(1, assignee="bo"), pol, saturday, pool=pool)
    assert p.change.fields == {"group": "tier2"}
    [step] = [s for s in p.steps if s.slot == "assignee"]
    assert step.outcome == NO_AGENT
    assert step.detail == ("round robin in tier2: no agent can take it (ana: unavailable in "
                           "the helpdesk; bo: the agent the record is leaving; cy: off shift "
                           "(calendar 'mornings' is closed))")


def test_least_loaded_takes_the_fewest_open_and_counts_its_own_choices():
    pol = policy("least_loaded")
    pool = Pool(pol.groups, open_by_agent={"ana": 3, "bo": 1, "cy": 1})
    p = plan(handover(1), pol, MONDAY_10, pool=pool)
    assert assigned(p) == "bo"  # bo and cy tie on 1: round robin, in listed order
    assert [s.detail for s in p.steps if s.slot == "assignee"] == [
        "least loaded in tier2: bo, 1 open, the fewest (others: ana 3 open, cy 1 open)"]
    chosen = [assigned(plan(handover(n), pol, MONDAY_10, pool=pool)) for n in range(2, 6)]
    # cy (1), then bo and cy at 2 each, bo turned longest ago; then ana, bo, cy all at 3
    assert chosen == ["cy", "bo", "cy", "ana"]
    # Leaving an agent takes a record off their load.
    assert pool.open_by_agent == {"ana": 4, "bo": 3, "cy": 3}
    assigned(plan(handover(7, assignee="ana"), pol, MONDAY_10, pool=pool))
    assert pool.open_by_agent["ana"] == 3


def test_a_later_rule_that_overrides_the_choice_does_not_use_up_the_turn():
    pol = make_policy(rules=[
        breach_rule("round_robin"),
        rule("vip to dee", cond("tier", "equal_to", "vip"), act("assign", assignee="dee"))],
        calendars=CALENDARS, groups=GROUPS)
    pool = Pool(pol.groups)
    vip = make_record(id="T-1", tags=["handover"], tier="vip")
    assert assigned(plan(vip, pol, MONDAY_10, pool=pool)) == "dee"
    assert assigned(plan(handover(2), pol, MONDAY_10, pool=pool)) == "ana"


# -- the policy -------------------------------------------------------------------------------

@pytest.mark.parametrize(("groups", "params", "path", "message"), [
    (GROUPS, {"group": "tier3"}, "rules[0].actions[0].params.group",
     "no group 'tier3' under 'groups' (did you mean 'tier2'?)"),
    (GROUPS, {"group": "tier2", "strategy": "least"}, "rules[0].actions[0].params.strategy",
     "expected one of round_robin, least_loaded, got 'least'"),
    ({"tier2": {"agents": []}}, {"group": "tier2"}, "groups.tier2.agents",
     "expected a non-empty list of agents"),
    ({"tier2": {"agents": ["ana", "ana"]}}, {"group": "tier2"}, "groups.tier2.agents[1]",
     "agent 'ana' is listed twice"),
    ({"tier2": {"agents": [{"name": "ana", "calendar": "nights"}]}}, {"group": "tier2"},
     "groups.tier2.agents[0].calendar", "unknown calendar 'nights'"),
    ({"tier2": {"agents": ["ana"], "hours": "office"}}, {"group": "tier2"},
     "groups.tier2.hours", "unknown key"),
])
def test_a_broken_group_or_assign_next_is_refused_with_its_path(
        groups: dict[str, Any], params: dict[str, Any], path: str, message: str):
    with pytest.raises(PolicyError) as caught:
        check_policy({"calendars": CALENDARS, "groups": groups, "rules": [
            rule("r", cond("status", "equal_to", "open"), act("assign_next", **params))]})
    problems = {p.path: p.message for p in caught.value.problems}
    assert path in problems, problems
    assert problems[path].startswith(message), problems[path]


# -- over several syncs -----------------------------------------------------------------------

def project(folder: Path, records: list[dict[str, Any]], strategy: str,
            agents: list[dict[str, Any]] | None = None) -> Path:
    (folder / "helpdesk.json").write_text(json.dumps(
        {"records": records, "agents": agents or []}, indent=2))
    (folder / "policy.json").write_text(json.dumps({
        "calendars": CALENDARS, "groups": GROUPS,
        "slas": [{"name": "standard", "targets": {"first_response": "1h"}}],
        "rules": [breach_rule(strategy)]}))
    config = folder / "config.yaml"
    config.write_text("connector: {type: file, path: helpdesk.json}\n"
                      "policy: policy.json\nstate: state.db\nfirst_run: act\n")
    return config


def add_records(folder: Path, *records: dict[str, Any]) -> None:
    path = folder / "helpdesk.json"
    data = json.loads(path.read_text())
    data["records"] += list(records)
    path.write_text(json.dumps(data, indent=2))


def assignees(folder: Path) -> dict[str, str]:
    data = json.loads((folder / "helpdesk.json").read_text())
    return {r["id"]: r["assignee"] for r in data["records"]}


def new_ticket(n: int, when: str, **fields: Any) -> dict[str, Any]:
    return record_dict(id=f"T-{n}", tags=["handover"], group="support",
                       created_at=iso(when, "Europe/Berlin"),
                       updated_at=iso(when, "Europe/Berlin"), **fields)


def run(config: Path, when: str) -> Any:
    result = cli("run", "--config", str(config), "--now", iso(when, "Europe/Berlin"))
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def test_round_robin_carries_its_turn_across_syncs_and_skips_an_agent_going_off_shift(
        tmp_path: Path):
    config = project(tmp_path, [new_ticket(1, "2026-03-02 09:00"),
                                new_ticket(2, "2026-03-02 09:01")], "round_robin")
    run(config, "2026-03-02 09:30")
    assert assignees(tmp_path) == {"T-1": "ana", "T-2": "bo"}
    run(config, "2026-03-02 09:31")  # nothing new: nothing written, no turn used
    add_records(tmp_path, new_ticket(3, "2026-03-02 09:40"))
    run(config, "2026-03-02 09:45")
    assert assignees(tmp_path)["T-3"] == "cy"  # the turn came from the state file
    # After noon cy is off shift: ana, bo, ana.
    add_records(tmp_path, new_ticket(4, "2026-03-02 12:10"), new_ticket(5, "2026-03-02 12:11"),
                new_ticket(6, "2026-03-02 12:12"))
    run(config, "2026-03-02 12:30")
    assert [assignees(tmp_path)[f"T-{n}"] for n in (4, 5, 6)] == ["ana", "bo", "ana"]
    with StateStore(tmp_path / "state.db", readonly=True) as store:
        rows = [(r["record_id"], r["before"], r["after"]) for r in store.audit()
                if r["action"] == "assign_next" and r["field"] == "assignee"]
    assert rows == [("T-1", "", "ana"), ("T-2", "", "bo"), ("T-3", "", "cy"),
                    ("T-4", "", "ana"), ("T-5", "", "bo"), ("T-6", "", "ana")]
    before = (tmp_path / "helpdesk.json").read_bytes()
    result = cli("run", "--config", str(config), "--now", iso("2026-03-02 12:31", "Europe/Berlin"),
                 "--json")
    assert json.loads(result.stdout.splitlines()[-1])["writes"] == 0
    assert (tmp_path / "helpdesk.json").read_bytes() == before


def test_least_loaded_reads_the_open_records_of_the_mirror_and_skips_the_unavailable(
        tmp_path: Path):
    early = {"created_at": iso("2026-03-02 08:00", "Europe/Berlin"),
             "updated_at": iso("2026-03-02 08:00", "Europe/Berlin"), "group": "tier2"}
    busy = [record_dict(id=f"A-{n}", assignee="ana", **early) for n in range(3)] + [
        record_dict(id="B-1", assignee="bo", **early),
        record_dict(id="B-2", assignee="bo", status="solved", **early,
                    solved_at=iso("2026-03-02 08:00", "Europe/Berlin"))]
    config = project(tmp_path, [*busy, new_ticket(1, "2026-03-02 09:00")], "least_loaded",
                     agents=[{"name": "cy", "email": "cy@example.com", "available": False}])
    run(config, "2026-03-02 09:30")
    assert assignees(tmp_path)["T-1"] == "bo"  # ana 3 open, bo 1 (the solved one not counted)
    add_records(tmp_path, new_ticket(2, "2026-03-02 09:40"), new_ticket(3, "2026-03-02 09:41"))
    run(config, "2026-03-02 09:45")
    # bo now 2 open, ana 3: bo; then 3 each, and ana has never had a turn: ana
    assert [assignees(tmp_path)[f"T-{n}"] for n in (2, 3)] == ["bo", "ana"]
    add_records(tmp_path, new_ticket(9, "2026-03-02 09:50"))
    result = cli("explain", "T-9", "--config", str(config), "--now",
                 iso("2026-03-02 09:55", "Europe/Berlin"))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert ("[write] assignee '' -> 'bo'  <- rule 'hand over' (least loaded in tier2: bo, 3 open, "
            "the fewest (others: ana 4 open); skipped cy: unavailable in the helpdesk)"
            ) in result.stdout, result.stdout
