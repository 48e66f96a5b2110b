"""Alert channels under `notify:`: email through a real SMTP server (aiosmtpd) on 127.0.0.1,
Slack, Teams and a signed webhook through a real HTTP receiver on 127.0.0.1, all through
the outbox; recipients, templates, quiet hours and digests. Time is the run's `--now`."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, LocalServer, act, cli, cond, iso, record_dict, rule
from sla_sync.sync_state import StateStore

try:
    from aiosmtpd import controller as aiosmtpd_controller
except ImportError:  # the environment, not the code: say which assumption failed
    raise ImportError("these tests send email to a real SMTP server, aiosmtpd (a test "
                      "dependency): pip install -e '.[test]'") from None

BREACH = {"all": [cond("first_response_breached", "is_true")]}
WARNING = {"all": [cond("first_response_minutes_left", "less_than", 30),
                   cond("first_response_breached", "is_false")]}
SLAS = [{"name": "std", "targets": {"first_response": "1h", "resolution": "8h"}}]


class Mailbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = aiosmtpd_controller.Controller(self, hostname="127.0.0.1",
                                                         port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"


class Receiver(LocalServer):
    """conftest's real HTTP server on 127.0.0.1, read as a receiver of alert POSTs: each
    one's path, headers and exact bytes."""

    @property
    def posts(self) -> list[tuple[str, dict[str, str], bytes]]:
        return [(path, headers, raw)
                for (_, path, headers, _), raw in zip(self.requests, self.raw, strict=True)]

    def bodies(self) -> list[Any]:
        return [json.loads(raw) for _, _, raw in self.posts]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.controller.start()
    yield box
    box.controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def project(tmp_path: Path, notify: dict[str, Any], rules: list[dict[str, Any]],
            records: list[dict[str, Any]] | None = None, agents: list[dict[str, str]] | None = None,
            policy_extra: dict[str, Any] | None = None, **config: Any) -> Path:
    desk: dict[str, Any] = {"records": records or [record_dict(id="T-1", assignee="alice")]}
    if agents is not None:
        desk = {"agents": agents, **desk}
    (tmp_path / "helpdesk.json").write_text(json.dumps(desk))
    (tmp_path / "policy.json").write_text(json.dumps(
        {"slas": SLAS, "rules": rules, **(policy_extra or {})}))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "connector": {"type": "file", "path": "helpdesk.json"}, "policy": "policy.json",
        "state": "state.db", "first_run": "act", "notify": notify, **config}))
    return path


def email_channel(box: Mailbox, **settings: Any) -> dict[str, Any]:
    return {"type": "email", "host": "127.0.0.1", "port": box.port, "security": "none",
            "from": "sla-sync@example.com", **settings}


def run(config: Path, now: str, *extra: str, tz: str = "UTC") -> Any:
    result = cli("run", "--config", str(config), "--now", iso(now, tz), *extra)
    assert result.exit_code in (0, 1), result.output
    return result


def test_a_breach_email_goes_to_its_recipients_with_the_default_template(tmp_path, mailbox):
    config = project(tmp_path, {"mail": email_channel(mailbox, to=["ops@example.com"])},
                     [rule("breach-mail", BREACH,
                           act("notify", webhook="mail", text="{id} breached ({sla})"))])
    run(config, "2026-03-02 10:30")
    run(config, "2026-03-02 11:00")  # still breached, the rule still active: nothing more
    assert len(mailbox.messages) == 1
    rcpts, message = mailbox.messages[0]
    assert rcpts == ["ops@example.com"] and message["To"] == "ops@example.com"
    assert message["From"] == "sla-sync@example.com"
    assert message["Subject"] == "SLA breached: T-1 Printer on fire"
    body = message.get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
    assert body.startswith("T-1 breached (std)\n")
    assert "Assignee: alice, group support" in body
    assert "First response due: 2026-03-02T10:00+00:00" in body
    instance = StateStore(tmp_path / "state.db").instance_id()
    assert message["Message-ID"].startswith(f"<{instance}-")
    assert StateStore(tmp_path / "state.db").outbox() == []


