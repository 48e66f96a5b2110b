"""Choosing the agent `assign_next(group, strategy)` gives a record to.

The policy lists each group's agents under `groups` (with the group's working hours and,
where an agent keeps other hours, the agent's). An agent is skipped when:

- the record is leaving that agent (its assignee as planned);
- the helpdesk's directory marks the agent unavailable (`available: "false"`);
- the agent's calendar (else the group's) is closed at the sync's `now`.

Of those left, `round_robin` takes the agent who has gone longest without a record from
`assign_next` (agents never given one first, in the order the policy lists them), so the
group's agents take turns, and one back from a shift or an absence is next in line.
`least_loaded` takes the agent with the fewest open records (ties: round robin).

What the choice reads is one sync's `Pool`: open records per agent (from the state file's
mirror), when each agent was last given a record by `assign_next` (from the audit, so it is
exactly as durable as the writes: a crash before a write commits leaves no trace), and the
directory. The pool moves as the sync assigns: the chosen agent gains a record, the agent
left loses one, and the chosen agent goes to the back of the line. The sync plans records
in a fixed order, so the index and a full evaluation make the same choices.

A record asks at most once per sync: a re-plan (a second pass, a conflict) gets the answer
it got the first time. The pool moves only for a choice the plan writes (not one a later
rule overrides), and once per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sla_sync.rules.calendar import Calendar

STRATEGIES = ("round_robin", "least_loaded")
DEFAULT_STRATEGY = "round_robin"
#: A directory entry's value of `available` that takes an agent out of assignment.
UNAVAILABLE = frozenset({"false", "no", "0", "unavailable", "away", "offline"})


@dataclass(frozen=True)
class Agent:
    name: str
    calendar: Calendar | None = None  # the agent's own hours; None: the group's


@dataclass(frozen=True)
class Group:
    name: str
    agents: tuple[Agent, ...]
    calendar: Calendar | None = None  # None: always open


@dataclass(frozen=True)
class Choice:
    group: str
    strategy: str
    agent: str | None  # None: nobody could take it
    reason: str  # who was taken and why, who was skipped and why


@dataclass
class Pool:
    """The agents' standing in one sync. `open_by_agent`: open records per assignee;
    `last_given`: per agent, an increasing number for when assign_next last gave them a
    record (the audit row's id); `directory`: the helpdesk's, by agent name."""

    groups: Mapping[str, Group]
    open_by_agent: dict[str, int] = field(default_factory=dict)
    last_given: dict[str, int] = field(default_factory=dict)
    directory: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    _asked: dict[tuple[str, str, str], Choice] = field(default_factory=dict)
    _given: set[str] = field(default_factory=set)

    def choose(self, record_id: str, leaving: str, group_name: str, strategy: str,
               now: datetime) -> Choice:
        key = (record_id, group_name, strategy)
        if key in self._asked:
            return self._asked[key]
        choice = self._choose(leaving, self.groups[group_name], strategy, now)
        self._asked[key] = choice
        return choice

    def given(self, record_id: str, agent: str, leaving: str) -> None:
        """The plan of `record_id` gives it to `agent` (once per record and sync): the agent
        gains an open record and goes to the back of the line; the agent left loses one."""
        if record_id in self._given:
            return
        self._given.add(record_id)
        self.open_by_agent[agent] = self.open_by_agent.get(agent, 0) + 1
        if leaving and self.open_by_agent.get(leaving, 0) > 0:
            self.open_by_agent[leaving] -= 1
        self.last_given[agent] = max(self.last_given.values(), default=0) + 1

    def _choose(self, leaving: str, group: Group, strategy: str, now: datetime) -> Choice:
        eligible: list[tuple[int, Agent]] = []
        skipped: list[str] = []
        for position, agent in enumerate(group.agents):
            why = self._skip(agent, group, leaving, now)
            if why:
                skipped.append(f"{agent.name}: {why}")
            else:
                eligible.append((position, agent))
        label = strategy.replace("_", " ")
        if not eligible:
            return Choice(group.name, strategy, None,
                          f"{label} in {group.name}: no agent can take it ("
                          + "; ".join(skipped) + ")")

        def turn(item: tuple[int, Agent]) -> tuple[int, int]:
            return (self.last_given.get(item[1].name, 0), item[0])

        if strategy == "least_loaded":
            _, agent = min(eligible, key=lambda item: (self.load(item[1].name), *turn(item)))
            why = f"{self.load(agent.name)} open, the fewest" + _others(
                (a.name, f"{self.load(a.name)} open") for _, a in eligible if a is not agent)
        else:
            _, agent = min(eligible, key=turn)
            why = "next in turn" + (
                " (never given one)" if agent.name not in self.last_given else "")
        text = f"{label} in {group.name}: {agent.name}, {why}"
        if skipped:
            text += "; skipped " + "; ".join(skipped)
        return Choice(group.name, strategy, agent.name, text)

    def load(self, agent: str) -> int:
        return self.open_by_agent.get(agent, 0)

    def _skip(self, agent: Agent, group: Group, leaving: str, now: datetime) -> str:
        if agent.name == leaving:
            return "the agent the record is leaving"
        available = str(self.directory.get(agent.name, {}).get("available", "")).lower()
        if available in UNAVAILABLE:
            return "unavailable in the helpdesk"
        calendar = agent.calendar or group.calendar
        if calendar is not None and not calendar.is_open(now):
            return f"off shift (calendar {calendar.name!r} is closed)"
        return ""


def _others(items: Iterable[tuple[str, str]]) -> str:
    shown = [f"{name} {what}" for name, what in items]
    return f" (others: {', '.join(shown)})" if shown else ""
