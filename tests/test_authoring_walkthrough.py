"""The README's rule-author walk-through stays true: its files exist, its pasted outputs are
what the commands print, and the shipped schema file is the one `sla-sync schema` prints."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from click.testing import CliRunner
from conftest import ROOT

from rules.schema import json_schema
from sync import main

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


def test_the_shipped_schema_file_is_the_generated_one() -> None:
    shipped = json.loads((ROOT / "examples" / "authoring" / "policy.schema.json").read_text())
    assert shipped == json_schema(), \
        "regenerate it: sla-sync schema > examples/authoring/policy.schema.json"
