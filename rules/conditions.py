"""Policy conditions compiled once into checks that answer exactly as business-rules does.

business-rules walks a condition's dict on every call: for each leaf it looks the variable
up by name, builds its typed value and looks the operator up by name. A compiled check
does that lookup once per policy, and per record asks each distinct leaf (name, operator,
value) once and builds each variable's typed value once, whichever rules share them. The
comparisons themselves are business-rules' own: the same variable types and operator
methods, called the way its engine calls them (`all` and `any` short-circuit in the same
order), so every cast, tolerance and case rule stays the engine's.

A condition business-rules would reject while running (an empty `all`, a leaf with extra
keys, an unknown variable or operator) is not compiled: it is left to business-rules,
which raises as it always did.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping
from operator import gt, lt
from typing import Any

from business_rules.fields import FIELD_NO_INPUT
from business_rules.operators import NumericType

from sla_sync.rules.variables import CUSTOM_PREFIX, Number, RecordVariables, custom_kind


class Asked:
    """One record's answers while its conditions are checked: typed variables and leaves."""

    __slots__ = ("answers", "facts", "typed", "variables")

    def __init__(self, variables: RecordVariables):
        self.variables = variables
        self.facts = variables.facts
        self.typed: dict[str, Any] = {}
        self.answers: dict[int, Any] = {}  # leaf number -> its answer


Check = Callable[[Asked], Any]


class Compiler:
    """Compiles the conditions of one policy; leaves are shared across all its checks."""

    def __init__(self, variables: type[RecordVariables] = RecordVariables):
        self.variables = variables
        self._leaves: dict[tuple[str, str, str], Check] = {}

    def compile(self, conditions: Any) -> Check | None:
        """A check for `conditions`, or None when business-rules must keep it."""
        if not isinstance(conditions, Mapping):
            return None
        keys = list(conditions.keys())
        if keys in (["all"], ["any"]):
            children = conditions[keys[0]]
            if not isinstance(children, list) or not children:
                return None
            checks = [self.compile(child) for child in children]
            if any(check is None for check in checks):
                return None
            return _all(checks) if keys == ["all"] else _any(checks)  # type: ignore[arg-type]
        if "all" in keys or "any" in keys:
            return None
        return self._leaf(conditions)

    def _leaf(self, condition: Mapping[str, Any]) -> Check | None:
        try:
            name, operator, value = condition["name"], condition["operator"], condition["value"]
            key = (name, operator, json.dumps(value, sort_keys=True))
        except (KeyError, TypeError, ValueError):
            return None
        if key in self._leaves:
            return self._leaves[key]
        if isinstance(name, str) and name.startswith(CUSTOM_PREFIX) \
                and isinstance(operator, str):
            self._leaves[key] = _custom_leaf(name, operator, value)
            return self._leaves[key]
        reader = inspect.getattr_static(self.variables, name, None) \
            if isinstance(name, str) else None
        kind = getattr(reader, "field_type", None)
        if not inspect.isfunction(reader) or kind is None or not isinstance(operator, str):
            return None
        method = inspect.getattr_static(kind, operator, None)
        if not inspect.isfunction(method):
            return None
        compare = _comparison(kind, method, value)
        number = len(self._leaves)
        # An operator's answer depends on the variable's value alone: for values that
        # repeat across records (statuses, tiers, flags) it is worked out once per value.
        # One dict per type, since True == 1 == 1.0 as dict keys.
        by_value: dict[type, dict[Any, Any]] = {kind_: {} for kind_ in _REPEATING}
        texts, flags = by_value[str], by_value[bool]  # the usual ones, found without a look-up

        fact = getattr(reader, "fact", None)  # a variable that reads facts[fact]
        clear_of = _clear_comparison(method, value)

        def leaf(asked: Asked) -> Any:
            raw = asked.facts[fact] if fact is not None else reader(asked.variables)
            of = type(raw)
            kept = texts if of is str else flags if of is bool else by_value.get(of)
            if kept is not None:  # a repeating type
                answer = kept.get(raw, _UNKNOWN)
                if answer is _UNKNOWN:
                    if len(kept) >= BY_VALUE_LIMIT:
                        kept.clear()
                    answer = kept[raw] = compare(kind(raw))
                return answer
            if clear_of is not None and of is float:
                answer = clear_of(raw)
                if answer is not None:
                    return answer
            answers = asked.answers
            if number in answers:
                return answers[number]
            typed = asked.typed.get(name)
            if typed is None:
                typed = asked.typed[name] = kind(raw)
            answer = answers[number] = compare(typed)
            return answer

        self._leaves[key] = leaf
        return leaf


