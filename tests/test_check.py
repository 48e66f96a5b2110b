"""`sla-sync check`: config, policy and helpdesk together, read live through each connector's
catalog(): the embedded file helpdesk, recorded Zendesk, Freshdesk and HubSpot payloads
(tests/fixtures/*/check_*.json; each test says which documented API section its payloads
follow), and the real Request Tracker (tools/rt-server, as tests/test_rt_e2e.py starts it).

Every kind of name a policy can get wrong is asked for against a helpdesk: priority, status,
group (an RT queue), agent (an RT user, a HubSpot owner), custom field, webhook; a clean
deployment gives no problem and exit 0; bad credentials and an unreachable helpdesk are one
line each and exit 2; secrets never show."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import responses

import zendesk_spec
from conftest import act, cli, cond, record_dict, rule
from test_rt_e2e import Api, Server, server  # noqa: F401  (the real RT, once a session)

ZENDESK = "https://acme.zendesk.com"
ZENDESK_TOKEN = "zd-check-token-71c0e9a4"  # made up: must never show up in check's output
HOOK = "https://hooks.example.com/services/T000/B000/secret-path-9f2c"
FIXTURES = Path(__file__).parent / "fixtures"


def fixture(vendor: str, name: str) -> Any:
    return json.loads((FIXTURES / vendor / f"{name}.json").read_text())


def deploy(folder: Path, connector: str, policy: dict[str, Any], webhooks: bool = True) -> Path:
    """A config (connector given as YAML flow text) and its policy in `folder`."""
    (folder / "policy.json").write_text(json.dumps(policy, indent=2))
    config = folder / "config.yaml"
    config.write_text(f"connector: {connector}\npolicy: policy.json\nstate: state.db\n"
                      + ("webhooks:\n  oncall: {url: '${HOOK_URL}', format: slack}\n"
                         if webhooks else ""))
    return config


def policy_with(*rules: dict[str, Any], pause: list[str] | None = None,
                closed: list[str] | None = None, calendar_by: dict[str, Any] | None = None,
                ) -> dict[str, Any]:
    sla: dict[str, Any] = {"name": "all", "targets": {"first_response": "4h"},
                           "pause_statuses": pause or ["pending"]}
    if calendar_by:
        sla["calendar_by"] = calendar_by
    policy: dict[str, Any] = {"slas": [sla], "rules": list(rules) or [
        rule("tag-breach", cond("first_response_breached", "is_true"),
             act("add_tag", tag="sla_breach"))]}
    if closed is not None:
        policy["closed_statuses"] = closed
    return policy


def check(config: Path) -> tuple[int, list[str], str]:
    result = cli("check", "--config", str(config))
    return result.exit_code, result.stdout.splitlines(), result.stderr.strip()


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_URL", HOOK)
    monkeypatch.setenv("ZENDESK_TOKEN", ZENDESK_TOKEN)


@pytest.fixture(autouse=True)
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The HTTP layer's throttle and retry waits, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("sla_sync.connector.http.wait", slept.append)
    return slept


def no_secret(*texts: Any) -> None:
    for text in texts:
        for secret in (ZENDESK_TOKEN, HOOK, "secret-path", "fd-check", "pat-na1-check"):
            assert secret not in str(text)


# -- the embedded file helpdesk ------------------------------------------------------------

def file_desk(tmp_path: Path, policy: dict[str, Any]) -> Path:
    (tmp_path / "helpdesk.json").write_text(json.dumps({"records": [
        record_dict(id="T-1", group="support", assignee="alice", priority="high",
                    custom={"region": "emea"}),
        record_dict(id="T-2", group="billing", assignee="bob", status="waiting"),
    ]}))
    return deploy(tmp_path, "{type: file, path: helpdesk.json}", policy)


def test_a_clean_file_deployment_has_no_problem(tmp_path: Path) -> None:
    policy = policy_with(
        rule("route", cond("group", "is_one_of", ["support", "billing"]),
             act("assign_group", group="billing"), act("assign", assignee="bob"),
             act("set_priority", priority="urgent"), act("notify", webhook="oncall", text="x")),
        pause=["waiting", "hold"],
        calendar_by={"field": "custom.region", "calendars": {"emea": "24x7"}, "default": "24x7"})
    code, lines, summary = check(file_desk(tmp_path, policy))
    assert (code, lines) == (0, []), lines
    assert summary.startswith("check: no problems") and "file helpdesk" in summary
    assert not (tmp_path / "state.db").exists()  # check writes nothing


def test_each_kind_of_unknown_name_in_a_file_helpdesk(tmp_path: Path) -> None:
    policy = policy_with(
        rule("route", cond("group", "equal_to", "suport"),
             act("assign_group", group="Tier 3"), act("assign", assignee="carol"),
             act("notify", webhook="pager", text="x")),
        pause=["on-hold"], closed=["solved", "archived"],
        calendar_by={"field": "custom.regoin", "calendars": {"emea": "24x7"}, "default": "24x7"})
    code, lines, summary = check(file_desk(tmp_path, policy))
    assert code == 2
    assert lines == [
        "policy: rules[0].actions[2].params.webhook: webhook 'pager' is not defined under "
        "`webhooks:` in the config (known: oncall)",
        "policy: closed_statuses[1]: 'archived' is not a status in the file helpdesk (known: "
        "closed, hold, new, open, pending, solved, waiting)",
        "policy: slas[0].pause_statuses[0]: 'on-hold' is not a status in the file helpdesk "
        "(known: closed, hold, new, open, pending, solved, waiting)",
        "policy: slas[0].calendar_by.field: 'regoin' is not a custom field in the file "
        "helpdesk (did you mean 'region'?) (known: region)",
        "policy: rules[0].conditions.value: 'suport' is not a group in the file helpdesk (did "
        "you mean 'support'?) (known: billing, support)",
        "policy: rules[0].actions[0].params.group: 'Tier 3' is not a group in the file "
        "helpdesk (known: billing, support)",
        "policy: rules[0].actions[1].params.assignee: 'carol' is not an agent in the file "
        "helpdesk (known: alice, bob)",
    ]
    assert summary.startswith("check: 7 problems")
    no_secret(lines, summary)


def test_a_priority_the_file_helpdesk_does_not_have(tmp_path: Path) -> None:
    policy = policy_with(rule("p", cond("priority", "is_one_of", ["high", "p1"]),
                              act("set_priority", priority="critical")))
    code, lines, _ = check(file_desk(tmp_path, policy))
    assert code == 2
    assert [line.split(" (known")[0] for line in lines] == [
        "policy: rules[0].conditions.value[1]: 'p1' is not a priority in the file helpdesk",
        "policy: rules[0].actions[0].params.priority: 'critical' is not a priority in the file "
        "helpdesk"]


def test_config_and_policy_problems_are_named_by_their_paths(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    config = file_desk(tmp_path, {"slas": [], "rules": [{"name": "x", "conditions": {
        "name": "tier", "operator": "greater_than", "value": 3}, "actions": []}]})
    config.write_text(config.read_text().replace("{type: file, path: helpdesk.json}",
                                                 "{type: file, path: helpdesk.json, pages: 3}"))
    code, lines, summary = check(config)
    assert code == 2
    assert lines[0].startswith("config: connector.pages: unknown setting for a file connector")
    assert any(line.startswith("policy: rules[0].conditions.operator: ") for line in lines)
    assert "the helpdesk was not asked" in summary
    monkeypatch.delenv("HOOK_URL")
    code, lines, summary = check(config)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("config: ")
    assert "HOOK_URL" in lines[0]


def test_a_file_helpdesk_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    config = file_desk(tmp_path, policy_with())
    (tmp_path / "helpdesk.json").unlink()
    code, lines, summary = check(config)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("helpdesk: "), lines
    assert "helpdesk.json" in lines[0] and "cannot be read" in summary


def test_a_file_helpdesk_not_yet_seeded_is_read_from_its_seed_and_left_alone(
        tmp_path: Path) -> None:
    file_desk(tmp_path, policy_with())
    (tmp_path / "helpdesk.json").rename(tmp_path / "seed.json")
    config = deploy(tmp_path, "{type: file, path: run/helpdesk.json, seed: seed.json}",
                    policy_with(rule("a", cond("kind", "equal_to", "ticket"),
                                     act("assign", assignee="bob"))))
    code, lines, _ = check(config)
    assert (code, lines) == (0, [])
    assert not (tmp_path / "run").exists()


# -- Zendesk (recorded payloads) -----------------------------------------------------------

ZENDESK_CONNECTOR = ("{type: zendesk, url: '" + ZENDESK + "', email: agent@acme.example.com, "
                     "token: '${ZENDESK_TOKEN}', groups: {360001: support, 360002: billing}, "
                     "agents: {361001: sam, 361002: alice}, tier: {field: 360005}}")


@pytest.fixture
def zendesk_api():
    """Zendesk's API replayed from payloads that follow its reference: "Show the Currently
    Authenticated User" (Users), "List Ticket Fields" (Ticket Fields: the status and priority
    system fields with their system_field_options, one custom tagger field), "List Groups"
    (Groups, two cursor pages: meta.has_more, meta.after_cursor) and "List Users" filtered by
    role[] (Users). Every request is checked against Zendesk's OpenAPI spec."""
    with responses.RequestsMock() as mock:
        yield mock
        if zendesk_spec.available():
            zendesk_spec.check_all([call.request for call in mock.calls])


