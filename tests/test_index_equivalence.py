"""The wake-up index evaluates fewer records and changes nothing: random scenarios (random
records, policies, agent edits and `now` steps, forward and sometimes back, and a policy
swapped midway) run twice, once evaluating only what was read or is due and once
evaluating everything, and must give the same writes, activations and notifications.
The indexed side's connector also leaves out what the mirror holds (its version tokens,
`connector.base.Mirrored`), the other's hands every record over: the mirrors must agree."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import act, cond, record_dict, rule
from sla_sync.connector.file import FileHelpdesk
from sla_sync.rules.policy import check_policy
from sla_sync.sync_run import run_sync
from sla_sync.sync_state import StateStore

T0 = datetime.fromisoformat("2026-03-02T07:40:00+00:00")  # a Monday, before office hours
STATUSES = ["new", "open", "pending", "hold", "solved"]
TAGS = ["vip", "billing", "sla_warning", "sla_breach", "late"]
GROUPS = ["support", "billing", "tier2"]
#: The targets a conversation (and an assignment history) makes run.
TALK_TARGETS = ["next_response", "periodic_update", "pausable_update", "time_to_own",
                "agent_work_time", "requester_wait_time"]
OFFICE = {"timezone": "Europe/Berlin", "week": {
    day: ["08:00-12:30", "13:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["03-04"]}


def stamp(at: datetime) -> str:
    return at.isoformat()


def random_record(rng: random.Random, n: int, talk: bool = False) -> dict[str, Any]:
    created = T0 - timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
    updated = created + timedelta(minutes=rng.randrange(0, 600))
    status = rng.choice(STATUSES)
    history = []
    at = created
    for _ in range(rng.randrange(0, 3)):
        at += timedelta(minutes=rng.randrange(1, 300))
        history.append({"at": stamp(at), "status": rng.choice(STATUSES)})
    history.append({"at": stamp(max(at, updated)), "status": status})
    fields: dict[str, Any] = {
        "id": f"T-{n}", "status": status, "created_at": stamp(created),
        "updated_at": stamp(max(at, updated)), "status_history": history,
        "tier": rng.choice(["vip", "gold", "standard"]),
        "priority": rng.choice(["low", "normal", "high", "urgent"]),
        "tags": rng.sample(TAGS, rng.randrange(0, 3)),
    }
    if rng.random() < 0.4:  # responded, sometimes only later than a sync's now
        fields["first_response_at"] = stamp(created + timedelta(
            minutes=rng.randrange(1, 6 * 60)))
    if status == "solved":
        fields["solved_at"] = stamp(max(at, updated))
    if talk and rng.random() < 0.8:  # a conversation, sometimes reaching past a sync's now
        said, messages = created, []
        for _ in range(rng.randrange(0, 6)):
            said += timedelta(minutes=rng.randrange(0, 400))
            messages.append({"at": stamp(said), "author": rng.choice(["customer", "agent"]),
                             "public": rng.random() < 0.8})
        fields["messages"] = messages
    if talk and rng.random() < 0.7:  # who held it: from creation on, or changes only
        moved, owners = created, []
        if rng.random() < 0.6:
            owners.append({"at": stamp(created), "group": rng.choice(GROUPS), "assignee": ""})
        for _ in range(rng.randrange(0, 4)):
            moved += timedelta(minutes=rng.randrange(0, 300))
            owners.append({"at": stamp(moved), "group": rng.choice(GROUPS),
                           "assignee": rng.choice(["", "ana", "bob"])})
        fields["assignment_history"] = owners
    return record_dict(**fields)


def random_condition(rng: random.Random, depth: int = 0, talk: bool = False,
                     olas: bool = False) -> dict[str, Any]:
    if depth < 2 and rng.random() < 0.35:
        return {rng.choice(["all", "any"]): [random_condition(rng, depth + 1, talk, olas)
                                              for _ in range(rng.randrange(1, 4))]}
    if olas and rng.random() < 0.5:
        return rng.choice([
            lambda: cond("ola_breached", rng.choice(["is_true", "is_false"])),
            lambda: cond("ola_elapsed_pct", rng.choice(["greater_than", "less_than"]),
                         rng.choice([25, 50, 75, 90, 100, 150])),
            lambda: cond("ola_minutes_left", rng.choice(["greater_than", "less_than"]),
                         rng.randrange(-120, 240, 15)),
        ])()
    target = rng.choice(["first_response", "resolution", *(TALK_TARGETS * 3 * talk)])
    number = rng.choice(["greater_than", "less_than", "greater_than_or_equal_to",
                         "less_than_or_equal_to", "equal_to", "not_equal_to"])
    due = (T0 + timedelta(minutes=rng.randrange(-600, 3000))).timestamp()
    return rng.choice([
        lambda: cond(f"{target}_elapsed_pct", number, rng.choice([25, 50, 75, 90, 100, 150])),
        lambda: cond(f"{target}_minutes_left", number, rng.randrange(-120, 240, 15)),
        lambda: cond(f"{target}_breached", rng.choice(["is_true", "is_false"])),
        lambda: cond(f"{target}_met", rng.choice(["is_true", "is_false"])),
        lambda: cond(f"{target}_paused", rng.choice(["is_true", "is_false"])),
        lambda: cond(f"{target}_business_minutes_elapsed", number, rng.randrange(0, 600, 30)),
        lambda: cond(f"{target}_due_at_epoch", rng.choice(["less_than", "greater_than"]), due),
        lambda: cond("hours_since_updated", number, rng.choice([0.5, 1, 2, 6, 24, 48])),
        lambda: cond("hours_since_created", number, rng.choice([1, 4, 12, 30, 72, 90])),
        lambda: cond("in_business_hours", rng.choice(["is_true", "is_false"])),
        lambda: cond("status", "equal_to", rng.choice(STATUSES)),
        lambda: cond("tags", rng.choice(["contains", "does_not_contain"]), rng.choice(TAGS)),
        lambda: cond("escalation_level", "greater_than", rng.randrange(0, 2)),
    ])()


def random_gates(rng: random.Random) -> dict[str, Any]:
    """A target's own start, pause and stop conditions, over what has a history."""
    def leaf() -> dict[str, Any]:
        return rng.choice([
            lambda: cond("status", rng.choice(["equal_to", "not_equal_to"]),
                         rng.choice(STATUSES)),
            lambda: cond("group", "equal_to", rng.choice(GROUPS)),
            lambda: cond("assignee", rng.choice(["is_empty", "non_empty"])),
            lambda: cond("priority", "is_one_of", ["high", "urgent"]),
        ])()
    keys = rng.sample(["start_when", "pause_when", "stop_when"], rng.randrange(1, 4))
    return {key: leaf() if rng.random() < 0.6 else {"any": [leaf(), leaf()]} for key in keys}


