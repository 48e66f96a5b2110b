"""The Request Tracker 5 connector against REST2 payloads recorded from a real RT 5.0.3
(tests/fixtures/rt/, timestamps set to a story), served by `responses`: TicketSQL windows,
paging, edge de-duplication, history paging, If-Match and 412, refusals in a 200, comments,
secrets, and a sync end to end through the CLI."""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import responses

from conftest import Waits, act, at, bench_script, cli, cond, iso, rule
from sla_sync import connector
from sla_sync.connector import ConflictError, ConnectorError, RecordGone, open_connector
from sla_sync.connector.http import HeaderToken, HttpClient
from sla_sync.connector.model import ChangeSet, StatusChange
from sla_sync.connector.rt import RT, Mark, Options
from sla_sync.sync_state import StateStore

URL = "https://rt.example.com"
API = f"{URL}/REST/2.0"
TOKEN = "1-52-8d2b6c1f0e9a47b3a5c4d7e6f8091a2b"  # the secret: never in a message or a log
FIXTURES = Path(__file__).parent / "fixtures" / "rt"
NOW = at("2026-03-02 10:20")
HISTORY = re.compile(rf"{re.escape(API)}/ticket/(\d+)/history")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def rt(waits: Waits | None = None, **settings: Any) -> RT:
    waits = waits or Waits()
    client = HttpClient(API, auth=HeaderToken("token", TOKEN), name="rt", sleep=waits.sleep,
                        clock=waits.clock, max_attempts=4)
    return RT(client, Options.from_settings(settings), URL)


def ticket(ticket_id: int, updated: str, **fields: Any) -> dict[str, Any]:
    """A search result item like recorded ticket 1, with another id and LastUpdated."""
    item = copy.deepcopy(fixture("tickets_page_three_tickets")["items"][0])
    item.update(id=str(ticket_id), _url=f"{API}/ticket/{ticket_id}", LastUpdated=updated,
                **fields)
    return item


def search_page(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"count": len(items), "page": 1, "pages": 1, "per_page": 100, "total": len(items),
            "items": items}


def short_history(request: Any) -> tuple[int, dict[str, str], str]:
    """Any ticket's history: one Create transaction, one short page."""
    ticket_id = int(HISTORY.match(request.url).group(1))  # type: ignore[union-attr]
    body = fixture("history_ticket_1")
    for n, item in enumerate(body["items"]):
        item["id"] = str(1000 * ticket_id + n)
    return 200, {}, json.dumps(body)


def serve_histories() -> None:
    responses.add_callback(responses.GET, HISTORY, callback=short_history)


def serve_recorded_page() -> None:
    responses.get(f"{API}/tickets", json=fixture("tickets_page_three_tickets"))
    for n in (1, 2, 3):
        responses.get(f"{API}/ticket/{n}/history", json=fixture(f"history_ticket_{n}"))


def query_of(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlparse(call.request.url).query)


def calls(method: str, path: str) -> list[Any]:
    return [c for c in responses.calls
            if c.request.method == method and urlparse(c.request.url).path == path]


# -- reading -------------------------------------------------------------------------------

@responses.activate
def test_a_first_read_maps_every_ticket_to_a_record() -> None:
    serve_recorded_page()
    pages = list(rt().fetch(None))
    assert len(pages) == 1 and not pages[0].problems and not pages[0].notices
    new, answered, resolved = pages[0].records
    assert (new.id, new.status, new.priority, new.tier, new.group, new.assignee) == \
        ("1", "new", "normal", "gold", "support", "")
    assert new.tags == ("printer", "vip-customer")
    assert new.created_at == at("2026-03-02 09:00") and new.updated_at == at("2026-03-02 09:00")
    assert new.status_history == () and new.first_response_at is None and new.solved_at is None
    assert new.custom == {"requestors": ["carol@example.com"], "custom_fields": {}}
    assert new.url == "https://rt.example.com/Ticket/Display.html?id=1"
    assert (answered.status, answered.priority, answered.group) == ("open", "high", "billing")
    assert answered.first_response_at == at("2026-03-02 09:40")  # alice, not the requestor
    assert answered.status_history == (StatusChange(at("2026-03-02 09:40"), "open"),)
    assert (resolved.status, resolved.priority, resolved.assignee, resolved.group) == \
        ("solved", "urgent", "bob", "tier2")
    assert resolved.escalation_level == 1 and resolved.tags == ("sla_breach",)
    assert resolved.status_history == (StatusChange(at("2026-03-02 08:30"), "pending"),
                                       StatusChange(at("2026-03-02 10:00"), "solved"))
    assert resolved.solved_at == at("2026-03-02 10:00")
    assert json.loads(pages[0].cursor or "") == {"updated": "2026-03-02 10:00:00", "ids": ["3"]}
    assert len(responses.calls) == 4  # one search, one history page per ticket


