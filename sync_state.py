"""The state store: one SQLite file with the cursor and what the connector keeps beside it
(its memory), the record mirror, the activation ledger, the audit log of applied changes,
pending writes and the run log.

Versioned migrations run on open; a file written by a newer sla-sync is refused rather
than guessed at. WAL mode, one writer: `StateLock` keeps a second sync off the same file.

Damage is looked for at open (SQLite's `quick_check`, which reads the whole file) unless the
file is exactly as sla-sync last closed it: a writable close leaves a note beside the file
(`NAME-closed`: its inode, size, modification and change times once SQLite has folded its
WAL in), and a writable open removes the note before anything is written. A crash leaves
no note, and any later write to the file by anyone (even one that puts its modification
time back) gives it a new change time, so such a file is checked in full again.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from sla_sync.connector.model import (
    Assignment,
    ChangeSet,
    Message,
    Record,
    RecordError,
    format_instant,
    parse_instant,
)
from sla_sync.rules.mark import SlaMark

APPLICATION_ID = 0x534C4153  # "SLAS": marks the file as an sla-sync state file

#: The wake-up time of a record no passage of time can change (after every instant there is).
NEVER = "9999-12-31T23:59:59+00:00"

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE cursors (
        connector TEXT PRIMARY KEY,
        cursor TEXT,
        run_id INTEGER,
        moved_at TEXT
    );
    CREATE TABLE records (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        data TEXT NOT NULL,
        retired_version TEXT,      -- updated_at of the version taken out of evaluation
        seen_run INTEGER
    );
    CREATE TABLE activations (
        record_id TEXT NOT NULL,
        rule TEXT NOT NULL,
        active INTEGER NOT NULL,
        changed_at TEXT NOT NULL,  -- the sync's now when it last (de)activated
        run_id INTEGER NOT NULL,
        PRIMARY KEY (record_id, rule)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        at TEXT NOT NULL,
        record_id TEXT NOT NULL,
        rule TEXT NOT NULL,
        action TEXT NOT NULL,
        field TEXT NOT NULL,
        before TEXT,
        after TEXT
    );
    CREATE INDEX audit_record ON audit (record_id, id);
    CREATE TABLE pending (
        record_id TEXT PRIMARY KEY,
        run_id INTEGER NOT NULL,
        change TEXT NOT NULL,      -- the ChangeSet being written, as JSON
        steps TEXT NOT NULL,       -- its audit rows and activations, as JSON
        at TEXT NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        now TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        status TEXT NOT NULL,      -- running, ok, partial, failed
        read INTEGER DEFAULT 0,
        evaluated INTEGER DEFAULT 0,
        changed INTEGER DEFAULT 0,
        writes INTEGER DEFAULT 0,
        skipped INTEGER DEFAULT 0,
        errors INTEGER DEFAULT 0,
        duration_ms INTEGER,
        message TEXT
    );
    """,
    # 2: which SLA each record is under, and since when (on_target_change: restart)
    """
    CREATE TABLE sla_marks (
        record_id TEXT PRIMARY KEY,
        sla TEXT NOT NULL,
        since TEXT NOT NULL
    );
    """,
    # 3: notifications committed with their record, sent after the commit (an outbox)
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        record_id TEXT NOT NULL,
        rule TEXT NOT NULL,
        webhook TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    """,
    # 4: records the helpdesk holds in a form sla-sync cannot use: left out of evaluation and
    # reported every run, until a usable version is read
    """
    CREATE TABLE skipped (
        record_id TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        first_run INTEGER NOT NULL,
        last_run INTEGER NOT NULL
    );
    """,
    # 5: records indexed by when time alone can next change their evaluation (NULL: at the
    # next sync; NEVER: only when they change), replacing retired_version; the policy digest
    # and the latest `now` the wake-up times were computed at
    f"""
    ALTER TABLE records ADD COLUMN wake_at TEXT;
    UPDATE records SET wake_at = '{NEVER}' WHERE retired_version IS NOT NULL;
    ALTER TABLE records DROP COLUMN retired_version;
    CREATE INDEX records_wake ON records (wake_at);
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 6: audit and undo: what kind of run each run was (a sync or a revert), and for each
    # audit row of a revert the row it undid (a second revert of the same run skips it)
    """
    ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'sync';
    ALTER TABLE audit ADD COLUMN kind TEXT NOT NULL DEFAULT 'sync';
    ALTER TABLE audit ADD COLUMN reverts INTEGER;
    CREATE INDEX audit_run ON audit (run_id, id);
    CREATE INDEX audit_reverts ON audit (reverts);
    """,
    # 7: alerts: what a notification's channel renders (the record's values, its event kind,
    # when its calendar opens), and the one recipient a row goes to once fanned out
    """
    ALTER TABLE outbox ADD COLUMN data TEXT;
    ALTER TABLE outbox ADD COLUMN recipient TEXT;
    """,
    # 8: what a connector keeps beside its cursor (`connector.base.Memory`): the entries
    # that moved with the cursor, and those a run staged that move with its cursor
    """
    CREATE TABLE memory (
        connector TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (connector, key)
    ) WITHOUT ROWID;
    CREATE TABLE memory_staged (
        connector TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        value TEXT,                -- NULL: the entry goes
        PRIMARY KEY (connector, run_id, key)
    ) WITHOUT ROWID;
    """,
    # 9: the token a versioned connector gives the version of a record the mirror holds
    # (`connector.base.Mirrored`); NULL: none known, the next read of it is parsed
    """
    ALTER TABLE records ADD COLUMN version TEXT;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
#: SQLite's page cache of a state file open for writing, in KiB (it grows only as used).
CACHE_KIB = 128 * 1024


class StateError(Exception):
    """The state file cannot be used (unreadable, damaged, not ours, newer, or locked)."""


class StateLocked(StateError):
    """Another sync holds the state file."""


#: json.dumps(value, ensure_ascii=False, sort_keys=True) builds this encoder at every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
_text = json.encoder.encode_basestring  # a str as the encoder above writes it


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


def _record_json(record: Record) -> str:
    """The mirror's text of a record: exactly `_json(record.to_dict())` (rows compare by it:
    a record read again unchanged keeps its wake-up time), written out directly for the
    usual record, whose values are of the plain types; any other goes through to_dict."""
    r = record
    level, worked = r.escalation_level, r.worked_seconds
    if not (type(r) is Record and type(level) is int
            and (worked is None or type(worked) is int
                 or (type(worked) is float and worked - worked == 0.0))):  # (finite)
        return _json(r.to_dict())
    try:
        parts = [
            '{"assignee": ', _text(r.assignee),
            *(() if r.assignment_history is None else (
                ', "assignment_history": [',
                ", ".join([_assignment(a) for a in r.assignment_history]), "]")),
            ', "channel": ', _text(r.channel),
            ', "created_at": "', format_instant(r.created_at),
            '", "custom": ', _custom(r.custom),
            ', "escalation_level": ', int.__repr__(level),
            ', "first_response_at": ', _instant(r.first_response_at),
            ', "group": ', _text(r.group), ', "id": ', _text(r.id),
            ', "kind": ', _text(r.kind),
            *(() if r.messages is None else (
                ', "messages": [', ", ".join([_message(m) for m in r.messages]), "]")),
            ', "notes": [', ", ".join([
                f'{{"at": "{format_instant(n.at)}", "text": {_text(n.text)}}}'
                for n in r.notes]),
            '], "priority": ', _text(r.priority),
            ', "solved_at": ', _instant(r.solved_at),
            ', "source": ', _text(r.source), ', "status": ', _text(r.status),
            ', "status_history": [', ", ".join([
                f'{{"at": "{format_instant(c.at)}", "status": {_text(c.status)}}}'
                for c in r.status_history]),
            '], "subject": ', _text(r.subject),
            ', "tags": [', ", ".join([_text(tag) for tag in r.tags]),
            '], "tier": ', _text(r.tier),
            ', "updated_at": "', format_instant(r.updated_at), '"',
            *((', "url": ', _text(r.url)) if r.url else ()),
            *(() if worked is None else (', "worked_seconds": ', (
                int.__repr__ if type(worked) is int else float.__repr__)(worked))),
            "}"]
    except (TypeError, ValueError, AttributeError):  # a value of another type: as before
        return _json(r.to_dict())
    return "".join(parts)


def _custom(custom: Mapping[str, Any]) -> str:
    """`_json(dict(custom))`; written out for a flat object of plain values."""
    if type(custom) is not dict:
        return _json(dict(custom))
    parts = []
    for key in sorted(custom):  # (str keys only: the sort raises on others, as json's)
        value = custom[key]
        kind = type(value)
        if type(key) is not str:
            return _json(custom)
        if kind is str:
            parts.append(f"{_text(key)}: {_text(value)}")
        elif kind is int:
            parts.append(f"{_text(key)}: {int.__repr__(value)}")
        elif value is None or kind is bool:
            parts.append(f"{_text(key)}: {_SCALARS[value]}")
        elif kind is float and value - value == 0.0:  # finite
            parts.append(f"{_text(key)}: {float.__repr__(value)}")
        else:
            return _json(custom)
    return "{" + ", ".join(parts) + "}"


_SCALARS = {None: "null", True: "true", False: "false"}


def _whole_seconds(instant: datetime) -> str:
    """format_instant(instant.replace(microsecond=0)), without the copy where it is UTC."""
    if instant.tzinfo is UTC:
        return instant.isoformat(timespec="seconds")
    return format_instant(instant.replace(microsecond=0))


def _instant(value: datetime | None) -> str:
    return "null" if value is None else f'"{format_instant(value)}"'


def _message(m: Message) -> str:
    public = m.public
    flag = ("true" if public else "false") if type(public) is bool else _json(public)
    return f'{{"at": "{format_instant(m.at)}", "author": {_text(m.author)}, "public": {flag}}}'


def _assignment(a: Assignment) -> str:
    return (f'{{"assignee": {_text(a.assignee)}, "at": "{format_instant(a.at)}",'
            f' "group": {_text(a.group)}}}')


SQLITE_MAGIC = b"SQLite format 3\x00"
#: What to do about a state file that cannot be used, in every message that refuses one.
RESTORE = ("nothing was read or written. Restore the file from a backup (a migration leaves "
           "one beside it, *.bak-schemaN), or move it away to start afresh: a fresh state file "
           "forgets which rules already fired, so they fire again")


class StateStore:
    """The state file, opened for a sync (created when missing, migrated when older, a
    backup taken first) or `readonly` (explain, reports: never created, never written).
    `created` says that this open made a new file."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = path
        self.readonly = readonly
        self.created = False
        self.backup: Path | None = None
        if not path.exists():
            if readonly:
                raise StateError(f"{path}: no state file yet (run `sla-sync run` first)")
            try:
                self._create()
            except OSError as exc:
                raise StateError(f"{path}: cannot create the state file ({exc.strerror}); "
                                 "check the `state:` path and its folder's permissions")\
                    from None
            except sqlite3.DatabaseError as exc:
                raise StateError(f"{path}: cannot create the state file ({exc})") from None
            self.created = True
        self._check_file()
        trusted = self._as_closed()
        if not readonly:
            # From here on the file may change: a crash must leave no note that it did not.
            try:
                self._closed_note().unlink(missing_ok=True)
            except OSError:
                pass  # a change to the file or a WAL left behind still outdates it
        #: whether this open ran quick_check (it is skipped for a file as it was closed)
        self.checked = not trusted
        try:
            if readonly:
                self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                          isolation_level=None)
            else:
                self.db = sqlite3.connect(path, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self._migrate(check=not trusted)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: not a usable state file ({exc}); {RESTORE}") from None

    def _create(self) -> None:
        """A new state file is built beside and renamed into place, so that the state path
        never holds a half-made file: an empty or partial one is then always damage."""
        making = self.path.with_name(self.path.name + ".new")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        making.unlink(missing_ok=True)
        os.close(os.open(making, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        db = sqlite3.connect(making, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            for number, migration in enumerate(MIGRATIONS):
                db.executescript(f"BEGIN; {migration}; PRAGMA application_id = "
                                 f"{APPLICATION_ID}; PRAGMA user_version = {number + 1}; "
                                 "COMMIT;")
        finally:
            db.close()
        os.replace(making, self.path)

    def _check_file(self) -> None:
        """Refuse what SQLite would quietly treat as a fresh database, or fail on later."""
        path = self.path
        try:
            info = path.stat()
            with path.open("rb") as handle:
                head = handle.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise StateError(f"{path}: cannot read the state file ({exc.strerror})") from None
        if not stat.S_ISREG(info.st_mode):
            raise StateError(f"{path}: not a regular file")
        if info.st_size == 0:
            raise StateError(f"{path}: the state file is empty (0 bytes): it was truncated or "
                             f"replaced; {RESTORE}")
        if head != SQLITE_MAGIC:
            raise StateError(f"{path}: not an sla-sync state file (not even SQLite); {RESTORE}")
        if self.readonly:
            return
        # The mode bits are asked too: root may write anything, but a file made read-only
        # was meant to stay so.
        if not info.st_mode & stat.S_IWUSR or not os.access(path, os.W_OK):
            raise StateError(
                f"{path}: the state file is read-only (mode {stat.S_IMODE(info.st_mode):04o}); "
                "a sync must write it: make it writable by its owner (chmod 600), or point "
                "`state:` at a copy; nothing was read or written")
        # It holds ticket data: a file left readable by others (an older sla-sync made them
        # 0644) is closed to its owner.
        for part in (path, *self._companions()):
            try:
                if part.exists() and stat.S_IMODE(part.stat().st_mode) & 0o077:
                    part.chmod(0o600)
            except OSError:
                pass  # not ours to change (another owner): it can still be used

    def _companions(self) -> list[Path]:
        return [self.path.with_name(self.path.name + suffix) for suffix in ("-wal", "-shm")]

    def _closed_note(self) -> Path:
        return self.path.with_name(self.path.name + "-closed")

    def _fingerprint(self) -> dict[str, int] | None:
        """The file's inode, size and times, when SQLite holds nothing beside it (no WAL
        left to fold in); None otherwise."""
        try:
            wal = self._companions()[0]
            if wal.exists() and wal.stat().st_size:
                return None
            info = self.path.stat()
        except OSError:
            return None
        return {"ino": info.st_ino, "size": info.st_size, "mtime_ns": info.st_mtime_ns,
                "ctime_ns": info.st_ctime_ns}

    def _as_closed(self) -> bool:
        """Is the file exactly as the last writable close left it (its note says so)?"""
        try:
            note = json.loads(self._closed_note().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return note is not None and note == self._fingerprint()

    def close(self) -> None:
        self.db.close()  # the last connection: SQLite folds the WAL into the file
        if self.readonly:
            return
        fingerprint = self._fingerprint()
        if fingerprint is None:  # another connection keeps a WAL: check at the next open
            return
        note = self._closed_note()
        making = note.with_name(note.name + ".new")
        try:  # not synced: a lost note costs one quick_check
            making.write_text(json.dumps(fingerprint), encoding="utf-8")
            making.chmod(0o600)
            os.replace(making, note)
        except OSError:
            making.unlink(missing_ok=True)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self, check: bool = True) -> None:
        app_id = self.db.execute("PRAGMA application_id").fetchone()[0]
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        tables = self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables):
            raise StateError(f"{self.path}: not an sla-sync state file; {RESTORE}")
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path}: written by a newer sla-sync (state schema {version}, this "
                f"version knows up to {SCHEMA_VERSION}); upgrade sla-sync or use another "
                "state file")
        problems = [row[0] for row in self.db.execute("PRAGMA quick_check(5)")] if check \
            else ["ok"]
        if problems != ["ok"]:
            raise StateError(f"{self.path}: the state file is damaged "
                             f"({'; '.join(problems)}); {RESTORE}")
        if self.readonly:
            if version < SCHEMA_VERSION:
                raise StateError(f"{self.path}: state schema {version} is older than this "
                                 f"sla-sync's ({SCHEMA_VERSION}); one `sla-sync run` migrates "
                                 "it")
            return
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: in WAL mode a commit survives a crash of the process, and a power loss
        # only loses the last commits, in order. Transactions that must survive a power loss
        # too (a journal entry before its request goes out) ask for `durable`.
        self.db.execute("PRAGMA synchronous=NORMAL")
        # SQLite's page cache (2 MiB by default) holds the indexes a sync reads and writes at
        # random (records by id and wake-up time, the ledger, the connector memory): past
        # about 100k records they outgrow 2 MiB and each statement rereads them from the OS.
        self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        if 0 < version < SCHEMA_VERSION:
            self.backup = self._back_up(version)
        for number in range(version, SCHEMA_VERSION):
            with self.transaction():
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    def _back_up(self, version: int) -> Path:
        """A consistent copy (SQLite's backup API, the WAL included) before a migration,
        made once per schema: a second try of the same migration keeps the first copy."""
        target = self.path.with_name(f"{self.path.name}.bak-schema{version}")
        if target.exists():
            return target
        making = target.with_name(target.name + ".new")
        making.unlink(missing_ok=True)
        os.close(os.open(making, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        copy = sqlite3.connect(making)
        try:
            self.db.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            copy.close()
        os.replace(making, target)
        return target

    @contextmanager
    def transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """`durable`: the commit is on disk (the WAL synced) before this returns, and with it
        every commit before it; otherwise it survives a crash but not a power loss."""
        if durable:
            self.db.execute("PRAGMA synchronous=FULL")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                # SQLite may have rolled back already (a full disk, SQLITE_FULL): a second
                # ROLLBACK would raise and hide the error that says why.
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        finally:
            if durable:
                self.db.execute("PRAGMA synchronous=NORMAL")

    # -- cursor -----------------------------------------------------------------------------

    def cursor(self, connector: str) -> str | None:
        row = self.db.execute("SELECT cursor FROM cursors WHERE connector = ?",
                              (connector,)).fetchone()
        return row["cursor"] if row else None

    def move_cursor(self, connector: str, cursor: str | None, run_id: int) -> None:
        """The connector's cursor and, in the same transaction, the memory its run staged
        (`memory`): a crash leaves both before or both after."""
        with self.transaction():
            self.db.execute(
                "INSERT INTO cursors (connector, cursor, run_id, moved_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (connector) DO UPDATE SET cursor = excluded.cursor,"
                " run_id = excluded.run_id, moved_at = excluded.moved_at",
                (connector, cursor, run_id, format_instant(datetime.now(UTC))))
            staged = (connector, run_id)
            self.db.execute(
                "INSERT INTO memory (connector, key, value) SELECT connector, key, value"
                " FROM memory_staged WHERE connector = ? AND run_id = ? AND value IS NOT NULL"
                " ON CONFLICT (connector, key) DO UPDATE SET value = excluded.value", staged)
            self.db.execute(
                "DELETE FROM memory WHERE connector = ? AND key IN (SELECT key FROM"
                " memory_staged WHERE connector = ? AND run_id = ? AND value IS NULL)",
                (connector, *staged))
            self.db.execute("DELETE FROM memory_staged WHERE connector = ?", (connector,))

    def memory(self, connector: str, run_id: int) -> StagedMemory:
        """The connector's memory (`connector.base.Memory`) as run `run_id` sees it: what
        moved with the cursor, under what this run kept since. What earlier runs staged
        without moving the cursor (they failed, stopped, or were dry runs) is dropped."""
        with self.transaction():
            self.db.execute("DELETE FROM memory_staged WHERE connector = ? AND run_id != ?",
                            (connector, run_id))
        return StagedMemory(self, connector, run_id)

    def memory_staged(self, connector: str, run_id: int) -> bool:
        """Whether run `run_id` kept anything in the connector's memory."""
        return self.db.execute("SELECT 1 FROM memory_staged WHERE connector = ? AND run_id = ?"
                               " LIMIT 1", (connector, run_id)).fetchone() is not None

    def drop_staged_memory(self, connector: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM memory_staged WHERE connector = ?", (connector,))

    # -- the record mirror ---------------------------------------------------------------

    def mirror(self, records: Iterable[Record], run_id: int,
               problems: Iterable[RecordError] = (),
               versions: Mapping[str, str] | None = None) -> None:
        """Keep the latest version of each record; every record read is evaluated next,
        unless it holds exactly what the mirror held (its wake-up time still holds).
        `problems` are records read in a form that cannot be used: they are
        left out of evaluation (their last usable copy could be out of date) until a usable
        version is read. `versions`: the connector's token of each record's version, kept
        with it (`versions()`); a record without one loses the token it had."""
        records = list(records)
        tokens = versions or {}
        with self.transaction():
            self.db.executemany(
                "INSERT INTO skipped (record_id, reason, first_run, last_run) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (record_id) DO UPDATE SET reason = excluded.reason,"
                " last_run = excluded.last_run",
                [(p.record_id, p.reason[:1000], run_id, run_id) for p in problems
                 if p.record_id is not None])
            self.db.executemany("DELETE FROM skipped WHERE record_id = ?",
                                [(r.id,) for r in records])
            self.db.executemany(
                "INSERT INTO records (id, kind, status, updated_at, data, seen_run, version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind,"
                " status = excluded.status, updated_at = excluded.updated_at,"
                " data = excluded.data, seen_run = excluded.seen_run,"
                " version = excluded.version,"
                " wake_at = CASE WHEN excluded.data = records.data THEN records.wake_at END"
                " WHERE excluded.updated_at >= records.updated_at",
                [(r.id, r.kind, r.status, format_instant(r.updated_at), _record_json(r),
                  run_id, tokens.get(r.id)) for r in records])

    def versions(self, ids: Collection[str]) -> dict[str, str]:
        """The connector's token of each of these records' version as the mirror holds it
        (`connector.base.Mirrored`): one without a token, or skipped as unusable since it
        was mirrored, is left out."""
        wanted = list(ids)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), MEMORY_CHUNK):
            chunk = wanted[start:start + MEMORY_CHUNK]
            found.update(self.db.execute(
                "SELECT id, version FROM records WHERE id IN"
                f" ({', '.join('?' * len(chunk))}) AND version IS NOT NULL"
                " AND id NOT IN (SELECT record_id FROM skipped)", chunk))
        return found

    def start_taking(self) -> None:
        """Begin a run's evaluation: no record is taken yet (see `take_fresh`)."""
        self.db.execute("DROP TABLE IF EXISTS temp.taken")
        self.db.execute("CREATE TEMP TABLE taken (id TEXT PRIMARY KEY)")

    def take_fresh(self, records: list[Record], due_by: datetime | None) -> list[Record]:
        """Of `records`, just mirrored, those to evaluate now, as they are: the mirror holds
        exactly them (not a newer version it kept), they are due as `evaluation_set` says
        (every one when `due_by` is None), and no write of theirs is pending (it must be
        settled first). They are taken: `evaluation_chunks` leaves them out for the rest of
        the run (`start_taking`), so that none is evaluated twice."""
        latest = {r.id: r for r in records}  # the mirror keeps the last of equal versions
        due = None if due_by is None else format_instant(due_by)
        ids = list(latest)
        taken: list[Record] = []
        for start in range(0, len(ids), 500):  # within SQLite's limit on parameters
            part = ids[start:start + 500]
            rows = self.db.execute(
                "SELECT id, updated_at, wake_at FROM records WHERE id IN"
                f" ({', '.join('?' * len(part))}) AND id NOT IN (SELECT record_id FROM pending)"
                " AND id NOT IN (SELECT record_id FROM skipped)", part)
            for record_id, updated_at, wake_at in rows:
                record = latest[record_id]
                if updated_at == format_instant(record.updated_at) and (
                        due is None or wake_at is None or wake_at <= due):
                    taken.append(record)
        order = {record_id: n for n, record_id in enumerate(ids)}
        taken.sort(key=lambda r: order[r.id])
        self.db.executemany("INSERT OR IGNORE INTO temp.taken (id) VALUES (?)",
                            [(r.id,) for r in taken])
        return taken

    def take_unchanged(self, ids: list[str], due_by: datetime | None) -> dict[str, Record]:
        """Of these records, read again exactly as the mirror holds them (a versioned
        connector left them out: `connector.base.Mirrored`), those to evaluate now as
        `take_fresh` would have taken them, as the mirror holds them. They are taken."""
        due = None if due_by is None else format_instant(due_by)
        taken: dict[str, Record] = {}
        for start in range(0, len(ids), 500):  # within SQLite's limit on parameters
            part = ids[start:start + 500]
            query = ("SELECT id, data FROM records WHERE id IN"
                     f" ({', '.join('?' * len(part))}) AND id NOT IN (SELECT record_id FROM"
                     " pending) AND id NOT IN (SELECT record_id FROM skipped)"
                     " AND id NOT IN (SELECT id FROM temp.taken)")
            args: list[str] = list(part)
            if due is not None:
                query += " AND (wake_at IS NULL OR wake_at <= ?)"
                args.append(due)
            for record_id, data in self.db.execute(query, args):
                taken[record_id] = Record.from_dict(json.loads(data))
        self.db.executemany("INSERT OR IGNORE INTO temp.taken (id) VALUES (?)",
                            [(record_id,) for record_id in taken])
        return taken

    def open_by_assignee(self, closed: Iterable[str]) -> dict[str, int]:
        """Open records (status not in `closed`) per assignee, as the mirror holds them."""
        closed = sorted(closed)
        marks = ", ".join("?" * len(closed)) or "NULL"
        rows = self.db.execute(
            "SELECT json_extract(data, '$.assignee') AS agent, count(*) FROM records"
            f" WHERE status NOT IN ({marks}) AND agent IS NOT NULL AND agent != ''"
            " GROUP BY agent", closed)
        return {agent: count for agent, count in rows}

    def group_rows(self) -> Iterator[tuple[str, str, str]]:
        """(group, status, created_at) of every mirrored record: what the load counts."""
        yield from self.db.execute(
            "SELECT coalesce(json_extract(data, '$.group'), ''), status,"
            " json_extract(data, '$.created_at') FROM records")

    def last_written(self, action: str, field: str) -> dict[str, int]:
        """Per value `action` wrote to `field`, the audit id of its latest such write: an
        order of when each value was last written."""
        rows = self.db.execute("SELECT after, max(id) FROM audit WHERE action = ? AND"
                               " field = ? AND kind = 'sync' GROUP BY after", (action, field))
        found = {}
        for after, latest in rows:
            value = json.loads(after) if after is not None else None
            if isinstance(value, str):
                found[value] = latest
        return found

    def record(self, record_id: str) -> Record | None:
        row = self.db.execute("SELECT data FROM records WHERE id = ?", (record_id,)).fetchone()
        return Record.from_dict(json.loads(row["data"])) if row else None

    def evaluation_set(self, due_by: datetime | None = None) -> list[Record]:
        """The mirrored records to evaluate, oldest change first: those due by `due_by` (read
        since their last evaluation, or whose wake-up time has come), or all of them."""
        query = "SELECT data FROM records WHERE id NOT IN (SELECT record_id FROM skipped)"
        args: tuple[str, ...] = ()
        if due_by is not None:
            query += " AND (wake_at IS NULL OR wake_at <= ?)"
            args = (format_instant(due_by),)
        rows = self.db.execute(query + " ORDER BY updated_at, id", args)
        return [Record.from_dict(json.loads(row["data"])) for row in rows]

    def evaluation_chunks(self, due_by: datetime | None = None, size: int = 1000,
                          counted: Callable[[int], None] | None = None,
                          ) -> Iterator[list[Record]]:
        """`evaluation_set` in chunks of `size`, for a run that writes as it goes: the ids are
        taken first (into a temporary table, on disk when large), so a record written
        meanwhile is neither visited twice nor skipped, and only one chunk is in memory.
        `counted` is told how many there are, once they are taken."""
        query = "SELECT id FROM records WHERE id NOT IN (SELECT record_id FROM skipped)"
        args: tuple[str, ...] = ()
        if due_by is not None:
            query += " AND (wake_at IS NULL OR wake_at <= ?)"
            args = (format_instant(due_by),)
        if self.db.execute("SELECT 1 FROM temp.sqlite_master WHERE name = 'taken'").fetchone():
            query += " AND id NOT IN (SELECT id FROM temp.taken)"
        self.db.execute("DROP TABLE IF EXISTS temp.due")
        self.db.execute("CREATE TEMP TABLE due (n INTEGER PRIMARY KEY, id TEXT NOT NULL)")
        try:
            taken = self.db.execute(f"INSERT INTO temp.due (id) {query} ORDER BY updated_at, id",
                                    args)
            if counted is not None:
                counted(taken.rowcount)
            last = 0
            while True:
                rows = self.db.execute(
                    "SELECT due.n, records.data FROM temp.due JOIN records"
                    " ON records.id = due.id WHERE due.n > ? ORDER BY due.n LIMIT ?",
                    (last, size)).fetchall()
                if not rows:
                    return
                last = rows[-1]["n"]
                yield [Record.from_dict(json.loads(row["data"])) for row in rows]
        finally:
            self.db.execute("DROP TABLE IF EXISTS temp.due")

    def skipped(self) -> list[sqlite3.Row]:
        """Records left out because the helpdesk's version cannot be used, by id."""
        return list(self.db.execute("SELECT record_id, reason, first_run, last_run"
                                    " FROM skipped ORDER BY record_id"))

    def all_records(self) -> list[Record]:
        """Every mirrored record, sleeping ones included (reports read them all)."""
        rows = self.db.execute("SELECT data FROM records ORDER BY id")
        return [Record.from_dict(json.loads(row["data"])) for row in rows]

    def last_run(self) -> dict[str, float] | None:
        """The figures of the last finished sync that could write (not a dry run), failed ones
        included, for exporters."""
        row = self.db.execute(
            "SELECT finished_at, status, duration_ms, read, writes, errors FROM runs"
            " WHERE dry_run = 0 AND kind = 'sync' AND finished_at IS NOT NULL"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {"success": int(row["status"] != "failed"),
                "duration_seconds": (row["duration_ms"] or 0) / 1000, "reads": row["read"],
                "writes": row["writes"], "errors": row["errors"],
                "timestamp_seconds": parse_instant(row["finished_at"], "finished_at").timestamp()}

    def run_totals(self) -> dict[str, Any]:
        """Over every finished sync that could write (not dry runs): runs by status, and the
        records read, written and errors summed, for exporters' counters."""
        runs = {row["status"]: row["n"] for row in self.db.execute(
            "SELECT status, count(*) AS n FROM runs WHERE dry_run = 0 AND kind = 'sync'"
            " AND finished_at IS NOT NULL GROUP BY status")}
        row = self.db.execute(
            "SELECT coalesce(sum(read), 0) AS reads, coalesce(sum(writes), 0) AS writes,"
            " coalesce(sum(errors), 0) AS errors FROM runs WHERE dry_run = 0"
            " AND kind = 'sync' AND finished_at IS NOT NULL").fetchone()
        return {"runs": runs, "reads": row["reads"], "writes": row["writes"],
                "errors": row["errors"]}

    def completed_a_run(self) -> bool:
        """Has a sync (not a dry run) gone through to the end on this file? Until one has,
        a sync is a first run (config `first_run:`): a stopped or failed one does not count."""
        return self.db.execute(
            "SELECT 1 FROM runs WHERE kind = 'sync' AND dry_run = 0"
            " AND status IN ('ok', 'partial') LIMIT 1").fetchone() is not None

    def run_info(self, run_id: int) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()

    def audit(self, record_id: str | None = None, run_id: int | None = None,
              since: datetime | None = None) -> list[dict[str, Any]]:
        """The audit rows, oldest first, narrowed to a record, a run and rows written at or
        after `since`; before and after decoded from JSON."""
        query = ("SELECT id, run_id, at, record_id, rule, action, field, before, after, kind,"
                 " reverts FROM audit WHERE 1")
        args: list[Any] = []
        if record_id is not None:
            query += " AND record_id = ?"
            args.append(record_id)
        if run_id is not None:
            query += " AND run_id = ?"
            args.append(run_id)
        rows = [dict(row) for row in self.db.execute(query + " ORDER BY id", args)]
        if since is not None:  # `at` holds offsets: compared as instants, not as text
            rows = [row for row in rows if parse_instant(row["at"], "at") >= since]
        for row in rows:
            for key in ("before", "after"):
                row[key] = None if row[key] is None else json.loads(row[key])
        return rows

    def reverted(self, audit_ids: Iterable[int]) -> set[int]:
        """Of these audit rows, those a revert has already undone."""
        ids = list(audit_ids)
        found: set[int] = set()
        for start in range(0, len(ids), 500):  # within SQLite's limit on parameters
            part = ids[start:start + 500]
            found.update(row["reverts"] for row in self.db.execute(
                f"SELECT reverts FROM audit WHERE reverts IN ({', '.join('?' * len(part))})",
                part))
        return found

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, values: dict[str, str]) -> None:
        with self.transaction():
            self.db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key)"
                                " DO UPDATE SET value = excluded.value", values.items())

    def instance_id(self) -> str:
        """A random name for this state file, made once: with an outbox id it names a
        notification uniquely, even across a state file that was lost and made anew."""
        instance = self.meta("instance")
        if instance is None:
            instance = uuid.uuid4().hex
            self.set_meta({"instance": instance})
        return instance

    def forget(self, record_id: str) -> None:
        """Drop a record the helpdesk no longer has from the mirror and the ledger (its audit
        rows stay)."""
        with self.transaction():
            for table, key in (("records", "id"), ("activations", "record_id"),
                               ("pending", "record_id"), ("sla_marks", "record_id"),
                               ("outbox", "record_id"), ("skipped", "record_id")):
                self.db.execute(f"DELETE FROM {table} WHERE {key} = ?", (record_id,))

    def counts(self) -> dict[str, int]:
        row = self.db.execute("SELECT count(*) AS mirrored, count(wake_at = ? OR NULL)"
                              " AS retired FROM records", (NEVER,)).fetchone()
        return {"mirrored": row["mirrored"], "retired": row["retired"]}

    # -- the activation ledger -------------------------------------------------------------

    def active_rules(self, ids: Iterable[str] | None = None) -> dict[str, frozenset[str]]:
        """Record id -> the rules currently active for it (of `ids`, or of all records)."""
        found: dict[str, set[str]] = {}
        query, args = _of_ids("SELECT record_id, rule FROM activations WHERE active = 1", ids)
        for row in self.db.execute(query, args):
            found.setdefault(row["record_id"], set()).add(row["rule"])
        return {key: frozenset(value) for key, value in found.items()}

    def sla_marks(self, ids: Iterable[str] | None = None) -> dict[str, SlaMark]:
        """Record id -> the SLA it was under at the last sync, and since when (of `ids`, or
        of all records)."""
        query, args = _of_ids("SELECT record_id, sla, since FROM sla_marks WHERE 1", ids)
        return {row["record_id"]: SlaMark(row["sla"], parse_instant(row["since"], "since"))
                for row in self.db.execute(query, args)}

    def activation_times(self, record_id: str) -> dict[str, str]:
        """Rule -> when it was activated, for the rules active for one record."""
        rows = self.db.execute("SELECT rule, changed_at FROM activations"
                               " WHERE record_id = ? AND active = 1", (record_id,))
        return {row["rule"]: row["changed_at"] for row in rows}

    def history(self, record_id: str) -> list[sqlite3.Row]:
        return list(self.db.execute(
            "SELECT run_id, at, rule, action, field, before, after FROM audit"
            " WHERE record_id = ? ORDER BY id", (record_id,)))

    # -- committing one record's result --------------------------------------------------

    def begin_write(self, run_id: int, writes: Iterable[tuple[ChangeSet, dict[str, Any]]],
                     now: datetime) -> None:
        """Journal a batch of writes before it is sent, in one transaction, so that a crash
        mid-write can be recognised. Durable: the requests go out once this returns, so the
        entries must outlive a power loss too (else a write the helpdesk did apply would be
        planned and sent again)."""
        at = format_instant(now)
        with self.transaction(durable=True):
            self.db.executemany(
                "INSERT OR REPLACE INTO pending (record_id, run_id, change, steps, at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(change.record_id, run_id, _json(change.to_dict()), _json(outcome), at)
                 for change, outcome in writes])

    def pending(self) -> list[tuple[ChangeSet, dict[str, Any], int]]:
        rows = self.db.execute("SELECT change, steps, run_id FROM pending ORDER BY at")
        return [(ChangeSet.from_dict(json.loads(r["change"])), json.loads(r["steps"]),
                 r["run_id"]) for r in rows]

    def drop_pending(self, record_id: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM pending WHERE record_id = ?", (record_id,))

    def commit(self, run_id: int,
               results: Iterable[tuple[str, dict[str, Any], Record | None]],
               now: datetime, wakes: Iterable[tuple[Record, datetime | None]] = (),
               versions: Mapping[str, str] | None = None) -> None:
        """Record the results of a batch of records, (id, outcome, the record as written or
        None), in one transaction: activations, audit rows, notifications, SLA marks, the
        records as written, and the end of their pending writes. Durable only when it queues
        a notification, which is sent right after: losing the commit to a power loss would
        settle the write again from its journal entry and send the notification twice.
        Otherwise a lost commit leaves the journal entry, which the next run settles by
        reading the record back. `wakes`: (record as evaluated, its wake-up time or None
        for never), kept while the mirror holds that version. `versions`: the connector's
        token of a record as written (`WriteResult.version`), kept with it."""
        at = format_instant(now)
        results = list(results)
        durable = any(outcome.get("notify") for _, outcome, _ in results)
        rows = _ledger_rows(run_id, results, at, versions or {})
        with self.transaction(durable=durable):
            self._write_rows(rows, wakes)

    def _write_rows(self, rows: dict[str, list[tuple[Any, ...]]],
                    wakes: Iterable[tuple[Record, datetime | None]]) -> None:
        """Inside `commit`'s transaction: one statement per table for the whole batch, the
        rows in the order given, so a record's later result in a batch wins, as one by one."""
        self.db.executemany(
            "INSERT INTO activations (record_id, rule, active, changed_at, run_id)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (record_id, rule) DO UPDATE SET"
            " active = excluded.active, changed_at = excluded.changed_at,"
            " run_id = excluded.run_id", rows["activations"])
        self.db.executemany(
            "INSERT INTO audit (run_id, at, record_id, rule, action, field, before, after,"
            " kind, reverts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows["audit"])
        self.db.executemany(
            "INSERT INTO outbox (run_id, record_id, rule, webhook, text, created_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", rows["outbox"])
        self.db.executemany(
            "INSERT INTO sla_marks (record_id, sla, since) VALUES (?, ?, ?)"
            " ON CONFLICT (record_id) DO UPDATE SET sla = excluded.sla,"
            " since = excluded.since", rows["marks"])
        self.db.executemany(
            "UPDATE records SET status = ?, updated_at = ?, data = ?, version = ?,"
            " wake_at = NULL WHERE id = ?", rows["written"])
        self.db.executemany("DELETE FROM pending WHERE record_id = ?", rows["done"])
        self.db.executemany(
            "UPDATE records SET wake_at = ? WHERE id = ? AND updated_at = ?",
            [(NEVER if wake is None else _whole_seconds(wake), record.id,
              format_instant(record.updated_at)) for record, wake in wakes])

    # -- the notification outbox ---------------------------------------------------------

    def outbox(self) -> list[dict[str, Any]]:
        """Notifications committed and not yet sent, oldest first; `data` decoded (None for a
        plain webhook text), `recipient` None until the row is fanned out."""
        rows = [dict(row) for row in self.db.execute(
            "SELECT id, run_id, record_id, rule, webhook, text, created_at, attempts, data,"
            " recipient FROM outbox ORDER BY id")]
        for row in rows:
            row["data"] = None if row["data"] is None else json.loads(row["data"])
        return rows

    def outbox_fan_out(self, recipients: dict[int, list[str]]) -> None:
        """Replace each row by one row per recipient, in one transaction, so that each
        recipient's message is sent (and retried) on its own, and none is sent twice."""
        with self.transaction():
            for item_id, names in recipients.items():
                for name in names:
                    self.db.execute(
                        "INSERT INTO outbox (run_id, record_id, rule, webhook, text, created_at,"
                        " attempts, data, recipient) SELECT run_id, record_id, rule, webhook,"
                        " text, created_at, attempts, data, ? FROM outbox WHERE id = ?",
                        (name, item_id))
                self.db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))

    def outbox_sent(self, item_id: int | Iterable[int]) -> None:
        """Sent: the rows of one message (a digest holds several) leave together."""
        ids = [item_id] if isinstance(item_id, int) else list(item_id)
        with self.transaction():
            self.db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def outbox_failed(self, item_id: int | Iterable[int], error: str) -> None:
        ids = [item_id] if isinstance(item_id, int) else list(item_id)
        with self.transaction():
            self.db.executemany("UPDATE outbox SET attempts = attempts + 1, last_error = ?"
                                " WHERE id = ?", [(error[:500], i) for i in ids])

    # -- the run log ---------------------------------------------------------------------

    def begin_run(self, now: datetime, dry_run: bool, kind: str = "sync") -> int:
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO runs (started_at, now, dry_run, status, kind)"
                " VALUES (?, ?, ?, 'running', ?)",
                (format_instant(datetime.now(UTC)), format_instant(now), int(dry_run), kind))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_run(self, run_id: int, status: str, figures: dict[str, int],
                   duration_ms: int, message: str = "") -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, read = ?, evaluated = ?,"
                " changed = ?, writes = ?, skipped = ?, errors = ?, duration_ms = ?,"
                " message = ? WHERE id = ?",
                (format_instant(datetime.now(UTC)), status, figures.get("read", 0),
                 figures.get("evaluated", 0), figures.get("changed", 0),
                 figures.get("writes", 0), figures.get("skipped", 0), figures.get("errors", 0),
                 duration_ms, message, run_id))


