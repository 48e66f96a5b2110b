"""The embedded helpdesk: a file of records in the Record vocabulary, in one of two layouts.

- JSON (any name but `*.jsonl`): one document `{"records": [...]}`; other top-level keys
  are kept. It is parsed whole and held in memory between calls for as long as the file
  still holds exactly what this connector last read or wrote (a content digest says so);
  an edit by anyone else is read afresh. Rewrites put one record per line, encoded once
  and re-encoded only when it changes.
- JSON Lines (`*.jsonl`): one record per line, read and rewritten as a stream: the text is
  never held whole. What is held: the Records a fetch returns (it sorts them by
  updated_at), and an index from id to the byte offset of its line. A rewrite copies the
  unchanged bytes through in chunks and re-encodes only the changed lines. A line that is
  not JSON is reported as a malformed record and kept as it is.

Records are found by id through an index, never by scanning. Every write rewrites the
file atomically (a temporary file in the same folder, fsync, then a rename), once per
batch, so a crash mid-write leaves the old file whole. Fields this module does not know
are kept as they are.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sla_sync.connector.base import (
    Capabilities,
    ConflictError,
    ConnectorError,
    Page,
    RecordGone,
    WriteResult,
    check_settings,
)
from sla_sync.connector.model import (
    ChangeSet,
    Record,
    RecordError,
    format_instant,
    merge_tags,
    parse_instant,
)

SETTINGS = {"type", "path", "seed", "page_size", "batch_size"}
#: How much of a JSON Lines file is copied at a time.
CHUNK = 1 << 20
#: How many encoded records a JSON rewrite joins at a time.
LINES_PER_CHUNK = 2048


@dataclass
class Document:
    """A parsed JSON helpdesk file: its data, an index by id, and each record's encoding."""

    data: dict[str, Any]
    index: dict[str, int]  # id -> position of the first record with it
    digest: bytes  # of the file's bytes when read or written
    twins: dict[str, list[int]] = field(default_factory=dict)  # duplicated id -> positions
    lines: list[bytes | None] = field(default_factory=list)  # None: (re-)encode

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes: one record per line, the other keys in their order."""
        records = self.data["records"]
        if len(self.lines) != len(records):
            self.lines = [None] * len(records)
        yield b"{"
        for number, (key, value) in enumerate(self.data.items()):
            yield (b", " if number else b"") + _encode(key) + b": "
            if key != "records":
                yield _encode(value)
                continue
            lines = self.lines
            if None in lines:
                for position, line in enumerate(lines):
                    if line is None:
                        lines[position] = _encode(records[position])
            yield b"[\n" if records else b"["
            for start in range(0, len(lines), LINES_PER_CHUNK):
                yield b",\n".join(lines[start:start + LINES_PER_CHUNK])  # type: ignore[arg-type]
                yield b",\n" if start + LINES_PER_CHUNK < len(lines) else b"\n"
            yield b"]"
        yield b"}\n"


@dataclass
class LineIndex:
    """Where each record's line starts in a JSON Lines file, valid for one stat signature."""

    signature: tuple[int, ...]
    offsets: dict[str, tuple[int, int]]  # id -> (byte offset, position) of its first line
    twins: dict[str, list[int]] = field(default_factory=dict)  # duplicated id -> positions


