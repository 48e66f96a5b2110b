"""The fault suite: `sla-sync run` as a subprocess against a misbehaving Zendesk-shaped
server (tests/faultdesk.py) and the file helpdesk, faults injected and the process SIGKILLed
at many points (tests/killpoints.py); after fault-free reruns, the helpdesk must end exactly
as after a fault-free run: same fields, tags and escalation levels, no note or alert lost,
none repeated beyond the one record in flight at a kill. The tally is printed at the end of
the session (tests/faultstats.py).

Time is the desk's clock and `--now`, moved by the tests: runs at T0, again 10 s later
(inside Zendesk's one-minute export lag, where the issue measured repeated notes), at T1.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import faultstats
from conftest import act, cond, record_dict, rule
from faultdesk import FaultDesk, Ticket, stamp, unix
from sla_sync.sync_state import StateStore

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "sla-bot@acme.example.com"
TOKEN = "zd-fault-token-7c1e55aa90"  # made up; it must never show up in any output
T0 = unix("2026-03-02T12:00:00Z")
T1 = T0 + 3 * 3600
LAG = 10  # a rerun this long after a failed one: inside Zendesk's one-minute export lag
PERSON_TAG = "edited_by_a_person"  # the concurrent edit of the conflict fault
RUN_TIMEOUT = 60  # seconds one sync subprocess may take before the test gives up on it

POLICY = {
    "slas": [
        {"name": "vip", "when": cond("tier", "equal_to", "vip"),
         "targets": {"first_response": "30m", "resolution": "4h"}},
        {"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"},
         "pause_statuses": ["pending"]},
    ],
    "rules": [
        rule("warn", {"all": [cond("first_response_elapsed_pct", "greater_than_or_equal_to", 75),
                              cond("first_response_breached", "is_false")]},
             act("add_tag", tag="sla_warning")),
        rule("breach", {"all": [cond("first_response_breached", "is_true")]},
             act("add_tag", tag="sla_breach"), act("escalate", level=1),
             act("add_note", text="{id}: first response overdue"),
             act("notify", webhook="ops", text="{id}: first response overdue")),
        rule("late", {"all": [cond("resolution_breached", "is_true")]},
             act("set_priority", priority="urgent"), act("escalate", level=2),
             act("add_note", text="{id}: resolution overdue"),
             act("notify", webhook="ops", text="{id}: resolution overdue")),
        # A write that is a note and nothing else: nothing but the note shows it went out.
        rule("waiting", {"all": [cond("status", "equal_to", "pending"),
                                 cond("hours_since_updated", "greater_than_or_equal_to", 2)]},
             act("add_note", text="{id}: waiting on the customer for 2 hours")),
    ],
}

#: (id, minutes before T0 it was created, first reply after minutes, tier, status, priority)
#: Thresholds lie well away from T0, T0 + LAG and T1. At T0: 1, 5, 9 breach, 5 and 8 are
#: late, 2 warns, 6 has been waiting (a note alone); at T1: 2, 3, 10 breach, 4 and 11 are
#: late, 6 has been waiting again since T0's note; 7 (solved) and 12 (answered) never
#: change.
TICKETS = [
    (1, 185, None, "standard", "open", "normal"),
    (2, 50, None, "standard", "open", "normal"),
    (3, 10, None, "vip", "open", "normal"),
    (4, 455, 20, "standard", "open", "normal"),
    (5, 540, None, "standard", "open", "high"),
    (6, 175, None, "standard", "pending", "normal"),
    (7, 360, 10, "standard", "solved", "normal"),
    (8, 265, 10, "vip", "open", "normal"),
    (9, 85, None, "standard", "open", "normal"),
    (10, 15, None, "standard", "open", "low"),
    (11, 395, 30, "standard", "open", "normal"),
    (12, 60, 5, "standard", "open", "normal"),
]


def desk_tickets() -> list[Ticket]:
    tickets = []
    for number, age, reply, tier, status, priority in TICKETS:
        created = T0 - age * 60
        updated = created + 60 * (reply or 0) if status != "solved" else T0 - 120 * 60
        tickets.append(Ticket(
            id=number, subject=f"Ticket {number}", created_at=created, updated_at=updated,
            status=status, priority=priority, tags=[f"tier_{tier}"], reply_minutes=reply,
            solved_at=updated if status == "solved" else None))
    return tickets


def file_records() -> list[dict[str, Any]]:
    records = []
    for t in desk_tickets():
        records.append(record_dict(
            id=str(t.id), subject=t.subject, status=t.status, priority=t.priority,
            tier=t.tags[0].removeprefix("tier_"), created_at=stamp(t.created_at),
            updated_at=stamp(t.updated_at),
            first_response_at=None if t.reply_minutes is None
            else stamp(t.created_at + 60 * t.reply_minutes),
            solved_at=None if t.solved_at is None else stamp(t.solved_at),
            status_history=[{"at": stamp(t.created_at), "status": t.status}]))
    return records


# -- running the real CLI ------------------------------------------------------------------

@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    points: dict[str, int] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL

    @property
    def quiet(self) -> bool:
        """A completed run that wrote nothing."""
        return self.code == 0 and " writes 0," in self.stdout + self.stderr


class Launcher:
    """`python -m tests.killpoints --serve`, started once: it has imported sla-sync and forks
    a child per run, so that a run costs no interpreter start (tests/killpoints.py)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.pending = b""  # read from the launcher, not yet a whole line

    def run(self, args: list[str], cwd: Path, env: dict[str, str], out: Path, err: Path,
            desk: FaultDesk) -> int:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "killpoints", "--serve"], cwd=ROOT / "tests",
                env={**os.environ, "PYTHONPATH": str(ROOT / "tests")}, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE)
            self.pending = b""
        process = self.process
        assert process.stdin is not None
        process.stdin.write(json.dumps({"args": args, "cwd": str(cwd), "env": env,
                                        "stdout": str(out), "stderr": str(err)}).encode()
                            + b"\n")
        process.stdin.flush()
        pid = int(self._line(process, "pid"))
        desk.set_client(pid)  # the desk may kill the client as it takes a write
        try:
            return int(self._line(process, "exit", pid))
        finally:
            desk.set_client(None)

    def _line(self, process: subprocess.Popen[bytes], word: str,
              pid: int | None = None) -> str:
        """The launcher's next line, which must start with `word`; bounded by RUN_TIMEOUT."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self.pending:
            ready, _, _ = select.select([fd], [], [], RUN_TIMEOUT)
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"sla-sync run: no {word!r} from the launcher within "
                                     f"{RUN_TIMEOUT}s")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        text = line.decode()
        if not text.startswith(word + " "):
            raise AssertionError(f"the launcher (tests/killpoints.py) said {text!r}")
        return text.split()[1]

    def stop(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=RUN_TIMEOUT)


LAUNCHER = Launcher()


class Project:
    """A config, a policy and a state file in `folder`, against `desk` (Zendesk) or a file
    helpdesk (`kind="file"`, webhooks still go to the desk)."""

    def __init__(self, folder: Path, kind: str, desk: FaultDesk, bulk: bool = True):
        self.folder, self.kind, self.desk = folder, kind, desk
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "policy.json").write_text(json.dumps(POLICY))
        hooks = f"webhooks:\n  ops: {{url: '{desk.url}/hooks/ops', format: json}}\n"
        if kind == "file":
            (folder / "helpdesk.json").write_text(json.dumps({"records": file_records()}))
            connector = "connector: {type: file, path: helpdesk.json}\n"
        else:
            connector = (
                "connector:\n  type: zendesk\n"
                f"  url: {desk.url}\n  email: {EMAIL}\n  token: ${{ZENDESK_TOKEN}}\n"
                "  start_time: 2026-03-01T00:00:00Z\n"
                "  requests_per_minute: 6000\n  api_requests_per_minute: 6000\n"
                # The client's read timeout: a late answer costs this long, no more (and
                # a loaded machine answers well within it).
                "  timeout: 2.0\n  max_attempts: 4\n  max_retry_seconds: 60\n"
                f"  bulk_writes: {'true' if bulk else 'false'}\n"
                "  sandbox: true\n")  # a fake desk: --now may write to it
        (folder / "config.yaml").write_text(connector + hooks + "policy: policy.json\n"
                                            "state: state.db\nfirst_run: act\n")
        self.runs: list[Run] = []

    @property
    def identity(self) -> str:
        return f"file:{self.folder / 'helpdesk.json'}" if self.kind == "file" else \
            f"zendesk:{self.desk.url}"

    def run(self, now: int, kill: str | None = None) -> Run:
        """One `sla-sync run --now` in a child process of the launcher, SIGKILLed at `kill`
        (POINT:N, tests/killpoints.py)."""
        points, out, err = (self.folder / name for name in ("points.json", "out", "err"))
        points.unlink(missing_ok=True)
        env = {**os.environ, "ZENDESK_TOKEN": TOKEN, "PYTHONPATH": str(ROOT),
               "SLA_SYNC_POINTS": str(points)}
        env.pop("SLA_SYNC_KILL", None)
        if kill:
            env["SLA_SYNC_KILL"] = kill
        self.desk.now = max(self.desk.now, now)
        args = ["run", "--config", str(self.folder / "config.yaml"), "--now", stamp(now)]
        code = LAUNCHER.run(args, self.folder, env, out, err, self.desk)
        report = json.loads(points.read_text()) if points.exists() else {}
        run = Run(code, out.read_text(), err.read_text(), report.get("points", {}),
                  report.get("waits", []))
        self.runs.append(run)
        return run

    def finish(self, start: int, most: int = 4) -> list[Run]:
        """Fault-free reruns from `start` on until one completes and writes nothing."""
        runs = []
        for n in range(most):
            run = self.run(start + (LAG * n if n < 2 else 120 * n))
            runs.append(run)
            if run.quiet:
                return runs
        raise AssertionError("no quiet run after fault-free reruns:\n" +
                             "\n".join(r.stdout + r.stderr for r in runs))

    def store(self) -> StateStore:
        return StateStore(self.folder / "state.db")

    def cursor(self) -> str | None:
        if not (self.folder / "state.db").exists():
            return None
        with self.store() as store:
            return store.cursor(self.identity)

    def in_flight(self) -> tuple[set[str], set[str]]:
        """Records whose write is journalled and not settled; records whose alert is not
        marked sent."""
        if not (self.folder / "state.db").exists():
            return set(), set()
        with self.store() as store:
            return ({c.record_id for c, _, _ in store.pending()},
                    {str(item["record_id"]) for item in store.outbox()})

    def state(self) -> dict[str, Any]:
        """The helpdesk as a test compares it: per record its fields, tags, escalation level
        and notes; and every alert received. A person's concurrent edit is left out."""
        records: dict[str, Any] = {}
        if self.kind == "file":
            data = json.loads((self.folder / "helpdesk.json").read_text())
            for raw in data["records"]:
                records[str(raw["id"])] = {
                    "status": raw["status"], "priority": raw["priority"],
                    "group": raw.get("group"), "assignee": raw.get("assignee"),
                    "tags": sorted(t for t in raw["tags"] if t != PERSON_TAG),
                    "level": raw["escalation_level"],
                    "notes": [n["text"] for n in raw.get("notes") or []]}
        else:
            for number, ticket in self.desk.state().items():
                tags = [t for t in ticket["tags"] if t != PERSON_TAG]
                levels = [int(t.removeprefix("sla_escalation_")) for t in tags
                          if t.startswith("sla_escalation_")]
                records[str(number)] = {
                    "status": ticket["status"], "priority": ticket["priority"],
                    "group": ticket["group_id"], "assignee": ticket["assignee_id"],
                    "tags": sorted(t for t in tags if not t.startswith("sla_escalation_")),
                    "level": max(levels, default=0), "notes": ticket["comments"],
                    "private": all(ticket["private"])}
        alerts = sorted(f"{h.get('record_id')}: {h.get('rule')}" for h in self.desk.hooks)
        # what a receiver that drops a delivery id it has seen gets (tests/faultdesk.py keeps
        # each post's body; the json format carries the id)
        unique = {h.get("id") or f"no id {n}": h for n, h in enumerate(self.desk.hooks)}
        delivered = sorted(f"{h.get('record_id')}: {h.get('rule')}" for h in unique.values())
        return {"records": records, "alerts": alerts, "delivered": delivered}

    def save(self, name: str) -> Path:
        """Keep the state file and the helpdesk as they are now."""
        keep = self.folder.parent / f"{self.folder.name}-{name}"
        shutil.rmtree(keep, ignore_errors=True)
        keep.mkdir()
        shutil.copy(self.folder / "state.db", keep / "state.db")
        if self.kind == "file":
            shutil.copy(self.folder / "helpdesk.json", keep / "helpdesk.json")
        (keep / "desk.json").write_text(json.dumps(self.desk.snapshot()))
        return keep

    def load(self, kept: Path) -> None:
        shutil.copy(kept / "state.db", self.folder / "state.db")
        if self.kind == "file":
            shutil.copy(kept / "helpdesk.json", self.folder / "helpdesk.json")
        self.desk.restore(json.loads((kept / "desk.json").read_text()))


