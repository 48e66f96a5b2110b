"""The file helpdesk's index (connector/file_index.py): a fetch answers exactly as if it had
parsed every record, whatever was edited by hand, and parses only what changed."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from conftest import at, iso, record_dict
from sla_sync.connector import ConnectorError
from sla_sync.connector import file as file_module
from sla_sync.connector.file import FileHelpdesk
from sla_sync.connector.file_index import Survey, sidecar_of
from sla_sync.connector.model import ChangeSet, Record

NOW = at("2026-03-02 12:00")
LAYOUTS = ("json", "jsonl")


def ticket(number: int, minute: int = 0, **fields: Any) -> dict[str, Any]:
    return record_dict(id=f"T-{number}", updated_at=iso(f"2026-03-02 09:{minute:02d}"),
                       **fields)


def write(path: Path, records: list[Any], indent: int | None = None) -> None:
    """As a person or another program would: JSON (compact, one record per line, or
    indented) or JSON Lines; a str item is written as the record's text itself."""
    texts = [r if isinstance(r, str) else json.dumps(r, indent=indent) for r in records]
    if path.suffix == ".jsonl":
        path.write_text("".join(text + "\n" for text in texts))
    else:
        path.write_text('{"records": [\n' + ",\n".join(texts) + "\n]}\n")


def answer(desk: FileHelpdesk, cursor: str | None) -> list[Any] | str:
    """Everything a fetch says: each page's records, problems and cursor, or its error."""
    try:
        return [([r.to_dict() for r in page.records], [str(p) for p in page.problems],
                 page.cursor) for page in desk.fetch(cursor)]
    except ConnectorError as exc:
        return str(exc).replace(str(desk.path), "PATH")


def parsed_whole(path: Path, cursor: str | None) -> list[Any] | str:
    """What a fetch says with no index to help it: every record parsed."""
    sidecar_of(path).unlink(missing_ok=True)
    return answer(FileHelpdesk(path, page_size=3), cursor)


@pytest.fixture(params=LAYOUTS)
def path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return tmp_path / f"helpdesk.{request.param}"


def count_records(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []
    real = Record.from_dict.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Record], data: Any, position: int | None = None) -> Record:
        made.append(1)
        return real(cls, data, position)

    monkeypatch.setattr(file_module.Record, "from_dict", classmethod(counted))
    return made


def test_an_unchanged_file_is_not_parsed_again(path: Path, monkeypatch: pytest.MonkeyPatch):
    write(path, [ticket(n, n) for n in range(1, 6)])
    first = answer(FileHelpdesk(path, page_size=3), None)
    assert sidecar_of(path).exists()
    expected = parsed_whole_copy(path, iso("2026-03-02 09:03"))
    made = count_records(monkeypatch)
    cursor = first[-1][2]
    assert answer(FileHelpdesk(path, page_size=3), cursor) == [([], [], cursor)]
    assert made == []
    # Records after the cursor are the only ones made.
    assert answer(FileHelpdesk(path, page_size=3), iso("2026-03-02 09:03")) == expected
    assert len(made) == 2


def test_a_hand_edit_that_keeps_updated_at_is_still_checked(path: Path):
    """The edit bc65f5b missed: a record made unusable without a new updated_at is
    reported at the next fetch, and a later repair clears it."""
    records = [ticket(n, n) for n in range(1, 5)]
    write(path, records)
    desk = FileHelpdesk(path)
    cursor = answer(desk, None)[-1][2]
    records[1] = {**records[1], "kind": "spaceship"}  # same updated_at
    write(path, records)
    [(got, problems, _)] = answer(desk, cursor)
    assert got == [] and problems == [
        "record 'T-2': kind: unknown kind 'spaceship' (expected one of ticket, lead)"]
    assert answer(FileHelpdesk(path), cursor) == parsed_whole(path, cursor)
    records[1] = {**records[1], "kind": "ticket"}
    write(path, records)
    assert answer(desk, cursor) == [([], [], cursor)]


