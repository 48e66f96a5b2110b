"""`sla-sync test`: policy test files run through the real planner."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from conftest import ROOT, act, cond, rule
from sla_sync.sync import main

SLA = [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}]
WARN = rule("warn", {"all": [cond("first_response_elapsed_pct", "greater_than_or_equal_to", 50),
                             cond("first_response_breached", "is_false")]},
            act("add_tag", tag="half"))
RAISE = rule("raise", {"all": [cond("first_response_breached", "is_true")]},
             act("set_priority", priority="urgent"))
TICKET = {"id": "T-1", "kind": "ticket", "priority": "normal", "status": "open",
          "created_at": "2026-03-02T09:00:00+00:00"}


def project(folder: Path, cases: list[dict[str, Any]], name: str = "p.test.yaml",
            rules: list[dict[str, Any]] | None = None) -> Path:
    (folder / "policy.json").write_text(json.dumps({"slas": SLA,
                                                    "rules": rules or [WARN, RAISE]}))
    path = folder / name
    data = {"policy": "policy.json", "cases": cases}
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["test", *args])


def test_the_shipped_policy_tests_pass() -> None:
    result = run(str(ROOT / "policies"))
    lines = result.output.splitlines()
    assert result.exit_code == 0, result.output
    assert len(lines) >= 9 and all(line.startswith("PASS ") for line in lines[:-1])
    assert any("DST" in line for line in lines) and any("holiday" in line for line in lines)
    assert lines[-1] == f"{len(lines) - 1} passed, 0 failed"


def test_a_rule_fires_once_per_activation_across_steps(tmp_path: Path) -> None:
    steps = [{"now": "2026-03-02T09:30:00+00:00", "fires": ["warn"],
              "change": {"add_tags": ["half"]}},
             {"now": "2026-03-02T09:40:00+00:00", "fires": [], "change": {},
              "variables": {"tags": ["half"]}, "active": ["warn"]}]
    path = project(tmp_path, [{"name": "once", "record": TICKET, "expect": steps}])
    result = run(str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"PASS {path}::once", "1 passed, 0 failed"]


def test_expecting_a_second_firing_fails_because_the_ledger_carries_over(
        tmp_path: Path) -> None:
    steps = [{"now": "2026-03-02T09:30:00+00:00", "fires": ["warn"]},
             {"now": "2026-03-02T09:40:00+00:00", "fires": ["warn"]}]
    path = project(tmp_path, [{"name": "twice", "record": TICKET, "expect": steps}])
    result = run(str(path))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"FAIL {path}::twice",
        "    expect[1] at 2026-03-02T09:40:00+00:00:",
        "      fires:",
        '        - expected ["warn"]',
        "        + actual   []",
        "0 passed, 1 failed",
    ]


def test_a_person_who_removes_the_tag_between_steps_is_not_overridden(tmp_path: Path) -> None:
    case = {"name": "undo", "record": TICKET,
            "timeline": [{"at": "2026-03-02T09:35:00+00:00", "remove_tags": ["half"]}],
            "expect": [{"now": "2026-03-02T09:30:00+00:00", "change": {"add_tags": ["half"]}},
                       {"now": "2026-03-02T09:40:00+00:00", "change": {},
                        "variables": {"tags": [], "hours_since_updated": 5 / 60}}]}
    result = run(str(project(tmp_path, [case])))
    assert result.exit_code == 0, result.output


def test_a_steps_change_is_applied_to_the_record_as_a_write_would(tmp_path: Path) -> None:
    case = {"name": "write", "record": TICKET,
            "expect": [{"now": "2026-03-02T10:01:00+00:00", "fires": ["raise"],
                        "change": {"set": {"priority": "urgent"}}},
                       {"now": "2026-03-02T10:03:00+00:00",
                        "variables": {"priority": "urgent", "hours_since_updated": 2 / 60}}]}
    result = run(str(project(tmp_path, [case])))
    assert result.exit_code == 0, result.output


def test_a_timeline_status_enters_the_history_and_pauses_the_clock(tmp_path: Path) -> None:
    sla = [{"name": "standard", "targets": {"first_response": "1h"},
            "pause_statuses": ["pending"]}]
    (tmp_path / "policy.json").write_text(json.dumps({"slas": sla, "rules": [WARN]}))
    (tmp_path / "p.test.json").write_text(json.dumps({"policy": "policy.json", "cases": [{
        "name": "pause", "record": TICKET,
        "timeline": [{"at": "2026-03-02T09:10:00+00:00", "set": {"status": "pending"}},
                     {"at": "2026-03-02T11:00:00+00:00", "set": {"status": "open"}}],
        "expect": [{"now": "2026-03-02T11:19:00+00:00",
                    "variables": {"first_response_business_minutes_elapsed": 29},
                    "fires": []},
                   {"now": "2026-03-02T11:20:00+00:00", "fires": ["warn"]}]}]}))
    result = run(str(tmp_path))
    assert result.exit_code == 0, result.output


def test_a_wrong_change_shows_a_diff_of_expected_and_actual(tmp_path: Path) -> None:
    case = {"name": "diff", "record": TICKET,
            "expect": [{"now": "2026-03-02T10:01:00+00:00",
                        "change": {"set": {"priority": "high"}}}]}
    result = run(str(project(tmp_path, [case])))
    assert result.exit_code == 1
    assert '        - expected {"set": {"priority": "high"}}' in result.output
    assert '        + actual   {"set": {"priority": "urgent"}}' in result.output


def test_a_due_time_is_compared_as_an_instant_and_shown_in_the_authors_offset(
        tmp_path: Path) -> None:
    case = {"name": "due", "record": TICKET,
            "expect": [{"now": "2026-03-02T09:10:00+00:00",
                        "due": {"first_response": "2026-03-02T11:00:00+01:00"}},
                       {"now": "2026-03-02T09:20:00+00:00",
                        "due": {"first_response": "2026-03-02T11:30:00+01:00"}}]}
    result = run(str(project(tmp_path, [case])))
    assert result.exit_code == 1
    assert result.output.splitlines()[1:5] == [
        "    expect[1] at 2026-03-02T09:20:00+00:00:",
        "      due.first_response:",
        '        - expected "2026-03-02T11:30:00+01:00"',
        '        + actual   "2026-03-02T11:00:00+01:00"',
    ]


def test_a_broken_test_file_exits_2_naming_the_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text(json.dumps({"slas": SLA, "rules": [WARN]}))
    path = tmp_path / "p.test.yaml"
    path.write_text("policy: policy.json\n"
                    "cases:\n"
                    "  - name: broken\n"
                    "    record: {id: T-1, kind: ticket, created_at: '2026-03-02T09:00:00'}\n"
                    "    expect:\n"
                    "      - now: '2026-03-02T09:30:00+00:00'\n"
                    "        fires: [wran]\n"
                    "        sla: gold\n")
    result = run(str(path))
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{path}:4: cases[0].record.created_at: created_at: '2026-03-02T09:00:00' has no "
        "UTC offset (refusing to guess a timezone)",
        f"{path}:8: cases[0].expect[0].sla: no SLA 'gold' in the policy (SLAs: standard; "
        "null for none)",
        f"{path}:7: cases[0].expect[0].fires[0]: no rule 'wran' in the policy (did you mean "
        "'warn'?)",
        "error: 1 broken test file; no case ran",
    ]


def test_each_check_of_a_step_names_its_own_path(tmp_path: Path) -> None:
    case = {"name": "broken", "record": TICKET,
            "expect": [{"now": "2026-03-02T09:30:00+00:00",
                        "variables": {"custom.plan": "gold", "tierr": "gold"},
                        "change": {"fieldz": {}}, "notify": "ops",
                        "due": {"first_respons": None, "resolution": "soon"}}]}
    result = run(str(project(tmp_path, [case])))
    assert result.exit_code == 2
    lines = [line.split(": ", 1)[1] for line in result.output.splitlines()[:-1]]
    assert [line.split(":")[0] for line in lines] == [
        "cases[0].expect[0].variables.custom.plan", "cases[0].expect[0].variables.tierr",
        "cases[0].expect[0].change.fieldz", "cases[0].expect[0].notify",
        "cases[0].expect[0].due.first_respons", "cases[0].expect[0].due.resolution"]
    assert "declare custom fields under the policy's \"fields\"" in lines[0]
    assert "did you mean 'tier'?" in lines[1]


@pytest.mark.parametrize(("text", "problem"), [
    pytest.param("policy: missing.json\ncases: []\n", "cannot read the policy", id="no policy"),
    pytest.param("policy: policy.json\ncases: [\n", "invalid YAML", id="bad yaml"),
    pytest.param("policy: policy.json\ncases:\n  - name: x\n    record: {id: T, kind: ticket, "
                 "created_at: '2026-03-02T09:00:00+00:00'}\n    expect:\n      - fires: []\n",
                 "cases[0].expect[0].now: missing", id="no now"),
    pytest.param("policy: policy.json\ncases:\n  - name: x\n    record: {id: T, kind: ticket, "
                 "created_at: '2026-03-02T09:00:00+00:00'}\n    expect:\n"
                 "      - now: '2026-03-02T10:00:00+00:00'\n"
                 "      - now: '2026-03-02T09:00:00+00:00'\n",
                 "cases[0].expect[1].now: before the previous step", id="time backwards"),
])
def test_each_kind_of_broken_file_is_refused_with_its_problem(tmp_path: Path, text: str,
                                                              problem: str) -> None:
    (tmp_path / "policy.json").write_text(json.dumps({"slas": SLA}))
    (tmp_path / "x.test.yaml").write_text(text)
    result = run(str(tmp_path / "x.test.yaml"))
    assert result.exit_code == 2
    assert problem in result.output


def test_junit_xml_parses_and_counts_passes_and_failures(tmp_path: Path) -> None:
    good = {"name": "good", "record": TICKET,
            "expect": [{"now": "2026-03-02T09:30:00+00:00", "fires": ["warn"]}]}
    bad = {"name": "bad", "record": TICKET,
           "expect": [{"now": "2026-03-02T09:30:00+00:00", "fires": []}]}
    path = project(tmp_path, [good, bad])
    out = tmp_path / "junit.xml"
    result = run(str(path), "--junit", str(out))
    assert result.exit_code == 1
    root = ET.parse(out).getroot()
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "2", "1")
    suite = root.find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["good"].find("failure") is None
    failure = cases["bad"].find("failure")
    assert failure is not None and "fires" in (failure.text or "")


def test_a_directory_is_searched_for_every_test_suffix(tmp_path: Path) -> None:
    case = {"name": "c", "record": TICKET, "expect": [{"now": "2026-03-02T09:30:00+00:00"}]}
    project(tmp_path, [case], "a.test.yaml")
    project(tmp_path, [case], "b.test.yml")
    project(tmp_path, [case], "c.test.json")
    (tmp_path / "notes.yaml").write_text("not: a test\n")
    result = run(str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "3 passed, 0 failed"


def test_a_directory_without_test_files_is_an_error(tmp_path: Path) -> None:
    result = run(str(tmp_path))
    assert result.exit_code == 2
    assert "no test files" in result.output


def test_a_case_whose_evaluation_raises_fails_alone(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from sla_sync.rules import policytest as policytest
    real = policytest.plan

    def plan(record: Any, *args: Any) -> Any:
        if record.id == "T-2":
            raise ZeroDivisionError("division by zero")
        return real(record, *args)

    monkeypatch.setattr(policytest, "plan", plan)
    step = [{"now": "2026-03-02T09:30:00+00:00", "fires": ["warn"]}]
    path = project(tmp_path, [{"name": "fine", "record": TICKET, "expect": step},
                              {"name": "boom", "record": {**TICKET, "id": "T-2"},
                               "expect": step}])
    result = run(str(path))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"PASS {path}::fine", f"FAIL {path}::boom",
        "    evaluation failed: ZeroDivisionError('division by zero')", "1 passed, 1 failed"]


def test_an_unwritable_junit_file_is_a_clean_error(tmp_path: Path) -> None:
    case = {"name": "c", "record": TICKET, "expect": [{"now": "2026-03-02T09:30:00+00:00"}]}
    path = project(tmp_path, [case])
    result = run(str(path), "--junit", str(tmp_path / "missing" / "junit.xml"))
    assert result.exit_code == 2
    assert "cannot write the JUnit XML" in result.output
