"""The Jira Service Management connector against recorded, documented Jira Cloud payloads
(tests/fixtures/jsm): JQL reads ordered by `updated` with the minute edge read again, status
history from the changelog, first response from public comments, the conversation, the
assignee history and the time worked, issue edits and internal request comments, conflicts,
retries, secrets, and `sla-sync run` end to end.

Every request these tests make is also checked against Atlassian's OpenAPI spec when it is
available (tests/jsm_spec.py; the service desk API by the overlay it documents)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from requests.auth import HTTPBasicAuth
from responses import matchers

import jsm_spec
from conftest import Waits, act, at, bench_script, cli, cond, rule
from sla_sync.connector import ConflictError, ConnectorError, RecordGone, open_connector
from sla_sync.connector.base import OutcomeUnknown
from sla_sync.connector.http import HttpClient
from sla_sync.connector.jsm import JSM, SCHEMA, SEARCH, Words, _read_cursor
from sla_sync.connector.model import Assignment, ChangeSet, Message, Note, StatusChange
from sla_sync.sync_state import StateStore

FIXTURES = Path(__file__).parent / "fixtures" / "jsm"
URL = "https://acme.atlassian.net"
EMAIL = "sla-bot@acme.example.com"
TOKEN = "ATATT3xFfGF0-jsm-made-up-token-7d1c"  # made up: it must never show up anywhere
START = at("2026-03-01 00:00")
NOW = at("2026-03-02 10:20")
ALICE = "5b10ac8d82e05b22cc7d4ef5"
SAM = "5b109f2e9729b51b54dc274d"
FIELDS = ["summary", "status", "priority", "assignee", "reporter", "created", "updated",
          "resolutiondate", "labels", "comment", "project", "timespent", "customfield_10010",
          "customfield_10002"]
PAGE_2_TOKEN = "Ch8jU1VQLTEwMhIFMTAxMDIYwqKJ1MszKICAgICAgICA"
SETTINGS = {"type": "jsm", "url": URL, "email": EMAIL, "token": TOKEN, "projects": ["SUP"]}


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture
def api():
    """Jira Cloud, replayed from fixtures; every request is checked against the spec."""
    if not jsm_spec.available():
        pytest.fail(jsm_spec.MISSING)
    with responses.RequestsMock() as mock:
        yield mock
        jsm_spec.check_all([call.request for call in mock.calls])


def jsm(waits: Waits | None = None, url: str = URL, **settings: Any) -> JSM:
    waits = waits or Waits()
    client = HttpClient(url, auth=HTTPBasicAuth(EMAIL, TOKEN), name="jsm", sleep=waits.sleep,
                        clock=waits.clock, max_attempts=settings.pop("max_attempts", 8))
    words = Words.from_values(SCHEMA.check({**SETTINGS, "agents": {ALICE: "alice", SAM: "sam"},
                                            **settings}))
    return JSM(client, ("SUP",), words=words, start_time=START)


def search(since_local: str) -> dict[str, Any]:
    """The search body of a read from `since_local` (Berlin wall time, to the minute)."""
    return {"jql": f'project in ("SUP") AND updated >= "{since_local}" ORDER BY updated ASC, '
                   "key ASC", "fields": FIELDS, "expand": "changelog", "maxResults": 100}


def site(api: Any, url: str = URL) -> None:
    """What every fetch reads first: the API user's time zone and the site's statuses."""
    api.get(url + "/rest/api/3/myself", json=load("myself_europe_berlin"))
    api.get(url + "/rest/api/3/status", json=load("statuses"))


def search_page(api: Any, fixture: str, body: dict[str, Any], url: str = URL) -> None:
    api.post(url + SEARCH, json=load(fixture), match=[matchers.json_params_matcher(body)])


def first_sync(api: Any, url: str = URL) -> None:
    site(api, url)
    first = search("2026-03-01 01:00")  # START in Berlin
    search_page(api, "search_page_1", first, url)
    search_page(api, "search_page_2_last", {**first, "nextPageToken": PAGE_2_TOKEN}, url)


def read_all(connector: JSM, cursor: str | None = None) -> dict[str, Any]:
    return {r.id: r for page in connector.fetch(cursor) for r in page.records}


def sent(call: Any) -> Any:
    return json.loads(call.request.body)


# -- reading -------------------------------------------------------------------------------

def test_a_first_fetch_reads_the_time_zone_the_statuses_then_one_search_per_page(api):
    first_sync(api)
    pages = list(jsm().fetch(None))
    assert [[r.id for r in page.records] for page in pages] == [["SUP-101", "SUP-102"],
                                                                 ["SUP-103", "SUP-104"]]
    assert [c.request.path_url for c in api.calls] == [
        "/rest/api/3/myself", "/rest/api/3/status", SEARCH, SEARCH]
    assert json.loads(pages[-1].cursor) == {"v": 1, "since": "2026-03-02T10:05:00+00:00",
                                            "ids": ["SUP-104"]}


def test_jira_values_map_to_the_record_vocabulary(api):
    first_sync(api)
    records = read_all(jsm())
    printer, login, invoice, vpn = (records[k] for k in ("SUP-101", "SUP-102", "SUP-103",
                                                        "SUP-104"))
    assert (printer.status, printer.priority, printer.group, printer.assignee, printer.tags,
            printer.tier, printer.channel) == ("open", "high", "SUP", "", ("printer",),
                                               "standard", "other")
    assert (login.status, login.priority, login.assignee) == ("open", "normal", "alice")
    assert (invoice.status, invoice.priority, invoice.assignee) == ("pending", "low", "sam")
    # tier_gold is the tier, sla_escalation_1 the level: neither stays a tag.
    assert (vpn.priority, vpn.tier, vpn.escalation_level, vpn.tags) == ("urgent", "gold", 1,
                                                                        ("vpn",))
    assert printer.created_at == at("2026-03-02 09:00")  # +0100 read as such
    assert login.updated_at == at("2026-03-02 09:40:12.345")
    assert printer.custom == {"jsm_status": "Waiting for support", "status_category": "new",
                              "issue_id": "10101", "reporter": printer.custom["reporter"],
                              "request_type": "Get IT help", "organizations": ["Acme Corp"]}
    assert printer.url == "https://acme.atlassian.net/browse/SUP-101"


def test_first_response_is_the_first_public_comment_by_someone_but_the_reporter(api):
    first_sync(api)
    records = read_all(jsm())
    assert records["SUP-102"].first_response_at == at("2026-03-02 09:30")
    assert records["SUP-103"].first_response_at == at("2026-03-02 08:10")
    assert records["SUP-101"].first_response_at is None  # the reporter's own comment
    assert records["SUP-104"].first_response_at is None  # an internal comment


def test_status_history_comes_from_the_changelog(api):
    first_sync(api)
    records = read_all(jsm())
    assert records["SUP-102"].status_history == (StatusChange(at("2026-03-02 09:20"), "open"),)
    assert records["SUP-103"].status_history == (
        StatusChange(at("2026-03-02 08:10"), "pending"),)


def test_a_changelog_the_search_cut_short_is_read_whole_by_pages(api):
    site(api)
    search_page(api, "search_changelog_cut_short_last", search("2026-03-01 01:00"))
    changelog = URL + "/rest/api/3/issue/SUP-106/changelog"
    api.get(changelog, json=load("changelog_sup_106_page_1"),
            match=[matchers.query_param_matcher({"startAt": "0", "maxResults": "100"})])
    api.get(changelog, json=load("changelog_sup_106_page_2_last"),
            match=[matchers.query_param_matcher({"startAt": "2", "maxResults": "100"})])
    [record] = read_all(jsm()).values()
    assert [(c.at, c.status) for c in record.status_history] == [
        (at("2026-03-02 07:30"), "open"), (at("2026-03-02 08:00"), "pending"),
        (at("2026-03-02 09:50"), "solved")]
    assert record.solved_at == at("2026-03-02 09:50")
    assert len(api.calls) == 5


def test_a_fetch_resumed_in_a_minute_reads_the_minute_again_and_leaves_out_what_it_read(api):
    """JQL dates have minute resolution: page 1 ended at 09:40:12.345 (SUP-102); the next
    read asks from 10:40 Berlin again, gets SUP-102 once more and SUP-103 of the same
    instant, and yields SUP-103 only."""
    first_sync(api)
    first_page = list(jsm().fetch(None))[0]
    assert json.loads(first_page.cursor)["ids"] == ["SUP-102"]
    site(api)
    search_page(api, "search_same_minute_again_last", search("2026-03-02 10:40"))
    pages = list(jsm().fetch(first_page.cursor))
    assert [r.id for p in pages for r in p.records] == ["SUP-103"]
    assert json.loads(pages[-1].cursor) == {"v": 1, "since": "2026-03-02T09:40:12.345000+00:00",
                                            "ids": ["SUP-102", "SUP-103"]}


def test_a_wall_time_that_occurs_twice_is_asked_an_hour_earlier():
    # 2026-10-25 02:30 occurs twice in Berlin (clocks go back at 03:00 CEST).
    from zoneinfo import ZoneInfo
    query = jsm()._query(at("2026-10-25 00:30"), ZoneInfo("Europe/Berlin"))
    assert 'updated >= "2026-10-25 01:30"' in query  # 23:30 UTC, before both 02:30s


def test_a_malformed_request_is_skipped_and_reported_while_the_rest_are_read(api):
    site(api)
    search_page(api, "search_one_malformed_request_last", search("2026-03-01 01:00"))
    [page] = jsm().fetch(None)
    assert [r.id for r in page.records] == ["SUP-104"]
    assert [str(p) for p in page.problems] == [
        "record 'SUP-105': created: 'yesterday' is not an ISO 8601 timestamp"]


def test_an_unknown_priority_is_told_in_every_fetch_of_one_process(api):
    """Under `run --every` one connector fetches again and again: each fetch tells its own
    notices, not only the first."""
    connector = jsm()
    for _ in range(2):
        site(api)
        search_page(api, "search_unknown_priority_last", search("2026-03-01 01:00"))
        [page] = connector.fetch(None)
        assert page.records[0].priority == "normal"
        assert page.notices == ["unknown priority 'Blocker': read as 'normal' (map it in the "
                                "connector's priority_map setting)"]


def test_a_cursor_this_connector_did_not_write_is_an_error():
    with pytest.raises(ConnectorError, match="is not one this connector wrote"):
        _read_cursor('{"tickets": "x"}')


def test_read_back_reads_the_issue_and_its_internal_comments_as_notes(api):
    api.get(URL + "/rest/api/3/issue/SUP-101", json=load("issue_sup_101_after_the_write"))
    api.get(URL + "/rest/api/3/status", json=load("statuses"))
    api.get(URL + "/rest/servicedeskapi/request/SUP-101/comment",
            json=load("request_comments_internal_sup_101_last"),
            match=[matchers.query_param_matcher({"public": "false", "internal": "true",
                                                 "start": "0", "limit": "100"})])
    record = jsm().read_back("SUP-101", at("2026-03-02 10:00"))
    assert record is not None and "sla_breach" in record.tags
    assert record.notes == (Note(at("2026-03-02 10:20:01"), "SUP-101: first response overdue"),)


def test_a_request_that_is_gone_reads_back_as_none(api):
    api.get(URL + "/rest/api/3/issue/SUP-999", status=404, json=load("error_404_issue_not_found"))
    assert jsm().get("SUP-999") is None


# -- writing -------------------------------------------------------------------------------

def change(key: str = "SUP-101", **fields: Any) -> ChangeSet:
    return ChangeSet(key, base_updated_at=at("2026-03-02 09:10"), **fields)


def test_a_change_is_one_issue_edit_and_one_internal_request_comment(api):
    api.put(URL + "/rest/api/3/issue/SUP-101", status=204)
    api.post(URL + "/rest/servicedeskapi/request/SUP-101/comment", status=201,
             json=load("request_comment_created_internal"))
    jsm().apply(change(add_tags=("sla_breach",), remove_tags=("sla_warning",),
                       escalation_level=2, notes=("Overdue.", "Escalated.")), NOW)
    edit, comment = (sent(c) for c in api.calls)
    assert edit == {"update": {"labels": [{"add": "sla_breach"}, {"add": "sla_escalation_2"},
                                          {"remove": "sla_warning"},
                                          {"remove": "sla_escalation_1"}]}}
    assert comment == {"body": "Overdue.\n\nEscalated.", "public": False}


def test_priority_and_assignee_are_written_after_the_version_is_checked(api):
    api.get(URL + "/rest/api/3/issue/SUP-102", json={
        "id": "10102", "key": "SUP-102", "fields": {"updated": "2026-03-02T10:40:12.345+0100"}},
        match=[matchers.query_param_matcher({"fields": "updated"})])
    api.put(URL + "/rest/api/3/issue/SUP-102", status=204)
    jsm().apply(ChangeSet("SUP-102", base_updated_at=at("2026-03-02 09:40:12.345"),
                          fields={"priority": "urgent", "assignee": "sam"}), NOW)
    assert sent(api.calls[1]) == {"fields": {"priority": {"name": "Highest"},
                                             "assignee": {"accountId": SAM}}}


def test_a_request_changed_since_it_was_read_is_a_conflict_and_nothing_is_written(api):
    api.get(URL + "/rest/api/3/issue/SUP-102", json=load("issue_updated_only_sup_102_changed"))
    with pytest.raises(ConflictError) as info:
        jsm().apply(ChangeSet("SUP-102", base_updated_at=at("2026-03-02 09:40:12.345"),
                              fields={"priority": "high"}, notes=("x",)), NOW)
    assert info.value.record_id == "SUP-102"
    assert [c.request.method for c in api.calls] == ["GET"]


def test_a_status_write_is_refused_for_its_record_without_a_request(api):
    with pytest.raises(ConnectorError, match="workflow transition") as info:
        jsm().apply(change(fields={"status": "solved"}), NOW)
    assert info.value.record_id == "SUP-101" and not api.calls


def test_a_refused_edit_names_jiras_reason_and_a_gone_request_is_record_gone(api):
    api.put(URL + "/rest/api/3/issue/SUP-101", status=400, json=load("error_400_edit_refused"))
    api.put(URL + "/rest/api/3/issue/SUP-102", status=404, json=load("error_404_issue_not_found"))
    with pytest.raises(ConnectorError, match="Priority name 'Urgent' is not valid") as info:
        jsm().apply(change(add_tags=("a",)), NOW)
    assert info.value.record_id == "SUP-101"
    with pytest.raises(RecordGone):
        jsm().apply(change("SUP-102", add_tags=("a",)), NOW)


def test_a_429_waits_its_retry_after_and_the_edit_is_sent_again(api):
    waits = Waits()
    api.put(URL + "/rest/api/3/issue/SUP-101", status=429, headers={"Retry-After": "7"},
            json=load("error_429_rate_limited"))
    api.put(URL + "/rest/api/3/issue/SUP-101", status=204)
    jsm(waits).apply(change(add_tags=("sla_breach",)), NOW)
    assert waits.slept == [7.0] and len(api.calls) == 2


def test_a_comment_whose_answer_was_lost_is_not_sent_again(api):
    api.post(URL + "/rest/servicedeskapi/request/SUP-101/comment",
             body=requests.exceptions.ConnectionError("reset"))
    with pytest.raises(OutcomeUnknown) as info:
        jsm().apply(change(notes=("Overdue.",)), NOW)
    assert info.value.record_id == "SUP-101" and len(api.calls) == 1


def test_the_token_never_appears_in_messages_or_logs(api, caplog):
    caplog.set_level(logging.DEBUG)
    credentials = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    api.get(URL + "/rest/api/3/myself", status=401, json=load("error_401_unauthorized"))
    api.put(URL + "/rest/api/3/issue/SUP-101", status=503)
    connector = jsm(max_attempts=2)
    messages = []
    for attempt in (lambda: list(connector.fetch(None)),
                    lambda: connector.apply(change(add_tags=("x",)), NOW)):
        with pytest.raises(ConnectorError) as info:
            attempt()
        messages.append(str(info.value))
    assert "authentication failed" in messages[0]
    assert api.calls[0].request.headers["Authorization"] == f"Basic {credentials}"
    for text in (*messages, caplog.text, connector.identity, repr(connector.client.session)):
        assert TOKEN not in text and credentials not in text


# -- settings ------------------------------------------------------------------------------

def test_open_connector_builds_a_jsm_connector_from_the_config():
    connector = open_connector({**SETTINGS, "projects": ["SUP", "IT"],
                                "tier": {"organization": {"Acme Corp": "gold"}}}, Path("."))
    assert isinstance(connector, JSM)
    assert connector.identity == "jsm:https://acme.atlassian.net:IT,SUP"


@pytest.mark.parametrize("extra, message", [
    ({"tokn": "x"}, "connector.tokn: unknown setting for a jsm connector"),
    ({"email": "bot"}, "connector.email: expected an email address, got 'bot'"),
    ({"email": None}, "connector.email: the email address of the Atlassian account"),
    ({"token": " "}, "connector.token: the Atlassian API token is required"),
    ({"projects": []}, "connector.projects: expected the keys of the service projects"),
    ({"projects": ["sup"]}, "connector.projects[0]: 'sup' is not a Jira project key"),
    ({"jql": "x = 1 ORDER BY key"}, "connector.jql: expected a JQL condition without ORDER BY"),
    ({"tier": {"organization": "gold"}}, "connector.tier.organization: expected a mapping"),
    ({"tier": {"label_prefix": "t_", "organization": {"A": "b"}}},
     "connector.tier: give one of label_prefix, organization, not several"),
    ({"tier": {"colour": "x"}}, "connector.tier.colour: unknown key"),
    ({"channel": {"label_prefix": "c_"}}, "connector.channel.label_prefix: unknown key"),
    ({"escalation": {"field": 1}}, "connector.escalation.field: unknown key"),
    ({"agents": {ALICE: "a", SAM: "a"}}, f"connector.agents.{SAM}: the name 'a' is given "
                                         "twice"),
    ({"request_type_field": "10010"}, "connector.request_type_field: expected a custom field "
                                      "id"),
    ({"page_size": 0}, "connector.page_size: expected a whole number from 1 to 5000"),
    ({"start_time": "2026-03-01"}, "connector.start_time: '2026-03-01' has no UTC offset"),
])
def test_from_settings_names_the_key_at_fault(extra, message):
    with pytest.raises(ValueError) as info:
        JSM.from_settings({**SETTINGS, **extra}, Path("."))
    assert str(info.value).startswith(message)
    assert TOKEN not in str(info.value)


def test_tier_and_channel_from_the_customer_organisation_and_the_request_type(api):
    first_sync(api)
    connector = jsm(tier={"organization": {"Acme Corp": "gold"}, "default": "bronze"},
                    channel={"request_type": {"Get IT help": "web"}})
    pages = list(connector.fetch(None))
    records = {r.id: r for p in pages for r in p.records}
    assert (records["SUP-101"].tier, records["SUP-101"].channel) == ("gold", "web")
    assert (records["SUP-104"].tier, records["SUP-103"].channel) == ("bronze", "other")
    assert "tier_gold" in records["SUP-104"].tags  # no longer a tier source: a tag
    assert "organization 'Globex' is not in connector.tier.organization: read as 'bronze'" \
        in pages[1].notices


# -- end to end: sla-sync run --------------------------------------------------------------

E2E_POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"},
              "pause_statuses": ["pending"]}],
    "rules": [rule("breach", {"all": [cond("first_response_breached", "is_true")]},
                   act("add_tag", tag="sla_breach"),
                   act("add_note", text="{id}: first response overdue"))],
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A config for JSM with the token from the environment; retry waits do not wait."""
    monkeypatch.setenv("JSM_API_TOKEN", TOKEN)
    monkeypatch.setattr("sla_sync.connector.http.wait", lambda seconds: None)
    (tmp_path / "policy.json").write_text(json.dumps(E2E_POLICY))
    config = tmp_path / "config.yaml"
    config.write_text(
        "connector:\n"
        "  type: jsm\n"
        f"  url: {URL}\n"
        f"  email: {EMAIL}\n"
        "  token: ${JSM_API_TOKEN}\n"
        "  projects: [SUP]\n"
        "  start_time: 2026-03-01T00:00:00Z\n"
        f"  agents: {{{ALICE}: alice, {SAM}: sam}}\n"
        "  sandbox: true\n"
        "policy: policy.json\nstate: state.db\nfirst_run: act\n")
    return config


