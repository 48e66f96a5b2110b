"""Whole syncs of synthetic desks through the real CLI, against the embedded file helpdesk.

    python bench/bench_desk.py --sizes 10k,100k [--format json|jsonl] [--code DIR]

Per size it generates a desk (examples/generate_helpdesk.py's mix scaled up: tiers,
channels, tickets and leads, statuses with pending/hold pauses, solved and reopened
records; fixed seed) and a policy (policies/tiered-support.json with its business-hours
SLAs spread over three calendars by the record's region), then runs `sla-sync run` as a
child process and prints one table:

- first sync (everything new), a rerun with nothing changed (which reads back the first
  sync's own writes), another (the steady state: nothing changed since the last sync),
  and a run one minute later after 1% of the records changed: seconds (wall, the
  child's whole life), its CPU seconds (user + system) and peak RSS (os.wait4's
  rusage), records evaluated and writes (from the run's summary). On a shared machine
  the CPU seconds are the steadier figure. With `--helpdesk zendesk-fake`, each row is
  followed by the requests the fake served during that sync, by kind, the fewest requests
  the same reads and writes could take (a page per 1,000 events and per 1,000 tickets
  read, a job per 100 tickets written, a poll per 30 jobs), the pages the time-based event
  export's paging needs for those events (it repeats the second each page ends on), and the
  most events any one second got since the row before (the 1% touch included), and of those
  sla-sync's own. The desk is generated and touched in helper processes, so that the
  bench process stays small: a child's peak RSS includes the size of the process that
  started it;
- evaluation in one child process over the desk's records (up to --eval-records; CPU
  time of the child, best of 5 interleaved rounds):
  `rules.engine.evaluate` (SLA choice, clocks, rules) in records/s, business-rules
  `run_all` alone on the same rules over the same records' precomputed variables, and
  the ratio; business-time computations per second (`business_seconds` from each
  record's creation to now on its SLA's calendar).

`--eval-only` skips the syncs, `--first-only` the three after the first; `--profile N`
prints where one evaluation pass spends its time (cProfile, the N costliest calls by
cumulative time); `--profile-syncs DIR` runs
each sync under cProfile and keeps its statistics in DIR. `--code DIR` runs another
checkout's code (e.g. `git archive main | tar -x -C DIR`) with
this bench, for before/after columns. Desks and state live in a temporary folder that is
removed afterwards (`--keep` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from generate_helpdesk import NOW, generate  # noqa: E402

SUMMARY = re.compile(r"evaluated (\d+), changed (\d+), writes (\d+)")
#: Zendesk's notice of a second of 1,000 events or more (connector/zendesk.py `Watch`).
BUSY = re.compile(r"the ticket event export holds 1,000 events or more at (.+?), more than")
TOUCH_TAG = "bench-touched"
CALENDARS = {
    "new-york": {"timezone": "America/New_York",
                 "week": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
                 "holidays": [{"country": "US", "subdiv": "NY"}]},
    "singapore": {"timezone": "Asia/Singapore",
                  "week": {**{d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
                           "sat": ["09:00-13:00"]},
                  "holidays": ["01-01", "2026-02-17", "2026-02-18"]},
}


def bench_policy() -> dict[str, Any]:
    """The shipped policy, its business-hours SLAs on a calendar picked by region."""
    policy = json.loads((ROOT / "policies/tiered-support.json").read_text())
    policy["calendars"].update(CALENDARS)
    for sla in policy["slas"]:
        if sla.get("calendar") == "berlin-office":
            del sla["calendar"]
            sla["calendar_by"] = {"field": "custom.region",
                                  "calendars": {"amer": "new-york", "apac": "singapore"},
                                  "default": "berlin-office"}
    return policy


def parse_size(text: str) -> int:
    text = text.strip().lower()
    factor = {"k": 1000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * factor)


def write_desk(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        if path.suffix == ".jsonl":
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            out.write('{"records": [\n')
            out.write(",\n".join(json.dumps(r, ensure_ascii=False) for r in records))
            out.write("\n]}\n")


def read_desk(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(json.loads(text)["records"])


def touch(path: Path, share: float, at: datetime) -> int:
    """Change `share` of the records as a person would (a tag, updated_at); how many."""
    records = read_desk(path)
    step = max(1, round(1 / share))
    touched = 0
    for record in records[::step]:
        record["tags"] = [*record.get("tags", []), TOUCH_TAG]
        record["updated_at"] = at.isoformat()
        touched += 1
    write_desk(path, records)
    return touched


_PACKAGES: dict[Path, Path] = {}


def package_path(code: Path) -> Path:
    """A folder holding `sla_sync`, a link to the checkout `code` (the package is a
    checkout's root, whatever its folder is called); one per checkout and bench run."""
    if code not in _PACKAGES:
        folder = Path(tempfile.mkdtemp(prefix="sla-sync-bench-code-"))
        (folder / "sla_sync").symlink_to(code, target_is_directory=True)
        _PACKAGES[code] = folder
    return _PACKAGES[code]


def child_env(code: Path) -> dict[str, str]:
    """The children's environment: bytecode is written, as an installed package has it
    (pip compiles at install), but into a cache beside the link, not into the checkout.
    Without it every run would compile every module again: about 0.1 s of CPU, a quarter
    of a quiet sync at 100k."""
    folder = package_path(code)
    env = {**os.environ, "BENCH_CODE": str(folder), "PYTHONPYCACHEPREFIX": str(folder / "pyc")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


#: Run in each child first: import the project from --code, not from the editable install
#: (whose import hook would otherwise find this checkout first).
BOOT = ("import os, sys; sys.meta_path[:] = [f for f in sys.meta_path "
        "if '__editable__' not in getattr(f, '__module__', '')]; "
        "sys.path.insert(0, os.environ['BENCH_CODE']); ")


def run_cli(code: Path, config: Path, now: datetime, profile_to: Path | None = None,
            ) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds, peak RSS in KiB, the summary it printed) of one
    `sla-sync run`; with `profile_to`, run under cProfile, its statistics written there
    (its seconds are then the profiled run's)."""
    main = "main()" if profile_to is None else \
        f"import cProfile; cProfile.run('main()', {str(profile_to)!r})"
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c",
         BOOT + "from sla_sync.sync import main; sys.argv[0] = 'sla-sync'; " + main,
         "run", "--config", str(config), "--now", now.isoformat()],
        env={**child_env(code), "BENCH_ZENDESK_TOKEN": ZENDESK_TOKEN}, cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert child.stdout is not None
    err = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"sla-sync run failed ({child.returncode}):\n{err}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, err


EVAL_CHILD = r"""
import sla_sync.rules.engine as engine_module
assert engine_module.__file__.startswith(os.environ["BENCH_CODE"]), engine_module.__file__
import json, sys, time
from business_rules import engine as br_engine
from sla_sync.connector.model import Record
from sla_sync.rules.actions import ActionCollector
from sla_sync.rules.engine import evaluate
from sla_sync.rules.policy import load_policy

desk, policy_path, limit, now = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
from datetime import datetime
now = datetime.fromisoformat(now)
text = open(desk, encoding="utf-8").read()
raw = ([json.loads(l) for l in text.splitlines() if l.strip()] if desk.endswith(".jsonl")
       else json.loads(text)["records"])
records = [Record.from_dict(r) for r in raw[:limit]]
policy = load_policy(policy_path)

evaluations = [evaluate(r, policy, now) for r in records]
variables = [e.variables() for e in evaluations]
rules = [rule.as_engine_rule() for rule in policy.rules]
# The computation itself, past the calendar's small memo of recent spans where it has one
# (code before the running totals of rules.calendar's _Flat, which keep no memo).
pairs = [(e.calendar.business_seconds if hasattr(e.calendar, "_flat") else
          getattr(e.calendar, "_business_seconds", e.calendar.business_seconds),
          e.record.created_at) for e in evaluations]

def baseline():
    for v in variables:
        br_engine.run_all(rules, v, ActionCollector({}))

def evaluation():
    for r in records:
        evaluate(r, policy, now)

def business_time():
    for business_seconds, start in pairs:
        business_seconds(start, now)

# Interleaved rounds, CPU time of this process, best of each: the machine is shared, and
# this way a busy moment slows the baseline as much as the evaluation.
times = {"baseline": [], "evaluate": [], "business_time": []}
for _ in range(5):
    for name, work in (("baseline", baseline), ("evaluate", evaluation),
                       ("business_time", business_time)):
        t = time.process_time(); work(); times[name].append(time.process_time() - t)
if len(sys.argv) > 5:  # --profile N: where one evaluation pass spends its time
    import cProfile, io, pstats
    profile = cProfile.Profile()
    profile.runcall(evaluation)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(int(sys.argv[5]))
    print(out.getvalue(), file=sys.stderr)
print(json.dumps({"records": len(records), **{k: min(v) for k, v in times.items()}}))
"""


def measure_eval(code: Path, desk: Path, policy: Path, limit: int,
                 profile: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", BOOT + EVAL_CHILD, str(desk), str(policy),
                          str(limit), NOW.isoformat(), *([str(profile)] if profile else [])],
                         env=child_env(code), check=True, capture_output=True, text=True)
    if profile:
        print(out.stderr)
    return dict(json.loads(out.stdout))


