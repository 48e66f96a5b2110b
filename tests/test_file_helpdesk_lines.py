"""The embedded file helpdesk in JSON Lines (`*.jsonl`): read and rewritten as a stream."""

from __future__ import annotations

import json
import os
import re
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from conftest import at, iso, record_dict
from sla_sync.connector import ConflictError, ConnectorError, open_connector
from sla_sync.connector.file import FileHelpdesk, FileProblem
from sla_sync.connector.model import ChangeSet

NOW = at("2026-03-02 12:00")
#: The file helpdesk's index beside its file
#: (connector/file_index.py): a cache, not a leftover.
INDEX = ".sla-sync-index"


def ticket(record_id: str, updated: str = "2026-03-02 09:00", **fields: Any) -> dict[str, Any]:
    return record_dict(id=record_id, updated_at=iso(updated), **fields)


def write_lines(path: Path, *lines: Any) -> Path:
    """Each item is a record (encoded as JSON) or a str written as the line itself."""
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return path


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture
def desk_path(tmp_path: Path) -> Path:
    return tmp_path / "helpdesk.jsonl"


def test_fetch_reads_every_line_oldest_change_first_and_pages_by_cursor(desk_path: Path):
    write_lines(desk_path, ticket("T-1", "2026-03-02 10:00"), ticket("T-2", "2026-03-02 09:30"),
                "", ticket("T-3", "2026-03-02 10:01"))
    desk = FileHelpdesk(desk_path, page_size=2)
    assert [([r.id for r in p.records], p.cursor) for p in desk.fetch(None)] == [
        (["T-2", "T-1"], "2026-03-02T10:00:00+00:00"), (["T-3"], "2026-03-02T10:01:00+00:00")]
    assert [[r.id for r in p.records] for p in desk.fetch("2026-03-02T10:00:00+00:00")] == [
        ["T-3"]]


def test_a_line_that_is_not_json_is_reported_kept_and_the_rest_proceed(desk_path: Path):
    write_lines(desk_path, ticket("T-1"), '{"id": "T-2", oops}', record_dict(id=None),
                ticket("T-4"))
    desk = FileHelpdesk(desk_path)
    [page] = desk.fetch(None)
    assert [r.id for r in page.records] == ["T-1", "T-4"]
    # The line is ours to say; the column and reason are the json module's (they vary
    # between Python versions), so only their shape is pinned.
    invalid, no_id = (str(p) for p in page.problems)
    assert re.fullmatch(r"record #1: line 2:\d+: invalid JSON \(.+\)", invalid), invalid
    assert no_id == "record #2: has no id"
    desk.apply(ChangeSet("T-4", add_tags=("x",)), NOW)
    lines = lines_of(desk_path)
    assert lines[1:3] == ['{"id": "T-2", oops}', json.dumps(record_dict(id=None))]
    assert json.loads(lines[3])["tags"] == ["x"]


def test_a_batch_rewrites_only_its_lines_once_keeping_the_others_byte_for_byte(
        desk_path: Path, monkeypatch):
    write_lines(desk_path, *(ticket(f"T-{n}", vendor_rank=n) for n in range(1, 7)))
    before = lines_of(desk_path)
    renames: list[str] = []
    real_replace = os.replace

    def counted(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        renames.append(Path(dst).name)

    monkeypatch.setattr(os, "replace", counted)
    desk = FileHelpdesk(desk_path)
    results = desk.apply_many([ChangeSet("T-5", add_tags=("x",)),
                               ChangeSet("T-2", fields={"status": "pending"}, notes=("n",)),
                               ChangeSet("T-9", add_tags=("x",))], NOW)
    assert [r.record_id for r in results if r.error is None] == ["T-5", "T-2"]
    assert str(results[2].error) == f"{desk_path}: no record 'T-9'"
    assert renames == ["helpdesk.jsonl"]
    after = lines_of(desk_path)
    assert [n for n, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [1, 4]
    changed = json.loads(after[1])
    assert (changed["status"], changed["notes"][0]["text"], changed["vendor_rank"],
            changed["updated_at"]) == ("pending", "n", 2, "2026-03-02T12:00:00+00:00")


def test_offsets_follow_lines_that_grew_and_edits_made_by_others(desk_path: Path):
    write_lines(desk_path, *(ticket(f"T-{n}") for n in range(1, 5)))
    desk = FileHelpdesk(desk_path)
    list(desk.fetch(None))  # builds the index
    desk.apply_many([ChangeSet("T-1", notes=("a longer line now",)),
                     ChangeSet("T-3", add_tags=("x",))], NOW)
    assert desk.get("T-4").id == "T-4"  # type: ignore[union-attr]
    desk.apply(ChangeSet("T-4", add_tags=("y",)), NOW)
    # Someone else puts a line in front: every offset moves.
    desk_path.write_text(json.dumps(ticket("T-0")) + "\n" + desk_path.read_text())
    desk.apply(ChangeSet("T-2", add_tags=("z",)), NOW)
    tags = {r["id"]: r["tags"] for r in map(json.loads, lines_of(desk_path))}
    assert tags == {"T-0": [], "T-1": [], "T-2": ["z"], "T-3": ["x"], "T-4": ["y"]}


def test_a_conflict_writes_nothing(desk_path: Path):
    write_lines(desk_path, ticket("T-1", "2026-03-02 09:05"))
    before = desk_path.read_bytes()
    with pytest.raises(ConflictError):
        FileHelpdesk(desk_path).apply(
            ChangeSet("T-1", base_updated_at=at("2026-03-02 09:00"), add_tags=("x",)), NOW)
    assert desk_path.read_bytes() == before


def test_a_failed_rename_leaves_the_file_whole(desk_path: Path, monkeypatch):
    write_lines(desk_path, ticket("T-1"))
    before = desk_path.read_bytes()

    def refuse(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(FileProblem, match="No space left on device"):
        FileHelpdesk(desk_path).apply(ChangeSet("T-1", add_tags=("x",)), NOW)
    assert desk_path.read_bytes() == before
    assert [n for n in os.listdir(desk_path.parent) if not n.endswith(INDEX)] == [
        "helpdesk.jsonl"]


def test_a_rewrite_never_holds_the_whole_file(desk_path: Path):
    padding = "x" * 2000
    write_lines(desk_path, *(ticket(f"T-{n}", subject=padding) for n in range(4000)))
    size = desk_path.stat().st_size
    assert size > 8_000_000, "the test needs a file well above the copy chunk"
    desk = FileHelpdesk(desk_path)
    desk.get("T-0")  # the index is built by a streaming scan too
    tracemalloc.start()
    try:
        desk.apply_many([ChangeSet("T-10", add_tags=("x",)),
                         ChangeSet("T-3999", add_tags=("y",))], NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size / 2, f"peak {peak:,} bytes for a {size:,}-byte file"
    assert json.loads(lines_of(desk_path)[3999])["tags"] == ["y"]


def test_a_jsonl_seed_is_copied_byte_for_byte(tmp_path: Path):
    seed = write_lines(tmp_path / "seed.jsonl", ticket("T-1"))
    desk = open_connector({"type": "file", "path": "work/h.jsonl", "seed": "seed.jsonl"},
                          tmp_path)
    assert [r.id for r in next(desk.fetch(None)).records] == ["T-1"]
    assert (tmp_path / "work/h.jsonl").read_bytes() == seed.read_bytes()


def test_a_missing_file_is_a_connector_error(desk_path: Path):
    with pytest.raises(ConnectorError, match=r"cannot read the helpdesk file \(No such file"):
        next(FileHelpdesk(desk_path).fetch(None))