def writes(calls: list[Any]) -> list[tuple[str, str, Any]]:
    return [(c.request.method, c.request.path_url, sent(c)) for c in calls
            if c.request.method in ("PUT",) or "servicedeskapi" in c.request.path_url
            and c.request.method == "POST"]


def test_a_run_writes_the_breached_requests_and_a_rerun_writes_nothing(api, project):
    first_sync(api)
    for key in ("SUP-101", "SUP-104"):
        api.put(f"{URL}/rest/api/3/issue/{key}", status=204)
        api.post(f"{URL}/rest/servicedeskapi/request/{key}/comment", status=201,
                 json=load("request_comment_created_internal"))
    first = cli("run", "--config", str(project), "--now", NOW.isoformat())
    assert first.exit_code == 0, first.output
    # SUP-101's only comment is the reporter's, SUP-104's is internal: both unanswered
    # after an hour. SUP-102 and SUP-103 were answered in time.
    assert writes(api.calls) == [
        ("PUT", "/rest/api/3/issue/SUP-101", {"update": {"labels": [{"add": "sla_breach"}]}}),
        ("POST", "/rest/servicedeskapi/request/SUP-101/comment",
         {"body": "SUP-101: first response overdue", "public": False}),
        ("PUT", "/rest/api/3/issue/SUP-104", {"update": {"labels": [{"add": "sla_breach"}]}}),
        ("POST", "/rest/servicedeskapi/request/SUP-104/comment",
         {"body": "SUP-104: first response overdue", "public": False})]
    assert "writes 2" in first.output and "cursor moved" in first.output
    assert TOKEN not in first.output

    before = len(api.calls)
    site(api)
    search_page(api, "search_after_the_writes_last", search("2026-03-02 11:05"))
    second = cli("run", "--config", str(project), "--now", "2026-03-02T10:25:00+00:00")
    assert second.exit_code == 0, second.output
    assert len(api.calls) == before + 3 and not writes(api.calls[before:])
    assert "writes 0" in second.output


