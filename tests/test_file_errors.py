"""Path, permission and disk problems of the files sla-sync reads or writes: one line naming
the file and what to do, exit 2 (README, "Operating it"), never a traceback, nothing lost.

As root (this machine's tests), mode bits do not stop a read or a write, so permission and
full-disk errors are raised from a patched call in-process, as the OS would raise them; a
folder given as a file, a missing folder and a file where a folder should be are real."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from conftest import cli, error_lines, record_dict, write_project
from sla_sync import sync_state

NOW = "2026-03-02T12:00:00+00:00"
#: Before any rule holds: a first run then writes nothing, whatever `first_run:` decides.
EARLY = "2026-03-02T09:10:00+00:00"
POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [{"name": "late", "conditions": {"all": [
        {"name": "first_response_breached", "operator": "is_true"}]},
        "actions": [{"name": "add_note", "params": {"text": "first response is late"}}]}],
}


def project(folder: Path, count: int = 3) -> Path:
    records = [record_dict(id=f"T-{n}") for n in range(1, count + 1)]
    return write_project(folder, records, POLICY)


def one_line_error(result: Any, *needles: str) -> str:
    """The result's error: exactly one error line, holding each needle, no traceback."""
    assert "Traceback" not in result.output, result.output
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def notes(helpdesk: Path) -> dict[str, int]:
    data = json.loads(helpdesk.read_text())
    return {r["id"]: len(r["notes"]) for r in data["records"]}


def fail_on(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, code: int,
            when: Any = lambda *args: True) -> None:
    """`target.name` raises OSError(code) as the OS would, for the calls `when` accepts."""
    real = getattr(target, name)

    def failing(*args: Any, **kwargs: Any) -> Any:
        if when(*args):
            raise OSError(code, os.strerror(code), str(args[0]) if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)


# -- config and policy ---------------------------------------------------------------------

def test_a_missing_config_file_names_it_and_the_ways_to_give_one(tmp_path: Path) -> None:
    result = cli("run", "--config", str(tmp_path / "nope.yaml"), "--now", NOW)
    assert result.exit_code == 2
    one_line_error(result, f"{tmp_path / 'nope.yaml'}: config file not found",
                   "--config FILE", "SLA_SYNC_CONFIG")


def test_a_folder_given_as_the_config_file_is_named(tmp_path: Path) -> None:
    result = cli("run", "--config", str(tmp_path), "--now", NOW)
    assert result.exit_code == 2
    one_line_error(result, f"{tmp_path}: cannot read the config file (Is a directory)",
                   "give the path of a file")


def test_an_unreadable_config_file_says_whose_access_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = project(tmp_path)
    fail_on(monkeypatch, Path, "read_bytes", errno.EACCES, lambda path: path == config)
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    one_line_error(result, f"{config}: cannot read the config file (Permission denied)",
                   "give the user sla-sync runs as access to it")


@pytest.mark.parametrize("name", ["missing.json", "."])
def test_a_policy_path_that_is_not_a_file_stops_before_anything_is_read(
        tmp_path: Path, name: str) -> None:
    config = project(tmp_path)
    config.write_text(config.read_text().replace("policy: policy.json", f"policy: {name}"))
    before = (tmp_path / "helpdesk.json").read_bytes()
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"{tmp_path / name}: invalid policy" in result.stderr
    assert "cannot read the policy" in result.stderr
    assert (tmp_path / "helpdesk.json").read_bytes() == before
    assert not (tmp_path / "state.db").exists()


# -- the state file --------------------------------------------------------------------------

def test_a_missing_state_folder_is_created(tmp_path: Path) -> None:
    config = project(tmp_path)
    config.write_text(config.read_text().replace("state: state.db", "state: var/lib/state.db"))
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "var" / "lib" / "state.db").is_file()


def test_a_file_where_the_state_folder_should_be_is_named(tmp_path: Path) -> None:
    config = project(tmp_path)
    (tmp_path / "var").write_text("not a folder")
    config.write_text(config.read_text().replace("state: state.db", "state: var/state.db"))
    before = (tmp_path / "helpdesk.json").read_bytes()
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    one_line_error(result, str(tmp_path / "var"), "a file stands where a folder is needed",
                   "nothing was read or written")
    assert (tmp_path / "helpdesk.json").read_bytes() == before


