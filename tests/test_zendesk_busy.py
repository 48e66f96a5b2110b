"""A second of more than 1,000 ticket events, through `sla-sync run` against the Zendesk fake
(tests/faultdesk.py). The time-based event export ends each page at its last event's second
and starts the next page there, so the events of such a second past a page never come: the
connector goes on at the next second and reads the audits of the tickets those events may
belong to (connector/zendesk.py `Watch`). The records must be what the audits say, the
cursor must move on, a rerun must write nothing, and once the watch is over a quiet run
costs its two export requests again."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import act, cli, cond, rule
from faultdesk import EXPORT_PAGE, FaultDesk, Ticket, stamp, unix
from sla_sync.connector.base import MemoryInProcess
from sla_sync.connector.model import Message, StatusChange
from sla_sync.connector.zendesk import Zendesk
from sla_sync.sync_state import StateStore

EMAIL = "sla-bot@acme.example.com"
TOKEN = "zd-busy-token-51c0"  # made up
T0 = unix("2026-03-02T12:00:00Z")
BUSY = T0 - 1800  # a macro on every ticket in this one second
TICKETS = 1030  # more than a page of events in BUSY
AGENT, BOT = 361001, 361099  # the fake's person and the API user (update_many's author)
ESCAPEE = TICKETS  # its BUSY event is past the page; updated again in the run's last minute

POLICY = {"slas": [{"name": "standard", "targets": {"resolution": "48h"},
                    "pause_statuses": ["pending"]}],
          "rules": [rule("waiting", {"all": [cond("status", "equal_to", "pending")]},
                         act("add_tag", tag="sla_waiting"))]}


@pytest.fixture
def desk() -> Iterator[FaultDesk]:
    desk = FaultDesk(EMAIL, TOKEN, now=BUSY).start()
    for number in range(1, TICKETS + 1):
        # two creations a second at most, an hour before the burst
        created = BUSY - 3600 + number // 2
        desk.add(Ticket(id=number, subject=f"T{number}", created_at=created,
                        updated_at=created, tags=["tier_standard"]))
    desk.now = BUSY
    for number in range(1, TICKETS + 1):  # the macro: pending, assigned, a public reply
        desk._update(desk.tickets[number], {
            "status": "pending", "assignee_id": AGENT,
            "comment": {"body": "We are looking into it.", "public": True}})
    desk.now = BUSY + 5
    for number in range(TICKETS - 20, TICKETS):  # some are answered again a bit later
        desk._update(desk.tickets[number], {"comment": {"body": "More news.",
                                                        "public": True}})
    yield desk
    desk.stop()


def project(folder: Path, desk: FaultDesk) -> Path:
    (folder / "policy.json").write_text(json.dumps(POLICY))
    (folder / "config.yaml").write_text(
        "connector:\n  type: zendesk\n"
        f"  url: {desk.url}\n  email: {EMAIL}\n  token: ${{ZENDESK_TOKEN}}\n"
        "  start_time: 2026-03-01T00:00:00Z\n"
        f"  agents: {{{AGENT}: sam, {BOT}: bot}}\n"
        "  requests_per_minute: 100000\n  api_requests_per_minute: 100000\n"
        "  sandbox: true\n"
        "policy: policy.json\nstate: state.db\nfirst_run: act\n")
    return folder / "config.yaml"


def run(config: Path, desk: FaultDesk, now: int) -> tuple[str, Counter[str]]:
    desk.now = max(desk.now, now)
    desk.log.clear()
    result = cli("run", "--config", str(config), "--now", stamp(now))
    assert result.exit_code == 0, result.stdout + result.stderr
    paths = Counter("audits" if path.endswith("/audits") else path
                    for _, path, _ in desk.log)
    return result.stdout + result.stderr, paths


def cursor(config: Path, desk: FaultDesk) -> dict[str, Any]:
    with StateStore(config.parent / "state.db") as store:
        return json.loads(store.cursor(f"zendesk:{desk.url}") or "{}")


def stories(config: Path, ids: list[str]) -> dict[str, Any]:
    with StateStore(config.parent / "state.db") as store:
        records = {i: store.record(i) for i in ids}
    return {i: None if r is None else (r.status_history, r.messages, r.assignment_history)
            for i, r in records.items()}


def test_a_busy_second_is_passed_and_its_tickets_are_read_from_their_audits(
        desk, tmp_path, monkeypatch):
    monkeypatch.setenv("ZENDESK_TOKEN", TOKEN)
    monkeypatch.setattr("sla_sync.connector.http.wait", desk_waits(desk))
    at_busy = [e for e in desk.events if e["timestamp"] == BUSY]
    assert len(at_busy) == TICKETS > EXPORT_PAGE
    # The tickets whose BUSY event no page holds (pages are in (time, id) order).
    unread = sorted({e["ticket_id"] for e in at_busy[EXPORT_PAGE:]})
    assert ESCAPEE in unread and len(unread) == TICKETS - EXPORT_PAGE
    desk.now = T0 - 30
    desk.person_edits(ESCAPEE)  # inside the last minute at the first run: not exported yet
    config = project(tmp_path, desk)
    connector = Zendesk.from_settings({"type": "zendesk", "url": desk.url, "email": EMAIL,
                                       "token": TOKEN, "agents": {AGENT: "sam", BOT: "bot"},
                                       "api_requests_per_minute": 100000}, tmp_path)

    out, requests = run(config, desk, T0)
    assert "1,000 events or more at" in out
    assert f" writes {TICKETS - 1}," in out, out  # every pending ticket but the escapee
    # Every exported ticket was created before the busy second and updated since: each is
    # read from its audits, once.
    assert requests["audits"] == TICKETS - 1
    position = cursor(config, desk)
    assert position["events"] > BUSY and position["watch"][:2] == [BUSY, BUSY]
    assert position["watch"][2] == T0  # the server's time when the ticket export ended
    with StateStore(config.parent / "state.db") as store:
        assert store.record(str(ESCAPEE)) is None  # its event at T0 - 30 is not read yet
    ids = [str(n) for n in unread if n != ESCAPEE]
    mirrored = stories(config, ids)
    for ticket in ids:
        history, messages, assignments = mirrored[ticket]
        assert StatusChange(_at(BUSY), "pending") in history, ticket
        assert Message(_at(BUSY), "agent", True) in messages, ticket
        assert assignments[-1].assignee == "sam", ticket
    # What the mirror holds is what the ticket's audits say (read after the writes: less
    # the sla-sync's own tag change, which tells no story).
    assert mirrored == {i: (r.status_history, r.messages, r.assignment_history)
                        for i, r in ((i, connector.get(i)) for i in ids)}

    # The rerun: the escapee's event (inside the watch) marks it, and it is read from its
    # audits too. The first run's own writes made no busy second (paced: at most 500 a
    # second). Nothing is written but the escapee's tag.
    out, requests = run(config, desk, T0 + 180)
    assert " writes 1," in out, out  # the escapee, pending since BUSY, now seen
    history, messages, _ = stories(config, [str(ESCAPEE)])[str(ESCAPEE)]
    assert StatusChange(_at(BUSY), "pending") in history
    assert Message(_at(BUSY), "agent", True) in messages
    out, requests = run(config, desk, T0 + 240)
    assert " writes 0," in out, out

    # Once the event export has been read well past the watch, a quiet run costs the two
    # export requests again.
    out, requests = run(config, desk, T0 + 1200)
    assert " writes 0," in out, out
    position = cursor(config, desk)
    assert position["watch"] is None and position["suspects"] == []
    assert sum(requests.values()) == 2, requests


def desk_waits(desk: FaultDesk) -> Any:
    """The client's waits (job polls, the write pace) move the desk's clock on, as the
    time waited moves Zendesk's: nothing sleeps."""
    clock = [float(desk.now)]

    def wait(seconds: float) -> None:
        clock[0] = max(clock[0], desk.now) + seconds
        desk.now = int(clock[0])
    return wait