def test_a_failing_smtp_server_keeps_the_email_for_the_next_run(tmp_path, mailbox):
    channel = email_channel(mailbox, to=["ops@example.com"])
    mailbox.controller.stop()  # nobody listens on that port now
    config = project(tmp_path, {"mail": channel},
                     [rule("breach-mail", BREACH, act("notify", webhook="mail", text="{id}"))])
    failed = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:30"))
    assert failed.exit_code == 3 and "notification to 'mail' failed" in failed.stderr
    mailbox.controller = aiosmtpd_controller.Controller(mailbox, hostname="127.0.0.1",
                                                        port=mailbox.port)  # one start each
    mailbox.controller.start()
    run(config, "2026-03-02 11:00")
    assert len(mailbox.messages) == 1
    assert StateStore(tmp_path / "state.db").outbox() == []


def test_slack_gets_block_kit_and_teams_an_adaptive_card(tmp_path, receiver):
    notify = {"slack": {"type": "slack", "url": f"{receiver.url}/slack/T0/B0/s3cret"},
              "teams": {"type": "teams", "url": f"{receiver.url}/teams/wf"}}
    config = project(tmp_path, notify, [rule(
        "breach-chat", BREACH, act("notify", webhook="slack", text="{id} breached"),
        act("notify", webhook="teams", text="{id} breached"))])
    run(config, "2026-03-02 10:30")
    by_path = {path.split("/")[1]: json.loads(raw) for path, _, raw in receiver.posts}
    slack, teams = by_path["slack"], by_path["teams"]
    assert slack["blocks"][0] == {"type": "header", "text": {
        "type": "plain_text", "text": "SLA breached: T-1 Printer on fire"}}
    assert slack["blocks"][1]["type"] == "section"
    assert slack["blocks"][1]["text"]["text"].startswith("T-1 breached\n")
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    assert card["content"]["body"][0]["text"] == "SLA breached: T-1 Printer on fire"
    assert all(headers["Idempotency-Key"] for _, headers, _ in receiver.posts)


def test_a_signed_webhook_can_be_verified_by_its_receiver(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "k3y")
    config = project(tmp_path, {"hook": {"type": "webhook", "url": f"{receiver.url}/in",
                                         "secret": "${HOOK_SECRET}"}},
                     [rule("breach-hook", BREACH, act("notify", webhook="hook", text="{id}"))])
    result = run(config, "2026-03-02 10:30")
    [(_, headers, raw)] = receiver.posts
    expected = hmac.new(b"k3y", raw, hashlib.sha256).hexdigest()
    assert headers["X-SLA-Sync-Signature"] == f"sha256={expected}"
    body = json.loads(raw)
    assert body["id"] == headers["Idempotency-Key"]
    assert body["alerts"][0]["record_id"] == "T-1" and body["alerts"][0]["event"] == "breach"
    assert "k3y" not in result.output
    assert b"k3y" not in (tmp_path / "state.db").read_bytes()


def test_a_crash_between_commit_and_send_neither_loses_nor_repeats(tmp_path, receiver):
    """SIGKILLed right after the record's commit (its alert in the outbox, not sent): the
    next run sends it, once. SIGKILLed after the receiver answered but before the outbox
    row left: the next run sends it again with the same Idempotency-Key, so a receiver
    that keeps the keys it has seen drops the repeat (the one repeat the outbox allows)."""
    config = project(tmp_path, {"hook": {"type": "webhook", "url": f"{receiver.url}/in"}},
                     [rule("breach-hook", BREACH, act("notify", webhook="hook", text="{id}"))],
                     records=[record_dict(id="T-1"), record_dict(id="T-2")])

    def killed_run(now: str, kill: str) -> int:
        env = {**os.environ, "SLA_SYNC_KILL": kill, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "killpoints", "run", "--config",
                               str(config), "--now", iso(now)], cwd=ROOT / "tests", env=env,
                              capture_output=True, timeout=120)
        return done.returncode

    assert killed_run("2026-03-02 10:30", "committed:1") == -9
    assert receiver.posts == []
    assert len(StateStore(tmp_path / "state.db").outbox()) == 2  # both kept
    assert killed_run("2026-03-02 10:31", "answered:1") == -9
    assert len(receiver.posts) == 1
    run(config, "2026-03-02 10:32")
    run(config, "2026-03-02 10:33")
    keys = [headers["Idempotency-Key"] for _, headers, _ in receiver.posts]
    assert len(keys) == 3 and len(set(keys)) == 2 and keys[0] == keys[1]
    assert sorted(b["alerts"][0]["record_id"] for b in receiver.bodies()[1:]) == ["T-1", "T-2"]
    assert StateStore(tmp_path / "state.db").outbox() == []


