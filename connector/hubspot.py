"""HubSpot (CRM v3): tickets and leads (or contacts where the leads object is not enabled)
read through the CRM search API, written with batch updates after a batch read that guards
against concurrent edits; notes become note objects on the record's timeline. Where the
settings ask for it, a ticket's conversation and owner history come from its properties'
history (`propertiesWithHistory`).

The settings, the field mapping and the limits are described in docs/connectors/hubspot.md.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from sla_sync.connector.base import (
    Capabilities,
    Catalog,
    ConflictError,
    ConnectorError,
    Page,
    RecordGone,
    WriteResult,
)
from sla_sync.connector.errors import ErrorMap
from sla_sync.connector.http import (
    HeaderToken,
    HttpClient,
    Tokens,
    client_from_settings,
    decode_json,
    follow,
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
    custom_name,
    format_instant,
    merge_tags,
    note_html,
    note_text,
    parse_instant,
)
from sla_sync.connector.settings import (
    HTTP,
    Choice,
    Custom,
    Flag,
    Items,
    Key,
    Nullable,
    Number,
    Schema,
    Setting,
    Table,
    Text,
    url_setting,
)
from sla_sync.connector.watermark import Watermark, decode_cursor

NAME = "hubspot"
OBJECTS = ("tickets", "leads", "contacts")
KINDS = {"tickets": "ticket", "leads": "lead", "contacts": "lead"}
MODIFIED = {"tickets": "hs_lastmodifieddate", "leads": "hs_lastmodifieddate",
            "contacts": "lastmodifieddate"}
STATUS_PROPERTY = {"tickets": "hs_pipeline_stage", "leads": "hs_pipeline_stage",
                   "contacts": "hs_lead_status"}
FIRST_RESPONSE = {"tickets": ("hs_first_agent_message_sent_at", "first_agent_reply_date"),
                  "leads": ("hs_first_outreach_date",), "contacts": ("hs_first_outreach_date",)}
OWNER = "hubspot_owner_id"
#: A ticket's conversation through HubSpot's inbox, as properties whose history holds one
#: value per message: the instant of each message received from the customer, and of each
#: response sent to them ("Last message received date", "Last response date").
RECEIVED, SENT = "hs_last_message_received_at", "hs_last_message_sent_at"
#: "The maximum number of inputs supported in a batch request for property histories is 50"
#: (HubSpot's answer to a larger batch read with propertiesWithHistory).
HISTORY_BATCH = 50
#: A property written with the record's creation may carry a timestamp a little after it.
CREATION_SLACK = timedelta(seconds=1)
#: Search results per request: "The maximum number of supported objects per page is 200"
#: (https://developers.hubspot.com/docs/api-reference/latest/crm/search-the-crm, Limitations).
PAGE_SIZE = 200
BATCH_SIZE = 100  # inputs per batch read, update and create (HubSpot's batch limit)
#: Changes the sync loop hands over per apply_many: more than one request's worth, so that
#: each object's changes and all notes fill whole batches whatever order the loop plans
#: tickets and leads in (a loop batch of 100 mixed records would cost 2 reads and 2 updates).
RUN_BATCH = 1000
SEARCH_CAP = 10_000  # the search API refuses to page past this many results of one query
#: A re-anchored search leaves out the ids already read at its first millisecond with
#: `hs_object_id NOT_IN` (a documented operator taking a `values` list), so that a page of
#: 200 brings 200 new records; above this many such ids they are dropped on arrival instead
#: (a query may hold at most 3,000 characters).
EXCLUDED_IDS = 50
#: The search API allows about 5 requests per second per account, shared with every other
#: integration; 4 a second also stays far below the 100-per-10-seconds burst of private apps.
REQUESTS_PER_MINUTE = 240
#: Notes are associated with the default (unlabelled) association type, whose HUBSPOT_DEFINED
#: ids are the same in every account and read from the direction note -> object: "Note to
#: ticket 228", "Note to lead 855" (854 is lead -> note), "Note to contact 202"
#: (https://developers.hubspot.com/docs/api-reference/legacy/crm/associations/associate-records/guide,
#: "Association type ID values"). Built in, so no run asks for them.
NOTE_ASSOCIATION_TYPES = {"tickets": 228, "leads": 855, "contacts": 202}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_]+$")

DEFAULT_PRIORITIES = {"LOW": "low", "MEDIUM": "normal", "HIGH": "high", "URGENT": "urgent"}
#: The stages of the default ticket pipeline ("0").
DEFAULT_STAGES = {"1": "new", "2": "pending", "3": "open", "4": "closed"}
#: The stages of the default lead pipeline.
DEFAULT_LEAD_STAGES = {"new-stage-id": "new", "attempting-stage-id": "open",
                       "connected-stage-id": "open", "qualified-stage-id": "solved",
                       "unqualified-stage-id": "closed"}
#: The contact property hs_lead_status, for `objects: [tickets, contacts]`.
DEFAULT_LEAD_STATUSES = {"NEW": "new", "OPEN": "open", "IN_PROGRESS": "open",
                         "ATTEMPTED_TO_CONTACT": "open", "CONNECTED": "open",
                         "BAD_TIMING": "pending", "OPEN_DEAL": "solved", "UNQUALIFIED": "closed"}
DEFAULT_CHANNELS = {"EMAIL": "email", "CHAT": "chat", "PHONE": "phone", "FORM": "web"}
DEFAULT_SOURCES = {"PAID_SEARCH": "campaign", "PAID_SOCIAL": "campaign",
                   "EMAIL_MARKETING": "campaign", "OTHER_CAMPAIGNS": "campaign",
                   "ORGANIC_SEARCH": "website", "DIRECT_TRAFFIC": "website",
                   "SOCIAL_MEDIA": "social", "REFERRALS": "referral", "AI_REFERRALS": "referral",
                   "OFFLINE": "offline"}
DEFAULT_GROUPS = {"0": "support", "lead-pipeline-id": "sales"}

#: HubSpot's app, where a record's page is /contacts/PORTAL/record/OBJECT-TYPE-ID/ID.
APP_URL = "https://app.hubspot.com"
OBJECT_TYPE_IDS = {"tickets": "0-5", "leads": "0-136", "contacts": "0-1"}


def _portal(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value):
        raise ValueError(f"{path}: expected the HubSpot account (portal) id")
    return str(value)


def _optional_property(value: Any, path: str) -> str:
    return "" if value in (None, "") else _PROPERTY.read(value, path)


# YAML reads `1: new` with an integer key: stage ids are compared as text.
_MAP = Table(Key(), Text(), "a mapping of HubSpot values to sla-sync values (text)",
             whole=True)
_PROPERTY = Text("a HubSpot property's internal name (letters, digits, underscores)",
                 pattern=_PROPERTY_NAME.pattern)
SCHEMA = Schema(NAME, (
    url_setting("the API's base URL: https://api.hubapi.com"),
    Setting("token", Text(strip=True), "the private app's access token", required=True,
            secret=True, missing="the private app's access token is required (read it from "
            "the environment: token: ${HUBSPOT_TOKEN})"),
    *HTTP,
    Setting("portal", Custom(_portal), "your HubSpot account (portal) id, kept in the "
            "cursor's key", default=""),
    Setting("objects", Items(Choice(OBJECTS), "a list of distinct objects from "
                                              f"{', '.join(OBJECTS)}, e.g. [tickets, leads]"),
            "the objects read: tickets, leads or contacts (not both of those)",
            default=("tickets",)),
    *(Setting(key, _MAP, f"extra or changed {key.removesuffix('_map')} values, merged into "
              "the defaults (see below)", shown="see below")
      for key in ("priority_map", "stage_map", "lead_stage_map", "lead_status_map",
                  "channel_map", "source_map")),
    *(Setting(key, _PROPERTY, f"the property read as the {what}", default=default)
      for key, what, default in (
          ("channel_property", "channel", "source_type"),
          ("source_property", "lead source", "hs_analytics_source"),
          ("tier_property", "tier", "sla_tier"),
          ("group_property", "group", "hs_pipeline"),
          ("tags_property", "tags", "sla_tags"),
          ("escalation_property", "escalation level", "sla_escalation_level"))),
    Setting("lead_priority_property", Custom(_optional_property),
            "a lead/contact property holding a priority, if any", default=""),
    Setting("groups", Nullable(_MAP), "group property values to group names (merged into "
            "the default pipelines' with `group_property: hs_pipeline`)", shown="see below"),
    Setting("assignee_as", Choice(("email", "name")), "how owners read as assignees",
            default="email"),
    Setting("custom_fields", Table(Text("a custom field name"), _PROPERTY,
                                   "a mapping of custom field names to HubSpot properties, "
                                   "e.g. {sla_due: sla_due_at}",
                                   unique="property {value!r} is mapped twice"),
            "set_field's custom.NAME to properties (read and written)", default={}),
    Setting("search_delay_seconds", Number(above=None, least=0,
                                           expected="a number of seconds >= 0"),
            "how long a change may take to reach the search index (see \"Rate limits "
            "and reading\")", default=30.0),
    Setting("history", Flag(), "read each ticket's conversation and owner history from its "
            "properties' history (one request more per 50 tickets read)", default=False),
))
#: How HubSpot refuses one record's write (PATCH): 404 gone, 400 refused.
ERRORS = ErrorMap(NAME, noun="record", detail=lambda response: _error_text(
    _json(response, "PATCH /crm/v3/objects/{obj}/{id}", written=True)),
    conflict=frozenset(), refused=frozenset({400}))


@dataclass(frozen=True)
class Options:
    """The connector's settings other than the URL, the token and the HTTP ones."""

    objects: tuple[str, ...] = ("tickets",)
    portal: str = ""
    priority_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    stage_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_STAGES))
    lead_stage_map: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_LEAD_STAGES))
    lead_status_map: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_LEAD_STATUSES))
    channel_property: str = "source_type"
    channel_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    source_property: str = "hs_analytics_source"
    source_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SOURCES))
    tier_property: str = "sla_tier"
    group_property: str = "hs_pipeline"
    groups: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_GROUPS))
    tags_property: str = "sla_tags"
    escalation_property: str = "sla_escalation_level"
    lead_priority_property: str = ""
    assignee_as: str = "email"
    search_delay_seconds: float = 30.0
    history: bool = False
    custom_fields: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, settings: Mapping[str, Any], partial: bool = True) -> Options:
        """Options from a `connector:` mapping; ValueError naming the key."""
        v = SCHEMA.check(settings, partial=partial)
        if "leads" in v["objects"] and "contacts" in v["objects"]:
            raise ValueError("connector.objects: read leads from the leads object or from "
                             "contacts, not both (each lead would be counted twice)")
        defaults = cls()
        values: dict[str, Any] = {"objects": v["objects"], "portal": v["portal"],
                                  "assignee_as": v["assignee_as"],
                                  "search_delay_seconds": float(v["search_delay_seconds"]),
                                  "lead_priority_property": v["lead_priority_property"],
                                  "history": v["history"],
                                  "custom_fields": v["custom_fields"]}
        for key in ("priority_map", "stage_map", "lead_stage_map", "lead_status_map",
                    "channel_map", "source_map"):
            values[key] = {**getattr(defaults, key), **(v[key] or {})}
        for key in ("channel_property", "source_property", "tier_property", "group_property",
                    "tags_property", "escalation_property"):
            values[key] = v[key]
        # The default groups name the default pipelines: they mean nothing to another property.
        pipelines = values["group_property"] == "hs_pipeline"
        values["groups"] = {**(DEFAULT_GROUPS if pipelines else {}), **(v["groups"] or {})}
        return cls(**values)


