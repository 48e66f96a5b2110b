"""The Freshdesk connector against recorded API v2 payloads (tests/fixtures/freshdesk/),
served by `responses`: paging and windows, retries, conflicts, bulk jobs, tags, notes,
secrets, and a sync end to end through the CLI."""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests
import responses
from requests.auth import HTTPBasicAuth
from responses import matchers

from conftest import Waits, act, at, bench_script, cli, cond, iso, rule
from sla_sync.connector import ConflictError, ConnectorError, RecordGone, open_connector
from sla_sync.connector.freshdesk import Freshdesk, Mark, Options
from sla_sync.connector.http import HttpClient
from sla_sync.connector.model import ChangeSet, StatusChange, parse_instant
from sla_sync.sync_state import StateStore

URL = "https://acme.example.com"
API_KEY = "fd-5f3c9a71b2e84d06"  # the secret: never in a message, a log or the state file
FIXTURES = Path(__file__).parent / "fixtures" / "freshdesk"
TICKETS = f"{URL}/api/v2/tickets"
START = "2026-03-02T00:00:00Z"
NOW = at("2026-03-02 10:20")
NAMES = {"groups": {48000123: "support", 48000124: "billing"},
         "agents": {48000501: "Ana Lima", 48000502: "Ben Okafor"}}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def freshdesk(waits: Waits | None = None, window_pages: int = 250, job_timeout: float = 120,
              **settings: Any) -> Freshdesk:
    waits = waits or Waits()
    client = HttpClient(URL, auth=HTTPBasicAuth(API_KEY, "X"), name="freshdesk",
                        sleep=waits.sleep, clock=waits.clock, max_attempts=4)
    options = Options.from_settings({"start_at": START, **settings})
    return Freshdesk(client, options, window_pages=window_pages, job_timeout=job_timeout)


def query(since: str, page: int | None = None) -> dict[str, str]:
    params = {"updated_since": since, "order_by": "updated_at", "order_type": "asc",
              "per_page": "100", "include": "stats"}
    return params | ({"page": str(page)} if page else {})


def add_page(api: responses.RequestsMock, since: str, body: Any, page: int | None = None,
             next_page: int | None = None, **kwargs: Any) -> None:
    headers = {"Link": f'<{TICKETS}?{urlencode(query(since, next_page))}>; rel="next"'} \
        if next_page else {}
    api.get(TICKETS, json=body, headers=headers,
            match=[matchers.query_param_matcher(query(since, page))], **kwargs)


def ticket_view(ticket: dict[str, Any], stats: bool = True) -> dict[str, Any]:
    return {"match": [matchers.query_param_matcher({"include": "stats"} if stats else {})],
            "json": ticket}


def sent(call: Any) -> Any:
    return json.loads(call.request.body)


def version(ticket: dict[str, Any]) -> Any:
    return parse_instant(ticket["updated_at"], "updated_at")


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock


# -- reading ----------------------------------------------------------------------------------

def test_an_incremental_read_takes_one_request_per_page_and_each_cursor_resumes_after_it(api):
    add_page(api, START, fixture("incremental_page_1_of_2"), next_page=2)
    add_page(api, START, fixture("incremental_page_2_end_of_stream"), page=2)
    pages = list(freshdesk().fetch(None))
    assert [[r.id for r in page.records] for page in pages] == [
        ["1001", "1002", "1003"], ["1004", "1005"]]
    assert len(api.calls) == 2
    assert Mark.decode(pages[0].cursor or "") == Mark(at("2026-03-02 09:10"), frozenset({"1003"}))

    # Resuming after page 1: 1003 shares 09:10 with 1004; it was read, 1004 was not.
    add_page(api, "2026-03-02T09:10:00Z",
             fixture("incremental_from_0910_repeats_the_edge_tickets"))
    [resumed] = freshdesk().fetch(pages[0].cursor)
    assert [r.id for r in resumed.records] == ["1004", "1005"]
    assert Mark.decode(resumed.cursor or "") == Mark(at("2026-03-02 09:20"), frozenset({"1005"}))
    assert len(api.calls) == 3


def test_the_window_moves_forward_before_the_page_cap_and_skips_what_it_already_read(api):
    add_page(api, START, fixture("incremental_page_1_of_2"), next_page=2)
    add_page(api, START, fixture("incremental_page_2_end_of_stream")[:1], page=2, next_page=3)
    add_page(api, "2026-03-02T09:10:00Z",
             fixture("incremental_from_0910_repeats_the_edge_tickets"))
    pages = list(freshdesk(window_pages=2).fetch(None))
    assert [r.id for page in pages for r in page.records] == [
        "1001", "1002", "1003", "1004", "1005"]
    assert [parse_qs(urlparse(c.request.url).query).get("page") for c in api.calls] == [
        None, ["2"], None]  # page 3 is never asked for: a new window starts at page 1


def test_nothing_new_is_one_empty_page_keeping_the_cursor(api):
    cursor = Mark(at("2026-03-02 09:20"), frozenset({"1005"})).encode()
    add_page(api, "2026-03-02T09:20:00Z", [fixture("incremental_page_2_end_of_stream")[1]])
    [page] = freshdesk().fetch(cursor)
    assert page.records == [] and page.cursor == cursor


def test_tickets_map_to_records_with_names_from_the_config(api):
    add_page(api, START, fixture("incremental_page_1_of_2") +
             fixture("incremental_page_2_end_of_stream"))
    [page] = freshdesk(**NAMES).fetch(None)
    first, second, third, fourth, fifth = page.records
    assert (first.kind, first.status, first.priority, first.channel, first.group,
            first.assignee, first.tier, first.tags) == (
        "ticket", "open", "normal", "email", "support", "", "gold", ("printer",))
    assert first.custom["custom_fields"] == {"cf_region": "emea"}
    assert first.custom["fr_due_by"] == "2026-03-02T12:00:00Z"
    assert (second.status, second.priority, second.channel, second.group, second.assignee,
            second.escalation_level, second.tags) == (
        "pending", "high", "web", "billing", "Ana Lima", 1, ("vip-callback",))
    assert second.first_response_at == at("2026-03-02 07:45")
    assert (third.status, third.channel, third.solved_at) == (
        "solved", "phone", at("2026-03-02 09:10"))
    assert (fourth.status, fourth.priority, fourth.channel, fourth.assignee) == (
        "closed", "urgent", "chat", "Ben Okafor")
    assert (fifth.channel, fifth.status) == ("web", "open")
    assert page.notices == []
    assert first.url == f"{URL}/a/tickets/{first.id}"  # the agent's view


