"""Load variables (issue 15 item 6): group_open, group_at_risk, group_arrivals_1h and
desk_open, counted once per sync over the state file's copy of the desk; a sync whose
figures differ from the last full evaluation's evaluates every record, so a rule on the
load reaches records that did not change."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    act,
    at,
    cli,
    cond,
    iso,
    make_policy,
    make_record,
    record_dict,
    rule,
    write_project,
)
from sla_sync.rules.load import Entry, GroupLoad, Load, measure
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import PolicyError, check_policy

NOW = at("2026-03-02 12:00")


def test_the_figures_count_open_records_arrivals_and_risk_per_group():
    entries = [Entry("support", True, NOW - timedelta(minutes=10), at_risk=True),
               Entry("support", True, NOW - timedelta(hours=3)),
               Entry("support", False, NOW - timedelta(minutes=59)),  # solved, but arrived
               Entry("support", True, NOW - timedelta(hours=1)),  # exactly an hour: not
               Entry("billing", True, NOW + timedelta(minutes=1))]  # after now: not arrived
    load = measure(entries, NOW)
    assert load.groups == {"support": GroupLoad(open=3, at_risk=1, arrivals_1h=2),
                           "billing": GroupLoad(open=1, at_risk=0, arrivals_1h=0)}
    assert load.desk_open == 4
    assert load.facts("tier2") == {"group_open": 0, "group_at_risk": 0,
                                   "group_arrivals_1h": 0, "desk_open": 4}
    assert measure(list(reversed(entries)), NOW).digest() == load.digest()
    assert measure(entries[1:], NOW).digest() != load.digest()


def test_rules_read_the_figures_of_the_records_own_group():
    policy = make_policy(rules=[rule("peak", cond("group_open", "greater_than", 10),
                                     act("add_tag", tag="peak"))])
    assert policy.load_variables == {"group_open"}
    load = Load({"support": GroupLoad(open=11), "billing": GroupLoad(open=3)}, 14)
    assert plan(make_record(group="support"), policy, NOW, load=load).change.add_tags == (
        "peak",)
    assert plan(make_record(group="billing"), policy, NOW, load=load).change.is_empty()
    assert plan(make_record(group="support"), policy, NOW).change.is_empty()  # no sync: 0


def test_an_sla_cannot_be_chosen_by_the_load():
    with pytest.raises(PolicyError) as caught:
        check_policy({"slas": [{"name": "s", "when": cond("desk_open", "greater_than", 5)}]})
    assert [p.path for p in caught.value.problems] == ["slas[0].when.name"]


def project(folder: Path, records: list[dict[str, Any]], rules: list[dict[str, Any]]) -> Path:
    return write_project(folder, records, {"slas": [
        {"name": "standard", "targets": {"first_response": "1h", "resolution": "4h"}}],
        "rules": rules})


def edit(folder: Path, change: Any) -> None:
    path = folder / "helpdesk.json"
    data = json.loads(path.read_text())
    change(data["records"])
    path.write_text(json.dumps(data, indent=2))


def levels(folder: Path) -> dict[str, int]:
    return {r["id"]: r["escalation_level"]
            for r in json.loads((folder / "helpdesk.json").read_text())["records"]}


def run(config: Path, when: str) -> dict[str, Any]:
    result = cli("run", "--config", str(config), "--now", iso(when), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def ticket(n: int, when: str, **fields: Any) -> dict[str, Any]:
    return record_dict(id=f"T-{n}", created_at=iso(when), updated_at=iso(when), **fields)


def test_a_peak_reaches_records_that_did_not_change_and_only_while_the_figures_move(
        tmp_path: Path):
    config = project(tmp_path, [ticket(n, "2026-03-02 09:00") for n in (1, 2, 3)], [
        rule("peak: escalate", cond("group_open", "greater_than", 3), act("escalate", level=1))])
    assert run(config, "2026-03-02 09:30")["writes"] == 0
    quiet = run(config, "2026-03-02 09:31")
    assert (quiet["evaluated"], quiet["full"]) == (0, False)  # the same figures: the index
    edit(tmp_path, lambda records: records.append(ticket(4, "2026-03-02 09:40")))
    peak = run(config, "2026-03-02 09:45")
    assert peak["full"] is True and peak["evaluated"] == 4
    assert levels(tmp_path) == {"T-1": 1, "T-2": 1, "T-3": 1, "T-4": 1}
    # The escalations left the count as it was: the index again, and nothing to write.
    again = run(config, "2026-03-02 09:46")
    assert (again["writes"], again["evaluated"], again["full"]) == (0, 0, False)
    # One record solved: 3 open, the figures moved, every record evaluated, nothing written
    # (the rule deactivates; an escalation is never lowered).
    edit(tmp_path, lambda records: records[0].update(
        status="solved", solved_at=iso("2026-03-02 09:50"), updated_at=iso("2026-03-02 09:50")))
    calm = run(config, "2026-03-02 09:55")
    assert (calm["writes"], calm["evaluated"], calm["full"]) == (0, 4, True)


def test_group_at_risk_counts_open_records_with_a_target_three_quarters_used(tmp_path: Path):
    # resolution 4h: at 12:00 T-1 (created 09:00) has used 75%, T-2 (10:00) 50%, T-3 is
    # solved; the rule fires on records of a group with 1 or more at risk
    config = project(tmp_path, [
        ticket(1, "2026-03-02 09:00", first_response_at=iso("2026-03-02 09:10")),
        ticket(2, "2026-03-02 10:00", first_response_at=iso("2026-03-02 10:10")),
        ticket(3, "2026-03-02 08:00", status="solved", solved_at=iso("2026-03-02 08:30"))], [
        rule("risk", {"all": [cond("group_at_risk", "greater_than_or_equal_to", 1),
                              cond("status", "equal_to", "open")]},
             act("add_tag", tag="team_at_risk"))])
    assert run(config, "2026-03-02 11:59")["writes"] == 0
    result = cli("explain", "T-2", "--config", str(config), "--now", iso("2026-03-02 12:00"))
    assert ("  group 'support': group_open 2, group_at_risk 1, group_arrivals_1h 0; "
            "desk_open 2") in result.stdout, result.stdout
    assert run(config, "2026-03-02 12:00")["writes"] == 2
