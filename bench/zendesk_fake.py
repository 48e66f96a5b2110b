"""A local HTTP helpdesk paged as Zendesk pages, for bench/bench_desk.py --helpdesk zendesk-fake.

    python bench/zendesk_fake.py DESK.json EMAIL   # token in $BENCH_ZENDESK_TOKEN

It is tests/faultdesk.py's desk (the part of the Zendesk Support API v2 the connector
uses, each answer with the place in ../shared/specs/zendesk-support-oas.yaml that documents
it: the cursor-based ticket export and the time-based ticket event export, 1,000 items a
page, leaving out the most recent minute; update_many jobs of up to 100 tickets; show
ticket and its audits), loaded with the tickets of a generated desk (the records whose kind
is ticket: Zendesk has no leads), and no faults. The generator's times are whole minutes;
each ticket's are moved back by its number modulo 60 seconds, as a helpdesk stamps each
ticket with its own second (a million generated records put over 1,200 creations in one
second, more than the time-based event export's 1,000 a page can page past). Two
differences, both about time:

- its clock is the wall clock, shifted so that it starts one minute and a second after the
  desk's `now` (so the export holds every ticket): Zendesk stamps each update with the
  second it happens, and so does this desk;
- `POST /bench/advance {"seconds": N}` moves its clock on (the bench's "1 minute later"),
  `POST /bench/touch {"share": S}` makes people edit that share of the tickets (a tag,
  a new updated_at, an event each), spread evenly over the next minute of its clock as a
  team's edits would be (all in one second, 1% of a million tickets would be a bulk update
  of 8,000, a busy second), answering how many, and `POST /bench/requests` answers how
  many requests of each kind the desk has served since the last time it was asked (`KINDS`),
  the fewest the same reads and writes could have taken (`Window.minimum`), and the most
  events any one second got meanwhile (all, and the API user's: sla-sync's). Not Zendesk's
  API: the bench's hands.

The exports answer what FaultDesk's answer (the same pages: tests/test_zendesk_fake.py compares
them), but from indexes kept as tickets change: the tickets by (updated_at, id) in a sorted
list, the events in time order, each page found by bisection. FaultDesk sorts every ticket
for each page, which at a million tickets would be the bench's bottleneck, not sla-sync.

It prints its base URL on one line, then serves until stdin closes.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from faultdesk import (  # noqa: E402
    EXPORT_LAG,
    EXPORT_PAGE,
    Fault,
    FaultDesk,
    Ticket,
    export_position,
)

TOUCH_TAG = "bench-touched"
#: The author of the desk's update_many updates (tests/faultdesk.py): the API user.
API_USER = 361099
#: The kinds of request the bench counts (`POST /bench/requests`), by path.
KINDS = (("/api/v2/incremental/ticket_events", "event export"),
         ("/api/v2/incremental/tickets", "ticket export"),
         ("/api/v2/tickets/update_many", "update_many"),
         ("/api/v2/job_statuses", "job polls"))
#: Jobs queued or running at once on an account (Zendesk's rate limits page, "Job limit",
#: which TicketsUpdateMany points to: 30), polled together by Show Many Job Statuses
#: (bench/bench_requests.py counts the same).
JOBS_AT_ONCE = 30
#: Tickets in one update_many job (TicketsUpdateMany's request body: "an array of up to
#: 100 ticket objects").
JOB_TICKETS = 100
#: The generator's channels as Zendesk's `via.channel` names them.
CHANNELS = {"email": "email", "web": "web", "chat": "chat", "phone": "voice"}


@dataclasses.dataclass
class Window:
    """What one sync read and wrote (since the bench last asked): the event export's first
    start time, the events it served (id -> second), the ticket versions the ticket export
    served, how many pages of each export it asked for, the tickets sent in update_many
    jobs."""

    first_start: int | None = None
    events: dict[int, int] = dataclasses.field(default_factory=dict)
    tickets: set[tuple[int, str]] = dataclasses.field(default_factory=set)
    event_pages: int = 0
    ticket_pages: int = 0
    updated: int = 0

    def minimum(self) -> dict[str, int]:
        """The fewest requests of each kind for what was read and written: a page per 1,000
        events read and per 1,000 ticket versions (one, empty, when none), a job per 100
        tickets updated, one poll per 30 jobs. The event export pages by time and repeats the
        second each page ends on; `paging` says what that costs for these events."""
        jobs = math.ceil(self.updated / JOB_TICKETS)
        return {"event export": _pages(len(self.events)) if self.event_pages else 0,
                "ticket export": _pages(len(self.tickets)) if self.ticket_pages else 0,
                "update_many": jobs, "job polls": math.ceil(jobs / JOBS_AT_ONCE)}

    def paging(self) -> int:
        """The pages the time-based event export needs to bring these events from the first
        start time asked: `pages_needed`."""
        if self.first_start is None:
            return 0
        return pages_needed(sorted(self.events.values()), self.first_start)


def pages_needed(times: list[int], start: int) -> int:
    """How many pages of the time-based event export bring every event of these seconds
    (sorted) from `start` on, each page starting at the last one's `end_time` (its last
    event's second, whose events come again: IncrementalTicketEvents), a page of one second
    only continuing at the next second (as the connector does), the last page the one with
    fewer than 1,000 events (`end_of_stream`)."""
    pages, first = 0, bisect.bisect_left(times, start)
    while True:
        pages += 1
        if len(times) - first < EXPORT_PAGE:
            return pages
        end = times[first + EXPORT_PAGE - 1]
        start = end if end > start else start + 1
        first = bisect.bisect_left(times, start)


def _pages(items: int) -> int:
    return max(1, math.ceil(items / EXPORT_PAGE))  # an empty answer is still one request


class BenchDesk(FaultDesk):
    """A FaultDesk whose clock runs with the wall clock from `start` on."""

    def __init__(self, email: str, token: str, start: int,
                 clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._origin = clock()
        self._offset = float(start)
        super().__init__(email, token, now=start)
        #: Events per second since the bench last asked (`/bench/requests`), and of those
        #: the API user's (sla-sync's writes).
        self._seconds: Counter[int] = Counter()
        self._own_seconds: Counter[int] = Counter()
        self._order: list[tuple[int, int]] = []  # (updated_at, id) of every ticket, sorted
        self._times: list[int] = []  # the events' timestamps, in self.events' order
        self._indexed = False
        self._window = Window()

    def index(self) -> None:
        """Sort the tickets and events once (after loading); updates keep them sorted."""
        self._order = sorted((t.updated_at, t.id) for t in self.tickets.values())
        self.events.sort(key=lambda e: (e["timestamp"], e["id"]))
        self._times = [e["timestamp"] for e in self.events]
        self._indexed = True

    def _touch(self, ticket: Ticket, children: list[dict[str, Any]], author: int,
               comments: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
        before = (ticket.updated_at, ticket.id)
        audit = super()._touch(ticket, children, author, comments)
        if self._indexed:
            at = bisect.bisect_left(self._order, before)
            assert self._order[at] == before
            del self._order[at]
            bisect.insort(self._order, (ticket.updated_at, ticket.id))
        return audit

    def _audit(self, ticket: Ticket, at: int, children: list[dict[str, Any]], author: int,
               comments: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
        audit = super()._audit(ticket, at, children, author, comments)
        self._seconds[at] += 1
        if author == API_USER:
            self._own_seconds[at] += 1
        if self._indexed:
            event = self.events.pop()
            where = bisect.bisect_right(self._times, at)  # the end, but for a clock stepped back
            self.events.insert(where, event)
            self._times.insert(where, at)
        return audit

    def _ticket_export(self, query: dict[str, str]) -> dict[str, Any]:
        body = self._ticket_export_page(query)
        self._window.ticket_pages += 1
        self._window.tickets.update((t["id"], t["updated_at"]) for t in body["tickets"])
        return body

    def _event_export(self, query: dict[str, str], comments: bool) -> dict[str, Any]:
        body = self._event_export_page(query, comments)
        window = self._window
        window.event_pages += 1
        if window.first_start is None:
            window.first_start = int(query["start_time"])
        window.events.update((e["id"], e["timestamp"]) for e in body["ticket_events"])
        return body

    def _ticket_export_page(self, query: dict[str, str]) -> dict[str, Any]:
        if not self._indexed:
            return super()._ticket_export(query)
        position = export_position(query)
        first = bisect.bisect_right(self._order, position)
        last_ready = bisect.bisect_right(self._order, (self.now - EXPORT_LAG, 1 << 62))
        keys = self._order[first:min(last_ready, first + self.export_page)]
        page = [self.tickets[ticket_id] for _, ticket_id in keys]
        return self._ticket_page(query, page, position, last_ready - first <= self.export_page)

    def _event_export_page(self, query: dict[str, str], comments: bool) -> dict[str, Any]:
        if not self._indexed:
            return super()._event_export(query, comments)
        start = int(query["start_time"])
        first = bisect.bisect_left(self._times, start)
        last_ready = bisect.bisect_right(self._times, self.now - EXPORT_LAG)
        page = self.events[first:min(last_ready, first + EXPORT_PAGE)]
        if comments:
            page = self._with_comments(page)
        end = page[-1]["timestamp"] if page else start
        return {"ticket_events": page, "count": len(page), "end_time": end,
                "next_page": f"{self.url}/api/v2/incremental/ticket_events.json"
                             f"?start_time={end}",
                "end_of_stream": last_ready - first < EXPORT_PAGE}

    @property  # type: ignore[override]
    def now(self) -> int:
        return int(self._offset + self._clock() - self._origin)

    @now.setter
    def now(self, value: int) -> None:
        if value > self.now:  # an update stamped ahead moves the clock on, never back
            self._offset += value - self.now

    def answer(self, method: str, path: str, query: dict[str, str], body: Any,
               fault: Fault | None) -> tuple[int, dict[str, str], Any]:
        if path == "/bench/advance" and method == "POST":
            with self.lock:
                self._offset += float((body or {}).get("seconds", 0))
                return 200, {}, {"now": self.now}
        if path == "/bench/touch" and method == "POST":
            with self.lock:
                share = float((body or {}).get("share", 0.01))
                step = max(1, round(1 / share))
                touched = sorted(self.tickets)[::step]
                start = self.now
                for n, ticket_id in enumerate(touched):
                    self.now = start + n * 60 // len(touched)
                    self.person_edits(ticket_id, TOUCH_TAG)
                return 200, {}, {"touched": len(touched), "now": self.now}
        if path == "/bench/requests" and method == "POST":
            with self.lock:
                served = Counter(kind_of(p) for _, p, _ in self.log if not p.startswith("/bench/"))
                busiest = {"all": max(self._seconds.values(), default=0),
                           "own": max(self._own_seconds.values(), default=0)}
                window, self._window = self._window, Window()
                self.log.clear()
                self._seconds.clear()
                self._own_seconds.clear()
                return 200, {}, {"requests": dict(served), "events": busiest,
                                 "minimum": window.minimum(), "paging": window.paging()}
        if path == "/api/v2/tickets/update_many" and method == "PUT":
            with self.lock:
                self._window.updated += len((body or {}).get("tickets") or [])
        return super().answer(method, path, query, body, fault)


def kind_of(path: str) -> str:
    """The kind of a request the desk served (`KINDS`; a ticket's audits, else "other")."""
    if path.endswith("/audits"):
        return "audits"
    return next((kind for start, kind in KINDS if path.startswith(start)), "other")


def unix_of(text: str | None) -> int | None:
    return None if text is None else int(datetime.fromisoformat(text).timestamp())


def ticket_of(number: int, raw: dict[str, Any]) -> Ticket:
    """A generated record as a Zendesk ticket: its tier as the connector's default tag
    (`tier_NAME`), its first reply as the metric set's reply time, its times `number % 60`
    seconds earlier."""
    spread = number % 60
    created = (unix_of(raw["created_at"]) or 0) - spread
    replied = unix_of(raw.get("first_response_at"))
    replied = None if replied is None else replied - spread
    solved = unix_of(raw.get("solved_at"))
    updated = unix_of(raw["updated_at"])
    return Ticket(id=number, subject=str(raw.get("subject") or f"Ticket {number}"),
                  created_at=created,
                  updated_at=created if updated is None else updated - spread,
                  status=str(raw.get("status") or "open"),
                  priority=raw.get("priority") or "normal",
                  tags=[f"tier_{raw.get('tier') or 'standard'}"],
                  channel=CHANNELS.get(str(raw.get("channel")), "email"),
                  reply_minutes=None if replied is None else max(0, (replied - created) // 60),
                  solved_at=None if solved is None else solved - spread)


def main() -> None:
    desk_path, email = Path(sys.argv[1]), sys.argv[2]
    records = json.loads(desk_path.read_text(encoding="utf-8"))["records"]
    tickets = [r for r in records if r.get("kind", "ticket") == "ticket"]
    loaded = [ticket_of(number, raw) for number, raw in enumerate(tickets, start=1)]
    del records, tickets
    latest = max(ticket.updated_at for ticket in loaded)
    desk = BenchDesk(email, os.environ["BENCH_ZENDESK_TOKEN"], start=latest + EXPORT_LAG + 1)
    for ticket in loaded:
        desk.add(ticket)
    del loaded
    desk.index()
    desk.start()
    print(desk.url, flush=True)
    sys.stdin.read()  # until the bench closes it
    desk.stop()


if __name__ == "__main__":
    main()