# -- comparing with the fault-free run -------------------------------------------------------

@dataclass
class Difference:
    lost: int = 0  # notes and alerts of the reference missing
    repeated: int = 0  # notes and alerts beyond the reference's, outside the records in flight
    repeated_in_flight: Counter[str] = field(default_factory=Counter)  # by record
    in_flight: Counter[str] = field(default_factory=Counter)  # by "notes" / "alerts"
    fields: list[str] = field(default_factory=list)  # fields, tags, levels that differ

    def describe(self) -> str:
        return (f"lost {self.lost}, repeated {self.repeated}, repeated in flight "
                f"{dict(self.repeated_in_flight)}, other differences {self.fields}")


def compare(state: dict[str, Any], reference: dict[str, Any],
            in_flight: Set[str] = frozenset()) -> Difference:
    found = Difference()

    def count(have: Counter[str], want: Counter[str], record_of: Any, what: str) -> None:
        for text in set(have) | set(want):
            extra, missing = have[text] - want[text], want[text] - have[text]
            found.lost += max(0, missing)
            if extra > 0:
                record = record_of(text)
                if record in in_flight:
                    found.repeated_in_flight[record] += extra
                    found.in_flight[what] += extra
                else:
                    found.repeated += extra

    for record, want in reference["records"].items():
        have = state["records"][record]
        count(Counter(have["notes"]), Counter(want["notes"]), lambda _text, r=record: r,
              "notes")
        for name in want:
            if name != "notes" and have[name] != want[name]:
                found.fields.append(f"{record}.{name}: {have[name]!r}, expected {want[name]!r}")
    count(Counter(state["alerts"]), Counter(reference["alerts"]),
          lambda text: text.split(":")[0], "alerts")
    return found


