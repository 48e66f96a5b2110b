"""What rule conditions can ask about a record: the business-rules variables and the
operators each type offers.

business-rules ships no `not_equal_to` or one-of test for strings and no single-tag test;
they are added here through its own operator-type mechanism (subclasses with
`type_operator`), so the engine evaluates them like its built-ins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from business_rules.fields import (
    FIELD_NO_INPUT,
    FIELD_NUMERIC,
    FIELD_SELECT_MULTIPLE,
    FIELD_TEXT,
)
from business_rules.operators import (
    BaseType,
    BooleanType,
    NumericType,
    SelectMultipleType,
    StringType,
    type_operator,
)
from business_rules.variables import BaseVariables, rule_variable

from sla_sync.rules.clock import TARGETS
from sla_sync.rules.patterns import INPUT_LIMIT


class Text(StringType):
    @type_operator(FIELD_TEXT)
    def not_equal_to(self, other: str) -> bool:
        return bool(self.value != other)

    @type_operator(FIELD_SELECT_MULTIPLE, assert_type_for_arguments=False)
    def is_one_of(self, options: list[str]) -> bool:
        return self.value in options

    @type_operator(FIELD_SELECT_MULTIPLE, assert_type_for_arguments=False)
    def is_not_one_of(self, options: list[str]) -> bool:
        return self.value not in options

    @type_operator(FIELD_NO_INPUT)
    def is_empty(self) -> bool:
        return not self.value

    @type_operator(FIELD_TEXT)
    def matches_regex(self, regex: str) -> bool:
        # Bounded input: with the pattern checks of rules/patterns.py, a search cannot hang.
        return re.search(regex, self.value[:INPUT_LIMIT]) is not None


class Number(NumericType):
    @type_operator(FIELD_NUMERIC)
    def not_equal_to(self, other: Any) -> bool:
        return not self.equal_to(other)


class Flag(BooleanType):
    pass


class TagSet(SelectMultipleType):
    @type_operator(FIELD_TEXT, assert_type_for_arguments=False)
    def contains(self, tag: str) -> bool:
        return tag.lower() in (value.lower() for value in self.value)

    @type_operator(FIELD_TEXT, assert_type_for_arguments=False)
    def does_not_contain(self, tag: str) -> bool:
        return not self.contains(tag)


#: Variables that depend on the record alone (and `now`); SLA `when` conditions may use
#: only these, since the SLA is chosen before any clock runs.
RECORD_VARIABLES: dict[str, tuple[type[BaseType], str]] = {
    "kind": (Text, "ticket or lead"),
    "status": (Text, "the record's status"),
    "priority": (Text, "the record's priority"),
    "tier": (Text, "the customer's tier"),
    "channel": (Text, "where the record came in (email, web, chat, phone ...)"),
    "source": (Text, "a lead's source (campaign, website, referral ...)"),
    "group": (Text, "the team the record is assigned to"),
    "assignee": (Text, "the agent the record is assigned to ('' when unassigned)"),
    "subject": (Text, "the record's subject line"),
    "tags": (TagSet, "the record's tags"),
    "escalation_level": (Number, "0 = not escalated"),
    "hours_since_created": (Number, "hours from created_at to now"),
    "hours_since_updated": (Number, "hours from updated_at to now"),
}
#: Variables that change with the passage of time even when the record does not.
WALL_CLOCK_VARIABLES = ("hours_since_created", "hours_since_updated")

CLOCK_SUFFIXES: dict[str, tuple[type[BaseType], str]] = {
    "minutes_left": (Number, "minutes of the target left; negative once breached"),
    "elapsed_pct": (Number, "percent of the target used"),
    "breached": (Flag, "elapsed time exceeds the target (running or stopped)"),
    "met": (Flag, "the clock stopped within the target"),
    "paused": (Flag, "the clock is running but paused (a pause status)"),
    "business_minutes_elapsed": (Number, "business minutes counted so far"),
    "due_at_epoch": (Number, "when the target is used up, as Unix seconds (0: no target, "
                             "or stopped within it)"),
}

VARIABLES: dict[str, tuple[type[BaseType], str]] = {
    **RECORD_VARIABLES,
    "sla": (Text, "the name of the matched SLA ('' when none matched)"),
    "in_business_hours": (Flag, "now is within the SLA's calendar working time"),
    **{
        f"{target}_{suffix}": (kind, f"{target.replace('_', ' ')}: {text}")
        for target in TARGETS
        for suffix, (kind, text) in CLOCK_SUFFIXES.items()
    },
}


def operators(kind: type[BaseType]) -> dict[str, str]:
    """Operator name -> the input it takes (a business_rules.fields FIELD_* value)."""
    return {op["name"]: op["input_type"] for op in kind.get_all_operators()}


def _reader(name: str) -> Callable[[RecordVariables], Any]:
    def read(self: RecordVariables) -> Any:
        return self.facts[name]

    read.__name__ = name
    read.fact = name  # type: ignore[attr-defined]  # rules.conditions reads the fact itself
    return read


class RecordVariables(BaseVariables):  # type: ignore[misc]
    """The business-rules view of one record: every variable reads a precomputed fact."""

    def __init__(self, facts: Mapping[str, Any]):
        self.facts = facts


for _name, (_kind, _text) in VARIABLES.items():
    setattr(RecordVariables, _name, rule_variable(_kind, label=_text)(_reader(_name)))
