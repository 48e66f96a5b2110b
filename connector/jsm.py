"""Jira Service Management Cloud (`type: jsm`): requests of one or more service projects read
by JQL ordered by `updated` (Jira platform API v3, enhanced search), with their changelog for
the status and assignee history, their comments (`jsdPublic`) for the conversation and the
first response, and `timespent` for the time worked; priority,
assignee and labels written with an issue edit, internal notes with the service desk API's
request comment (`public: false`). docs/connectors/jsm.md is the admin's guide."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from requests.auth import HTTPBasicAuth

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
from sla_sync.connector.http import HttpClient, client_from_settings, follow, numbered
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
    Instant,
    Schema,
    Setting,
    Table,
    Text,
    url_setting,
)
from sla_sync.connector.watermark import Watermark, decode_cursor

SEARCH = "/rest/api/3/search/jql"
ISSUE = "/rest/api/3/issue/{key}"
CHANGELOG = "/rest/api/3/issue/{key}/changelog"
COMMENTS = "/rest/api/3/issue/{key}/comment"
#: The service desk API (not in the platform spec): the only place a comment can be made
#: internal, and where a comment's body reads back as the plain text that was sent.
REQUEST_COMMENTS = "/rest/servicedeskapi/request/{key}/comment"
MYSELF = "/rest/api/3/myself"
STATUSES = "/rest/api/3/status"
PRIORITIES = "/rest/api/3/priority/search"
FIELDS = "/rest/api/3/field"
PROJECTS = "/rest/api/3/project/search"
ASSIGNABLE = "/rest/api/3/user/assignable/multiProjectSearch"
PERMISSIONS = "/rest/api/3/mypermissions"

PAGE_SIZE = 100  # issues per search page (Jira may return fewer when many fields are asked)
SUB_PAGE = 100  # changelog entries or comments per request
FIRST_READ = timedelta(days=30)  # without start_time, the first sync reads 30 days back
KEY = re.compile(r"[A-Z][A-Z0-9_]*-[1-9][0-9]*")
PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,254}")
FIELD_ID = re.compile(r"customfield_[0-9]+")

#: Jira's default priority scheme, in the Record's words (the first name of a value is the
#: one written for it).
PRIORITY_NAMES = {"Highest": "urgent", "High": "high", "Medium": "normal", "Low": "low",
                  "Lowest": "low"}
#: The JSM statuses of the default service project workflows, in the Record's words; a
#: status named nowhere is read from its status category.
STATUS_NAMES = {"Open": "open", "Waiting for support": "open", "In progress": "open",
                "Work in progress": "open", "Escalated": "open", "Pending": "pending",
                "Waiting for customer": "pending", "Waiting for approval": "pending",
                "Resolved": "solved", "Done": "solved", "Completed": "solved",
                "Closed": "closed", "Canceled": "closed", "Cancelled": "closed",
                "Declined": "closed"}
CATEGORIES = {"new": "new", "indeterminate": "open", "done": "solved"}

def _projects(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{path}: expected the keys of the service projects to read, e.g. "
                         "[SUP]")
    for index, key in enumerate(value):
        if not isinstance(key, str) or not PROJECT_KEY.fullmatch(key):
            raise ValueError(f"{path}[{index}]: {key!r} is not a Jira project key (capital "
                             "letters, digits, _; e.g. SUP)")
    return tuple(value)


def _jql(value: Any, path: str) -> str:
    if not isinstance(value, str) or "order by" in value.lower():
        raise ValueError(f"{path}: expected a JQL condition without ORDER BY (the connector "
                         "orders by updated itself)")
    return value


def _page_size(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5000:
        raise ValueError(f"{path}: expected a whole number from 1 to 5000")
    return value


def _names_table(what: str) -> Table:
    return Table(values=Text(expected=f"a {what} name"), expected=f"a mapping of Jira names "
                 f"to {what} names, e.g. {{Acme Corp: gold}}")


_LABEL_PREFIX = Text(expected="a label prefix without spaces", pattern=r"\S+")
_FIELD = Text(expected="a custom field id, e.g. customfield_10010",
              pattern=r"customfield_[0-9]+")
_MAP = Table(values=Text(), expected="a mapping of Jira names to sla-sync values, e.g. "
             "{Highest: urgent}", whole=True)

#: Every `connector:` key of `type: jsm` (docs/connectors/jsm.md's table is tested against
#: it).
SCHEMA = Schema("jsm", (
    url_setting("the site's address, https://<site>.atlassian.net"),
    Setting("email", Text(expected="an email address", pattern=r"[^@\s]+@[^@\s]+"),
            "the email address of the account the API token belongs to", required=True,
            missing="the email address of the Atlassian account that owns the API token is "
                    "required"),
    Setting("token", Text(strip=True), "the Atlassian API token", required=True, secret=True,
            missing="the Atlassian API token is required (e.g. token: ${JSM_API_TOKEN})"),
    Setting("projects", Custom(_projects), "the keys of the service projects to read",
            required=True, missing="expected the keys of the service projects to read, e.g. "
                                   "[SUP]"),
    Setting("jql", Custom(_jql), "a JQL condition ANDed to the read", default=""),
    Setting("start_time", Instant(), "where the first run starts"),
    Setting("agents", Table(keys=Text(expected="an account id"),
                            values=Text(expected="a name"),
                            expected="a mapping of Atlassian account ids to names, e.g. "
                                     "{5b10a2844c20165700ede21g: alice}",
                            unique="the name {value!r} is given twice (writes need one "
                                   "account per name)"),
            "account id -> the name rules use", default={}),
    Setting("priority_map", _MAP, "Jira priority name -> sla-sync priority", default={}),
    Setting("status_map", _MAP, "Jira status name -> sla-sync status", default={}),
    Setting("tier", Block((
        Setting("label_prefix", _LABEL_PREFIX, "labels that hold the tier"),
        Setting("request_type", _names_table("tier"), "request type name -> tier"),
        Setting("organization", _names_table("tier"), "organisation name -> tier"),
        Setting("default", Text(expected="a tier name"), "the tier otherwise",
                default="standard"))), "where the tier comes from"),
    Setting("channel", Block((
        Setting("request_type", _names_table("channel"), "request type name -> channel"),
        Setting("organization", _names_table("channel"), "organisation name -> channel"),
        Setting("default", Text(expected="a channel name"), "the channel otherwise",
                default="other"))), "where the channel comes from"),
    Setting("escalation", Block((
        Setting("label_prefix", _LABEL_PREFIX, "labels that hold the escalation level",
                default="sla_escalation_"),)), "where the escalation level lives"),
    Setting("request_type_field", _FIELD, "the site's Request Type field",
            default="customfield_10010"),
    Setting("organization_field", _FIELD, "the site's Organizations field",
            default="customfield_10002"),
    Setting("custom_fields", Table(Text("a custom field name"), _FIELD,
                                   "a mapping of custom field names to Jira field ids, e.g. "
                                   "{sla_due: customfield_10050}",
                                   unique="field {value!r} is mapped twice"),
            "set_field's custom.NAME to Jira text fields (read and written)", default={}),
    Setting("page_size", Custom(_page_size), "requests per search page", default=PAGE_SIZE),
    *HTTP,
))
#: Refusals of one request's write: Jira answers 400 for a value it will not take, 404 for
#: an issue gone or not visible, 409 for an edit that collided with another.
ERRORS = ErrorMap("jsm", noun="request", detail=lambda response: _detail(response))


def _cursor(mark: Watermark[datetime]) -> str:
    return json.dumps({"v": 1, **mark.to_json("since", "ids", datetime.isoformat)},
                      separators=(",", ":"))


def _read_cursor(cursor: str) -> Watermark[datetime]:
    def read(data: Any) -> Watermark[datetime]:
        if data.get("v") != 1:
            raise ValueError("unknown format")
        return Watermark.from_json(data, "since", "ids",
                                   lambda raw: parse_instant(raw, "since"))

    return decode_cursor(cursor, read, f"jsm: the cursor in the state file "
                                       f"({cursor[:80]!r}) is not one this connector wrote")



@dataclass(frozen=True)
class Source:
    """Where the tier or channel comes from: labels with a prefix (`label_prefix`), or the
    request's type or customer organisation through a table of names (`request_type`,
    `organization`)."""

    kind: str
    prefix: str = ""
    table: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclass
class Words:
    """Jira's values in the Record's words, and back."""

    priority: ValueMap
    status: ValueMap  # by status name; an unnamed status is read from its category
    agents: NameMap  # accountId -> name
    tier: Source
    tier_default: str
    channel: Source | None
    channel_default: str
    escalation_prefix: str
    request_type_field: str
    organization_field: str
    fields: FieldMap = dataclasses.field(default_factory=lambda: FieldMap("jsm"))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Words:
        """From SCHEMA.check's values; ValueError for the rules a schema does not state."""
        return cls(
            priority=ValueMap("priority", PRIORITY_NAMES, "normal").extended(
                values["priority_map"]),
            status=ValueMap("status", STATUS_NAMES, "open").extended(values["status_map"]),
            agents=NameMap("agents", "account", dict(values["agents"]), vendor="Jira"),
            tier=_source(values["tier"], "tier") or Source("label_prefix", "tier_"),
            tier_default=(values["tier"] or {}).get("default") or "standard",
            channel=_source(values["channel"], "channel"),
            channel_default=(values["channel"] or {}).get("default") or "other",
            escalation_prefix=(values["escalation"] or {}).get("label_prefix")
            or "sla_escalation_",
            request_type_field=values["request_type_field"],
            organization_field=values["organization_field"],
            fields=FieldMap("jsm", values.get("custom_fields") or {}))

    def consumes(self, label: str) -> bool:
        """Labels that become a Record field (tier, escalation level) rather than a tag."""
        return (self.tier.kind == "label_prefix" and label.startswith(self.tier.prefix)) or \
            self.level_of_label(label) is not None

    def level_of_label(self, label: str) -> int | None:
        rest = label[len(self.escalation_prefix):] \
            if label.startswith(self.escalation_prefix) else ""
        return int(rest) if rest.isdigit() else None

    def named(self, source: Source, labels: list[str], fields: Mapping[str, Any],
              notices: NoticeSink, default: str, what: str) -> str:
        if source.kind == "label_prefix":
            return next((label[len(source.prefix):] for label in labels
                         if label.startswith(source.prefix)), default)
        names = _request_type(fields.get(self.request_type_field)) \
            if source.kind == "request_type" else \
            _organizations(fields.get(self.organization_field))
        for name in names:
            if name in source.table:
                return source.table[name]
        if names:
            notices.append(f"{source.kind.replace('_', ' ')} {names[0]!r} is not in "
                           f"connector.{what}.{source.kind}: read as {default!r}")
        return default

    def escalation_labels(self, level: int) -> tuple[list[str], list[str]]:
        """(labels to add, labels to remove) that set the escalation level; levels only go up
        (the planner never lowers one), so the lower labels are the ones there can be."""
        prefix = self.escalation_prefix
        return ([f"{prefix}{level}"] if level else [],
                [f"{prefix}{n}" for n in range(1, level)])