def test_an_unwritable_state_folder_is_named_and_nothing_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = project(tmp_path)
    folder = tmp_path / "state"
    folder.mkdir()
    config.write_text(config.read_text().replace("state: state.db", "state: state/state.db"))
    # The OS's answer to creating a file in a folder of mode 0555, for a user who is not root.
    fail_on(monkeypatch, os, "open", errno.EACCES,
            lambda path, *rest: Path(path).parent == folder)
    before = (tmp_path / "helpdesk.json").read_bytes()
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    one_line_error(result, "state.db", "(Permission denied)",
                   "give the user sla-sync runs as access to it")
    assert (tmp_path / "helpdesk.json").read_bytes() == before
    assert list(folder.iterdir()) == []


def test_a_full_disk_under_the_state_file_fails_the_run_and_the_next_run_writes_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's own full-disk error, SQLITE_FULL: a page limit the database cannot grow past."""
    config = project(tmp_path, count=60)
    assert cli("run", "--config", str(config), "--now", EARLY).exit_code == 0
    with sqlite3.connect(tmp_path / "state.db") as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    real = sqlite3.connect  # room for one more page: sixty notes and their audit do not fit

    def small_disk(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = real(*args, **kwargs)
        db.execute(f"PRAGMA max_page_count = {pages + 1}")
        return db

    with monkeypatch.context() as patch:
        patch.setattr(sync_state.sqlite3, "connect", small_disk)
        result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    one_line_error(result, f"{tmp_path / 'state.db'}: cannot write the state file "
                   "(database or disk is full)", "free space on it, then run again")
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    # Each note written exactly once across the failed run and the one after it.
    assert set(notes(tmp_path / "helpdesk.json").values()) == {1}


# -- report --out ----------------------------------------------------------------------------

@pytest.fixture
def synced(tmp_path: Path) -> Path:
    config = project(tmp_path)
    assert cli("run", "--config", str(config), "--now", NOW).exit_code == 0
    return config


def report_to(config: Path, out: Path) -> Any:
    return cli("report", "--config", str(config), "--now", NOW, "--format", "prometheus",
               "--out", str(out))


def test_report_into_a_missing_folder_names_it(synced: Path, tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "x.prom"
    result = report_to(synced, out)
    assert result.exit_code == 2
    one_line_error(result, f"{out}: cannot write the report (No such file or directory)",
                   "check the path and that its folder exists", "nothing was written")
    assert not (tmp_path / "missing-dir").exists()


def test_report_onto_a_folder_leaves_the_folder_alone(synced: Path, tmp_path: Path) -> None:
    out = tmp_path / "textfile"
    out.mkdir()
    result = report_to(synced, out)
    assert result.exit_code == 2
    one_line_error(result, f"{out}: cannot write the report (Is a directory)",
                   "give the path of a file")
    assert out.is_dir() and list(out.iterdir()) == []
    assert not list(tmp_path.glob(".textfile*")), "the partial file is left behind"


@pytest.mark.parametrize(("call", "code", "reason"), [
    ("open", errno.EACCES, "Permission denied"),
    ("fsync", errno.ENOSPC, "No space left on device"),
])
def test_report_that_cannot_be_written_keeps_the_previous_file(
        synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, code: int,
        reason: str) -> None:
    out = tmp_path / "sla.prom"
    assert report_to(synced, out).exit_code == 0
    before = out.read_bytes()
    target: Any = Path if call == "open" else os
    fail_on(monkeypatch, target, call, code,
            lambda first, *rest: call == "fsync" or first.name.endswith(".partial"))
    result = report_to(synced, out)
    assert result.exit_code == 2
    one_line_error(result, f"{out}: cannot write the report ({reason})")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if "prom" in p.name) == ["sla.prom"]


# -- the file helpdesk -----------------------------------------------------------------------

def file_config(folder: Path, path: str, seed: str | None = None) -> Path:
    (folder / "policy.json").write_text(json.dumps(POLICY))
    config = folder / "config.yaml"
    seed_key = f", seed: {seed}" if seed else ""
    config.write_text(f"connector: {{type: file, path: {path}{seed_key}}}\n"
                      "policy: policy.json\nstate: state.db\n")
    return config


@pytest.mark.parametrize(("path", "seed", "named", "reason"), [
    ("desk.json", None, "desk.json: cannot read the helpdesk file", "No such file"),
    ("desk.json", "seed.json", "seed.json: cannot read the seed file", "No such file"),
    ("folder", None, "folder: cannot read the helpdesk file", "Is a directory"),
    ("desk.json", "folder", "folder: cannot read the seed file", "Is a directory"),
])
def test_a_helpdesk_file_or_seed_that_cannot_be_read_is_exit_2(
        tmp_path: Path, path: str, seed: str | None, named: str, reason: str) -> None:
    (tmp_path / "folder").mkdir()
    config = file_config(tmp_path, path, seed)
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    one_line_error(result, f"{tmp_path / named}", reason, "cursor not moved")


def test_an_unreadable_helpdesk_file_is_named(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = project(tmp_path)
    desk = tmp_path / "helpdesk.json"
    fail_on(monkeypatch, Path, "open", errno.EACCES, lambda path, *rest: path == desk)
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    one_line_error(result, f"{desk}: cannot read the helpdesk file (Permission denied)",
                   "give the user sla-sync runs as access to it")


@pytest.mark.parametrize(("target", "call", "code", "named", "reason"), [
    (tempfile, "mkstemp", errno.EACCES, "", "Permission denied"),
    (os, "fsync", errno.ENOSPC, "/helpdesk.json", "No space left on device"),
])
def test_a_helpdesk_file_that_cannot_be_rewritten_is_left_whole_and_written_once_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: Any, call: str, code: int,
        named: str, reason: str) -> None:
    config = project(tmp_path)
    assert cli("run", "--config", str(config), "--now", EARLY).exit_code == 0
    desk = tmp_path / "helpdesk.json"
    before = desk.read_bytes()
    with monkeypatch.context() as patch:
        fail_on(patch, target, call, code)
        result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    one_line_error(result, f"{tmp_path}{named}: cannot write", f"({reason})",
                   "cursor not moved")
    assert desk.read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert notes(desk) == {"T-1": 1, "T-2": 1, "T-3": 1}


def test_explain_on_a_missing_helpdesk_file_is_exit_2(tmp_path: Path) -> None:
    config = file_config(tmp_path, "desk.json")
    result = cli("explain", "T-1", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    one_line_error(result, f"{tmp_path / 'desk.json'}: cannot read the helpdesk file")


# -- through a real process: no traceback reaches stderr -------------------------------------

@pytest.mark.parametrize("command", [
    ["report", "--format", "prometheus", "--out", "missing-dir/x.prom"],
    ["run"],
])
def test_a_real_process_prints_one_line_and_no_traceback(tmp_path: Path,
                                                         command: list[str]) -> None:
    config = project(tmp_path)
    if command == ["run"]:
        (tmp_path / "helpdesk.json").unlink()
        (tmp_path / "helpdesk.json").mkdir()
    else:
        assert cli("run", "--config", str(config), "--now", NOW).exit_code == 0
    done = subprocess.run([sys.executable, "-m", "sla_sync", *command, "--config", str(config),
                           "--now", NOW], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and ("missing-dir/x.prom" in errors[0] or
                                 "helpdesk.json: cannot read" in errors[0]), done.stderr


def test_every_keeps_its_policy_when_the_file_goes_and_reloads_it_when_it_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = project(tmp_path)
    policy = tmp_path / "policy.json"
    naps: list[float] = []

    def nap(stop: Any, seconds: float) -> bool:
        naps.append(seconds)
        if len(naps) == 1:
            policy.unlink()  # a deploy that replaces the file by delete and copy
        elif len(naps) == 2:
            policy.write_text(json.dumps(POLICY))
            os.utime(policy, (1, 1))
        return len(naps) == 3  # then as when SIGTERM arrives during the wait

    monkeypatch.setattr("sla_sync.sync.Stop.wait", nap)
    result = cli("run", "--config", str(config), "--every", "5m")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert len(naps) == 3
    assert f"{policy}: invalid policy" in result.stderr
    assert "keeping the previous policy" in result.stderr
    assert f"{policy}: reloaded" in result.stderr
