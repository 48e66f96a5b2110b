"""Loading and checking a policy: calendars, ordered SLAs, business-rules rules.

The whole policy is checked up front, in one pass, and every problem is reported with its
JSON path (`rules[3].actions[0].name: unknown action 'escalat' (did you mean 'escalate'?)`).
business-rules itself checks late (when a branch first runs) and would let rule JSON call
any method of the actions class; only what passes here ever reaches it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from business_rules.fields import FIELD_NO_INPUT, FIELD_NUMERIC, FIELD_SELECT_MULTIPLE, FIELD_TEXT
from business_rules.operators import BaseType

from sla_sync.connector.model import (
    INITIAL_STATUS,
    KINDS,
    Record,
    custom_name,
    format_instant,
    parse_instant,
)
from sla_sync.rules.actions import ActionSpec, action_specs, note_placeholders
from sla_sync.rules.assignment import DEFAULT_STRATEGY, STRATEGIES, Agent, Group
from sla_sync.rules.calendar import ALWAYS, BUILT_IN, Calendar, Holidays, check_calendar
from sla_sync.rules.calendar import MAX_DAYS as CALENDAR_MAX_DAYS
from sla_sync.rules.clock import ALL_TARGETS
from sla_sync.rules.durations import Target, parse_target
from sla_sync.rules.overrides import Override, Spliced
from sla_sync.rules.patterns import check_pattern
from sla_sync.rules.variables import (
    CUSTOM_PREFIX,
    FIELD_TYPES,
    LOAD_VARIABLES,
    RECORD_VARIABLES,
    VARIABLES,
    WALL_CLOCK_VARIABLES,
    operators,
)

DEFAULT_CLOSED_STATUSES = ("solved", "closed")
#: `$schema` names the JSON Schema for editors (`sla-sync schema`); the checker ignores it.
TOP_LEVEL = ("$schema", "description", "fields", "calendars", "closed_statuses", "slas",
             "olas", "rules", "groups", "overrides")
OVERRIDE_KEYS = ("name", "description", "from", "until", "calendars", "targets_scale", "rules")
#: How far a targets_scale may go: a target cut to a hundredth, or made ten times longer.
SCALE_RANGE = (0.01, 10.0)
#: A group's keys under `groups` (the agents assign_next chooses from), and an agent's.
GROUP_KEYS = ("agents", "calendar")
AGENT_KEYS = ("name", "calendar")
SLA_KEYS = ("name", "description", "when", "calendar", "calendar_by", "targets", "targets_by",
            "pause_statuses", "on_target_change", "valid_from", "applies_to")
ON_TARGET_CHANGE = ("keep", "restart")
#: A team target's (OLA's) keys: an SLA's, less what only a customer SLA has.
OLA_KEYS = ("name", "description", "when", "calendar", "calendar_by", "targets", "targets_by",
            "pause_statuses")
#: Which records a version of an SLA (`valid_from`) applies to: those created from then on,
#: or also those open then. A record keeps the version it started under unless `open`.
APPLIES_TO = ("new", "open")
#: Why an SLA's `when` cannot name a clock's variables.
SLA_SCOPE = "cannot be used here: an SLA is chosen before its clocks run"
#: What a target's own conditions may name: the record's fields, which have a history.
CLOCK_VARIABLES = {name: kind for name, kind in RECORD_VARIABLES.items()
                   if name not in WALL_CLOCK_VARIABLES}
#: An SLA's keys for its clocks: targets by a record field, each target's own conditions.
CLOCK_KEYS = ("targets_by", "clocks")
#: The conditions a target's clock may have (`clocks.TARGET.KEY`), in the order they are
#: asked at each change of the record (a stop before a pause before a start).
CLOCK_CONDITIONS = ("stop_when", "pause_when", "start_when")
#: Record fields `calendar_by` may read (besides custom.NAME).
CALENDAR_FIELDS = ("group", "tier", "channel", "source", "kind", "priority", "assignee")
RULE_KEYS = ("name", "description", "conditions", "actions")
LEAF_KEYS = ("name", "operator", "value")
ACTION_KEYS = ("name", "params")
#: Bounds on what a policy may hold, so that every policy that validates also runs.
MAX_DEPTH = 64  # JSON nesting
MAX_CONDITION_DEPTH = 20  # all/any groups within one another
MAX_NUMBER = 1e15
MAX_ESCALATION_LEVEL = 100


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class PolicyError(Exception):
    """A policy that must not run; `problems` lists every mistake found."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: invalid policy ({len(problems)} problem"
                         f"{'s' if len(problems) != 1 else ''}):\n{lines}")


@dataclass(frozen=True)
class CalendarChoice:
    """An SLA's calendar: one, or one picked by a record field with a default."""

    default: Calendar
    record_field: str | None = None
    by_value: Mapping[str, Calendar] = field(default_factory=dict)

    def pick(self, record: Record) -> Calendar:
        if self.record_field is None:
            return self.default
        return self.by_value.get(field_value(record, self.record_field), self.default)


def field_value(record: Record, name: str) -> str:
    """A record field (CALENDAR_FIELDS or custom.NAME) as the text `calendar_by` and
    `targets_by` look up ("" when the record has no such value)."""
    if name.startswith("custom."):
        value = record.custom.get(name.removeprefix("custom."))
    else:
        value = getattr(record, name)
    return str(value) if value is not None else ""


@dataclass(frozen=True)
class TargetsBy:
    """An SLA's targets by the value of a record field: each value's targets are the SLA's
    `targets` with the value's own over them."""

    field: str
    values: Mapping[str, Mapping[str, Target]]


