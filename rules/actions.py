"""What rules can ask for: the business-rules actions, which only record intents.

Nothing here writes anywhere. Each action called by the engine is kept, in order, as an
`Intent`; the planner turns the intents of the rules that fired into one ChangeSet. Note
texts and `set_field` values are templates with `{placeholder}`s from a fixed list, and
nothing else: no attribute access, no indexing, no format specs.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from business_rules.actions import BaseActions, rule_action
from business_rules.fields import FIELD_NUMERIC, FIELD_TEXT

from sla_sync.rules.assignment import DEFAULT_STRATEGY
from sla_sync.rules.clock import ALL_TARGETS
from sla_sync.rules.variables import CLOCK_SUFFIXES

#: Placeholders a note text may use: these, and {T_X} for every target T and clock fact X.
RECORD_PLACEHOLDERS = ("id", "sla", "priority", "subject", "assignee", "group", "tier", "status",
                       "url")
CLOCK_PLACEHOLDERS = (*CLOCK_SUFFIXES, "due_at")
PLACEHOLDERS = (*RECORD_PLACEHOLDERS, *(
    f"{target}_{suffix}" for target in ALL_TARGETS for suffix in CLOCK_PLACEHOLDERS))


@dataclass(frozen=True)
class Intent:
    action: str
    params: Mapping[str, Any] = field(default_factory=dict)


class ActionCollector(BaseActions):  # type: ignore[misc]
    """Collects the actions of one rule as it fires; `values` fill note placeholders."""

    def __init__(self, values: Mapping[str, Any]):
        self.values = values
        self.intents: list[Intent] = []

    def _keep(self, action: str, **params: Any) -> None:
        self.intents.append(Intent(action, {k: v for k, v in params.items() if v is not None}))

    @rule_action(params={"priority": FIELD_TEXT})
    def set_priority(self, priority: str) -> None:
        self._keep("set_priority", priority=priority)

    @rule_action(params={"tag": FIELD_TEXT})
    def add_tag(self, tag: str) -> None:
        self._keep("add_tag", tag=tag)

    @rule_action(params={"tag": FIELD_TEXT})
    def remove_tag(self, tag: str) -> None:
        self._keep("remove_tag", tag=tag)

    @rule_action(params={"assignee": FIELD_TEXT})
    def assign(self, assignee: str) -> None:
        self._keep("assign", assignee=assignee)

    @rule_action(params={"group": FIELD_TEXT})
    def assign_group(self, group: str) -> None:
        self._keep("assign_group", group=group)

    @rule_action(params={"group": FIELD_TEXT, "strategy": FIELD_TEXT})
    def assign_next(self, group: str, strategy: str = DEFAULT_STRATEGY) -> None:
        """Give the record to the group and to the next agent of the policy's `groups`
        entry for it (rules/assignment.py: round_robin or least_loaded)."""
        self._keep("assign_next", group=group, strategy=strategy)

    @rule_action(params={"level": FIELD_NUMERIC, "group": FIELD_TEXT, "assignee": FIELD_TEXT,
                         "note": FIELD_TEXT})
    def escalate(self, level: int, group: str | None = None, assignee: str | None = None,
                 note: str | None = None) -> None:
        text = render_note(note, self.values) if note is not None else None
        self._keep("escalate", level=level, group=group, assignee=assignee, note=text)

    @rule_action(params={"text": FIELD_TEXT})
    def add_note(self, text: str) -> None:
        self._keep("add_note", text=render_note(text, self.values))

    @rule_action(params={"field": FIELD_TEXT, "value": FIELD_TEXT})
    def set_field(self, field: str, value: str) -> None:
        """`field` is custom.NAME; `value` a template like the notes' ({first_response_due_at})."""
        self._keep("set_field", field=field, value=render_note(value, self.values))

    @rule_action(params={"webhook": FIELD_TEXT, "text": FIELD_TEXT})
    def notify(self, webhook: str, text: str) -> None:
        self._keep("notify", webhook=webhook, text=render_note(text, self.values))


@dataclass(frozen=True)
class ActionSpec:
    name: str
    params: Mapping[str, str]  # param name -> FIELD_TEXT | FIELD_NUMERIC
    required: frozenset[str]


def action_specs() -> dict[str, ActionSpec]:
    """The actions a policy may name, read off ActionCollector itself."""
    specs = {}
    for action in ActionCollector.get_all_actions():
        signature = inspect.signature(getattr(ActionCollector, action["name"]))
        required = frozenset(
            name for name, p in signature.parameters.items()
            if name != "self" and p.default is inspect.Parameter.empty)
        specs[action["name"]] = ActionSpec(
            action["name"], {p["name"]: p["fieldType"] for p in action["params"]}, required)
    return specs


def note_placeholders(template: str) -> list[str]:
    """The placeholders a note template uses; ValueError for anything but plain `{name}`."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"malformed template ({exc}); write {{{{ and }}}} for braces") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion or name not in PLACEHOLDERS:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            raise ValueError(
                f"unknown placeholder {shown} (allowed: "
                + ", ".join("{" + p + "}" for p in RECORD_PLACEHOLDERS)
                + ", and {T_X} for T in " + ", ".join(ALL_TARGETS)
                + " and X in " + ", ".join(CLOCK_PLACEHOLDERS) + ")")
        names.append(name)
    return names


def render_note(template: str, values: Mapping[str, Any]) -> str:
    """Fill a validated template; numbers show at most one decimal."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if name is not None:
            out.append(_show(values.get(name, "")))
    return "".join(out)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.1f}".removesuffix(".0")
        return "0" if text == "-0" else text
    return str(value)