def test_a_run_skips_and_reports_a_malformed_request_and_writes_the_rest(api, project):
    site(api)
    search_page(api, "search_one_malformed_request_last", search("2026-03-01 01:00"))
    api.put(f"{URL}/rest/api/3/issue/SUP-104", status=204)
    api.post(f"{URL}/rest/servicedeskapi/request/SUP-104/comment", status=201,
             json=load("request_comment_created_internal"))
    result = cli("run", "--config", str(project), "--now", NOW.isoformat())
    assert "record 'SUP-105': created: 'yesterday' is not an ISO 8601 timestamp" \
        in result.output
    assert "writes 1" in result.output
    assert [w[1] for w in writes(api.calls)] == ["/rest/api/3/issue/SUP-104",
                                                 "/rest/servicedeskapi/request/SUP-104/comment"]


def test_a_comment_whose_answer_was_lost_is_read_back_and_not_sent_again(api, project):
    first_sync(api)
    api.put(f"{URL}/rest/api/3/issue/SUP-101", status=204)
    api.post(f"{URL}/rest/servicedeskapi/request/SUP-101/comment",
             body=requests.exceptions.ReadTimeout("late"))
    api.put(f"{URL}/rest/api/3/issue/SUP-104", status=204)
    api.post(f"{URL}/rest/servicedeskapi/request/SUP-104/comment", status=201,
             json=load("request_comment_created_internal"))
    # The read-back: the issue itself and its internal comments show the write landed.
    api.get(f"{URL}/rest/api/3/issue/SUP-101", json=load("issue_sup_101_after_the_write"))
    api.get(f"{URL}/rest/servicedeskapi/request/SUP-101/comment",
            json=load("request_comments_internal_sup_101_last"))
    result = cli("run", "--config", str(project), "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output
    assert "record 'SUP-101': the answer to its write was lost; read back, the record shows " \
        "the write: recorded it, not sent again" in result.output
    assert [w[1] for w in writes(api.calls)].count(
        "/rest/servicedeskapi/request/SUP-101/comment") == 1
    assert "writes 2" in result.output
    mirrored = StateStore(project.parent / "state.db").record("SUP-101")
    assert mirrored is not None and "sla_breach" in mirrored.tags


# -- sla-sync check ------------------------------------------------------------------------

def catalog_site(api: Any, url: str = URL) -> None:
    api.get(url + "/rest/api/3/project/search", json=load("check_project_search_sup"),
            match=[matchers.query_param_matcher({"keys": "SUP"})])
    api.get(url + "/rest/api/3/priority/search", json=load("check_priorities_last"))
    api.get(url + "/rest/api/3/status", json=load("statuses"))
    api.get(url + "/rest/api/3/field", json=load("check_fields"))
    api.get(url + "/rest/api/3/user/assignable/multiProjectSearch",
            json=load("check_assignable_agents"))
    api.get(url + "/rest/api/3/mypermissions", json=load("check_mypermissions_sup_no_comments"),
            match=[matchers.query_param_matcher({
                "projectKey": "SUP",
                "permissions": "EDIT_ISSUES,ASSIGN_ISSUES,ADD_COMMENTS,BROWSE_PROJECTS"})])


def test_the_catalog_lists_what_the_site_has_and_what_the_user_may_not_write(api):
    catalog_site(api)
    catalog = jsm(tier={"organization": {"Acme Corp": "gold"}}).catalog()
    assert catalog.priorities == {"urgent", "high", "normal", "low"}
    assert catalog.statuses == {"open", "pending", "solved", "new"}  # Triage: category new
    assert catalog.groups == {"SUP"}
    assert catalog.agents == {"alice", "sam", "5c2e6a0b1f4d8e7a9b3c5d10"}
    assert catalog.hints[("agent", "Pat Park")].startswith(
        "Jira's agent 'Pat Park' has account id 5c2e6a0b1f4d8e7a9b3c5d10")
    assert ("priority", "Blocker") in catalog.hints
    # The organisation field the tier reads is not on the site.
    assert catalog.problems == [("connector.organization_field", "no field customfield_10002 "
                                 "on the site (connector.tier reads it)")]
    assert catalog.denied == {"notes": "the API user may not add comments in project SUP"}
    assert catalog.requests == 6


def test_the_token_is_the_one_secret_setting():
    assert SCHEMA.secrets == {"token"}  # tests/test_connector_docs.py checks the docs table


# -- the spec itself -----------------------------------------------------------------------

#: Every platform endpoint the connector calls, as Atlassian's spec names it (the service
#: desk API's request comments come from the overlay in tests/jsm_spec.py).
OPERATIONS = {
    ("POST", "/rest/api/3/search/jql"), ("GET", "/rest/api/3/myself"),
    ("GET", "/rest/api/3/status"), ("GET", "/rest/api/3/issue/{issueIdOrKey}"),
    ("PUT", "/rest/api/3/issue/{issueIdOrKey}"),
    ("GET", "/rest/api/3/issue/{issueIdOrKey}/changelog"),
    ("GET", "/rest/api/3/issue/{issueIdOrKey}/comment"),
    ("GET", "/rest/api/3/project/search"), ("GET", "/rest/api/3/priority/search"),
    ("GET", "/rest/api/3/field"), ("GET", "/rest/api/3/user/assignable/multiProjectSearch"),
    ("GET", "/rest/api/3/mypermissions"),
}


def test_the_spec_describes_every_platform_endpoint_the_connector_calls():
    import json as _json
    assert jsm_spec.available(), jsm_spec.MISSING
    published = _json.loads(jsm_spec.SPEC.read_text(encoding="utf-8"))["paths"]
    for method, path in OPERATIONS:
        assert method.lower() in published.get(path, {}), f"{method} {path} is not in the spec"


@pytest.mark.parametrize("method, path, body", [
    ("PUT", "/rest/api/3/issue/SUP-1", {"updates": {"labels": [{"add": "x"}]}}),
    ("POST", "/rest/servicedeskapi/request/SUP-1/comment", {"body": "x", "pubic": False}),
    ("POST", "/rest/api/3/search/jql", {"jql": "project = SUP", "maxResult": 5}),
])
def test_the_checker_refuses_a_misspelt_key(method, path, body):
    assert jsm_spec.available(), jsm_spec.MISSING
    request = requests.Request(method, URL + path, json=body, auth=(EMAIL, "t")).prepare()
    with pytest.raises(Exception, match="Request body"):
        jsm_spec.check(request)


def test_sla_sync_check_names_what_the_site_lacks_and_what_the_user_may_not_write(
        api, project):
    catalog_site(api)
    policy = {**E2E_POLICY, "rules": [
        rule("route", {"all": [cond("priority", "equal_to", "urgent")]},
             act("assign", assignee="Pat Park"), act("set_priority", priority="high"),
             act("add_note", text="{id}: urgent"))]}
    (project.parent / "policy.json").write_text(json.dumps(policy))
    result = cli("check", "--config", str(project))
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        "policy: rules[0].actions[0].params.assignee: 'Pat Park' is not an agent in Jira "
        "Service Management (known: 5c2e6a0b1f4d8e7a9b3c5d10, alice, sam); Jira's agent 'Pat "
        "Park' has account id 5c2e6a0b1f4d8e7a9b3c5d10: name it in connector.agents",
        "policy: rules[0].actions[2]: the credentials cannot make this write: the API user may "
        "not add comments in project SUP"]
    assert result.stderr.strip() == ("check: 2 problems; Jira Service Management "
                                     f"(jsm:{URL}:SUP) read in 6 requests")
    assert TOKEN not in result.output


