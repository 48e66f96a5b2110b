"""The Zendesk connector against recorded, documented Zendesk payloads (tests/fixtures/zendesk):
incremental reads, status history, mapping, retries, safe and bulk writes, conflicts, secrets.

Every request these tests make is also checked against Zendesk's OpenAPI spec when it is
available (see tests/zendesk_spec.py and tests/test_zendesk_conformance.py)."""

from __future__ import annotations

import base64
import json
import logging
import re
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from requests.auth import HTTPBasicAuth
from responses import matchers

import zendesk_spec
from conftest import Waits, act, at, bench_script, cli, cond, rule
from sla_sync.connector import ConflictError, ConnectorError, RecordGone, open_connector
from sla_sync.connector.base import MemoryInProcess, OutcomeUnknown, Page
from sla_sync.connector.http import HttpClient
from sla_sync.connector.model import ChangeSet, StatusChange
from sla_sync.connector.zendesk import (
    EVENT_EXPORT,
    TICKET_EXPORT,
    UPDATE_MANY,
    Vocabulary,
    Zendesk,
)
from sla_sync.sync_state import StateStore

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
URL = "https://acme.zendesk.com"
EMAIL = "agent@acme.example.com"
TOKEN = "zd-api-token-5bfa0c1e9d"  # a made-up token: it must never show up anywhere
START = at("2026-03-01 00:00")  # 1772323200
PAGE_1_AFTER = "MTc3MjQ0MzgwMC4wfHwzNTQzN3w="
PAGE_2_AFTER = "MTc3MjQ0NTkwMC4wfHwzNTQzOHw="
EVENTS_PAGE_2_START = "1772443800"  # 09:30, the end_time of the first events page
EVENTS_END = 1772446740  # 10:19, the end_time of the last events page
JOB = "82de0b044094f0c67893ac9fe64f1a99"
NOW = at("2026-03-02 10:20")
WORDS = {"groups": {360001: "support"}, "agents": {361001: "sam", 361002: "alice"}}


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture
def api():
    """The Zendesk API, replayed from fixtures; every request is checked against the spec."""
    with responses.RequestsMock() as mock:
        yield mock
        if zendesk_spec.available():
            zendesk_spec.check_all([call.request for call in mock.calls])


def zendesk(waits: Waits | None = None, rpm: float | None = None, **options: Any) -> Zendesk:
    """A connector on a client whose waits are recorded; `settings` are mapping settings."""
    waits = waits or Waits()
    client = HttpClient(URL, auth=HTTPBasicAuth(f"{EMAIL}/token", TOKEN), name="zendesk",
                        sleep=waits.sleep, clock=waits.clock, requests_per_minute=rpm,
                        max_attempts=options.pop("max_attempts", 8))
    vocabulary = Vocabulary.from_settings(options.pop("settings", WORDS))
    return Zendesk(client, vocabulary=vocabulary, start_time=START, **options)


def query(**params: str) -> list[Any]:
    return [matchers.query_param_matcher(params)]


def events_page(api: Any, fixture: str, start_time: str, url: str = URL) -> None:
    api.get(url + EVENT_EXPORT, json=load(fixture),
            match=query(start_time=start_time, include="comment_events"))


def tickets_page(api: Any, fixture: str, url: str = URL, include: str = "metric_sets",
                 **params: str) -> None:
    api.get(url + TICKET_EXPORT, json=load(fixture), match=query(include=include, **params))


def first_sync_pages(api: Any, url: str = URL) -> None:
    """The first fetch: two pages of events from start_time, then two pages of tickets."""
    events_page(api, "ticket_events_page_1", "1772323200", url)
    events_page(api, "ticket_events_page_2_end_of_stream", EVENTS_PAGE_2_START, url)
    tickets_page(api, "incremental_tickets_page_1", url, start_time="1772323200")
    tickets_page(api, "incremental_tickets_page_2_end_of_stream", url, cursor=PAGE_1_AFTER)


def ticket_pages(api: Any, connector: Zendesk, cursor: str | None = None,
                 memory: MemoryInProcess | None = None) -> list[Page]:
    """A fetch's ticket export pages: the event export's come first, one a page read, with
    no records and the cursor the fetch started from."""
    before = len(api.calls)
    pages = list(connector.fetch(cursor, memory))
    events = sum(call.request.path_url.split("?")[0] == EVENT_EXPORT
                 and call.response.status_code == 200 for call in api.calls[before:])
    assert all(not page.records and not page.problems and page.cursor == pages[0].cursor
               for page in pages[:events])
    return pages[events:]


def story(memory: MemoryInProcess, ticket: str) -> Any:
    """A ticket's story as the connector keeps it in its memory: {"h": ..., "t": ...}."""
    return json.loads(memory.entries[ticket])


def read_all(connector: Zendesk, cursor: str | None = None,
             memory: MemoryInProcess | None = None) -> dict[str, Any]:
    return {r.id: r for page in connector.fetch(cursor, memory) for r in page.records}


def sent(call: Any) -> Any:
    return json.loads(call.request.body)


def change(record_id: str = "35436", **fields: Any) -> ChangeSet:
    return ChangeSet(record_id=record_id, base_updated_at=at("2026-03-02 09:00"), **fields)


# -- reading -------------------------------------------------------------------------------

def test_a_first_fetch_reads_the_events_then_one_request_per_ticket_page(api):
    first_sync_pages(api)
    every = list(zendesk().fetch(None))
    # A page of no records for each events page, then the ticket pages.
    assert [[r.id for r in page.records] for page in every] == [[], [], ["35436", "35437"],
                                                                 ["35439", "35438"]]
    pages = every[2:]
    assert [call.request.path_url.split("?")[0] for call in api.calls] == [
        EVENT_EXPORT, EVENT_EXPORT, TICKET_EXPORT, TICKET_EXPORT]
    resume = json.loads(pages[-1].cursor)
    assert (resume["tickets"], resume["events"]) == (PAGE_2_AFTER, EVENTS_END)
    assert json.loads(pages[0].cursor)["tickets"] == PAGE_1_AFTER
    # The events pages resume where the fetch started: only the last cursor is stored.
    assert every[0].cursor == every[1].cursor and json.loads(every[0].cursor)["tickets"] is None


def test_the_next_fetch_resumes_from_the_after_cursor_and_the_events_end_time(api):
    first_sync_pages(api)
    cursor = list(zendesk().fetch(None))[-1].cursor
    events_page(api, "ticket_events_solved_and_closed", str(EVENTS_END))
    tickets_page(api, "incremental_tickets_page_3_solved_and_closed", cursor=PAGE_2_AFTER)
    later = read_all(zendesk(), cursor)
    assert sorted(later) == ["35437", "35438"]
    assert len(api.calls) == 4 + 2  # no start_time again: one events page, one tickets page


def test_status_history_is_built_from_the_status_changes_in_the_ticket_events(api):
    first_sync_pages(api)
    records = read_all(zendesk())
    assert records["35438"].status_history == (
        StatusChange(at("2026-03-02 09:00"), "open"),
        StatusChange(at("2026-03-02 09:05"), "pending"),
        StatusChange(at("2026-03-02 10:05"), "open"))
    # The event repeated at the edge of two event pages is counted once.
    assert records["35437"].status_history == (
        StatusChange(at("2026-03-02 09:00"), "new"), StatusChange(at("2026-03-02 09:30"), "open"))


