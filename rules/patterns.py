"""Regular expressions for `matches_regex` that cannot hang a sync.

Python's `re` backtracks, so a pattern such as `(a+)+$` takes exponential time on a subject
like "aaaa...!", and `.*.*.*x` polynomial time of a high degree. A policy is checked before
it runs; `check_pattern` refuses what can backtrack without bound, reading the pattern's
parse tree:

- no backreferences (`\\1`, `(?P=name)`, `(?(1)...)`);
- no quantifier over a group that holds another quantifier or an alternation (`(a+)+`,
  `(a|aa)*`, `(\\w+\\s?)*`);
- at most one open-ended quantifier (`*`, `+`, `{n,}`, or a range wider than 16) per pattern,
  besides a last one over a single character (`.*foo.*`);
- the alternatives a match can choose between (alternations and small ranges such as `?`,
  multiplied) at most 16.

With these, one search costs at most about n^2 * 16 steps for a value of n characters, and
the operator reads at most the first `INPUT_LIMIT` characters of the value. What is refused
can be written as several conditions (`all` of two `matches_regex`).
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

#: matches_regex searches at most this many characters of a value.
INPUT_LIMIT = 500
MAX_PATTERN_LENGTH = 1000
MAX_CHOICES = 16
#: A bounded range wider than this counts as open-ended.
WIDE_RANGE = 16

_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT}
_REFERENCES = {sre.GROUPREF, sre.GROUPREF_EXISTS}
_SINGLE = {sre.ANY, sre.IN, sre.LITERAL, sre.NOT_LITERAL, sre.CATEGORY}


class _Refused(Exception):
    pass


def check_pattern(pattern: str) -> str | None:
    """None when `pattern` is a regular expression matches_regex may run; else why not."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"a pattern longer than {MAX_PATTERN_LENGTH} characters"
    try:
        re.compile(pattern)
        tree = sre_parse.parse(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        return f"invalid regular expression: {exc}"
    items = list(tree)
    if items and _single_width_repeat(*items[-1]):
        # A search ends at its first match, and a last repeat of one character cannot make
        # what precedes it backtrack: `.*foo.*` and `\\d+-\\d+` cost what `.*foo` does.
        items.pop()
    counts = {"open": 0, "choices": 1}
    try:
        _walk(items, counts, inside_repeat=False)
    except _Refused as exc:
        return f"{exc} (see Regular expressions in the README)"
    return None


def _single_width_repeat(op: Any, av: Any) -> bool:
    if op not in _REPEATS:
        return False
    body = list(av[2])
    return len(body) == 1 and body[0][0] in _SINGLE


def _walk(items: Any, counts: dict[str, int], inside_repeat: bool) -> None:
    for op, av in items:
        if op in _REFERENCES:
            raise _Refused("backreferences can take exponential time")
        if op in _REPEATS:
            low, high, body = av
            if inside_repeat and high != low:
                raise _Refused("a quantifier inside a repeated group can take exponential "
                               "time")
            if high == sre.MAXREPEAT or high - low > WIDE_RANGE:
                counts["open"] += 1
                if counts["open"] > 1:
                    raise _Refused("more than one open-ended quantifier (*, +, {n,}) before "
                                   "the last can take time polynomial of a high degree; "
                                   "split it into two conditions")
            elif high != low:
                _choose(counts, high - low + 1)
            _walk(body, counts, inside_repeat or high > 1)
        elif op == sre.BRANCH:
            if inside_repeat:
                raise _Refused("an alternation inside a repeated group can take exponential "
                               "time")
            _choose(counts, len(av[1]))
            for branch in av[1]:
                _walk(branch, counts, inside_repeat)
        elif op == sre.SUBPATTERN:
            _walk(av[3], counts, inside_repeat)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _walk(av[1], counts, inside_repeat)
        elif op == sre.ATOMIC_GROUP:
            _walk(av, counts, inside_repeat)


def _choose(counts: dict[str, int], alternatives: int) -> None:
    counts["choices"] *= alternatives
    if counts["choices"] > MAX_CHOICES:
        raise _Refused(f"more than {MAX_CHOICES} combinations of alternatives and optional "
                       "parts")