def test_status_history_is_what_the_stats_timestamps_tell(api):
    add_page(api, START, fixture("incremental_page_1_of_2") +
             fixture("incremental_page_2_end_of_stream"))
    [page] = freshdesk().fetch(None)
    history = {r.id: [(c.at, c.status) for c in r.status_history] for r in page.records}
    t = at
    assert history == {
        "1001": [(t("2026-03-02 08:00"), "open")],
        "1002": [(t("2026-03-02 07:30"), "open"), (t("2026-03-02 08:30"), "pending")],
        "1003": [(t("2026-03-02 06:00"), "open"), (t("2026-03-02 09:10"), "solved")],
        "1004": [(t("2026-03-02 05:00"), "open"), (t("2026-03-02 07:00"), "solved"),
                 (t("2026-03-02 09:10"), "closed")],
        # resolved at 06:00, reopened at 08:00: the solved spell is known, and ends
        "1005": [(t("2026-03-02 04:00"), "open"), (t("2026-03-02 06:00"), "solved"),
                 (t("2026-03-02 08:00"), "open")],
    }
    assert page.records[4].status_timeline()[-1] == StatusChange(t("2026-03-02 08:00"), "open")


# -- the conversation and the worked time -------------------------------------------------------
# Ticket 1006: pat emailed at 08:00, Ana replied at 08:20 and noted privately at 08:25, pat
# wrote at 08:30 and again at 08:40, unanswered since; Ana logged 12 min and 1h05.

def conversation_reads(api: responses.RequestsMock, ticket_id: int = 1006, **pages: Any) -> None:
    for what in ("conversations", "time_entries"):
        api.get(f"{TICKETS}/{ticket_id}/{what}", **pages.get(what, {
            "json": fixture(f"{what}_ticket_1006")}),
            match=[matchers.query_param_matcher({"per_page": "100"})])


def test_by_default_the_conversation_is_what_stats_tells_at_no_request(api):
    add_page(api, START, [fixture("ticket_1006_customer_replied")])
    [page] = freshdesk().fetch(None)
    [record] = page.records
    assert record.messages is not None
    # The opening email, Ana's first (and last) reply, pat's last message: pat's 08:30
    # message and the private note are not in stats.
    assert [(m.at, m.author, m.public) for m in record.messages] == [
        (at("2026-03-02 08:00"), "customer", True), (at("2026-03-02 08:20"), "agent", True),
        (at("2026-03-02 08:40"), "customer", True)]
    assert record.worked_seconds is None and record.assignment_history is None
    assert len(api.calls) == 1


def test_with_conversations_and_time_entries_each_changed_ticket_costs_two_reads_more(api):
    add_page(api, START, [fixture("ticket_1006_customer_replied")])
    conversation_reads(api)
    [page] = freshdesk(conversations=True, time_entries=True).fetch(None)
    [record] = page.records
    assert record.messages is not None
    assert [(m.at, m.author, m.public) for m in record.messages] == [
        (at("2026-03-02 08:00"), "customer", True), (at("2026-03-02 08:20"), "agent", True),
        (at("2026-03-02 08:25"), "agent", False), (at("2026-03-02 08:30"), "customer", True),
        (at("2026-03-02 08:40"), "customer", True)]
    assert record.first_response_at == at("2026-03-02 08:20")
    assert record.worked_seconds == 12 * 60 + 65 * 60
    assert [urlparse(c.request.url).path for c in api.calls] == [
        "/api/v2/tickets", "/api/v2/tickets/1006/conversations",
        "/api/v2/tickets/1006/time_entries"]


def test_a_ticket_without_stats_has_no_conversation_rather_than_a_guessed_one(api):
    bare = {k: v for k, v in fixture("ticket_1006_customer_replied").items() if k != "stats"}
    add_page(api, START, [bare])
    [page] = freshdesk().fetch(None)
    assert page.records[0].messages is None


def test_an_outbound_email_opens_with_the_agents_message(api):
    outbound = fixture("ticket_1006_customer_replied") | {"source": 10}
    add_page(api, START, [outbound])
    [page] = freshdesk().fetch(None)
    assert page.records[0].messages is not None
    assert page.records[0].messages[0].author == "agent"


def test_a_ticket_gone_before_its_conversations_are_read_is_skipped_and_reported(api):
    add_page(api, START, [fixture("ticket_1006_customer_replied"),
                          fixture("incremental_page_1_of_2")[0]])
    api.get(f"{TICKETS}/1006/conversations", status=404, json={})
    api.get(f"{TICKETS}/1001/conversations", json=[])
    [page] = freshdesk(conversations=True).fetch(None)
    assert [r.id for r in page.records] == ["1001"]
    assert page.records[0].messages is not None and len(page.records[0].messages) == 1
    assert [str(p) for p in page.problems] == ["record '1006': deleted since it was listed"]


def test_a_malformed_time_entry_skips_its_ticket_naming_the_entry(api):
    add_page(api, START, [fixture("ticket_1006_customer_replied")])
    entries = fixture("time_entries_ticket_1006")
    entries[1]["time_spent"] = "65 min"
    api.get(f"{TICKETS}/1006/time_entries", json=entries)
    [page] = freshdesk(time_entries=True).fetch(None)
    assert page.records == []
    assert [str(p) for p in page.problems] == [
        "record '1006': time_entries[1].time_spent: expected hh:mm, got '65 min'"]


