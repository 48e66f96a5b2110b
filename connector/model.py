"""The shared vocabulary: one ticket or lead as a `Record`, one record's writes as a `ChangeSet`.

Every connector maps its helpdesk's own words to these; rules and the planner see nothing
else. Timestamps are timezone-aware UTC inside; input without an offset is refused, never
guessed.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

KINDS = ("ticket", "lead")
#: The instants a record may carry. Outside them a timestamp is a typo or a sentinel
#: (`9999-12-31`), and business time counted day by day across it would not end.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
#: Bounds on one record, far above any real ticket: beyond them a value is garbage.
MAX_ID = 255  # characters
MAX_TEXT = 1_000_000  # characters in one text (a subject, a tag, a note)
MAX_ITEMS = 10_000  # tags, notes or status changes
MAX_LEVEL = 1_000  # escalation level
MAX_WORKED = 100 * 365 * 86400  # seconds of logged work: a century
#: Fields a ChangeSet may set directly (the escalation level and tags have their own slots).
SETTABLE_FIELDS = ("priority", "group", "assignee", "status")
#: A ChangeSet also sets custom fields, named custom.NAME (the `set_field` action); each
#: connector maps NAME to one of its helpdesk's own fields.
CUSTOM_FIELD_PREFIX = "custom."
#: The status a record had before its first status_history entry.
INITIAL_STATUS = "new"
#: Who wrote a message on a record's conversation.
AUTHORS = ("customer", "agent")


def custom_name(field_name: str) -> str:
    """NAME for a ChangeSet field custom.NAME, else ""."""
    if field_name.startswith(CUSTOM_FIELD_PREFIX):
        return field_name[len(CUSTOM_FIELD_PREFIX):].strip() and \
            field_name[len(CUSTOM_FIELD_PREFIX):]
    return ""


class RecordError(ValueError):
    """A record that cannot be used: it is skipped and reported, the others proceed."""

    def __init__(self, message: str, record_id: str | None = None, position: int | None = None):
        # A connector that wraps what Record itself refused passes its text on: the record
        # is named once.
        if record_id:
            message = message.removeprefix(f"record {record_id!r}: ")
        self.record_id = record_id
        self.position = position
        self.reason = message
        if record_id:
            where = f"record {record_id!r}"
        else:
            where = "a record" if position is None else f"record #{position}"
        super().__init__(f"{where}: {message}")


def _check_worked(value: Any) -> None:
    """worked_seconds: None, or a number of seconds from 0 to a century."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 <= value <= MAX_WORKED:
        raise ValueError(f"worked_seconds: expected a number of seconds from 0 to {MAX_WORKED},"
                         f" got {show(value)}")


def parse_instant(value: Any, what: str) -> datetime:
    """An ISO 8601 timestamp with an offset, as aware UTC. Raises ValueError naming `what`."""
    # The usual case first: a str that parses as it is, already in UTC (`Z`, `+00:00`),
    # which _parse_instant would only strip, check and convert to itself; anything else
    # goes there (a record has a few instants, and a sync reads a million records).
    if type(value) is str:
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is UTC:
                return parsed
    return _parse_instant(value, what)


_fromisoformat = datetime.fromisoformat


def _parse_instant(value: Any, what: str) -> datetime:
    """parse_instant's definition: every input, every refusal."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{what}: {show(value)} is not an ISO 8601 timestamp") from None
    else:
        raise ValueError(f"{what}: expected an ISO 8601 timestamp, got {show(value)}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{what}: {show(value)} has no UTC offset (refusing to guess a "
                         "timezone)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:30-01:00 is in the year 10000 in UTC
        raise ValueError(f"{what}: {show(value)} is out of range") from None


def show(value: Any, limit: int = 60) -> str:
    """A value as messages quote it: its repr, cut short (a record may hold megabytes), and
    never raising (an int of 5000 digits has no repr)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 5] + "...>" + text[-1:]


def check_text(value: str, what: str) -> None:
    """Refuse text a UTF-8 file, database or HTTP body cannot hold (a lone surrogate), or that
    is too long to be real; ValueError naming `what`."""
    if len(value) > MAX_TEXT:
        raise ValueError(f"{what}: {len(value)} characters (at most {MAX_TEXT})")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{what}: not valid Unicode (a lone surrogate at character "
                             f"{exc.start})") from None