# -- requests per sync (bench/bench_requests.py's scenario, counted) ---------------------------

def test_a_sync_costs_the_documented_minimum_of_requests():
    bench = bench_script("bench_requests")
    # 450 requests read (the user's zone, the statuses, 5 search pages of 100); 250 edited,
    # each after reading its `updated` (an edit has no version check); 120 comments.
    count = bench.count_jsm(bench.Scenario(450, 250, 120))
    assert count.made == {"GET /rest/api/3/myself": 1, "GET /rest/api/3/status": 1,
                          "search": 5, "version read": 250, "issue edit": 250,
                          "request comment": 120}
    assert count.made == count.minimum


# -- the conversation, the assignee history and the time worked --------------------------------

def test_the_conversation_assignees_and_time_worked_come_with_the_search_at_no_request_more(
        api):
    """SUP-110: raised at 09:00 by Carla (a portal customer); Sam takes it at 09:15 and
    replies in public at 09:20; Carla writes again at 09:40; Alice comments internally at
    09:50; 30 minutes logged."""
    site(api)
    search_page(api, "search_conversation_last", search("2026-03-01 01:00"))
    record = read_all(jsm())["SUP-110"]
    assert record.messages == (
        Message(at("2026-03-02 09:00"), "customer", True),  # the request itself
        Message(at("2026-03-02 09:20"), "agent", True),
        Message(at("2026-03-02 09:40"), "customer", True),
        Message(at("2026-03-02 09:50"), "agent", False))
    assert record.assignment_history == (
        Assignment(at("2026-03-02 09:00"), "SUP", ""),
        Assignment(at("2026-03-02 09:15"), "SUP", "sam"))
    assert record.worked_seconds == 1800
    assert record.first_response_at == at("2026-03-02 09:20")
    assert len(api.calls) == 3  # the time zone, the statuses, one search page


