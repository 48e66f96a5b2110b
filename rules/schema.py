"""The policy format as a JSON Schema (draft 2020-12), for editors, and as business-rules'
`export_rule_data`, for rule-builder UIs.

Both are generated from the definitions the checker itself uses (the variables and their
operator types, the actions and their parameters, the policy's keys, the calendar and
duration syntax), so neither can drift from what `validate` accepts. The schema is the
shape only: what needs the whole policy (a calendar name that is defined, unique names,
overlapping intervals, placeholders in note texts, how deep conditions nest, regular
expressions that backtrack without bound) stays with the checker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from business_rules import export_rule_data
from business_rules.fields import FIELD_NO_INPUT, FIELD_NUMERIC, FIELD_SELECT_MULTIPLE, FIELD_TEXT
from business_rules.operators import BaseType

from sla_sync.rules import calendar as calendars
from sla_sync.rules import durations
from sla_sync.rules.actions import PLACEHOLDERS, ActionCollector, action_specs
from sla_sync.rules.assignment import DEFAULT_STRATEGY, STRATEGIES
from sla_sync.rules.clock import ALL_TARGETS
from sla_sync.rules.policy import (
    APPLIES_TO,
    CALENDAR_FIELDS,
    CLOCK_CONDITIONS,
    CLOCK_VARIABLES,
    DEFAULT_CLOSED_STATUSES,
    MAX_ESCALATION_LEVEL,
    MAX_NUMBER,
    OLA_KEYS,
    ON_TARGET_CHANGE,
    SCALE_RANGE,
    TOP_LEVEL,
)
from sla_sync.rules.variables import (
    CUSTOM_PREFIX,
    FIELD_TYPES,
    RECORD_VARIABLES,
    VARIABLES,
    RecordVariables,
    operators,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
STRINGS = {"type": "array", "items": {"type": "string"}}


def _exact(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _value(input_type: str, operator: str) -> dict[str, Any] | None:
    """The schema of a condition's `value` for an operator taking this input."""
    if input_type == FIELD_NO_INPUT:
        return None
    if input_type == FIELD_NUMERIC:
        return {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}
    if input_type == FIELD_SELECT_MULTIPLE:
        return {**STRINGS, "minItems": 1}
    assert input_type == FIELD_TEXT
    return {"type": "string", **({"format": "regex"} if operator == "matches_regex" else {})}


#: A condition's name for a custom field (declared under `fields`, which the checker checks).
CUSTOM_NAME = {"type": "string", "pattern": "^" + re.escape(CUSTOM_PREFIX) + r".+",
               "description": "a custom field declared under fields"}


def _leaves(variables: Mapping[str, tuple[type[BaseType], str]]) -> list[dict[str, Any]]:
    """One alternative per operator type and kind of value: the variables of that type, the
    operators taking that kind of value, and the value's shape; then the same for custom
    fields of each declarable type."""
    by_type: dict[type[BaseType], list[str]] = {}
    for name, (kind, _) in variables.items():
        by_type.setdefault(kind, []).append(name)
    groups: list[tuple[type[BaseType], list[str] | None]] = [
        *by_type.items(), *((kind, None) for kind in FIELD_TYPES.values())]
    out = []
    for kind, names in groups:
        by_input: dict[tuple[str, str], list[str]] = {}
        for operator, input_type in sorted(operators(kind).items()):
            # matches_regex has its own alternative: its value is a regular expression.
            key = (input_type, "matches_regex" if operator == "matches_regex" else "")
            by_input.setdefault(key, []).append(operator)
        for (input_type, special), ops in by_input.items():
            value = _value(input_type, special)
            properties: dict[str, Any] = {
                "name": CUSTOM_NAME if names is None else {"enum": sorted(names)},
                "operator": {"enum": ops},
                # an operator without input ignores whatever value business-rules authors write
                "value": {} if value is None else value,
            }
            what = f"custom {kind.name} field" if names is None else f"{kind.name} variable"
            out.append({"type": "object", "title": f"{what}, {'/'.join(ops)}",
                        "properties": properties, "additionalProperties": False,
                        "required": ["name", "operator"] + ([] if value is None else ["value"])})
    return out


def _condition(name: str, variables: Mapping[str, tuple[type[BaseType], str]]) -> dict[str, Any]:
    group = {"type": "array", "minItems": 1, "items": {"$ref": f"#/$defs/{name}"}}
    return {"anyOf": [
        {"type": "object", "properties": {"all": group}, "required": ["all"],
         "additionalProperties": False},
        {"type": "object", "properties": {"any": group}, "required": ["any"],
         "additionalProperties": False},
        *_leaves(variables),
    ]}


