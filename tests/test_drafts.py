"""Drafts before they go live: `explain --policy`, `explain --json`, `run --dry-run --policy`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from conftest import act, cli, cond, iso, record_dict, rule, write_project

LIVE = {"slas": [{"name": "standard", "targets": {"first_response": "1h"}}],
        "rules": [rule("warn", {"all": [cond("first_response_elapsed_pct",
                                             "greater_than_or_equal_to", 75)]},
                       act("add_tag", tag="sla_warning"))]}
DRAFT = {"slas": LIVE["slas"],
         "rules": [rule("early-warn", {"all": [cond("first_response_elapsed_pct",
                                                    "greater_than_or_equal_to", 50)]},
                        act("add_tag", tag="sla_early"))]}
AT_30 = iso("2026-03-02 09:30")  # 30 of 60 minutes: the draft fires, the live policy not


def project(tmp_path: Path) -> tuple[Path, Path]:
    ticket = record_dict(id="T-1", created_at=iso("2026-03-02 09:00"),
                         updated_at=iso("2026-03-02 09:00"))
    config = write_project(tmp_path, [ticket], LIVE)
    draft = tmp_path / "draft.json"
    draft.write_text(json.dumps(DRAFT))
    return config, draft


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_explain_evaluates_a_draft_policy_instead_of_the_configs(tmp_path: Path) -> None:
    config, draft = project(tmp_path)
    live = cli("explain", "T-1", "--config", str(config), "--now", AT_30)
    assert "rules[0] 'warn': does not fire" in live.stdout
    result = cli("explain", "T-1", "--config", str(config), "--now", AT_30, "--policy",
                 str(draft))
    assert result.exit_code == 0
    assert "rules[0] 'early-warn': FIRES (conditions hold, newly)" in result.stdout
    assert "[write] tag 'sla_early' absent -> present" in result.stdout


def test_explain_json_gives_the_same_verdicts_as_the_text(tmp_path: Path) -> None:
    config, draft = project(tmp_path)
    result = cli("explain", "T-1", "--config", str(config), "--now", AT_30, "--json")
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["slas"] == [{"index": 0, "name": "standard", "matched": True, "why": "no when"}]
    assert data["clocks"]["first_response"]["elapsed_pct"] == 50
    assert data["clocks"]["first_response"]["due_at"] == "2026-03-02T10:00:00+00:00"
    assert data["rules"] == [{"index": 0, "name": "warn", "verdict": "does not fire", "failed": {
        "path": "rules[0].conditions.all[0]", "name": "first_response_elapsed_pct",
        "operator": "greater_than_or_equal_to", "value": 75, "actual": 50.0}}]
    assert data["change"] == {}
    drafted = json.loads(cli("explain", "T-1", "--config", str(config), "--now", AT_30,
                             "--policy", str(draft), "--json").stdout)
    assert drafted["policy"] == str(draft)
    assert [r["verdict"] for r in drafted["rules"]] == ["fires"]
    assert drafted["change"] == {"add_tags": ["sla_early"]}


def test_run_dry_run_plans_with_the_draft_and_writes_nothing(tmp_path: Path) -> None:
    config, draft = project(tmp_path)
    before = digest(tmp_path / "helpdesk.json")
    result = cli("run", "--config", str(config), "--now", AT_30, "--dry-run", "--json",
                 "--policy", str(draft))
    assert result.exit_code == 0
    *changes, last = [json.loads(line) for line in result.stdout.splitlines()]
    assert last["event"] == "summary" and last["dry_run"] and last["writes"] == 0
    assert changes == [{"id": "T-1", "kind": "ticket", "sla": "standard",
                        "rules": ["early-warn"], "change": {"add_tags": ["sla_early"]}}]
    assert digest(tmp_path / "helpdesk.json") == before


def test_a_draft_is_refused_without_dry_run_before_anything_is_read(tmp_path: Path) -> None:
    config, draft = project(tmp_path)
    result = cli("run", "--config", str(config), "--now", AT_30, "--policy", str(draft))
    assert result.exit_code == 2
    assert "--policy evaluates a draft: it takes --dry-run" in result.output
    assert not (tmp_path / "state.db").exists()


def test_an_invalid_draft_stops_explain_with_its_problems(tmp_path: Path) -> None:
    config, draft = project(tmp_path)
    draft.write_text(json.dumps({"slas": [{"name": "x", "targets": {"first_response": "1 h"}}]}))
    result = cli("explain", "T-1", "--config", str(config), "--policy", str(draft))
    assert result.exit_code == 2
    assert "slas[0].targets.first_response" in result.stderr
