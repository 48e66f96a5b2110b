"""Business-time arithmetic: computations per second for spans of a day, a month and a
year, and the due-time computation for 100,000 records, on a Berlin business-hours
calendar with a lunch break and public holidays.

    python bench/bench_calendar.py [--records 100000]

Baselines measured in the same run: 24x7 (plain subtraction) for every span, and a naive
minute-by-minute walk for the one-day span (what a calendar costs when it counts minutes).
Each figure is the best of three rounds; a fresh calendar per round, so a round pays for
filling its day cache.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sla_sync.connector.model import Record  # noqa: E402
from sla_sync.rules.calendar import (  # noqa: E402
    Calendar,
    TwentyFourSeven,
    WeeklyCalendar,
    check_calendar,
)
from sla_sync.rules.clock import run_clock  # noqa: E402

SPEC = {
    "timezone": "Europe/Berlin",
    "week": {day: ["09:00-12:30", "13:30-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["12-24", "12-31", {"country": "DE", "subdiv": "BE"}],
}
START = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


def berlin() -> WeeklyCalendar:
    calendar, problems = check_calendar("berlin", SPEC)
    assert calendar is not None, problems
    return calendar


def best(rounds: int, work) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def naive_minutes(calendar: WeeklyCalendar, start: datetime, end: datetime) -> float:
    minutes, t = 0, start
    while t < end:
        minutes += calendar.is_open(t)
        t += timedelta(minutes=1)
    return minutes * 60.0


Row = tuple[str, int, float, float | None]  # case, n, seconds, 24x7 seconds


def on_both(rounds: int, work: Callable[[Calendar], object]) -> tuple[float, float]:
    """The best time of `work` on a fresh Berlin calendar and on a fresh 24x7 one."""
    return (best(rounds, lambda: work(berlin())),
            best(rounds, lambda: work(TwentyFourSeven())))


def span_rows(starts: list[datetime]) -> list[Row]:
    """business_seconds over spans of a day, a month and a year; the naive walk for a day."""
    rows: list[Row] = []
    for label, span, count in (("1 day", timedelta(days=1), 2000),
                               ("1 month", timedelta(days=30), 2000),
                               ("1 year", timedelta(days=365), 200)):
        pairs = [(s, s + span) for s in starts[:count]]

        def spans(calendar: Calendar, pairs: list[tuple[datetime, datetime]] = pairs) -> None:
            for a, b in pairs:
                calendar.business_seconds(a, b)

        rows.append((f"business_seconds, {label}", count, *on_both(3, spans)))
        if label == "1 day":
            few = pairs[:50]

            def naive(few=few) -> None:
                calendar = berlin()
                for a, b in few:
                    naive_minutes(calendar, a, b)

            rows.append(("  naive minute walk, 1 day", 50, best(1, naive), None))
    return rows


def add_rows(rng: random.Random, starts: list[datetime]) -> list[Row]:
    """add_business_seconds of up to 40 hours."""
    adds = [(s, rng.randrange(60, 60 * 60 * 40)) for s in starts]

    def add(calendar: Calendar) -> None:
        for a, seconds in adds:
            calendar.add_business_seconds(a, seconds)

    return [("add_business_seconds, <= 40h", len(adds), *on_both(3, add))]


def due_rows(rng: random.Random, count: int) -> list[Row]:
    """The resolution clock and its due time for `count` open records."""
    created = [START + timedelta(minutes=rng.randrange(0, 60 * 24 * 30)) for _ in range(count)]
    records = [Record(id=str(i), kind="ticket", created_at=c, updated_at=c,
                      status="open") for i, c in enumerate(created)]
    now = START + timedelta(days=31)

    def due(calendar: Calendar) -> None:
        for record in records:
            run_clock(record, "resolution", 8 * 3600, calendar, (), ("solved",), now)

    return [(f"clock + due_at, {count:,} records", count, *on_both(1, due))]


def print_table(rows: list[Row]) -> None:
    print(f"{'case':<40} {'n':>7} {'seconds':>8} {'per second':>11} {'24x7 per s':>11}")
    for name, count, seconds, baseline in rows:
        base = f"{count / baseline:>11,.0f}" if baseline else f"{'':>11}"
        print(f"{name:<40} {count:>7} {seconds:>8.3f} {count / seconds:>11,.0f} {base}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(7)
    starts = [START + timedelta(minutes=rng.randrange(0, 60 * 24 * 365)) for _ in range(2000)]
    rows = span_rows(starts)
    rows += add_rows(rng, starts)
    rows += due_rows(rng, args.records)
    print_table(rows)


if __name__ == "__main__":
    main()