@pytest.mark.parametrize(("notify", "message"), [
    ({"mail": {"type": "fax"}}, "notify.mail.type: expected one of email, slack, teams"),
    ({"mail": {"type": "email", "host": "smtp.example.com", "security": "none",
               "from": "a@example.com", "to": ["b@example.com"]}},
     "notify.mail.security: `none` (no TLS) only to a loopback host"),
    ({"mail": {"type": "email", "host": "smtp.example.com", "from": "a@example.com",
               "to": ["{assignee}"]}}, "notify.mail.fallback: required"),
    ({"mail": {"type": "email", "host": "smtp.example.com", "from": "a@example.com",
               "to": ["{boss}"], "fallback": "x@example.com"}},
     "notify.mail.to[0]: unknown recipient '{boss}'"),
    ({"hook": {"type": "webhook", "url": "http://hooks.example.com/x"}},
     "notify.hook.url: expected an https"),
    ({"hook": {"type": "slack", "url": "https://hooks.example.com/x", "digest": "10s"}},
     "notify.hook.digest: expected at least 1m"),
    ({"hook": {"type": "slack", "url": "https://hooks.example.com/x",
               "templates": {"breach": {"subject": "{id.real}"}}}},
     "notify.hook.templates.breach.subject: unknown placeholder"),
])
def test_bad_channel_settings_are_named_by_key(tmp_path, notify, message):
    config = project(tmp_path, notify, [rule("r", BREACH, act("add_tag", tag="x"))])
    before = (tmp_path / "helpdesk.json").read_bytes()
    result = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:30"))
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert "hooks.example.com/x" not in result.stderr
    assert (tmp_path / "helpdesk.json").read_bytes() == before


AGENTS = [{"name": "alice", "email": "alice@example.com", "timezone": "Europe/Berlin"},
          {"name": "bob", "email": "bob@example.com"}]


def test_recipients_are_resolved_from_the_directory_the_teams_map_and_the_rotation(
        tmp_path, mailbox):
    channel = email_channel(mailbox, to=["{assignee}", "{manager}", "{oncall:primary}"],
                            fallback="leads@example.com")
    config = project(
        tmp_path, {"mail": channel},
        [rule("breach-mail", BREACH, act("notify", webhook="mail", text="{id}"))],
        records=[record_dict(id="T-1", assignee="alice"),
                 record_dict(id="T-2", assignee="zed", group="billing")],
        agents=AGENTS, teams={"support": {"manager": "sam@example.com"}},
        oncall={"primary": {"schedule": ["ona@example.com", "otto@example.com"],
                            "start": "2026-03-01T00:00:00+00:00", "every": "1d"}})
    result = run(config, "2026-03-02 10:30")
    by_record: dict[str, list[str]] = {}
    for rcpts, message in mailbox.messages:
        record = message["Subject"].split()[2]
        by_record.setdefault(record, []).append(rcpts[0])
    assert sorted(by_record["T-1"]) == ["alice@example.com", "otto@example.com",
                                        "sam@example.com"]
    # zed is not in the directory and billing has no manager: both go to the fallback
    assert sorted(by_record["T-2"]) == ["leads@example.com", "leads@example.com",
                                        "otto@example.com"]
    assert "assignee 'zed' has no address in the helpdesk's directory; sent to the fallback " \
        "'leads@example.com'" in result.stderr
    assert "group 'billing' has no manager under `teams:`" in result.stderr
    # due times in the recipient's time zone (alice's directory entry), else the calendar's
    alice = next(m for r, m in mailbox.messages if r == ["alice@example.com"])
    assert "First response due: 2026-03-02T11:00+01:00" in alice.get_content()
    sam = next(m for r, m in mailbox.messages if r == ["sam@example.com"])
    assert "First response due: 2026-03-02T10:00+00:00" in sam.get_content()


