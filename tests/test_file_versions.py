"""The file helpdesk's version tokens (`connector.base.Mirrored`): a record read again
exactly as the mirror holds it, most often one sla-sync wrote itself, is neither parsed nor
mirrored again, and nothing else changes: another state file still reads those writes, an
edit by anyone is read, and the cursor moves past what was left out."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import act, cond, iso, record_dict, rule
from sla_sync.connector import file as file_module
from sla_sync.connector.base import MemoryInProcess, fetch
from sla_sync.connector.file import FileHelpdesk
from sla_sync.connector.model import RecordError, parse_instant
from sla_sync.rules.policy import check_policy
from sla_sync.sync_run import RunReport, run_sync
from sla_sync.sync_state import StateStore

#: Tags every record it is run on, and writes nothing more once the tag is there.
POLICY = check_policy({
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [rule("tag", cond("status", "equal_to", "open"), act("add_tag", tag="seen"))],
}, "versions")
NOW = parse_instant(iso("2026-03-02 09:30"), "now")


def when(text: str) -> datetime:
    return parse_instant(iso(text), "now")


def in_layout(path: Path, records: list[dict[str, Any]]) -> None:
    """Write the file as the connector lays it out (one record a line): a survey then
    knows each record's text, and so its token."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        return
    path.write_text('{"records": [\n' + ",\n".join(
        json.dumps(r, ensure_ascii=False) for r in records) + "\n]}\n")


def desk(tmp_path: Path, count: int = 5, suffix: str = ".json") -> Path:
    path = tmp_path / f"helpdesk{suffix}"
    in_layout(path, [record_dict(id=f"T-{n}", updated_at=iso(f"2026-03-02 09:0{n}"))
                     for n in range(1, count + 1)])
    return path


