"""The Zendesk connector's conversation, assignment history and worked time, from recorded,
documented payloads: the ticket event export with its `comment_events` sideload (comments
with their author and `public`, group and assignee changes), the ticket audits for a
re-read, and the Time Tracking app's total-time field. Every request is checked against
Zendesk's OpenAPI spec when it is available (tests/zendesk_spec.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses

import zendesk_spec
from conftest import act, at, cli, cond, rule
from sla_sync.connector.base import MemoryInProcess
from sla_sync.connector.model import Assignment, Message
from sla_sync.connector.zendesk import EVENT_EXPORT, TICKET_EXPORT, USERS, Vocabulary
from test_zendesk import (
    EMAIL,
    TOKEN,
    URL,
    events_page,
    load,
    query,
    read_all,
    story,
    ticket_pages,
    tickets_page,
    zendesk,
)

WORDS = {"groups": {360001: "support"}, "agents": {361001: "sam"}}
START = "1772323200"  # the connector's start_time, 2026-03-01


@pytest.fixture
def api():
    with responses.RequestsMock() as mock:
        yield mock
        if zendesk_spec.available():
            zendesk_spec.check_all([call.request for call in mock.calls])


def conversation_pages(api: Any, url: str = URL) -> None:
    """Ticket 35440: created 09:00 by its requester in group support; sam replies in public
    at 09:20 and takes it; the requester writes again at 09:40, a CC'd end user at 09:45;
    Carol (an agent no setting names) adds a private note at 09:50."""
    events_page(api, "ticket_events_with_comment_events", START, url)
    tickets_page(api, "incremental_tickets_conversation", url, start_time=START)


def agents_list(api: Any, url: str = URL) -> None:
    api.get(url + USERS, json=load("check_agents"),
            match=[responses.matchers.query_param_matcher(
                {"role[]": ["agent", "admin"], "page[size]": "100"})])


def test_the_conversation_comes_from_the_comment_events_at_no_request_more_than_the_agents(api):
    conversation_pages(api)
    agents_list(api)
    record = read_all(zendesk(settings=WORDS))["35440"]
    assert record.messages == (
        Message(at("2026-03-02 09:00"), "customer", True),
        Message(at("2026-03-02 09:20"), "agent", True),
        Message(at("2026-03-02 09:40"), "customer", True),
        # 20978500 is not on the account's agent list: an end user, so a customer.
        Message(at("2026-03-02 09:45"), "customer", True),
        # Carol's private note: end users cannot write one.
        Message(at("2026-03-02 09:50"), "agent", False))
    assert [c.request.path_url.split("?")[0] for c in api.calls] == [
        EVENT_EXPORT, TICKET_EXPORT, USERS]


def test_without_an_unknown_public_author_the_agent_list_is_not_read(api):
    page = load("ticket_events_with_comment_events")
    page["ticket_events"] = page["ticket_events"][:3]  # up to the requester's 09:40 message
    api.get(URL + EVENT_EXPORT, json=page)
    ticket_page = load("incremental_tickets_conversation")
    ticket_page["tickets"][0]["updated_at"] = "2026-03-02T09:40:00Z"
    api.get(URL + TICKET_EXPORT, json=ticket_page)
    record = read_all(zendesk(settings=WORDS))["35440"]
    assert [m.author for m in record.messages or ()] == ["customer", "agent", "customer"]
    assert len(api.calls) == 2


def test_the_assignment_history_starts_at_creation_and_follows_the_changes(api):
    conversation_pages(api)
    agents_list(api)
    record = read_all(zendesk(settings=WORDS))["35440"]
    assert record.assignment_history == (
        Assignment(at("2026-03-02 09:00"), "support", ""),
        Assignment(at("2026-03-02 09:20"), "support", "sam"))


def test_the_conversation_read_so_far_is_kept_in_the_memory_and_grows(api):
    conversation_pages(api)
    agents_list(api)
    memory = MemoryInProcess()
    cursor = list(zendesk(settings=WORDS).fetch(None, memory))[-1].cursor
    assert story(memory, "35440")["t"]["c"] == 1
    later = {"ticket_events": [{
        "id": 7506, "ticket_id": 35440, "timestamp": 1772445600,
        "created_at": "2026-03-02T10:00:00Z", "updater_id": 361001, "via": "Web form",
        "event_type": "Audit", "child_events": [{
            "id": 7561, "type": "Comment", "author_id": 361001, "body": "New roller sent.",
            "html_body": "<p>New roller sent.</p>", "public": True, "attachments": [],
            "audit_id": 7506, "created_at": "2026-03-02T10:00:00Z",
            "event_type": "Comment"}]}],
        "count": 1, "end_time": 1772445600, "end_of_stream": True,
        "next_page": f"{URL}/api/v2/incremental/ticket_events.json?start_time=1772445600"}
    api.get(URL + EVENT_EXPORT, json=later,
            match=query(start_time="1772445000", include="comment_events"))
    page = load("incremental_tickets_conversation")
    page["tickets"][0]["updated_at"] = "2026-03-02T10:00:00Z"
    api.get(URL + TICKET_EXPORT, json=page,
            match=query(cursor=page["after_cursor"], include="metric_sets"))
    agents_list(api)
    record = read_all(zendesk(settings=WORDS), cursor, memory)["35440"]
    assert [(m.at, m.author) for m in record.messages or ()][-2:] == [
        (at("2026-03-02 09:50"), "agent"), (at("2026-03-02 10:00"), "agent")]
    assert len(record.messages or ()) == 6


def test_a_ticket_whose_creation_the_events_did_not_show_has_no_conversation(api):
    # The first sync's fixtures: 35436, 35437 and 35438 were created inside the window, but
    # their comments came without the sideload's comment (comment_present only): a gap.
    # 35439's events hold no comment at all: its conversation is known, and empty.
    events_page(api, "ticket_events_page_1", START)
    events_page(api, "ticket_events_page_2_end_of_stream", "1772443800")
    tickets_page(api, "incremental_tickets_page_1", start_time=START)
    tickets_page(api, "incremental_tickets_page_2_end_of_stream",
                 cursor="MTc3MjQ0MzgwMC4wfHwzNTQzN3w=")
    records = read_all(zendesk())
    assert {i: r.messages for i, r in records.items()} == {
        "35436": None, "35437": None, "35438": None, "35439": ()}
    # 35436's creation named no group, yet it is in group 360001: a change the events do
    # not show, so no assignment history is made up.
    assert records["35436"].assignment_history is None


def test_a_ticket_created_before_the_window_has_no_conversation(api):
    page = load("ticket_events_with_comment_events")
    page["ticket_events"] = page["ticket_events"][1:]  # its creation is before start_time
    api.get(URL + EVENT_EXPORT, json=page)
    api.get(URL + TICKET_EXPORT, json=load("incremental_tickets_conversation"))
    record = read_all(zendesk(settings=WORDS))["35440"]
    assert record.messages is None and record.assignment_history is None
    assert len(api.calls) == 2


def test_worked_seconds_come_from_the_time_tracking_total_field(api):
    conversation_pages(api)
    agents_list(api)
    vocabulary = Vocabulary.from_settings(WORDS)
    connector = zendesk(settings=WORDS, worked_field=360010)
    assert connector.words.agents.names == vocabulary.agents.names
    assert read_all(connector)["35440"].worked_seconds == 1260
    conversation_pages(api)
    agents_list(api)
    assert read_all(zendesk(settings=WORDS))["35440"].worked_seconds is None


def test_a_time_tracking_field_that_holds_no_seconds_is_noticed_and_left_out(api):
    page = load("incremental_tickets_conversation")
    page["tickets"][0]["custom_fields"] = [{"id": 360010, "value": "about an hour"}]
    events_page(api, "ticket_events_with_comment_events", START)
    api.get(URL + TICKET_EXPORT, json=page)
    agents_list(api)
    pages = ticket_pages(api, zendesk(settings=WORDS, worked_field=360010))
    assert pages[0].records[0].worked_seconds is None
    assert any("time tracking field 360010" in n for n in pages[0].notices)


def test_the_time_tracking_setting_names_a_field_id():
    from sla_sync.connector.zendesk import Zendesk

    settings = {"url": URL, "email": EMAIL, "token": TOKEN,
                "time_tracking": {"total_field": 360010}}
    assert Zendesk.from_settings(settings, Path(".")).worked_field == 360010
    with pytest.raises(ValueError, match="time_tracking"):
        Zendesk.from_settings({**settings, "time_tracking": {"total_field": "total"}},
                              Path("."))


def test_get_reads_the_conversation_from_the_audits(api):
    audits = load("ticket_audits_35436")
    ticket = dict(load("incremental_tickets_page_1")["tickets"][0])
    api.get(f"{URL}/api/v2/tickets/35436", json={"ticket": ticket})
    api.get(f"{URL}/api/v2/tickets/35436/audits", json=audits)
    record = zendesk().get("35436")
    assert record is not None
    comments = [(e["author_id"], e["public"]) for a in audits["audits"] for e in a["events"]
                if e["type"] == "Comment"]
    assert [m.author for m in record.messages or ()][:1] == ["customer"]
    assert len(record.messages or ()) == len(comments)


# -- end to end: a next response breach from Zendesk's own conversation --------------------

E2E_URL = "https://acme.example.com"
POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "next_response": "30m"}}],
    "rules": [rule("late reply", {"all": [cond("next_response_breached", "is_true")]},
                   act("add_tag", tag="reply_overdue"))],
}


def test_a_run_finds_a_next_response_breach_in_the_zendesk_conversation(api, tmp_path,
                                                                         monkeypatch):
    """The requester wrote again at 09:40 after sam's 09:20 reply; nobody has answered in
    public since (the 09:45 message is an end user's, the 09:50 note private): at 10:20 the
    30-minute next response target ran out at 10:10."""
    monkeypatch.setenv("ZENDESK_TOKEN", TOKEN)
    monkeypatch.setattr("sla_sync.connector.http.wait", lambda seconds: None)
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"connector:\n  type: zendesk\n  url: {E2E_URL}\n  email: {EMAIL}\n"
        "  token: ${ZENDESK_TOKEN}\n  start_time: 2026-03-01T00:00:00Z\n"
        "  groups: {360001: support}\n  sandbox: true\n"
        "policy: policy.json\nstate: state.db\nfirst_run: act\n")
    conversation_pages(api, E2E_URL)
    agents_list(api, E2E_URL)
    api.put(f"{E2E_URL}/api/v2/tickets/35440",
            json={"ticket": {**load("incremental_tickets_conversation")["tickets"][0],
                             "tags": ["scanner", "reply_overdue"]}})
    result = cli("run", "--config", str(config), "--now", "2026-03-02T10:20:00+00:00")
    assert result.exit_code == 0, result.output
    put = next(c for c in api.calls if c.request.method == "PUT")
    assert json.loads(put.request.body)["ticket"]["additional_tags"] == ["reply_overdue"]
    assert "writes 1" in result.output


def test_the_directory_gives_each_agent_by_the_name_rules_use(api):
    users = load("check_agents")
    users["users"][0]["iana_time_zone"] = "Europe/Berlin"  # the User object's IANA zone
    users["users"][2]["active"] = False
    api.get(URL + USERS, json=users, match=[responses.matchers.query_param_matcher(
        {"role[]": ["agent", "admin"], "page[size]": "100"})])
    directory = zendesk(settings=WORDS).directory()
    assert directory == {
        "sam": {"email": "sam@acme.example.com", "name": "Sam Agent",
                "timezone": "Europe/Berlin"},
        "361002": {"email": "alice@acme.example.com", "name": "Alice Admin"}}
    assert len(api.calls) == 1


def test_the_memory_keeps_only_stories_that_can_be_whole(api):
    # The first sync's fixtures: 35436-35438 have comments without the sideload's comment
    # (a gap), 35439 a whole, empty story; a ticket never created in the window keeps none.
    events_page(api, "ticket_events_page_1", START)
    events_page(api, "ticket_events_page_2_end_of_stream", "1772443800")
    tickets_page(api, "incremental_tickets_page_1", start_time=START)
    tickets_page(api, "incremental_tickets_page_2_end_of_stream",
                 cursor="MTc3MjQ0MzgwMC4wfHwzNTQzN3w=")
    memory = MemoryInProcess()
    read_all(zendesk(), None, memory)
    # A story with a gap stays one (its messages are unknown; its assignments may not be).
    assert story(memory, "35436")["t"]["x"] == 1 and story(memory, "35439")["t"]["c"] == 1
    later = {"ticket_events": [{
        "id": 7601, "ticket_id": 35999, "timestamp": 1772445600,
        "created_at": "2026-03-02T10:00:00Z", "updater_id": 361001, "via": "Web form",
        "event_type": "Audit", "child_events": [{
            "id": 7602, "via": "Web form", "via_reference_id": None, "status": "open",
            "event_type": "Change", "previous_value": "new"}]}],
        "count": 1, "end_time": 1772445600, "end_of_stream": True,
        "next_page": f"{URL}/api/v2/incremental/ticket_events.json?start_time=1772445600"}
    api.get(URL + EVENT_EXPORT, json=later)
    api.get(URL + TICKET_EXPORT, json=load("incremental_tickets_empty_end_of_stream"))
    memory = MemoryInProcess()
    read_all(zendesk(), None, memory)
    assert story(memory, "35999") == {"h": [[1772445600, "open"]]}  # no conversation


def test_a_cursor_written_before_conversations_were_read_is_read_on(api):
    """A state file of an earlier version holds a v1 cursor (no conversations): its tickets
    have none, and the next cursor is v3 (the stories in the memory)."""
    v1 = json.dumps({"v": 1, "start_time": 1772323200, "tickets": "MTc3MjQ0NTkwMC4wfHwzNTQzOHw=",
                     "events": 1772446740, "history": {"35440": [[1772442000, "new"]]}})
    later = load("ticket_events_with_comment_events")
    later["ticket_events"] = later["ticket_events"][3:]  # after the creation
    api.get(URL + EVENT_EXPORT, json=later,
            match=query(start_time="1772446740", include="comment_events"))
    api.get(URL + TICKET_EXPORT, json=load("incremental_tickets_conversation"))
    memory = MemoryInProcess()
    pages = list(zendesk(settings=WORDS).fetch(v1, memory))
    [record] = pages[-1].records
    assert record.messages is None and record.assignment_history is None
    assert record.status_history[0].status == "new"  # the v1 cursor's history, read on
    resumed = json.loads(pages[-1].cursor or "{}")
    assert resumed["v"] == 3 and "history" not in resumed and "talk" not in resumed
    assert "t" not in story(memory, "35440")


def assignments_by_definition(entry: Any, created_at: Any, now: Any, name: Any) -> Any:
    """Talk.assignments as its docstring defines it, written plainly: the values at
    creation, then one entry per later instant either changed, each naming both; None
    unless creation was seen and the story ends at the ticket's values now."""
    from datetime import UTC, datetime
    if not entry or not entry.get("c"):
        return None
    born = int(created_at.timestamp())
    items = sorted(entry.get("a", []), key=lambda item: (item[0], item[3] or 0))
    state = {"group_id": None, "assignee_id": None}
    for at_, key, value, _ in items:
        if at_ <= born:
            state[key] = value
    history = [Assignment(created_at, name("group_id", state["group_id"]),
                          name("assignee_id", state["assignee_id"]))]
    for instant in sorted({item[0] for item in items if item[0] > born}):
        for at_, key, value, _ in items:
            if at_ == instant:
                state[key] = value
        history.append(Assignment(datetime.fromtimestamp(instant, UTC),
                                  name("group_id", state["group_id"]),
                                  name("assignee_id", state["assignee_id"])))
    return tuple(history) if (state["group_id"], state["assignee_id"]) == now else None


def test_the_assignment_history_is_what_its_definition_says():
    """Talk.assignments (a story of no assignment events answered at once, one event not
    sorted) against the plain definition, over random stories: none, or up to five events at
    creation, before or after it, at the same instant, with or without event ids, ending at
    the ticket's values or not."""
    import random

    from sla_sync.connector.zendesk import Talk
    rng = random.Random(14)
    created = at("2026-03-01 10:00")
    born = int(created.timestamp())
    names = {"group_id": {1: "support"}, "assignee_id": {7: "sam"}}

    def name(field: str, value: Any) -> str:
        return "" if value is None else names[field].get(value, str(value))

    found = {"none": 0, "one": 0, "more": 0}
    for _ in range(4000):
        entry: dict[str, Any] = rng.choice([{}, {"c": 1}, {"c": 1}, {"c": 1}, {"c": 0}])
        if entry and rng.random() < 0.8:
            entry["a"] = [[born + rng.choice([-60, 0, 0, 30, 30, 90]),
                           rng.choice(["group_id", "assignee_id"]), rng.choice([None, 1, 2, 7]),
                           rng.choice([None, rng.randrange(100)])]
                          for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 5]))]
        now = rng.choice([(None, None), (None, None), (1, None), (None, 7), (2, 7)])
        if rng.random() < 0.6:  # mostly, the story ends where the ticket is
            final: dict[str, Any] = {"group_id": None, "assignee_id": None}
            for _, key, value, _ in sorted(entry.get("a", []),
                                           key=lambda item: (item[0], item[3] or 0)):
                final[key] = value
            now = (final["group_id"], final["assignee_id"])
        got = Talk.assignments(entry, created, now, name)
        assert got == assignments_by_definition(entry, created, now, name), (entry, now)
        if got is not None:
            found["none" if not entry.get("a") else
                  "one" if len(entry["a"]) == 1 else "more"] += 1
    assert min(found.values()) > 50, found
