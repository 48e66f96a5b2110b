"""The HubSpot connector against recorded CRM v3 payloads (tests/fixtures/hubspot/), served by
`responses`: search paging and the cursor, mapping, retries, batch writes, conflicts, notes,
and a whole `sla-sync run` counting its requests."""

from __future__ import annotations

import json
import logging
import re
import types
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from conftest import Waits, at, bench_script, cli, iso
from sla_sync.connector import ConflictError, ConnectorError, RecordGone, open_connector
from sla_sync.connector import hubspot as hubspot_module
from sla_sync.connector.http import HeaderToken, HttpClient
from sla_sync.connector.hubspot import HubSpot, Options
from sla_sync.connector.model import Assignment, ChangeSet, Message
from sla_sync.sync_state import StateStore

BASE = "https://acme.example.com"
TOKEN = "pat-eu1-3f1c2a9e-7d41-4b7d-9c1e-5ad1c0ffee42"
FIXTURES = Path(__file__).parent / "fixtures" / "hubspot"
NOW = at("2026-03-02 10:00")
CLOCK = NOW.timestamp()  # what the connector's clock says in these tests
SEARCH = f"{BASE}/crm/v3/objects/tickets/search"
BATCH_READ = f"{BASE}/crm/v3/objects/tickets/batch/read"
BATCH_UPDATE = f"{BASE}/crm/v3/objects/tickets/batch/update"
NOTES = f"{BASE}/crm/v3/objects/notes/batch/create"
OWNERS = f"{BASE}/crm/v3/owners"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def millis(text: str) -> int:
    return int(at(text).timestamp() * 1000)


def make(waits: Waits | None = None, **settings: Any) -> HubSpot:
    options = Options.parse({"type": "hubspot", "url": BASE, "token": TOKEN, **settings})
    client = HttpClient(BASE, auth=HeaderToken("Bearer", TOKEN), name="hubspot",
                        sleep=(waits or Waits()).sleep, clock=lambda: 0.0)
    return HubSpot(client, options, clock=lambda: CLOCK)


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def sent(api: responses.RequestsMock, url: str) -> list[Any]:
    """The JSON bodies of the requests sent to `url`, in order."""
    return [json.loads(call.request.body) for call in api.calls
            if call.request.url.split("?")[0] == url]


def change(record_id: str, base: str | None = None, **fields: Any) -> ChangeSet:
    return ChangeSet(record_id=record_id,
                     base_updated_at=at(base) if base else None, **fields)


# -- reading --------------------------------------------------------------------------------

def test_an_incremental_read_sends_one_search_per_page_anchored_on_the_last_modified_time(api):
    api.post(SEARCH, json=fixture("search_tickets_page_1.json"))
    api.post(SEARCH, json=fixture("search_tickets_page_2_end_of_stream.json"))
    api.get(OWNERS, json=fixture("owners.json"))
    pages = list(make().fetch(None))

    assert [[r.id for r in page.records] for page in pages] == [
        ["tickets:512", "tickets:513", "tickets:514"], ["tickets:515", "tickets:516"]]
    first, second = sent(api, SEARCH)
    window_end = {"propertyName": "hs_lastmodifieddate", "operator": "LT",
                  "value": str(millis("2026-03-02 09:59:30"))}  # 30 s settling time
    assert first["filterGroups"] == [{"filters": [window_end]}]
    assert first["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    assert first["limit"] == 200 and "after" not in first
    assert {"hs_pipeline_stage", "hs_ticket_priority", "sla_tags", "hs_v2_date_entered_3"} \
        <= set(first["properties"])
    # Page 2 is a new query from the last modified time seen (not offset 3) that leaves out
    # ticket 514, read at that very millisecond (dropped too if it came back); 515 shares
    # the millisecond and is kept.
    assert second["filterGroups"] == [{"filters": [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE",
         "value": str(millis("2026-03-02 09:20"))}, window_end,
        {"propertyName": "hs_object_id", "operator": "NOT_IN", "values": ["514"]}]}]
    assert "after" not in second
    assert len(sent(api, SEARCH)) == 2 and len(api.calls) == 3  # + the owners, once


def test_the_cursor_of_a_page_resumes_with_the_query_of_the_next_page(api):
    api.post(SEARCH, json=fixture("search_tickets_page_1.json"))
    api.post(SEARCH, json=fixture("search_tickets_page_2_end_of_stream.json"))
    api.get(OWNERS, json=fixture("owners.json"))
    first_page = next(make().fetch(None))
    assert json.loads(first_page.cursor or "") == {
        "tickets": {"since": millis("2026-03-02 09:20"), "edge": ["514"]}}

    api.calls.reset()
    pages = list(make().fetch(first_page.cursor))
    assert [[r.id for r in page.records] for page in pages] == [["tickets:515", "tickets:516"]]
    [query] = sent(api, SEARCH)
    assert query["filterGroups"][0]["filters"][0]["value"] == str(millis("2026-03-02 09:20"))
    assert json.loads(pages[-1].cursor or "") == {
        "tickets": {"since": millis("2026-03-02 09:45"), "edge": ["516"]}}


def test_a_read_with_nothing_new_keeps_the_cursor(api):
    api.post(SEARCH, json=fixture("search_tickets_nothing_new.json"))
    cursor = json.dumps({"tickets": {"since": millis("2026-03-02 09:45"), "edge": ["516"]}},
                        separators=(",", ":"))
    [page] = list(make().fetch(cursor))
    assert page.records == [] and page.cursor == cursor


def test_more_than_a_page_sharing_one_millisecond_is_paged_with_after(api):
    api.post(SEARCH, json=fixture("search_tickets_page_1_one_millisecond.json"))
    api.post(SEARCH, json=fixture("search_tickets_page_2_one_millisecond_end_of_stream.json"))
    pages = list(make().fetch(json.dumps({"tickets": {"since": millis("2026-03-02 09:00"),
                                                      "edge": []}})))
    assert [[r.id for r in p.records] for p in pages] == [
        ["tickets:600", "tickets:601"], ["tickets:602"]]
    first, second = sent(api, SEARCH)
    assert second["after"] == "2" and second["filterGroups"] == first["filterGroups"]
    assert json.loads(pages[-1].cursor or "")["tickets"]["edge"] == ["600", "601", "602"]


