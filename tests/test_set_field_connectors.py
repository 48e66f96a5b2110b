"""set_field through the vendor connectors (issue 14 item 7): each maps custom.NAME to one of
its helpdesk's own fields (`connector.custom_fields`), reads the field's value back into
`Record.custom[NAME]` (so a rerun compares and writes nothing), and writes it in the
documented request; a NAME not mapped fails that record's write, naming the setting.
Payloads are the connectors' replayed fixtures; requests are checked against the specs
where the connector's own tests do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses

import test_freshdesk as fd
import test_hubspot as hs
import test_jsm as js
import test_rt as rt_tests
from conftest import act, at, cond, make_policy, rule
from sla_sync.connector import ChangeSet, ConnectorError
from sla_sync.connector.base import Catalog
from sla_sync.connector.file import FileHelpdesk
from sla_sync.sync_check import problems_with
from test_zendesk import (  # the Zendesk connector's own replay helpers
    NOW,
    api,  # noqa: F401  (the fixture)
    change,
    events_page,
    load,
    read_all,
    sent,
    tickets_page,
    zendesk,
)
from test_zendesk import URL as ZENDESK_URL
from test_zendesk import WORDS as ZENDESK_WORDS

ZENDESK = {**ZENDESK_WORDS, "custom_fields": {"sla_due": 360006}}


@pytest.fixture
def jsm_api():
    """Jira Cloud replayed; every request checked against the platform's OpenAPI spec."""
    if not js.jsm_spec.available():
        pytest.fail(js.jsm_spec.MISSING)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
        js.jsm_spec.check_all([call.request for call in mock.calls])


@pytest.fixture
def hs_api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def fd_api():
    with responses.RequestsMock() as mock:
        yield mock


def test_zendesk_reads_a_mapped_ticket_field_into_custom(api) -> None:  # noqa: F811
    events_page(api, "ticket_events_empty_end_of_stream", "1772323200")
    tickets_page(api, "incremental_tickets_with_organizations_and_custom_fields",
                 start_time="1772323200")
    [record] = read_all(zendesk(settings=ZENDESK)).values()
    assert record.custom["sla_due"] == "premier"  # ticket field 360006 of the fixture


def test_zendesk_writes_custom_fields_beside_the_level_field(api) -> None:  # noqa: F811
    api.put(f"{ZENDESK_URL}/api/v2/tickets/35436", json=load("ticket_update_35436"))
    connector = zendesk(settings={**ZENDESK, "escalation": {"field": 360005}})
    connector.apply(change(fields={"custom.sla_due": "2026-03-02T10:00+01:00"},
                           escalation_level=2), NOW)
    assert sent(api.calls[0])["ticket"]["custom_fields"] == [
        {"id": 360006, "value": "2026-03-02T10:00+01:00"}, {"id": 360005, "value": 2}]


def test_zendesk_refuses_a_field_it_does_not_map_for_that_ticket_only() -> None:
    with pytest.raises(ConnectorError) as caught:
        zendesk(settings=ZENDESK).apply(change(fields={"custom.other": "x"}), NOW)
    assert caught.value.record_id == "35436"
    assert "cannot write custom.other: no field of the helpdesk is mapped to it; add it to " \
        "connector.custom_fields (mapped: sla_due)" in str(caught.value)


# -- Freshdesk ---------------------------------------------------------------------------------