def test_a_file_laid_out_otherwise_is_parsed_whole_and_rewritten_in_the_layout(tmp_path):
    path = tmp_path / "helpdesk.json"
    path.write_text(json.dumps({"about": "demo", "records": [ticket(1), ticket(2)],
                                "more": [1]}, indent=2))
    desk = FileHelpdesk(path)
    assert answer(desk, None) == parsed_whole(path, None)
    desk.apply(ChangeSet("T-2", add_tags=("x",)), NOW)
    data = json.loads(path.read_text())
    assert list(data) == ["about", "records", "more"] and data["more"] == [1]
    assert [r["tags"] for r in data["records"]] == [[], ["x"]]
    assert path.read_text().splitlines()[0] == '{"about": "demo", "records": ['
    assert answer(FileHelpdesk(path), None) == parsed_whole(path, None)


@pytest.mark.parametrize("damage", ["garbage\n", "", '{"format": "sla-sync file helpdesk '
                                    'index 1", "layout": "json"}\n'])
def test_a_damaged_index_is_ignored(path: Path, damage: str):
    write(path, [ticket(1, 1), ticket(2, 2)])
    expected = parsed_whole(path, None)
    sidecar_of(path).write_text(damage)
    assert answer(FileHelpdesk(path, page_size=3), None) == expected


def test_an_index_wrong_about_ids_never_makes_a_write_land_on_another_record(path: Path):
    write(path, [ticket(1, 1), ticket(2, 2)])
    answer(FileHelpdesk(path), None)
    index = sidecar_of(path)
    head, packed = index.read_bytes().split(b"\n", 1)  # a JSON line, then binary arrays
    entry = json.loads(head)
    entry["ids"] = ["T-2", "T-1"]  # swapped, as a damaged or foreign index might say
    index.write_bytes(json.dumps(entry).encode() + b"\n" + packed)
    FileHelpdesk(path).apply(ChangeSet("T-1", add_tags=("x",)), NOW)
    tags = {r["id"]: r["tags"] for r in parsed_records(path)}
    assert tags == {"T-1": ["x"], "T-2": []}


def parsed_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(json.loads(text)["records"])


@pytest.mark.parametrize("seed", range(12))
def test_with_the_index_a_fetch_answers_as_a_whole_parse_through_random_edits(
        tmp_path: Path, seed: int):
    """Random files and hand edits (content with or without a new updated_at, backdating,
    unusable records, text that is not JSON, duplicate ids, records added and removed,
    other layouts) interleaved with writes: after each step, a fetch through a desk that
    keeps its index (in memory and beside the file) and one through a fresh desk answer as
    a whole parse with no index, for several cursors."""
    rng = random.Random(seed)
    path = tmp_path / f"helpdesk.{LAYOUTS[seed % 2]}"
    records: list[Any] = [ticket(n, rng.randrange(60)) for n in range(1, 9)]
    write(path, records)
    kept = FileHelpdesk(path, page_size=3)
    next_id = 9
    for step in range(25):
        action = rng.randrange(9)
        position = rng.randrange(len(records)) if records else 0
        usable = [i for i, r in enumerate(records) if isinstance(r, dict)]
        if action == 0 and usable:  # a field, updated_at kept
            i = rng.choice(usable)
            records[i] = {**records[i], "subject": f"edit {step}"}
        elif action == 1 and usable:  # updated_at moved back or forth
            i = rng.choice(usable)
            records[i] = {**records[i], "updated_at": iso(f"2026-03-02 09:{rng.randrange(60):02d}")}
        elif action == 2 and usable:  # made unusable
            i = rng.choice(usable)
            records[i] = {**records[i], rng.choice(["kind", "created_at", "tags"]): 7}
        elif action == 3 and records:  # not JSON at all (JSON Lines keeps it as a line)
            records[position] = '{"id": "T-x", oops}'
        elif action == 4 and records:  # a duplicate id
            records.insert(rng.randrange(len(records) + 1), dict(rng.choice(
                [r for r in records if isinstance(r, dict)] or [ticket(1)])))
        elif action == 5:
            records.insert(rng.randrange(len(records) + 1), ticket(next_id, rng.randrange(60)))
            next_id += 1
        elif action == 6 and records:
            records.pop(position)
        elif action == 7 and usable:  # a write through the desk, then read back as is
            rewritten = [i for i in usable if not _twin(records, i)]
            parses = path.suffix == ".jsonl" or all(isinstance(r, dict) for r in records)
            if rewritten and parses:
                kept.apply_many([ChangeSet(records[i]["id"], add_tags=(f"s{step}",))
                                 for i in rewritten[:3]], NOW)
                records = _reread(path, records)
                continue
        write(path, records, indent=2 if action == 8 and path.suffix == ".json" else None)
        for cursor in (None, iso("2026-03-02 09:30"), iso("2026-03-02 12:00")):
            expected = parsed_whole_copy(path, cursor)
            assert answer(kept, cursor) == expected, (seed, step, action, cursor)
            assert answer(FileHelpdesk(path, page_size=3), cursor) == expected


