"""Request Tracker 5 (REST2, `/REST/2.0`): tickets read by TicketSQL on `LastUpdated`; their
status history, conversation and owner and queue changes from the ticket history; writes by
`PUT` with `If-Match`, notes as comments.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from sla_sync.connector.base import (
    Capabilities,
    Catalog,
    ConflictError,
    ConnectorError,
    Page,
    RecordGone,
    WriteResult,
    apply_each,
)
from sla_sync.connector.errors import ErrorMap
from sla_sync.connector.http import (
    HeaderToken,
    HttpClient,
    ShortPages,
    client_from_settings,
    numbered,
)
from sla_sync.connector.mapping import FieldMap, Notices, NoticeSink, ValueMap
from sla_sync.connector.model import (
    INITIAL_STATUS,
    Assignment,
    ChangeSet,
    Message,
    Note,
    Record,
    RecordError,
    StatusChange,
    custom_name,
    merge_tags,
    parse_instant,
)
from sla_sync.connector.settings import (
    HTTP,
    Key,
    Nullable,
    Number,
    Schema,
    Setting,
    Table,
    Text,
    Zone,
    url_setting,
)
from sla_sync.connector.watermark import Watermark, decode_cursor

#: Record priority -> RT's number. A number reads as the name with the greatest number at or
#: below it, as RT's own %PriorityAsString labels do.
PRIORITIES = {"low": 0, "normal": 50, "high": 75, "urgent": 100}
FALLBACK_PRIORITY = "normal"
#: RT status -> Record status (RT's default lifecycle). Writing a status takes the first RT
#: status that reads as it.
STATUSES = {"new": "new", "open": "open", "stalled": "pending", "resolved": "solved",
            "rejected": "closed", "deleted": "closed"}
FALLBACK_STATUS = "open"
TAGS_FIELD, TIER_FIELD, ESCALATION_FIELD = "Tags", "Tier", "Escalation level"

PER_PAGE = 100  # REST2's maximum
TICKET_FIELDS = ("Subject,Status,Priority,Queue,Owner,Created,LastUpdated,Resolved,Requestor,"
                 "TimeWorked,CustomFields")
HISTORY_FIELDS = "Type,Created,Field,OldValue,NewValue,Creator"
NOBODY = "Nobody"
#: The transactions of a conversation: the request that opened the ticket, replies (seen
#: by the requestors) and comments (private).
MESSAGE_TYPES = {"Create": True, "Correspond": True, "Comment": False}
#: Transaction types that change the owner (RT::Ticket::SetOwner); RT 5 records them all
#: as `Set`, older versions by how the owner changed.
OWNER_TYPES = frozenset({"Set", "Take", "Untake", "Give", "Steal", "Force"})
#: RT's own users, which no ticket is assigned to.
SYSTEM_USERS = frozenset({"RT_System"})
NOT_SET = datetime(1970, 1, 1, tzinfo=UTC)  # RT's "not set" date
SQL_STAMP = "%Y-%m-%d %H:%M:%S"
#: The messages RT gives for a change it made (or found already made). Any other message in
#: a PUT's answer is a refusal ("That user may not own tickets in that queue", "Could not
#: add a new value to custom field ...", "Permission Denied", ...).
APPLIED = re.compile(
    r"changed from .* to |"  # Ticket 7: Priority changed from 'Low' to 'High'
    r" changed to |"  # Escalation level 1 changed to 2
    r" added as a value for |"  # sla_breach added as a value for Tags
    r"^\S.* added$|"  # Escalation level 1 added
    r" is no longer a value for custom field |"
    r"That is already the current value")

_FIELD = Text("a custom field name")
SCHEMA = Schema("rt", (
    url_setting("RT's base URL, without /REST/2.0"),
    Setting("token", Text(strip=True), "the API user's auth token", required=True,
            secret=True, missing="an RT auth token is required (token: ${RT_TOKEN})"),
    *HTTP,
    Setting("query", Text("TicketSQL text, e.g. \"Queue = 'support' OR Queue = 'tier2'\"",
                          empty=True, strip=True), "TicketSQL that narrows the tickets",
            default=""),
    Setting("timezone", Zone(" (the API user's timezone in RT, e.g. UTC)"),
            "the API user's timezone in RT", default=ZoneInfo("UTC")),
    Setting("priority_map", Nullable(Table(Key(), Number(above=None, whole=True,
                                                         expected="RT's priority number"))),
            "extra or changed `name: number` pairs"),
    Setting("status_map", Nullable(Table(Key(), Text("a status name"))),
            "extra or changed `rt-status: record-status` pairs"),
    Setting("tags_field", _FIELD, "the custom field of the tags", default=TAGS_FIELD),
    Setting("tier_field", Nullable(Text("a custom field name or null")),
            "the custom field of the tier", default=TIER_FIELD),
    Setting("escalation_field", _FIELD, "the custom field of the level",
            default=ESCALATION_FIELD),
    Setting("custom_fields", Table(Text("a custom field name"), _FIELD,
                                   "a mapping of custom field names to RT custom fields, "
                                   "e.g. {sla_due: SLA due}",
                                   unique="RT custom field {value!r} is mapped twice"),
            "set_field's custom.NAME to RT custom fields (read and written)", default={}),
))
#: How RT refuses one ticket's write: 412 when the If-Match ETag moved.
ERRORS = ErrorMap("rt", detail=lambda response: f"HTTP {response.status_code}: "
                  f"{_message(response)}")




@dataclass
class Priorities:
    """Record priority names <-> RT's priority numbers."""

    numbers: dict[str, int]
    fallback: ValueMap = field(
        default_factory=lambda: ValueMap("priority", {}, FALLBACK_PRIORITY))

    def read(self, value: Any, notices: NoticeSink) -> str:
        try:
            number = int(str(value).strip())
        except ValueError:
            return self.fallback.read(value, notices)
        for name, threshold in sorted(self.numbers.items(), key=lambda item: -item[1]):
            if number >= threshold:
                return name
        return self.fallback.read(number, notices)

    def write(self, name: str) -> int:
        if name not in self.numbers:
            raise ValueError(f"no RT priority for {name!r} (known: "
                             f"{', '.join(sorted(self.numbers))}; map it in priority_map)")
        return self.numbers[name]