def test_read_back_reads_the_conversations_once_for_the_notes_and_the_conversation(api):
    api.get(f"{TICKETS}/1006", **ticket_view(fixture("ticket_1006_customer_replied")))
    api.get(f"{TICKETS}/1006/conversations", json=fixture("conversations_ticket_1006"))
    record = freshdesk(conversations=True).read_back("1006", at("2026-03-02 08:00"))
    assert record is not None and record.messages is not None and len(record.messages) == 5
    assert [n.text for n in record.notes] == ["Floor 2 is billing's printer"]
    assert len(api.calls) == 2


def test_tier_from_a_tag_prefix_and_escalation_from_a_custom_field(api):
    tickets = fixture("incremental_page_1_of_2")
    tickets[1]["custom_fields"]["cf_sla_escalation"] = 2
    tickets[1]["tags"].append("tier-vip")
    add_page(api, START, tickets)
    [page] = freshdesk(tier_field=None, tier_tag_prefix="tier-",
                       escalation_field="cf_sla_escalation").fetch(None)
    second = page.records[1]
    assert (second.tier, second.escalation_level) == ("vip", 2)
    assert second.tags == ("sla_escalation_1", "vip-callback")  # not consumed in field mode
    assert "cf_sla_escalation" not in second.custom["custom_fields"]


def test_a_malformed_ticket_is_skipped_and_reported_while_the_rest_proceed(api):
    add_page(api, START, fixture("incremental_page_with_malformed_tickets"))
    [page] = freshdesk().fetch(None)
    assert [r.id for r in page.records] == ["2001", "2005"]
    assert [str(p) for p in page.problems] == [
        "record '2002': created_at: '2026-03-02 08:00' has no UTC offset (refusing to guess "
        "a timezone)",
        "record #2: has no id",
        "record '2004': tags: expected a list of strings, got 'urgent'",
        "record #4: is not an object"]
    assert Mark.decode(page.cursor or "").since == at("2026-03-02 09:04")


def test_unknown_priority_status_and_source_read_as_the_fallback_with_one_notice_each(api):
    add_page(api, START, fixture("incremental_page_with_unknown_priority_status_and_source"))
    [page] = freshdesk().fetch(None)
    assert [(r.priority, r.status, r.channel) for r in page.records] == [
        ("normal", "open", "other")] * 2
    assert page.notices == [
        "unknown status 6: read as 'open' (map it in the connector's status_map setting)",
        "unknown priority 5: read as 'normal' (map it in the connector's priority_map "
        "setting)",
        "unknown channel 11: read as 'other' (map it in the connector's channel_map setting)"]

    add_page(api, START, fixture("incremental_page_with_unknown_priority_status_and_source"))
    [mapped] = freshdesk(status_map={6: "hold"}, priority_map={"5": "urgent"},
                         channel_map={11: "shop"}).fetch(None)
    assert (mapped.records[0].status, mapped.records[0].priority,
            mapped.records[0].channel) == ("hold", "urgent", "shop")
    assert mapped.notices == []


def test_a_link_to_another_host_is_not_followed(api):
    api.get(TICKETS, json=fixture("incremental_page_1_of_2"),
            headers={"Link": '<https://collector.example.net/api/v2/tickets?page=2>; '
                             'rel="next"'})
    pages = freshdesk().fetch(None)
    next(pages)
    with pytest.raises(ConnectorError, match="points at another host"):
        next(pages)
    assert len(api.calls) == 1


# -- retries ---------------------------------------------------------------------------------

def test_a_429_waits_what_retry_after_says_then_succeeds(api):
    api.get(TICKETS, status=429, headers={"Retry-After": "7"})
    add_page(api, START, fixture("incremental_page_2_end_of_stream"))
    waits = Waits()
    [page] = freshdesk(waits).fetch(None)
    assert [r.id for r in page.records] == ["1004", "1005"]
    assert waits.slept == [7.0]
    assert len(api.calls) == 2


def test_a_5xx_storm_exhausts_the_retries_and_is_a_retriable_error(api):
    api.get(TICKETS, status=503)
    waits = Waits()
    with pytest.raises(ConnectorError) as info:
        list(freshdesk(waits).fetch(None))
    assert info.value.retriable and info.value.record_id is None
    assert "still failing after retries (HTTP 503)" in str(info.value)
    assert len(api.calls) == 4 and len(waits.slept) == 3  # max_attempts 4


# -- writing ---------------------------------------------------------------------------------

def echo_update(ticket: dict[str, Any], updated_at: str):
    """A PUT callback: the ticket with the body's properties, as Freshdesk answers."""
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        written = {**ticket, **json.loads(request.body), "updated_at": updated_at}
        written.pop("stats", None)  # an update's response has no stats
        return 200, {}, json.dumps(written)
    return answer


def test_a_conflict_writes_nothing_and_the_fresh_read_keeps_the_other_writers_change(api):
    edited = fixture("ticket_1002_edited_by_an_agent")
    api.get(f"{TICKETS}/1002", **ticket_view(edited))  # every read from here on
    connector = freshdesk(**NAMES)
    planned = ChangeSet("1002", base_updated_at=at("2026-03-02 09:05"),
                        fields={"priority": "urgent"}, add_tags=("sla_breach",))
    with pytest.raises(ConflictError, match="changed since it was read") as info:
        connector.apply(planned, NOW)
    assert info.value.record_id == "1002"
    assert [c.request.method for c in api.calls] == ["GET"]

    # What the sync loop does next: read again, plan again on what the agent left, apply.
    fresh = connector.get("1002")
    assert fresh is not None and fresh.assignee == "Ben Okafor"
    api.add_callback(responses.PUT, f"{TICKETS}/1002",
                     callback=echo_update(edited, "2026-03-02T10:20:01Z"))
    replanned = ChangeSet("1002", base_updated_at=fresh.updated_at,
                          fields={"priority": "urgent"}, add_tags=("sla_breach",))
    written = connector.apply(replanned, NOW)
    assert sent(api.calls[-1]) == {"priority": 4, "tags": [
        "sla_escalation_1", "vip-callback", "customer-called", "sla_breach"]}
    assert written is not None
    assert (written.priority, written.assignee, written.tags) == (
        "urgent", "Ben Okafor", ("vip-callback", "customer-called", "sla_breach"))
    assert written.updated_at == at("2026-03-02 10:20:01")
    assert written.first_response_at == at("2026-03-02 07:45")  # from the fresh read's stats


