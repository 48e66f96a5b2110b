"""Hostile policies through the real `sla-sync validate`: never a traceback; a rejection
names a JSON path; a policy accepted is one that also runs (plans a record) without error.

The property test is bounded and derandomized, so it tries the same inputs on every run
and stays within a few seconds.
"""

from __future__ import annotations

import json
import re
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import at, iso, make_record
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import load_policy
from sla_sync.sync import main

NOW = at("2026-03-02 12:00")
#: A record every default rule fires on (a vip, first response overdue) whose subject is
#: the classic bait for a backtracking regex.
RECORDS = [
    make_record(id="T-1", tier="vip", subject="a" * 5000 + "!",
                created_at=iso("2026-03-02 09:00"), updated_at=iso("2026-03-02 09:00")),
    make_record(id="T-2", created_at=iso("2026-03-01 09:00"), updated_at=iso("2026-03-01 09:00")),
]
#: How long planning one accepted policy may take before it counts as "cannot run".
RUN_LIMIT_SECONDS = 2.0
#: A problem line of `validate`: a JSON path ($, or a key with its dotted/indexed tail).
PROBLEM_LINE = re.compile(r"^(\$|[A-Za-z_][A-Za-z0-9_]*(\[\d+\]|\.[^\s:]+)*): \S")

TEMPLATE = """{
  "description": @@DESCRIPTION@@,
  "calendars": {
    "sliver": {"timezone": "Pacific/Kiritimati", "week": {"sun": ["23:59-24:00"]}},
    "office": {"timezone": "Europe/Berlin", "week": {"mon": ["09:00-17:00"]},
               "holidays": ["12-25", {"country": "DE", "subdiv": "BE"}]}
  },
  "slas": [
    {"name": "vip", "when": {"all": [{"name": "tier", "operator": "equal_to", "value": "vip"}]},
     "calendar": @@CALENDAR@@, "targets": {"first_response": @@TARGET@@, "resolution": "8h"}},
    {"name": "standard", "calendar": "sliver",
     "targets": {"first_response": "1h", "resolution": @@TARGET@@}}
  ],
  "rules": [
    {"name": "overdue", "conditions": @@CONDITIONS@@,
     "actions": [{"name": "escalate", "params": {"level": @@LEVEL@@, "note": @@NOTE@@}}]}
  ]
}"""
DEFAULTS = {
    "DESCRIPTION": b'"hostile"',
    "CALENDAR": b'"24x7"',
    "TARGET": b'"30m"',
    "CONDITIONS": b'{"all": [{"name": "first_response_breached", "operator": "is_true", '
                  b'"value": true}]}',
    "LEVEL": b"1",
    "NOTE": b'"{sla} overdue on {id}"',
}


def fragment(value: Any) -> bytes:
    return json.dumps(value).encode()


def leaf(name: str, operator: str, value: bytes) -> bytes:
    return b'{"name": "%s", "operator": "%s", "value": %s}' % (
        name.encode(), operator.encode(), value)


# -- hostile fragments ------------------------------------------------------------------------

depth = st.integers(min_value=20, max_value=200_000)
deep_lists = depth.map(lambda d: b"[" * d + b"]" * d)
deep_conditions = depth.map(lambda d: b'{"all": [' * d + DEFAULTS["CONDITIONS"] + b"]}" * d)
constants = st.sampled_from([b"NaN", b"Infinity", b"-Infinity"])
huge_numbers = st.one_of(
    st.integers(min_value=15, max_value=6000).map(lambda n: b"9" * n),
    st.integers(min_value=15, max_value=6000).map(lambda n: b"-1" + b"0" * n),
    st.sampled_from([b"1e309", b"-1e400", b"1e-400", b"1.7976931348623157e308", b"1e15",
                     b"4.9e-324", b"123456789012345678901234567890.5"]),
    st.integers().map(lambda n: str(n).encode()),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
)
numbers = st.one_of(constants, huge_numbers)
durations = st.one_of(
    st.sampled_from(["0.4s", "0.5s", "1.5s", "99999999999999d", "0.0000001bd", "1e3s",
                     "9" * 400 + "s", "0.9999999999s", "100000000h", "1000000bd", "00s",
                     "1h0.5s", "1d" * 500, "99999999999999999999999bd"]),
    st.from_regex(r"\A(\d{1,16}(\.\d{1,6})?(bd|[smhd])){1,3}\Z"),
    st.tuples(st.integers(min_value=1, max_value=400), st.sampled_from(["h", "d", "bd"])).map(
        lambda parts: f"{parts[0]}{parts[1]}"),
).map(fragment)
bad_bytes = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80",
                             b"\xc0\xaf", b"\xfe\xff"])