class _Maps:
    """The value maps of the options."""

    def __init__(self, options: Options):
        self.priority = ValueMap("priority", options.priority_map, "normal")
        self.status = {
            "tickets": ValueMap("stage", options.stage_map, "open"),
            "leads": ValueMap("lead_stage", options.lead_stage_map, "open"),
            "contacts": ValueMap("lead_status", options.lead_status_map, "open"),
        }
        self.source = ValueMap("source", options.source_map, "other")


class _Position(Watermark[int]):
    """Where one object's read stands: its last modified time seen (epoch milliseconds) and
    the ids already read at exactly that time."""


class HubSpot:
    capabilities = Capabilities(bulk_writes=True, batch_size=RUN_BATCH, safe_update=True,
                                tags=True, notes=True, leads=True)

    def __init__(self, client: HttpClient, options: Options | None = None,
                 clock: Callable[[], float] | None = None):
        self.client = client
        self.options = options or Options()
        self.clock = clock or (lambda: time.time())
        self._maps = _Maps(self.options)
        self._owners: dict[str, dict[str, str]] | None = None

    @classmethod
    def from_settings(cls, settings: dict[str, Any], base_dir: Path) -> HubSpot:
        options = Options.parse(settings, partial=False)
        token = settings["token"].strip()
        client = client_from_settings(settings, NAME, auth=HeaderToken("Bearer", token),
                                      requests_per_minute=REQUESTS_PER_MINUTE)
        return cls(client, options)

    @property
    def identity(self) -> str:
        base = self.client.base_url.rstrip("/")
        return f"{NAME}:{base}" + (f"#{self.options.portal}" if self.options.portal else "")

    # -- reading ---------------------------------------------------------------------------

    def fetch(self, cursor: str | None) -> Iterator[Page]:
        positions = _decode_cursor(cursor)
        notices = Notices()
        self._owners = None  # owners are read again once per run, when a record has one
        # Records changed in the last seconds may not be in the search index yet; leaving
        # them to the next run keeps the cursor from passing one that appears late.
        upper = _millis_of(self.clock() - self.options.search_delay_seconds) \
            if self.options.search_delay_seconds else None
        for obj in self.options.objects:
            positions.setdefault(obj, _Position())
            for records, problems in self._search(obj, positions, upper, notices):
                yield Page(records=records, cursor=_encode_cursor(positions),
                           problems=problems, notices=notices.take())

    def _search(self, obj: str, positions: dict[str, _Position], upper: int | None,
                notices: NoticeSink) -> Iterator[tuple[list[Record], list[RecordError]]]:
        """One object's changes after `positions[obj]`, a page per request; moves it."""
        # HubSpot's search pages with an offset (`after`) into a result set that is sorted
        # by modified time and capped at 10,000 results per query. A record edited while we
        # page moves to the end of that order and shifts every later one back by one place,
        # so the next offset would skip a record for good; and offsets past 10,000 are
        # refused. So every page is a new query anchored on the last modified time seen
        # (GTE, dropping the ids already read at exactly that time): the window is
        # re-anchored long before the cap, and an edit mid-read cannot hide a record. Offsets
        # are used only inside a run of more than a page of records sharing one millisecond.
        modified = MODIFIED[obj]
        pages = Tokens(f"{NAME}: POST /crm/v3/objects/{obj}/search")
        excluded: list[str] = []
        while pages.more:
            position = positions[obj]
            if pages.token is None:  # a new query; offsets page on with the same filters
                excluded = position.sorted_ids(_id_order) \
                    if position.since is not None and len(position.ids) <= EXCLUDED_IDS \
                    else []
            body = self._post_search(obj, position.since, upper, pages.token, excluded)
            results = body.get("results")
            if not isinstance(results, list):
                raise ConnectorError(f"{NAME}: POST /crm/v3/objects/{obj}/search: the "
                                     "response has no results list")
            records: list[Record] = []
            problems: list[RecordError] = []
            histories = self._histories(obj, results)
            if any(_owner_of(raw) for raw in results) or any(
                    (h.get(OWNER) or []) for h in histories.values()):
                self._owner_table()
            mark = position
            for index, raw in enumerate(results):
                hs_id = str(raw.get("id", "")) if isinstance(raw, dict) else ""
                stamp = _millis(raw, modified)
                if stamp is not None and position.covers(hs_id, stamp):
                    continue  # read on the page before, at the edge of the window
                if stamp is not None and hs_id:
                    mark = mark.after(hs_id, stamp)
                try:
                    records.append(self._record(obj, raw, notices, index,
                                                histories.get(hs_id)))
                except RecordError as problem:
                    problems.append(problem)
            positions[obj] = mark
            yield records, problems
            next_after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if next_after and mark.since == position.since:
                # The whole page shares the anchor's millisecond: page through that run.
                if not str(next_after).isdigit() or int(next_after) + PAGE_SIZE > SEARCH_CAP:
                    raise ConnectorError(
                        f"{NAME}: {obj}: more than {SEARCH_CAP} records share the modified "
                        f"time {format_instant(_from_millis(mark.since or 0))}; the search "
                        "API cannot page past that many")
                pages.advance(str(next_after))
            elif next_after:
                pages.restart()  # a new query anchored on the new edge
            else:
                pages.advance(None)

    def _post_search(self, obj: str, since: int | None, upper: int | None,
                     after: str | None, excluded: list[str]) -> dict[str, Any]:
        modified = MODIFIED[obj]
        filters: list[dict[str, Any]] = []
        if since is not None:
            filters.append({"propertyName": modified, "operator": "GTE", "value": str(since)})
        if upper is not None:
            filters.append({"propertyName": modified, "operator": "LT", "value": str(upper)})
        if excluded:
            filters.append({"propertyName": "hs_object_id", "operator": "NOT_IN",
                            "values": excluded})
        request: dict[str, Any] = {
            "filterGroups": [{"filters": filters}] if filters else [],
            "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
            "properties": self._properties(obj),
            "limit": PAGE_SIZE,
        }
        if after is not None:
            request["after"] = after
        # A search is a read sent as POST: safe to resend.
        body = self.client.json("POST", f"/crm/v3/objects/{obj}/search", json=request,
                                write=False)
        if not isinstance(body, dict):
            raise ConnectorError(f"{NAME}: POST /crm/v3/objects/{obj}/search: expected a JSON "
                                 "object")
        return body

    def _history_properties(self, obj: str) -> list[str]:
        """The properties whose history a read asks for (none unless `history` is set)."""
        if obj != "tickets" or not self.options.history:
            return []
        return list(dict.fromkeys((RECEIVED, SENT, OWNER, self.options.group_property)))

    def _histories(self, obj: str, results: list[Any]) -> dict[str, dict[str, Any]]:
        """Id -> propertiesWithHistory of a search page's records: one batch read per 50
        (the search API gives no history)."""
        wanted = self._history_properties(obj)
        ids = [str(raw["id"]) for raw in results if isinstance(raw, dict) and raw.get("id")]
        out: dict[str, dict[str, Any]] = {}
        if not wanted:
            return out
        path = f"/crm/v3/objects/{obj}/batch/read"
        for start in range(0, len(ids), HISTORY_BATCH):
            response = self.client.post(path, json={
                "properties": [], "propertiesWithHistory": wanted,
                "inputs": [{"id": hs_id} for hs_id in ids[start:start + HISTORY_BATCH]]},
                ok=(200, 207), write=False)
            for raw in (_json(response, f"POST {path}") or {}).get("results") or []:
                if isinstance(raw, dict) and isinstance(raw.get("propertiesWithHistory"), dict):
                    out[str(raw.get("id"))] = raw["propertiesWithHistory"]
        return out

    def get(self, record_id: str) -> Record | None:
        try:
            obj, hs_id = self._split(record_id)
        except ValueError:
            return None
        params = {"properties": ",".join(self._properties(obj)), "archived": "false"}
        if self._history_properties(obj):
            params["propertiesWithHistory"] = ",".join(self._history_properties(obj))
        response = self.client.get(f"/crm/v3/objects/{obj}/{hs_id}", params=params,
                                   ok=(200, 404), record_id=record_id)
        if response.status_code == 404:
            return None
        raw = _json(response, f"GET /crm/v3/objects/{obj}/{{id}}")
        history = raw.get("propertiesWithHistory") if isinstance(raw, dict) else None
        if _owner_of(raw) or (isinstance(history, dict) and history.get(OWNER)):
            self._owner_table()
        try:
            return self._record(obj, raw, [], None,
                                history if isinstance(history, dict) else None)
        except RecordError as problem:
            raise ConnectorError(f"{NAME}: {problem}", record_id=record_id) from None

    def read_back(self, record_id: str, since: datetime | None = None) -> Record | None:
        """The record with its notes: the note objects associated with it (read through the
        associations, which do not lag as the search index does). One request for the
        record, one per 500 associated notes, one per 100 of them read."""
        record = self.get(record_id)
        if record is None:
            return None
        obj, hs_id = self._split(record_id)
        return dataclasses.replace(record, notes=tuple(
            note for note in self._notes(obj, hs_id, record_id)
            if since is None or note.at >= since))

    def _notes(self, obj: str, hs_id: str, record_id: str) -> list[Note]:
        path = f"/crm/v4/objects/{obj}/{hs_id}/associations/notes"

        def page(after: str) -> tuple[Any, requests.Response]:
            params = {"limit": 500, **({"after": after} if after else {})}
            response = self.client.get(path, params=params, record_id=record_id)
            return _json(response, f"GET /crm/v4/objects/{obj}/{{id}}/associations/notes"), \
                response

        def next_of(body: Any, _: requests.Response) -> str | None:
            after = (((body or {}).get("paging") or {}).get("next") or {}).get("after")
            return str(after) if after else None

        ids: list[str] = []
        for body in follow("", next_of, page, f"{NAME}: notes of {record_id}"):
            for item in (body or {}).get("results") or []:
                if isinstance(item, dict) and item.get("toObjectId") is not None:
                    ids.append(str(item["toObjectId"]))
        notes: list[Note] = []
        read = "/crm/v3/objects/notes/batch/read"
        for start in range(0, len(ids), BATCH_SIZE):
            response = self.client.post(read, json={
                "properties": ["hs_note_body", "hs_createdate"], "propertiesWithHistory": [],
                "inputs": [{"id": note_id} for note_id in ids[start:start + BATCH_SIZE]]},
                ok=(200, 207), record_id=record_id, write=False)
            for raw in (_json(response, f"POST {read}") or {}).get("results") or []:
                props = raw.get("properties") if isinstance(raw, dict) else None
                if not isinstance(props, dict):
                    continue
                try:
                    # The creation time HubSpot stamped, not hs_timestamp (the sync's now).
                    at = _instant(props.get("hs_createdate") or raw.get("createdAt"),
                                  "hs_createdate")
                except ValueError:
                    continue
                if at is not None:
                    notes.append(Note(at, note_text(props.get("hs_note_body"))))
        notes.sort(key=lambda note: note.at)
        return notes

    def _properties(self, obj: str) -> list[str]:
        o = self.options
        names = [MODIFIED[obj], "createdate", OWNER, o.tier_property, o.group_property,
                 o.tags_property, o.escalation_property, *FIRST_RESPONSE[obj]]
        if obj == "tickets":
            names += ["subject", "hs_pipeline", "hs_pipeline_stage", "hs_ticket_priority",
                      "hs_ticket_category", o.channel_property, "closed_date"]
        else:
            names += [o.source_property]
            if o.lead_priority_property:
                names.append(o.lead_priority_property)
        if obj == "leads":
            names += ["hs_createdate", "hs_lead_name", "hs_pipeline", "hs_pipeline_stage"]
        if obj == "contacts":
            names += ["firstname", "lastname", "email", "hs_lead_status"]
        if obj in ("tickets", "leads"):
            names += [f"hs_v2_date_entered_{stage}" for stage in self._stages(obj)]
        names += self.options.custom_fields.values()
        return list(dict.fromkeys(names))

    def _stages(self, obj: str) -> Mapping[str, str]:
        return {"tickets": self.options.stage_map, "leads": self.options.lead_stage_map,
                "contacts": self.options.lead_status_map}[obj]

    def _record(self, obj: str, raw: Any, notices: NoticeSink,
                position: int | None = None,
                history: Mapping[str, Any] | None = None) -> Record:
        """One HubSpot object as a Record; RecordError names what is wrong."""
        if not isinstance(raw, dict):
            raise RecordError("is not an object", position=position)
        raw_id = raw.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or str(raw_id) == "":
            raise RecordError("has no id", position=position)
        record_id = f"{obj}:{raw_id}"
        props = raw.get("properties")
        if not isinstance(props, dict):
            raise RecordError("properties: expected an object", record_id=record_id,
                              position=position)
        o = self.options

        def text(name: str) -> str:
            value = props.get(name) if name else None
            return "" if value is None else str(value).strip()

        try:
            created = _instant(props.get("createdate") or props.get("hs_createdate")
                               or raw.get("createdAt"), "createdate")
            updated = _instant(props.get(MODIFIED[obj]) or raw.get("updatedAt"), MODIFIED[obj])
            if created is None or updated is None:
                raise ValueError(f"{'createdate' if created is None else MODIFIED[obj]}: "
                                 "missing")
            responses = [_instant(props.get(name), name) for name in FIRST_RESPONSE[obj]]
            first_response = min((at for at in responses if at is not None), default=None)
            solved = _instant(props.get("closed_date"), "closed_date") \
                if obj == "tickets" else None
            statuses = self._history(obj, props)
            level = _level(text(o.escalation_property), o.escalation_property)
            conversation = _conversation(history) if history is not None \
                and self._history_properties(obj) else None
        except ValueError as exc:
            raise RecordError(str(exc), record_id=record_id, position=position) from None

        stage = text(STATUS_PROPERTY[obj])
        status = self._maps.status[obj].read(stage, notices) if stage else INITIAL_STATUS
        priority_property = "hs_ticket_priority" if obj == "tickets" \
            else o.lead_priority_property
        priority = text(priority_property)
        owner = text(OWNER)
        group = text(o.group_property)
        data: dict[str, Any] = {
            "id": record_id, "kind": KINDS[obj], "created_at": created, "updated_at": updated,
            "subject": _subject(obj, text),
            "status": status,
            "priority": self._maps.priority.read(priority, notices) if priority else "",
            "tier": text(o.tier_property),
            "group": o.groups.get(group, group),
            "assignee": self._assignee(owner),
            "tags": _split_tags(props.get(o.tags_property)),
            "first_response_at": first_response,
            "solved_at": solved,
            "status_history": [{"at": at, "status": s} for at, s in statuses],
            "escalation_level": level,
            "custom": {"hubspot_object": obj, "hubspot_id": str(raw_id),
                       **({"hubspot_owner_id": owner} if owner else {}),
                       **({"hubspot_stage": stage} if stage else {}),
                       **FieldMap(NAME, o.custom_fields).read(lambda prop: text(prop) or None)},
        }
        if conversation is not None and history is not None:
            data["messages"] = [{"at": m.at, "author": m.author, "public": m.public}
                                for m in conversation]
            owners = self._owners_history(history, created, group, owner)
            if owners is not None:
                data["assignment_history"] = [
                    {"at": a.at, "group": a.group, "assignee": a.assignee} for a in owners]
        if o.portal:  # the record's page in HubSpot needs the account (portal) id
            data["url"] = f"{APP_URL}/contacts/{o.portal}/record/{OBJECT_TYPE_IDS[obj]}/{raw_id}"
        if obj == "tickets":
            channel = text(o.channel_property)
            data["channel"] = o.channel_map.get(channel, channel.lower())
            if text("hs_pipeline"):
                data["custom"]["hubspot_pipeline"] = text("hs_pipeline")
            if text("hs_ticket_category"):
                data["custom"]["hubspot_category"] = text("hs_ticket_category")
        else:
            source = text(o.source_property)
            data["source"] = self._maps.source.read(source, notices) if source else ""
        return Record.from_dict(data, position)

    def _owners_history(self, history: Mapping[str, Any], created: datetime, group: str,
                        owner: str) -> list[Assignment] | None:
        """The group and owner from creation on: a value written with the creation (within
        CREATION_SLACK) is the record's at creation, a property never written was empty,
        each later version is a change. None when the versions do not end at the values
        the record has now (a history HubSpot did not keep whole is not guessed around)."""
        group_property = self.options.group_property
        state = {group_property: "", OWNER: ""}
        changes: dict[datetime, dict[str, str]] = {}
        for name in state:
            for at, value in _versions(history.get(name)):
                if at <= created + CREATION_SLACK:
                    state[name] = value
                else:
                    changes.setdefault(at, {})[name] = value
        groups = self.options.groups

        def entry(at: datetime) -> Assignment:
            value = state[group_property]
            return Assignment(at, groups.get(value, value), self._assignee(state[OWNER]))

        out = [entry(created)]
        for at in sorted(changes):
            state.update(changes[at])
            out.append(entry(at))
        if (state[group_property], state[OWNER]) != (group, owner):
            return None
        return out

    def _history(self, obj: str, props: Mapping[str, Any]) -> list[tuple[datetime, str]]:
        """What HubSpot can tell of the status history: the last time each mapped stage was
        entered (a stage entered twice shows only its latest entry), oldest first."""
        if obj == "contacts":
            return []
        entries = []
        for stage, status in self._stages(obj).items():
            name = f"hs_v2_date_entered_{stage}"
            at = _instant(props.get(name), name)
            if at is not None:
                entries.append((at, status))
        history: list[tuple[datetime, str]] = []
        for at, status in sorted(entries):
            if not history or history[-1][1] != status:
                history.append((at, status))
        return history

    # -- what the account has (sla-sync check) --------------------------------------------

    def catalog(self) -> Catalog:
        """Per object synced: its pipelines and their stages (`GET /crm/v3/pipelines/{obj}`;
        tickets and leads) and its properties (`GET /crm/v3/properties/{obj}`: priorities,
        the tier, tags and escalation properties, the tags' options), one request each;
        then the owners, one request per 100, and the private app's scopes, one request.
        Only reads."""
        sent = self.client.requests_sent
        o, maps = self.options, _Maps(self.options)
        catalog = Catalog("HubSpot", agent_word="owner",
                          tag_word=f"option of the {o.tags_property} property",
                          fields={"hubspot_object", "hubspot_id", "hubspot_pipeline",
                                  "hubspot_category", *o.custom_fields})
        statuses: set[str] = set()
        groups: set[str] = set()
        priorities: set[str] = set()
        tags: set[str] = set()
        for obj in o.objects:
            stage_map = self._stages(obj)
            setting = {"tickets": "stage_map", "leads": "lead_stage_map",
                       "contacts": "lead_status_map"}[obj]
            properties = self._property_table(obj)
            if obj in ("tickets", "leads"):
                live: dict[str, str] = {}
                for pipeline in self._pipelines(obj):
                    pid = str(pipeline.get("id"))
                    if o.group_property == "hs_pipeline":
                        groups.add(o.groups.get(pid, pid))
                    for stage in pipeline.get("stages") or []:
                        if isinstance(stage, dict) and stage.get("archived") is not True:
                            live[str(stage.get("id"))] = str(stage.get("label"))
            else:
                live = self._options(properties, "hs_lead_status")
            statuses |= {maps.status[obj].read(stage, []) for stage in live}
            for stage, label in live.items():
                if stage not in stage_map:
                    catalog.problems.append((
                        f"connector.{setting}", f"HubSpot's {obj} stage {label!r} (id "
                        f"{stage}) is not mapped: its records read as 'open'"))
            for prop in (o.tier_property, o.tags_property, o.escalation_property):
                if prop not in properties:
                    catalog.problems.append((
                        f"connector.{_setting_of(o, prop)}", f"no {obj} property {prop!r} in "
                        f"HubSpot: create it (see docs/connectors/hubspot.md)"))
            tags |= set(self._options(properties, o.tags_property))
            priority = "hs_ticket_priority" if obj == "tickets" else o.lead_priority_property
            if priority:
                priorities |= {maps.priority.read(v, []) for v in
                               self._options(properties, priority) if v in o.priority_map}
        if o.group_property == "hs_pipeline":
            catalog.groups = groups
        catalog.statuses = statuses
        catalog.priorities = priorities or set(o.priority_map.values())
        catalog.tags = tags
        owners = self._owner_table()
        catalog.agents = {value for owner_id, owner in owners.items()
                          for value in (owner_id, owner["email"], owner["name"]) if value}
        self._scopes(catalog)
        catalog.requests = self.client.requests_sent - sent
        return catalog

    def _scopes(self, catalog: Catalog) -> None:
        """The private app's scopes (POST /oauth/v2/private-apps/get/access-token-info, as
        "Private apps" documents: the token in the body, its scopes in the answer), and the
        writes they leave out. A token that is no private app's is not judged."""
        token = getattr(self.client.session.auth, "_token", None)
        if not isinstance(token, str):
            return
        try:
            body = self.client.json("POST", "/oauth/v2/private-apps/get/access-token-info",
                                    json={"tokenKey": token}, write=False)
        except ConnectorError:
            return
        scopes = body.get("scopes") if isinstance(body, dict) else None
        if not isinstance(scopes, list):
            return
        have = set(map(str, scopes))
        writes: list[tuple[str, tuple[str, ...]]] = [
            ("tickets", ("tickets", "crm.objects.tickets.write"))]
        if "leads" in self.options.objects:
            writes.append(("leads", ("crm.objects.leads.write",)))
        if "contacts" in self.options.objects:
            writes.append(("contacts", ("crm.objects.contacts.write",)))
        for obj, grants in writes:
            if not have & set(grants):
                why = f"the private app lacks the {' or '.join(grants)} scope ({obj})"
                for kind in ("fields", "tags", "escalation"):
                    catalog.denied.setdefault(kind, why)
        if "crm.objects.contacts.write" not in have:
            catalog.denied["notes"] = ("the private app lacks the crm.objects.contacts.write "
                                       "scope, which HubSpot asks for to create notes")

    def _pipelines(self, obj: str) -> list[dict[str, Any]]:
        where = f"GET /crm/v3/pipelines/{obj}"
        body = _json(self.client.get(f"/crm/v3/pipelines/{obj}"), where)
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise ConnectorError(f"{NAME}: {where}: the answer holds no results")
        return [r for r in results if isinstance(r, dict) and r.get("archived") is not True]

    def _property_table(self, obj: str) -> dict[str, dict[str, Any]]:
        where = f"GET /crm/v3/properties/{obj}"
        body = _json(self.client.get(f"/crm/v3/properties/{obj}"), where)
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise ConnectorError(f"{NAME}: {where}: the answer holds no results")
        return {str(r.get("name")): r for r in results
                if isinstance(r, dict) and r.get("archived") is not True}

    @staticmethod
    def _options(properties: Mapping[str, Any], name: str) -> dict[str, str]:
        """An enumeration property's option values -> labels (none for another type)."""
        options = (properties.get(name) or {}).get("options") or []
        return {str(opt.get("value")): str(opt.get("label")) for opt in options
                if isinstance(opt, dict) and opt.get("hidden") is not True}

    # -- owners ----------------------------------------------------------------------------

    def _owner_table(self) -> dict[str, dict[str, str]]:
        """Owner id -> {"email", "name"}, read once per run (GET /crm/v3/owners)."""
        if self._owners is not None:
            return self._owners
        def page(after: str) -> tuple[Any, requests.Response]:
            params = {"limit": 100, "archived": "false", **({"after": after} if after else {})}
            response = self.client.get("/crm/v3/owners", params=params)
            return _json(response, "GET /crm/v3/owners"), response

        def next_of(body: Any, _: requests.Response) -> str | None:
            after = (((body or {}).get("paging") or {}).get("next") or {}).get("after")
            return str(after) if after else None

        owners: dict[str, dict[str, str]] = {}
        for body in follow("", next_of, page, f"{NAME}: GET /crm/v3/owners"):
            for owner in (body or {}).get("results") or []:
                if isinstance(owner, dict) and owner.get("id") is not None:
                    name = " ".join(str(owner.get(part) or "").strip()
                                    for part in ("firstName", "lastName")).strip()
                    owners[str(owner["id"])] = {"email": str(owner.get("email") or ""),
                                                "name": name}
        self._owners = owners
        return owners

    def directory(self) -> dict[str, dict[str, str]]:
        """The account's owners by the assignee name records carry (email or full name, as
        `assignee_as` says): email and name, where alerts to `{assignee}` go; HubSpot keeps
        no time zone for an owner. The owners read once per run (`GET /crm/v3/owners`)."""
        found: dict[str, dict[str, str]] = {}
        for owner_id, owner in self._owner_table().items():
            found[self._assignee(owner_id)] = {key: owner[key] for key in ("email", "name")
                                               if owner.get(key)}
        return found

    def _assignee(self, owner_id: str) -> str:
        if not owner_id:
            return ""
        owner = (self._owners or {}).get(owner_id)
        if owner is None:
            return owner_id  # an owner no longer active: keep the id
        return owner[self.options.assignee_as] or owner["email"] or owner["name"] or owner_id

    def _owner_id(self, assignee: str) -> str:
        if not assignee:
            return ""
        wanted = assignee.strip().lower()
        for owner_id, owner in self._owner_table().items():
            if wanted in (owner_id, owner["email"].lower(), owner["name"].lower()):
                return owner_id
        raise ValueError(f"no HubSpot owner {assignee!r} (give an active owner's email, full "
                         "name or id)")

    # -- writing ---------------------------------------------------------------------------

    def apply(self, change: ChangeSet, now: datetime) -> Record | None:
        [result] = self.apply_many([change], now)
        if result.error is not None:
            raise result.error
        return result.record

    def apply_many(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        results: dict[int, WriteResult] = {}
        by_object: dict[str, list[tuple[int, ChangeSet, str]]] = {}
        for index, change in enumerate(changes):
            try:
                obj, hs_id = self._split(change.record_id)
            except ValueError as exc:
                results[index] = WriteResult(change.record_id, error=ConnectorError(
                    f"{NAME}: {exc}", record_id=change.record_id))
                continue
            by_object.setdefault(obj, []).append((index, change, hs_id))
        notes: list[tuple[str, str, str, str]] = []
        for obj, items in by_object.items():
            for start in range(0, len(items), BATCH_SIZE):
                written, batch_notes = self._apply_batch(obj, items[start:start + BATCH_SIZE])
                results.update(written)
                notes += batch_notes
        # The notes of every object and batch go together: a notes batch/create takes notes
        # associated with tickets and leads alike, 100 a request.
        failed = self._create_notes(notes, now) if notes else {}
        for index, result in results.items():
            if result.error is None and result.record_id in failed:
                results[index] = WriteResult(result.record_id, error=failed[result.record_id])
        return [results[index] for index in range(len(changes))]

    def _apply_batch(self, obj: str, items: list[tuple[int, ChangeSet, str]],
                     ) -> tuple[dict[int, WriteResult], list[tuple[str, str, str, str]]]:
        """Read the records fresh, refuse those changed since they were planned, update the
        rest in one request; returns each change's result and the notes (object, record id,
        HubSpot id, text) still to add for those written."""
        fresh = self._batch_read(obj, [hs_id for _, _, hs_id in items])
        outcome: dict[int, WriteResult] = {}
        planned: list[tuple[int, ChangeSet, str, dict[str, Any], dict[str, str]]] = []
        for index, change, hs_id in items:
            record_id = change.record_id
            current = fresh.get(hs_id)
            if isinstance(current, ConnectorError):
                outcome[index] = WriteResult(record_id, error=current)
                continue
            if current is None:
                outcome[index] = WriteResult(record_id, error=RecordGone(
                    f"{NAME}: record {record_id!r} no longer exists (deleted or merged)",
                    record_id=record_id))
                continue
            version = _instant_or_none(current, MODIFIED[obj])
            if change.base_updated_at is not None and version != change.base_updated_at:
                seen = format_instant(version) if version else "unknown"
                outcome[index] = WriteResult(record_id, error=ConflictError(
                    f"{NAME}: record {record_id!r} changed since it was read "
                    f"({MODIFIED[obj]} {seen}, planned on "
                    f"{format_instant(change.base_updated_at)})", record_id=record_id))
                continue
            try:
                properties = self._properties_for(obj, change, current["properties"])
            except ValueError as exc:
                outcome[index] = WriteResult(record_id, error=ConnectorError(
                    f"{NAME}: record {record_id!r}: {exc}", record_id=record_id))
                continue
            planned.append((index, change, hs_id, current, properties))

        updated = self._batch_update(obj, [(change.record_id, hs_id, properties)
                                           for _, change, hs_id, _, properties in planned
                                           if properties])
        notes: list[tuple[str, str, str, str]] = []
        for index, change, hs_id, current, properties in planned:
            record: Record | None = None
            if properties:
                result = updated[hs_id]
                if isinstance(result, ConnectorError):
                    outcome[index] = WriteResult(change.record_id, error=result)
                    continue
                record = self._as_written(obj, current, result)
            outcome[index] = WriteResult(change.record_id, record)
            notes += [(obj, change.record_id, hs_id, text) for text in change.notes]
        return outcome, notes

    def _properties_for(self, obj: str, change: ChangeSet, current: Mapping[str, Any],
                        ) -> dict[str, str]:
        """The properties to send for `change`, given the record's properties as just read;
        values it already has are left out. ValueError when one cannot be written."""
        o = self.options
        wanted: dict[str, str] = {}
        for name, value in change.fields.items():
            if name == "priority":
                prop = "hs_ticket_priority" if obj == "tickets" else o.lead_priority_property
                if not prop:
                    raise ValueError(f"HubSpot {obj} have no priority property; name one in "
                                     "connector.lead_priority_property")
                wanted[prop] = self._maps.priority.write(value)
            elif name == "status":
                wanted[STATUS_PROPERTY[obj]] = self._maps.status[obj].write(value)
            elif name == "group":
                if o.group_property == "hs_pipeline":
                    raise ValueError(
                        f"cannot move it to group {value!r}: the group is read from the "
                        "pipeline, and a pipeline move needs a stage of that pipeline; set "
                        "connector.group_property to a team property to assign groups")
                reverse = {ours: theirs for theirs, ours in o.groups.items()}
                wanted[o.group_property] = reverse.get(value, value)
            elif name == "assignee":
                wanted[OWNER] = self._owner_id(value)
            elif custom_name(name):  # set_field: a property of the object
                wanted[FieldMap(NAME, o.custom_fields).theirs(custom_name(name))] = value
        if change.add_tags or change.remove_tags:
            # A multi-checkbox property is written whole: merge into the value just read,
            # so that an option a person ticked since our last read is kept.
            existing = _split_tags(current.get(o.tags_property))
            wanted[o.tags_property] = ";".join(
                merge_tags(existing, change.add_tags, change.remove_tags))
        if change.escalation_level is not None:
            wanted[o.escalation_property] = str(change.escalation_level)
        return {name: value for name, value in wanted.items()
                if not _same(current.get(name), value)}

    def _batch_read(self, obj: str, ids: list[str],
                    ) -> dict[str, dict[str, Any] | ConnectorError]:
        """The records as they are now, by id: missing ones are absent, and ones HubSpot
        failed to read for another reason carry the error."""
        path = f"/crm/v3/objects/{obj}/batch/read"
        response = self.client.post(path, json={
            "properties": self._properties(obj), "propertiesWithHistory": [],
            "inputs": [{"id": hs_id} for hs_id in ids]}, ok=(200, 207, 404), write=False)
        body = _json(response, f"POST {path}")
        if response.status_code == 404:
            # None of the ids exists any more; any other 404 is HubSpot's own failure.
            if isinstance(body, dict) and body.get("category") == "OBJECT_NOT_FOUND":
                return {}
            raise ConnectorError(f"{NAME}: POST {path}: HTTP 404: not found (is the {obj} "
                                 "object enabled in this account?)")
        found: dict[str, dict[str, Any] | ConnectorError] = {}
        for raw in (body or {}).get("results") or []:
            if isinstance(raw, dict) and isinstance(raw.get("properties"), dict):
                found[str(raw.get("id"))] = raw
        for error in (body or {}).get("errors") or []:
            if not isinstance(error, dict) or error.get("category") == "OBJECT_NOT_FOUND":
                continue
            for hs_id in set(_context_values(error)) & set(ids) - set(found):
                found[hs_id] = ConnectorError(
                    f"{NAME}: POST {path}: could not read record {obj}:{hs_id} "
                    f"({_error_text(error)})", retriable=True, record_id=f"{obj}:{hs_id}")
        return found

    def _batch_update(self, obj: str, inputs: list[tuple[str, str, dict[str, str]]],
                      ) -> dict[str, dict[str, Any] | ConnectorError]:
        """POST batch/update: each id's updated object, or its error. A 207 names the
        failed inputs in its errors; a 400 refuses the whole batch, so its inputs are sent
        one by one to find the one at fault."""
        if not inputs:
            return {}
        path = f"/crm/v3/objects/{obj}/batch/update"
        response = self.client.post(path, json={"inputs": [
            {"id": hs_id, "objectWriteTraceId": record_id, "properties": properties}
            for record_id, hs_id, properties in inputs]}, ok=(200, 207, 400))
        if response.status_code == 400 and len(inputs) > 1:
            return {hs_id: self._update_one(obj, record_id, hs_id, properties)
                    for record_id, hs_id, properties in inputs}
        body = _json(response, f"POST {path}", written=True)
        if response.status_code == 400:
            [(record_id, hs_id, _)] = inputs
            return {hs_id: ConnectorError(f"{NAME}: record {record_id!r}: HubSpot refused the "
                                          f"change ({_error_text(body)})",
                                          record_id=record_id)}
        return _batch_outcome(body, [(hs_id, record_id, {hs_id, record_id})
                                     for record_id, hs_id, _ in inputs], f"POST {path}")

    def _update_one(self, obj: str, record_id: str, hs_id: str, properties: dict[str, str],
                    ) -> dict[str, Any] | ConnectorError:
        response = self.client.request("PATCH", f"/crm/v3/objects/{obj}/{hs_id}",
                                       json={"properties": properties}, ok=ERRORS.ok(200),
                                       record_id=record_id)
        body = _json(response, f"PATCH /crm/v3/objects/{obj}/{{id}}", written=True)
        error = ERRORS.error(response, record_id)
        if error is not None:
            return error
        return body if isinstance(body, dict) else {}

    def _as_written(self, obj: str, before: dict[str, Any], result: dict[str, Any],
                    ) -> Record | None:
        """The record as the update left it: the properties read just before, overlaid with
        those the update returned (HubSpot returns the ones it wrote and the new modified
        time). None when HubSpot returned nothing or that does not make a usable record."""
        if not result.get("properties"):
            return None
        merged = {**before, "properties": {**before.get("properties", {}),
                                           **(result.get("properties") or {})}}
        if result.get("updatedAt"):
            merged["updatedAt"] = result["updatedAt"]
        try:
            return self._record(obj, merged, [])
        except RecordError:
            return None

    def _create_notes(self, notes: list[tuple[str, str, str, str]], now: datetime,
                      ) -> dict[str, ConnectorError]:
        """One note object per text, associated with its record (of any object), in batches;
        returns the records whose notes failed. Notes are internal: HubSpot never sends them
        to the customer."""
        stamp = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        failed: dict[str, ConnectorError] = {}
        for start in range(0, len(notes), BATCH_SIZE):
            batch = notes[start:start + BATCH_SIZE]
            traces = [(f"{record_id}#note{start + n}", record_id)
                      for n, (_, record_id, _, _) in enumerate(batch)]
            inputs = [{
                "objectWriteTraceId": trace,
                "properties": {"hs_note_body": note_html(text), "hs_timestamp": stamp},
                "associations": [{"to": {"id": hs_id}, "types": [
                    {"associationCategory": "HUBSPOT_DEFINED",
                     "associationTypeId": NOTE_ASSOCIATION_TYPES[obj]}]}],
            } for (trace, _), (obj, _, hs_id, text) in zip(traces, batch, strict=True)]
            path = "/crm/v3/objects/notes/batch/create"
            response = self.client.post(path, json={"inputs": inputs},
                                        ok=(200, 201, 207, 400))
            body = _json(response, f"POST {path}", written=True)
            if response.status_code == 400:
                for _, record_id in traces:
                    failed[record_id] = ConnectorError(
                        f"{NAME}: record {record_id!r}: HubSpot refused its note "
                        f"({_error_text(body)})", record_id=record_id)
                continue
            outcome = _batch_outcome(body, [(trace, record_id, {trace})
                                            for trace, record_id in traces], f"POST {path}")
            for trace, record_id in traces:
                error = outcome[trace]
                if isinstance(error, ConnectorError):
                    failed.setdefault(record_id, error)
        return failed

    @staticmethod
    def _split(record_id: str) -> tuple[str, str]:
        obj, _, hs_id = record_id.partition(":")
        if obj not in OBJECTS or not hs_id.isdigit():
            raise ValueError(f"{record_id!r} is not a HubSpot record id (expected "
                             "<object>:<id>, e.g. tickets:512)")
        return obj, hs_id


# -- helpers ---------------------------------------------------------------------------------

def _setting_of(options: Options, prop: str) -> str:
    for key in ("tier_property", "tags_property", "escalation_property"):
        if getattr(options, key) == prop:
            return key
    return "objects"


def _batch_outcome(body: Any, inputs: list[tuple[str, str, set[str]]], where: str,
                   ) -> dict[str, dict[str, Any] | ConnectorError]:
    """Each input's result or error in a batch response (200, 201 or 207 Multi-Status).

    `inputs` are (key, record id, the names HubSpot may use for it: its id, its
    objectWriteTraceId). Results carry `id` and `objectWriteTraceId`; errors name their
    inputs in `context`. An error that names no input concerns every input left without a
    result; an input with neither a result nor an error went through.
    """
    body = body if isinstance(body, dict) else {}
    results: dict[str, dict[str, Any]] = {}
    for raw in body.get("results") or []:
        if isinstance(raw, dict):
            for name in (raw.get("objectWriteTraceId"), raw.get("id")):
                if name is not None:
                    results.setdefault(str(name), raw)
    named: dict[str, dict[str, Any]] = {}
    unnamed: list[dict[str, Any]] = []
    every_name = set().union(*(names for _, _, names in inputs)) if inputs else set()
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        names = set(_context_values(error)) & every_name
        for name in names:
            named.setdefault(name, error)
        if not names:
            unnamed.append(error)
    outcome: dict[str, dict[str, Any] | ConnectorError] = {}
    for key, record_id, names in inputs:
        error = next((named[n] for n in sorted(names) if n in named), None)
        result = next((results[n] for n in sorted(names) if n in results), None)
        if error is None and result is None and unnamed:
            error = unnamed[0]
        if error is None:
            outcome[key] = result or {}
            continue
        message = f"{NAME}: {where}: record {record_id!r}: {_error_text(error)}"
        outcome[key] = RecordGone(message, record_id=record_id) \
            if error.get("category") == "OBJECT_NOT_FOUND" else \
            ConnectorError(message, record_id=record_id)
    return outcome


def _context_values(error: Mapping[str, Any]) -> list[str]:
    context = error.get("context")
    values: list[str] = []
    if isinstance(context, dict):
        for value in context.values():
            items = value if isinstance(value, list) else [value]
            values += [str(item) for item in items if isinstance(item, str | int)]
    return values


def _error_text(error: Any) -> str:
    if not isinstance(error, dict):
        return "no details"
    category = error.get("category")
    message = str(error.get("message") or "no details")[:200]
    return f"{category}: {message}" if category else message


def _json(response: requests.Response, where: str, written: bool = False) -> Any:
    return decode_json(response, f"{NAME}: {where}", written=written) \
        if response.content else None


def _owner_of(raw: Any) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("properties"), dict):
        return str(raw["properties"].get(OWNER) or "")
    return ""