def test_tickets_map_to_the_shared_vocabulary(api):
    api.post(SEARCH, json=fixture("search_tickets_page_1.json"))
    api.post(SEARCH, json=fixture("search_tickets_page_2_end_of_stream.json"))
    api.get(OWNERS, json=fixture("owners.json"))
    records = {r.id: r for page in make().fetch(None) for r in page.records}

    pending = records["tickets:514"]
    assert (pending.kind, pending.status, pending.priority, pending.channel, pending.tier) == \
        ("ticket", "pending", "low", "phone", "standard")
    assert pending.tags == ("billing", "sla_warning") and pending.escalation_level == 1
    assert [(c.at, c.status) for c in pending.status_history] == [
        (at("2026-03-02 07:00"), "new"), (at("2026-03-02 07:30"), "open"),
        (at("2026-03-02 08:00"), "pending")]
    assert pending.updated_at == at("2026-03-02 09:20") and pending.updated_at.tzinfo is not None
    # The earliest of the first agent response (any channel) and the first email reply.
    assert records["tickets:513"].first_response_at == at("2026-03-02 08:30")
    assert records["tickets:513"].assignee == "ben@example.com"
    assert (records["tickets:512"].group, records["tickets:512"].tags) == ("support", ("vip",))
    assert records["tickets:512"].custom["hubspot_category"] == "PRODUCT_ISSUE"
    closed = records["tickets:516"]
    assert (closed.status, closed.solved_at) == ("closed", at("2026-03-02 09:45"))
    assert records["tickets:515"].channel == "web" and records["tickets:515"].priority == "urgent"


def test_a_record_links_to_its_page_when_the_portal_is_configured(api):
    api.post(SEARCH, json=fixture("search_tickets_page_1.json"))
    api.post(SEARCH, json=fixture("search_tickets_page_2_end_of_stream.json"))
    api.get(OWNERS, json=fixture("owners.json"))
    with_portal = {r.id: r for page in make(portal="8675309").fetch(None) for r in page.records}
    # tickets are object type 0-5 in the app's record URLs
    assert with_portal["tickets:514"].url == \
        "https://app.hubspot.com/contacts/8675309/record/0-5/514"
    without = {r.id: r for page in make().fetch(None) for r in page.records}
    assert without["tickets:514"].url == ""  # no portal id: no link


def test_owners_can_be_named_by_full_name(api):
    api.post(SEARCH, json=fixture("search_tickets_page_2_end_of_stream.json"))
    api.get(OWNERS, json=fixture("owners.json"))
    [page] = list(make(assignee_as="name").fetch(None))
    assert page.records[-1].assignee == "Ana Silva"


def test_unknown_priority_and_stage_read_as_the_fallback_with_one_notice_each(api):
    api.post(SEARCH, json=fixture("search_tickets_unknown_priority_and_stage.json"))
    [page] = list(make().fetch(None))
    assert [(r.priority, r.status) for r in page.records] == [("normal", "open")] * 2
    assert page.notices == [
        "unknown stage '88412093': read as 'open' (map it in the connector's stage_map "
        "setting)",
        "unknown priority 'P0': read as 'normal' (map it in the connector's priority_map "
        "setting)"]


def test_a_configured_stage_map_reads_a_custom_pipeline(api):
    api.post(SEARCH, json=fixture("search_tickets_unknown_priority_and_stage.json"))
    [page] = list(make(stage_map={88412093: "hold"}, priority_map={"P0": "urgent"},
                       groups={"9000111": "tier2"}).fetch(None))
    assert [(r.priority, r.status, r.group) for r in page.records][0] == \
        ("urgent", "hold", "tier2")
    assert page.notices == []


def test_malformed_records_are_skipped_and_reported_while_the_rest_proceed(api):
    api.post(SEARCH, json=fixture("search_tickets_malformed_records.json"))
    [page] = list(make().fetch(None))
    assert [r.id for r in page.records] == ["tickets:533"]
    assert [str(p) for p in page.problems] == [
        "record 'tickets:530': createdate: missing",
        "record #1: has no id",
        "record 'tickets:531': hs_lastmodifieddate: 'yesterday' is not an ISO 8601 timestamp",
        "record 'tickets:532': sla_escalation_level: expected a whole number >= 0, got 'high'"]


def test_leads_come_from_the_leads_object_with_their_own_ids_kind_and_source(api):
    api.post(SEARCH, json=fixture("search_tickets_nothing_new.json"))
    api.post(f"{BASE}/crm/v3/objects/leads/search", json=fixture("search_leads_end_of_stream.json"))
    pages = list(make(objects=["tickets", "leads"]).fetch(None))
    lead, other = pages[-1].records
    assert (lead.id, lead.kind, lead.source, lead.status, lead.group) == \
        ("leads:77", "lead", "campaign", "new", "sales")
    assert (other.status, other.first_response_at) == ("open", at("2026-03-01 15:00"))
    assert set(json.loads(pages[-1].cursor or "")) == {"tickets", "leads"}


def test_contacts_stand_in_for_leads_with_their_own_modified_property(api):
    api.post(f"{BASE}/crm/v3/objects/contacts/search",
             json=fixture("search_contacts_end_of_stream.json"))
    [page] = list(make(objects=["contacts"]).fetch(None))
    [contact] = page.records
    assert (contact.id, contact.kind, contact.subject, contact.status, contact.source) == \
        ("contacts:151", "lead", "Alan Turing", "open", "campaign")
    [query] = sent(api, f"{BASE}/crm/v3/objects/contacts/search")
    assert query["sorts"][0]["propertyName"] == "lastmodifieddate"