class StagedMemory:
    """A run's view of a connector's memory (`StateStore.memory`): reads by keys, in chunks
    of at most MEMORY_CHUNK keys a query; keeps by staging under the run."""

    def __init__(self, store: StateStore, connector: str, run_id: int):
        self.store, self.connector, self.run_id = store, connector, run_id

    def recall(self, keys: Collection[str]) -> dict[str, str]:
        db, found = self.store.db, dict[str, str]()
        wanted = list(keys)
        for start in range(0, len(wanted), MEMORY_CHUNK):
            chunk = wanted[start:start + MEMORY_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(db.execute(f"SELECT key, value FROM memory WHERE connector = ?"
                                    f" AND key IN ({marks})", (self.connector, *chunk)))
            for key, value in db.execute(
                    f"SELECT key, value FROM memory_staged WHERE connector = ? AND run_id = ?"
                    f" AND key IN ({marks})", (self.connector, self.run_id, *chunk)):
                if value is None:
                    found.pop(key, None)
                else:
                    found[key] = value
        return found

    def keep(self, changes: Mapping[str, str | None]) -> None:
        if not changes:
            return
        with self.store.transaction() as db:
            db.executemany(
                "INSERT INTO memory_staged (connector, run_id, key, value) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (connector, run_id, key) DO UPDATE SET value = excluded.value",
                [(self.connector, self.run_id, key, value) for key, value in changes.items()])


#: Keys per query of StagedMemory.recall (SQLite allows 32,766 parameters since 3.32).
MEMORY_CHUNK = 1000


def _ledger_rows(run_id: int, results: list[tuple[str, dict[str, Any], Record | None]],
                 at: str, versions: Mapping[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows `StateStore.commit` writes for a batch of results, by table: activations,
    audit rows, notifications, SLA marks, the records as written, and the pending writes
    they end."""
    rows: dict[str, list[tuple[Any, ...]]] = {
        "activations": [], "audit": [], "outbox": [], "marks": [], "written": [], "done": []}
    for record_id, outcome, written in results:
        rows["activations"].extend((record_id, rule, 1, at, run_id)
                                   for rule in outcome.get("activated", ()))
        rows["activations"].extend((record_id, rule, 0, at, run_id)
                                   for rule in outcome.get("deactivated", ()))
        rows["audit"].extend(
            (run_id, at, record_id, s["rule"], s["action"], s["field"], _json(s["before"]),
             _json(s["after"]), s.get("kind", "sync"), s.get("reverts"))
            for s in outcome.get("writes", ()))
        rows["outbox"].extend(
            (run_id, record_id, n["rule"], n["webhook"], n["text"], at,
             _json(n["data"]) if n.get("data") is not None else None)
            for n in outcome.get("notify", ()))
        mark = outcome.get("sla_mark")
        if mark is not None:
            rows["marks"].append((record_id, mark["sla"], mark["since"]))
        if written is not None:
            rows["written"].append((written.status, format_instant(written.updated_at),
                                    _record_json(written), versions.get(record_id),
                                    record_id))
        rows["done"].append((record_id,))
    return rows


def _of_ids(query: str, ids: Iterable[str] | None) -> tuple[str, tuple[str, ...]]:
    """`query` (ending in a WHERE clause) narrowed to the record ids given, if any."""
    if ids is None:
        return query, ()
    args = tuple(ids)
    return f"{query} AND record_id IN ({', '.join('?' * len(args))})", args


class StateLock:
    """One sync per state file: a second process is refused and told who holds it."""

    def __init__(self, state_path: Path):
        self.lock = FileLock(str(state_path) + ".lock", timeout=0)
        self.owner = Path(str(state_path) + ".owner")

    def __enter__(self) -> StateLock:
        try:
            self.lock.acquire()
        except Timeout:
            raise StateLocked(f"{self.lock.lock_file} is held by {self._holder()}; only one "
                             "sync may use a state file at a time") from None
        self.owner.write_text(_json({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": format_instant(datetime.now(UTC))}))
        return self

    def __exit__(self, *exc: object) -> None:
        self.owner.unlink(missing_ok=True)
        self.lock.release()

    def _holder(self) -> str:
        try:
            info = json.loads(self.owner.read_text())
            return f"process {info['pid']} on {info['host']} (since {info['since']})"
        except (OSError, ValueError, KeyError):
            return "another process"