def test_templates_fill_the_rule_authors_placeholders_per_event_kind(tmp_path, receiver):
    hook = {"type": "webhook", "url": f"{receiver.url}/in", "templates": {
        "warning": {"subject": "[{priority}] {id} has {first_response_minutes_left} min left",
                    "body": "{subject} for {assignee} in {group}: {text} ({rule}, {event})"},
    }}
    config = project(tmp_path, {"hook": hook}, [
        rule("warn", WARNING, act("notify", webhook="hook", text="hurry")),
        rule("esc", BREACH, act("escalate", level=1),
             act("notify", webhook="hook", text="escalated"))])
    run(config, "2026-03-02 09:45")
    run(config, "2026-03-02 10:05")
    [warning], [escalation] = (b["alerts"] for b in receiver.bodies())
    assert warning["subject"] == "[normal] T-1 has 15 min left"
    assert warning["body"] == "Printer on fire for alice in support: hurry (warn, warning)"
    assert escalation["event"] == "escalation"
    assert escalation["subject"] == "Escalated: T-1 Printer on fire"  # the default template


BERLIN = {"office": {"timezone": "Europe/Berlin",
                     "week": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu",
                                                               "fri")}}}
BERLIN_SLAS = [{"name": "std", "calendar": "office", "targets": {"first_response": "1h"}}]


def quiet_project(tmp_path: Path, box: Mailbox, **channel: Any) -> Path:
    config = project(
        tmp_path, {"mail": email_channel(box, to=["ops@example.com"], quiet="calendar",
                                         **channel)},
        [rule("breach-mail", BREACH, act("notify", webhook="mail", text="{id}"))],
        records=[record_dict(id="T-1", created_at=iso("2026-03-02 15:00", "Europe/Berlin"),
                             updated_at=iso("2026-03-02 15:00", "Europe/Berlin")),
                 record_dict(id="T-2", priority="urgent",
                             created_at=iso("2026-03-02 15:00", "Europe/Berlin"),
                             updated_at=iso("2026-03-02 15:00", "Europe/Berlin"))],
        policy_extra={"calendars": BERLIN})
    policy = json.loads((tmp_path / "policy.json").read_text())
    policy["slas"] = BERLIN_SLAS
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    return config


def test_quiet_hours_hold_an_alert_until_the_calendar_opens_unless_urgent(tmp_path, mailbox):
    config = quiet_project(tmp_path, mailbox)
    # closed: T-1's alert is held, T-2's (priority urgent) goes at once
    night = run(config, "2026-03-02 20:00", "--json", tz="Europe/Berlin")
    assert json.loads(night.stdout.splitlines()[-1])["held"] == 1
    assert [m["Subject"].split()[2] for _, m in mailbox.messages] == ["T-2"]
    early = run(config, "2026-03-03 08:59", tz="Europe/Berlin")
    assert "1 alerts held" in early.output and len(mailbox.messages) == 1
    run(config, "2026-03-03 09:00", tz="Europe/Berlin")
    assert [m["Subject"].split()[2] for _, m in mailbox.messages] == ["T-2", "T-1"]
    assert StateStore(tmp_path / "state.db").outbox() == []


def test_a_digest_sends_one_message_per_interval_and_recipient(tmp_path, mailbox):
    config = project(
        tmp_path, {"mail": email_channel(mailbox, to=["ops@example.com"], digest="15m")},
        [rule("breach-mail", BREACH, act("notify", webhook="mail", text="{id} breached"))],
        records=[record_dict(id="T-1"),
                 record_dict(id="T-2", created_at=iso("2026-03-02 09:05"),
                             updated_at=iso("2026-03-02 09:05")),
                 record_dict(id="T-3", created_at=iso("2026-03-02 09:20"),
                             updated_at=iso("2026-03-02 09:20"))])
    run(config, "2026-03-02 10:02")  # T-1 breached
    run(config, "2026-03-02 10:10")  # T-2 breached
    assert mailbox.messages == []
    run(config, "2026-03-02 10:21")  # T-3 breached; the 10:00-10:15 interval has passed
    [(rcpts, digest)] = mailbox.messages
    assert rcpts == ["ops@example.com"] and digest["Subject"] == "2 SLA alerts"
    body = digest.get_content()
    assert "T-1 breached" in body and "T-2 breached" in body and "T-3" not in body
    run(config, "2026-03-02 10:30")
    assert [m["Subject"] for _, m in mailbox.messages][1] == "SLA breached: T-3 Printer on fire"


