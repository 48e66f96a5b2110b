"""Public holidays kept beside the state (rules/holiday_store.py): a run that has computed
a region's holidays before gets the same dates without importing the holidays package."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from conftest import ROOT, cli, record_dict, write_project
from sla_sync.rules import holiday_store
from sla_sync.rules.calendar import Calendar
from sla_sync.rules.holiday_store import HolidayStore
from sla_sync.rules.policy import Policy, load_policy


def fresh_process(store: Path) -> dict[str, object]:
    """In a new process with the store set: Berlin's 2026 holidays, and whether the holidays
    package was imported to get them."""
    code = ("import json, sys; from pathlib import Path; "
            "from sla_sync.rules.holiday_store import HolidayStore; "
            f"kept = HolidayStore(Path({str(store)!r})); "
            "days = sorted(d.isoformat() for d in kept('DE', 'BE', 2026)); "
            "print(json.dumps({'days': days, 'imported': 'holidays' in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    return dict(json.loads(done.stdout))


def test_kept_holidays_are_the_packages_and_spare_its_import(tmp_path: Path):
    store = tmp_path / "state.db-holidays"
    first = fresh_process(store)
    assert first["imported"] is True and store.exists()
    assert "2026-12-25" in first["days"] and "2026-03-08" in first["days"]  # Berlin: Women's Day
    again = fresh_process(store)
    assert again == {"days": first["days"], "imported": False}


@pytest.mark.parametrize("damage", ["not json", json.dumps({"format": "other"}), "[]"])
def test_a_damaged_store_is_ignored_and_written_afresh(tmp_path: Path, damage: str):
    store = tmp_path / "kept"
    store.write_text(damage)
    days = HolidayStore(store)("DE", "BE", 2026)
    assert date(2026, 12, 25) in days
    assert json.loads(store.read_text())["days"]["DE/BE/2026"] == \
        sorted(d.isoformat() for d in days)


def test_another_installation_of_the_package_is_not_trusted(tmp_path: Path):
    store = tmp_path / "kept"
    kept = {"DE/BE/2026": ["2026-06-01"]}
    store.write_text(json.dumps({"format": holiday_store.FORMAT, "package": "another",
                                 "days": kept}))
    days = HolidayStore(store)("DE", "BE", 2026)
    assert date(2026, 6, 1) not in days and date(2026, 12, 25) in days
    # the same entry under this installation's fingerprint is what a calendar gets
    store.write_text(json.dumps({"format": holiday_store.FORMAT,
                                 "package": holiday_store.fingerprint(), "days": kept}))
    assert HolidayStore(store)("DE", "BE", 2026) == {date(2026, 6, 1)}


def test_a_refusal_is_never_kept(tmp_path: Path):
    store = tmp_path / "kept"
    with pytest.raises(NotImplementedError):
        HolidayStore(store)("ZZ", None, 2026)
    assert not store.exists()


def test_a_policy_loaded_with_a_store_gets_its_calendars_holidays_from_it(tmp_path: Path):
    store = tmp_path / "kept"
    store.write_text(json.dumps({"format": holiday_store.FORMAT,
                                 "package": holiday_store.fingerprint(),
                                 "days": {"DE/BE/2026": ["2026-06-02"]}}))
    path = ROOT / "policies" / "tiered-support.json"
    def berlin(policy: Policy) -> Calendar:
        return next(sla.calendar.default for sla in policy.slas
                    if sla.calendar.default.name == "berlin-office")

    calendar = berlin(load_policy(path, HolidayStore(store)))
    assert calendar.is_holiday(date(2026, 6, 2)) and not calendar.is_holiday(date(2026, 12, 25))
    plain = berlin(load_policy(path))
    assert plain.is_holiday(date(2026, 12, 25)) and not plain.is_holiday(date(2026, 6, 2))


def test_a_run_keeps_them_beside_the_state_and_a_dry_run_does_not(tmp_path: Path):
    policy = json.loads((ROOT / "policies" / "tiered-support.json").read_text())
    assert {"country": "DE", "subdiv": "BE"} in policy["calendars"]["berlin-office"]["holidays"]
    config = write_project(tmp_path, [record_dict()], policy)
    store = tmp_path / "state.db-holidays"
    cli("run", "--config", str(config), "--dry-run", "--now", "2026-03-02T12:00:00+00:00")
    assert not store.exists()
    cli("run", "--config", str(config), "--now", "2026-03-02T12:00:00+00:00")
    assert "DE/BE/2026" in json.loads(store.read_text())["days"]