def _custom_leaf(name: str, operator: str, value: Any) -> Check:
    """A leaf on a custom field: its type is its value's (RecordVariables.__getattr__), so
    the comparison is looked up per type, once."""
    compares: dict[type, Callable[[Any], Any]] = {}

    def leaf(asked: Asked) -> Any:
        raw = asked.facts.get(name)
        kind = custom_kind(raw)
        compare = compares.get(kind)
        if compare is None:
            method = inspect.getattr_static(kind, operator, None)
            if not inspect.isfunction(method):  # as business-rules' engine says it
                raise AssertionError(f"Operator {operator} does not exist for type "
                                     f"{kind.__name__}")
            compare = compares[kind] = _comparison(kind, method, value)
        return compare(kind(raw))

    return leaf


def _comparison(kind: type, method: Callable[..., Any], value: Any) -> Callable[[Any], Any]:
    """typed value -> the operator's answer, as business-rules' engine calls it (with the
    value when the operator takes one). The value is cast once, here, where business-rules'
    operator wrapper would cast it on every call: the same cast, done earlier."""
    if getattr(method, "input_type", "") == FIELD_NO_INPUT:
        return lambda typed: method(typed)
    bare: Callable[..., Any] | None = getattr(method, "__wrapped__", None)
    if bare is None:
        return lambda typed: method(typed, value)
    unwrapped = bare
    casts = inspect.getclosurevars(method).nonlocals.get("assert_type_for_arguments")
    if casts is False:
        return lambda typed: unwrapped(typed, value)
    if casts is True:
        cast: Any = _UNCAST
        try:
            cast = object.__new__(kind)._assert_valid_value_and_cast(value)
        except AssertionError:
            pass  # business-rules raises it on every call: leave that to it
        if cast is not _UNCAST:
            return lambda typed: unwrapped(typed, cast)
    return lambda typed: method(typed, value)


def _clear_comparison(method: Callable[..., Any], value: Any,
                      ) -> Callable[[float], bool | None] | None:
    """For business-rules' numeric comparisons with a number: float -> the answer when the
    float is clearly apart from the value, None when it is close enough that only
    business-rules' exact Decimal arithmetic (tolerance 0.000001) can tell.

    Apart by more than CLEAR (plus a relative margin for float rounding), the Decimal
    difference has the float difference's sign and is far beyond the tolerance, so the
    answer is the plain float comparison's: equal_to is False, not_equal_to True."""
    if type(value) not in (int, float) or not math.isfinite(value):
        return None
    threshold = float(value)
    answer: Callable[[float, float], bool]
    if method is _NUMERIC["equal_to"]:
        answer = _never
    elif method is _NUMERIC["not_equal_to"]:
        answer = _always
    elif method in (_NUMERIC["greater_than"], _NUMERIC["greater_than_or_equal_to"]):
        answer = gt
    elif method in (_NUMERIC["less_than"], _NUMERIC["less_than_or_equal_to"]):
        answer = lt
    else:
        return None

    isfinite, size = math.isfinite, abs(threshold)

    def clear(raw: float) -> bool | None:
        if not isfinite(raw) or abs(raw - threshold) <= CLEAR + 1e-9 * max(abs(raw), size):
            return None
        return answer(raw, threshold)

    return clear


def _never(raw: float, limit: float) -> bool:
    return False


def _always(raw: float, limit: float) -> bool:
    return True


#: How far apart (absolute) a float and a compared number must be for the float comparison
#: to stand for business-rules' Decimal one (its tolerance is 0.000001).
CLEAR = 1e-3
_NUMERIC: dict[str, Any] = {
    **{name: NumericType.__dict__[name] for name in (
        "equal_to", "greater_than", "greater_than_or_equal_to", "less_than",
        "less_than_or_equal_to")},
    "not_equal_to": Number.__dict__["not_equal_to"],
}
_UNCAST = object()
_UNKNOWN = object()
#: Value types whose answers are kept per value (hashable, and repeating across records).
_REPEATING: frozenset[type] = frozenset({str, bool, int, type(None)})
#: How many values' answers one leaf keeps.
BY_VALUE_LIMIT = 1024


def _all(checks: list[Check]) -> Check:
    def check(asked: Asked) -> bool:
        for child in checks:
            if not child(asked):
                return False
        return True

    return check


def _any(checks: list[Check]) -> Check:
    def check(asked: Asked) -> bool:
        for child in checks:
            if child(asked):
                return True
        return False

    return check