@dataclass(frozen=True)
class ClockRules:
    """A target's own start, pause and stop conditions (checked; None: not given), and the
    JSON path they were given at (`slas[0].clocks.resolution`)."""

    path: str
    start_when: Mapping[str, Any] | None = None
    pause_when: Mapping[str, Any] | None = None
    stop_when: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Sla:
    name: str
    index: int
    when: Mapping[str, Any] | None
    calendar: CalendarChoice
    targets: Mapping[str, Target]
    pause_statuses: frozenset[str]
    #: keep: a record whose SLA changes keeps its elapsed time and takes the new target;
    #: restart: its clocks restart when it comes under this SLA.
    on_target_change: str = "keep"
    targets_by: TargetsBy | None = None
    #: target -> its own start, pause and stop conditions
    clocks: Mapping[str, ClockRules] = field(default_factory=dict)
    #: A version of the SLA: it applies from this instant on, to the records `applies_to`
    #: says; an older version (the same name, later in the list) keeps the others.
    valid_from: datetime | None = None
    applies_to: str = "new"

    def version_refuses(self, record: Record, now: datetime,
                        closed: frozenset[str]) -> str | None:
        """None when this SLA (its version) may apply to `record` at `now`; else why not."""
        if self.valid_from is None:
            return None
        since = format_instant(self.valid_from)
        if now < self.valid_from:
            return f"version valid from {since}: not yet"
        if record.created_at >= self.valid_from:
            return None
        if self.applies_to == "open":
            status = INITIAL_STATUS
            for change in record.status_timeline():
                if change.at > self.valid_from:
                    break
                status = change.status
            if status not in closed:
                return None
            return (f"version valid from {since} applies to records created from then on "
                    f"or open then; this one was {status!r} then")
        return (f"version valid from {since} applies to records created from then on "
                f"(applies_to new); this one was created {format_instant(record.created_at)}")

    def version(self) -> str:
        """How explain names the version: 'valid from ... (applies_to ...)', or ''."""
        if self.valid_from is None:
            return ""
        return f"version valid from {format_instant(self.valid_from)} " \
               f"(applies_to {self.applies_to})"

    def targets_for(self, record: Record) -> Mapping[str, Target]:
        """The targets that apply to `record` (by `targets_by`, where the SLA has it)."""
        if self.targets_by is None:
            return self.targets
        return self.targets_by.values.get(field_value(record, self.targets_by.field),
                                          self.targets)

    def all_targets(self) -> set[str]:
        """Every target this SLA sets for some record."""
        found = set(self.targets)
        for targets in (self.targets_by.values.values() if self.targets_by else ()):
            found |= set(targets)
        return found


@dataclass(frozen=True)
class Ola(Sla):
    """A team target (an OLA, `olas[index]`): its `when` is asked over the record's history
    (rules.ola), and its clocks count only the time the record spent where it held. It
    has no `on_target_change` and no `clocks` of its own."""

    @property
    def path(self) -> str:
        return f"olas[{self.index}]"


@dataclass(frozen=True)
class Rule:
    name: str
    index: int
    conditions: Mapping[str, Any]
    actions: tuple[Mapping[str, Any], ...]
    #: An override's rule runs only while the sync's now is in [from, until).
    during: tuple[datetime, datetime] | None = None
    where: str = ""  # its JSON path, when not rules[index]

    @property
    def path(self) -> str:
        return self.where or f"rules[{self.index}]"

    def as_engine_rule(self) -> dict[str, Any]:
        return {"conditions": self.conditions, "actions": list(self.actions)}


@dataclass(frozen=True)
class Policy:
    source: str
    slas: tuple[Sla, ...]
    rules: tuple[Rule, ...]
    closed_statuses: frozenset[str]
    #: The largest threshold any condition compares an hours_since_* variable with; None
    #: when no condition uses one. Past it, a closed record's evaluation cannot change.
    wall_clock_horizon_hours: float | None
    warnings: tuple[Problem, ...] = field(default=())
    #: (JSON path, webhook name) of every notify action: the config must define each.
    webhooks: tuple[tuple[str, str], ...] = field(default=())
    #: The custom fields conditions may name: custom.NAME -> string, numeric or boolean.
    fields: Mapping[str, str] = field(default_factory=dict)
    #: The team targets: every one whose `when` holds applies besides the SLA.
    olas: tuple[Ola, ...] = field(default=())
    #: The groups assign_next chooses an agent in, by name.
    groups: Mapping[str, Group] = field(default_factory=dict)
    #: The load variables (rules/load.py) the rules name: the sync counts them only then.
    load_variables: frozenset[str] = frozenset()
    #: Date-ranged overrides (rules/overrides.py), and the rules they add (after `rules`).
    overrides: tuple[Override, ...] = ()
    override_rules: tuple[Rule, ...] = ()

    def every_rule(self) -> tuple[Rule, ...]:
        """The policy's rules, then the overrides' (each runs only within its range)."""
        return self.rules + self.override_rules


