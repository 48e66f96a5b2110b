"""The Zendesk connector's requests, checked against Zendesk's official OpenAPI description.

tests/test_zendesk.py checks every request of every scenario after the test; here one pass
covers each kind of request the connector sends, and the checker itself is shown to refuse
what does not fit (so a silent checker cannot pass for a conforming connector)."""

from __future__ import annotations

import json

import pytest
import requests
import responses

import zendesk_spec
from conftest import at
from sla_sync.connector.model import ChangeSet
from test_zendesk import (
    JOB,
    NOW,
    PAGE_1_AFTER,
    URL,
    first_sync_pages,
    load,
    zendesk,
)

pytestmark = pytest.mark.skipif(not zendesk_spec.available(), reason=zendesk_spec.MISSING)

#: Every endpoint the connector calls, as the spec names it.
OPERATIONS = {
    ("GET", "/api/v2/incremental/ticket_events"),
    ("GET", "/api/v2/incremental/tickets/cursor"),
    ("GET", "/api/v2/tickets/{ticket_id}"),
    ("GET", "/api/v2/tickets/{ticket_id}/audits"),
    ("PUT", "/api/v2/tickets/{ticket_id}"),
    ("PUT", "/api/v2/tickets/update_many"),
    ("GET", "/api/v2/job_statuses/{job_status_id}"),
    ("GET", "/api/v2/job_statuses/show_many"),
}


def prepared(method: str, path: str, **kwargs) -> requests.PreparedRequest:
    return requests.Request(method, URL + path, auth=("agent@acme.example.com/token", "t"),
                            **kwargs).prepare()


def test_the_spec_describes_every_endpoint_the_connector_calls():
    paths = zendesk_spec.spec_dict()["paths"]
    for method, path in OPERATIONS:
        assert method.lower() in paths[path], f"{method} {path} is not in the spec"


def test_every_kind_of_request_the_connector_sends_conforms():
    with responses.RequestsMock() as api:
        first_sync_pages(api)
        api.get(f"{URL}/api/v2/tickets/35436", json=load("show_ticket_35436_changed_by_a_person"))
        api.get(f"{URL}/api/v2/tickets/35436/audits", json=load("ticket_audits_35436"))
        api.put(f"{URL}/api/v2/tickets/35436", json=load("ticket_update_35436"))
        api.put(URL + "/api/v2/tickets/update_many", json=load("update_many_job_queued"))
        api.get(f"{URL}/api/v2/job_statuses/{JOB}", json=load("job_status_completed"))
        connector = zendesk(settings={"escalation": {"field": 360005}})
        list(connector.fetch(None))
        connector.get("35436")
        base = at("2026-03-02 09:00")
        connector.apply(ChangeSet("35436", base_updated_at=base, fields={"priority": "urgent"},
                                  escalation_level=2, notes=("Overdue.",)), NOW)
        connector.apply_many([
            ChangeSet("35436", base_updated_at=base, add_tags=("a",), remove_tags=("b",)),
            ChangeSet("35439", base_updated_at=base, fields={"status": "open",
                                                             "assignee": "361001"})], NOW)
        calls = [call.request for call in api.calls]
    for request in calls:
        zendesk_spec.check(request)
    cursor_page = next(r for r in calls if f"cursor={PAGE_1_AFTER.rstrip('=')}" in r.url)
    assert "start_time" not in cursor_page.url  # the page the overlay is for
    assert len(calls) == 9


def test_a_misspelt_ticket_field_does_not_conform():
    body = {"ticket": {"additonal_tags": ["sla_breach"], "safe_update": True}}
    with pytest.raises(Exception, match="additonal_tags"):
        zendesk_spec.check(prepared("PUT", "/api/v2/tickets/35436", json=body))


def test_a_value_zendesk_does_not_know_does_not_conform():
    body = {"tickets": [{"id": 35436, "priority": "critical"}]}
    with pytest.raises(Exception, match="critical"):
        zendesk_spec.check(prepared("PUT", "/api/v2/tickets/update_many", json=body))


def test_a_batch_over_100_tickets_does_not_conform():
    body = {"tickets": [{"id": n, "additional_tags": ["x"]} for n in range(1, 102)]}
    with pytest.raises(Exception, match="Request body validation error"):
        zendesk_spec.check(prepared("PUT", "/api/v2/tickets/update_many",
                                    data=json.dumps(body),
                                    headers={"Content-Type": "application/json"}))


def test_paths_with_a_json_suffix_are_not_the_ones_the_spec_describes():
    with pytest.raises(Exception, match="Path not found"):
        zendesk_spec.check(prepared("GET", "/api/v2/incremental/tickets/cursor.json"))
    with pytest.raises(Exception, match="ticket_id"):
        zendesk_spec.check(prepared("GET", "/api/v2/tickets/35436.json"))


def test_the_event_export_without_a_start_time_does_not_conform():
    with pytest.raises(Exception, match="start_time"):
        zendesk_spec.check(prepared("GET", "/api/v2/incremental/ticket_events"))