def no_traceback(runs: list[Run]) -> int:
    return sum("Traceback" in run.stderr or "Traceback" in run.stdout for run in runs)


# -- fixtures ------------------------------------------------------------------------------

def loopback_ok(host: str) -> None:
    try:
        with socket.socket() as probe:
            probe.bind((host, 0))
    except OSError as exc:
        pytest.fail(f"this test needs to listen on {host} (the loopback range 127/8): {exc}")


@pytest.fixture(scope="session")
def server() -> Iterator[FaultDesk]:
    """One desk for the session (so that the Zendesk connector's identity, its URL, stays
    the same for references kept and tests that start from them); reset for each test."""
    loopback_ok("127.0.0.1")
    desk = FaultDesk(EMAIL, TOKEN, now=T0)
    desk.export_page = 5  # the first read of the 12 tickets takes three pages
    for ticket in desk_tickets():
        desk.add(ticket)
    desk.initial = desk.snapshot()
    desk.start()
    yield desk
    desk.stop()
    LAUNCHER.stop()


def reset(desk: FaultDesk) -> FaultDesk:
    desk.restore(desk.initial)
    desk.clear_faults()
    desk.faults_injected.clear()
    desk.log.clear()
    desk.authorizations.clear()
    desk.jobs.clear()
    return desk


