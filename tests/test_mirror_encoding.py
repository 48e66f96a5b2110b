"""The mirror's text of a record (`sync_state._record_json`), written out directly, against
the plain definition it replaces: `json.dumps(record.to_dict(), ensure_ascii=False,
sort_keys=True)`, character for character (rows compare by it: a record read again
unchanged keeps its wake-up time), over varied records; and, for values of other types
than a Record allows, the same text or the same error."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla_sync.connector.model import (
    Assignment,
    Message,
    Note,
    Record,
    StatusChange,
    format_instant,
)
from sla_sync.sync_state import StateStore, _record_json, _whole_seconds


def plain(record: Record) -> str:
    return json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True)


texts = st.one_of(st.text(max_size=12), st.sampled_from(
    ["", '"', "\\", "\n\t\x00\x1f\x7f", "é ü €", "😀", "\u2028\u2029", "</script>", "\ufeff"]))
zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                         timezone(timedelta(hours=-11)), timezone(timedelta(seconds=37))])
instants = st.builds(lambda d, tz: d.replace(tzinfo=UTC).astimezone(tz),
                     st.datetimes(min_value=datetime(1971, 1, 1),
                                  max_value=datetime(2199, 1, 1)), zones)
scalars = st.one_of(st.none(), st.booleans(), texts,
                    st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False))
customs = st.one_of(
    st.dictionaries(texts, scalars, max_size=5),
    st.dictionaries(texts, st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
        max_leaves=6), max_size=4))


# The strategies drawn from, made once (a strategy built at each draw is validated anew:
# that was most of the test's time).
SECONDS = st.integers(min_value=0, max_value=10 ** 7)  # after creation
SOME_SECONDS = st.one_of(st.none(), SECONDS)
MESSAGES = st.one_of(st.none(), st.lists(st.tuples(
    SECONDS, st.sampled_from(["customer", "agent"]), st.booleans()), max_size=3))
ASSIGNMENTS = st.one_of(st.none(), st.lists(st.tuples(SECONDS, texts, texts), max_size=3))
IDS = st.text(min_size=1, max_size=8)
KINDS = st.sampled_from(["ticket", "lead"])
TAGS = st.lists(texts, max_size=4)
LEVELS = st.integers(min_value=0, max_value=1000)
URLS = st.one_of(st.just(""), texts)
WORKED = st.one_of(st.none(), st.integers(0, 10 ** 6), st.floats(0, 10 ** 6))


@st.composite
def records(draw: Any) -> Record:
    created = draw(instants)

    def later(seconds: int | None) -> datetime | None:
        return None if seconds is None else created + timedelta(seconds=seconds)

    history = sorted(draw(st.lists(SECONDS, max_size=4)))
    messages = draw(MESSAGES)
    assignments = draw(ASSIGNMENTS)
    return Record(
        id=draw(IDS), kind=draw(KINDS),
        created_at=created, updated_at=later(draw(SECONDS)), subject=draw(texts),
        status=draw(texts), priority=draw(texts), tier=draw(texts), channel=draw(texts),
        source=draw(texts), group=draw(texts), assignee=draw(texts),
        tags=tuple(draw(TAGS)),
        first_response_at=later(draw(SOME_SECONDS)),
        solved_at=later(draw(SOME_SECONDS)),
        status_history=tuple(StatusChange(later(s), draw(texts)) for s in history),
        escalation_level=draw(LEVELS),
        notes=tuple(Note(later(s), draw(texts))
                    for s in draw(st.lists(SECONDS, max_size=3))),
        custom=draw(customs), url=draw(URLS),
        worked_seconds=draw(WORKED),
        messages=None if messages is None else tuple(
            Message(later(s), author, public) for s, author, public in sorted(messages)),
        assignment_history=None if assignments is None else tuple(
            Assignment(later(s), group, assignee) for s, group, assignee in sorted(assignments)))


@settings(max_examples=600, deadline=None, derandomize=True)
@given(records())
def test_as_the_plain_definition(record: Record) -> None:
    assert _record_json(record) == plain(record)


class Text(str):
    pass


def forced(record: Record, **values: Any) -> Record:
    """The record with values no connector would give it (Record's checks bypassed)."""
    copy = dataclasses.replace(record)
    for name, value in values.items():
        object.__setattr__(copy, name, value)
    return copy


BASE = Record(id="T-1", kind="ticket", created_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
              updated_at=datetime(2026, 3, 2, 10, 0, 0, 5, tzinfo=UTC), custom={"a": 1},
              messages=(Message(datetime(2026, 3, 2, 9, tzinfo=UTC), "customer"),))
ODD: list[dict[str, Any]] = [
    {"subject": Text("sub")}, {"tags": (Text("t"), "u")}, {"escalation_level": True},
    {"escalation_level": 2.0}, {"worked_seconds": True}, {"worked_seconds": float("nan")},
    {"custom": {"x": float("inf")}}, {"custom": {1: "a", 2: "b"}}, {"custom": {1: "a", "b": 2}},
    {"custom": {"k": Text("v")}}, {"custom": {"k": object()}}, {"custom": {"n": 10 ** 5000}},
    {"custom": {"x": [1, {"b": 2, "a": (3,)}]}}, {"custom": {"x": True, "y": None}},
    {"custom": [("a", 1)]}, {"custom": None},
    {"messages": (Message(datetime(2026, 3, 2, tzinfo=UTC), "agent", 1),)},  # type: ignore
    {"messages": (Message(datetime(2026, 3, 2, tzinfo=UTC), "agent", None),)},  # type: ignore
    {"subject": 5}, {"status": None}, {"tags": ("a", 3)}, {"created_at": "2026-03-02"},
    {"solved_at": 17}, {"status_history": (StatusChange(datetime(2026, 3, 2, tzinfo=UTC),
                                                        7),)},  # type: ignore[arg-type]
    {"notes": (Note(None, "x"),)},  # type: ignore[arg-type]
    {"assignment_history": (Assignment(datetime(2026, 3, 2, tzinfo=UTC), 1, ""),)},
    {"url": 0}, {"url": "u"}, {"url": Text("")},
]


@pytest.mark.parametrize("values", ODD, ids=[",".join(v) for v in ODD])
def test_odd_values_as_the_plain_definition(values: dict[str, Any]) -> None:
    record = forced(BASE, **values)
    try:
        expected: Any = plain(record)
    except Exception as exc:  # noqa: BLE001 (the same error, whichever it is)
        with pytest.raises(type(exc)) as raised:
            _record_json(record)
        assert str(raised.value) == str(exc)
        return
    assert _record_json(record) == expected


def test_a_subclass_of_record_as_the_plain_definition() -> None:
    @dataclasses.dataclass(frozen=True)
    class Wider(Record):
        def to_dict(self) -> dict[str, Any]:
            return {**super().to_dict(), "extra": 1}

    record = Wider(id="T-2", kind="ticket", created_at=BASE.created_at,
                   updated_at=BASE.updated_at)
    assert _record_json(record) == plain(record)


def test_the_mirror_stores_the_plain_text(tmp_path: Any) -> None:
    with StateStore(tmp_path / "state.db") as store:
        run = store.begin_run(datetime(2026, 3, 2, 12, tzinfo=UTC), False)
        store.mirror([BASE], run)
        (data,) = store.db.execute("SELECT data FROM records").fetchone()
    assert data == plain(BASE)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(instants, st.integers(0, 999_999))
def test_a_wake_up_time_in_whole_seconds_as_before(instant: datetime, micro: int) -> None:
    instant = instant.replace(microsecond=micro)
    assert _whole_seconds(instant) == format_instant(instant.replace(microsecond=0))