def serve_conversation() -> None:
    """Ticket 5 as recorded from RT 5.0.3: alice answered carol, carol replied by email,
    alice commented, took the ticket and moved it to billing with 25 minutes worked, carol
    wrote again."""
    responses.get(f"{API}/tickets", json=fixture("tickets_ticket_5_conversation"))
    responses.get(f"{API}/ticket/5/history", json=fixture("history_ticket_5_conversation"))


@responses.activate
def test_the_conversation_owner_and_queue_changes_and_time_worked_come_from_the_history(
        ) -> None:
    serve_conversation()
    responses.get(f"{API}/user/6", json=fixture("user_6_nobody"))
    responses.get(f"{API}/queue/3", json=fixture("check_queue_3_support"))
    connector = rt()
    [page] = list(connector.fetch(None))
    [record] = page.records
    assert record.messages is not None
    assert [(m.at, m.author, m.public) for m in record.messages] == [
        (at("2026-03-02 08:00"), "customer", True),  # the request (Create)
        (at("2026-03-02 08:20"), "agent", True),  # alice's Correspond
        (at("2026-03-02 08:40"), "customer", True),  # carol's emailed reply
        (at("2026-03-02 08:45"), "agent", False),  # alice's Comment
        (at("2026-03-02 09:10"), "customer", True)]
    assert record.first_response_at == at("2026-03-02 08:20")
    assert record.assignment_history is not None
    assert [(a.at, a.group, a.assignee) for a in record.assignment_history] == [
        (at("2026-03-02 08:00"), "support", ""),  # Set Owner's old value 6 is Nobody
        (at("2026-03-02 08:50"), "support", "alice"),  # its new value is the owner now
        (at("2026-03-02 08:55"), "billing", "alice")]  # Set Queue 3 -> 4 (the queue now)
    assert record.worked_seconds == 25 * 60
    # One search, one history page, and user 6 and queue 3 named once: the second read of
    # the ticket asks for no name again.
    assert len(responses.calls) == 4
    list(connector.fetch(None))
    assert len(responses.calls) == 6


@responses.activate
def test_an_owner_rt_does_not_name_to_the_api_user_leaves_no_assignment_history() -> None:
    serve_conversation()
    responses.get(f"{API}/user/6", status=403, json={"message": "Forbidden"})
    responses.get(f"{API}/queue/3", json=fixture("check_queue_3_support"))
    [page] = list(rt().fetch(None))
    [record] = page.records
    assert record.assignment_history is None  # never a guess
    assert record.messages is not None and len(record.messages) == 5
    assert [n for n in page.notices if "assignment history" in n]


@responses.activate
def test_a_ticket_without_changes_of_owner_or_queue_has_them_since_creation() -> None:
    serve_recorded_page()
    new, answered, _ = next(rt().fetch(None)).records
    assert new.assignment_history is not None
    assert [(a.at, a.group, a.assignee) for a in new.assignment_history] == [
        (at("2026-03-02 09:00"), "support", "")]
    assert answered.messages is not None
    assert [(m.at, m.author, m.public) for m in answered.messages] == [
        (at("2026-03-02 09:30"), "customer", True), (at("2026-03-02 09:40"), "agent", True),
        (at("2026-03-02 09:45"), "agent", False)]  # created by alice: still the request
    assert new.worked_seconds is None  # recorded without TimeWorked: not given, not 0
    assert len(responses.calls) == 4  # no name asked: the ticket says them


@responses.activate
def test_the_search_is_ticketsql_on_lastupdated_in_rts_sql_form_ordered_oldest_first() -> None:
    responses.get(f"{API}/tickets", json=fixture("tickets_empty"))
    cursor = Mark(at("2026-03-02 10:00"), frozenset({"3"})).encode()
    pages = list(rt().fetch(cursor))
    assert pages[0].records == [] and pages[0].cursor == cursor
    query = query_of(responses.calls[0])
    # The second before the edge: tickets updated later in the edge second are read too.
    assert query["query"] == ["LastUpdated > '2026-03-02 09:59:59'"]
    assert query["orderby"] == ["LastUpdated", "id"] and query["order"] == ["ASC", "ASC"]
    assert query["per_page"] == ["100"] and query["page"] == ["1"]
    assert query["fields[Queue]"] == ["Name"]
    assert set(query["fields"][0].split(",")) >= {"Status", "Priority", "Queue", "Owner",
                                                  "Created", "LastUpdated", "CustomFields"}
    assert "T" not in query["query"][0] and "Z" not in query["query"][0]


@responses.activate
def test_the_configured_query_narrows_the_window_and_a_first_read_takes_everything() -> None:
    responses.get(f"{API}/tickets", json=fixture("tickets_empty"))
    connector = rt(query="Queue = 'support' OR Queue = 'tier2'")
    list(connector.fetch(None))
    list(connector.fetch(Mark(at("2026-03-02 10:00")).encode()))
    first, later = (query_of(c)["query"][0] for c in responses.calls)
    assert first == "Queue = 'support' OR Queue = 'tier2'"
    assert later == "(Queue = 'support' OR Queue = 'tier2') AND LastUpdated > '2026-03-02 09:59:59'"


