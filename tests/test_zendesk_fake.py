"""bench/zendesk_fake.py's indexed exports answer exactly the pages tests/faultdesk.py's
sorting exports answer, through updates, ties in updated_at and the export's minute lag."""

from __future__ import annotations

import email.utils
import random
from typing import Any

import requests

import zendesk_spec
from conftest import bench_script
from faultdesk import EXPORT_LAG, EXPORT_PAGE, FaultDesk, Ticket

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


def test_the_event_export_pages_a_busy_second_as_zendesk_documents(tmp_path: Any) -> None:
    """IncrementalTicketEvents (../shared/specs/zendesk-support-oas.yaml): the answer holds
    the ExportIncrementalTicketEventsResponse fields; `end_time` is the page's last event's
    time and `next_page` starts there (the schema's example: next_page's start_time is the
    end_time), so a second of more than a page gives the same page again; events of the
    last minute are left out (IncrementalUnixTime); the Date header is the desk's clock."""
    start = 1_800_000_000
    desk = FaultDesk("a@example.com", "t", now=start).start()
    try:
        for number in range(1, 1201):  # 1,200 creations in one second
            desk.add(Ticket(id=number, subject=f"T{number}", created_at=start,
                            updated_at=start))
        desk.add(Ticket(id=1201, subject="late", created_at=start + 10, updated_at=start + 10))
        desk.now = start + 69  # the 1,201st ticket's creation is inside the last minute

        def page(start_time: int) -> tuple[dict[str, Any], requests.Response]:
            response = requests.get(f"{desk.url}/api/v2/incremental/ticket_events.json",
                                    params={"start_time": start_time},
                                    auth=("a@example.com/token", "t"), timeout=10)
            response.raise_for_status()
            return response.json(), response

        body, response = page(start)
        assert email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp() \
            == start + 69
        if zendesk_spec.available():
            schema = zendesk_spec.spec_dict()["components"]["schemas"][
                "ExportIncrementalTicketEventsResponse"]
            assert set(body) == set(schema["properties"])
            example = schema["example"]
            assert example["next_page"].endswith(f"start_time={example['end_time']}")
        assert body["count"] == len(body["ticket_events"]) == EXPORT_PAGE
        assert body["end_time"] == start and body["end_of_stream"] is False
        assert body["next_page"].endswith(f"start_time={start}")
        again, _ = page(body["end_time"])
        assert again["ticket_events"] == body["ticket_events"]  # the same page again
        rest, _ = page(start + 1)
        assert rest["ticket_events"] == [] and rest["end_of_stream"] is True
        desk.now += 1
        assert [e["ticket_id"] for e in page(start + 1)[0]["ticket_events"]] == [1201]
    finally:
        desk.stop()


def test_pages_needed_counts_the_second_each_page_ends_on_again() -> None:
    """The bench's paging figure (bench/zendesk_fake.py `pages_needed`) walks the pages the
    time-based export gives: each starts at the last one's end_time, whose events come
    again. Seconds of 500 events (sla-sync's paced writes, applied at once) make every page
    end on a whole second: two pages per 1,000 events. Seconds of 499 leave two events of
    the third second on each page: barely more than one page per 1,000."""
    def seconds(per_second: int, count: int) -> list[int]:
        return [100 + n // per_second for n in range(count)]

    assert fake.pages_needed([], 100) == 1  # an empty answer is still one request
    assert fake.pages_needed(seconds(1, 999), 100) == 1
    assert fake.pages_needed(seconds(1, 1000), 100) == 2  # the page of 1,000 is not the end
    assert fake.pages_needed(seconds(1, 5000), 100) == 6  # 999 new events a page
    assert fake.pages_needed(seconds(500, 10_000), 100) == 20
    assert fake.pages_needed(seconds(499, 10_000), 100) == 11
    assert fake.pages_needed(seconds(500, 10_000), 110) == 10  # from a later start
    assert fake.pages_needed(seconds(1500, 3000), 100) == 3  # a busy second: on past it


def test_the_window_counts_the_minimum_of_what_a_sync_read_and_wrote() -> None:
    """`Window.minimum`: distinct events and ticket versions served, a page each per 1,000
    (one when the export was asked at all), a job per 100 tickets, a poll per 30 jobs."""
    window = fake.Window()
    assert window.minimum() == {"event export": 0, "ticket export": 0, "update_many": 0,
                                "job polls": 0}
    window.first_start = 100
    window.events = {n: 100 + n // 500 for n in range(2500)}
    window.event_pages = 9
    window.tickets = {(n, "2026-03-02T12:00:00Z") for n in range(1001)}
    window.ticket_pages = 2
    window.updated = 3101
    assert window.minimum() == {"event export": 3, "ticket export": 2, "update_many": 32,
                                "job polls": 2}
    assert window.paging() == 5  # seconds of 500: each page repeats its last one
