"""Hostile records through the real `sla-sync run` on the file helpdesk: whatever a record
holds, the run never ends in a traceback, every record is either read or skipped and named
(none dropped silently), the good record beside them is written, and a rerun writes
nothing. Bounded and derandomized, so it runs in seconds and the same way every time."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import act, cli, cond, iso, record_dict, rule

POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [rule("breach", {"all": [cond("first_response_breached", "is_true")]},
                   act("add_tag", tag="sla_breach"), act("add_note", text="{id} overdue"))],
}
NOW = iso("2026-03-02 12:00")
GOOD = "T-GOOD"


def deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"x": [value]}
    return value


INSTANTS = ["9999-12-31T23:30-01:00", "0001-01-01T00:00+14:00", "2026-13-01T00:00Z",
            "2026-03-02T10:00", "", "2026-03-02T10:00:00+25:00", "1969-12-31T23:59Z",
            "2199-12-31T23:59Z", "\ud800", 1e308, -1, True, None, [], {}]
TEXTS = ["\ud800", "\udfff tail", "x" * 200_000, "\x00", "ok", 123, [], {}, None, True]
HOSTILE: dict[str, list[Any]] = {
    "id": ["", None, 12, True, GOOD, "\ud800", "x" * 10_000, [], {"a": 1}],
    "kind": ["deal", "", None, 7, "\ud800"],
    "created_at": INSTANTS, "updated_at": INSTANTS, "first_response_at": INSTANTS,
    "solved_at": INSTANTS,
    "subject": TEXTS, "status": TEXTS, "priority": TEXTS, "tier": TEXTS, "channel": TEXTS,
    "group": TEXTS, "assignee": TEXTS,
    "escalation_level": [10 ** 30, -5, float("nan"), float("inf"), "3", True, 2 ** 31, None],
    "tags": [["\ud800"], "not a list", [1, 2], [[]], ["x"] * 20_000, None, [None]],
    "status_history": [[{"at": "bad", "status": "open"}], "x", [None], [deep(50)],
                       [{"at": "9999-12-31T23:30-01:00", "status": "open"}],
                       [{"at": iso("2026-03-02 09:30"), "status": "\ud800"}]],
    "notes": [[{"at": iso("2026-03-02 09:30"), "text": "\udfff"}], "x", [None], [7]],
    "custom": [{"a": float("nan")}, deep(200), {"k" * 10_000: 1}, [], "x",
               {"n": 10 ** 400}],
}

hostile_record = st.builds(
    lambda n, fields: record_dict(**{"id": f"B-{n}", **dict(fields)}),
    st.integers(min_value=0, max_value=10_000),
    st.lists(st.sampled_from(sorted(HOSTILE)).flatmap(
        lambda key: st.tuples(st.just(key), st.sampled_from(HOSTILE[key]))),
        min_size=1, max_size=3))


def _figures(line: str) -> dict[str, int]:
    return {name: int(number) for number, name in
            ((m.group(2), m.group(1)) for m in re.finditer(r"(\w+) (\d+)", line))}


@settings(max_examples=30, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bad=st.lists(hostile_record, min_size=1, max_size=4))
def test_hostile_records_never_stop_the_run_and_are_each_read_or_named(tmp_path_factory,
                                                                       bad: list[Any]):
    folder: Path = tmp_path_factory.mktemp("desk")
    good = record_dict(id=GOOD, created_at=iso("2026-03-02 09:00"),
                       updated_at=iso("2026-03-02 09:00"))
    records = [good, *bad]
    # json.dumps writes NaN/Infinity and escapes lone surrogates: what a careless exporter
    # leaves in a file.
    (folder / "helpdesk.json").write_text(json.dumps({"records": records}))
    (folder / "policy.json").write_text(json.dumps(POLICY))
    config = folder / "config.yaml"
    config.write_text("connector: {type: file, path: helpdesk.json}\n"
                      "policy: policy.json\nstate: state.db\nfirst_run: act\n")

    first = cli("run", "--config", str(config), "--now", NOW)  # an exception fails the test
    output = first.stdout + first.stderr
    assert first.exit_code in (0, 3), output
    assert "Traceback" not in output
    [summary] = [line for line in first.stdout.splitlines() if line.startswith("run 1")]
    figures = _figures(summary)
    assert figures["read"] + figures["skipped"] == len(records), output  # none dropped

    stored = json.loads((folder / "helpdesk.json").read_text())["records"]
    twin = any(r.get("id") == GOOD for r in bad)
    written = [r for r in stored if r.get("id") == GOOD and "sla_breach" in (r.get("tags") or [])]
    if twin:  # every copy of a duplicated id is skipped, and named
        assert not written and f"'{GOOD}'" in first.stderr, output
    else:
        assert len(written) == 1, output

    again = cli("run", "--config", str(config), "--now", NOW)
    assert again.exit_code in (0, 3), again.stdout + again.stderr
    assert "writes 0," in again.stdout, again.stdout + again.stderr
