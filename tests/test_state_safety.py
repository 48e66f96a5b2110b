"""The state file under damage: created private, refused whole when it cannot be trusted
(nothing read, nothing written), backed up before a migration. Real SQLite files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from conftest import act, cli, cond, iso, record_dict, rule, write_project
from sla_sync.sync_state import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, StateError, StateStore

POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [rule("breach", {"all": [cond("first_response_breached", "is_true")]},
                   act("add_tag", tag="sla_breach"), act("add_note", text="{id} overdue"))],
}


def project(tmp_path: Path, count: int = 3) -> Path:
    records = [record_dict(id=f"T-{n}", subject="x" * 400) for n in range(1, count + 1)]
    return write_project(tmp_path, records, POLICY)


def run(config: Path, minute: str = "10:20") -> Any:
    return cli("run", "--config", str(config), "--now", iso(f"2026-03-02 {minute}"))


def digest(*paths: Path) -> list[str | None]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_state_file_is_private_and_announced_as_a_first_run(tmp_path: Path) -> None:
    config = project(tmp_path)
    first = run(config)
    assert first.exit_code == 0
    assert "NEW STATE FILE: " in first.stderr and "state.db did not exist" in first.stderr
    assert mode(tmp_path / "state.db") == 0o600
    second = run(config, "10:30")
    assert second.exit_code == 0 and "NEW STATE FILE" not in second.stderr
    assert "first_run" not in second.stderr


def test_the_wal_and_shm_files_are_private_too(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.db") as store:
        store.begin_run(sqlite_now(), dry_run=False)  # a write: the WAL exists now
        companions = [tmp_path / "state.db-wal", tmp_path / "state.db-shm"]
        assert all(p.exists() for p in companions), "SQLite did not keep a WAL open"
        assert [mode(p) for p in companions] == [0o600, 0o600]


def sqlite_now() -> Any:
    from sla_sync.connector.model import parse_instant
    return parse_instant(iso("2026-03-02 10:20"), "now")


def test_a_state_file_others_could_read_is_made_private(tmp_path: Path) -> None:
    config = project(tmp_path)
    assert run(config).exit_code == 0
    (tmp_path / "state.db").chmod(0o644)  # as older versions left it
    assert run(config, "10:30").exit_code == 0
    assert mode(tmp_path / "state.db") == 0o600


def damage_empty(path: Path) -> None:
    path.write_bytes(b"")


def damage_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def damage_garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # page 1 after the header: the schema itself
    path.write_bytes(bytes(data))


def damage_inside(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle:middle + 4096] = b"\xff" * 4096  # one page of records: only a full read sees it
    path.write_bytes(bytes(data))


def damage_text(path: Path) -> None:
    path.write_text("not sqlite at all, just text " * 100)


def damage_inside_times_kept(path: Path) -> None:
    """As damage_inside, with the file's size and modification time put back as they were:
    only its change time (which no one can set) tells that it changed."""
    before = path.stat()
    damage_inside(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.parametrize(("damage", "message"), [
    (damage_empty, r"the state file is empty \(0 bytes\): it was truncated or replaced"),
    (damage_truncate, r"not a usable state file \(database disk image is malformed\)"),
    (damage_garble, r"not a usable state file \("),
    # Where the damage lands decides who sees it first: SQLite's open, or the quick_check.
    (damage_inside, r"(the state file is damaged \(\*\*\* in database main|"
                    r"not a usable state file \(database disk image is malformed\))"),
    (damage_text, r"not an sla-sync state file \(not even SQLite\)"),
    (damage_inside_times_kept, r"(the state file is damaged \(\*\*\* in database main|"
                               r"not a usable state file \(database disk image is malformed\))"),
], ids=["zero-length", "truncated", "garbled", "damaged-inside", "not-sqlite",
        "damaged-inside-times-kept"])
def test_a_damaged_state_file_is_refused_and_nothing_is_read_or_written(
        tmp_path: Path, damage: Any, message: str) -> None:
    config = project(tmp_path, count=40)  # several pages, so that half a file is damage
    assert run(config).exit_code == 0
    helpdesk, state = tmp_path / "helpdesk.json", tmp_path / "state.db"
    # Time moves on so that a sync that believed in a fresh state would write again.
    data = json.loads(helpdesk.read_text())
    for raw in data["records"]:
        raw["tags"] = []
    helpdesk.write_text(json.dumps(data))
    damage(state)
    before = digest(helpdesk, state)
    result = run(config, "10:30")
    assert result.exit_code == 2, result.output
    assert re.search(message, result.stderr), result.stderr
    assert "nothing was read or written" in result.stderr
    assert "Traceback" not in result.output
    assert digest(helpdesk, state) == before
    assert not (tmp_path / "state.db-wal").exists() or \
        (tmp_path / "state.db-wal").stat().st_size == 0


def test_quick_check_is_skipped_only_for_a_file_exactly_as_it_was_closed(
        tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    config = project(tmp_path, count=40)
    assert run(config).exit_code == 0  # a whole sync, closed cleanly
    with StateStore(state) as store:
        assert not store.checked, "a file as the last run closed it was checked again"
        assert not (tmp_path / "state.db-closed").exists(), "an open store left its note"
        store.begin_run(sqlite_now(), dry_run=False)
    # A run that dies: its writes are in the WAL, no close, no note.
    crashed = StateStore(state)
    crashed.begin_run(sqlite_now(), dry_run=False)
    after_crash = StateStore(state)
    assert after_crash.checked, "a file a crashed run left was not checked"
    after_crash.close()
    crashed.close()
    with StateStore(state, readonly=True) as reader:
        assert not reader.checked
    state.chmod(0o600)  # the same mode: only the change time moves
    with StateStore(state, readonly=True) as reader:
        assert reader.checked, "a file touched since it was closed was not checked"


def test_a_read_only_state_file_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    config = project(tmp_path)
    assert run(config).exit_code == 0
    helpdesk, state = tmp_path / "helpdesk.json", tmp_path / "state.db"
    state.chmod(0o400)
    before = digest(helpdesk, state)
    result = run(config, "12:30")
    assert result.exit_code == 2
    assert "the state file is read-only (mode 0400)" in result.stderr
    assert digest(helpdesk, state) == before


def old_state(path: Path, version: int) -> None:
    """A state file as sla-sync left it at schema `version`, with a cursor in it."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for number in range(version):
        db.executescript(f"BEGIN; {MIGRATIONS[number]}; COMMIT;")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {version}")
    db.execute("INSERT INTO cursors (connector, cursor, run_id, moved_at) VALUES"
               " ('file:x', '2026-03-01T00:00:00+00:00', 1, '2026-03-01T00:00:00+00:00')")
    db.close()
    path.chmod(0o600)