def _twin(records: list[Any], i: int) -> bool:
    ids = [r.get("id") for r in records if isinstance(r, dict)]
    return ids.count(records[i].get("id")) > 1


def _reread(path: Path, records: list[Any]) -> list[Any]:
    """The records after a write by the desk, the unparsable texts kept as text."""
    if path.suffix == ".jsonl":
        out: list[Any] = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append(line)
        return out
    try:
        return list(json.loads(path.read_text())["records"])
    except ValueError:
        return records


def parsed_whole_copy(path: Path, cursor: str | None) -> list[Any] | str:
    """parsed_whole on a copy, so that the desks under test keep their index."""
    copy = path.with_name("whole" + path.suffix)
    copy.write_bytes(path.read_bytes())
    return parsed_whole(copy, cursor)


def refuse_whole_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any read of the whole file (a survey, a digest) fail the test."""
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the whole file was read")

    monkeypatch.setattr(FileHelpdesk, "_survey_document", refused)
    monkeypatch.setattr(file_module, "_file_digest", refused)
    monkeypatch.setattr(file_module, "_survey_jsonl", refused)


def test_a_file_as_last_read_or_written_is_not_read_whole(path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    """Its stat signature is the one the index noted: a fresh desk (a new run) reads the
    index and the texts after the cursor only, after a read and after its own rewrite."""
    write(path, [ticket(n, n) for n in range(1, 6)])
    answer(FileHelpdesk(path, page_size=3), None)
    FileHelpdesk(path).apply(ChangeSet("T-2", add_tags=("x",)), NOW)
    expected = parsed_whole_copy(path, iso("2026-03-02 09:03"))
    for _ in range(2):  # as the rewrite left it, then as a read left it
        with monkeypatch.context() as patched:
            refuse_whole_reads(patched)
            got = answer(FileHelpdesk(path, page_size=3), iso("2026-03-02 09:03"))
        assert got == expected and [r["tags"] for r in got[0][0]] == [[], [], ["x"]]


def test_an_edit_that_keeps_size_and_mtime_is_still_read(path: Path):
    """The change time gives it away: no one can set it back."""
    write(path, [ticket(1, 1, subject="aaaa"), ticket(2, 2)])
    desk = FileHelpdesk(path)
    answer(desk, None)
    before = path.stat()
    path.write_bytes(path.read_bytes().replace(b'"aaaa"', b'"bbbb"'))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns, "this file system keeps no change time"
    for reader in (desk, FileHelpdesk(path)):
        [(got, _, _)] = answer(reader, None)
        assert [r["subject"] for r in got] == ["bbbb", "Printer on fire"]


def layout_bytes(records: list[Any]) -> bytes:
    """A JSON file as the helpdesk lays it out (and as `write` does, for ASCII records)."""
    return ('{"records": [\n' + ",\n".join(json.dumps(r) for r in records) + "\n]}\n").encode()


def count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every text or span the file helpdesk hashes."""
    hashed: list[int] = []
    real = file_module.text_hash

    def counted(text: Any) -> bytes:
        hashed.append(len(text))
        return real(text)

    monkeypatch.setattr(file_module, "text_hash", counted)
    return hashed


