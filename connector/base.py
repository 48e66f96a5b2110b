"""What every connector offers the sync loop: pages of Records, applying a ChangeSet, and a
statement of what it can do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from connector.model import ChangeSet, Record, RecordError


class ConnectorError(Exception):
    """The helpdesk could not be read or written.

    `retriable` says whether trying again later can help (a timeout, a 503) or not (bad
    credentials, a 404). `record_id` is set when only one record is concerned.
    """

    def __init__(self, message: str, *, retriable: bool = False, record_id: str | None = None):
        super().__init__(message)
        self.retriable = retriable
        self.record_id = record_id


class ConflictError(ConnectorError):
    """The record changed in the helpdesk after it was read: nothing was written."""

    def __init__(self, message: str, *, record_id: str):
        super().__init__(message, retriable=True, record_id=record_id)


class RecordGone(ConnectorError):
    """The record no longer exists in the helpdesk (deleted or merged away)."""

    def __init__(self, message: str, *, record_id: str):
        super().__init__(message, retriable=False, record_id=record_id)


@dataclass(frozen=True)
class Capabilities:
    bulk_writes: bool = False
    safe_update: bool = False  # refuses a write planned on an older version
    tags: bool = True
    notes: bool = True
    leads: bool = False


@dataclass
class Page:
    """One page of a fetch: the records read, the ones that could not be used, and the cursor
    that resumes after this page."""

    records: list[Record]
    cursor: str | None
    problems: list[RecordError] = field(default_factory=list)


class Connector(Protocol):
    capabilities: Capabilities

    @property
    def identity(self) -> str:
        """Names the helpdesk this connector talks to; the cursor is stored under it."""
        ...

    def fetch(self, cursor: str | None) -> Iterator[Page]:
        """Records updated after `cursor` (all of them when None), oldest change first."""
        ...

    def get(self, record_id: str) -> Record | None:
        """One record as it is now, or None when the helpdesk has no such record."""
        ...

    def apply(self, change: ChangeSet, now: datetime) -> Record:
        """Write one record's change; return the record as written.

        Raises ConflictError when the record is no longer at `change.base_updated_at`.
        """
        ...