def _subject(obj: str, text: Callable[[str], str]) -> str:
    if obj == "tickets":
        return text("subject")
    if obj == "leads":
        return text("hs_lead_name")
    return " ".join(part for part in (text("firstname"), text("lastname")) if part) \
        or text("email")


def _split_tags(value: Any) -> list[str]:
    if not isinstance(value, str):
        return []
    return [tag.strip() for tag in value.split(";") if tag.strip()]


def _same(current: Any, value: str) -> bool:
    if current is None:
        return value == ""
    if isinstance(current, str) and ";" in current + value:
        return _split_tags(current) == _split_tags(value)
    return str(current) == value


def _level(value: str, what: str) -> int:
    try:
        number = float(value) if value else 0.0
    except ValueError:
        number = -1.0
    if number < 0 or not number.is_integer():
        raise ValueError(f"{what}: expected a whole number >= 0, got {value!r}")
    return int(number)


def _versions(raw: Any) -> list[tuple[datetime, str]]:
    """A property's history (propertiesWithHistory: newest first, each {value, timestamp,
    sourceType, ...}) as (timestamp, value), oldest first; unreadable versions left out."""
    out = []
    for version in raw if isinstance(raw, list) else []:
        if not isinstance(version, dict):
            continue
        try:
            at = _instant(version.get("timestamp"), "timestamp")
        except ValueError:
            continue
        value = version.get("value")
        if at is not None:
            out.append((at, "" if value is None else str(value).strip()))
    out.sort(key=lambda item: item[0])
    return out


