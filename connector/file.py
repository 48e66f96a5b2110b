"""The embedded helpdesk: a file of records in the Record vocabulary, in one of two layouts.

- JSON (any name but `*.jsonl`): one document `{"records": [...]}`; other top-level keys
  are kept. It is parsed whole and held in memory between calls for as long as the file
  still holds exactly what this connector last read or wrote (a content digest says so);
  an edit by anyone else is read afresh. Rewrites put one record per line, encoded once
  and re-encoded only when it changes; the other records' bytes are copied as read.
- JSON Lines (`*.jsonl`): one record per line, read and rewritten as a stream: the text is
  never held whole. What is held: the Records a fetch returns (it sorts them by
  updated_at), and an index from id to the byte offset of its line. A rewrite copies the
  unchanged bytes through in chunks and re-encodes only the changed lines. A line that is
  not JSON is reported as a malformed record and kept as it is.

A read parses only what changed: beside the file the connector keeps its index
(connector/file_index.py), and a fetch builds Records only for texts it has not seen
before and for the records after the cursor, while answering exactly as a parse of every
record would (an unusable record is reported at every fetch, edited or not); a JSON file
someone else rewrote is walked block by block of records, and only the blocks whose bytes
changed are cut into texts. A file whose stat signature (inode, size, modification and
change times) is the one the index noted when this connector last read it whole or wrote
it is not read at all: only the texts of the records a fetch returns are, and their
SHA-1s checked.

Records are found by id through an index, never by scanning. Every write rewrites the
file atomically (a temporary file in the same folder, fsync, then a rename), once per
batch, so a crash mid-write leaves the old file whole. Fields this module does not know
are kept as they are.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import itertools
import json
import operator
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
    Catalog,
    ConflictError,
    ConnectorError,
    Mirrored,
    Page,
    RecordGone,
    WriteResult,
)
from sla_sync.connector.file_index import (
    BLOCK,
    BLOCKS_DIGEST,
    Survey,
    blocks_digest,
    follow_sidecar,
    instant_of,
    micros,
    read_sidecar,
    sign_sidecar,
    text_hash,
    text_starts,
    write_sidecar,
)
from sla_sync.connector.model import (
    ChangeSet,
    Record,
    RecordError,
    custom_name,
    format_instant,
    merge_tags,
    parse_instant,
)
from sla_sync.connector.settings import Number, Schema, Setting, Text

SCHEMA = Schema("file", (
    Setting("path", Text("a file path"), "the helpdesk file, relative to the config",
            required=True, missing="the helpdesk file is required for type: file"),
    Setting("seed", Text("a file path", empty=True), "the file a missing helpdesk file "
            "starts as a copy of"),
    Setting("page_size", Number(whole=True, least=1), "records per page", default=100),
    Setting("batch_size", Number(whole=True, least=1), "changes per apply_many",
            default=1000),
))
#: The priorities and statuses every file helpdesk knows, whatever its records hold (the
#: demo's and the README's vocabulary); a record may hold others, which are known too.
PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
#: How much of a JSON Lines file is copied at a time.
CHUNK = 1 << 20
#: How many records a survey hashes and looks up at a time (a JSON Lines file streams).
SURVEY_BATCH = 4096
#: Bytes past a changed block's old end (besides an eighth of its old length) that a
#: survey cuts its texts from at once (copied: a block is about 11 KB at 100k records).
WINDOW = 1 << 10
#: Texts framed one by one in a JSON file after which a survey looks each up among all the
#: texts it knew (else each is compared with the one that stood at its place, then parsed).
KNOWN_AFTER = 2000


@dataclass
class Document:
    """A JSON helpdesk file as this connector writes it: a head line, one record's text per
    line, a tail. The texts are spans of the bytes the file was read as (`content`, laid out
    so), but for the records encoded since (`texts`). Records are parsed when a write or a
    get needs them; a rewrite re-encodes only the records changed since (`dirty`) and copies
    the spans between them as they are."""

    head: bytes  # up to the records' `[`: `{"records": [` and any keys before it
    tail: bytes  # from the records' `]` to the end
    content: bytes  # the file as read: head line, texts a `,\n` apart, tail (b"": none)
    starts: list[int]  # each record's text in `content`, where `texts` has none
    ends: list[int]
    texts: dict[int, bytes]  # position -> the record's text, encoded since `content`
    raws: dict[int, Any]  # position -> the record parsed (and changed in memory)
    index: dict[str, int]  # id -> position of the first record with it
    digest: bytes  # of the file's bytes when read or written
    signature: tuple[int, ...] = ()  # the file's stat signature while it held `digest`
    twins: dict[str, list[int]] = field(default_factory=dict)  # duplicated id -> positions
    dirty: set[int] = field(default_factory=set)  # positions to encode from `raws`

    def text(self, position: int) -> bytes:
        text = self.texts.get(position)
        if text is None:
            return self.content[self.starts[position]:self.ends[position]]
        return text

    def raw(self, position: int) -> Any:
        if position not in self.raws:
            self.raws[position] = _decode_text(self.text(position))
        return self.raws[position]

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The file's bytes: the head, one record per line, the tail; the records not
        encoded since the read as one span of `content` per run."""
        for position in sorted(self.dirty):
            self.texts[position] = _encode(self.raws[position])
        self.dirty.clear()
        count, view = len(self.starts), memoryview(self.content)
        yield self.head
        if count:
            yield b"\n"
        done = 0  # records written
        for position in sorted(self.texts):
            if position > done:  # a run of records as read, with the `,\n`s between them
                yield view[self.starts[done]:self.ends[position - 1]]
                yield b",\n"
            yield self.texts[position]
            if position < count - 1:
                yield b",\n"
            done = position + 1
        if done < count:
            yield view[self.starts[done]:self.ends[count - 1]]
        if count:
            yield b"\n"
        yield self.tail


