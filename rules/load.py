"""The desk's load, measured once per sync, for rules that react to a peak.

Variables (rules only; an SLA's `when` cannot use them, since a record's SLA must not
change with other records):

- `group_open`: open records (status not in `closed_statuses`) in the record's group;
- `group_at_risk`: of those, the ones at risk: a running clock of their SLA at or past
  AT_RISK_PCT percent of its target, or breached (the live page's "at risk" and breached);
- `group_arrivals_1h`: records of the record's group created in the hour up to `now`;
- `desk_open`: open records in the whole desk.

They are counted over the state file's copy of the desk (the mirror) as it stands when
the sync starts evaluating, so every record of one sync sees the same figures, whatever
the order in which the sync plans them. What a record's rules answer then depends on
other records; the wake-up index cannot foresee that, so a sync whose figures differ from
those of the last full evaluation evaluates everything (sync_run.py; `digest`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

#: An open record is at risk once a running target is this far used (and not breached):
#: group_at_risk, the live page and the Prometheus gauges.
AT_RISK_PCT = 75.0
ARRIVALS_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class GroupLoad:
    open: int = 0
    at_risk: int = 0
    arrivals_1h: int = 0


@dataclass(frozen=True)
class Load:
    """One sync's figures; the empty Load (no sync: `test`, `backtest`) reads 0 for all."""

    groups: Mapping[str, GroupLoad] = field(default_factory=dict)
    desk_open: int = 0

    def facts(self, group: str) -> dict[str, int]:
        mine = self.groups.get(group, GroupLoad())
        return {"group_open": mine.open, "group_at_risk": mine.at_risk,
                "group_arrivals_1h": mine.arrivals_1h, "desk_open": self.desk_open}

    def digest(self) -> str:
        """The figures as a text that is the same exactly when they are."""
        rows = sorted((g, v.open, v.at_risk, v.arrivals_1h) for g, v in self.groups.items())
        return repr((self.desk_open, rows))


@dataclass(frozen=True)
class Entry:
    """What the count needs of one record of the mirror."""

    group: str
    open: bool
    created_at: datetime
    at_risk: bool = False


def measure(entries: Iterable[Entry], now: datetime) -> Load:
    groups: dict[str, list[int]] = {}
    desk = 0
    since = now - ARRIVALS_WINDOW
    for entry in entries:
        counts = groups.setdefault(entry.group, [0, 0, 0])
        if entry.open:
            desk += 1
            counts[0] += 1
            counts[1] += entry.at_risk
        if since < entry.created_at <= now:
            counts[2] += 1
    return Load({g: GroupLoad(*c) for g, c in groups.items()}, desk)


def at_risk(clocks: Mapping[str, Any]) -> bool:
    """A record at risk: a running clock with a target at or past AT_RISK_PCT, or any
    clock breached."""
    return any(clock.target_seconds is not None and (
        clock.breached or (clock.running and clock.elapsed_pct >= AT_RISK_PCT))
        for clock in clocks.values())