@responses.activate
def test_the_window_is_written_in_the_api_users_timezone_when_it_is_not_utc() -> None:
    responses.get(f"{API}/tickets", json=fixture("tickets_empty"))
    list(rt(timezone="Europe/Berlin").fetch(Mark(at("2026-03-02 10:00")).encode()))
    assert query_of(responses.calls[0])["query"] == ["LastUpdated > '2026-03-02 10:59:59'"]


@responses.activate
def test_tickets_already_read_in_the_edge_second_are_not_read_again() -> None:
    responses.get(f"{API}/tickets", json=search_page([
        ticket(3, "2026-03-02T10:00:00Z"), ticket(5, "2026-03-02T10:00:00Z"),
        ticket(6, "2026-03-02T10:00:07Z")]))
    serve_histories()
    cursor = Mark(at("2026-03-02 10:00"), frozenset({"3"})).encode()
    page = next(rt().fetch(cursor))
    assert [r.id for r in page.records] == ["5", "6"]
    assert json.loads(page.cursor or "") == {"updated": "2026-03-02 10:00:07", "ids": ["6"]}
    assert [urlparse(c.request.url).path for c in responses.calls[1:]] == \
        ["/REST/2.0/ticket/5/history", "/REST/2.0/ticket/6/history"]


@responses.activate
def test_a_ticket_updated_in_the_second_rt_is_still_in_stays_out_of_the_cursor() -> None:
    # It may be updated again within that second, with the same LastUpdated: the next read
    # must take it again.
    responses.get(f"{API}/tickets", headers={"Date": "Mon, 02 Mar 2026 10:00:07 GMT"},
                  json=search_page([ticket(5, "2026-03-02T10:00:00Z"),
                                    ticket(6, "2026-03-02T10:00:07Z")]))
    serve_histories()
    page = next(rt().fetch(None))
    assert [r.id for r in page.records] == ["5", "6"]
    assert json.loads(page.cursor or "") == {"updated": "2026-03-02 10:00:00", "ids": ["5"]}


@responses.activate
def test_a_read_over_several_pages_starts_each_page_at_the_new_edge() -> None:
    first = [ticket(n, f"2026-03-02T09:{n // 2:02d}:00Z") for n in range(1, 101)]
    responses.get(f"{API}/tickets", json=search_page(first))
    responses.get(f"{API}/tickets", json=search_page([
        ticket(100, "2026-03-02T09:50:00Z"), ticket(101, "2026-03-02T09:55:00Z")]))
    serve_histories()
    pages = list(rt().fetch(None))
    assert [len(p.records) for p in pages] == [100, 1]
    assert json.loads(pages[0].cursor or "") == {"updated": "2026-03-02 09:50:00",
                                                 "ids": ["100"]}
    assert json.loads(pages[1].cursor or "") == {"updated": "2026-03-02 09:55:00",
                                                 "ids": ["101"]}
    searches = calls("GET", "/REST/2.0/tickets")
    assert len(searches) == 2  # one request per page
    # Not page=2 of the first query (tickets updated meanwhile would shift it): page 1 of a
    # query from the edge the first page reached.
    assert query_of(searches[1])["query"] == ["LastUpdated > '2026-03-02 09:49:59'"]
    assert query_of(searches[1])["page"] == ["1"]


@responses.activate
def test_a_full_page_of_tickets_sharing_one_second_is_paged_through() -> None:
    same = [ticket(n, "2026-03-02T09:00:00Z") for n in range(1, 101)]
    responses.get(f"{API}/tickets", json=search_page(same))
    responses.get(f"{API}/tickets", json=search_page([ticket(101, "2026-03-02T09:00:00Z")]))
    serve_histories()
    pages = list(rt().fetch(Mark(at("2026-03-02 09:00")).encode()))
    assert [len(p.records) for p in pages] == [100, 1]
    second = query_of(calls("GET", "/REST/2.0/tickets")[1])
    assert second["query"] == ["LastUpdated > '2026-03-02 08:59:59'"] and second["page"] == ["2"]
    assert len(json.loads(pages[1].cursor or "")["ids"]) == 101


@responses.activate
def test_the_history_is_read_page_by_page_until_a_page_comes_back_short() -> None:
    responses.get(f"{API}/tickets", json=search_page([ticket(4, "2026-03-02T10:00:00Z")]))
    responses.get(f"{API}/ticket/4/history", json=fixture("history_ticket_4_page_1_full"))
    responses.get(f"{API}/ticket/4/history", json=fixture("history_ticket_4_page_2_short"))
    record = next(rt().fetch(None)).records[0]
    pages = calls("GET", "/REST/2.0/ticket/4/history")
    assert [query_of(c)["page"] for c in pages] == [["1"], ["2"]]
    assert all(query_of(c)["per_page"] == ["100"] for c in pages)
    # The ticket was opened by the last transaction, on the second page.
    assert [c.status for c in record.status_history] == ["open"]


