"""The planner: from the rules that fired to one ChangeSet per record.

- Each rule fires once per activation: when its conditions become true for a record, and
  again only after they have been false in a later sync. `active` (from the ledger) says
  which rules are already active for the record; an active rule asks for nothing, so a
  person who undoes its action is not overridden while the rule stays active.
- When two rules set the same field (or add and remove the same tag) the later one in the
  file wins, whichever pass it fired in; the earlier step is kept in the plan as
  "overridden". Tags compare case-insensitively.
- An escalation never lowers the level; of several escalations the highest wins.
- What the record already satisfies is dropped (a custom field `set_field` writes: when it
  holds that value already).
- `assign_next` asks the sync's agent pool (rules/assignment.py) for an agent when its rule
  fires, once per record and sync; the pool counts the choice only if the plan writes it.
- A rule that became true only on the planner's own change in memory (a later pass), and is
  no longer true on the record as the plan finally leaves it (the change it fired on was
  overridden), adds no note and sends no notification: those would announce a write that
  never happens. Its field and tag intents still take part in the merge, as above.
- The planner applies its own change in memory and evaluates again until no further rule
  becomes active (at most MAX_PASSES), so that a rerun on unchanged data plans nothing even
  when one rule's action makes another rule true.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sla_sync.connector.model import ChangeSet, Record, custom_name
from sla_sync.rules.actions import Intent
from sla_sync.rules.assignment import DEFAULT_STRATEGY, Pool
from sla_sync.rules.clock import frozen
from sla_sync.rules.engine import Evaluation, SlaMark, evaluate
from sla_sync.rules.load import Load
from sla_sync.rules.policy import Policy

MAX_PASSES = 10
FIELD_OF = {"set_priority": "priority", "assign": "assignee", "assign_group": "group"}

# Step outcomes
WRITE = "write"
SATISFIED = "satisfied"
OVERRIDDEN = "overridden"
NOT_HIGHER = "not higher"
SUPERSEDED = "superseded"
VOID = "void"  # a note or notification of a rule that does not hold on the final record
NO_AGENT = "no agent"  # assign_next found nobody who can take the record
APPENDS = ("add_note", "notify")


@dataclass(frozen=True)
class Step:
    """One effect one rule asked for, and what became of it."""

    rule: str
    action: str
    slot: str  # priority, group, assignee, escalation_level, tag:NAME, custom.NAME, note,
    # notify:WEBHOOK
    before: Any
    after: Any
    outcome: str
    detail: str = ""


@dataclass(frozen=True)
class Plan:
    record: Record
    change: ChangeSet
    steps: tuple[Step, ...]
    #: (rule, webhook, text) to send once the change is written; not part of the record.
    notifications: tuple[tuple[str, str, str], ...]
    active_before: frozenset[str]
    active_after: frozenset[str]
    evaluation: Evaluation  # of the record as read
    final: Evaluation  # of the record as it reads once the change is written
    passes: int
    settled: bool

    @property
    def acts(self) -> bool:
        """Something to write or send."""
        return not self.change.is_empty() or bool(self.notifications)

    @property
    def activated(self) -> frozenset[str]:
        return self.active_after - self.active_before

    @property
    def deactivated(self) -> frozenset[str]:
        return self.active_before - self.active_after

    @property
    def fired(self) -> tuple[str, ...]:
        """Rules that fired in this plan, in policy order (including any that later
        deactivated)."""
        return tuple(dict.fromkeys(step.rule for step in self.steps))


def plan(record: Record, policy: Policy, now: datetime,
         active: Iterable[str] = (), previous: SlaMark | None = None,
         pool: Pool | None = None, load: Load | None = None) -> Plan:
    """`active`: the rules the ledger holds active for the record; `previous`: the SLA mark
    the last sync stored for it; `pool`: the sync's agents for assign_next (without one,
    every agent of the policy's groups has no open records and has never been given one);
    `load`: the sync's figures for the load variables (without: all 0)."""
    active_before = frozenset(active)
    active_now = set(active_before)
    fired: dict[int, tuple[str, tuple[Intent, ...]]] = {}  # rule index -> its latest intents
    first_pass: dict[int, int] = {}  # rule index -> the pass it first fired in
    first: Evaluation | None = None
    current = record
    settled = False
    change = unchanged(record)
    steps: list[Step] = []
    passes = 0
    while passes < MAX_PASSES:
        passes += 1
        evaluation = evaluate(current, policy, now, previous, load)
        first = first or evaluation
        newly = [o for o in evaluation.outcomes if o.fired and o.rule.name not in active_now]
        active_now -= {o.rule.name for o in evaluation.outcomes if not o.fired}
        if not newly:
            settled = True
            break
        for outcome in newly:
            active_now.add(outcome.rule.name)
            intents = outcome.intents
            if any(i.action == "assign_next" for i in intents):
                pool = pool or Pool(policy.groups)
                intents = tuple(_chosen(i, current, pool, now) for i in intents)
            # A rule that fires again after its own plan deactivated it replaces its intents.
            fired[outcome.rule.index] = (outcome.rule.name, intents)
            first_pass.setdefault(outcome.rule.index, passes)
        change, steps = merge(record, [(index, name, intent)
                                       for index, (name, intents) in fired.items()
                                       for intent in intents])
        # Only a change that would be written moves updated_at (hours_since_updated).
        current = record if change.is_empty() else change.applied_to(record, now)
    assert first is not None
    if settled:
        holds = {o.rule.name for o in evaluation.outcomes if o.fired}
        void = {index for index, (name, _) in fired.items()
                if first_pass[index] > 1 and name not in holds}
        if void:  # notes and notifications add nothing the merge decides: drop them alone
            change, steps = merge(record, [
                (index, name, intent) for index, (name, intents) in fired.items()
                for intent in intents if index not in void or intent.action not in APPENDS])
            steps += [Step(name, intent.action, "note" if intent.action == "add_note" else
                           f"notify:{intent.params['webhook']}", None, intent.params["text"],
                           VOID, "its conditions do not hold on the record as this plan "
                           "leaves it (it fired on a change that was overridden)")
                      for index, (name, intents) in sorted(fired.items()) if index in void
                      for intent in intents if intent.action in APPENDS]
    if pool is not None:
        for step in steps:
            if step.action == "assign_next" and step.slot == "assignee" and step.outcome == WRITE:
                pool.given(record.id, step.after, record.assignee)
    notifications = tuple(dict.fromkeys(
        (step.rule, step.slot.removeprefix("notify:"), step.after)
        for step in steps if step.action == "notify" and step.outcome == WRITE))
    return frozen(Plan, record=record, change=change, steps=tuple(steps),
                  notifications=notifications, active_before=active_before,
                  active_after=frozenset(active_now), evaluation=first, final=evaluation,
                  passes=passes, settled=settled)