def load_policy(path: str | Path, holidays: Holidays | None = None) -> Policy:
    """The policy in the file at `path` (check_policy); `holidays` gives its calendars'
    public holidays (default: the holidays package's answers)."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(source, [Problem("$", f"cannot read the policy ({exc.strerror})")])\
            from None
    except ValueError as exc:  # a path with a NUL character
        raise PolicyError(source, [Problem("$", f"cannot read the policy ({exc})")]) from None
    return check_policy(parse_json(raw, source), source, holidays)


def parse_json(raw: bytes, source: str) -> Any:
    """The JSON document in `raw`; PolicyError for bytes that are not UTF-8, nesting deeper
    than MAX_DEPTH, or invalid JSON. NaN, Infinity and numbers out of range come back as
    `Unusable` values, for check_policy to report with their path."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise PolicyError(source, [Problem("$", f"not UTF-8: byte 0x{raw[exc.start]:02x} at "
                                                f"line {line}, column {column}")]) from None
    too_deep = _too_deep(text)
    if too_deep is not None:
        line = text.count("\n", 0, too_deep) + 1
        column = too_deep - text.rfind("\n", 0, too_deep)
        raise PolicyError(source, [Problem("$", f"nested deeper than {MAX_DEPTH} levels at line "
                                                f"{line}, column {column}")])
    try:
        return json.loads(text, parse_constant=Unusable.constant, parse_float=Unusable.real,
                          parse_int=Unusable.integer)
    except json.JSONDecodeError as exc:
        raise PolicyError(source, [Problem(
            "$", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")]) from None
    except (RecursionError, ValueError) as exc:  # the checks above should leave none
        raise PolicyError(source, [Problem("$", f"cannot read as JSON ({exc})")]) from None


_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _too_deep(text: str) -> int | None:
    """The offset where brackets (outside strings) nest deeper than MAX_DEPTH, if they do."""
    depth = 0
    for match in _BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        elif token in "]}":
            depth -= 1
    return None


@dataclass(frozen=True)
class Unusable:
    """A JSON value a policy cannot hold: NaN, Infinity, a number out of range."""

    text: str
    reason: str

    @classmethod
    def constant(cls, text: str) -> Unusable:
        return cls(text, f"{text} is not a number JSON allows")

    @classmethod
    def real(cls, text: str) -> float | Unusable:
        value = float(text) if len(text) <= 40 else math.inf
        return value if abs(value) <= MAX_NUMBER else cls(text, _out_of_range(text))

    @classmethod
    def integer(cls, text: str) -> int | Unusable:
        value = int(text) if len(text) <= 40 else None
        if value is None or abs(value) > MAX_NUMBER:
            return cls(text, _out_of_range(text))
        return value


def _out_of_range(text: str) -> str:
    shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"
    return f"number {shown} is out of range (at most {MAX_NUMBER:.0e} in size)"


def _unusable(data: Any) -> list[Problem]:
    """Every value no policy may hold, with its path: Unusable numbers, non-finite or huge
    floats, strings with lone surrogates (they cannot be written anywhere as UTF-8), and
    nesting deeper than MAX_DEPTH (for data that did not come through parse_json)."""
    problems = []
    stack: list[tuple[Any, str, int]] = [(data, "$", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            problems.append(Problem(path, f"nested deeper than {MAX_DEPTH} levels"))
            continue
        if isinstance(node, Unusable):
            problems.append(Problem(path, node.reason))
        elif isinstance(node, float | int) and not isinstance(node, bool) \
                and not abs(node) <= MAX_NUMBER:  # (NaN compares false)
            shown = repr(node) if isinstance(node, float) or node.bit_length() < 256 \
                else f"of {node.bit_length()} bits"
            problems.append(Problem(path, _out_of_range(shown)))
        elif isinstance(node, str) and not _encodable(node):
            problems.append(Problem(path, "invalid text: a lone surrogate (\\ud800-\\udfff) "
                                          "that cannot be written as UTF-8"))
        elif isinstance(node, dict):
            for key, value in reversed(list(node.items())):
                sub = f"{path}.{key}" if path != "$" else str(key)
                if isinstance(key, str) and not _encodable(key):
                    problems.append(Problem(path, "invalid text in a key: a lone surrogate"))
                    continue
                stack.append((value, sub, depth + 1))
        elif isinstance(node, list):
            for index in reversed(range(len(node))):
                stack.append((node[index], f"{path}[{index}]" if path != "$" else f"[{index}]",
                              depth + 1))
    return problems


def _weekly_seconds(calendar: Calendar) -> float:
    """Working seconds in a week without holidays (a calendar without a `week` is 24x7)."""
    week = getattr(calendar, "week", None)
    if week is None:
        return 7 * 86400.0
    return max(1.0, 60.0 * sum(end - start for spans in week.values() for start, end in spans))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unnamed_rule_name(spec: Mapping[str, Any]) -> str:
    """The name of a rule written without one, as plain business-rules rules are: taken from
    what it says, so it stays the same when rules are reordered (the ledger keys activations
    by name); a rule whose conditions or actions change becomes a new rule."""
    body = {"conditions": spec.get("conditions"), "actions": spec.get("actions")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=repr)
    return "rule-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def check_policy(data: Any, source: str = "<policy>", holidays: Holidays | None = None,
                 ) -> Policy:
    """The Policy `data` describes, or PolicyError listing every problem in it."""
    problems = _unusable(data)
    if problems:
        raise PolicyError(source, problems)
    return _Checker(source, holidays).policy(data)


def _suggest(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


class _Checker:
    def __init__(self, source: str, holidays: Holidays | None = None):
        self.source = source
        self.holidays = holidays
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.horizon: float | None = None
        self.defined_calendars: set[str] = set()  # named under `calendars`, valid or not
        self.custom: dict[str, str] = {}  # declared custom fields, custom.NAME -> type
        self.actions = action_specs()
        self.out_of_scope = SLA_SCOPE  # why a variable of VARIABLES cannot be used here
        self.groups: dict[str, Group] = {}  # under `groups`, valid ones
        self.defined_groups: set[str] = set()  # named under `groups`, valid or not
        self.load_variables: set[str] = set()  # the load variables conditions name

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def keys(self, node: Mapping[str, Any], path: str, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        for key in node:
            if key not in allowed:
                self.fail(f"{path}.{key}" if path != "$" else key,
                          f"unknown key{_suggest(key, allowed)}")

    def strings(self, value: Any, path: str) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(path, f"expected a list of strings, got {_kind(value)}")
            return frozenset()
        return frozenset(value)

    # -- the policy -------------------------------------------------------------------------

    def policy(self, data: Any) -> Policy:
        if not isinstance(data, dict):
            raise PolicyError(self.source, [Problem("$", f"expected an object, got {_kind(data)}")])
        self.keys(data, "$", TOP_LEVEL)
        if "description" in data and not isinstance(data["description"], str):
            self.fail("description", "expected a string")
        self.custom = self.fields(data.get("fields", {}))
        calendars = self.calendars(data.get("calendars", {}))
        overrides = list(self.entries(data.get("overrides", []), "overrides", OVERRIDE_KEYS,
                                      "override"))
        ranges = {index: self.override_range(spec, path) for index, path, spec, _ in overrides}
        calendars = self.override_calendars(overrides, ranges, calendars)
        closed = self.strings(data.get("closed_statuses", list(DEFAULT_CLOSED_STATUSES)),
                              "closed_statuses")
        slas = self.slas(data.get("slas", []), calendars)
        olas = self.olas(data.get("olas", []), calendars)
        self.groups = self.agent_groups(data.get("groups", {}), calendars)
        rules = self.rules(data.get("rules", []))
        extra: list[Rule] = []
        done: list[Override] = []
        for index, path, spec, name in overrides:
            span = ranges[index]
            added = self.rules(spec.get("rules", []), f"{path}.rules",
                               len(rules) + len(extra), f"{name}: ", span)
            extra += added
            done.append(self.override(index, name, spec, path, span, added))
        if self.problems:
            raise PolicyError(self.source, self.problems)
        webhooks = tuple(
            (f"{rule.path}.actions[{i}].params.webhook", action["params"]["webhook"])
            for rule in rules + extra for i, action in enumerate(rule.actions)
            if action["name"] == "notify")
        return Policy(source=self.source, slas=tuple(slas), rules=tuple(rules),
                      closed_statuses=closed, wall_clock_horizon_hours=self.horizon,
                      warnings=tuple(self.warnings), webhooks=webhooks,
                      fields=dict(self.custom), olas=tuple(olas), groups=self.groups,
                      load_variables=frozenset(self.load_variables),
                      overrides=tuple(done), override_rules=tuple(extra))

    def fields(self, value: Any) -> dict[str, str]:
        """The declared custom fields: {"custom.region": "string", ...}."""
        if not isinstance(value, dict):
            self.fail("fields", 'expected an object like {"custom.region": "string"}, got '
                                f"{_kind(value)}")
            return {}
        found = {}
        for name, declared in value.items():
            path = f"fields.{name}"
            if not name.startswith(CUSTOM_PREFIX) or not name[len(CUSTOM_PREFIX):].strip():
                self.fail(path, f"expected custom.NAME (a record's custom field), got {name!r}")
            elif declared not in FIELD_TYPES:
                self.fail(path, f"expected one of {', '.join(FIELD_TYPES)}, got "
                                f"{declared!r}" + (_suggest(declared, FIELD_TYPES)
                                                   if isinstance(declared, str) else ""))
            else:
                found[name] = declared
        return found

    def calendars(self, value: Any) -> dict[str, Calendar]:
        found = dict(BUILT_IN)
        if not isinstance(value, dict):
            self.fail("calendars", f"expected an object of calendars by name, got {_kind(value)}")
            return found
        for name, spec in value.items():
            path = f"calendars.{name}"
            self.defined_calendars.add(name)
            if name in BUILT_IN:
                self.fail(path, f"{name!r} is built in and cannot be redefined")
                continue
            calendar, problems = check_calendar(name, spec, self.holidays)
            for subpath, message in problems:
                self.fail(path + subpath, message)
            if calendar is not None:
                found[name] = calendar
        return found

    def calendar_ref(self, value: Any, path: str,
                     calendars: Mapping[str, Calendar]) -> Calendar | None:
        if isinstance(value, str) and value in calendars:
            return calendars[value]
        if value is None:
            self.fail(path, f"missing: name a calendar (defined: {', '.join(sorted(calendars))})")
        elif not isinstance(value, str) or value not in self.defined_calendars:
            # (a calendar defined but broken is reported at its definition already)
            self.fail(path, f"unknown calendar {value!r}" + _suggest(str(value), calendars)
                      + f" (defined: {', '.join(sorted(calendars))})")
        return None

    def calendar_choice(self, spec: Mapping[str, Any], path: str,
                        calendars: Mapping[str, Calendar]) -> CalendarChoice:
        fallback = CalendarChoice(BUILT_IN[ALWAYS])
        if "calendar_by" not in spec:
            calendar = self.calendar_ref(spec.get("calendar", ALWAYS), f"{path}.calendar",
                                         calendars)
            return CalendarChoice(calendar) if calendar else fallback
        by, where = spec["calendar_by"], f"{path}.calendar_by"
        if "calendar" in spec:
            self.fail(f"{path}.calendar", "give either 'calendar' or 'calendar_by', not both")
        if not isinstance(by, dict):
            self.fail(where, 'expected {"field": ..., "calendars": {...}, "default": ...}')
            return fallback
        self.keys(by, where, ("field", "calendars", "default"))
        field_name = by.get("field")
        if not isinstance(field_name, str) or not (
                field_name in CALENDAR_FIELDS or field_name.startswith("custom.")):
            self.fail(f"{where}.field", f"expected one of {', '.join(CALENDAR_FIELDS)} or "
                                        f"custom.NAME, got {field_name!r}")
        default = self.calendar_ref(by.get("default"), f"{where}.default", calendars)
        mapping = by.get("calendars")
        choices: dict[str, Calendar] = {}
        if not isinstance(mapping, dict) or not mapping:
            self.fail(f"{where}.calendars", "expected an object: field value -> calendar name")
        else:
            for value, name in mapping.items():
                calendar = self.calendar_ref(name, f"{where}.calendars.{value}", calendars)
                if calendar is not None:
                    choices[value] = calendar
        return CalendarChoice(default or fallback.default, str(field_name), choices)

    def agent_groups(self, value: Any, calendars: Mapping[str, Calendar]) -> dict[str, Group]:
        """`groups`: {"tier2": {"agents": ["ana", {"name": "cy", "calendar": "ny"}],
        "calendar": "berlin"}}: whom assign_next may choose, and when they work."""
        if not isinstance(value, dict):
            self.fail("groups", 'expected an object like {"tier2": {"agents": ["ana"]}}, got '
                                f"{_kind(value)}")
            return {}
        found: dict[str, Group] = {}
        for name, spec in value.items():
            path = f"groups.{name}"
            self.defined_groups.add(name)
            if not isinstance(spec, dict):
                self.fail(path, 'expected an object like {"agents": ["ana", "bo"]}, got '
                                f"{_kind(spec)}")
                continue
            self.keys(spec, path, GROUP_KEYS)
            calendar = (self.calendar_ref(spec["calendar"], f"{path}.calendar", calendars)
                        if "calendar" in spec else None)
            agents = self.group_agents(spec.get("agents"), f"{path}.agents", calendars)
            if agents:
                found[name] = Group(name, agents, calendar)
        return found

    def group_agents(self, value: Any, path: str,
                     calendars: Mapping[str, Calendar]) -> tuple[Agent, ...]:
        if not isinstance(value, list) or not value:
            self.fail(path, 'expected a non-empty list of agents ("ana", or {"name": "ana", '
                            f'"calendar": ...}}), got {_kind(value)}')
            return ()
        agents: list[Agent] = []
        for i, entry in enumerate(value):
            where = f"{path}[{i}]"
            spec = {"name": entry} if isinstance(entry, str) else entry
            if not isinstance(spec, dict):
                self.fail(where, f"expected an agent's name or an object, got {_kind(entry)}")
                continue
            self.keys(spec, where, AGENT_KEYS)
            name = spec.get("name")
            if not isinstance(name, str) or not name.strip():
                self.fail(f"{where}.name" if isinstance(entry, dict) else where,
                          "expected an agent's name (a non-empty string)")
                continue
            if any(agent.name == name for agent in agents):
                self.fail(where, f"agent {name!r} is listed twice")
                continue
            calendar = (self.calendar_ref(spec["calendar"], f"{where}.calendar", calendars)
                        if "calendar" in spec else None)
            agents.append(Agent(name, calendar))
        return tuple(agents)

    def slas(self, value: Any, calendars: Mapping[str, Calendar]) -> list[Sla]:
        slas: list[Sla] = []
        fallback: tuple[int, str] | None = None
        for index, path, spec, name in self.entries(value, "slas", (*SLA_KEYS, *CLOCK_KEYS),
                                                    "SLA"):
            when = None
            valid_from, applies_to = self.version(spec, path)
            if "when" in spec:
                when = self.condition(spec["when"], f"{path}.when", RECORD_VARIABLES)
            elif fallback is None and valid_from is None:
                fallback = (index, name)
            if fallback is not None and fallback[0] < index:
                self.warnings.append(Problem(
                    path, f"never matches: slas[{fallback[0]}] ({fallback[1]!r}) has no 'when' "
                          "and matches every record"))
            choice = self.calendar_choice(spec, path, calendars)
            on_change = spec.get("on_target_change", "keep")
            if on_change not in ON_TARGET_CHANGE:
                self.fail(f"{path}.on_target_change", f"expected one of "
                          f"{', '.join(ON_TARGET_CHANGE)}, got {on_change!r}")
            targets = self.targets(spec.get("targets", {}), f"{path}.targets")
            self.reachable(targets, choice, f"{path}.targets")
            if not targets and "targets" in spec and "targets_by" not in spec:
                self.warnings.append(Problem(f"{path}.targets", "no targets: this SLA's clocks "
                                                                "never breach"))
            elif "targets" not in spec and "targets_by" not in spec:
                self.warnings.append(Problem(path, "no targets: this SLA's clocks never breach"))
            pauses = self.strings(spec.get("pause_statuses", []), f"{path}.pause_statuses")
            targets_by, clocks = self.sla_clocks(spec, path, targets, choice)
            slas.append(Sla(name=name, index=index, when=when, calendar=choice,
                            targets=targets, pause_statuses=pauses,
                            on_target_change=on_change, targets_by=targets_by,
                            clocks=clocks, valid_from=valid_from, applies_to=applies_to))
        self.versions_followed(slas)
        return slas

    def olas(self, value: Any, calendars: Mapping[str, Calendar]) -> list[Ola]:
        """The team targets: each like an SLA's targets, its `when` over the variables that
        have a history (it is replayed to find the record's time with the team)."""
        olas: list[Ola] = []
        for index, path, spec, name in self.entries(value, "olas", OLA_KEYS, "OLA"):
            when = None
            if "when" in spec:
                self.out_of_scope = ("cannot be used here: an OLA's when is replayed over "
                                     "the record's history, and only the record's own "
                                     "fields have one")
                when = self.condition(spec["when"], f"{path}.when", CLOCK_VARIABLES)
                self.out_of_scope = SLA_SCOPE
            choice = self.calendar_choice(spec, path, calendars)
            targets = self.targets(spec.get("targets", {}), f"{path}.targets")
            self.reachable(targets, choice, f"{path}.targets")
            targets_by = None
            if "targets_by" in spec:
                targets_by = self.targets_by(spec["targets_by"], f"{path}.targets_by",
                                             targets, choice)
            if not targets and targets_by is None:
                self.warnings.append(Problem(path, "no targets: this OLA's clocks never "
                                                   "breach"))
            pauses = self.strings(spec.get("pause_statuses", []), f"{path}.pause_statuses")
            olas.append(Ola(name=name, index=index, when=when, calendar=choice,
                            targets=targets, pause_statuses=pauses, targets_by=targets_by))
        return olas

    def version(self, spec: Mapping[str, Any], path: str) -> tuple[datetime | None, str]:
        """An SLA's `valid_from` (an ISO 8601 instant with an offset) and `applies_to`."""
        applies_to = spec.get("applies_to", "new")
        if applies_to not in APPLIES_TO:
            self.fail(f"{path}.applies_to", f"expected one of {', '.join(APPLIES_TO)}, got "
                                            f"{applies_to!r}")
        if "applies_to" in spec and "valid_from" not in spec:
            self.fail(f"{path}.applies_to", "only a version of an SLA has it: give "
                                            "valid_from too")
        if "valid_from" not in spec:
            return None, "new"
        try:
            valid_from = parse_instant(spec["valid_from"], "valid_from")
        except ValueError as exc:
            self.fail(f"{path}.valid_from", str(exc).removeprefix("valid_from: ")
                      + " (write e.g. 2026-04-01T00:00:00+02:00)")
            return None, "new"
        return valid_from, applies_to if applies_to in APPLIES_TO else "new"

    def versions_followed(self, slas: list[Sla]) -> None:
        """A version without an older one of its name after it leaves the records it does
        not apply to to whatever SLA comes next: said, since it is seldom meant."""
        for sla in slas:
            if sla.valid_from is None:
                continue
            valid_from = sla.valid_from
            if not any(o.name == sla.name and o.index > sla.index
                       and (o.valid_from is None or o.valid_from < valid_from) for o in slas):
                self.warnings.append(Problem(
                    f"slas[{sla.index}].valid_from", f"no older version of SLA {sla.name!r} "
                    "follows it: the records it does not apply to (created before "
                    f"{format_instant(valid_from)}"
                    + (", unless open then" if sla.applies_to == "open" else "")
                    + ") fall to the next SLA that matches, or none"))

    def sla_clocks(self, spec: Mapping[str, Any], path: str, targets: Mapping[str, Target],
                   choice: CalendarChoice) -> tuple[TargetsBy | None, dict[str, ClockRules]]:
        """An SLA's `targets_by` and `clocks`."""
        targets_by = None
        if "targets_by" in spec:
            targets_by = self.targets_by(spec["targets_by"], f"{path}.targets_by", targets,
                                         choice)
        clocks: dict[str, ClockRules] = {}
        value = spec.get("clocks", {})
        if not isinstance(value, dict):
            self.fail(f"{path}.clocks", 'expected an object like {"resolution": '
                                        '{"pause_when": ...}}, got ' + _kind(value))
            return targets_by, clocks
        set_somewhere = set(targets) | {t for values in (targets_by.values.values()
                                                         if targets_by else ()) for t in values}
        for target, rules in value.items():
            where = f"{path}.clocks.{target}"
            if target not in ALL_TARGETS:
                self.fail(where, f"unknown target{_suggest(target, ALL_TARGETS)} "
                                 f"(known: {', '.join(ALL_TARGETS)})")
                continue
            if not isinstance(rules, dict):
                self.fail(where, "expected an object with start_when, pause_when or "
                                 f"stop_when, got {_kind(rules)}")
                continue
            self.keys(rules, where, CLOCK_CONDITIONS)
            if target not in set_somewhere:
                self.warnings.append(Problem(where, f"this SLA sets no {target} target: its "
                                                    "conditions change nothing"))
            found = {}
            self.out_of_scope = ("cannot be used here: a clock's conditions are replayed over "
                                 "the record's history, and only the record's own fields "
                                 "have one")
            for key in CLOCK_CONDITIONS:
                if key in rules:
                    found[key] = self.condition(rules[key], f"{where}.{key}", CLOCK_VARIABLES)
            self.out_of_scope = SLA_SCOPE
            clocks[target] = ClockRules(where, **found)
        return targets_by, clocks

    def targets_by(self, by: Any, where: str, targets: Mapping[str, Target],
                   choice: CalendarChoice) -> TargetsBy | None:
        """`{"field": F, "values": {VALUE: {target: duration, ...}, ...}}`, each row over
        the SLA's own `targets`."""
        if not isinstance(by, dict):
            self.fail(where, 'expected {"field": ..., "values": {VALUE: {TARGET: ...}}}, got '
                             + _kind(by))
            return None
        self.keys(by, where, ("field", "values"))
        field_name = by.get("field")
        if not isinstance(field_name, str) or not (
                field_name in CALENDAR_FIELDS or field_name.startswith("custom.")):
            self.fail(f"{where}.field", f"expected one of {', '.join(CALENDAR_FIELDS)} or "
                                        f"custom.NAME, got {field_name!r}")
            field_name = ""
        values = by.get("values")
        if not isinstance(values, dict) or not values:
            self.fail(f"{where}.values", "expected an object: field value -> its targets, "
                                         'e.g. {"urgent": {"first_response": "30m"}}')
            return None
        merged = {}
        for value, own in values.items():
            if field_name == "kind" and value not in KINDS:
                self.fail(f"{where}.values.{value}",
                          f"unknown kind {value!r} (known: {', '.join(KINDS)})")
            found = self.targets(own, f"{where}.values.{value}")
            self.reachable(found, choice, f"{where}.values.{value}")
            merged[value] = {**targets, **found}
        return TargetsBy(field_name, merged)

    def entries(self, value: Any, where: str, keys: tuple[str, ...],
                what: str) -> Iterator[tuple[int, str, dict[str, Any], str]]:
        """The named objects of a list (SLAs, rules): index, path, object, unique name."""
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {_kind(value)}")
            return
        names: dict[str, int] = {}
        for index, spec in enumerate(value):
            path = f"{where}[{index}]"
            if not isinstance(spec, dict):
                self.fail(path, f"expected an object, got {_kind(spec)}")
                continue
            self.keys(spec, path, keys)
            yield index, path, spec, self.name(spec, path, names, index, what)

    def name(self, spec: Mapping[str, Any], path: str, seen: dict[str, int], index: int,
             what: str) -> str:
        name = spec.get("name")
        if name is None and what == "rule":
            name = unnamed_rule_name(spec)
        if not isinstance(name, str) or not name.strip():
            self.fail(f"{path}.name", f"every {what} needs a non-empty name")
            return f"#{index}"
        if what == "SLA" and "valid_from" in spec:
            # versions of one SLA share its name; each version's instant is its own
            name_key = f"{name}\0{spec['valid_from']}"
            if name_key in seen:
                self.fail(f"{path}.valid_from", f"another version of SLA {name!r} is valid "
                                                f"from the same instant (index {seen[name_key]})")
            seen.setdefault(name_key, index)
            return name
        if name in seen:
            if "name" not in spec:
                self.fail(path, f"same conditions and actions as rules[{seen[name]}], "
                                "and neither has a name; remove one of them")
            else:
                self.fail(f"{path}.name", f"duplicate {what} name {name!r} "
                                          f"(also at index {seen[name]})")
        seen.setdefault(name, index)
        return name

    def targets(self, value: Any, path: str) -> dict[str, Target]:
        if not isinstance(value, dict):
            self.fail(path, f"expected an object like {{\"first_response\": \"30m\"}}, "
                            f"got {_kind(value)}")
            return {}
        targets = {}
        for key, text in value.items():
            if key not in ALL_TARGETS:
                self.fail(f"{path}.{key}", f"unknown target{_suggest(key, ALL_TARGETS)} "
                                           f"(known: {', '.join(ALL_TARGETS)})")
                continue
            try:
                targets[key] = parse_target(text)
            except ValueError as exc:
                self.fail(f"{path}.{key}", str(exc))
        return targets

    def reachable(self, targets: Mapping[str, Target], choice: CalendarChoice,
                  path: str) -> None:
        """A target must come due within half the span a calendar searches for working
        time (holidays take some of it): 366d on a calendar open one hour a week cannot."""
        limit = CALENDAR_MAX_DAYS // 2
        calendars = {id(c): c for c in (choice.default, *choice.by_value.values())}
        for key, target in targets.items():
            for calendar in calendars.values():
                days = target.seconds_on(calendar) / _weekly_seconds(calendar) * 7
                if days > limit:
                    self.fail(f"{path}.{key}", f"on calendar {calendar.name!r} this target "
                                               f"comes due after {days / 365.25:,.0f} years; "
                                               f"it must come due within {limit} days")
                    break

    def rules(self, value: Any, where: str = "rules", first: int = 0, prefix: str = "",
              during: tuple[datetime, datetime] | None = None) -> list[Rule]:
        """`first`, `prefix`, `during`: an override's rules come after the policy's, named
        for the override, and run only within its range."""
        rules = []
        for index, path, spec, name in self.entries(value, where, RULE_KEYS, "rule"):
            if "conditions" not in spec:
                self.fail(f"{path}.conditions", "missing (write {\"all\": [...]} or "
                                                "{\"any\": [...]})")
                conditions = None
            else:
                conditions = self.condition(spec["conditions"], f"{path}.conditions", VARIABLES)
            actions = self.action_list(spec.get("actions"), f"{path}.actions")
            if conditions is not None:
                rules.append(Rule(name=prefix + name, index=first + index,
                                  conditions=conditions, actions=tuple(actions),
                                  during=during, where=path if prefix else ""))
        return rules

    # -- overrides -------------------------------------------------------------------------

    def override_range(self, spec: Mapping[str, Any],
                       path: str) -> tuple[datetime, datetime] | None:
        found = []
        for key in ("from", "until"):
            try:
                found.append(parse_instant(spec.get(key), key))
            except ValueError as exc:
                self.fail(f"{path}.{key}", str(exc).removeprefix(f"{key}: "))
        if len(found) < 2:
            return None
        if found[1] <= found[0]:
            self.fail(f"{path}.until", "must be after 'from'")
            return None
        if not any(key in spec for key in ("calendars", "targets_scale", "rules")):
            self.fail(path, "an override needs calendars, targets_scale or rules")
        return found[0], found[1]

    def override_calendars(self, overrides: list[tuple[int, str, dict[str, Any], str]],
                           ranges: Mapping[int, tuple[datetime, datetime] | None],
                           calendars: dict[str, Calendar]) -> dict[str, Calendar]:
        """The calendars with each override's replacements spliced in, in order."""
        own = dict(calendars)
        spliced = dict(calendars)
        for index, path, spec, name in overrides:
            value, where = spec.get("calendars", {}), f"{path}.calendars"
            if not isinstance(value, dict):
                self.fail(where, 'expected an object like {"office": "launch-hours"}, got '
                                 f"{_kind(value)}")
                continue
            span = ranges[index]
            for base, replacement in value.items():
                old = self.calendar_ref(base, f"{where}.{base}", own)
                new = self.calendar_ref(replacement, f"{where}.{base}", own)
                if old is not None and new is not None and span is not None:
                    spliced[base] = Spliced.of(spliced[base], new, span[0], span[1], name)
        return spliced

    def override(self, index: int, name: str, spec: Mapping[str, Any], path: str,
                 span: tuple[datetime, datetime] | None, rules: list[Rule]) -> Override:
        scale = spec.get("targets_scale")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float)
                                  or not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]):
            self.fail(f"{path}.targets_scale", f"expected a number from {SCALE_RANGE[0]} to "
                                               f"{SCALE_RANGE[1]:g}, got {scale!r}")
            scale = None
        elif scale is not None and scale > 1:
            self.warnings.append(Problem(f"{path}.targets_scale", f"{scale:g} loosens the "
                                         "targets promised to customers; at a peak, warn and "
                                         "escalate earlier instead"))
        calendars = spec.get("calendars", {})
        start, end = span or (datetime.min.replace(tzinfo=UTC),) * 2
        return Override(name, index, start, end, tuple(
            (str(k), str(v)) for k, v in calendars.items()) if isinstance(calendars, dict)
            else (), None if scale is None else float(scale), tuple(r.name for r in rules))

    # -- conditions ----------------------------------------------------------------------

    def condition(self, node: Any, path: str, variables: Mapping[str, Any],
                  depth: int = 0) -> dict[str, Any]:
        """The condition tree normalised for business-rules (every leaf has a `value`)."""
        if depth > MAX_CONDITION_DEPTH:
            self.fail(path, f"conditions nested deeper than {MAX_CONDITION_DEPTH} levels of "
                            "all/any")
            return {}
        if not isinstance(node, dict):
            self.fail(path, f"expected an object (a condition, or all/any), got {_kind(node)}")
            return {}
        groups = [key for key in ("all", "any") if key in node]
        if groups:
            key = groups[0]
            if len(node) != 1:
                self.fail(path, f"'{key}' must be the only key of its object "
                                f"(found {', '.join(sorted(node))})")
            children = node[key]
            if not isinstance(children, list):
                self.fail(f"{path}.{key}", f"expected a list of conditions, got {_kind(children)}")
                return {}
            if not children:
                self.fail(f"{path}.{key}", f"empty '{key}': give at least one condition")
            return {key: [self.condition(child, f"{path}.{key}[{i}]", variables, depth + 1)
                          for i, child in enumerate(children)]}
        return self.leaf(node, path, variables)

    def leaf(self, node: Mapping[str, Any], path: str,
             variables: Mapping[str, Any]) -> dict[str, Any]:
        self.keys(node, path, LEAF_KEYS)
        name, op = node.get("name"), node.get("operator")
        if not isinstance(name, str):
            self.fail(f"{path}.name", "missing variable name" if name is None
                      else f"expected a variable name, got {_kind(name)}")
            return {}
        kind = self.variable_kind(name, f"{path}.name", variables)
        if kind is None:
            return {}
        if name in LOAD_VARIABLES:  # only rules may name them: the sync counts them then
            self.load_variables.add(name)
        ops = operators(kind)
        if not isinstance(op, str):
            self.fail(f"{path}.operator", "missing operator" if op is None
                      else f"expected an operator name, got {_kind(op)}")
            return {}
        if op not in ops:
            hint = _suggest(op, ops) or f" (for {name}: {', '.join(sorted(ops))})"
            self.fail(f"{path}.operator", f"operator {op!r} does not apply to {name!r}, "
                                          f"a {kind.name} variable{hint}")
            return {}
        takes = ops[op]
        if takes == FIELD_NO_INPUT:
            # business-rules reads `value` of every condition and calls a no-input operator
            # without it, so its authors write one (true, "", anything): accepted, ignored.
            return {"name": name, "operator": op, "value": None}
        if "value" not in node:
            self.fail(f"{path}.value", f"missing: operator {op!r} compares with a value")
            return {}
        value = node["value"]
        self.leaf_value(value, f"{path}.value", name, op, takes)
        return {"name": name, "operator": op, "value": value}

    def variable_kind(self, name: str, path: str, variables: Mapping[str, Any]
                      ) -> type[BaseType] | None:
        """The type of the variable a condition names (a declared custom field or one of
        `variables`), or None when it names none of them."""
        if name.startswith(CUSTOM_PREFIX):
            declared = self.custom.get(name)
            if declared is None:
                example = json.dumps({name: "string"})
                self.fail(path, f"custom field {name!r} is not declared: declare it under "
                                f"\"fields\" with its type, e.g. \"fields\": {example}")
                return None
            return FIELD_TYPES[declared]
        if name in variables:
            return VARIABLES[name][0]
        if name in VARIABLES:
            self.fail(path, f"{name!r} {self.out_of_scope}")
        else:
            self.fail(path, f"unknown variable {name!r}"
                            + _suggest(name, [*variables, *self.custom]))
        return None

    def leaf_value(self, value: Any, vpath: str, name: str, op: str, takes: str) -> None:
        """The value a condition compares with, against what its operator takes."""
        if takes == FIELD_NUMERIC:
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                self.fail(vpath, f"expected a number for {name!r}, got {_kind(value)}")
            elif name in WALL_CLOCK_VARIABLES:
                self.horizon = max(self.horizon or 0.0, float(value))
        elif takes == FIELD_TEXT:
            if not isinstance(value, str):
                self.fail(vpath, f"expected a string for {name!r} {op}, got {_kind(value)}")
            elif op == "matches_regex" and (refused := check_pattern(value)) is not None:
                self.fail(vpath, refused)
        elif takes == FIELD_SELECT_MULTIPLE:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.fail(vpath, f"expected a list of strings for {op!r}, got {_kind(value)}")
            elif not value:
                self.fail(vpath, f"empty list: {op!r} needs at least one value")

    # -- actions -------------------------------------------------------------------------

    def action_list(self, value: Any, path: str) -> list[dict[str, Any]]:
        if value is None:
            self.fail(path, "missing: a rule needs at least one action")
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected a list of actions, got {_kind(value)}")
            return []
        if not value:
            self.fail(path, "empty: a rule needs at least one action")
        return [a for i, spec in enumerate(value) if (a := self.action(spec, f"{path}[{i}]"))]

    def action(self, spec: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(spec, dict):
            self.fail(path, f"expected an object with name and params, got {_kind(spec)}")
            return None
        self.keys(spec, path, ACTION_KEYS)
        name = spec.get("name")
        if not isinstance(name, str):
            self.fail(f"{path}.name", "missing action name")
            return None
        action = self.actions.get(name)
        if action is None:
            self.fail(f"{path}.name", f"unknown action {name!r}{_suggest(name, self.actions)}")
            return None
        params = spec.get("params", {})
        if not isinstance(params, dict):
            self.fail(f"{path}.params", f"expected an object, got {_kind(params)}")
            return None
        for key in sorted(action.required - set(params)):
            self.fail(f"{path}.params.{key}", f"missing: {name} needs {key!r}")
        self.action_params(name, action, params, path)
        if name == "assign_next":
            self.assign_next(params, f"{path}.params")
        return {"name": name, "params": dict(params)}

    def action_params(self, name: str, action: ActionSpec, params: Mapping[str, Any],
                      path: str) -> None:
        for key, value in params.items():
            ppath = f"{path}.params.{key}"
            if key not in action.params:
                self.fail(ppath, f"unknown parameter of {name}{_suggest(key, action.params)} "
                                 f"(known: {', '.join(action.params)})")
            elif action.params[key] == FIELD_NUMERIC:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    self.fail(ppath, f"expected a whole number >= 1, got {value!r}")
                elif value > MAX_ESCALATION_LEVEL:
                    self.fail(ppath, f"{value} is more than the highest level, "
                                     f"{MAX_ESCALATION_LEVEL}")
            elif not isinstance(value, str) or not value.strip():
                self.fail(ppath, f"expected a non-empty string, got {_kind(value)}")
            elif key in ("text", "note") or (name, key) == ("set_field", "value"):
                try:
                    note_placeholders(value)
                except ValueError as exc:
                    self.fail(ppath, str(exc))
            elif (name, key) == ("set_field", "field") and not custom_name(value):
                self.fail(ppath, f"expected custom.NAME (the record's custom field NAME; "
                                 f"each connector maps NAME to its own field), got {value!r}")

    def assign_next(self, params: Mapping[str, Any], path: str) -> None:
        group, strategy = params.get("group"), params.get("strategy", DEFAULT_STRATEGY)
        if isinstance(group, str) and group.strip() and group not in self.defined_groups:
            known = ", ".join(sorted(self.defined_groups)) or "none: add them under 'groups'"
            self.fail(f"{path}.group", f"no group {group!r} under 'groups'"
                                       + _suggest(group, self.defined_groups)
                                       + " (the agents assign_next chooses from; defined: "
                                       + f"{known})")
        if isinstance(strategy, str) and strategy not in STRATEGIES:
            self.fail(f"{path}.strategy", f"expected one of {', '.join(STRATEGIES)}, got "
                                          f"{strategy!r}" + _suggest(strategy, STRATEGIES))