def test_tags_are_merged_on_a_fresh_read_so_a_persons_tag_is_kept(api):
    current = fixture("ticket_1002_with_stats")
    current["tags"] = ["sla_warning", "Printer", "sla_escalation_1", "refund-promised"]
    api.get(f"{TICKETS}/1002", **ticket_view(current))
    api.add_callback(responses.PUT, f"{TICKETS}/1002",
                     callback=echo_update(current, "2026-03-02T10:20:01Z"))
    change = ChangeSet("1002", base_updated_at=at("2026-03-02 09:05"),
                       add_tags=("sla_breach", "printer"), remove_tags=("sla_warning",),
                       escalation_level=2)
    freshdesk().apply(change, NOW)
    # Freshdesk replaces the whole list: everything a person put there goes back with it.
    assert sent(api.calls[-1]) == {
        "tags": ["Printer", "refund-promised", "sla_breach", "sla_escalation_2"]}


def test_notes_are_private_and_sent_as_escaped_html(api):
    api.get(f"{TICKETS}/1002", **ticket_view(fixture("ticket_1002_with_stats")))
    api.post(f"{TICKETS}/1002/notes", json=fixture("note_created_private"), status=201)
    change = ChangeSet("1002", base_updated_at=at("2026-03-02 09:05"),
                       notes=("Overdue <30 min> & counting\nsee the runbook",))
    assert freshdesk().apply(change, NOW) is None  # the note moved updated_at: not known
    assert [c.request.method for c in api.calls] == ["GET", "POST"]  # no PUT for a note
    assert sent(api.calls[-1]) == {
        "body": "Overdue &lt;30 min&gt; &amp; counting<br>see the runbook", "private": True}


def test_a_ticket_deleted_since_it_was_read_is_gone(api):
    api.get(f"{TICKETS}/1002", status=404, **ticket_view({}))
    with pytest.raises(RecordGone) as info:
        freshdesk().apply(ChangeSet("1002", fields={"priority": "urgent"}), NOW)
    assert info.value.record_id == "1002"
    deleted = fixture("ticket_1002_with_stats") | {"deleted": True}
    api.get(f"{TICKETS}/1002", **ticket_view(deleted))
    assert freshdesk().get("1002") is None


def test_a_refused_update_fails_that_ticket_only_naming_the_field(api):
    api.get(f"{TICKETS}/1002", **ticket_view(fixture("ticket_1002_with_stats")))
    api.put(f"{TICKETS}/1002", status=400, json=fixture("error_validation_failed"))
    with pytest.raises(ConnectorError) as info:
        freshdesk().apply(ChangeSet("1002", fields={"status": "closed"}), NOW)
    assert info.value.record_id == "1002" and not info.value.retriable
    assert "Validation failed; status: It should be one of these values" in str(info.value)


def fresh_reads(api: responses.RequestsMock, *tickets: dict[str, Any]) -> None:
    for ticket in tickets:
        api.get(f"{TICKETS}/{ticket['id']}", **ticket_view(ticket, stats=False))


def test_a_batch_of_identical_changes_is_one_bulk_update_reporting_the_ticket_that_failed(api):
    page = fixture("incremental_page_1_of_2")
    fresh_reads(api, *page)
    api.post(f"{TICKETS}/bulk_update", status=202, json=fixture("bulk_update_accepted"))
    job = f"{URL}/api/v2/jobs/5e1c0b2a-37f0-4a55-9d6b-8f7c1a2b3c4d"
    api.get(job, json=fixture("job_in_progress"))
    api.get(job, json=fixture("job_completed_one_ticket_failed"))
    waits = Waits()
    changes = [ChangeSet(str(t["id"]), base_updated_at=version(t), fields={"priority": "urgent"})
               for t in page]
    results = freshdesk(waits).apply_many(changes, NOW)
    assert [r.record_id for r in results] == ["1001", "1002", "1003"]
    assert [r.error is None for r in results] == [True, False, True]
    failed = results[1].error
    assert failed is not None and failed.record_id == "1002"
    assert "priority cannot be changed while the ticket is locked" in str(failed)
    writes = [c for c in api.calls if c.request.method != "GET"]
    assert len(writes) == 1
    assert sent(writes[0]) == {"bulk_action": {"ids": [1001, 1002, 1003],
                                               "properties": {"priority": 4}}}
    assert waits.slept == [1.0, 2.0]  # the job is polled, never slept on for real