def test_get_reads_one_record_and_none_when_it_is_gone(api):
    api.get(f"{BASE}/crm/v3/objects/tickets/513", json=fixture("ticket_513.json"))
    api.get(f"{BASE}/crm/v3/objects/tickets/999", status=404,
            json=fixture("error_404_object_not_found.json"))
    api.get(OWNERS, json=fixture("owners.json"))
    hubspot = make()
    record = hubspot.get("tickets:513")
    assert record is not None and record.status == "open" and record.assignee == "ben@example.com"
    assert hubspot.get("tickets:999") is None
    assert hubspot.get("not-a-hubspot-id") is None


# -- retries and errors ---------------------------------------------------------------------

def test_a_429_waits_what_retry_after_says_then_succeeds(api):
    api.post(SEARCH, status=429, headers={"Retry-After": "7"},
             json=fixture("error_429_ten_secondly_rolling.json"))
    api.post(SEARCH, json=fixture("search_tickets_nothing_new.json"))
    waits = Waits()
    [page] = list(make(waits).fetch(None))
    assert page.records == [] and waits.slept == [7.0]
    assert len(api.calls) == 2


def test_a_5xx_storm_exhausts_the_retries_with_a_retriable_error(api):
    api.post(SEARCH, status=502, body="<html>Bad gateway</html>")
    waits = Waits()
    with pytest.raises(ConnectorError) as info:
        list(make(waits).fetch(None))
    assert info.value.retriable and info.value.record_id is None
    assert "still failing after retries (HTTP 502)" in str(info.value)
    assert len(api.calls) == 8 and len(waits.slept) == 7  # the default attempts, no real sleep


def test_bad_credentials_fail_the_read_without_quoting_the_token(api, caplog):
    caplog.set_level(logging.DEBUG)
    api.post(SEARCH, status=401, json=fixture("error_401_expired_token.json"))
    with pytest.raises(ConnectorError) as info:
        list(make().fetch(None))
    assert not info.value.retriable
    assert "authentication failed" in str(info.value)
    assert api.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(info.value) and TOKEN not in caplog.text
    assert TOKEN not in repr(HeaderToken("Bearer", TOKEN)) and TOKEN not in make().identity


def test_retry_warnings_in_the_log_never_carry_the_token(api, caplog):
    caplog.set_level(logging.DEBUG)
    api.post(SEARCH, status=503)
    api.post(SEARCH, json=fixture("search_tickets_nothing_new.json"))
    list(make().fetch(None))
    assert "retrying" in caplog.text and TOKEN not in caplog.text


# -- writing --------------------------------------------------------------------------------

def test_a_batch_is_read_once_and_updated_in_one_request(api):
    api.post(BATCH_READ, json=fixture("batch_read_tickets.json"))
    api.post(BATCH_UPDATE, json=fixture("batch_update_tickets.json"))
    results = make().apply_many([
        change("tickets:512", "2026-03-02 09:05", add_tags=("sla_breach",), escalation_level=1),
        change("tickets:513", "2026-03-02 09:10", add_tags=("sla_breach",)),
        change("tickets:514", "2026-03-02 09:20", add_tags=("sla_breach",),
               remove_tags=("sla_warning",)),
    ], NOW)

    assert [r.error for r in results] == [None, None, None]
    [read] = sent(api, BATCH_READ)
    assert read["inputs"] == [{"id": "512"}, {"id": "513"}, {"id": "514"}]
    [update] = sent(api, BATCH_UPDATE)
    assert update["inputs"] == [
        {"id": "512", "objectWriteTraceId": "tickets:512",
         "properties": {"sla_tags": "vip;sla_breach", "sla_escalation_level": "1"}},
        {"id": "513", "objectWriteTraceId": "tickets:513",
         "properties": {"sla_tags": "sla_breach"}},
        {"id": "514", "objectWriteTraceId": "tickets:514",
         "properties": {"sla_tags": "billing;sla_breach"}}]
    written = results[0].record
    assert written is not None and written.tags == ("vip", "sla_breach")
    assert written.escalation_level == 1 and written.updated_at > at("2026-03-02 10:00")
    assert len(api.calls) == 2


def test_tags_are_merged_into_the_value_just_read_so_a_persons_option_stays(api):
    api.post(BATCH_READ, json=fixture("batch_read_ticket_512_edited_by_a_person.json"))
    api.post(BATCH_UPDATE, json=fixture("batch_update_ticket_512_after_the_persons_edit.json"))
    # Planned on the version the person edited (no conflict), on a record read with ["vip"].
    make().apply(change("tickets:512", "2026-03-02 09:58:12.345", add_tags=("sla_breach",)), NOW)
    [update] = sent(api, BATCH_UPDATE)
    assert update["inputs"][0]["properties"] == {
        "sla_tags": "vip;callback_requested;sla_breach"}


def test_a_record_edited_since_it_was_planned_is_refused_then_replanned_keeping_the_edit(api):
    api.post(BATCH_READ, json=fixture("batch_read_ticket_512_edited_by_a_person.json"))
    api.get(f"{BASE}/crm/v3/objects/tickets/512",
            json=fixture("ticket_512_edited_by_a_person.json"))
    api.get(OWNERS, json=fixture("owners.json"))
    api.post(BATCH_UPDATE, json=fixture("batch_update_ticket_512_after_the_persons_edit.json"))
    hubspot = make()
    with pytest.raises(ConflictError) as info:
        hubspot.apply(change("tickets:512", "2026-03-02 09:05", add_tags=("sla_breach",)), NOW)
    assert info.value.record_id == "tickets:512" and "changed since it was read" in str(info.value)
    assert sent(api, BATCH_UPDATE) == []  # nothing written over the person's edit

    # The sync loop re-reads, plans again on what the person left, and applies once more.
    fresh = hubspot.get("tickets:512")
    assert fresh is not None and fresh.tags == ("vip", "callback_requested")
    written = hubspot.apply(change("tickets:512", "2026-03-02 09:58:12.345",
                                   add_tags=("sla_breach",)), NOW)
    [update] = sent(api, BATCH_UPDATE)
    assert update["inputs"][0]["properties"] == {
        "sla_tags": "vip;callback_requested;sla_breach"}
    assert written is not None and written.tags == ("vip", "callback_requested", "sla_breach")