def zendesk_answers(api: responses.RequestsMock, me: str = "check_users_me_admin") -> None:
    api.get(f"{ZENDESK}/api/v2/users/me", json=fixture("zendesk", me))
    api.get(f"{ZENDESK}/api/v2/ticket_fields", json=fixture("zendesk", "check_ticket_fields"))
    after = fixture("zendesk", "check_groups_page_1")["meta"]["after_cursor"]
    api.get(f"{ZENDESK}/api/v2/groups", json=fixture("zendesk", "check_groups_page_2"),
            match=[responses.matchers.query_param_matcher(
                {"page[size]": "100", "page[after]": after})])
    api.get(f"{ZENDESK}/api/v2/groups", json=fixture("zendesk", "check_groups_page_1"),
            match=[responses.matchers.query_param_matcher({"page[size]": "100"})])
    api.get(f"{ZENDESK}/api/v2/users", json=fixture("zendesk", "check_agents"),
            match=[responses.matchers.query_param_matcher(
                {"role[]": ["agent", "admin"], "page[size]": "100"})])


def test_a_clean_zendesk_deployment(tmp_path: Path, zendesk_api: responses.RequestsMock) -> None:
    zendesk_answers(zendesk_api)
    policy = policy_with(rule("route", cond("priority", "equal_to", "urgent"),
                              act("assign_group", group="billing"), act("assign", assignee="sam"),
                              act("set_priority", priority="high")))
    code, lines, summary = check(deploy(tmp_path, ZENDESK_CONNECTOR, policy))
    assert (code, lines) == (0, []), lines
    assert summary == (f"check: no problems: config, policy and helpdesk agree; Zendesk "
                       f"(zendesk:{ZENDESK}) read in 5 requests")