def test_freshdesk_reads_and_writes_a_mapped_custom_field(fd_api) -> None:
    current = fd.fixture("ticket_1002_with_stats")
    current["custom_fields"]["cf_sla_due"] = "old"
    fd_api.get(f"{fd.TICKETS}/1002", **fd.ticket_view(current))
    fd_api.add_callback(responses.PUT, f"{fd.TICKETS}/1002",
                        callback=fd.echo_update(current, "2026-03-02T10:20:01Z"))
    connector = fd.freshdesk(custom_fields={"sla_due": "cf_sla_due"})
    read = connector.get("1002")
    assert read is not None and read.custom["sla_due"] == "old"
    written = connector.apply(ChangeSet("1002", base_updated_at=read.updated_at, fields={
        "custom.sla_due": "2026-03-02T10:00+01:00"}), fd.NOW)
    assert fd.sent(fd_api.calls[-1]) == {"custom_fields": {
        "cf_sla_due": "2026-03-02T10:00+01:00"}}
    assert written is not None and written.custom["sla_due"] == "2026-03-02T10:00+01:00"
    with pytest.raises(ConnectorError, match="cannot write custom.other: no field of the "
                                             "helpdesk is mapped to it"):
        connector.apply(ChangeSet("1002", base_updated_at=read.updated_at,
                                  fields={"custom.other": "x"}), fd.NOW)


# -- Request Tracker ---------------------------------------------------------------------------

def rt_ticket_1(due: list[str]) -> dict[str, Any]:
    """Recorded ticket 1 with a custom field `SLA due` applied to its queue."""
    item = rt_tests.ticket(1, "2026-03-02T09:00:00Z")
    item["CustomFields"].append({"id": "9", "name": "SLA due", "type": "customfield",
                                 "_url": f"{rt_tests.API}/customfield/9", "values": due})
    return item


@responses.activate
def test_rt_reads_and_writes_a_mapped_custom_field_in_the_one_put() -> None:
    connector = rt_tests.rt(custom_fields={"sla_due": "SLA due"})
    responses.get(f"{rt_tests.API}/tickets", json=rt_tests.search_page([rt_ticket_1([])]))
    responses.get(f"{rt_tests.API}/ticket/1/history",
                  json=rt_tests.fixture("history_ticket_1"))
    [page] = list(connector.fetch(None))
    assert "sla_due" not in page.records[0].custom  # no value yet
    responses.put(f"{rt_tests.API}/ticket/1",
                  json=["SLA due 2026-03-02T10:00+01:00 added"])
    connector.apply(ChangeSet("1", base_updated_at=at("2026-03-02 09:00"),
                              fields={"custom.sla_due": "2026-03-02T10:00+01:00"},
                              escalation_level=1), rt_tests.NOW)
    assert json.loads(responses.calls[-1].request.body) == {"CustomFields": {
        "SLA due": "2026-03-02T10:00+01:00", "Escalation level": "1"}}


@responses.activate
def test_rt_reads_the_value_so_a_rerun_compares_and_refuses_an_unapplied_field() -> None:
    connector = rt_tests.rt(custom_fields={"sla_due": "SLA due", "other": "Not here"})
    responses.get(f"{rt_tests.API}/tickets",
                  json=rt_tests.search_page([rt_ticket_1(["2026-03-02T10:00+01:00"])]))
    responses.get(f"{rt_tests.API}/ticket/1/history",
                  json=rt_tests.fixture("history_ticket_1"))
    [page] = list(connector.fetch(None))
    assert page.records[0].custom["sla_due"] == "2026-03-02T10:00+01:00"
    with pytest.raises(ConnectorError, match="custom field 'Not here' is not applied"):
        connector.apply(ChangeSet("1", base_updated_at=at("2026-03-02 09:00"),
                                  fields={"custom.other": "x"}), rt_tests.NOW)


# -- HubSpot -----------------------------------------------------------------------------------

