"""Requests per sync against each vendor's documented minimum: a scripted scenario per
connector (N changed records read, M of them given the same field change, K of those a
note), run through the connector as the sync loop drives it (a fetch, then apply_many in
batches of `capabilities.batch_size`), against a local fake of the vendor's API served by
`responses` (no network). Counted, not timed.

    python bench/bench_requests.py [--changed 450] [--writes 250] [--notes 120]

How each minimum is derived is in docs/performance.md, "Requests". Prints one line per
connector and request kind, then the totals; exits 1 when a connector is more than 5% over.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import responses
from requests.auth import HTTPBasicAuth

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sla_sync.connector.base import Connector, apply_each  # noqa: E402
from sla_sync.connector.freshdesk import Freshdesk  # noqa: E402
from sla_sync.connector.freshdesk import Options as FreshdeskOptions  # noqa: E402
from sla_sync.connector.http import HeaderToken, HttpClient  # noqa: E402
from sla_sync.connector.hubspot import HubSpot  # noqa: E402
from sla_sync.connector.hubspot import Options as HubSpotOptions  # noqa: E402
from sla_sync.connector.jsm import JSM  # noqa: E402
from sla_sync.connector.model import ChangeSet, Record  # noqa: E402
from sla_sync.connector.rt import RT  # noqa: E402
from sla_sync.connector.rt import Options as RTOptions  # noqa: E402
from sla_sync.connector.zendesk import Vocabulary, Zendesk  # noqa: E402

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
NOTE = "First response overdue: escalated."


@dataclass(frozen=True)
class Scenario:
    changed: int  # records the fetch returns
    writes: int  # of those, records given the same field change (priority urgent)
    notes: int  # of those written, records also given one note

    def __post_init__(self) -> None:
        if not 0 <= self.notes <= self.writes <= self.changed:
            raise ValueError("expected 0 <= notes <= writes <= changed")


@dataclass
class Count:
    """Requests made, by kind, beside the documented minimum for the same kinds."""

    connector: str
    made: dict[str, int] = field(default_factory=dict)
    minimum: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.minimum = {name: n for name, n in self.minimum.items() if n}

    @property
    def total(self) -> int:
        return sum(self.made.values())

    @property
    def least(self) -> int:
        return sum(self.minimum.values())

    @property
    def over(self) -> float:
        """How far above the minimum, as a fraction (0.0: at the minimum)."""
        return self.total / self.least - 1 if self.least else float(self.total > 0)


def changes_for(records: list[Record], scenario: Scenario) -> list[ChangeSet]:
    """The plans of the scenario, oldest change first (a connector with several objects
    reads them one object after the other; the loop plans them mixed): the first `writes`
    records get priority urgent, the first `notes` of them a note too."""
    changes = []
    ordered = sorted(records, key=lambda r: (r.updated_at, r.id))
    for n, record in enumerate(ordered[:scenario.writes]):
        changes.append(ChangeSet(record.id, base_updated_at=record.updated_at,
                                 fields={"priority": "urgent"},
                                 notes=(NOTE,) if n < scenario.notes else ()))
    return changes


def sync(connector: Connector, scenario: Scenario) -> list[ChangeSet]:
    """One sync as the loop drives a connector: every page read, then the writes handed
    over in batches of the connector's batch size (a batch of one goes through apply)."""
    records = [record for page in connector.fetch(None) for record in page.records]
    if len(records) != scenario.changed:
        raise AssertionError(f"the fake served {len(records)} records, not {scenario.changed}")
    changes = changes_for(records, scenario)
    caps = connector.capabilities
    size = max(1, caps.batch_size) if caps.bulk_writes else 1
    for start in range(0, len(changes), size):
        batch = changes[start:start + size]
        results = apply_each(connector, batch, NOW) if len(batch) == 1 \
            else connector.apply_many(batch, NOW)
        failed = [r for r in results if r.error is not None]
        if failed:
            raise AssertionError(f"{failed[0].record_id}: {failed[0].error}")
    return changes


def _kinds(api: responses.RequestsMock, kind: Callable[[str, str], str]) -> dict[str, int]:
    made: dict[str, int] = {}
    for call in api.calls:
        name = kind(call.request.method or "", urlparse(call.request.url).path)
        made[name] = made.get(name, 0) + 1
    return made


