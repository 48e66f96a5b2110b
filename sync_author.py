"""The rule author's commands: `sla-sync test`, `lint`, `schema` and `backtest`.

A thin click layer over rules.policytest, rules.lint, rules.schema and rules.backtest;
sync.py registers
these commands in its group. Exit codes: 0 all good; 1 a test failed or lint found an
error; 2 a broken test file, policy, config or bad usage.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from sla_sync.connector import open_connector
from sla_sync.connector.base import ConnectorError
from sla_sync.connector.file import FileHelpdesk, file_problem
from sla_sync.connector.model import Record, format_instant
from sla_sync.rules import backtest as backtesting
from sla_sync.rules.durations import parse_duration
from sla_sync.rules.lint import ERROR, lint, mirror_shares
from sla_sync.rules.metrics import SEGMENT_FIELDS
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
from sla_sync.sync_config import ConfigError, load_config, locate
from sla_sync.sync_options import breakdowns, instant_option
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


def _history(config_path: str | None, from_file: Path | None,
             ) -> tuple[list[Record], dict[str, list[tuple[str, Any, Any]]] | None]:
    """The records to replay, from --from FILE (no audit), or the state file's mirror
    opened read-only, with the audit of sla-sync's own writes by record."""
    if from_file is not None:
        try:
            pages = list(FileHelpdesk(from_file).fetch(None))
        except ConnectorError as exc:
            click.echo(str(exc), err=True)
            sys.exit(EXIT_INVALID)
        skipped = [p for page in pages for p in page.problems]
        for problem in skipped:
            click.echo(f"skipped: {problem}", err=True)
        if skipped:
            click.echo(f"skipped {len(skipped)} record(s) of {from_file} that cannot be "
                       "replayed (they are left out of every figure)", err=True)
        return [r for page in pages for r in page.records], None
    try:
        config = load_config(locate(config_path))
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INVALID)
    if not config.state.exists():
        click.echo(f"{config.state}: no state file yet: run `sla-sync run` first, or "
                   "backtest on a file with --from FILE", err=True)
        sys.exit(EXIT_INVALID)
    try:
        with StateStore(config.state, readonly=True) as store:
            records = store.all_records()
            audit = {r.id: [(row["field"], json.loads(row["before"] or "null"),
                             json.loads(row["after"] or "null"))
                            for row in store.history(r.id)
                            # an agent's extension (`sla-sync extend`) is the person's
                            # decision, part of the history replayed, not undone
                            if row["action"] != "extend"] for r in records}
    except StateError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INVALID)
    except (sqlite3.DatabaseError, ValueError) as exc:
        click.echo(f"{config.state}: cannot read the state file ({exc})", err=True)
        sys.exit(EXIT_INVALID)
    return records, {k: v for k, v in audit.items() if v}


@click.command("backtest")
@click.option("--policy", "policy_file", required=True, type=click.Path(path_type=Path),
              metavar="NEW", help="The policy to replay.")
@click.option("--baseline", "baseline_file", type=click.Path(path_type=Path), metavar="OLD",
              help="Also replay this policy, and show the difference and the flips.")
@click.option("--config", "config_path", metavar="FILE",
              help="The config whose state file's mirror holds the records (default: "
                   "$SLA_SYNC_CONFIG, else ./config.yaml).")
@click.option("--from", "from_file", type=click.Path(path_type=Path), metavar="FILE",
              help="Read the records from a file in the embedded helpdesk's format instead.")
@click.option("--since", required=True, metavar="DATE",
              help="Replay the records created from this instant (a date: UTC midnight).")
@click.option("--until", metavar="DATE", help="... and before this one, up to it "
                                               "(default: now).")
@click.option("--step", default="5m", show_default=True, metavar="DURATION",
              help="How often the replayed sla-sync runs.")
@click.option("--by", multiple=True, metavar="FIELD[,FIELD]",
              help=f"Break down by a field ({', '.join(SEGMENT_FIELDS)}), as `report` does.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]),
              default="table", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), metavar="FILE",
              help="Write to FILE instead of stdout.")
def backtest(policy_file: Path, baseline_file: Path | None, config_path: str | None,
             from_file: Path | None, since: str, until: str | None, step: str,
             by: tuple[str, ...], fmt: str, out: Path | None) -> None:
    """Replay the records' history as if sla-sync had been running with a policy: the
    rules that would have fired and when, their writes, warnings, escalations, breaches and
    compliance by segment; with --baseline, the difference and the records whose outcome
    flips. Writes nothing to the helpdesk or the state file."""
    start = instant_option(since, "--since")
    end = instant_option(until, "--until") or datetime.now(UTC)
    assert start is not None
    if start >= end:
        raise click.BadParameter(f"{format_instant(start)} is not before --until "
                                 f"{format_instant(end)}", param_hint="--since")
    try:
        seconds = parse_duration(step)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--step") from None
    if seconds < 1:
        raise click.BadParameter("must be at least 1s", param_hint="--step")
    groups = breakdowns(by)
    policy = _load(policy_file)
    baseline = _load(baseline_file) if baseline_file is not None else None
    records, audit = _history(config_path, from_file)
    data = backtesting.backtest(records, policy, start, end, timedelta(seconds=seconds),
                                groups, baseline, audit=audit)
    for run in ("policy", "baseline"):
        for failed in (data[run] or {}).get("failed", ()):
            click.echo(f"skipped ({run}): record {failed['id']!r}: {failed['reason']}",
                       err=True)
    if data["records"] == 0:
        click.echo(f"note: no record was created between {format_instant(start)} and "
                   f"{format_instant(end)}; nothing to replay", err=True)
    if fmt == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    elif fmt == "html":
        text = backtesting.html_page(data)
    else:
        text = backtesting.table(data)
    if out is None:
        click.echo(text, nl=False)
        return
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        click.echo(file_problem(out, exc, "write the backtest") + "; nothing was written",
                   err=True)
        sys.exit(EXIT_INVALID)
    click.echo(f"wrote {out} ({data['records']} records replayed)", err=True)


AUTHOR_COMMANDS = (test, lint_command, schema, backtest)