def test_hubspot_reads_and_writes_a_mapped_property_only_when_it_differs(hs_api) -> None:
    read = hs.fixture("batch_read_tickets.json")
    read["results"][0]["properties"]["sla_due_at"] = "2026-03-02T10:00+01:00"  # 512 holds it
    hs_api.post(hs.BATCH_READ, json=read)
    hs_api.post(hs.BATCH_UPDATE, json=hs.fixture("batch_update_tickets.json"))
    connector = hs.make(custom_fields={"sla_due": "sla_due_at"})
    assert "sla_due_at" in connector._properties("tickets")
    results = connector.apply_many([
        hs.change("tickets:512", "2026-03-02 09:05", add_tags=("sla_breach",),
                  fields={"custom.sla_due": "2026-03-02T10:00+01:00"}),
        hs.change("tickets:513", "2026-03-02 09:10",
                  fields={"custom.sla_due": "2026-03-02T11:00+01:00"})], hs.NOW)
    assert [r.error for r in results] == [None, None]
    [update] = hs.sent(hs_api, hs.BATCH_UPDATE)
    assert [i["properties"] for i in update["inputs"]] == [
        {"sla_tags": "vip;sla_breach"}, {"sla_due_at": "2026-03-02T11:00+01:00"}]
    refused = connector.apply_many([hs.change("tickets:514", "2026-03-02 09:20",
                                              fields={"custom.other": "x"})], hs.NOW)
    assert "cannot write custom.other" in str(refused[0].error)


# -- Jira Service Management -------------------------------------------------------------------

def test_jsm_reads_a_mapped_text_field_back_and_writes_it_in_the_issue_edit(jsm_api) -> None:
    connector = js.jsm(custom_fields={"sla_due": "customfield_10050"})
    issue = js.load("issue_sup_101_after_the_write")
    issue["fields"]["customfield_10050"] = "2026-03-02T10:00+01:00"
    jsm_api.get(js.URL + "/rest/api/3/issue/SUP-101", json=issue)
    jsm_api.get(js.URL + "/rest/api/3/status", json=js.load("statuses"))
    jsm_api.get(js.URL + "/rest/servicedeskapi/request/SUP-101/comment",
                json=js.load("request_comments_internal_sup_101_last"))
    record = connector.read_back("SUP-101", at("2026-03-02 10:00"))
    assert record is not None and record.custom["sla_due"] == "2026-03-02T10:00+01:00"
    assert "customfield_10050" in jsm_api.calls[0].request.params["fields"].split(",")
    jsm_api.get(js.URL + "/rest/api/3/issue/SUP-102", json={
        "id": "10102", "key": "SUP-102", "fields": {"updated": "2026-03-02T10:40:12.345+0100"}})
    jsm_api.put(js.URL + "/rest/api/3/issue/SUP-102", status=204)
    connector.apply(ChangeSet("SUP-102", base_updated_at=at("2026-03-02 09:40:12.345"),
                              fields={"custom.sla_due": "2026-03-02T11:00+01:00"}), js.NOW)
    assert js.sent(jsm_api.calls[-1]) == {"fields": {
        "customfield_10050": "2026-03-02T11:00+01:00"}}
    with pytest.raises(ConnectorError, match="cannot write custom.other"):
        connector.apply(ChangeSet("SUP-102", base_updated_at=at("2026-03-02 09:40:12.345"),
                                  fields={"custom.other": "x"}), js.NOW)


# -- sla-sync check ----------------------------------------------------------------------------

def test_check_names_a_set_field_the_connector_does_not_map() -> None:
    policy = make_policy(rules=[rule("due", cond("status", "equal_to", "open"),
                                     act("set_field", field="custom.sla_due", value="{id}"))])
    vendor = zendesk(settings=ZENDESK)  # maps sla_due only
    assert problems_with(policy, Catalog("Zendesk", fields={"via", "sla_due"}), vendor) == []
    other = zendesk(settings=ZENDESK_WORDS)  # maps nothing
    assert problems_with(policy, Catalog("Zendesk", fields={"via"}), other) == [
        "policy: rules[0].actions[0].params.field: 'sla_due' is not a custom field the "
        "connector maps (connector.custom_fields) in Zendesk (known: via)"]
    # the file helpdesk writes any name into a record's custom object
    assert problems_with(policy, Catalog("file", fields=set()),
                         FileHelpdesk(Path("unused.json"))) == []