def random_action(rng: random.Random, name: str, assign: bool = False) -> dict[str, Any]:
    choices = [
        lambda: act("add_tag", tag=rng.choice(TAGS)),
        lambda: act("remove_tag", tag=rng.choice(TAGS)),
        lambda: act("set_priority", priority=rng.choice(["normal", "high", "urgent"])),
        lambda: act("add_note", text=f"{name}: {{resolution_minutes_left}} min left"),
        lambda: act("escalate", level=rng.randrange(1, 3)),
        lambda: act("notify", webhook="chat", text=f"{name} for {{id}}"),
    ]
    if assign:  # the choice depends on the turn, the loads and who is on shift
        choices += [lambda: act("assign_next", group=rng.choice(["tier2", "billing"]),
                                strategy=rng.choice(["round_robin", "least_loaded"]))] * 3
    return rng.choice(choices)()


#: The agents assign_next chooses from: some on office hours, one on mornings only.
AGENT_GROUPS = {"tier2": {"agents": ["ana", "bob", {"name": "cy", "calendar": "mornings"}],
                          "calendar": "office"},
                "billing": {"agents": ["dee", "ana"]}}
MORNINGS = {"timezone": "Europe/Berlin", "week": {
    day: ["08:00-12:00"] for day in ("mon", "tue", "wed", "thu", "fri")}}


def random_olas(rng: random.Random) -> list[dict[str, Any]]:
    """Team targets on the groups, some sharing a group, some on the office calendar."""
    olas = []
    for n in range(rng.randrange(1, 4)):
        ola: dict[str, Any] = {
            "name": f"ola-{n}",
            "when": rng.choice([cond("group", "equal_to", rng.choice(GROUPS)),
                                cond("group", "is_one_of", rng.sample(GROUPS, 2))]),
            "targets": {target: rng.choice(["15m", "1h", "3h", "8h", "2bd"]) for target in
                        rng.sample(["first_response", "resolution", *TALK_TARGETS],
                                   rng.randrange(1, 4))},
            "pause_statuses": rng.sample(["pending", "hold"], rng.randrange(0, 3))}
        if rng.random() < 0.5:
            ola["calendar"] = "office"
        olas.append(ola)
    return olas