def test_without_time_logged_the_time_worked_is_unknown_and_a_move_drops_the_history(api):
    page = load("search_conversation_last")
    issue = page["issues"][0]
    issue["fields"]["timespent"] = None
    issue["changelog"]["histories"].append({
        "id": "30113", "created": "2026-03-02T10:55:00.000+0100", "items": [
            {"field": "project", "fieldtype": "jira", "fieldId": "project", "from": "10001",
             "fromString": "Hardware", "to": "10000", "toString": "Support"}]})
    issue["changelog"]["total"] = issue["changelog"]["maxResults"] = 4
    site(api)
    api.post(URL + SEARCH, json=page)
    record = read_all(jsm())["SUP-110"]
    assert record.worked_seconds is None and record.assignment_history is None
    assert record.messages is not None and len(record.messages) == 4


def test_the_changelog_gives_the_assignee_at_creation_as_its_first_changes_from(api):
    page = load("search_conversation_last")
    item = page["issues"][0]["changelog"]["histories"][0]["items"][0]
    item.update({"from": ALICE, "fromString": "Alice Adams"})
    site(api)
    api.post(URL + SEARCH, json=page)
    history = read_all(jsm())["SUP-110"].assignment_history
    assert history is not None and [(a.at, a.assignee) for a in history] == [
        (at("2026-03-02 09:00"), "alice"), (at("2026-03-02 09:15"), "sam")]