@pytest.fixture
def desk(server: FaultDesk) -> FaultDesk:
    return reset(server)


@dataclass
class Reference:
    after_t0: dict[str, Any]  # the helpdesk after the runs at T0 (and a quiet rerun)
    after_t1: dict[str, Any]
    kept_t0: Path  # state file and helpdesk after T0's runs, to start T1's kills from
    points_t0: dict[str, int]  # kill points the run at T0 reaches, and how often
    points_t1: dict[str, int]


_references: dict[tuple[str, bool], Reference] = {}


def project_for(base: Path, kind: str, desk: FaultDesk, bulk: bool = True) -> Project:
    """A fresh project, always in the same folder for a kind (the file helpdesk's identity
    is its path), on a desk as it was at the start."""
    folder = base / f"{kind}-{'bulk' if bulk else 'single'}"
    shutil.rmtree(folder, ignore_errors=True)
    return Project(folder, kind, reset(desk), bulk)


def reference(base: Path, kind: str, desk: FaultDesk, bulk: bool = True) -> Reference:
    """The fault-free runs of a project kind, once per session."""
    key = (kind, bulk)
    if key not in _references:
        project = project_for(base, kind, desk, bulk)
        first = project.run(T0)
        assert first.code == 0 and " writes 6," in first.stdout, first.stdout + first.stderr
        assert project.run(T0 + 300).quiet
        after_t0 = project.state()
        kept = project.save("t0")
        second = project.run(T1)
        assert second.code == 0 and " writes 6," in second.stdout, second.stdout
        assert project.run(T1 + 300).quiet
        assert no_traceback(project.runs) == 0
        _references[key] = Reference(after_t0, project.state(), kept, first.points,
                                     second.points)
    return _references[key]


@pytest.fixture
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp()


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[faultstats.Tally]:
    """This test's figures, added to the session's table when it ends."""
    mine = faultstats.Tally(tests=1)
    yield mine
    known = request.node.get_closest_marker("xfail") is not None
    (faultstats.KNOWN_DEFECTS if known else faultstats.HOLDING).add(mine)