@responses.activate
def test_a_malformed_ticket_is_skipped_and_reported_while_the_rest_are_read() -> None:
    responses.get(f"{API}/tickets", json=search_page([
        ticket(7, "2026-03-02T09:00:00Z", Created="yesterday"),
        ticket(8, "2026-03-02T09:01:00Z", CustomFields=[
            {"name": "Escalation level", "values": ["two"], "id": "4", "type": "customfield"}]),
        {"type": "ticket", "LastUpdated": "2026-03-02T09:02:00Z"},
        ticket(9, "2026-03-02T09:03:00Z")]))
    serve_histories()
    page = next(rt().fetch(None))
    assert [r.id for r in page.records] == ["9"]
    assert [str(p) for p in page.problems] == [
        "record '7': Created: 'yesterday' is not an ISO 8601 timestamp",
        "record '8': custom field 'Escalation level': 'two' is not a whole number",
        "record #2: has no ticket id"]


@responses.activate
def test_unknown_priorities_and_statuses_fall_back_with_one_notice_each() -> None:
    responses.get(f"{API}/tickets", json=search_page([
        ticket(1, "2026-03-02T09:00:00Z", Priority="hot", Status="waiting-on-vendor"),
        ticket(2, "2026-03-02T09:01:00Z", Priority="hot", Status="waiting-on-vendor"),
        ticket(3, "2026-03-02T09:02:00Z", Priority="60")]))
    serve_histories()
    page = next(rt().fetch(None))
    assert [(r.priority, r.status) for r in page.records] == \
        [("normal", "open"), ("normal", "open"), ("normal", "new")]
    assert page.notices == [
        "unknown status 'waiting-on-vendor': read as 'open' (map it in the connector's "
        "status_map setting)",
        "unknown priority 'hot': read as 'normal' (map it in the connector's priority_map "
        "setting)"]


@responses.activate
def test_mapping_settings_extend_the_defaults() -> None:
    responses.get(f"{API}/tickets", json=search_page([
        ticket(1, "2026-03-02T09:00:00Z", Priority="95", Status="waiting-on-vendor")]))
    serve_histories()
    connector = rt(priority_map={"critical": 90}, status_map={"waiting-on-vendor": "hold"},
                   tags_field="Labels", tier_field=None)
    record = next(connector.fetch(None)).records[0]
    assert (record.priority, record.status, record.tier, record.tags) == \
        ("critical", "hold", "", ())
    assert record.custom["custom_fields"] == {"Tags": ["printer", "vip-customer"],
                                              "Tier": ["gold"]}


@responses.activate
def test_get_reads_one_ticket_by_id_and_none_when_rt_has_none() -> None:
    responses.get(f"{API}/tickets", json=search_page([ticket(1, "2026-03-02T09:00:00Z")]))
    responses.get(f"{API}/tickets", json=fixture("tickets_empty"))
    serve_histories()
    connector = rt()
    assert connector.get("1").priority == "normal"  # type: ignore[union-attr]
    assert connector.get("404") is None
    assert connector.get("not-a-ticket") is None
    assert [query_of(c)["query"] for c in calls("GET", "/REST/2.0/tickets")] == \
        [["id = 1"], ["id = 404"]]


@responses.activate
def test_the_directory_is_rts_enabled_users_with_their_address_and_time_zone() -> None:
    users = fixture("users_directory")
    users["items"].append({**users["items"][0], "Name": "dana", "EmailAddress": "",
                           "Timezone": "Mars/Olympus"})
    responses.get(f"{API}/users", json=users)
    found = rt().directory()
    assert found["alice"] == {"name": "alice", "email": "alice@sla-sync.test",
                              "timezone": "Europe/Berlin"}
    assert found["dana"] == {"name": "dana"}  # no address; a zone that is none: left out
    assert "bob" not in found  # disabled
    assert not {"Nobody", "RT_System"} & set(found)
    assert query_of(responses.calls[0])["fields"] == ["Name,EmailAddress,Timezone,Disabled"]
    assert len(responses.calls) == 1


# -- writing -------------------------------------------------------------------------------

def read_ticket_1(connector: RT) -> None:
    responses.get(f"{API}/tickets", json=search_page([ticket(1, "2026-03-02T09:00:00Z")]))
    responses.get(f"{API}/ticket/1/history", json=fixture("history_ticket_1"))
    list(connector.fetch(None))


ESCALATION = ChangeSet("1", base_updated_at=at("2026-03-02 09:00"),
                       fields={"priority": "urgent", "group": "tier2", "assignee": "bob"},
                       add_tags=("sla_breach",), escalation_level=1)