class JSM:
    def __init__(self, client: HttpClient, projects: tuple[str, ...], *,
                 words: Words | None = None, jql: str = "", start_time: datetime | None = None,
                 page_size: int = PAGE_SIZE,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.client = client
        self.projects = projects
        self.words = words or Words.from_values({s.key: s.default for s in SCHEMA.settings})
        self.jql = jql
        self.start_time = start_time
        self.page_size = page_size
        self.now = now
        # One edit request per issue: Jira's bulk edit sets the same values on every issue
        # it is given, where each record's change here has values of its own.
        self.capabilities = Capabilities(bulk_writes=False, batch_size=1, safe_update=False,
                                         tags=True, notes=True, leads=False)

    @classmethod
    def from_settings(cls, settings: dict[str, Any], base_dir: Path) -> JSM:
        values = SCHEMA.check(settings)
        client = client_from_settings(settings, "jsm",
                                      auth=HTTPBasicAuth(values["email"], values["token"]))
        return cls(client, values["projects"], words=Words.from_values(values),
                   jql=values["jql"], start_time=values["start_time"],
                   page_size=values["page_size"])

    @property
    def identity(self) -> str:
        return f"jsm:{self.client.base_url.rstrip('/')}:{','.join(sorted(self.projects))}"

    @property
    def _fields(self) -> list[str]:
        return ["summary", "status", "priority", "assignee", "reporter", "created", "updated",
                "resolutiondate", "labels", "comment", "project", "timespent",
                self.words.request_type_field, self.words.organization_field,
                *self.words.fields.fields.values()]

    # -- reading ---------------------------------------------------------------------------

    def fetch(self, cursor: str | None) -> Iterator[Page]:
        window = _read_cursor(cursor) if cursor else \
            Watermark(self.start_time or self.now() - FIRST_READ)
        notices = Notices()  # each unmapped value told once per fetch, in every run
        zone = self._zone(notices)
        categories = self._categories()
        since = window.since or self.now() - FIRST_READ
        body = {"jql": self._query(since, zone), "fields": self._fields,
                "expand": "changelog", "maxResults": self.page_size}
        mark = window
        position = 0

        def read(token: str) -> tuple[Any, requests.Response]:
            page = {**body, **({"nextPageToken": token} if token else {})}
            response = self.client.request("POST", SEARCH, json=page, write=False)
            return _body(response, "POST", SEARCH, "issues"), response

        def after(page: Any, response: requests.Response) -> str | None:
            token = page.get("nextPageToken")
            return None if page.get("isLast") is True or not isinstance(token, str) \
                or not token else token

        for page in follow("", after, read, f"jsm: POST {SEARCH}"):
            out = Page(records=[], cursor=None)
            for raw in page["issues"]:
                try:
                    record = self._record(raw, categories, notices, position)
                except RecordError as exc:
                    out.problems.append(exc)
                else:
                    if not window.covers(record.id, record.updated_at):
                        out.records.append(record)
                        mark = mark.after(record.id, record.updated_at)
                position += 1
            out.cursor = _cursor(mark)
            out.notices = notices.take()
            yield out

    def _query(self, since: datetime, zone: ZoneInfo) -> str:
        """The JQL of a read from `since`: Jira reads a date in the time zone of the API
        user's profile, to the minute, so `since` is given as that wall time, rounded down;
        a wall time that occurs twice (a clock set back) is given an hour earlier."""
        local = since.astimezone(zone)
        if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
            local = (since - timedelta(hours=1)).astimezone(zone)
        projects = ", ".join(f'"{key}"' for key in self.projects)
        extra = f"({self.jql}) AND " if self.jql.strip() else ""
        return (f'{extra}project in ({projects}) AND updated >= '
                f'"{local:%Y-%m-%d %H:%M}" ORDER BY updated ASC, key ASC')

    def _zone(self, notices: NoticeSink) -> ZoneInfo:
        me = _body(self.client.get(MYSELF), "GET", MYSELF, "accountId", str)
        name = me.get("timeZone")
        try:
            return ZoneInfo(name) if isinstance(name, str) and name else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError):
            notices.append(f"the API user's time zone {name!r} is not known here: JQL dates "
                           "are read an extra day back")
            return ZoneInfo("Etc/GMT+14")  # the westmost offset: never later than meant

    def _categories(self) -> dict[str, str]:
        """Status id -> status category key, for statuses the changelog names by id."""
        response = self.client.get(STATUSES)
        statuses = _decode(response, "GET", STATUSES)
        if not isinstance(statuses, list):
            raise ConnectorError(f"jsm: GET {STATUSES}: unexpected response (not a list)")
        categories = {}
        for status in statuses:
            if isinstance(status, Mapping) and isinstance(status.get("id"), str):
                category = status.get("statusCategory")
                if isinstance(category, Mapping) and isinstance(category.get("key"), str):
                    categories[status["id"]] = category["key"]
        return categories

    def get(self, record_id: str) -> Record | None:
        return self._show(record_id, None, notes=False)

    def read_back(self, record_id: str, since: datetime | None = None) -> Record | None:
        """The issue itself (never the search, whose index may lag), with its internal
        comments since `since` as notes, read through the service desk API."""
        return self._show(record_id, since, notes=True)

    def _show(self, record_id: str, since: datetime | None, notes: bool) -> Record | None:
        if not KEY.fullmatch(record_id):
            return None
        path = ISSUE.format(key=record_id)
        response = self.client.request("GET", path, ok=(200, 404), record_id=record_id,
                                       params={"fields": ",".join(self._fields),
                                               "expand": "changelog"})
        if response.status_code == 404:
            return None
        raw = _decode(response, "GET", path)
        notices: list[str] = []
        try:
            record = self._record(raw, self._categories(), notices, None)
        except RecordError as exc:
            raise ConnectorError(f"jsm: request {record_id}: {exc.reason}",
                                 record_id=record_id) from None
        if not notes:
            return record
        return dataclasses.replace(record, notes=tuple(
            note for note in self._internal_comments(record_id)
            if since is None or note.at >= since))

    def _internal_comments(self, key: str) -> list[Note]:
        """A request's internal comments, as the service desk API gives them (`start` and
        `limit` paging, `isLastPage`)."""
        path = REQUEST_COMMENTS.format(key=key)
        notes: list[Note] = []

        def read(token: str) -> tuple[Any, requests.Response]:
            response = self.client.get(path, record_id=key, params={
                "public": "false", "internal": "true", "start": int(token),
                "limit": SUB_PAGE})
            return _body(response, "GET", path, "values"), response

        def after(body: Any, response: requests.Response) -> str | None:
            size = body.get("size")
            if body.get("isLastPage") is not False or not _whole(size) or size <= 0:
                return None
            start = body.get("start")
            return str((start if _whole(start) else 0) + size)

        for body in follow("0", after, read, f"jsm: comments of {key}"):
            for comment in body["values"]:
                note = _note(comment)
                if note is not None:
                    notes.append(note)
        notes.sort(key=lambda n: n.at)
        return notes

    def _record(self, raw: Any, categories: Mapping[str, str], notices: NoticeSink,
                position: int | None) -> Record:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("fields"), Mapping):
            raise RecordError("is not an issue with fields", position=position)
        key = raw.get("key")
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise RecordError(f"has no issue key (key: {key!r})", position=position)
        fields = raw["fields"]
        words = self.words
        try:
            created_at = parse_instant(fields.get("created"), "created")
            updated_at = parse_instant(fields.get("updated"), "updated")
            status = fields.get("status")
            if not isinstance(status, Mapping) or not isinstance(status.get("name"), str):
                raise ValueError(f"status: expected a status with a name, got {status!r}")
            category = _key_of(status.get("statusCategory"))
            labels = fields.get("labels") or []
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise ValueError("labels: expected a list of strings")
            priority = _name_of(fields.get("priority"), "priority")
            assignee = _account(fields.get("assignee"), "assignee")
            reporter = _account(fields.get("reporter"), "reporter")
            project = _key_of(fields.get("project")) or key.split("-")[0]
            resolved = fields.get("resolutiondate")
            solved_at = parse_instant(resolved, "resolutiondate") \
                if resolved and category == "done" else None
            histories = self._whole(raw.get("changelog"), "histories",
                                    CHANGELOG.format(key=key), "values", key)
            history = self._history(histories, categories, notices)
            comments = self._whole(fields.get("comment"), "comments", COMMENTS.format(key=key),
                                   "comments", key)
            first_response = _first_response(comments, reporter)
            messages = _conversation(created_at, comments, reporter)
            owners = _owners(histories, created_at, project, assignee,
                             lambda account: words.agents.read(account, notices))
            worked = fields.get("timespent")
            if worked is not None and (isinstance(worked, bool) or not isinstance(worked, int)
                                       or not 0 <= worked <= MAX_WORKED):
                notices.append(f"request {key}: timespent {worked!r} is not seconds: its "
                               "worked time is left out")
                worked = None
        except ValueError as exc:
            raise RecordError(str(exc), record_id=key, position=position) from None
        custom = {"jsm_status": status["name"], "status_category": category,
                  "issue_id": raw.get("id") if isinstance(raw.get("id"), str) else None,
                  "reporter": reporter,
                  "request_type": next(iter(_request_type(
                      fields.get(words.request_type_field))), None),
                  "organizations": _organizations(fields.get(words.organization_field))
                  or None,
                  **words.fields.read(lambda field_id: _text_value(fields.get(field_id)))}
        summary = fields.get("summary")
        return Record(
            id=key, kind="ticket", created_at=created_at, updated_at=updated_at,
            subject=summary if isinstance(summary, str) else "",
            status=self._status(status["name"], category, notices),
            priority=words.priority.read(priority, notices),
            tier=words.named(words.tier, labels, fields, notices, words.tier_default, "tier"),
            channel=words.channel_default if words.channel is None else words.named(
                words.channel, labels, fields, notices, words.channel_default, "channel"),
            group=project,
            assignee=words.agents.read(assignee, notices),
            tags=tuple(label for label in labels if not words.consumes(label)),
            first_response_at=first_response, solved_at=solved_at,
            status_history=tuple(history),
            escalation_level=max((n for n in map(words.level_of_label, labels)
                                  if n is not None), default=0),
            custom={k: v for k, v in custom.items() if v is not None},
            url=f"{self.client.base_url.rstrip('/')}/browse/{key}",
            worked_seconds=worked, messages=messages, assignment_history=owners)

    def _status(self, name: str, category: str | None, notices: NoticeSink) -> str:
        """A status by its name in the map, else by its category (new, indeterminate,
        done), else the map's fallback with a notice."""
        table = self.words.status.table
        if name in table:
            return table[name]
        if category in CATEGORIES:
            return CATEGORIES[category]
        return self.words.status.read(name, notices)

    def _history(self, histories: list[Any], categories: Mapping[str, str],
                 notices: NoticeSink) -> list[StatusChange]:
        """The status changes of the changelog (read whole: `_whole`), oldest first."""
        changes = []
        for entry in histories:
            if not isinstance(entry, Mapping):
                continue
            for item in entry.get("items") or []:
                if isinstance(item, Mapping) and item.get("fieldId", item.get("field")) \
                        == "status" and isinstance(item.get("toString"), str):
                    at = parse_instant(entry.get("created"), "changelog.created")
                    changes.append(StatusChange(at, self._status(
                        item["toString"], categories.get(str(item.get("to"))), notices)))
        changes.sort(key=lambda change: change.at)
        return changes

    def _whole(self, holder: Any, inline: str, path: str, key: str, record_id: str,
               ) -> list[Any]:
        """The items a search result holds under `inline` (the changelog's histories, the
        comments), or all of them read from `path` when it holds fewer than its `total`."""
        items = holder.get(inline) if isinstance(holder, Mapping) else None
        items = items if isinstance(items, list) else []
        total = holder.get("total") if isinstance(holder, Mapping) else None
        if isinstance(total, int) and total > len(items):
            return self._paged(path, key, record_id)
        return items

    def _paged(self, path: str, key: str, record_id: str) -> list[Any]:
        """Every item of a platform listing paged by `startAt`/`maxResults` (`total`, or
        `isLast` where the listing says it)."""
        items: list[Any] = []

        def read(token: str) -> tuple[Any, requests.Response]:
            response = self.client.get(path, record_id=record_id,
                                       params={"startAt": int(token), "maxResults": SUB_PAGE})
            return _body(response, "GET", path, key), response

        def after(body: Any, response: requests.Response) -> str | None:
            got = len(body[key])
            start = body.get("startAt") if _whole(body.get("startAt")) else 0
            total = body.get("total")
            done = body.get("isLast") is True or got == 0 or (
                _whole(total) and start + got >= total)
            return None if done else str(start + got)

        for body in follow("0", after, read, f"jsm: {path}"):
            items += body[key]
        return items

    # -- what the site has (sla-sync check) -----------------------------------------------

    def catalog(self) -> Catalog:
        """The site's priorities and statuses, the projects' assignable agents, its fields,
        and what the API user may do in each project: one request each for the projects,
        the statuses, the fields and each project's permissions, one per 100 priorities
        and one per 100 agents. Only reads."""
        sent = self.client.requests_sent
        words = self.words
        catalog = Catalog("Jira Service Management", group_word="project")
        found = _body(self.client.get(PROJECTS, params={"keys": list(self.projects)}),
                      "GET", PROJECTS, "values")["values"]
        have = {p.get("key"): p for p in found if isinstance(p, Mapping)}
        for index, key in enumerate(self.projects):
            if key not in have:
                catalog.problems.append((f"connector.projects[{index}]",
                                         f"no project {key} the API user can see"))
            elif have[key].get("projectTypeKey") not in (None, "service_desk"):
                catalog.problems.append((f"connector.projects[{index}]", f"project {key} is "
                                         "not a service project: it has no requests"))
        catalog.groups = set(self.projects)
        priorities = {p.get("name") for p in self._listed(PRIORITIES, {})}
        catalog.priorities = {words.priority.table[n] for n in priorities
                              if n in words.priority.table}
        for name in sorted(n for n in priorities if isinstance(n, str)
                           and n not in words.priority.table):
            catalog.hints[("priority", name)] = (f"Jira's priority {name!r} is not mapped: "
                                                 "name it in connector.priority_map")
        statuses = _decode(self.client.get(STATUSES), "GET", STATUSES)
        catalog.statuses = {self._status(s["name"], _key_of(s.get("statusCategory")), [])
                            for s in statuses if isinstance(s, Mapping)
                            and isinstance(s.get("name"), str)} \
            if isinstance(statuses, list) else None
        fields = _decode(self.client.get(FIELDS), "GET", FIELDS)
        field_ids = {f.get("id") for f in fields if isinstance(f, Mapping)} \
            if isinstance(fields, list) else set()
        for setting, source in (("tier", words.tier), ("channel", words.channel)):
            if source is None or source.kind == "label_prefix":
                continue
            field = words.request_type_field if source.kind == "request_type" \
                else words.organization_field
            if field not in field_ids:
                name = "request_type_field" if source.kind == "request_type" \
                    else "organization_field"
                catalog.problems.append((f"connector.{name}", f"no field {field} on the site "
                                         f"(connector.{setting} reads it)"))
        catalog.fields = {"jsm_status", "status_category", "issue_id", "reporter",
                          "request_type", "organizations", *words.fields.fields}
        for name, field_id in words.fields.fields.items():
            if field_id not in field_ids:
                catalog.problems.append((f"connector.custom_fields.{name}",
                                         f"no field {field_id} on the site"))
        agents = {u["accountId"]: str(u.get("displayName")) for u in self._listed(
            ASSIGNABLE, {"projectKeys": ",".join(self.projects)}, paged=False)
            if isinstance(u.get("accountId"), str)}
        names = words.agents.names
        for account, name in agents.items():
            if account not in names:
                catalog.hints[("agent", name)] = (f"Jira's agent {name!r} has account id "
                                                  f"{account}: name it in connector.agents")
        for account in names:
            if account not in agents:
                catalog.problems.append((f"connector.agents.{account}", "no agent with that "
                                         "account id can be assigned in the projects"))
        catalog.agents = {names.get(a, a) for a in agents}
        self._permissions(catalog)
        catalog.requests = self.client.requests_sent - sent
        return catalog

    def _listed(self, path: str, params: Mapping[str, Any], paged: bool = True,
                ) -> list[Mapping[str, Any]]:
        """Every item of a listing asked for 100 at a time from `startAt`, until a short
        page: a `values` page, or a plain list."""
        def read(page: int) -> list[Any]:
            response = self.client.get(path, params={**params, "startAt": page * SUB_PAGE,
                                                     "maxResults": SUB_PAGE})
            body = _body(response, "GET", path, "values")["values"] if paged \
                else _decode(response, "GET", path)
            if not isinstance(body, list):
                raise ConnectorError(f"jsm: GET {path}: unexpected response (not a list)")
            return body

        return [item for items in numbered(read, SUB_PAGE, f"jsm: GET {path}", first=0)
                for item in items if isinstance(item, Mapping)]

    def directory(self) -> dict[str, dict[str, str]]:
        """The agents who can be assigned in the projects, by the name rules use (the
        `agents` setting's, else the account id): email (where the user's privacy settings
        show it), display name and time zone, where alerts to `{assignee}` go. One request
        per 100 agents (`user/assignable/multiProjectSearch`)."""
        found: dict[str, dict[str, str]] = {}
        for user in self._listed(ASSIGNABLE, {"projectKeys": ",".join(self.projects)},
                                 paged=False):
            account = user.get("accountId")
            if not isinstance(account, str) or user.get("active") is False:
                continue
            found[self.words.agents.name(account)] = {
                key: user[field] for key, field in (
                    ("email", "emailAddress"), ("name", "displayName"), ("timezone", "timeZone"))
                if isinstance(user.get(field), str) and user[field]}
        return found

    def _permissions(self, catalog: Catalog) -> None:
        needed = {"EDIT_ISSUES": ("fields", "edit issues (priority, labels)"),
                  "ASSIGN_ISSUES": ("assignee", "assign issues"),
                  "ADD_COMMENTS": ("notes", "add comments")}
        for key in self.projects:
            body = _body(self.client.get(PERMISSIONS, params={
                "projectKey": key, "permissions": ",".join([*needed, "BROWSE_PROJECTS"])}),
                "GET", PERMISSIONS, "permissions", dict)["permissions"]
            browse = body.get("BROWSE_PROJECTS")
            if isinstance(browse, Mapping) and browse.get("havePermission") is False:
                catalog.problems.append(("connector.email", f"the API user cannot browse "
                                         f"project {key}: it reads no requests there"))
            for permission, (kind, what) in needed.items():
                entry = body.get(permission)
                if isinstance(entry, Mapping) and entry.get("havePermission") is False:
                    why = f"the API user may not {what} in project {key}"
                    catalog.denied.setdefault(kind, why)
                    if kind == "fields":
                        catalog.denied.setdefault("tags", why)
                        catalog.denied.setdefault("escalation", why)

    # -- writing ---------------------------------------------------------------------------

    def apply(self, change: ChangeSet, now: datetime) -> Record | None:
        """An issue edit (priority, assignee, labels), then one internal request comment
        with the change's notes. The edit is idempotent (values set, labels added or
        removed) and is sent again after a lost answer; the comment is not. Jira has no
        version check on an edit, so a change that sets a field re-reads the issue's
        `updated` first and refuses when it moved. Returns None: the loop's projection of
        the change is the record as written."""
        key = change.record_id
        if not KEY.fullmatch(key):
            raise ConnectorError(f"jsm: {key!r} is not a Jira issue key", record_id=key)
        edit = self._edit(change)
        path = ISSUE.format(key=key)
        if change.fields and change.base_updated_at is not None:
            self._unchanged(key, change.base_updated_at)
        if edit:
            response = self.client.request("PUT", path, json=edit, ok=ERRORS.ok(204),
                                           record_id=key, idempotent=True)
            ERRORS.check(response, key, "the edit")
        if change.notes:
            comment = REQUEST_COMMENTS.format(key=key)
            response = self.client.request("POST", comment, ok=ERRORS.ok(201), record_id=key,
                                           json={"body": "\n\n".join(change.notes),
                                                 "public": False})
            ERRORS.check(response, key, "the comment")
        return None

    def apply_many(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        return apply_each(self, changes, now)

    def _unchanged(self, key: str, base: datetime) -> None:
        path = ISSUE.format(key=key)
        response = self.client.request("GET", path, params={"fields": "updated"},
                                       ok=(200, 404), record_id=key)
        if response.status_code == 404:
            raise RecordGone(f"jsm: request {key} no longer exists", record_id=key)
        raw = _decode(response, "GET", path)
        fields = raw.get("fields") if isinstance(raw, Mapping) else None
        try:
            updated = parse_instant(fields.get("updated") if isinstance(fields, Mapping)
                                    else None, "updated")
        except ValueError as exc:
            raise ConnectorError(f"jsm: request {key}: {exc}", record_id=key) from None
        if updated != base:
            raise ConflictError(f"jsm: request {key} changed since it was read (updated "
                                f"{updated:%Y-%m-%d %H:%M:%S}, planned on "
                                f"{base.astimezone(UTC):%Y-%m-%d %H:%M:%S}); nothing was "
                                "written", record_id=key)

    def _edit(self, change: ChangeSet) -> dict[str, Any]:
        """The issue edit of one change: `fields` for priority and assignee, `update` for
        the labels (add and remove operations keep every label a person set)."""
        key, words = change.record_id, self.words
        fields: dict[str, Any] = {}
        for name, value in change.fields.items():
            if name == "priority":
                try:
                    fields["priority"] = {"name": words.priority.write(value)}
                except ValueError as exc:
                    raise ConnectorError(f"jsm: request {key}: {exc}", record_id=key) from None
            elif name == "assignee":
                try:
                    account = words.agents.write(value)
                except ValueError as exc:
                    raise ConnectorError(f"jsm: request {key}: {exc}", record_id=key) from None
                fields["assignee"] = None if account is None else {"accountId": str(account)}
            elif custom_name(name):  # set_field: a text custom field, by its id
                try:
                    fields[words.fields.theirs(custom_name(name))] = value
                except ValueError as exc:
                    raise ConnectorError(f"jsm: request {key}: {exc}", record_id=key) from None
            else:
                raise ConnectorError(
                    f"jsm: request {key}: the jsm connector does not write {name} (a "
                    + ("status moves through a workflow transition" if name == "status"
                       else "project is not a group a request moves between") + ")",
                    record_id=key)
        add, remove = list(change.add_tags), list(change.remove_tags)
        if change.escalation_level is not None:
            more, fewer = words.escalation_labels(change.escalation_level)
            add += [label for label in more if label not in add]
            remove += [label for label in fewer if label not in remove]
        for label in add:
            if not label or any(c.isspace() for c in label):
                raise ConnectorError(f"jsm: request {key}: a Jira label cannot hold spaces "
                                     f"({label!r})", record_id=key)
        edit: dict[str, Any] = {}
        if fields:
            edit["fields"] = fields
        if add or remove:
            edit["update"] = {"labels": [{"add": label} for label in add]
                              + [{"remove": label} for label in remove]}
        return edit


# -- helpers -----------------------------------------------------------------------------------

def _author(comment: Mapping[str, Any]) -> Mapping[str, Any]:
    author = comment.get("author")
    return author if isinstance(author, Mapping) else {}


def _first_response(comments: list[Any], reporter: str | None) -> datetime | None:
    """The first public comment (`jsdPublic`) by someone other than the reporter."""
    answered = []
    for item in comments:
        if not isinstance(item, Mapping) or item.get("jsdPublic") is not True:
            continue
        account = _author(item).get("accountId")
        if account is not None and account != reporter:
            answered.append(parse_instant(item.get("created"), "comment.created"))
    return min(answered, default=None)


def _conversation(created_at: datetime, comments: list[Any], reporter: str | None,
                  ) -> tuple[Message, ...]:
    """The request's conversation: its creation (the reporter's description) and every
    comment, oldest first. The reporter and portal-only customers (`accountType`
    `customer`) are customers; anyone else (an Atlassian account) is an agent, as for the
    first response; an internal comment (`jsdPublic` false) is an agent's, never public."""
    messages = [Message(created_at, "customer", True)]
    for item in comments:
        if not isinstance(item, Mapping):
            continue
        author = _author(item)
        public = item.get("jsdPublic") is True
        customer = public and (author.get("accountId") == reporter
                               or author.get("accountType") == "customer")
        messages.append(Message(parse_instant(item.get("created"), "comment.created"),
                                "customer" if customer else "agent", public))
    messages.sort(key=lambda m: m.at)
    return tuple(messages)


def _owners(histories: list[Any], created_at: datetime, project: str, assignee: str | None,
            name: Callable[[str | None], str]) -> tuple[Assignment, ...] | None:
    """The assignee from creation on, in the request's project (its group): the first
    assignee change's `from` is the assignee at creation (Jira's changelog has every change
    of the issue's life, and creation is none). None when the issue moved between projects
    (its group then changed, under another key)."""
    changes: list[tuple[datetime, str | None, str | None]] = []
    for entry in histories:
        if not isinstance(entry, Mapping):
            continue
        for item in entry.get("items") or []:
            if not isinstance(item, Mapping):
                continue
            field = item.get("fieldId", item.get("field"))
            if field == "project":
                return None
            if field == "assignee":
                changes.append((parse_instant(entry.get("created"), "changelog.created"),
                                _text_or_none(item.get("from")), _text_or_none(item.get("to"))))
    changes.sort(key=lambda change: change[0])
    first = changes[0][1] if changes else assignee
    history = [Assignment(created_at, project, name(first))]
    history += [Assignment(at, project, name(to)) for at, _, to in changes]
    return tuple(history)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _text_value(value: Any) -> Any:
    """A custom field's value as set_field compares it: text as it is, a select option's
    `value`, None for nothing."""
    if isinstance(value, Mapping):
        value = value.get("value")
    return value if isinstance(value, str | int | float) and value != "" else None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _decode(response: requests.Response, method: str, path: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ConnectorError(f"jsm: {method} {path}: the response is not JSON") from None


def _body(response: requests.Response, method: str, path: str, key: str,
          kind: type = list) -> dict[str, Any]:
    """The decoded body, which must hold `key` (a list, or `kind`)."""
    body = _decode(response, method, path)
    if not isinstance(body, dict) or not isinstance(body.get(key), kind):
        raise ConnectorError(f"jsm: {method} {path}: unexpected response (no {key!r})")
    return body


def _detail(response: requests.Response) -> str:
    """What Jira's refusal says: its errorMessages and per-field errors, shortened."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    parts: list[str] = []
    if isinstance(body, Mapping):
        messages = body.get("errorMessages")
        parts += [str(m) for m in messages] if isinstance(messages, list) else []
        errors = body.get("errors")
        if isinstance(errors, Mapping):
            parts += [f"{field}: {text}" for field, text in errors.items()]
        if isinstance(body.get("errorMessage"), str):  # the service desk API's form
            parts.append(body["errorMessage"])
    return "; ".join(parts)[:300] or f"HTTP {response.status_code}"


def _key_of(value: Any) -> str | None:
    return value.get("key") if isinstance(value, Mapping) and isinstance(
        value.get("key"), str) else None


def _name_of(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        return value["name"]
    raise ValueError(f"{what}: expected an object with a name, got {value!r}")


def _account(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping) and isinstance(value.get("accountId"), str):
        return value["accountId"]
    raise ValueError(f"{what}: expected a user with an accountId, got {value!r}")


def _request_type(value: Any) -> list[str]:
    """The name of a request's type, from the Customer Request Type field."""
    kind = value.get("requestType") if isinstance(value, Mapping) else None
    name = kind.get("name") if isinstance(kind, Mapping) else None
    return [name] if isinstance(name, str) and name else []


def _organizations(value: Any) -> list[str]:
    """The names of a request's customer organisations, from the Organizations field."""
    if not isinstance(value, list):
        return []
    return [o["name"] for o in value if isinstance(o, Mapping) and isinstance(o.get("name"), str)]


def _note(comment: Any) -> Note | None:
    """A service desk comment as a note: its plain-text body at its creation instant."""
    if not isinstance(comment, Mapping) or not isinstance(comment.get("body"), str):
        return None
    created = comment.get("created")
    stamp = created.get("iso8601") if isinstance(created, Mapping) else created
    try:
        return Note(parse_instant(stamp, "created"), comment["body"])
    except ValueError:
        return None


def _source(value: Mapping[str, Any] | None, key: str) -> Source | None:
    """The one source a `tier` or `channel` block names (None: none)."""
    given = [kind for kind in ("label_prefix", "request_type", "organization")
             if value and value.get(kind) is not None]
    if len(given) > 1:
        raise ValueError(f"connector.{key}: give one of {', '.join(given)}, not several")
    if not given or value is None:
        return None
    if given[0] == "label_prefix":
        return Source("label_prefix", prefix=value["label_prefix"])
    return Source(given[0], table=dict(value[given[0]]))
