"""The rule author's commands: `sla-sync test`, `lint` and `schema`.

A thin click layer over rules.policytest, rules.lint and rules.schema; sync.py registers
these commands in its group. Exit codes: 0 all good; 1 a test failed or lint found an
error; 2 a broken test file, policy, config or bad usage.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from sla_sync.connector import open_connector
from sla_sync.connector.model import Record
from sla_sync.rules.lint import ERROR, lint, mirror_shares
from sla_sync.rules.policy import Policy, PolicyError, load_policy
from sla_sync.rules.policytest import (
    CaseResult,
    TestFileError,
    find_test_files,
    junit_xml,
    load_test_file,
    run_case,
    summary,
)
from sla_sync.rules.schema import json_schema, rule_data
from sla_sync.sync_config import ConfigError, load_config
from sla_sync.sync_state import StateError, StateStore

EXIT_FAILED, EXIT_INVALID = 1, 2


@click.command("test")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...",
                type=click.Path(exists=True, path_type=Path))
@click.option("--junit", "junit_file", type=click.Path(path_type=Path), metavar="FILE",
              help="Also write the results as JUnit XML to FILE (for CI systems).")
def test(paths: tuple[Path, ...], junit_file: Path | None) -> None:
    """Run policy tests (*.test.yaml, *.test.yml, *.test.json; a directory is searched)
    through the real planner: one line per case, a diff on failure, exit 1 on any failure,
    2 on a broken test file."""
    files = find_test_files(paths)
    if not files:
        click.echo(f"no test files (*.test.yaml, *.test.yml, *.test.json) under "
                   f"{', '.join(map(str, paths))}", err=True)
        sys.exit(EXIT_INVALID)
    loaded, broken = [], []
    for path in files:
        try:
            loaded.append(load_test_file(path))
        except TestFileError as exc:
            broken.append(exc)
    if broken:
        for error in broken:
            for problem in error.problems:
                click.echo(problem, err=True)
        click.echo(f"error: {len(broken)} broken test file{'s' if len(broken) > 1 else ''}; "
                   "no case ran", err=True)
        sys.exit(EXIT_INVALID)
    results: list[CaseResult] = []
    for test_file in loaded:
        for case in test_file.cases:
            result = run_case(case, test_file.policy, str(test_file.path))
            results.append(result)
            click.echo(f"{'PASS' if result.passed else 'FAIL'} {result.file}::{result.name}")
            for line in result.failure:
                click.echo(f"    {line}")
    if junit_file is not None:
        partial = junit_file.with_name(f".{junit_file.name}.partial")
        try:
            partial.write_text(junit_xml(results), encoding="utf-8")
            os.replace(partial, junit_file)
        except OSError as exc:
            click.echo(f"{junit_file}: cannot write the JUnit XML ({exc.strerror})", err=True)
            sys.exit(EXIT_INVALID)
    click.echo(summary(results))
    if any(not r.passed for r in results):
        sys.exit(EXIT_FAILED)


def _load(policy_file: Path) -> Policy:
    try:
        return load_policy(policy_file)
    except PolicyError as exc:
        click.echo(f"{policy_file}: invalid policy (fix these first)", err=True)
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(EXIT_INVALID)


def priority_check(connector: Any) -> Callable[[str], bool] | None:
    """Whether the connector can write a priority, from its own priority map (the config's
    priority_map included); None for a helpdesk that takes any priority."""
    for owner, name in (("words", "priority"), ("_maps", "priority"), ("options", "priorities")):
        table = getattr(getattr(connector, owner, None), name, None)
        write = getattr(table, "write", None)
        if callable(write):
            def can_write(value: str, write: Callable[[str], Any] = write) -> bool:
                try:
                    write(value)
                except ValueError:
                    return False
                return True
            return can_write
    return None


def _mirror(state: Path) -> list[Record]:
    if not state.exists():
        click.echo(f"{state}: no state file yet: run `sla-sync run` first", err=True)
        sys.exit(EXIT_INVALID)
    try:
        with StateStore(state) as store:
            return store.all_records()
    except StateError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INVALID)


@click.command("lint")
@click.argument("policy_file", metavar="POLICY", type=click.Path(path_type=Path))
@click.option("--config", "config_path", type=click.Path(path_type=Path), metavar="FILE",
              help="Also check the policy against this config: webhooks it defines, "
                   "priorities its connector can write.")
@click.option("--against-mirror", is_flag=True,
              help="With --config: also count the records the state file knows that each "
                   "SLA matches, and those no SLA matches.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def lint_command(policy_file: Path, config_path: Path | None, against_mirror: bool,
                 as_json: bool) -> None:
    """Find what a valid policy gets wrong: shadowed or unreachable SLAs, conditions that
    cannot hold, names nothing defines, rules that undo or re-trigger each other, warnings
    after the breach. One line per finding (SEVERITY: PATH: why); exit 1 on an error."""
    if against_mirror and config_path is None:
        raise click.UsageError("--against-mirror reads the state file the config names: give "
                               "--config FILE")
    policy = _load(policy_file)
    webhooks = writable = None
    records: list[Record] | None = None
    if config_path is not None:
        try:
            config = load_config(config_path)
            connector = open_connector(dict(config.connector), config.base_dir)
        except (ConfigError, ValueError) as exc:
            click.echo(f"{config_path}: {exc}", err=True)
            sys.exit(EXIT_INVALID)
        webhooks = list(config.webhooks or {})
        writable = priority_check(connector)
        if against_mirror:
            records = _mirror(config.state)
    try:
        findings = lint(policy, webhooks, writable)
    except Exception as exc:  # a bug in lint must not look like a finding, nor a traceback
        click.echo(f"{policy_file}: lint failed: {exc!r}", err=True)
        sys.exit(EXIT_INVALID)
    shares: dict[str, int] | None = None
    if records is not None:
        found, shares = mirror_shares(policy, records, datetime.now(UTC))
        findings += found
    errors = sum(f.severity == ERROR for f in findings)
    if as_json:
        out: dict[str, Any] = {"policy": str(policy_file), "errors": errors,
                               "warnings": len(findings) - errors,
                               "findings": [f.to_dict() for f in findings]}
        if shares is not None:
            out["mirror"] = {"records": sum(shares.values()), "by_sla": shares}
        click.echo(json.dumps(out, indent=2))
    else:
        for finding in findings:
            click.echo(str(finding))
        if shares is not None:
            total = sum(shares.values()) or 1
            for name, count in shares.items():
                click.echo(f"share: {name or '(no SLA)'}: {count} of {sum(shares.values())} "
                           f"known records ({100 * count / total:.1f}%)", err=True)
        click.echo(f"{policy_file}: {errors} error{'s' if errors != 1 else ''}, "
                   f"{len(findings) - errors} warning{'s' if len(findings) - errors != 1 else ''}",
                   err=True)
    if errors:
        sys.exit(EXIT_FAILED)


@click.command("schema")
@click.option("--format", "fmt", type=click.Choice(["json-schema", "business-rules"]),
              default="json-schema", show_default=True,
              help="json-schema: the policy file's JSON Schema (draft 2020-12), for editors; "
                   "business-rules: export_rule_data's variables, operators and actions, for "
                   "rule-builder UIs.")
def schema(fmt: str) -> None:
    """Print the policy format, generated from the checker's own definitions."""
    data = json_schema() if fmt == "json-schema" else rule_data()
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


AUTHOR_COMMANDS = (test, lint_command, schema)
