"""Policy tests: cases kept next to a policy, run through the real planner.

A test file (YAML or JSON) names a policy and lists cases. A case is a record in the
embedded helpdesk's format, optional later versions of it (`timeline`), and `expect` steps,
each at an instant `now`, checking only what it names: the SLA, variables, the rules that
fire, the change set (as `run --json` prints it), notifications, due times, the ledger.
Between steps the ledger and the SLA mark carry over in memory and the step's change is
applied to the record as a successful write would; timeline entries apply at their `at`
(one at the very instant of a step applies before it). A case stops at its first failing
step: later steps would run on a history the author did not expect.
"""

from __future__ import annotations

import difflib
import json
import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from sla_sync.connector.model import Record, RecordError, merge_tags, parse_instant
from sla_sync.rules.clock import TARGETS
from sla_sync.rules.planner import Plan, plan
from sla_sync.rules.policy import Policy, PolicyError, load_policy
from sla_sync.rules.variables import VARIABLES

SUFFIXES = (".test.yaml", ".test.yml", ".test.json")
FILE_KEYS = ("policy", "description", "cases")
CASE_KEYS = ("name", "description", "record", "timeline", "expect")
ENTRY_KEYS = ("at", "set", "add_tags", "remove_tags")
STEP_KEYS = ("now", "sla", "variables", "fires", "change", "notify", "due", "active")
CHANGE_KEYS = ("set", "escalation_level", "add_tags", "remove_tags", "notes")
#: Record fields a timeline entry may set (id and updated_at are the test's to keep).
SETTABLE = tuple(k for k in Record.from_dict({
    "id": "x", "kind": "ticket", "created_at": "2026-01-01T00:00:00+00:00",
    "updated_at": "2026-01-01T00:00:00+00:00"}).to_dict() if k not in ("id", "updated_at"))


class TestFileError(Exception):
    """A test file that cannot run: every problem with its path in the file (and line)."""

    __test__ = False  # not a pytest test class

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Entry:
    at: datetime
    set: Mapping[str, Any]
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    now: datetime
    checks: Mapping[str, Any]
    shown_now: str  # as the author wrote it


@dataclass(frozen=True)
class Case:
    name: str
    record: Record
    timeline: tuple[Entry, ...]
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class TestFile:
    __test__ = False

    path: Path
    policy: Policy
    cases: tuple[Case, ...]


@dataclass
class CaseResult:
    file: str
    name: str
    failure: list[str] = field(default_factory=list)  # empty: passed
    message: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failure