@responses.activate
def test_a_write_is_one_put_of_the_mapped_fields_if_matching_the_version_read() -> None:
    connector = rt()
    read_ticket_1(connector)
    responses.put(f"{API}/ticket/1", json=fixture("put_escalation_applied"))
    assert connector.apply(ESCALATION, NOW) is None
    put = responses.calls[-1].request
    assert (put.method, len(responses.calls)) == ("PUT", 3)  # no read before the write
    assert put.headers["If-Match"] == '"60"'  # RT's ETag: the newest transaction read
    assert json.loads(put.body) == {
        "Priority": 100, "Queue": "tier2", "Owner": "bob",
        "CustomFields": {"Tags": ["printer", "vip-customer", "sla_breach"],
                         "Escalation level": "1"}}


@responses.activate
def test_tags_are_merged_into_the_values_read_without_losing_a_persons_tag() -> None:
    connector = rt()
    read_ticket_1(connector)
    responses.put(f"{API}/ticket/1", json=["vip-customer is no longer a value for custom "
                                           "field Tags", "sla_breach added as a value for Tags"])
    connector.apply(ChangeSet("1", base_updated_at=at("2026-03-02 09:00"),
                              add_tags=("sla_breach", "PRINTER"),
                              remove_tags=("vip-customer",)), NOW)
    assert json.loads(responses.calls[-1].request.body) == \
        {"CustomFields": {"Tags": ["printer", "sla_breach"]}}


@responses.activate
def test_unassigning_sets_the_owner_to_nobody() -> None:
    connector = rt()
    read_ticket_1(connector)
    responses.put(f"{API}/ticket/1", json=["Ticket 1: Owner changed from bob to Nobody"])
    connector.apply(ChangeSet("1", fields={"assignee": ""}), NOW)
    assert json.loads(responses.calls[-1].request.body) == {"Owner": "Nobody"}


@responses.activate
def test_a_412_is_a_conflict_and_nothing_more_is_sent() -> None:
    connector = rt()
    read_ticket_1(connector)
    responses.put(f"{API}/ticket/1", status=412, json=fixture("put_precondition_failed"))
    with pytest.raises(ConflictError) as info:
        connector.apply(ChangeSet("1", base_updated_at=at("2026-03-02 09:00"),
                                  fields={"priority": "urgent"}, notes=("overdue",)), NOW)
    assert info.value.record_id == "1" and "412" in str(info.value)
    assert [c.request.method for c in responses.calls[2:]] == ["PUT"]


@responses.activate
def test_a_field_rt_refused_in_a_200_fails_the_write_for_that_ticket() -> None:
    connector = rt()
    read_ticket_1(connector)
    responses.put(f"{API}/ticket/1", json=fixture("put_owner_refused"))
    with pytest.raises(ConnectorError) as info:
        connector.apply(ChangeSet("1", base_updated_at=at("2026-03-02 09:00"),
                                  fields={"assignee": "alice", "priority": "urgent"},
                                  notes=("escalated",)), NOW)
    assert info.value.record_id == "1" and not info.value.retriable
    assert str(info.value) == ("rt: ticket 1: RT refused part of the change: Ticket 2: That "
                               "user may not own tickets in that queue")
    assert not calls("POST", "/REST/2.0/ticket/1/comment")  # a failed write adds no note


@responses.activate
def test_a_custom_field_value_rt_refused_fails_the_write_too() -> None:
    connector = rt()
    read_ticket_1(connector)
    responses.put(f"{API}/ticket/1", json=fixture("put_custom_field_refused"))
    with pytest.raises(ConnectorError, match="Input must match"):
        connector.apply(ChangeSet("1", escalation_level=2), NOW)


@responses.activate
def test_notes_are_comments_posted_after_a_put_that_only_checks_the_version() -> None:
    connector = rt()
    read_ticket_1(connector)
    responses.put(f"{API}/ticket/1", json=fixture("put_nothing"))
    responses.post(f"{API}/ticket/1/comment", status=201, json=fixture("comment_added"))
    connector.apply(ChangeSet("1", base_updated_at=at("2026-03-02 09:00"),
                              notes=("1: first response overdue", "second note")), NOW)
    put, *comments = responses.calls[2:]
    assert json.loads(put.request.body) == {} and put.request.headers["If-Match"] == '"60"'
    # Comments are internal in RT (correspondence would mail the requestor).
    assert [urlparse(c.request.url).path for c in comments] == ["/REST/2.0/ticket/1/comment"] * 2
    assert [json.loads(c.request.body) for c in comments] == [
        {"Content": "1: first response overdue", "ContentType": "text/plain"},
        {"Content": "second note", "ContentType": "text/plain"}]
    assert "If-Match" not in comments[0].request.headers


@responses.activate
def test_a_write_planned_on_an_earlier_run_reads_the_etag_first() -> None:
    responses.get(f"{API}/ticket/1", json=fixture("ticket_1"), headers={"ETag": '"60"'})
    responses.put(f"{API}/ticket/1", json=["Ticket 1: Priority changed from 'Normal' to "
                                           "'Urgent'"])
    rt().apply(ChangeSet("1", base_updated_at=at("2026-03-02 09:00"),
                         fields={"priority": "urgent"}), NOW)
    get, put = responses.calls
    assert (get.request.method, put.request.method) == ("GET", "PUT")
    assert put.request.headers["If-Match"] == '"60"'