def test_a_foreign_rewrite_in_the_layout_hashes_blocks_and_parses_what_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Another program rewrites 3 of 160 records (one longer, one shorter, one the same
    length): the unchanged blocks of 16 are one hash each, only the records of the three
    changed blocks are cut and hashed one by one, and only the changed ones are parsed (and
    those after the cursor made Records)."""
    path = tmp_path / "helpdesk.json"
    records = [ticket(n, n % 50) for n in range(1, 161)]
    write(path, records)
    answer(FileHelpdesk(path), None)
    records[5] = {**records[5], "subject": "a much longer subject than before"}
    records[70] = {**records[70], "subject": "s"}
    records[150] = {**records[150], "subject": "Printer on FIRE"}  # the same length
    write(path, records)
    cursor = iso("2026-03-02 09:48")  # minutes 49: the records 50, 100 and 150 after it
    expected = parsed_whole_copy(path, cursor)
    made = count_records(monkeypatch)
    hashed = count_hashes(monkeypatch)
    assert answer(FileHelpdesk(path, page_size=3), cursor) == expected
    assert len(made) == 3 + 3  # records 6, 71 and 151 parsed; 50, 100 and 150 returned
    one_by_one = [n for n in hashed if n < 1000]
    assert len(one_by_one) == 3 * 16 + 3  # three blocks cut, three texts returned
    assert len(hashed) - len(one_by_one) <= 160 // 16 + 3  # each block looked for once,
    # the changed ones hashed afresh


def test_a_rewrite_by_the_helpdesk_copies_the_rest_of_the_file_as_it_was(tmp_path: Path):
    """Batches after a read and after a foreign rewrite: the file is exactly the records
    laid out, the changed ones re-encoded, whatever was read or written before."""
    path = tmp_path / "helpdesk.json"
    records = [ticket(n, n % 60) for n in range(1, 101)]
    write(path, records)
    desk = FileHelpdesk(path)
    answer(desk, None)
    for step, numbers in enumerate([(1,), (2, 50, 100), (37,), (100, 99, 1, 64)]):
        desk.apply_many([ChangeSet(f"T-{n}", add_tags=(f"s{step}",)) for n in numbers], NOW)
        for n in numbers:
            records[n - 1] = {**records[n - 1], "tags": [*records[n - 1]["tags"], f"s{step}"],
                              "updated_at": "2026-03-02T12:00:00+00:00"}
        assert path.read_bytes() == layout_bytes(records), step
        if step == 1:  # someone else rewrites it in between
            records[10] = {**records[10], "subject": "by hand"}
            write(path, records)
            answer(desk, None)
    assert answer(FileHelpdesk(path, page_size=3), None) == parsed_whole_copy(path, None)


@pytest.mark.parametrize("seed", range(8))
def test_foreign_rewrites_of_a_larger_file_answer_as_a_whole_parse(
        tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch):
    """Files of a few blocks, rewritten by someone else in the helpdesk's layout with
    records changed (longer, shorter, same length), moved, inserted, removed, appended,
    made unusable or duplicated, sometimes in another layout (indented), interleaved with
    the helpdesk's own batches: every fetch answers as a whole parse. Half the seeds cut
    a changed block's texts one by one (a window too short for them), half at once."""
    rng = random.Random(seed)
    if seed % 2:
        monkeypatch.setattr(file_module, "WINDOW", -(1 << 20))
    path = tmp_path / "helpdesk.json"
    records: list[Any] = [ticket(n, rng.randrange(60)) for n in range(1, 70)]
    write(path, records)
    kept = FileHelpdesk(path, page_size=3)
    next_id = 70
    for step in range(16):
        for _ in range(rng.randrange(1, 4)):
            action = rng.randrange(8)
            i = rng.randrange(len(records))
            if action == 0:
                records[i] = {**records[i], "subject": "x" * rng.randrange(1, 40)}
            elif action == 1:
                minute = rng.randrange(60)
                records[i] = {**records[i], "updated_at": iso(f"2026-03-02 09:{minute:02d}")}
            elif action == 2:
                j = rng.randrange(len(records))
                records[i], records[j] = records[j], records[i]
            elif action == 3:
                records.insert(i, ticket(next_id, rng.randrange(60)))
                next_id += 1
            elif action == 4 and len(records) > 20:
                records.pop(i)
            elif action == 5:
                records.append(ticket(next_id, rng.randrange(60)))
                next_id += 1
            elif action == 6:
                records[i] = {**records[i], "kind": "spaceship"}
            else:
                records.insert(i, dict(records[rng.randrange(len(records))]))
        if step % 5 == 4:  # the helpdesk writes a few records
            ids = [r["id"] for r in records if r.get("kind") == "ticket"]
            unique = [x for x in ids if ids.count(x) == 1]
            kept.apply_many([ChangeSet(x, add_tags=(f"s{step}",)) for x in unique[:5]], NOW)
            records = list(json.loads(path.read_text())["records"])
        else:
            write(path, records, indent=2 if step % 7 == 6 else None)
        for cursor in (None, iso("2026-03-02 09:30")):
            expected = parsed_whole_copy(path, cursor)
            assert answer(kept, cursor) == expected, (seed, step, cursor)
            assert answer(FileHelpdesk(path, page_size=3), cursor) == expected