def unchanged(record: Record) -> ChangeSet:
    """The empty ChangeSet of a record, as ChangeSet(record.id, base_updated_at=
    record.updated_at) is, built without the checks of what it sets: it sets nothing."""
    return frozen(ChangeSet, record_id=record.id, base_updated_at=record.updated_at,
                  fields={}, add_tags=(), remove_tags=(), notes=(), escalation_level=None)


def _chosen(intent: Intent, record: Record, pool: Pool, now: datetime) -> Intent:
    """An assign_next intent with the agent it gives the record to (and why)."""
    if intent.action != "assign_next":
        return intent
    params = intent.params
    choice = pool.choose(record.id, record.assignee, params["group"],
                         params.get("strategy", DEFAULT_STRATEGY), now)
    return Intent("assign_next", {"group": choice.group, "agent": choice.agent,
                                  "reason": choice.reason})


def merge(record: Record, fired: list[tuple[int, str, Intent]]) -> tuple[ChangeSet, list[Step]]:
    """One ChangeSet from the intents of the rules that fired, as (rule index, rule name,
    intent). Intents are taken in policy order, whichever pass they fired in, so the rule
    later in the file wins."""
    ordered = sorted(fired, key=lambda item: item[0])
    ops, dropped = operations(record, ordered)
    steps = judge(record, ops)
    return change_of(record, steps), steps + dropped


Op = tuple[str, str, str, Any, str]  # rule, action, slot, value, why


def operations(record: Record, ordered: list[tuple[int, str, Intent]]
               ) -> tuple[list[Op], list[Step]]:
    """The intents, in policy order, as operations on slots; and the steps of the
    escalations that do not take part (not higher than the record's level, or below the
    highest escalation asked for)."""
    levels = [(int(i.params["level"]), r) for _, r, i in ordered if i.action == "escalate"]
    top = max((level for level, _ in levels), default=0)
    top_rule = next((r for level, r in reversed(levels) if level == top), "")
    ops: list[Op] = []
    dropped: list[Step] = []
    for _, rule, intent in ordered:
        if intent.action == "assign_next":
            ops.append((rule, "assign_next", "group", intent.params["group"], ""))
            if intent.params["agent"] is not None:
                ops.append((rule, "assign_next", "assignee", intent.params["agent"],
                            intent.params["reason"]))
            else:
                dropped.append(Step(rule, "assign_next", "assignee", record.assignee, None,
                                    NO_AGENT, intent.params["reason"]))
            continue
        if intent.action != "escalate":
            ops.append(_operation(rule, intent))
            continue
        level = int(intent.params["level"])
        parts = [("escalation_level", level)] + [
            (key, intent.params[key]) for key in ("group", "assignee", "note")
            if key in intent.params]
        if level <= record.escalation_level:
            outcome, detail = NOT_HIGHER, f"already at level {record.escalation_level}"
        elif level < top:
            outcome, detail = SUPERSEDED, f"escalation to level {top} by rule {top_rule!r}"
        else:
            ops.extend((rule, "escalate", slot, value, "") for slot, value in parts)
            continue
        dropped.extend(Step(rule, "escalate", slot, _current(record, slot), value, outcome,
                            detail) for slot, value in parts)
    return ops, dropped