non_utf8_strings = st.tuples(st.text("abc", max_size=5), bad_bytes).map(
    lambda parts: b'"' + parts[0].encode() + parts[1] + b'"')
surrogates = st.sampled_from([b'"\\ud800"', b'"x\\udfffy"', b'"\\udc00\\ud800"'])
bad_strings = st.one_of(non_utf8_strings, surrogates)
regex_atoms = st.sampled_from(["a", ".", r"\w", "[ab]", "(a|aa)", "(a|a)", "(a+)", "(.*)",
                               r"(a)\1", "(?=a)", "(?<=a)", "x", "$", "^", "(?i)", r"\b"])
quantifiers = st.sampled_from(["", "*", "+", "?", "{2,}", "{1,10}", "{3}", "*?", "{0,1000}"])
generated_regexes = st.lists(st.tuples(regex_atoms, quantifiers).map("".join),
                             min_size=1, max_size=6).map("".join).flatmap(
    lambda body: st.sampled_from([body, f"({body})+", f"({body})*$", f"(?:{body}){{1,50}}"]))
regexes = st.one_of(
    st.sampled_from([r"(a+)+$", r"(a|aa)*$", r"(a|a)*$", r"(.*a){20}", r"^(\w+\s?)*$",
                     r"(a*)*b", r"a*a*a*a*a*x", r".*.*.*=.*", r"(x+x+)+y", "(", "[", r"\\",
                     "a{1,99999999}", "(?P<n>a)(?P=n)", "a" * 5000]),
    generated_regexes,
).map(fragment)
templates = st.one_of(
    st.sampled_from(["{record.__class__}", "{x[0]}", "{id:>999999999}", "{id!r}", "{id.real}",
                     "{0}", "{}", "{sla}{", "}{", "{{{id}}}", "{id[0]}", "{__import__}",
                     "{first_response_minutes_left:,}", "{ id }", "{" * 1000, "{id}" * 1000]),
    st.text(alphabet="{}[]!:.x_0>9 id", max_size=20),
).map(fragment)
levels = st.one_of(st.integers(min_value=-5, max_value=10 ** 30), numbers,
                   st.sampled_from([b"1.5", b"true", b'"1"', b"null"]))


def level_fragment(value: int | bytes) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


numeric_leaves = st.tuples(
    st.sampled_from(["escalation_level", "hours_since_created", "first_response_minutes_left",
                     "resolution_due_at_epoch"]),
    st.sampled_from(["greater_than", "equal_to", "less_than_or_equal_to"]),
    numbers).map(lambda t: leaf(*t))
regex_leaves = regexes.map(lambda r: leaf("subject", "matches_regex", r))
string_leaves = bad_strings.map(lambda s: leaf("tier", "equal_to", s))
condition_fragments = st.one_of(deep_conditions, numeric_leaves, regex_leaves, string_leaves,
                                deep_lists)

SLOTS = {
    "DESCRIPTION": st.one_of(bad_strings, deep_lists, numbers),
    "TARGET": st.one_of(durations, durations, durations, numbers, deep_lists, bad_strings),
    "CALENDAR": st.sampled_from([b'"sliver"', b'"office"', b'"24x8"', b"7"]),
    "CONDITIONS": condition_fragments,
    "LEVEL": levels.map(level_fragment),
    "NOTE": st.one_of(templates, bad_strings, deep_lists),
}


