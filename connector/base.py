"""What every connector offers the sync loop: pages of Records, applying a ChangeSet, and a
statement of what it can do."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, cast

from sla_sync.connector.model import ChangeSet, Record, RecordError


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


class OutcomeUnknown(ConnectorError):
    """A write was sent and its answer never came, or came unreadable (a read timeout, a
    connection reset, a 5xx, a body cut short): the helpdesk may or may not have applied it.
    It is never resent blindly; the sync loop reads the record back to settle it."""

    def __init__(self, message: str, *, record_id: str | None = None):
        super().__init__(message, retriable=True, record_id=record_id)


class RecordGone(ConnectorError):
    """The record no longer exists in the helpdesk (deleted or merged away)."""

    def __init__(self, message: str, *, record_id: str):
        super().__init__(message, retriable=False, record_id=record_id)


@dataclass(frozen=True)
class Capabilities:
    bulk_writes: bool = False  # apply_many sends one request per batch
    batch_size: int = 1  # changes per apply_many call
    safe_update: bool = False  # refuses a write planned on an older version
    tags: bool = True
    notes: bool = True
    leads: bool = False
    #: read_back returns the record's notes, so a note that went out can be recognised when
    #: a write's outcome is unknown. Where it cannot, such a write stays pending (never
    #: resent, never assumed) until an admin settles it.
    reads_notes: bool = True
    #: Writes reach a real helpdesk that people work in (every connector but the embedded
    #: file helpdesk): `run --now` is refused there unless it is a dry run, since rules
    #: evaluated at another instant would write what is not true now.
    real_helpdesk: bool = True
    #: `set_field` may write any custom.NAME (the file helpdesk); elsewhere only the names a
    #: connector maps (its `custom_fields` setting, listed in its catalog's fields).
    any_custom_field: bool = False


@dataclass
class WriteResult:
    """The outcome of one record's write in a batch: the record as written when the
    helpdesk says (None: not known without a re-read), or the error for this record alone."""

    record_id: str
    record: Record | None = None
    error: ConnectorError | None = None
    #: The version token of the record as written, from a connector whose fetch compares
    #: versions (`versioned`; see `Mirrored`); None: it gives none for this write.
    version: str | None = None


@dataclass
class Page:
    """One page of a fetch: the records read, the ones that could not be used, and the cursor
    that resumes after this page. A page may hold no records: a connector that reads
    something else first (Zendesk's ticket events, into its memory) yields a page for each
    of its reads, so that a sync can stop between any two."""

    records: list[Record]
    cursor: str | None
    problems: list[RecordError] = field(default_factory=list)
    #: Things worth telling the admin that did not stop a record from being used, such as
    #: an unknown priority mapped to the documented fallback.
    notices: list[str] = field(default_factory=list)
    #: A versioned connector's token of each record on the page (record id -> token): the
    #: mirror keeps it beside the record (see `Mirrored`).
    versions: dict[str, str] = field(default_factory=dict)
    #: Records changed since the cursor that a versioned connector left off the page because
    #: the mirror holds exactly their version, each as (how many of `records` come before
    #: it, its id): the page's order is kept, and its cursor is past them.
    unchanged: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Catalog:
    """What a helpdesk has, read live by a connector's `catalog()` for `sla-sync check`.

    Names are in the Record's vocabulary, as a policy writes them (after the connector's
    maps: a Zendesk group id the config names `support` is `support`); None where the
    helpdesk takes any value or cannot say. `problems` are (config path, why) for what the
    config names that the helpdesk lacks, or credentials that cannot read what a sync reads.
    `denied` says which writes the credentials cannot make: a write kind (`fields`, `tags`,
    `escalation`, `notes`, or `group:NAME` for moving a record to one group) -> why; a
    problem only when the policy makes such a write. `hints` help with a name that is not
    known: (kind, name) -> how to make it known (the helpdesk has it, the config does not map
    it). `requests` is what reading it cost."""

    helpdesk: str
    priorities: Collection[str] | None = None
    statuses: Collection[str] | None = None
    groups: Collection[str] | None = None
    agents: Collection[str] | None = None
    fields: Collection[str] | None = None  # custom field names, as Record.custom keys
    #: Tags a record can hold (HubSpot: the options of its tags property); None: any.
    tags: Collection[str] | None = None
    group_word: str = "group"  # RT: queue
    agent_word: str = "agent"  # HubSpot: owner
    tag_word: str = "tag"  # HubSpot: option of its tags property
    problems: list[tuple[str, str]] = field(default_factory=list)
    denied: dict[str, str] = field(default_factory=dict)
    hints: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: int = 0


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

    def read_back(self, record_id: str, since: datetime | None = None) -> Record | None:
        """The record as it is now, read from the record itself (never from a listing or an
        export that may lag), with its notes added at or after `since` (every note when
        None); None when the helpdesk has no such record. Settles a write whose outcome is
        unknown: a crash, a timeout, a conflict that may be our own earlier attempt."""
        ...

    def apply(self, change: ChangeSet, now: datetime) -> Record | None:
        """Write one record's change; return the record as written (None when the helpdesk
        does not say without a re-read).

        Raises ConflictError when the record is no longer at `change.base_updated_at`,
        RecordGone when it no longer exists.
        """
        ...

    def apply_many(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        """Write several records' changes (at most capabilities.batch_size), one result per
        change in order. Errors that concern one record are in its result; an error of the
        helpdesk itself (unreachable, bad credentials) is raised."""
        ...

    def catalog(self) -> Catalog:
        """What the helpdesk has (priorities, statuses, groups, agents, custom fields) and
        what the credentials may write, read without writing anything. ConnectorError when
        the helpdesk cannot be reached or refuses the credentials."""
        ...


class Memory(Protocol):
    """What a connector keeps between fetches beside its cursor, per key (a ticket id, say):
    a JSON text, read in bulk and changed as a fetch goes. The sync loop's memory lives in
    the state file under the connector's identity: what a fetch keeps is staged under its
    run and becomes the memory only with the cursor of the fetch's last page, in the same
    transaction (`StateStore.move_cursor`); a run that fails, stops or is a dry run leaves
    both as they were. So cursor and memory always agree, and a connector may keep there
    what would make its cursor large (Zendesk: every open ticket's status history and
    conversation, which its exports give only as events)."""

    def recall(self, keys: Collection[str]) -> dict[str, str]:
        """The entries kept under these keys (a key with none is left out)."""
        ...

    def keep(self, changes: Mapping[str, str | None]) -> None:
        """Sets these entries; None removes one."""
        ...


class MemoryInProcess:
    """A Memory held in this process: for a fetch that is not given the state file's (a
    test, a benchmark, a one-off read), and for following what a fetch keeps."""

    def __init__(self, entries: Mapping[str, str] | None = None):
        self.entries: dict[str, str] = dict(entries or {})

    def recall(self, keys: Collection[str]) -> dict[str, str]:
        entries = self.entries
        return {key: entries[key] for key in keys if key in entries}

    def keep(self, changes: Mapping[str, str | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self.entries.pop(key, None)
            else:
                self.entries[key] = value


class Mirrored(Protocol):
    """What the sync loop's mirror holds of some records, for a connector that gives each
    version of a record a token (`versioned = True`; its fetch takes `mirrored=`): a token
    names one version's content exactly (the file helpdesk: the SHA-1 of the record's text),
    so a record whose token is the mirror's need not be parsed or mirrored again. The
    usual case is a record sla-sync wrote itself, read again because the write moved it past
    the cursor; the write's `WriteResult.version` gave the mirror its token. The mirror is
    the state file's, so another state file on the same desk still reads these writes."""

    def versions(self, ids: Collection[str]) -> dict[str, str]:
        """The token of each of these records as the mirror holds it (one it holds without a
        token, or has skipped as unusable since, is left out)."""
        ...


