"""Lint: what a valid policy gets wrong, found by reasoning over its conditions.

Conditions are read as formulas over the variables (negation pushed down to the leaves),
and one satisfiability check answers every question: an SLA is shadowed when its `when`
and the negation of an earlier one's cannot hold together; a rule is dead when its
conditions cannot hold. The check is conservative both ways:

- "cannot hold" is claimed only when every branch is refuted: values a string may take
  (equal_to, is_one_of, is_empty and their negations; other string operators are run on
  the candidate values when those are finite), numeric ranges with business-rules' own
  epsilon, booleans, single tags, the values `kind` and `sla` can have, and how a clock's
  facts go together (breached means elapsed_pct above 100 and minutes_left below 0; met
  means neither breached nor paused). Anything else is taken as possibly true.
- "can happen" (two rules that override or re-trigger each other) is claimed only with a
  witness: concrete facts, with the SLA they match, on which the real business-rules
  engine evaluates the conditions as claimed.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from business_rules import engine as br_engine
from business_rules.fields import FIELD_NO_INPUT
from business_rules.operators import BooleanType, NumericType, SelectMultipleType, StringType

from sla_sync.connector.model import Record
from sla_sync.rules.clock import ALL_TARGETS, NO_TARGET_MINUTES_LEFT
from sla_sync.rules.engine import match_sla, record_facts
from sla_sync.rules.policy import Policy
from sla_sync.rules.variables import (
    CUSTOM_PREFIX,
    LOAD_VARIABLES,
    OLA_FAMILY,
    OLA_VARIABLES,
    VARIABLES,
    RecordVariables,
    operators,
)

ERROR, WARNING = "error", "warning"
#: Refuting more branches than this gives up (the claim is then not made).
MAX_BRANCHES = 4000
KINDS = ("ticket", "lead")
#: The clocks whose facts go together: each target's, and the OLAs' (the worst of theirs:
#: ola_breached exactly when ola_elapsed_pct is above 100 and ola_minutes_left below 0).
CLOCK_FAMILIES = (*ALL_TARGETS, OLA_FAMILY)
NON_NEGATIVE = ("escalation_level", "ola_elapsed_pct", *LOAD_VARIABLES) + tuple(
    f"{t}_{s}" for t in ALL_TARGETS for s in ("elapsed_pct", "business_minutes_elapsed",
                                         "due_at_epoch"))


@dataclass(frozen=True)
class Finding:
    severity: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "path": self.path, "message": self.message}


# -- formulas ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    name: str
    op: str
    value: Any  # lists as tuples (hashable)
    negated: bool = False
    path: str = ""

    def holds(self, facts: Mapping[str, Any]) -> bool:
        """Evaluated by business-rules itself, on these facts."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        result = bool(br_engine.check_condition(
            {"name": self.name, "operator": self.op, "value": value}, RecordVariables(facts)))
        return result != self.negated

    def flipped(self) -> Leaf:
        return Leaf(self.name, self.op, self.value, not self.negated, self.path)

    def same_test(self, other: Leaf) -> bool:
        return (self.name, self.op, self.value) == (other.name, other.op, other.value)

    def __str__(self) -> str:
        shown = "" if self.value is None else " " + _show(self.value)
        return f"{'not ' if self.negated else ''}{self.name} {self.op}{shown}"


@dataclass(frozen=True)
class All:
    items: tuple[Formula, ...]


@dataclass(frozen=True)
class Any_:
    items: tuple[Formula, ...]


Formula = Leaf | All | Any_
TRUE: Formula = All(())
FALSE: Formula = Any_(())


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def formula(conditions: Mapping[str, Any] | None, path: str) -> Formula:
    """A checked condition tree as a formula; None (an SLA without when) is TRUE."""
    if conditions is None:
        return TRUE
    for key, kind in (("all", All), ("any", Any_)):
        if key in conditions:
            return kind(tuple(formula(child, f"{path}.{key}[{i}]")
                              for i, child in enumerate(conditions[key])))
    value = conditions.get("value")
    return Leaf(conditions["name"], conditions["operator"],
                tuple(value) if isinstance(value, list) else value, False, path)


def negate(f: Formula) -> Formula:
    if isinstance(f, Leaf):
        return f.flipped()
    if isinstance(f, All):
        return Any_(tuple(negate(i) for i in f.items))
    return All(tuple(negate(i) for i in f.items))


def leaves(f: Formula) -> Iterator[Leaf]:
    if isinstance(f, Leaf):
        yield f
    else:
        for item in f.items:
            yield from leaves(item)


def evaluate(f: Formula, facts: Mapping[str, Any]) -> bool:
    if isinstance(f, Leaf):
        return f.holds(facts)
    if isinstance(f, All):
        return all(evaluate(i, facts) for i in f.items)
    return any(evaluate(i, facts) for i in f.items)


class GaveUp(Exception):
    pass