#: The fake Zendesk's agent (bench/zendesk_fake.py); its token is made up.
ZENDESK_EMAIL, ZENDESK_TOKEN = "bench@example.com", "bench-zendesk-token-0d1f"


class FakeZendesk:
    """bench/zendesk_fake.py serving a desk file, in a process of its own."""

    def __init__(self, desk: Path):
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "zendesk_fake.py"), str(desk), ZENDESK_EMAIL],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "BENCH_ZENDESK_TOKEN": ZENDESK_TOKEN})
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url:
            sys.exit("bench/zendesk_fake.py did not start")

    def config(self) -> str:
        return ("connector:\n  type: zendesk\n"
                f"  url: {self.url}\n  email: {ZENDESK_EMAIL}\n"
                "  token: ${BENCH_ZENDESK_TOKEN}\n  start_time: 2026-02-15T00:00:00Z\n"
                "  requests_per_minute: 100000\n  api_requests_per_minute: 100000\n"
                # the group and agent the bench policy assigns, by made-up ids
                "  groups: {360000000001: tier2}\n  agents: {361000000001: support-lead}\n"
                "  sandbox: true\n")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import base64
        import urllib.request
        auth = base64.b64encode(f"{ZENDESK_EMAIL}/token:{ZENDESK_TOKEN}".encode()).decode()
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as answer:
            return dict(json.loads(answer.read()))

    def close(self) -> float:
        """Stop the fake; its CPU seconds (user + system) over the bench."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        _, _, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = 0
        return float(usage.ru_utime + usage.ru_stime)


def bench_size(size: int, fmt: str, code: Path, eval_records: int, keep: bool,
               eval_only: bool, profile: int, helpdesk: str = "file",
               profile_syncs: Path | None = None, first_only: bool = False) -> None:
    folder = Path(tempfile.mkdtemp(prefix="sla-sync-desk-"))
    fake = None
    try:
        desk = folder / f"helpdesk.{fmt}"
        count = in_helper("make", str(desk), str(size))
        policy = folder / "policy.json"
        policy.write_text(json.dumps(bench_policy(), indent=2))
        config = folder / "config.yaml"
        if helpdesk == "zendesk-fake":
            fake = FakeZendesk(desk)
            connector = fake.config()
        else:
            connector = f"connector:\n  type: file\n  path: {desk.name}\n"
        # first_run: act, so that the first sync writes what the rules say (the default,
        # baseline, only records what already holds on a desk sla-sync never ran on).
        config.write_text(f"{connector}policy: {policy.name}\nstate: state.db\n"
                          "first_run: act\n")
        # Each row is printed as soon as it is measured, so that a failing later sync
        # (run_cli exits) keeps the figures of the earlier ones.
        print(f"\n{count:,} records ({fmt}, {helpdesk}), code {code}")
        if not eval_only:
            print(f"{'sync':<26} {'seconds':>8} {'CPU s':>7} {'peak RSS MiB':>12} "
                  f"{'evaluated':>9} {'writes':>7}", flush=True)
        # The rerun straight after a first sync reads back the first sync's own writes
        # (their updated_at is past its cursor); the one after it is the steady state.
        syncs = (("first sync", NOW, None), ("rerun, nothing changed", NOW, None),
                 ("again, nothing changed", NOW, None),
                 ("1% changed, 1 min later", NOW + timedelta(minutes=1), 0.01))
        if fake is not None:
            fake.post("/bench/requests", {})  # counted from here: the desk's making left out
        for label, now, share in syncs[:0 if eval_only else 1 if first_only else 4]:
            if share is not None and fake is not None:
                fake.post("/bench/touch", {"share": share})
                fake.post("/bench/advance", {"seconds": 61})  # past the export's minute
            elif share is not None:
                in_helper("touch", str(desk), str(share))
            seconds, cpu, rss, err = run_cli(
                code, config, now, None if profile_syncs is None else
                profile_syncs / f"{size}-{label.split(',')[0].replace(' ', '-')}.prof")
            found = SUMMARY.search(err)
            evaluated, _, writes = (int(g) for g in found.groups()) if found else (-1, -1, -1)
            print(f"{label:<26} {seconds:>8.2f} {cpu:>7.2f} {rss / 1024:>12.0f} "
                  f"{evaluated:>9} {writes:>7}", flush=True)
            for busy in BUSY.findall(err):
                print(f"{'':<4}busy seconds met: {busy}", flush=True)
            if fake is not None:
                asked = fake.post("/bench/requests", {})
                served, events = asked["requests"], asked["events"]
                print(f"{'':<4}requests: {sum(served.values()):,} (" + ", ".join(
                    f"{kind} {n:,}" for kind, n in sorted(served.items())) + ")", flush=True)
                print(f"{'':<4}{minimum_line(served, asked['minimum'], asked['paging'])}",
                      flush=True)
                print(f"{'':<4}events since the last row: at most {events['all']:,} in a second, "
                      f"{events['own']:,} of them sla-sync's", flush=True)
        figures = measure_eval(code, desk, policy, eval_records, profile)
    finally:
        if fake is not None:
            print(f"the fake's CPU seconds over the syncs above: {fake.close():.2f}")
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    n = figures["records"]
    base, full = n / figures["baseline"], n / figures["evaluate"]
    print(f"evaluation over {n:,} records: evaluate {full:,.0f}/s, business-rules run_all "
          f"alone {base:,.0f}/s, ratio {full / base:.2f}")
    print(f"business-time computations: {n / figures['business_time']:,.0f}/s")


def minimum_line(served: dict[str, int], minimum: dict[str, int], paging: int) -> str:
    """The fewest requests for the sync's reads and writes (the fake's `Window.minimum`),
    how far over them the sync was, and the event pages the time-based export's paging
    needs for the events read (each page starting again at the second the last one ended
    on), which is more than one per 1,000 events where seconds hold many."""
    made, least = sum(served.values()), sum(minimum.values())
    over = f"{100 * (made - least) / least:+.1f}%" if least else "n/a"
    return (f"minimum: {least:,} (" + ", ".join(f"{kind} {n:,}" for kind, n in
                                               sorted(minimum.items()))
            + f"), made {over}; the event export's paging of the events read: {paging:,} pages")


def in_helper(*args: str) -> int:
    """Generate or touch a desk in a child process. A child's peak RSS counts the memory
    of the process it was started from (Linux records it at exec), so this one stays small
    and never holds a desk."""
    out = subprocess.run([sys.executable, __file__, "--helper", *args], check=True,
                         capture_output=True, text=True)
    return int(out.stdout)


def helper(action: str, desk: str, value: str) -> None:
    path = Path(desk)
    if action == "make":
        records = generate(scale=max(1, parse_size(value) // 200), seed=11)["records"]
        write_desk(path, records)
        print(len(records))
    else:
        print(touch(path, float(value), NOW + timedelta(seconds=30)))


def main() -> None:
    if sys.argv[1:2] == ["--helper"]:
        helper(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k", help="comma-separated, e.g. 10k,100k")
    parser.add_argument("--format", choices=("json", "jsonl"), default="json")
    parser.add_argument("--helpdesk", choices=("file", "zendesk-fake"), default="file",
                        help="the file helpdesk, or bench/zendesk_fake.py serving the desk's "
                             "tickets as Zendesk pages them")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the checkout whose code runs (default: this one)")
    parser.add_argument("--eval-records", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--eval-only", action="store_true", help="no syncs, only evaluation")
    parser.add_argument("--first-only", action="store_true",
                        help="only the first sync (and the evaluation)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print the N costliest calls (cProfile, cumulative) of one "
                             "evaluation pass")
    parser.add_argument("--profile-syncs", type=Path, default=None, metavar="DIR",
                        help="run each sync under cProfile, its statistics written to DIR "
                             "(SIZE-first-sync.prof, ...; read them with pstats); the "
                             "seconds printed are then the profiled runs'")
    args = parser.parse_args()
    if args.profile_syncs is not None:
        args.profile_syncs = args.profile_syncs.resolve()
        args.profile_syncs.mkdir(parents=True, exist_ok=True)
    for size in (parse_size(s) for s in args.sizes.split(",")):
        bench_size(size, args.format, args.code.resolve(), args.eval_records, args.keep,
                   args.eval_only, args.profile, args.helpdesk, args.profile_syncs,
                   args.first_only)


if __name__ == "__main__":
    main()