def test_a_migration_backs_the_file_up_first(tmp_path: Path) -> None:
    config = project(tmp_path)
    state = tmp_path / "state.db"
    old_state(state, 2)
    result = run(config)
    assert result.exit_code == 0, result.output
    backup = tmp_path / "state.db.bak-schema2"
    assert f"migrated; the previous file is kept as {backup}" in result.stderr
    assert mode(backup) == 0o600
    with sqlite3.connect(backup) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert db.execute("SELECT cursor FROM cursors").fetchone()[0] == \
            "2026-03-01T00:00:00+00:00"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_repeated_migration_keeps_the_first_backup(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    old_state(state, 1)
    (tmp_path / "state.db.bak-schema1").write_bytes(b"the first copy")
    StateStore(state).close()
    assert (tmp_path / "state.db.bak-schema1").read_bytes() == b"the first copy"


def test_reading_commands_never_write_the_state_file(tmp_path: Path) -> None:
    config = project(tmp_path)
    assert run(config).exit_code == 0
    state = tmp_path / "state.db"
    before = digest(state)
    assert cli("explain", "T-1", "--config", str(config),
               "--now", iso("2026-03-02 10:30")).exit_code == 0
    assert cli("queue", "--config", str(config), "--now", iso("2026-03-02 10:30")).exit_code == 0
    assert digest(state) == before


def test_a_reading_command_asks_for_a_run_before_migrating(tmp_path: Path) -> None:
    config = project(tmp_path)
    old_state(tmp_path / "state.db", 2)
    before = digest(tmp_path / "state.db")
    result = cli("queue", "--config", str(config), "--now", iso("2026-03-02 10:30"))
    assert result.exit_code == 2
    assert f"state schema 2 is older than this sla-sync's ({SCHEMA_VERSION}); one " \
        "`sla-sync run` migrates it" in result.stderr
    assert digest(tmp_path / "state.db") == before


def test_a_leftover_half_made_new_file_does_not_stop_the_first_run(tmp_path: Path) -> None:
    (tmp_path / "state.db.new").write_bytes(b"a crash while creating")
    with StateStore(tmp_path / "state.db") as store:
        assert store.created
    assert not (tmp_path / "state.db.new").exists()


def test_opening_for_reading_never_creates_a_state_file(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state file yet"):
        StateStore(tmp_path / "state.db", readonly=True)
    assert not (tmp_path / "state.db").exists()


def test_a_state_file_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the state folder should be")
    with pytest.raises(StateError, match=r"blocker/state.db: cannot create the state file \("):
        StateStore(tmp_path / "blocker" / "state.db")
