"""The notify action: a webhook post per activation, through an outbox in the state file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import act, at, cli, cond, iso, make_policy, make_record, record_dict, rule
from sla_sync.rules.planner import plan
from sla_sync.sync_state import StateStore

BREACH = {"all": [cond("first_response_breached", "is_true")]}
NOTIFY = act("notify", webhook="oncall", text="{id} breached its first response ({sla})")
POLICY = {"slas": [{"name": "std", "targets": {"first_response": "1h"}}],
          "rules": [rule("page-oncall", BREACH, NOTIFY, act("add_tag", tag="paged"))]}


def project(tmp_path: Path, url: str, records: list[dict[str, Any]] | None = None,
            fmt: str = "slack") -> Path:
    (tmp_path / "helpdesk.json").write_text(json.dumps(
        {"records": records or [record_dict(id="T-1")]}))
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    config = tmp_path / "config.yaml"
    config.write_text("connector: {type: file, path: helpdesk.json}\n"
                      "policy: policy.json\nstate: state.db\nfirst_run: act\n"
                      f"webhooks: {{oncall: {{url: '{url}/hooks/T0/B0/s3cret', "
                      f"format: {fmt}}}}}\n")
    return config


def test_a_firing_rule_plans_one_notification_beside_its_change():
    p = plan(make_record(), make_policy(POLICY["slas"], POLICY["rules"]), at("2026-03-02 10:30"))
    assert p.notifications == (("page-oncall", "oncall", "T-1 breached its first response (std)"),)
    assert p.change.add_tags == ("paged",)


def test_an_active_rule_does_not_notify_again():
    p = plan(make_record(), make_policy(POLICY["slas"], POLICY["rules"]), at("2026-03-02 10:30"),
             {"page-oncall"})
    assert p.notifications == () and not p.acts


def test_identical_notifications_from_two_rules_are_sent_once():
    rules = [rule("a", BREACH, NOTIFY), rule("b", BREACH, NOTIFY)]
    p = plan(make_record(), make_policy(POLICY["slas"], rules), at("2026-03-02 10:30"))
    assert len(p.notifications) == 1


def test_a_sync_posts_the_notification_once_per_activation(tmp_path, local_server):
    config = project(tmp_path, local_server.url)
    first = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:30"))
    assert first.exit_code == 0, first.output
    again = cli("run", "--config", str(config), "--now", iso("2026-03-02 11:00"))
    assert again.exit_code == 0
    assert [(m, p, body) for m, p, _, body in local_server.requests] == [
        ("POST", "/hooks/T0/B0/s3cret", {"text": "T-1 breached its first response (std)"})]
    assert StateStore(tmp_path / "state.db").outbox() == []


def test_the_json_format_adds_the_record_and_rule(tmp_path, local_server):
    config = project(tmp_path, local_server.url, fmt="json")
    cli("run", "--config", str(config), "--now", iso("2026-03-02 10:30"))
    body = local_server.requests[0][3]
    delivery = body.pop("id")
    assert body == {"text": "T-1 breached its first response (std)", "record_id": "T-1",
                    "rule": "page-oncall", "webhook": "oncall"}
    assert local_server.requests[0][2]["Idempotency-Key"] == delivery
    instance = StateStore(tmp_path / "state.db").instance_id()
    assert re.fullmatch(rf"{instance}-\d+", delivery)


def test_a_failing_webhook_keeps_the_notification_for_the_next_run(tmp_path, local_server,
                                                                    monkeypatch):
    monkeypatch.setattr("sla_sync.connector.http.wait", lambda seconds: None)
    local_server.default = (500, {}, None)
    config = project(tmp_path, local_server.url)
    failed = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:30"))
    assert failed.exit_code == 3
    assert "notification to 'oncall' failed" in failed.stderr
    assert "s3cret" not in failed.output  # the webhook URL is a secret
    data = json.loads((tmp_path / "helpdesk.json").read_text())
    assert data["records"][0]["tags"] == ["paged"]  # the record's own write went through
    local_server.default = (200, {}, {"ok": True})
    tried = list(local_server.requests)
    assert tried
    local_server.requests.clear()
    later = cli("run", "--config", str(config), "--now", iso("2026-03-02 11:00"))
    assert later.exit_code == 0
    assert len(local_server.requests) == 1  # sent now, and only once
    # the same delivery id as the failed attempts: a receiver can tell a repeat
    assert {h["Idempotency-Key"] for _, _, h, _ in tried} == \
        {local_server.requests[0][2]["Idempotency-Key"]}
    assert StateStore(tmp_path / "state.db").outbox() == []


def test_dry_run_lists_notifications_without_sending(tmp_path, local_server):
    config = project(tmp_path, local_server.url)
    result = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:30"), "--dry-run",
                 "--json")
    assert json.loads(result.stdout.splitlines()[0])["notify"] == [
        {"rule": "page-oncall", "webhook": "oncall",
         "text": "T-1 breached its first response (std)"}]
    assert local_server.requests == []


def test_a_policy_naming_an_undefined_webhook_stops_before_any_read(tmp_path):
    config = project(tmp_path, "https://hooks.example.com")
    config.write_text(config.read_text().replace("oncall:", "support:"))
    before = (tmp_path / "helpdesk.json").read_bytes()
    result = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:30"))
    assert result.exit_code == 2
    assert ("rules[0].actions[0].params.webhook: webhook 'oncall' is not defined under "
            "`webhooks:`") in result.stderr
    assert (tmp_path / "helpdesk.json").read_bytes() == before


@pytest.mark.parametrize(("webhooks", "message"), [
    ("{oncall: {url: 'http://hooks.example.com/x'}}", "webhooks.oncall.url: expected an https"),
    ("{oncall: {url: 'https://hooks.example.com/x', format: xml}}",
     "webhooks.oncall.format: expected one of slack, json"),
    ("{oncall: {url: 'https://hooks.example.com/x', channel: '#ops'}}",
     "webhooks.oncall.channel: unknown key"),
])
def test_bad_webhook_settings_are_named_by_key(tmp_path, webhooks, message):
    config = project(tmp_path, "https://hooks.example.com")
    text = config.read_text()
    config.write_text(text[:text.index("webhooks:")] + f"webhooks: {webhooks}\n")
    result = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:30"))
    assert result.exit_code == 2 and message in result.stderr
    assert "hooks.example.com/x" not in result.stderr
