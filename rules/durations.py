"""Durations as rule authors write them: `90s`, `30m`, `4h`, `2d`, `2bd`, or combined (`1h30m`).

`d` is 24 hours of the calendar's business time; `bd` is a business day: the calendar's
average working day (8 hours on a 09:00-17:00 Monday-to-Friday calendar). On such a
calendar a ticket created Monday 16:00 with a `1bd` target is due Tuesday 16:00, and with
a `1d` target (24 business hours, three working days) Thursday 16:00. On `24x7` a business
day is 24 hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest duration: a year (366 days of business time, or 366 business days). Longer
#: ones are mistakes, and would run clocks past any date a helpdesk stores.
MAX_DAYS = 366
_PART = re.compile(r"(\d+(?:\.\d+)?)(bd|[smhd])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:bd|[smhd]))+")


class _HasWorkingDay(Protocol):
    @property
    def working_day_seconds(self) -> float: ...


@dataclass(frozen=True)
class Target:
    """An SLA target: fixed business seconds plus a number of business days."""

    seconds: int = 0
    business_days: float = 0.0

    def seconds_on(self, calendar: _HasWorkingDay) -> int:
        # at least a second: a tiny fraction of a short business day is still a target
        return max(1, self.seconds + round(self.business_days * calendar.working_day_seconds))


def parse_target(text: object) -> Target:
    """A target duration; ValueError with a message a rule author can act on."""
    if not isinstance(text, str) or len(text) > 100 or not _WHOLE.fullmatch(text.strip()):
        shown = repr(text) if not isinstance(text, str) or len(text) <= 100 else \
            f"{text[:40]!r}... ({len(text)} characters)"
        raise ValueError(f"{shown} is not a duration "
                         "(write e.g. 90s, 30m, 4h, 2d, 2bd or 1h30m)")
    seconds = Fraction(0)
    days = Fraction(0)
    for number, unit in _PART.findall(text):
        if unit == "bd":
            days += Fraction(number)
        else:
            seconds += Fraction(number) * UNITS[unit]
    if seconds <= 0 and days <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    if seconds > MAX_DAYS * UNITS["d"] or days > MAX_DAYS:
        raise ValueError(f"{text!r} is longer than {MAX_DAYS} days")
    if seconds.denominator != 1:
        raise ValueError(f"{text!r} is not a whole number of seconds")
    return Target(int(seconds), float(days))


def parse_duration(text: object) -> int:
    """Seconds in a duration without business days (intervals such as `--every 5m`)."""
    target = parse_target(text)
    if target.business_days:
        raise ValueError(f"{text!r}: business days (bd) need a calendar; use s, m, h or d")
    return target.seconds


def format_duration(seconds: float) -> str:
    """A short human form, e.g. 5400 -> '1h30m', -90 -> '-1m30s'."""
    sign = "-" if seconds < 0 else ""
    rest = round(abs(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + ("".join(parts) or "0s")
