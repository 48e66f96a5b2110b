"""`SlaMark`: which SLA a record was under, and since when. A value of its own, so that the
state store can keep marks without loading the rules engine (tests/test_boundaries.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SlaMark:
    """Which SLA a record was under when last evaluated, and since when (the instant its
    clocks restart from under `on_target_change: restart`)."""

    name: str
    since: datetime