def format_instant(value: datetime) -> str:
    # Most instants are UTC already (parse_instant makes them so); astimezone would give
    # the same one back, at the price of a call made about a dozen times per record.
    return value.isoformat() if value.tzinfo is UTC else value.astimezone(UTC).isoformat()


# The small records below and Record itself are frozen dataclasses with an __init__ of
# their own: the generated one sets each field through object.__setattr__ (what frozen
# asks), storing into the instance's __dict__ is the same and about a third cheaper, and a
# sync builds several of them per record. tests/test_model.py holds each to the signature
# and the result the dataclass would give.

@dataclass(frozen=True, init=False)
class StatusChange:
    at: datetime
    status: str

    def __init__(self, at: datetime, status: str) -> None:
        values = self.__dict__
        values["at"] = at
        values["status"] = status


@dataclass(frozen=True, init=False)
class Note:
    at: datetime
    text: str

    def __init__(self, at: datetime, text: str) -> None:
        values = self.__dict__
        values["at"] = at
        values["text"] = text


@dataclass(frozen=True, init=False)
class Message:
    """One message of a record's conversation: when, by whom, and whether the customer saw
    it (an internal note is an agent message that is not public)."""

    at: datetime
    author: str
    public: bool = True

    def __init__(self, at: datetime, author: str, public: bool = True) -> None:
        values = self.__dict__
        values["at"] = at
        values["author"] = author
        values["public"] = public


@dataclass(frozen=True, init=False)
class Assignment:
    """The record entered `group` and/or was given to `assignee` ("" for nobody) at `at`."""

    at: datetime
    group: str
    assignee: str

    def __init__(self, at: datetime, group: str, assignee: str) -> None:
        values = self.__dict__
        values["at"] = at
        values["group"] = group
        values["assignee"] = assignee


#: Record's `custom` when none is given: a new dict each time (default_factory=dict).
_NEW_DICT: Any = object()