def _actions() -> dict[str, Any]:
    note = ("placeholders: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            + "; write {{ and }} for braces")
    alternatives = []
    for spec in action_specs().values():
        params = {}
        for param, input_type in spec.params.items():
            if input_type == FIELD_NUMERIC:
                params[param] = {"type": "integer", "minimum": 1,
                                 "maximum": MAX_ESCALATION_LEVEL}
            else:
                params[param] = {"type": "string", "pattern": r"\S"}
                if param in ("text", "note") or (spec.name, param) == ("set_field", "value"):
                    params[param]["description"] = note
                elif (spec.name, param) == ("set_field", "field"):
                    params[param] = {"type": "string", "pattern": r"^custom\.\S",
                                     "description": "custom.NAME: the record's custom field"}
                if spec.name == "assign_next" and param == "strategy":
                    params[param] = {"enum": list(STRATEGIES), "default": DEFAULT_STRATEGY}
                elif spec.name == "assign_next":
                    params[param]["description"] = "a group defined under groups"
        alternatives.append({
            "type": "object", "title": spec.name,
            "properties": {
                "name": {"const": spec.name},
                "params": {"type": "object", "properties": params,
                           "required": sorted(spec.required), "additionalProperties": False},
            },
            "required": ["name", "params"] if spec.required else ["name"],
            "additionalProperties": False,
        })
    return {"oneOf": alternatives}


def _group() -> dict[str, Any]:
    calendar = {"type": "string", "description": "a calendar defined under calendars: when "
                                                 "they work (else always)"}
    agent = {"anyOf": [{"type": "string", "pattern": r"\S"}, {
        "type": "object", "properties": {"name": {"type": "string", "pattern": r"\S"},
                                         "calendar": calendar},
        "required": ["name"], "additionalProperties": False}]}
    return {"type": "object", "properties": {
        "agents": {"type": "array", "minItems": 1, "items": agent},
        "calendar": calendar}, "required": ["agents"], "additionalProperties": False}


def _override() -> dict[str, Any]:
    instant = {"type": "string", "format": "date-time",
               "description": "ISO 8601 with an offset"}
    return {"type": "object", "properties": {
        "name": {"type": "string", "pattern": r"\S"},
        "description": {"type": "string"},
        "from": {**instant, "description": "ISO 8601 with an offset; included"},
        "until": {**instant, "description": "ISO 8601 with an offset; excluded"},
        "calendars": {"type": "object", "additionalProperties": {"type": "string"},
                      "description": "calendar -> the calendar it counts as within the range"},
        "targets_scale": {"type": "number", "minimum": SCALE_RANGE[0],
                          "maximum": SCALE_RANGE[1],
                          "description": "SLA targets of records created within the range, "
                                         "times this"},
        "rules": {"type": "array", "items": {"$ref": "#/$defs/rule"},
                  "description": "rules that run only within the range"}},
        "required": ["name", "from", "until"], "additionalProperties": False,
        "anyOf": [{"required": [key]} for key in ("calendars", "targets_scale", "rules")]}


def _calendar() -> dict[str, Any]:
    region = {"type": "object", "properties": {"country": {"type": "string"},
                                               "subdiv": {"type": "string"}},
              "required": ["country"], "additionalProperties": False}
    return {
        "type": "object",
        "properties": {
            "timezone": {"type": "string", "minLength": 1,
                         "description": "an IANA timezone, e.g. Europe/Berlin"},
            "week": {"type": "object", "propertyNames": {"enum": list(calendars.WEEKDAYS)},
                     "additionalProperties": {"type": "array", "items": {
                         "type": "string", "pattern": _exact(calendars._INTERVAL.pattern)}}},
            "holidays": {"type": "array", "items": {"anyOf": [
                {"type": "string", "pattern": _exact(calendars._ONE_OFF.pattern),
                 "description": "YYYY-MM-DD, once"},
                {"type": "string", "pattern": _exact(calendars._YEARLY.pattern),
                 "description": "MM-DD, every year"},
                region]}},
        },
        "required": ["timezone", "week"],
        "additionalProperties": False,
    }


def _sla() -> dict[str, Any]:
    duration = {"type": "string", "maxLength": 100,
                "pattern": rf"^\s*(?:{durations._WHOLE.pattern})\s*$",
                "description": "business time: 90s, 30m, 4h, 2d, 2bd, 1h30m"}
    field = {"anyOf": [{"enum": list(CALENDAR_FIELDS)}, {"type": "string",
                                                          "pattern": r"^custom\."}]}
    targets = {"type": "object", "propertyNames": {"enum": list(ALL_TARGETS)},
               "additionalProperties": duration}
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": r"\S"},
            "description": {"type": "string"},
            "when": {"$ref": "#/$defs/record_condition"},
            "calendar": {"type": "string", "description": f"{calendars.ALWAYS} or a calendar "
                                                          "defined under calendars"},
            "calendar_by": {"type": "object", "properties": {
                "field": field,
                "calendars": {"type": "object", "minProperties": 1,
                              "additionalProperties": {"type": "string"}},
                "default": {"type": "string"}},
                "required": ["field", "calendars", "default"], "additionalProperties": False},
            "targets": targets,
            "targets_by": {"type": "object", "properties": {
                "field": field,
                "values": {"type": "object", "minProperties": 1,
                           "additionalProperties": targets,
                           "description": "a field value -> its targets, over `targets`"}},
                "required": ["field", "values"], "additionalProperties": False},
            "clocks": {"type": "object", "propertyNames": {"enum": list(ALL_TARGETS)},
                       "additionalProperties": {
                           "type": "object", "additionalProperties": False,
                           "properties": {key: {"$ref": "#/$defs/clock_condition"}
                                          for key in CLOCK_CONDITIONS}},
                       "description": "a target's own start, pause and stop conditions, "
                                      "replayed over the record's history"},
            "pause_statuses": STRINGS,
            "on_target_change": {"enum": list(ON_TARGET_CHANGE)},
            "valid_from": {"type": "string", "pattern": r"(?:[Zz]|[+-]\d\d(?::?\d\d)?)$",
                           "description": "a version of the SLA: it applies from this ISO "
                                          "8601 instant (with an offset) on; an older "
                                          "version has the same name, later in the list"},
            "applies_to": {"enum": list(APPLIES_TO), "default": "new",
                           "description": "new: records created from valid_from on (the "
                                          "others keep the version they started under); "
                                          "open: also the records open then"},
        },
        "dependentRequired": {"applies_to": ["valid_from"]},
        "required": ["name"],
        "not": {"required": ["calendar", "calendar_by"]},
        "additionalProperties": False,
    }


