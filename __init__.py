"""sla-sync: an SLA rules engine that plugs into an existing helpdesk or CRM.

The installed package is `sla_sync`; in the repository it is the root folder itself:
`sla_sync.connector` (connector/), `sla_sync.rules` (rules/), `sla_sync.sync` (sync.py,
the CLI) and the other sync_*.py modules. docs/architecture.md describes the rooms.
"""
