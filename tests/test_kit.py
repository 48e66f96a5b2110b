"""The connector kit's shared pieces: watermark, error map, settings schema, name map,
per-fetch notices and page-number paging."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from sla_sync.connector.base import ConflictError, ConnectorError, RecordGone
from sla_sync.connector.errors import ErrorMap
from sla_sync.connector.http import LoopDetected, PageNumbers, ShortPages, Tokens, numbered
from sla_sync.connector.mapping import NameMap, Notices, ValueMap
from sla_sync.connector.settings import (
    Block,
    Choice,
    Flag,
    Id,
    Items,
    Nullable,
    Number,
    Schema,
    Setting,
    Table,
    Text,
    documented_keys,
    url_setting,
)
from sla_sync.connector.watermark import Watermark, decode_cursor

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC)


# -- watermark ---------------------------------------------------------------------------

def test_an_empty_watermark_covers_nothing():
    assert not Watermark().covers("1", T0)


def test_a_watermark_covers_what_came_before_and_the_ids_at_its_edge():
    mark = Watermark().after("7", T0)
    assert mark.covers("7", T0)
    assert not mark.covers("8", T0)
    assert mark.covers("8", datetime(2026, 3, 2, 9, 59, 59, tzinfo=UTC))
    assert not mark.covers("7", T1)


def test_a_watermark_gathers_ids_at_one_instant_and_moves_on_past_it():
    mark = Watermark().after("10", T0).after("9", T0)
    assert mark.ids == {"9", "10"}
    later = mark.after("11", T1)
    assert (later.since, later.ids) == (T1, {"11"})


def test_a_watermark_never_moves_back():
    mark = Watermark().after("1", T1)
    assert mark.after("2", T0) == mark


def test_a_watermark_of_milliseconds_works_as_one_of_datetimes():
    mark = Watermark[int]().after("5", 1000).after("6", 1000)
    assert mark.covers("6", 1000) and not mark.covers("6", 1001)


def test_a_watermark_round_trips_through_a_vendors_json_in_id_order():
    mark = Watermark().after("10", T0).after("9", T0)
    data = mark.to_json("updated", "ids", lambda t: t.isoformat())
    assert data == {"updated": "2026-03-02T10:00:00+00:00", "ids": ["9", "10"]}
    assert Watermark.from_json(data, "updated", "ids", datetime.fromisoformat) == mark


def test_a_cursor_this_connector_did_not_write_is_a_clear_error():
    with pytest.raises(ConnectorError, match="not written by this connector"):
        decode_cursor('{"other": 1}', lambda d: Watermark.from_json(
            d, "updated", "ids", datetime.fromisoformat), "x: not written by this connector")
    with pytest.raises(ConnectorError):
        decode_cursor("not json", lambda d: d["x"], "refused")


# -- error map ---------------------------------------------------------------------------

def _response(status: int, body: bytes = b"") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    return response


@pytest.mark.parametrize(("status", "kind"), [(404, RecordGone), (409, ConflictError),
                                              (412, ConflictError), (422, ConnectorError),
                                              (400, ConnectorError)])
def test_the_error_map_turns_a_refusal_into_this_records_error(status, kind):
    error = ErrorMap("acme").error(_response(status, b'{"message": "bad field"}'), "7")
    assert type(error) is kind and error.record_id == "7"
    assert str(error).startswith("acme: ticket 7")


def test_the_error_map_quotes_the_vendors_error_body_through_its_reader():
    errors = ErrorMap("acme", detail=lambda r: "priority: not allowed")
    error = errors.error(_response(422), "7", "the priority")
    assert str(error) == "acme: ticket 7: the helpdesk refused the priority (priority: not " \
        "allowed)"
    default = ErrorMap("acme").error(_response(400, b'{"message": "bad field"}'), "7")
    assert "(HTTP 400: bad field)" in str(default)


def test_the_error_map_leaves_other_statuses_alone():
    assert ErrorMap("acme").error(_response(200), "7") is None
    ErrorMap("acme").check(_response(201), "7")


def test_a_vendor_moves_a_status_from_conflict_to_refused():
    errors = ErrorMap("acme").extended(conflict=frozenset(), refused=frozenset({400, 409}))
    assert type(errors.error(_response(409), "7")) is ConnectorError
    assert errors.ok(200) == (200, 400, 404, 409)


# -- settings ----------------------------------------------------------------------------

SCHEMA = Schema("acme", (
    url_setting(),
    Setting("token", Text(), "the API token", required=True, secret=True,
            missing="the API token is required (token: ${ACME_TOKEN})"),
    Setting("groups", Table(Id("a numeric group id"), Text("a name"),
                            "a mapping of ids to names", unique="{value!r} names two ids"),
            "group ids to names", default={}),
    Setting("mode", Choice(("email", "name")), "how owners are named", default="email"),
    Setting("bulk", Flag(), "bulk writes", default=True),
    Setting("page_size", Number(whole=True, least=1), "records per page", default=100),
    Setting("objects", Items(Choice(("tickets", "leads")), "a list of distinct objects"),
            "what to read", default=("tickets",)),
    Setting("tier_field", Nullable(Text("a field name")), "tier", default="Tier"),
    Setting("tier", Block((Setting("field", Id(), "the field id"),
                           Setting("default", Text(), "the tier", default="standard"))),
            "where the tier is read", default=None),
))
GOOD = {"type": "acme", "url": "https://acme.example.com", "token": "t"}


def test_a_schema_returns_checked_values_and_defaults():
    values = SCHEMA.check({**GOOD, "groups": {"12": "support"}, "tier_field": None})
    assert values["groups"] == {12: "support"}
    assert values["mode"] == "email" and values["page_size"] == 100
    assert values["tier_field"] is None


@pytest.mark.parametrize(("settings", "message"), [
    ({**GOOD, "password": "x"}, "connector.password: unknown setting for an acme connector"),
    ({**GOOD, "token": " "}, "connector.token: the API token is required"),
    ({"type": "acme", "token": "t"}, "connector.url: the helpdesk's base URL is required"),
    ({**GOOD, "url": "http://acme.example.com"}, "connector.url: plain http"),
    ({**GOOD, "groups": {"x": "support"}}, "connector.groups.x: expected a numeric group id"),
    ({**GOOD, "groups": {1: "a", 2: "a"}}, "connector.groups.2: 'a' names two ids"),
    ({**GOOD, "mode": "id"}, "connector.mode: expected email or name"),
    ({**GOOD, "bulk": "yes"}, "connector.bulk: expected true or false"),
    ({**GOOD, "page_size": 0}, "connector.page_size: expected a whole number >= 1"),
    ({**GOOD, "objects": ["tickets", "tickets"]}, "connector.objects: expected a list"),
    ({**GOOD, "tier": {"field": "x"}}, "connector.tier.field: expected a numeric id"),
    ({**GOOD, "tier": {"tag": "x"}}, "connector.tier.tag: unknown key (known: default, field)"),
])
def test_a_schema_names_the_path_of_a_wrong_setting(settings, message):
    with pytest.raises(ValueError) as info:
        SCHEMA.check(settings)
    assert str(info.value).startswith(message)


def test_a_schema_marks_its_secrets():
    assert SCHEMA.secrets == {"token"}
    assert "type" in SCHEMA.keys and SCHEMA["mode"].default == "email"


def test_the_documented_keys_are_the_first_column_of_the_key_table():
    page = ("| right | why |\n|---|---|\n| `SeeQueue` | read |\n\n"
            "| key | default | meaning |\n|---|---|---|\n| `url` | required | base |\n"
            "| `tags_field`, `tier_field` | `Tags` | fields |\n\nafter `other`\n")
    assert documented_keys(page) == {"url", "tags_field", "tier_field"}


# -- name map and notices ------------------------------------------------------------------

def test_a_name_map_names_ids_and_writes_names_back():
    groups = NameMap("groups", "group_id", {48: "support"}, vendor="Acme")
    notices: list[str] = []
    assert groups.read(48, notices) == "support" and notices == []
    assert groups.read(49, notices) == "49"
    assert notices == ["unknown group_id 49: read as '49' (name it in the connector's groups "
                       "setting)"]
    assert groups.write("support") == 48 and groups.write("50") == 50
    assert groups.write("") is None
    with pytest.raises(ValueError, match="no Acme group_id for 'sales'"):
        groups.write("sales")


def test_a_name_map_speaks_the_vendors_words_for_a_name_without_an_id():
    groups = NameMap("groups", "group", {1: "support"}, "Zendesk",
                     unnamed="{attribute} {name!r} has no Zendesk id: map it in the "
                     "connector's {setting} setting")
    assert groups.name(1) == "support" and groups.name(2) == "2" and groups.name(None) == ""
    with pytest.raises(ValueError, match="group 'sales' has no Zendesk id: map it in the "
                                         "connector's groups setting"):
        groups.write("sales")


def test_without_names_an_id_is_its_own_name_without_a_notice():
    notices: list[str] = []
    assert NameMap("agents", "responder_id").read(7, notices) == "7" and notices == []


def test_notices_say_each_thing_once_per_fetch_and_again_in_the_next():
    priorities = ValueMap("priority", {1: "low"}, "normal")
    first = Notices()
    priorities.read(9, first)
    priorities.read(9, first)
    assert len(first.take()) == 1 and first.take() == []
    priorities.read(9, first)
    assert first.take() == []  # said already in this fetch
    second = Notices()  # the next run's fetch
    priorities.read(9, second)
    assert second.take() == ["unknown priority 9: read as 'normal' (map it in the connector's "
                             "priority_map setting)"]


# -- paging ------------------------------------------------------------------------------

def test_numbered_pages_end_at_a_short_page():
    data = list(range(7))
    asked: list[int] = []

    def read(page: int) -> list[int]:
        asked.append(page)
        return data[(page - 1) * 3:page * 3]

    assert list(numbered(read, 3, "acme")) == [[0, 1, 2], [3, 4, 5], [6]]
    assert asked == [1, 2, 3]


def test_numbered_pages_of_exactly_full_pages_read_one_empty_page_more():
    assert list(numbered(lambda page: [page] if page == 1 else [], 1, "acme")) == [[1], []]


def test_a_server_that_ignores_the_page_number_is_refused_not_read_for_ever():
    with pytest.raises(LoopDetected, match="acme: the API returned the same page"):
        list(numbered(lambda page: [1, 2], 2, "acme"))


def test_page_numbers_restart_for_a_reanchored_query():
    pages = PageNumbers("acme")
    pages.advance(True)
    assert pages.page == 2
    pages.restart()
    assert pages.page == 1 and pages.more
    pages.advance(False)
    assert not pages.more


def test_short_pages_restart_forgets_the_last_page():
    pages = ShortPages("acme", 2)
    pages.advance([1, 2])
    pages.restart()
    pages.advance([1, 2])  # the same items, from a new query: not a loop
    assert pages.page == 2


def test_tokens_refuse_a_repeated_token_within_a_query_only():
    tokens = Tokens("acme")
    tokens.advance("a")
    with pytest.raises(LoopDetected):
        tokens.advance("a")
    tokens.restart()
    assert tokens.token is None
    tokens.advance("a")
    tokens.advance(None)
    assert not tokens.more
