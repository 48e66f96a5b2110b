"""`python -m sla_sync ...` is the `sla-sync` command."""

from sla_sync.sync import main

main()
