"""The rule author's commands: `sla-sync test`, `lint` and `schema`.

A thin click layer over rules.policytest, rules.lint and rules.schema; sync.py registers
these commands in its group. Exit codes: 0 all good; 1 a test failed or lint found an
error; 2 a broken test file, policy, config or bad usage.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from rules.policytest import (
    CaseResult,
    TestFileError,
    find_test_files,
    junit_xml,
    load_test_file,
    run_case,
    summary,
)

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
        partial.write_text(junit_xml(results), encoding="utf-8")
        os.replace(partial, junit_file)
    click.echo(summary(results))
    if any(not r.passed for r in results):
        sys.exit(EXIT_FAILED)


AUTHOR_COMMANDS = (test,)
