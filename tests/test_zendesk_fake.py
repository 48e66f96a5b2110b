"""bench/zendesk_fake.py's indexed exports answer exactly the pages tests/faultdesk.py's
sorting exports answer, through updates, ties in updated_at and the export's minute lag."""

from __future__ import annotations

import random
from typing import Any

from conftest import bench_script
from faultdesk import EXPORT_LAG, FaultDesk, Ticket

fake = bench_script("zendesk_fake")


class Clock:
    def __init__(self) -> None:
        self.at = 0.0

    def __call__(self) -> float:
        return self.at


def walk(desk: Any, export: Any, query: dict[str, str], key: str,
         comments: bool = False) -> list[list[Any]]:
    """Every page of one export from `query` on, as (ids, the page's cursor fields);
    `comments`: the event export with its comment_events sideload."""
    pages = []
    for _ in range(1000):
        body = export(desk, dict(query)) if key == "tickets" else \
            export(desk, dict(query), comments)
        pages.append([[item["id"] for item in body[key]],
                      {k: v for k, v in body.items() if k not in (key, "metric_sets")}])
        if body["end_of_stream"]:
            return pages
        if key == "tickets":
            query = {"cursor": body["after_cursor"]}
        else:
            if body["end_time"] == int(query["start_time"]):
                return pages  # a page of one second only: the connector stops here too
            query = {"start_time": str(body["end_time"])}
    raise AssertionError("the export never ended")


def test_indexed_exports_page_as_the_sorting_ones(tmp_path: Any) -> None:
    rng = random.Random(7)
    clock = Clock()
    start = 1_800_000_000
    desk = fake.BenchDesk("a@example.com", "t", start=start, clock=clock)
    try:
        for number in range(1, 301):
            created = start - rng.randrange(0, 5000)
            desk.add(Ticket(id=number, subject=f"T{number}", created_at=created,
                            updated_at=created + rng.choice([0, 0, 5, 60])))
        desk.index()
        desk.export_page = 7
        for step in range(40):
            for ticket_id in rng.sample(range(1, 301), rng.randrange(0, 12)):
                desk.person_edits(ticket_id, f"edit-{step}")
            clock.at += rng.choice([0, 0.4, 1, 30, 61])
            since = str(start - rng.randrange(0, 6000) + step * 20)
            for key, indexed, sorting in (
                    ("tickets", fake.BenchDesk._ticket_export, FaultDesk._ticket_export),
                    ("ticket_events", fake.BenchDesk._event_export, FaultDesk._event_export)):
                query = {"start_time": since, "include": "metric_sets"}
                for comments in (False, True) if key == "ticket_events" else (False,):
                    assert walk(desk, indexed, query, key, comments) == walk(
                        desk, sorting, query, key, comments), (step, key, comments)
        assert desk._order == sorted((t.updated_at, t.id) for t in desk.tickets.values())
        assert max(t.updated_at for t in desk.tickets.values()) > start + EXPORT_LAG
    finally:
        desk.httpd.server_close()