def _ola() -> dict[str, Any]:
    """An OLA: an SLA's shape, less what only a customer SLA has; its `when` over the
    variables that have a history."""
    sla = _sla()
    properties = {key: value for key, value in sla["properties"].items() if key in OLA_KEYS}
    properties["when"] = {"$ref": "#/$defs/clock_condition"}
    assert set(properties) == set(OLA_KEYS), "the schema and the checker disagree on keys"
    return {**sla, "properties": properties}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file."""
    properties: dict[str, Any] = {
        "$schema": {"type": "string", "description": "this schema, for editors"},
        "description": {"type": "string"},
        "fields": {"type": "object", "description": "custom fields conditions may name, with "
                                                    "their types",
                   "propertyNames": CUSTOM_NAME,
                   "additionalProperties": {"enum": list(FIELD_TYPES)}},
        "calendars": {"type": "object", "propertyNames": {"not": {"const": calendars.ALWAYS}},
                      "additionalProperties": {"$ref": "#/$defs/calendar"}},
        "closed_statuses": {**STRINGS, "default": list(DEFAULT_CLOSED_STATUSES)},
        "slas": {"type": "array", "items": {"$ref": "#/$defs/sla"}},
        "olas": {"type": "array", "items": {"$ref": "#/$defs/ola"},
                 "description": "team targets: every one whose when holds applies besides "
                                "the SLA, counting only the record's time with the team"},
        "rules": {"type": "array", "items": {"$ref": "#/$defs/rule"}},
        "groups": {"type": "object", "description": "the agents assign_next chooses from, by "
                                                    "group, and when they work",
                   "additionalProperties": _group()},
        "overrides": {"type": "array", "description": "date-ranged changes for planned peaks",
                      "items": _override()},
    }
    assert set(properties) == set(TOP_LEVEL), "the schema and the checker disagree on keys"
    return {
        "$schema": DRAFT,
        "title": "sla-sync policy",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "$defs": {
            "calendar": _calendar(),
            "sla": _sla(),
            "ola": _ola(),
            "rule": {"type": "object", "properties": {
                "name": {"type": "string", "pattern": r"\S"},
                "description": {"type": "string"},
                "conditions": {"$ref": "#/$defs/condition"},
                "actions": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/action"}},
            # a rule without a name (as plain business-rules rules are written) is named
            # from what it says
            }, "required": ["conditions", "actions"], "additionalProperties": False},
            "condition": _condition("condition", VARIABLES),
            "record_condition": _condition("record_condition", RECORD_VARIABLES),
            "clock_condition": _condition("clock_condition", CLOCK_VARIABLES),
            "action": _actions(),
        },
    }


def rule_data() -> dict[str, Any]:
    """business-rules' `export_rule_data` for the policy's variables and actions. The
    library lists its stock operator types; each is replaced by the type our variables
    use, so that sla-sync's own operators (not_equal_to, is_one_of ...) are offered too."""
    data: dict[str, Any] = export_rule_data(RecordVariables, ActionCollector)
    types = {kind.name: kind for kind, _ in VARIABLES.values()}
    data["variable_type_operators"] = {name: kind.get_all_operators()
                                       for name, kind in sorted(types.items())}
    return data
