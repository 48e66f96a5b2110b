"""A fault-injection helpdesk for tests: a real HTTP server on 127.0.0.1 that speaks the part
of the Zendesk Support API v2 the connector uses, keeps its tickets in memory, counts every
write per ticket, and misbehaves on demand.

What it answers, and where Zendesk documents it (../shared/specs/zendesk-support-oas.yaml,
by operationId; the spec is read, never copied):

- `GET /api/v2/incremental/tickets/cursor` (IncrementalTicketExportCursor): tickets ordered
  by `updated_at`, `start_time` on the first request and `cursor` after, `after_cursor` and
  `end_of_stream`, sideloaded `metric_sets`. Like every incremental export it leaves out the
  most recent minute (parameter IncrementalUnixTime: "Data isn't provided for the most recent
  minute"): a ticket updated less than 60 s ago (by the desk's clock) is not exported yet.
- `GET /api/v2/incremental/ticket_events` (IncrementalTicketEvents): time-based, `end_time`
  is the time of the page's last event and `next_page` starts there (the response schema's
  example), so a second of more than a page's 1,000 events gives the same page again;
  "excluding events occurring within one minute of the request"; changes are `Change`
  child events named by the ticket field (`{"status": ..., "previous_value": ...}`,
  `{"assignee_id": ...}`); a comment is `comment_present` and `comment_public` only, or the
  whole comment with the `comment_events` sideload.
- `GET /api/v2/tickets/{id}` (ShowTicket) with `include=metric_sets`: the ticket as it is
  now (no export lag); `GET /api/v2/tickets/{id}/audits` (ListAuditsForTicket) with cursor
  pagination, each change an event with `field_name`, `value` and `previous_value` (ids as
  text), each comment whole; `GET /api/v2/tickets/{id}/comments` (ListTicketComments), cursor
  (`page[size]`, at most 100) or offset pagination, oldest first.
- `PUT /api/v2/tickets/{id}` (UpdateTicket): `additional_tags` / `remove_tags` merge into the
  tags, `comment` adds a comment (`public` defaults to true), and a safe update
  (`safe_update` + `updated_stamp`, "Protecting against ticket update collisions") that no
  longer matches `updated_at` is refused with 409 `UpdateConflict` and changes nothing.
- `PUT /api/v2/tickets/update_many` (TicketsUpdateMany) answers a queued `job_status`; the
  job runs on the desk at once, ticket by ticket, and `GET /api/v2/job_statuses/{id}`
  (ShowJobStatus; `show_many?ids=` for several, ShowManyJobStatuses) reports it completed
  with one result per ticket (`UpdateConflict` for a stale safe update). Being the
  server's, a job finishes even when its client died.
- 401 `Couldn't authenticate you` without the agent's `{email}/token` basic credentials.
- Every answer's `Date` header is the desk's clock (RFC 9110 section 6.6.1).
- `POST /hooks/{name}`: a webhook receiver for the `notify` action (not Zendesk's).

Faults (`FaultDesk.inject`) are matched by method, a path pattern and the number of the
matching request; each is counted by kind in `faults_injected`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import signal
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any
from urllib.parse import parse_qs, urlparse

EXPORT_LAG = 60  # seconds: the incremental exports leave out the most recent minute
EXPORT_PAGE = 1000  # tickets or events per export page (Zendesk's page size)
LATE_LIMIT = 30.0  # a late answer waits at most this long for the client to hang up

#: Fault kinds: what the desk does instead of (or besides) answering normally.
KINDS = {
    "429": "429 Too Many Requests with Retry-After; nothing processed",
    "5xx": "a 5xx error (503 by default); nothing processed",
    "late_processed": "processed, answered only after the client gave up (its timeout)",
    "late_unprocessed": "not processed, answered only after the client gave up",
    "reset_before": "connection reset after reading the request, nothing processed",
    "reset_after": "processed, then the connection reset instead of the answer",
    "truncated": "processed, a 200 whose JSON body is cut in half",
    "html200": "an HTML error page with status 200 (a proxy); nothing processed",
    "conflict": "a person edits the ticket(s) just before the request is processed",
    "redirect": "302 to the same path on another host (127.0.0.2)",
    "kill_client": "processed (a batch: after `after` tickets), then SIGKILL to the client",
}


def stamp(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unix(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def export_position(query: dict[str, str]) -> tuple[int, int]:
    """Where a cursor-based ticket export page starts: after the (updated_at, id) its cursor
    names, or from `start_time` on."""
    if "cursor" in query:
        raw = base64.b64decode(query["cursor"]).decode()
        at_text, _, rest = raw.partition("||")
        return int(float(at_text)), int(rest.strip("|") or 0)
    return int(query["start_time"]) - 1, 1 << 62


@dataclass
class Ticket:
    id: int
    subject: str
    created_at: int
    updated_at: int
    status: str = "open"
    priority: str | None = "normal"
    tags: list[str] = field(default_factory=list)
    group_id: int | None = None
    assignee_id: int | None = None
    channel: str = "email"
    reply_minutes: int | None = None  # the metric set's first reply time
    solved_at: int | None = None
    comments: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self, base: str) -> dict[str, Any]:
        return {"url": f"{base}/api/v2/tickets/{self.id}.json", "id": self.id,
                "via": {"channel": self.channel, "source": {"from": {}, "to": {}, "rel": None}},
                "created_at": stamp(self.created_at), "updated_at": stamp(self.updated_at),
                "type": "incident", "subject": self.subject, "raw_subject": self.subject,
                "priority": self.priority, "status": self.status, "requester_id": 20978392,
                "submitter_id": 20978392, "assignee_id": self.assignee_id,
                "organization_id": None, "group_id": self.group_id, "tags": list(self.tags),
                "custom_fields": [], "is_public": True}

    def metric_set(self, base: str) -> dict[str, Any]:
        return {"url": f"{base}/api/v2/ticket_metrics/{self.id}.json", "id": 5000 + self.id,
                "ticket_id": self.id, "created_at": stamp(self.created_at),
                "updated_at": stamp(self.updated_at), "reopens": 0,
                "replies": 0 if self.reply_minutes is None else 1,
                "solved_at": None if self.solved_at is None else stamp(self.solved_at),
                "initially_assigned_at": None,
                "reply_time_in_minutes": {"calendar": self.reply_minutes,
                                          "business": self.reply_minutes}}

    def state(self) -> dict[str, Any]:
        """What a test compares: fields, tags, and the comments' bodies in order."""
        return {"status": self.status, "priority": self.priority, "group_id": self.group_id,
                "assignee_id": self.assignee_id, "tags": sorted(self.tags),
                "comments": [c["body"] for c in self.comments],
                "private": [c["public"] is False for c in self.comments]}