def random_policy(rng: random.Random, talk: bool = False, olas: bool = False,
                  assign: bool = False) -> dict[str, Any]:
    slas = []
    for n in range(rng.randrange(1, 3)):
        sla: dict[str, Any] = {
            "name": f"sla-{n}",
            "targets": {"first_response": rng.choice(["30m", "1h", "4h"]),
                        "resolution": rng.choice(["4h", "8h", "1d", "2bd"])},
            "pause_statuses": rng.sample(["pending", "hold"], rng.randrange(0, 3)),
            "on_target_change": rng.choice(["keep", "restart"]),
        }
        if talk:
            for target in rng.sample(TALK_TARGETS, rng.randrange(1, len(TALK_TARGETS))):
                sla["targets"][target] = rng.choice(["15m", "1h", "3h", "8h", "1d", "2bd"])
            if rng.random() < 0.5:
                sla["targets_by"] = {"field": "priority", "values": {
                    "urgent": {rng.choice(TALK_TARGETS): rng.choice(["10m", "30m", "4h"])},
                    "low": {"resolution": rng.choice(["1d", "3bd"])}}}
            if rng.random() < 0.6:
                sla["clocks"] = {rng.choice(TALK_TARGETS + ["resolution"]): random_gates(rng)}
        if rng.random() < 0.5:
            sla["calendar"] = "office"
        if n == 0 and rng.random() < 0.7:
            sla["when"] = rng.choice([cond("tier", "equal_to", "vip"),
                                      cond("hours_since_created", "less_than", 30),
                                      cond("priority", "is_one_of", ["high", "urgent"])])
        slas.append(sla)
    rules = [rule(f"r{n}", random_condition(rng, talk=talk, olas=olas),
                  *[random_action(rng, f"r{n}", assign) for _ in range(rng.randrange(1, 3))])
             for n in range(rng.randrange(2, 7))]
    extra: dict[str, Any] = {"olas": random_olas(rng)} if olas else {}
    if assign:  # at least one rule hands over, and the last one reads the desk's load
        extra["groups"] = AGENT_GROUPS
        rules[0]["actions"].append(act("assign_next", group="tier2",
                                       strategy=rng.choice(["round_robin", "least_loaded"])))
        rules[-1]["conditions"] = {"all": [rules[-1]["conditions"], rng.choice([
            cond("group_open", "greater_than", rng.randrange(1, 6)),
            cond("desk_open", "less_than", rng.randrange(4, 10)),
            cond("group_at_risk", "greater_than_or_equal_to", rng.randrange(1, 3)),
            cond("group_arrivals_1h", "equal_to", 0)])]}
        # and a planned peak: office hours count as mornings-only, extra rules, halved targets
        start = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        extra["overrides"] = [{
            "name": "peak", "from": stamp(start),
            "until": stamp(start + timedelta(minutes=rng.randrange(30, 24 * 60))),
            "calendars": {"office": "mornings"}, "targets_scale": rng.choice([0.5, 0.8]),
            "rules": [rule("peak", random_condition(rng), random_action(rng, "peak"))]}]
    return {"calendars": {"office": OFFICE, "mornings": MORNINGS}, "closed_statuses": ["solved"],
            "slas": slas, "rules": rules, **extra}


class Unversioned(FileHelpdesk):
    """The file helpdesk without version tokens: every record after the cursor is handed
    over, parsed and mirrored."""

    versioned = False