def _operation(rule: str, intent: Intent) -> Op:
    """The slot an intent other than an escalation acts on, and the value it asks for."""
    params = intent.params
    if intent.action in FIELD_OF:
        slot = FIELD_OF[intent.action]
        return (rule, intent.action, slot, params[slot], "")
    if intent.action == "set_field":
        return (rule, intent.action, params["field"], params["value"], "")
    if intent.action in ("add_tag", "remove_tag"):
        return (rule, intent.action, f"tag:{params['tag']}", intent.action == "add_tag", "")
    if intent.action == "add_note":
        return (rule, intent.action, "note", params["text"], "")
    assert intent.action == "notify", intent.action
    return (rule, intent.action, f"notify:{params['webhook']}", params["text"], "")


def _key(slot: str) -> str:
    # Tags compare case-insensitively, as helpdesks do: adding "VIP" and removing "vip"
    # touch the same tag.
    return slot.lower() if slot.startswith("tag:") else slot


def _appends(slot: str) -> bool:  # notes and notifications add up, they never override
    return slot == "note" or slot.startswith("notify:")


def judge(record: Record, ops: list[Op]) -> list[Step]:
    """What becomes of each operation: the last one on a slot wins and the earlier ones are
    overridden; what the record already satisfies is not written; a note or notification
    already planned is not planned twice."""
    winner = {_key(slot): index for index, (_, _, slot, _, _) in enumerate(ops)
              if not _appends(slot)}
    steps: list[Step] = []
    notes: set[str] = set()
    sent: set[tuple[str, str]] = set()
    for index, (rule, action, slot, value, why) in enumerate(ops):
        if _appends(slot):
            planned: set[Any] = notes if slot == "note" else sent
            item = value if slot == "note" else (slot, value)
            what = "note" if slot == "note" else "notification"
            steps.append(Step(rule, action, slot, None, value, SATISFIED,
                              f"the same {what} is already planned") if item in planned
                         else Step(rule, action, slot, None, value, WRITE))
            planned.add(item)
            continue
        before = _current(record, slot)
        after = ("present" if value else "absent") if slot.startswith("tag:") else value
        won = winner[_key(slot)]
        if won != index:
            steps.append(Step(rule, action, slot, before, after, OVERRIDDEN,
                              f"by rule {ops[won][0]!r}, later in the policy"))
        else:
            steps.append(Step(rule, action, slot, before, after,
                              SATISFIED if before == after else WRITE, why))
    return steps


def change_of(record: Record, steps: list[Step]) -> ChangeSet:
    """The ChangeSet that carries out the steps to write."""
    fields: dict[str, str] = {}
    add_tags: list[str] = []
    remove_tags: list[str] = []
    notes: list[str] = []
    new_level: int | None = None
    for step in steps:
        slot = step.slot
        if step.outcome != WRITE or slot.startswith("notify:"):
            continue
        if slot == "note":
            notes.append(step.after)
        elif slot == "escalation_level":
            new_level = step.after
        elif slot.startswith("tag:") and step.after == "present":
            add_tags.append(slot[4:])
        elif slot.startswith("tag:"):
            remove_tags.extend(_matching_tags(record, slot[4:]))
        else:
            fields[slot] = step.after
    if not (fields or add_tags or remove_tags or notes) and new_level is None:
        return unchanged(record)
    return ChangeSet(record.id, base_updated_at=record.updated_at, fields=fields,
                     add_tags=tuple(add_tags), remove_tags=tuple(remove_tags),
                     notes=tuple(notes), escalation_level=new_level)


def _matching_tags(record: Record, tag: str) -> list[str]:
    return [t for t in record.tags if t.lower() == tag.lower()]


def _current(record: Record, slot: str) -> Any:
    if slot.startswith("tag:"):
        return "present" if _matching_tags(record, slot[4:]) else "absent"
    if slot == "note" or slot.startswith("notify:"):
        return None
    if custom_name(slot):
        return record.custom.get(custom_name(slot))
    values: Mapping[str, Any] = {"priority": record.priority, "group": record.group,
                                 "assignee": record.assignee,
                                 "escalation_level": record.escalation_level}
    return values[slot]
