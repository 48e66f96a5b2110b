"""Durations as rule authors write them: `90s`, `30m`, `4h`, `2d`, or combined (`1h30m`).

`d` is 24 hours of the calendar, not a working day.
"""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")


def parse_duration(text: object) -> int:
    """Seconds in a duration string; ValueError with a message a rule author can act on."""
    if not isinstance(text, str) or not _WHOLE.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a duration (write e.g. 90s, 30m, 4h, 2d or 1h30m)")
    seconds = sum(float(number) * UNITS[unit] for number, unit in _PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return round(seconds)


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