def test_the_status_history_read_earlier_is_carried_in_the_cursor(api):
    first_sync_pages(api)
    memory = MemoryInProcess()
    cursor = list(zendesk().fetch(None, memory))[-1].cursor
    events_page(api, "ticket_events_solved_and_closed", str(EVENTS_END))
    tickets_page(api, "incremental_tickets_page_3_solved_and_closed", cursor=PAGE_2_AFTER)
    pages = ticket_pages(api, zendesk(), cursor, memory)
    solved = {r.id: r for r in pages[0].records}["35438"]
    assert [(c.at, c.status) for c in solved.status_history] == [
        (at("2026-03-02 09:00"), "open"), (at("2026-03-02 09:05"), "pending"),
        (at("2026-03-02 10:05"), "open"), (at("2026-03-02 10:15"), "solved")]
    assert solved.solved_at == at("2026-03-02 10:15")
    # A closed ticket never changes again: once the ticket export brought it closed, its
    # story leaves the memory. The cursor holds no story.
    assert sorted(memory.entries) == ["35436", "35438", "35439"]
    assert "history" not in json.loads(pages[-1].cursor)
    assert story(memory, "35438")["h"][-1] == [1772446500, "solved"]


def test_a_fetch_resumed_from_an_event_page_s_cursor_ends_with_the_same_stories(api):
    # Only a fetch's last cursor is stored, with the memory: were an event page's stored,
    # the events read again would change no story.
    first_sync_pages(api)
    straight = MemoryInProcess()
    want = read_all(zendesk(), None, straight)
    memory = MemoryInProcess()
    pages = zendesk().fetch(None, memory)
    first = next(pages)  # the first events page, merged into the memory
    pages.close()
    assert first.records == [] and memory.entries
    assert read_all(zendesk(), first.cursor, memory) == want
    assert memory.entries == straight.entries


def test_a_damaged_story_in_the_memory_stops_the_fetch_naming_the_ticket(api):
    first_sync_pages(api)
    api.assert_all_requests_are_fired = False  # the fetch stops at the first events page
    memory = MemoryInProcess({"35437": '{"h": "not a history"}'})
    with pytest.raises(ConnectorError, match=r"^zendesk: ticket 35437: the story kept for it "
                                             r"in the state file \(table memory\) is not one"):
        list(zendesk().fetch(None, memory))
    assert memory.entries["35437"] == '{"h": "not a history"}'  # nothing written over it


def test_a_v2_cursor_s_stories_move_into_the_memory_and_its_next_cursor_holds_none(api):
    first_sync_pages(api)
    memory = MemoryInProcess()
    cursor = list(zendesk().fetch(None, memory))[-1].cursor
    stories = {ticket: json.loads(text) for ticket, text in memory.entries.items()}
    # The same position as a v2 cursor wrote it: every open ticket's story inside, and a
    # story read from the audits (`fixed`) over what the events told.
    audited = {"h": [[1772442000, "new"], [1772443500, "open"]], "t": None}
    v2 = json.dumps({**json.loads(cursor), "v": 2, "fixed": {"35436": audited},
                     "history": {t: s["h"] for t, s in stories.items()},
                     "talk": {t: s["t"] for t, s in stories.items() if "t" in s}})
    events_page(api, "ticket_events_solved_and_closed", str(EVENTS_END))
    tickets_page(api, "incremental_tickets_page_3_solved_and_closed", cursor=PAGE_2_AFTER)
    moved = MemoryInProcess()
    after_v2 = ticket_pages(api, zendesk(), v2, moved)
    assert story(moved, "35436") == {"h": audited["h"]}
    moved.keep({"35436": memory.entries["35436"]})
    after_v3 = ticket_pages(api, zendesk(), cursor, memory)
    assert [p.records for p in after_v2] == [p.records for p in after_v3]
    assert moved.entries == memory.entries
    resumed = json.loads(after_v2[-1].cursor)
    assert resumed["v"] == 3 and not {"history", "talk", "fixed"} & set(resumed)


def test_first_response_is_creation_plus_the_metric_sets_first_reply_time(api):
    first_sync_pages(api)
    records = read_all(zendesk())
    assert records["35437"].first_response_at == at("2026-03-02 09:30")  # 30 minutes
    assert records["35436"].first_response_at is None  # not answered yet
    assert records["35437"].solved_at is None
    assert records["35437"].custom["initially_assigned_at"] == "2026-03-02T09:10:00Z"


def test_zendesk_values_map_to_the_record_vocabulary(api):
    first_sync_pages(api)
    records = read_all(zendesk())
    printer, voice, chat = records["35436"], records["35439"], records["35438"]
    assert (printer.kind, printer.priority, printer.channel, printer.tier, printer.group,
            printer.assignee) == ("ticket", "high", "email", "gold", "support", "")
    assert printer.tags == ("printer",)  # tier_gold became the tier
    assert (voice.channel, voice.priority, voice.group, voice.tier) == (
        "phone", "urgent", "360002", "standard")  # an unmapped group keeps its id
    assert (voice.tags, voice.escalation_level) == ((), 1)  # sla_escalation_1 is the level
    assert (chat.channel, chat.tier, chat.assignee, chat.tags) == ("chat", "vip", "alice",
                                                                   ("login",))
    assert printer.custom["zendesk_status"] == "open"
    assert printer.created_at == at("2026-03-02 09:00")
    assert printer.url == "https://acme.zendesk.com/agent/tickets/35436"  # the agent's view


def test_tier_from_an_organization_field_and_escalation_from_a_ticket_field(api):
    events_page(api, "ticket_events_empty_end_of_stream", "1772323200")
    tickets_page(api, "incremental_tickets_with_organizations_and_custom_fields",
                 include="metric_sets,organizations", start_time="1772323200")
    connector = zendesk(settings={"tier": {"organization_field": "support_tier"},
                                  "escalation": {"field": 360005}})
    [record] = read_all(connector).values()
    assert (record.tier, record.escalation_level, record.tags) == ("platinum", 2,
                                                                   ("tier_gold",))


def test_tier_from_a_ticket_field(api):
    events_page(api, "ticket_events_empty_end_of_stream", "1772323200")
    tickets_page(api, "incremental_tickets_with_organizations_and_custom_fields",
                 start_time="1772323200")
    [record] = read_all(zendesk(settings={"tier": {"field": 360006}})).values()
    assert record.tier == "premier"


def test_a_malformed_ticket_is_skipped_and_reported_while_the_rest_are_read(api):
    events_page(api, "ticket_events_empty_end_of_stream", "1772323200")
    tickets_page(api, "incremental_tickets_malformed_record", start_time="1772323200")
    [page] = ticket_pages(api, zendesk())
    assert [r.id for r in page.records] == ["35440"]
    assert [str(p) for p in page.problems] == [
        "record '35441': created_at: '2026-03-02 09:00' has no UTC offset (refusing to guess "
        "a timezone)",
        "record #2: has no ticket id",
        "record '35443': tags: expected a list of strings"]


def test_unknown_priority_status_and_channel_fall_back_with_one_notice_each(api):
    events_page(api, "ticket_events_empty_end_of_stream", "1772323200")
    tickets_page(api, "incremental_tickets_unknown_priority_status_channel",
                 start_time="1772323200")
    [page] = ticket_pages(api, zendesk())
    custom, same, unset = page.records
    assert (custom.priority, custom.status, custom.channel) == ("normal", "open", "other")
    assert custom.custom["zendesk_status"] == "escalated"
    assert same.priority == "normal" and unset.priority == "normal"
    assert page.notices == [
        "unknown status 'escalated': read as 'open' (map it in the connector's status_map "
        "setting)",
        "unknown priority 'critical': read as 'normal' (map it in the connector's "
        "priority_map setting)",
        "unknown channel 'whatsapp': read as 'other' (map it in the connector's channel_map "
        "setting)"]


