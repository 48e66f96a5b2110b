"""Record and ChangeSet: what is refused, what is normalised, what a change leaves behind."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import at, iso, make_record, record_dict
from sla_sync.connector.model import (
    MAX_ITEMS,
    MAX_TEXT,
    Assignment,
    ChangeSet,
    Message,
    Note,
    Record,
    RecordError,
    StatusChange,
)


def refusal(position: int = 4, **fields) -> RecordError:
    with pytest.raises(RecordError) as info:
        Record.from_dict(record_dict(**fields), position)
    return info.value


# -- Record.from_dict refuses ---------------------------------------------------------------

def test_record_without_id_is_named_by_its_position():
    error = refusal(id=None)
    assert (str(error), error.record_id, error.position) == ("record #4: has no id", None, 4)


def test_record_that_is_not_an_object_is_named_by_its_position():
    with pytest.raises(RecordError, match=r"^record #2: is not an object$"):
        Record.from_dict(["T-1"], 2)


@pytest.mark.parametrize(("fields", "message"), [
    ({"kind": "deal"}, "kind: unknown kind 'deal' (expected one of ticket, lead)"),
    ({"created_at": "2026-03-02T09:00:00"},
     "created_at: '2026-03-02T09:00:00' has no UTC offset (refusing to guess a timezone)"),
    ({"updated_at": "yesterday"}, "updated_at: 'yesterday' is not an ISO 8601 timestamp"),
    ({"tags": "vip,urgent"}, "tags: expected a list, got str"),
    ({"tags": ["vip", 1]}, "tags[1]: expected a string, got 1"),
    ({"escalation_level": -1}, "escalation_level: expected a whole number >= 0, got -1"),
    ({"status_history": [{"at": iso("2026-03-02 10:00"), "status": "open"},
                         {"at": iso("2026-03-02 09:30"), "status": "pending"}]},
     "status_history: entries are not in time order"),
], ids=["unknown-kind", "no-offset", "not-iso", "tags-not-list", "tag-not-string",
        "negative-level", "history-out-of-order"])
def test_bad_field_is_refused_naming_the_record_id(fields, message):
    error = refusal(**fields)
    assert (str(error), error.record_id, error.reason) == (f"record 'T-1': {message}", "T-1",
                                                           message)


def test_boolean_escalation_level_is_refused_like_true_is():
    assert str(refusal(escalation_level=True)) == (
        "record 'T-1': escalation_level: expected a whole number >= 0, got True")
    assert str(refusal(escalation_level=False)) == (
        "record 'T-1': escalation_level: expected a whole number >= 0, got False")


# -- timestamps and round trip --------------------------------------------------------------

def test_z_and_explicit_offsets_are_converted_to_utc():
    record = make_record(created_at="2026-03-02T09:00:00Z",
                         updated_at="2026-03-02T10:30:00+01:00")
    assert record.created_at == at("2026-03-02 09:00")
    assert record.updated_at == at("2026-03-02 09:30")
    assert record.updated_at.tzinfo is UTC
    assert record.to_dict()["updated_at"] == "2026-03-02T09:30:00+00:00"


def test_record_survives_a_to_dict_from_dict_round_trip():
    record = make_record(
        tags=["vip", "printer"], first_response_at=iso("2026-03-02 09:20"), escalation_level=2,
        status_history=[{"at": iso("2026-03-02 09:05"), "status": "open"}],
        notes=[{"at": iso("2026-03-02 09:10"), "text": "called back"}],
        custom={"seats": 40, "plan": {"name": "gold"}})
    assert Record.from_dict(record.to_dict()) == record
    assert record.to_dict() == record_dict(
        tags=["vip", "printer"], first_response_at="2026-03-02T09:20:00+00:00",
        escalation_level=2,
        status_history=[{"at": "2026-03-02T09:05:00+00:00", "status": "open"}],
        notes=[{"at": "2026-03-02T09:10:00+00:00", "text": "called back"}],
        custom={"seats": 40, "plan": {"name": "gold"}})


# -- status_timeline ------------------------------------------------------------------------

def test_record_without_history_had_its_status_since_creation():
    assert make_record(status="pending").status_timeline() == [
        StatusChange(at("2026-03-02 09:00"), "pending")]


def test_timeline_starts_new_at_creation_then_follows_the_history():
    record = make_record(status="pending", status_history=[
        {"at": iso("2026-03-02 09:05"), "status": "open"},
        {"at": iso("2026-03-02 09:40"), "status": "pending"}])
    assert record.status_timeline() == [
        StatusChange(at("2026-03-02 09:00"), "new"),
        StatusChange(at("2026-03-02 09:05"), "open"),
        StatusChange(at("2026-03-02 09:40"), "pending")]


def test_current_status_missing_from_history_holds_from_updated_at():
    record = make_record(status="solved", updated_at=iso("2026-03-02 11:00"),
                         status_history=[{"at": iso("2026-03-02 09:05"), "status": "open"}])
    assert record.status_timeline()[-2:] == [
        StatusChange(at("2026-03-02 09:05"), "open"),
        StatusChange(at("2026-03-02 11:00"), "solved")]


def test_current_status_missing_from_history_never_starts_before_the_last_entry():
    record = make_record(status="solved", updated_at=iso("2026-03-02 09:30"),
                         status_history=[{"at": iso("2026-03-02 10:00"), "status": "open"}])
    assert record.status_timeline()[-1] == StatusChange(at("2026-03-02 10:00"), "solved")


# -- ChangeSet ------------------------------------------------------------------------------

NOW = at("2026-03-02 12:00")


def test_applied_change_merges_tags_in_order_without_duplicates():
    record = make_record(tags=["a", "b", "c"])
    after = ChangeSet("T-1", add_tags=("d", "a"), remove_tags=("b",)).applied_to(record, NOW)
    assert after.tags == ("a", "c", "d")


def test_applied_change_appends_notes_stamped_now():
    record = make_record(notes=[{"at": iso("2026-03-02 09:10"), "text": "first"}])
    after = ChangeSet("T-1", notes=("second",)).applied_to(record, NOW)
    assert after.notes == (Note(at("2026-03-02 09:10"), "first"), Note(NOW, "second"))


def test_applied_status_change_appends_history_and_sets_updated_at():
    after = ChangeSet("T-1", fields={"status": "pending"}).applied_to(make_record(), NOW)
    assert (after.status, after.status_history, after.updated_at) == (
        "pending", (StatusChange(NOW, "pending"),), NOW)


def test_applied_change_to_the_same_status_adds_no_history():
    after = ChangeSet("T-1", fields={"status": "open", "priority": "high"}).applied_to(
        make_record(), NOW)
    assert (after.status_history, after.priority, after.updated_at) == ((), "high", NOW)


def test_change_set_refuses_adding_and_removing_the_same_tag():
    with pytest.raises(ValueError, match=r"^ChangeSet adds and removes the same tag$"):
        ChangeSet("T-1", add_tags=("vip", "x"), remove_tags=("vip",))


def test_change_set_refuses_fields_it_may_not_set():
    with pytest.raises(ValueError, match=r"^ChangeSet cannot set \['tier'\]$"):
        ChangeSet("T-1", fields={"tier": "gold", "group": "tier2"})


def test_change_set_survives_a_to_dict_from_dict_round_trip():
    change = ChangeSet("T-1", base_updated_at=at("2026-03-02 10:00", tz="Europe/Berlin"),
                       fields={"group": "tier2"}, add_tags=("sla_breach",),
                       remove_tags=("sla_warning",), notes=("escalated",), escalation_level=1)
    assert change.to_dict() == {
        "id": "T-1", "base_updated_at": "2026-03-02T09:00:00+00:00", "set": {"group": "tier2"},
        "escalation_level": 1, "add_tags": ["sla_breach"], "remove_tags": ["sla_warning"],
        "notes": ["escalated"]}
    assert ChangeSet.from_dict(change.to_dict()) == change


# -- records no part of sla-sync could use: refused one by one, never a crash --------------

def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("fields", "message"), [
    ({"updated_at": "9999-12-31T23:30-01:00"},
     "updated_at: '9999-12-31T23:30-01:00' is out of range"),
    ({"created_at": "0001-01-01T00:00+01:00"},
     "created_at: '0001-01-01T00:00+01:00' is out of range"),
    ({"created_at": "1900-01-01T00:00:00+00:00"},
     "created_at: 1900-01-01T00:00:00+00:00 is outside the years 1970 to 2199"),
    ({"solved_at": "9999-12-31T00:00:00+00:00"},
     "solved_at: 9999-12-31T00:00:00+00:00 is outside the years 1970 to 2199"),
    ({"notes": [{"at": "2500-01-01T00:00:00+00:00", "text": "x"}]},
     "notes[0].at: 2500-01-01T00:00:00+00:00 is outside the years 1970 to 2199"),
    ({"subject": "printer \ud800 on fire"},
     "subject: not valid Unicode (a lone surrogate at character 8)"),
    ({"tags": ["ok", "\udcff"]}, "tags[1]: not valid Unicode (a lone surrogate at character 0)"),
    ({"notes": [{"at": iso("2026-03-02 09:10"), "text": "a\udc80"}]},
     "notes[0].text: not valid Unicode (a lone surrogate at character 1)"),
    ({"custom": {"plan": "gold\ud83d"}},
     "custom: not valid Unicode (a lone surrogate at character 14)"),
    ({"custom": {"seats": float("nan")}}, "custom: NaN or Infinity is not a number"),
    ({"custom": {"seats": [10 ** 5000]}}, "custom: a number too long to store"),
    ({"custom": {"deep": nested(2000)}},
     "custom: nested too deeply (more than 64 levels)"),
    ({"custom": {"deep": nested(64)}},
     "custom: nested too deeply (more than 64 levels)"),
    ({"escalation_level": 10 ** 30},
     "escalation_level: expected a whole number from 0 to 1000, got 1" + "0" * 30),
    ({"escalation_level": 10 ** 5000},
     "escalation_level: expected a whole number from 0 to 1000, got <int>"),
    ({"subject": "x" * 1_000_001}, "subject: 1000001 characters (at most 1000000)"),
    ({"tags": ["t"] * 10_001}, "tags: 10001 entries (at most 10000)"),
], ids=["year-10000-in-utc", "year-0", "before-1970", "solved-in-9999", "note-in-2500",
        "surrogate-subject", "surrogate-tag", "surrogate-note", "surrogate-custom", "nan-custom",
        "long-number-custom", "deep-custom", "65-levels-custom",
        "huge-level", "level-without-repr", "huge-subject", "too-many-tags"])
def test_an_unusable_value_is_refused_naming_the_record_and_field(fields, message):
    error = refusal(**fields)
    assert (str(error), error.record_id, error.position) == (f"record 'T-1': {message}", "T-1",
                                                            4)


def test_an_unusable_id_is_refused_naming_the_position():
    assert str(refusal(id="T\ud800")) == (
        "record #4: id: not valid Unicode, or longer than 255 characters")
    assert str(refusal(id=10 ** 300)) == "record #4: id: more than 255 digits"


def test_an_out_of_range_instant_is_a_value_error_not_an_overflow():
    from sla_sync.connector.model import parse_instant
    with pytest.raises(ValueError, match="out of range"):
        parse_instant("9999-12-31T23:30-01:00", "--now")


def test_a_record_built_directly_by_a_connector_is_checked_too():
    # Zendesk, Freshdesk and RT build Records with the constructor, not from_dict.
    good = make_record()
    with pytest.raises(RecordError, match=r"^record 'T-1': subject: not valid Unicode"):
        Record(id="T-1", kind="ticket", created_at=good.created_at,
               updated_at=good.updated_at, subject="\ud800")
    with pytest.raises(RecordError, match=r"^record 'T-1': updated_at: .* outside the years"):
        Record(id="T-1", kind="ticket", created_at=good.created_at,
               updated_at=at("2300-01-01 00:00"))


def test_the_edges_of_the_window_are_accepted():
    assert make_record(created_at="1970-01-01T00:00:00+00:00").created_at.year == 1970
    assert make_record(updated_at="2199-12-31T23:59:59+00:00").updated_at.year == 2199


# -- the same refusals through the HTTP connectors, which build Records themselves ---------

def spoil(tickets: list[dict], updated_key: str = "updated_at") -> None:
    """The first ticket gets a timestamp in the year 10000 (UTC), the second a lone
    surrogate in its subject; the rest stay as they are."""
    tickets[0][updated_key] = "9999-12-31T23:30:00-01:00"
    tickets[1]["subject"] = "printer \ud800 on fire"


def test_zendesk_skips_an_unusable_ticket_by_id_and_reads_the_rest():
    import json as json_module

    import responses

    import test_zendesk as z
    page = json_module.loads((z.FIXTURES / "incremental_tickets_page_2_end_of_stream.json")
                             .read_text())
    page["tickets"] = [dict(page["tickets"][0], id=n) for n in (501, 502, 503)]
    spoil(page["tickets"])
    with responses.RequestsMock() as api:
        z.events_page(api, "ticket_events_empty_end_of_stream", "1772323200")
        api.get(z.URL + z.TICKET_EXPORT, json=page,
                match=z.query(include="metric_sets", start_time="1772323200"))
        [result] = z.ticket_pages(api, z.zendesk())
    assert [r.id for r in result.records] == ["503"]
    assert [str(p) for p in result.problems] == [
        "record '501': updated_at: '9999-12-31T23:30:00-01:00' is out of range",
        "record '502': subject: not valid Unicode (a lone surrogate at character 8)"]


def test_freshdesk_skips_an_unusable_ticket_by_id_and_reads_the_rest():
    import responses

    import test_freshdesk as f
    tickets = f.fixture("incremental_page_1_of_2")
    spoil(tickets)
    with responses.RequestsMock() as api:
        f.add_page(api, f.START, tickets)
        [result] = f.freshdesk().fetch(None)
    assert [r.id for r in result.records] == ["1003"]
    assert [str(p) for p in result.problems] == [
        "record '1001': updated_at: '9999-12-31T23:30:00-01:00' is out of range",
        "record '1002': subject: not valid Unicode (a lone surrogate at character 8)"]


def test_worked_seconds_is_optional_and_checked():
    assert make_record().worked_seconds is None
    assert "worked_seconds" not in make_record().to_dict()  # absent stays absent
    record = make_record(worked_seconds=720)
    assert record.worked_seconds == 720 and Record.from_dict(record.to_dict()) == record
    for bad in (-1, True, "12m", float("nan"), 10 ** 12):
        with pytest.raises(RecordError, match="worked_seconds: expected a number of seconds"):
            make_record(worked_seconds=bad)


def test_custom_fields_whose_json_is_too_long_are_refused_though_each_value_is_short():
    # Two values of 600,000 characters: each within MAX_TEXT, their JSON together not, which
    # the full check refuses; the quick check of the usual case must not let them through.
    error = refusal(custom={"a": "x" * 600_000, "b": "y" * 600_000})
    assert str(error) == "record 'T-1': custom: 1200018 characters (at most 1000000)"


@pytest.mark.parametrize("custom", [
    {"region": "amer", "seats": 12, "vip": True, "score": 0.5, "none": None},
    {"plan": "gold\ud83d"}, {"seats": float("inf")}, {"n": 2 ** 63}, {"n": -2 ** 63},
    {"nested": {"a": [1, "b", None]}}, {"k\udc80": 1}, {"": ""}, {"x": "\x00" * 160_000},
    {"x": "\x00" * 170_000}, {1: "int key"}, {"t": ("tuple",)},
], ids=["plain", "surrogate", "inf", "2**63", "-2**63", "nested", "surrogate-key", "empty",
        "escapes-fit", "escapes-too-long", "int-key", "tuple"])
def test_the_quick_check_of_custom_fields_accepts_only_what_the_full_check_accepts(custom):
    """Record(...) takes the quick path where it can; _check is the full one. Whatever the
    quick path accepts, the full check must accept too (the other way round it only costs
    time)."""
    try:
        record = Record.from_dict(record_dict(custom=custom))
    except RecordError:
        return
    record._check()  # raises if the quick path let through what the full check refuses


# -- the quick pass over a conversation against the full checks -----------------------------

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
ODD_INSTANTS = (datetime(1969, 12, 31, 23, 59, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC),
                datetime(1970, 1, 1, tzinfo=UTC), datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC),
                START.replace(tzinfo=None), START.astimezone(timezone(timedelta(hours=-5))),
                START.date(), START.isoformat(), None, 1772441600)
ODD_TEXTS = ("a\ud800", "x" * (MAX_TEXT + 1), None, 5, b"bytes", ("t",), "")
TEXTS = ("", "support", "alice", "tier2", "ünïcode", "x" * 1000)


def random_instant(rng: random.Random) -> Any:
    """Mostly an aware instant in range; now and then one at or past the window's edges,
    naive, in another offset, or no datetime at all."""
    if rng.random() < 0.06:
        return rng.choice(ODD_INSTANTS)
    return START + timedelta(minutes=rng.randrange(-600, 600))


def random_text(rng: random.Random) -> Any:
    return rng.choice(ODD_TEXTS) if rng.random() < 0.04 else rng.choice(TEXTS)


def random_conversation(rng: random.Random, kind: type) -> Any:
    if rng.random() < 0.1:
        return rng.choice([None, (), []])
    if rng.random() < 0.005:  # too many entries
        return (Message(START, "agent") if kind is Message else Assignment(START, "", ""),) \
            * (MAX_ITEMS + rng.randrange(2))
    entries: list[Any] = []
    for _ in range(rng.randrange(1, 5)):
        if kind is Message:
            entry: Any = Message(
                random_instant(rng),
                rng.choice(["robot", None, 1]) if rng.random() < 0.03
                else rng.choice(["customer", "agent"]),
                rng.choice([1, None, "yes"]) if rng.random() < 0.03 else rng.random() < 0.5)
        else:
            entry = Assignment(random_instant(rng), random_text(rng), random_text(rng))
        if rng.random() < 0.02:
            entry = rng.choice([{"at": entry.at}, ("x",), None,
                                Assignment(entry.at, "", "") if kind is Message
                                else Message(entry.at, "agent"),
                                # an entry of the right shape, but not the class
                                SimpleNamespace(**vars(entry))])
        entries.append(entry)
    if rng.random() < 0.8:  # mostly in time order, where the instants can be sorted
        try:
            entries.sort(key=lambda entry: entry.at)
        except (TypeError, AttributeError):
            pass
    return tuple(entries) if rng.random() < 0.9 else entries


def outcome(fields: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "accepted", Record(**fields)
    except RecordError as exc:
        return "refused", str(exc)


def test_the_quick_pass_over_a_conversation_decides_as_the_full_checks(monkeypatch):
    """Record(...) takes the quick pass (_plainly_usable, _plain_conversation) where it can;
    _check alone is the definition. Over random records with conversations and assignment
    histories, valid and not (instants out of range, naive or no datetime, out of order,
    unknown authors, public not a bool, entries of the wrong type, long, unstorable or
    non-text groups and assignees, too many entries), both give the same outcome: the same
    record, or the same refusal naming the same entry."""
    rng = random.Random(11)
    cases = []
    for n in range(3000):
        cases.append({
            "id": f"T-{n}", "kind": "ticket",
            "created_at": datetime(2026, 3, 2, 8, tzinfo=UTC),
            "updated_at": datetime(2026, 3, 2, 20, tzinfo=UTC),
            "subject": rng.choice(["printer", "s\ud800", "ok"]) if rng.random() < 0.1
            else "printer",
            "tags": tuple(rng.choice(["vip", "t\udc80"]) for _ in range(rng.randrange(3))),
            "messages": random_conversation(rng, Message),
            "assignment_history": random_conversation(rng, Assignment)})
    quick = [outcome(fields) for fields in cases]
    monkeypatch.setattr(Record, "_plainly_usable", lambda self: False)
    full = [outcome(fields) for fields in cases]
    assert quick == full
    # The draw reaches every kind of outcome: refusals of each part, and acceptance.
    refused = {reason.split(": ", 1)[1].split("[")[0].split(":")[0]
               for kind, reason in full if kind == "refused"}
    assert {"messages", "assignment_history", "subject", "tags"} <= refused
    accepted = [record for kind, record in quick if kind == "accepted"]
    assert sum(1 for record in accepted if record.messages) > 300
    assert sum(1 for record in accepted if record.assignment_history) > 300


@pytest.mark.parametrize(("history", "message"), [
    ((Assignment(START, 5, ""),), "assignment_history[0].group: expected text, got 5"),
    ((Assignment(START, "", None),), "assignment_history[0].assignee: expected text, got None"),
    ((Assignment(START, "", ""), Assignment(None, "", "")),  # type: ignore[arg-type]
     "assignment_history[1].at: expected an aware datetime, got None"),
], ids=["int-group", "no-assignee", "no-instant"])
def test_an_assignment_without_text_or_instant_is_refused_naming_it(history, message):
    # Before, these raised TypeError from the checks themselves: a crash, not a refusal.
    with pytest.raises(RecordError) as info:
        Record(id="T-1", kind="ticket", created_at=START, updated_at=START,
               assignment_history=history)
    assert str(info.value) == f"record 'T-1': {message}"


def instant_outcome(parse: Any, value: Any) -> tuple[str, Any]:
    try:
        parsed = parse(value, "created_at")
    except ValueError as exc:
        return "refused", str(exc)
    return "parsed", (parsed, parsed.tzinfo is UTC, parsed.fold)


class Text(str):
    pass


def test_the_quick_parse_of_an_instant_gives_what_the_definition_gives():
    """parse_instant takes a str that parses as UTC directly; _parse_instant is the
    definition. Over random ISO-like strings (offsets of every kind, fractions, spaces
    around, dates alone, garbage, the ends of the calendar) and other values, both give the
    same instant in UTC, or the same refusal."""
    from sla_sync.connector.model import _parse_instant, parse_instant
    rng = random.Random(12)
    values: list[Any] = [None, "", " ", 1772441600, True, START, START.replace(tzinfo=None),
                         START.astimezone(timezone(timedelta(hours=3))), Text("2026-03-02Z"),
                         Text("2026-03-02T09:00:00Z"), b"2026-03-02T09:00:00Z"]
    for _ in range(20000):
        date = rng.choice(["2026-03-02", "0001-01-01", "9999-12-31", "1969-12-31",
                           "2026-02-30", "20260302", "2026-W10-1", "2026-3-2", "2026-03"])
        time = rng.choice(["", "T09:00", "T09:00:00", " 09:00:00", "T23:59:59.999999",
                           "T09:00:00.5", "T09:00:00,25", "T24:00", "T9:00", "t09:00:00",
                           "T09:00:00.1234567"])
        offset = rng.choice(["", "Z", "z", "+00:00", "-00:00", "+0000", "+00", "+05:30",
                             "-01:00", "+14:00", "+24:00", "+00:00:00.5", "UTC", " Z"])
        around = rng.choice(["", "", "", " ", "\t", "\n"])
        value = rng.choice(["", around]) + date + time + offset + rng.choice(["", around])
        if rng.random() < 0.05:
            cut = rng.randrange(len(value) + 1)
            value = value[:cut] + rng.choice(["x", "\ud800", "٣", "0", ""]) + value[cut:]
        values.append(value)
    outcomes = [(instant_outcome(parse_instant, v), instant_outcome(_parse_instant, v))
                for v in values]
    assert [quick for quick, _ in outcomes] == [full for _, full in outcomes]
    assert all(quick[0] != "parsed" or quick[1][1] for quick, _ in outcomes)  # always UTC
    kinds = {quick[0] for quick, _ in outcomes}
    assert kinds == {"parsed", "refused"}
    assert sum(1 for quick, _ in outcomes if quick[0] == "parsed") > 5000


# -- the hand-written constructors against the ones dataclasses would write -------------------

def generated(cls: type) -> type:
    """`cls` as @dataclass(frozen=True) makes it: the same fields, the generated __init__
    (and Record's checks after it)."""
    import dataclasses
    methods = {name: getattr(cls, name) for name in ("__post_init__", "_plainly_usable",
                                                     "_check") if hasattr(cls, name)}
    return dataclasses.make_dataclass(
        cls.__name__, [(f.name, f.type, dataclasses.field(default=f.default,
                                                          default_factory=f.default_factory))
                       for f in dataclasses.fields(cls)], frozen=True, namespace=methods)


def signature_of(cls: type) -> list[tuple[str, Any, Any]]:
    import dataclasses
    import inspect
    factories = {f.name for f in dataclasses.fields(cls)
                 if f.default_factory is not dataclasses.MISSING}
    return [(p.name, p.kind, "a factory" if p.name in factories else p.default)
            for p in inspect.signature(cls.__init__).parameters.values()]


def built(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
    try:
        made = cls(*args, **kwargs)
    except RecordError as exc:
        return "refused", str(exc)
    except TypeError as exc:
        return "no call", str(exc).split("() ", 1)[-1]
    return "built", vars(made)


@pytest.mark.parametrize("cls", [StatusChange, Note, Message, Assignment, Record],
                         ids=lambda cls: cls.__name__)
def test_each_constructor_is_the_one_dataclasses_would_generate(cls):
    """The same parameters in the same order with the same defaults (a new dict for
    Record.custom each time); over random calls (positional, by name, fields left out,
    unknown names, and for Record values its checks refuse), the same fields, the same
    refusal, or the same TypeError."""
    import dataclasses
    twin = generated(cls)
    assert signature_of(cls) == signature_of(twin)
    rng = random.Random(15)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {"id": ["T-1", "T-\ud800"], "kind": ["ticket", "lead"],
              "escalation_level": [0, 3, -1], "worked_seconds": [None, 60, -5],
              "custom": [{"plan": "gold"}, None, {"x": float("nan")}],
              "tags": [(), ("vip",)], "public": [True, False]}
    outcomes = set()
    for _ in range(2000):
        chosen = [name for i, name in enumerate(names)
                  if i < 2 or rng.random() < 0.5]  # the first two are never left out
        kwargs = {}
        for name in chosen:
            if name in values:
                kwargs[name] = rng.choice(values[name])
            elif name.endswith("_at") or name == "at":
                kwargs[name] = START + timedelta(minutes=rng.randrange(100))
            else:
                kwargs[name] = rng.choice(["", "open", "x" * 5, "\udc80"]) \
                    if name not in ("status_history", "notes", "messages",
                                    "assignment_history") else rng.choice([(), None])
        if rng.random() < 0.05:
            kwargs[rng.choice(["unknown", "at_", names[0]])] = 1
        positional = rng.randrange(len(kwargs) + 1) if rng.random() < 0.3 else 0
        args = tuple(kwargs.pop(name) for name in names[:positional] if name in kwargs)
        mine, theirs = built(cls, args, kwargs), built(twin, args, kwargs)
        assert mine == theirs, (args, kwargs)
        outcomes.add(mine[0])
    assert "built" in outcomes and "no call" in outcomes
    if cls is Record:
        assert "refused" in outcomes
        first, second = (Record("T-1", "ticket", START, START) for _ in range(2))
        assert first.custom == {} and first.custom is not second.custom
