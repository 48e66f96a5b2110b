"""Each connector's settings table in docs/connectors/*.md lists exactly the keys its
settings schema knows (besides `type`), and marks its secrets as read from the
environment. Where a page's table is generated from the schema (GENERATED), it is the
schema's table to the letter: `python -m sla_sync.connector.settings KIND` prints it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from sla_sync.connector.settings import documented_keys, table

DOCS = Path(__file__).resolve().parent.parent / "docs" / "connectors"
#: The connectors whose settings are declared as a schema (module, doc page).
SCHEMAS = {"freshdesk": "sla_sync.connector.freshdesk", "hubspot": "sla_sync.connector.hubspot",
           "jsm": "sla_sync.connector.jsm", "rt": "sla_sync.connector.rt",
           "zendesk": "sla_sync.connector.zendesk"}
GENERATED = ("hubspot",)


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_the_settings_table_lists_every_key_of_the_schema_and_no_other(kind):
    page = DOCS / f"{kind}.md"
    assert page.exists(), f"{page} is missing"
    schema = importlib.import_module(SCHEMAS[kind]).SCHEMA
    documented = documented_keys(page.read_text())
    assert documented, f"{page} has no `| key |` table"
    assert sorted(documented - schema.keys) == [], "documented but not a setting"
    assert sorted(schema.keys - {"type"} - documented) == [], "a setting left undocumented"


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_the_settings_table_says_secrets_come_from_the_environment(kind):
    schema = importlib.import_module(SCHEMAS[kind]).SCHEMA
    rows = [line for line in (DOCS / f"{kind}.md").read_text().splitlines()
            if line.startswith("| `")]
    for key in schema.secrets:
        [row] = [r for r in rows if f"`{key}`" in r.split("|")[1]]
        assert "environment" in row or "${" in row, f"{key} is a secret: say it is read " \
            "from the environment"


@pytest.mark.parametrize("kind", GENERATED)
def test_a_generated_settings_table_is_the_schemas_table(kind):
    schema = importlib.import_module(SCHEMAS[kind]).SCHEMA
    assert table(schema) in (DOCS / f"{kind}.md").read_text(), \
        f"regenerate the table: python -m sla_sync.connector.settings {kind}"