def test_an_unknown_priority_is_noticed_in_every_fetch_not_only_the_first(api):
    # `run --every` keeps one connector for all its runs: each run's fetch reports again.
    events_page(api, "ticket_events_empty_end_of_stream", "1772323200")
    tickets_page(api, "incremental_tickets_unknown_priority_status_channel",
                 start_time="1772323200")
    connector = zendesk()
    first = [notice for page in connector.fetch(None) for notice in page.notices]
    second = [notice for page in connector.fetch(None) for notice in page.notices]
    assert any("unknown priority 'critical'" in notice for notice in first)
    assert second == first


def test_a_mapped_unknown_value_is_read_without_a_notice(api):
    events_page(api, "ticket_events_empty_end_of_stream", "1772323200")
    tickets_page(api, "incremental_tickets_unknown_priority_status_channel",
                 start_time="1772323200")
    connector = zendesk(settings={"priority_map": {"critical": "urgent"},
                                  "status_map": {"escalated": "open"},
                                  "channel_map": {"whatsapp": "chat"}})
    [page] = ticket_pages(api, connector)
    assert (page.records[0].priority, page.records[0].channel) == ("urgent", "chat")
    assert page.notices == []


def test_an_event_without_a_ticket_is_reported_and_the_rest_of_the_events_used(api):
    events_page(api, "ticket_events_unplaceable_event", "1772323200")
    tickets_page(api, "incremental_tickets_empty_end_of_stream", start_time="1772323200")
    memory = MemoryInProcess()
    [page] = ticket_pages(api, zendesk(), memory=memory)
    assert page.notices == ["1 ticket event(s) without a ticket id or time were ignored: "
                            "those tickets' status history may miss a change"]
    assert memory.entries == {"35438": '{"h":[[1772446500,"hold"]]}'}


def test_a_cursor_this_connector_did_not_write_is_refused():
    with pytest.raises(ConnectorError, match="not one this connector wrote"):
        next(zendesk().fetch("2026-03-02T10:00:00+00:00"))


def test_get_reads_the_ticket_its_metric_set_and_its_history_from_the_audits(api):
    api.get(f"{URL}/api/v2/tickets/35436", json=load("show_ticket_35436_changed_by_a_person"),
            match=query(include="metric_sets"))
    api.get(f"{URL}/api/v2/tickets/35436/audits", json=load("ticket_audits_35436"),
            match=query(**{"page[size]": "100"}))
    record = zendesk().get("35436")
    assert record is not None
    assert (record.priority, record.assignee, record.updated_at) == (
        "urgent", "sam", at("2026-03-02 10:17"))
    assert record.tags == ("printer", "vip_customer")
    assert record.status_history == (StatusChange(at("2026-03-02 09:00"), "new"),
                                     StatusChange(at("2026-03-02 09:01"), "open"))


def test_get_of_a_ticket_that_does_not_exist_is_none(api):
    api.get(f"{URL}/api/v2/tickets/99999", status=404, json=load("error_404_ticket_not_found"))
    assert zendesk().get("99999") is None
    assert zendesk().get("T-1") is None  # not a Zendesk id: no request


# -- rate limits and failures --------------------------------------------------------------

def test_a_429_waits_what_retry_after_says_then_succeeds(api):
    waits = Waits()
    api.get(URL + EVENT_EXPORT, status=429, headers={"Retry-After": "37"},
            json={"error": "TooManyRequests"})
    events_page(api, "ticket_events_empty_end_of_stream", "1772323200")
    tickets_page(api, "incremental_tickets_empty_end_of_stream", start_time="1772323200")
    list(zendesk(waits).fetch(None))
    assert waits.slept == [37.0]
    assert len(api.calls) == 3


def test_the_exports_are_spaced_to_stay_under_ten_requests_a_minute(api):
    waits = Waits()
    first_sync_pages(api)
    list(zendesk(waits, rpm=10).fetch(None))
    assert waits.slept == [6.0, 6.0, 6.0]  # four export requests, 60 s / 10 apart


def test_a_5xx_storm_exhausts_the_retries_and_fails_retriably(api):
    api.get(URL + EVENT_EXPORT, status=503)
    with pytest.raises(ConnectorError) as info:
        list(zendesk(max_attempts=4).fetch(None))
    assert info.value.retriable and info.value.record_id is None
    assert "still failing after retries (HTTP 503)" in str(info.value)
    assert len(api.calls) == 4


def test_the_token_never_appears_in_messages_or_logs(api, caplog):
    caplog.set_level(logging.DEBUG)
    credentials = base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()
    api.get(URL + EVENT_EXPORT, status=401, json=load("error_401_unauthenticated"))
    api.put(f"{URL}/api/v2/tickets/35436", status=503)
    connector = zendesk(max_attempts=3)
    messages = []
    for attempt in (lambda: list(connector.fetch(None)),
                    lambda: connector.apply(change(add_tags=("x",)), NOW)):
        with pytest.raises(ConnectorError) as info:
            attempt()
        messages.append(str(info.value))
    assert "authentication failed" in messages[0]
    for text in (*messages, caplog.text, connector.identity, repr(connector.exports.session)):
        assert TOKEN not in text and credentials not in text


# -- writing -------------------------------------------------------------------------------

def test_a_change_is_one_safe_update_that_merges_tags_and_adds_one_private_note(api):
    api.put(f"{URL}/api/v2/tickets/35436", json=load("ticket_update_35436"))
    written = zendesk().apply(change(add_tags=("sla_breach",), remove_tags=("sla_warning",),
                                     notes=("First response overdue.", "Escalated to tier 2.")),
                              NOW)
    assert written is None  # Zendesk's answer has no metric set: the loop projects the change
    assert sent(api.calls[0]) == {"ticket": {
        "additional_tags": ["sla_breach"], "remove_tags": ["sla_warning"],
        "comment": {"body": "First response overdue.\n\nEscalated to tier 2.",
                    "public": False},
        "safe_update": True, "updated_stamp": "2026-03-02T09:00:00Z"}}


def test_fields_are_written_as_zendesk_values_and_the_level_as_a_tag(api):
    api.put(f"{URL}/api/v2/tickets/35436", json=load("ticket_update_35436"))
    zendesk().apply(change(fields={"priority": "urgent", "status": "pending",
                                   "group": "support", "assignee": "alice"},
                           escalation_level=3), NOW)
    assert sent(api.calls[0])["ticket"] == {
        "priority": "urgent", "status": "pending", "group_id": 360001, "assignee_id": 361002,
        "additional_tags": ["sla_escalation_3"],
        "remove_tags": ["sla_escalation_1", "sla_escalation_2"],
        "safe_update": True, "updated_stamp": "2026-03-02T09:00:00Z"}


def test_the_level_goes_to_a_ticket_field_when_configured(api):
    api.put(f"{URL}/api/v2/tickets/35436", json=load("ticket_update_35436"))
    zendesk(settings={"escalation": {"field": 360005}}).apply(change(escalation_level=2), NOW)
    assert sent(api.calls[0])["ticket"]["custom_fields"] == [{"id": 360005, "value": 2}]