def _pages(items: int, per_page: int) -> int:
    return max(1, math.ceil(items / per_page))  # an empty answer is still one request


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- HubSpot -----------------------------------------------------------------------------------

class FakeHubSpot:
    """The CRM v3 endpoints sla-sync uses, as HubSpot documents them: search (filters GTE/LT
    on the modified time and NOT_IN on hs_object_id, one ascending sort, `limit` up to 200,
    `after` offsets), batch read and update (up to 100 inputs), notes batch/create with
    associations
    (developers.hubspot.com/docs/api-reference/latest/crm/search-the-crm and the objects'
    batch endpoints)."""

    BASE = "https://api.hubapi.com"

    def __init__(self, api: responses.RequestsMock, scenario: Scenario):
        self.records: dict[str, dict[str, dict[str, Any]]] = {"tickets": {}, "leads": {}}
        self.writes = 0
        for n in range(scenario.changed):
            obj = ("tickets", "leads")[n % 2]
            modified = START + timedelta(seconds=n)
            props = {"hs_lastmodifieddate": modified.isoformat().replace("+00:00", "Z"),
                     "createdate": "2026-03-02T07:00:00Z", "hs_createdate":
                     "2026-03-02T07:00:00Z", "hs_pipeline_stage":
                     "1" if obj == "tickets" else "new-stage-id",
                     "subject": f"Ticket {n}", "hs_lead_name": f"Lead {n}"}
            self.records[obj][str(1000 + n)] = {"id": str(1000 + n), "properties": props}
        objects = r"/crm/v3/objects/(tickets|leads)"
        api.add_callback(responses.POST, re.compile(self.BASE + objects + "/search"),
                         self.search)
        api.add_callback(responses.POST, re.compile(self.BASE + objects + "/batch/read"),
                         self.batch_read)
        api.add_callback(responses.POST, re.compile(self.BASE + objects + "/batch/update"),
                         self.batch_update)
        api.add_callback(responses.POST, self.BASE + "/crm/v3/objects/notes/batch/create",
                         self.notes)
        # The association labels, for a connector that looks the note type up (none now).
        api.add(responses.GET, self.BASE + "/crm/v4/associations/notes/leads/labels",
                json={"results": [{"category": "HUBSPOT_DEFINED", "typeId": 855,
                                   "label": None}]})

    @staticmethod
    def _object(request: Any) -> str:
        return urlparse(request.url).path.split("/")[4]

    def search(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = json.loads(request.body)
        if query["limit"] > 200:
            return 400, {}, json.dumps({"category": "VALIDATION_ERROR"})
        found = sorted(self.records[self._object(request)].values(),
                       key=lambda r: (r["properties"]["hs_lastmodifieddate"], int(r["id"])))
        for group in query.get("filterGroups") or []:
            for f in group["filters"]:
                if f["operator"] == "NOT_IN":
                    assert f["propertyName"] == "hs_object_id", f
                    found = [r for r in found if r["id"] not in f["values"]]
                    continue
                bound = datetime.fromtimestamp(int(f["value"]) / 1000, UTC)
                keep = (lambda at, b=bound: at >= b) if f["operator"] == "GTE" \
                    else (lambda at, b=bound: at < b)
                found = [r for r in found if keep(datetime.fromisoformat(
                    r["properties"]["hs_lastmodifieddate"]))]
        start = int(query.get("after") or 0)
        body: dict[str, Any] = {"total": len(found),
                                "results": found[start:start + query["limit"]]}
        if start + query["limit"] < len(found):
            body["paging"] = {"next": {"after": str(start + query["limit"])}}
        return 200, {}, json.dumps(body)

    def batch_read(self, request: Any) -> tuple[int, dict[str, str], str]:
        inputs = json.loads(request.body)["inputs"]
        assert len(inputs) <= 100, "HubSpot batch endpoints take at most 100 inputs"
        table = self.records[self._object(request)]
        return 200, {}, json.dumps({"status": "COMPLETE", "results": [
            table[i["id"]] for i in inputs if i["id"] in table]})

    def batch_update(self, request: Any) -> tuple[int, dict[str, str], str]:
        inputs = json.loads(request.body)["inputs"]
        assert len(inputs) <= 100, "HubSpot batch endpoints take at most 100 inputs"
        table = self.records[self._object(request)]
        results = []
        for item in inputs:
            self.writes += 1
            stamp = (NOW + timedelta(milliseconds=self.writes)).isoformat()
            table[item["id"]]["properties"].update(item["properties"],
                                                   hs_lastmodifieddate=stamp)
            results.append({"id": item["id"], "properties": item["properties"],
                            "updatedAt": stamp})
        return 200, {}, json.dumps({"status": "COMPLETE", "results": results})

    def notes(self, request: Any) -> tuple[int, dict[str, str], str]:
        inputs = json.loads(request.body)["inputs"]
        assert len(inputs) <= 100, "HubSpot batch endpoints take at most 100 inputs"
        return 201, {}, json.dumps({"status": "COMPLETE", "results": [
            {"id": str(9000 + n), "objectWriteTraceId": i["objectWriteTraceId"]}
            for n, i in enumerate(inputs)]})


def count_hubspot(scenario: Scenario) -> Count:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        FakeHubSpot(api, scenario)
        options = HubSpotOptions.parse({"objects": ["tickets", "leads"],
                                        "search_delay_seconds": 0,
                                        "lead_priority_property": "sla_priority"})
        client = HttpClient(FakeHubSpot.BASE, auth=HeaderToken("Bearer", "bench"),
                            name="hubspot", sleep=lambda _: None, clock=lambda: 0.0)
        changes = sync(HubSpot(client, options, clock=lambda: NOW.timestamp()), scenario)
        made = _kinds(api, lambda _, path: "notes batch/create" if "/notes/batch" in path
                      else path.rsplit("/", 1)[1])
    # Tickets and leads alternate in time; each object is searched, read and updated alone.
    per_object = [(scenario.changed + 1) // 2, scenario.changed // 2]
    written = [sum(c.record_id.startswith(f"{obj}:") for c in changes)
               for obj in ("tickets", "leads")]
    minimum = {"search": sum(_pages(n, 200) for n in per_object),
               "read": sum(math.ceil(w / 100) for w in written),
               "update": sum(math.ceil(w / 100) for w in written),
               "notes batch/create": math.ceil(scenario.notes / 100)}
    return Count("hubspot", {k: v for k, v in made.items()}, minimum)


# -- Freshdesk ---------------------------------------------------------------------------------

class FakeFreshdesk:
    """API v2 as Freshdesk documents it (developers.freshdesk.com/api): the ticket listing
    (`updated_since`, ascending `updated_at`, `per_page` up to 100, a `Link` header to the
    next page), the ticket view, PUT, private notes, bulk_update jobs and their status."""

    URL = "https://acme.freshdesk.com"

    def __init__(self, api: responses.RequestsMock, scenario: Scenario):
        tickets = f"{self.URL}/api/v2/tickets"
        self.tickets: dict[int, dict[str, Any]] = {}
        self.jobs: dict[str, list[int]] = {}
        for n in range(scenario.changed):
            stamp = _stamp(START + timedelta(seconds=n))
            self.tickets[5000 + n] = {
                "id": 5000 + n, "subject": f"Ticket {n}", "status": 2, "priority": 1,
                "source": 1, "tags": [], "custom_fields": {}, "created_at": stamp,
                "updated_at": stamp, "stats": {"status_updated_at": stamp}}
        api.add_callback(responses.GET, re.compile(re.escape(tickets) + r"(\?.*)?$"),
                         self.listing)
        api.add_callback(responses.GET, re.compile(re.escape(tickets) + r"/\d+(\?.*)?$"),
                         self.view)
        api.add_callback(responses.PUT, re.compile(re.escape(tickets) + r"/\d+$"), self.put)
        api.add_callback(responses.POST, re.compile(re.escape(tickets) + r"/\d+/notes$"),
                         self.note)
        api.add_callback(responses.POST, f"{tickets}/bulk_update", self.bulk_update)
        api.add_callback(responses.GET, re.compile(f"{self.URL}/api/v2/jobs/.+"), self.job)

    def listing(self, request: Any) -> tuple[int, dict[str, str], str]:
        params = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
        page, per_page = int(params.get("page", 1)), int(params["per_page"])
        if per_page > 100:
            return 400, {}, json.dumps({"description": "per_page: at most 100"})
        matching = sorted((t for t in self.tickets.values()
                           if t["updated_at"] >= params["updated_since"]),
                          key=lambda t: (t["updated_at"], t["id"]))
        headers = {}
        if page * per_page < len(matching):
            headers["Link"] = (f'<{self.URL}/api/v2/tickets?'
                               f'{urlencode(params | {"page": page + 1})}>; rel="next"')
        return 200, headers, json.dumps(matching[(page - 1) * per_page:page * per_page])

    def _ticket(self, request: Any) -> dict[str, Any]:
        return self.tickets[int(urlparse(request.url).path.split("/")[4])]

    def view(self, request: Any) -> tuple[int, dict[str, str], str]:
        return 200, {}, json.dumps(self._ticket(request))

    def put(self, request: Any) -> tuple[int, dict[str, str], str]:
        ticket = self._ticket(request)
        ticket.update(json.loads(request.body), updated_at=_stamp(NOW))
        return 200, {}, json.dumps({k: v for k, v in ticket.items() if k != "stats"})

    def note(self, request: Any) -> tuple[int, dict[str, str], str]:
        self._ticket(request)["updated_at"] = _stamp(NOW)
        return 201, {}, json.dumps({"id": 1, "private": json.loads(request.body)["private"]})

    def bulk_update(self, request: Any) -> tuple[int, dict[str, str], str]:
        action = json.loads(request.body)["bulk_action"]
        assert len(action["ids"]) <= 100, "bulk_update takes at most 100 ids"
        for ticket_id in action["ids"]:
            self.tickets[ticket_id].update(action["properties"], updated_at=_stamp(NOW))
        job_id = f"job-{len(self.jobs) + 1}"
        self.jobs[job_id] = action["ids"]
        return 202, {}, json.dumps({"job_id": job_id})

    def job(self, request: Any) -> tuple[int, dict[str, str], str]:
        job_id = urlparse(request.url).path.rsplit("/", 1)[1]
        return 200, {}, json.dumps({"id": job_id, "status": "COMPLETED", "data": [
            {"id": ticket_id, "success": True} for ticket_id in self.jobs[job_id]]})


def count_freshdesk(scenario: Scenario) -> Count:
    def kind(method: str, path: str) -> str:
        if path == "/api/v2/tickets":
            return "listing"
        if path.endswith("/bulk_update"):
            return "bulk_update"
        if "/jobs/" in path:
            return "job poll"
        if path.endswith("/notes"):
            return "note"
        return "fresh read" if method == "GET" else method

    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        FakeFreshdesk(api, scenario)
        client = HttpClient(FakeFreshdesk.URL, auth=HTTPBasicAuth("bench", "X"),
                            name="freshdesk", sleep=lambda _: None, clock=lambda: 0.0)
        options = FreshdeskOptions.from_settings({"start_at": _stamp(START)})
        sync(Freshdesk(client, options, now=lambda: NOW), scenario)
        made = _kinds(api, kind)
    jobs = math.ceil(scenario.writes / 100)
    minimum = {"listing": _pages(scenario.changed, 100),
               # No conditional update and no batch view: one read per written ticket.
               "fresh read": scenario.writes,
               "bulk_update": jobs, "job poll": jobs,
               "note": scenario.notes}
    if scenario.writes % 100 == 1:  # a ticket alone is one PUT rather than a job
        minimum |= {"bulk_update": jobs - 1, "job poll": jobs - 1, "PUT": 1}
    return Count("freshdesk", made, minimum)


# -- Zendesk -----------------------------------------------------------------------------------

class FakeZendesk:
    """The Zendesk Support API as its OpenAPI document (../shared/specs) and reference
    describe it: the incremental ticket event export (time based, up to 1,000 events a
    page), the incremental ticket export (cursor based, up to 1,000 tickets a page,
    `end_of_stream`), `PUT /api/v2/tickets/update_many` (up to 100 tickets, each its own
    update) answered with a job status, and the job status itself."""

    URL = "https://acme.zendesk.com"

    def __init__(self, api: responses.RequestsMock, scenario: Scenario):
        self.tickets: dict[int, dict[str, Any]] = {}
        self.jobs: dict[str, list[int]] = {}
        for n in range(scenario.changed):
            stamp = _stamp(START + timedelta(seconds=n))
            self.tickets[35000 + n] = {
                "id": 35000 + n, "via": {"channel": "email"}, "created_at": stamp,
                "updated_at": stamp, "subject": f"Ticket {n}", "priority": "normal",
                "status": "open", "tags": [], "custom_fields": [], "group_id": None,
                "assignee_id": None, "organization_id": None, "requester_id": 1}
        api.add_callback(responses.GET, re.compile(
            re.escape(self.URL + "/api/v2/incremental/ticket_events") + r"(\?.*)?$"), self.events)
        api.add_callback(responses.GET, re.compile(
            re.escape(self.URL + "/api/v2/incremental/tickets/cursor") + r"(\?.*)?$"),
            self.export)
        api.add_callback(responses.PUT, self.URL + "/api/v2/tickets/update_many",
                         self.update_many)
        api.add_callback(responses.GET, re.compile(
            re.escape(self.URL + "/api/v2/job_statuses/show_many") + r"\?.*"), self.jobs_shown)
        api.add_callback(responses.GET, re.compile(self.URL + r"/api/v2/job_statuses/\w+$"),
                         self.job)

    def events(self, request: Any) -> tuple[int, dict[str, str], str]:
        # One audit per ticket, its creation: a page of up to 1,000 events.
        start = int(parse_qs(urlparse(request.url).query)["start_time"][0])
        events = [{"id": t["id"], "ticket_id": t["id"], "event_type": "Audit",
                   "timestamp": int(datetime.fromisoformat(t["created_at"]).timestamp()),
                   "created_at": t["created_at"], "child_events": [
                       {"id": t["id"], "event_type": "Create", "status": "open"}]}
                  for t in self.tickets.values()]
        events = [e for e in events if e["timestamp"] >= start]
        page, more = events[:1000], len(events) > 1000
        end = page[-1]["timestamp"] if page else start
        return 200, {}, json.dumps({"ticket_events": page, "end_time": end + (0 if more else 1),
                                    "end_of_stream": not more, "count": len(page)})

    def export(self, request: Any) -> tuple[int, dict[str, str], str]:
        params = parse_qs(urlparse(request.url).query)
        offset = int(params["cursor"][0]) if "cursor" in params else 0
        ordered = sorted(self.tickets.values(), key=lambda t: (t["updated_at"], t["id"]))
        page = ordered[offset:offset + 1000]
        return 200, {}, json.dumps({"tickets": page, "metric_sets": [],
                                    "after_cursor": str(offset + len(page)),
                                    "end_of_stream": offset + len(page) >= len(ordered)})

    def update_many(self, request: Any) -> tuple[int, dict[str, str], str]:
        updates = json.loads(request.body)["tickets"]
        assert len(updates) <= 100, "update_many takes at most 100 tickets"
        for update in updates:
            self.tickets[update["id"]].update(updated_at=_stamp(NOW))
        job_id = f"job{len(self.jobs) + 1}"
        self.jobs[job_id] = [u["id"] for u in updates]
        return 200, {}, json.dumps({"job_status": {"id": job_id, "status": "queued"}})

    def status(self, job_id: str) -> dict[str, Any]:
        return {"id": job_id, "status": "completed", "results": [
            {"id": i, "action": "update", "status": "Updated", "success": True}
            for i in self.jobs[job_id]]}

    def job(self, request: Any) -> tuple[int, dict[str, str], str]:
        job_id = urlparse(request.url).path.rsplit("/", 1)[1].removesuffix(".json")
        return 200, {}, json.dumps({"job_status": self.status(job_id)})

    def jobs_shown(self, request: Any) -> tuple[int, dict[str, str], str]:
        ids = parse_qs(urlparse(request.url).query)["ids"][0].split(",")
        return 200, {}, json.dumps({"job_statuses": [self.status(i) for i in ids]})


def count_zendesk(scenario: Scenario) -> Count:
    def kind(method: str, path: str) -> str:
        return {"/api/v2/incremental/ticket_events": "event export",
                "/api/v2/incremental/tickets/cursor": "ticket export",
                "/api/v2/tickets/update_many": "update_many"}.get(
            path, "job poll" if "/job_statuses/" in path else f"{method} {path}")

    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        FakeZendesk(api, scenario)
        client = HttpClient(FakeZendesk.URL, auth=HTTPBasicAuth("bench/token", "x"),
                            name="zendesk", sleep=lambda _: None, clock=lambda: 0.0)
        sync(Zendesk(client, vocabulary=Vocabulary.from_settings({}),
                     start_time=START - timedelta(hours=1)), scenario)
        made = _kinds(api, kind)
    jobs = math.ceil(scenario.writes / 100)
    minimum = {"event export": _pages(scenario.changed, 1000),
               "ticket export": _pages(scenario.changed, 1000),
               # Each ticket's update (fields, tags, its private comment) is one item of a
               # job: notes cost nothing more. Jobs running at once (Zendesk's job limit:
               # 30 an account) are polled together, one Show Many Job Statuses a round.
               "update_many": jobs, "job poll": math.ceil(jobs / 30)}
    if scenario.writes == 1:
        minimum = {**minimum, "update_many": 0, "job poll": 0, "PUT": 1}
    return Count("zendesk", made, minimum)


# -- Request Tracker ---------------------------------------------------------------------------

RT_RECORDED = ROOT / "tests" / "fixtures" / "rt"  # answers recorded from a real RT 5


class FakeRT:
    """RT 5's REST2 as sla-sync uses it, shaped like the answers recorded from a real RT
    (tests/fixtures/rt): a TicketSQL search on `LastUpdated` (`per_page` up to 100, ordered
    by LastUpdated and id), a ticket's history page by page, PUT with `If-Match` answered
    with RT's messages, and comments."""

    URL = "https://rt.example.com"

    def __init__(self, api: responses.RequestsMock, scenario: Scenario):
        api_url = self.URL + "/REST/2.0"
        template = json.loads((RT_RECORDED / "tickets_page_three_tickets.json").read_text())
        self.history = json.loads((RT_RECORDED / "history_ticket_1.json").read_text())
        self.tickets: dict[int, dict[str, Any]] = {}
        for n in range(scenario.changed):
            item = json.loads(json.dumps(template["items"][0]))
            stamp = _stamp(START + timedelta(seconds=n))
            item.update(id=str(7000 + n), _url=f"{api_url}/ticket/{7000 + n}", Created=stamp,
                        LastUpdated=stamp, Subject=f"Ticket {n}")
            self.tickets[7000 + n] = item
        api.add_callback(responses.GET, re.compile(re.escape(api_url) + r"/tickets(\?.*)?$"),
                         self.search)
        api.add_callback(responses.GET, re.compile(re.escape(api_url)
                                                   + r"/ticket/\d+/history(\?.*)?$"),
                         self.ticket_history)
        api.add_callback(responses.PUT, re.compile(re.escape(api_url) + r"/ticket/\d+$"),
                         self.put)
        api.add_callback(responses.POST, re.compile(re.escape(api_url) + r"/ticket/\d+/comment$"),
                         self.comment)

    def search(self, request: Any) -> tuple[int, dict[str, str], str]:
        params = parse_qs(urlparse(request.url).query)
        per_page, page = int(params["per_page"][0]), int(params["page"][0])
        if per_page > 100:
            return 400, {}, json.dumps({"message": "per_page: at most 100"})
        found = sorted(self.tickets.values(), key=lambda t: (t["LastUpdated"], int(t["id"])))
        window = re.search(r"LastUpdated > '([^']+)'", params["query"][0])
        if window:
            since = datetime.strptime(window.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            found = [t for t in found if datetime.fromisoformat(t["LastUpdated"]) > since]
        items = found[(page - 1) * per_page:page * per_page]
        date = "Wed, 02 Dec 2026 06:00:00 GMT"  # RT's clock, long past every LastUpdated
        return 200, {"Date": date}, json.dumps({
            "count": len(items), "page": page, "per_page": per_page, "total": len(found),
            "items": items})

    def ticket_history(self, request: Any) -> tuple[int, dict[str, str], str]:
        ticket_id = int(urlparse(request.url).path.split("/")[4])
        body = json.loads(json.dumps(self.history))
        for n, item in enumerate(body["items"]):
            item["id"] = str(1000 * ticket_id + n)
        return 200, {}, json.dumps(body)

    def put(self, request: Any) -> tuple[int, dict[str, str], str]:
        ticket_id = int(urlparse(request.url).path.split("/")[4])
        self.tickets[ticket_id]["LastUpdated"] = _stamp(NOW)
        return 200, {}, json.dumps([f"Ticket {ticket_id}: Priority changed from '50' to "
                                    f"'{json.loads(request.body).get('Priority')}'"])

    def comment(self, request: Any) -> tuple[int, dict[str, str], str]:
        return 201, {}, json.dumps(["Comments added"])


def count_rt(scenario: Scenario) -> Count:
    def kind(method: str, path: str) -> str:
        if path.endswith("/tickets"):
            return "search"
        if path.endswith("/history"):
            return "history"
        if path.endswith("/comment"):
            return "comment"
        return method

    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        FakeRT(api, scenario)
        client = HttpClient(FakeRT.URL + "/REST/2.0", auth=HeaderToken("token", "bench"),
                            name="rt", sleep=lambda _: None, clock=lambda: 0.0)
        sync(RT(client, RTOptions.from_settings({}), FakeRT.URL), scenario)
        made = _kinds(api, kind)
    minimum = {"search": _pages(scenario.changed, 100),
               # REST2 gives a ticket's transactions per ticket: one page each (up to 100).
               "history": scenario.changed,
               # One PUT per ticket: REST2's If-Match version check is per ticket.
               "PUT": scenario.writes, "comment": scenario.notes}
    return Count("rt", made, minimum)


# -- Jira Service Management -------------------------------------------------------------------

JSM_RECORDED = ROOT / "tests" / "fixtures" / "jsm"  # documented Jira Cloud payloads


class FakeJSM:
    """Jira Cloud as the jsm connector uses it (../shared/specs/jira-cloud-platform-swagger-
    v3.v3.json; the service desk API by its reference): the API user (`GET /myself`), the
    statuses, the enhanced JQL search (`POST /rest/api/3/search/jql`, `nextPageToken` until
    `isLast`, at most 100 issues a page with these fields: "API may return fewer items per
    page where a large number of fields are requested"), an issue's `updated` (`GET
    /issue/{key}?fields=updated`), the issue edit (204) and the internal request comment
    (201). Issues are shaped like tests/fixtures/jsm's recorded search answer."""

    URL = "https://acme.atlassian.net"
    PAGE = 100

    def __init__(self, api: responses.RequestsMock, scenario: Scenario):
        template = json.loads((JSM_RECORDED / "search_page_1.json").read_text())["issues"][0]
        self.issues: dict[str, dict[str, Any]] = {}
        for n in range(scenario.changed):
            issue = json.loads(json.dumps(template))
            key, stamp = f"SUP-{1000 + n}", self._stamp(START + timedelta(seconds=n))
            issue.update(id=str(20000 + n), key=key,
                         self=f"{self.URL}/rest/api/3/issue/{20000 + n}")
            issue["fields"].update(created=stamp, updated=stamp, labels=[],
                                   comment={"comments": [], "maxResults": 0, "total": 0,
                                            "startAt": 0})
            self.issues[key] = issue
        api.add(responses.GET, self.URL + "/rest/api/3/myself",
                json=json.loads((JSM_RECORDED / "myself_europe_berlin.json").read_text()))
        api.add(responses.GET, self.URL + "/rest/api/3/status",
                json=json.loads((JSM_RECORDED / "statuses.json").read_text()))
        api.add_callback(responses.POST, self.URL + "/rest/api/3/search/jql", self.search)
        issue_path = re.escape(self.URL + "/rest/api/3/issue/") + r"(SUP-\d+)(\?.*)?$"
        api.add_callback(responses.GET, re.compile(issue_path), self.updated)
        api.add_callback(responses.PUT, re.compile(issue_path), self.edit)
        api.add_callback(responses.POST, re.compile(
            re.escape(self.URL + "/rest/servicedeskapi/request/") + r"SUP-\d+/comment$"),
            self.comment)
        self.created = json.loads(
            (JSM_RECORDED / "request_comment_created_internal.json").read_text())

    @staticmethod
    def _stamp(at: datetime) -> str:
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    @staticmethod
    def _key(request: Any) -> str:
        return urlparse(request.url).path.split("/")[5]

    def search(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = json.loads(request.body)
        ordered = sorted(self.issues.values(),
                         key=lambda i: (i["fields"]["updated"], int(i["key"][4:])))
        start = int(query.get("nextPageToken") or 0)
        size = min(int(query.get("maxResults", 50)), self.PAGE)
        page = ordered[start:start + size]
        last = start + size >= len(ordered)
        body: dict[str, Any] = {"issues": page, "isLast": last}
        if not last:
            body["nextPageToken"] = str(start + size)
        return 200, {}, json.dumps(body)

    def updated(self, request: Any) -> tuple[int, dict[str, str], str]:
        issue = self.issues[self._key(request)]
        return 200, {}, json.dumps({"id": issue["id"], "key": issue["key"],
                                    "fields": {"updated": issue["fields"]["updated"]}})

    def edit(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.issues[self._key(request)]["fields"]["updated"] = self._stamp(NOW)
        return 204, {}, ""

    def comment(self, request: Any) -> tuple[int, dict[str, str], str]:
        assert json.loads(request.body)["public"] is False
        return 201, {}, json.dumps(self.created)


def count_jsm(scenario: Scenario) -> Count:
    def kind(method: str, path: str) -> str:
        if path == "/rest/api/3/search/jql":
            return "search"
        if path.startswith("/rest/api/3/issue/"):
            return "version read" if method == "GET" else "issue edit"
        if path.startswith("/rest/servicedeskapi/request/"):
            return "request comment"
        return f"{method} {path}"

    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        FakeJSM(api, scenario)
        client = HttpClient(FakeJSM.URL, auth=HTTPBasicAuth("bench@example.com", "x"),
                            name="jsm", sleep=lambda _: None, clock=lambda: 0.0)
        sync(JSM(client, ("SUP",), start_time=START - timedelta(hours=1),
                 now=lambda: NOW), scenario)
        made = _kinds(api, kind)
    minimum = {"GET /rest/api/3/myself": 1, "GET /rest/api/3/status": 1,
               "search": _pages(scenario.changed, FakeJSM.PAGE),
               # An edit has no version precondition: the conflict check is reading the
               # issue's `updated` just before (docs/connectors/jsm.md, "Conflicts").
               "version read": scenario.writes, "issue edit": scenario.writes,
               "request comment": scenario.notes}
    return Count("jsm", made, minimum)


COUNTERS: dict[str, Callable[[Scenario], Count]] = {
    "hubspot": count_hubspot, "freshdesk": count_freshdesk, "zendesk": count_zendesk,
    "rt": count_rt, "jsm": count_jsm}


def rows(counts: list[Count]) -> Iterator[str]:
    yield f"{'connector':<10} {'request':<22} {'made':>6} {'minimum':>8}"
    for count in counts:
        for name in sorted(set(count.made) | set(count.minimum)):
            yield (f"{count.connector:<10} {name:<22} {count.made.get(name, 0):>6} "
                   f"{count.minimum.get(name, 0):>8}")
        yield (f"{count.connector:<10} {'total':<22} {count.total:>6} {count.least:>8}"
               f"   {count.over:+.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changed", type=int, default=450)
    parser.add_argument("--writes", type=int, default=250)
    parser.add_argument("--notes", type=int, default=120)
    parser.add_argument("--only", choices=sorted(COUNTERS), action="append")
    args = parser.parse_args()
    scenario = Scenario(args.changed, args.writes, args.notes)
    print(f"scenario: {scenario.changed} changed records, {scenario.writes} written "
          f"(the same field change), {scenario.notes} of them with a note")
    counts = [COUNTERS[name](scenario) for name in args.only or COUNTERS]
    for row in rows(counts):
        print(row)
    return 1 if any(count.over > 0.05 for count in counts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