def test_one_record_refused_in_a_207_fails_alone(api):
    api.post(BATCH_READ, json=fixture("batch_read_tickets.json"))
    api.post(BATCH_UPDATE, status=207,
             json=fixture("batch_update_tickets_207_one_invalid_option.json"))
    results = make().apply_many([
        change(f"tickets:{n}", add_tags=("sla_breach",)) for n in (512, 513, 514)], NOW)
    assert [r.record_id for r in results] == ["tickets:512", "tickets:513", "tickets:514"]
    assert results[0].error is None and results[2].error is None
    error = results[1].error
    assert isinstance(error, ConnectorError) and error.record_id == "tickets:513"
    assert "VALIDATION_ERROR" in str(error)
    assert "sla_breach was not one of the allowed options" in str(error)
    assert len(api.calls) == 2


def test_a_batch_refused_whole_is_sent_record_by_record_to_find_the_one_at_fault(api):
    api.post(BATCH_READ, json=fixture("batch_read_tickets.json"))
    api.post(BATCH_UPDATE, status=400, json=fixture("batch_update_400_invalid_option.json"))
    api.patch(f"{BASE}/crm/v3/objects/tickets/512", json=fixture("ticket_512_patched.json"))
    api.patch(f"{BASE}/crm/v3/objects/tickets/513", status=400,
              json=fixture("batch_update_400_invalid_option.json"))
    api.patch(f"{BASE}/crm/v3/objects/tickets/514", json=fixture("ticket_514_patched.json"))
    results = make().apply_many([
        change(f"tickets:{n}", add_tags=("sla_breach",)) for n in (512, 513, 514)], NOW)
    assert [r.error is None for r in results] == [True, False, True]
    assert results[1].error is not None and results[1].error.record_id == "tickets:513"


def test_a_record_deleted_since_it_was_read_is_gone(api):
    api.post(BATCH_READ, json=fixture("batch_read_tickets_one_deleted.json"))
    api.post(BATCH_UPDATE, json=fixture("batch_update_tickets.json"))
    results = make().apply_many([change("tickets:512", add_tags=("sla_breach",)),
                                 change("tickets:999", add_tags=("sla_breach",))], NOW)
    assert results[0].error is None
    assert isinstance(results[1].error, RecordGone)
    [update] = sent(api, BATCH_UPDATE)
    assert [i["id"] for i in update["inputs"]] == ["512"]


def test_a_batch_whose_only_record_was_deleted_is_gone_not_a_failed_run(api):
    api.post(BATCH_READ, status=404, json=fixture("error_404_object_not_found.json"))
    [result] = make().apply_many([change("tickets:999", add_tags=("sla_breach",))], NOW)
    assert isinstance(result.error, RecordGone) and result.error.record_id == "tickets:999"


def test_notes_are_internal_note_objects_on_the_records_timeline(api):
    api.post(BATCH_READ, json=fixture("batch_read_tickets.json"))
    api.post(NOTES, status=201, json=fixture("notes_batch_create.json"))
    [result] = make().apply_many([change("tickets:512", notes=(
        "Escalated: <Printer on fire> & first response overdue.\nCall back.",))], NOW)
    assert result.error is None and result.record is None  # HubSpot does not return it
    [create] = sent(api, NOTES)
    assert create["inputs"] == [{
        "objectWriteTraceId": "tickets:512#note0",
        "properties": {
            "hs_note_body": "Escalated: &lt;Printer on fire&gt; &amp; first response "
                            "overdue.<br>Call back.",
            "hs_timestamp": "2026-03-02T10:00:00.000Z"},
        "associations": [{"to": {"id": "512"}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 228}]}]}]
    # A note object is never sent to the customer: no email, no conversation message.
    assert {call.request.url for call in api.calls} == {BATCH_READ, NOTES}


def test_notes_for_tickets_and_leads_go_in_one_request_with_the_documented_type_ids(api):
    # HubSpot's "Association type ID values": Note to ticket 228, Note to lead 855 (854 is
    # the other direction, lead to note); nothing is looked up.
    leads = f"{BASE}/crm/v3/objects/leads"
    lead = fixture("search_leads_end_of_stream.json")["results"][0]
    api.post(BATCH_READ, json=fixture("batch_read_tickets.json"))
    api.post(f"{leads}/batch/read", json={"status": "COMPLETE", "results": [lead]})
    api.post(NOTES, status=201, json={"status": "COMPLETE", "results": []})
    results = make(objects=["tickets", "leads"]).apply_many([
        change("tickets:512", notes=("First response overdue.",)),
        change("leads:77", notes=("Campaign lead not contacted.",))], NOW)
    assert [r.error for r in results] == [None, None]
    [create] = sent(api, NOTES)
    assert [(i["associations"][0]["to"]["id"],
             i["associations"][0]["types"][0]["associationTypeId"])
            for i in create["inputs"]] == [("512", 228), ("77", 855)]
    assert not [c for c in api.calls if "/crm/v4/associations/" in c.request.url]
    assert len(api.calls) == 3  # two batch reads, one notes batch/create


def test_assign_writes_the_owner_found_by_email_or_name(api):
    api.post(BATCH_READ, json=fixture("batch_read_tickets.json"))
    api.post(BATCH_UPDATE, json=fixture("batch_update_tickets.json"))
    api.get(OWNERS, json=fixture("owners.json"))
    results = make().apply_many([change("tickets:512", fields={"assignee": "ben@example.com"}),
                                 change("tickets:514", fields={"assignee": "Ana Silva"}),
                                 change("tickets:513", fields={"assignee": "support-lead"})], NOW)
    [update] = sent(api, BATCH_UPDATE)
    assert [(i["id"], i["properties"]) for i in update["inputs"]] == [
        ("512", {"hubspot_owner_id": "41629780"}), ("514", {"hubspot_owner_id": "41629779"})]
    error = results[2].error
    assert error is not None and error.record_id == "tickets:513"
    assert "no HubSpot owner 'support-lead'" in str(error)