def find_test_files(paths: Iterable[Path]) -> list[Path]:
    """The test files named, and those under each directory named (sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*")
                                if p.is_file() and p.name.endswith(SUFFIXES)))
        else:
            found.append(path)
    return list(dict.fromkeys(found))


# -- loading -----------------------------------------------------------------------------------

def load_test_file(path: Path) -> TestFile:
    """The test file, checked; TestFileError names every problem by its path in the file."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TestFileError(source, [f"{source}: cannot read the test file ({exc.strerror})"])\
            from None
    lines: dict[str, int] = {}
    try:
        if path.name.endswith(".json"):
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
        try:  # line numbers for problems; JSON parses as YAML too, as a rule
            node = yaml.compose(text)
        except yaml.YAMLError:
            node = None
        if node is not None:
            _node_lines(node, "$", lines)
    except json.JSONDecodeError as exc:
        raise TestFileError(source, [f"{source}:{exc.lineno}: invalid JSON at column "
                                     f"{exc.colno}: {exc.msg}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}: invalid YAML at column {mark.column + 1}" \
            if mark else f"{source}: invalid YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        raise TestFileError(source, [f"{where}: {problem}"]) from None
    loader = _Loader(path, lines)
    result = loader.file(data)
    if loader.problems or result is None:
        raise TestFileError(source, loader.problems)
    return result


def _node_lines(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = str(key.value)
            child = name if path == "$" else f"{path}.{name}"
            out.setdefault(child, key.start_mark.line + 1)
            _node_lines(value, child, out)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, f"{path}[{index}]", out)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _suggest(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


class _Loader:
    def __init__(self, path: Path, lines: Mapping[str, int]):
        self.path = path
        self.lines = lines
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        """A problem as `FILE:LINE: PATH: message` (the line of the nearest key found)."""
        line, up = self.lines.get(where), where
        while line is None and up not in ("", "$"):
            up = up.rsplit(".", 1)[0] if "." in up.rsplit("]", 1)[-1] else up.rsplit("[", 1)[0]
            line = self.lines.get(up)
        place = f"{self.path}:{line}" if line else str(self.path)
        self.problems.append(f"{place}: {path_of(where)}: {message}")

    def keys(self, node: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        for key in node:
            if key not in allowed:
                self.fail(_join(path, str(key)), f"unknown key{_suggest(str(key), allowed)} "
                                                 f"(known: {', '.join(allowed)})")

    def instant(self, value: Any, path: str) -> datetime | None:
        if isinstance(value, date) and not isinstance(value, datetime):
            self.fail(path, f"{value} is a date; give an instant with an offset "
                            "(2026-03-02T09:00:00+01:00)")
            return None
        try:
            return parse_instant(value, path_of(path))
        except ValueError as exc:
            self.fail(path, str(exc).removeprefix(f"{path_of(path)}: "))
            return None

    def strings(self, value: Any, path: str) -> tuple[str, ...] | None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(path, f"expected a list of strings, got {_kind(value)}")
            return None
        return tuple(value)

    def file(self, data: Any) -> TestFile | None:
        if not isinstance(data, dict):
            self.fail("$", f"expected an object with policy and cases, got {_kind(data)}")
            return None
        self.keys(data, "$", FILE_KEYS)
        policy_name = data.get("policy")
        if not isinstance(policy_name, str) or not policy_name:
            self.fail("policy", "missing: the policy file, relative to this test file")
            return None
        try:
            policy = load_policy(self.path.parent / policy_name)
        except PolicyError as exc:
            for problem in exc.problems:
                self.fail("policy", f"{exc.source}: {problem}")
            return None
        cases = data.get("cases")
        if not isinstance(cases, list) or not cases:
            self.fail("cases", f"expected a non-empty list of cases, got {_kind(cases)}")
            return None
        names: dict[str, int] = {}
        loaded = []
        for index, spec in enumerate(cases):
            case = self.case(spec, f"cases[{index}]", policy)
            if case is None:
                continue
            if case.name in names:
                self.fail(f"cases[{index}].name", f"duplicate case name {case.name!r} (also "
                                                  f"cases[{names[case.name]}])")
            names.setdefault(case.name, index)
            loaded.append(case)
        return TestFile(self.path, policy, tuple(loaded))

    def case(self, spec: Any, path: str, policy: Policy) -> Case | None:
        if not isinstance(spec, dict):
            self.fail(path, f"expected an object, got {_kind(spec)}")
            return None
        before = len(self.problems)
        self.keys(spec, path, CASE_KEYS)
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            self.fail(_join(path, "name"), "every case needs a non-empty name")
            name = f"#{path}"
        record = self.record(spec.get("record"), _join(path, "record"))
        timeline = self.timeline(spec.get("timeline", []), _join(path, "timeline"), record)
        steps = self.steps(spec.get("expect"), _join(path, "expect"), policy)
        if len(self.problems) > before or record is None:
            return None
        return Case(name, record, tuple(timeline), tuple(steps))

    def record(self, raw: Any, path: str) -> Record | None:
        if not isinstance(raw, dict):
            self.fail(path, f"expected a record in the embedded helpdesk's format, got "
                            f"{_kind(raw)}")
            return None
        data = dict(raw)
        # A record that was never updated: its version is its creation.
        data.setdefault("updated_at", data.get("created_at"))
        try:
            return Record.from_dict(data)
        except RecordError as exc:
            field_name = exc.reason.split(":", 1)[0]
            where = _join(path, field_name) if field_name in data else path
            self.fail(where, exc.reason)
            return None

    def timeline(self, value: Any, path: str, record: Record | None) -> list[Entry]:
        if not isinstance(value, list):
            self.fail(path, f"expected a list of {{at, set}} entries, got {_kind(value)}")
            return []
        entries: list[Entry] = []
        for index, spec in enumerate(value):
            where = f"{path}[{index}]"
            if not isinstance(spec, dict):
                self.fail(where, f"expected an object like {{at: ..., set: {{...}}}}, got "
                                 f"{_kind(spec)}")
                continue
            self.keys(spec, where, ENTRY_KEYS)
            at = self.instant(spec.get("at"), _join(where, "at"))
            changes = spec.get("set", {})
            if not isinstance(changes, dict):
                self.fail(_join(where, "set"), f"expected an object of record fields, got "
                                               f"{_kind(changes)}")
                continue
            for key in changes:
                if key not in SETTABLE:
                    self.fail(_join(where, f"set.{key}"),
                              f"not a field a later version can set{_suggest(key, SETTABLE)}")
            add = self.strings(spec.get("add_tags", []), _join(where, "add_tags"))
            remove = self.strings(spec.get("remove_tags", []), _join(where, "remove_tags"))
            if at is None or add is None or remove is None:
                continue
            if entries and at < entries[-1].at:
                self.fail(_join(where, "at"), "before the previous entry: list the timeline "
                                              "oldest first")
                continue
            entry = Entry(at, dict(changes), add, remove)
            if record is not None:
                try:
                    record = apply_entry(record, entry)
                except RecordError as exc:
                    self.fail(_join(where, "set"), exc.reason)
                    continue
            entries.append(entry)
        return entries

    def steps(self, value: Any, path: str, policy: Policy) -> list[Step]:
        if not isinstance(value, list) or not value:
            self.fail(path, f"expected a non-empty list of steps, got {_kind(value)}")
            return []
        steps: list[Step] = []
        for index, spec in enumerate(value):
            where = f"{path}[{index}]"
            if not isinstance(spec, dict):
                self.fail(where, f"expected an object with now, got {_kind(spec)}")
                continue
            self.keys(spec, where, STEP_KEYS)
            if "now" not in spec:
                self.fail(_join(where, "now"), "missing: every step needs the instant it "
                                               "evaluates at")
                continue
            now = self.instant(spec["now"], _join(where, "now"))
            checks = {key: spec[key] for key in STEP_KEYS[1:] if key in spec}
            self.check_step(checks, where, policy)
            if now is None:
                continue
            if steps and now < steps[-1].now:
                self.fail(_join(where, "now"), "before the previous step: steps run forward "
                                               "in time")
                continue
            shown = spec["now"] if isinstance(spec["now"], str) else now.isoformat()
            steps.append(Step(now, checks, shown))
        return steps

    def check_step(self, checks: dict[str, Any], path: str, policy: Policy) -> None:
        """Each check a step makes, as far as it can be judged before the case runs."""
        if "sla" in checks:
            self.check_sla(checks, path, policy)
        if "variables" in checks:
            self.check_variables(checks["variables"], _join(path, "variables"), policy)
        for key in ("fires", "active"):
            if key in checks:
                self.check_rule_names(checks[key], _join(path, key), policy)
        if "change" in checks:
            self.check_change(checks["change"], _join(path, "change"))
        if "notify" in checks and not (
                isinstance(checks["notify"], list)
                and all(isinstance(n, dict) for n in checks["notify"])):
            self.fail(_join(path, "notify"), "expected a list of {rule, webhook, text}")
        if "due" in checks:
            self.check_due(checks["due"], _join(path, "due"))

    def check_sla(self, checks: dict[str, Any], path: str, policy: Policy) -> None:
        """`sla`: the name of one of the policy's SLAs; null (kept as "") for none."""
        slas = [sla.name for sla in policy.slas]
        sla = checks["sla"]
        if sla is None:
            checks["sla"] = ""
        elif not isinstance(sla, str) or (sla and sla not in slas):
            self.fail(_join(path, "sla"), f"no SLA {sla!r} in the policy"
                      + _suggest(str(sla), slas) + f" (SLAs: {', '.join(slas)}; "
                      "null for none)")

    def check_variables(self, variables: Any, path: str, policy: Policy) -> None:
        """`variables`: values of the policy's variables, its custom fields included."""
        if not isinstance(variables, dict):
            self.fail(path, f"expected an object of variable values, got {_kind(variables)}")
            return
        known = [*VARIABLES, *policy.fields]
        for name in variables:
            if name not in known:
                self.fail(f"{path}.{name}", f"unknown variable{_suggest(str(name), known)}"
                          + (" (declare custom fields under the policy's \"fields\")"
                             if str(name).startswith("custom.") else ""))

    def check_rule_names(self, value: Any, path: str, policy: Policy) -> None:
        """`fires`, `active`: lists of the policy's rule names."""
        rules = [rule.name for rule in policy.every_rule()]
        for i, name in enumerate(self.strings(value, path) or ()):
            if name not in rules:
                self.fail(f"{path}[{i}]", f"no rule {name!r} in the policy"
                                          f"{_suggest(name, rules)}")

    def check_change(self, change: Any, path: str) -> None:
        """`change`: a change set as `run --json` prints it."""
        if not isinstance(change, dict):
            self.fail(path, f"expected a change set as `run --json` prints it, got "
                            f"{_kind(change)}")
        else:
            self.keys(change, path, CHANGE_KEYS)

    def check_due(self, due: Any, path: str) -> None:
        """`due`: target -> the instant it comes due, or null."""
        if not isinstance(due, dict):
            self.fail(path, "expected an object: target -> instant or null")
            return
        for target, value in due.items():
            where = f"{path}.{target}"
            if target not in TARGETS:
                self.fail(where, f"unknown target{_suggest(str(target), TARGETS)}")
            elif value is not None:
                self.instant(value, where)

def _join(path: str, key: str) -> str:
    return key if path == "$" else f"{path}.{key}"


def path_of(where: str) -> str:
    return "$" if where in ("", "$") else where


def apply_entry(record: Record, entry: Entry) -> Record:
    """The record's next version: the entry's fields set at its `at`; a new status also
    enters the status history then (as the embedded helpdesk records one)."""
    raw = record.to_dict()
    status = entry.set.get("status")
    raw.update(entry.set)
    if status is not None and status != record.status and "status_history" not in entry.set:
        raw["status_history"] = [*raw["status_history"],
                                 {"at": entry.at.isoformat(), "status": status}]
    if entry.add_tags or entry.remove_tags:
        raw["tags"] = merge_tags(raw["tags"], entry.add_tags, entry.remove_tags)
    raw["updated_at"] = entry.at.isoformat()
    return Record.from_dict(raw)


# -- running -----------------------------------------------------------------------------------

def run_case(case: Case, policy: Policy, source: str = "") -> CaseResult:
    started = time.perf_counter()
    try:
        result = _run_case(case, policy, source)
    except Exception as exc:  # a rule that blows up fails its case, not the whole run
        result = CaseResult(source, case.name, [f"evaluation failed: {exc!r}"],
                            "evaluation failed")
    result.seconds = time.perf_counter() - started
    return result


def _run_case(case: Case, policy: Policy, source: str) -> CaseResult:
    result = CaseResult(source, case.name)
    record = case.record
    active: frozenset[str] = frozenset()
    mark = None
    pending = list(case.timeline)
    for index, step in enumerate(case.steps):
        while pending and pending[0].at <= step.now:
            record = apply_entry(record, pending.pop(0))
        p = plan(record, policy, step.now, active, mark)
        mismatches = compare(step.checks, p)
        if mismatches:
            result.failure = [f"expect[{index}] at {step.shown_now}:", *mismatches]
            result.message = f"expect[{index}]: " + ", ".join(
                line.strip().split(":")[0] for line in mismatches if not line.startswith("    "))
            return result
        active = p.active_after
        mark = p.final.sla_mark or mark
        if not p.change.is_empty():
            record = p.change.applied_to(record, step.now)
    return result


def actual_change(p: Plan) -> dict[str, Any]:
    """The change set as `run --json` prints it."""
    change = p.change.to_dict()
    change.pop("base_updated_at", None)
    change.pop("id", None)
    return change


def compare(checks: Mapping[str, Any], p: Plan) -> list[str]:
    """Lines describing each check that does not hold (none: the step passes)."""
    out: list[str] = []
    facts = p.evaluation.facts
    if "sla" in checks and checks["sla"] != facts["sla"]:
        out += _diff("sla", checks["sla"] or None, facts["sla"] or None)
    for name, expected in (checks.get("variables") or {}).items():
        if not _same(expected, facts[name]):
            out += _diff(f"variables.{name}", expected, _plain(facts[name]))
    if "fires" in checks:
        order = [o.rule.name for o in p.evaluation.outcomes]
        fired = sorted(p.fired, key=order.index)
        if set(checks["fires"]) != set(fired):
            out += _diff("fires", list(checks["fires"]), fired)
    if "active" in checks:
        after = sorted(p.active_after)
        if set(checks["active"]) != set(after):
            out += _diff("active", sorted(checks["active"]), after)
    if "change" in checks:
        actual = actual_change(p)
        if _normal(checks["change"]) != actual:
            out += _diff("change", _normal(checks["change"]), actual)
    if "notify" in checks:
        actual_notify = [{"rule": r, "webhook": w, "text": t} for r, w, t in p.notifications]
        if checks["notify"] != actual_notify:
            out += _diff("notify", checks["notify"], actual_notify)
    for target, expected in (checks.get("due") or {}).items():
        due = p.evaluation.clocks[target].due_at
        want = parse_instant(expected, "due") if expected is not None else None
        if want != due:
            # The actual instant in the offset the author wrote, to compare at a glance.
            zone = _written(expected).tzinfo if expected is not None else None
            out += _diff(f"due.{target}", None if want is None else _shown(expected),
                         None if due is None else due.astimezone(zone).isoformat())
    return out


def _written(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _shown(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _normal(change: Mapping[str, Any]) -> dict[str, Any]:
    """An expected change with empty parts dropped, as to_dict leaves them out."""
    return {k: v for k, v in change.items() if v not in ({}, [], None)}


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-6)
    return bool(expected == actual)


def _diff(what: str, expected: Any, actual: Any) -> list[str]:
    left = json.dumps(expected, ensure_ascii=False, sort_keys=True)
    right = json.dumps(actual, ensure_ascii=False, sort_keys=True)
    if len(left) + len(right) < 120:
        return [f"  {what}:", f"    - expected {left}", f"    + actual   {right}"]
    lines = list(difflib.unified_diff(
        json.dumps(expected, ensure_ascii=False, sort_keys=True, indent=2).splitlines(),
        json.dumps(actual, ensure_ascii=False, sort_keys=True, indent=2).splitlines(),
        "expected", "actual", lineterm="", n=2))
    return [f"  {what}:", *(f"    {line}" for line in lines)]


# -- reporting ---------------------------------------------------------------------------------

def summary(results: list[CaseResult]) -> str:
    passed = sum(r.passed for r in results)
    return f"{passed} passed, {len(results) - passed} failed"


def junit_xml(results: list[CaseResult]) -> str:
    """JUnit XML: one testsuite per test file, one testcase per case."""
    suites = ET.Element("testsuites", name="sla-sync test", tests=str(len(results)),
                        failures=str(sum(not r.passed for r in results)), errors="0")
    by_file: dict[str, list[CaseResult]] = {}
    for result in results:
        by_file.setdefault(result.file, []).append(result)
    for source, cases in by_file.items():
        suite = ET.SubElement(suites, "testsuite", name=source, tests=str(len(cases)),
                              failures=str(sum(not r.passed for r in cases)), errors="0",
                              skipped="0")
        for result in cases:
            case = ET.SubElement(suite, "testcase", name=result.name, classname=source,
                                 time=f"{result.seconds:.3f}")
            if not result.passed:
                failure = ET.SubElement(case, "failure", message=result.message)
                failure.text = "\n".join(result.failure)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