def test_a_refused_record_lengthened_or_moved_is_still_reported(tmp_path: Path):
    """A refused record (a number) at the end of a block made longer (the block's old
    bytes are still there, followed by more of the same text), then moved by an insertion:
    it is reported each time, at its place."""
    path = tmp_path / "helpdesk.json"
    records: list[Any] = [ticket(n, n) for n in range(1, 40)]
    records[15] = 12
    write(path, records)
    desk = FileHelpdesk(path, page_size=3)
    assert answer(desk, None) == parsed_whole_copy(path, None)
    records[15] = 123
    write(path, records)
    assert answer(desk, None) == parsed_whole_copy(path, None)
    records.insert(3, ticket(99, 7))
    write(path, records)
    got = answer(desk, None)
    assert got == parsed_whole_copy(path, None)
    assert got[0][1] == ["record #16: is not an object"]


def test_starts_are_the_offsets_of_each_text_after_its_gap():
    """Survey.starts (computed in C) against the plain definition: each text starts after
    the previous text's end plus its own gap; a changed length moves every later start."""
    rng = random.Random(5)
    for count in (0, 1, 2, 17, 1000):
        gaps = [rng.randint(0, 3) for _ in range(count)]
        lengths = [rng.randint(0, 500) for _ in range(count)]
        survey = Survey(b"", "json", gaps, lengths, [b""] * count, [None] * count,
                        [None] * count)
        expected, at = [], 0
        for gap, length in zip(gaps, lengths, strict=True):
            expected.append(at + gap)
            at += gap + length
        assert survey.starts() == expected
        if count:
            survey.change(b"", [(0, b"", "x", 0, lengths[0] + 7)])
            assert survey.starts() == [expected[0]] + [start + 7 for start in expected[1:]]
    with pytest.raises(ValueError, match="differ in number"):
        Survey(b"", "json", [1, 2], [3], [], [], []).starts()


