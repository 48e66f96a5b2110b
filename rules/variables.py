"""What rule conditions can ask about a record: the business-rules variables and the
operators each type offers.

business-rules ships no `not_equal_to` or one-of test for strings and no single-tag test;
they are added here through its own operator-type mechanism (subclasses with
`type_operator`), so the engine evaluates them like its built-ins.
"""

from __future__ import annotations

import math
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

from sla_sync.rules.clock import ALL_TARGETS
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

#: What rules can ask about the team targets (OLAs) that apply to a record: the worst of
#: their clocks. With no OLA clock: not breached, 0 percent, NO_TARGET_MINUTES_LEFT.
OLA_FAMILY = "ola"
OLA_VARIABLES: dict[str, tuple[type[BaseType], str]] = {
    "ola_breached": (Flag, "some clock of an OLA that applies has breached"),
    "ola_elapsed_pct": (Number, "the highest percent of its target any OLA clock has used"),
    "ola_minutes_left": (Number, "the fewest minutes of its target any OLA clock has left; "
                                 "negative once one breached"),
}

#: The desk's load, counted once per sync over the state file's copy of the desk
#: (rules/load.py); rules only.
LOAD_VARIABLES: dict[str, tuple[type[BaseType], str]] = {
    "group_open": (Number, "open records in the record's group"),
    "group_at_risk": (Number, "open records in the record's group at risk (a running target "
                              "75% used or more) or breached"),
    "group_arrivals_1h": (Number, "records of the record's group created in the last hour"),
    "desk_open": (Number, "open records in the whole desk"),
}

VARIABLES: dict[str, tuple[type[BaseType], str]] = {
    **RECORD_VARIABLES,
    "sla": (Text, "the name of the matched SLA ('' when none matched)"),
    "in_business_hours": (Flag, "now is within the SLA's calendar working time"),
    **{
        f"{target}_{suffix}": (kind, f"{target.replace('_', ' ')}: {text}")
        for target in ALL_TARGETS
        for suffix, (kind, text) in CLOCK_SUFFIXES.items()
    },
    **OLA_VARIABLES,
    **LOAD_VARIABLES,
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


#: Conditions may name custom fields declared in the policy's `fields` as custom.NAME.
CUSTOM_PREFIX = "custom."


class Absent(BaseType):
    """A declared custom field the record lacks, or holds in another type: every operator
    of every type answers False (the negative ones too), as a condition on a value that is
    not there cannot hold."""

    name = "absent"

    def _assert_valid_value_and_cast(self, value: Any) -> Any:
        return value


for _kind in (Text, Number, Flag):
    for _op in _kind.get_all_operators():
        if not hasattr(Absent, _op["name"]):
            _answer = type_operator(_op["input_type"], assert_type_for_arguments=False)(
                lambda self, *args: False)
            _answer.__name__ = _op["name"]
            setattr(Absent, _op["name"], _answer)

#: The types a policy's `fields` may declare: a name and its business-rules type.
FIELD_TYPES: dict[str, type[BaseType]] = {"string": Text, "numeric": Number, "boolean": Flag}


def custom_value(raw: Any, declared: str) -> Any:
    """A custom field's value as its declared type reads it; None for a value that is
    absent or of another type (conditions on it are then false). Lossless readings only:
    a number is a string's text for a string field, and text holding a finite number is
    that number for a numeric one (some helpdesks send every custom field as text)."""
    if declared == "string":
        if isinstance(raw, str):
            return raw
        if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            return str(raw)
        return None
    if declared == "numeric":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return raw if math.isfinite(raw) else None
        if isinstance(raw, str) and len(raw) <= 40:
            try:
                number = float(raw.strip())
            except ValueError:
                return None
            return number if math.isfinite(number) else None
        return None
    return raw if isinstance(raw, bool) else None


def custom_facts(custom: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """The facts of the declared custom fields (custom.NAME -> value or None)."""
    return {name: custom_value(custom.get(name[len(CUSTOM_PREFIX):]), declared)
            for name, declared in fields.items()}


def custom_kind(value: Any) -> type[BaseType]:
    """The business-rules type a custom fact is read with (its value was read as its
    declared type by custom_value, or is None)."""
    if value is None:
        return Absent
    if isinstance(value, bool):
        return Flag
    if isinstance(value, str):
        return Text
    return Number


class RecordVariables(BaseVariables):  # type: ignore[misc]
    """The business-rules view of one record: every variable reads a precomputed fact;
    custom.NAME reads the custom fact, typed by its value (Absent when None)."""

    def __init__(self, facts: Mapping[str, Any]):
        self.facts = facts

    def __getattr__(self, name: str) -> Any:
        if not name.startswith(CUSTOM_PREFIX) or name not in self.__dict__.get("facts", {}):
            raise AttributeError(name)
        value = self.facts[name]

        def read() -> Any:
            return value

        read.field_type = custom_kind(value)  # type: ignore[attr-defined]
        return read


for _name, (_kind, _text) in VARIABLES.items():
    setattr(RecordVariables, _name, rule_variable(_kind, label=_text)(_reader(_name)))
