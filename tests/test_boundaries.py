"""The rooms' boundaries (docs/architecture.md), checked in a fresh interpreter: importing
all of `rules` loads no HTTP library, all of `connector` loads no business-rules, and the
state store loads neither the rules engine nor business-rules."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

from conftest import ROOT

HTTP = ("requests", "urllib3", "tenacity", "http.client", "sla_sync.connector.http")
ENGINE = ("business_rules", "sla_sync.rules.engine", "sla_sync.rules.planner")


def modules_of(folder: str) -> list[str]:
    found = [f"sla_sync.{folder}.{m.name}" for m in pkgutil.iter_modules([str(ROOT / folder)])]
    assert len(found) > 5, f"{folder}/: expected its modules, found {found}"
    return found


def loaded_by(modules: list[str]) -> set[str]:
    """The modules a fresh interpreter holds after importing `modules`."""
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + \
        "print('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT / "tests")
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def within(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == n or m.startswith(n + ".") for n in names))


def test_the_check_sees_what_it_looks_for() -> None:
    """The probe itself: importing the HTTP layer does load requests, the planner does load
    business-rules (else an empty answer below would prove nothing)."""
    assert "requests" in within(loaded_by(["sla_sync.connector.http"]), HTTP)
    assert "business_rules" in within(loaded_by(["sla_sync.rules.planner"]), ENGINE)


def test_rules_load_no_http_library() -> None:
    assert within(loaded_by(modules_of("rules")), HTTP) == []


@pytest.mark.parametrize("module", ["connector", "sync_state"])
def test_connectors_and_the_state_store_load_no_rules_engine(module: str) -> None:
    modules = modules_of("connector") if module == "connector" else ["sla_sync.sync_state"]
    assert within(loaded_by(modules), ENGINE) == []


def test_the_cli_loads_what_a_sync_of_the_file_helpdesk_does_not_need_only_when_asked():
    """Start-up cost: the HTTP library, prometheus_client and the commands' own modules
    (authoring, audit, check, serve) load when a command needs them, not with the CLI; the
    alert channels (sync_alerts) only when the config has them or an alert is raised, and
    their SMTP, TLS and email modules only when a channel sends."""
    lazy = (*HTTP, "prometheus_client", "sla_sync.sync_author", "sla_sync.sync_audit",
            "sla_sync.sync_check", "sla_sync.sync_serve", "sla_sync.sync_extend",
            "sla_sync.sync_alerts", "smtplib",
            "ssl", "email.utils")
    assert within(loaded_by(["sla_sync.sync"]), lazy) == []
    from conftest import cli
    listed = cli("--help").output
    assert all(name in listed for name in ("backtest", "audit", "revert", "check", "lint",
                                           "schema", "test", "run", "serve")), listed
