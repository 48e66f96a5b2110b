"""Going live (issue 12 item 2): `first_run: baseline | act` on a state file that has never
completed a run, the loud announcement of a new state file, and `--now` refused on a real
helpdesk without --dry-run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import act, cli, cond, error_lines, iso, log_lines, record_dict, rule
from sla_sync.connector import open_connector
from sla_sync.connector.file import FileHelpdesk
from sla_sync.sync_state import StateStore

BREACH = cond("first_response_breached", "is_true")
POLICY = {
    "slas": [{"name": "std", "targets": {"first_response": "1h"}}],
    "rules": [
        rule("breach", BREACH, act("add_tag", tag="sla_breach"),
             act("set_priority", priority="high")),
        # A cascade: true only once `breach` has written its priority.
        rule("high-noted", cond("priority", "equal_to", "high"),
             act("add_note", text="{id} is high now")),
    ],
}
T0 = iso("2026-03-02 12:00")
RECORDS = [
    record_dict(id="T-1", created_at=iso("2026-03-02 09:00"),
                updated_at=iso("2026-03-02 09:00")),  # breached at T0
    record_dict(id="T-2", created_at=iso("2026-03-02 11:30"),
                updated_at=iso("2026-03-02 11:30")),  # breaches at 12:30
    record_dict(id="T-3", created_at=iso("2026-03-02 11:50"),
                updated_at=iso("2026-03-02 11:50"),
                first_response_at=iso("2026-03-02 11:55")),  # answered: never
]


def project(folder: Path, first_run: str | None, webhook: str | None = None) -> Path:
    (folder / "helpdesk.json").write_text(json.dumps({"records": RECORDS}))
    policy = json.loads(json.dumps(POLICY))
    hooks = ""
    if webhook:
        policy["rules"][0]["actions"].append(act("notify", webhook="oncall", text="{id}"))
        hooks = f"webhooks: {{oncall: {{url: '{webhook}/hook', format: json}}}}\n"
    (folder / "policy.json").write_text(json.dumps(policy))
    config = folder / "config.yaml"
    config.write_text("connector: {type: file, path: helpdesk.json}\npolicy: policy.json\n"
                      "state: state.db\n" + (f"first_run: {first_run}\n" if first_run else "")
                      + hooks)
    return config


def run(config: Path, now: str = T0, *extra: str) -> Any:
    return cli("run", "--config", str(config), "--now", now, *extra)


def desk(folder: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in json.loads((folder / "helpdesk.json").read_text())["records"]}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summary(result: Any) -> str:
    return next(line for line in result.stdout.splitlines() if line.startswith("run "))


def test_baseline_is_the_default_and_records_what_holds_without_writing(tmp_path: Path):
    config = project(tmp_path, first_run=None)
    before = sha(tmp_path / "helpdesk.json")
    first = run(config)
    assert first.exit_code == 0, first.output
    assert sha(tmp_path / "helpdesk.json") == before  # nothing written
    assert "writes 0" in summary(first) and "changed 0" in summary(first)
    assert "first run, baseline: 1 records already meet rules; 1 rule activations recorded " \
           "as active, nothing written or notified" in first.stdout
    with StateStore(tmp_path / "state.db", readonly=True) as store:
        # the rule that holds on the record as read, not the cascade its write would start
        assert store.active_rules() == {"T-1": frozenset({"breach"})}
        assert store.audit() == []


def test_baseline_then_a_later_run_writes_only_what_became_true_after_it(tmp_path: Path):
    config = project(tmp_path, "baseline")
    assert run(config).exit_code == 0
    later = run(config, iso("2026-03-02 12:45"))
    assert later.exit_code == 0, later.output
    assert "writes 1" in summary(later) and "baseline" not in later.stdout
    records = desk(tmp_path)
    assert records["T-2"]["tags"] == ["sla_breach"] and records["T-2"]["priority"] == "high"
    assert [n["text"] for n in records["T-2"]["notes"]] == ["T-2 is high now"]
    for untouched in ("T-1", "T-3"):  # T-1 held at the baseline; T-3 never
        assert records[untouched]["tags"] == [] and records[untouched]["priority"] == "normal"
        assert records[untouched]["notes"] == []
    again = run(config, iso("2026-03-02 13:00"))
    assert "writes 0" in summary(again)


def test_act_writes_on_the_first_run_as_every_run_does(tmp_path: Path):
    config = project(tmp_path, "act")
    first = run(config)
    assert first.exit_code == 0, first.output
    assert "writes 1" in summary(first) and "baseline" not in first.stdout
    records = desk(tmp_path)
    assert records["T-1"]["tags"] == ["sla_breach"] and records["T-1"]["priority"] == "high"
    assert [n["text"] for n in records["T-1"]["notes"]] == ["T-1 is high now"]


def test_a_dry_run_on_a_new_state_file_previews_the_baseline(tmp_path: Path):
    config = project(tmp_path, None)
    before = sha(tmp_path / "helpdesk.json")
    dry = run(config, T0, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert "1 rule activations would be recorded as active" in dry.stderr
    [line], summary_line = [json.loads(x) for x in dry.stdout.splitlines()
                            if x.startswith("{")][:-1], json.loads(dry.stdout.splitlines()[-1])
    assert line["id"] == "T-1" and line["baseline"] is True
    assert summary_line["event"] == "summary" and summary_line["baseline_rules"] == 1
    assert sha(tmp_path / "helpdesk.json") == before
    # the real first run is still a baseline: a dry run completes nothing
    first = run(config)
    assert "first run, baseline: 1 records" in first.stdout


def test_a_lost_state_file_against_a_synced_desk_is_announced_and_writes_nothing(
        tmp_path: Path, local_server: Any) -> None:
    config = project(tmp_path, "act", webhook=local_server.url)
    assert run(config).exit_code == 0
    assert len(local_server.requests) == 1  # T-1 notified once, by the synced run
    # The state file is lost (a container without its volume); the config goes to baseline.
    for path in tmp_path.glob("state.db*"):
        path.unlink()
    config.write_text(config.read_text().replace("first_run: act", "first_run: baseline"))
    synced = sha(tmp_path / "helpdesk.json")
    again = run(config, iso("2026-03-02 12:05"))
    assert again.exit_code == 0, again.output
    announced = [line for line in log_lines(again.stderr, "WARNING") if "NEW STATE FILE" in line]
    assert announced == [
        f"NEW STATE FILE: {tmp_path / 'state.db'} did not exist and was created; first_run: "
        "baseline: rules that already hold are recorded as active and nothing is written (if "
        "sla-sync has synced this helpdesk before, its state file is lost: stop and restore "
        "it)"]
    assert sha(tmp_path / "helpdesk.json") == synced  # no tag, note or priority again
    assert "writes 0" in summary(again)
    assert len(local_server.requests) == 1  # and no notification again
    with StateStore(tmp_path / "state.db", readonly=True) as store:
        assert store.outbox() == []


def test_act_on_a_lost_state_file_is_announced_as_acting(tmp_path: Path) -> None:
    config = project(tmp_path, "act")
    first = run(config)
    assert "NEW STATE FILE" in first.stderr and "first_run: act: every rule that holds acts " \
        "now" in first.stderr
    second = run(config, iso("2026-03-02 12:05"))
    assert "NEW STATE FILE" not in second.stderr and "first_run" not in second.stderr


def test_a_first_run_stopped_before_completing_stays_a_first_run(tmp_path: Path) -> None:
    config = project(tmp_path, None)
    with StateStore(tmp_path / "state.db") as store:  # a run that began and never ended
        store.begin_run(FileHelpdesk(tmp_path / "helpdesk.json").get("T-1").created_at,
                        dry_run=False)
    result = run(config)
    assert "NEW STATE FILE" not in result.stderr
    assert "state.db: no run has completed on this state file yet; first_run: baseline" \
        in result.stderr
    assert "first run, baseline: 1 records" in result.stdout


def test_an_unknown_first_run_value_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = project(tmp_path, "maybe")
    result = run(config)
    assert result.exit_code == 2
    assert "first_run: expected one of baseline, act, got 'maybe'" in result.stderr
    assert not (tmp_path / "state.db").exists()


SETTINGS = {  # the least each connector needs to be built (nothing is asked of it)
    "zendesk": {"url": "https://acme.zendesk.com", "email": "a@example.com", "token": "x"},
    "freshdesk": {"url": "https://acme.freshdesk.com", "api_key": "x"},
    "hubspot": {"url": "https://api.hubapi.com", "token": "x"},
    "rt": {"url": "https://rt.example.com", "token": "x"},
}


@pytest.mark.parametrize("kind", sorted(SETTINGS))
def test_every_connector_but_the_file_helpdesk_says_it_writes_to_a_real_helpdesk(
        kind: str, tmp_path: Path) -> None:
    real = open_connector({"type": kind, **SETTINGS[kind]}, tmp_path)
    assert real.capabilities.real_helpdesk is True
    sandbox = open_connector({"type": kind, **SETTINGS[kind], "sandbox": True}, tmp_path)
    assert sandbox.capabilities.real_helpdesk is False
    assert FileHelpdesk(tmp_path / "h.json").capabilities.real_helpdesk is False


def zendesk_project(folder: Path, sandbox: str = "") -> Path:
    (folder / "policy.json").write_text(json.dumps(POLICY))
    config = folder / "config.yaml"
    # Nothing listens on port 9 of 127.0.0.1: a run that got as far as reading would fail.
    config.write_text("connector: {type: zendesk, url: 'http://127.0.0.1:9', email: "
                      f"a@example.com, token: x{sandbox}}}\npolicy: policy.json\n"
                      "state: state.db\n")
    return config


def test_now_is_refused_on_a_real_helpdesk_without_dry_run(tmp_path: Path) -> None:
    result = run(zendesk_project(tmp_path))
    assert result.exit_code == 2
    assert error_lines(result.stderr) == [
        "--now writes to a real helpdesk (zendesk) as if it were another instant: "
        "give --dry-run with it to try an instant, or leave --now out; nothing was read or "
        "written"]
    assert not (tmp_path / "state.db").exists()


def test_now_with_dry_run_or_on_a_sandbox_goes_on_to_the_helpdesk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sla_sync.connector.http.wait", lambda seconds: None)
    for config in (zendesk_project(tmp_path), zendesk_project(tmp_path, ", sandbox: true")):
        extra = ("--dry-run",) if "sandbox" not in config.read_text() else ()
        result = run(config, T0, *extra)
        # not refused: it tried the helpdesk, which is not there
        assert result.exit_code == 1, result.output
        assert "--now writes to a real helpdesk" not in result.stderr
        assert "run failed, cursor not moved" in result.stderr


def test_the_demo_config_acts_on_its_first_run(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's first command, as written, in a scratch folder: it shows writes."""
    root = Path(__file__).resolve().parent.parent
    for name in ("examples", "policies", "config.example.yaml"):
        (tmp_path / name).symlink_to(root / name)
    monkeypatch.chdir(tmp_path)
    command = next(line for line in (root / "README.md").read_text().splitlines()
                   if "pip install -e . && sla-sync run" in line)
    args = command.split("&& sla-sync ", 1)[1].split()
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert summary(result).startswith("run 1: read 200, evaluated 200, changed 36, writes 36")