class Side:
    """One helpdesk file and one state file, synced with or without the index (and the
    version tokens)."""

    def __init__(self, folder: Path, records: list[dict[str, Any]], full: bool):
        folder.mkdir()
        self.path = folder / "helpdesk.json"
        self.path.write_text(json.dumps({"records": records}))
        self.store = StateStore(folder / "state.db")
        self.connector = (Unversioned if full else FileHelpdesk)(
            self.path, batch_size=rng_batch(folder))
        self.full = full
        self.sent: list[tuple[str, str, str]] = []
        self.evaluated = 0
        self.unchanged = 0
        self.last: Any = None

    def notify(self, webhook: str, text: str, item: Any) -> None:
        self.sent.append((item["record_id"], webhook, text))

    def sync(self, policy: Any, now: datetime) -> dict[str, Any]:
        report = run_sync(self.connector, policy, self.store, now, notifier=self.notify,
                          full=self.full)
        assert report.errors == 0, report.failures
        self.evaluated += report.evaluated
        self.unchanged += report.unchanged
        self.last = report
        return {"changes": sorted(report.changes, key=lambda c: c["id"]),
                "writes": report.writes, "active": self.store.active_rules(),
                "sent": sorted(self.sent), "audit": self.audit(),
                "mirror": dict(self.store.db.execute("SELECT id, data FROM records"))}

    def audit(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.store.db.execute(
            "SELECT record_id, rule, action, field, before, after FROM audit ORDER BY id")]

    def edit(self, rng: random.Random, now: datetime) -> None:
        data = json.loads(self.path.read_text())
        record = data["records"][rng.randrange(len(data["records"]))]
        if now.isoformat() <= record["updated_at"]:
            return
        status = rng.choice(STATUSES)
        record["status_history"].append({"at": stamp(now), "status": status})
        record.update(status=status, updated_at=stamp(now))
        if status == "solved":
            record["solved_at"] = stamp(now)
        if rng.random() < 0.5:
            record["tags"] = rng.sample(TAGS, rng.randrange(0, 3))
        if "messages" in record and rng.random() < 0.6:  # a reply or a customer's message
            record["messages"] = [m for m in record["messages"] if m["at"] <= stamp(now)] + [
                {"at": stamp(now), "author": rng.choice(["customer", "agent"]), "public": True}]
        if "assignment_history" in record and rng.random() < 0.4:  # moved or (un)assigned
            record["assignment_history"] = [
                a for a in record["assignment_history"] if a["at"] <= stamp(now)] + [
                {"at": stamp(now), "group": rng.choice(GROUPS),
                 "assignee": rng.choice(["", "ana"])}]
        if rng.random() < 0.2:
            self.path.write_text(json.dumps(data))  # another layout: every record parsed
            return
        # the connector's layout, one record a line: the others' texts stay as they were
        self.path.write_text('{"records": [\n' + ",\n".join(
            json.dumps(r, ensure_ascii=False) for r in data["records"]) + "\n]}\n")


def rng_batch(folder: Path) -> int:
    return 3


@pytest.mark.parametrize(("seed", "talk", "olas", "assign"),
                         [(seed, False, False, False) for seed in range(8)]
                         + [(seed, True, False, False) for seed in range(100, 116)]
                         + [(seed, True, True, False) for seed in range(200, 210)]
                         # seeds whose hand-over rule fires (the test checks it does)
                         + [(seed, False, False, True) for seed in (200, 201, 202, 203, 205,
                                                                    206, 207, 208)])
def test_the_index_gives_what_full_evaluation_gives(tmp_path: Path, seed: int, talk: bool,
                                                    olas: bool, assign: bool) -> None:
    """`talk`: records with conversations and assignment histories, and policies with the
    targets they make run, targets by priority and targets' own conditions; `olas`: and
    team targets, with rules on the OLA variables; `assign`: policies whose rules hand
    records over with assign_next."""
    rng = random.Random(seed)
    records = [random_record(rng, n, talk) for n in range(12)]
    policies = [check_policy(random_policy(rng, talk, olas, assign), f"policy-{seed}-{n}")
                for n in range(2)]
    indexed = Side(tmp_path / "indexed", records, full=False)
    everything = Side(tmp_path / "full", records, full=True)
    now = T0
    policy = policies[0]
    for step in range(40):
        if step == 25:
            policy = policies[1]
        edits = rng.randrange(0, 3)
        edit_seed = rng.random()
        for side in (indexed, everything):
            edit_rng = random.Random(edit_seed)
            for _ in range(edits):  # a little before the sync: its writes come after them
                side.edit(edit_rng, now - timedelta(seconds=20))
        a, b = indexed.sync(policy, now), everything.sync(policy, now)
        assert a == b, f"seed {seed}, sync {step} at {now.isoformat()}"
        if a["writes"]:  # a minute later: it reads back its writes
            later = now + timedelta(minutes=1)
            a, b = indexed.sync(policy, later), everything.sync(policy, later)
            assert a == b, f"seed {seed}, sync {step} again at {later.isoformat()}"
            # nothing else changed: whatever is read again is the mirror's, and left out
            assert indexed.last.unchanged == indexed.last.read == everything.last.read
        if rng.random() < 0.1:
            now -= timedelta(minutes=rng.randrange(1, 90))
        else:
            now += timedelta(minutes=rng.choice([1, 5, 17, 30, 60, 180, 600]))
    assert json.loads(indexed.path.read_text()) == json.loads(everything.path.read_text())
    assert indexed.evaluated < everything.evaluated, "the index evaluated as much as a full run"
    assert everything.unchanged == 0
    if assign:
        given = {row[5] for row in indexed.audit()
                 if row[2] == "assign_next" and row[3] == "assignee"}
        assert len(given) >= 2, f"assign_next chose {given or 'nobody'}: nothing was compared"
