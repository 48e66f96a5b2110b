"""What a connector keeps beside its cursor (`connector.base.Memory`): staged by a run,
moved with its cursor in one transaction, dropped when the run does not move it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import iso, record_dict, write_project
from sla_sync.connector.base import ConnectorError, Memory, MemoryInProcess, Mirrored, Page
from sla_sync.connector.file import FileHelpdesk
from sla_sync.connector.model import parse_instant
from sla_sync.rules.policy import load_policy
from sla_sync.sync_run import run_sync
from sla_sync.sync_state import MEMORY_CHUNK, StateStore

NOW = parse_instant(iso("2026-03-02 10:20"), "now")
POLICY = {"slas": [{"name": "standard", "targets": {"first_response": "1h"}}], "rules": []}


def test_a_run_sees_what_it_kept_and_the_next_run_only_what_moved_with_a_cursor(
        tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    first = store.memory("desk", store.begin_run(NOW, False))
    first.keep({"1": "one", "2": "two"})
    assert first.recall(["1", "2", "3"]) == {"1": "one", "2": "two"}
    # A run that never moved its cursor (it failed, stopped, or was a dry run) kept nothing.
    second_run = store.begin_run(NOW, False)
    second = store.memory("desk", second_run)
    assert second.recall(["1", "2"]) == {}
    second.keep({"1": "one", "2": "two"})
    store.move_cursor("desk", "c1", second_run)
    third_run = store.begin_run(NOW, False)
    third = store.memory("desk", third_run)
    assert third.recall(["1", "2"]) == {"1": "one", "2": "two"}
    third.keep({"1": None, "2": "TWO", "4": "four"})  # None: the entry goes
    assert third.recall(["1", "2", "4"]) == {"2": "TWO", "4": "four"}
    assert store.memory_staged("desk", third_run)
    store.move_cursor("desk", "c2", third_run)
    assert not store.memory_staged("desk", third_run)
    rows = store.db.execute("SELECT key, value FROM memory ORDER BY key").fetchall()
    assert [tuple(row) for row in rows] == [("2", "TWO"), ("4", "four")]
    # Each connector identity has its own.
    assert store.memory("other", store.begin_run(NOW, False)).recall(["2", "4"]) == {}


def test_a_recall_of_more_keys_than_a_query_takes_reads_them_all(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    run_id = store.begin_run(NOW, False)
    memory = store.memory("desk", run_id)
    keys = [str(n) for n in range(MEMORY_CHUNK * 2 + 7)]
    memory.keep({key: f"v{key}" for key in keys})
    store.move_cursor("desk", "c", run_id)
    memory = store.memory("desk", store.begin_run(NOW, False))
    memory.keep({keys[-1]: None})
    found = memory.recall(keys)
    assert len(found) == len(keys) - 1 and found[keys[0]] == "v0" and keys[-1] not in found


class Counting(FileHelpdesk):
    """A file helpdesk that keeps in its memory how often each record was read, and reads a
    page of no records first (as Zendesk reads its event export into its memory)."""

    remembers = True

    def __init__(self, *args: Any, fail_at: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_at = fail_at
        self.seen: list[dict[str, str]] = []

    def fetch(self, cursor: str | None, memory: Memory | None = None,
              mirrored: Mirrored | None = None) -> Iterator[Page]:
        assert memory is not None
        yield Page(records=[], cursor=cursor)
        for number, page in enumerate(super().fetch(cursor, mirrored)):
            ids = [r.id for r in page.records]
            kept = memory.recall(ids)
            memory.keep({i: str(int(kept.get(i, "0")) + 1) for i in ids})
            self.seen.append(memory.recall(ids))
            if number == self.fail_at:  # after keeping what the page told
                raise ConnectorError("the helpdesk went away", retriable=True)
            yield page


def counted(tmp_path: Path) -> dict[str, str]:
    rows = StateStore(tmp_path / "state.db").db.execute("SELECT key, value FROM memory")
    return {row["key"]: row["value"] for row in rows}


@pytest.mark.parametrize("how", ["failed", "stopped", "dry run"])
def test_a_run_that_does_not_move_the_cursor_leaves_the_memory_as_it_was(
        tmp_path: Path, how: str) -> None:
    records = [record_dict(id=f"T-{n}", updated_at=iso("2026-03-02 09:00")) for n in range(3)]
    write_project(tmp_path, records, POLICY)
    policy = load_policy(tmp_path / "policy.json")

    def sync(**kwargs: Any) -> Any:
        connector = Counting(tmp_path / "helpdesk.json", fail_at=kwargs.pop("fail_at", None))
        with StateStore(tmp_path / "state.db") as store:
            return run_sync(connector, policy, store, NOW, **kwargs), connector

    report, _ = sync()
    assert report.status == "ok" and counted(tmp_path) == {"T-0": "1", "T-1": "1", "T-2": "1"}
    cursor = StateStore(tmp_path / "state.db").cursor(Counting(tmp_path / "helpdesk.json")
                                                      .identity)
    (tmp_path / "helpdesk.json").write_text(json.dumps({"records": [
        {**r, "updated_at": iso("2026-03-02 09:30")} for r in records]}))
    if how == "failed":
        with pytest.raises(ConnectorError):
            sync(fail_at=0)
    elif how == "stopped":
        report, connector = sync(should_stop=lambda: True)
        assert report.stopped and connector.seen == []  # stopped after the first page
    else:
        report, connector = sync(dry_run=True)
        assert connector.seen[0]["T-0"] == "2"  # the run saw what it kept
    assert counted(tmp_path) == {"T-0": "1", "T-1": "1", "T-2": "1"}
    with StateStore(tmp_path / "state.db") as store:
        assert store.cursor(f"file:{(tmp_path / 'helpdesk.json').resolve()}") == cursor
        if how == "dry run":  # what a dry run kept goes at its end
            assert store.db.execute("SELECT count(*) FROM memory_staged").fetchone()[0] == 0
    report, _ = sync()
    assert report.status == "ok" and report.cursor_moved
    assert counted(tmp_path) == {"T-0": "2", "T-1": "2", "T-2": "2"}
    with StateStore(tmp_path / "state.db") as store:
        assert store.db.execute("SELECT count(*) FROM memory_staged").fetchone()[0] == 0


def test_a_connector_without_a_memory_is_fetched_as_before(tmp_path: Path) -> None:
    write_project(tmp_path, [record_dict(id="T-1")], POLICY)
    connector = FileHelpdesk(tmp_path / "helpdesk.json")
    assert not hasattr(connector, "remembers")
    with StateStore(tmp_path / "state.db") as store:
        report = run_sync(connector, load_policy(tmp_path / "policy.json"), store, NOW)
        assert report.read == 1 and report.cursor_moved
        assert store.db.execute("SELECT count(*) FROM memory").fetchone()[0] == 0


def test_the_in_process_memory_keeps_and_forgets() -> None:
    memory = MemoryInProcess({"a": "1"})
    memory.keep({"a": None, "b": "2"})
    assert memory.recall(["a", "b", "c"]) == {"b": "2"} and memory.entries == {"b": "2"}