def test_priority_and_status_are_written_as_hubspot_values(api):
    api.post(BATCH_READ, json=fixture("batch_read_tickets.json"))
    api.post(BATCH_UPDATE, json=fixture("batch_update_tickets.json"))
    make().apply(change("tickets:513", fields={"priority": "urgent", "status": "pending"}), NOW)
    [update] = sent(api, BATCH_UPDATE)
    assert update["inputs"][0]["properties"] == {"hs_ticket_priority": "URGENT",
                                                 "hs_pipeline_stage": "2"}


def test_a_value_the_record_already_has_is_not_sent_again(api):
    api.post(BATCH_READ, json=fixture("batch_read_tickets.json"))
    result = make().apply(change("tickets:514", fields={"priority": "low"},
                                 add_tags=("billing",)), NOW)
    assert result is None and sent(api, BATCH_UPDATE) == []


def test_a_group_change_is_refused_while_groups_are_pipelines_for_that_record_only(api):
    api.post(BATCH_READ, json=fixture("batch_read_tickets.json"))
    api.post(BATCH_UPDATE, json=fixture("batch_update_tickets.json"))
    results = make().apply_many([change("tickets:512", fields={"group": "tier2"}),
                                 change("tickets:513", add_tags=("sla_breach",))], NOW)
    assert results[0].error is not None and "connector.group_property" in str(results[0].error)
    assert results[1].error is None


def test_a_group_is_written_to_the_configured_team_property(api):
    api.post(BATCH_READ, json=fixture("batch_read_tickets.json"))
    api.post(BATCH_UPDATE, json=fixture("batch_update_tickets.json"))
    make(group_property="sla_team", groups={"T2": "tier2"}).apply(
        change("tickets:512", fields={"group": "tier2"}), NOW)
    [update] = sent(api, BATCH_UPDATE)
    assert update["inputs"][0]["properties"] == {"sla_team": "T2"}


def test_an_error_of_hubspot_itself_is_raised_not_reported_per_record(api):
    api.post(BATCH_READ, status=403, json={"status": "error", "category": "MISSING_SCOPES",
                                            "message": "This app hasn't been granted all "
                                                       "required scopes"})
    with pytest.raises(ConnectorError) as info:
        make().apply_many([change("tickets:512", add_tags=("x",))], NOW)
    assert info.value.record_id is None and "permission denied" in str(info.value)


# -- settings -------------------------------------------------------------------------------

def settings(**extra: Any) -> dict[str, Any]:
    return {"type": "hubspot", "url": "https://api.hubapi.com", "token": TOKEN, **extra}


def test_the_registry_builds_it_from_settings_with_the_vendor_throttle(tmp_path):
    hubspot = open_connector(settings(objects=["tickets", "leads"], portal=8675309), tmp_path)
    assert isinstance(hubspot, HubSpot)
    assert hubspot.identity == "hubspot:https://api.hubapi.com#8675309"
    assert hubspot.client.throttle.per_minute == 240
    assert hubspot.capabilities.bulk_writes and hubspot.capabilities.batch_size == 1000
    assert hubspot.capabilities.safe_update and hubspot.capabilities.leads


@pytest.mark.parametrize("extra, message", [
    ({"tags": "sla_tags"}, "connector.tags: unknown setting for a hubspot connector"),
    ({"objects": ["deals"]}, "connector.objects: expected a list of distinct objects"),
    ({"objects": ["leads", "contacts"]}, "connector.objects: read leads from the leads"),
    ({"stage_map": ["1", "new"]}, "connector.stage_map: expected a mapping"),
    ({"tags_property": "SLA tags"}, "connector.tags_property: expected a HubSpot property"),
    ({"assignee_as": "id"}, "connector.assignee_as: expected email or name"),
    ({"token": ""}, "connector.token: the private app's access token is required"),
    ({"url": "http://api.hubapi.com"}, "connector.url: plain http is accepted for loopback"),
    ({"search_delay_seconds": -1}, "connector.search_delay_seconds: expected a number"),
])
def test_bad_settings_are_refused_naming_the_key_and_never_the_token(tmp_path, extra, message):
    with pytest.raises(ValueError) as info:
        HubSpot.from_settings(settings(**extra), tmp_path)
    assert str(info.value).startswith(message)
    assert TOKEN not in str(info.value)


# -- end to end: `sla-sync run` -------------------------------------------------------------

E2E_POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [{"name": "breach",
               "conditions": {"name": "first_response_breached", "operator": "is_true"},
               "actions": [{"name": "add_tag", "params": {"tag": "sla_breach"}},
                           {"name": "add_note", "params": {"text": "{id}: first response "
                                                                   "overdue"}}]}],
}