def conjuncts(f: Formula, budget: list[int],
              names: tuple[str, ...]) -> Iterator[tuple[Leaf, ...]]:
    """The conjunctions of leaves that satisfy f (its disjunctive normal form), found by a
    depth-first search that drops a branch as soon as its leaves cannot hold together;
    GaveUp past the budget of branches. `names`: the policy's SLA names."""
    def search(pending: tuple[Formula, ...], found: tuple[Leaf, ...],
               space: _Space) -> Iterator[tuple[Leaf, ...]]:
        if not pending:
            yield found
            return
        head, rest = pending[0], pending[1:]
        if isinstance(head, Leaf):
            grown = space.copy()
            grown.add(head)
            if grown.possible():
                yield from search(rest, (*found, head), grown)
        elif isinstance(head, All):
            yield from search((*head.items, *rest), found, space)
        else:
            for item in head.items:
                budget[0] -= 1
                if budget[0] < 0:
                    raise GaveUp
                yield from search((item, *rest), found, space)

    yield from search((f,), (), _Space(names))


# -- domains -----------------------------------------------------------------------------------

EPS = NumericType.EPSILON
Bound = tuple[Decimal | None, bool]  # value (None: infinite) and whether it is included
Interval = tuple[Bound, Bound]


def _number(value: Any) -> Decimal:
    return NumericType(value).value  # type: ignore[no-any-return]


def _numeric_set(op: str, value: Any) -> list[Interval]:
    """The facts for which `x op value` holds, as business-rules compares (with epsilon)."""
    v = _number(value)
    equal: list[Interval] = [((v - EPS, True), (v + EPS, True))]
    sets: dict[str, list[Interval]] = {
        "equal_to": equal,
        "not_equal_to": _complement(equal),
        "greater_than": [((v + EPS, False), (None, False))],
        "greater_than_or_equal_to": [((v - EPS, True), (None, False))],
        "less_than": [((None, False), (v - EPS, False))],
        "less_than_or_equal_to": [((None, False), (v + EPS, True))],
    }
    return sets[op]


def _complement(intervals: list[Interval]) -> list[Interval]:
    """The numbers outside disjoint intervals."""
    out: list[Interval] = []
    cursor: Bound | None = (None, False)  # where the next gap starts; None: at +infinity
    for (lo, lo_in), (hi, hi_in) in sorted(intervals, key=_lower_key):
        if lo is not None and cursor is not None:
            gap: Interval = (cursor, (lo, not lo_in))
            if not _empty(gap):
                out.append(gap)
        cursor = None if hi is None else (hi, not hi_in)
        if cursor is None:
            break
    if cursor is not None:
        out.append((cursor, (None, False)))
    return out


def _lower_key(interval: Interval) -> Decimal:
    value = interval[0][0]
    return Decimal("-Infinity") if value is None else value


def _empty(interval: Interval) -> bool:
    (lo, lo_in), (hi, hi_in) = interval
    if lo is None or hi is None:
        return False
    return lo > hi or (lo == hi and not (lo_in and hi_in))


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out = []
    for (alo, ahi), (blo, bhi) in itertools.product(a, b):
        lo = max(alo, blo, key=lambda x: (Decimal("-Infinity") if x[0] is None else x[0],
                                          not x[1]))
        hi = min(ahi, bhi, key=lambda x: (Decimal("Infinity") if x[0] is None else x[0],
                                          x[1]))
        if not _empty((lo, hi)):
            out.append((lo, hi))
    return out


def _point(intervals: list[Interval]) -> float:
    (lo, lo_in), (hi, hi_in) = intervals[0]
    if lo is not None and hi is not None:
        return float(lo if lo == hi else (lo + hi) / 2)
    if lo is not None:
        return float(lo if lo_in else lo + 1)
    if hi is not None:
        return float(hi if hi_in else hi - 1)
    return 0.0


ANY_NUMBER: list[Interval] = [((None, False), (None, False))]
ABOVE_100: list[Interval] = [((Decimal(100), False), (None, False))]
UP_TO_100: list[Interval] = [((Decimal(0), True), (Decimal(100), True))]
BELOW_0: list[Interval] = [((None, False), (Decimal(0), False))]
FROM_0: list[Interval] = [((Decimal(0), True), (None, False))]