def test_the_digest_of_a_file_in_the_layout_names_its_bytes():
    """`json_digest`: files in the helpdesk's layout that differ in any byte (a record, a
    separator, the head, the tail, a record moved across a block's end, one record more)
    get different digests, equal bytes the same one; a file in another layout gets its
    SHA-1, never a blocks digest (they differ in length)."""
    records = [ticket(n, n % 60) for n in range(1, 40)]
    base = layout_bytes(records)
    variants = {
        base,
        layout_bytes([*records[:16], {**records[16], "subject": "x"}, *records[17:]]),
        layout_bytes([*records[:15], records[16], records[15], *records[17:]]),
        layout_bytes(records[:32]), layout_bytes(records[:33]), layout_bytes(records[:1]),
        layout_bytes(records + [ticket(40)]),
        base.replace(b'{"records": [', b'{"x": 1, "records": ['),
        base.replace(b"]}\n", b'], "y": 2}\n'),
        json.dumps({"records": records}, indent=2).encode(),
        json.dumps({"records": records}).encode() + b"\n",
    }
    digests = {file_module.json_digest(content) for content in variants}
    assert len(digests) == len(variants)
    assert file_module.json_digest(bytes(base)) == file_module.json_digest(base)
    indented = json.dumps({"records": records}, indent=2).encode()
    assert file_module.json_digest(indented) == hashlib.sha1(indented).digest()
    assert len(file_module.json_digest(base)) == 21


@pytest.mark.parametrize("seed", range(6))
def test_the_digest_the_helpdesk_keeps_is_the_digest_of_the_file(tmp_path: Path, seed: int):
    """After every read and every batch (its own writes, foreign rewrites in and out of the
    layout between them), the digest the index and the held document name is the one a
    read of the file's bytes computes, so the next read trusts exactly this file (a file
    read in another layout has no index until a read finds it in the helpdesk's)."""
    rng = random.Random(seed)
    path = tmp_path / "helpdesk.json"
    records: list[Any] = [ticket(n, rng.randrange(60)) for n in range(1, rng.randrange(2, 60))]
    write(path, records, indent=2 if seed % 3 == 0 else None)
    desk = FileHelpdesk(path, page_size=3)
    for step in range(12):
        if rng.random() < 0.3:  # someone else rewrites it
            i = rng.randrange(len(records))
            records[i] = {**records[i], "subject": "y" * rng.randrange(1, 30)}
            write(path, records, indent=2 if rng.random() < 0.2 else None)
        answer(desk, None)
        assert desk._known is None or desk._known.digest == file_module.json_digest(
            path.read_bytes()), (seed, step, "read")
        ids = [r["id"] for r in records]
        chosen = rng.sample(ids, rng.randrange(1, min(6, len(ids)) + 1))
        desk.apply_many([ChangeSet(x, add_tags=(f"s{step}",)) for x in chosen], NOW)
        records = list(json.loads(path.read_text())["records"])
        written = file_module.json_digest(path.read_bytes())
        assert desk._document is not None and desk._document.digest == written, (seed, step)
        assert desk._known is None or desk._known.digest == written, (seed, step)
    assert answer(FileHelpdesk(path, page_size=3), None) == parsed_whole_copy(path, None)


def test_a_batch_hashes_only_the_blocks_it_changed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    """A batch of 2 changes to a 160-record file hashes the two records' blocks and their
    texts, not the file: the new digest comes from the index's other blocks."""
    path = tmp_path / "helpdesk.json"
    write(path, [ticket(n, n % 50) for n in range(1, 161)])
    desk = FileHelpdesk(path)
    answer(desk, None)
    hashed = count_hashes(monkeypatch)
    whole: list[int] = []
    real = hashlib.sha1

    def sha1(data: bytes = b"") -> Any:
        whole.append(len(data))
        return real(data)

    monkeypatch.setattr(file_module.hashlib, "sha1", sha1)
    desk.apply_many([ChangeSet("T-3", add_tags=("a",)), ChangeSet("T-90", add_tags=("b",))],
                    NOW)
    block = max(hashed)
    assert len(hashed) == 4 and block < path.stat().st_size // 5  # 2 texts, 2 blocks
    # besides those (text_hash is SHA-1 too), only the digest's short header: the file's
    # other bytes are not hashed again
    assert max(whole) == block and all(n < 100 for n in whole if n not in hashed)
    monkeypatch.undo()
    assert desk._known is not None
    assert desk._known.digest == file_module.json_digest(path.read_bytes())