NEXT_RESPONSE_POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "next_response": "30m"}}],
    "rules": [rule("late reply", {"all": [cond("next_response_breached", "is_true")]},
                   act("add_tag", tag="reply_overdue"))],
}


def test_a_run_finds_a_next_response_breach_in_the_jsm_conversation(api, project):
    """Carla wrote again at 09:40 after Sam's 09:20 reply; Alice's 09:50 comment is
    internal: at 10:20 the 30-minute next response target ran out at 10:10 (the first
    response, at 09:20, was in time)."""
    (project.parent / "policy.json").write_text(json.dumps(NEXT_RESPONSE_POLICY))
    site(api)
    search_page(api, "search_conversation_last", search("2026-03-01 01:00"))
    api.put(f"{URL}/rest/api/3/issue/SUP-110", status=204)
    result = cli("run", "--config", str(project), "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output
    assert writes(api.calls) == [
        ("PUT", "/rest/api/3/issue/SUP-110", {"update": {"labels": [{"add": "reply_overdue"}]}})]
    assert "writes 1" in result.output


def test_the_directory_gives_each_assignable_agent_by_the_name_rules_use(api):
    agents = load("check_assignable_agents")
    agents[0]["emailAddress"] = "alice@acme.example.com"  # shown where privacy allows
    api.get(URL + "/rest/api/3/user/assignable/multiProjectSearch", json=agents,
            match=[matchers.query_param_matcher(
                {"projectKeys": "SUP", "startAt": "0", "maxResults": "100"})])
    directory = jsm().directory()
    assert directory["alice"] == {"email": "alice@acme.example.com", "name": "Alice Archer",
                                  "timezone": "Europe/Berlin"}
    # No email shown: no address, so alerts to Sam go to the channel's fallback.
    assert directory["sam"] == {"name": "Sam Singh", "timezone": "Europe/Berlin"}
    assert "5c2e6a0b1f4d8e7a9b3c5d10" in directory  # unnamed in agents: its account id
    assert len(api.calls) == 1
