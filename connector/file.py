"""The embedded helpdesk: a JSON file `{"records": [...]}` in the Record vocabulary.

For demos, tests and offline trials of a policy. Every write rewrites the file atomically
(a temporary file in the same folder, then a rename), so a crash mid-write leaves the old
file whole. Fields this module does not know are kept as they are.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from connector.base import (
    Capabilities,
    ConflictError,
    ConnectorError,
    Page,
    RecordGone,
    WriteResult,
    check_settings,
)
from connector.model import (
    ChangeSet,
    Record,
    RecordError,
    format_instant,
    merge_tags,
    parse_instant,
)

SETTINGS = {"type", "path", "seed", "page_size", "batch_size"}


class FileHelpdesk:
    def __init__(self, path: Path, seed: Path | None = None, page_size: int = 100,
                 batch_size: int = 100):
        self.path = path
        self.seed = seed
        self.page_size = page_size
        # A batch is one rewrite of the file; batch_size 1 rewrites it once per record.
        self.capabilities = Capabilities(bulk_writes=batch_size > 1, batch_size=batch_size,
                                         safe_update=True, tags=True, notes=True, leads=True)

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

    def _load(self) -> dict[str, Any]:
        if not self.path.exists() and self.seed is not None:
            self._write_atomically(self._read(self.seed, "seed file"))
        return self._read(self.path, "helpdesk file")

    @staticmethod
    def _read(path: Path, what: str) -> dict[str, Any]:
        try:
            # Bytes that are not UTF-8 become lone surrogates, which Record refuses: only the
            # records holding them are skipped, not the whole file.
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            raise ConnectorError(f"{path}: {what} not found") from None
        except OSError as exc:
            raise ConnectorError(f"{path}: cannot read ({exc.strerror})", retriable=True)\
                from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConnectorError(
                f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # a 5000-digit number, deep nesting
            raise ConnectorError(f"{path}: unusable JSON ({type(exc).__name__}: "
                                 f"{str(exc)[:100]})") from None
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise ConnectorError(f'{path}: expected an object {{"records": [...]}}')
        return data

    def fetch(self, cursor: str | None) -> Iterator[Page]:
        since = parse_instant(cursor, "cursor") if cursor else None
        records: list[Record] = []
        problems: list[RecordError] = []
        raws = self._load()["records"]
        twins = _duplicates(raws)
        for position, raw in enumerate(raws):
            try:
                record = Record.from_dict(raw, position)
            except RecordError as exc:
                problems.append(exc)
                continue
            if record.id in twins:
                problems.append(_duplicate_error(record.id, position, twins[record.id]))
                continue
            if since is None or record.updated_at > since:
                records.append(record)
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

    def get(self, record_id: str) -> Record | None:
        found = _find(self._load(), record_id)
        return Record.from_dict(found[1], found[0]) if found else None

    def read_back(self, record_id: str, since: datetime | None = None) -> Record | None:
        """As get: the file's records carry their notes."""
        return self.get(record_id)

    # -- writing ---------------------------------------------------------------------------

    def apply(self, change: ChangeSet, now: datetime) -> Record:
        data = self._load()
        written = self._change(data, change, now)
        self._write_atomically(data)
        return written

    def apply_many(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        """Several changes in one rewrite of the file: all of them land, or (a crash) none."""
        data = self._load()
        results = []
        for change in changes:
            try:
                results.append(WriteResult(change.record_id, self._change(data, change, now)))
            except ConnectorError as exc:
                results.append(WriteResult(change.record_id, error=exc))
        if any(result.error is None for result in results):
            self._write_atomically(data)
        return results

    def _change(self, data: dict[str, Any], change: ChangeSet, now: datetime) -> Record:
        """Apply one change to the loaded file's data in memory; the record as written."""
        found = _find(data, change.record_id)
        if found is None:
            raise RecordGone(f"{self.path}: no record {change.record_id!r}",
                             record_id=change.record_id)
        position, raw = found
        current = Record.from_dict(raw, position)
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

    def _write_atomically(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                         dir=self.path.parent)
        try:
            # A lone surrogate (a skipped record's) is written as its JSON escape, `\udc80`,
            # which reads back as the same text: a bad record never stops a write.
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as out:
                json.dump(data, out, indent=2, ensure_ascii=False)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            if self.path.exists():
                shutil.copymode(self.path, temp_name)
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


def _find(data: dict[str, Any], record_id: str) -> tuple[int, dict[str, Any]] | None:
    found = [(position, raw) for position, raw in enumerate(data["records"])
             if isinstance(raw, dict) and _raw_id(raw) == record_id]
    if len(found) > 1:
        raise _duplicate_error(record_id, found[0][0], [position for position, _ in found])
    return found[0] if found else None


def _raw_id(raw: Any) -> str | None:
    value = raw.get("id") if isinstance(raw, dict) else None
    return None if value is None or isinstance(value, bool) else str(value)


def _duplicates(raws: list[Any]) -> dict[str, list[int]]:
    """Ids held by more than one record -> their positions. Both copies are skipped: writes
    address a record by its id, so neither could be written without guessing, and keeping
    one would silently ignore edits made to the other."""
    positions: dict[str, list[int]] = {}
    for position, raw in enumerate(raws):
        record_id = _raw_id(raw)
        if record_id is not None:
            positions.setdefault(record_id, []).append(position)
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