def test_the_alert_demo_sends_a_warning_email_and_a_breach_slack_message(tmp_path,
                                                                       monkeypatch):
    """examples/alerts as its config says (README, "Alerts"), against its own inbox.py, on
    free ports instead of 2525 and 8025 (another checkout's demo may hold those)."""
    spec = importlib.util.spec_from_file_location("inbox", ROOT / "examples/alerts/inbox.py")
    assert spec and spec.loader
    inbox = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(inbox)
    demo = tmp_path / "examples" / "alerts"
    shutil.copytree(ROOT / "examples" / "alerts", demo)
    monkeypatch.chdir(tmp_path)
    smtp_port, http_port, stop = inbox.serve(tmp_path / ".demo/alerts/inbox", 0, 0)
    try:
        text = (demo / "config.yaml").read_text()
        (demo / "config.yaml").write_text(text.replace("2525", str(smtp_port))
                                          .replace("8025", str(http_port)))
        first = run(Path("examples/alerts/config.yaml"), "2026-03-02 11:50")
        again = run(Path("examples/alerts/config.yaml"), "2026-03-02 11:50")
    finally:
        stop()
    assert "changed 3, writes 3," in first.output and "notified 3" in first.output
    assert "writes 0," in again.output and "notified" not in again.output
    assert "record 'A-4': the record has no assignee; sent to the fallback" in first.output
    kept = sorted((tmp_path / ".demo/alerts/inbox").iterdir())
    assert [p.name[5:] for p in kept] == ["http.json", "email.eml", "email.eml"]
    slack = json.loads(kept[0].read_text())
    assert slack["path"] == "/services/T0000/B0000/demo"
    assert slack["body"]["blocks"][0]["text"]["text"] == \
        "SLA breached: A-2 Cannot log in after the update"
    mails = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
             for p in kept[1:]]
    assert sorted((m["To"], m["Subject"]) for m in mails) == [
        ("alice@demo.example", "SLA warning: A-1 Invoice shows the wrong VAT"),
        ("support-leads@demo.example", "SLA warning: A-4 Export to CSV times out")]


def test_a_bare_oncall_is_the_default_rotation_resolved_when_the_message_goes(tmp_path,
                                                                           mailbox):
    """Held by quiet hours overnight, the alert goes to whoever is on call at 09:00, not to
    whoever was when it was raised."""
    config = quiet_project(tmp_path, mailbox)
    text = yaml.safe_load(config.read_text())
    text["notify"]["mail"]["to"] = ["{oncall}"]
    text["oncall"] = {"default": {"schedule": ["night@example.com", "day@example.com"],
                                  "start": "2026-03-02T20:00:00+01:00", "every": "12h"}}
    config.write_text(yaml.safe_dump(text))
    run(config, "2026-03-02 20:00", tz="Europe/Berlin")  # T-2 (urgent) goes at once
    run(config, "2026-03-03 09:00", tz="Europe/Berlin")  # T-1 held until now
    assert [(m["Subject"].split()[2], rcpts[0]) for rcpts, m in mailbox.messages] == [
        ("T-2", "night@example.com"), ("T-1", "day@example.com")]


def test_a_row_whose_rotation_left_the_config_is_kept_and_reported(tmp_path, mailbox):
    channel = email_channel(mailbox, to=["{oncall:primary}"], digest="15m")
    config = project(tmp_path, {"mail": channel},
                     [rule("breach-mail", BREACH, act("notify", webhook="mail", text="{id}"))],
                     oncall={"primary": {"schedule": ["ona@example.com"],
                                         "start": "2026-03-01T00:00:00+00:00"}})
    run(config, "2026-03-02 10:30")  # held for its digest, fanned out to {oncall:primary}
    text = yaml.safe_load(config.read_text())
    text["notify"]["mail"]["to"] = ["ops@example.com"]
    del text["oncall"]
    config.write_text(yaml.safe_dump(text))
    later = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:50"))
    assert later.exit_code == 3, later.output
    assert "no rotation 'primary' under `oncall:` (any more), and channel 'mail' has no " \
        "fallback); kept for the next run" in later.stderr
    assert mailbox.messages == [] and len(StateStore(tmp_path / "state.db").outbox()) == 1
