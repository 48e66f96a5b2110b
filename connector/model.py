"""The shared vocabulary: one ticket or lead as a `Record`, one record's writes as a `ChangeSet`.

Every connector maps its helpdesk's own words to these; rules and the planner see nothing
else. Timestamps are timezone-aware UTC inside; input without an offset is refused, never
guessed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

KINDS = ("ticket", "lead")
#: Fields a ChangeSet may set directly (the escalation level and tags have their own slots).
SETTABLE_FIELDS = ("priority", "group", "assignee", "status")
#: The status a record had before its first status_history entry.
INITIAL_STATUS = "new"


class RecordError(ValueError):
    """A record that cannot be used: it is skipped and reported, the others proceed."""

    def __init__(self, message: str, record_id: str | None = None, position: int | None = None):
        self.record_id = record_id
        self.position = position
        self.reason = message
        if record_id:
            where = f"record {record_id!r}"
        else:
            where = "a record" if position is None else f"record #{position}"
        super().__init__(f"{where}: {message}")


def parse_instant(value: Any, what: str) -> datetime:
    """An ISO 8601 timestamp with an offset, as aware UTC. Raises ValueError naming `what`."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an ISO 8601 timestamp") from None
    else:
        raise ValueError(f"{what}: expected an ISO 8601 timestamp, got {value!r}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{what}: {value!r} has no UTC offset (refusing to guess a timezone)")
    return parsed.astimezone(UTC)


def format_instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class StatusChange:
    at: datetime
    status: str


@dataclass(frozen=True)
class Note:
    at: datetime
    text: str


@dataclass(frozen=True)
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

    @classmethod
    def from_dict(cls, data: Any, position: int | None = None) -> Record:
        """Build a Record from the shared vocabulary; RecordError names what is wrong."""
        if not isinstance(data, Mapping):
            raise RecordError("is not an object", position=position)
        raw_id = data.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or str(raw_id) == "":
            raise RecordError("has no id", position=position)
        record_id = str(raw_id)

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
            history = tuple(
                StatusChange(
                    at=parse_instant(_item(entry, "at", f"status_history[{i}]"),
                                     f"status_history[{i}].at"),
                    status=_text(_item(entry, "status", f"status_history[{i}]"),
                                 f"status_history[{i}].status"),
                )
                for i, entry in enumerate(_list(data, "status_history"))
            )
            notes = tuple(
                Note(
                    at=parse_instant(_item(entry, "at", f"notes[{i}]"), f"notes[{i}].at"),
                    text=_text(_item(entry, "text", f"notes[{i}]"), f"notes[{i}].text"),
                )
                for i, entry in enumerate(_list(data, "notes"))
            )
            tags = tuple(_text(tag, f"tags[{i}]") for i, tag in enumerate(_list(data, "tags")))
            level = data.get("escalation_level")
            level = 0 if level is None else level
            if isinstance(level, bool) or not isinstance(level, int) or level < 0:
                raise ValueError(f"escalation_level: expected a whole number >= 0, got {level!r}")
            custom = data.get("custom") or {}
            if not isinstance(custom, Mapping):
                raise ValueError("custom: expected an object")
            strings = {
                name: _text(data.get(name), name, default=default)
                for name, default in (
                    ("subject", ""), ("status", INITIAL_STATUS), ("priority", ""), ("tier", ""),
                    ("channel", ""), ("source", ""), ("group", ""), ("assignee", ""),
                )
            }
        except ValueError as exc:
            raise fail(str(exc)) from None
        if any(a.at < b.at for a, b in zip(history[1:], history, strict=False)):
            raise fail("status_history: entries are not in time order")
        return cls(
            id=record_id, kind=kind, created_at=created_at, updated_at=updated_at,
            first_response_at=first_response_at, solved_at=solved_at, status_history=history,
            notes=notes, tags=tags, escalation_level=level, custom=dict(custom), **strings,
        )

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
        unknown = set(self.fields) - set(SETTABLE_FIELDS)
        if unknown:
            raise ValueError(f"ChangeSet cannot set {sorted(unknown)}")
        if {t.lower() for t in self.add_tags} & {t.lower() for t in self.remove_tags}:
            raise ValueError("ChangeSet adds and removes the same tag")

    def is_empty(self) -> bool:
        return not (self.fields or self.add_tags or self.remove_tags or self.notes
                    or self.escalation_level is not None)

    def applied_to(self, record: Record, now: datetime) -> Record:
        """The record as it would read after this change was written at `now`."""
        changes: dict[str, Any] = dict(self.fields)
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