@dataclass
class Options:
    """How RT tickets map to Records (the config's mapping keys)."""

    query: str = ""
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    priorities: Priorities = field(default_factory=lambda: Priorities(dict(PRIORITIES)))
    statuses: ValueMap = field(
        default_factory=lambda: ValueMap("status", dict(STATUSES), FALLBACK_STATUS))
    tags_field: str = TAGS_FIELD
    tier_field: str | None = TIER_FIELD
    escalation_field: str = ESCALATION_FIELD
    fields: FieldMap = field(default_factory=lambda: FieldMap("rt"))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Options:
        v = SCHEMA.check(settings, partial=True)
        numbers = {**PRIORITIES, **(v["priority_map"] or {})}
        if len(set(numbers.values())) != len(numbers):
            raise ValueError("connector.priority_map: two priorities share an RT number")
        statuses = {**STATUSES, **(v["status_map"] or {})}
        return cls(query=v["query"], timezone=v["timezone"], priorities=Priorities(numbers),
                   statuses=ValueMap("status", statuses, FALLBACK_STATUS),
                   tags_field=v["tags_field"], tier_field=v["tier_field"],
                   escalation_field=v["escalation_field"],
                   fields=FieldMap("rt", v["custom_fields"]))


@dataclass(frozen=True)
class Mark(Watermark[datetime]):
    """Where a read stands (see connector/watermark.py). RT stamps LastUpdated to the
    second, so the next read starts at that second again and skips the ids it already has."""

    def encode(self) -> str | None:
        if self.since is None:
            return None
        return json.dumps(self.to_json("updated", "ids", lambda t: t.strftime(SQL_STAMP)))

    @classmethod
    def decode(cls, cursor: str | None) -> Mark:
        if not cursor:
            return cls()
        return decode_cursor(cursor, lambda data: cls.from_json(
            data, "updated", "ids",
            lambda raw: datetime.strptime(raw, SQL_STAMP).replace(tzinfo=UTC)),
            f"rt: the stored cursor {cursor[:80]!r} was not written by this connector")


@dataclass(frozen=True)
class Version:
    """What a write needs from the read it was planned on: RT's ETag for that version and
    the custom fields as they were (a multi-value field is written whole)."""

    updated_at: datetime
    etag: str | None
    fields: Mapping[str, tuple[str, ...]]