def test_a_mixed_batch_bulks_what_it_can_and_puts_the_rest_results_in_order(api):
    page = fixture("incremental_page_1_of_2")
    base = {str(t["id"]): version(t) for t in page}
    fresh_reads(api, page[0], page[2])
    api.post(f"{TICKETS}/bulk_update", status=202, json=fixture("bulk_update_accepted"))
    api.get(re.compile(f"{URL}/api/v2/jobs/.+"), json={
        "id": "5e1c0b2a", "status": "COMPLETED",
        "data": [{"id": 1001, "success": True}, {"id": 1003, "success": True}]})
    api.get(f"{TICKETS}/1002", **ticket_view(page[1]))
    api.add_callback(responses.PUT, f"{TICKETS}/1002",
                     callback=echo_update(page[1], "2026-03-02T10:20:09Z"))
    changes = [
        ChangeSet("1001", base_updated_at=base["1001"], fields={"group": "billing"}),
        ChangeSet("1002", base_updated_at=base["1002"], add_tags=("sla_breach",)),
        ChangeSet("1003", base_updated_at=base["1003"], fields={"group": "billing"}),
        ChangeSet("1004", fields={"group": "escalations"}),
    ]
    results = freshdesk(**NAMES).apply_many(changes, NOW)
    assert [r.record_id for r in results] == ["1001", "1002", "1003", "1004"]
    assert [r.error for r in results[:3]] == [None, None, None]
    assert results[1].record is not None and "sla_breach" in results[1].record.tags
    assert "no Freshdesk group_id for 'escalations'" in str(results[3].error)
    assert [(c.request.method, urlparse(c.request.url).path) for c in api.calls
            if c.request.method != "GET"] == [("POST", "/api/v2/tickets/bulk_update"),
                                              ("PUT", "/api/v2/tickets/1002")]
    assert sent(api.calls[2])["bulk_action"]["properties"] == {"group_id": 48000124}


def test_a_bulk_job_still_running_at_the_timeout_fails_its_tickets_as_retriable(api):
    page = fixture("incremental_page_1_of_2")[:2]
    fresh_reads(api, *page)
    api.post(f"{TICKETS}/bulk_update", status=202, json=fixture("bulk_update_accepted"))
    api.get(re.compile(f"{URL}/api/v2/jobs/.+"), json=fixture("job_in_progress"))
    waits = Waits()
    changes = [ChangeSet(str(t["id"]), fields={"status": "pending"}) for t in page]
    results = freshdesk(waits, job_timeout=5).apply_many(changes, NOW)
    assert all(r.error is not None and r.error.retriable for r in results)
    assert "still running after 5s" in str(results[0].error)
    assert waits.slept == [1.0, 2.0, 4.0]


# -- secrets and settings --------------------------------------------------------------------

def test_the_api_key_is_never_in_an_error_or_a_log(api, caplog):
    caplog.set_level(logging.DEBUG)
    basic = base64.b64encode(f"{API_KEY}:X".encode()).decode()
    api.get(TICKETS, status=401, json=fixture("error_authentication_failed"))
    api.get(f"{TICKETS}/1002", status=503)
    connector = freshdesk()
    errors = []
    for attempt in (lambda: list(connector.fetch(None)), lambda: connector.get("1002")):
        with pytest.raises(ConnectorError) as info:
            attempt()
        errors.append(str(info.value))
    assert "authentication failed" in errors[0] and "HTTP 503" in errors[1]
    assert api.calls[0].request.headers["Authorization"] == f"Basic {basic}"
    for text in (*errors, caplog.text, connector.identity):
        assert API_KEY not in text and basic not in text


@pytest.mark.parametrize("settings, message", [
    ({"url": URL, "api_key": API_KEY, "password": "x"},
     "connector.password: unknown setting for a freshdesk connector"),
    ({"url": URL, "api_key": ""}, "connector.api_key: the Freshdesk API key is required"),
    ({"url": f"{URL}/api/v2", "api_key": API_KEY}, "connector.url: give the account's address"),
    ({"url": "http://acme.example.com", "api_key": API_KEY}, "connector.url: plain http"),
    ({"url": URL, "api_key": API_KEY, "groups": {1: "support", 2: "support"}},
     "connector.groups.2: 'support' names two ids"),
    ({"url": URL, "api_key": API_KEY, "status_map": {"waiting": "hold"}},
     "connector.status_map.waiting: expected a Freshdesk number"),
    ({"url": URL, "api_key": API_KEY, "start_at": "2026-03-01 00:00"},
     "connector.start_at: '2026-03-01 00:00' has no UTC offset"),
    ({"url": URL, "api_key": API_KEY, "escalation_field": "cf_level",
      "escalation_tag_prefix": "esc_"}, "connector.escalation_tag_prefix: not used when"),
])
def test_bad_settings_are_refused_naming_the_key_and_never_the_api_key(settings, message):
    with pytest.raises(ValueError) as info:
        open_connector({"type": "freshdesk", **settings}, Path("."))
    assert message in str(info.value)
    assert API_KEY not in str(info.value)


def test_the_directory_names_agents_as_records_do_with_their_address(api):
    second = f"{URL}/api/v2/agents?per_page=100&page=2"
    lisbon = fixture("check_agents_page_2")
    lisbon[0]["contact"]["time_zone"] = "Europe/Lisbon"
    api.get(f"{URL}/api/v2/agents", json=lisbon,
            match=[matchers.query_param_matcher({"per_page": "100", "page": "2"})])
    api.get(f"{URL}/api/v2/agents", json=fixture("check_agents_page_1"),
            match=[matchers.query_param_matcher({"per_page": "100"})],
            headers={"Link": f'<{second}>; rel="next"'})
    found = freshdesk(agents={48000501: "Ana Lima"}).directory()
    # Ana by the config's name; her "Berlin" is a Rails zone name: left out, not guessed.
    # Raj is not taking new tickets (`available` false): assign_next passes him over.
    assert found == {"Ana Lima": {"name": "Ana Lima", "email": "ana@acme.example.com",
                                  "available": "true"},
                     "48000502": {"name": "48000502", "email": "raj@acme.example.com",
                                  "timezone": "Europe/Lisbon", "available": "false"}}
    assert len(api.calls) == 2


def test_settings_build_a_connector_with_its_identity_and_capabilities():
    connector = open_connector({"type": "freshdesk", "url": f"{URL}/", "api_key": API_KEY,
                                "requests_per_minute": 120, "groups": {"48000123": "support"}},
                               Path("."))
    assert isinstance(connector, Freshdesk)
    assert connector.identity == f"freshdesk:{URL}"
    assert connector.client.throttle.per_minute == 120
    assert connector.options.groups.names == {48000123: "support"}
    caps = connector.capabilities
    assert (caps.bulk_writes, caps.batch_size, caps.safe_update, caps.tags, caps.notes,
            caps.leads) == (True, 1000, True, True, True, False)


