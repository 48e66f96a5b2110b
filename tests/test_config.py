"""config.yaml: ${VAR} from the environment, paths relative to the file, errors naming keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from sla_sync.connector import open_connector
from sla_sync.sync_config import ConfigError, load_config, locate

GOOD = """\
connector:
  type: file
  path: ${HELPDESK}
  token: Bearer ${TOKEN}
policy: policies/team.json
state: .state/sync.db
"""


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(text)
    return path


def error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={} if environ is None else environ)
    return str(info.value)


def test_variables_are_taken_from_the_given_environment(tmp_path: Path):
    config = load_config(write(tmp_path, GOOD), environ={"HELPDESK": "h.json", "TOKEN": "s3"})
    assert config.connector == {"type": "file", "path": "h.json", "token": "Bearer s3"}


def test_missing_variable_names_it_and_its_key_without_echoing_other_values(tmp_path: Path):
    path = write(tmp_path, GOOD)
    message = error(path, {"HELPDESK": "h.json", "DB_PASSWORD": "hunter2-secret"})
    assert message == f"{path}: connector.token: environment variable TOKEN is not set"
    assert "hunter2-secret" not in message and "h.json" not in message


def test_value_that_is_not_a_mapping_is_refused_without_echoing_the_secret(tmp_path: Path):
    path = write(tmp_path, "connector: ${TOKEN}\npolicy: p.json\nstate: s.db\n")
    message = error(path, {"TOKEN": "hunter2-secret"})
    assert message == f"{path}: connector: expected a mapping with a 'type'"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "connector: {type: file, path: data/h.json}\npolicy: policies/team.json\n" \
           "state: .state/sync.db\n"
    config = load_config(write(tmp_path / "etc", text), environ={})
    assert (config.policy, config.state) == (
        tmp_path / "etc" / "policies" / "team.json", tmp_path / "etc" / ".state" / "sync.db")
    assert open_connector(dict(config.connector), config.base_dir).path == (
        tmp_path / "etc" / "data" / "h.json")


def test_absolute_path_from_the_environment_is_kept(tmp_path: Path):
    path = write(tmp_path, "connector: {type: file}\npolicy: ${POLICY}\nstate: s.db\n")
    assert load_config(path, environ={"POLICY": "/srv/team.json"}).policy == Path(
        "/srv/team.json")


def test_unknown_and_missing_keys_are_all_named(tmp_path: Path):
    path = write(tmp_path, "conector: {type: file}\npolicy: p.json\nstate: s.db\n")
    assert error(path) == f"{path}: conector: unknown key; connector: missing"


def test_invalid_yaml_is_reported_with_line_and_column(tmp_path: Path):
    path = write(tmp_path, "connector:\n  type: file\n    path: h.json\npolicy: p\nstate: s\n")
    assert error(path) == f"{path}:3:9: invalid YAML (mapping values are not allowed here)"


def test_missing_config_file_says_how_to_give_one(tmp_path: Path):
    path = tmp_path / "config.yaml"
    assert error(path) == (f"{path}: config file not found (give --config FILE or set "
                           "SLA_SYNC_CONFIG)")


def test_locate_prefers_the_explicit_path(monkeypatch):
    monkeypatch.setenv("SLA_SYNC_CONFIG", "/etc/sla-sync/env.yaml")
    assert locate("ops/explicit.yaml") == Path("ops/explicit.yaml")


def test_locate_falls_back_to_the_environment_variable(monkeypatch):
    monkeypatch.setenv("SLA_SYNC_CONFIG", "/etc/sla-sync/env.yaml")
    assert locate(None) == Path("/etc/sla-sync/env.yaml")


def test_locate_defaults_to_config_yaml_in_the_working_folder(monkeypatch):
    monkeypatch.delenv("SLA_SYNC_CONFIG", raising=False)
    assert locate(None) == Path("config.yaml")


# -- hostile files ------------------------------------------------------------------------------

BILLION_LAUGHS = """\
connector: {type: file, path: h.json}
policy: p.json
state: s.db
webhooks:
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]
"""


def test_yaml_aliases_are_refused_naming_the_key_before_anything_expands(tmp_path: Path):
    path = write(tmp_path, BILLION_LAUGHS)
    assert error(path) == (f"{path}:6:10: webhooks.b[0]: YAML aliases (*a) are not allowed in "
                           "the configuration; write the value out")


def test_a_merge_key_is_an_alias_too(tmp_path: Path):
    path = write(tmp_path, "base: &base {type: file}\nconnector:\n  <<: *base\n  path: h.json\n"
                           "policy: p.json\nstate: s.db\n")
    assert error(path) == (f"{path}:3:7: connector.<<: YAML aliases (*base) are not allowed in "
                           "the configuration; write the value out")


def test_a_self_referencing_alias_is_refused_not_recursed(tmp_path: Path):
    path = write(tmp_path, "connector: &loop {type: file, again: *loop}\npolicy: p\nstate: s\n")
    assert error(path) == (f"{path}:1:38: connector.again: YAML aliases (*loop) are not "
                           "allowed in the configuration; write the value out")


def test_yaml_nested_too_deep_is_refused_naming_the_key(tmp_path: Path):
    path = write(tmp_path, "connector: {type: file, x: " + "[" * 50_000 + "]" * 50_000 + "}\n")
    assert error(path) == f"{path}:1:59: connector.x" + "[0]" * 31 + \
        ": nested deeper than 32 levels"


def test_config_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"connector: {type: file}\npolicy: caf\xe9.json\nstate: s.db\n")
    assert error(path) == f"{path}:2: not UTF-8 (byte 0xe9)"


def test_run_with_a_billion_laughs_config_exits_2_without_a_traceback(tmp_path: Path):
    from click.testing import CliRunner

    from sla_sync.sync import main
    path = write(tmp_path, BILLION_LAUGHS)
    result = CliRunner().invoke(main, ["run", "--config", str(path)])
    assert (result.exit_code, result.exception.__class__) == (2, SystemExit)
    assert "webhooks.b[0]: YAML aliases (*a) are not allowed" in result.stderr


def test_a_nul_character_in_a_value_is_refused_naming_its_key(tmp_path: Path):
    path = write(tmp_path, 'connector: {type: file, path: "h\\0.json"}\npolicy: p\nstate: s\n')
    assert error(path) == f"{path}: connector.path: a NUL character is not allowed"


def test_a_connector_type_that_is_not_a_name_is_refused(tmp_path: Path):
    path = write(tmp_path, "connector: {type: [zendesk]}\npolicy: p\nstate: s\n")
    assert error(path) == f"{path}: connector.type: expected the name of a helpdesk"


# -- hostile YAML, property-based -----------------------------------------------------------

_FRAGMENTS = [b"&a [1, 2]", b"*a", b"[*a, *a]", b"!!python/object:os.system {}", b"\xff\xfe",
              b"[" * 5000 + b"]" * 5000, b"{" * 40 + b"}" * 40, b".nan", b"1e400", b"9" * 5000,
              b'"\\0"', b"${UNSET}", b"${", b"? [a, b]\n  : 1", b"!!binary AAAA", b"|\n  x",
              b"{a: 1, a: 2}", b"- - - -", b"'\xed\xa0\x80'", b"!!set {a, b}", b"<<: *a",
              b"~", b"[]", b"{}", b"\t", b"&b {x: *b}", b'"\\ud800"']


def _hostile_config(picks: list[tuple[int, int]]) -> bytes:
    lines = [b"connector:", b"  type: file", b"  path: h.json", b"policy: p.json",
             b"state: s.db"]
    for fragment, line in picks:
        spot = line % len(lines)
        key = lines[spot].split(b":")[0] + b":"
        lines[spot] = key + b" " + _FRAGMENTS[fragment % len(_FRAGMENTS)]
    return b"\n".join(lines) + b"\n"


def test_hostile_yaml_ends_in_a_config_error_never_another_exception(tmp_path: Path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(derandomize=True, max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), min_size=1,
                    max_size=3))
    def check(picks: list[tuple[int, int]]) -> None:
        path = tmp_path / "config.yaml"
        path.write_bytes(_hostile_config(picks))
        try:
            load_config(path, environ={})
        except ConfigError as exc:
            assert str(exc).startswith(str(path)), exc

    check()