@st.composite
def hostile_policies(draw: st.DrawFn) -> bytes:
    """The template policy with one or two of its slots filled with something hostile."""
    chosen = draw(st.lists(st.sampled_from(sorted(SLOTS)), min_size=1, max_size=3,
                           unique=True))
    text = TEMPLATE.encode()
    for slot, default in DEFAULTS.items():
        value = draw(SLOTS[slot]) if slot in chosen else default
        text = text.replace(f"@@{slot}@@".encode(), value)
    return text


# -- the trial ---------------------------------------------------------------------------------

class _TooSlow(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(*_: Any) -> None:
        raise _TooSlow()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def trial(text: bytes, folder: Path) -> tuple[str, str]:
    """(verdict, detail): verdict is 'rejected', 'accepted', 'traceback', 'rejected without a
    path' or 'accepted but cannot run'."""
    path = folder / "policy.json"
    path.write_bytes(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "traceback", f"{type(result.exception).__name__}: {result.exception}"[:300]
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        if lines[:1] != [f"{path}: invalid policy"] or len(lines) < 2 or not all(
                PROBLEM_LINE.match(line) for line in lines[1:]):
            return "rejected without a path", result.stderr[:300]
        return "rejected", lines[1][:200]
    if result.exit_code != 0:
        return "traceback", f"exit {result.exit_code}: {result.output[:300]}"
    try:
        policy = load_policy(path)
        # what the state file keeps of the policy (rule conditions and actions) is UTF-8 JSON
        json.dumps([rule.as_engine_rule() for rule in policy.rules], ensure_ascii=False,
                   allow_nan=False).encode("utf-8")
        with time_limit(RUN_LIMIT_SECONDS):
            for record in RECORDS:
                planned = plan(record, policy, NOW)
                # what a sync would write or send must be writable (UTF-8, JSON) ...
                json.dumps([planned.change.to_dict(), planned.notifications],
                           ensure_ascii=False, allow_nan=False).encode("utf-8")
                # ... and an escalation level fits the integer field a helpdesk keeps it in
                level = planned.change.escalation_level
                if level is not None and not 0 <= level < 2 ** 31:
                    raise ValueError(f"escalation level {level} does not fit a helpdesk field")
    except _TooSlow:
        return "accepted but cannot run", f"planning took over {RUN_LIMIT_SECONDS}s"
    except Exception as exc:  # any failure here is the defect being counted
        return "accepted but cannot run", f"{type(exc).__name__}: {exc}"[:300]
    return "accepted", ""


@settings(derandomize=True, max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(hostile_policies())
def test_validate_never_ends_in_a_traceback_and_accepts_only_what_runs(text: bytes):
    with tempfile.TemporaryDirectory() as folder:
        verdict, detail = trial(text, Path(folder))
    assert verdict in ("rejected", "accepted"), f"{verdict}: {detail}\n{text[:400]!r}"


def test_the_template_policy_itself_is_accepted_and_runs(tmp_path: Path):
    text = TEMPLATE.encode()
    for slot, default in DEFAULTS.items():
        text = text.replace(f"@@{slot}@@".encode(), default)
    assert trial(text, tmp_path) == ("accepted", "")
    assert plan(RECORDS[0], load_policy(tmp_path / "policy.json"), NOW).fired == ("overdue",)


# -- each hostile case, by the line `validate` prints -----------------------------------------

def policy_with(**slots: bytes) -> bytes:
    text = TEMPLATE.encode()
    for slot, default in DEFAULTS.items():
        text = text.replace(f"@@{slot}@@".encode(), slots.get(slot, default))
    return text


def problems_of(tmp_path: Path, text: bytes) -> list[str]:
    path = tmp_path / "policy.json"
    path.write_bytes(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    return result.stderr.splitlines()[1:]


CONDITION = "rules[0].conditions"
ESCALATE = "rules[0].actions[0].params"


@pytest.mark.parametrize(("slots", "problem"), [
    ({"DESCRIPTION": b"[" * 100_000 + b"]" * 100_000},
     "$: nested deeper than 64 levels at line 2, column 81"),
    ({"DESCRIPTION": b'"caf\xe9"'}, "$: not UTF-8: byte 0xe9 at line 2, column 22"),
    ({"DESCRIPTION": b'"\xed\xa0\x80"'}, "$: not UTF-8: byte 0xed at line 2, column 19"),
    ({"DESCRIPTION": b'"\\ud800"'}, "description: invalid text: a lone surrogate "
                                    "(\\ud800-\\udfff) that cannot be written as UTF-8"),
    ({"CONDITIONS": leaf("hours_since_created", "greater_than", b"NaN")},
     f"{CONDITION}.value: NaN is not a number JSON allows"),
    ({"CONDITIONS": leaf("hours_since_created", "greater_than", b"-Infinity")},
     f"{CONDITION}.value: -Infinity is not a number JSON allows"),
    ({"CONDITIONS": leaf("hours_since_created", "greater_than", b"1e400")},
     f"{CONDITION}.value: number 1e400 is out of range (at most 1e+15 in size)"),
    ({"CONDITIONS": leaf("escalation_level", "equal_to", b"9" * 5000)},
     f"{CONDITION}.value: number 99999999999999999999... (5000 characters) is out of range "
     "(at most 1e+15 in size)"),
    ({"LEVEL": b"101"}, f"{ESCALATE}.level: 101 is more than the highest level, 100"),
    ({"LEVEL": b"99999999999999999999"},
     f"{ESCALATE}.level: number 99999999999999999999 is out of range (at most 1e+15 in size)"),
    ({"TARGET": b'"0.4s"'},
     "slas[0].targets.first_response: '0.4s' is not a whole number of seconds"),
    ({"TARGET": b'"99999999999999d"'},
     "slas[0].targets.first_response: '99999999999999d' is longer than 366 days"),
    ({"TARGET": b'"367bd"'}, "slas[0].targets.first_response: '367bd' is longer than 366 days"),
    ({"NOTE": b'"{record.__class__}"'},
     f"{ESCALATE}.note: unknown placeholder {{record.__class__}} (allowed: "),
    ({"NOTE": b'"{x[0]}"'}, f"{ESCALATE}.note: unknown placeholder {{x[0]}} (allowed: "),
    ({"NOTE": b'"{id:>999999999}"'},
     f"{ESCALATE}.note: unknown placeholder {{id:>999999999}} (allowed: "),
    ({"CONDITIONS": b'{"all": [' * 21 + DEFAULTS["CONDITIONS"] + b"]}" * 21},
     CONDITION + ".all[0]" * 21 + ": conditions nested deeper than 20 levels of all/any"),
], ids=["deep-json", "latin-1", "utf8-surrogate", "lone-surrogate", "nan", "infinity",
        "float-overflow", "5000-digits", "level-101", "level-huge", "sub-second", "huge-days",
        "huge-business-days", "attribute", "index", "format-spec", "deep-conditions"])
def test_hostile_policy_is_refused_naming_its_path(tmp_path: Path, slots, problem):
    # (the TARGET slot stands in both SLAs, so a bad duration is named twice)
    assert problems_of(tmp_path, policy_with(**slots))[0][:len(problem)] == problem


@pytest.mark.parametrize(("pattern", "reason"), [
    (r"(a+)+$", "a quantifier inside a repeated group can take exponential time"),
    (r"(\w+\s?)*", "a quantifier inside a repeated group can take exponential time"),
    (r"(a|aa)*$", "an alternation inside a repeated group can take exponential time"),
    (r"(a)\1", "backreferences can take exponential time"),
    (r".*.*x", "more than one open-ended quantifier (*, +, {n,}) before the last can take "
               "time polynomial of a high degree; split it into two conditions"),
    (r"\d+-\d+x", "more than one open-ended quantifier (*, +, {n,}) before the last can take "
                  "time polynomial of a high degree; split it into two conditions"),
    (r"a?b?c?d?e?x", "more than 16 combinations of alternatives and optional parts"),
])
def test_regex_that_can_backtrack_without_bound_is_refused(tmp_path: Path, pattern, reason):
    text = policy_with(CONDITIONS=leaf("subject", "matches_regex", fragment(pattern)))
    assert problems_of(tmp_path, text) == [
        f"{CONDITION}.value: {reason} (see Regular expressions in the README)"]


@pytest.mark.parametrize("pattern", [r"^\[URGENT\]", r"(?i)refund|chargeback",
                                     r"https?://\S+", r"^ORD-\d+$", r".*foo.*", r"\d+-\d+"])
def test_everyday_regexes_are_accepted(tmp_path: Path, pattern):
    text = policy_with(CONDITIONS=leaf("subject", "matches_regex", fragment(pattern)))
    assert trial(text, tmp_path) == ("accepted", "")


def test_matches_regex_reads_the_first_500_characters_of_the_value(tmp_path: Path):
    path = tmp_path / "policy.json"
    path.write_bytes(policy_with(CONDITIONS=leaf("subject", "matches_regex", b'"urgent"')))
    policy = load_policy(path)
    early = make_record(subject="x" * 494 + "urgent" + "x" * 100)
    late = make_record(subject="x" * 495 + "urgent")
    assert (plan(early, policy, NOW).fired, plan(late, policy, NOW).fired) == (("overdue",), ())


def test_python_data_nested_too_deep_is_refused_not_recursed(tmp_path: Path):
    from sla_sync.rules.policy import PolicyError, check_policy
    nested: list[Any] = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(PolicyError) as info:
        check_policy({"description": nested})
    assert [str(p) for p in info.value.problems] == [
        "description" + "[0]" * 64 + ": nested deeper than 64 levels"]


def test_target_that_a_calendar_cannot_reach_is_refused():
    from sla_sync.rules.policy import PolicyError, check_policy
    minute_a_week = {"timezone": "UTC", "week": {"mon": ["09:00-09:01"]}}
    office = {"timezone": "Europe/Berlin", "week": {day: ["09:00-17:00"] for day in
                                                    ("mon", "tue", "wed", "thu", "fri")}}
    with pytest.raises(PolicyError) as info:
        check_policy({"calendars": {"sliver": minute_a_week, "office": office}, "slas": [
            {"name": "a", "calendar": "sliver", "targets": {"resolution": "5h"}},
            {"name": "b", "calendar": "office", "targets": {"resolution": "366d"}}]})
    assert [str(p) for p in info.value.problems] == [
        "slas[0].targets.resolution: on calendar 'sliver' this target comes due after 6 "
        "years; it must come due within 1830 days"]


@pytest.mark.parametrize(("every", "message"), [
    ("0.4s", "'0.4s' is not a whole number of seconds"),
    ("99999999999999d", "'99999999999999d' is longer than 366 days"),
])
def test_run_every_refuses_an_interval_that_cannot_run(every, message):
    result = CliRunner().invoke(main, ["run", "--every", every])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert message in result.stderr


@pytest.mark.parametrize(("value", "message"), [
    (float("nan"), "number nan is out of range (at most 1e+15 in size)"),
    (-float("inf"), "number -inf is out of range (at most 1e+15 in size)"),
    (10 ** 5000, "number of 16610 bits is out of range (at most 1e+15 in size)"),
], ids=["nan", "-inf", "10**5000"])
def test_python_data_with_numbers_out_of_range_is_refused_with_the_path(value, message):
    from sla_sync.rules.policy import PolicyError, check_policy
    with pytest.raises(PolicyError) as info:
        check_policy({"rules": [{"name": "r", "conditions": {
            "name": "escalation_level", "operator": "greater_than", "value": value},
            "actions": [{"name": "add_tag", "params": {"tag": "x"}}]}]})
    assert [str(p) for p in info.value.problems] == [f"rules[0].conditions.value: {message}"]
