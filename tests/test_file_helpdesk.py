"""The embedded file helpdesk: fetch by cursor, apply a change, write atomically."""

from __future__ import annotations

import json
import os
import re
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
STAMP = "2026-03-02T12:00:00+00:00"


def fetch(path: Path, cursor: str | None = None, **options: Any) -> list[tuple[list[str], str]]:
    """(ids, cursor) per page."""
    return [([r.id for r in page.records], page.cursor)
            for page in FileHelpdesk(path, **options).fetch(cursor)]


def stored(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def ticket(record_id: str, updated: str, **fields: Any) -> dict[str, Any]:
    return record_dict(id=record_id, updated_at=iso(updated), **fields)


# -- fetch ----------------------------------------------------------------------------------

def test_first_fetch_returns_every_record_oldest_change_first(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 10:00"), ticket("T-2", "2026-03-02 09:30"))
    assert fetch(path) == [(["T-2", "T-1"], "2026-03-02T10:00:00+00:00")]


def test_later_fetch_returns_only_records_updated_strictly_after_the_cursor(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:30"), ticket("T-2", "2026-03-02 10:00"),
                    ticket("T-3", "2026-03-02 10:01"))
    assert fetch(path, "2026-03-02T11:00:00+01:00") == [
        (["T-3"], "2026-03-02T10:01:00+00:00")]


def test_fetch_with_nothing_new_yields_one_empty_page_keeping_the_cursor(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 10:00"))
    assert fetch(path, "2026-03-02T10:00:00+00:00") == [([], "2026-03-02T10:00:00+00:00")]


def test_pages_never_split_records_sharing_an_updated_at(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"), ticket("T-2", "2026-03-02 10:00"),
                    ticket("T-3", "2026-03-02 10:00"), ticket("T-4", "2026-03-02 11:00"))
    assert fetch(path, page_size=2) == [
        (["T-1", "T-2", "T-3"], "2026-03-02T10:00:00+00:00"),
        (["T-4"], "2026-03-02T11:00:00+00:00")]


def test_malformed_records_are_skipped_and_reported_while_the_rest_are_returned(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"), record_dict(id=None),
                    record_dict(id="T-3", updated_at="2026-03-02 10:00"),
                    record_dict(id="T-4", kind="deal"), "T-5")
    [page] = FileHelpdesk(path).fetch(None)
    assert [r.id for r in page.records] == ["T-1"]
    assert [str(p) for p in page.problems] == [
        "record #1: has no id",
        "record 'T-3': updated_at: '2026-03-02 10:00' has no UTC offset "
        "(refusing to guess a timezone)",
        "record 'T-4': kind: unknown kind 'deal' (expected one of ticket, lead)",
        "record #4: is not an object"]


def test_invalid_json_names_the_file_line_and_column(tmp_path: Path):
    path = tmp_path / "helpdesk.json"
    path.write_text('{"records": [\n  {"id": "T-1",}\n]}')
    with pytest.raises(ConnectorError) as info:
        next(FileHelpdesk(path).fetch(None))
    # The line is sla-sync's to say; the column and the reason are the interpreter's json
    # module's (Python 3.13 words a trailing comma differently), so only their shape is pinned.
    assert re.fullmatch(rf"{re.escape(str(path))}:2:\d+: invalid JSON \(.+\)", str(info.value))


def test_missing_file_is_a_connector_error(tmp_path: Path):
    path = tmp_path / "helpdesk.json"
    with pytest.raises(ConnectorError) as info:
        next(FileHelpdesk(path).fetch(None))
    assert (str(info.value), info.value.retriable) == (
        f"{path}: cannot read the helpdesk file (No such file or directory); check the path "
        "and that its folder exists", False)


# -- seed -----------------------------------------------------------------------------------

def test_seed_is_copied_on_first_load_and_never_written(tmp_path: Path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"records": [ticket("T-1", "2026-03-02 09:00")]}, indent=2) + "\n")
    seed_bytes = seed.read_bytes()
    path = tmp_path / "work" / "helpdesk.json"
    desk = FileHelpdesk(path, seed=seed)
    assert [r.id for r in next(desk.fetch(None)).records] == ["T-1"]
    assert path.read_bytes() == seed_bytes
    desk.apply(ChangeSet("T-1", fields={"priority": "high"}), NOW)
    assert seed.read_bytes() == seed_bytes
    assert stored(path)["records"][0]["priority"] == "high"


def test_invalid_seed_json_is_a_connector_error_naming_the_seed(tmp_path: Path):
    seed = tmp_path / "seed.json"
    seed.write_text('{"records": [,]}')
    with pytest.raises(ConnectorError, match=r"seed\.json:1:14: invalid JSON"):
        next(FileHelpdesk(tmp_path / "helpdesk.json", seed=seed).fetch(None))


# -- apply ----------------------------------------------------------------------------------

def test_apply_sets_fields_level_and_updated_at(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"))
    FileHelpdesk(path).apply(ChangeSet("T-1", fields={"priority": "high", "group": "tier2",
                                                      "assignee": "ana"},
                                       escalation_level=1), NOW)
    assert stored(path)["records"] == [ticket("T-1", "2026-03-02 12:00", priority="high",
                                              group="tier2", assignee="ana",
                                              escalation_level=1)]


def test_apply_merges_tags_and_appends_notes_stamped_now(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00", tags=["vip", "sla_warning"],
                           notes=[{"at": iso("2026-03-02 09:10"), "text": "first"}]))
    FileHelpdesk(path).apply(ChangeSet("T-1", add_tags=("sla_breach", "vip"),
                                       remove_tags=("sla_warning",), notes=("second",)), NOW)
    [record] = stored(path)["records"]
    assert record["tags"] == ["vip", "sla_breach"]
    assert record["notes"] == [{"at": "2026-03-02T09:10:00+00:00", "text": "first"},
                               {"at": STAMP, "text": "second"}]


def test_apply_appends_status_history_when_the_status_changes(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"))
    FileHelpdesk(path).apply(ChangeSet("T-1", fields={"status": "pending"}), NOW)
    [record] = stored(path)["records"]
    assert (record["status"], record["status_history"]) == (
        "pending", [{"at": STAMP, "status": "pending"}])


def test_apply_adds_no_status_history_when_the_status_is_unchanged(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"))
    FileHelpdesk(path).apply(ChangeSet("T-1", fields={"status": "open"}), NOW)
    assert stored(path)["records"][0]["status_history"] == []


def test_apply_keeps_fields_it_does_not_know(tmp_path: Path):
    path = tmp_path / "helpdesk.json"
    other = record_dict(id="T-2", vendor_rank=7)
    path.write_text(json.dumps({"version": 3, "exported_by": "crm", "records": [
        record_dict(vendor_rank=3, sla_notes={"x": [1, 2]}), other]}))
    FileHelpdesk(path).apply(ChangeSet("T-1", add_tags=("vip",)), NOW)
    data = stored(path)
    assert (data["version"], data["exported_by"]) == (3, "crm")
    assert (data["records"][0]["vendor_rank"], data["records"][0]["sla_notes"]) == (
        3, {"x": [1, 2]})
    assert data["records"][1] == other


def test_apply_returns_the_record_as_written(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"))
    desk = FileHelpdesk(path)
    written = desk.apply(ChangeSet("T-1", fields={"status": "pending"}, notes=("n",)), NOW)
    assert written == desk.get("T-1")
    assert (written.status, written.updated_at) == ("pending", NOW)


def test_apply_accepts_a_base_version_written_in_another_offset(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"))
    base = at("2026-03-02 10:00", tz="Europe/Berlin")
    FileHelpdesk(path).apply(ChangeSet("T-1", base_updated_at=base, add_tags=("x",)), NOW)
    assert stored(path)["records"][0]["tags"] == ["x"]


def test_apply_to_a_record_changed_since_it_was_read_conflicts_and_writes_nothing(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:05"))
    before = path.read_bytes()
    change = ChangeSet("T-1", base_updated_at=at("2026-03-02 09:00"), add_tags=("x",))
    with pytest.raises(ConflictError) as info:
        FileHelpdesk(path).apply(change, NOW)
    assert (str(info.value), info.value.record_id, info.value.retriable) == (
        "record 'T-1' changed since it was read (updated_at 2026-03-02T09:05:00+00:00, "
        "planned on 2026-03-02T09:00:00+00:00)", "T-1", True)
    assert path.read_bytes() == before


def test_apply_to_an_unknown_record_names_it(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"))
    with pytest.raises(ConnectorError) as info:
        FileHelpdesk(path).apply(ChangeSet("T-9", add_tags=("x",)), NOW)
    assert (str(info.value), info.value.record_id) == (f"{path}: no record 'T-9'", "T-9")


# -- atomic writes --------------------------------------------------------------------------

def test_failed_rename_leaves_the_file_whole_and_no_temporary_file(helpdesk, monkeypatch):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"))
    before = path.read_bytes()

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(FileProblem, match="No space left on device"):
        FileHelpdesk(path).apply(ChangeSet("T-1", add_tags=("x",)), NOW)
    assert path.read_bytes() == before
    assert [n for n in os.listdir(path.parent) if not n.endswith(INDEX)] == ["helpdesk.json"]


def test_write_failing_half_way_leaves_the_file_whole_and_no_temporary_file(helpdesk,
                                                                            monkeypatch):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"))
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class HalfWritten:
        """The temporary file: its first write stops half way with an I/O error."""

        def __init__(self, fd: int, *args: Any, **kwargs: Any):
            self.file = real_fdopen(fd, *args, **kwargs)

        def __enter__(self) -> HalfWritten:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.file.close()

        def write(self, data: Any) -> None:
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdopen", HalfWritten)
    with pytest.raises(FileProblem, match="Input/output error"):
        FileHelpdesk(path).apply(ChangeSet("T-1", add_tags=("x",)), NOW)
    assert path.read_bytes() == before
    assert [n for n in os.listdir(path.parent) if not n.endswith(INDEX)] == ["helpdesk.json"]


# -- open_connector -------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "message"), [
    ({"type": "jira"}, "connector.type: unknown connector type 'jira' "
                         "(known: file, zendesk, freshdesk, hubspot, rt, jsm)"),
    ({"type": "file", "path": "h.json", "pth": "x"},
     "connector.pth: unknown setting for a file connector (known: batch_size, page_size, path, "
     "seed, type)"),
    ({"type": "file"}, "connector.path: the helpdesk file is required for type: file"),
], ids=["unknown-type", "unknown-setting", "missing-path"])
def test_open_connector_errors_name_the_key(tmp_path: Path, settings, message):
    with pytest.raises(ValueError) as info:
        open_connector(settings, tmp_path)
    assert str(info.value) == message


def test_open_connector_resolves_paths_against_the_base_folder(tmp_path: Path):
    desk = open_connector({"type": "file", "path": "data/h.json", "seed": "seed.json",
                           "page_size": 5}, tmp_path)
    assert (desk.path, desk.seed, desk.page_size) == (
        tmp_path / "data" / "h.json", tmp_path / "seed.json", 5)


# -- cost of a write ------------------------------------------------------------------------

@pytest.fixture
def renames(monkeypatch) -> list[str]:
    """The file names each atomic rewrite renamed into place, in order."""
    real_replace = os.replace
    done: list[str] = []

    def counted(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        done.append(Path(dst).name)

    monkeypatch.setattr(os, "replace", counted)
    return done


def test_a_batch_is_one_rewrite_and_a_batch_of_conflicts_none(helpdesk, renames):
    path = helpdesk(*(ticket(f"T-{n}", "2026-03-02 09:00") for n in range(1, 6)))
    desk = FileHelpdesk(path)
    results = desk.apply_many([ChangeSet(f"T-{n}", add_tags=("x",)) for n in range(1, 6)], NOW)
    assert [r.error for r in results] == [None] * 5
    stale = at("2026-03-02 08:00")
    desk.apply_many([ChangeSet("T-1", base_updated_at=stale, add_tags=("y",))], NOW)
    assert renames == ["helpdesk.json"]
    assert [r["tags"] for r in stored(path)["records"]] == [["x"]] * 5


def test_rewrites_put_one_record_per_line_and_keep_other_keys(tmp_path: Path):
    path = tmp_path / "helpdesk.json"
    path.write_text(json.dumps({"version": 3, "records": [
        ticket("T-1", "2026-03-02 09:00"), ticket("T-2", "2026-03-02 09:00")]}, indent=2))
    FileHelpdesk(path).apply(ChangeSet("T-2", add_tags=("x",)), NOW)
    lines = path.read_text().splitlines()
    assert (lines[0], lines[-1]) == ('{"version": 3, "records": [', "]}")
    assert [json.loads(line.rstrip(","))["id"] for line in lines[1:-1]] == ["T-1", "T-2"]


def test_an_edit_by_someone_else_between_writes_is_seen_even_at_the_same_size(helpdesk):
    path = helpdesk(ticket("T-1", "2026-03-02 09:00"), ticket("T-2", "2026-03-02 09:00"))
    desk = FileHelpdesk(path)
    desk.apply(ChangeSet("T-1", add_tags=("x",)), NOW)
    text = path.read_text()
    edited = text.replace('"status": "open"', '"status": "hold"', 1)
    assert len(edited) == len(text) and edited != text
    path.write_text(edited)
    assert desk.get("T-1").status == "hold"  # type: ignore[union-attr]
    desk.apply(ChangeSet("T-2", add_tags=("y",)), NOW)
    assert [r["status"] for r in stored(path)["records"]] == ["hold", "open"]


@pytest.mark.parametrize("name", ["helpdesk.json", "helpdesk.jsonl"])
def test_every_copy_of_a_duplicated_id_is_skipped_reported_and_never_written(tmp_path: Path,
                                                                               name: str):
    path = tmp_path / name
    first, second = ticket("T-1", "2026-03-02 09:00"), ticket("T-1", "2026-03-02 08:00")
    other = ticket("T-2", "2026-03-02 08:30")
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in (first, other, second)))
    else:
        path.write_text(json.dumps({"records": [first, other, second]}))
    before = path.read_bytes()
    desk = FileHelpdesk(path)
    [page] = list(desk.fetch(None))
    assert [r.id for r in page.records] == ["T-2"]
    assert [(p.record_id, p.position) for p in page.problems] == [("T-1", 0), ("T-1", 2)]
    assert "shares its id with #2" in str(page.problems[0])
    with pytest.raises(ConnectorError, match="shares its id"):
        desk.get("T-1")
    results = desk.apply_many([ChangeSet("T-1", add_tags=("x",)),
                               ChangeSet("T-2", add_tags=("y",))], NOW)
    assert isinstance(results[0].error, ConnectorError) and results[1].error is None
    assert path.read_bytes() != before
    assert [(r["id"], r.get("tags") or []) for r in _records(path)] == [
        ("T-1", []), ("T-2", ["y"]), ("T-1", [])]


def _records(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return stored(path)["records"]


@pytest.mark.parametrize("name", ["helpdesk.json", "helpdesk.jsonl"])
def test_a_record_made_unusable_in_the_file_after_it_was_read_fails_its_write_only(
        tmp_path: Path, name: str):
    path = tmp_path / name
    good, edited = ticket("T-1", "2026-03-02 09:00"), ticket("T-2", "2026-03-02 09:00")
    edited["status_history"] = [{"at": iso("2026-03-02 09:30"), "status": "open"},
                                {"at": iso("2026-03-02 09:10"), "status": "pending"}]
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in (good, edited)))
    else:
        path.write_text(json.dumps({"records": [good, edited]}))
    results = FileHelpdesk(path).apply_many([ChangeSet("T-1", add_tags=("x",)),
                                             ChangeSet("T-2", add_tags=("x",))], NOW)
    assert results[0].error is None
    assert isinstance(results[1].error, ConnectorError)
    assert results[1].error.record_id == "T-2"
    assert "not in time order; not written" in str(results[1].error)
