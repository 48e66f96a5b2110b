"""Where an incremental read stands: everything changed before `since` is read, and so are
`ids` among the records changed at `since` exactly.

Helpdesks stamp changes coarsely (Freshdesk and RT to the second, HubSpot to the
millisecond), so several records can share the instant a next read starts from: it starts
at `since` again (an inclusive filter) and skips the ids it already has. A watermark only
moves forward. `since` is whatever the helpdesk orders by (a datetime, epoch milliseconds);
each connector keeps its own cursor encoding (stored cursors stay readable) through
`to_json`/`from_json`, and `decode_cursor` turns a cursor it did not write into one clear
ConnectorError.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, Self, TypeVar

from sla_sync.connector.base import ConnectorError


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


S = TypeVar("S", bound=_Ordered)


def id_order(record_id: str) -> tuple[int, str]:
    """Shorter ids first, then by text: numeric ids in number order (`9` before `10`), so a
    stored cursor's ids read in order."""
    return (len(record_id), record_id)


@dataclass(frozen=True)
class Watermark(Generic[S]):
    """`since` None: nothing read yet (covers nothing)."""

    since: S | None = None
    ids: frozenset[str] = frozenset()

    def covers(self, record_id: str, at: S) -> bool:
        """Whether a record changed at `at` was already read."""
        return self.since is not None and (
            at < self.since or (at == self.since and record_id in self.ids))

    def after(self, record_id: str, at: S) -> Self:
        """The watermark once this record is read (never moved back)."""
        if self.since is None or self.since < at:
            return replace(self, since=at, ids=frozenset({record_id}))
        if at == self.since:
            return replace(self, ids=self.ids | {record_id})
        return self

    @property
    def edge(self) -> S:
        """`since`, for a watermark that always has one (it starts at a configured
        instant); a ConnectorError, never a crash, for one that does not."""
        if self.since is None:
            raise ConnectorError("the read has no starting point")
        return self.since

    def sorted_ids(self, key: Callable[[str], Any] = id_order) -> list[str]:
        return sorted(self.ids, key=key)

    def to_json(self, since_key: str, ids_key: str, stamp: Callable[[S], Any],
                key: Callable[[str], Any] = id_order) -> dict[str, Any]:
        """`{since_key: stamp(since), ids_key: [ids in order]}`."""
        return {since_key: None if self.since is None else stamp(self.since),
                ids_key: self.sorted_ids(key)}

    @classmethod
    def from_json(cls, data: Any, since_key: str, ids_key: str,
                  parse: Callable[[Any], S], ids_required: bool = True) -> Self:
        """The inverse of to_json; KeyError, TypeError or ValueError when `data` is not one."""
        raw = data[since_key]
        ids = data[ids_key] if ids_required else data.get(ids_key, [])
        if not isinstance(ids, list):
            raise TypeError(ids_key)
        return cls(None if raw is None else parse(raw), frozenset(str(i) for i in ids))


T = TypeVar("T")


def decode_cursor(cursor: str, read: Callable[[Any], T], refusal: str) -> T:
    """`read(json.loads(cursor))`; a cursor that is not JSON, or that `read` refuses
    (KeyError, TypeError, ValueError, AttributeError), is a ConnectorError with `refusal`."""
    try:
        return read(json.loads(cursor))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ConnectorError(refusal) from None