@responses.activate
def test_a_ticket_updated_since_the_plan_is_a_conflict_before_any_write() -> None:
    responses.get(f"{API}/ticket/1", json={**fixture("ticket_1"),
                                           "LastUpdated": "2026-03-02T09:05:00Z"},
                  headers={"ETag": '"64"'})
    with pytest.raises(ConflictError, match="changed since it was read"):
        rt().apply(ChangeSet("1", base_updated_at=at("2026-03-02 09:00"),
                             fields={"priority": "urgent"}), NOW)
    assert [c.request.method for c in responses.calls] == ["GET"]


@responses.activate
def test_a_ticket_that_no_longer_exists_is_gone() -> None:
    responses.get(f"{API}/ticket/999", status=404, json=fixture("ticket_not_found"))
    with pytest.raises(RecordGone) as info:
        rt().apply(ChangeSet("999", fields={"priority": "urgent"}), NOW)
    assert info.value.record_id == "999"


@responses.activate
def test_a_missing_custom_field_is_reported_not_silently_ignored() -> None:
    connector = rt(tags_field="Labels")
    read_ticket_1(connector)
    with pytest.raises(ConnectorError, match="custom field 'Labels' is not applied"):
        connector.apply(ChangeSet("1", add_tags=("sla_breach",)), NOW)
    assert not calls("PUT", "/REST/2.0/ticket/1")


@responses.activate
def test_a_batch_with_one_refused_ticket_reports_that_ticket_only() -> None:
    connector = rt()
    responses.get(f"{API}/tickets", json=search_page(
        [ticket(1, "2026-03-02T09:00:00Z"), ticket(2, "2026-03-02T09:00:00Z")]))
    serve_histories()
    list(connector.fetch(None))
    responses.put(f"{API}/ticket/1", json=fixture("put_owner_refused"))
    responses.put(f"{API}/ticket/2", json=["Ticket 2: Priority changed from 'Normal' to "
                                           "'Urgent'"])
    results = connector.apply_many([ChangeSet("1", fields={"assignee": "alice"}),
                                    ChangeSet("2", fields={"priority": "urgent"})], NOW)
    assert [(r.record_id, r.error is None) for r in results] == [("1", False), ("2", True)]
    assert "may not own tickets" in str(results[0].error)


# -- HTTP failures and secrets -------------------------------------------------------------

@responses.activate
def test_a_429_waits_what_retry_after_says_then_reads() -> None:
    responses.get(f"{API}/tickets", status=429, headers={"Retry-After": "7"})
    responses.get(f"{API}/tickets", json=fixture("tickets_empty"))
    waits = Waits()
    assert next(rt(waits).fetch(None)).records == []
    assert waits.slept == [7.0]


@responses.activate
def test_a_5xx_storm_exhausts_the_retries_and_fails_retriably() -> None:
    responses.get(f"{API}/tickets", status=503)
    with pytest.raises(ConnectorError) as info:
        list(rt().fetch(None))
    assert info.value.retriable and info.value.record_id is None
    assert len(responses.calls) == 4


@responses.activate
def test_the_token_is_sent_as_rts_token_header_and_never_shown(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    responses.get(f"{API}/tickets", status=401, json={"message": "Unauthorized"})
    connector = rt()
    with pytest.raises(ConnectorError) as info:
        list(connector.fetch(None))
    assert responses.calls[0].request.headers["Authorization"] == f"token {TOKEN}"
    assert "authentication failed" in str(info.value) and info.value.record_id is None
    shown = " ".join([str(info.value), caplog.text, repr(connector.client.session.auth),
                      connector.identity])
    assert TOKEN not in shown and TOKEN[5:] not in shown


@pytest.mark.parametrize(("settings", "message"), [
    ({"token": "t", "url": URL, "api_key": "x"}, "connector.api_key: unknown setting"),
    ({"url": URL}, "connector.token: an RT auth token is required"),
    ({"token": "t", "url": "http://rt.example.com"}, "connector.url: plain http is accepted "
                                                     "for loopback addresses only"),
    ({"token": "t", "url": f"{URL}/REST/2.0"}, "connector.url: give RT's address"),
    ({"token": "t", "url": URL, "timezone": "Mars/Olympus"}, "connector.timezone:"),
    ({"token": "t", "url": URL, "priority_map": {"urgent": "100"}},
     "connector.priority_map.urgent: expected RT's priority number"),
    ({"token": "t", "url": URL, "priority_map": {"critical": 100}},
     "connector.priority_map: two priorities share an RT number"),
    ({"token": "t", "url": URL, "tags_field": ""}, "connector.tags_field:"),
])
def test_settings_are_checked_naming_the_key(settings, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        open_connector({"type": "rt", **settings}, Path("."))


def test_a_local_rt_on_loopback_may_use_plain_http() -> None:
    connector = RT.from_settings({"type": "rt", "url": "http://127.0.0.1:8080/", "token": "t"},
                                 Path("."))
    assert connector.identity == "rt:http://127.0.0.1:8080"
    assert connector.client.url("tickets") == "http://127.0.0.1:8080/REST/2.0/tickets"
    assert connector.capabilities.safe_update and not connector.capabilities.bulk_writes


# -- a sync end to end through the CLI -----------------------------------------------------

POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"},
              "pause_statuses": ["pending"]}],
    "rules": [rule("breach", cond("first_response_breached", "is_true"),
                   act("set_priority", priority="urgent"), act("add_tag", tag="sla_breach"),
                   act("escalate", level=1, group="tier2", assignee="bob",
                       note="{id}: first response overdue"))],
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setitem(connector.CONNECTORS, "rt", "sla_sync.connector.rt.RT")
    monkeypatch.setenv("RT_TOKEN", TOKEN)
    monkeypatch.setattr("sla_sync.connector.http.wait", lambda seconds: None)
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    config = tmp_path / "config.yaml"
    config.write_text(f"connector:\n  type: rt\n  url: {URL}\n  token: ${{RT_TOKEN}}\n"
                      "  sandbox: true\npolicy: policy.json\nstate: state.db\nfirst_run: act\n")
    return config