def fetch(connector: Connector, cursor: str | None, memory: Memory,
          mirrored: Mirrored | None = None) -> Iterator[Page]:
    """The connector's pages after `cursor`; a connector that keeps a memory beside its
    cursor (`remembers = True`; its fetch takes `memory=`) is handed this one, and one that
    compares versions (`versioned = True`; its fetch takes `mirrored=`) the mirror's."""
    extra: dict[str, object] = {}
    if getattr(connector, "remembers", False):
        extra["memory"] = memory
    if mirrored is not None and getattr(connector, "versioned", False):
        extra["mirrored"] = mirrored
    if extra:
        fetch_with = cast(Callable[..., Iterator[Page]], connector.fetch)
        return fetch_with(cursor, **extra)
    return connector.fetch(cursor)


#: What `submit_many` hands back: called once, it gives the batch's results (waiting for
#: them if need be), as apply_many would have returned them.
Answer = Callable[[], list[WriteResult]]


def submit_many(connector: Connector, changes: list[ChangeSet], now: datetime) -> Answer:
    """Send a batch and return what gives its results, so that the caller can work on
    while the helpdesk runs it. A connector whose bulk writes run as jobs on the helpdesk
    (Zendesk's update_many) offers `submit_many(changes, now)` itself: the batch is sent
    now, and its answer polls for the jobs' outcomes when called. For any other connector
    the batch is written by apply_many now, and the answer only hands its results over.
    Errors of the helpdesk itself raise where apply_many would raise them: at sending, or
    when the answer is called."""
    submit = getattr(connector, "submit_many", None)
    if submit is not None:
        answer: Answer = submit(changes, now)
        return answer
    results = connector.apply_many(changes, now)
    return lambda: results


def wait_before(connector: Connector, size: int) -> float:
    """The seconds a connector would wait before it could take a batch of `size` changes
    now without waiting: 0 for most. One whose batches run as jobs may say so itself
    (`wait_before(size)`: Zendesk, while the jobs of the batch in flight cannot be done yet,
    or while it paces its own writes), and the sync loop plans on meanwhile instead of
    waiting, sending the batch at a later turn."""
    ask = getattr(connector, "wait_before", None)
    return float(ask(size)) if callable(ask) else 0.0


def apply_single(connector: Connector, change: ChangeSet, now: datetime) -> list[WriteResult]:
    """One change written at once: by `apply` (a single update: Zendesk's PUT, not a job),
    or, by a connector that writes in batches and gives version tokens (`Mirrored`), as
    its batch of one, whose result carries the token (apply returns no token)."""
    if connector.capabilities.bulk_writes and getattr(connector, "versioned", False):
        return connector.apply_many([change], now)
    return apply_each(connector, [change], now)


def apply_each(connector: Connector, changes: list[ChangeSet], now: datetime,
               ) -> list[WriteResult]:
    """apply_many for connectors without bulk writes: one apply per change."""
    results = []
    for change in changes:
        try:
            results.append(WriteResult(change.record_id, connector.apply(change, now)))
        except ConnectorError as exc:
            if exc.record_id is None:
                raise
            results.append(WriteResult(change.record_id, error=exc))
    return results