def test_unknown_names_in_zendesk(tmp_path: Path, zendesk_api: responses.RequestsMock) -> None:
    zendesk_answers(zendesk_api)
    policy = policy_with(
        rule("route", cond("status", "is_not_one_of", ["solved", "closed"]),
             act("assign_group", group="Tier 3"), act("assign", assignee="Carol Ng"),
             act("set_priority", priority="critical"), act("notify", webhook="pager", text="x")),
        pause=["pending", "hold"],
        calendar_by={"field": "custom.tier_id", "calendars": {"x": "24x7"}, "default": "24x7"})
    code, lines, summary = check(deploy(tmp_path, ZENDESK_CONNECTOR, policy))
    assert code == 2
    assert lines == [
        "policy: rules[0].actions[3].params.webhook: webhook 'pager' is not defined under "
        "`webhooks:` in the config (known: oncall)",
        "policy: slas[0].pause_statuses[1]: 'hold' is not a status in Zendesk (known: closed, "
        "new, open, pending, solved)",
        "policy: slas[0].calendar_by.field: 'tier_id' is not a custom field in Zendesk (known: "
        "initially_assigned_at, organization_id, reopens, replies, requester_id, type, via, "
        "zendesk_status)",
        "policy: rules[0].actions[0].params.group: 'Tier 3' is not a group in Zendesk (known: "
        "360003, billing, support); Zendesk's group 'Tier 3' has id 360003: name it in "
        "connector.groups (e.g. 360003: Tier 3)",
        "policy: rules[0].actions[1].params.assignee: 'Carol Ng' is not an agent in Zendesk "
        "(known: 361003, alice, sam); Zendesk's agent 'Carol Ng' has id 361003: name it in "
        "connector.agents (e.g. 361003: Carol Ng)",
        "policy: rules[0].actions[2].params.priority: 'critical' is not a priority in Zendesk "
        "(known: high, low, normal, urgent)",
    ]
    assert summary.startswith("check: 6 problems; Zendesk")
    no_secret(lines, summary)