def cursor_of(config: Path) -> str | None:
    return StateStore(config.parent / "state.db").cursor(f"rt:{URL}")


@responses.activate
def test_a_sync_writes_each_breached_ticket_once_and_a_rerun_writes_nothing(project) -> None:
    serve_recorded_page()
    responses.put(f"{API}/ticket/1", json=fixture("put_escalation_applied"))
    responses.post(f"{API}/ticket/1/comment", status=201, json=fixture("comment_added"))
    first = cli("run", "--config", str(project), "--now", iso("2026-03-02 10:20"))
    assert first.exit_code == 0, first.output
    assert [(c.request.method, urlparse(c.request.url).path) for c in responses.calls] == [
        ("GET", "/REST/2.0/tickets"), ("GET", "/REST/2.0/ticket/1/history"),
        ("GET", "/REST/2.0/ticket/2/history"), ("GET", "/REST/2.0/ticket/3/history"),
        ("PUT", "/REST/2.0/ticket/1"), ("POST", "/REST/2.0/ticket/1/comment")]
    assert json.loads(responses.calls[4].request.body) == {
        "Priority": 100, "Queue": "tier2", "Owner": "bob",
        "CustomFields": {"Tags": ["printer", "vip-customer", "sla_breach"],
                         "Escalation level": "1"}}
    assert json.loads(responses.calls[5].request.body)["Content"] == \
        "1: first response overdue"
    assert json.loads(cursor_of(project) or "") == {"updated": "2026-03-02 10:00:00",
                                                    "ids": ["3"]}
    sent = len(responses.calls)
    second = cli("run", "--config", str(project), "--now", iso("2026-03-02 10:20"))
    assert second.exit_code == 0
    assert [c.request.method for c in responses.calls[sent:]] == ["GET"]  # one search


@responses.activate
def test_a_conflict_is_reread_and_replanned_keeping_the_other_writers_tag(project) -> None:
    responses.get(f"{API}/tickets", json=search_page([ticket(1, "2026-03-02T09:00:00Z")]))
    changed = ticket(1, "2026-03-02T10:19:00Z", CustomFields=[
        {"name": "Tags", "values": ["printer", "vip-customer", "billing-dispute"], "id": "2",
         "type": "customfield"},
        {"name": "Escalation level", "values": [], "id": "4", "type": "customfield"}])
    responses.get(f"{API}/tickets", json=search_page([changed]))
    history = fixture("history_ticket_1")
    responses.get(f"{API}/ticket/1/history", json=history)
    history_after = copy.deepcopy(history)
    history_after["items"].append({**history["items"][0], "id": "75", "Type": "CustomField",
                                   "Created": "2026-03-02T10:19:00Z"})
    history_after["count"] = len(history_after["items"])
    responses.get(f"{API}/ticket/1/history", json=history_after)
    responses.put(f"{API}/ticket/1", status=412, json=fixture("put_precondition_failed"))
    responses.put(f"{API}/ticket/1", json=fixture("put_escalation_applied"))
    responses.post(f"{API}/ticket/1/comment", status=201, json=fixture("comment_added"))
    result = cli("run", "--config", str(project), "--now", iso("2026-03-02 10:20"))
    assert result.exit_code == 0, result.output
    puts = calls("PUT", "/REST/2.0/ticket/1")
    assert [p.request.headers["If-Match"] for p in puts] == ['"60"', '"75"']
    assert json.loads(puts[1].request.body)["CustomFields"]["Tags"] == \
        ["printer", "vip-customer", "billing-dispute", "sla_breach"]
    assert query_of(calls("GET", "/REST/2.0/tickets")[1])["query"] == ["id = 1"]