class FakeHubSpot:
    """Tickets in memory behind the CRM v3 endpoints the connector uses, answering as HubSpot
    documents (search filters, sorting and paging; batch read, update; notes)."""

    def __init__(self, api: responses.RequestsMock, count: int):
        template = fixture("search_tickets_page_1.json")["results"][2]
        self.tickets: dict[str, dict[str, Any]] = {}
        for n in range(count):
            ticket = json.loads(json.dumps(template))
            hs_id = str(1000 + n)
            modified = at("2026-03-02 08:00") + timedelta(seconds=n)
            ticket["id"] = hs_id
            ticket["properties"].update(
                hs_object_id=hs_id, hs_pipeline_stage="1", sla_tags=None,
                createdate=iso("2026-03-02 08:00"), hs_first_agent_message_sent_at=None,
                hs_lastmodifieddate=modified.isoformat().replace("+00:00", "Z"))
            for stage in ("2", "3"):
                ticket["properties"].pop(f"hs_v2_date_entered_{stage}", None)
            ticket["properties"]["hs_v2_date_entered_1"] = iso("2026-03-02 08:00")
            self.tickets[hs_id] = ticket
        self.notes = 0
        self.writes = 0
        api.add_callback("POST", SEARCH, callback=self.search)
        api.add_callback("POST", BATCH_READ, callback=self.batch_read)
        api.add_callback("POST", BATCH_UPDATE, callback=self.batch_update)
        api.add_callback("POST", NOTES, callback=self.create_notes)

    @staticmethod
    def modified(ticket: dict[str, Any]) -> int:
        return millis(ticket["properties"]["hs_lastmodifieddate"].replace("Z", "")[:23])

    def search(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = json.loads(request.body)
        found = list(self.tickets.values())
        for group in query["filterGroups"]:
            for f in group["filters"]:
                if f["operator"] == "NOT_IN":  # hs_object_id NOT_IN the ids of the edge
                    found = [t for t in found if t["id"] not in f["values"]]
                    continue
                value = int(f["value"])
                keep = (lambda m, v=value: m >= v) if f["operator"] == "GTE" \
                    else (lambda m, v=value: m < v)
                found = [t for t in found if keep(self.modified(t))]
        found.sort(key=self.modified)
        start = int(query.get("after", 0))
        page = found[start:start + query["limit"]]
        body: dict[str, Any] = {"total": len(found), "results": page}
        if start + query["limit"] < len(found):
            body["paging"] = {"next": {"after": str(start + query["limit"])}}
        return 200, {}, json.dumps(body)

    def batch_read(self, request: Any) -> tuple[int, dict[str, str], str]:
        ids = [i["id"] for i in json.loads(request.body)["inputs"]]
        return 200, {}, json.dumps({"status": "COMPLETE",
                                    "results": [self.tickets[i] for i in ids]})

    def batch_update(self, request: Any) -> tuple[int, dict[str, str], str]:
        results = []
        for item in json.loads(request.body)["inputs"]:
            self.writes += 1
            ticket = self.tickets[item["id"]]
            stamp = (at("2026-03-02 10:20:01") + timedelta(milliseconds=self.writes))
            ticket["properties"].update(item["properties"], hs_lastmodifieddate=stamp.isoformat(
                timespec="milliseconds").replace("+00:00", "Z"))
            results.append({"id": item["id"], "properties": {
                **item["properties"],
                "hs_lastmodifieddate": ticket["properties"]["hs_lastmodifieddate"]}})
        return 200, {}, json.dumps({"status": "COMPLETE", "results": results})

    def create_notes(self, request: Any) -> tuple[int, dict[str, str], str]:
        inputs = json.loads(request.body)["inputs"]
        self.notes += len(inputs)
        return 201, {}, json.dumps({"status": "COMPLETE", "results": [
            {"id": str(90000 + n), "objectWriteTraceId": i["objectWriteTraceId"],
             "properties": i["properties"]} for n, i in enumerate(inputs)]})


def e2e_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "policy.json").write_text(json.dumps(E2E_POLICY))
    config = tmp_path / "config.yaml"
    config.write_text("connector: {type: hubspot, url: 'https://acme.example.com', "
                      "token: '${HUBSPOT_TOKEN}', objects: [tickets], sandbox: true}\n"
                      "policy: policy.json\nstate: state.db\nfirst_run: act\n")
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    monkeypatch.setattr("sla_sync.connector.http.wait", Waits().sleep)  # the throttle's spacing
    # The wall clock a little after the runs' --now: the writes are older than the settling
    # time when the second run reads.
    wall = at("2026-03-02 10:30").timestamp()
    monkeypatch.setattr(hubspot_module, "time", types.SimpleNamespace(time=lambda: wall))
    return config


def counts(api: responses.RequestsMock) -> dict[str, int]:
    out: dict[str, int] = {}
    for call in api.calls:
        path = call.request.url.split("?")[0].removeprefix(BASE)
        out[path] = out.get(path, 0) + 1
    return out


def test_end_to_end_a_run_reads_each_page_once_writes_per_100_and_a_rerun_writes_nothing(
        tmp_path, monkeypatch, api):
    config = e2e_project(tmp_path, monkeypatch)
    fake = FakeHubSpot(api, count=150)
    first = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert first.exit_code == 0, first.output
    assert "writes 150" in first.output
    # 150 tickets: 1 search page of 200; 2 batches of (read, update, notes) for 150 changes.
    assert counts(api) == {"/crm/v3/objects/tickets/search": 1,
                           "/crm/v3/objects/tickets/batch/read": 2,
                           "/crm/v3/objects/tickets/batch/update": 2,
                           "/crm/v3/objects/notes/batch/create": 2}
    assert fake.notes == 150
    assert all(t["properties"]["sla_tags"] == "sla_breach" for t in fake.tickets.values())

    api.calls.reset()
    second = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert second.exit_code == 0, second.output
    assert "writes 0" in second.output
    # Our own writes come back as changes (1 page); nothing is written again.
    assert counts(api) == {"/crm/v3/objects/tickets/search": 1}
    assert fake.writes == 150 and fake.notes == 150


def test_end_to_end_a_5xx_storm_fails_the_run_and_keeps_the_cursor(tmp_path, monkeypatch, api):
    config = e2e_project(tmp_path, monkeypatch)
    FakeHubSpot(api, count=3)
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20")).exit_code == 0
    identity = "hubspot:https://acme.example.com"
    cursor = StateStore(tmp_path / "state.db").cursor(identity)
    assert cursor is not None

    api.reset()
    api.post(SEARCH, status=503)
    result = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:40"))
    assert result.exit_code == 1
    assert "run failed, cursor not moved" in result.stderr
    assert "still failing after retries (HTTP 503)" in result.stderr
    assert TOKEN not in result.output + result.stderr
    assert StateStore(tmp_path / "state.db").cursor(identity) == cursor


# -- notes whose answer was lost ------------------------------------------------------------