def test_a_group_without_a_zendesk_id_is_refused_for_that_record_only(api):
    with pytest.raises(ConnectorError) as info:
        zendesk().apply(change(fields={"group": "tier2"}), NOW)
    assert info.value.record_id == "35436"
    assert "group 'tier2' has no Zendesk id: map it in the connector's groups setting" \
        in str(info.value)
    assert len(api.calls) == 0


def test_a_conflict_is_refused_and_the_re_read_keeps_the_other_writers_change(api):
    api.put(f"{URL}/api/v2/tickets/35436", status=409, json=load("ticket_update_conflict_409"))
    api.get(f"{URL}/api/v2/tickets/35436", json=load("show_ticket_35436_changed_by_a_person"))
    api.get(f"{URL}/api/v2/tickets/35436/audits", json=load("ticket_audits_35436"))
    api.put(f"{URL}/api/v2/tickets/35436", json=load("ticket_update_35436"))
    connector = zendesk()
    with pytest.raises(ConflictError) as info:
        connector.apply(change(add_tags=("sla_breach",)), NOW)
    assert info.value.record_id == "35436" and info.value.retriable
    fresh = connector.get("35436")
    assert fresh is not None and "vip_customer" in fresh.tags and fresh.priority == "urgent"
    connector.apply(ChangeSet("35436", base_updated_at=fresh.updated_at,
                              add_tags=("sla_breach",)), NOW)
    retried = sent(api.calls[-1])["ticket"]
    assert retried == {"additional_tags": ["sla_breach"], "safe_update": True,
                       "updated_stamp": "2026-03-02T10:17:00Z"}  # no tags list, no priority


def test_a_ticket_that_is_gone_and_a_refusal_concern_that_ticket_only(api):
    api.put(f"{URL}/api/v2/tickets/35436", status=404, json=load("error_404_ticket_not_found"))
    api.put(f"{URL}/api/v2/tickets/35437", status=422,
            json=load("ticket_update_refused_closed_422"))
    connector = zendesk()
    with pytest.raises(RecordGone):
        connector.apply(change(add_tags=("x",)), NOW)
    with pytest.raises(ConnectorError) as info:
        connector.apply(change("35437", add_tags=("x",)), NOW)
    assert info.value.record_id == "35437" and not info.value.retriable
    assert str(info.value) == ("zendesk: ticket 35437: the helpdesk refused the change (Record "
                               "validation errors; status: Status: closed prevents ticket "
                               "update)")


def test_bad_credentials_fail_the_write_as_a_whole(api):
    api.put(f"{URL}/api/v2/tickets/35436", status=401, json=load("error_401_unauthenticated"))
    with pytest.raises(ConnectorError) as info:
        zendesk().apply_many([change(add_tags=("x",))], NOW)
    assert info.value.record_id is None  # the helpdesk failed, not this record


