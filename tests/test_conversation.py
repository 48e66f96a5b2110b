"""The conversation on a Record (`messages`, `assignment_history`): checked like the record's
other fields, read by the embedded file helpdesk (JSON and JSON Lines), and the source of
`first_response_at` when a record does not give one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import at, iso, record_dict
from sla_sync.connector.file import FileHelpdesk
from sla_sync.connector.model import Assignment, ChangeSet, Message, Record, RecordError

CONVERSATION = [
    {"at": iso("2026-03-02 09:00"), "author": "customer", "public": True},
    {"at": iso("2026-03-02 09:10"), "author": "agent", "public": False},  # internal note
    {"at": iso("2026-03-02 09:40"), "author": "agent", "public": True},
    {"at": iso("2026-03-02 10:00"), "author": "customer", "public": True},
]
ASSIGNMENTS = [{"at": iso("2026-03-02 09:05"), "group": "billing", "assignee": ""},
               {"at": iso("2026-03-02 09:20"), "group": "billing", "assignee": "ana"}]


def test_messages_and_assignments_are_read_in_order_and_round_trip():
    record = Record.from_dict(record_dict(messages=CONVERSATION,
                                          assignment_history=ASSIGNMENTS))
    assert record.messages == (
        Message(at("2026-03-02 09:00"), "customer", True),
        Message(at("2026-03-02 09:10"), "agent", False),
        Message(at("2026-03-02 09:40"), "agent", True),
        Message(at("2026-03-02 10:00"), "customer", True))
    assert record.assignment_history == (
        Assignment(at("2026-03-02 09:05"), "billing", ""),
        Assignment(at("2026-03-02 09:20"), "billing", "ana"))
    assert Record.from_dict(record.to_dict()) == record


def test_first_response_is_the_first_public_agent_message_when_not_given():
    record = Record.from_dict(record_dict(messages=CONVERSATION))
    # 09:10 is an internal note: the customer first heard back at 09:40.
    assert record.first_response_at == at("2026-03-02 09:40")


def test_a_given_first_response_is_kept_over_the_conversation():
    record = Record.from_dict(record_dict(messages=CONVERSATION,
                                          first_response_at=iso("2026-03-02 09:30")))
    assert record.first_response_at == at("2026-03-02 09:30")


def test_a_conversation_without_a_public_agent_reply_leaves_no_first_response():
    record = Record.from_dict(record_dict(messages=CONVERSATION[:2]))
    assert record.first_response_at is None


def test_absent_conversation_is_unknown_not_empty():
    record = Record.from_dict(record_dict())
    assert record.messages is None and record.assignment_history is None
    assert "messages" not in record.to_dict()
    empty = Record.from_dict(record_dict(messages=[], assignment_history=[]))
    assert empty.messages == () and empty.assignment_history == ()
    assert empty.to_dict()["messages"] == []


def test_public_defaults_to_true_and_assignment_values_to_empty():
    record = Record.from_dict(record_dict(
        messages=[{"at": iso("2026-03-02 09:30"), "author": "agent"}],
        assignment_history=[{"at": iso("2026-03-02 09:30"), "group": "l2"}]))
    assert record.messages == (Message(at("2026-03-02 09:30"), "agent", True),)
    assert record.assignment_history == (Assignment(at("2026-03-02 09:30"), "l2", ""),)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"messages": "hello"}, "messages: expected a list, got str"),
    ({"messages": [3]}, "messages[0]: expected an object"),
    ({"messages": [{"at": iso("2026-03-02 09:30"), "author": "bot"}]},
     "messages[0].author: expected one of customer, agent, got 'bot'"),
    ({"messages": [{"at": iso("2026-03-02 09:30"), "author": "agent", "public": "yes"}]},
     "messages[0].public: expected true or false, got 'yes'"),
    ({"messages": [{"at": "2026-03-02 09:30", "author": "agent"}]},
     "messages[0].at: '2026-03-02 09:30' has no UTC offset (refusing to guess a timezone)"),
    ({"messages": [{"at": iso("2026-03-02 09:30"), "author": "agent"},
                   {"at": iso("2026-03-02 09:29"), "author": "customer"}]},
     "messages: entries are not in time order (messages[1])"),
    ({"messages": [{"at": iso("2301-01-01 00:00"), "author": "agent"}]},
     "messages[0].at: 2301-01-01T00:00:00+00:00 is outside the years 1970 to 2199"),
    ({"assignment_history": [{"at": iso("2026-03-02 09:30"), "group": 7}]},
     "assignment_history[0].group: expected a string, got 7"),
    ({"assignment_history": [{"at": iso("2026-03-02 09:30"), "assignee": "\udc00"}]},
     "assignment_history[0].assignee: not valid Unicode (a lone surrogate at character 0)"),
    ({"assignment_history": [{"group": "l2"}]},
     "assignment_history[0].at: expected an ISO 8601 timestamp, got None"),
])
def test_a_bad_conversation_entry_is_refused_naming_it(fields, reason):
    with pytest.raises(RecordError) as caught:
        Record.from_dict(record_dict(**fields))
    assert caught.value.reason == reason
    assert caught.value.record_id == "T-1"


def test_records_built_directly_are_checked_too():
    with pytest.raises(RecordError, match=r"messages\[0\]\.author"):
        Record(id="T-9", kind="ticket", created_at=at("2026-03-02 09:00"),
               updated_at=at("2026-03-02 09:00"),
               messages=(Message(at("2026-03-02 09:00"), "robot"),))
    with pytest.raises(RecordError, match="not in time order"):
        Record(id="T-9", kind="ticket", created_at=at("2026-03-02 09:00"),
               updated_at=at("2026-03-02 09:00"),
               assignment_history=(Assignment(at("2026-03-02 10:00"), "a", ""),
                                   Assignment(at("2026-03-02 09:00"), "b", "")))


def test_file_helpdesk_json_reads_the_conversation_and_keeps_it_on_write(tmp_path: Path):
    path = tmp_path / "helpdesk.json"
    path.write_text(json.dumps({"records": [record_dict(messages=CONVERSATION,
                                                        assignment_history=ASSIGNMENTS)]}))
    desk = FileHelpdesk(path)
    [page] = desk.fetch(None)
    [record] = page.records
    assert record.first_response_at == at("2026-03-02 09:40")
    assert len(record.messages or ()) == 4
    desk.apply(ChangeSet("T-1", add_tags=("vip",)), now=at("2026-03-02 12:00"))
    again = FileHelpdesk(path).get("T-1")
    assert again is not None and again.messages == record.messages
    assert again.assignment_history == record.assignment_history


def test_file_helpdesk_json_lines_reads_the_conversation_and_reports_a_bad_one(tmp_path: Path):
    path = tmp_path / "helpdesk.jsonl"
    bad = record_dict(id="T-2", messages=[{"at": iso("2026-03-02 09:30"), "author": "bot"}])
    path.write_text(json.dumps(record_dict(messages=CONVERSATION)) + "\n"
                    + json.dumps(bad) + "\n")
    [page] = FileHelpdesk(path).fetch(None)
    assert [r.id for r in page.records] == ["T-1"]
    assert page.records[0].messages is not None
    assert page.records[0].messages[-1] == Message(at("2026-03-02 10:00"), "customer", True)
    assert [str(p) for p in page.problems] == [
        "record 'T-2': messages[0].author: expected one of customer, agent, got 'bot'"]