class Mirroring:
    """Follows what the loop mirrors."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ids: list[str] = []
        real = StateStore.mirror

        def mirror(store: StateStore, records: Any, *args: Any, **kwargs: Any) -> None:
            records = list(records)
            self.ids.extend(r.id for r in records)
            real(store, records, *args, **kwargs)
        monkeypatch.setattr(StateStore, "mirror", mirror)


def sync(path: Path, store: StateStore, now: datetime = NOW) -> RunReport:
    report = run_sync(FileHelpdesk(path), POLICY, store, now)
    assert report.errors == 0, report.failures
    return report


def mirror_rows(store: StateStore) -> dict[str, tuple[str, str | None]]:
    return {row["id"]: (row["data"], row["wake_at"]) for row in store.db.execute(
        "SELECT id, data, wake_at FROM records")}


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_the_sync_after_a_write_neither_parses_nor_mirrors_what_it_wrote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    path = desk(tmp_path, suffix=suffix)
    store = StateStore(tmp_path / "state.db")
    first = sync(path, store)
    assert (first.read, first.writes, first.unchanged) == (5, 5, 0)
    kept = mirror_rows(store)
    mirrored = Mirroring(monkeypatch)
    built: list[int] = []
    real = file_module.Record.from_dict

    def from_dict(raw: Any, position: int | None = None) -> Any:
        built.append(1)
        return real(raw, position)
    monkeypatch.setattr(file_module.Record, "from_dict", staticmethod(from_dict))
    again = sync(path, store, when("2026-03-02 09:31"))
    # The five writes moved past the cursor: read, found to be the mirror's, left out.
    assert (again.read, again.unchanged, again.evaluated, again.writes) == (5, 5, 0, 0)
    assert built == [] and mirrored.ids == []
    assert mirror_rows(store) == kept
    # The cursor is past them: the next sync reads nothing at all.
    last = sync(path, store, when("2026-03-02 09:32"))
    assert (last.read, last.unchanged) == (0, 0)


def test_another_state_file_on_the_same_desk_still_reads_those_writes(
        tmp_path: Path) -> None:
    path = desk(tmp_path)
    sync(path, StateStore(tmp_path / "state.db"))
    other = StateStore(tmp_path / "other.db")
    seen = sync(path, other, when("2026-03-02 09:31"))
    assert (seen.read, seen.unchanged, seen.evaluated) == (5, 0, 5)
    assert len(mirror_rows(other)) == 5


def test_an_edit_by_someone_else_after_the_write_is_read(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = desk(tmp_path)
    store = StateStore(tmp_path / "state.db")
    sync(path, store)
    records = json.loads(path.read_text())["records"]
    records[2].update(status="pending", updated_at=iso("2026-03-02 09:40"))
    in_layout(path, records)  # the other four texts as they were
    mirrored = Mirroring(monkeypatch)
    again = sync(path, store, when("2026-03-02 09:41"))
    assert (again.read, again.unchanged, again.evaluated) == (5, 4, 1)
    assert mirrored.ids == ["T-3"]
    assert json.loads(store.db.execute("SELECT data FROM records WHERE id = 'T-3'")
                      .fetchone()["data"])["status"] == "pending"


def test_a_page_of_records_all_left_out_still_moves_the_cursor(tmp_path: Path) -> None:
    path = desk(tmp_path, count=3)
    store = StateStore(tmp_path / "state.db")
    sync(path, store)
    records = json.loads(path.read_text())["records"]
    latest = max(parse_instant(r["updated_at"], "updated_at") for r in records)
    pages = list(fetch(FileHelpdesk(path), iso("2026-03-02 09:00"), MemoryInProcess(), store))
    assert [(p.records, p.unchanged) for p in pages] == [([], [(0, "T-1"), (0, "T-2"),
                                                               (0, "T-3")])]
    cursor = pages[-1].cursor
    assert cursor is not None and parse_instant(cursor, "cursor") == latest
    # without the mirror's tokens, the same fetch hands all three over, with theirs
    plain = list(fetch(FileHelpdesk(path), iso("2026-03-02 09:00"), MemoryInProcess()))
    assert [len(p.records) for p in plain] == [3] and plain[-1].cursor == cursor
    assert plain[0].versions == store.versions(["T-1", "T-2", "T-3"])


def test_the_cursor_covers_records_left_out_after_the_last_one_handed_over(
        tmp_path: Path) -> None:
    path = desk(tmp_path, count=3)
    store = StateStore(tmp_path / "state.db")
    sync(path, store)
    records = json.loads(path.read_text())["records"]
    written = records[0]["updated_at"]  # every write has the sync's now
    records[0].update(status="pending", updated_at=iso("2026-03-02 09:20"))  # before it
    in_layout(path, records)
    pages = list(fetch(FileHelpdesk(path), iso("2026-03-02 09:05"), MemoryInProcess(), store))
    # in the page's order: T-1 first (09:20), then the two written at 09:30
    assert [([r.id for r in p.records], p.unchanged) for p in pages] == [
        (["T-1"], [(1, "T-2"), (1, "T-3")])]
    assert parse_instant(pages[-1].cursor or "", "cursor") == parse_instant(written, "w")


def test_a_copied_desk_is_read_again_without_parsing_what_the_mirror_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A desk folder copied elsewhere (or a helpdesk path renamed) has another identity, so
    its cursor starts again: every record is read, and those the mirror holds are left
    out."""
    (tmp_path / "a").mkdir()
    path = desk(tmp_path / "a")
    store = StateStore(tmp_path / "state.db")
    sync(path, store)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    mirrored = Mirroring(monkeypatch)
    again = sync(tmp_path / "b" / path.name, store, when("2026-03-02 09:31"))
    assert (again.read, again.unchanged, again.evaluated, again.writes) == (5, 5, 0, 0)
    assert mirrored.ids == []


def test_a_file_parsed_whole_gives_no_tokens(tmp_path: Path) -> None:
    """A file not in the connector's layout (indented, say) has no text per record to
    name: its records are mirrored without a token, and read again in full."""
    path = tmp_path / "helpdesk.json"
    path.write_text(json.dumps({"records": [record_dict(id="T-1", status="pending")]},
                               indent=2))
    store = StateStore(tmp_path / "state.db")
    sync(path, store)
    assert store.versions(["T-1"]) == {}
    pages = list(fetch(FileHelpdesk(path), None, MemoryInProcess(), store))
    assert [len(p.records) for p in pages] == [1] and pages[0].versions == {}


def test_the_mirror_gives_no_token_for_a_record_skipped_since(tmp_path: Path) -> None:
    path = desk(tmp_path, count=2)
    store = StateStore(tmp_path / "state.db")
    sync(path, store)
    assert set(store.versions(["T-1", "T-2", "T-9"])) == {"T-1", "T-2"}
    store.mirror([], 9, [RecordError("subject: bad", record_id="T-2")])
    assert set(store.versions(["T-1", "T-2"])) == {"T-1"}
    record = store.record("T-1")
    assert record is not None
    store.mirror([record], 9)  # mirrored again without a token: it loses the one it had
    assert store.versions(["T-1"]) == {}
