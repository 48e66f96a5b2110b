"""Freshdesk (API v2): tickets read in `updated_since` windows, written by PUT or by an
asynchronous bulk update, with private notes. Every write re-reads the ticket first, so an
edit made since it was read is a ConflictError, never overwritten. The conversation comes
from the tickets' `stats` (free, approximate) or, when configured, from each changed
ticket's conversations; worked time, when configured, from its time entries."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from requests.auth import HTTPBasicAuth

from sla_sync.connector.base import (
    Capabilities,
    Catalog,
    ConflictError,
    ConnectorError,
    OutcomeUnknown,
    Page,
    RecordGone,
    WriteResult,
    apply_each,
)
from sla_sync.connector.errors import ErrorMap
from sla_sync.connector.http import (
    HttpClient,
    client_from_settings,
    decode_json,
    follow,
    link_next,
    poll_delays,
)
from sla_sync.connector.mapping import FieldMap, NameMap, Notices, NoticeSink, ValueMap
from sla_sync.connector.model import (
    ChangeSet,
    Message,
    Note,
    Record,
    RecordError,
    StatusChange,
    custom_name,
    format_instant,
    merge_tags,
    note_html,
    note_text,
    parse_instant,
)
from sla_sync.connector.settings import (
    HTTP,
    Flag,
    Id,
    Instant,
    Nullable,
    Schema,
    Setting,
    Table,
    Text,
    url_setting,
)
from sla_sync.connector.watermark import Watermark, decode_cursor

OPEN, PENDING, RESOLVED, CLOSED = 2, 3, 4, 5
PRIORITIES = ValueMap("priority", {1: "low", 2: "normal", 3: "high", 4: "urgent"}, "normal")
STATUSES = ValueMap("status", {OPEN: "open", PENDING: "pending", RESOLVED: "solved",
                               CLOSED: "closed"}, "open")
#: `source`: 1 email, 2 portal, 3 phone, 7 chat, 9 feedback widget, 10 outbound email.
CHANNELS = ValueMap("channel", {1: "email", 2: "web", 3: "phone", 7: "chat", 9: "web",
                                10: "email"}, "other")

DEFAULT_REQUESTS_PER_MINUTE = 50  # a trial account's limit: fits every plan, leaves room
PER_PAGE = 100
#: Ticket ids per bulk_update request (Freshdesk's limit for bulk actions).
BULK_IDS = 100
#: Changes the sync loop hands over per apply_many. Identical changes share a bulk_update
#: only when they arrive in the same call, so the connector asks for many: 25 identical
#: changes of a run go out as one job, not split at the loop's batch boundary (23 + 2). A
#: helpdesk-wide failure mid-call leaves the whole call pending, settled by read_back.
RUN_BATCH = 1000
#: The ticket listing refuses pages past 300: a window is re-anchored well before that.
WINDOW_PAGES = 250
JOB_TIMEOUT = 120.0  # seconds to wait for a bulk update job
FIRST_READ = timedelta(days=30)  # what the first run reads without `start_at`
#: Job states that mean "not finished yet" (the docs do not list them; seen spellings).
RUNNING = frozenset({"IN PROGRESS", "QUEUED", "PENDING", "RUNNING", "STARTED"})
#: Ticket fields kept in Record.custom as they are.
KEPT = ("type", "due_by", "fr_due_by", "is_escalated", "fr_escalated", "requester_id",
        "company_id", "product_id")
STAT_TIMES = ("first_responded_at", "resolved_at", "closed_at", "reopened_at",
              "pending_since", "status_updated_at", "agent_responded_at",
              "requester_responded_at")
#: `source` 10: an outbound email, whose first message is the agent's.
OUTBOUND = 10



def _codes(example: str = "{6: hold}", unique: bool = False) -> Table:
    """`{6: hold}`: Freshdesk numbers (priority, status, source codes, group or agent ids)
    to names."""
    return Table(Id("a Freshdesk number"), Text("a name"),
                 f"a mapping of Freshdesk numbers to names, e.g. {example}",
                 unique="{value!r} names two ids; each name must be unique to write it back"
                 if unique else "")


_NAME = Nullable(Text("a name (or null)"))
SCHEMA = Schema("freshdesk", (
    url_setting("the account's address, e.g. https://acme.freshdesk.com"),
    Setting("api_key", Text(strip=True), "the Freshdesk API key", required=True, secret=True,
            missing="the Freshdesk API key is required (api_key: ${FRESHDESK_API_KEY})"),
    *HTTP,
    Setting("start_at", Instant(), "where the first run starts reading (default: 30 days "
            "back)"),
    Setting("priority_map", _codes(), "extra or changed priority codes", default={}),
    Setting("status_map", _codes(), "extra or changed status codes", default={}),
    Setting("channel_map", _codes(), "extra or changed source codes", default={}),
    Setting("groups", _codes("{48000123: support}", unique=True), "group ids to names",
            default={}),
    Setting("agents", _codes("{48000456: sam}", unique=True), "agent ids to names",
            default={}),
    Setting("tier_field", _NAME, "the custom field with the tier", default="cf_tier"),
    Setting("tier_tag_prefix", _NAME, "tags that give the tier"),
    Setting("escalation_field", _NAME, "the custom field the level is written to"),
    Setting("escalation_tag_prefix", Text("a name"), "the tag prefix of the level",
            default="sla_escalation_"),
    Setting("conversations", Flag(), "read each changed ticket's conversations (the exact "
            "conversation; one request per ticket)", default=False),
    Setting("time_entries", Flag(), "read each changed ticket's time entries (worked time; "
            "one request per ticket)", default=False),
    Setting("custom_fields", Table(Text("a custom field name"), Text("a cf_ field name"),
                                   "a mapping of custom field names to Freshdesk custom "
                                   "fields, e.g. {sla_due: cf_sla_due}",
                                   unique="{value!r} is mapped twice"),
            "set_field's custom.NAME to Freshdesk custom fields (read and written)",
            default={}),
))
#: How Freshdesk refuses one ticket's write (the rest of the run goes on). A 409 is a
#: refusal too: the version check is made by the connector, before it writes.
ERRORS = ErrorMap("freshdesk", detail=lambda response: f"HTTP {response.status_code}: "
                  f"{_detail(response)}",
                  conflict=frozenset(), refused=frozenset({400, 409, 422}))


@dataclass
class Options:
    """How tickets map to Records (the config's mapping keys)."""

    priorities: ValueMap = field(default_factory=lambda: PRIORITIES.extended(None))
    statuses: ValueMap = field(default_factory=lambda: STATUSES.extended(None))
    channels: ValueMap = field(default_factory=lambda: CHANNELS.extended(None))
    groups: NameMap = field(default_factory=lambda: _names("groups", {}))
    agents: NameMap = field(default_factory=lambda: _names("agents", {}))
    tier_field: str | None = "cf_tier"
    tier_tag_prefix: str | None = None
    escalation_field: str | None = None
    escalation_tag_prefix: str = "sla_escalation_"
    start_at: datetime | None = None
    conversations: bool = False
    time_entries: bool = False
    fields: FieldMap = field(default_factory=lambda: FieldMap("freshdesk"))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Options:
        v = SCHEMA.check(settings, partial=True)
        if v["escalation_field"] and "escalation_tag_prefix" in settings:
            raise ValueError("connector.escalation_tag_prefix: not used when "
                             "connector.escalation_field is set; give one of the two")
        return cls(
            priorities=PRIORITIES.extended(v["priority_map"]),
            statuses=STATUSES.extended(v["status_map"]),
            channels=CHANNELS.extended(v["channel_map"]),
            groups=_names("groups", v["groups"]), agents=_names("agents", v["agents"]),
            tier_field=v["tier_field"], tier_tag_prefix=v["tier_tag_prefix"],
            escalation_field=v["escalation_field"],
            escalation_tag_prefix=v["escalation_tag_prefix"], start_at=v["start_at"],
            conversations=v["conversations"], time_entries=v["time_entries"],
            fields=FieldMap("freshdesk", v["custom_fields"]),
        )

    @cached_property
    def escalation_tag(self) -> re.Pattern[str]:
        return re.compile(re.escape(self.escalation_tag_prefix) + r"(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Mark(Watermark[datetime]):
    """Where a read stands (see connector/watermark.py). Freshdesk stamps to the second, so
    several tickets can share the instant the next read starts from."""

    def encode(self) -> str:
        return json.dumps(self.to_json("updated_since", "ids", _stamp))

    @classmethod
    def decode(cls, cursor: str) -> Mark:
        return decode_cursor(cursor, lambda data: cls.from_json(
            data, "updated_since", "ids", lambda raw: parse_instant(raw, "updated_since")),
            f"freshdesk: the stored cursor {cursor[:80]!r} was not written by this connector")


class Freshdesk:
    capabilities = Capabilities(bulk_writes=True, batch_size=RUN_BATCH, safe_update=True,
                                tags=True, notes=True, leads=False)

    def __init__(self, client: HttpClient, options: Options | None = None, *,
                 window_pages: int = WINDOW_PAGES, job_timeout: float = JOB_TIMEOUT,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.client = client
        self.options = options or Options()
        self.window_pages = window_pages
        self.job_timeout = job_timeout
        self.now = now

    @classmethod
    def from_settings(cls, settings: dict[str, Any], base_dir: Path) -> Freshdesk:
        values = SCHEMA.check(settings)
        api_key = values["api_key"]
        if urlparse(values["url"]).path not in ("", "/"):
            raise ValueError("connector.url: give the account's address only (e.g. "
                             "https://acme.freshdesk.com), without a path")
        options = Options.from_settings(settings)
        client = client_from_settings(settings, "freshdesk",
                                      auth=HTTPBasicAuth(api_key, "X"),
                                      requests_per_minute=DEFAULT_REQUESTS_PER_MINUTE)
        return cls(client, options)

    @property
    def identity(self) -> str:
        return f"freshdesk:{self.client.base_url.rstrip('/')}"

    # -- reading ---------------------------------------------------------------------------

    def fetch(self, cursor: str | None) -> Iterator[Page]:
        o = self.options
        notices = Notices()
        mark = Mark.decode(cursor) if cursor else Mark(o.start_at or self.now() - FIRST_READ)
        position = 0
        while True:
            window, pages, more = mark, 0, False
            for body, response in self._listing(window.edge):
                pages += 1
                page = Page(records=[], cursor=None)
                for number, raw in enumerate(body, start=position):
                    try:
                        record = self._record(raw, notices, number)
                        if window.covers(record.id, record.updated_at):
                            continue
                        record = self._enriched(record, raw, number)
                    except RecordError as exc:
                        page.problems.append(exc)
                        continue
                    page.records.append(record)
                    mark = mark.after(record.id, record.updated_at)
                position += len(body)
                page.notices = notices.take()
                page.cursor = mark.encode()
                yield page
                more = link_next(response) is not None
                if more and pages >= self.window_pages:
                    break
            if not more:
                return
            if mark.since == window.since:
                raise ConnectorError(
                    f"freshdesk: more than {pages * PER_PAGE} tickets share updated_at "
                    f"{_stamp(mark.edge)}; the listing cannot page past them")

    def _listing(self, since: datetime) -> Iterator[tuple[list[Any], requests.Response]]:
        """One listing window from `since`, oldest change first: (tickets, response) per
        page, one request each, following the Link header."""
        where = "freshdesk: GET /api/v2/tickets"
        query = urlencode({"updated_since": _stamp(since), "order_by": "updated_at",
                           "order_type": "asc", "per_page": PER_PAGE, "include": "stats"})
        last: list[requests.Response] = []

        def read(url: str) -> tuple[list[Any], requests.Response]:
            body, response = self._list_page(url, where, "a list of tickets")
            last[:] = [response]
            return body, response

        first = self.client.url("/api/v2/tickets") + "?" + query
        for body in follow(first, lambda _body, response: link_next(response), read, where):
            yield body, last[0]

    # -- what the account has (sla-sync check) --------------------------------------------

    def catalog(self) -> Catalog:
        """The account's priorities and statuses (the ticket fields' choices) and custom
        fields, its groups and agents, and whether the API key's agent sees every ticket:
        one request for the agent (`/agents/me`), one for the ticket fields, one per 100
        groups and one per 100 agents. Only reads."""
        sent = self.client.requests_sent
        o = self.options
        catalog = Catalog("Freshdesk")
        me = self.client.json("GET", "/api/v2/agents/me")
        if not isinstance(me, dict):
            raise ConnectorError("freshdesk: GET /api/v2/agents/me: the answer is not an agent")
        if me.get("ticket_scope") != 1:
            catalog.problems.append((
                "connector.api_key", f"the API key's agent has ticket scope "
                f"{me.get('ticket_scope')!r}, not 1 (global access): tickets outside its "
                "groups or assignments would never be read"))
        fields = self.client.json("GET", "/api/v2/ticket_fields")
        if not isinstance(fields, list):
            raise ConnectorError("freshdesk: GET /api/v2/ticket_fields: the answer is not a "
                                 "list of fields")
        by_name = {f.get("name"): f for f in fields if isinstance(f, dict)}

        def codes(name: str) -> list[int]:
            choices = (by_name.get(name) or {}).get("choices")
            if isinstance(choices, dict):  # priority: {"Low": 1}; status: {"2": [labels]}
                raw = choices.values() if name == "priority" else choices.keys()
                return [int(c) for c in raw if str(c).isdigit()]
            return []

        for name, vocabulary, attribute in (("priority", o.priorities, "priorities"),
                                            ("status", o.statuses, "statuses")):
            live = codes(name)
            setattr(catalog, attribute, {vocabulary.table[c] for c in live
                                         if c in vocabulary.table}
                    if live else set(vocabulary.table.values()))
            choices = by_name[name].get("choices") if live else None
            choices = choices if isinstance(choices, dict) else {}
            labels = {str(c): n for n, c in choices.items()} if name == "priority" else {
                c: n[0] for c, n in choices.items() if isinstance(n, list) and n}
            for code in live:
                if code not in vocabulary.table:
                    catalog.problems.append((
                        f"connector.{name}_map", f"Freshdesk's {name} {code} "
                        f"({labels.get(str(code), '?')}) is not mapped: tickets in it read "
                        f"as {vocabulary.fallback!r}"))
        custom = sorted(str(name) for name in by_name if str(name).startswith("cf_"))
        for key in ("tier_field", "escalation_field"):
            name = getattr(o, key)
            if name and name not in by_name:
                catalog.problems.append((
                    f"connector.{key}", f"no ticket field {name!r} in Freshdesk (custom "
                    f"fields: {', '.join(custom) or 'none'})"))
        catalog.fields = set(KEPT) | {"custom_fields"} | set(self.options.fields.fields)
        groups = {g["id"]: str(g.get("name")) for g in self._pages("/api/v2/groups")
                  if isinstance(g.get("id"), int)}
        agents = {a["id"]: str((a.get("contact") or {}).get("name"))
                  for a in self._pages("/api/v2/agents") if isinstance(a.get("id"), int)}
        catalog.groups = self._known(catalog, o.groups, "group", groups)
        catalog.agents = self._known(catalog, o.agents, "agent", agents)
        catalog.requests = self.client.requests_sent - sent
        return catalog

    def directory(self) -> dict[str, dict[str, str]]:
        """The account's agents by the name records give them (the `agents` map's, else the
        id), each with its email address, and its time zone where Freshdesk's is an IANA
        name (Freshdesk mostly keeps Rails names such as "Berlin", left out rather than
        guessed): alerts to `{assignee}` go there. `available` is Freshdesk's (whether the
        agent takes new tickets: "true"/"false"), which assign_next reads. One request per
        100 agents."""
        found: dict[str, dict[str, str]] = {}
        for agent in self._pages("/api/v2/agents"):
            contact = agent.get("contact")
            if not isinstance(agent.get("id"), int) or not isinstance(contact, Mapping):
                continue
            entry = {"name": self.options.agents.name(agent["id"])}
            if isinstance(contact.get("email"), str) and contact["email"]:
                entry["email"] = contact["email"]
            if isinstance(agent.get("available"), bool):
                entry["available"] = str(agent["available"]).lower()
            zone = contact.get("time_zone")
            if isinstance(zone, str) and "/" in zone:
                try:
                    ZoneInfo(zone)
                    entry["timezone"] = zone
                except (ValueError, ZoneInfoNotFoundError):
                    pass
            found[entry["name"]] = entry
        return found

    def _list_page(self, url: str, where: str, what: str
                   ) -> tuple[list[Any], requests.Response]:
        """One page of a listing paged by Link headers: only on this account's host (the API
        key would go along to another), and a JSON list."""
        base, target = urlparse(self.client.base_url), urlparse(url)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            raise ConnectorError(f"{where}: the Link header points at another host "
                                 f"({target.netloc}); refusing to follow it")
        response = self.client.get(url)
        body = decode_json(response, where)
        if not isinstance(body, list):
            raise ConnectorError(f"{where}: expected {what}")
        return body, response

    def _pages(self, path: str) -> list[dict[str, Any]]:
        """Every item of a listing, 100 a page, following the Link header on this host."""
        where = f"freshdesk: GET {path}"
        items: list[dict[str, Any]] = []

        def read(url: str) -> tuple[list[Any], requests.Response]:
            return self._list_page(url, where, "a list")

        first = self.client.url(path) + "?" + urlencode({"per_page": PER_PAGE})
        for body in follow(first, lambda _body, response: link_next(response), read, where):
            items += [item for item in body if isinstance(item, dict)]
        return items

    @staticmethod
    def _known(catalog: Catalog, names: NameMap, kind: str, live: Mapping[int, str]) -> set[str]:
        """The names rules may use (the config's name of a live id, else the id), the
        config's ids Freshdesk lacks, and hints for Freshdesk names the config does not map."""
        for number in names.names:
            if number not in live:
                shown = ", ".join(f"{i} {n}" for i, n in sorted(live.items())[:10])
                catalog.problems.append((f"connector.{names.setting}.{number}",
                                         f"no {kind} {number} in Freshdesk (known: "
                                         f"{shown or 'none'})"))
        for number, name in live.items():
            if number not in names.names:
                catalog.hints.setdefault((kind, name), (
                    f"Freshdesk's {kind} {name!r} has id {number}: name it in "
                    f"connector.{names.setting} (e.g. {number}: {name})"))
            elif names.names[number] != name:
                catalog.hints.setdefault((kind, name), (
                    f"Freshdesk's {kind} {name!r} ({number}) is named "
                    f"{names.names[number]!r} in connector.{names.setting}"))
        return {names.names.get(number, str(number)) for number in live}

    def get(self, record_id: str) -> Record | None:
        raw = self._ticket(record_id, stats=True)
        return None if raw is None else self._enriched(self._record(raw, [], None), raw, None)

    def read_back(self, record_id: str, since: datetime | None = None) -> Record | None:
        """The ticket with its private notes added since `since`, from its conversations: a
        ticket does not carry them. One request for the ticket, one per 100 conversations
        (read once, also for the conversation when `conversations` is on)."""
        raw = self._ticket(record_id, stats=True)
        if raw is None:
            return None
        items = self._listed(record_id, "conversations") or []
        record = self._enriched(self._record(raw, [], None), raw, None, items)
        return dataclasses.replace(record, notes=tuple(
            note for note in _private_notes(items) if since is None or note.at >= since))

    def _enriched(self, record: Record, raw: Mapping[str, Any], position: int | None,
                  conversations: list[Any] | None = None) -> Record:
        """The record with what the ticket itself does not carry, where configured: its
        conversation from its conversations, its worked time from its time entries (one
        request each per 100 items). RecordError when the ticket is gone or an item is
        malformed."""
        o = self.options
        if not (o.conversations or o.time_entries):
            return record
        try:
            changes: dict[str, Any] = {}
            if o.conversations:
                items = conversations if conversations is not None else \
                    self._listed(record.id, "conversations")
                changes["messages"] = None if items is None else _messages(raw, items)
            if o.time_entries:
                entries = self._listed(record.id, "time_entries")
                changes["worked_seconds"] = None if entries is None else _worked(entries)
            if None in changes.values():
                raise ValueError("deleted since it was listed")
            return dataclasses.replace(record, **changes)
        except ValueError as exc:
            raise RecordError(str(exc), record_id=record.id, position=position) from None

    def _listed(self, record_id: str, what: str) -> list[Any] | None:
        """Every item of a ticket's `conversations` or `time_entries`, 100 a page following
        the Link header on this host; None when the ticket is gone (404)."""
        where = f"freshdesk: GET /api/v2/tickets/{{id}}/{what}"
        items: list[Any] = []

        def read(url: str) -> tuple[Any, requests.Response]:
            if urlparse(url).netloc != urlparse(self.client.base_url).netloc:
                raise ConnectorError(f"{where}: the Link header points at another host; "
                                     "refusing to follow it", record_id=record_id)
            response = self.client.get(url, record_id=record_id, ok=(200, 404))
            if response.status_code == 404:
                return None, response
            body = decode_json(response, where)
            if not isinstance(body, list):
                raise ConnectorError(f"{where}: expected a list of {what}",
                                     record_id=record_id)
            return body, response

        first = self.client.url(_ticket_path(record_id) + f"/{what}") + "?per_page=100"
        for body in follow(first, lambda body, response: None if body is None
                           else link_next(response), read, where):
            if body is None:
                return None
            items += body
        return items

    def _ticket(self, record_id: str, stats: bool) -> dict[str, Any] | None:
        """The ticket as it is now; None when it is gone (deleted, spam, merged away)."""
        response = self.client.request("GET", _ticket_path(record_id), ok=(200, 404),
                                       params={"include": "stats"} if stats else None)
        if response.status_code == 404:
            return None
        raw = decode_json(response, "freshdesk: GET /api/v2/tickets/{id}")
        if not isinstance(raw, dict):
            raise ConnectorError(f"freshdesk: ticket {record_id}: expected a ticket object")
        return None if raw.get("deleted") or raw.get("spam") else raw

    def _record(self, raw: Any, notices: NoticeSink, position: int | None) -> Record:
        if not isinstance(raw, Mapping):
            raise RecordError("is not an object", position=position)
        raw_id = raw.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or str(raw_id) == "":
            raise RecordError("has no id", position=position)
        record_id = str(raw_id)
        try:
            return self._ticket_record(record_id, raw, notices)
        except (ValueError, TypeError) as exc:
            raise RecordError(str(exc), record_id=record_id, position=position) from None

    def _ticket_record(self, record_id: str, raw: Mapping[str, Any],
                       notices: NoticeSink) -> Record:
        o = self.options
        created = parse_instant(raw.get("created_at"), "created_at")
        updated = parse_instant(raw.get("updated_at"), "updated_at")
        stats = _object(raw, "stats")
        stamps = {name: _optional_instant(stats.get(name), f"stats.{name}")
                  for name in STAT_TIMES}
        custom_fields = dict(_object(raw, "custom_fields"))
        mapped = o.fields.read(custom_fields.get)
        tags = _strings(raw.get("tags"), "tags")
        level, tags = self._escalation(tags, custom_fields)
        tier, tags = self._tier(tags, custom_fields)
        status = o.statuses.read(raw.get("status"), notices)
        subject = raw.get("subject") or ""
        if not isinstance(subject, str):
            raise ValueError(f"subject: expected a string, got {subject!r}")
        custom = {name: raw[name] for name in KEPT if raw.get(name) is not None}
        if custom_fields:
            custom["custom_fields"] = custom_fields
        custom.update(mapped)
        return Record(
            id=record_id, kind="ticket", created_at=created, updated_at=updated,
            subject=subject, status=status,
            priority=o.priorities.read(raw.get("priority"), notices), tier=tier,
            channel=o.channels.read(raw.get("source"), notices),
            group=o.groups.read(raw.get("group_id"), notices),
            assignee=o.agents.read(raw.get("responder_id"), notices), tags=tuple(tags),
            first_response_at=stamps["first_responded_at"],
            solved_at=stamps["resolved_at"] or stamps["closed_at"],
            status_history=self._history(created, status, stamps),
            escalation_level=level, custom=custom,
            url=f"{self.client.base_url.rstrip('/')}/a/tickets/{record_id}",
            messages=None if self.options.conversations or raw.get("stats") is None
            else _stat_messages(raw, stamps),
        )

    def _history(self, created: datetime, status: str,
                 stamps: Mapping[str, datetime | None]) -> tuple[StatusChange, ...]:
        """What `stats` tells of the status history. Freshdesk keeps no cheap log: the
        current status since `status_updated_at`, the last resolve, close, reopening and
        pending start are known; earlier pauses are not."""
        names = self.options.statuses.table
        events = [(created, names.get(OPEN, "open"))]  # tickets are created open
        for name, code in (("resolved_at", RESOLVED), ("closed_at", CLOSED),
                           ("reopened_at", OPEN)):
            at = stamps[name]
            if at is not None and code in names:
                events.append((at, names[code]))
        pending = stamps["pending_since"]
        if pending is not None and status == names.get(PENDING):
            events.append((pending, status))
        changed = stamps["status_updated_at"]
        if changed is not None:
            # The current status holds since then: a later stamp is left from before.
            events = [event for event in events if event[0] <= changed] + [(changed, status)]
        history: list[StatusChange] = []
        for at, value in sorted(events, key=lambda event: event[0]):
            if not history or history[-1].status != value:
                history.append(StatusChange(max(at, created), value))
        return tuple(history)

    def _escalation(self, tags: list[str], custom_fields: dict[str, Any],
                    ) -> tuple[int, list[str]]:
        """The escalation level and the tags left once the level's own are taken out."""
        name = self.options.escalation_field
        if name:
            value = custom_fields.pop(name, None)
            if value is None or value == "":
                return 0, tags
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"custom_fields.{name}: expected a whole number >= 0, "
                                 f"got {value!r}")
            return value, tags
        pattern = self.options.escalation_tag
        levels = [int(match.group(1)) for tag in tags if (match := pattern.match(tag))]
        return max(levels, default=0), [tag for tag in tags if not pattern.match(tag)]

    def _tier(self, tags: list[str], custom_fields: dict[str, Any]) -> tuple[str, list[str]]:
        o = self.options
        tier = ""
        if o.tier_field:
            value = custom_fields.pop(o.tier_field, None)
            tier = "" if value is None else str(value)
        prefix = (o.tier_tag_prefix or "").lower()
        if not prefix:
            return tier, tags
        kept = []
        for tag in tags:
            if tag.lower().startswith(prefix) and len(tag) > len(prefix):
                tier = tier or tag[len(prefix):]
            else:
                kept.append(tag)
        return tier, kept

    # -- writing ---------------------------------------------------------------------------

    def apply(self, change: ChangeSet, now: datetime) -> Record | None:
        record_id = change.record_id
        current = self._fresh(change, stats=True)
        body = self._properties(change)
        try:
            tags = self._tags_after(_strings(current.get("tags"), "tags"), change)
        except ValueError as exc:
            raise ConnectorError(f"freshdesk: ticket {record_id}: {exc}",
                                 record_id=record_id) from None
        if tags is not None:
            body["tags"] = tags
        written = self._put(record_id, body) if body else current
        for text in change.notes:
            self._add_note(record_id, text)
        if change.notes or self.options.conversations or self.options.time_entries:
            # A note moves updated_at again: the PUT's copy is not the last. The PUT's
            # answer carries no conversation or time entries: the next fetch reads them.
            return None
        try:
            return self._record({**written, "stats": current.get("stats")}, [], None)
        except RecordError:
            return None  # written; the next fetch reads it back

    def apply_many(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        if len(changes) > self.capabilities.batch_size:
            raise ValueError(f"at most {self.capabilities.batch_size} changes per batch")
        results: dict[int, WriteResult] = {}
        groups: dict[str, list[tuple[int, ChangeSet]]] = {}
        for index, change in enumerate(changes):
            if change.add_tags or change.remove_tags or (
                    change.escalation_level is not None
                    and not self.options.escalation_field):
                continue  # tags are replaced whole: a PUT merges them on a fresh read
            try:
                properties = self._properties(change)
            except ConnectorError as exc:
                results[index] = WriteResult(change.record_id, error=exc)
                continue
            if not properties:
                continue
            groups.setdefault(json.dumps(properties, sort_keys=True), []).append(
                (index, change))
        for key, members in groups.items():
            for start in range(0, len(members), BULK_IDS):
                chunk = members[start:start + BULK_IDS]
                # One ticket alone costs a PUT, less than a job and its polls.
                if len(chunk) > 1:
                    results.update(self._bulk_update(json.loads(key), chunk))
        for index, change in enumerate(changes):
            # A bulk update carries no private note: each goes after the job wrote its ticket.
            result = results.get(index)
            if result is not None and result.error is None and change.notes:
                results[index] = self._notes_after(change)
        single = [index for index in range(len(changes)) if index not in results]
        for index, result in zip(single, apply_each(self, [changes[i] for i in single], now),
                                 strict=True):
            results[index] = result
        return [results[index] for index in range(len(changes))]

    def _notes_after(self, change: ChangeSet) -> WriteResult:
        try:
            for text in change.notes:
                self._add_note(change.record_id, text)
        except ConnectorError as exc:
            if exc.record_id is None:
                raise
            return WriteResult(change.record_id, error=exc)
        return WriteResult(change.record_id)

    def _fresh(self, change: ChangeSet, stats: bool) -> dict[str, Any]:
        """The ticket read just before writing; refuses a write planned on another version."""
        record_id = change.record_id
        raw = self._ticket(record_id, stats)
        if raw is None:
            raise RecordGone(f"freshdesk: ticket {record_id} no longer exists (deleted, "
                             "spam or merged)", record_id=record_id)
        if change.base_updated_at is not None:
            try:
                current = parse_instant(raw.get("updated_at"), "updated_at")
            except ValueError as exc:
                raise ConnectorError(f"freshdesk: ticket {record_id}: {exc}",
                                     record_id=record_id) from None
            if current != change.base_updated_at:
                raise ConflictError(
                    f"freshdesk: ticket {record_id} changed since it was read (updated_at "
                    f"{format_instant(current)}, planned on "
                    f"{format_instant(change.base_updated_at)})", record_id=record_id)
        return raw

    def _properties(self, change: ChangeSet) -> dict[str, Any]:
        """The ticket properties a change sets, in Freshdesk's values."""
        o = self.options
        writers: dict[str, tuple[str, Callable[[str], Any]]] = {
            "priority": ("priority", o.priorities.write),
            "status": ("status", o.statuses.write),
            "group": ("group_id", o.groups.write),
            "assignee": ("responder_id", o.agents.write),
        }
        properties: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        try:
            for name, value in change.fields.items():
                if custom_name(name):  # set_field: one of the ticket's custom_fields
                    custom[o.fields.theirs(custom_name(name))] = value
                    continue
                key, write = writers[name]
                properties[key] = write(value)
        except ValueError as exc:
            raise ConnectorError(f"freshdesk: ticket {change.record_id}: {exc}",
                                 record_id=change.record_id) from None
        if change.escalation_level is not None and o.escalation_field:
            custom[o.escalation_field] = change.escalation_level
        if custom:
            properties["custom_fields"] = custom
        return properties

    def _tags_after(self, current: list[str], change: ChangeSet) -> list[str] | None:
        """The ticket's whole tag list after the change (Freshdesk replaces the list on
        write), or None when it stays as it is."""
        add, remove = list(change.add_tags), list(change.remove_tags)
        if change.escalation_level is not None and not self.options.escalation_field:
            pattern = self.options.escalation_tag
            level = f"{self.options.escalation_tag_prefix}{change.escalation_level}"
            remove += [tag for tag in current if pattern.match(tag)
                       and tag.lower() != level.lower()]
            if change.escalation_level > 0:
                add.append(level)
        merged = merge_tags(current, add, remove)
        return None if merged == current else merged

    def _put(self, record_id: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.request("PUT", _ticket_path(record_id), json=body,
                                       ok=ERRORS.ok(200), record_id=record_id)
        ERRORS.check(response, record_id, "the update")
        raw = decode_json(response, "freshdesk: PUT /api/v2/tickets/{id}", written=True,
                          record_id=record_id)
        if not isinstance(raw, dict):
            raise ConnectorError(f"freshdesk: ticket {record_id}: expected a ticket object")
        return raw

    def _add_note(self, record_id: str, text: str) -> None:
        body = {"body": note_html(text), "private": True}
        response = self.client.request("POST", _ticket_path(record_id) + "/notes", json=body,
                                       ok=ERRORS.ok(200, 201), record_id=record_id)
        ERRORS.check(response, record_id, "the note")

    def _bulk_update(self, properties: dict[str, Any], members: list[tuple[int, ChangeSet]],
                     ) -> dict[int, WriteResult]:
        """One bulk update for changes that set the same properties: each ticket re-read
        first, then one job, polled until it reports every ticket."""
        results: dict[int, WriteResult] = {}
        ready: list[tuple[int, ChangeSet]] = []
        for index, change in members:
            try:
                self._fresh(change, stats=False)
            except ConnectorError as exc:
                if exc.record_id is None:
                    raise
                results[index] = WriteResult(change.record_id, error=exc)
                continue
            ready.append((index, change))
        if not ready:
            return results
        ids = [int(change.record_id) for _, change in ready]
        response = self.client.request(
            "POST", "/api/v2/tickets/bulk_update", ok=(200, 202, 400),
            json={"bulk_action": {"ids": ids, "properties": properties}})
        if response.status_code == 400:
            detail = _detail(response)
            for index, change in ready:
                results[index] = WriteResult(change.record_id, error=ConnectorError(
                    f"freshdesk: ticket {change.record_id}: bulk update refused ({detail})",
                    record_id=change.record_id))
            return results
        accepted = decode_json(response, "freshdesk: POST /api/v2/tickets/bulk_update",
                               written=True)
        job_id = str(accepted.get("job_id") or "") if isinstance(accepted, dict) else ""
        if not job_id:
            raise OutcomeUnknown("freshdesk: POST /api/v2/tickets/bulk_update: the response "
                                 "names no job_id")
        try:
            outcome = self._await_job(job_id)
        except ConnectorError as exc:
            if isinstance(exc, OutcomeUnknown):
                raise
            # The job was accepted: what it did is unknown until the tickets are read.
            raise OutcomeUnknown(f"{exc}; the tickets are read back to settle it") from None
        for index, change in ready:
            record_id = change.record_id
            if outcome is None:
                error: ConnectorError | None = OutcomeUnknown(
                    f"freshdesk: ticket {record_id}: bulk update job {job_id} still running "
                    f"after {self.job_timeout:.0f}s", record_id=record_id)
            elif record_id not in outcome:
                error = OutcomeUnknown(f"freshdesk: ticket {record_id}: bulk update job "
                                       f"{job_id} does not report it", record_id=record_id)
            elif outcome[record_id] is not None:
                error = ConnectorError(f"freshdesk: ticket {record_id}: not updated by bulk "
                                       f"update job {job_id} ({outcome[record_id]})",
                                       record_id=record_id)
            else:
                error = None
            results[index] = WriteResult(record_id, error=error)
        return results

    def _await_job(self, job_id: str) -> dict[str, str | None] | None:
        """Ticket id -> None (updated) or why not, once the job is done; None on timeout.
        Waits grow from 1s to 10s between polls."""
        for delay in poll_delays(self.job_timeout):
            self.client.sleep(delay)
            job = self.client.json("GET", f"/api/v2/jobs/{quote(job_id, safe='')}")
            if not isinstance(job, dict):
                raise ConnectorError(f"freshdesk: job {job_id}: expected a job object")
            state = str(job.get("status") or "").upper().replace("_", " ")
            if state not in RUNNING:
                break
        else:
            return None
        outcome: dict[str, str | None] = {}
        for item in job.get("data") or []:
            if isinstance(item, dict) and item.get("id") is not None:
                failed = item.get("success") is not True
                why = item.get("errors") or item.get("error") or item.get("message") \
                    or f"job {state.lower() or 'ended'}"
                outcome[str(item["id"])] = str(why)[:200] if failed else None
        return outcome


def _opening(raw: Mapping[str, Any]) -> str:
    """Who wrote the ticket's first message: the agent of an outbound email, else the
    customer (a phone or portal ticket an agent typed in is still the customer's request)."""
    return "agent" if raw.get("source") == OUTBOUND else "customer"


def _stat_messages(raw: Mapping[str, Any], stamps: Mapping[str, datetime | None],
                   ) -> tuple[Message, ...]:
    """The conversation as far as `stats` tells it: the opening message, the last agent
    reply, the last requester message. Only the current cycle is known: a wait that began
    with an earlier customer message reads as beginning at the last one. The first reply
    is left out, though known (`first_response_at` has it): with it, the time between the
    first and the last reply would read as one cycle, a guess."""
    created = parse_instant(raw.get("created_at"), "created_at")
    known = [(created, _opening(raw))]
    for name, author in (("agent_responded_at", "agent"),
                         ("requester_responded_at", "customer")):
        at = stamps.get(name)
        if at is not None:
            known.append((max(at, created), author))
    unique = sorted(set(known), key=lambda entry: (entry[0], entry[1] == "customer"))
    return tuple(Message(at, author) for at, author in unique)


def _messages(raw: Mapping[str, Any], items: list[Any]) -> tuple[Message, ...]:
    """The conversation from a ticket's conversations: the opening message, then each reply
    or note (a private note is not public); the requester's, or one that came in from
    outside (`incoming`: an email from a contact), is the customer's."""
    created = parse_instant(raw.get("created_at"), "created_at")
    requester = raw.get("requester_id")
    messages = [Message(created, _opening(raw))]
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"conversations[{i}]: expected an object")
        at = parse_instant(item.get("created_at"), f"conversations[{i}].created_at")
        customer = item.get("incoming") is True or (
            requester is not None and item.get("user_id") == requester)
        messages.append(Message(max(at, created), "customer" if customer else "agent",
                                public=item.get("private") is not True))
    return tuple(sorted(messages, key=lambda message: message.at))


def _worked(entries: list[Any]) -> int:
    """The seconds of a ticket's time entries (`time_spent` is "hh:mm")."""
    total = 0
    for i, entry in enumerate(entries):
        spent = entry.get("time_spent") if isinstance(entry, Mapping) else None
        match = re.fullmatch(r"(\d{1,6}):([0-5]\d)", spent) if isinstance(spent, str) else None
        if match is None:
            raise ValueError(f"time_entries[{i}].time_spent: expected hh:mm, got {spent!r}")
        total += int(match.group(1)) * 3600 + int(match.group(2)) * 60
    return total


def _private_notes(items: list[Any]) -> list[Note]:
    """The private notes of a ticket's conversations (replies and public notes are never
    sla-sync's)."""
    notes = []
    for item in items:
        if not isinstance(item, Mapping) or item.get("private") is not True:
            continue
        text = item.get("body_text")
        if not isinstance(text, str):
            text = note_text(item.get("body"))
        try:
            at = parse_instant(item.get("created_at"), "created_at")
        except ValueError:
            continue
        notes.append(Note(at, text))
    return notes


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ticket_path(record_id: str) -> str:
    return f"/api/v2/tickets/{quote(record_id, safe='')}"


def _detail(response: requests.Response) -> str:
    """Freshdesk's error body: a description and the fields it refused."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    parts = [str(body.get("description") or body.get("message") or
                 f"HTTP {response.status_code}")]
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            parts.append(f"{error.get('field') or '?'}: {error.get('message') or ''}".strip())
    return "; ".join(parts)[:300]


def _object(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name}: expected a list of strings, got {value!r}")
    return list(value)


def _optional_instant(value: Any, name: str) -> datetime | None:
    return None if value in (None, "") else parse_instant(value, name)


def _names(setting: str, names: dict[Any, str]) -> NameMap:
    attribute = {"groups": "group_id", "agents": "responder_id"}[setting]
    return NameMap(setting, attribute, names, vendor="Freshdesk")