def test_a_foreign_edit_in_place_is_one_line_appended_to_the_index(tmp_path: Path):
    """Another program changes 2 of 160 records in place: the index gets one line of those
    texts (and one of the signature), not a new survey of all 160, and a new desk that
    trusts the index answers as a whole parse; an edit that changes an id, or makes a
    record unusable, writes the index afresh (a line cannot say it), and so does one that
    would leave the lines holding changes for more than a tenth of the records (20 of
    160: every later read would apply them again)."""
    path = tmp_path / "helpdesk.json"
    records = [ticket(n, n % 50) for n in range(1, 161)]
    write(path, records)
    desk = FileHelpdesk(path, page_size=3)
    answer(desk, None)
    sidecar = sidecar_of(path)
    for step, edit in enumerate([
            {5: {"subject": "longer than it was before"}, 99: {"updated_at": iso("2026-03-02 "
                                                                                 "09:59")}},
            {7: {"id": "T-7000"}}, {8: {"kind": 7}}, {9: {"subject": "fine again"}},
            {i: {"subject": f"bulk {i}"} for i in range(20, 40)}]):
        whole = sidecar.read_bytes()
        first_line = whole.split(b"\n", 1)[0]
        for i, fields in edit.items():
            records[i] = {**records[i], **fields}
        write(path, records)
        assert answer(desk, None) == parsed_whole_copy(path, None), step
        now = sidecar.read_bytes()
        appended = now.startswith(whole)
        assert appended == (step in (0, 3)), step
        if appended:
            assert len(now) - len(whole) < 2000 and now.split(b"\n", 1)[0] == first_line
        refuse = FileHelpdesk(path, page_size=3)
        assert refuse._trusted(file_module._signature(path)) is not None, step  # no re-read
        assert answer(refuse, None) == parsed_whole_copy(path, None), step


def test_a_file_with_the_bytes_surveyed_but_another_signature_is_not_framed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The same bytes written again (a copy, a restore, an editor saving unchanged): the
    blocks are hashed where the index has them, one hash each, no text is cut or parsed,
    and the index stands as it was (a line of the new signature). A file whose blocks are
    the same bytes but with something else than `,\\n` between two of them is not that
    file: it is read afresh (here, in another layout, parsed whole)."""
    path = tmp_path / "helpdesk.json"
    write(path, [ticket(n, n % 50) for n in range(1, 161)])
    answer(FileHelpdesk(path), None)
    content = path.read_bytes()
    sidecar = sidecar_of(path).read_bytes()
    path.write_bytes(content)  # a new signature
    expected = parsed_whole_copy(path, None)
    made = count_records(monkeypatch)
    hashed = count_hashes(monkeypatch)
    desk = FileHelpdesk(path, page_size=3)
    assert answer(desk, None) == expected
    assert len(made) == 160  # the records after the cursor (all): none parsed to survey
    assert len(hashed) == 160 // 16 + 160  # each block once, each text returned once
    assert sidecar_of(path).read_bytes().startswith(sidecar)
    assert desk._known is not None and desk._known.digest == file_module.json_digest(content)
    desk.apply_many([ChangeSet("T-7", add_tags=("x",))], NOW)  # the document, from the index
    assert b'"x"' in path.read_bytes()
    monkeypatch.undo()
    starts = FileHelpdesk(path)
    answer(starts, None)
    assert starts._known is not None
    cut = starts._known.starts()[16] - 2  # the `,\n` between the first two blocks
    altered = path.read_bytes()
    altered = altered[:cut] + b",\r" + altered[cut + 2:]
    path.write_bytes(altered)
    fresh = FileHelpdesk(path, page_size=3)
    assert answer(fresh, None) == parsed_whole_copy(path, None)
    assert fresh._known is None  # not in the layout: no index until a write lays it out
