"""Public holidays computed before, kept in a small file, so that a run does not import the
`holidays` package (about a tenth of a second of CPU, most of a quiet sync's policy load)
for dates it has already computed.

The file holds, per (country, subdivision, year), the dates the package gave, under a
fingerprint of the installed package (its location, its version file's text, the size and
modification time of both its `__init__.py` and version file): an upgrade or another
installation gives another fingerprint, and the file is then ignored and written afresh.
The package is deterministic for one version and one input, which is what makes a kept
answer the same answer. Only answers are kept, never refusals (an unknown country is asked
of the package every time, so its message stays the package's).

It is a cache: missing, unreadable, damaged or of another fingerprint, it is ignored; it
is written atomically (temporary file, rename) without fsync, and a failure to write it is
ignored. `sla-sync run` keeps it beside the state file (`state.db-holidays`) and hands
`HolidayStore(path)` to load_policy, which gives it to the policy's calendars.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from datetime import date
from pathlib import Path

from sla_sync.rules.calendar import public_holidays

FORMAT = "sla-sync public holidays 1"


def fingerprint() -> str:
    """Of the installed holidays package, found without importing it ("" if none)."""
    try:
        spec = importlib.util.find_spec("holidays")
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin:
        return ""
    init = Path(spec.origin)
    parts = [str(init)]
    for path in (init, init.with_name("version.py")):
        try:
            stat = path.stat()
            parts += [str(stat.st_size), str(stat.st_mtime_ns)]
            if path.name == "version.py":
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            parts.append("-")
    return hashlib.sha1("\0".join(parts).encode("utf-8", "replace")).hexdigest()


class HolidayStore:
    """A calendar's source of public holidays (rules/calendar.py `Holidays`): the dates kept
    in the file at `path`, else the package's answer, then kept."""

    def __init__(self, path: Path):
        self.path = path
        self._loaded: tuple[str, dict[str, list[str]]] | None = None  # (fingerprint, entries)

    def __call__(self, country: str, subdiv: str | None, year: int) -> frozenset[date]:
        mark, entries = self._entries()
        key = f"{country}/{subdiv or ''}/{year}"
        if mark and key in entries:
            try:
                return frozenset(date.fromisoformat(day) for day in entries[key])
            except ValueError:
                pass
        days = public_holidays(country, subdiv, year)  # a refusal raises: nothing is kept
        if mark:
            entries[key] = sorted(day.isoformat() for day in days)
            self._write(mark, entries)
        return days

    def _entries(self) -> tuple[str, dict[str, list[str]]]:
        if self._loaded is None:
            mark = fingerprint()
            entries: dict[str, list[str]] = {}
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("format") == FORMAT \
                        and data.get("package") == mark and isinstance(data.get("days"), dict):
                    entries = {key: days for key, days in data["days"].items()
                               if isinstance(days, list) and all(isinstance(d, str) for d in days)}
            except (OSError, ValueError):
                pass
            self._loaded = (mark, entries)
        return self._loaded

    def _write(self, mark: str, entries: dict[str, list[str]]) -> None:
        text = json.dumps({"format": FORMAT, "package": mark, "days": entries}, sort_keys=True)
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                        dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                os.replace(temp, self.path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError:
            pass