def test_the_syncs_own_writes_make_no_busy_second_and_are_read_back_page_by_page(
        tmp_path, monkeypatch):
    """A run that writes 2,000 tickets: they go as batches of five jobs, each batch queued
    once Zendesk's clock (the answers' `Date`) has passed the second of the last poll of
    the one before, so no second holds more than 500 of the run's updates, and the next run
    reads the two exports, not a ticket's audits. (With the ten jobs a batch of before, the
    first 1,000 updates shared a second: the next run read every ticket's audits.)

    Each page of the event export starts at a whole second and the next one at the second
    it ended on, whose events come again. The fake (like an account whose job workers are
    idle) applies a batch's jobs in one second: at 500 tickets a batch every page of the
    2,000 updates read back would end on a whole second and the next page bring it again
    (four pages: 500 new events each after the first). At 499 a batch (100, 100, 100, 100,
    99), a page ends two events into its third second: three pages."""
    monkeypatch.setenv("ZENDESK_TOKEN", TOKEN)
    desk = FaultDesk(EMAIL, TOKEN, now=T0 - 7200).start()
    try:
        for number in range(1, 2001):
            created = T0 - 7200 + number // 2
            desk.add(Ticket(id=number, subject=f"T{number}", created_at=created,
                            updated_at=created, status="pending", tags=["tier_standard"]))
        monkeypatch.setattr("sla_sync.connector.http.wait", desk_waits(desk))
        config = project(tmp_path, desk)
        out, _ = run(config, desk, T0)
        assert " writes 2000," in out, out
        per_second = Counter(e["timestamp"] for e in desk.events if e["timestamp"] >= T0)
        assert sum(per_second.values()) == 2000 and max(per_second.values()) == 499, \
            per_second

        out, requests = run(config, desk, desk.now + 120)  # past the exports' minute
        assert " writes 0," in out, out
        assert "1,000 events or more" not in out
        assert requests["audits"] == 0, requests
        assert requests["/api/v2/incremental/ticket_events"] == 3, requests
        assert cursor(config, desk)["watch"] is None
    finally:
        desk.stop()