def _conversation(history: Mapping[str, Any]) -> list[Message]:
    """The messages the inbox properties' history tells: each distinct value of the
    received date a customer's message, of the response date a public agent reply (at the
    instant the value holds, not when it was written)."""
    messages: dict[tuple[datetime, str], Message] = {}
    for name, author in ((RECEIVED, "customer"), (SENT, "agent")):
        for _, value in _versions(history.get(name)):
            try:
                at = _instant(value, name)
            except ValueError:
                continue
            if at is not None:
                messages[(at, author)] = Message(at, author, True)
    return [messages[key] for key in sorted(messages)]


def _instant(value: Any, what: str) -> datetime | None:
    """A HubSpot date-time: ISO 8601 (`2026-03-02T09:15:00.123Z`) or epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return _from_millis(int(value.strip()))
    return parse_instant(value, what)


def _instant_or_none(raw: Mapping[str, Any], name: str) -> datetime | None:
    try:
        return _instant(raw.get("properties", {}).get(name) or raw.get("updatedAt"), name)
    except ValueError:
        return None


def _millis(raw: Any, name: str) -> int | None:
    if not isinstance(raw, dict):
        return None
    at = _instant_or_none(raw, name)
    return None if at is None else (at - _EPOCH) // timedelta(milliseconds=1)


def _millis_of(seconds: float) -> int:
    return int(seconds * 1000)


def _from_millis(millis: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=millis)


def _decode_cursor(cursor: str | None) -> dict[str, _Position]:
    if not cursor:
        return {}

    def read(data: Any) -> dict[str, _Position]:
        return {obj: _Position.from_json(pos, "since", "edge", int, ids_required=False)
                for obj, pos in data.items()}

    return decode_cursor(cursor, read, f"{NAME}: the stored cursor is not one this connector "
                         "wrote; remove it from the state file to read everything again")


def _encode_cursor(positions: Mapping[str, _Position]) -> str:
    return json.dumps({obj: pos.to_json("since", "edge", int, _id_order)
                       for obj, pos in sorted(positions.items())}, separators=(",", ":"))


def _id_order(hs_id: str) -> tuple[int, str]:
    return (int(hs_id), "") if hs_id.isdigit() else (0, hs_id)