def test_zendesk_config_names_what_the_account_lacks(tmp_path: Path,
                                                     zendesk_api: responses.RequestsMock) -> None:
    zendesk_answers(zendesk_api, me="check_users_me_agent")
    connector = ZENDESK_CONNECTOR.replace("360002: billing", "360009: billing") \
        .replace("tier: {field: 360005}", "tier: {field: 360077}, escalation: {field: 360005}")
    code, lines, _ = check(deploy(tmp_path, connector, policy_with()))
    assert code == 2
    assert lines == [
        "config: connector.email: the API token's user is a Zendesk 'agent', not an admin: the "
        "incremental exports sla-sync reads are open to admins only",
        "config: connector.tier.field: no active ticket field 360077 in Zendesk (known: "
        "360005 Customer tier)",
        "config: connector.groups.360009: no group 360009 in Zendesk (known: 360001 Support, "
        "360002 Billing, 360003 Tier 3)",
    ]


def test_zendesk_refusing_the_token_is_one_line(tmp_path: Path,
                                                zendesk_api: responses.RequestsMock) -> None:
    zendesk_api.get(f"{ZENDESK}/api/v2/users/me", status=401,
                    json=fixture("zendesk", "error_401_unauthenticated"))
    code, lines, summary = check(deploy(tmp_path, ZENDESK_CONNECTOR, policy_with()))
    assert code == 2
    assert lines == ["helpdesk: zendesk: GET /api/v2/users/me: HTTP 401: authentication "
                     "failed: check the credentials the config reads from the environment "
                     "(Couldn't authenticate you)"]
    assert summary == f"check: 1 problem; zendesk:{ZENDESK} cannot be read"
    no_secret(lines, summary, [call.request.url for call in zendesk_api.calls])


def test_an_unreachable_helpdesk_is_one_line(tmp_path: Path, waits: list[float]) -> None:
    import socket
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = ZENDESK_CONNECTOR.replace(ZENDESK, f"http://127.0.0.1:{port}")
    code, lines, summary = check(deploy(tmp_path, connector, policy_with()))
    assert code == 2
    assert lines == ["helpdesk: zendesk: GET /api/v2/users/me unreachable after retries "
                     "(ConnectionError)"]
    assert waits, "the HTTP layer's retries ran (without sleeping)"
    no_secret(lines, summary)


# -- Request Tracker (the real one) --------------------------------------------------------

def rt_deploy(folder: Path, server: Server, policy: dict[str, Any],  # noqa: F811
              extra: str = "") -> Path:
    return deploy(folder, f"{{type: rt, url: '{server.url}', token: '${{RT_TOKEN}}'{extra}}}",
                  policy)


