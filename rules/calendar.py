"""Calendars: when the SLA clock runs.

A calendar answers two questions, both in seconds of business time:
`business_seconds(start, end)` and `add_business_seconds(start, seconds)`. Only the
built-in `24x7` calendar exists so far; business-hours calendars (a timezone, working
intervals per weekday, holidays) share this interface and arrive with the policy shape
already reserved for them under `calendars`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

ALWAYS = "24x7"


class Calendar(Protocol):
    name: str
    timezone: str

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Business time between two instants (0 when end <= start)."""
        ...

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The instant at which `seconds` of business time have passed since `start`."""
        ...


class TwentyFourSeven:
    """Every second counts."""

    name = ALWAYS
    timezone = "UTC"

    def business_seconds(self, start: datetime, end: datetime) -> float:
        return max(0.0, (end - start).total_seconds())

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)


BUILT_IN: dict[str, Calendar] = {ALWAYS: TwentyFourSeven()}