@dataclass
class LineIndex:
    """Where each record's line starts in a JSON Lines file, valid for one stat signature."""

    signature: tuple[int, ...]
    offsets: dict[str, tuple[int, int]]  # id -> (byte offset, position) of its first line
    twins: dict[str, list[int]] = field(default_factory=dict)  # duplicated id -> positions


class FileHelpdesk:
    #: Its fetch compares versions with the mirror's (`connector.base.Mirrored`): a record's
    #: token is the SHA-1 of its text, which the survey holds without reading the text.
    versioned = True

    def __init__(self, path: Path, seed: Path | None = None, page_size: int = 100,
                 batch_size: int = 1000):
        self.path = path
        self.seed = seed
        self.page_size = page_size
        # A batch is one rewrite of the file; batch_size 1 rewrites it once per record.
        self.capabilities = Capabilities(bulk_writes=batch_size > 1, batch_size=batch_size,
                                         safe_update=True, tags=True, notes=True, leads=True,
                                         real_helpdesk=False, any_custom_field=True)
        self.lines_layout = path.suffix == ".jsonl"
        self._document: Document | None = None
        self._line_index: LineIndex | None = None
        self._known: Survey | None = None  # the latest survey of the file (file_index.py)
        self._sidecar: Survey | None = None  # the sidecar as _trusted just read it

    @classmethod
    def from_settings(cls, settings: dict[str, Any], base_dir: Path) -> FileHelpdesk:
        v = SCHEMA.check(settings)
        seed = v["seed"]
        return cls(base_dir / v["path"], base_dir / seed if seed else None,
                   page_size=v["page_size"], batch_size=v["batch_size"])

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
        """The JSON document, read again only when the file changed since last time (its
        stat signature says it did not; else a survey of its bytes does)."""
        self._ensure_seeded()
        with _open(self.path, "helpdesk file") as source:
            signature = _fd_signature(source)
            held = self._document
            if held is not None and signature and held.signature == signature:
                return held
            trusted = self._trusted(signature)
            if held is not None and trusted is not None and held.digest == trusted.digest:
                held.signature = signature
                return held
            content = source.read()
            if _fd_signature(source) != signature:  # written meanwhile: the bytes decide
                signature, trusted = (), None
        document = _document_of_survey(content, trusted) if trusted is not None else None
        if document is not None:  # the signature says these are the bytes surveyed
            self._document = document
        else:  # a walk against the latest survey known (an index that lies: without it)
            self._survey_document(content, trust=trusted is None)
            known = self._known
            if known is not None and (self._document is None
                                      or self._document.digest != known.digest):
                # the file surveyed, found so without framing it
                self._document = _document_of_survey(content, known)
                if self._document is None:
                    self._survey_document(content, trust=False)
        self._sidecar = None
        assert self._document is not None
        self._sign(signature, self._document.digest)
        self._document.signature = signature
        return self._document

    def _trusted(self, signature: tuple[int, ...]) -> Survey | None:
        """The survey noted for a file with this stat signature (so the file holds the
        bytes it describes), or None."""
        if not signature:
            return None
        if self._known is not None and self._known.signature == signature:
            return self._known
        stored = read_sidecar(self.path, "jsonl" if self.lines_layout else "json")
        if stored is not None and stored.signature == signature:
            self._known = stored
            return stored
        self._sidecar = stored  # for _stored_survey or _latest: this read spares a second one
        return None

    def _sign(self, signature: tuple[int, ...], digest: bytes) -> None:
        """The file was just read whole, its digest `digest`, its signature the same before
        and after: note the signature with the survey of those bytes."""
        if signature and self._known is not None and self._known.digest == digest:
            sign_sidecar(self.path, self._known, signature)

    def _stored_survey(self, digest: bytes) -> tuple[Survey | None, Survey | None]:
        """(the survey of the file with this digest, if known; the latest survey known)."""
        latest = self._known
        stored, self._sidecar = self._sidecar, None
        if latest is None or latest.digest != digest:
            if stored is None:
                stored = read_sidecar(self.path, "jsonl" if self.lines_layout else "json")
            if stored is not None and (stored.digest == digest or latest is None):
                latest = stored
        return (latest if latest is not None and latest.digest == digest else None), latest

    def _latest(self) -> Survey | None:
        """The latest survey known of a JSON file: the one held, else the sidecar's."""
        stored, self._sidecar = self._sidecar, None
        if self._known is not None:
            return self._known
        return stored if stored is not None else read_sidecar(self.path, "json")

    def _survey_document(self, content: bytes, trust: bool = True,
                         ) -> tuple[Survey, dict[int, Record], dict[int, RecordError]]:
        """What the JSON file holds per record (and its document), walked against the
        latest survey known: only the texts it does not know are parsed, and none when it
        is the survey of these very bytes (then it stays the index, as it is). Without
        `trust`, every text is parsed."""
        latest = self._latest() if trust else None
        if latest is not None and _is_surveyed(content, latest):
            self._known = latest  # the same bytes: the same records, the same refusals
            return latest, {}, {}
        survey, made, refused, document = _survey_json(content, latest, self.path)
        self._document = document
        if latest is not None and latest.digest == survey.digest:  # the same bytes, which
            # _is_surveyed does not check: a file without records
            self._known = latest
            return latest, {}, {}
        self._known = survey if survey.gaps else None  # a file not in our layout: no spans
        if self._known is not None:
            self._note_survey(survey, latest)
        return survey, made, refused

    def _note_survey(self, survey: Survey, latest: Survey | None) -> None:
        """The sidecar follows a survey: a line of the texts that changed in place since
        the latest survey (which it describes already), else the survey whole."""
        changes = survey.changes_since(latest) if latest is not None else None
        if changes is None or latest is None:
            write_sidecar(self.path, survey)
            return
        survey.appended, survey.pending = latest.appended, latest.pending
        follow_sidecar(self.path, latest.digest, survey, changes,
                       {k: survey.blocks[k] for k in {p // BLOCK for p, *_ in changes}})

    def _survey_lines(self, trust: bool = True,
                      ) -> tuple[Survey, dict[int, Record], dict[int, RecordError]]:
        """The same for a JSON Lines file, streaming it; also indexes its lines."""
        self._ensure_seeded()
        signature = _signature(self.path)
        trusted = self._trusted(signature) if trust else None
        made: dict[int, Record] = {}
        refused: dict[int, RecordError] = {}
        if trusted is not None:
            survey = trusted
        else:
            exact, latest = (self._stored_survey(_file_digest(self.path)) if trust
                             else (None, None))
            if exact is not None:
                survey = exact
            else:
                known = latest.known() if latest is not None else {}
                survey, made, refused = _survey_jsonl(self.path, known)
                survey.signature = ()
                write_sidecar(self.path, survey)
            if _signature(self.path) != signature:  # written meanwhile
                signature = ()
        self._known = survey
        self._sign(signature, survey.digest)
        offsets: dict[str, tuple[int, int]] = {}
        for position, (record_id, start) in enumerate(zip(survey.ids, survey.starts(),
                                                          strict=True)):
            if record_id is not None:
                offsets.setdefault(record_id, (start, position))
        self._line_index = LineIndex(signature, offsets, survey.twins())
        return survey, made, refused

    def fetch(self, cursor: str | None, mirrored: Mirrored | None = None) -> Iterator[Page]:
        since = micros(parse_instant(cursor, "cursor")) if cursor else None
        if self.lines_layout:
            survey, made, refused = self._survey_lines()
            content = None
        else:
            survey, made, refused, content = self._survey_json_file()
        problems, wanted = _after(survey, refused, since)
        same = _unchanged(survey, wanted, mirrored)
        read = {position: made[position] for position in wanted
                if position in made and position not in same}
        parse = [position for position in wanted if position not in made
                 and position not in same]
        for position, raw in self._texts_at(survey, parse, content):
            try:
                read[position] = Record.from_dict(raw, position)
            except RecordError as exc:  # the index was wrong about it: say what it is
                problems.append(exc)
        problems.sort(key=lambda problem: problem.position if problem.position is not None
                      else -1)
        stamps, ids, hashes = survey.stamps, survey.ids, survey.hashes
        # Pages are cut as if every record were handed over (the same pages, the same
        # cursors); a record the mirror holds is named in its place instead. In time
        # order, and in file order within a time.
        entries = sorted((position for position in wanted if position in read or position in same),
                         key=lambda position: (stamps[position], position))
        if not entries:
            yield Page(records=[], cursor=cursor, problems=problems)
            return
        start = 0
        while start < len(entries):
            end = min(start + self.page_size, len(entries))
            # Never split records that share an updated_at across pages: the cursor between
            # them would skip the second half.
            while end < len(entries) and stamps[entries[end]] == stamps[entries[end - 1]]:
                end += 1
            records: list[Record] = []
            unchanged: list[tuple[int, str]] = []
            for position in entries[start:end]:
                if position in same:
                    unchanged.append((len(records), ids[position]))  # type: ignore[arg-type]
                else:
                    records.append(read[position])
            last = entries[end - 1]
            yield Page(records=records,
                       cursor=format_instant(read[last].updated_at if last in read
                                             else instant_of(stamps[last])),  # type: ignore[arg-type]
                       problems=problems if start == 0 else [],
                       versions={read[position].id: hashes[position].hex()
                                 for position in entries[start:end]
                                 if position in read and hashes[position]},  # (b"": none)
                       unchanged=unchanged)
            start = end

    def _survey_json_file(self) -> tuple[Survey, dict[int, Record], dict[int, RecordError],
                                         bytes | None]:
        """The JSON file's survey, and its bytes when they had to be read (None: the
        signature says the file is the one surveyed)."""
        self._ensure_seeded()
        with _open(self.path, "helpdesk file") as source:
            signature = _fd_signature(source)
            trusted = self._trusted(signature)
            if trusted is not None:
                self._known = trusted
                return trusted, {}, {}, None
            content = source.read()
            if _fd_signature(source) != signature:
                signature = ()
        survey, made, refused = self._survey_document(content)
        self._sign(signature, survey.digest)
        return survey, made, refused, content

    def _texts_at(self, survey: Survey, positions: list[int],
                  content: bytes | None) -> Iterator[tuple[int, Any]]:
        """(position, raw record) of these records, read where the survey says they are;
        a text that is not the one surveyed means the file changed meanwhile."""
        if not positions:
            return
        starts = survey.starts()
        source = _open(self.path, "helpdesk file") if content is None else None
        try:
            for position in positions:
                start, length = starts[position], survey.lengths[position]
                if source is None:
                    assert content is not None
                    text = content[start:start + length]
                else:
                    source.seek(start)
                    text = source.read(length)
                if text_hash(text) != survey.hashes[position]:
                    self._known = None
                    raise ConnectorError(f"{self.path}: changed while being read; try again",
                                         retriable=True)
                yield position, _decode_text(text)
        finally:
            if source is not None:
                source.close()

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
        return Record.from_dict(document.raw(position), position)

    def _refuse_twin(self, record_id: str) -> None:
        twins = self._twins().get(record_id)
        if twins:
            raise _duplicate_error(record_id, twins[0], twins)

    def read_back(self, record_id: str, since: datetime | None = None) -> Record | None:
        """As get: the file's records carry their notes."""
        return self.get(record_id)

    def _raw_records(self) -> Iterator[Any]:
        """Every raw record of the file in order (a RecordError for a text that is not
        JSON), all parsed: for `catalog`, which reads the whole file once."""
        if not self.lines_layout:
            document = self._load()
            for position in range(len(document.starts)):
                yield document.raws[position] if position in document.raws else \
                    _decode_text(document.text(position))
            return
        self._ensure_seeded()
        for _, _, raw in _scan_lines(self.path, "helpdesk file"):
            yield raw

    def catalog(self) -> Catalog:
        """What the file holds (the statuses, priorities, groups, assignees and custom field
        names of its records) plus the fixed priorities and statuses, and whether the file
        and its folder can be rewritten. One read of the file (of the seed, before the first
        run copies it); nothing is written."""
        found: dict[str, set[str]] = {"status": set(STATUSES), "priority": set(PRIORITIES),
                                      "group": set(), "assignee": set(), "custom": set()}
        source = self if self.path.exists() or self.seed is None else FileHelpdesk(self.seed)
        for raw in source._raw_records():
            if not isinstance(raw, dict):
                continue
            for key in ("status", "priority", "group", "assignee"):
                if isinstance(raw.get(key), str) and raw[key]:
                    found[key].add(raw[key])
            if isinstance(raw.get("custom"), dict):
                found["custom"].update(str(name) for name in raw["custom"])
        catalog = Catalog("the file helpdesk", priorities=found["priority"],
                          statuses=found["status"], groups=found["group"],
                          agents=found["assignee"], fields=found["custom"])
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # the first run creates the folders below it
        for where in (self.path, folder) if self.path.exists() else (folder,):
            if not os.access(where, os.W_OK):
                why = f"{where} is not writable by this user (every write rewrites the file " \
                      "in its folder)"
                catalog.denied.update(dict.fromkeys(("fields", "tags", "escalation", "notes"),
                                                    why))
                break
        return catalog

    def directory(self) -> dict[str, dict[str, str]]:
        """The agents the file lists beside its records (a JSON file's top-level `agents`:
        `[{"name", "email", "timezone", "available"}]`), by name: where alerts to
        `{assignee}` go, and whom assign_next may not choose (`"available": false`, given as
        the text "false"). A JSON Lines file has no place for them: an empty directory. An
        entry without a string name is left out (alerts to that agent fall back, and say
        so)."""
        if self.lines_layout:
            return {}
        document = self._load()
        try:
            rest = json.loads((document.head + document.tail).decode("utf-8", "replace"))
        except ValueError:
            return {}
        agents = rest.get("agents") if isinstance(rest, dict) else None
        found: dict[str, dict[str, str]] = {}
        for agent in agents if isinstance(agents, list) else ():
            if isinstance(agent, dict) and isinstance(agent.get("name"), str):
                found[agent["name"]] = {
                    key: (str(value).lower() if isinstance(value, bool) else value)
                    for key, value in agent.items() if isinstance(value, str | bool)}
        return found

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
        if any(_id_of(document.raw(document.index[change.record_id])) != change.record_id
               for change in changes if change.record_id in document.index):
            # The index said so, the file does not: survey the file afresh, not from it.
            self._survey_document(_read_bytes(self.path, "helpdesk file"), trust=False)
            document = self._load()
        results = []
        changed: dict[int, Record] = {}
        for change in changes:
            position = document.index.get(change.record_id)
            try:
                if position is None:
                    raise self._gone(change.record_id)
                self._refuse_twin(change.record_id)
                written = self._change(document.raw(position), position, change, now)
            except ConnectorError as exc:
                results.append(WriteResult(change.record_id, error=exc))
                continue
            changed[position] = written
            results.append(WriteResult(change.record_id, written))
        if changed:
            before = document.digest
            document.dirty.update(changed)
            try:
                blocks = self._write_atomically(document, changed)
            except BaseException:
                self._document = None  # the changes are in memory only: read the file again
                raise
            _give_versions(results, self._note_rewrite(
                before, document.digest,
                [(position, document.text(position), record)
                 for position, record in changed.items()], document.signature, blocks))
        return results

    def _blocks_of(self, document: Document, changed: Iterable[int]) -> dict[int, bytes]:
        """The new hashes of the survey's blocks holding these records (none when the
        survey keeps no blocks)."""
        survey = self._known
        if survey is None or not survey.blocks:
            return {}
        count = len(document.starts)
        return {k: text_hash(b",\n".join(document.text(position) for position in
                                         range(k * BLOCK, min(k * BLOCK + BLOCK, count))))
                for k in {position // BLOCK for position in changed}}

    def _note_rewrite(self, before: bytes, after: bytes,
                      changed: list[tuple[int, bytes, Record]],
                      signature: tuple[int, ...], blocks: dict[int, bytes] | None = None,
                      ) -> dict[str, str]:
        """The index follows a rewrite of the file it describes: (position, new text, the
        record written) per record rewritten; the new file's signature; the new hashes of
        the blocks they are in. Returns each record's version token (its new text's SHA-1,
        as a survey of the file will give it)."""
        changes = [(position, text_hash(text), record.id, micros(record.updated_at), len(text))
                   for position, text, record in changed]
        tokens = {record_id: hashed.hex() for _, hashed, record_id, _, _ in changes}
        survey = self._known
        if survey is None or survey.digest != before:
            self._known = None
            return tokens
        survey.change(after, changes, signature, blocks)
        follow_sidecar(self.path, before, survey, changes, blocks)
        return tokens

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
            if custom_name(name):  # set_field: into the record's `custom` object
                raw["custom"] = {**(raw.get("custom") or {}), custom_name(name): value}
                continue
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

    def _write_atomically(self, document: Document, changed: Iterable[int]) -> dict[int, bytes]:
        """One rewrite of the JSON document, whose records at these positions changed;
        remembers what the file now holds. Returns the new hashes of their blocks."""
        _, document.signature = self._replace(document.chunks(), hashed=False)
        blocks = self._blocks_of(document, changed)
        document.digest = self._digest_after(document, blocks)
        return blocks

    def _digest_after(self, document: Document, blocks: dict[int, bytes]) -> bytes:
        """The digest of the file just written from `document` (what `json_digest` gives
        for its bytes): from the survey's blocks and the changed ones' new hashes when the
        survey describes the document as it was (`document.digest` is still that), so
        that only the changed blocks are hashed; else from every block's text."""
        count, survey = len(document.starts), self._known
        if not count:  # no records: a file in no layout of records
            return hashlib.sha1(document.head + document.tail).digest()
        if survey is not None and survey.digest == document.digest \
                and len(survey.blocks) == -(-count // BLOCK):
            hashes = list(survey.blocks)
            for k, hashed in blocks.items():
                hashes[k] = hashed
        else:
            hashes = [text_hash(b",\n".join(map(document.text,
                                                range(low, min(low + BLOCK, count)))))
                      for low in range(0, count, BLOCK)]
        return blocks_digest(document.head + b"\n", b"\n" + document.tail, count, hashes)

    def _replace(self, chunks: Iterable[bytes | memoryview], hashed: bool = True,
                 ) -> tuple[bytes, tuple[int, ...]]:
        """The file becomes `chunks`, atomically: temporary file, fsync, rename. Returns the
        SHA-1 of what it wrote (b"" when not `hashed`) and the new file's stat signature
        (() when it cannot be sure the file it stats is the one it wrote, untouched)."""
        digest = hashlib.sha1() if hashed else None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                             dir=self.path.parent)
        except OSError as exc:  # its folder: the rewrite needs to create a file beside it
            raise FileProblem(file_problem(self.path.parent, exc, "write a temporary file "
                                           "in the helpdesk file's folder")) from None
        try:
            with os.fdopen(fd, "wb") as out:
                buffered: list[bytes | memoryview] = []
                size = 0
                for chunk in chunks:
                    if digest is not None:
                        digest.update(chunk)
                    if len(chunk) >= CHUNK:  # a long run of the file as read: as it is
                        out.write(b"".join(buffered))
                        out.write(chunk)
                        buffered, size = [], 0
                        continue
                    buffered.append(chunk)
                    size += len(chunk)
                    if size >= CHUNK:
                        out.write(b"".join(buffered))
                        buffered, size = [], 0
                out.write(b"".join(buffered))
                out.flush()
                os.fsync(out.fileno())
                written = os.fstat(out.fileno())
            if self.path.exists():
                shutil.copymode(self.path, temp_name)
            os.replace(temp_name, self.path)
            # The rename gives the file a new change time: stat it after, and keep that
            # only if it is still our inode with what we wrote (same size, same mtime).
            signature = _signature(self.path)
            if signature[:3] != (written.st_ino, written.st_size, written.st_mtime_ns):
                signature = ()
            return (digest.digest() if digest is not None else b""), signature
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
                index = self._index_lines(trust=not attempt)
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

    def _index_lines(self, trust: bool = True) -> LineIndex:
        self._survey_lines(trust)
        assert self._line_index is not None
        return self._line_index

    def _apply_lines(self, changes: list[ChangeSet], now: datetime) -> list[WriteResult]:
        found = self._find_lines({change.record_id for change in changes})
        results = []
        edits: dict[int, Any] = {}  # byte offset -> the raw record as it will be written
        written_at: dict[int, tuple[int, Record]] = {}  # byte offset -> (position, record)
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
            written_at[offset] = (position, written)
            results.append(WriteResult(change.record_id, written))
        if edits:
            before = self._known.digest if self._known is not None else b""
            shifts, texts, after, signature = self._rewrite_lines(edits)
            _give_versions(results, self._note_rewrite(
                before, after, [(written_at[offset][0], text, written_at[offset][1])
                                for offset, text in texts.items()], signature))
            index = self._line_index
            assert index is not None
            starts = [offset for offset, _ in shifts]
            totals = [total for _, total in shifts]
            for record_id, (offset, position) in index.offsets.items():
                moved = bisect.bisect_left(starts, offset)  # edited lines before it
                if moved:
                    index.offsets[record_id] = (offset + totals[moved - 1], position)
            index.signature = signature
        return results

    def _rewrite_lines(self, edits: dict[int, Any],
                       ) -> tuple[list[tuple[int, int]], dict[int, bytes], bytes,
                                  tuple[int, ...]]:
        """Rewrite the file with the lines at these offsets replaced: ((old offset, total
        shift of every line after it) in offset order, old offset -> new line, the file's
        new SHA-1 and stat signature)."""
        shifts: list[tuple[int, int]] = []
        texts: dict[int, bytes] = {}

        def chunks() -> Iterator[bytes]:
            total = 0
            with _open(self.path, "helpdesk file") as source:
                at = 0
                for offset in sorted(edits):
                    yield from _copy(source, at, offset)
                    old = source.readline()
                    new = _encode(edits[offset]) + b"\n"
                    texts[offset] = new
                    yield new
                    total += len(new) - len(old)
                    shifts.append((offset, total))
                    at = offset + len(old)
                yield from _copy(source, at, None)

        after, signature = self._replace(chunks())
        return shifts, texts, after, signature


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


def _fd_signature(source: IO[bytes]) -> tuple[int, ...]:
    stat = os.fstat(source.fileno())
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


class _NotAlone(Exception):
    """A text of a JSON file that is not one JSON value on its own: the file is not in the
    layout this connector writes, so it is parsed whole."""


def _decode_text(text: bytes) -> Any:
    # Bytes that are not UTF-8 become lone surrogates, which Record refuses: only the
    # records holding them are skipped. Decoding a text alone gives the same string as
    # decoding it within the file: the texts are cut at ASCII bytes.
    return json.loads(text.decode("utf-8", errors="surrogateescape"))


def _bounds(content: bytes) -> tuple[int, int] | None:
    """(where the head line ends, where the tail line starts) when `content` is laid out as
    `Document.chunks` writes it: a head line ending in the records' `[`, one text per line
    each followed by `,` but the last, a tail line from the `]` on. None for any other
    layout. The texts are the bytes between, cut at each `,\\n`; whether each is one JSON
    value is left to the caller; if they all are, the file's records are exactly them."""
    first = content.find(b"\n")
    if first < 0 or not content.endswith(b"\n"):
        return None
    last = content.rfind(b"\n", 0, len(content) - 1)
    if last <= first:
        return None
    head, tail = content[:first], content[last + 1:]
    for probe in (0, 1):  # a lone value there is the records' only element, twice over
        try:
            skeleton = json.loads((head + b"\n%d\n" % probe + tail)
                                  .decode("utf-8", errors="surrogateescape"))
        except (ValueError, RecursionError):
            return None
        if not isinstance(skeleton, dict) or skeleton.get("records") != [probe] \
                or type(skeleton["records"][0]) is not int:
            return None
    return first, last


def json_digest(content: bytes) -> bytes:
    """The digest of a JSON helpdesk file's bytes, as its survey has it: in the helpdesk's
    layout, the blocks digest of its parts (`file_index.blocks_digest`); else their SHA-1."""
    bounds = _bounds(content)
    if bounds is None:
        return hashlib.sha1(content).digest()
    first, last = bounds
    lengths = list(map(len, content[first + 1:last].split(b",\n")))
    starts = text_starts([first + 1] + [2] * (len(lengths) - 1), lengths)
    view = memoryview(content)
    return blocks_digest(content[:first + 1], content[last:], len(lengths), [
        text_hash(view[starts[low]:starts[high - 1] + lengths[high - 1]])
        for low, high in ((low, min(low + BLOCK, len(lengths)))
                          for low in range(0, len(lengths), BLOCK))])


def _is_surveyed(content: bytes, survey: Survey) -> bool:
    """Whether `content` is the very file a JSON survey describes: the blocks digest of the
    bytes where the survey has its blocks, with a `,\n` between each two of them, is the
    survey's. Each byte is hashed once, as a survey would, but no text is framed."""
    count = len(survey.lengths)
    if survey.layout != "json" or not count or len(survey.blocks) != -(-count // BLOCK) \
            or len(survey.gaps) != count or not survey.digest.startswith(BLOCKS_DIGEST):
        return False  # (a survey of an older version, named by the file's SHA-1: walked)
    starts, lengths = survey.starts(), survey.lengths
    end = starts[-1] + lengths[-1]
    if end >= len(content):
        return False
    view = memoryview(content)
    hashes = []
    for k, hashed in enumerate(survey.blocks):
        low, high = k * BLOCK, min(k * BLOCK + BLOCK, count)
        stop = starts[high - 1] + lengths[high - 1]
        if (high < count and not content.startswith(b",\n", stop)) \
                or text_hash(view[starts[low]:stop]) != hashed:
            return False
        hashes.append(hashed)
    return blocks_digest(content[:survey.gaps[0]], content[end:], count, hashes) \
        == survey.digest


def _survey_json(content: bytes, latest: Survey | None, path: Path,
                 ) -> tuple[Survey, dict[int, Record], dict[int, RecordError], Document]:
    """Survey a JSON file's records, taking what `latest` (the survey of an earlier version)
    knows for the same bytes and parsing the rest; a file in another layout is parsed whole
    (its survey has no spans: `gaps` is empty)."""
    bounds = _bounds(content)
    if bounds is not None:
        first, last = bounds
        try:
            survey, made, refused, raws, starts = _survey_framed(content, first, last,
                                                                 latest)
        except _NotAlone:
            pass
        else:
            ends = list(map(operator.add, starts, survey.lengths))
            document = Document(content[:first], content[last + 1:], content, starts, ends,
                                {}, raws, survey.index(), survey.digest,
                                twins=survey.twins())
            return survey, made, refused, document
    digest = json_digest(content)
    data = _decode_document(content, path)
    records = data["records"]
    survey, made, refused, raws = _survey_texts(
        ((0, 0, raw) for raw in records), {}, digest, "json", parsed=True)
    survey.gaps = []
    before = list(itertools.takewhile(lambda key: key != "records", data))
    after = list(data)[len(before) + 1:]

    def members(keys: list[str]) -> list[bytes]:
        return [_encode(key) + b": " + _encode(data[key]) for key in keys]

    head = b"{" + b"".join(member + b", " for member in members(before)) + b'"records": ['
    tail = b"]" + b"".join(b", " + member for member in members(after)) + b"}\n"
    nothing = [0] * len(records)
    document = Document(head, tail, b"", nothing, nothing, {}, dict(enumerate(records)),
                        survey.index(), digest, twins=survey.twins(),
                        dirty=set(range(len(records))))
    return survey, made, refused, document


def _survey_framed(content: bytes, first: int, last: int,
                   latest: Survey | None) -> tuple[Survey, dict[int, Record],
                                                   dict[int, RecordError], dict[int, Any],
                                                   list[int]]:
    """The survey of a JSON file in the helpdesk's layout (texts between `first` and `last`)
    and where each text starts. The blocks `latest` knows are looked for first, each where
    the records before it ended (`_walk_blocks`); the rest is cut into texts, each taken
    from `latest` when it is the text that stood at its place or (many of them) any text
    `latest` knew, else parsed. Raises _NotAlone when a text is not one JSON value. The
    survey's digest is the blocks digest of the file (no byte hashed twice)."""
    survey = Survey(b"", "json", [], [], [], [], [])
    texts: dict[int, bytes] = {}  # position -> its text, for texts cut one by one
    kept: dict[int, tuple[bytes, int]] = {}  # block -> (hash, records), found in place
    at = first + 1
    if latest is not None and latest.blocks:
        at = _walk_blocks(content, at, last, latest, survey, texts, kept)
    if at <= last:  # past the blocks known: cut the rest at once
        rest = content[at:last].split(b",\n")
        texts.update(zip(itertools.count(len(survey.lengths)), rest))
        survey.lengths.extend(map(len, rest))
        survey.hashes.extend([b""] * len(rest))
        survey.ids.extend([None] * len(rest))
        survey.stamps.extend([None] * len(rest))
    count = len(survey.lengths)
    survey.gaps = [first + 1] + [2] * (count - 1)
    starts = survey.starts()
    made: dict[int, Record] = {}
    refused: dict[int, RecordError] = {}
    raws: dict[int, Any] = {}
    for position in _unknown(survey, texts, latest):
        try:
            raw = _decode_text(texts[position])
        except (ValueError, RecursionError):
            raise _NotAlone from None
        _judge(raw, position, survey, made, refused, raws)
    view = memoryview(content)
    survey.blocks = []
    for k, low in enumerate(range(0, count, BLOCK)):
        high = min(low + BLOCK, count)
        found = kept.get(k)
        if found is not None and found[1] == high - low:
            survey.blocks.append(found[0])
        else:
            survey.blocks.append(text_hash(view[starts[low]:starts[high - 1]
                                                + survey.lengths[high - 1]]))
    survey.digest = blocks_digest(content[:first + 1], content[last:], count, survey.blocks)
    if latest is not None and latest.shared is not None and survey.ids == latest.ids:
        survey.shared = latest.shared  # the same ids in the same places: the same twins
    return survey, made, refused, raws, starts


def _walk_blocks(content: bytes, at: int, end: int, old: Survey, survey: Survey,
                 texts: dict[int, bytes], kept: dict[int, tuple[bytes, int]]) -> int:
    """Walk the texts from `at` (to `end`) block by block of `old`: a block whose bytes,
    from where the records before it ended, hash as before and end where a text ends, is
    those records (their texts, ids, stamps and refusals taken from `old`); in any other,
    its number of texts is cut into `texts`. Returns where the texts not walked
    start (past `end`: none left)."""
    view = memoryview(content)
    count = len(old.lengths)
    old_lengths = old.lengths
    lengths, hashes, ids, stamps = survey.lengths, survey.hashes, survey.ids, survey.stamps
    for k, hashed in enumerate(old.blocks):
        if at > end:
            break
        low, high = k * BLOCK, min(k * BLOCK + BLOCK, count)
        stop = at + sum(old_lengths[low:high]) + 2 * (high - low - 1)  # its bytes, as before
        if stop <= end and (stop == end or content.startswith(b",\n", stop)) \
                and text_hash(view[at:stop]) == hashed:
            position = len(lengths)
            lengths.extend(old.lengths[low:high])
            survey.hashes.extend(old.hashes[low:high])
            survey.ids.extend(old.ids[low:high])
            survey.stamps.extend(old.stamps[low:high])
            if old.problems:  # the same bytes, the same answer (a refusal names no place)
                survey.problems.update((position + p - low, old.problems[p])
                                       for p in range(low, high) if p in old.problems)
            if position == low:
                kept[k] = (hashed, high - low)
            at = stop + 2
            continue
        # Its texts are cut (what each is is found later), in one split of a window of
        # the bytes where it stood when the window holds them all (the usual edit).
        limit = min(end, stop + ((stop - at) >> 3) + WINDOW)
        pieces = content[at:limit].split(b",\n", high - low)
        if len(pieces) > high - low:  # each text followed by its `,\n`, then the rest
            pieces.pop()
        elif limit < end:  # longer than the window: one by one
            pieces = _cut(content, at, end, high - low)
        texts.update(zip(itertools.count(len(lengths)), pieces))
        lengths.extend(map(len, pieces))
        hashes.extend([b""] * len(pieces))
        ids.extend([None] * len(pieces))
        stamps.extend([None] * len(pieces))
        at += sum(map(len, pieces)) + 2 * len(pieces)
    return at


def _cut(content: bytes, at: int, end: int, count: int) -> list[bytes]:
    """Up to `count` texts from `at`, each ended by a `,\n` or by `end`."""
    pieces: list[bytes] = []
    while len(pieces) < count and at <= end:
        stop = content.find(b",\n", at, end)
        stop = end if stop < 0 else stop
        pieces.append(content[at:stop])
        at = stop + 2
    return pieces


def _unknown(survey: Survey, texts: dict[int, bytes], old: Survey | None) -> list[int]:
    """Hash the texts cut one by one; those not taken from `old` (as the text that stood
    at the same place, or, when many were cut, as any text it knew) are to be parsed."""
    unknown = []
    before = old.hashes if old is not None else []
    for position, text in texts.items():
        hashed = survey.hashes[position] = text_hash(text)
        if position < len(before) and before[position] == hashed \
                and position not in old.problems:  # type: ignore[union-attr]
            survey.ids[position] = old.ids[position]  # type: ignore[union-attr]
            survey.stamps[position] = old.stamps[position]  # type: ignore[union-attr]
        else:
            unknown.append(position)
    if old is not None and len(unknown) > KNOWN_AFTER:
        known = old.known()
        left = []
        for position in unknown:
            hit = known.get(survey.hashes[position])
            if hit is None:
                left.append(position)
            else:
                survey.ids[position], survey.stamps[position] = hit
        unknown = left
    return unknown


def _judge(raw: Any, position: int, survey: Survey, made: dict[int, Record],
           refused: dict[int, RecordError], raws: dict[int, Any]) -> None:
    """A record parsed (or a RecordError for one that is not JSON): made a Record (kept in
    `made`) or refused (in `refused`), its id and stamp noted in the survey."""
    raws[position] = raw
    survey.ids[position] = None if isinstance(raw, RecordError) else _id_of(raw)
    try:
        if isinstance(raw, RecordError):
            raise raw
        record = Record.from_dict(raw, position)
    except RecordError as exc:
        survey.problems[position] = (exc.reason, exc.record_id)
        refused[position] = exc
        return
    made[position] = record
    survey.stamps[position] = micros(record.updated_at)


def _survey_texts(texts: Iterable[tuple[int, int, Any]],
                  known: dict[bytes, tuple[str | None, int]], digest: bytes, layout: str,
                  parsed: bool = False,
                  ) -> tuple[Survey, dict[int, Record], dict[int, RecordError], dict[int, Any]]:
    """The survey of (gap before it, its line number, text) per record: a text `known`
    holds is taken from it, any other is parsed and made a Record (kept in `made`) or
    refused (in `refused`). `parsed`: the texts are raw records already."""
    survey = Survey(digest, layout, [], [], [], [], [])
    made: dict[int, Record] = {}
    refused: dict[int, RecordError] = {}
    raws: dict[int, Any] = {}
    stream = iter(texts)
    while entries := list(itertools.islice(stream, SURVEY_BATCH)):  # bounded for a stream
        _survey_batch(entries, len(survey.ids), known, layout, parsed, survey, made,
                      refused, raws)
    return survey, made, refused, raws


def _survey_batch(entries: list[tuple[int, int, Any]], first: int,
                  known: dict[bytes, tuple[str | None, int]], layout: str, parsed: bool,
                  survey: Survey, made: dict[int, Record], refused: dict[int, RecordError],
                  raws: dict[int, Any]) -> None:
    survey.gaps.extend(gap for gap, _, _ in entries)
    if parsed:
        survey.lengths.extend([0] * len(entries))
        survey.hashes.extend([b""] * len(entries))
        hits: list[tuple[str | None, int] | None] = [None] * len(entries)
    else:
        survey.lengths.extend(len(text) for _, _, text in entries)
        hashes = [hashlib.sha1(text).digest() for _, _, text in entries]
        survey.hashes.extend(hashes)
        hits = list(map(known.get, hashes))
    survey.ids.extend(None if hit is None else hit[0] for hit in hits)
    survey.stamps.extend(None if hit is None else hit[1] for hit in hits)
    for n in [n for n, hit in enumerate(hits) if hit is None]:
        _, line_number, text = entries[n]
        position = first + n
        if parsed:
            raw = text
        elif layout == "jsonl":
            raw = _decode_line(text, line_number, position)
        else:
            try:
                raw = _decode_text(text)
            except (ValueError, RecursionError):
                raise _NotAlone from None
        _judge(raw, position, survey, made, refused, raws)


def _survey_jsonl(path: Path, known: dict[bytes, tuple[str | None, int]],
                  ) -> tuple[Survey, dict[int, Record], dict[int, RecordError]]:
    """Survey a JSON Lines file, one line in memory at a time."""
    digest = hashlib.sha1()

    def lines() -> Iterator[tuple[int, int, bytes]]:
        with _open(path, "helpdesk file") as source:
            gap = 0
            for line_number, line in enumerate(source, start=1):
                digest.update(line)
                if not line.strip():
                    gap += len(line)
                    continue
                yield gap, line_number, line
                gap = 0

    survey, made, refused, _ = _survey_texts(lines(), known, b"", "jsonl")
    survey.digest = digest.digest()
    return survey, made, refused


def _document_of_survey(content: bytes, survey: Survey) -> Document | None:
    """The JSON document of a file the survey describes, without parsing a record; None
    when the survey's spans do not even end where the file's lines do."""
    starts = survey.starts()
    ends = [start + length for start, length in zip(starts, survey.lengths, strict=True)]
    if not (ends[-1] + 1 < len(content) and content[survey.gaps[0] - 1:survey.gaps[0]]
            == b"\n" == content[ends[-1]:ends[-1] + 1]):
        return None
    return Document(content[:survey.gaps[0] - 1], content[ends[-1] + 1:], content, starts,
                    ends, {}, {}, survey.index(), survey.digest, twins=survey.twins())


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha1()
    with _open(path, "helpdesk file") as source:
        for chunk in _copy(source, 0, None):
            digest.update(chunk)
    return digest.digest()


def _after(survey: Survey, refused: dict[int, RecordError], since: int | None,
           ) -> tuple[list[RecordError], list[int]]:
    """What a fetch reports (the refused records, the copies of a duplicated id) and the
    positions of the usable records it returns (updated after `since`, or all)."""
    stamps = survey.stamps
    if since is None:
        wanted = [position for position, stamp in enumerate(stamps) if stamp is not None]
    else:
        wanted = [position for position, stamp in enumerate(stamps)
                  if stamp is not None and stamp > since]
    problems = [refused[position] if position in refused else
                RecordError(reason, record_id=record_id, position=position)
                for position, (reason, record_id) in survey.problems.items()]
    twins = survey.twins()
    if twins:  # every copy is reported, never returned
        copies = {position for positions in twins.values() for position in positions
                  if stamps[position] is not None}
        problems += [_duplicate_error(record_id, position, positions)
                     for record_id, positions in twins.items() for position in positions
                     if position in copies]
        wanted = [position for position in wanted if position not in copies]
    return problems, wanted


def _give_versions(results: list[WriteResult], tokens: dict[str, str]) -> None:
    """Each result of a record rewritten gets its version token (`_note_rewrite`)."""
    for result in results:
        if result.error is None and result.record is not None:
            result.version = tokens.get(result.record.id)


def _unchanged(survey: Survey, wanted: list[int], mirrored: Mirrored | None) -> set[int]:
    """Of the positions a fetch would return, those whose text the mirror holds exactly
    (its token is the text's SHA-1; a file parsed whole has none, b"")."""
    if mirrored is None or not wanted:
        return set()
    ids, hashes = survey.ids, survey.hashes
    tokens = mirrored.versions([record_id for record_id in map(ids.__getitem__, wanted)
                                if record_id is not None])
    if not tokens:
        return set()
    return {position for position in wanted if hashes[position]
            and tokens.get(ids[position]) == hashes[position].hex()}  # type: ignore[arg-type]


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