def measure(project: Project, runs: list[Run], want: dict[str, Any],
            tally: faultstats.Tally, in_flight: Set[str] = frozenset(),
            killed: int = 0) -> list[str]:
    """Tally the runs and the helpdesk against the fault-free state; what breaks the rules
    (tracebacks, the token shown, a write lost or repeated, more than one record repeated)."""
    difference = compare(project.state(), want, in_flight)
    tally.faults.update(project.desk.faults_injected)
    project.desk.faults_injected.clear()
    tally.figures["kill points tried"] += killed
    tally.figures["syncs completed"] += sum(run.code == 0 for run in runs)
    tally.figures["writes lost"] += difference.lost
    tally.figures["writes repeated"] += difference.repeated
    tally.figures["notes repeated in flight"] += difference.in_flight["notes"]
    tally.figures["alerts repeated in flight"] += difference.in_flight["alerts"]
    state = project.state()
    under_new_id = sum((Counter(state["delivered"]) - Counter(want["alerts"])).values())
    tally.figures["alerts repeated under a new id"] += under_new_id
    tally.figures["tracebacks"] += no_traceback(runs)
    problems = []
    if no_traceback(runs):
        problems.append("traceback:\n" + "\n".join(r.stderr for r in runs))
    if any(TOKEN in run.stdout + run.stderr for run in runs) or \
            TOKEN.encode() in (project.folder / "state.db").read_bytes():
        problems.append("the token was shown or stored")
    if difference.lost or difference.repeated or difference.fields or \
            len(difference.repeated_in_flight) > 1:
        problems.append(difference.describe())
    if under_new_id:
        problems.append(f"{under_new_id} alert(s) repeated with a delivery id of their own")
    return problems


def check(project: Project, runs: list[Run], want: dict[str, Any],
          tally: faultstats.Tally) -> None:
    problems = measure(project, runs, want, tally)
    assert not problems, "\n".join(problems)


# -- (a) one fault at a time -----------------------------------------------------------------

EXPORT = r"/incremental/tickets/cursor"
EVENTS = r"/incremental/ticket_events"
BATCH = r"/tickets/update_many"
POLL = r"/job_statuses/"

#: Exit codes: 0 retried and done; 1 failed, cursor unmoved; 3 done but for the records
#: whose write stays pending (an ambiguous write: answered late, reset, or unreadable).
SINGLE = r"/tickets/\d+$"
AUDITS = r"/tickets/\d+/audits"
AMBIGUOUS = {0, 1, 3}

#: (name, "bulk" or "single" updates, phase, [(fault, where)], the faulty run's exit codes,
#: known defect or None). Phase T1 starts from the fault-free state after T0, so that the
#: cursor a failed run must leave alone exists.
FAULTS: list[tuple[str, str, str, list[tuple[str, dict[str, Any]]], set[int], str | None]] = [
    ("429 on the export", "bulk", "T0", [("429", dict(path=EXPORT, times=2, retry_after=3))],
     {0}, None),
    ("429 on the batch", "bulk", "T0", [("429", dict(path=BATCH, retry_after=2))], {0}, None),
    ("503 burst on the events", "bulk", "T0", [("5xx", dict(path=EVENTS, times=2))], {0},
     None),
    ("503 storm on the export", "bulk", "T1", [("5xx", dict(path=EXPORT, times=0))], {1},
     None),
    ("503 storm on the batch", "bulk", "T0", [("5xx", dict(path=BATCH, times=0))], {1, 3},
     None),
    ("503 with Retry-After on the batch", "bulk", "T0",
     [("5xx", dict(path=BATCH, times=2, with_retry_after=True, retry_after=4))], {0}, None),
    ("late answer on the export", "bulk", "T0", [("late_processed", dict(path=EXPORT))], {0},
     None),
    ("reset on the events", "bulk", "T0", [("reset_before", dict(path=EVENTS))], {0}, None),
    ("truncated JSON on the export", "bulk", "T1", [("truncated", dict(path=EXPORT))], {1},
     None),
    ("reset on the export's second page", "bulk", "T0",
     [("reset_before", dict(path=EXPORT, nth=2))], {0}, None),
    ("truncated JSON on the export's third page", "bulk", "T0",
     [("truncated", dict(path=EXPORT, nth=3))], {1}, None),
    ("HTML page with 200 on the export", "bulk", "T1", [("html200", dict(path=EXPORT))],
     {1}, None),
    ("HTML page with 200 on the batch", "bulk", "T0", [("html200", dict(path=BATCH))],
     AMBIGUOUS, None),
    ("late answer on the batch, not processed", "bulk", "T0",
     [("late_unprocessed", dict(path=BATCH))], AMBIGUOUS, None),
    ("reset before the batch is processed", "bulk", "T0",
     [("reset_before", dict(path=BATCH))], AMBIGUOUS, None),
    ("late answer on the batch, processed", "bulk", "T0",
     [("late_processed", dict(path=BATCH))], AMBIGUOUS, None),
    ("reset after the batch is processed", "bulk", "T1", [("reset_after", dict(path=BATCH))],
     AMBIGUOUS, None),
    ("truncated JSON on the batch", "bulk", "T0", [("truncated", dict(path=BATCH))],
     AMBIGUOUS, None),
    ("truncated JSON on the job poll", "bulk", "T0", [("truncated", dict(path=POLL))],
     AMBIGUOUS, None),
    ("503 storm on the job poll", "bulk", "T0", [("5xx", dict(path=POLL, times=0))],
     AMBIGUOUS, None),
    ("batch answer lost and the read-back failing", "bulk", "T0",
     [("late_processed", dict(path=BATCH)), ("5xx", dict(path=AUDITS, times=0))], AMBIGUOUS,
     None),
    ("a person edits a ticket of the batch", "bulk", "T0", [("conflict", dict(path=BATCH))],
     {0}, None),
    ("single update answered late, processed", "single", "T0",
     [("late_processed", dict(method="PUT", path=SINGLE, nth=2))], AMBIGUOUS, None),
    ("single update reset after processing", "single", "T1",
     [("reset_after", dict(method="PUT", path=SINGLE, nth=3))], AMBIGUOUS, None),
    ("single update truncated", "single", "T0",
     [("truncated", dict(method="PUT", path=SINGLE))], AMBIGUOUS, None),
    ("single update: 409 after a person's edit", "single", "T0",
     [("conflict", dict(method="PUT", path=SINGLE, nth=2))], {0}, None),
]