class FileHelpdesk:
    def __init__(self, path: Path, seed: Path | None = None, page_size: int = 100,
                 batch_size: int = 100):
        self.path = path
        self.seed = seed
        self.page_size = page_size
        # A batch is one rewrite of the file; batch_size 1 rewrites it once per record.
        self.capabilities = Capabilities(bulk_writes=batch_size > 1, batch_size=batch_size,
                                         safe_update=True, tags=True, notes=True, leads=True,
                                         real_helpdesk=False)
        self.lines_layout = path.suffix == ".jsonl"
        self._document: Document | None = None
        self._line_index: LineIndex | None = None

    @classmethod
    def from_settings(cls, settings: dict[str, Any], base_dir: Path) -> FileHelpdesk:
        check_settings(settings, SETTINGS, "file")
        path = settings.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("connector.path: the helpdesk file is required for type: file")
        seed = settings.get("seed")
        if seed is not None and not isinstance(seed, str):
            raise ValueError("connector.seed: expected a file path")
        sizes = {}
        for key in ("page_size", "batch_size"):
            value = settings.get(key, 100)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"connector.{key}: expected a whole number >= 1")
            sizes[key] = value
        return cls(base_dir / path, base_dir / seed if seed else None, **sizes)

    @property
    def identity(self) -> str:
        return f"file:{self.path.resolve()}"

    # -- reading ---------------------------------------------------------------------------

    def _ensure_seeded(self) -> None:
        """A missing file starts as a byte-for-byte copy of the seed, once it parses."""
        if self.path.exists() or self.seed is None:
            return
        if self.lines_layout:
            for _ in _scan_lines(self.seed, "seed file"):
                pass
        else:
            _parse_document(self.seed, "seed file")
        self._replace(_file_chunks(self.seed, "seed file"))

    def _load(self) -> Document:
        """The JSON document, parsed again only when the file changed since last time."""
        self._ensure_seeded()
        content = _read_bytes(self.path, "helpdesk file")
        digest = hashlib.sha1(content).digest()
        if self._document is None or self._document.digest != digest:
            self._document = _document_of(content, digest, self.path)
        return self._document

    def fetch(self, cursor: str | None) -> Iterator[Page]:
        since = parse_instant(cursor, "cursor") if cursor else None
        records: list[Record] = []
        problems: list[RecordError] = []
        read: list[tuple[int, Record]] = []
        for position, raw in self._raw_records():
            if isinstance(raw, RecordError):
                problems.append(raw)
                continue
            try:
                read.append((position, Record.from_dict(raw, position)))
            except RecordError as exc:
                problems.append(exc)
        twins = self._twins()  # known once the whole file was read
        for position, record in read:
            if record.id in twins:
                problems.append(_duplicate_error(record.id, position, twins[record.id]))
            elif since is None or record.updated_at > since:
                records.append(record)
        problems.sort(key=lambda problem: problem.position if problem.position is not None
                      else -1)
        records.sort(key=lambda r: r.updated_at)
        if not records:
            yield Page(records=[], cursor=cursor, problems=problems)
            return
        start = 0
        while start < len(records):
            end = min(start + self.page_size, len(records))
            # Never split records that share an updated_at across pages: the cursor between
            # them would skip the second half.
            while end < len(records) and records[end].updated_at == records[end - 1].updated_at:
                end += 1
            page = records[start:end]
            yield Page(records=page, cursor=format_instant(page[-1].updated_at),
                       problems=problems if start == 0 else [])
            start = end

    def _raw_records(self) -> Iterator[tuple[int, Any]]:
        """(position, raw record or the RecordError of a line that is not JSON), in order."""
        if not self.lines_layout:
            yield from enumerate(self._load().data["records"])
            return
        self._ensure_seeded()
        offsets: dict[str, tuple[int, int]] = {}
        positions: dict[str, list[int]] = {}
        signature = _signature(self.path)
        for offset, position, raw in _scan_lines(self.path, "helpdesk file"):
            record_id = _id_of(raw)
            if record_id is not None:
                offsets.setdefault(record_id, (offset, position))
                positions.setdefault(record_id, []).append(position)
            yield position, raw
        self._line_index = LineIndex(signature, offsets, _only_twins(positions))

    def _twins(self) -> dict[str, list[int]]:
        """Ids held by more than one record of the file as last read -> their positions."""
        if self.lines_layout:
            return self._line_index.twins if self._line_index is not None else {}
        return self._document.twins if self._document is not None else {}

    def get(self, record_id: str) -> Record | None:
        if self.lines_layout:
            found = self._find_lines({record_id}).get(record_id)
            self._refuse_twin(record_id)
            return Record.from_dict(found[2], found[1]) if found else None
        document = self._load()
        position = document.index.get(record_id)
        if position is None:
            return None
        self._refuse_twin(record_id)
        return Record.from_dict(document.data["records"][position], position)

    def _refuse_twin(self, record_id: str) -> None:
        twins = self._twins().get(record_id)
        if twins:
            raise _duplicate_error(record_id, twins[0], twins)

    def read_back(self, record_id: str, since: datetime | None = None) -> Record | None:
        """As get: the file's records carry their notes."""
        return self.get(record_id)

    # -- writing ---------------------------------------------------------------------------

    def apply(self, change: ChangeSet, now: datetime) -> Record:
        [result] = self._apply([change], now)
        if result.error is not None:
            raise result.error
        assert result.record is not None
        return result.record

    def apply_many(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        """Several changes in one rewrite of the file: all of them land, or (a crash) none."""
        return self._apply(changes, now)

    def _apply(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        if self.lines_layout:
            return self._apply_lines(changes, now)
        document = self._load()
        records = document.data["records"]
        results = []
        changed: list[int] = []
        for change in changes:
            position = document.index.get(change.record_id)
            try:
                if position is None:
                    raise self._gone(change.record_id)
                self._refuse_twin(change.record_id)
                written = self._change(records[position], position, change, now)
            except ConnectorError as exc:
                results.append(WriteResult(change.record_id, error=exc))
                continue
            changed.append(position)
            results.append(WriteResult(change.record_id, written))
        if changed:
            if len(document.lines) == len(records):
                for position in changed:
                    document.lines[position] = None
            try:
                self._write_atomically(document)
            except BaseException:
                self._document = None  # the changes are in memory only: read the file again
                raise
        return results

    def _gone(self, record_id: str) -> RecordGone:
        return RecordGone(f"{self.path}: no record {record_id!r}", record_id=record_id)

    def _change(self, raw: Any, position: int, change: ChangeSet, now: datetime) -> Record:
        """Apply one change to a raw record in memory; the record as written."""
        try:
            current = Record.from_dict(raw, position)
        except RecordError as exc:  # edited in the file since it was read: now unusable
            raise ConnectorError(f"{exc}; not written", record_id=change.record_id) from None
        if change.base_updated_at is not None and current.updated_at != change.base_updated_at:
            raise ConflictError(
                f"record {change.record_id!r} changed since it was read "
                f"(updated_at {format_instant(current.updated_at)}, planned on "
                f"{format_instant(change.base_updated_at)})",
                record_id=change.record_id)
        stamp = format_instant(now)
        for name, value in change.fields.items():
            if name == "status" and value != current.status:
                raw["status_history"] = [*(raw.get("status_history") or []),
                                         {"at": stamp, "status": value}]
            raw[name] = value
        if change.add_tags or change.remove_tags:
            raw["tags"] = merge_tags(current.tags, change.add_tags, change.remove_tags)
        if change.notes:
            raw["notes"] = [*(raw.get("notes") or []),
                            *({"at": stamp, "text": text} for text in change.notes)]
        if change.escalation_level is not None:
            raw["escalation_level"] = change.escalation_level
        raw["updated_at"] = stamp
        return Record.from_dict(raw, position)

    def _write_atomically(self, document: Document) -> None:
        """One rewrite of the JSON document; remembers what the file now holds."""
        digest = hashlib.sha1()

        def hashed() -> Iterator[bytes]:
            for chunk in document.chunks():
                digest.update(chunk)
                yield chunk

        self._replace(hashed())
        document.digest = digest.digest()

    def _replace(self, chunks: Iterable[bytes]) -> None:
        """The file becomes `chunks`, atomically: temporary file, fsync, rename."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                             dir=self.path.parent)
        except OSError as exc:  # its folder: the rewrite needs to create a file beside it
            raise FileProblem(file_problem(self.path.parent, exc, "write a temporary file "
                                           "in the helpdesk file's folder")) from None
        try:
            with os.fdopen(fd, "wb") as out:
                buffered: list[bytes] = []
                size = 0
                for chunk in chunks:
                    buffered.append(chunk)
                    size += len(chunk)
                    if size >= CHUNK:
                        out.write(b"".join(buffered))
                        buffered, size = [], 0
                out.write(b"".join(buffered))
                out.flush()
                os.fsync(out.fileno())
            if self.path.exists():
                shutil.copymode(self.path, temp_name)
            os.replace(temp_name, self.path)
        except BaseException as exc:
            Path(temp_name).unlink(missing_ok=True)
            if isinstance(exc, OSError):  # nothing was replaced: the old file is whole
                raise FileProblem(file_problem(self.path, exc, "write the helpdesk file")) \
                    from None
            raise

    # -- JSON Lines --------------------------------------------------------------------------

    def _find_lines(self, ids: set[str]) -> dict[str, tuple[int, int, Any]]:
        """id -> (byte offset, position, raw record) of the wanted records that exist, read
        at the indexed offsets; the index is rebuilt when the file changed or it misses."""
        self._ensure_seeded()
        for attempt in range(2):
            index = self._line_index
            if index is None or index.signature != _signature(self.path) or attempt:
                index = self._index_lines()
            found: dict[str, tuple[int, int, Any]] = {}
            stale = False
            with _open(self.path, "helpdesk file") as source:
                for record_id in ids:
                    where = index.offsets.get(record_id)
                    if where is None:
                        continue
                    raw = _line_at(source, where[0])
                    if _id_of(raw) != record_id:
                        stale = True
                        break
                    found[record_id] = (*where, raw)
            if not stale:
                return found
        raise ConnectorError(f"{self.path}: changed while being read; try again",
                             retriable=True)

    def _index_lines(self) -> LineIndex:
        for _ in self._raw_records():
            pass
        assert self._line_index is not None
        return self._line_index

    def _apply_lines(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        found = self._find_lines({change.record_id for change in changes})
        results = []
        edits: dict[int, Any] = {}  # byte offset -> the raw record as it will be written
        for change in changes:
            if change.record_id not in found:
                results.append(WriteResult(change.record_id, error=self._gone(change.record_id)))
                continue
            offset, position, raw = found[change.record_id]
            try:
                self._refuse_twin(change.record_id)
                written = self._change(raw, position, change, now)
            except ConnectorError as exc:
                results.append(WriteResult(change.record_id, error=exc))
                continue
            edits[offset] = raw
            results.append(WriteResult(change.record_id, written))
        if edits:
            shifts = self._rewrite_lines(edits)
            index = self._line_index
            assert index is not None
            starts = [offset for offset, _ in shifts]
            totals = [total for _, total in shifts]
            for record_id, (offset, position) in index.offsets.items():
                moved = bisect.bisect_left(starts, offset)  # edited lines before it
                if moved:
                    index.offsets[record_id] = (offset + totals[moved - 1], position)
            index.signature = _signature(self.path)
        return results

    def _rewrite_lines(self, edits: dict[int, Any]) -> list[tuple[int, int]]:
        """Rewrite the file with the lines at these offsets replaced; (old offset, total
        shift of every line after it) in offset order."""
        shifts: list[tuple[int, int]] = []

        def chunks() -> Iterator[bytes]:
            total = 0
            with _open(self.path, "helpdesk file") as source:
                at = 0
                for offset in sorted(edits):
                    yield from _copy(source, at, offset)
                    old = source.readline()
                    new = _encode(edits[offset]) + b"\n"
                    yield new
                    total += len(new) - len(old)
                    shifts.append((offset, total))
                    at = offset + len(old)
                yield from _copy(source, at, None)

        self._replace(chunks())
        return shifts


# -- parsing ------------------------------------------------------------------------------

def _encode(value: Any) -> bytes:
    # json.dumps without indent takes CPython's C encoder; json.dump never does. A lone
    # surrogate (a skipped record's) is written as its JSON escape, `\udc80`, which reads
    # back as the same text: a bad record never stops a write.
    return json.dumps(value, ensure_ascii=False).encode("utf-8", errors="backslashreplace")


class FileProblem(ConnectorError):
    """A file of the embedded helpdesk cannot be read or written: a path, permission or
    disk problem the admin must fix, not a failing helpdesk."""


#: What to do about an OSError, by errno; the message already names the file.
_ADVICE = {
    errno.ENOENT: "check the path and that its folder exists",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "it is a folder: give the path of a file",
    errno.EEXIST: "a file stands where a folder is needed: check the path",
    errno.EACCES: "permission denied: give the user sla-sync runs as access to it",
    errno.EPERM: "not permitted: give the user sla-sync runs as access to it",
    errno.EROFS: "the file system is read-only: use a writable folder",
    errno.ENOSPC: "the disk is full: free space on it, then run again",
    errno.EDQUOT: "the disk quota is exceeded: free space, then run again",
}


def file_problem(path: Path, exc: OSError, doing: str) -> str:
    """One line naming the file, what failed on it and what to do: `PATH: cannot read the
    helpdesk file (Is a directory); it is a folder: give the path of a file`."""
    reason = exc.strerror or type(exc).__name__
    advice = _ADVICE.get(exc.errno or 0)
    return f"{path}: cannot {doing} ({reason})" + (f"; {advice}" if advice else "")


def _open(path: Path, what: str) -> IO[bytes]:
    try:
        return path.open("rb")  # a folder raises IsADirectoryError here
    except OSError as exc:
        raise FileProblem(file_problem(path, exc, f"read the {what}")) from None


def _read_bytes(path: Path, what: str) -> bytes:
    with _open(path, what) as source:
        return source.read()


def _file_chunks(path: Path, what: str) -> Iterator[bytes]:
    with _open(path, what) as source:
        yield from _copy(source, 0, None)


def _copy(source: IO[bytes], start: int, end: int | None) -> Iterator[bytes]:
    """The bytes of `source` from `start` up to `end` (None: its end), a chunk at a time."""
    source.seek(start)
    left = None if end is None else end - start
    while left is None or left > 0:
        chunk = source.read(CHUNK if left is None else min(CHUNK, left))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


def _signature(path: Path) -> tuple[int, ...]:
    try:
        stat = path.stat()
    except OSError:
        return ()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _parse_document(path: Path, what: str) -> dict[str, Any]:
    content = _read_bytes(path, what)
    return _decode_document(content, path)


def _decode_document(content: bytes, path: Path) -> dict[str, Any]:
    try:
        # Bytes that are not UTF-8 become lone surrogates, which Record refuses: only the
        # records holding them are skipped, not the whole file.
        data = json.loads(content.decode("utf-8", errors="surrogateescape"))
    except json.JSONDecodeError as exc:
        raise ConnectorError(
            f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, deep nesting
        raise ConnectorError(f"{path}: unusable JSON ({type(exc).__name__}: "
                             f"{str(exc)[:100]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise ConnectorError(f'{path}: expected an object {{"records": [...]}}')
    return data


def _document_of(content: bytes, digest: bytes, path: Path) -> Document:
    data = _decode_document(content, path)
    index: dict[str, int] = {}
    positions: dict[str, list[int]] = {}
    for position, raw in enumerate(data["records"]):
        record_id = _id_of(raw)
        if record_id is not None:
            index.setdefault(record_id, position)
            positions.setdefault(record_id, []).append(position)
    return Document(data, index, digest, twins=_only_twins(positions))


def _id_of(raw: Any) -> str | None:
    """The id a change can find a raw record by."""
    value = raw.get("id") if isinstance(raw, dict) else None
    return None if value is None or isinstance(value, bool) else str(value)


def _only_twins(positions: dict[str, list[int]]) -> dict[str, list[int]]:
    """Ids held by more than one record -> their positions. Every copy is skipped: writes
    address a record by its id, so neither could be written without guessing, and keeping
    one would silently ignore edits made to the other."""
    return {key: found for key, found in positions.items() if len(found) > 1}


def _duplicate_error(record_id: str, position: int, positions: list[int]) -> RecordError:
    others = ", ".join(f"#{p}" for p in positions if p != position)
    return DuplicateRecord(f"id: record #{position} of the file shares its id with {others}; "
                           "every copy is skipped until the ids are unique",
                           record_id=record_id, position=position)


class DuplicateRecord(RecordError, ConnectorError):
    """Two records of the file share an id: a per-record problem when reading, a per-record
    write failure when writing."""

    def __init__(self, message: str, record_id: str, position: int):
        RecordError.__init__(self, message, record_id=record_id, position=position)
        self.retriable = False


def _scan_lines(path: Path, what: str) -> Iterator[tuple[int, int, Any]]:
    """(byte offset, position, raw record or RecordError) per non-blank line of a JSON
    Lines file, one line in memory at a time."""
    with _open(path, what) as source:
        offset, position = 0, 0
        for line_number, line in enumerate(source, start=1):
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            yield start, position, _decode_line(line, line_number, position)
            position += 1


def _decode_line(line: bytes, line_number: int, position: int) -> Any:
    try:
        return json.loads(line.decode("utf-8", errors="surrogateescape"))
    except json.JSONDecodeError as exc:
        return RecordError(f"line {line_number}:{exc.colno}: invalid JSON ({exc.msg})",
                           position=position)
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, deep nesting
        return RecordError(f"line {line_number}: unusable JSON ({type(exc).__name__})",
                           position=position)


def _line_at(source: IO[bytes], offset: int) -> Any:
    """The raw record on the line starting at `offset`, or None when none starts there."""
    if offset > 0:
        source.seek(offset - 1)
        if source.read(1) != b"\n":
            return None
    source.seek(offset)
    line = source.readline()
    if not line.strip():
        return None
    raw = _decode_line(line, 0, 0)
    return None if isinstance(raw, RecordError) else raw
