"""The README's rule-author walk-through stays true: its files exist, its pasted outputs are
what the commands print, and the shipped schema file is the one `sla-sync schema` prints."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT
from sla_sync.rules.schema import json_schema
from sla_sync.sync import main

README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README[README.index("## Writing policies like code"):README.index("## Reports\n")]
ENVIRONMENT = {"ZENDESK_TOKEN": "unused", "SLACK_WEBHOOK_URL": "https://hooks.example.com/unused"}


def pasted(command: str) -> list[str]:
    """The output lines pasted under `$ COMMAND` in the README's section."""
    blocks = re.findall(r"```\n\$ (.*?)\n(.*?)```", SECTION.replace("\\\n  ", ""), re.S)
    for shown, output in blocks:
        if shown == command:
            return output.splitlines()
    raise AssertionError(f"the README shows no output of `{command}`")


@pytest.mark.parametrize("command", [
    "sla-sync test examples/authoring/",
    "sla-sync validate examples/authoring/draft.json",
    "sla-sync lint examples/authoring/draft.json",
    "sla-sync lint examples/authoring/support-v2.json",
    "sla-sync backtest --policy examples/authoring/support-v2.json --baseline "
    "examples/authoring/support.json --from examples/helpdesk.json --since "
    "2025-12-02T12:00:00+00:00 --until 2026-03-02T12:00:00+00:00 --by tier",
    "ZENDESK_TOKEN=unused SLACK_WEBHOOK_URL=https://hooks.example.com/unused sla-sync lint "
    "examples/authoring/draft.json --config examples/authoring/config.yaml",
])
def test_the_readme_shows_what_the_command_prints(command: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    args = shlex.split(command)
    args = args[args.index("sla-sync") + 1:]
    result = CliRunner(env=ENVIRONMENT).invoke(main, args)
    assert result.output.splitlines() == pasted(command)


@pytest.mark.parametrize("command", [
    "sla-sync run --config config.example.yaml --now 2026-03-02T12:00:00+00:00 --dry-run "
    "--json --policy examples/authoring/support.json",
    "sla-sync explain T-1073 --config config.example.yaml --now 2026-03-02T12:00:00+00:00 "
    "--policy examples/authoring/support.json",
])
def test_the_readme_shows_what_a_draft_does_on_the_demo(command: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo config as the README runs it, in a scratch folder: its .demo/ copy is made
    # there, not in the repository.
    for name in ("examples", "policies", "config.example.yaml"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, shlex.split(command)[1:])
    # The run's duration and the log lines' times are what varies.
    assert [varying(line) for line in result.output.splitlines()] == \
        [varying(line) for line in pasted(command)]


def varying(line: str) -> str:
    """A line of output with its duration and its log timestamp taken out."""
    line = re.sub(r" in \d+\.\d\ds;", " in N s;", line)
    line = re.sub(r'"duration_ms": \d+', '"duration_ms": N', line)
    return re.sub(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ", "TIME ", line)


def test_the_shipped_schema_file_is_the_generated_one() -> None:
    shipped = json.loads((ROOT / "examples" / "authoring" / "policy.schema.json").read_text())
    assert shipped == json_schema(), \
        "regenerate it: sla-sync schema > examples/authoring/policy.schema.json"


def test_the_readme_shows_the_shares_of_the_demo_mirror(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("examples", "policies", "config.example.yaml"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    ran = CliRunner().invoke(main, ["run", "--config", "config.example.yaml", "--now",
                                    "2026-03-02T12:00:00+00:00"])
    assert ran.exit_code == 0, ran.output
    command = ("sla-sync lint examples/authoring/support.json --config config.example.yaml "
               "--against-mirror")
    result = CliRunner().invoke(main, shlex.split(command)[1:])
    assert result.output.splitlines() == pasted(command)