@dataclass
class _Space:
    """What one conjunction of leaves allows, variable by variable."""

    sla_names: tuple[str, ...]
    finite: dict[str, set[str]] = field(default_factory=dict)
    excluded: dict[str, set[str]] = field(default_factory=dict)
    numbers: dict[str, list[Interval]] = field(default_factory=dict)
    flags: dict[str, set[bool]] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)
    opaque: list[Leaf] = field(default_factory=list)
    #: custom fields named: True once a leaf on it must hold (then it cannot be absent,
    #: since every condition on an absent field is false)
    custom: dict[str, bool] = field(default_factory=dict)

    def copy(self) -> _Space:
        return _Space(self.sla_names, {k: set(v) for k, v in self.finite.items()},
                      {k: set(v) for k, v in self.excluded.items()}, dict(self.numbers),
                      {k: set(v) for k, v in self.flags.items()}, set(self.present),
                      set(self.absent), list(self.opaque), dict(self.custom))

    def add(self, leaf: Leaf) -> None:
        pos, name, op, value = not leaf.negated, leaf.name, leaf.op, leaf.value
        if name.startswith(CUSTOM_PREFIX):
            self.custom[name] = self.custom.get(name, False) or pos
        kind = VARIABLES[name][0] if name in VARIABLES else _custom_type(op, value)
        if issubclass(kind, NumericType):
            allowed = _numeric_set(op, value)
            if not pos:
                allowed = _complement(allowed)
            self.numbers[name] = _intersect(self.numbers.get(name, ANY_NUMBER), allowed)
        elif issubclass(kind, BooleanType):
            self.flags[name] = self.flags.get(name, {True, False}) & {(op == "is_true") == pos}
        elif issubclass(kind, SelectMultipleType):
            if op in ("contains", "does_not_contain"):
                (self.present if (op == "contains") == pos else self.absent).add(value.lower())
            else:
                self.opaque.append(leaf)
        else:
            sets = {"equal_to": (True, {value}), "not_equal_to": (False, {value}),
                    "is_one_of": (True, set(value or ())),
                    "is_not_one_of": (False, set(value or ())),
                    "is_empty": (True, {""}), "non_empty": (False, {""})}
            if op not in sets:
                self.opaque.append(leaf)
                return
            inside, values = sets[op]
            if inside == pos:
                self.finite[name] = self.finite.get(name, values) & values
            else:
                self.excluded.setdefault(name, set()).update(values)

    def possible_strings(self, name: str) -> list[str] | None:
        """The values left for a string variable; None: infinitely many."""
        base = self.finite.get(name)
        known = {"kind": set(KINDS), "sla": {*self.sla_names, ""}}.get(name)
        if known is not None:
            base = known if base is None else base & known
        if base is None:
            return None
        tests = [leaf for leaf in self.opaque if leaf.name == name]
        return sorted(v for v in base - self.excluded.get(name, set())
                      if all(leaf.holds({name: v}) for leaf in tests))

    def clock_choices(self, target: str) -> list[dict[str, Any]]:
        """Consistent (breached, met, paused) for a target and the numeric ranges each
        implies; empty when none is possible."""
        def flag(suffix: str) -> set[bool]:
            return self.flags.get(f"{target}_{suffix}", {True, False})

        choices = []
        for breached, met, paused in itertools.product(
                sorted(flag("breached")), sorted(flag("met")), sorted(flag("paused"))):
            if met and (breached or paused):
                continue
            pct = _intersect(self.numbers.get(f"{target}_elapsed_pct", ANY_NUMBER),
                             ABOVE_100 if breached else UP_TO_100)
            left = _intersect(self.numbers.get(f"{target}_minutes_left", ANY_NUMBER),
                              BELOW_0 if breached else FROM_0)
            if pct and left:
                choices.append({f"{target}_breached": breached, f"{target}_met": met,
                                f"{target}_paused": paused, f"{target}_elapsed_pct": pct,
                                f"{target}_minutes_left": left})
        return choices

    def absent_customs(self) -> set[str]:
        """Custom fields whose leaves all hold when the field is absent (all negated): the
        record may lack them, so nothing about their values is required."""
        return {name for name, required in self.custom.items() if not required}

    def possible(self) -> bool:
        for name in self.absent_customs():
            for table in (self.finite, self.excluded, self.numbers, self.flags):
                table.pop(name, None)
            self.opaque = [leaf for leaf in self.opaque if leaf.name != name]
        for name in NON_NEGATIVE:
            if name in self.numbers:
                self.numbers[name] = _intersect(self.numbers[name], FROM_0)
        if any(not v for v in self.numbers.values()) or any(not v for v in self.flags.values()):
            return False
        if self.present & self.absent:
            return False
        for a, b in itertools.combinations(self.opaque, 2):
            if a.same_test(b) and a.negated != b.negated:
                return False
        strings = {leaf.name for leaf in self.opaque if leaf.name != "tags"}
        for name in set(self.finite) | set(self.excluded) | strings:
            if self.possible_strings(name) == []:
                return False
        return all(self.clock_choices(t) for t in CLOCK_FAMILIES if self.mentions(t))

    def mentions(self, target: str) -> bool:
        prefix = f"{target}_"
        return any(n.startswith(prefix) for n in (*self.numbers, *self.flags))

    def model(self) -> dict[str, Any] | None:
        """Facts that might satisfy the leaves (to be verified), or None."""
        facts = default_facts()
        for target in CLOCK_FAMILIES:
            if not self.mentions(target):
                continue
            choice = self.clock_choices(target)[0]
            for name, value in choice.items():
                if isinstance(value, bool):
                    facts[name] = value
                else:
                    self.numbers[name] = value
        for name, intervals in self.numbers.items():
            facts[name] = _point(intervals)
        for name, values in self.flags.items():
            facts.setdefault(name, False)
            if facts[name] not in values:
                facts[name] = sorted(values)[0]
        names = {leaf.name for leaf in self.opaque} | set(self.finite) | set(self.excluded)
        for name in names - {"tags", "sla"}:
            left = self.possible_strings(name)
            if left is None:
                tries = [leaf.value for leaf in self.opaque if leaf.name == name
                         and isinstance(leaf.value, str)] + ["other", ""]
                left = [v for v in tries if v not in self.excluded.get(name, set())
                        and all(leaf.holds({name: v}) for leaf in self.opaque
                                if leaf.name == name)]
            if not left:
                return None
            facts[name] = left[0]
        facts["tags"] = sorted(self.present)
        for name in self.absent_customs():
            facts[name] = None
        return facts