@dataclass(frozen=True, init=False)
class Record:
    id: str
    kind: str
    created_at: datetime
    updated_at: datetime
    subject: str = ""
    status: str = INITIAL_STATUS
    priority: str = ""
    tier: str = ""
    channel: str = ""
    source: str = ""
    group: str = ""
    assignee: str = ""
    tags: tuple[str, ...] = ()
    first_response_at: datetime | None = None
    solved_at: datetime | None = None
    status_history: tuple[StatusChange, ...] = ()
    escalation_level: int = 0
    notes: tuple[Note, ...] = ()
    custom: Mapping[str, Any] = field(default_factory=dict)
    #: A link to the record in the helpdesk's own interface, where the connector knows it
    #: ("" otherwise); notes may show it as {url}.
    url: str = ""
    #: Time people logged working on the record, in seconds, where the helpdesk records it
    #: (None: it does not); the average handling time reads it.
    worked_seconds: float | None = None
    #: The conversation, oldest first, where the helpdesk gives it; None: it does not, and
    #: clocks that need it are unavailable (never guessed). () is a known, empty one.
    messages: tuple[Message, ...] | None = None
    #: Group and assignee changes, oldest first (before the first entry the record had the
    #: values it was created with); None: the helpdesk does not say.
    assignment_history: tuple[Assignment, ...] | None = None

    def __init__(self, id: str, kind: str, created_at: datetime, updated_at: datetime,
                 subject: str = "", status: str = INITIAL_STATUS, priority: str = "",
                 tier: str = "", channel: str = "", source: str = "", group: str = "",
                 assignee: str = "", tags: tuple[str, ...] = (),
                 first_response_at: datetime | None = None, solved_at: datetime | None = None,
                 status_history: tuple[StatusChange, ...] = (), escalation_level: int = 0,
                 notes: tuple[Note, ...] = (), custom: Mapping[str, Any] = _NEW_DICT,
                 url: str = "", worked_seconds: float | None = None,
                 messages: tuple[Message, ...] | None = None,
                 assignment_history: tuple[Assignment, ...] | None = None) -> None:
        values = self.__dict__
        values["id"] = id
        values["kind"] = kind
        values["created_at"] = created_at
        values["updated_at"] = updated_at
        values["subject"] = subject
        values["status"] = status
        values["priority"] = priority
        values["tier"] = tier
        values["channel"] = channel
        values["source"] = source
        values["group"] = group
        values["assignee"] = assignee
        values["tags"] = tags
        values["first_response_at"] = first_response_at
        values["solved_at"] = solved_at
        values["status_history"] = status_history
        values["escalation_level"] = escalation_level
        values["notes"] = notes
        values["custom"] = {} if custom is _NEW_DICT else custom
        values["url"] = url
        values["worked_seconds"] = worked_seconds
        values["messages"] = messages
        values["assignment_history"] = assignment_history
        self.__post_init__()

    def __post_init__(self) -> None:
        # Every connector builds Records, so the bounds are checked here once for all of
        # them: a record outside them is skipped and reported, never a crash later on.
        if not self._plainly_usable():
            self._check()
        if self.first_response_at is None and self.messages:
            # Derived (from checked messages), so that a connector giving the conversation
            # need not give both.
            object.__setattr__(self, "first_response_at", first_public_reply(self.messages))

    def _check(self) -> None:
        """Every bound, naming the field at fault (RecordError)."""
        try:
            check_text(self.id, "id")
            if len(self.id) > MAX_ID:
                raise ValueError(f"id: {len(self.id)} characters (at most {MAX_ID})")
            for name in ("created_at", "updated_at", "first_response_at", "solved_at"):
                _check_instant(getattr(self, name), name)
            for name in ("subject", "status", "priority", "tier", "channel", "source",
                         "group", "assignee", "url"):
                check_text(getattr(self, name), name)
            for name in ("tags", "status_history", "notes"):
                if len(getattr(self, name)) > MAX_ITEMS:
                    raise ValueError(f"{name}: {len(getattr(self, name))} entries (at most "
                                     f"{MAX_ITEMS})")
            for i, tag in enumerate(self.tags):
                check_text(tag, f"tags[{i}]")
            for i, change in enumerate(self.status_history):
                _check_instant(change.at, f"status_history[{i}].at")
                check_text(change.status, f"status_history[{i}].status")
            for i, note in enumerate(self.notes):
                _check_instant(note.at, f"notes[{i}].at")
                check_text(note.text, f"notes[{i}].text")
            if isinstance(self.escalation_level, bool) \
                    or not isinstance(self.escalation_level, int) \
                    or not 0 <= self.escalation_level <= MAX_LEVEL:
                raise ValueError(f"escalation_level: expected a whole number from 0 to "
                                 f"{MAX_LEVEL}, got {show(self.escalation_level)}")
            _check_custom(self.custom)
            _check_worked(self.worked_seconds)
            _check_conversation(self.messages, self.assignment_history)
        except ValueError as exc:
            raise RecordError(str(exc), record_id=self.id if _usable_id(self.id) else None)\
                from None

    def _plainly_usable(self) -> bool:
        """The common case, cheaply (every record built pays for it); False sends the
        record through the checks that name the field at fault."""
        try:
            if not (EARLIEST <= self.created_at < LATEST and EARLIEST <= self.updated_at < LATEST
                    and (self.first_response_at is None
                         or EARLIEST <= self.first_response_at < LATEST)
                    and (self.solved_at is None or EARLIEST <= self.solved_at < LATEST)
                    and type(self.escalation_level) is int
                    and 0 <= self.escalation_level <= MAX_LEVEL and len(self.id) <= MAX_ID
                    and (self.worked_seconds is None
                         or (type(self.worked_seconds) in (int, float)
                             and 0 <= self.worked_seconds <= MAX_WORKED))
                    and max(len(self.tags), len(self.notes), len(self.status_history),
                            len(self.messages or ()), len(self.assignment_history or ()))
                    <= MAX_ITEMS):
                return False
            texts = [self.id, self.subject, self.status, self.priority, self.tier,
                     self.channel, self.source, self.group, self.assignee, self.url,
                     *self.tags]
            for change in self.status_history:
                if not EARLIEST <= change.at < LATEST:
                    return False
                texts.append(change.status)
            for note in self.notes:
                if not EARLIEST <= note.at < LATEST:
                    return False
                texts.append(note.text)
            if (self.messages or self.assignment_history) and not _plain_conversation(
                    self.messages, self.assignment_history, texts):
                return False
            if self.custom and not _plain_custom(self.custom, texts):
                return False
            # Every text is a str (join refuses others), none longer than MAX_TEXT (their
            # sum is not), and all storable.
            joined = "".join(texts)
            return len(joined) <= MAX_TEXT and (joined.isascii() or bool(joined.encode("utf-8")))
        except (TypeError, ValueError, AttributeError):
            return False

    @classmethod
    def from_dict(cls, data: Any, position: int | None = None) -> Record:
        """Build a Record from the shared vocabulary; RecordError names what is wrong."""
        if not isinstance(data, Mapping):
            raise RecordError("is not an object", position=position)
        raw_id = data.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or raw_id == "":
            raise RecordError("has no id", position=position)
        if isinstance(raw_id, int) and abs(raw_id) >= 10 ** MAX_ID:
            raise RecordError(f"id: more than {MAX_ID} digits", position=position)
        record_id = str(raw_id)
        if not _usable_id(record_id):
            raise RecordError(f"id: not valid Unicode, or longer than {MAX_ID} characters",
                              position=position)

        def fail(message: str) -> RecordError:
            return RecordError(message, record_id=record_id, position=position)

        kind = data.get("kind")
        if kind not in KINDS:
            raise fail(f"kind: unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
        try:
            created_at = parse_instant(data.get("created_at"), "created_at")
            updated_at = parse_instant(data.get("updated_at"), "updated_at")
            first_response_at = _optional_instant(data, "first_response_at")
            solved_at = _optional_instant(data, "solved_at")
            history = _entries(data, "status_history", StatusChange, "status")
            notes = _entries(data, "notes", Note, "text")
            listed = _list(data, "tags")
            if not all(type(tag) is str for tag in listed):
                for i, tag in enumerate(listed):
                    _text(tag, f"tags[{i}]")
            tags = tuple(listed)
            level = data.get("escalation_level")
            level = 0 if level is None else level
            if isinstance(level, bool) or not isinstance(level, int) or level < 0:
                raise ValueError("escalation_level: expected a whole number >= 0, got "
                                 f"{show(level)}")
            worked = data.get("worked_seconds")
            _check_worked(worked)
            messages = _messages(data)
            assignments = _assignments(data)
            custom = data.get("custom") or {}
            if not isinstance(custom, Mapping):
                raise ValueError("custom: expected an object")
            strings = {}
            for name, default in TEXT_FIELDS:
                value = data.get(name)
                strings[name] = value if type(value) is str else _text(value, name, default)
        except ValueError as exc:
            raise fail(str(exc)) from None
        if any(a.at < b.at for a, b in zip(history[1:], history, strict=False)):
            raise fail("status_history: entries are not in time order")
        try:
            return cls(
                id=record_id, kind=kind, created_at=created_at, updated_at=updated_at,
                first_response_at=first_response_at, solved_at=solved_at,
                status_history=history, notes=notes, tags=tags, escalation_level=level,
                custom=dict(custom), worked_seconds=worked, messages=messages,
                assignment_history=assignments, **strings,
            )
        except RecordError as exc:
            raise fail(exc.reason) from None

    def to_dict(self) -> dict[str, Any]:
        """The record in the shared vocabulary, JSON-ready (timestamps as UTC ISO strings)."""
        def instant(value: datetime | None) -> str | None:
            return None if value is None else format_instant(value)

        return {
            "id": self.id, "kind": self.kind, "subject": self.subject, "status": self.status,
            "priority": self.priority, "tier": self.tier, "channel": self.channel,
            "source": self.source, "group": self.group, "assignee": self.assignee,
            "tags": list(self.tags), "created_at": instant(self.created_at),
            "updated_at": instant(self.updated_at),
            "first_response_at": instant(self.first_response_at),
            "solved_at": instant(self.solved_at),
            "status_history": [
                {"at": instant(c.at), "status": c.status} for c in self.status_history
            ],
            "escalation_level": self.escalation_level,
            "notes": [{"at": instant(n.at), "text": n.text} for n in self.notes],
            "custom": dict(self.custom),
            **({"url": self.url} if self.url else {}),
            **({"worked_seconds": self.worked_seconds}
               if self.worked_seconds is not None else {}),
            **({"messages": [{"at": instant(m.at), "author": m.author, "public": m.public}
                             for m in self.messages]}
               if self.messages is not None else {}),
            **({"assignment_history": [{"at": instant(a.at), "group": a.group,
                                        "assignee": a.assignee}
                                       for a in self.assignment_history]}
               if self.assignment_history is not None else {}),
        }

    def status_timeline(self) -> list[StatusChange]:
        """Every status the record has had, from creation on, oldest first.

        Before the first history entry the record was `new`. A record with no history has
        had its current status since creation, except that one with a `solved_at` was `new`
        until then. When the history does not end in the current
        status (a helpdesk that dropped an entry), the current status is taken to hold from
        `updated_at` on.
        """
        if not self.status_history:
            if self.solved_at is not None and self.solved_at > self.created_at \
                    and self.status != INITIAL_STATUS:
                # Solved with no history given: it was worked on until the solve.
                return [StatusChange(self.created_at, INITIAL_STATUS),
                        StatusChange(self.solved_at, self.status)]
            return [StatusChange(self.created_at, self.status)]
        timeline = [StatusChange(self.created_at, INITIAL_STATUS), *self.status_history]
        if timeline[-1].status != self.status:
            timeline.append(StatusChange(max(self.updated_at, timeline[-1].at), self.status))
        return timeline


def first_public_reply(messages: Iterable[Message]) -> datetime | None:
    """When an agent first wrote to the customer (a public agent message), or None."""
    return next((m.at for m in messages if m.author == "agent" and m.public), None)


def _check_conversation(messages: tuple[Message, ...] | None,
                        assignments: tuple[Assignment, ...] | None) -> None:
    """messages and assignment_history: bounded, instants in range and in time order,
    authors known, texts storable; ValueError naming the entry."""
    for name, entries in (("messages", messages), ("assignment_history", assignments)):
        if entries is None:
            continue
        if len(entries) > MAX_ITEMS:
            raise ValueError(f"{name}: {len(entries)} entries (at most {MAX_ITEMS})")
        previous: datetime | None = None
        kind = Message if name == "messages" else Assignment
        for i, entry in enumerate(entries):
            if not isinstance(entry, kind):
                raise ValueError(f"{name}[{i}]: expected a {kind.__name__}, got "
                                 f"{show(entry)}")
            if entry.at is None:  # optional elsewhere, not here
                raise ValueError(f"{name}[{i}].at: expected an aware datetime, got None")
            _check_instant(entry.at, f"{name}[{i}].at")
            if previous is not None and entry.at < previous:
                raise ValueError(f"{name}: entries are not in time order ({name}[{i}])")
            previous = entry.at
            if isinstance(entry, Message):
                if entry.author not in AUTHORS:
                    raise ValueError(f"{name}[{i}].author: expected one of "
                                     f"{', '.join(AUTHORS)}, got {show(entry.author)}")
                if not isinstance(entry.public, bool):
                    raise ValueError(f"{name}[{i}].public: expected true or false, got "
                                     f"{show(entry.public)}")
            else:
                for part in ("group", "assignee"):
                    value = getattr(entry, part)
                    if not isinstance(value, str):
                        raise ValueError(f"{name}[{i}].{part}: expected text, got "
                                         f"{show(value)}")
                    check_text(value, f"{name}[{i}].{part}")


def _plain_conversation(messages: tuple[Message, ...] | None,
                        assignments: tuple[Assignment, ...] | None, texts: list[str]) -> bool:
    """True for a conversation and assignment history _check_conversation accepts, in the
    usual case: exact types, instants in range and in order, known authors; each
    assignment's group and assignee are added to `texts`, which the caller checks for type,
    length and Unicode. False (or a TypeError, say) sends the record through the checks
    that name the entry at fault. The caller has bounded the number of entries."""
    if messages:
        previous = EARLIEST
        for message in messages:
            if type(message) is not Message:
                return False
            at = message.at
            if not (type(at) is datetime and previous <= at < LATEST
                    and message.author in AUTHORS and type(message.public) is bool):
                return False
            previous = at
    if assignments:
        previous = EARLIEST
        for assignment in assignments:
            if type(assignment) is not Assignment:
                return False
            at = assignment.at
            if not (type(at) is datetime and previous <= at < LATEST):
                return False
            previous = at
            texts.append(assignment.group)
            texts.append(assignment.assignee)
    return True


def _messages(data: Mapping[str, Any]) -> tuple[Message, ...] | None:
    """The `messages` of a record in the shared vocabulary; None when not given."""
    if data.get("messages") is None:
        return None
    out = []
    for i, entry in enumerate(_list(data, "messages")):
        where = f"messages[{i}]"
        public = _item(entry, "public", where)
        out.append(Message(at=parse_instant(entry.get("at"), f"{where}.at"),
                           author=_text(entry.get("author"), f"{where}.author"),
                           public=True if public is None else public))
    return tuple(out)


def _assignments(data: Mapping[str, Any]) -> tuple[Assignment, ...] | None:
    """The `assignment_history` of a record in the shared vocabulary; None when not given."""
    if data.get("assignment_history") is None:
        return None
    out = []
    for i, entry in enumerate(_list(data, "assignment_history")):
        where = f"assignment_history[{i}]"
        _item(entry, "at", where)
        out.append(Assignment(at=parse_instant(entry.get("at"), f"{where}.at"),
                              group=_text(entry.get("group"), f"{where}.group", default=""),
                              assignee=_text(entry.get("assignee"), f"{where}.assignee",
                                             default="")))
    return tuple(out)


def _usable_id(value: str) -> bool:
    try:
        check_text(value, "id")
    except ValueError:
        return False
    return len(value) <= MAX_ID


def _check_instant(value: datetime | None, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{what}: expected an aware datetime, got {show(value)}")
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"{what}: {format_instant(value)} is outside the years "
                         f"{EARLIEST.year} to {LATEST.year - 1}")


def _plain_custom(custom: Mapping[str, Any], texts: list[str]) -> bool:
    """True for custom fields _check_custom accepts, in the usual case of a flat object of
    strings, whole numbers of 64 bits, finite floats, booleans and nulls whose JSON is
    surely short enough (each character escaped, at most 6, and 32 for each entry's quotes,
    separators and number); its keys and strings are added to `texts`, which the caller
    checks for length and Unicode. Anything else (nested values too) goes to the full
    check."""
    if type(custom) is not dict:
        return False
    chars = 0
    for key, value in custom.items():
        kind = type(value)
        if type(key) is not str:
            return False
        texts.append(key)
        chars += len(key)
        if kind is str:
            texts.append(value)
            chars += len(value)
        elif not (value is None or kind is bool or (kind is int and -2 ** 63 <= value < 2 ** 63)
                  or (kind is float and math.isfinite(value))):
            return False
    return 6 * chars + 32 * len(custom) + 2 <= MAX_TEXT


#: How deeply custom values may nest (objects and lists).
MAX_CUSTOM_DEPTH = 64


def _nesting(value: Any) -> int:
    """How deeply lists and objects nest in `value`, without recursion; stops counting past
    MAX_CUSTOM_DEPTH."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_CUSTOM_DEPTH:
                    return deepest
            stack.extend((child, depth) for child in
                         (item.values() if isinstance(item, dict) else item))
    return deepest


def _check_custom(custom: Mapping[str, Any]) -> None:
    """Custom fields must be what the state file and the file helpdesk can store as JSON:
    finite numbers, valid Unicode, not nested without end."""
    # Counted here rather than left to json.dumps' RecursionError, whose depth differs by
    # interpreter (3.13's encoder nests 2000 levels without complaint).
    if _nesting(custom) > MAX_CUSTOM_DEPTH:
        raise ValueError(f"custom: nested too deeply (more than {MAX_CUSTOM_DEPTH} levels)")
    try:
        text = json.dumps(custom, ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise ValueError("custom: nested too deeply") from None
    except TypeError as exc:
        raise ValueError(f"custom: not JSON ({exc})") from None
    except ValueError as exc:
        what = "NaN or Infinity is not a number" if "float" in str(exc) else \
            "a number too long to store"
        raise ValueError(f"custom: {what}") from None
    check_text(text, "custom")


def _optional_instant(data: Mapping[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    return None if value in (None, "") else parse_instant(value, name)


def _list(data: Mapping[str, Any], name: str) -> list[Any]:
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{name}: expected a list, got {type(value).__name__}")
    return value


#: The record's plain text fields and their defaults when missing.
TEXT_FIELDS = (("subject", ""), ("status", INITIAL_STATUS), ("priority", ""), ("tier", ""),
               ("channel", ""), ("source", ""), ("group", ""), ("assignee", ""), ("url", ""))


def _entries(data: Mapping[str, Any], name: str, kind: Any, key: str) -> tuple[Any, ...]:
    """The list `name` of {"at": instant, key: text} objects as `kind`s. The usual entry
    (a dict with both, the text a str) is built directly; at the first other one the list
    is built again entry by entry, so that the error names the entry and its field."""
    entries = _list(data, name)
    out = []
    for entry in entries:
        if type(entry) is not dict or type(entry.get(key)) is not str:
            break
        try:
            out.append(kind(parse_instant(entry.get("at"), name), entry[key]))
        except ValueError:
            break
    else:
        return tuple(out)
    return tuple(
        kind(parse_instant(_item(entry, "at", f"{name}[{i}]"), f"{name}[{i}].at"),
             _text(_item(entry, key, f"{name}[{i}]"), f"{name}[{i}].{key}"))
        for i, entry in enumerate(entries))


def _item(entry: Any, key: str, where: str) -> Any:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected an object")
    return entry.get(key)


def _text(value: Any, what: str, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected a string, got {value!r}")
    return value


def note_text(body: Any) -> str:
    """The text of a note kept as HTML (Freshdesk's conversations, HubSpot's hs_note_body):
    line breaks kept, tags dropped, entities decoded."""
    if not isinstance(body, str):
        return ""
    text = re.sub(r"<br\s*/?>", "\n", body, flags=re.IGNORECASE)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def note_html(text: str) -> str:
    """A note's text as the HTML body a helpdesk keeps: escaped (a rule's text may quote a
    customer's subject), line breaks as <br>."""
    return html.escape(text).replace("\n", "<br>")


def merge_tags(existing: Iterable[str], add: Iterable[str], remove: Iterable[str]) -> list[str]:
    """Existing tags, in their order, less `remove`, plus `add` at the end. Tags compare
    case-insensitively (as helpdesks treat them): a tag present in another case is kept as
    it is, not added again."""
    removed = {tag.lower() for tag in remove}
    result = [tag for tag in existing if tag.lower() not in removed]
    for tag in add:
        if tag.lower() not in {t.lower() for t in result}:
            result.append(tag)
    return result


@dataclass(frozen=True)
class ChangeSet:
    """What one record needs written: fields to set, tags, notes, the escalation level.

    `base_updated_at` is the version the change was planned on; a connector that can detect
    a concurrent edit refuses to apply a change to any other version. Empty change sets are
    never sent.
    """

    record_id: str
    base_updated_at: datetime | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    escalation_level: int | None = None

    def __post_init__(self) -> None:
        unknown = {name for name in self.fields if name not in SETTABLE_FIELDS
                   and not custom_name(name)}
        if unknown:
            raise ValueError(f"ChangeSet cannot set {sorted(unknown)}")
        if {t.lower() for t in self.add_tags} & {t.lower() for t in self.remove_tags}:
            raise ValueError("ChangeSet adds and removes the same tag")

    def is_empty(self) -> bool:
        return not (self.fields or self.add_tags or self.remove_tags or self.notes
                    or self.escalation_level is not None)

    def applied_to(self, record: Record, now: datetime) -> Record:
        """The record as it would read after this change was written at `now`."""
        changes: dict[str, Any] = {k: v for k, v in self.fields.items() if not custom_name(k)}
        custom = {custom_name(k): v for k, v in self.fields.items() if custom_name(k)}
        if custom:
            changes["custom"] = {**record.custom, **custom}
        changes["tags"] = tuple(merge_tags(record.tags, self.add_tags, self.remove_tags))
        if self.notes:
            changes["notes"] = record.notes + tuple(Note(now, text) for text in self.notes)
        if self.escalation_level is not None:
            changes["escalation_level"] = self.escalation_level
        if "status" in self.fields and self.fields["status"] != record.status:
            changes["status_history"] = record.status_history + (
                StatusChange(now, self.fields["status"]),
            )
        changes["updated_at"] = now
        return dataclasses.replace(record, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.record_id}
        if self.base_updated_at is not None:
            out["base_updated_at"] = format_instant(self.base_updated_at)
        if self.fields:
            out["set"] = dict(self.fields)
        if self.escalation_level is not None:
            out["escalation_level"] = self.escalation_level
        if self.add_tags:
            out["add_tags"] = list(self.add_tags)
        if self.remove_tags:
            out["remove_tags"] = list(self.remove_tags)
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChangeSet:
        base = data.get("base_updated_at")
        return cls(
            record_id=str(data["id"]),
            base_updated_at=parse_instant(base, "base_updated_at") if base else None,
            fields=dict(data.get("set", {})),
            add_tags=tuple(data.get("add_tags", ())),
            remove_tags=tuple(data.get("remove_tags", ())),
            notes=tuple(data.get("notes", ())),
            escalation_level=data.get("escalation_level"),
        )