def _fault_params() -> list[Any]:
    params = []
    for name, mode, phase, faults, codes, defect in FAULTS:
        marks = [pytest.mark.xfail(strict=True, reason=defect)] if defect else []
        params.append(pytest.param(mode, phase, faults, codes, id=name, marks=marks))
    return params


@pytest.mark.parametrize("mode, phase, faults, codes", _fault_params())
def test_a_fault_fails_cleanly_or_is_retried_and_reruns_end_as_without_it(
        desk, base, tally, mode, phase, faults, codes):
    bulk = mode == "bulk"
    ref = reference(base, "zendesk", desk, bulk)
    project = project_for(base, "zendesk", desk, bulk)
    start, want = (T0, ref.after_t0) if phase == "T0" else (T1, ref.after_t1)
    if phase == "T1":
        project.load(ref.kept_t0)
    cursor = project.cursor()
    for kind, where in faults:
        desk.inject(kind, **where)
    faulty = project.run(start)
    assert faulty.code in codes, faulty.stdout + faulty.stderr
    if faulty.code == 1:
        assert project.cursor() == cursor, "a failed run moved the cursor"
        assert "cursor not moved" in faulty.stderr
    for _kind, where in faults:
        if "retry_after" in where:  # Retry-After is waited exactly, each time
            assert faulty.waits.count(float(where["retry_after"])) >= where.get("times", 1), \
                f"Retry-After was not honoured: waits {faulty.waits}"
    desk.clear_faults()
    runs = [faulty, *project.finish(start + LAG)]
    check(project, runs, want, tally)
    if any(kind == "conflict" for kind, _ in faults):
        edited = [t.id for t in desk.tickets.values() if PERSON_TAG in t.tags]
        assert len(edited) == 1, "the person's change was overwritten"


def test_a_redirect_to_another_host_does_not_carry_the_credentials(desk, base, tally):
    loopback_ok("127.0.0.2")
    want = reference(base, "zendesk", desk).after_t0
    other = FaultDesk(EMAIL, TOKEN, host="127.0.0.2", now=T0).start()
    try:
        project = project_for(base, "zendesk", desk)
        desk.inject("redirect", path=EXPORT, port=other.httpd.server_address[1])
        failed = project.run(T0)
        assert failed.code == 1 and "HTTP 401" in failed.stderr, failed.stderr
        assert other.log and other.authorizations == [None] * len(other.log)
        assert project.cursor() is None
        desk.clear_faults()
        runs = [failed, *project.finish(T0 + LAG)]
        check(project, runs, want, tally)
    finally:
        other.stop()


# -- (b) kill points -------------------------------------------------------------------------

#: Where each target is killed, besides every point of tests/killpoints.py the fault-free
#: run reaches (at its first, middle and last time): the desk kills the client as it takes
#: a write ("server": a batch after that many of its tickets, the job goes on; or the Nth
#: single update).
SERVER_KILLS = {"file": [], "zendesk-bulk": [0, 3, 6], "zendesk-single": [1, 3, 6]}
TARGETS = ["file", "zendesk-bulk", "zendesk-single"]
PHASES = ["T0", "T1"]  # T0 starts from nothing, T1 from the state after T0's fault-free runs

#: (target, phase) that fail, and the defect that makes them fail.
KILL_DEFECTS: dict[tuple[str, str], str] = {}


#: Points reached once per record: tried in the middle of the run too.
PER_RECORD = {"journal", "commit", "answered"}


