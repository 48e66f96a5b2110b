"""The fault suite's tally (tests/test_faults.py), printed as a table at the end of the test
session by tests/conftest.py's pytest_terminal_summary, with -q too.

Counts of tests that hold are kept apart from those of tests marked xfail (a known defect,
named in the test): the zeros the suite enforces are the first ones."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

COLUMNS = ("kill points tried", "syncs completed", "writes lost", "writes repeated",
           "notes repeated in flight", "alerts repeated in flight",
           "alerts repeated under a new id", "tracebacks")


@dataclass
class Tally:
    faults: Counter[str] = field(default_factory=Counter)
    figures: Counter[str] = field(default_factory=Counter)
    tests: int = 0

    def add(self, other: Tally) -> None:
        self.faults.update(other.faults)
        self.figures.update(other.figures)
        self.tests += other.tests


HOLDING = Tally()
KNOWN_DEFECTS = Tally()  # tests marked xfail(strict=True): what the defects cost


def table() -> str:
    """The table, or '' when no fault test ran."""
    if not HOLDING.tests and not KNOWN_DEFECTS.tests:
        return ""
    kinds = sorted(set(HOLDING.faults) | set(KNOWN_DEFECTS.faults))
    rows = [("tests", HOLDING.tests, KNOWN_DEFECTS.tests)]
    rows += [(f"faults injected: {kind}", HOLDING.faults[kind], KNOWN_DEFECTS.faults[kind])
             for kind in kinds]
    rows += [(name, HOLDING.figures[name], KNOWN_DEFECTS.figures[name]) for name in COLUMNS]
    width = max(len(row[0]) for row in rows)
    lines = [f"{'':{width}}  {'holding':>8}  {'known defects (xfail)':>21}"]
    lines += [f"{name:{width}}  {a:>8}  {b:>21}" for name, a, b in rows]
    return "\n".join(lines)