def _at(unix_time: int) -> datetime:
    return datetime.fromtimestamp(unix_time, UTC)


def test_tickets_exported_before_their_busy_second_was_met_are_exported_again(desk):
    """The events are read before the tickets: a fetch can export a ticket updated in a
    second whose events it has not read yet. When the next fetch meets that second busy,
    the ticket export starts again at it, and those tickets come again, audited."""
    for number in range(2001, 2601):  # quiet tickets, so that the first pages hold these
        created = BUSY - 5000 + number // 2
        desk.add(Ticket(id=number, subject=f"T{number}", created_at=created,
                        updated_at=created, tags=["tier_standard"]))
    desk.export_page = 500
    connector = Zendesk.from_settings({"type": "zendesk", "url": desk.url, "email": EMAIL,
                                       "token": TOKEN, "agents": {AGENT: "sam", BOT: "bot"},
                                       "start_time": "2026-03-01T00:00:00Z",
                                       "requests_per_minute": 100000,
                                       "api_requests_per_minute": 100000}, Path("."))
    # The desk changes between two page reads: each page is read when it is asked for.
    connector.read_ahead = False
    desk.now = BUSY + 59  # the burst is in the last minute: neither export has it
    memory = MemoryInProcess()
    pages = connector.fetch(None, memory)
    first = [next(pages)]
    while not first[-1].records:  # the event export's pages, then the first ticket page
        first.append(next(pages))
    desk.now = BUSY + 100  # the burst is exported now, its events were read before
    first += list(pages)
    burst = {r.id: r for page in first for r in page.records if int(r.id) <= TICKETS}
    assert len(burst) == TICKETS
    assert all(StatusChange(_at(BUSY), "pending") not in r.status_history
               for r in burst.values())

    desk.now = BUSY + 200
    desk.log.clear()
    # Ticket 5's audits are refused (as for a ticket deleted since the export): it keeps
    # what the events told (its event of the busy second is on the page), with a notice.
    desk.inject("5xx", method="GET", path=r"/tickets/5/audits$", status=404)
    pages = list(connector.fetch(first[-1].cursor, memory))
    again = {r.id: r for page in pages for r in page.records}
    assert any("ticket 5: its audits could not be read" in n
               for page in pages for n in page.notices)
    assert set(again) >= set(burst)  # every ticket of the burst, though none changed since
    for ticket in burst:
        assert StatusChange(_at(BUSY), "pending") in again[ticket].status_history, ticket
        assert Message(_at(BUSY), "agent", True) in (again[ticket].messages or ()), ticket
    assert sum(path.endswith("/audits") for _, path, _ in desk.log) == TICKETS