# -- end to end: the CLI against a fake Freshdesk ----------------------------------------------

class FakeFreshdesk:
    """Freshdesk as far as sla-sync uses it, over `responses`: the listing (updated_since,
    pages with Link headers), ticket views, bulk updates with jobs, updates and notes."""

    def __init__(self, api: responses.RequestsMock, tickets: list[dict[str, Any]]):
        self.tickets = {ticket["id"]: ticket for ticket in tickets}
        self.down = False
        self.jobs: dict[str, list[int]] = {}
        self.write_time = "2026-03-02T10:20:30Z"
        api.add_callback(responses.GET, re.compile(re.escape(TICKETS) + r"(\?.*)?$"),
                         self.listing)
        api.add_callback(responses.GET, re.compile(re.escape(TICKETS) + r"/\d+(\?.*)?$"),
                         self.view)
        api.add_callback(responses.POST, f"{TICKETS}/bulk_update", self.bulk_update)
        api.add_callback(responses.GET, re.compile(f"{URL}/api/v2/jobs/.+"), self.job)
        api.add_callback(responses.PUT, re.compile(re.escape(TICKETS) + r"/\d+$"), self.update)
        self.api = api

    def listing(self, request: Any) -> tuple[int, dict[str, str], str]:
        if self.down:
            return 503, {}, ""
        params = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
        page, per_page = int(params.get("page", 1)), int(params["per_page"])
        since = params["updated_since"]
        matching = sorted((t for t in self.tickets.values() if t["updated_at"] >= since),
                          key=lambda t: (t["updated_at"], t["id"]))
        body = matching[(page - 1) * per_page:page * per_page]
        headers = {}
        if page * per_page < len(matching):
            headers["Link"] = f'<{TICKETS}?{urlencode(params | {"page": page + 1})}>; rel="next"'
        return 200, headers, json.dumps(body)

    def view(self, request: Any) -> tuple[int, dict[str, str], str]:
        ticket = self.tickets.get(int(urlparse(request.url).path.rsplit("/", 1)[1]))
        return (404, {}, "") if ticket is None else (200, {}, json.dumps(ticket))

    def bulk_update(self, request: Any) -> tuple[int, dict[str, str], str]:
        action = json.loads(request.body)["bulk_action"]
        for ticket_id in action["ids"]:
            self.tickets[ticket_id].update(action["properties"], updated_at=self.write_time)
        job_id = f"job-{len(self.jobs) + 1}"
        self.jobs[job_id] = action["ids"]
        return 202, {}, json.dumps({"job_id": job_id, "href": f"{URL}/api/v2/jobs/{job_id}"})

    def job(self, request: Any) -> tuple[int, dict[str, str], str]:
        job_id = urlparse(request.url).path.rsplit("/", 1)[1]
        return 200, {}, json.dumps({"id": job_id, "status": "COMPLETED", "data": [
            {"id": ticket_id, "success": True} for ticket_id in self.jobs[job_id]]})

    def update(self, request: Any) -> tuple[int, dict[str, str], str]:
        ticket = self.tickets[int(urlparse(request.url).path.rsplit("/", 1)[1])]
        ticket.update(json.loads(request.body), updated_at=self.write_time)
        return 200, {}, json.dumps({k: v for k, v in ticket.items() if k != "stats"})

    def calls(self, since: int = 0) -> dict[str, int]:
        """Requests by kind from call number `since` on."""
        kinds: dict[str, int] = {}
        for call in self.api.calls[since:]:
            path = urlparse(call.request.url).path
            kind = {"/api/v2/tickets": "page", "/api/v2/tickets/bulk_update": "bulk"}.get(
                path, "job" if "/jobs/" in path else "fresh read" if call.request.method ==
                "GET" else call.request.method)
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds


def open_tickets(count: int) -> list[dict[str, Any]]:
    """`count` open tickets without a first response, created 08:00 on, 10s apart."""
    template = fixture("incremental_page_1_of_2")[0]
    tickets = []
    for n in range(count):
        stamp = iso(f"2026-03-02 08:{n * 10 // 60:02d}:{n * 10 % 60:02d}").replace(
            "+00:00", "Z")
        ticket = json.loads(json.dumps(template))
        ticket.update(id=5000 + n, created_at=stamp, updated_at=stamp, tags=[])
        ticket["stats"]["status_updated_at"] = stamp
        tickets.append(ticket)
    return tickets


def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Path:
    monkeypatch.setenv("FRESHDESK_API_KEY", API_KEY)
    monkeypatch.setattr("sla_sync.connector.http.wait", lambda seconds: None)
    policy = {"slas": [{"name": "standard",
                        "targets": {"first_response": "1h", "resolution": "8h"}}],
              "rules": [rule("breach", cond("first_response_breached", "is_true"),
                             act("set_priority", priority="urgent"))]}
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    settings = "".join(f"  {key}: {value}\n" for key, value in extra.items())
    config = tmp_path / "config.yaml"
    config.write_text(f"connector:\n  type: freshdesk\n  url: {URL}\n"
                      "  api_key: ${FRESHDESK_API_KEY}\n"
                      f"  start_at: '{START}'\n{settings}  sandbox: true\n"
                      "policy: policy.json\nstate: state.db\nfirst_run: act\n")
    return config