@responses.activate
def test_a_5xx_storm_fails_the_run_and_keeps_the_cursor(project) -> None:
    serve_recorded_page()
    responses.put(f"{API}/ticket/1", json=fixture("put_escalation_applied"))
    responses.post(f"{API}/ticket/1/comment", status=201, json=fixture("comment_added"))
    cli("run", "--config", str(project), "--now", iso("2026-03-02 09:10"))
    before = cursor_of(project)
    responses.replace(responses.GET, f"{API}/tickets", status=503)
    result = cli("run", "--config", str(project), "--now", iso("2026-03-02 10:20"))
    assert result.exit_code == 1
    assert "still failing after retries (HTTP 503)" in result.stderr
    assert cursor_of(project) == before


# -- comments whose answer was lost ----------------------------------------------------------

def comment_transaction(txn_id: int, created: str) -> dict[str, Any]:
    """A Comment transaction as recorded in history_ticket_2.json, with another id and time."""
    item = copy.deepcopy(fixture("history_ticket_2")["items"][-1])
    item.update(id=str(txn_id), Created=created, _url=f"{API}/transaction/{txn_id}")
    return item


def attachments(text: str) -> dict[str, Any]:
    """GET /transaction/{id}/attachments?fields=Content,ContentType: REST2 collection items;
    an attachment's Content is base64."""
    return {"count": 1, "page": 1, "per_page": 100, "total": 1, "items": [{
        "type": "attachment", "id": "301", "_url": f"{API}/attachment/301",
        "ContentType": "text/plain",
        "Content": base64.b64encode(text.encode()).decode()}]}


@responses.activate
def test_read_back_reads_the_comments_since_the_change_was_planned() -> None:
    responses.get(f"{API}/tickets", json=search_page([ticket(1, "2026-03-02T10:20:00Z")]))
    history = fixture("history_ticket_1")
    history["items"] += [comment_transaction(80, "2026-03-02T08:30:00Z"),
                         comment_transaction(81, "2026-03-02T10:20:00Z")]
    responses.get(f"{API}/ticket/1/history", json=history)
    responses.get(f"{API}/transaction/81/attachments",
                  json=attachments("1: first response overdue"))
    record = rt().read_back("1", at("2026-03-02 09:00"))
    assert record is not None
    assert [(n.at, n.text) for n in record.notes] == [(at("2026-03-02 10:20"),
                                                       "1: first response overdue")]
    # The comment from before the plan is not read: one request per comment since.
    assert [urlparse(c.request.url).path for c in responses.calls][-1] == \
        "/REST/2.0/transaction/81/attachments"
    assert len(calls("GET", "/REST/2.0/transaction/80/attachments")) == 0


@responses.activate
def test_a_comment_whose_answer_was_lost_is_recognised_not_posted_again(project) -> None:
    serve_recorded_page()
    responses.put(f"{API}/ticket/1", json=fixture("put_escalation_applied"))
    responses.post(f"{API}/ticket/1/comment",
                   body=requests.ConnectionError("Connection aborted: RemoteDisconnected"))
    # Read back: the ticket as the escalation left it, its history with the comment.
    escalated = ticket(1, "2026-03-02T10:20:00Z", Priority="100", Owner={"id": "bob"},
                       Queue={"Name": "tier2"}, CustomFields=[
                           {"name": "Tags", "values": ["printer", "vip-customer",
                                                       "sla_breach"], "id": "2",
                            "type": "customfield"},
                           {"name": "Escalation level", "values": ["1"], "id": "4",
                            "type": "customfield"}])
    responses.get(f"{API}/tickets", json=search_page([escalated]))
    history = fixture("history_ticket_1")
    history["items"].append(comment_transaction(90, "2026-03-02T10:20:00Z"))
    responses.get(f"{API}/ticket/1/history", json=history)
    responses.get(f"{API}/transaction/90/attachments",
                  json=attachments("1: first response overdue"))
    result = cli("run", "--config", str(project), "--now", iso("2026-03-02 10:20"))
    assert result.exit_code == 0, result.output
    assert "read back, the record shows the write" in result.stderr
    assert len(calls("POST", "/REST/2.0/ticket/1/comment")) == 1, "never resent"
    assert StateStore(project.parent / "state.db").pending() == []


# -- requests per sync (bench/bench_requests.py's scenario, counted) ---------------------------

def test_a_sync_costs_a_search_per_page_a_history_per_ticket_a_put_per_write_a_post_per_note():
    bench = bench_script("bench_requests")
    count = bench.count_rt(bench.Scenario(450, 250, 120))
    # The tickets read in this run are written on the version (ETag) that read gave: no GET.
    assert count.made == {"search": 5, "history": 450, "PUT": 250, "comment": 120}
    assert count.made == count.minimum