def test_a_batch_is_one_update_many_job_polled_until_it_completes(api):
    waits = Waits()
    api.put(URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{URL}/api/v2/job_statuses/{JOB}", json=load("job_status_working"))
    api.get(f"{URL}/api/v2/job_statuses/{JOB}", json=load("job_status_completed"))
    results = zendesk(waits).apply_many([change(add_tags=("sla_breach",)),
                                         change("35439", notes=("Overdue.",))], NOW)
    assert [(r.record_id, r.error) for r in results] == [("35436", None), ("35439", None)]
    assert sent(api.calls[0]) == {"tickets": [
        {"id": 35436, "additional_tags": ["sla_breach"], "safe_update": True,
         "updated_stamp": "2026-03-02T09:00:00Z"},
        {"id": 35439, "comment": {"body": "Overdue.", "public": False}, "safe_update": True,
         "updated_stamp": "2026-03-02T09:00:00Z"}]}
    assert len(api.calls) == 3 and waits.slept == [1.0, 2.0]


@pytest.mark.parametrize(("meanwhile", "slept"), [(1.5, []), (0.25, [0.75])])
def test_a_batch_submitted_is_polled_when_its_answer_is_asked_for_the_time_since_waited(
        api, meanwhile, slept):
    """submit_many queues the job and returns; the loop plans the next batch meanwhile,
    and that time counts against the first wait before the poll."""
    waits = Waits()
    api.put(URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{URL}/api/v2/job_statuses/{JOB}", json=load("job_status_completed"))
    answer = zendesk(waits, clock=waits.clock).submit_many(
        [change(add_tags=("sla_breach",)), change("35439", notes=("Overdue.",))], NOW)
    assert [c.request.method for c in api.calls] == ["PUT"]  # queued, not polled yet
    waits.now += meanwhile
    results = answer()
    assert [(r.record_id, r.error) for r in results] == [("35436", None), ("35439", None)]
    assert [c.request.method for c in api.calls] == ["PUT", "GET"] and waits.slept == slept


def test_one_refused_ticket_in_a_batch_fails_alone(api):
    api.put(URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{URL}/api/v2/job_statuses/{JOB}",
            json=load("job_status_completed_one_ticket_refused"))
    results = zendesk().apply_many([change(add_tags=("a",)), change("35437", add_tags=("a",)),
                                    change("35439", add_tags=("a",))], NOW)
    assert [r.error is None for r in results] == [True, False, True]
    error = results[1].error
    assert error is not None and error.record_id == "35437"
    assert str(error) == ("zendesk: ticket 35437: the update job refused the change "
                          "(TicketUpdateFailed: Status: closed prevents ticket update)")


def test_a_conflict_in_a_batch_is_a_conflict_for_that_ticket(api):
    api.put(URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{URL}/api/v2/job_statuses/{JOB}", json=load("job_status_completed_one_conflict"))
    results = zendesk().apply_many([change(add_tags=("a",)), change("35439", add_tags=("a",))],
                                   NOW)
    assert isinstance(results[0].error, ConflictError) and results[1].error is None


def test_a_change_that_cannot_be_written_stays_out_of_the_batch(api):
    api.put(URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{URL}/api/v2/job_statuses/{JOB}", json=load("job_status_completed"))
    results = zendesk().apply_many([change(add_tags=("a",)), change("35437",
                                    fields={"assignee": "nobody"}), change("35439",
                                                                           add_tags=("a",))],
                                   NOW)
    assert [r.error is None for r in results] == [True, False, True]
    assert [t["id"] for t in sent(api.calls[0])["tickets"]] == [35436, 35439]


def test_a_job_that_fails_as_a_whole_leaves_its_tickets_unknown(api):
    api.put(URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{URL}/api/v2/job_statuses/{JOB}", json=load("job_status_failed"))
    results = zendesk().apply_many([change(add_tags=("a",)), change("35439", add_tags=("a",))],
                                   NOW)
    assert [type(r.error) for r in results] == [OutcomeUnknown, OutcomeUnknown]
    assert [r.error.record_id for r in results if r.error] == ["35436", "35439"]
    assert str(results[0].error) == (
        f"zendesk: update job {JOB} failed (Job failed: internal error); the tickets are "
        "read back to settle it")


def test_a_job_still_running_after_the_timeout_is_given_up_retriably(api):
    waits = Waits()
    api.put(URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{URL}/api/v2/job_statuses/{JOB}", json=load("job_status_working"))
    results = zendesk(waits, job_timeout=5).apply_many(
        [change(add_tags=("a",)), change("35439", add_tags=("a",))], NOW)
    assert all(isinstance(r.error, OutcomeUnknown) and r.error.retriable for r in results)
    assert "still working after 7s" in str(results[0].error)
    assert waits.slept == [1.0, 2.0, 4.0]


def job_named(name: str, fixture: str, tickets: list[int]) -> dict[str, Any]:
    """A documented job status (a fixture) under another id, for other tickets."""
    job = load(fixture)["job_status"]
    results = job["results"] and [{**job["results"][0], "id": t} for t in tickets]
    return {**job, "id": name, "url": job["url"].replace(JOB, name), "results": results}


def test_a_batch_of_many_jobs_is_queued_at_once_and_polled_in_one_request(api):
    """250 changes: three jobs (100, 100, 50) queued before any poll; each poll asks
    Show Many Job Statuses for the jobs still running, in one request."""
    ids = [f"job{n}" for n in range(3)]
    tickets = [list(range(40000 + 100 * n, 40000 + min(100 * n + 100, 250)))
               for n in range(3)]
    for name in ids:
        api.put(URL + UPDATE_MANY, json={"job_status": {
            **job_named(name, "update_many_job_queued", []), "results": None}})
    api.get(f"{URL}/api/v2/job_statuses/show_many", match=query(ids="job0,job1,job2"), json={
        "job_statuses": [job_named("job0", "job_status_completed", tickets[0]),
                         job_named("job1", "job_status_working", tickets[1]),
                         job_named("job2", "job_status_completed", tickets[2])]})
    api.get(f"{URL}/api/v2/job_statuses/job1",
            json={"job_status": job_named("job1", "job_status_completed", tickets[1])})
    waits = Waits()
    changes = [change(str(t), add_tags=("a",)) for chunk in tickets for t in chunk]
    results = zendesk(waits).apply_many(changes, NOW)
    assert [r.record_id for r in results] == [c.record_id for c in changes]
    assert all(r.error is None for r in results)
    kinds = [(c.request.method, c.request.path_url.split("?")[0]) for c in api.calls]
    assert kinds == [("PUT", UPDATE_MANY)] * 3 + [
        ("GET", "/api/v2/job_statuses/show_many"), ("GET", "/api/v2/job_statuses/job1")]
    assert [len(sent(c)["tickets"]) for c in api.calls[:3]] == [100, 100, 50]
    assert waits.slept == [1.0, 2.0]


def test_a_failed_job_among_many_leaves_only_its_own_tickets_unknown(api):
    for name in ("job0", "job1"):
        api.put(URL + UPDATE_MANY, json={"job_status": {
            **job_named(name, "update_many_job_queued", []), "results": None}})
    tickets = [list(range(40000, 40100)), [40100, 40101]]
    api.get(f"{URL}/api/v2/job_statuses/show_many", json={"job_statuses": [
        job_named("job0", "job_status_completed", tickets[0]),
        job_named("job1", "job_status_failed", [])]})
    results = zendesk().apply_many(
        [change(str(t), add_tags=("a",)) for chunk in tickets for t in chunk], NOW)
    assert all(r.error is None for r in results[:100])
    assert [type(r.error) for r in results[100:]] == [OutcomeUnknown, OutcomeUnknown]


def test_jobs_at_once_sets_how_many_jobs_a_batch_holds(api):
    # Five by default, and at most: 500 tickets, half a page of the event export a second,
    # less one: a batch Zendesk applies in one second must not fill a whole number of
    # seconds of a 1,000-event page, or each page's last second comes again whole.
    assert zendesk().capabilities.batch_size == 499
    assert zendesk(jobs_at_once=4).capabilities.batch_size == 400
    assert zendesk(jobs_at_once=3).capabilities.batch_size == 300
    assert zendesk(jobs_at_once=2).capabilities.batch_size == 199
    assert zendesk(jobs_at_once=1).capabilities.batch_size == 99
    assert zendesk(bulk_writes=False).capabilities.batch_size == 1


class JobsOnAClock:
    """update_many and its polls answered with a `Date` by Zendesk's clock, which runs
    `ahead` of the test's clock (RFC 9110 section 6.6.1; every Zendesk answer carries one):
    each job is answered queued, and completed, with a result per ticket, at its first poll
    (Show Many Job Statuses). Notes the second of Zendesk's clock of each answer."""

    def __init__(self, api: Any, waits: Waits, ahead: float = 1_772_440_000.6):
        self.waits, self.ahead = waits, ahead
        self.jobs: dict[str, list[int]] = {}
        self.answers: list[tuple[str, int]] = []  # (PUT or GET, Zendesk's second)
        api.add_callback("PUT", URL + UPDATE_MANY, callback=self.queue)
        api.add_callback("GET", f"{URL}/api/v2/job_statuses/show_many", callback=self.poll)

    def answer(self, method: str, body: Any) -> tuple[int, dict[str, str], str]:
        second = int(self.waits.now + self.ahead)
        self.answers.append((method, second))
        return 200, {"Date": formatdate(second, usegmt=True)}, json.dumps(body)

    def queue(self, request: Any) -> tuple[int, dict[str, str], str]:
        name = f"job{len(self.jobs)}"
        self.jobs[name] = [t["id"] for t in json.loads(request.body)["tickets"]]
        return self.answer("PUT", {"job_status": {
            **job_named(name, "update_many_job_queued", []), "results": None}})

    def poll(self, request: Any) -> tuple[int, dict[str, str], str]:
        names = request.params["ids"].split(",")
        return self.answer("GET", {"job_statuses": [
            job_named(name, "job_status_completed", self.jobs[name]) for name in names]})


def test_full_batches_are_queued_in_seconds_of_zendesks_clock_the_last_one_has_passed(api):
    """998 changes are two batches of five jobs (100, 100, 100, 100, 99). Zendesk may apply
    a job's updates at any moment from its queuing to the poll that finds it completed, each
    update one event of the event export: the second batch is queued only once Zendesk's
    clock has passed the second of the first batch's last poll, so that no second holds
    more than 500 of sla-sync's own events (a second of 1,000 is one the export cannot page
    past)."""
    waits = Waits()
    desk = JobsOnAClock(api, waits)
    tickets = range(40000, 40998)
    results = zendesk(waits).apply_many([change(str(t), add_tags=("a",)) for t in tickets],
                                        NOW)
    assert all(r.error is None for r in results) and len(desk.jobs) == 10
    assert [len(ids) for ids in desk.jobs.values()] == [100, 100, 100, 100, 99] * 2
    seconds = [second for _, second in desk.answers]
    assert [method for method, _ in desk.answers] == ["PUT"] * 5 + ["GET"] + ["PUT"] * 5 + [
        "GET"]
    assert seconds[6] > seconds[5]  # the second batch after the first batch's last second
    # The first poll's wait, the wait for Zendesk's clock to pass that second (its `Date`s
    # show it 0.6 s into its second at most: from the first poll on, 1 s), the next poll's.
    assert waits.slept == [1.0, pytest.approx(1.001), 1.0]


def test_small_batches_share_a_second_without_waiting(api):
    """Two batches of 200 tickets fit in one second's 500: the second is queued at once."""
    waits = Waits()
    desk = JobsOnAClock(api, waits)
    connector = zendesk(waits, clock=waits.clock)
    for first in (40000, 40200):
        answer = connector.submit_many(
            [change(str(t), add_tags=("a",)) for t in range(first, first + 200)], NOW)
        assert all(r.error is None for r in answer())
    assert [method for method, _ in desk.answers] == ["PUT", "PUT", "GET"] * 2
    assert waits.slept == [1.0, 1.0]  # the polls' waits only


def test_wait_before_tells_the_loop_how_long_the_next_batch_would_wait(api):
    """What the sync loop asks before it sends a full batch (and plans on meanwhile): while
    a batch is in flight, until its first poll is due; then, until the pace lets a full
    batch more go."""
    waits = Waits()
    JobsOnAClock(api, waits)
    connector = zendesk(waits, clock=waits.clock)
    assert connector.wait_before(499) == 0.0  # nothing sent: nothing to wait for
    answer = connector.submit_many(
        [change(str(t), add_tags=("a",)) for t in range(40000, 40499)], NOW)
    waits.now += 0.25
    assert connector.wait_before(499) == 0.75  # the jobs' first poll is due in 0.75 s
    assert all(r.error is None for r in answer())  # polled then, in Zendesk's next second
    assert waits.slept == [0.75]
    assert connector.wait_before(499) == pytest.approx(1.001)  # until that second is past
    assert connector.wait_before(2) == pytest.approx(1.001)  # no room beside 499 either
    assert connector.wait_before(1) == 0.0  # but for one more: 500 in a second at most
    waits.now += 1.001
    assert connector.wait_before(499) == 0.0


def test_a_batch_of_one_is_a_single_safe_update(api):
    api.put(f"{URL}/api/v2/tickets/35436", json=load("ticket_update_35436"))
    [result] = zendesk().apply_many([change(add_tags=("a",))], NOW)
    assert result.error is None and len(api.calls) == 1


# -- configuration -------------------------------------------------------------------------

SETTINGS = {"type": "zendesk", "url": "https://acme.zendesk.com", "email": EMAIL,
            "token": TOKEN}


def test_from_settings_builds_one_budget_for_the_exports_and_one_for_the_rest():
    connector = open_connector(dict(SETTINGS), Path("."))
    assert isinstance(connector, Zendesk)
    assert connector.identity == "zendesk:https://acme.zendesk.com"
    assert (connector.exports.throttle.per_minute, connector.api.throttle.per_minute) == (10,
                                                                                          200)
    # Five jobs of up to 100 tickets in flight at once (jobs_at_once), 499 tickets.
    assert connector.capabilities.bulk_writes and connector.capabilities.batch_size == 499
    assert connector.capabilities.safe_update and connector.capabilities.reads_notes
    custom = open_connector({**SETTINGS, "requests_per_minute": 30,
                             "api_requests_per_minute": 700, "bulk_writes": False}, Path("."))
    assert (custom.exports.throttle.per_minute, custom.api.throttle.per_minute) == (30, 700)
    assert not custom.capabilities.bulk_writes and custom.capabilities.batch_size == 1


@pytest.mark.parametrize("extra, message", [
    ({"tokn": "x"}, "connector.tokn: unknown setting for a zendesk connector"),
    ({"email": None}, "connector.email: the email address of the Zendesk agent"),
    ({"token": ""}, "connector.token: the Zendesk API token is required"),
    ({"url": "http://acme.zendesk.com"}, "connector.url: plain http is accepted for loopback"),
    ({"start_time": "2026-03-01"}, "connector.start_time: '2026-03-01' has no UTC offset"),
    ({"start_time": "2999-01-01T00:00:00Z"}, "connector.start_time: must lie in the past"),
    ({"groups": {"support": 360001}}, "connector.groups.support: expected a numeric Zendesk id"),
    ({"agents": {1: "sam", 2: "sam"}}, "connector.agents.2: the name 'sam' is given twice"),
    ({"tier": {"tag_prefix": "t_", "field": 1}}, "connector.tier: give one of tag_prefix, "
                                                  "field, not several"),
    ({"tier": {"colour": "x"}}, "connector.tier.colour: unknown key"),
    ({"escalation": {"organization_field": "x"}}, "connector.escalation.organization_field: "
                                                  "unknown key"),
    ({"priority_map": ["urgent"]}, "connector.priority_map: expected a mapping"),
    ({"bulk_writes": "yes"}, "connector.bulk_writes: expected true or false"),
    ({"job_timeout": 0}, "connector.job_timeout: expected a positive number"),
    ({"jobs_at_once": 10}, "connector.jobs_at_once: expected a whole number from 1 to 5, "
                           "got 10"),
])
def test_from_settings_names_the_key_at_fault(extra, message):
    with pytest.raises(ValueError) as info:
        Zendesk.from_settings({**SETTINGS, **extra}, Path("."))
    assert str(info.value).startswith(message)
    assert TOKEN not in str(info.value)


# -- end to end: sla-sync run --------------------------------------------------------------

E2E_URL = "https://acme.example.com"
E2E_POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"},
              "pause_statuses": ["pending"]}],
    "rules": [rule("breach", {"all": [cond("first_response_breached", "is_true")]},
                   act("add_tag", tag="sla_breach"),
                   act("add_note", text="{id}: first response overdue"))],
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A config for Zendesk with the token from the environment; retry waits do not wait."""
    monkeypatch.setenv("ZENDESK_TOKEN", TOKEN)
    monkeypatch.setattr("sla_sync.connector.http.wait", lambda seconds: None)
    (tmp_path / "policy.json").write_text(json.dumps(E2E_POLICY))
    config = tmp_path / "config.yaml"
    config.write_text(
        "connector:\n"
        "  type: zendesk\n"
        f"  url: {E2E_URL}\n"
        f"  email: {EMAIL}\n"
        "  token: ${ZENDESK_TOKEN}\n"
        "  start_time: 2026-03-01T00:00:00Z\n"
        "  groups: {360001: support}\n  sandbox: true\n"
        "policy: policy.json\nstate: state.db\nfirst_run: act\n")
    return config


def requests_by_kind(calls: list[Any]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for call in calls:
        path = call.request.path_url.split("?")[0]
        kind = {EVENT_EXPORT: "read events", TICKET_EXPORT: "read tickets",
                UPDATE_MANY: "write batch"}.get(path) or (
            "poll job" if path.startswith("/api/v2/job_statuses/") else
            f"{call.request.method} ticket")
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def test_a_run_reads_one_request_per_page_writes_one_job_per_batch_and_reruns_quietly(
        api, project):
    first_sync_pages(api, E2E_URL)
    api.put(E2E_URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{E2E_URL}/api/v2/job_statuses/{JOB}", json=load("job_status_completed"))
    first = cli("run", "--config", str(project), "--now", NOW.isoformat())
    assert first.exit_code == 0, first.output
    # Two breached tickets (35436, 35439); 35437 was answered in time and 35438's hour in
    # pending does not count.
    assert requests_by_kind(api.calls) == {"read events": 2, "read tickets": 2,
                                           "write batch": 1, "poll job": 1}
    batch = next(sent(c) for c in api.calls if c.request.method == "PUT")
    assert [(t["id"], t["additional_tags"], t["comment"]["public"]) for t in batch["tickets"]] \
        == [(35436, ["sla_breach"], False), (35439, ["sla_breach"], False)]
    assert "writes 2" in first.output and "cursor moved" in first.output

    calls_before = len(api.calls)
    events_page(api, "ticket_events_empty_end_of_stream", str(EVENTS_END), E2E_URL)
    tickets_page(api, "incremental_tickets_page_2_end_of_stream", E2E_URL, cursor=PAGE_2_AFTER)
    second = cli("run", "--config", str(project), "--now", NOW.isoformat())
    assert second.exit_code == 0, second.output
    assert requests_by_kind(api.calls[calls_before:]) == {"read events": 1, "read tickets": 1}
    assert "writes 0" in second.output


def test_150_breached_tickets_are_written_in_two_jobs_of_100_and_50_polled_together(
        api, project):
    template = load("incremental_tickets_page_1")["tickets"][0]  # unanswered since 09:00
    page = load("incremental_tickets_empty_end_of_stream")
    page["tickets"] = [{**template, "id": 40000 + n, "url": f"{E2E_URL}/api/v2/tickets/"
                        f"{40000 + n}.json"} for n in range(150)]
    api.get(E2E_URL + EVENT_EXPORT, json=load("ticket_events_empty_end_of_stream"))
    api.get(E2E_URL + TICKET_EXPORT, json=page)
    jobs: dict[str, list[int]] = {}

    def queue(request: Any) -> tuple[int, dict[str, str], str]:
        job = load("update_many_job_queued")
        job["job_status"]["id"] = f"{len(jobs) + 1:032x}"
        jobs[job["job_status"]["id"]] = [t["id"] for t in json.loads(request.body)["tickets"]]
        return 200, {}, json.dumps(job)

    def poll(request: Any) -> tuple[int, dict[str, str], str]:
        assert request.path_url.startswith("/api/v2/job_statuses/show_many?ids=")
        statuses = []
        for job_id in request.params["ids"].split(","):
            job = load("job_status_completed")["job_status"]
            job.update(id=job_id, total=len(jobs[job_id]), results=[
                {"id": n, "action": "update", "status": "Updated", "success": True}
                for n in jobs[job_id]])
            statuses.append(job)
        return 200, {}, json.dumps({"job_statuses": statuses})

    api.add_callback("PUT", E2E_URL + UPDATE_MANY, callback=queue,
                     content_type="application/json")
    api.add_callback("GET", re.compile(re.escape(E2E_URL) + r"/api/v2/job_statuses/\w+"),
                     callback=poll, content_type="application/json")
    result = cli("run", "--config", str(project), "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output
    assert requests_by_kind(api.calls) == {"read events": 1, "read tickets": 1,
                                           "write batch": 2, "poll job": 1}
    assert [len(ids) for ids in jobs.values()] == [100, 50]
    assert "writes 150" in result.output


def test_a_conflict_in_the_batch_is_re_read_and_written_again_over_the_persons_change(
        api, project):
    first_sync_pages(api, E2E_URL)
    api.put(E2E_URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{E2E_URL}/api/v2/job_statuses/{JOB}",
            json=load("job_status_completed_one_conflict"))
    api.get(f"{E2E_URL}/api/v2/tickets/35436",
            json=load("show_ticket_35436_changed_by_a_person"))
    api.get(f"{E2E_URL}/api/v2/tickets/35436/audits", json=load("ticket_audits_35436"))
    api.put(f"{E2E_URL}/api/v2/tickets/35436", json=load("ticket_update_35436"))
    result = cli("run", "--config", str(project), "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output
    assert "writes 2" in result.output
    retry = sent(api.calls[-1])["ticket"]
    assert retry == {"additional_tags": ["sla_breach"],
                     "comment": {"body": "35436: first response overdue", "public": False},
                     "safe_update": True, "updated_stamp": "2026-03-02T10:17:00Z"}
    mirrored = StateStore(project.parent / "state.db").record("35436")
    assert mirrored is not None and "vip_customer" in mirrored.tags
    assert mirrored.priority == "urgent"  # the person's change stands


def test_a_5xx_storm_fails_the_run_and_keeps_the_cursor(api, project):
    first_sync_pages(api, E2E_URL)
    api.put(E2E_URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{E2E_URL}/api/v2/job_statuses/{JOB}", json=load("job_status_completed"))
    assert cli("run", "--config", str(project), "--now", NOW.isoformat()).exit_code == 0
    identity = f"zendesk:{E2E_URL}"
    cursor = StateStore(project.parent / "state.db").cursor(identity)
    api.get(E2E_URL + EVENT_EXPORT, status=503,
            match=query(start_time=str(EVENTS_END), include="comment_events"))
    failed = cli("run", "--config", str(project), "--now", "2026-03-02T10:30:00+00:00")
    assert failed.exit_code == 1
    assert "run failed, cursor not moved" in failed.stderr
    assert "still failing after retries (HTTP 503)" in failed.stderr
    assert StateStore(project.parent / "state.db").cursor(identity) == cursor
    assert TOKEN not in failed.output


# -- writes whose outcome is unknown ---------------------------------------------------------

def exported(ticket_id: int) -> dict[str, Any]:
    """The recorded ticket object of the first sync's export pages."""
    for name in ("incremental_tickets_page_1", "incremental_tickets_page_2_end_of_stream"):
        for ticket in load(name)["tickets"]:
            if ticket["id"] == ticket_id:
                return ticket
    raise KeyError(ticket_id)


def read_back_as(api: Any, ticket_id: int, escalated: bool, url: str = E2E_URL) -> None:
    """Show ticket and its audits, before or after sla-sync's update landed: the recorded
    ticket object, and the creation audit of ticket_audits_35436.json; after the update,
    the tag is on the ticket and an audit at 10:20 holds the private comment (Zendesk's
    Comment audit event: body, plain_body, public)."""
    ticket = dict(exported(ticket_id))
    audits = load("ticket_audits_35436")
    creation = {**audits["audits"][0], "ticket_id": ticket_id,
                "created_at": ticket["created_at"]}
    audits["audits"] = [creation]
    if escalated:
        ticket.update(tags=[*ticket["tags"], "sla_breach"], updated_at="2026-03-02T10:20:00Z")
        text = f"{ticket_id}: first response overdue"
        audits["audits"].append({
            "id": 9900 + ticket_id % 100, "ticket_id": ticket_id,
            "created_at": "2026-03-02T10:20:00Z", "author_id": 361009,
            "events": [{"id": 9901, "type": "Comment", "author_id": 361009, "body": text,
                        "html_body": f"<p>{text}</p>", "plain_body": text, "public": False,
                        "attachments": [], "audit_id": 9900},
                       {"id": 9902, "type": "Change", "field_name": "tags",
                        "value": ticket["tags"], "previous_value": exported(ticket_id)["tags"]}]})
    api.get(f"{url}/api/v2/tickets/{ticket_id}", json={"ticket": ticket})
    api.get(f"{url}/api/v2/tickets/{ticket_id}/audits", json=audits)


def test_read_back_reads_the_private_comments_since_the_plan_from_the_audits(api):
    read_back_as(api, 35436, escalated=True, url=URL)
    record = zendesk().read_back("35436", at("2026-03-02 09:00"))
    assert record is not None
    # The requester's public comment is not a note of sla-sync's: it stays out.
    assert [(n.at, n.text) for n in record.notes] == [
        (at("2026-03-02 10:20"), "35436: first response overdue")]
    assert len(api.calls) == 2  # the audits that give the history also give the comments
    read_back_as(api, 35436, escalated=True, url=URL)
    later = zendesk().read_back("35436", at("2026-03-02 10:21"))
    assert later is not None and later.notes == ()
    read_back_as(api, 35436, escalated=True, url=URL)
    plain = zendesk().get("35436")
    assert plain is not None and plain.notes == ()


def test_update_many_is_never_resent_after_its_answer_was_lost(api):
    api.put(URL + UPDATE_MANY, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown) as info:
        zendesk().apply_many([change(add_tags=("a",)), change("35439", notes=("x",))], NOW)
    assert info.value.record_id is None
    assert [c.request.method for c in api.calls] == ["PUT"]


def test_a_safe_update_whose_answer_was_lost_is_retried_and_a_409_says_it_landed(api):
    api.put(f"{URL}/api/v2/tickets/35436", body=requests.exceptions.ReadTimeout("late"))
    api.put(f"{URL}/api/v2/tickets/35436", status=409, json=load("ticket_update_conflict_409"))
    with pytest.raises(ConflictError):
        zendesk().apply(change(add_tags=("sla_breach",), notes=("Overdue.",)), NOW)
    assert [sent(c)["ticket"]["updated_stamp"] for c in api.calls] == \
        ["2026-03-02T09:00:00Z"] * 2  # the same stamp: the second send cannot apply twice


def test_an_update_without_a_stamp_is_not_resent_after_its_answer_was_lost(api):
    api.put(f"{URL}/api/v2/tickets/35436", body=requests.exceptions.ConnectionError("reset"))
    with pytest.raises(OutcomeUnknown) as info:
        zendesk().apply(ChangeSet("35436", notes=("Overdue.",)), NOW)
    assert info.value.record_id == "35436" and len(api.calls) == 1


def test_failed_job_polls_leave_writes_pending_and_a_rerun_in_the_lagging_minute_posts_nothing(
        api, project):
    """The issue's trial: job-status polls fail, and the export still shows the tickets as
    before the batch. The writes stay pending; the rerun reads each ticket back (show ticket
    and audits), finds the tag and the comment, and records them without a second post."""
    first_sync_pages(api, E2E_URL)
    api.put(E2E_URL + UPDATE_MANY, json=load("update_many_job_queued"))
    api.get(f"{E2E_URL}/api/v2/job_statuses/{JOB}", status=503)
    for ticket_id in (35436, 35439):
        read_back_as(api, ticket_id, escalated=False)  # the job has not run yet
    first = cli("run", "--config", str(project), "--now", NOW.isoformat())
    assert first.exit_code != 0
    assert "the write stays pending and the next run settles it" in first.stderr
    store = StateStore(project.parent / "state.db")
    assert sorted(c.record_id for c, _, _ in store.pending()) == ["35436", "35439"]
    assert store.cursor(f"zendesk:{E2E_URL}") is None
    store.close()

    api.reset()
    first_sync_pages(api, E2E_URL)  # the export lags: the tickets as they were
    for ticket_id in (35436, 35439):
        read_back_as(api, ticket_id, escalated=True)  # the job ran meanwhile
    second = cli("run", "--config", str(project), "--now", NOW.isoformat())
    assert second.exit_code == 0, second.output
    assert [c.request.method for c in api.calls].count("PUT") == 0, "nothing posted twice"
    assert "writes 0" in second.output and second.stderr.count("had gone through") == 2
    store = StateStore(project.parent / "state.db")
    assert store.pending() == [] and store.active_rules() == {
        "35436": frozenset({"breach"}), "35439": frozenset({"breach"})}


# -- requests per sync (bench/bench_requests.py's scenario, counted) ---------------------------

def test_a_sync_costs_the_documented_minimum_of_requests_notes_riding_in_the_jobs():
    bench = bench_script("bench_requests")
    # 450 tickets read (one event page, one ticket page), 250 written in jobs of 100, 100
    # and 50, polled together once; the 120 notes are private comments inside those updates.
    count = bench.count_zendesk(bench.Scenario(450, 250, 120))
    assert count.made == {"event export": 1, "ticket export": 1, "update_many": 3,
                          "job poll": 1}
    assert count.made == count.minimum


# -- the mapping's quick paths against their definitions -------------------------------------

def tag_outcome(read: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "read", read(*args)
    except ValueError as exc:
        return "failed", str(exc)


def three_readings(vocabulary: Vocabulary, ticket: Any, tags: list[str], organizations: Any,
                   notices: Any) -> tuple[tuple[str, ...], str, int]:
    return (tuple(t for t in tags if not vocabulary.consumes(t)),
            vocabulary.tier_of(ticket, tags, organizations),
            vocabulary.level_of(ticket, tags, notices))


def test_reading_the_tags_in_one_pass_gives_what_the_three_readings_give():
    """Vocabulary.read_tags reads the kept tags, the tier and the escalation level in one
    pass where both come from tag prefixes; consumes, tier_of and level_of are the
    definitions. Over random tags (levels, prefixes alone, several tiers, prefixes that
    overlap or are equal or empty, non-ASCII digits) and vocabularies of every kind, both
    give the same."""
    import random

    from sla_sync.connector.mapping import Notices
    from sla_sync.connector.zendesk import Source
    rng = random.Random(13)
    words = ["vip", "tier_gold", "tier_", "tier_silver", "sla_escalation_2", "sla_escalation_10",
             "sla_escalation_", "sla_escalation_x", "sla_", "sla_gold", "", "lvl_3", "lvl_03",
             "sla_escalation_\u0663", "sla_escalation_2a", "Tier_gold", "sla_escalation_-1",
             "sla_escalation_\u00b2", "lvl_\u00b2"]
    prefixes = ["tier_", "sla_", "sla_escalation_", "lvl_", "", "t"]
    ticket = {"id": 1, "organization_id": 55,
              "custom_fields": [{"id": 900, "value": "gold"}, {"id": 901, "value": 2}]}
    organizations = {55: {"organization_fields": {"support_tier": "vip"}}}
    seen = set()
    for _ in range(5000):
        vocabulary = Vocabulary.from_settings({})
        vocabulary.tier = rng.choice([Source("tag_prefix", rng.choice(prefixes))] * 4 + [
            Source("field", 900), Source("organization_field", "support_tier")])
        vocabulary.escalation = rng.choice([Source("tag_prefix", rng.choice(prefixes))] * 4
                                           + [Source("field", 901)])
        vocabulary.tier_default = rng.choice(["standard", "bronze"])
        tags = [rng.choice(words) for _ in range(rng.randrange(6))]
        notices, expected_notices = Notices(), Notices()
        quick = tag_outcome(vocabulary.read_tags, ticket, tags, organizations, notices)
        full = tag_outcome(three_readings, vocabulary, ticket, tags, organizations,
                           expected_notices)
        assert quick == full, (vocabulary, tags)
        assert notices.take() == expected_notices.take()
        seen.add((quick[0], quick[0] == "read" and quick[1][2] > 0,
                  quick[0] == "read" and quick[1][1] not in ("standard", "bronze")))
    assert seen >= {("read", True, True), ("read", False, False), ("read", True, False)}


def test_a_superscript_digit_is_no_level_and_no_crash():
    """'²' is a digit to str.isdigit but no number to int(): a tag sla_escalation_² stays a
    tag, an escalation or time tracking field holding it is noticed and read as nothing, and
    the fetch goes on (it raised ValueError out of the connector before)."""
    from sla_sync.connector.mapping import Notices
    words = Vocabulary.from_settings({})
    ticket = {"id": 5, "custom_fields": [{"id": 901, "value": "\u00b2"}]}
    notices = Notices()
    assert words.read_tags(ticket, ["sla_escalation_\u00b2", "sla_escalation_2"], {},
                           notices) == (("sla_escalation_\u00b2",), "standard", 2)
    by_field = Vocabulary.from_settings({"escalation": {"field": 901}})
    assert by_field.level_of(ticket, [], notices) == 0
    worked = Zendesk(HttpClient(URL, name="zendesk"), worked_field=901)
    assert worked._worked(ticket, notices) is None
    assert notices.take() == [
        "ticket 5: escalation field 901 holds '\u00b2', not a level: read as 0",
        "ticket 5: time tracking field 901 holds '\u00b2', not seconds: its worked time is "
        "left out"]