def test_a_clean_rt_deployment(tmp_path: Path, server: Server,  # noqa: F811
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TOKEN", server.token)
    subject = f"check {uuid.uuid4().hex[:8]}"
    Api(server, server.token).create(Queue="support", Subject=subject)
    policy = policy_with(rule("route", cond("group", "is_one_of", ["support", "billing"]),
                              act("escalate", level=1, group="tier2", assignee="alice",
                                  note="escalated"),
                              act("set_priority", priority="urgent")),
                         pause=["pending"], closed=["solved", "closed"])
    code, lines, summary = check(rt_deploy(tmp_path, server, policy,
                                           f", query: \"Subject = '{subject}'\""))
    assert (code, lines) == (0, []), lines
    # queues/all, each of the 4 queues, one ticket of the query and that ticket, the users
    assert summary.startswith("check: no problems") and summary.endswith(
        f"RT (rt:{server.url}) read in 8 requests")
    no_secret(lines, summary)
    assert server.token not in summary


def test_unknown_names_in_rt(tmp_path: Path, server: Server,  # noqa: F811
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TOKEN", server.token)
    policy = policy_with(
        rule("route", cond("group", "equal_to", "suport"),
             act("assign_group", group="Tier 3"), act("assign", assignee="carol"),
             act("set_priority", priority="critical"), act("notify", webhook="pager", text="x")),
        pause=["hold"],
        calendar_by={"field": "custom.Tier", "calendars": {"gold": "24x7"}, "default": "24x7"})
    code, lines, summary = check(rt_deploy(tmp_path, server, policy,
                                           ", tags_field: Labels"))
    assert code == 2
    assert [line.split(" (known")[0] for line in lines] == [
        "policy: rules[0].actions[3].params.webhook: webhook 'pager' is not defined under "
        "`webhooks:` in the config",
        "config: connector.tags_field: no ticket custom field 'Labels' applied to any queue "
        "the API user can see in RT",
        "policy: slas[0].pause_statuses[0]: 'hold' is not a status in RT",
        "policy: slas[0].calendar_by.field: 'Tier' is not a custom field in RT",
        "policy: rules[0].conditions.value: 'suport' is not a queue in RT (did you mean "
        "'support'?)",
        "policy: rules[0].actions[0].params.group: 'Tier 3' is not a queue in RT",
        "policy: rules[0].actions[1].params.assignee: 'carol' is not a user in RT",
        "policy: rules[0].actions[2].params.priority: 'critical' is not a priority in RT",
    ]
    # What the real RT has, as the messages list it.
    assert "known: Escalation level, Tags, Tier" in lines[1]
    assert "known: billing, General, support, tier2" in lines[5]
    assert "alice" in lines[6] and "bob" in lines[6] and "RT_System" not in lines[6]
    assert summary.startswith("check: 8 problems; RT")


def test_rt_refusing_the_token_is_one_line(tmp_path: Path, server: Server,  # noqa: F811
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_TOKEN", "1-22-not-a-token")
    code, lines, summary = check(rt_deploy(tmp_path, server, policy_with()))
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("helpdesk: rt: GET /REST/2.0/queues/all: "
                                                   "HTTP 401: authentication failed"), lines
    assert "1-22-not-a-token" not in "".join(lines) + summary


# -- Freshdesk (recorded payloads) ---------------------------------------------------------

FRESHDESK = "https://acme.example.com"
FRESHDESK_CONNECTOR = ("{type: freshdesk, url: '" + FRESHDESK + "', api_key: '${FD_KEY}', "
                       "groups: {48000123: support, 48000124: billing}, "
                       "agents: {48000501: Ana Lima}, status_map: {6: hold}}")


@pytest.fixture
def freshdesk_api(monkeypatch: pytest.MonkeyPatch):
    """Freshdesk's API v2 replayed from payloads that follow its reference: "View Me"
    (Agents: ticket_scope), "List All Ticket Fields" (Ticket Fields: the default_status
    choices keyed by status id, default_priority choices by name, a custom dropdown), "List
    All Groups" and "List All Agents" (two pages, the next one named by the Link header, as
    "Pagination" documents)."""
    monkeypatch.setenv("FD_KEY", "fd-check-key-0a1b2c")
    with responses.RequestsMock() as mock:
        yield mock


def freshdesk_answers(api: responses.RequestsMock, scope: int = 1) -> None:
    me = fixture("freshdesk", "check_agents_me")
    api.get(f"{FRESHDESK}/api/v2/agents/me", json={**me, "ticket_scope": scope})
    api.get(f"{FRESHDESK}/api/v2/ticket_fields", json=fixture("freshdesk", "check_ticket_fields"))
    api.get(f"{FRESHDESK}/api/v2/groups", json=fixture("freshdesk", "check_groups"))
    api.get(f"{FRESHDESK}/api/v2/agents", json=fixture("freshdesk", "check_agents_page_2"),
            match=[responses.matchers.query_param_matcher({"per_page": "100", "page": "2"})])
    api.get(f"{FRESHDESK}/api/v2/agents", json=fixture("freshdesk", "check_agents_page_1"),
            match=[responses.matchers.query_param_matcher({"per_page": "100"})],
            headers={"Link": f'<{FRESHDESK}/api/v2/agents?per_page=100&page=2>; rel="next"'})


def test_a_clean_freshdesk_deployment(tmp_path: Path, freshdesk_api: responses.RequestsMock,
                                      ) -> None:
    freshdesk_answers(freshdesk_api)
    policy = policy_with(rule("route", cond("group", "equal_to", "support"),
                              act("assign_group", group="billing"),
                              act("assign", assignee="Ana Lima"),
                              act("set_priority", priority="urgent")), pause=["pending", "hold"])
    code, lines, summary = check(deploy(tmp_path, FRESHDESK_CONNECTOR, policy))
    assert (code, lines) == (0, []), lines
    assert summary.endswith("read in 5 requests")


def test_unknown_names_in_freshdesk(tmp_path: Path, freshdesk_api: responses.RequestsMock,
                                    ) -> None:
    freshdesk_answers(freshdesk_api, scope=2)
    connector = FRESHDESK_CONNECTOR.replace(", status_map: {6: hold}",
                                            ", tier_field: cf_plan, agents: {48000509: Ana}")
    connector = connector.replace("agents: {48000501: Ana Lima}, ", "")
    policy = policy_with(rule("route", cond("status", "equal_to", "waiting"),
                              act("assign_group", group="Tier 3"),
                              act("assign", assignee="Raj")), pause=["pending", "hold"])
    code, lines, _ = check(deploy(tmp_path, connector, policy))
    assert code == 2
    assert lines == [
        "config: connector.api_key: the API key's agent has ticket scope 2, not 1 (global "
        "access): tickets outside its groups or assignments would never be read",
        "config: connector.status_map: Freshdesk's status 6 (Waiting on Customer) is not "
        "mapped: tickets in it read as 'open'",
        "config: connector.tier_field: no ticket field 'cf_plan' in Freshdesk (custom fields: "
        "cf_tier)",
        "config: connector.agents.48000509: no agent 48000509 in Freshdesk (known: 48000501 "
        "Ana Lima, 48000502 Raj Patel)",
        "policy: slas[0].pause_statuses[1]: 'hold' is not a status in Freshdesk (known: "
        "closed, open, pending, solved)",
        "policy: rules[0].conditions.value: 'waiting' is not a status in Freshdesk (known: "
        "closed, open, pending, solved)",
        "policy: rules[0].actions[0].params.group: 'Tier 3' is not a group in Freshdesk "
        "(known: 48000125, billing, support); Freshdesk's group 'Tier 3' has id 48000125: "
        "name it in connector.groups (e.g. 48000125: Tier 3)",
        "policy: rules[0].actions[1].params.assignee: 'Raj' is not an agent in Freshdesk "
        "(known: 48000501, 48000502)",
    ]
    no_secret(lines)


def test_a_freshdesk_priority_the_config_does_not_map(tmp_path: Path,
                                                     freshdesk_api: responses.RequestsMock,
                                                     ) -> None:
    freshdesk_answers(freshdesk_api)
    fields = fixture("freshdesk", "check_ticket_fields")
    for field in fields:  # an account with a fifth priority (the choices are name -> code)
        if field["name"] == "priority":
            field["choices"]["Critical"] = 5
    freshdesk_api.replace(responses.GET, f"{FRESHDESK}/api/v2/ticket_fields", json=fields)
    code, lines, _ = check(deploy(tmp_path, FRESHDESK_CONNECTOR, policy_with()))
    assert (code, lines) == (2, [
        "config: connector.priority_map: Freshdesk's priority 5 (Critical) is not mapped: "
        "tickets in it read as 'normal'"])


def test_freshdesk_refusing_the_key_is_one_line(tmp_path: Path,
                                                freshdesk_api: responses.RequestsMock) -> None:
    freshdesk_api.get(f"{FRESHDESK}/api/v2/agents/me", status=401,
                      json=fixture("freshdesk", "error_authentication_failed"))
    code, lines, summary = check(deploy(tmp_path, FRESHDESK_CONNECTOR, policy_with()))
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("helpdesk: freshdesk: GET /api/v2/agents/me: HTTP 401")
    no_secret(lines, summary)


# -- HubSpot (recorded payloads) -----------------------------------------------------------

HUBSPOT = "https://api.hubapi.com"
HUBSPOT_CONNECTOR = ("{type: hubspot, url: '" + HUBSPOT + "', token: '${HS_TOKEN}', "
                     "groups: {'88812345': escalations}}")


@pytest.fixture
def hubspot_api(monkeypatch: pytest.MonkeyPatch):
    """HubSpot's CRM v3 replayed from payloads that follow its reference: "Pipelines"
    (GET /crm/v3/pipelines/tickets: the default pipeline's stages and one more pipeline),
    "Properties" (GET /crm/v3/properties/tickets: hs_ticket_priority's options, the sla_tags
    checkbox with its options, the escalation and tier properties) and "Owners" (GET
    /crm/v3/owners, tests/fixtures/hubspot/owners.json); each test adds the token's scopes."""
    monkeypatch.setenv("HS_TOKEN", "pat-na1-check-4d2e")
    with responses.RequestsMock() as mock:
        mock.get(f"{HUBSPOT}/crm/v3/pipelines/tickets",
                 json=fixture("hubspot", "check_pipelines_tickets"))
        mock.get(f"{HUBSPOT}/crm/v3/properties/tickets",
                 json=fixture("hubspot", "check_properties_tickets"))
        mock.get(f"{HUBSPOT}/crm/v3/owners", json=fixture("hubspot", "owners"))
        yield mock


def hubspot_scopes(api: responses.RequestsMock, *missing: str) -> None:
    """"Private apps": the token's scopes, from POST .../access-token-info with the token in
    the body."""
    info = fixture("hubspot", "check_access_token_info")
    info["scopes"] = [scope for scope in info["scopes"] if scope not in missing]
    api.post(f"{HUBSPOT}/oauth/v2/private-apps/get/access-token-info", json=info,
             match=[responses.matchers.json_params_matcher({"tokenKey": "pat-na1-check-4d2e"})])


def test_a_clean_hubspot_deployment(tmp_path: Path, hubspot_api: responses.RequestsMock) -> None:
    hubspot_scopes(hubspot_api)
    policy = policy_with(rule("route", cond("group", "is_one_of", ["support", "escalations"]),
                              act("add_tag", tag="sla_warning"),
                              act("assign", assignee="ben@example.com"),
                              act("set_priority", priority="high")), pause=["pending"],
                         closed=["closed"])
    connector = HUBSPOT_CONNECTOR[:-1] + ", stage_map: {'88812346': open}}"
    code, lines, summary = check(deploy(tmp_path, connector, policy))
    assert (code, lines) == (0, []), lines
    assert summary.endswith("read in 4 requests")


def test_unknown_names_in_hubspot(tmp_path: Path, hubspot_api: responses.RequestsMock) -> None:
    hubspot_scopes(hubspot_api, "crm.objects.contacts.write")
    connector = HUBSPOT_CONNECTOR[:-1] + ", escalation_property: sla_level}"
    policy = policy_with(rule("route", cond("group", "equal_to", "tier2"),
                              act("add_tag", tag="sla_paged"),
                              act("assign", assignee="carol@example.com"),
                              act("set_priority", priority="urgent"),
                              act("add_note", text="paged")), pause=["hold"])
    code, lines, _ = check(deploy(tmp_path, connector, policy))
    assert code == 2
    assert [line.split(" (known")[0] for line in lines] == [
        "config: connector.stage_map: HubSpot's tickets stage 'Triage' (id 88812346) is not "
        "mapped: its records read as 'open'",
        "config: connector.escalation_property: no tickets property 'sla_level' in HubSpot: "
        "create it (see docs/connectors/hubspot.md)",
        "policy: slas[0].pause_statuses[0]: 'hold' is not a status in HubSpot",
        "policy: rules[0].conditions.value: 'tier2' is not a group in HubSpot",
        "policy: rules[0].actions[0].params.tag: 'sla_paged' is not an option of the sla_tags "
        "property in HubSpot",
        "policy: rules[0].actions[1].params.assignee: 'carol@example.com' is not an owner in "
        "HubSpot",
        "policy: rules[0].actions[2].params.priority: 'urgent' is not a priority in HubSpot",
        "policy: rules[0].actions[3]: the credentials cannot make this write: the private app "
        "lacks the crm.objects.contacts.write scope, which HubSpot asks for to create notes",
    ]
    assert "known: sla_breach, sla_warning" in lines[4]
    assert "known: escalations, support" in lines[3]
    no_secret(lines)


@pytest.fixture
def rt_api(monkeypatch: pytest.MonkeyPatch):
    """RT 5's REST2 replayed from payloads that follow its documentation (RT::REST2, "Queues",
    "Tickets", "Users"; the hypermedia RT::REST2::Resource::Queue and ::Ticket add: a
    queue's `create` link only for a user with CreateTicket in it, a ticket's `comment` link
    only with CommentOnTicket), for what the real RT of the other tests does not refuse."""
    monkeypatch.setenv("RT_TOKEN", "1-99-replayed")
    base = "https://rt.example.com/REST/2.0"
    with responses.RequestsMock() as mock:
        mock.get(f"{base}/queues/all", json=fixture("rt", "check_queues_all"))
        mock.get(f"{base}/queue/3", json=fixture("rt", "check_queue_3_support"))
        mock.get(f"{base}/queue/5", json=fixture("rt", "check_queue_5_tier2_no_create"))
        mock.get(f"{base}/tickets", json=fixture("rt", "check_tickets_one"))
        mock.get(f"{base}/ticket/7", json=fixture("rt", "check_ticket_7_no_comment"))
        mock.get(f"{base}/users", json=fixture("rt", "check_users"))
        yield mock


def test_rt_writes_the_rights_do_not_allow(tmp_path: Path, rt_api: responses.RequestsMock,
                                           ) -> None:
    config = deploy(tmp_path, "{type: rt, url: 'https://rt.example.com', token: '${RT_TOKEN}'}",
                    policy_with(rule("up", cond("group", "equal_to", "support"),
                                     act("assign_group", group="tier2"),
                                     act("add_note", text="moved"))))
    code, lines, summary = check(config)
    assert code == 2
    assert lines == [
        "policy: rules[0].actions[0]: the credentials cannot make this write: the API user "
        "has no CreateTicket right on RT queue 'tier2' (RT needs it to move a ticket into a "
        "queue)",
        "policy: rules[0].actions[1]: the credentials cannot make this write: the API user "
        "has no CommentOnTicket right (RT offers no comment on ticket 7)",
    ]
    assert summary.endswith("read in 6 requests")


def test_a_missing_config_or_policy_file_is_one_line_each(tmp_path: Path) -> None:
    code, lines, summary = check(tmp_path / "nowhere.yaml")
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"config: {tmp_path / 'nowhere.yaml'}: config file not found")
    assert "nothing else was checked" in summary
    config = file_desk(tmp_path, policy_with())
    (tmp_path / "policy.json").unlink()
    code, lines, _ = check(config)
    assert (code, lines) == (2, ["policy: $: cannot read the policy (No such file or "
                                 "directory)"])


def test_where_a_helpdesk_cannot_list_priorities_the_connectors_map_decides(
        tmp_path: Path) -> None:
    """lint --config's priority check (sync_author.priority_check), reused for a catalog
    without priorities."""
    from sla_sync.connector import open_connector
    from sla_sync.connector.base import Catalog
    from sla_sync.rules.policy import load_policy
    from sla_sync.sync_check import problems_with

    (tmp_path / "policy.json").write_text(json.dumps(policy_with(rule(
        "p", cond("kind", "equal_to", "ticket"), act("set_priority", priority="critical"),
        act("set_priority", priority="urgent")))))
    connector = open_connector({"type": "zendesk", "url": ZENDESK, "email": "a@b.example",
                                "token": ZENDESK_TOKEN}, tmp_path)
    lines = problems_with(load_policy(tmp_path / "policy.json"), Catalog("Zendesk"), connector)
    assert lines == ["policy: rules[0].actions[0].params.priority: the connector cannot write "
                     "priority 'critical'"]


def test_a_declared_custom_field_the_helpdesk_does_not_fill(tmp_path: Path) -> None:
    policy = policy_with(rule("emea", cond("custom.regoin", "equal_to", "emea"),
                              act("add_tag", tag="emea")))
    policy["fields"] = {"custom.regoin": "string", "custom.region": "string"}
    code, lines, _ = check(file_desk(tmp_path, policy))
    assert (code, lines) == (2, [
        "policy: fields.custom.regoin: 'regoin' is not a custom field in the file helpdesk "
        "(did you mean 'region'?) (known: region)"])