class FakeHubSpotWithNotes(FakeHubSpot):
    """Adds what a read-back uses, as HubSpot documents it: GET /crm/v3/objects/tickets/{id},
    GET /crm/v4/objects/tickets/{id}/associations/notes (toObjectId per associated note) and
    POST /crm/v3/objects/notes/batch/read. Created notes are kept; `lose` decides the next
    batch/create's fate: "applied" keeps the notes and drops the connection, "dropped" drops
    it before anything is created."""

    def __init__(self, api: responses.RequestsMock, count: int):
        super().__init__(api, count)
        self.kept: dict[str, dict[str, Any]] = {}  # note id -> note object
        self.on: dict[str, list[str]] = {}  # ticket id -> note ids
        self.lose: str | None = None
        api.add_callback("GET", re.compile(re.escape(BASE) + r"/crm/v3/objects/tickets/\d+"),
                         callback=self.show)
        api.add_callback("GET", re.compile(re.escape(BASE) +
                                           r"/crm/v4/objects/tickets/\d+/associations/notes"),
                         callback=self.associations)
        api.add_callback("POST", f"{BASE}/crm/v3/objects/notes/batch/read",
                         callback=self.read_notes)

    def create_notes(self, request: Any) -> tuple[int, dict[str, str], str]:
        fate, self.lose = self.lose, None
        if fate == "dropped":
            raise requests.ConnectionError("Connection aborted: RemoteDisconnected")
        inputs = json.loads(request.body)["inputs"]
        self.notes += len(inputs)
        results = []
        for item in inputs:
            note_id = str(90000 + len(self.kept))
            created = (at("2026-03-02 10:20:05") + timedelta(milliseconds=len(self.kept)))
            stamp = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            note = {"id": note_id, "properties": {**item["properties"], "hs_createdate": stamp},
                    "createdAt": stamp, "updatedAt": stamp, "archived": False}
            self.kept[note_id] = note
            self.on.setdefault(item["associations"][0]["to"]["id"], []).append(note_id)
            results.append({**note, "objectWriteTraceId": item["objectWriteTraceId"]})
        if fate == "applied":
            raise requests.ConnectionError("Connection aborted: RemoteDisconnected")
        return 201, {}, json.dumps({"status": "COMPLETE", "results": results})

    def show(self, request: Any) -> tuple[int, dict[str, str], str]:
        ticket = self.tickets.get(request.url.split("?")[0].rsplit("/", 1)[1])
        return (404, {}, "{}") if ticket is None else (200, {}, json.dumps(ticket))

    def associations(self, request: Any) -> tuple[int, dict[str, str], str]:
        ticket_id = request.url.split("?")[0].split("/")[-3]
        return 200, {}, json.dumps({"results": [
            {"toObjectId": int(n), "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": 227, "label": None}]}
            for n in self.on.get(ticket_id, [])]})

    def read_notes(self, request: Any) -> tuple[int, dict[str, str], str]:
        ids = [i["id"] for i in json.loads(request.body)["inputs"]]
        return 200, {}, json.dumps({"status": "COMPLETE",
                                    "results": [self.kept[i] for i in ids if i in self.kept]})


@pytest.mark.parametrize("fate", ["applied", "dropped"])
def test_end_to_end_a_note_whose_answer_was_lost_is_posted_exactly_once_across_reruns(
        tmp_path, monkeypatch, api, fate):
    config = e2e_project(tmp_path, monkeypatch)
    fake = FakeHubSpotWithNotes(api, count=1)
    fake.lose = fate
    first = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert counts(api)["/crm/v3/objects/notes/batch/create"] == 1, "never resent"
    if fate == "applied":
        assert first.exit_code == 0, first.output
        assert "read back, the record shows the write" in first.stderr
        # The read-back: the ticket, its note associations, the notes themselves.
        assert counts(api)["/crm/v4/objects/tickets/1000/associations/notes"] == 1
        assert counts(api)["/crm/v3/objects/notes/batch/read"] == 1
    else:
        assert first.exit_code != 0
        assert "the write stays pending" in first.stderr
        second = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
        assert second.exit_code == 0, second.output
    last = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert last.exit_code == 0 and "writes 0" in last.output
    assert [n["properties"]["hs_note_body"] for n in fake.kept.values()] == \
        ["tickets:1000: first response overdue"]
    assert fake.tickets["1000"]["properties"]["sla_tags"] == "sla_breach"


# -- requests per sync (bench/bench_requests.py's scenario, counted) ---------------------------

def test_a_sync_of_tickets_and_leads_costs_the_documented_minimum_of_requests():
    bench = bench_script("bench_requests")
    # 450 records (225 tickets, 225 leads, alternating in time), 250 written, 120 notes.
    count = bench.count_hubspot(bench.Scenario(450, 250, 120))
    assert count.made == {"search": 4, "read": 4, "update": 4, "notes batch/create": 2}
    assert count.made == count.minimum


def test_a_re_anchored_search_leaves_out_the_edge_so_every_page_brings_200_new_records():
    bench = bench_script("bench_requests")
    # 400 tickets and 400 leads: 2 pages each. Without NOT_IN the second page would bring
    # back the record read at its anchor and 199 new ones, and a third page the last one.
    count = bench.count_hubspot(bench.Scenario(800, 0, 0))
    assert count.made == {"search": 4} == count.minimum


# -- the conversation and the owner history (history: true) -----------------------------------

HISTORY = ["hs_last_message_received_at", "hs_last_message_sent_at", "hubspot_owner_id",
           "hs_pipeline"]


def history_read(api: responses.RequestsMock) -> None:
    """The batch read of property histories that follows a search page (history: true)."""
    api.post(BATCH_READ, json=fixture("batch_read_tickets_history_513.json"),
             match=[responses.matchers.json_params_matcher(
                 {"properties": [], "propertiesWithHistory": HISTORY,
                  "inputs": [{"id": "513"}]})])


def test_without_history_a_ticket_has_no_conversation_and_no_request_more(api):
    api.post(SEARCH, json=fixture("search_tickets_513_end_of_stream.json"))
    api.get(OWNERS, json=fixture("owners.json"))
    [record] = [r for page in make().fetch(None) for r in page.records]
    assert record.messages is None and record.assignment_history is None
    assert record.worked_seconds is None  # HubSpot tickets keep no logged work
    assert len(api.calls) == 2