def kill_points(counts: dict[str, int], target: str) -> list[str]:
    """Every point the fault-free run reaches, at its first and last time (and the middle
    one for per-record points), then the desk's kills."""
    points = []
    for point, count in sorted(counts.items()):
        middle = {(count + 1) // 2} if point in PER_RECORD else set()
        points += [f"{point}:{n}" for n in sorted({1, count} | middle)]
    return points + [f"server:{n}" for n in SERVER_KILLS[target]]


def _kill_params() -> list[Any]:
    params = []
    for target in TARGETS:
        for phase in PHASES:
            defect = KILL_DEFECTS.get((target, phase))
            marks = [pytest.mark.xfail(strict=True, reason=defect)] if defect else []
            params.append(pytest.param(target, phase, marks=marks, id=f"{target} {phase}"))
    return params


@pytest.mark.parametrize("target, phase", _kill_params())
def test_a_kill_at_any_point_loses_and_repeats_nothing_beyond_the_record_in_flight(
        desk, base, tally, target, phase):
    """SIGKILL at every kill point in turn, each followed by fault-free reruns from the same
    start: the helpdesk ends as without the kill, the writes journalled at the kill are
    named by the next run, and nothing is left pending."""
    kind, _, mode = target.partition("-")
    bulk = mode != "single"
    ref = reference(base, kind, desk, bulk)
    start, counts, want = (T0, ref.points_t0, ref.after_t0) if phase == "T0" else \
        (T1, ref.points_t1, ref.after_t1)
    problems: list[str] = []
    for kill in kill_points(counts, target):
        project = project_for(base, kind, desk, bulk)
        if phase == "T1":
            project.load(ref.kept_t0)
        point, _, n = kill.partition(":")
        if point == "server" and bulk:
            desk.inject("kill_client", method="PUT", path=BATCH, after=int(n))
        elif point == "server":
            desk.inject("kill_client", method="PUT", path=r"/tickets/\d+$", nth=int(n))
        killed = project.run(start, None if point == "server" else kill)
        if not killed.killed:
            problems.append(f"{kill}: not killed: {killed.stdout}{killed.stderr}")
            continue
        journalled, unsent = project.in_flight()
        desk.clear_faults()
        try:
            runs = project.finish(start + LAG)
        except AssertionError as exc:
            problems.append(f"{kill}: {exc}")
            continue
        found = measure(project, [killed, *runs], want, tally, journalled | unsent, killed=1)
        unnamed = {r for r in journalled if f"record {r!r}" not in runs[0].stderr}
        if unnamed:
            found.append(f"the next run did not name the writes in flight of {unnamed}")
        if project.in_flight() != (set(), set()):
            found.append(f"left in flight: {project.in_flight()}")
        problems += [f"{kill}: {problem}" for problem in found]
    assert not problems, f"{len(problems)} kill points broke the rules:\n" + \
        "\n".join(problems)


def test_the_launcher_runs_what_the_sla_sync_script_runs(desk, base, tally):
    """The launcher's forked child and the installed `sla-sync` script leave the helpdesk
    the same (the script sleeps its one job poll: a second, once)."""
    script = Path(sys.executable).parent / "sla-sync"
    assert script.exists(), f"the sla-sync script is not installed beside {sys.executable}"
    want = reference(base, "zendesk", desk).after_t0
    project = project_for(base, "zendesk", desk)
    runs = []
    for now in (T0, T0 + 300):
        desk.now = max(desk.now, now)
        done = subprocess.run(
            [str(script), "run", "--config", str(project.folder / "config.yaml"), "--now",
             stamp(now)], cwd=project.folder, env={**os.environ, "ZENDESK_TOKEN": TOKEN},
            capture_output=True, text=True, timeout=RUN_TIMEOUT)
        runs.append(Run(done.returncode, done.stdout, done.stderr))
    assert runs[0].code == 0 and runs[1].quiet, runs
    check(project, runs, want, tally)


# -- the desk itself, through the connector --------------------------------------------------

def connector_for(desk: FaultDesk) -> Any:
    from sla_sync.connector.zendesk import Zendesk

    return Zendesk.from_settings({"type": "zendesk", "url": desk.url, "email": EMAIL,
                                  "token": TOKEN, "start_time": "2026-03-01T00:00:00Z",
                                  "requests_per_minute": 6000,
                                  "api_requests_per_minute": 6000}, ROOT)


def test_the_desk_exports_in_cursor_pages_and_leaves_out_the_last_minute(desk):
    connector = connector_for(desk)
    pages = list(connector.fetch(None))
    # The event export's one page first (it holds no records), then the ticket pages.
    assert [len(page.records) for page in pages] == [0, 5, 5, 2]
    desk.now = T0 + 600
    desk.person_edits(3)  # updated at T0 + 600: inside the export's last minute
    assert [r.id for page in connector.fetch(pages[-1].cursor) for r in page.records] == []
    desk.now += 61
    later = [r for page in connector.fetch(pages[-1].cursor) for r in page.records]
    assert [(r.id, PERSON_TAG in r.tags) for r in later] == [("3", True)]
    assert connector.get("3").tags == later[0].tags  # a ticket read directly does not lag


def test_the_desk_refuses_a_stale_safe_update_with_409_and_keeps_comments_private(desk):
    from sla_sync.connector import ChangeSet, ConflictError

    connector = connector_for(desk)
    record = connector.get("1")
    change = ChangeSet(record_id="1", base_updated_at=record.updated_at, notes=("ours",))
    connector.apply(change, record.updated_at)
    with pytest.raises(ConflictError):
        connector.apply(change, record.updated_at)  # planned on the version before ours
    assert desk.tickets[1].comments[-1]["body"] == "ours"
    assert desk.tickets[1].comments[-1]["public"] is False
    assert desk.writes[1]["comments"] == 1
    audit_bodies = [e.get("body") for a in desk.tickets[1].audits for e in a["events"]
                    if e["type"] == "Comment"]
    assert audit_bodies == ["Ticket 1: please help", "ours"]


# -- revert: the same write path, the same faults --------------------------------------------

REVERTABLE = {  # what a revert can put back on Zendesk: a tag and a priority
    "slas": POLICY["slas"],
    "rules": [rule("breach", {"all": [cond("first_response_breached", "is_true")]},
                   act("add_tag", tag="sla_breach"), act("set_priority", priority="urgent"))],
}
REVERT_FAULTS = ["late_processed", "reset_after", "truncated", "late_unprocessed",
                 "reset_before", "5xx", "conflict"]


def revert_once(project: Project, monkeypatch: pytest.MonkeyPatch, at: int) -> Any:
    """`sla-sync revert 1` in-process, through the project's config (its timeout and retries)."""
    from sla_sync.connector import open_connector
    from sla_sync.sync_audit import revert
    from sla_sync.sync_config import load_config

    monkeypatch.setenv("ZENDESK_TOKEN", TOKEN)
    monkeypatch.setattr("sla_sync.connector.http.wait", lambda seconds: None)
    config = load_config(project.folder / "config.yaml")
    project.desk.now = at
    with project.store() as store:
        return revert(open_connector(dict(config.connector), config.base_dir), store, 1,
                      datetime.fromtimestamp(at, UTC))


@pytest.mark.parametrize("kind", REVERT_FAULTS)
def test_a_revert_whose_write_meets_a_fault_neither_repeats_nor_loses_it(
        desk, base, kind, monkeypatch):
    project = project_for(base, "zendesk", desk, bulk=False)
    (project.folder / "policy.json").write_text(json.dumps(REVERTABLE))
    before = {n: t.state() for n, t in desk.tickets.items()}
    first = project.run(T0)
    assert first.code == 0 and " writes 3," in first.stdout, first.stdout + first.stderr
    synced = {n: Counter(c) for n, c in desk.writes.items()}
    desk.inject(kind, method="PUT", path=r"/api/v2/tickets/1(\.json)?$")
    reports = [revert_once(project, monkeypatch, T0 + 600)]
    desk.clear_faults()
    while reports[-1].failures and len(reports) < 3:  # the fault's record: settled next time
        reports.append(revert_once(project, monkeypatch, T0 + 600 + 60 * len(reports)))
    assert reports[-1].failures == [], reports[-1].failures
    assert sum(r.writes + r.recovered for r in reports) == 3, [r.already for r in reports]
    after = {n: t.state() for n, t in desk.tickets.items()}
    if kind == "conflict":  # the person's edit stays, beside what was put back
        assert PERSON_TAG in after[1]["tags"]
        after[1]["tags"].remove(PERSON_TAG)
    assert after == before  # all of it put back
    for n in (1, 5, 9):  # each value written once by the sync and once by the revert
        reverted = desk.writes[n] - synced[n]
        assert reverted == Counter(fields=1, tags_removed=1), (n, desk.writes[n], synced[n])
    settled = {n: Counter(c) for n, c in desk.writes.items()}
    last = revert_once(project, monkeypatch, T0 + 900)
    assert last.writes == 0 and last.restored == [] and last.failures == []
    assert desk.writes == settled  # a second revert sends nothing
    with project.store() as store:
        assert store.pending() == []
    # nor does a sync (at a `now` before ticket 2 breaches)
    assert project.run(T0 + 300).code == 0 and desk.writes == settled


def test_a_revert_reports_an_escalation_level_zendesk_tags_cannot_lower(desk, base,
                                                                       monkeypatch):
    project = project_for(base, "zendesk", desk, bulk=False)
    assert project.run(T0).code == 0
    assert "sla_escalation_1" in desk.tickets[1].tags
    report = revert_once(project, monkeypatch, T0 + 600)
    assert "sla_breach" not in desk.tickets[1].tags  # the tag came off
    assert "sla_escalation_1" in desk.tickets[1].tags  # the level tag did not
    assert any(line.startswith("record '1': the helpdesk still shows escalation level 1 "
                               "after the revert set 0") for line in report.failures)
    with project.store() as store:
        fields = {row["field"] for row in store.audit(record_id="1") if row["kind"] == "revert"}
    assert "escalation_level" not in fields and "tag:sla_breach" in fields