def _custom_type(op: str, value: Any) -> type:
    """A custom field's type, from a checked leaf's operator and value."""
    if op in ("is_true", "is_false"):
        return BooleanType
    if isinstance(value, int | float) and not isinstance(value, bool):
        return NumericType
    return StringType


def default_facts() -> dict[str, Any]:
    """Facts of a plain open ticket whose clocks run within their targets."""
    facts: dict[str, Any] = {}
    for name, (kind, _) in VARIABLES.items():
        if issubclass(kind, NumericType):
            facts[name] = 0.0
        elif issubclass(kind, BooleanType):
            facts[name] = False
        elif issubclass(kind, SelectMultipleType):
            facts[name] = []
        else:
            facts[name] = ""
    facts.update(kind="ticket", status="open")
    for target in CLOCK_FAMILIES:
        facts[f"{target}_minutes_left"] = 60.0
    return facts


# -- the questions -----------------------------------------------------------------------------

class Reasoner:
    """Satisfiability and witnesses over one policy's formulas."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.names = tuple(sla.name for sla in policy.slas)
        self.whens = [formula(sla.when, f"slas[{sla.index}].when") for sla in policy.slas]

    def reach(self, position: int) -> Formula:
        """A record is under slas[position]: its when holds and no earlier one's does."""
        return All((self.whens[position], *(negate(w) for w in self.whens[:position])))

    def with_sla_facts(self, f: Formula) -> Formula:
        """`sla equal_to X` (or is_one_of) strengthened with what being under X means."""
        if isinstance(f, Leaf):
            if f.name != "sla" or f.negated or f.op not in ("equal_to", "is_one_of"):
                return f
            wanted = (f.value,) if f.op == "equal_to" else f.value
            return All((f, Any_(tuple(self.reach(i) for i, n in enumerate(self.names)
                                      if n in wanted))))
        kind = All if isinstance(f, All) else Any_
        return kind(tuple(self.with_sla_facts(i) for i in f.items))

    def impossible(self, f: Formula) -> bool:
        """Proven: no facts satisfy f."""
        try:
            return next(conjuncts(self.with_sla_facts(f), [MAX_BRANCHES], self.names),
                        None) is None
        except GaveUp:
            return False

    def witness(self, check: Callable[[dict[str, Any]], bool],
                f: Formula) -> dict[str, Any] | None:
        """Facts (of a record under the SLA they match) satisfying f, that `check` accepts."""
        try:
            for conjunct in conjuncts(self.with_sla_facts(f), [MAX_BRANCHES], self.names):
                space = _Space(self.names)
                for leaf in conjunct:
                    space.add(leaf)
                if not space.possible():
                    continue
                facts = space.model()
                if facts is not None and self.realistic(facts) and check(facts):
                    return facts
        except GaveUp:
            pass
        return None

    def realistic(self, facts: dict[str, Any]) -> bool:
        """Make the facts those of a real record: `sla` the SLA they match, and a target
        that SLA lacks as the engine reads it (no target)."""
        variables = RecordVariables(facts)
        matched = next((sla for sla in self.policy.slas if sla.when is None
                        or br_engine.check_conditions_recursively(sla.when, variables)), None)
        facts["sla"] = matched.name if matched else ""
        targets = {} if matched is None else matched.targets
        if matched is not None and matched.targets_by is not None:
            value = facts.get(matched.targets_by.field)
            targets = matched.targets_by.values.get("" if value is None else str(value),
                                                    targets)
        for target in ALL_TARGETS:
            if target not in targets:
                facts.update({f"{target}_breached": False, f"{target}_met": False,
                              f"{target}_elapsed_pct": 0.0, f"{target}_due_at_epoch": 0.0,
                              f"{target}_minutes_left": float(NO_TARGET_MINUTES_LEFT)})
        return True


# -- effects of actions ------------------------------------------------------------------------