@pytest.fixture
def site():
    """A mock for the fake Freshdesk: routes it does not need in a test stay unused."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def test_end_to_end_one_read_per_page_one_bulk_write_per_hundred_then_nothing(
        site, tmp_path, monkeypatch):
    fake = FakeFreshdesk(site, open_tickets(150))
    config = project(tmp_path, monkeypatch)
    first = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert first.exit_code == 0, first.output
    assert "read 150, evaluated 150, changed 150, writes 150, skipped 0, errors 0" \
        in first.output
    # 2 pages; each changed ticket re-read before its write; 2 bulk updates of 100 and 50.
    assert fake.calls() == {"page": 2, "fresh read": 150, "bulk": 2, "job": 2}
    assert {t["priority"] for t in fake.tickets.values()} == {4}
    assert API_KEY not in first.output

    done = len(site.calls)
    second = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert second.exit_code == 0, second.output
    assert "writes 0" in second.output
    assert fake.calls(done) == {"page": 2}  # the 150 written tickets come back; no write


def test_end_to_end_a_5xx_storm_fails_the_run_and_keeps_the_cursor(site, tmp_path,
                                                                  monkeypatch):
    fake = FakeFreshdesk(site, open_tickets(3))
    config = project(tmp_path, monkeypatch, max_attempts="3")
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 09:00")).exit_code == 0
    with StateStore(tmp_path / "state.db") as store:
        cursor = store.cursor(f"freshdesk:{URL}")
    assert cursor is not None

    fake.down = True
    done = len(site.calls)
    result = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert result.exit_code == 1
    assert "run failed, cursor not moved" in result.stderr
    assert "GET /api/v2/tickets still failing after retries (HTTP 503)" in result.stderr
    assert fake.calls(done) == {"page": 3}
    assert API_KEY not in result.output
    with StateStore(tmp_path / "state.db") as store:
        assert store.cursor(f"freshdesk:{URL}") == cursor


# -- notes whose answer was lost ------------------------------------------------------------

class FakeFreshdeskWithNotes(FakeFreshdesk):
    """Adds private notes (POST /tickets/{id}/notes, answered as note_created_private.json)
    and their listing (GET /tickets/{id}/conversations, a list of such objects, paged by
    per_page and a Link header). `lose` decides the next note's fate: None answers it,
    "applied" keeps it and drops the connection, "dropped" drops the connection first."""

    def __init__(self, api: responses.RequestsMock, tickets: list[dict[str, Any]]):
        super().__init__(api, tickets)
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.lose: str | None = None
        self.posted = 0
        api.add_callback(responses.POST, re.compile(re.escape(TICKETS) + r"/\d+/notes$"),
                         self.add_note)
        api.add_callback(responses.GET,
                         re.compile(re.escape(TICKETS) + r"/\d+/conversations(\?.*)?$"),
                         self.conversations)

    def add_note(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.posted += 1
        ticket_id = int(urlparse(request.url).path.split("/")[-2])
        fate, self.lose = self.lose, None
        if fate == "dropped":
            raise requests.ConnectionError("Connection aborted: RemoteDisconnected")
        body = json.loads(request.body)
        note = {**fixture("note_created_private"), "ticket_id": ticket_id,
                "body": body["body"], "body_text": html.unescape(
                    body["body"].replace("<br>", "\n")),
                "created_at": self.write_time, "updated_at": self.write_time}
        self.notes.setdefault(ticket_id, []).append(note)
        self.tickets[ticket_id]["updated_at"] = self.write_time
        if fate == "applied":
            raise requests.ConnectionError("Connection aborted: RemoteDisconnected")
        return 201, {}, json.dumps(note)

    def conversations(self, request: Any) -> tuple[int, dict[str, str], str]:
        ticket_id = int(urlparse(request.url).path.split("/")[-2])
        return 200, {}, json.dumps(self.notes.get(ticket_id, []))


def note_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = project(tmp_path, monkeypatch)
    (tmp_path / "policy.json").write_text(json.dumps({
        "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
        "rules": [rule("breach", cond("first_response_breached", "is_true"),
                       act("add_note", text="{id}: first response overdue"))]}))
    return config


@pytest.mark.parametrize("fate", ["applied", "dropped"])
def test_a_note_whose_answer_was_lost_is_posted_exactly_once_across_reruns(
        site, tmp_path, monkeypatch, fate):
    fake = FakeFreshdeskWithNotes(site, open_tickets(1))
    config = note_project(tmp_path, monkeypatch)
    fake.lose = fate
    first = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert fake.posted == 1, "a note that may have been posted was sent again"
    if fate == "applied":  # read back at once: the conversations show it
        assert first.exit_code == 0, first.output
        assert "read back, the record shows the write" in first.stderr
    else:  # not there: pending, not resent, until the next run
        assert first.exit_code != 0
        assert "the write stays pending" in first.stderr
        second = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:21"))
        assert second.exit_code == 0, second.output
        assert "had not gone through; planning it again" in second.stderr
    last = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:22"))
    assert last.exit_code == 0 and "writes 0" in last.output
    assert [n["body_text"] for n in fake.notes[5000]] == ["5000: first response overdue"]


def test_read_back_pages_through_the_conversations(api):
    api.get(f"{TICKETS}/1002", **ticket_view(fixture("ticket_1002_with_stats")))
    second = f"{TICKETS}/1002/conversations?per_page=100&page=2"
    api.get(f"{TICKETS}/1002/conversations", json=[fixture("note_created_private")],
            headers={"Link": f'<{second}>; rel="next"'},
            match=[matchers.query_param_matcher({"per_page": "100"})])
    reply = {**fixture("note_created_private"), "private": False, "incoming": True,
             "body_text": "Overdue by 20 min", "created_at": "2026-03-02T10:24:00Z"}
    api.get(f"{TICKETS}/1002/conversations",
            json=[reply, {**fixture("note_created_private"), "body": "<div>Line one<br>two "
                          "&amp; three</div>", "body_text": None,
                          "created_at": "2026-03-02T10:25:00Z"}],
            match=[matchers.query_param_matcher({"per_page": "100", "page": "2"})])
    record = freshdesk().read_back("1002", at("2026-03-02 10:20"))
    assert record is not None
    # Private notes only (a customer's reply is never sla-sync's), since the plan.
    assert [(n.at, n.text) for n in record.notes] == [
        (at("2026-03-02 10:20:02"), "Overdue by 20 min"),
        (at("2026-03-02 10:25"), "Line one\ntwo & three")]


# -- requests per sync (bench/bench_requests.py's scenario, counted) ---------------------------

def test_a_sync_costs_the_documented_minimum_of_requests_notes_joining_the_bulk_update():
    bench = bench_script("bench_requests")
    # 450 tickets read, 250 given the same priority, 120 of those a note: 3 jobs of 100, 100
    # and 50 whatever batches the loop would have cut, one note each, one fresh read each.
    count = bench.count_freshdesk(bench.Scenario(450, 250, 120))
    assert count.made == {"listing": 5, "fresh read": 250, "bulk_update": 3, "job poll": 3,
                          "note": 120}
    assert count.made == count.minimum


def test_identical_changes_beyond_a_hundred_share_jobs_a_lone_one_is_a_put():
    bench = bench_script("bench_requests")
    count = bench.count_freshdesk(bench.Scenario(101, 101, 0))
    assert count.made == {"listing": 2, "fresh read": 101, "bulk_update": 1, "job poll": 1,
                          "PUT": 1}
    assert count.made == count.minimum


def test_identical_changes_spread_over_a_run_meet_in_one_bulk_update():
    # The case: 25 identical changes among 100 others went out as 23 + 2 when the
    # loop cut its batches at 100. The connector asks for 1000 per call, so they meet.
    bench = bench_script("bench_requests")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = bench.FakeFreshdesk(mock, bench.Scenario(125, 0, 0))
        client = HttpClient(bench.FakeFreshdesk.URL, auth=HTTPBasicAuth("k", "X"),
                            name="freshdesk", sleep=lambda _: None, clock=lambda: 0.0)
        connector = Freshdesk(client, Options.from_settings({}))
        base = {str(i): parse_instant(t["updated_at"], "updated_at")
                for i, t in fake.tickets.items()}
        changes = [ChangeSet(i, base_updated_at=at, fields={"priority": "urgent"})
                   if n % 5 == 3 else ChangeSet(i, base_updated_at=at, add_tags=("vip",))
                   for n, (i, at) in enumerate(base.items())]
        assert len(changes) <= connector.capabilities.batch_size
        results = connector.apply_many(changes, NOW)
        bulks = [sent(c) for c in mock.calls if c.request.url.endswith("/bulk_update")]
    assert all(r.error is None for r in results)
    assert [len(b["bulk_action"]["ids"]) for b in bulks] == [25]


def test_notes_of_a_bulk_update_go_after_the_job_and_only_for_tickets_it_wrote(api):
    page = fixture("incremental_page_1_of_2")
    fresh_reads(api, *page)
    api.post(f"{TICKETS}/bulk_update", status=202, json=fixture("bulk_update_accepted"))
    job = f"{URL}/api/v2/jobs/5e1c0b2a-37f0-4a55-9d6b-8f7c1a2b3c4d"
    api.get(job, json=fixture("job_completed_one_ticket_failed"))  # 1002 refused
    api.post(re.compile(re.escape(TICKETS) + r"/\d+/notes$"), status=201,
             json=fixture("note_created_private"))
    changes = [ChangeSet(str(t["id"]), base_updated_at=version(t), fields={"priority": "urgent"},
                         notes=("Breached: escalated.",)) for t in page]
    results = freshdesk().apply_many(changes, NOW)
    assert [r.error is None for r in results] == [True, False, True]
    writes = [(c.request.method, urlparse(c.request.url).path) for c in api.calls
              if c.request.method != "GET"]
    assert writes == [("POST", "/api/v2/tickets/bulk_update"),
                      ("POST", "/api/v2/tickets/1001/notes"),
                      ("POST", "/api/v2/tickets/1003/notes")]
    assert sent(api.calls[-1]) == {"body": "Breached: escalated.", "private": True}


# -- end to end: a next response breach from Freshdesk's own conversation data ----------------

def conversation_tickets() -> tuple[dict[str, Any], dict[str, Any]]:
    """Ticket 1006 (pat waits since 08:30; stats say 08:40) and 1007, where Ana answered
    pat's 08:40 message at 09:00."""
    waiting = fixture("ticket_1006_customer_replied")
    answered = json.loads(json.dumps(waiting))
    answered.update(id=1007, updated_at="2026-03-02T09:00:00Z")
    answered["stats"]["agent_responded_at"] = "2026-03-02T09:00:00Z"
    return waiting, answered


