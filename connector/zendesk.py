"""Zendesk Support (`type: zendesk`): tickets read through the incremental exports (tickets
with their metric sets; status history, the conversation and the assignment history from the
ticket events with their comment events), written with safe updates and `update_many` jobs.
docs/connectors/zendesk.md is the admin's guide."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

import requests
from requests.auth import HTTPBasicAuth

from sla_sync.connector.base import (
    Capabilities,
    Catalog,
    ConflictError,
    ConnectorError,
    Memory,
    MemoryInProcess,
    OutcomeUnknown,
    Page,
    RecordGone,
    WriteResult,
    apply_each,
)
from sla_sync.connector.errors import ErrorMap
from sla_sync.connector.http import (
    HttpClient,
    ServerClock,
    client_from_settings,
    follow,
    poll_delays,
    server_date,
)
from sla_sync.connector.mapping import FieldMap, NameMap, Notices, NoticeSink, ValueMap
from sla_sync.connector.model import (
    MAX_WORKED,
    Assignment,
    ChangeSet,
    Message,
    Note,
    Record,
    RecordError,
    StatusChange,
    custom_name,
    parse_instant,
)
from sla_sync.connector.settings import (
    HTTP,
    Block,
    Custom,
    Flag,
    Id,
    Instant,
    Nullable,
    Number,
    Schema,
    Setting,
    Table,
    Text,
    url_setting,
)

log = logging.getLogger("sla_sync.zendesk")

TICKET_EXPORT = "/api/v2/incremental/tickets/cursor"
EVENT_EXPORT = "/api/v2/incremental/ticket_events"
UPDATE_MANY = "/api/v2/tickets/update_many"
JOB_STATUS = "/api/v2/job_statuses/{}"
JOB_STATUSES = "/api/v2/job_statuses/show_many"
CURRENT_USER = "/api/v2/users/me"
GROUPS = "/api/v2/groups"
USERS = "/api/v2/users"
TICKET_FIELDS = "/api/v2/ticket_fields"
#: Statuses every Zendesk account has, listed by the status field's options or not (a ticket
#: is new until an agent works it; automations close solved tickets).
SYSTEM_STATUSES = ("new", "closed")
#: The keys the connector puts in Record.custom (what `custom.NAME` can read).
CUSTOM_KEYS = ("zendesk_status", "type", "organization_id", "requester_id", "via",
               "initially_assigned_at", "reopens", "replies")

#: Zendesk's budget for the incremental exports (30 with the High Volume add-on).
EXPORT_REQUESTS_PER_MINUTE = 10
#: The general API budget of the smallest plan (Team); raise it on larger plans.
API_REQUESTS_PER_MINUTE = 200
BATCH_SIZE = 100  # tickets per update_many job, Zendesk's maximum
FIRST_START_DAYS = 30  # without start_time, the first sync reads the last 30 days
JOB_TIMEOUT = 120.0
#: The most tickets sla-sync's own update_many jobs update in any one second of Zendesk's
#: clock. Each ticket updated is one audit, one event of the event export, and a second of
#: 1,000 events is a busy second (`Watch`): half of that leaves the other half to everyone
#: else, so that sla-sync's writes never make one, alone or with a bulk update of up to 500
#: tickets by someone else in the same second (`_Pace`).
OWN_EVENTS_A_SECOND = 500
#: update_many jobs in flight at once, polled together: at most OWN_EVENTS_A_SECOND tickets.
#: Zendesk's rate limits page ("Job limit") caps the jobs queued or running on an account at
#: once (30), shared with every other integration of the account; a job past it is refused
#: with 429 and retried.
JOBS_AT_ONCE = OWN_EVENTS_A_SECOND // BATCH_SIZE
#: Events in a full page of the time-based ticket event export (IncrementalTicketEvents).
EVENT_PAGE = 1000
JOB_FIRST_POLL = 1.0
JOB_MAX_POLL = 10.0
#: Seconds past a watch's `until` the event export must have been read to its end at, by the
#: server's clock, before the watch ends: the export leaves out the last minute, and a
#: request takes time.
WATCH_MARGIN = 120
#: Zendesk statuses after which a ticket never changes again: their history leaves the cursor.
FINAL_STATUSES = frozenset({"closed", "deleted"})

PRIORITIES = {"low": "low", "normal": "normal", "high": "high", "urgent": "urgent"}
# Deleted tickets stay in the export with status "deleted"; as closed they stop every clock.
STATUSES = {"new": "new", "open": "open", "pending": "pending", "hold": "hold",
            "solved": "solved", "closed": "closed", "deleted": "closed"}
CHANNELS = {"web": "web", "web_widget": "web", "mobile": "web", "mobile_sdk": "web",
            "email": "email", "chat": "chat", "native_messaging": "chat", "voice": "phone",
            "sms": "sms", "api": "api", "web_service": "api", "twitter": "social",
            "facebook": "social", "rule": "automation", "system": "automation"}



def _email(value: Any, path: str) -> str:
    if not isinstance(value, str) or "@" not in value:
        raise ValueError(f"{path}: the email address of the Zendesk agent that owns the API "
                         "token is required")
    return value


def _names_table(example: str) -> Nullable:
    return Nullable(Table(Id("a numeric Zendesk id"), Text("a name"),
                          f"a mapping of Zendesk ids to names, e.g. {example}",
                          unique="the name {value!r} is given twice (writes need one id per "
                          "name)"))


_VALUES = Nullable(Table(Custom(lambda key, path: key), Text(),
                         "a mapping of Zendesk values to sla-sync values, e.g. {p1: urgent}",
                         whole=True))
_TAG_PREFIX = Setting("tag_prefix", Text(), "tags with this prefix")
_FIELD = Setting("field", Id("a ticket field id"), "a ticket field's id")
SCHEMA = Schema("zendesk", (
    url_setting("the account's address, e.g. https://acme.zendesk.com"),
    Setting("email", Custom(_email), "the email address of the agent that owns the token",
            required=True, missing="the email address of the Zendesk agent that owns the API "
            "token is required"),
    Setting("token", Text(), "the Zendesk API token", required=True, secret=True,
            missing="the Zendesk API token is required (e.g. token: ${ZENDESK_TOKEN})"),
    *HTTP,
    Setting("start_time", Instant(), "where the first sync starts reading"),
    Setting("groups", _names_table("{360001: support}"), "group ids to names"),
    Setting("agents", _names_table("{361001: alice}"), "agent ids to names"),
    Setting("priority_map", _VALUES, "extra or changed priorities"),
    Setting("status_map", _VALUES, "extra or changed statuses"),
    Setting("channel_map", _VALUES, "extra or changed channels"),
    Setting("tier", Nullable(Block((
        _TAG_PREFIX, _FIELD,
        Setting("organization_field", Text(), "an organization field's key"),
        Setting("default", Text("a tier name"), "the tier when none is given",
                default="standard")))), "where the tier is read"),
    Setting("escalation", Nullable(Block((_TAG_PREFIX, _FIELD))),
            "where the escalation level is kept"),
    Setting("time_tracking", Nullable(Block((
        Setting("total_field", Id("a ticket field id"),
                "the Time Tracking app's \"Total time spent (sec)\" field", required=True),
    ))), "where the Time Tracking app keeps the time worked on a ticket"),
    Setting("custom_fields", Nullable(Table(Text("a custom field name"), Id("a ticket field id"),
                                            "a mapping of custom field names to ticket field "
                                            "ids, e.g. {sla_due: 360005}",
                                            unique="ticket field {value} is mapped twice")),
            "set_field's custom.NAME to ticket field ids (read and written)"),
    Setting("bulk_writes", Flag(), "write batches as update_many jobs", default=True),
    Setting("api_requests_per_minute", Number(), "the general API's budget",
            default=API_REQUESTS_PER_MINUTE),
    Setting("job_timeout", Number(), "seconds to wait for a job", default=JOB_TIMEOUT),
    Setting("jobs_at_once", Number(whole=True, least=1, most=JOBS_AT_ONCE),
            "update_many jobs in flight at once (at most 5: 499 tickets, each one event; "
            "a second of 1,000 events is one the event export cannot page past)",
            default=JOBS_AT_ONCE),
))
#: How Zendesk refuses one ticket's update: 409 when the safe-update stamp moved.
ERRORS = ErrorMap("zendesk", detail=lambda response: _detail(response))


@dataclass(frozen=True)
class Source:
    """Where a Record field lives in Zendesk: tags with a prefix (`tag_prefix`), a ticket
    field (`field`, its id) or an organization field (`organization_field`, its key)."""

    kind: str
    key: str | int


@dataclass
class Vocabulary:
    """Zendesk's values and ids in the Record's words, and back."""

    priority: ValueMap
    status: ValueMap
    channel: ValueMap
    groups: NameMap
    agents: NameMap
    tier: Source
    tier_default: str
    escalation: Source
    fields: FieldMap = field(default_factory=lambda: FieldMap("zendesk"))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Vocabulary:
        v = SCHEMA.check(settings, partial=True)
        tier = v["tier"] or {}
        return cls(
            priority=ValueMap("priority", PRIORITIES, "normal").extended(v["priority_map"]),
            status=ValueMap("status", STATUSES, "open").extended(v["status_map"]),
            channel=ValueMap("channel", CHANNELS, "other").extended(v["channel_map"]),
            groups=_name_map("groups", "group", v["groups"]),
            agents=_name_map("agents", "assignee", v["agents"]),
            tier=_source(tier, "tier") or Source("tag_prefix", "tier_"),
            tier_default=tier.get("default") or "standard",
            escalation=_source(v["escalation"] or {}, "escalation")
            or Source("tag_prefix", "sla_escalation_"),
            fields=FieldMap("zendesk", v["custom_fields"] or {}))

    def consumes(self, tag: str) -> bool:
        """Tags that become a Record field (tier, escalation level) rather than a tag."""
        return (self.tier.kind == "tag_prefix" and tag.startswith(str(self.tier.key))) or \
            self._level_tag(tag) is not None

    def _level_tag(self, tag: str) -> int | None:
        if self.escalation.kind != "tag_prefix":
            return None
        prefix = str(self.escalation.key)
        rest = tag[len(prefix):] if tag.startswith(prefix) else ""
        return int(rest) if rest.isdecimal() else None

    def tier_of(self, ticket: Mapping[str, Any], tags: list[str],
                organizations: Mapping[int, Any]) -> str:
        source = self.tier
        value: Any = None
        if source.kind == "tag_prefix":
            prefix = str(source.key)
            value = next((t[len(prefix):] for t in tags if t.startswith(prefix)), None)
        elif source.kind == "field":
            value = _field_value(ticket, int(source.key))
        else:
            organization = organizations.get(ticket.get("organization_id") or 0)
            fields = organization.get("organization_fields") \
                if isinstance(organization, Mapping) else None
            value = fields.get(str(source.key)) if isinstance(fields, Mapping) else None
        return self.tier_default if value is None or value == "" or value is False \
            else str(value)

    def level_of(self, ticket: Mapping[str, Any], tags: list[str], notices: NoticeSink,
                 ) -> int:
        if self.escalation.kind == "tag_prefix":
            return max((n for n in map(self._level_tag, tags) if n is not None), default=0)
        value = _field_value(ticket, int(self.escalation.key))
        if value in (None, ""):
            return 0
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.isdecimal():
            return int(value)
        notices.append(f"ticket {ticket.get('id')}: escalation field {self.escalation.key} "
                       f"holds {value!r}, not a level: read as 0")
        return 0

    def read_tags(self, ticket: Mapping[str, Any], tags: list[str],
                  organizations: Mapping[int, Any], notices: NoticeSink,
                  ) -> tuple[tuple[str, ...], str, int]:
        """(the tags that stay tags, the tier, the escalation level) of a ticket: what
        `consumes`, `tier_of` and `level_of` say, in one pass over the tags where both are
        read from tag prefixes (the default)."""
        tier, escalation = self.tier, self.escalation
        if tier.kind != "tag_prefix" or escalation.kind != "tag_prefix":
            return (tuple(t for t in tags if not self.consumes(t)),
                    self.tier_of(ticket, tags, organizations),
                    self.level_of(ticket, tags, notices))
        tier_prefix, level_prefix = str(tier.key), str(escalation.key)
        kept = []
        found: str | None = None
        level = 0
        for tag in tags:
            consumed = False
            if tag.startswith(tier_prefix):
                consumed = True
                if found is None:
                    found = tag[len(tier_prefix):]
            if tag.startswith(level_prefix):
                rest = tag[len(level_prefix):]
                if rest.isdecimal():
                    consumed = True
                    number = int(rest)
                    if number > level:
                        level = number
            if not consumed:
                kept.append(tag)
        return tuple(kept), found or self.tier_default, level

    def escalation_update(self, level: int) -> tuple[dict[str, Any], list[str], list[str]]:
        """(ticket fields, tags to add, tags to remove) that set the escalation level."""
        if self.escalation.kind == "field":
            return {"custom_fields": [{"id": int(self.escalation.key), "value": level}]}, [], []
        prefix = str(self.escalation.key)
        # Levels only go up (the planner never lowers one), so the lower tags are the ones
        # that can be on the ticket.
        return {}, [f"{prefix}{level}"] if level else [], \
            [f"{prefix}{n}" for n in range(1, level)]


class Talk:
    """What the ticket events say of one ticket's conversation and assignments, kept in the
    cursor as JSON: `c` 1 once its creation was seen (so what follows is its whole story),
    `m` its comments as [unix time, author id, public, comment id], `a` its group and
    assignee values as [unix time, "group_id" or "assignee_id", id or None, event id] (those
    at creation first), `x` 1 when a comment came without its author (the story has a gap)."""

    FIELDS = ("group_id", "assignee_id")

    @staticmethod
    def valid(entry: Any) -> bool:
        """Whether decoded JSON is a conversation as `collect` builds it (exact types: JSON
        gives no subclasses, and a bool is no time)."""
        if type(entry) is not dict:
            return False
        for name in ("m", "a"):
            items = entry.get(name, ())
            if type(items) not in (list, tuple):
                return False
            for item in items:
                if type(item) is not list or len(item) != 4 or type(item[0]) is not int:
                    return False
        return True

    @staticmethod
    def collect(child: Mapping[str, Any], kind: str, at: int, entry: dict[str, Any]) -> bool:
        """Adds one child event (export) or audit event; True when it said something."""
        if kind == "Create":
            entry["c"] = 1
        if kind == "Comment":
            author, public = child.get("author_id"), child.get("public")
            if not _whole(author) or not isinstance(public, bool):
                entry["x"] = 1  # comment_present without the comment_events sideload
                return True
            item = [at, author, public, child.get("id")]
            if item not in entry.setdefault("m", []):  # time-based pages overlap
                entry["m"].append(item)
            return True
        if kind not in ("Create", "Change"):
            return False
        for name in Talk.FIELDS:
            if name in child:
                value = child[name]
            elif child.get("field_name") == name:
                value = child.get("value")
            else:
                continue
            if isinstance(value, str) and value.isdecimal():
                value = int(value)  # audits give ids as text
            item = [at, name, value if _whole(value) else None, child.get("id")]
            if item not in entry.setdefault("a", []):
                entry["a"].append(item)
            return True
        return kind == "Create"

    @staticmethod
    def messages(entry: Mapping[str, Any] | None, requester: Any,
                 is_agent: Callable[[int], bool]) -> tuple[Message, ...] | None:
        """The conversation, oldest first; None unless the events told it from creation on.
        The requester is the customer; a private comment is an agent's (end users write
        public ones only); another public author is an agent if the account lists them as
        one (a CC'd end user is a customer too)."""
        if not entry or not entry.get("c") or entry.get("x"):
            return None
        items = entry.get("m", [])
        if len(items) > 1:
            items = sorted(items, key=_in_order)
        return tuple([
            Message(_from_unix(at, UTC),
                    "customer" if author == requester
                    or (public and not is_agent(author)) else "agent", public)
            for at, author, public, _ in items])

    @staticmethod
    def assignments(entry: Mapping[str, Any] | None, created_at: datetime,
                    now: tuple[int | None, int | None],
                    name: Callable[[str, int | None], str]) -> tuple[Assignment, ...] | None:
        """The group and assignee from creation on (an entry at creation, then one per
        instant either changed); None unless the events told it from creation on and end at
        the ticket's values now (a change the events missed is not guessed around)."""
        if not entry or not entry.get("c"):
            return None
        items = entry.get("a", [])
        if not items:  # nothing said of either: both unset from creation on
            return None if now != (None, None) else \
                (Assignment(created_at, name("group_id", None), name("assignee_id", None)),)
        if len(items) > 1:
            items = sorted(items, key=_in_order)
        born = int(created_at.timestamp())
        state: dict[str, int | None] = dict.fromkeys(Talk.FIELDS)
        changes: list[tuple[int, dict[str, int | None]]] = []
        for at, key, value, _ in items:
            if at <= born:
                state[key] = value
            elif changes and changes[-1][0] == at:
                changes[-1][1][key] = value
            else:
                changes.append((at, {key: value}))
        history = [Assignment(created_at, name("group_id", state["group_id"]),
                              name("assignee_id", state["assignee_id"]))]
        for at, changed in changes:
            state.update(changed)
            history.append(Assignment(_from_unix(at, UTC),
                                      name("group_id", state["group_id"]),
                                      name("assignee_id", state["assignee_id"])))
        if (state["group_id"], state["assignee_id"]) != now:
            return None
        return tuple(history)


@dataclass
class Watch:
    """Busy seconds of the ticket event export. A time-based page ends at its last event's
    second and the next page starts there (IncrementalTicketEvents, `end_time`,
    IncrementalUnixTime), so a second that holds a page's 1,000 events or more gives the same
    page again: the export goes on at the next second, and the events of that second past
    the page are never read. The tickets they may belong to have their audits read instead
    (a ticket's audits are its whole story): every ticket the ticket export brings that was
    created by the `last` busy second and updated since the `first`, until a ticket export
    has been read to its end since (`until` is then the server's time at that end); and
    every ticket with an event from `first` to `until`, since a ticket updated again in the
    minute the exports leave out comes in a later export, after its later event. The watch
    ends once the event export has been read to its end well past `until`."""

    first: int
    last: int
    until: int | None = None
    #: The ids of the events at the event position's second that the last read saw: the
    #: next read starts at that second again, and they mark nothing twice.
    edge: list[int] = dataclasses.field(default_factory=list)

    def as_json(self) -> list[Any]:
        return [self.first, self.last, self.until, self.edge]

    @staticmethod
    def decode(value: Any) -> Watch | None:
        if value is None:
            return None
        if not (isinstance(value, list) and len(value) == 4 and _whole(value[0])
                and _whole(value[1]) and (value[2] is None or _whole(value[2]))
                and isinstance(value[3], list) and all(map(_whole, value[3]))):
            raise ValueError("unexpected busy seconds")
        return Watch(*value)

    def met(self, second: int) -> Watch:
        """This watch with one more busy second: whatever ended before starts again."""
        return Watch(min(self.first, second), max(self.last, second), None, self.edge)

    @staticmethod
    def after_read(watch: Watch | None, found: list[int], ended: int | None,
                   ) -> Watch | None:
        """The watch after an event export read that met the busy seconds `found` and
        reached its end at the server's time `ended` (None: it did not)."""
        for second in found:
            watch = Watch(second, second) if watch is None else watch.met(second)
        if watch is not None and not found and watch.until is not None \
                and ended is not None and ended - WATCH_MARGIN >= watch.until:
            return None  # every ticket's event up to `until` has been read
        return watch

    def marks(self, at: int) -> bool:
        """Whether an event at `at` makes its ticket a suspect."""
        return at >= self.first and (self.until is None or at <= self.until)

    def audits(self, created_at: datetime, updated_at: datetime) -> bool:
        """Whether a ticket the ticket export brings is read from its audits (the watch's
        first ticket export has not reached its end yet)."""
        return self.until is None and created_at.timestamp() <= self.last \
            and updated_at.timestamp() >= self.first


@dataclass
class Position:
    """Where the next fetch resumes: the ticket export's cursor (before its first page, its
    start time) and the ticket event export's next start time. What the events said of each
    ticket (its story: status changes and conversation) is kept in the connector's memory,
    one entry per ticket (`_story_text`), not here: the cursor stays small however large
    the desk (v2 cursors held every open ticket's story: a first fetch moves it there)."""

    start_time: int
    tickets: str | None
    events: int
    #: The busy seconds being watched (`Watch`), None when there are none.
    watch: Watch | None = None
    #: Tickets whose events since a busy second may be incomplete: their audits are read
    #: when the ticket export next brings them.
    suspects: set[str] = dataclasses.field(default_factory=set)
    #: Where the ticket export stands in time: the last exported ticket's
    #: `generated_timestamp` (the export's order), else its `updated_at`; None before any.
    exported: int | None = None

    def encode(self) -> str:
        return json.dumps({"v": 3, "start_time": self.start_time, "tickets": self.tickets,
                           "events": self.events, "exported": self.exported,
                           "watch": None if self.watch is None else self.watch.as_json(),
                           "suspects": sorted(self.suspects, key=int)}, separators=(",", ":"))

    def export_again(self, second: int, events_were: int) -> None:
        """A ticket updated in a busy second may have been exported already (the ticket
        export reads up to a minute ago, the events were read before it): the ticket export
        starts again at that second, so that each comes again and is audited, or where it
        stands if that is earlier (for a cursor from before `exported`: where the events
        stood, `events_were`, which no ticket not exported yet is older than)."""
        stands = self.start_time if self.tickets is None else \
            self.exported if self.exported is not None else events_were
        self.tickets, self.start_time = None, min(second, stands)

    @classmethod
    def decode(cls, cursor: str) -> tuple[Position, dict[str, str]]:
        """The position, and the stories a v1 or v2 cursor carried (ticket -> memory entry)."""
        try:
            data = json.loads(cursor)
            if not isinstance(data, dict) or data.get("v") not in (1, 2, 3):
                raise ValueError("unknown format")
            start, tickets, events = data["start_time"], data["tickets"], data["events"]
            if not (_whole(start) and _whole(events)
                    and (tickets is None or isinstance(tickets, str))):
                raise ValueError("unexpected values")
            watch = Watch.decode(data.get("watch"))
            suspects = data.get("suspects") or []
            if not isinstance(suspects, list) or not all(
                    isinstance(t, str) and t.isdigit() for t in suspects):
                raise ValueError("unexpected suspects")
            exported = data.get("exported")
            if exported is not None and not _whole(exported):
                raise ValueError("unexpected export time")
            stories = {} if data["v"] == 3 else _stories_of_v2(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConnectorError(f"zendesk: the cursor in the state file is not one this "
                                 f"connector wrote ({exc})") from None
        return cls(start, tickets, events, watch, set(suspects), exported), stories


def _stories_of_v2(data: Mapping[str, Any]) -> dict[str, str]:
    """The stories of a v1 or v2 cursor as memory entries: its `history` and `talk` with the
    audited `fixed` stories over them."""
    history, talk = data["history"], data.get("talk") or {}
    if not isinstance(history, dict) or not isinstance(talk, dict):
        raise ValueError("unexpected history")
    _check_history(history)
    if not all(Talk.valid(entry) for entry in talk.values()):
        raise ValueError("unexpected conversation")
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, dict) or not all(
            isinstance(fix, dict) and _valid_history(fix.get("h"))
            and (fix.get("t") is None or Talk.valid(fix["t"])) for fix in fixed.values()):
        raise ValueError("unexpected audited stories")
    stories = {}
    for ticket in {*history, *talk, *fixed}:
        if not (isinstance(ticket, str) and ticket.isdigit()):
            raise ValueError("unexpected ticket id")
        fix = fixed.get(ticket)
        text = _story_text(fix["h"], fix["t"]) if fix is not None else \
            _story_text(history.get(ticket, []), talk.get(ticket))
        if text is not None:
            stories[ticket] = text
    return stories


def _story_text(history: list[list[Any]], talk: Mapping[str, Any] | None) -> str | None:
    """A ticket's story as its memory entry: {"h": status changes, "t": `Talk`}; None when
    there is nothing worth keeping. A conversation whose creation was not seen never becomes
    whole (creation is a ticket's first event): it is left out."""
    if talk is not None and not talk.get("c"):
        talk = None
    if not history and talk is None:
        return None
    return json.dumps({"h": history, "t": talk} if talk is not None else {"h": history},
                      separators=(",", ":"))


def _story_of(ticket: str, text: str) -> tuple[list[list[Any]], dict[str, Any] | None]:
    """The status changes and conversation of a ticket's memory entry (`_story_text`)."""
    try:
        data = json.loads(text)
        history, talk = data["h"], data.get("t")
        if _valid_history(history) and (talk is None or Talk.valid(talk)):
            return history, talk
    except (ValueError, KeyError, TypeError):
        pass
    raise ConnectorError(f"zendesk: ticket {ticket}: the story kept for it in the state file "
                         "(table memory) is not one this connector wrote; restore the state "
                         "file from a backup")


class _Marker:
    """Marks the suspects of a watch among the events a read brings (`Watch.marks`), but
    not again those the last read saw at its edge second; notes this read's edge."""

    def __init__(self, watch: Watch | None, suspects: set[str]):
        self.watch, self.suspects = watch, suspects
        self.skip = set(watch.edge) if watch is not None else set()
        self.at, self.ids = -1, list[int]()

    def see(self, event: Mapping[str, Any]) -> None:
        at, event_id = _event_time(event) or 0, event.get("id")
        if at > self.at:
            self.at, self.ids = at, []
        if at == self.at and isinstance(event_id, int):
            self.ids.append(event_id)
        if self.watch is not None and event_id not in self.skip and self.watch.marks(at):
            self.suspects.add(str(event["ticket_id"]))

    def edge(self, end: int) -> list[int]:
        return self.ids if self.at == end else []


def batch_tickets(jobs: int) -> int:
    """The most tickets a batch of `jobs` update_many jobs updates: each job's 100, one
    less when that many divides a page of events (100, 200, 500). Zendesk may apply a
    batch's updates in one second (an account whose job workers are idle runs a job at
    once), and every page of the event export starts at a whole second, the next one at the
    second the last ended on: over seconds of exactly 500 events each page ends on a whole
    second, all of whose events come again on the next page (reading back 1,000 own updates
    takes two pages). Over seconds of 499 a page ends two events into its third second."""
    tickets = BATCH_SIZE * jobs
    return tickets - 1 if EVENT_PAGE % tickets == 0 else tickets


class _Pace:
    """Spreads sla-sync's own update_many jobs over Zendesk's seconds: at most `limit`
    tickets updated in any one second (OWN_EVENTS_A_SECOND). Zendesk stamps each ticket a
    job updates with the second it applies the update, which lies between its clock when
    the job was queued and the `Date` of the poll that found the job completed (Zendesk
    documents no more: a job may run at once or later, fast or slow). So each batch of jobs
    settled is kept as a span: its tickets, and the last second they can carry. A new batch
    is queued at once if the tickets of the spans that may share a second with it (those
    whose last second Zendesk's clock has not passed) leave room for its own; else once
    Zendesk's clock (`ServerClock`: its answers' `Date`) has passed the oldest of them."""

    def __init__(self, limit: int):
        self.limit = limit
        self.spans: list[tuple[int, int]] = []  # (the last second it can carry, tickets)

    def delay(self, tickets: int, clock: ServerClock) -> float:
        """The seconds until a batch that updates `tickets` can be queued (the spans
        Zendesk's clock has passed are dropped)."""
        now = clock.now()
        if now is None:  # no answer with a Date yet: no batch has been settled either
            return 0.0
        self.spans = live = sorted(span for span in self.spans if span[0] >= now)
        room, second = self.limit - tickets - sum(n for _, n in live), now
        for end, n in live:
            if room >= 0:
                break
            room, second = room + n, end + 1
        return clock.until(second)

    def settled(self, tickets: int, clock: ServerClock) -> None:
        """A batch that updated `tickets` is settled (its last poll answered, or given up:
        a job still running then may still share a second with later ones, which the
        event export's watch then pays for; it is never wrong)."""
        end = clock.now()
        if end is not None and tickets:
            self.spans.append((end, tickets))


class Zendesk:
    def __init__(self, client: HttpClient, *, vocabulary: Vocabulary | None = None,
                 start_time: datetime | None = None, bulk_writes: bool = True,
                 api_requests_per_minute: float | None = None,
                 job_timeout: float = JOB_TIMEOUT, clock: Callable[[], float] = time.time,
                 worked_field: int | None = None, jobs_at_once: int = JOBS_AT_ONCE):
        self.exports = client
        # Ticket reads and writes and job polls have their own, larger budget: a second
        # client on the same session (auth, waits) with its own throttle.
        self.api = HttpClient(client.base_url, auth=client.session.auth, name=client.name,
                              timeout=client.timeout,
                              max_retry_seconds=client.max_retry_seconds,
                              max_attempts=client.max_attempts,
                              requests_per_minute=api_requests_per_minute,
                              sleep=client.sleep, clock=client.throttle.clock,
                              session=client.session)
        self.words = vocabulary or Vocabulary.from_settings({})
        self.start_time = start_time
        self.worked_field = worked_field
        self._agents: set[int] | None = None
        self.job_timeout = job_timeout
        #: The most changes one batch of jobs carries (`batch_tickets`).
        self.batch_tickets = batch_tickets(jobs_at_once)
        self.pace = _Pace(OWN_EVENTS_A_SECOND)
        #: The clock when the batch submitted last was queued, until its answer is asked for.
        self._in_flight: float | None = None
        self.clock = clock
        #: The exports' next page is read while the caller works on the last (`follow`).
        self.read_ahead = True
        # A batch is as many jobs as may run at once: they are polled together.
        self.capabilities = Capabilities(bulk_writes=bulk_writes,
                                         batch_size=self.batch_tickets
                                         if bulk_writes else 1,
                                         safe_update=True, tags=True, notes=True, leads=False)

    @classmethod
    def from_settings(cls, settings: dict[str, Any], base_dir: Path) -> Zendesk:
        v = SCHEMA.check(settings)
        client = client_from_settings(settings, "zendesk",
                                      auth=HTTPBasicAuth(f"{v['email']}/token", v["token"]),
                                      requests_per_minute=EXPORT_REQUESTS_PER_MINUTE)
        start_time = v["start_time"]
        if start_time is not None and start_time.timestamp() > time.time() - 60:
            raise ValueError("connector.start_time: must lie in the past (Zendesk exports "
                             "nothing newer than a minute ago)")
        return cls(client, vocabulary=Vocabulary.from_settings(settings), start_time=start_time,
                   bulk_writes=v["bulk_writes"],
                   api_requests_per_minute=float(v["api_requests_per_minute"]),
                   job_timeout=float(v["job_timeout"]), jobs_at_once=int(v["jobs_at_once"]),
                   worked_field=(v["time_tracking"] or {}).get("total_field"))

    @property
    def identity(self) -> str:
        return f"zendesk:{self.exports.base_url.rstrip('/')}"

    @property
    def _include(self) -> str:
        return "metric_sets,organizations" if self.words.tier.kind == "organization_field" \
            else "metric_sets"

    # -- reading ---------------------------------------------------------------------------

    #: fetch takes the sync loop's memory (`connector.base.Memory`): the tickets' stories.
    remembers = True

    def fetch(self, cursor: str | None, memory: Memory | None = None) -> Iterator[Page]:
        memory = memory if memory is not None else MemoryInProcess()
        if cursor:
            position, stories = Position.decode(cursor)
            memory.keep(stories)  # a v2 cursor's stories move into the memory
        else:
            start = self.start_time.timestamp() if self.start_time is not None \
                else self.clock() - FIRST_START_DAYS * 86400
            position = Position(int(start), None, int(start))
        notices = Notices()  # a new fetch says again what an earlier one said
        self._agents = None  # the account's agents, read again by each fetch that needs them
        # Events first, a page of no records for each of their pages: every ticket page's
        # records then carry the story up to a minute ago.
        position.events = yield from self._read_events(position, notices, memory)

        answered: list[int] = [0]  # the server's time at the last ticket page

        def read(token: str) -> tuple[Any, requests.Response]:
            params: dict[str, Any] = {"include": self._include}
            if token:
                params["cursor"] = token
            else:
                params["start_time"] = position.start_time
            response = self.exports.get(TICKET_EXPORT, params=params)
            body = _body(response, "GET", TICKET_EXPORT, "tickets")
            if position.watch is not None:
                answered[0] = _server_time(response, self.clock())
            return body, response

        def after(body: Any, response: requests.Response) -> str | None:
            token = body.get("after_cursor")
            return None if body.get("end_of_stream") is True or not isinstance(token, str) \
                else token

        # Read ahead: the export's next page is asked for while this one is mirrored and
        # evaluated (only the exports' client reads in that thread; audits and writes go
        # through `self.api`, whose throttle is its own).
        for body in follow(position.tickets or "", after, read, "zendesk: ticket export",
                           ahead=self.read_ahead):
            if isinstance(body.get("after_cursor"), str):
                position.tickets = body["after_cursor"]
            records, problems = self._page(body, position, notices, memory)
            last = body["tickets"][-1] if body["tickets"] else None
            if isinstance(last, Mapping):
                position.exported = _export_time(last, position.exported)
            watch = position.watch
            if watch is not None and watch.until is None and body.get("end_of_stream") is True:
                # Every ticket updated by a minute before now has been exported (and read
                # from its audits); one updated since shows as an event up to now.
                watch.until = answered[0]
            yield Page(records=records, cursor=position.encode(), problems=problems,
                       notices=notices.take())

    def _page(self, body: Mapping[str, Any], position: Position, notices: Notices,
              memory: Memory) -> tuple[list[Record], list[RecordError]]:
        """One ticket export page's records, each with its story from the memory (one read
        for the page). A suspect's story is read from its audits and kept; a ticket the
        export brings closed or deleted never changes again: its story goes."""
        metrics = _by(body.get("metric_sets"), "ticket_id")
        organizations = _by(body.get("organizations"), "id")
        tickets = body["tickets"]
        kept = memory.recall({str(raw["id"]) for raw in tickets
                              if isinstance(raw, Mapping) and _whole(raw.get("id"))})
        stories = {ticket: _story_of(ticket, text) for ticket, text in kept.items()}
        changes: dict[str, str | None] = {}
        records: list[Record] = []
        problems: list[RecordError] = []
        for index, raw in enumerate(tickets):
            ticket_id = raw.get("id") if isinstance(raw, Mapping) else None
            ticket = str(ticket_id)
            if _whole(ticket_id):
                if self._suspect(raw, position):
                    story = self._audit_story(ticket, position, notices)
                    if story is not None:
                        stories[ticket] = story
                        changes[ticket] = _story_text(*story)
                if raw.get("status") in FINAL_STATUSES and ticket in stories:
                    changes[ticket] = None
            history, talk = stories.get(ticket, ([], None))
            try:
                records.append(self._record(raw, metrics.get(ticket_id), history,
                                            organizations, notices, index, talk))
            except RecordError as exc:
                problems.append(exc)
        memory.keep(changes)
        return records, problems

    def _audit_story(self, ticket: str, position: Position, notices: Notices,
                     ) -> tuple[list[list[Any]], dict[str, Any] | None] | None:
        """A ticket's story from its audits, in place of what the events told (None: keep
        that). A ticket whose audits Zendesk refuses (deleted since the export, say) keeps
        what the events told, with a notice; a helpdesk-wide failure stops the fetch."""
        try:
            history, _, talk = self._audits(ticket)
        except ConnectorError as exc:
            if exc.record_id != ticket or exc.retriable:
                raise
            position.suspects.discard(ticket)
            notices.append(f"ticket {ticket}: its audits could not be read ({exc}): its "
                           "history may miss events of a busy second")
            return None
        position.suspects.discard(ticket)
        return history, talk

    @staticmethod
    def _suspect(raw: Mapping[str, Any], position: Position) -> bool:
        """Whether a ticket of the export may miss events of a busy second (`Watch`): its
        story is then read from its audits. A deleted ticket has none to read (and stops
        every clock)."""
        ticket = str(raw["id"])
        if raw.get("status") == "deleted":
            position.suspects.discard(ticket)
            return False
        if ticket in position.suspects:
            return True
        if position.watch is None:
            return False
        try:
            created_at = parse_instant(raw.get("created_at"), "created_at")
            updated_at = parse_instant(raw.get("updated_at"), "updated_at")
        except ValueError:
            return False  # a malformed ticket: skipped and reported by _record
        return position.watch.audits(created_at, updated_at)


    def _read_events(self, position: Position, notices: NoticeSink, memory: Memory,
                     ) -> Generator[Page, None, int]:
        """Reads the ticket events since the position into the stories in the memory, one
        page of no records for each page read (one memory read and one keep each); returns
        where the next read starts. A page of one second only is a busy second (`Watch`):
        the read goes on at the next second and the position watches it.

        The event pages' cursor is the position the fetch started from: only a fetch's last
        cursor is stored (with the memory kept), and a fetch resumed from an earlier one
        would merge the same events again, which changes no story (pages overlap at their
        edges already, and a merge skips what a story holds)."""
        end = position.events
        unreadable = 0
        watch = position.watch  # as this fetch found it: its events mark suspects
        started = position.events
        resume = position.encode()
        asked = [position.events]  # the start time of the page being read
        found: list[int] = []
        ended: list[int] = []  # the server's time when the export said end_of_stream

        def read(token: str) -> tuple[Any, requests.Response]:
            asked[0] = int(token)
            # The comment_events sideload puts each comment (author, public) in its event,
            # at no extra request.
            response = self.exports.get(EVENT_EXPORT, params={"start_time": int(token),
                                                              "include": "comment_events"})
            return _body(response, "GET", EVENT_EXPORT, "ticket_events"), response

        def after(body: Any, response: requests.Response) -> str | None:
            if body.get("end_of_stream") is True:
                ended.append(_server_time(response, self.clock()))
                return None
            if not _whole(body.get("end_time")):
                raise ConnectorError(f"zendesk: GET {EVENT_EXPORT}: a page without end_of_stream "
                                     "has no end_time to continue from")
            if body["end_time"] <= asked[0]:
                found.append(asked[0])
                return str(asked[0] + 1)
            return str(body["end_time"])

        marker = _Marker(watch, position.suspects)
        for body in follow(str(position.events), after, read, "zendesk: ticket event export",
                           ahead=self.read_ahead):
            unreadable += _merge_events(body["ticket_events"], memory, marker)
            if _whole(body.get("end_time")):
                end = max(end, body["end_time"])
            yield Page(records=[], cursor=resume)
        end = max([end] + [second + 1 for second in found])
        if unreadable:
            notices.append(f"{unreadable} ticket event(s) without a ticket id or time were "
                           "ignored: those tickets' status history may miss a change")
        position.watch = Watch.after_read(watch, found, ended[0] if ended else None)
        if position.watch is not None:
            position.watch.edge = marker.edge(end)
        if found:
            position.export_again(min(found), started)
            seconds = ", ".join(f"{datetime.fromtimestamp(second, UTC):%Y-%m-%dT%H:%M:%SZ}"
                                for second in found)
            notices.append(f"the ticket event export holds 1,000 events or more at {seconds}, "
                           "more than a page: the tickets whose events of that second are not "
                           "all read have their audits read instead")
        return end

    def get(self, record_id: str) -> Record | None:
        """The ticket itself (show ticket, not the export, which leaves out the last
        minute) and its status history from its audits."""
        return self._show(record_id, None, notes=False)

    def read_back(self, record_id: str, since: datetime | None = None) -> Record | None:
        """As get, with the private comments added since `since` as notes: the audits that
        give the history carry every comment, so confirming a note costs no request more."""
        return self._show(record_id, since, notes=True)

    def _show(self, record_id: str, since: datetime | None, notes: bool) -> Record | None:
        if not record_id.isdigit():
            return None
        path = f"/api/v2/tickets/{record_id}"
        response = self.api.request("GET", path, params={"include": self._include},
                                    ok=(200, 404))
        if response.status_code == 404:
            return None
        body = _body(response, "GET", path, "ticket", dict)
        ticket = body["ticket"]
        metric = _by(body.get("metric_sets"), "ticket_id").get(int(record_id)) \
            or body.get("metric_set") or ticket.get("metric_set")
        notices: list[str] = []
        history, comments, talk = self._audits(record_id)
        try:
            record = self._record(ticket, metric, history,
                                  _by(body.get("organizations"), "id"), notices, None, talk)
        except RecordError as exc:
            raise ConnectorError(f"zendesk: ticket {record_id}: {exc.reason}",
                                 record_id=record_id) from None
        if not notes:
            return record
        # Only private comments can be sla-sync's notes; the rest stays out of the mirror.
        return dataclasses.replace(record, notes=tuple(
            note for note in comments if since is None or note.at >= since))

    def _audits(self, record_id: str,
                ) -> tuple[list[list[Any]], list[Note], dict[str, Any] | None]:
        """One ticket's status changes, private comments and conversation from its audits (a
        re-read has no export window)."""
        path = f"/api/v2/tickets/{record_id}/audits"
        history: dict[str, list[list[Any]]] = {}
        talk: dict[str, dict[str, Any]] = {}
        notes: list[Note] = []

        def read(token: str) -> tuple[Any, requests.Response]:
            params: dict[str, Any] = {"page[size]": 100}
            if token:
                params["page[after]"] = token
            response = self.api.get(path, params=params, record_id=record_id)
            return _body(response, "GET", path, "audits"), response

        def after(body: Any, response: requests.Response) -> str | None:
            meta = body.get("meta") if isinstance(body.get("meta"), Mapping) else {}
            token = meta.get("after_cursor")
            return token if meta.get("has_more") is True and isinstance(token, str) else None

        for body in follow("", after, read, f"zendesk: audits of ticket {record_id}"):
            for audit in body["audits"]:
                if isinstance(audit, Mapping):
                    _collect({"ticket_id": int(record_id), "created_at": audit.get("created_at"),
                              "child_events": audit.get("events")}, history, set(), talk)
                    notes += _comments(audit)
        entries = history.get(record_id, [])
        entries.sort(key=lambda entry: entry[0])
        notes.sort(key=lambda note: note.at)
        return entries, notes, talk.get(record_id)

    def _record(self, raw: Any, metric: Any, history: list[list[Any]],
                organizations: Mapping[int, Any], notices: NoticeSink,
                position: int | None, talk: Mapping[str, Any] | None = None) -> Record:
        # Every ticket of a sync comes through here: the usual values (dicts, exact types)
        # are taken on the first test; an ABC's isinstance costs about as much as a field.
        if not _is_mapping(raw):
            raise RecordError("is not a ticket object", position=position)
        ticket_id = raw.get("id")
        if isinstance(ticket_id, bool) or not isinstance(ticket_id, int):
            raise RecordError("has no ticket id", position=position)
        record_id = str(ticket_id)
        words = self.words
        try:
            created_at = parse_instant(raw.get("created_at"), "created_at")
            updated_at = parse_instant(raw.get("updated_at"), "updated_at")
            status = raw.get("status")
            if not isinstance(status, str) or not status:
                raise ValueError(f"status: expected a Zendesk status, got {status!r}")
            tags = raw.get("tags") or []
            if not isinstance(tags, list) or not all([isinstance(t, str) for t in tags]):
                raise ValueError("tags: expected a list of strings")
            via = raw.get("via")
            channel = via.get("channel") if _is_mapping(via) else None
            priority = raw.get("priority")
            if priority is not None and not isinstance(priority, str):
                raise ValueError(f"priority: expected a string, got {priority!r}")
            if channel is not None and not isinstance(channel, str):
                raise ValueError(f"via.channel: expected a string, got {channel!r}")
            group_id = _optional_id(raw, "group_id")
            assignee_id = _optional_id(raw, "assignee_id")
            metric = metric if _is_mapping(metric) else {}
            first_response_at = _first_reply(created_at, metric)
            solved_at = None
            if status in ("solved", "closed") and metric.get("solved_at"):
                solved_at = parse_instant(metric["solved_at"], "metric_set.solved_at")
            subject = raw.get("subject")
            worked = self._worked(raw, notices)
        except ValueError as exc:
            raise RecordError(str(exc), record_id=record_id, position=position) from None
        custom = {
            "zendesk_status": status, "type": raw.get("type"),
            "organization_id": raw.get("organization_id"),
            "requester_id": raw.get("requester_id"), "via": channel,
            "initially_assigned_at": metric.get("initially_assigned_at"),
            "reopens": metric.get("reopens"), "replies": metric.get("replies"),
        }
        if words.fields.fields:
            custom.update(words.fields.read(lambda field_id: _field_value(raw, field_id)))
        # In the order notices have always come in: status, priority, channel, history,
        # escalation level.
        status_name = words.status.read(status, notices)
        priority_name = words.priority.read(priority, notices)
        channel_name = words.channel.read(channel, notices)
        read_status = words.status.read
        changes = tuple([StatusChange(_from_unix(at, UTC), read_status(name, notices))
                         for at, name in history])
        kept, tier, level = words.read_tags(raw, tags, organizations, notices)
        return Record(
            id=record_id, kind="ticket", created_at=created_at, updated_at=updated_at,
            subject=subject if isinstance(subject, str) else "",
            status=status_name, priority=priority_name, tier=tier, channel=channel_name,
            group=words.groups.name(group_id), assignee=words.agents.name(assignee_id),
            tags=kept, first_response_at=first_response_at, solved_at=solved_at,
            status_history=changes, escalation_level=level,
            custom={k: v for k, v in custom.items() if v is not None},
            url=f"{self.exports.base_url.rstrip('/')}/agent/tickets/{record_id}",
            worked_seconds=worked,
            messages=Talk.messages(talk, raw.get("requester_id"), self._is_agent),
            assignment_history=Talk.assignments(
                talk, created_at, (group_id, assignee_id),
                lambda field, value: (words.groups if field == "group_id"
                                      else words.agents).name(value)))

    def _worked(self, ticket: Mapping[str, Any], notices: NoticeSink) -> float | None:
        """The Time Tracking app's total time spent (seconds), where a field is configured
        and holds a number; None otherwise (nothing recorded is not zero worked)."""
        if self.worked_field is None:
            return None
        value = _field_value(ticket, self.worked_field)
        if isinstance(value, str) and value.strip().isdecimal():
            value = int(value)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not 0 <= value <= MAX_WORKED:
            notices.append(f"ticket {ticket.get('id')}: time tracking field "
                           f"{self.worked_field} holds {value!r}, not seconds: its worked "
                           "time is left out")
            return None
        return value

    def _is_agent(self, user_id: int) -> bool:
        """Whether a comment's author is one of the account's agents or admins: a mapped
        agent at once, any other from the account's agent list (read once per fetch that
        needs it, one request per 100 agents, on the general API budget)."""
        if user_id in self.words.agents.names:
            return True
        if self._agents is None:
            self._agents = {u["id"] for u in self._list(
                USERS, "users", {"role[]": ["agent", "admin"]}) if _whole(u.get("id"))}
        return user_id in self._agents

    # -- what the account has (sla-sync check) --------------------------------------------

    def catalog(self) -> Catalog:
        """The account's priorities and statuses (the ticket fields' system options), groups,
        agents and admins, and ticket fields, read through the general API budget: one
        request for the current user, one for the ticket fields, one per 100 groups and one
        per 100 agents (cursor pagination). Only reads."""
        sent = self.api.requests_sent
        words = self.words
        catalog = Catalog("Zendesk")
        me = _body(self.api.get(CURRENT_USER), "GET", CURRENT_USER, "user", dict)["user"]
        if me.get("role") != "admin":
            catalog.problems.append((
                "connector.email", f"the API token's user is a Zendesk {me.get('role')!r}, "
                "not an admin: the incremental exports sla-sync reads are open to admins "
                "only"))
        fields = _body(self.api.get(TICKET_FIELDS), "GET", TICKET_FIELDS,
                       "ticket_fields")["ticket_fields"]
        by_type = {f.get("type"): f for f in fields if isinstance(f, Mapping)}

        def options(kind: str, vocabulary: ValueMap) -> set[str]:
            field = by_type.get(kind)
            values = [o.get("value") for o in field.get("system_field_options") or []
                      if isinstance(o, Mapping)] if isinstance(field, Mapping) else []
            return {vocabulary.table[v] for v in values if v in vocabulary.table} if values \
                else set(vocabulary.table.values())

        catalog.priorities = options("priority", words.priority)
        catalog.statuses = options("status", words.status) | {
            words.status.table[s] for s in SYSTEM_STATUSES if s in words.status.table}
        field_ids = {f.get("id"): f for f in fields if isinstance(f, Mapping)}
        for key, source in (("tier", words.tier), ("escalation", words.escalation)):
            field = field_ids.get(source.key) if source.kind == "field" else None
            if source.kind == "field" and (field is None or field.get("active") is False):
                catalog.problems.append((
                    f"connector.{key}.field", f"no active ticket field {source.key} in "
                    f"Zendesk" + _listed(f"{f.get('id')} {f.get('title')}" for f in fields
                                         if isinstance(f, Mapping) and f.get("removable"))))
        catalog.fields = set(CUSTOM_KEYS) | set(self.words.fields.fields)
        groups = {g["id"]: str(g.get("name")) for g in self._list(GROUPS, "groups", {})
                  if _whole(g.get("id")) and g.get("deleted") is not True}
        agents = {u["id"]: str(u.get("name")) for u in self._list(
            USERS, "users", {"role[]": ["agent", "admin"]}) if _whole(u.get("id"))
            and u.get("active") is not False}
        catalog.groups = self._names(catalog, "groups", "group", groups, words.groups.names)
        catalog.agents = self._names(catalog, "agents", "agent", agents, words.agents.names)
        catalog.requests = self.api.requests_sent - sent
        return catalog

    def directory(self) -> dict[str, dict[str, str]]:
        """The account's active agents and admins by the name rules use (the `agents`
        setting's, else the id): email, full name and IANA time zone, where alerts to
        `{assignee}` go. One request per 100 agents (cursor pagination), general budget."""
        found: dict[str, dict[str, str]] = {}
        for user in self._list(USERS, "users", {"role[]": ["agent", "admin"]}):
            if not _whole(user.get("id")) or user.get("active") is False:
                continue
            entry = {key: user[field] for key, field in (
                ("email", "email"), ("name", "name"), ("timezone", "iana_time_zone"))
                if isinstance(user.get(field), str) and user[field]}
            found[self.words.agents.name(user["id"])] = entry
        return found

    def _list(self, path: str, key: str, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Every item of a cursor-paginated listing (100 a page; `page[after]` from
        `meta.after_cursor` while `meta.has_more`)."""
        items: list[Mapping[str, Any]] = []

        def read(token: str) -> tuple[Any, requests.Response]:
            page = {**params, "page[size]": 100, **({"page[after]": token} if token else {})}
            response = self.api.get(path, params=page)
            return _body(response, "GET", path, key), response

        def after(body: Any, response: requests.Response) -> str | None:
            meta = body.get("meta") if isinstance(body.get("meta"), Mapping) else {}
            token = meta.get("after_cursor")
            return token if meta.get("has_more") is True and isinstance(token, str) else None

        for body in follow("", after, read, f"zendesk: {path}"):
            items += [item for item in body[key] if isinstance(item, Mapping)]
        return items

    def _names(self, catalog: Catalog, setting: str, kind: str, live: Mapping[int, str],
               mapped: Mapping[int, str]) -> set[str]:
        """The names rules may use for the account's groups or agents (the config's name of
        a mapped id, else the id), the config's ids the account lacks, and hints for names
        Zendesk has that the config does not map."""
        for zendesk_id in mapped:
            if zendesk_id not in live:
                catalog.problems.append((
                    f"connector.{setting}.{zendesk_id}", f"no {kind} {zendesk_id} in Zendesk"
                    + _listed(f"{i} {name}" for i, name in sorted(live.items()))))
        for zendesk_id, name in live.items():
            if zendesk_id in mapped:
                if mapped[zendesk_id] != name:
                    catalog.hints.setdefault((kind, name), (
                        f"Zendesk's {kind} {name!r} ({zendesk_id}) is named "
                        f"{mapped[zendesk_id]!r} in connector.{setting}"))
            else:
                catalog.hints.setdefault((kind, name), (
                    f"Zendesk's {kind} {name!r} has id {zendesk_id}: name it in "
                    f"connector.{setting} (e.g. {zendesk_id}: {name})"))
        return {mapped.get(i, str(i)) for i in live}

    # -- writing ---------------------------------------------------------------------------

    def apply(self, change: ChangeSet, now: datetime) -> Record | None:
        """One safe update. Returns None: Zendesk's answer has no metric set or status
        history, so the loop's own projection of the change is the better record."""
        record_id = change.record_id
        ticket = self._update(change)
        path = f"/api/v2/tickets/{_ticket_id(record_id)}"
        # With the safe-update stamp a second send of an applied update is refused with a
        # 409 (the ticket's updated_at moved), so a lost answer may be retried: the loop
        # reads a conflict back and recognises its own write. Without it, it may not.
        response = self.api.request("PUT", path, json={"ticket": ticket},
                                    ok=ERRORS.ok(200), record_id=record_id,
                                    idempotent=change.base_updated_at is not None)
        ERRORS.check(response, record_id)
        return None

    def apply_many(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        if not self.capabilities.bulk_writes or len(changes) <= 1:
            # One change: a single safe update costs one request, a job at least two.
            return apply_each(self, changes, now)
        results: dict[int, WriteResult] = {}
        for first in range(0, len(changes), self.batch_tickets):
            group = range(first, min(first + self.batch_tickets, len(changes)))
            self._queue_jobs(changes, group, results, credit=False)()
        return [results[index] for index in range(len(changes))]

    def submit_many(self, changes: list[ChangeSet], now: datetime,
                    ) -> Callable[[], list[WriteResult]]:
        """The batch's jobs queued now (`connector.base.submit_many`); the answer polls
        them, counting its first wait from now, so that the time the caller spent in
        between is not waited again. A batch of more jobs than run at once is written
        by apply_many now."""
        if not self.capabilities.bulk_writes or len(changes) <= 1 \
                or len(changes) > self.batch_tickets:
            written = self.apply_many(changes, now)
            return lambda: written
        results: dict[int, WriteResult] = {}
        settle = self._queue_jobs(changes, range(len(changes)), results)
        self._in_flight = self.clock()

        def answer() -> list[WriteResult]:
            self._in_flight = None
            settle()
            return [results[index] for index in range(len(changes))]
        return answer

    def wait_before(self, size: int) -> float:
        """The seconds before a batch of `size` changes could be sent without waiting
        (`connector.base.wait_before`): while a batch submitted is in flight, until its
        first poll is due (its answer asked for sooner waits for that); else until the
        pace lets it be queued (`_Pace`)."""
        if self._in_flight is not None:
            return max(0.0, self._in_flight + JOB_FIRST_POLL - self.clock())
        return self.pace.delay(size, self.api.server_clock)

    def _queue_jobs(self, changes: list[ChangeSet], group: range,
                    results: dict[int, WriteResult], credit: bool = True,
                    ) -> Callable[[], None]:
        """Queues the update_many jobs of the changes at `group` (at most jobs_at_once);
        returns what polls them and fills in `results` (with `credit`, counting the time
        until it is called as waited)."""
        jobs: list[tuple[Mapping[str, Any], list[tuple[int, int]]]] = []
        wait = self.pace.delay(len(group), self.api.server_clock)
        if wait:
            log.debug("zendesk: waiting %.1fs before the next update_many jobs: sla-sync "
                      "updates at most %d tickets a second of Zendesk's clock", wait,
                      self.pace.limit)
            self.api.sleep(wait)
        for start in range(group.start, group.stop, BATCH_SIZE):
            job = self._submit(changes, range(start, min(start + BATCH_SIZE, group.stop)),
                               results)
            if job is not None:
                jobs.append(job)
        queued = self.clock() if credit else None

        def settle() -> None:
            try:
                self._settle_jobs(jobs, changes, results, queued)
            finally:
                self.pace.settled(sum(len(items) for _, items in jobs),
                                  self.api.server_clock)
        return settle

    def _submit(self, changes: list[ChangeSet], chunk: range, results: dict[int, WriteResult]
                ) -> tuple[Mapping[str, Any], list[tuple[int, int]]] | None:
        """Queues one update_many job for the changes at `chunk`: (its job status, each
        change's index and ticket id); a change that cannot be written gets its result."""
        items: list[tuple[int, dict[str, Any]]] = []
        for index in chunk:
            change = changes[index]
            try:
                items.append((index, {"id": _ticket_id(change.record_id),
                                      **self._update(change)}))
            except ConnectorError as exc:
                results[index] = WriteResult(change.record_id, error=exc)
        if not items:
            return None
        # Never resent: a second job would post every comment again.
        body = self.api.json("PUT", UPDATE_MANY, json={"tickets": [item for _, item in items]})
        try:
            job = _job_status(body, UPDATE_MANY)
        except ConnectorError as exc:  # accepted, but what it became is not known
            job = {"id": "?", "status": "unreadable", "message": str(exc)}
        return job, [(index, item["id"]) for index, item in items]

    def _settle_jobs(self, jobs: list[tuple[Mapping[str, Any], list[tuple[int, int]]]],
                     changes: list[ChangeSet], results: dict[int, WriteResult],
                     queued: float | None = None) -> None:
        """Polls the jobs together until each is done, and gives each change its outcome. A
        job that failed as a whole, or is still running after job_timeout, leaves its
        tickets' outcomes unknown: they are read back to settle them. The waits count from
        `queued` (the clock when the jobs were queued; None: from now): the first poll
        comes when the first wait is over, at once if it already is."""
        # By place, not by id: an answer that named no job has none.
        status = [job for job, _ in jobs]
        delays = poll_delays(self.job_timeout, JOB_FIRST_POLL, JOB_MAX_POLL)
        waited, unpolled, first = 0.0, "", True
        while running := [n for n, job in enumerate(status) if job.get("status") in
                          ("queued", "working")]:
            delay = next(delays, None)
            if delay is None:
                unpolled = f"after {waited:.0f}s"
                break
            if first and queued is not None:  # the time since the jobs were queued counts as waited
                delay, first = min(delay, max(0.0, delay - (self.clock() - queued))), False
            if delay:
                self.api.sleep(delay)
            waited += delay
            try:
                answers = self._poll([str(status[n]["id"]) for n in running])
            except ConnectorError as exc:
                unpolled = f"when its status could not be read ({exc})"
                break
            for n in running:
                status[n] = answers.get(str(status[n]["id"]), status[n])
        for job, (_, items) in zip(status, jobs, strict=True):
            if job.get("status") == "completed":
                by_id: dict[int, Mapping[str, Any]] = {}
                by_index: dict[int, Mapping[str, Any]] = {}
                for result in job.get("results") or []:
                    if isinstance(result, Mapping) and _whole(result.get("id")):
                        by_id[result["id"]] = result
                    elif isinstance(result, Mapping) and _whole(result.get("index")):
                        by_index[result["index"]] = result
                for n, (index, ticket) in enumerate(items):
                    result = by_id.get(ticket) or by_index.get(n)
                    results[index] = _outcome(changes[index].record_id, result, job["id"])
                continue
            message = job.get("message")
            how = f"{job.get('status')}" + (f" ({str(message)[:200]})" if message else "")
            if job.get("status") in ("queued", "working"):
                how = f"still {job.get('status')} {unpolled}"
            for index, _ in items:
                record_id = changes[index].record_id
                results[index] = WriteResult(record_id, error=OutcomeUnknown(
                    f"zendesk: update job {job['id']} {how}; the tickets are read back to "
                    "settle it", record_id=record_id))

    def _poll(self, ids: list[str]) -> dict[str, Mapping[str, Any]]:
        """The job statuses of `ids`: one Show Job Status, or one Show Many Job Statuses."""
        if len(ids) == 1:
            path = JOB_STATUS.format(ids[0])
            return {ids[0]: _job_status(self.api.json("GET", path), path)}
        body = self.api.json("GET", JOB_STATUSES, params={"ids": ",".join(ids)})
        listed = body.get("job_statuses") if isinstance(body, Mapping) else None
        if not isinstance(listed, list):
            raise ConnectorError(f"zendesk: {JOB_STATUSES}: unexpected response (no "
                                 "job_statuses list)", retriable=True)
        found = {str(job.get("id")): job for job in listed if isinstance(job, Mapping)}
        return {i: found[i] for i in ids if i in found}

    def _update(self, change: ChangeSet) -> dict[str, Any]:
        """The ticket fields of one change. Tags go through additional_tags/remove_tags,
        which merge into what is on the ticket: a tag a person added is never lost."""
        record_id, words = change.record_id, self.words
        ticket: dict[str, Any] = {}
        fields: list[dict[str, Any]] = []
        try:
            for name, value in change.fields.items():
                if name == "priority":
                    ticket["priority"] = words.priority.write(value)
                elif name == "status":
                    ticket["status"] = words.status.write(value)
                elif name == "group":
                    ticket["group_id"] = words.groups.write(value)
                elif name == "assignee":
                    ticket["assignee_id"] = words.agents.write(value)
                elif custom_name(name):  # set_field: a ticket field, by its id
                    fields.append({"id": words.fields.theirs(custom_name(name)),
                                   "value": value})
        except ValueError as exc:
            raise ConnectorError(f"zendesk: ticket {record_id}: {exc}",
                                 record_id=record_id) from None
        add, remove = list(change.add_tags), list(change.remove_tags)
        if change.escalation_level is not None:
            level_fields, more, fewer = words.escalation_update(change.escalation_level)
            fields += level_fields.pop("custom_fields", [])
            ticket.update(level_fields)
            add += [tag for tag in more if tag not in add]
            remove += [tag for tag in fewer if tag not in remove]
        if fields:
            ticket["custom_fields"] = fields
        if add:
            ticket["additional_tags"] = add
        if remove:
            ticket["remove_tags"] = remove
        if change.notes:
            ticket["comment"] = {"body": "\n\n".join(change.notes), "public": False}
        if change.base_updated_at is not None:
            ticket["safe_update"] = True
            ticket["updated_stamp"] = change.base_updated_at.astimezone(UTC)\
                .strftime("%Y-%m-%dT%H:%M:%SZ")
        return ticket


# -- helpers -----------------------------------------------------------------------------------

def _in_order(item: list[Any]) -> tuple[int, int]:
    """Talk entries by time, then by event id (a comment and a change in one update)."""
    return item[0], item[3] if _whole(item[3]) else 0


def _listed(names: Iterator[str] | list[str], shown: int = 10) -> str:
    """` (known: a, b, ...)` for a message, at most `shown` names."""
    names = list(names)
    if not names:
        return ""
    more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
    return f" (known: {', '.join(names[:shown])}{more})"


_from_unix = datetime.fromtimestamp


def _is_mapping(value: Any) -> TypeGuard[Mapping[Any, Any]]:
    """isinstance(value, Mapping), a dict (or nothing) answered without the ABC."""
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _source(values: Mapping[str, Any], key: str) -> Source | None:
    """The one of tag_prefix, field, organization_field a tier or escalation block gives."""
    given = [kind for kind in ("tag_prefix", "field", "organization_field")
             if values.get(kind) is not None]
    if len(given) > 1:
        raise ValueError(f"connector.{key}: give one of {', '.join(given)}, not several")
    return Source(given[0], values[given[0]]) if given else None

def _valid_history(entries: Any) -> bool:
    """Whether decoded JSON is a status history, [[unix time, status], ...] (exact types)."""
    if type(entries) is not list:
        return False
    for entry in entries:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int \
                or type(entry[1]) is not str:
            return False
    return True


def _check_history(history: Mapping[str, Any]) -> None:
    if not all(_valid_history(entries) for entries in history.values()):
        raise ValueError("unexpected history")


def _server_time(response: requests.Response, fallback: float) -> int:
    """The server's clock when it answered (`server_date`), this machine's where the
    header is missing or unreadable."""
    date = server_date(response)
    return int(fallback) if date is None else date


def _field_value(ticket: Mapping[str, Any], field_id: int) -> Any:
    for entry in ticket.get("custom_fields") or []:
        if isinstance(entry, Mapping) and entry.get("id") == field_id:
            return entry.get("value")
    return None


def _optional_id(raw: Mapping[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if value is None or _whole(value):
        return value
    raise ValueError(f"{name}: expected a Zendesk id, got {value!r}")


def _first_reply(created_at: datetime, metric: Mapping[str, Any]) -> datetime | None:
    """Creation plus the metric set's first reply time (calendar, not business time: the
    instant is what counts; sla-sync applies its own calendars). Seconds exist for messaging
    tickets only; elsewhere Zendesk counts whole minutes."""
    for name, unit in (("reply_time_in_seconds", 1), ("reply_time_in_minutes", 60)):
        value = metric.get(name)
        calendar = value.get("calendar") if _is_mapping(value) else None
        if isinstance(calendar, int) and not isinstance(calendar, bool):
            return created_at + timedelta(seconds=calendar * unit)
    return None


def _unix_time(item: Mapping[str, Any], stamp: str, text: str,
               default: int | None = None) -> int | None:
    """An item's Unix time: its whole-number `stamp` key, else its ISO `text` key;
    `default` if it has neither."""
    value = item.get(stamp)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(parse_instant(item.get(text), text).timestamp())
    except ValueError:
        return default


def _export_time(ticket: Mapping[str, Any], before: int | None) -> int | None:
    """Where a ticket stands in the cursor-based export's order: its `generated_timestamp`,
    else its `updated_at`; `before` if it has neither."""
    return _unix_time(ticket, "generated_timestamp", "updated_at", before)


def _event_time(event: Mapping[str, Any]) -> int | None:
    """A ticket event's (or audit's) Unix time: `timestamp`, else `created_at`."""
    return _unix_time(event, "timestamp", "created_at")


def _collect(event: Any, history: dict[str, list[list[Any]]], touched: set[str],
             talk: dict[str, dict[str, Any]] | None = None) -> bool:
    """Adds the status changes of one ticket event (or audit) to the history, its comments
    and assignments to `talk`; False when the event cannot be placed (no ticket id or
    time)."""
    if not isinstance(event, Mapping) or not _whole(event.get("ticket_id")):
        return False
    at = _event_time(event)
    if at is None:
        return False
    ticket = str(event["ticket_id"])
    for child in event.get("child_events") or []:
        kind = (child.get("event_type") or child.get("type")) \
            if isinstance(child, Mapping) else None
        if talk is not None and isinstance(kind, str) and Talk.collect(
                child, kind, at, talk.setdefault(ticket, {})):
            touched.add(ticket)
        if not isinstance(child, Mapping) or kind not in ("Create", "Change"):
            continue
        # The event export flattens a change to {"status": new value}; audits say
        # {"field_name": "status", "value": new value}.
        status = child.get("status") if "status" in child else \
            child.get("value") if child.get("field_name") == "status" else None
        if isinstance(status, str) and status:
            entries = history.setdefault(ticket, [])
            if [at, status] not in entries:  # time-based pages overlap at their edges
                entries.append([at, status])
                touched.add(ticket)
    return True


def _merge_events(events: list[Any], memory: Memory, marker: _Marker) -> int:
    """Merges one event page into the stories of its tickets in the memory (one read, one
    keep); returns how many of its events could not be placed."""
    history: dict[str, list[list[Any]]] = {}
    talk: dict[str, dict[str, Any]] = {}
    for ticket, text in memory.recall({str(event["ticket_id"]) for event in events
                                       if isinstance(event, Mapping)
                                       and _whole(event.get("ticket_id"))}).items():
        history[ticket], entry = _story_of(ticket, text)
        if entry is not None:
            talk[ticket] = entry
    touched: set[str] = set()
    unreadable = 0
    for event in events:
        if not _collect(event, history, touched, talk):
            unreadable += 1
        else:
            marker.see(event)
    for ticket in touched:
        if ticket in history:
            history[ticket].sort(key=lambda entry: entry[0])
    memory.keep({ticket: _story_text(history.get(ticket, []), talk.get(ticket))
                 for ticket in touched})
    return unreadable


def _comments(audit: Mapping[str, Any]) -> list[Note]:
    """The private comments an audit added, as notes stamped with the audit's time."""
    try:
        at = parse_instant(audit.get("created_at"), "created_at")
    except ValueError:
        return []
    notes = []
    for event in audit.get("events") or []:
        if isinstance(event, Mapping) and event.get("type") == "Comment" \
                and event.get("public") is False:
            text = event.get("body") if isinstance(event.get("body"), str) \
                else event.get("plain_body")
            if isinstance(text, str):
                notes.append(Note(at, text))
    return notes


def _by(items: Any, key: str) -> dict[Any, Any]:
    if not isinstance(items, list):
        return {}
    return {item[key]: item for item in items if isinstance(item, Mapping) and key in item}


def _body(response: requests.Response, method: str, path: str, key: str,
          kind: type = list) -> dict[str, Any]:
    """The decoded body, which must hold `key` (a list, or `kind`)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get(key), kind):
        raise ConnectorError(f"zendesk: {method} {path}: unexpected response (no {key!r})")
    return body


def _job_status(body: Any, path: str) -> Mapping[str, Any]:
    job = body.get("job_status") if isinstance(body, Mapping) else None
    if not isinstance(job, Mapping) or not isinstance(job.get("id"), str) \
            or not re.fullmatch(r"[A-Za-z0-9_-]+", job["id"]):
        raise ConnectorError(f"zendesk: {path}: unexpected response (no job_status id)",
                             retriable=True)
    return job


def _outcome(record_id: str, result: Mapping[str, Any] | None, job_id: str) -> WriteResult:
    if result is None:
        return WriteResult(record_id, error=OutcomeUnknown(
            f"zendesk: update job {job_id} reported nothing for ticket {record_id}",
            record_id=record_id))
    if result.get("success") is True and not result.get("error"):
        return WriteResult(record_id)
    text = str(result.get("error") or "failed") + \
        (f": {result['details']}" if result.get("details") else "")
    text = text[:200]
    folded = text.lower().replace(" ", "")
    if "conflict" in folded or "collision" in folded or "outdated" in folded:
        error: ConnectorError = ConflictError(
            f"zendesk: ticket {record_id} changed since it was read ({text}); nothing was "
            "written", record_id=record_id)
    elif "notfound" in folded:
        error = RecordGone(f"zendesk: ticket {record_id} no longer exists ({text})",
                           record_id=record_id)
    else:
        error = ConnectorError(f"zendesk: ticket {record_id}: the update job refused the "
                               f"change ({text})", record_id=record_id)
    return WriteResult(record_id, error=error)


def _ticket_id(record_id: str) -> int:
    if not record_id.isdigit():
        raise ConnectorError(f"zendesk: {record_id!r} is not a Zendesk ticket id",
                             record_id=record_id)
    return int(record_id)


def _name_map(setting: str, what: str, names: dict[int, str] | None) -> NameMap:
    return NameMap(setting, what, names or {}, "Zendesk",
                   unnamed="{attribute} {name!r} has no Zendesk id: map it in the connector's "
                   "{setting} setting")


def _detail(response: requests.Response) -> str:
    """What a refusal says: Zendesk's description and field details, shortened."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(body, Mapping):
        return f"HTTP {response.status_code}"
    parts = [str(body.get("description") or body.get("error") or "")]
    details = body.get("details")
    if isinstance(details, Mapping):
        for field, problems in details.items():
            for problem in problems if isinstance(problems, list) else [problems]:
                text = problem.get("description") if isinstance(problem, Mapping) else problem
                parts.append(f"{field}: {text}")
    return "; ".join(p for p in parts if p)[:300] or f"HTTP {response.status_code}"