def test_the_conversation_is_the_history_of_the_inbox_message_dates(api):
    """Ticket 513 came in by chat at 08:00, Ben answered at 08:30, the customer wrote again
    at 08:50: each message set the received or response date once."""
    api.post(SEARCH, json=fixture("search_tickets_513_end_of_stream.json"))
    history_read(api)
    api.get(OWNERS, json=fixture("owners.json"))
    [record] = [r for page in make(history=True).fetch(None) for r in page.records]
    assert record.messages == (
        Message(at("2026-03-02 08:00"), "customer", True),
        Message(at("2026-03-02 08:30"), "agent", True),
        Message(at("2026-03-02 08:50"), "customer", True))
    # The pipeline was written with the creation; a workflow gave Ben the ticket at 08:10.
    assert record.assignment_history == (
        Assignment(at("2026-03-02 08:00"), "support", ""),
        Assignment(at("2026-03-02 08:10"), "support", "ben@example.com"))
    assert len(sent(api, BATCH_READ)) == 1 and len(api.calls) == 3


def test_property_histories_are_read_fifty_tickets_a_request():
    bodies: list[Any] = []
    template = fixture("search_tickets_513_end_of_stream.json")["results"][0]
    page = {"total": 120, "results": [
        {**template, "id": str(1000 + n),
         "properties": {**template["properties"], "hs_object_id": str(1000 + n)}}
        for n in range(120)]}
    with responses.RequestsMock() as mock:
        mock.post(SEARCH, json=page)
        mock.get(OWNERS, json=fixture("owners.json"))

        def history(request: Any) -> tuple[int, dict[str, str], str]:
            body = json.loads(request.body)
            bodies.append(body)
            return 200, {}, json.dumps({"status": "COMPLETE", "results": []})

        mock.add_callback(responses.POST, BATCH_READ, callback=history)
        records = [r for p in make(history=True).fetch(None) for r in p.records]
    assert [len(b["inputs"]) for b in bodies] == [50, 50, 20]
    # A ticket HubSpot returned no history for has none: unknown, not empty.
    assert len(records) == 120 and all(r.messages is None for r in records)


def test_an_owner_history_that_does_not_end_at_the_owner_now_is_left_out(api):
    history = fixture("batch_read_tickets_history_513.json")
    history["results"][0]["propertiesWithHistory"]["hubspot_owner_id"][0]["value"] = "41629779"
    api.post(SEARCH, json=fixture("search_tickets_513_end_of_stream.json"))
    api.post(BATCH_READ, json=history)
    api.get(OWNERS, json=fixture("owners.json"))
    [record] = [r for page in make(history=True).fetch(None) for r in page.records]
    assert record.assignment_history is None and record.messages is not None


def test_get_asks_for_the_histories_in_the_same_request(api):
    ticket = fixture("search_tickets_513_end_of_stream.json")["results"][0]
    with_history = {**ticket, "propertiesWithHistory": fixture(
        "batch_read_tickets_history_513.json")["results"][0]["propertiesWithHistory"]}
    api.get(f"{BASE}/crm/v3/objects/tickets/513", json=with_history)
    api.get(OWNERS, json=fixture("owners.json"))
    record = make(history=True).get("tickets:513")
    assert record is not None and record.messages is not None and len(record.messages) == 3
    [call] = [c for c in api.calls if "/objects/tickets/513" in c.request.url]
    assert "propertiesWithHistory=hs_last_message_received_at" in call.request.url


def test_a_run_finds_a_next_response_breach_in_the_hubspot_conversation(
        tmp_path, monkeypatch, api):
    """The customer wrote again at 08:50 after Ben's 08:30 answer and nobody has answered
    since: at 10:20 the 30-minute next response target ran out at 09:20 (the first
    response, 30 minutes after creation, was in time)."""
    config = e2e_project(tmp_path, monkeypatch)
    config.write_text(config.read_text().replace("sandbox: true", "sandbox: true, history: true"))
    (tmp_path / "policy.json").write_text(json.dumps({
        "slas": [{"name": "standard",
                  "targets": {"first_response": "1h", "next_response": "30m"}}],
        "rules": [{"name": "late reply",
                   "conditions": {"all": [{"name": "next_response_breached",
                                           "operator": "is_true", "value": True}]},
                   "actions": [{"name": "add_tag", "params": {"tag": "reply_overdue"}}]}]}))
    api.post(SEARCH, json=fixture("search_tickets_513_end_of_stream.json"))
    history_read(api)
    api.get(OWNERS, json=fixture("owners.json"))
    before = fixture("batch_read_tickets.json")
    before["results"] = [r for r in before["results"] if r["id"] == "513"]
    api.post(BATCH_READ, json=before, match=[responses.matchers.json_params_matcher(
        {"propertiesWithHistory": []}, strict_match=False)])
    written = fixture("batch_update_tickets.json")
    written["results"] = [{**r, "properties": {**r["properties"], "sla_tags": "reply_overdue"}}
                          for r in written["results"] if r["id"] == "513"]
    api.post(BATCH_UPDATE, json=written)
    result = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert result.exit_code == 0, result.output
    [update] = sent(api, BATCH_UPDATE)
    assert update["inputs"] == [{"id": "513", "objectWriteTraceId": "tickets:513",
                                 "properties": {"sla_tags": "reply_overdue"}}]
    assert "writes 1" in result.output


def test_the_directory_gives_each_owner_by_the_assignee_name_records_carry(api):
    api.get(OWNERS, json=fixture("owners.json"))
    directory = make().directory()
    assert directory["ben@example.com"] == {"email": "ben@example.com", "name": "Ben Carter"}
    by_name = make(assignee_as="name").directory()
    assert by_name["Ben Carter"]["email"] == "ben@example.com"
    assert len(api.calls) == 2  # one owners read per connector (per run)