@pytest.mark.parametrize("conversations", [False, True])
def test_end_to_end_a_customer_reply_unanswered_past_the_target_is_a_next_response_breach(
        site, tmp_path, monkeypatch, conversations):
    waiting, answered = conversation_tickets()
    fake = FakeFreshdeskWithNotes(site, [waiting, answered])
    fake.notes[1006] = fixture("conversations_ticket_1006")
    fake.notes[1007] = fixture("conversations_ticket_1006") + [
        {**fixture("conversations_ticket_1006")[0], "id": 48009105,
         "created_at": "2026-03-02T09:00:00Z", "updated_at": "2026-03-02T09:00:00Z"}]
    config = project(tmp_path, monkeypatch, conversations=str(conversations).lower())
    (tmp_path / "policy.json").write_text(json.dumps({
        "slas": [{"name": "standard", "targets": {"first_response": "1h", "next_response": "1h",
                                                  "resolution": "1d"}}],
        "rules": [rule("reply overdue", cond("next_response_breached", "is_true"),
                       act("set_priority", priority="urgent"))]}))
    # 09:35: pat has waited 65 min since 08:30, 55 since 08:40.
    early = cli("run", "--config", str(config), "--now", iso("2026-03-02 09:35"))
    assert early.exit_code == 0, early.output
    assert fake.tickets[1006]["priority"] == (4 if conversations else 2)
    later = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:20"))
    assert later.exit_code == 0, later.output
    assert (fake.tickets[1006]["priority"], fake.tickets[1007]["priority"]) == (4, 2)
    reads = [urlparse(c.request.url).path for c in site.calls
             if c.request.url.split("?")[0].endswith("/conversations")]
    assert bool(reads) == conversations