class RT:
    capabilities = Capabilities(bulk_writes=False, safe_update=True, tags=True, notes=True,
                                leads=False)

    def __init__(self, client: HttpClient, options: Options | None = None, url: str = ""):
        self.client = client
        self.options = options or Options()
        self.url = url or client.base_url.removesuffix("/").removesuffix("/REST/2.0")
        # English messages: refusals are recognised by RT's English wording.
        self.client.session.headers["Accept-Language"] = "en"
        self._versions: dict[str, Version] = {}
        #: Ticket id -> its Comment transactions (id, when) from the last history read.
        self._comments: dict[str, list[tuple[int, datetime]]] = {}
        #: ("user" | "queue", RT's number) -> its name (None: RT does not tell the API user):
        #: owner and queue changes name them by number.
        self._names: dict[tuple[str, str], str | None] = {}

    @classmethod
    def from_settings(cls, settings: dict[str, Any], base_dir: Path) -> RT:
        values = SCHEMA.check(settings)
        url = values["url"]
        if url.endswith("/REST/2.0"):
            raise ValueError("connector.url: give RT's address (e.g. https://rt.example.com or "
                             "https://example.com/rt), without /REST/2.0")
        options = Options.from_settings(settings)
        client = client_from_settings({**settings, "url": f"{url}/REST/2.0"}, "rt",
                                      auth=HeaderToken("token", values["token"]))
        return cls(client, options, url)

    @property
    def identity(self) -> str:
        return f"rt:{self.url}"

    # -- reading ---------------------------------------------------------------------------

    def fetch(self, cursor: str | None) -> Iterator[Page]:
        notices = Notices()
        mark = anchor = Mark.decode(cursor)
        pages = ShortPages("rt: GET /REST/2.0/tickets", PER_PAGE)
        position = 0
        read: set[tuple[str, datetime]] = set()
        while pages.more:
            items, server_now = self._search(self._window(anchor), pages.page)
            pages.advance(items)
            # A second is over only once RT's clock has left it: a ticket updated in the
            # second RT is still in may be updated again with the same LastUpdated, so it is
            # read now and again next time, and the mark stays before that second.
            settled = server_now.replace(microsecond=0)
            page = Page(records=[], cursor=None)
            for item in items:
                try:
                    record_id, updated_at = _identify(item, position)
                    if not mark.covers(record_id, updated_at) \
                            and (record_id, updated_at) not in read:
                        page.records.append(self._record(item, notices, position))
                        read.add((record_id, updated_at))
                        if updated_at < settled:
                            mark = mark.after(record_id, updated_at)
                except RecordError as exc:
                    page.problems.append(exc)
                finally:
                    position += 1
            page.cursor = mark.encode() if mark.since is not None else cursor
            page.notices = notices.take()
            yield page
            if mark.since != anchor.since:
                # A fresh query from the new edge rather than page 2: tickets updated while
                # we page move to the end of the order and would shift a page under us.
                # Otherwise a whole page shares one second: page through it.
                anchor = mark
                pages.restart()

    def get(self, record_id: str) -> Record | None:
        if not record_id.isdigit():
            return None
        items, _ = self._search(f"id = {record_id}", 1)
        if not items:
            return None
        notices: list[str] = []
        return self._record(items[0], notices, 0)

    def read_back(self, record_id: str, since: datetime | None = None) -> Record | None:
        """The ticket with the comments added at or after `since` as notes. Their text is in
        each comment's attachments: one request per such comment, beyond the ticket and its
        history."""
        record = self.get(record_id)
        if record is None:
            return None
        notes = []
        for txn_id, at in self._comments.pop(record_id, []):
            if since is None or at >= since.replace(microsecond=0):
                notes += [Note(at, text) for text in self._comment_texts(record_id, txn_id)]
        return dataclasses.replace(record, notes=tuple(notes))

    def _comment_texts(self, record_id: str, txn_id: int) -> list[str]:
        body = self.client.json("GET", f"transaction/{txn_id}/attachments",
                                params={"fields": "Content,ContentType", "per_page": PER_PAGE},
                                record_id=record_id)
        items = body.get("items") if isinstance(body, dict) else None
        texts = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and str(item.get("ContentType", "")).startswith(
                    "text/plain") and isinstance(item.get("Content"), str):
                texts.append(_content(item["Content"]))
        return texts

    def _window(self, mark: Mark) -> str:
        query = self.options.query
        if mark.since is None:
            return query or "id > 0"
        # `>` the second before: tickets updated later in the second we stopped at count too.
        start = (mark.since - timedelta(seconds=1)).astimezone(self.options.timezone)
        # RT reads this as the API user's local time, and only in this exact form: an ISO
        # stamp with T and Z does not parse and silently matches every ticket.
        window = f"LastUpdated > '{start.strftime(SQL_STAMP)}'"
        return f"({query}) AND {window}" if query else window

    # -- what RT has (sla-sync check) ---------------------------------------------------

    def catalog(self) -> Catalog:
        """The queues the API user can see (one request per 100) and each queue's ticket
        custom fields and whether the user may create tickets in it (one request per queue),
        one ticket of the query and whether the user may comment on it (two requests), and
        the users (one request per 100). Priorities and statuses are the connector's maps:
        REST2 does not serve lifecycles. Only reads."""
        sent = self.client.requests_sent
        o = self.options
        catalog = Catalog("RT", priorities=set(o.priorities.numbers),
                          statuses=set(o.statuses.table.values()), group_word="queue",
                          agent_word="user", fields={"requestors", "custom_fields",
                                                     *self.options.fields.fields})
        queues = [q for q in self._collection("queues/all", "Name,Disabled")
                  if str(q.get("Disabled", "0")) in ("", "0")]
        fields: dict[str, list[str]] = {}  # custom field -> the queues it applies to
        for queue in queues:
            name = str(queue.get("Name"))
            body = self.client.json("GET", f"queue/{queue.get('id')}")
            if not isinstance(body, dict):
                raise ConnectorError(f"rt: GET /REST/2.0/queue/{queue.get('id')}: the answer "
                                     "is not a queue")
            for cf in body.get("TicketCustomFields") or []:
                if isinstance(cf, dict) and isinstance(cf.get("name"), str):
                    fields.setdefault(cf["name"], []).append(name)
            links = body.get("_hyperlinks") or []
            if not any(isinstance(link, dict) and link.get("ref") == "create"
                       for link in links):
                catalog.denied[f"group:{name}"] = (
                    f"the API user has no CreateTicket right on RT queue {name!r} (RT needs it "
                    "to move a ticket into a queue)")
        catalog.groups = {str(q.get("Name")) for q in queues}
        for key, cf in (("tags_field", o.tags_field), ("tier_field", o.tier_field),
                        ("escalation_field", o.escalation_field)):
            if cf is not None and cf not in fields:
                known = ", ".join(sorted(fields)) or "none"
                catalog.problems.append((
                    f"connector.{key}", f"no ticket custom field {cf!r} applied to any queue "
                    f"the API user can see in RT (known: {known}); without SeeCustomField it "
                    "is invisible too"))
        items, _ = self._search(self.options.query or "id > 0", 1, per_page=1)
        if items and isinstance(items[0], dict) and str(items[0].get("id", "")).isdigit():
            ticket = self.client.json("GET", f"ticket/{items[0]['id']}")
            links = ticket.get("_hyperlinks") if isinstance(ticket, dict) else None
            if isinstance(links, list) and not any(
                    isinstance(link, dict) and link.get("ref") == "comment" for link in links):
                catalog.denied["notes"] = (
                    f"the API user has no CommentOnTicket right (RT offers no comment on "
                    f"ticket {items[0]['id']})")
        users = self._collection("users", "Name,Disabled")
        catalog.agents = {str(u.get("Name")) for u in users
                          if u.get("Name") not in SYSTEM_USERS | {NOBODY}
                          and str(u.get("Disabled", "")) in ("", "0")}
        catalog.requests = self.client.requests_sent - sent
        return catalog

    def directory(self) -> dict[str, dict[str, str]]:
        """RT's enabled users by name (an owner's name is a record's assignee), each with its
        email address and time zone where RT has them (alerts to `{assignee}` go there, in
        that zone): one request per 100 users."""
        found: dict[str, dict[str, str]] = {}
        for user in self._collection("users", "Name,EmailAddress,Timezone,Disabled"):
            name = user.get("Name")
            if not isinstance(name, str) or not name or name in SYSTEM_USERS | {NOBODY} \
                    or str(user.get("Disabled", "")) not in ("", "0"):
                continue
            entry = {"name": name}
            if isinstance(user.get("EmailAddress"), str) and user["EmailAddress"]:
                entry["email"] = user["EmailAddress"]
            if _zone_name(user.get("Timezone")):
                entry["timezone"] = user["Timezone"]
            found[name] = entry
        return found

    def _collection(self, path: str, fields: str) -> list[dict[str, Any]]:
        """Every item of a REST2 collection, pages of PER_PAGE until a short one."""
        def read(page: int) -> list[Any]:
            body = self.client.json("GET", path, params={"fields": fields,
                                                         "per_page": PER_PAGE, "page": page})
            batch = body.get("items") if isinstance(body, dict) else None
            if not isinstance(batch, list):
                raise ConnectorError(f"rt: GET /REST/2.0/{path}: the answer is not a list")
            return batch

        return [item for batch in numbered(read, PER_PAGE, f"rt: GET /REST/2.0/{path}")
                for item in batch if isinstance(item, dict)]

    def _search(self, query: str, page: int,
                per_page: int = PER_PAGE) -> tuple[list[Any], datetime]:
        """One page of a ticket search, and RT's clock when it answered."""
        params = {"query": query, "orderby": ["LastUpdated", "id"], "order": ["ASC", "ASC"],
                  "per_page": per_page, "page": page, "fields": TICKET_FIELDS,
                  "fields[Queue]": "Name"}
        response = self.client.request("GET", "tickets", params=params)
        try:
            body = response.json()
        except ValueError:
            body = None
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ConnectorError("rt: GET /REST/2.0/tickets: the answer is not a list of "
                                 "tickets")
        try:
            server_now = parsedate_to_datetime(response.headers["Date"]).astimezone(UTC)
        except (KeyError, TypeError, ValueError):
            server_now = datetime.now(UTC)
        return items, server_now

    def _history(self, record_id: str) -> list[dict[str, Any]]:
        """Every transaction of a ticket. RT gives no total for a history, so pages are read
        until one comes back short."""
        where = f"rt: GET /REST/2.0/ticket/{record_id}/history"

        def read(page: int) -> list[Any]:
            body = self.client.json("GET", f"ticket/{record_id}/history", params={
                "per_page": PER_PAGE, "page": page, "fields": HISTORY_FIELDS})
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise ConnectorError(f"{where}: the answer has no items list")
            return items

        return [item for items in numbered(read, PER_PAGE, where) for item in items
                if isinstance(item, dict)]

    def _record(self, item: Any, notices: NoticeSink, position: int) -> Record:
        record_id, updated_at = _identify(item, position)
        o = self.options

        def fail(message: str) -> RecordError:
            return RecordError(message, record_id=record_id, position=position)

        try:
            created_at = _instant(item.get("Created"), "Created")
            resolved = _instant(item.get("Resolved"), "Resolved", optional=True)
        except ValueError as exc:
            raise fail(str(exc)) from None
        if created_at is None:
            raise fail("Created: not set")
        fields = _custom_fields(item)
        level_text = (fields.get(o.escalation_field) or ("",))[0].strip()
        if level_text and not level_text.isdigit():
            raise fail(f"custom field {o.escalation_field!r}: {level_text!r} is not a whole "
                       "number")
        queue = item.get("Queue")
        group = queue.get("Name", "") if isinstance(queue, dict) else ""
        owner = _user(item.get("Owner"))
        requestors = [_user(u) for u in item.get("Requestor") or [] if _user(u)]
        rt_status = str(item.get("Status") or "")
        status = o.statuses.read(rt_status, notices)
        transactions = self._history(record_id)
        self._comments[record_id] = [
            (_number(t.get("id")), at) for t in transactions if t.get("Type") == "Comment"
            and (at := _instant_or_none(t.get("Created"))) is not None]
        history, first_response = self._timeline(transactions, rt_status, created_at,
                                                 requestors, notices)
        ordered = sorted(transactions, key=lambda t: _number(t.get("id")))
        messages = _conversation(ordered, created_at, requestors)
        assignments = self._assignments(ordered, created_at, queue, owner, notices)
        etag = max((_number(t.get("id")) for t in transactions), default=0) or None
        self._versions[record_id] = Version(updated_at, None if etag is None else f'"{etag}"',
                                            fields)
        others = {name: list(values) for name, values in fields.items()
                  if name not in (o.tags_field, o.tier_field, o.escalation_field)}
        return Record(
            id=record_id, kind="ticket", created_at=created_at, updated_at=updated_at,
            subject=str(item.get("Subject") or ""), status=status,
            priority=o.priorities.read(item.get("Priority"), notices),
            tier=(fields.get(o.tier_field) or ("",))[0] if o.tier_field else "",
            group=group, assignee="" if owner == NOBODY else owner,
            tags=fields.get(o.tags_field, ()), first_response_at=first_response,
            solved_at=resolved, status_history=tuple(history),
            escalation_level=int(level_text or 0),
            custom={"requestors": requestors, "custom_fields": others,
                    # set_field's NAMEs: a single-value field's value ("" reads as none)
                    **o.fields.read(lambda cf: (fields.get(cf) or (None,))[0] or None)},
            url=f"{self.url}/Ticket/Display.html?id={record_id}",
            worked_seconds=_worked(item.get("TimeWorked")), messages=messages,
            assignment_history=assignments)

    def _assignments(self, ordered: list[dict[str, Any]], created_at: datetime, queue: Any,
                     owner: str, notices: NoticeSink) -> tuple[Assignment, ...] | None:
        """The queue and owner at creation, then after each change of either (Set Queue,
        Set Owner), oldest first. RT names both by number in a transaction: a number is
        looked up once (`queue/N`, `user/N`), the current ones are known from the ticket.
        None when RT does not name one of them to the API user."""
        changes = [(txn, str(txn.get("Field"))) for txn in ordered
                   if (txn.get("Field") == "Queue" and txn.get("Type") == "Set")
                   or (txn.get("Field") == "Owner" and txn.get("Type") in OWNER_TYPES)]
        if isinstance(queue, dict) and str(queue.get("id", "")).isdigit():
            self._names.setdefault(("queue", str(queue["id"])), str(queue.get("Name") or ""))
        owners = [txn for txn, field_name in changes if field_name == "Owner"]
        if owners and owner:  # the last owner change gave the ticket its owner now
            self._names.setdefault(("user", str(owners[-1].get("NewValue"))), owner)
        current = {"Queue": queue.get("Name", "") if isinstance(queue, dict) else "",
                   "Owner": owner}
        state = {}
        for field_name in ("Queue", "Owner"):
            first = next((t for t, f in changes if f == field_name), None)
            state[field_name] = current[field_name] if first is None else \
                self._name(field_name, first.get("OldValue"))
        entries = [Assignment(created_at, state["Queue"] or "", _assignee(state["Owner"]))]
        unnamed = None in state.values()
        for txn, field_name in changes:
            state[field_name] = self._name(field_name, txn.get("NewValue"))
            unnamed = unnamed or state[field_name] is None
            at = _instant_or_none(txn.get("Created")) or entries[-1].at
            entries.append(Assignment(max(at, entries[-1].at), state["Queue"] or "",
                                      _assignee(state["Owner"])))
        if unnamed:
            notices.append("rt: an owner or queue change names a user or queue the API user "
                           "cannot see: those tickets have no assignment history (time to own "
                           "is unavailable for them)")
            return None
        return tuple(entries)

    def _name(self, field_name: str, number: Any) -> str | None:
        """The name of the queue or user RT's `number` stands for, asked of RT once."""
        kind = "queue" if field_name == "Queue" else "user"
        key = (kind, str(number))
        if key not in self._names:
            name = None
            if key[1].isdigit():
                response = self.client.request("GET", f"{kind}/{key[1]}", ok=(200, 403, 404))
                try:
                    body = response.json() if response.status_code == 200 else None
                except ValueError:
                    body = None
                if isinstance(body, dict) and isinstance(body.get("Name"), str):
                    name = body["Name"]
            self._names[key] = name
        return self._names[key]

    def _timeline(self, transactions: list[dict[str, Any]], rt_status: str,
                  created_at: datetime, requestors: list[str], notices: NoticeSink,
                  ) -> tuple[list[StatusChange], datetime | None]:
        """Status changes oldest first, and the first reply by someone not a requestor."""
        statuses = self.options.statuses
        changes: list[tuple[datetime, str, str]] = []
        first_response = None
        customers = {name.lower() for name in requestors}
        for txn in sorted(transactions, key=lambda t: _number(t.get("id"))):
            kind = txn.get("Type")
            try:
                at = _instant(txn.get("Created"), "transaction Created")
            except ValueError:
                continue
            if at is None:
                continue
            if kind == "Status" or (kind == "Set" and txn.get("Field") == "Status"):
                changes.append((at, str(txn.get("OldValue") or ""),
                                str(txn.get("NewValue") or "")))
            elif kind == "Correspond" and first_response is None \
                    and _user(txn.get("Creator")).lower() not in customers:
                first_response = at
        initial = changes[0][1] if changes else rt_status
        history = []
        if initial and statuses.read(initial, notices) != INITIAL_STATUS:
            history.append(StatusChange(created_at, statuses.read(initial, notices)))
        for at, _, new in changes:
            # A ticket created with a backdated Created has transactions stamped when they
            # happened; none can precede creation.
            history.append(StatusChange(max(at, created_at), statuses.read(new, notices)))
        return history, first_response

    # -- writing ---------------------------------------------------------------------------

    def apply(self, change: ChangeSet, now: datetime) -> Record | None:
        record_id = change.record_id
        if not record_id.isdigit():
            raise RecordGone(f"rt: {record_id!r} is not an RT ticket id", record_id=record_id)
        version = self._versions.get(record_id)
        if version is None or version.etag is None or (
                change.base_updated_at is not None
                and version.updated_at != change.base_updated_at):
            version = self._current(record_id)
        if change.base_updated_at is not None and version.updated_at != change.base_updated_at:
            raise ConflictError(
                f"rt: ticket {record_id} changed since it was read (LastUpdated "
                f"{version.updated_at:%Y-%m-%d %H:%M:%S}, planned on "
                f"{change.base_updated_at.astimezone(UTC):%Y-%m-%d %H:%M:%S})",
                record_id=record_id)
        body = self._body(change, version)
        # With nothing to set the PUT is empty: it still checks the version, and writes
        # nothing, before the comments go in.
        # With If-Match a second send of an applied PUT is refused (412: the ETag moved), so
        # a lost answer may be retried; the loop reads the conflict back.
        response = self.client.request(
            "PUT", f"ticket/{record_id}", json=body, ok=ERRORS.ok(200),
            headers={"If-Match": version.etag} if version.etag else None,
            record_id=record_id, idempotent=version.etag is not None)
        self._versions.pop(record_id, None)
        ERRORS.check(response, record_id)
        if response.status_code != 200:
            raise ConnectorError(f"rt: PUT /REST/2.0/ticket/{record_id}: HTTP "
                                 f"{response.status_code}: {_message(response)}",
                                 record_id=record_id)
        refused = [m for m in _messages(response) if not APPLIED.search(m)]
        if refused:
            raise ConnectorError(f"rt: ticket {record_id}: RT refused part of the change: "
                                 + "; ".join(refused), record_id=record_id)
        for text in change.notes:
            self.client.request("POST", f"ticket/{record_id}/comment",
                                json={"Content": text, "ContentType": "text/plain"},
                                ok=(200, 201), record_id=record_id)
        return None

    def apply_many(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        return apply_each(self, changes, now)

    def _current(self, record_id: str) -> Version:
        """The ticket's version now, for a write planned on a read this process did not make."""
        response = self.client.request("GET", f"ticket/{record_id}", ok=(200, 404))
        ERRORS.check(response, record_id)
        try:
            item = response.json()
            _, updated_at = _identify(item, 0)
        except (ValueError, RecordError) as exc:
            raise ConnectorError(f"rt: GET /REST/2.0/ticket/{record_id}: unexpected answer "
                                 f"({exc})", record_id=record_id) from None
        return Version(updated_at, response.headers.get("ETag"), _custom_fields(item))

    def _body(self, change: ChangeSet, version: Version) -> dict[str, Any]:
        o = self.options
        body: dict[str, Any] = {}
        wanted: dict[str, str] = {}
        record_id = change.record_id
        try:
            for name, value in change.fields.items():
                if name == "priority":
                    body["Priority"] = o.priorities.write(value)
                elif name == "group":
                    body["Queue"] = value
                elif name == "assignee":
                    body["Owner"] = value or NOBODY
                elif name == "status":
                    body["Status"] = o.statuses.write(value)
                elif custom_name(name):  # set_field: an RT custom field of the ticket
                    wanted[o.fields.theirs(custom_name(name))] = value
        except ValueError as exc:
            raise ConnectorError(f"rt: ticket {record_id}: {exc}", record_id=record_id) \
                from None
        custom = self._set_fields(record_id, wanted, version)
        if change.add_tags or change.remove_tags:
            tags = version.fields.get(o.tags_field)
            if tags is None:
                raise _missing_field(record_id, o.tags_field)
            merged = merge_tags(tags, change.add_tags, change.remove_tags)
            if merged != list(tags):
                custom[o.tags_field] = merged
        if change.escalation_level is not None:
            if o.escalation_field not in version.fields:
                raise _missing_field(record_id, o.escalation_field)
            custom[o.escalation_field] = str(change.escalation_level)
        if custom:
            body["CustomFields"] = custom
        return body


    @staticmethod
    def _set_fields(record_id: str, wanted: Mapping[str, str], version: Version,
                    ) -> dict[str, Any]:
        """set_field's values by RT custom field; each must apply to the ticket's queue."""
        for cf in wanted:
            if cf not in version.fields:
                raise _missing_field(record_id, cf)
        return dict(wanted)


def _conversation(ordered: list[dict[str, Any]], created_at: datetime,
                  requestors: list[str]) -> tuple[Message, ...]:
    """The ticket's messages, oldest first: the request that opened it (a customer's, whoever
    typed it in, as the first response clock counts from it), then each reply (public) and
    comment (private), a requestor's being the customer's and anyone else's an agent's."""
    customers = {name.lower() for name in requestors}
    messages: list[Message] = []
    latest = created_at
    for txn in ordered:
        kind = str(txn.get("Type"))
        at = _instant_or_none(txn.get("Created")) if kind in MESSAGE_TYPES else None
        if at is None:
            continue
        # A backdated ticket's transactions cannot precede its creation.
        latest = max(at, latest)
        customer = kind == "Create" or _user(txn.get("Creator")).lower() in customers
        messages.append(Message(latest, "customer" if customer else "agent",
                                public=MESSAGE_TYPES[kind]))
    return tuple(messages)


def _zone_name(value: Any) -> bool:
    """Whether `value` is an IANA time zone name (RT's user Timezone; "" is RT's default)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        return False
    return True


def _assignee(name: str | None) -> str:
    return "" if name in (None, NOBODY) else str(name)


def _worked(value: Any) -> float | None:
    """TimeWorked, RT's minutes of logged work, in seconds; None when RT does not give it."""
    text = str(value if value is not None else "").strip()
    return int(text) * 60 if text.isdigit() else None


def _identify(item: Any, position: int) -> tuple[str, datetime]:
    if not isinstance(item, dict) or not str(item.get("id", "")).isdigit():
        raise RecordError("has no ticket id", position=position)
    record_id = str(item["id"])
    try:
        updated_at = _instant(item.get("LastUpdated"), "LastUpdated")
    except ValueError as exc:
        raise RecordError(str(exc), record_id=record_id, position=position) from None
    if updated_at is None:
        raise RecordError("LastUpdated: not set", record_id=record_id, position=position)
    return record_id, updated_at


def _instant(value: Any, what: str, optional: bool = False) -> datetime | None:
    if optional and value in (None, ""):
        return None
    instant = parse_instant(value, what)
    return None if instant <= NOT_SET else instant


def _instant_or_none(value: Any) -> datetime | None:
    try:
        return _instant(value, "transaction Created", optional=True)
    except ValueError:
        return None


def _content(value: str) -> str:
    """An attachment's Content: REST2 sends it base64-encoded; text that is not (valid base64
    of UTF-8) is taken as it is."""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return value


def _number(value: Any) -> int:
    return int(value) if str(value).isdigit() else 0


def _user(value: Any) -> str:
    return str(value.get("id") or "") if isinstance(value, dict) else ""


def _custom_fields(item: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The ticket's custom fields by name (those applied to its queue that the user sees)."""
    fields: dict[str, tuple[str, ...]] = {}
    for cf in item.get("CustomFields") or []:
        if isinstance(cf, dict) and isinstance(cf.get("name"), str):
            values = cf.get("values") or []
            fields[cf["name"]] = tuple(str(v) for v in values if v is not None and v != "")
    return fields


def _missing_field(record_id: str, name: str) -> ConnectorError:
    return ConnectorError(f"rt: ticket {record_id}: custom field {name!r} is not applied to "
                          "its queue, or the API user may not see it (SeeCustomField)",
                          record_id=record_id)


def _messages(response: requests.Response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        return []
    return [str(m) for m in body] if isinstance(body, list) else []


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "unexpected answer"
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:200]
    return "; ".join(_messages(response))[:200] or "unexpected answer"