def effects(actions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What a rule's actions write, by slot: priority/group/assignee -> value,
    tag:NAME -> True (added) / False (removed), escalation_level -> level."""
    out: dict[str, Any] = {}
    for action in actions:
        name, params = action["name"], action["params"]
        if name == "set_priority":
            out["priority"] = params["priority"]
        elif name == "assign":
            out["assignee"] = params["assignee"]
        elif name == "assign_group":
            out["group"] = params["group"]
        elif name == "assign_next":  # an agent of the group, not known before the sync
            out["group"] = params["group"]
            out["assignee"] = f"<an agent of {params['group']}>"
        elif name in ("add_tag", "remove_tag"):
            out[f"tag:{params['tag'].lower()}"] = name == "add_tag"
        elif name == "escalate":
            out["escalation_level"] = params["level"]
            for key in ("group", "assignee"):
                if key in params:
                    out[key] = params[key]
    return out


def written(facts: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """The facts as the record reads once `change` is written (updated just now)."""
    after = dict(facts)
    tags = list(after["tags"])
    for slot, value in change.items():
        if slot.startswith("tag:"):
            tag = slot[4:]
            tags = [t for t in tags if t.lower() != tag] + ([tag] if value else [])
        elif slot == "escalation_level":
            after[slot] = max(after[slot], value)
        else:
            after[slot] = value
    after["tags"] = tags
    after["hours_since_updated"] = 0.0
    return after


def after_write(f: Formula, change: Mapping[str, Any]) -> Formula:
    """f as read after `change` is written: leaves on written fields become constants."""
    if isinstance(f, Leaf):
        facts: dict[str, Any] | None = None
        if f.name in change:
            facts = {f.name: change[f.name]}
        elif f.name == "hours_since_updated":
            facts = {f.name: 0.0}
        elif f.name == "tags" and f.op in ("contains", "does_not_contain") \
                and f"tag:{f.value.lower()}" in change:
            facts = {"tags": [f.value] if change[f"tag:{f.value.lower()}"] else []}
        if facts is None or f.name == "escalation_level":
            return f
        return TRUE if f.holds(facts) else FALSE
    kind = All if isinstance(f, All) else Any_
    return kind(tuple(after_write(i, change) for i in f.items))


def _differs(slot: str, a: Any, b: Any) -> bool:
    return slot != "escalation_level" and a != b


def _describe(slot: str, value: Any) -> str:
    if slot.startswith("tag:"):
        return f"{'adds' if value else 'removes'} tag {slot[4:]!r}"
    return f"sets {slot} {value!r}"


def _example(facts: Mapping[str, Any], f: Formula) -> str:
    names = list(dict.fromkeys(leaf.name for leaf in leaves(f)))
    shown = ", ".join(f"{n} {_plain(facts[n])!r}" for n in names if n in facts)
    return f"e.g. a record with {shown}" if shown else "any record"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# -- lint --------------------------------------------------------------------------------------

def lint(policy: Policy, webhooks: Iterable[str] | None = None,
         writable_priority: Callable[[str], bool] | None = None) -> list[Finding]:
    """Every finding, in policy order. `webhooks`: the names the config defines (None: not
    checked); `writable_priority`: whether the connector can write a priority."""
    reasoner = Reasoner(policy)
    findings = [Finding(WARNING, w.path, w.message) for w in policy.warnings]
    flagged = {w.path for w in policy.warnings}
    findings += _slas(policy, reasoner, flagged)
    findings += _clocks(policy, reasoner)
    findings += _olas(policy, reasoner)
    findings += _rules(policy, reasoner)
    findings += _names(policy)
    findings += _interplay(policy, reasoner)
    if webhooks is not None:
        known = set(webhooks)
        findings += [Finding(ERROR, path, f"webhook {name!r} is not defined under `webhooks:` "
                             f"in the config" + _suggest(name, known))
                     for path, name in policy.webhooks if name not in known]
    if writable_priority is not None:  # (sorted in below)
        for rule in policy.rules:
            for i, action in enumerate(rule.actions):
                value = action["params"].get("priority")
                if action["name"] == "set_priority" and not writable_priority(value):
                    findings.append(Finding(
                        ERROR, f"rules[{rule.index}].actions[{i}].params.priority",
                        f"the connector cannot write priority {value!r}"))
    return sorted(findings, key=_policy_order)


def _policy_order(finding: Finding) -> tuple[int, int]:
    """SLAs first, then OLAs, then rules, each by index (the sort keeps the order of the
    checks)."""
    match = re.match(r"(slas|olas|rules)\[(\d+)\]", finding.path)
    if match is None:
        return (-1, 0)
    return (("slas", "olas", "rules").index(match.group(1)), int(match.group(2)))


def _suggest(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _slas(policy: Policy, reasoner: Reasoner, flagged: set[str]) -> list[Finding]:
    out = []
    for position, sla in enumerate(policy.slas):
        path = f"slas[{sla.index}]"
        if path in flagged:
            continue
        when = reasoner.whens[position]
        if reasoner.impossible(when):
            out.append(Finding(ERROR, f"{path}.when", "no record can match: "
                               + _why(reasoner, when)))
            continue
        earlier = [(i, s) for i, s in enumerate(policy.slas[:position]) if s.when is not None]
        shadow = next(((i, s) for i, s in earlier if reasoner.impossible(
            All((when, negate(reasoner.whens[i]))))), None)
        if shadow is not None:
            out.append(Finding(WARNING, path, f"shadowed by slas[{shadow[1].index}] "
                               f"{shadow[1].name!r}: every record it matches, "
                               f"slas[{shadow[1].index}] matches first"))
        elif earlier and reasoner.impossible(reasoner.reach(position)):
            which = ", ".join(f"slas[{s.index}]" for _, s in earlier)
            out.append(Finding(WARNING, path, f"unreachable: every record it matches, an "
                               f"earlier SLA ({which}) matches first"))
    return out


def _clocks(policy: Policy, reasoner: Reasoner) -> list[Finding]:
    """A target's own conditions that can never hold, and `targets_by` values no record
    under the SLA can have."""
    out = []
    what = {"start_when": "the clock never starts", "pause_when": "the clock never pauses "
            "on it", "stop_when": "the clock never stops on it"}
    for position, sla in enumerate(policy.slas):
        for rules in sla.clocks.values():
            for key, meaning in what.items():
                condition = getattr(rules, key)
                if condition is not None and reasoner.impossible(
                        formula(condition, f"{rules.path}.{key}")):
                    out.append(Finding(WARNING, f"{rules.path}.{key}", f"can never hold: "
                                       f"{meaning}"))
        by = sla.targets_by
        if by is None or not (by.field in VARIABLES
                              or policy.fields.get(by.field) == "string"):
            continue  # (a numeric custom field is looked up by its text)
        reach = reasoner.reach(position)
        for value in by.values:
            if reasoner.impossible(All((reach, Leaf(by.field, "equal_to", value)))):
                out.append(Finding(WARNING, f"slas[{sla.index}].targets_by.values.{value}",
                                   f"never used: no record under this SLA has {by.field} "
                                   f"{value!r}"))
    return out


def _olas(policy: Policy, reasoner: Reasoner) -> list[Finding]:
    """An OLA whose `when` can never hold, and rules that read the OLA variables of a
    policy without OLAs."""
    out = [Finding(WARNING, f"{ola.path}.when", "can never hold: this OLA never applies")
           for ola in policy.olas if ola.when is not None
           and reasoner.impossible(formula(ola.when, f"{ola.path}.when"))]
    if not policy.olas:
        out += [Finding(WARNING, f"rules[{rule.index}].conditions", f"reads {name}, but the "
                        "policy has no olas: it stays as no OLA applied (not breached, 0%, "
                        "no minutes used)")
                for rule in policy.rules
                for name in sorted({leaf.name for leaf in leaves(
                    formula(rule.conditions, ""))} & set(OLA_VARIABLES))]
    return out


def _rules(policy: Policy, reasoner: Reasoner) -> list[Finding]:
    out = []
    for rule in policy.rules:
        path = f"rules[{rule.index}].conditions"
        conditions = formula(rule.conditions, path)
        unknown_sla = any(leaf.name == "sla" and not set(
            leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)) <= {*reasoner.names, ""}
            for leaf in leaves(conditions))
        if unknown_sla:  # reported by _names, with a suggestion
            continue
        if reasoner.impossible(conditions):
            out.append(Finding(ERROR, path, "can never hold: " + _why(reasoner, conditions)))
            continue
        if not is_warning_rule(rule.name, rule.actions):
            continue
        for target in CLOCK_FAMILIES:
            used = {leaf.name for leaf in leaves(conditions)}
            if not used & {f"{target}_elapsed_pct", f"{target}_minutes_left"}:
                continue
            not_breached = Leaf(f"{target}_breached", "is_false", None)
            if reasoner.impossible(All((conditions, not_breached))):
                out.append(Finding(WARNING, f"rules[{rule.index}]", f"warns about "
                                   f"{target.replace('_', ' ')} only after its breach: its "
                                   f"threshold implies {target}_breached (elapsed_pct above "
                                   "100)"))
    return out


def is_warning_rule(name: str, actions: Iterable[Mapping[str, Any]]) -> bool:
    """A warning rule: its name or an action's parameter says "warn" (lint's check of
    thresholds after the breach, and the backtest's count of records warned)."""
    texts = [name] + [str(v) for a in actions for v in a["params"].values()]
    return any("warn" in text.lower() for text in texts)


def _why(reasoner: Reasoner, f: Formula) -> str:
    """The smallest reason found: one leaf, or two, that cannot hold together."""
    top = list(_top_leaves(f))
    for leaf in top:
        if reasoner.impossible(leaf):
            return f"{leaf.path}: {leaf} {_domain_hint(leaf)}"
    for a, b in itertools.combinations(top, 2):
        if reasoner.impossible(All((a, b))):
            return f"{a.path} ({a}) and {b.path} ({b}) cannot both hold" + _clock_hint(a, b)
    return "its conditions cannot all hold together"


def _top_leaves(f: Formula) -> Iterator[Leaf]:
    """The leaves every satisfying assignment must satisfy (under nested `all`s)."""
    if isinstance(f, Leaf):
        yield f
    elif isinstance(f, All):
        for item in f.items:
            yield from _top_leaves(item)
    elif len(f.items) == 1:
        yield from _top_leaves(f.items[0])


def _domain_hint(leaf: Leaf) -> str:
    if leaf.name == "kind":
        return "(kind is ticket or lead)"
    if leaf.name == "sla":
        return "(no record is under that SLA)"
    return "(never true)"


def _clock_hint(a: Leaf, b: Leaf) -> str:
    for leaf in (a, b):
        if leaf.name == "sla" and not leaf.negated:
            return f" (a record is under SLA {_show(leaf.value)} only when its when holds)"
    for target in CLOCK_FAMILIES:
        names = {a.name, b.name}
        if f"{target}_breached" in names and names & {f"{target}_elapsed_pct",
                                                       f"{target}_minutes_left"}:
            return (f" ({target}_breached is true exactly when {target}_elapsed_pct is above "
                    f"100 and {target}_minutes_left below 0)")
        if f"{target}_met" in names and names & {f"{target}_breached", f"{target}_paused"}:
            return f" (a met {target} clock has stopped within its target)"
    return ""


def _names(policy: Policy) -> list[Finding]:
    """Names that nothing defines (SLAs) or produces (tags and groups, near misses only)."""
    out = []
    slas = [sla.name for sla in policy.slas]
    added: dict[str, int] = {}
    groups: dict[str, int] = {}
    for rule in policy.rules:
        for action in rule.actions:
            params = action["params"]
            if action["name"] == "add_tag":
                added.setdefault(params["tag"].lower(), rule.index)
            if "group" in params:
                groups.setdefault(params["group"], rule.index)
    for rule in policy.rules:
        for leaf in leaves(formula(rule.conditions, f"rules[{rule.index}].conditions")):
            values = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
            if leaf.name == "sla" and leaf.op in ("equal_to", "not_equal_to", "is_one_of",
                                                  "is_not_one_of"):
                for value in values:
                    if value and value not in slas:
                        out.append(Finding(ERROR, f"{leaf.path}.value", f"no SLA {value!r}"
                                           + _suggest(value, slas)
                                           + f" (SLAs: {', '.join(slas)})"))
            elif leaf.name == "tags" and leaf.value is not None:
                out += _near_miss(f"{leaf.path}.value", "tag", [v.lower() for v in values],
                                  added, "adds")
            elif leaf.name == "group" and leaf.value is not None and \
                    operators(VARIABLES["group"][0])[leaf.op] != FIELD_NO_INPUT:
                out += _near_miss(f"{leaf.path}.value", "group", list(values), groups,
                                  "assigns")
        for i, action in enumerate(rule.actions):
            if action["name"] == "remove_tag":
                out += _near_miss(f"rules[{rule.index}].actions[{i}].params.tag", "tag",
                                  [action["params"]["tag"].lower()], added, "adds")
    return out


def _near_miss(path: str, what: str, values: list[str], produced: Mapping[str, int],
               verb: str) -> list[Finding]:
    out = []
    for value in values:
        if value in produced:
            continue
        match = difflib.get_close_matches(value, list(produced), n=1, cutoff=0.8)
        if match:
            out.append(Finding(WARNING, path, f"no rule {verb} {what} {value!r}; did you mean "
                               f"{match[0]!r}, which rules[{produced[match[0]]}] {verb}?"))
    return out


def _interplay(policy: Policy, reasoner: Reasoner) -> list[Finding]:
    """Rules that override each other when both fire, or whose writes re-trigger each
    other in a loop; each claim backed by a witness."""
    out = []
    rules = [(rule, formula(rule.conditions, f"rules[{rule.index}].conditions"),
              effects(rule.actions)) for rule in policy.rules]
    looping: set[frozenset[int]] = set()  # pairs found re-triggering each other
    for (a, fa, ea), (b, fb, eb) in itertools.combinations(rules, 2):
        clashes = [(slot, ea[slot], eb[slot]) for slot in ea.keys() & eb.keys()
                   if _differs(slot, ea[slot], eb[slot])]
        if not clashes:
            continue
        slot, va, vb = sorted(clashes)[0]
        what = f"rules[{a.index}] {_describe(slot, va)}, rules[{b.index}] {_describe(slot, vb)}"

        loop = _loop_witness(reasoner, [(fa, ea), (fb, eb)])
        if loop:
            out.append(Finding(ERROR, f"rules[{a.index}]", f"{a.name!r} and rules[{b.index}] "
                               f"{b.name!r} re-trigger each other in a loop: {what}, and each "
                               f"write makes the other rule fire again "
                               f"({_example(loop, All((fa, fb)))})"))
            looping.add(frozenset((a.index, b.index)))
            continue
        together = All((fa, fb))

        def at_once(facts: dict[str, Any], together: Formula = together) -> bool:
            return evaluate(together, facts)

        def triggers(first: Formula, then: Formula, change: dict[str, Any]) -> Any:
            def check(facts: dict[str, Any]) -> bool:
                return (evaluate(first, facts) and not evaluate(then, facts)
                        and evaluate(then, written(facts, change)))
            return reasoner.witness(check, All((first, negate(then),
                                                after_write(then, change))))

        if (example := triggers(fa, fb, ea)) is not None:
            how = f"rules[{a.index}]'s write makes rules[{b.index}] fire, which undoes it"
        elif (example := triggers(fb, fa, eb)) is not None:
            how = f"rules[{b.index}]'s write makes rules[{a.index}] fire, which undoes it"
        elif (example := reasoner.witness(at_once, together)) is not None:
            how = f"when both fire the later, rules[{b.index}], wins"
        else:
            continue
        out.append(Finding(WARNING, f"rules[{a.index}]", f"{a.name!r} and rules[{b.index}] "
                           f"{b.name!r} undo each other: {what}; {how} "
                           f"({_example(example, together)})"))
    return out + _longer_loops(rules, reasoner, looping)


#: Loops through more rules than this are not looked for; nor more candidate cycles.
MAX_LOOP_RULES = 6
MAX_CYCLES = 500


def _loop_witness(reasoner: Reasoner,
                  cycle: list[tuple[Formula, dict[str, Any]]]) -> dict[str, Any] | None:
    """Facts on which the rules of `cycle` (conditions, effects), in turn, re-trigger one
    another: the first fires and the second does not; each write makes the next rule fire
    and the one that wrote stop; the last write makes the first fire again (and the last
    stop), so the writes go round for ever."""
    count = len(cycle)
    changes: list[dict[str, Any]] = []
    change: dict[str, Any] = {}
    for _, effect in cycle:
        change = {**change, **effect}
        changes.append(change)

    def fires_alone(i: int) -> Formula:
        return All((cycle[i % count][0], negate(cycle[(i - 1) % count][0])))

    def check(facts: dict[str, Any]) -> bool:
        if not (evaluate(cycle[0][0], facts) and not evaluate(cycle[1][0], facts)):
            return False
        now = facts
        for i in range(count):
            now = written(now, cycle[i][1])
            following, writer = cycle[(i + 1) % count][0], cycle[i][0]
            if not (evaluate(following, now) and not evaluate(writer, now)):
                return False
        return True

    shape = All((cycle[0][0], negate(cycle[1][0]),
                 *(after_write(fires_alone(i + 1), changes[i]) for i in range(count))))
    return reasoner.witness(check, shape)


def _reads(f: Formula) -> set[str]:
    """The slots (as `effects` names them) whose writes can change f's truth."""
    slots = set()
    for leaf in leaves(f):
        if leaf.name == "tags" and isinstance(leaf.value, str):
            slots.add(f"tag:{leaf.value.lower()}")
        elif leaf.name in ("priority", "group", "assignee", "escalation_level"):
            slots.add(leaf.name)
    return slots


def _longer_loops(rules: list[tuple[Any, Formula, dict[str, Any]]], reasoner: Reasoner,
                  looping: set[frozenset[int]]) -> list[Finding]:
    """Loops through three rules or more (a priority going round low, normal, high, ...):
    cycles of the graph "a writes what b reads", each checked with a witness. A cycle that
    holds a pair already found looping is not reported again."""
    reads = [_reads(f) for _, f, _ in rules]
    following = [[j for j in range(len(rules)) if j != i and rules[i][2].keys() & reads[j]]
                 for i in range(len(rules))]
    cycles: list[list[int]] = []

    def walk(path: list[int]) -> None:
        if len(cycles) >= MAX_CYCLES:
            return
        for j in following[path[-1]]:
            if j == path[0] and len(path) >= 3:
                cycles.append(list(path))
            elif j > path[0] and j not in path and len(path) < MAX_LOOP_RULES:
                walk([*path, j])

    for start in range(len(rules)):
        walk([start])
    out, reported = [], set()
    for cycle in cycles:
        members = frozenset(cycle)
        if members in reported or any(pair <= members for pair in looping):
            continue
        chain = [rules[i] for i in cycle]
        example = _loop_witness(reasoner, [(f, e) for _, f, e in chain])
        if example is None:
            continue
        reported.add(members)
        first = chain[0][0]
        others = ", ".join(f"rules[{r.index}] {r.name!r}" for r, _, _ in chain[1:-1])
        last = chain[-1][0]
        steps = ", ".join(f"rules[{r.index}] " + "; ".join(
            _describe(slot, value) for slot, value in sorted(e.items())) for r, _, e in chain)
        conditions = All(tuple(f for _, f, _ in chain))
        out.append(Finding(ERROR, f"rules[{first.index}]", f"{first.name!r}, {others} and "
                           f"rules[{last.index}] {last.name!r} re-trigger each other in a "
                           f"loop: {steps}, and each write makes the next rule fire again, "
                           f"round to the first ({_example(example, conditions)})"))
    return out


def mirror_shares(policy: Policy, records: Iterable[Record],
                  now: datetime) -> tuple[list[Finding], dict[str, int]]:
    """Against known records: how many each SLA gets ("" for none), and findings for
    records no SLA matches and SLAs no known record reaches."""
    counts: Counter[str] = Counter()
    for record in records:
        sla = match_sla(policy, RecordVariables(record_facts(record, now, policy.fields)),
                        record=record, now=now)
        counts[sla.name if sla else ""] += 1
    total = sum(counts.values())
    shares = {sla.name: counts[sla.name] for sla in policy.slas}
    shares[""] = counts[""]
    findings = []
    if total and counts[""]:
        findings.append(Finding(WARNING, "slas", f"{counts['']} of {total} known records "
                                f"({100 * counts[''] / total:.1f}%) match no SLA: no clock "
                                "runs for them"))
    for sla in policy.slas:
        if total and not counts[sla.name]:
            findings.append(Finding(WARNING, f"slas[{sla.index}]",
                                    f"matches none of the {total} known records"))
    return findings, shares