@dataclass
class Fault:
    kind: str
    method: str | None = None
    path: str = ".*"  # a regular expression, searched in the path
    nth: int = 1  # the first matching request it applies to (1 = the first)
    times: int = 1  # how many matching requests in a row (0: all from nth on)
    status: int = 503  # for 5xx
    retry_after: int = 1  # for 429 (and 5xx when set with `with_retry_after`)
    with_retry_after: bool = False
    after: int = 0  # kill_client on a batch: tickets applied before the kill
    port: int = 0  # redirect: the port on 127.0.0.2
    seen: int = 0
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        if (self.method is not None and method != self.method) or not re.search(self.path,
                                                                               path):
            return False
        self.seen += 1
        if self.seen < self.nth or (self.times and self.seen >= self.nth + self.times):
            return False
        self.fired += 1
        return True


class FaultDesk:
    """The helpdesk. `now` is the desk's clock (Unix seconds): tests move it, nothing sleeps.
    `writes[ticket_id]` counts field changes, tags added/removed, comments, escalations."""

    def __init__(self, email: str, token: str, host: str = "127.0.0.1",
                 escalation_prefix: str = "sla_escalation_", now: int = 0):
        self.email, self.token = email, token
        self.escalation_prefix = escalation_prefix
        self.now = now
        self.tickets: dict[int, Ticket] = {}
        self.events: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.faults_injected: Counter[str] = Counter()
        self.writes: dict[int, Counter[str]] = {}
        self.hooks: list[dict[str, Any]] = []  # webhook posts received
        self.log: list[tuple[str, str, str | None]] = []  # (method, path, fault kind)
        self.authorizations: list[str | None] = []  # the Authorization header of each request
        self.client_pid: int | None = None
        self.client_known = threading.Event()
        self.initial: dict[str, Any] = {}  # a snapshot tests reset the desk to
        self.export_page = EXPORT_PAGE  # tickets per page of the cursor-based export
        self.lock = threading.RLock()
        self._ids = 0
        self.comments: dict[int, dict[str, Any]] = {}  # by id: the comment_events sideload
        self.httpd = _Server((host, 0), _handler(self))
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    # -- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultDesk:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- data -------------------------------------------------------------------------------

    def add(self, ticket: Ticket) -> None:
        """A ticket as it was created (and answered, or solved, as its fields say)."""
        self.tickets[ticket.id] = ticket
        self.writes[ticket.id] = Counter()
        # A ticket begins with the requester's public comment, its description.
        comment: dict[str, Any] = {"id": self._id(), "type": "Comment", "author_id": 20978392,
                   "body": f"{ticket.subject}: please help", "html_body":
                   f"<p>{ticket.subject}: please help</p>", "plain_body":
                   f"{ticket.subject}: please help", "public": True, "attachments": [],
                   "via": {"channel": ticket.channel}, "created_at": stamp(ticket.created_at)}
        ticket.comments.append(comment)
        children = [{"id": self._id(), "event_type": "Create", "status": ticket.status},
                    {"id": comment["id"], "event_type": "Comment", "comment_present": True,
                     "comment_public": True}]
        self._audit(ticket, ticket.created_at, children, author=20978392,
                    comments={comment["id"]: comment})

    def state(self) -> dict[int, dict[str, Any]]:
        with self.lock:
            return {t.id: t.state() for t in self.tickets.values()}

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to start another desk where this one stands."""
        with self.lock:
            return json.loads(json.dumps({
                "now": self.now, "events": self.events, "ids": self._ids,
                "tickets": [t.__dict__ for t in self.tickets.values()],
                "comments": list(self.comments.values()), "hooks": self.hooks}))

    def restore(self, snapshot: dict[str, Any]) -> None:
        with self.lock:
            data = json.loads(json.dumps(snapshot))
            self.now, self.events, self._ids = data["now"], data["events"], data["ids"]
            self.tickets = {t["id"]: Ticket(**t) for t in data["tickets"]}
            self.writes = {t: Counter() for t in self.tickets}
            self.hooks = data["hooks"]
            self.comments = {c["id"]: c for c in data.get("comments", [])}

    def person_edits(self, ticket_id: int, tag: str = "edited_by_a_person") -> None:
        """A concurrent edit by an agent: a tag and a new updated_at."""
        ticket = self.tickets[ticket_id]
        if tag not in ticket.tags:
            ticket.tags.append(tag)
        self._touch(ticket, [{"id": self._id(), "event_type": "Change", "tags": ticket.tags,
                              "added_tags": [tag], "removed_tags": []}], author=361001)

    # -- faults -----------------------------------------------------------------------------

    def inject(self, kind: str, **where: Any) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
        fault = Fault(kind, **where)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = []

    def _fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    self.faults_injected[fault.kind] += 1
                    return fault
        return None

    # -- the API ----------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict[str, str], body: Any,
               fault: Fault | None) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body) for one request; applies writes."""
        with self.lock:
            if path.startswith("/hooks/"):
                self.hooks.append({"hook": path[len("/hooks/"):], **(body or {})})
                return 200, {}, {"ok": True}
            if path == "/api/v2/incremental/tickets/cursor" and method == "GET":
                return 200, {}, self._ticket_export(query)
            if path == "/api/v2/incremental/ticket_events" and method == "GET":
                return 200, {}, self._event_export(query, "comment_events" in
                                                   query.get("include", ""))
            if path == "/api/v2/tickets/update_many" and method == "PUT":
                return 200, {}, self._update_many(body, fault)
            if path.startswith("/api/v2/job_statuses/") and method == "GET":
                return self._job_statuses(path, query)
            match = re.fullmatch(r"/api/v2/tickets/(\d+)(/audits|/comments)?", path)
            if match:
                ticket = self.tickets.get(int(match[1]))
                if ticket is None:
                    return 404, {}, {"error": "RecordNotFound", "description": "Not found"}
                if match[2] == "/audits" and method == "GET":
                    return 200, {}, self._cursor_list(ticket.audits, "audits", query)
                if match[2] == "/comments" and method == "GET":
                    if "page[size]" in query:
                        return 200, {}, self._cursor_list(ticket.comments, "comments", query)
                    return 200, {}, {"comments": ticket.comments, "next_page": None,
                                     "previous_page": None, "count": len(ticket.comments)}
                if match[2] is None and method == "GET":
                    return 200, {}, {"ticket": ticket.as_json(self.url),
                                     "metric_sets": [ticket.metric_set(self.url)]}
                if match[2] is None and method == "PUT":
                    if fault is not None and fault.kind == "conflict":
                        self.person_edits(ticket.id)
                    update = (body or {}).get("ticket") or {}
                    if not self._fresh(ticket, update):
                        return 409, {}, {"error": "UpdateConflict", "description":
                                         "Safe Update prevented the update due to outdated "
                                         "ticket data. Please fetch the latest ticket data "
                                         "and try again."}
                    audit = self._update(ticket, update)
                    self._kill_if(fault)
                    return 200, {}, {"ticket": ticket.as_json(self.url), "audit": audit}
            return 404, {}, {"error": "InvalidEndpoint", "description": "Not found"}

    def _ticket_export(self, query: dict[str, str]) -> dict[str, Any]:
        position = export_position(query)
        ready = sorted((t for t in self.tickets.values()
                        if (t.updated_at, t.id) > position
                        and t.updated_at <= self.now - EXPORT_LAG),
                       key=lambda t: (t.updated_at, t.id))
        page = ready[:self.export_page]
        return self._ticket_page(query, page, position, len(ready) <= self.export_page)

    def _ticket_page(self, query: dict[str, str], page: list[Ticket],
                     position: tuple[int, int], end_of_stream: bool) -> dict[str, Any]:
        """A page of the cursor-based ticket export: its tickets (and metric sets, when
        included), the cursor after its last ticket (`position` for an empty page)."""
        last = (page[-1].updated_at, page[-1].id) if page else position
        cursor = base64.b64encode(f"{float(last[0])}||{last[1]}|".encode()).decode()
        body: dict[str, Any] = {
            "tickets": [t.as_json(self.url) for t in page],
            "after_url": f"{self.url}/api/v2/incremental/tickets/cursor.json?cursor={cursor}",
            "after_cursor": cursor, "before_url": None, "before_cursor": None,
            "end_of_stream": end_of_stream}
        if "metric_sets" in query.get("include", ""):
            body["metric_sets"] = [t.metric_set(self.url) for t in page]
        return body

    def _with_comments(self, page: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The comment_events sideload: each comment listed in its event
        (IncrementalTicketEvents)."""
        return [{**e, "child_events": [
            {**self.comments[c["id"]], "event_type": "Comment"}
            if c["event_type"] == "Comment" and c["id"] in self.comments else c
            for c in e["child_events"]]} for e in page]

    def _event_export(self, query: dict[str, str], comments: bool) -> dict[str, Any]:
        start = int(query["start_time"])
        ready = sorted((e for e in self.events
                        if start <= e["timestamp"] <= self.now - EXPORT_LAG),
                       key=lambda e: (e["timestamp"], e["id"]))
        page = ready[:EXPORT_PAGE]  # (export_page is the ticket export's alone)
        if comments:
            page = self._with_comments(page)
        end = page[-1]["timestamp"] if page else start
        return {"ticket_events": page, "count": len(page), "end_time": end,
                "next_page": f"{self.url}/api/v2/incremental/ticket_events.json"
                             f"?start_time={end}",
                "end_of_stream": len(ready) < EXPORT_PAGE}

    def _cursor_list(self, items: list[dict[str, Any]], key: str,
                     query: dict[str, str]) -> dict[str, Any]:
        size = min(100, int(query.get("page[size]") or 100))
        start = int(base64.b64decode(query["page[after]"]).decode()) \
            if query.get("page[after]") else 0
        page = items[start:start + size]
        more = start + size < len(items)
        after = base64.b64encode(str(start + size).encode()).decode() if more else None
        return {key: page, "meta": {"has_more": more, "after_cursor": after,
                                    "before_cursor": None},
                "links": {"prev": None, "next": None}}

    def _update_many(self, body: Any, fault: Fault | None) -> dict[str, Any]:
        updates = (body or {}).get("tickets") or []
        job_id = f"{len(self.jobs) + 1:032x}"
        if fault is not None and fault.kind == "conflict" and updates \
                and updates[0].get("id") in self.tickets:
            self.person_edits(updates[0]["id"])  # one ticket of the batch
        results = []
        for n, update in enumerate(updates):
            if fault is not None and fault.kind == "kill_client" and n == fault.after:
                self._kill_if(fault)
            ticket = self.tickets.get(update.get("id"))
            if ticket is None:
                results.append({"id": update.get("id"), "action": "update", "success": False,
                                "error": "TicketNotFound", "details": "Ticket not found"})
            elif not self._fresh(ticket, update):
                results.append({"id": ticket.id, "action": "update", "success": False,
                                "error": "UpdateConflict", "details": "Safe Update prevented "
                                "the update due to outdated ticket data"})
            else:
                self._update(ticket, update)
                results.append({"id": ticket.id, "action": "update", "status": "Updated",
                                "success": True})
        if fault is not None and fault.kind == "kill_client" and fault.after >= len(updates):
            self._kill_if(fault)
        self.jobs[job_id] = {"id": job_id, "url": f"{self.url}/api/v2/job_statuses/{job_id}"
                             ".json", "total": len(updates), "progress": len(updates),
                             "status": "completed", "message": "Completed at "
                             f"{stamp(self.now)}", "results": results}
        return {"job_status": {"id": job_id, "url": self.jobs[job_id]["url"],
                               "total": len(updates), "progress": None, "status": "queued",
                               "message": None, "results": None}}

    def _job_statuses(self, path: str, query: dict[str, str]
                      ) -> tuple[int, dict[str, str], Any]:
        """ShowManyJobStatuses (`show_many?ids=a,b`: unknown ids left out) or
        ShowJobStatus."""
        if path == "/api/v2/job_statuses/show_many":
            ids = query.get("ids", "").split(",")
            return 200, {}, {"job_statuses": [self.jobs[i] for i in ids if i in self.jobs]}
        job = self.jobs.get(path.rsplit("/", 1)[1])
        return (200, {}, {"job_status": job}) if job else \
            (404, {}, {"error": "RecordNotFound", "description": "Not found"})

    def _fresh(self, ticket: Ticket, update: dict[str, Any]) -> bool:
        if str(update.get("safe_update")).lower() != "true":
            return True
        return update.get("updated_stamp") == stamp(ticket.updated_at)

    def _update(self, ticket: Ticket, update: dict[str, Any]) -> dict[str, Any] | None:
        count = self.writes[ticket.id]
        children: list[dict[str, Any]] = []
        comment_of: dict[int, dict[str, Any]] = {}
        for name in ("priority", "status", "group_id", "assignee_id"):
            if name in update and update[name] != getattr(ticket, name):
                children.append({"id": self._id(), "event_type": "Change",
                                 name: update[name],
                                 "previous_value": getattr(ticket, name)})
                setattr(ticket, name, update[name])
                count["fields"] += 1
        before = self._level(ticket.tags)
        added = [t for t in update.get("additional_tags") or [] if t not in ticket.tags]
        removed = [t for t in update.get("remove_tags") or [] if t in ticket.tags]
        if added or removed:
            ticket.tags = [t for t in ticket.tags if t not in removed] + added
            count["tags_added"] += len(added)
            count["tags_removed"] += len(removed)
            children.append({"id": self._id(), "event_type": "Change", "tags": ticket.tags,
                             "added_tags": added, "removed_tags": removed})
        if self._level(ticket.tags) > before:
            count["escalations"] += 1
        comment = update.get("comment")
        if isinstance(comment, dict) and comment.get("body"):
            comment_id = self._id()
            ticket.comments.append({
                "id": comment_id, "type": "Comment", "author_id": 361099,
                "body": comment["body"], "html_body": f"<p>{comment['body']}</p>",
                "plain_body": comment["body"], "public": comment.get("public", True) is True,
                "attachments": [], "via": {"channel": "api"}, "created_at": stamp(self.now)})
            count["comments"] += 1
            children.append({"id": comment_id, "event_type": "Comment",
                             "comment_present": True,
                             "comment_public": ticket.comments[-1]["public"]})
            comment_of[comment_id] = ticket.comments[-1]
        if not children:
            return None
        return self._touch(ticket, children, author=361099, comments=comment_of)

    def _level(self, tags: list[str]) -> int:
        rest = [t[len(self.escalation_prefix):] for t in tags
                if t.startswith(self.escalation_prefix)]
        return max((int(r) for r in rest if r.isdigit()), default=0)

    def _touch(self, ticket: Ticket, children: list[dict[str, Any]], author: int,
               comments: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
        # Zendesk's updated_at has whole seconds; two updates in one second of the desk's
        # clock would share a stamp, so the desk's clock ticks on with each update.
        at = max(self.now, ticket.updated_at + 1)
        self.now = max(self.now, at)
        ticket.updated_at = at
        return self._audit(ticket, at, children, author, comments)

    def _audit(self, ticket: Ticket, at: int, children: list[dict[str, Any]], author: int,
               comments: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
        """One update: an event of the event export (comments only flagged, as without the
        comment_events sideload) and an audit of the ticket, whose Comment events carry the
        comment (ListAuditsForTicket)."""
        audit_id = self._id()
        for comment in (comments or {}).values():
            self.comments[comment["id"]] = {**comment, "audit_id": audit_id}
        self.events.append({"id": audit_id, "ticket_id": ticket.id, "timestamp": at,
                            "created_at": stamp(at), "updater_id": author, "via": "Web form",
                            "event_type": "Audit", "child_events": children})
        events = []
        for child in children:
            kind = "Create" if child["event_type"] == "Create" else child["event_type"]
            fields = [name for name in ("status", "group_id", "assignee_id") if name in child]
            if fields:
                # ListAuditsForTicket: a change is {"field_name", "value", "previous_value"},
                # ids as text.
                name = fields[0]
                events.append({"id": child["id"], "type": kind, "field_name": name,
                               "value": _text(child[name]),
                               "previous_value": _text(child.get("previous_value"))})
            elif kind == "Comment":
                comment = (comments or {})[child["id"]]
                events.append({"id": child["id"], "type": "Comment",
                               "author_id": comment["author_id"], "body": comment["body"],
                               "html_body": comment["html_body"],
                               "plain_body": comment["plain_body"],
                               "public": comment["public"], "attachments": [],
                               "audit_id": audit_id})
        audit = {"id": audit_id, "ticket_id": ticket.id, "created_at": stamp(at),
                 "author_id": author, "events": events}
        ticket.audits.append(audit)
        return audit

    def set_client(self, pid: int | None) -> None:
        """The process of the client under test, which a kill_client fault kills."""
        self.client_pid = pid
        if pid is None:
            self.client_known.clear()
        else:
            self.client_known.set()

    def _kill_if(self, fault: Fault | None) -> None:
        if fault is None or fault.kind != "kill_client":
            return
        # The client's pid is told by the test as the client starts: wait for it (bounded).
        if self.client_known.wait(LATE_LIMIT) and self.client_pid:
            os.kill(self.client_pid, signal.SIGKILL)

    def _id(self) -> int:
        self._ids += 1
        return 90000 + self._ids


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, int) else value


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _handler(desk: FaultDesk) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{desk.email}/token:{desk.token}".encode()).decode()
    return type("Handler", (_Handler,), {"desk": desk, "expected": expected})


class _Handler(BaseHTTPRequestHandler):
    """One request to the desk (`_handler` binds it to a desk and its credentials)."""

    desk: FaultDesk
    expected: str  # the Authorization header of the agent's credentials

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parsed = urlparse(self.path)
        path = parsed.path.removesuffix(".json")
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        method = self.command
        fault = self.desk._fault(method, path)
        with self.desk.lock:
            self.desk.log.append((method, path, fault.kind if fault else None))
            self.desk.authorizations.append(self.headers.get("Authorization"))
        if not path.startswith("/hooks/") and self.headers.get("Authorization") != self.expected:
            # Zendesk's answer to missing or wrong credentials.
            return self._send(401, {}, {"error": "Couldn't authenticate you"})
        if fault is not None and self._instead(fault):
            return None
        body = json.loads(raw) if raw else None
        status, headers, payload = self.desk.answer(method, path, query, body, fault)
        return self._after(fault.kind if fault else None, status, headers, payload)

    def _instead(self, fault: Fault) -> bool:
        """Answer as the fault says, nothing processed; False for a fault that lets
        the desk process the request."""
        kind = fault.kind
        if kind == "429":
            # developer.zendesk.com "Rate limits": 429 with Retry-After in seconds.
            self._send(429, {"Retry-After": str(fault.retry_after)},
                       {"error": "APIRateLimitExceeded"})
        elif kind == "5xx":
            headers = {"Retry-After": str(fault.retry_after)} if fault.with_retry_after \
                else {}
            self._send(fault.status, headers, {"error": "ServiceUnavailable"})
        elif kind == "html200":
            self._raw(200, "text/html", b"<html><body><h1>Maintenance</h1>"
                      b"<p>We'll be right back.</p></body></html>")
        elif kind == "redirect":
            self._send(302, {"Location": f"http://127.0.0.2:{fault.port}{self.path}"},
                       None)
        elif kind == "reset_before":
            self._reset()
        elif kind == "late_unprocessed":
            self._wait_for_hang_up()
            self._send(503, {}, {"error": "ServiceUnavailable"})
        else:
            return False
        return True

    def _after(self, kind: str | None, status: int, headers: dict[str, str],
               payload: Any) -> None:
        """Answer a processed request, as a fault that lets it be processed says."""
        if kind == "reset_after":
            return self._reset()
        if kind == "late_processed":
            self._wait_for_hang_up()
        if kind == "truncated":
            data = json.dumps(payload).encode()
            return self._raw(status, "application/json", data[:len(data) // 2])
        return self._send(status, headers, payload)

    do_GET = do_PUT = do_POST = do_DELETE = _serve

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` of each answer by the desk's clock, the one that stamps `updated_at`
        and the events (RFC 9110 section 6.6.1: the origin server's clock)."""
        return formatdate(self.desk.now if timestamp is None else timestamp, usegmt=True)

    def _send(self, status: int, headers: dict[str, str], payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self._raw(status, "application/json; charset=utf-8", data, headers)

    def _raw(self, status: int, kind: str, data: bytes,
             headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client is gone (it timed out, or was killed)
            self.close_connection = True

    def _reset(self) -> None:
        """Close with an RST instead of answering."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
        self.connection.close()
        self.wfile, self.rfile = BytesIO(), BytesIO()
        self.close_connection = True

    def _wait_for_hang_up(self) -> None:
        """Hold the answer until the client closes its end (its read timeout): an event
        on the socket, not a sleep. Bounded by LATE_LIMIT."""
        with _blocking(self.connection):
            readable, _, _ = select.select([self.connection], [], [], LATE_LIMIT)
            if readable:
                try:
                    self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    pass

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def _blocking(connection: socket.socket) -> Iterator[None]:
    timeout = connection.gettimeout()
    connection.settimeout(None)
    try:
        yield
    finally:
        connection.settimeout(timeout)
